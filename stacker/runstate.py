"""Where a stack run stands: one state type for whoever produces frames and whoever shows them.

The rig's session runner moves through the first six states as a state machine (see
:mod:`rig.session.state`); the live preview shows the same values, and ends on ``finished``,
``stopped`` (interrupted or aborted, resumable) or ``failed`` according to how the run ended.
``stacker`` defines it because ``rig`` may import ``stacker`` and never the reverse.
"""

from __future__ import annotations

import enum


class RunState(str, enum.Enum):
    """The state of a run, as the terminal display and the preview page show it."""

    WAITING = "waiting"
    """Nothing started yet (a session not yet running, a hot folder with no file)."""
    PREPARING = "preparing"
    """Rebuilding the stack from frames already on disk (a resumed session)."""
    RUNNING = "running"
    """Frames are arriving and being stacked."""
    STOPPING = "stopping"
    """A stop was requested; the frame in flight is being finished."""
    FINISHING = "finishing"
    """Capture is over; the stacking queue drains and the composite is written."""
    FINISHED = "finished"
    """The run is over. The session runner ends here however it ended; the preview shows an
    early end as ``stopped`` or ``failed`` instead."""
    STOPPED = "stopped"
    """Ended early on request; what was captured is kept and the run can resume."""
    FAILED = "failed"
    """Ended by a fault or an error."""

    def __str__(self) -> str:
        return self.value
