"""The session state machine and the frozen status snapshot its subscribers receive.

States move one way::

    WAITING ──▶ PREPARING ──▶ RUNNING ──▶ STOPPING ──▶ FINISHING ──▶ FINISHED
                              └──────────────(fault)──────────────┘

``PREPARING`` rebuilds the stacker from frames already on disk (resume); ``STOPPING`` means a stop
was requested and the frame in flight is being finished; ``FINISHING`` drains the stacking queue
and writes the composite. Why a session finished is a :class:`FinishReason`, which maps to the
command's exit code. :class:`~stacker.runstate.RunState` is shared with the live preview, which
also shows how a finished session ended (:func:`shown_state`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from stacker.errors import UserError
from stacker.runstate import RunState

__all__ = [
    "FinishReason",
    "RunState",
    "SessionResult",
    "SessionStatus",
    "can_transition",
    "exit_code",
]


class FinishReason(str, enum.Enum):
    """Why a session ended; :func:`exit_code` turns it into the command's exit status."""

    COMPLETED = "completed"
    """Every planned position has its frame and the composite is written."""
    INTERRUPTED = "interrupted"
    """Stopped on request (Ctrl-C, SIGTERM); journal and composite written; resumable."""
    ABORTED = "aborted"
    """Stopped at once (second Ctrl-C); journal consistent, composite not written; resumable."""
    FAULT = "fault"
    """A camera or rail fault that retries could not clear; resumable once fixed."""
    ERROR = "error"
    """An unexpected error (a bug); the journal is still consistent."""


_ALLOWED: dict[RunState, frozenset[RunState]] = {
    RunState.WAITING: frozenset({RunState.PREPARING, RunState.FINISHING}),
    RunState.PREPARING: frozenset({RunState.RUNNING, RunState.STOPPING, RunState.FINISHING}),
    RunState.RUNNING: frozenset({RunState.STOPPING, RunState.FINISHING}),
    RunState.STOPPING: frozenset({RunState.FINISHING}),
    RunState.FINISHING: frozenset({RunState.FINISHED}),
    RunState.FINISHED: frozenset(),
}


def can_transition(current: RunState, new: RunState) -> bool:
    """True when the state machine allows ``current`` → ``new``."""
    return new in _ALLOWED.get(current, frozenset())


def shown_state(state: RunState, reason: FinishReason | None) -> RunState:
    """The state the preview shows: a finished session as finished, stopped or failed."""
    if state is not RunState.FINISHED or reason is None:
        return state
    if reason in (FinishReason.INTERRUPTED, FinishReason.ABORTED):
        return RunState.STOPPED
    if reason in (FinishReason.FAULT, FinishReason.ERROR):
        return RunState.FAILED
    return RunState.FINISHED


DEVICE_FAULT_EXIT = 6
"""Exit code of a device fault that has no more specific code (camera I/O, lost serial link)."""


def exit_code(reason: FinishReason, error: BaseException | None = None) -> int:
    """0 complete, 130 interrupted or aborted, 3/4/5/6 device faults, 1 a bug.

    A fault keeps the error's own code where it has a specific one (3 device not found, 4 busy,
    5 motion refused or alarm); any other device fault is 6, never 2, which means bad input.
    """
    if reason is FinishReason.COMPLETED:
        return 0
    if reason in (FinishReason.INTERRUPTED, FinishReason.ABORTED):
        return 130
    if reason is FinishReason.FAULT:
        code = error.exit_code if isinstance(error, UserError) else DEVICE_FAULT_EXIT
        return DEVICE_FAULT_EXIT if code == UserError.exit_code else code
    return 1


@dataclass(frozen=True)
class SessionStatus:
    """A snapshot of a running session, safe to hand to any thread (display, web preview)."""

    state: RunState
    total: int
    captured: int
    """Frames on disk (including ones kept from before a resume)."""
    merged: int
    """Frames the stacker has merged."""
    rejected: int = 0
    """Frames the stacker kept out (could not be aligned)."""
    queued: int = 0
    current_index: int | None = None
    position: float | None = None
    units: str = "um"
    last_score: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    finish_reason: FinishReason | None = None
    message: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def done(self) -> bool:
        return self.state is RunState.FINISHED

    @property
    def counted(self) -> str:
        """``captured/total``, or only ``captured`` for a tether session without a frame count
        (it ends when the camera stops shooting: its plan holds the most frames a plan may)."""
        from rig.plan import MAX_FRAMES

        if self.units == "frames" and self.total >= MAX_FRAMES:
            return str(self.captured)
        return f"{self.captured}/{self.total}"


@dataclass(frozen=True)
class SessionResult:
    """How a run ended: the reason, the error behind a fault, and the files written."""

    reason: FinishReason
    status: SessionStatus
    error: BaseException | None = None
    outputs: tuple[Path, ...] = ()

    @property
    def exit_code(self) -> int:
        return exit_code(self.reason, self.error)
