"""``wemacro://``: a WeMacro focus rail over its USB-serial (CH340) port.

The controller moves by relative distances in micrometres and says when a move is done, but
never where it is (:mod:`rig.rails.wemacro_protocol`). So the position is counted here, from 0
where the rail stood when the port was opened: the rail cannot home, a session on it starts
from an explicit reference (``capabilities.unreferenced`` says so until
:meth:`~rig.rails.base.Rail.accept_position` or :meth:`zero`), and after a move that was
stopped half way the count is lost — :attr:`position` then refuses until :meth:`zero` sets a
new reference.

Not verified on a real controller (see the README's compatibility table): the sign of
"forward" (``reverse=true`` swaps it), replies to a stop, and stops from the controller's own
buttons, which no public source describes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from rig.errors import DeviceNotFoundError, MotionError
from rig.rails import wemacro_protocol as proto
from rig.rails.base import MoveStoppedError, RailOptions
from rig.rails.binarylink import BinaryLinkRail
from rig.rails.url import DeviceURL, open_port_rail
from rig.units import format_length, parse_speed


class WeMacroRail(BinaryLinkRail):
    """A WeMacro rail; see the module docstring.

    Parameters
    ----------
    port
        Device path or pyserial URL.
    reverse
        Swap forward and back.
    wakeup_s
        How long to wait for the controller's ready message after opening the port.
    min_speed_mm_s
        The slowest the rail may be: a move that has not finished after its length at this
        speed (plus ``timeout_s``) is an error.
    """

    def __init__(
        self,
        port: str,
        options: RailOptions | None = None,
        *,
        reverse: bool = False,
        wakeup_s: float = 2.0,
        timeout_s: float = 5.0,
        min_speed_mm_s: float = 0.5,
        name: str | None = None,
    ) -> None:
        super().__init__("wemacro", port, options, reverse=reverse, name=name)
        self.wakeup_s = wakeup_s
        self.timeout_s = timeout_s
        self.min_speed_mm_s = min_speed_mm_s
        self._position_um: float | None = 0.0
        self._rx = bytearray()  # answer bytes read and not yet taken (see _next_state)
        self._moving = threading.Event()
        self._halted = threading.Event()
        self._open(proto.BAUD)
        # Counted from 0 at every opening: a session must say that here is right (rig shoot
        # and resume: --accept-position), as with a controller that restarts on opening.
        self._unreferenced = (
            "a WeMacro never reports its position: it is counted from where the rail stood "
            "when the port was opened"
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> WeMacroRail:
        """``wemacro:///dev/wemacro_rail?backlash=50um&settle=1s&reverse=false``."""

        def settings(parsed: DeviceURL) -> dict[str, Any]:
            slowest = parsed.take("min_speed")
            return {
                "reverse": parsed.take_bool("reverse", False),
                "wakeup_s": parsed.take_duration("wakeup", "2"),
                "timeout_s": parsed.take_duration("timeout", "5"),
                "min_speed_mm_s": parse_speed(slowest) / 60.0 if slowest else 0.5,
            }

        return open_port_rail(cls, url, "wemacro:///dev/ttyUSB0", settings, kwargs)

    # -- link ---------------------------------------------------------------------------------

    def _next_state(self, timeout: float) -> int | None:
        """The state byte of the next answer, or None after ``timeout`` seconds.

        Bytes are kept between calls: an answer split across two reads (INDIGO's simulator
        sends its first byte 10 ms before the rest) was dropped, and the end of a move lost.
        Only an answer that starts with an answer header counts: the bytes of another device
        on the port (a banner at another baud rate) were taken for the controller's."""
        deadline = time.monotonic() + timeout
        while True:
            for header in proto.ANSWER_HEADERS:
                at = self._rx.find(header)
                if 0 <= at <= len(self._rx) - proto.ANSWER_SIZE:
                    state = self._rx[at + 2]
                    del self._rx[: at + proto.ANSWER_SIZE]
                    return state
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._rx += self._link.read_exact(1, min(left, 0.05))
            del self._rx[: max(0, len(self._rx) - 64)]  # noise is never worth keeping long

    def _discard(self) -> None:
        """Drop what the controller sent that nobody waits for, kept bytes too."""
        self._link.discard_input()
        self._rx.clear()

    def _greet(self) -> None:
        self._handshake()
        self._link.write(proto.frame(proto.Command.CONFIG))  # micrometres, slow, no beep/return
        # Ignored if it completes within 30 ms of the configuration: a move sent at once was
        # dropped, and the wake-up's second answer taken for its end (the carriage had not
        # moved). The configuration takes 12.5 ms on the wire at 9600 baud.
        time.sleep(proto.CONFIG_SETTLE_S + 0.04)

    def _handshake(self) -> None:
        """Take READY; else wake the controller the way INDIGO's driver does (the normal path:
        the controller sends nothing when the port opens), taking both of its answers."""
        with self._link.lock:
            if self._next_state(self.wakeup_s) == proto.State.READY:
                return
            self._discard()
            for command in (proto.Command.MOVE_FORWARD, proto.Command.STOP):
                self._link.write(proto.frame(command))
            self._link.write(proto.frame(proto.Command.MOVE_FORWARD))
            answered = 0
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                if self._next_state(deadline - time.monotonic()) == proto.State.MOVED:
                    answered += 1
                    # One 0xF5 for each 0x40 0: the second comes a frame's time later.
                    deadline = min(deadline, time.monotonic() + 0.5)
                    if answered == 2:
                        break
            if answered:
                self._discard()
                return
        raise DeviceNotFoundError(
            f"no WeMacro controller answers on {self.port} at {proto.BAUD} baud; check the "
            "cable, that the controller is powered, and the udev rules"
        )

    # -- Rail primitives ----------------------------------------------------------------------

    @property
    def _resolution_um(self) -> float:
        return 1.0  # moves are whole micrometres

    def _read_position(self) -> float:
        if self._position_um is None:
            raise MotionError(
                f"{self.name}: the position was lost when a move was stopped or cut off half "
                "way; put the rail where you want 0 and run `rig rail zero`"
            )
        return self._position_um

    def _move_absolute(self, target_um: float) -> None:
        start = self._read_position()
        distance = round(abs(target_um - start))
        if distance == 0:
            return
        forward = (target_um > start) != self.reverse
        command = proto.Command.MOVE_FORWARD if forward else proto.Command.MOVE_BACK
        wait = distance / 1000.0 / self.min_speed_mm_s + self.timeout_s
        self._halted.clear()
        self._raise_if_stopped_before_moving()
        try:
            with self._link.lock:
                self._discard()
                self._moving.set()
                self._link.write(proto.frame(command, distance))
            state = self._wait_done(wait)
        except BaseException:  # the link went (cable, power): the carriage stopped anywhere,
            self._position_um = None  # even when the frame was sent before the write failed
            raise
        finally:
            self._moving.clear()
        if self._halted.is_set():
            # Stopped part way, or a STOP that reached the controller just before the move's
            # frame, which it then ran whole: either way the carriage is not where it was.
            self._position_um = None
            raise MoveStoppedError(f"{self.name}: move to {format_length(target_um)} stopped")
        if state not in (proto.State.MOVED, proto.State.RETURNED):
            self._position_um = None
            # A carriage slower than min_speed is still running: left so, it would go on to
            # the old target, and its end-of-move reply would be taken for the next move's.
            with contextlib.suppress(Exception):
                self._link.write(proto.frame(proto.Command.STOP))
            raise MotionError(
                f"{self.name}: the controller did not report the end of the move to "
                f"{format_length(target_um)} within {wait:.0f} s, so it was stopped; the "
                "position is unknown — check power and cable (or give a lower min_speed), "
                "then zero the rail"
            )
        self._position_um = start + (distance if target_um > start else -distance)

    def _wait_done(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while not self._halted.is_set():
            state = self._next_state(min(0.1, max(0.0, deadline - time.monotonic())))
            if state is not None or time.monotonic() >= deadline:
                return state
        return None

    def _halt(self) -> None:
        self._halted.set()
        self._link.write(proto.frame(proto.Command.STOP))
        if self._moving.is_set():
            self._position_um = None

    # -- WeMacro extras -----------------------------------------------------------------------

    def zero(self) -> None:
        """Count from here: the rail's current place becomes position 0."""
        self.accept_position(0.0)

    def _set_position(self, position_um: float) -> None:
        self._position_um = position_um

    def fire_shutter(self) -> None:
        """Fire the camera through the controller's shutter cable, and wait for the pulse's
        end (``0xF7``): taken for a move's answer, it stopped the move after and lost the
        position. A controller that does not answer is waited for a second past the pulse."""
        with self._link.lock:
            self._discard()
            self._link.write(proto.frame(proto.Command.SHUTTER))
            deadline = time.monotonic() + proto.SHUTTER_PULSE_S + 1.0
            while (left := deadline - time.monotonic()) > 0:
                if self._next_state(left) == proto.State.STEP_DONE:
                    return
