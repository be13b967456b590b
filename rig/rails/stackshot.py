"""``stackshot://``: a Cognisys StackShot rail over its USB-serial (FTDI) port.

The StackShot controller is the rail Zerene Stacker drives. It speaks framed binary requests
(:mod:`rig.rails.stackshot_protocol`) at 38400 baud and moves by *relative* distances, so an
absolute target is reached by reading the controller's position counter, moving the difference
and reading the counter again. The counter starts wherever the carriage was when the controller
was powered on or zeroed: the rail has no limit switches and cannot home, so a session on it
needs an explicit reference (the position at which it starts).

Traps handled here:

* **Busy.** A request that arrives while the controller is still busy with the previous one is
  answered ``BUSY``; it is retried for a bounded time.
* **Stopped from the controller's buttons.** The status word's ``USER_ABORTED`` bit: the move
  ends with a :class:`~rig.errors.MotionError` saying so, never as a silent short move.
* **Garbage before an answer** (a half frame after a reconnect): bytes up to the answer's sync
  byte 0xAA are discarded.
* **Shutter.** :meth:`StackShotRail.fire_shutter` pulses the controller's own shutter cable, for
  bodies that are not tethered by USB (frames then arrive on the card or in a hot folder).

Not verified on a real controller (see the README's compatibility table): the sign of
"forward" (``reverse=true`` swaps it), the StackShot 3X's extra axes (answers carry the axis
in the action byte's high nibble, masked here as its host program does), and the FTDI CBUS
setup that the host programs of both models make, which a plain serial driver cannot reach.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.rails import stackshot_protocol as proto
from rig.rails.base import MoveStoppedError, RailOptions
from rig.rails.binarylink import BinaryLinkRail
from rig.rails.url import DeviceURL, open_port_rail
from rig.units import format_length


class StackShotError(RigError):
    """The controller refused or did not answer a request."""

    exit_code = 6  # a rail fault, not input to fix (the README's exit statuses)


class _Busy(StackShotError):
    """Internal: a request answered BUSY that is not to be resent as it was."""


_COUNT_TOLERANCE_UM = 1.0
"""A counter within this of 0 reads as 0 (the protocol gives float millimetres)."""


class StackShotRail(BinaryLinkRail):
    """A StackShot rail; see the module docstring.

    Parameters
    ----------
    port
        Device path or pyserial URL.
    options
        Shared rail behaviour (backlash, settle, soft limits).
    reverse
        Swap the controller's forward and back (a rail mounted the other way round).
    timeout_s
        Silence allowed for one answer.
    busy_s
        How long to keep retrying a request the controller answers ``BUSY``.
    move_timeout_s
        Longest a single move may take.
    pulse_s
        Shutter pulse length for :meth:`fire_shutter`.
    """

    def __init__(
        self,
        port: str,
        options: RailOptions | None = None,
        *,
        reverse: bool = False,
        timeout_s: float = 1.0,
        busy_s: float = 5.0,
        move_timeout_s: float = 120.0,
        pulse_s: float = 0.2,
        poll_s: float = 0.05,
        name: str | None = None,
    ) -> None:
        super().__init__("stackshot", port, options, reverse=reverse, name=name)
        self.timeout_s = timeout_s
        self.busy_s = busy_s
        self.move_timeout_s = move_timeout_s
        self.pulse_s = pulse_s
        self.poll_s = poll_s
        self._halt_requested = threading.Event()
        self._offset_um = 0.0
        self._left_count_um: float | None = None
        """The counter where the last move, zeroing or accepted position left it (µm, before
        the offset): a restarted controller counts from 0 again (see :meth:`_check_count`)."""
        self.firmware = ""
        self._open(proto.BAUD)
        # No limit switch, and a counter that restarts at power-on: whether it still means
        # what a plan's positions mean, only the user knows (--accept-position, as WeMacro).
        self._unreferenced = (
            "a StackShot counts from where the rail stood when the controller was switched on "
            "or zeroed, and cannot tell whether it has been moved or restarted since"
        )

    def accept_position(self, position: float | None = None) -> None:
        """Take where the carriage stands as the reference (see :meth:`Rail.accept_position`)."""
        super().accept_position(position)
        self._left_count_um = self._read_position() - self._offset_um

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> StackShotRail:
        """``stackshot:///dev/stackshot?backlash=50um&settle=1s&reverse=false``."""

        def settings(parsed: DeviceURL) -> dict[str, Any]:
            return {
                "reverse": parsed.take_bool("reverse", False),
                "timeout_s": parsed.take_duration("timeout", "1"),
                "pulse_s": parsed.take_duration("pulse", "0.2"),
            }

        return open_port_rail(cls, url, "stackshot:///dev/ttyUSB0", settings, kwargs)

    # -- requests -----------------------------------------------------------------------------

    def _exchange(
        self,
        command: proto.Command,
        action: proto.Action,
        data: bytes,
        *,
        unless: threading.Event | None = None,
        retry_busy: bool = True,
    ) -> bytes:
        """One request and its answer; returns the answer's data. Retries while BUSY, unless
        ``retry_busy`` is false (:class:`_Busy` then). Nothing is sent once ``unless`` is set:
        checked under the link's lock, which a stop's own request waits for, so a stop is never
        sent to an idle controller just before a move it should have prevented."""
        deadline = time.monotonic() + self.busy_s
        while True:
            with self._link.lock:
                if unless is not None and unless.is_set():
                    raise MoveStoppedError(f"{self.name}: stopped before moving")
                self._link.discard_input()
                self._link.write(proto.request(command, action, data))
                status, payload = self._read_answer(command)
            # The StackShot 3X answers with the axis in the action byte's high nibble (its
            # host program masks it: ``res[3] & 0x0F``).
            status &= 0x0F
            if status == proto.Action.RSP_OK:
                return payload
            if status == proto.Action.BUSY and not retry_busy:
                raise _Busy(f"{self.name}: {command.name} answered BUSY")
            if status == proto.Action.BUSY and time.monotonic() < deadline:
                time.sleep(self.poll_s)
                continue
            reason = (
                proto.Action(status).name if status in proto.Action._value2member_map_ else status
            )
            raise StackShotError(
                f"{self.name}: {command.name} was refused ({reason}); check the controller "
                "is idle and in PC-control mode"
            )

    def _read_answer(self, command: proto.Command) -> tuple[int, bytes]:
        if not self._link.read_until_byte(proto.SYNC_ANSWER, self.timeout_s):
            raise StackShotError(
                f"{self.name}: no answer to {command.name} within {self.timeout_s:g} s; check "
                "that the controller is on and the cable is in"
            )
        header = self._link.read_exact(proto.HEADER_SIZE - 1, self.timeout_s)
        if len(header) < proto.HEADER_SIZE - 1:
            raise StackShotError(f"{self.name}: a truncated answer to {command.name}")
        answered, action, length = proto.parse_header(bytes([proto.SYNC_ANSWER]) + header)
        rest = self._link.read_exact(length + 1, self.timeout_s)  # data and trailer
        if answered != command or len(rest) < length + 1:
            raise StackShotError(
                f"{self.name}: a garbled answer to {command.name} (got command "
                f"0x{answered:04x}, {len(rest)} of {length + 1} bytes)"
            )
        return action, rest[:length]

    def _greet(self) -> None:
        self.firmware = self._identify()

    def _identify(self) -> str:
        try:
            text = self._exchange(proto.Command.SOFTWARE_STRING, proto.Action.READ, b"")
        except StackShotError:
            raise DeviceNotFoundError(
                f"no StackShot controller answers on {self.port} at {proto.BAUD} baud; check "
                "the cable, that the controller is switched on, and the udev rules"
            ) from None
        return text.decode("ascii", errors="replace").strip("\0 ")

    def status_word(self) -> int:
        """The controller's status bits (``STATUS_MOVING``, ``_SHUTTER``, ``_USER_ABORTED``)."""
        data = self._exchange(proto.Command.RAIL_STATUS, proto.Action.READ, b"")
        if not data:
            raise self._garbled(proto.Command.RAIL_STATUS, "no status bytes")
        return proto.parse_status(data)

    # -- Rail primitives ----------------------------------------------------------------------

    @property
    def _resolution_um(self) -> float:
        return 0.5  # float mm in the protocol; the motor step is finer on a StackShot rail

    def _read_position(self) -> float:
        command = proto.Command.RAIL_POSITION_CURRENT
        data = self._exchange(command, proto.Action.READ, bytes([proto.Units.METRIC]))
        if len(data) < 5:
            raise self._garbled(command, f"{len(data)} of 5 position bytes")
        mm = proto.parse_position(data)
        if not math.isfinite(mm):  # a move worked out from it would be NaN too
            raise self._garbled(command, f"position {mm}")
        return (-mm if self.reverse else mm) * 1000.0 + self._offset_um

    def _garbled(self, command: proto.Command, what: str) -> StackShotError:
        """A well-framed answer whose data cannot be what ``command`` returns: line noise."""
        return StackShotError(
            f"{self.name}: a garbled answer to {command.name} ({what}); check the cable and "
            "that no other program uses the port"
        )

    def _set_position(self, position_um: float) -> None:
        """Call where the carriage stands ``position_um`` (a resume: the last frame's place),
        by an offset to the controller's counter, which cannot be set but only zeroed."""
        self._offset_um = 0.0
        count = self._read_position()
        self._offset_um = position_um - count
        self._left_count_um = count

    def _move_absolute(self, target_um: float) -> None:
        """Move the difference to ``target_um``. While the carriage still runs (a keypad jog, a
        move whose answer was lost) the move waits, and is then worked out from where the
        carriage stopped: a distance taken while it ran, or the same distance resent after a
        BUSY answer, would overshoot by what it ran on."""
        deadline = time.monotonic() + self.busy_s
        while True:
            if self.status_word() & proto.STATUS_MOVING:
                self._still_busy(deadline)
                continue
            current = self._read_position()
            self._check_count(current - self._offset_um)
            delta = target_um - current
            self._left_count_um = target_um - self._offset_um
            if abs(delta) < 0.01:
                return
            forward = (delta > 0) != self.reverse
            direction = proto.Direction.FORWARD if forward else proto.Direction.BACK
            try:
                self._exchange(
                    proto.Command.RAIL_MOVE,
                    proto.Action.WRITE,
                    proto.move_data(direction, abs(delta) / 1000),
                    unless=self._motion.stopped,
                    retry_busy=False,
                )
                break
            except _Busy:
                self._still_busy(deadline)
        what = f"the move to {format_length(target_um)}"
        self._wait_idle(what, proto.STATUS_MOVING, self._motion.stopped)

    def _check_count(self, count_um: float) -> None:
        """Refuse to move when the counter reads 0 where the last move left it elsewhere.

        The controller restarts at 0 when its own supply dips, while its USB chip keeps the
        port open: the next move was worked out from 0 and the stack shifted by where the
        carriage stood. A keypad jog moves the counter with the carriage, and is harmless.
        """
        left = self._left_count_um
        if left is None or abs(count_um) > _COUNT_TOLERANCE_UM or abs(left) <= _COUNT_TOLERANCE_UM:
            return
        self._left_count_um = None
        self._unreferenced = (
            f"the controller's counter reads 0 where the last move left it at "
            f"{format_length(left)}: the controller restarted"
        )
        raise MotionError(
            f"{self.name}: position unknown ({self._unreferenced}); take where the carriage "
            "stands as the reference (--accept-position, if it has not moved) before moving"
        )

    def _still_busy(self, deadline: float) -> None:
        """Wait a poll for a busy controller, or give up at ``deadline``."""
        if time.monotonic() >= deadline:
            raise StackShotError(
                f"{self.name}: the controller stayed busy for {self.busy_s:g} s; check "
                "that nobody is driving the rail from its keypad"
            )
        time.sleep(self.poll_s)

    def _wait_idle(
        self, what: str, busy_bit: int, stopped: threading.Event, *, latched: bool = False
    ) -> None:
        """Wait until ``busy_bit`` clears; ``latched``: the keypad's stop bit was set before
        this began (a move stopped earlier), so it says nothing about this wait."""
        deadline = time.monotonic() + self.move_timeout_s
        while True:
            status = self.status_word()
            if status & proto.STATUS_USER_ABORTED and not latched:
                raise MotionError(
                    f"{self.name}: {what} was stopped on the controller itself, at "
                    f"{format_length(self._read_position())}"
                )
            if not status & busy_bit:
                break
            if time.monotonic() > deadline:
                self._halt()
                raise MotionError(
                    f"{self.name}: still busy after {self.move_timeout_s:g} s; stopped it"
                )
            time.sleep(self.poll_s)
        if stopped.is_set():
            raise MoveStoppedError(
                f"{self.name}: {what} stopped at {format_length(self._read_position())}"
            )

    def _halt(self) -> None:
        self._halt_requested.set()
        self._exchange(proto.Command.RAIL_STOP, proto.Action.WRITE, b"")

    # -- StackShot extras ---------------------------------------------------------------------

    def zero(self) -> None:
        """Make the carriage's current place position 0 on the controller's counter."""
        self._exchange(proto.Command.RAIL_POSITION_ZERO, proto.Action.WRITE, b"")
        self._offset_um = 0.0
        self._left_count_um = 0.0
        self._unreferenced = None

    def fire_shutter(self) -> None:
        """Pulse the controller's shutter cable once and wait until the pulse is over.

        The keypad's stop bit stays set until the next move: left by a move stopped before,
        it made a pulse that fired report 'stopped on the controller itself'."""
        self._halt_requested.clear()
        latched = bool(self.status_word() & proto.STATUS_USER_ABORTED)
        self._exchange(
            proto.Command.RAIL_SHUTTER_FIRE,
            proto.Action.WRITE,
            proto.shutter_data(1, self.pulse_s, 0.0),
        )
        self._wait_idle(
            "the shutter pulse", proto.STATUS_SHUTTER, self._halt_requested, latched=latched
        )
