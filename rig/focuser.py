"""The focuser contract shared by focus rails and a camera's lens motor.

A shot plan does not care what moves focus: a GRBL rail, a Marlin board, the in-process
simulator or the lens's own autofocus motor all satisfy :class:`Focuser`. Positions are in the
focuser's ``units``: micrometres for rails (drivers convert to the millimetres G-code speaks),
lens steps for a camera's motor, which has no absolute scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Units = Literal["um", "steps"]


@dataclass(frozen=True)
class FocuserCapabilities:
    """What a focuser can do, so plans and the CLI can refuse what it cannot."""

    absolute: bool
    """True when the focuser knows where it is (after homing, for rails that home)."""
    units: Units = "um"
    can_home: bool = False
    min_position: float | None = None
    """Soft limits in ``units``; ``None`` where the focuser has none."""
    max_position: float | None = None
    min_step: float | None = None
    """The shortest move the focuser really makes, in ``units`` (Marlin drops moves under six
    motor steps); ``None`` when any move is made. Plans with a smaller step are refused."""
    motor_step: float | None = None
    """One motor step, in ``units``, where known: positions are rounded to it, so a plan with
    a finer step shoots frames at the same place (refused)."""
    backlash: float = 0.0
    """The take-up move past each target approached against ``approach`` (0: none)."""
    approach: str = "below"
    """The side every target is approached from (the last motion is towards it from there)."""
    unreferenced: str | None = None
    """Why positions are not tied to a known reference, or ``None`` when they are.

    A GRBL or Marlin board that restarted when its port was opened (an Arduino resets on DTR)
    counts from 0 wherever the carriage stands; a lens counts steps from where focus stood when
    the camera was opened. A session refuses to move until the focuser is homed or the user
    accepts the current position (``accept_position`` on rails and the lens focuser).
    """


@runtime_checkable
class Focuser(Protocol):
    """Something that moves the plane of focus. Every motion call returns once motion is done.

    ``move_to``/``move_by`` return only after the motion is complete and the settle delay has
    passed; ``stop`` halts at once and leaves the device safe (the bluesky meaning of
    ``stop(success=False)``), and stops a motion asked for before it that has not begun.

    ``stops_seen`` is :attr:`stops` when the caller decided to move (by default, when the call
    starts): a stop counted after it stops the motion before it begins. The station reads the
    count where its Stop button can see the move, so a Stop pressed in between is not lost. (A
    driver of another package written before these two is moved without them.)
    """

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> FocuserCapabilities: ...

    @property
    def position(self) -> float: ...

    @property
    def stops(self) -> int:
        """How many times :meth:`stop` has been called."""

    def move_to(self, position: float, *, stops_seen: int | None = None) -> None: ...

    def move_by(self, delta: float) -> None: ...

    def home(self, *, stops_seen: int | None = None) -> None: ...

    def accept_position(self, position: float | None = None) -> None:
        """Clear ``capabilities.unreferenced``: the current position (or ``position``) is right."""

    def stop(self) -> None: ...

    def close(self) -> None: ...
