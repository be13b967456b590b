"""A WeMacro rail controller on a pseudo-terminal, speaking its CRC-checked frames.

It follows what INDIGO's ``indigo_focuser_wemacro.c`` shows of the controller (see
:mod:`rig.rails.wemacro_protocol`), with these behaviours as defaults:

* opening the port restarts the controller (a CH340 bridge's DTR, like an Arduino), which then
  sends its ready message ``0xF0`` — INDIGO reads exactly that right after opening;
* moves (``0x40``/``0x41``, micrometres) take real time and end with ``0xF5``; a move of 0
  answers ``0xF5`` at once (INDIGO's wake-up sequence relies on it);
* a frame whose CRC does not match is dropped without an answer (:meth:`corrupt_next` makes
  the next frame arrive damaged, as line noise would), so a host that waits for ``0xF5`` must
  time out rather than hang;
* ``0x20`` stops the carriage where it is and answers nothing; ``0x04`` pulses the shutter
  cable (:attr:`on_shutter`).

The first two bytes of every answer are not described by any public source: the simulator
sends zeros, and the driver does not read them.
"""

from __future__ import annotations

import threading

from rig.rails import wemacro_protocol as proto
from rig.sim.carriage import CarriageController


class WeMacroSimulator(CarriageController):
    """See the module docstring."""

    url_scheme = "wemacro"
    url_query = "?wakeup=0.5"  # how long the driver waits for the ready message

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        speed_mm_s: float = 1.5,
        start_mm: float = 12.0,
        reset_on_open: bool = True,
    ) -> None:
        super().__init__(
            "ttyWeMacro",
            start_mm=start_mm,
            speed_mm_s=speed_mm_s,
            time_scale=time_scale,
            reset_on_open=reset_on_open,
        )
        self._corrupt = 0
        self._done_timer: threading.Timer | None = None
        self.bad_frames = 0
        """Frames dropped for a wrong CRC."""
        self.frames: list[tuple[int, int, int, int, int]] = []
        """Every accepted frame: (command, a, b, c, argument)."""
        self.config = 0

    def corrupt_next(self, count: int = 1) -> None:
        """Damage the next ``count`` frames on the way in (their CRC no longer matches)."""
        with self._lock:
            self._corrupt = count

    # -- power --------------------------------------------------------------------------------

    def on_power_up(self) -> None:
        with self._lock:
            self._cancel_done()
            self.carriage.stop()
            self._buffer.clear()
            self.config = 0
        self._answer(proto.State.READY)

    def on_power_down(self) -> None:
        with self._lock:
            self._cancel_done()
            self.carriage.stop()

    def close(self) -> None:
        with self._lock:
            self._cancel_done()
        super().close()

    # -- frames -------------------------------------------------------------------------------

    def _answer(self, state: int) -> None:
        self.write_bytes(bytes([0, 0, state]))

    def _cancel_done(self) -> None:
        if self._done_timer is not None:
            self._done_timer.cancel()
            self._done_timer = None

    def on_bytes(self, data: bytes) -> None:
        with self._lock:
            self._buffer.extend(data)
            while True:
                start = self._buffer.find(proto.SYNC)
                if start < 0:
                    del self._buffer[: max(0, len(self._buffer) - 1)]
                    return
                del self._buffer[:start]
                if len(self._buffer) < proto.FRAME_SIZE:
                    return
                raw = bytearray(self._buffer[: proto.FRAME_SIZE])
                del self._buffer[: proto.FRAME_SIZE]
                if self._corrupt > 0:
                    self._corrupt -= 1
                    raw[7] ^= 0x10
                parsed = proto.parse_frame(bytes(raw))
                if parsed is None:
                    self.bad_frames += 1
                    continue
                self.frames.append(parsed)
                self._execute(*parsed)

    def _execute(self, command: int, a: int, b: int, c: int, argument: int) -> None:
        if command in (proto.Command.MOVE_FORWARD, proto.Command.MOVE_BACK):
            if self.carriage.moving:
                return  # not described anywhere: a move while moving is ignored
            if argument == 0:
                self._answer(proto.State.MOVED)
                return
            mm = argument / 1000.0
            self.carriage.move_by(mm if command == proto.Command.MOVE_FORWARD else -mm)
            self._done_timer = threading.Timer(self.carriage.seconds_left(), self._move_done)
            self._done_timer.daemon = True
            self._done_timer.start()
        elif command == proto.Command.STOP:
            self._cancel_done()
            self.carriage.stop()
        elif command == proto.Command.SHUTTER:
            self._fire_shutter()
        elif command & 0xF0 == proto.Command.CONFIG:
            self.config = command

    def _move_done(self) -> None:
        with self._lock:
            if self._done_timer is None:
                return
            self._done_timer = None
            while self.carriage.moving:  # the timer may fire a hair early
                threading.Event().wait(0.001)
        self._answer(proto.State.MOVED)
