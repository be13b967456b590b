"""A WeMacro rail controller on a pseudo-terminal, speaking its CRC-checked frames.

It follows INDIGO's serial simulator of the controller, written by INDIGO's authors against a
real one (indigo-astronomy/indigo, ``indigo_drivers/focuser_wemacro/focuser_wemacro_simulator/
focuser_wemacro_simulator.c``, commit 188fd4c; speeds there measured on 2026-10-08), and what
INDIGO's driver shows (see :mod:`rig.rails.wemacro_protocol`). Its awkward behaviours are the
defaults:

* opening the port says nothing: no ready message ``0xF0`` (``ready_on_open=True`` sends one,
  INDIGO's "initial" profile), so a host must wake the controller with ``0x40 0``, ``0x20``,
  ``0x40 0``, each ``0x40 0`` answered ``0xF5`` at once, the stop while idle by nothing;
* an answer is ``5A A5 state``: the two header bytes of a command frame, swapped;
* a frame that completes within 30 ms of a configuration frame is ignored (timed by when the
  frames can have arrived, :attr:`~rig.sim.ptyserial.PtyDevice.arrival`, with the benefit of
  the doubt to the host: the configuration as early, the frame as late as it may have come,
  so a simulator fallen behind on a loaded machine ignores no frame sent after the pause);
* moves (``0x40``/``0x41``, micrometres) take real time and end with ``0xF5`` forward,
  ``0xF6`` back;
* ``0x04`` pulses the shutter cable (:attr:`on_shutter`) and answers ``0xF7`` when its 0.3 s
  pulse ends; a move sent meanwhile starts then;
* ``0x20`` stops the carriage where it is; a stopped move answers its direction about 10 ms
  later, an idle stop nothing;
* ``split_answers=True`` sends each answer's first byte 10 ms before the rest (INDIGO's
  "split" profile);
* a frame whose CRC does not match is dropped without an answer (:meth:`corrupt_next` makes
  the next frame arrive damaged, as line noise would), so a host that waits for ``0xF5`` must
  time out rather than hang.

Times are the controller's own, shortened by ``time_scale`` as the carriage's are. A move sent
while one runs is ignored (no source says otherwise; the driver never sends one).
"""

from __future__ import annotations

import threading
import time

from rig.rails import wemacro_protocol as proto
from rig.sim.carriage import CarriageController

ANSWER_HEADER = b"\x5a\xa5"
CONFIG_SETTLE_S = 0.03
SHUTTER_PULSE_S = 0.3
STOP_ANSWER_S = 0.01
SPLIT_S = 0.01


class WeMacroSimulator(CarriageController):
    """See the module docstring."""

    url_scheme = "wemacro"
    url_query = "?wakeup=0.5"  # how long the driver waits for a ready message

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        speed_mm_s: float = 1.289,  # INDIGO's SLOW_RATE, measured: the configuration's a = 0
        start_mm: float = 12.0,
        reset_on_open: bool = True,
        ready_on_open: bool = False,
        split_answers: bool = False,
    ) -> None:
        super().__init__(
            "ttyWeMacro",
            start_mm=start_mm,
            speed_mm_s=speed_mm_s,
            time_scale=time_scale,
            reset_on_open=reset_on_open,
        )
        self.ready_on_open = ready_on_open
        self.split_answers = split_answers
        self._corrupt = 0
        self._done_timer: threading.Timer | None = None
        self._shutter_timer: threading.Timer | None = None
        self._pending: tuple[int, int] | None = None  # a move waiting for the shutter pulse
        self._moving_state = proto.State.MOVED
        self._config_at: float | None = None
        self.bad_frames = 0
        """Frames dropped for a wrong CRC."""
        self.ignored_frames = 0
        """Frames ignored for completing within 30 ms of a configuration frame."""
        self.frames: list[tuple[int, int, int, int, int]] = []
        """Every accepted frame: (command, a, b, c, argument)."""
        self.config = 0

    def corrupt_next(self, count: int = 1) -> None:
        """Damage the next ``count`` frames on the way in (their CRC no longer matches)."""
        with self._lock:
            self._corrupt = count

    def _seconds(self, controller_s: float) -> float:
        return controller_s / self.carriage.time_scale

    # -- power --------------------------------------------------------------------------------

    def on_power_up(self) -> None:
        with self._lock:
            self._cancel_timers()
            self.carriage.stop()
            self._buffer.clear()
            self.config = 0
            self._config_at = None
        if self.ready_on_open:
            self._answer(proto.State.READY)

    def on_power_down(self) -> None:
        with self._lock:
            self._cancel_timers()
            self.carriage.stop()

    def close(self) -> None:
        with self._lock:
            self._cancel_timers()
        super().close()

    # -- frames -------------------------------------------------------------------------------

    def _answer(self, state: int) -> None:
        answer = ANSWER_HEADER + bytes([state])
        if self.split_answers:
            self.write_bytes(answer[:1])
            time.sleep(SPLIT_S)
            answer = answer[1:]
        self.write_bytes(answer)

    def _later(self, seconds: float, fn: object) -> threading.Timer:
        timer = threading.Timer(seconds, fn)  # type: ignore[arg-type]
        timer.daemon = True
        timer.start()
        return timer

    def _cancel_timers(self) -> None:
        for timer in (self._done_timer, self._shutter_timer):
            if timer is not None:
                timer.cancel()
        self._done_timer = self._shutter_timer = None
        self._pending = None

    def on_bytes(self, data: bytes) -> None:
        empty_at, read_at = self.arrival
        settle = self._seconds(CONFIG_SETTLE_S)
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
                if self._config_at is not None and read_at - self._config_at < settle:
                    self.ignored_frames += 1
                    continue
                self.frames.append(parsed)
                if parsed[0] & 0xF0 == proto.Command.CONFIG:
                    self._config_at = empty_at  # as early as it may have come
                self._execute(*parsed)

    def _execute(self, command: int, a: int, b: int, c: int, argument: int) -> None:
        if command in (proto.Command.MOVE_FORWARD, proto.Command.MOVE_BACK):
            if self.carriage.moving:
                return
            if self._shutter_timer is not None and argument:
                self._pending = (command, argument)  # starts when the pulse ends
                return
            self._start_move(command, argument)
        elif command == proto.Command.STOP:
            stopped = self._done_timer is not None or self._pending is not None
            if self._done_timer is not None:
                self._done_timer.cancel()
                self._done_timer = None
            self._pending = None
            self.carriage.stop()
            if stopped:
                state = self._moving_state
                self._later(self._seconds(STOP_ANSWER_S), lambda: self._answer(state))
        elif command == proto.Command.SHUTTER:
            self._fire_shutter()
            self._shutter_timer = self._later(self._seconds(SHUTTER_PULSE_S), self._pulse_done)
        elif command & 0xF0 == proto.Command.CONFIG:
            self.config = command

    def _start_move(self, command: int, argument: int) -> None:
        forward = command == proto.Command.MOVE_FORWARD
        self._moving_state = proto.State.MOVED if forward else proto.State.RETURNED
        if argument == 0:
            self._answer(self._moving_state)
            return
        mm = argument / 1000.0
        self.carriage.move_by(mm if forward else -mm)
        self._done_timer = self._later(self.carriage.seconds_left(), self._move_done)

    def _pulse_done(self) -> None:
        with self._lock:
            if self._shutter_timer is None:
                return
            self._shutter_timer = None
            pending, self._pending = self._pending, None
        self._answer(proto.State.STEP_DONE)
        if pending is not None:
            with self._lock:
                self._start_move(*pending)

    def _move_done(self) -> None:
        with self._lock:
            if self._done_timer is None:
                return
            self._done_timer = None
            while self.carriage.moving:  # the timer may fire a hair early
                threading.Event().wait(0.001)
            state = self._moving_state
        self._answer(state)
