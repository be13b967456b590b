"""A Cognisys StackShot controller on a pseudo-terminal, speaking its binary frames.

It answers the requests :mod:`rig.rails.stackshot_protocol` documents, from the same sources:
``CC_SOFTWARE_STRING``, ``CC_RAIL_STATUS`` (4-byte little-endian status word),
``CC_RAIL_POSITION_CURRENT`` (units byte + float), ``CC_RAIL_POSITION_ZERO``,
``CC_RAIL_MOVE`` (relative, metric or steps), ``CC_RAIL_STOP`` and ``CC_RAIL_SHUTTER_FIRE``;
anything else is answered ``UNSUPPORTED_CMD``. The controller's habits are the defaults:

* the position counter starts at 0 wherever the carriage stands at power-up (no limit switches,
  no homing), while the carriage itself keeps its physical place (:attr:`carriage`);
* a request while a move or a shutter pulse is running that would start another is answered
  ``BUSY`` ("the controller is already performing the specified action", ``commdefs.h``);
  :meth:`busy_next` makes the next requests busy whatever they are;
* :meth:`press_stop_button` is the user stopping a move on the controller's keypad: the move
  ends and the status word carries ``RAIL_STATUS_USER_ABORTED``;
* bytes before a request's sync byte 0x55 are skipped, as a framed protocol must.

The port does not restart the controller when opened (it has its own supply behind an FTDI
bridge, and the public host programs open it without waiting for a boot), so
``reset_on_open`` is off by default; :meth:`power_cycle` restarts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from rig.rails import stackshot_protocol as proto
from rig.sim.carriage import CarriageController

SOFTWARE = b"StackShot 1.5 (stackrig simulator)"


class StackShotSimulator(CarriageController):
    """See the module docstring. ``steps_per_mm`` serves moves and reads in motor steps."""

    url_scheme = "stackshot"

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        speed_mm_s: float = 2.0,
        steps_per_mm: float = 3200.0,
        start_mm: float = 37.2,
        reset_on_open: bool = False,
    ) -> None:
        super().__init__(
            "ttyStackShot",
            start_mm=start_mm,
            speed_mm_s=speed_mm_s,
            time_scale=time_scale,
            reset_on_open=reset_on_open,
        )
        self.steps_per_mm = steps_per_mm
        self._zero_mm = 0.0
        self._busy_left = 0
        self._aborted = False
        self._shutter_until = 0.0
        self.requests: list[tuple[int, int, bytes]] = []
        """Every well-formed request: (command, action, data)."""

    # -- faults -------------------------------------------------------------------------------

    def busy_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests ``BUSY``."""
        with self._lock:
            self._busy_left = count

    def press_stop_button(self) -> None:
        """The user stops the rail on the controller's own keypad."""
        with self._lock:
            if self.carriage.stop():
                self._aborted = True

    # -- power --------------------------------------------------------------------------------

    def on_power_up(self) -> None:
        with self._lock:
            self.carriage.stop()
            self._zero_mm = self.carriage.position_mm
            self._buffer.clear()
            self._aborted = False
            self._busy_left = 0

    def on_power_down(self) -> None:
        with self._lock:
            self.carriage.stop()

    # -- frames -------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        with self._lock:
            self._buffer.extend(data)
            while True:
                frame = self._take_frame()
                if frame is None:
                    return
                self.requests.append(frame)
                self._answer(*frame)

    def _take_frame(self) -> tuple[int, int, bytes] | None:
        """The next complete request in the buffer; skips bytes before a sync byte."""
        start = self._buffer.find(bytes([proto.SYNC_REQUEST]))
        if start < 0:
            self._buffer.clear()
            return None
        del self._buffer[:start]
        if len(self._buffer) < proto.HEADER_SIZE:
            return None
        command, action, length = proto.parse_header(bytes(self._buffer[: proto.HEADER_SIZE]))
        end = proto.HEADER_SIZE + length + 1
        if len(self._buffer) < end:
            return None
        data = bytes(self._buffer[proto.HEADER_SIZE : end - 1])
        del self._buffer[:end]
        return command, action, data

    def _reply(self, command: int, action: int, data: bytes = b"") -> None:
        self.write_bytes(proto.answer(command, action, data))

    def _answer(self, command: int, action: int, data: bytes) -> None:
        if self._busy_left > 0:
            self._busy_left -= 1
            self._reply(command, proto.Action.BUSY)
            return
        handler = self._HANDLERS.get(command)
        if handler is None:
            self._reply(command, proto.Action.UNSUPPORTED_CMD)
            return
        try:
            handler(self, command, action, data)
        except (ValueError, IndexError, KeyError):
            self._reply(command, proto.Action.BAD_PARAM)

    def _per_mm(self, units: proto.Units) -> float:
        """Units per millimetre: mm, mils (ENGLISH) or motor steps."""
        return {
            proto.Units.METRIC: 1.0,
            proto.Units.ENGLISH: 1000.0 / 25.4,
            proto.Units.STEPS: self.steps_per_mm,
        }[units]

    def _busy(self) -> bool:
        return self.carriage.moving or time.monotonic() < self._shutter_until

    def _status(self, command: int, action: int, data: bytes) -> None:
        word = (
            (proto.STATUS_MOVING if self.carriage.moving else 0)
            | (proto.STATUS_SHUTTER if time.monotonic() < self._shutter_until else 0)
            | (proto.STATUS_USER_ABORTED if self._aborted else 0)
        )
        self._reply(command, proto.Action.RSP_OK, word.to_bytes(4, "little"))

    def _position(self, command: int, action: int, data: bytes) -> None:
        units = proto.Units(data[0])
        mm = self.carriage.position_mm - self._zero_mm
        self._reply(
            command, proto.Action.RSP_OK, proto.position_data(units, mm * self._per_mm(units))
        )

    def _zero(self, command: int, action: int, data: bytes) -> None:
        if self._busy():
            self._reply(command, proto.Action.BUSY)
            return
        self._zero_mm = self.carriage.position_mm
        self._reply(command, proto.Action.RSP_OK)

    def _move(self, command: int, action: int, data: bytes) -> None:
        direction, units, _backlash, distance = proto.parse_move(data)
        if self._busy():
            self._reply(command, proto.Action.BUSY)
            return
        if not distance >= 0:
            raise ValueError(distance)
        mm = distance / self._per_mm(units)
        self._aborted = False
        self.carriage.move_by(mm if direction == proto.Direction.FORWARD else -mm)
        self._reply(command, proto.Action.RSP_OK)

    def _stop(self, command: int, action: int, data: bytes) -> None:
        self.carriage.stop()
        self._shutter_until = 0.0
        self._reply(command, proto.Action.RSP_OK)

    def _shutter(self, command: int, action: int, data: bytes) -> None:
        count, pulse, pause = proto.parse_shutter(data)
        if self._busy():
            self._reply(command, proto.Action.BUSY)
            return
        if count < 1 or not 0 < pulse < 60 or not 0 <= pause < 60:
            raise ValueError(data)
        self._shutter_until = time.monotonic() + count * (pulse + pause) / self.carriage.time_scale
        self._reply(command, proto.Action.RSP_OK)
        self._fire_shutter(count)

    def _software(self, command: int, action: int, data: bytes) -> None:
        self._reply(command, proto.Action.RSP_OK, SOFTWARE)

    _HANDLERS: ClassVar[dict[int, Callable[[StackShotSimulator, int, int, bytes], None]]] = {
        proto.Command.RAIL_STATUS: _status,
        proto.Command.RAIL_POSITION_CURRENT: _position,
        proto.Command.RAIL_POSITION_ZERO: _zero,
        proto.Command.RAIL_MOVE: _move,
        proto.Command.RAIL_STOP: _stop,
        proto.Command.RAIL_SHUTTER_FIRE: _shutter,
        proto.Command.SOFTWARE_STRING: _software,
    }
