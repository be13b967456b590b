"""Behaviour every focus rail shares, written once: limits, backlash, settling, stopping.

A driver (GRBL, Marlin, the simulator) only knows how to reach an absolute position, report
where it is, home and halt. :class:`Rail` turns that into the :class:`~rig.focuser.Focuser`
contract:

* **Soft limits.** A target outside ``[min_um, max_um]`` is refused with a
  :class:`~rig.errors.MotionError` before anything moves.
* **Backlash.** Lead screws and belts have slack, so a position reached going up is not quite the
  position reached going down. Every target is approached from the same side (``approach``):
  with ``approach="below"`` the last motion before arriving is always upwards; a downward move
  goes ``backlash_um`` past the target and comes back up. GRBL and most Marlin builds do no
  backlash compensation themselves, so the host does it.
* **Settling.** ``move_to`` returns only after motion is complete *and* ``settle_s`` has passed,
  so the camera never shoots a vibrating subject.
* **Stopping.** :meth:`Rail.stop` may be called from any thread; it halts at once, and a move in
  progress raises :class:`~rig.errors.MotionError` saying where the rail stopped.
* **Reference.** A driver that sees its controller restart when the port opens (an Arduino
  resets on DTR and then counts from 0 wherever the carriage stands) records why in
  ``capabilities.unreferenced``; :meth:`Rail.home` or :meth:`Rail.accept_position` (the user
  saying the current position, or a given one, is right) clears it. Sessions refuse to start
  while it is set.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rig.errors import MotionError, RigError
from rig.focuser import FocuserCapabilities
from rig.units import MAX_LENGTH_UM, format_length
from stacker.launch import WAKE_S

Approach = Literal["below", "above"]


class ConnectionLostError(RigError):
    """The serial link to a rail controller broke (cable unplugged, board reset, port gone)."""

    exit_code = 6  # a rail fault, not input to fix (the README's exit statuses)


class MoveStoppedError(MotionError):
    """A move ended early because :meth:`Rail.stop` was called."""


@dataclass(frozen=True)
class RailOptions:
    """Host-side behaviour common to every rail (positions in micrometres).

    Attributes
    ----------
    backlash_um
        Overshoot used to take up slack so every target is approached from ``approach``; 0
        disables compensation.
    approach
        ``"below"``: the final motion onto a target is always upwards (increasing position);
        ``"above"``: always downwards.
    settle_s
        Seconds to wait after motion is complete before a move returns.
    min_um, max_um
        Soft limits; ``None`` means unbounded on that side.
    """

    backlash_um: float = 0.0
    approach: Approach = "below"
    settle_s: float = 0.0
    min_um: float | None = None
    max_um: float | None = None

    def __post_init__(self) -> None:
        if self.backlash_um < 0:
            raise RigError(f"backlash must not be negative (got {self.backlash_um} um)")
        if self.settle_s < 0:
            raise RigError(f"settle time must not be negative (got {self.settle_s} s)")
        if self.approach not in ("below", "above"):
            raise RigError(f"approach must be 'below' or 'above' (got {self.approach!r})")
        if self.min_um is not None and self.max_um is not None and self.min_um > self.max_um:
            raise RigError(
                f"soft limits are reversed: min {format_length(self.min_um)} is above "
                f"max {format_length(self.max_um)}"
            )


@dataclass
class _MotionState:
    last_direction: int = 0
    """+1 / -1: direction of the last completed motion; 0 when unknown (start, after a stop)."""
    stopped: threading.Event = field(default_factory=threading.Event)
    stops: int = 0
    """Stops asked for so far: a move asked for before the latest is not begun (Rail._begin)."""


class Rail(ABC):
    """Base of every focus-rail driver; positions are micrometres.

    Subclasses implement the ``_``-prefixed primitives; everything else (limits, backlash,
    settle, stop handling, context management) lives here.
    """

    def __init__(self, name: str, options: RailOptions) -> None:
        self._name = name
        self.options = options
        self._motion = _MotionState()
        self._move_lock = threading.Lock()
        self._unreferenced: str | None = None
        self.position_accepted = False
        """The positions count from a place taken as the reference (:meth:`accept_position`)
        since this rail was opened, not from its home switch (:meth:`home`)."""
        self.on_leg: Callable[[float], None] | None = None
        """Told each leg's target before the controller is, when a move takes more than one
        (the backlash overshoot and back): a session journals it, as a run killed during the
        first leg leaves the carriage at the overshoot, not at the target."""
        """Why the position is not tied to a known reference (see the module docstring)."""

    # -- primitives a driver provides ---------------------------------------------------------

    @abstractmethod
    def _read_position(self) -> float:
        """Current position in micrometres, asked of the device."""

    @abstractmethod
    def _move_absolute(self, target_um: float) -> None:
        """Go straight to ``target_um`` and return when motion is complete.

        Raise :class:`MoveStoppedError` when halted by :meth:`_halt`, :class:`MotionError` on
        any other failure.
        """

    @abstractmethod
    def _home(self) -> None:
        """Run the device's homing cycle and return when done."""

    @abstractmethod
    def _halt(self) -> None:
        """Stop motion immediately and leave the device safe; called from any thread."""

    @abstractmethod
    def _close(self) -> None:
        """Release the port or other resources."""

    # A driver whose answer never changes sets these two as class attributes.

    @property
    @abstractmethod
    def _can_home(self) -> bool:
        """Whether :meth:`_home` can find a reference (a limit switch)."""

    @property
    @abstractmethod
    def _absolute(self) -> bool:
        """Whether the device knows where it is (after homing, for rails that home)."""

    @property
    def _resolution_um(self) -> float:
        """Smallest position step the device can make (a motor step); arrival tolerance."""
        return 0.0

    @property
    def _min_move_um(self) -> float:
        """Shortest move the controller really makes (Marlin drops shorter ones); 0: any."""
        return 0.0

    @property
    def _motor_step_um(self) -> float:
        """One motor step in micrometres, where the controller says (0: unknown)."""
        return 0.0

    def _travel_limits(self) -> tuple[float | None, float | None]:
        """The controller's own soft limits (µm) where it enforces them, else ``None``."""
        return None, None

    def _limits(self) -> tuple[float | None, float | None]:
        """The tighter of the configured soft limits and the controller's own."""
        low, high = self.options.min_um, self.options.max_um
        dev_low, dev_high = self._travel_limits()
        if dev_low is not None:
            low = dev_low if low is None else max(low, dev_low)
        if dev_high is not None:
            high = dev_high if high is None else min(high, dev_high)
        return low, high

    def _ready_check(self) -> None:  # noqa: B027 - optional hook, most drivers need none
        """Raise a :class:`MotionError` when the device cannot move now (e.g. in alarm)."""

    def setup_warnings(self) -> list[str]:
        """Controller settings that spoil a stack, each with what to do (none by default)."""
        return []

    def _set_position(self, position_um: float) -> None:
        """Make the device call where the carriage stands ``position_um``, without moving."""
        raise MotionError(f"{self.name} cannot be told where it is; home it instead")

    def _reference_problem(self) -> str | None:
        """Why the position is not referenced (drivers may add their own reasons)."""
        return self._unreferenced

    # -- the Focuser API ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> FocuserCapabilities:
        return FocuserCapabilities(
            absolute=self._absolute,
            units="um",
            can_home=self._can_home,
            min_position=self._limits()[0],
            max_position=self._limits()[1],
            unreferenced=self._reference_problem(),
            min_step=self._min_move_um or None,
            motor_step=self._motor_step_um or None,
            backlash=self.options.backlash_um,
            approach=self.options.approach,
        )

    @property
    def position(self) -> float:
        """Current position in micrometres."""
        return self._read_position()

    @property
    def stops(self) -> int:
        """How many times :meth:`stop` has been called (see ``stops_seen``)."""
        return self._motion.stops

    def move_to(self, position: float, *, stops_seen: int | None = None) -> None:
        """Move to ``position`` µm, approaching from the configured side, then settle; a stop
        after the ``stops_seen``-th (:attr:`stops` as the call starts) stops it.

        Raises
        ------
        MotionError
            Before any motion when ``position`` is outside the soft limits; during the move on
            an alarm, a stop or a lost position.
        """
        asked = self._motion.stops if stops_seen is None else stops_seen
        position = float(position)
        self._check_limits(position)
        self._ready_check()
        with self._move_lock:
            self._begin(asked, f"move to {format_length(position)}")
            current = self._read_position()
            path = self._approach_path(current, position)
            self._check_min_move(current, path)
            for waypoint in path:
                if self.on_leg is not None and len(path) > 1:
                    self.on_leg(waypoint)  # a journal's write: a stop may come meanwhile
                self._raise_if_stopped(position)
                direction = 1 if waypoint > current else -1 if waypoint < current else 0
                try:
                    self._move_absolute(waypoint)
                except MotionError:
                    self._motion.last_direction = 0
                    raise
                if direction:
                    self._motion.last_direction = direction
                current = waypoint
            self._verify_arrival(position)
            if self.options.settle_s > 0 and self._stopped_within(self.options.settle_s):
                self._raise_if_stopped(position)

    def move_by(self, delta: float) -> None:
        """Move ``delta`` µm relative to the current position (same rules as :meth:`move_to`)."""
        self.move_to(self._read_position() + delta)

    def home(self, *, stops_seen: int | None = None) -> None:
        """Run the homing cycle; afterwards the position is known. ``stops_seen`` as for
        :meth:`move_to`."""
        if not self._can_home:
            raise MotionError(
                f"{self.name} cannot home (no homing cycle configured): take where it stands as "
                "the reference with --accept-position instead"
            )
        asked = self._motion.stops if stops_seen is None else stops_seen
        with self._move_lock:
            self._begin(asked, "homing")
            self._home()
            self._motion.last_direction = 0
            self._unreferenced = None
            self.position_accepted = False

    def accept_position(self, position: float | None = None) -> None:
        """Take the current position as the reference instead of homing.

        With ``position`` (µm), first tell the device that the carriage stands there now
        (nothing moves): after a controller restart, the place the last frame was shot.
        """
        if position is not None:
            with self._move_lock:
                self._set_position(float(position))
        self._unreferenced = None
        self.position_accepted = True

    def stop(self) -> None:
        """Halt at once and leave the rail safe; a move in progress raises MoveStoppedError, as
        does one asked for before the stop that has not begun yet."""
        self._motion.stops += 1  # before the flag is set: see _begin
        self._motion.stopped.set()
        self._halt()
        self._motion.last_direction = 0

    def close(self) -> None:
        """Release the device."""
        self._close()

    def __enter__(self) -> Rail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- helpers ------------------------------------------------------------------------------

    def _check_min_move(self, current: float, path: list[float]) -> None:
        """Refuse, before anything moves, a move the controller would silently drop."""
        shortest = self._min_move_um
        for waypoint in path:
            if 0 < abs(waypoint - current) < shortest - 1e-6:
                raise MotionError(
                    f"{self.name}: a move of {format_length(abs(waypoint - current))} is below "
                    f"the controller's smallest move, {format_length(shortest)}; it would be "
                    "merged into the next one. Use steps of at least that; nothing moved"
                )
            current = waypoint

    def _check_limits(self, target: float) -> None:
        if not abs(target) <= MAX_LENGTH_UM:  # no soft limits set: still no runaway
            raise MotionError(
                f"{self.name}: target {format_length(target)} is beyond any focus rail's reach; "
                "nothing moved"
            )
        low, high = self._limits()
        if (low is not None and target < low) or (high is not None and target > high):
            span = (
                f"{format_length(low) if low is not None else 'no limit'} .. "
                f"{format_length(high) if high is not None else 'no limit'}"
            )
            raise MotionError(
                f"{self.name}: target {format_length(target)} is outside the soft limits {span}; "
                "nothing moved"
            )

    def _approach_path(self, current: float, target: float) -> list[float]:
        """Waypoints that end on ``target`` with the final motion in the approach direction."""
        backlash = self.options.backlash_um
        sign = 1 if self.options.approach == "below" else -1
        delta = target - current
        if backlash <= 0:
            return [target] if delta else []
        moving_with = delta * sign > 0
        slack_taken = self._motion.last_direction == sign or abs(delta) >= backlash
        if moving_with and slack_taken:
            return [target]
        if not delta and self._motion.last_direction == sign:
            return []
        overshoot = target - sign * backlash
        low, high = self._limits()  # an overshoot past a limit would fault (or be clamped)
        if low is not None:
            overshoot = max(overshoot, low)
        if high is not None:
            overshoot = min(overshoot, high)
        return [overshoot, target] if overshoot != target else [target]

    def _begin(self, asked: int, what: str) -> None:
        """Clear the stop flag for a motion asked for when ``asked`` stops had come, unless one
        came since: it was meant for this motion, which was still waiting for the rail or
        reading the controller's state. Clearing the flag lost it, and a jog the station's Stop
        was pressed for, answered "stopped", then ran its whole way. The flag is cleared before
        the count is compared, so a stop between the two is seen by one or the other."""
        self._motion.stopped.clear()
        if self._motion.stops != asked:
            self._motion.stopped.set()
            raise MoveStoppedError(f"{self.name}: {what} stopped before it began")

    def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for :meth:`stop`; whether it came. Awake every
        :data:`~stacker.launch.WAKE_S` for a stop signal: a driver sleeps out a move this way."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._motion.stopped.wait(min(left, WAKE_S)):
                return True
        return self._motion.stopped.is_set()

    def _raise_if_stopped_before_moving(self) -> None:
        """For a driver about to tell its controller to move, having cleared a halt of its own:
        a stop that came since the rail last looked stops the move here (it cleared its halt)."""
        if self._motion.stopped.is_set():
            raise MoveStoppedError(f"{self.name}: stopped before moving")

    def _raise_if_stopped(self, target: float) -> None:
        if self._motion.stopped.is_set():
            raise MoveStoppedError(
                f"{self.name}: move to {format_length(target)} stopped at "
                f"{format_length(self._read_position())}"
            )

    def _verify_arrival(self, target: float) -> None:
        self._raise_if_stopped(target)
        tolerance = self._resolution_um + 0.01
        actual = self._read_position()
        if abs(actual - target) > tolerance:
            raise MotionError(
                f"{self.name}: move to {format_length(target)} ended at "
                f"{format_length(actual)} (controller stopped short)"
            )
