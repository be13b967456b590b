"""The live preview of a capture session: a :class:`SessionRunner`'s events feed a hub.

Progress comes from the runner's status snapshots (any thread), table rows from each captured
frame (capture thread), and previews from each merged frame (the stacking thread, where the
:class:`~stacker.preview.publisher.StackerPublisher` encodes them once and answers 100 % crop
requests). The stacking worker blocks between frames, so a crop clicked during capture is
answered after the next merged frame; once the session has ended and the worker thread has been
joined, crops are answered at once by the hub.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from rig.session.events import SessionListener
from rig.session.state import RunState, shown_state
from stacker.preview.hub import PreviewHub
from stacker.preview.publisher import StackerPublisher, attach_stacker
from stacker.preview.server import serve_preview

if TYPE_CHECKING:
    from rig.session.journal import FrameEntry
    from rig.session.runner import SessionResult, SessionRunner
    from rig.session.state import SessionStatus
    from rig.session.worker import StackJob, StackPreviews


class SessionPreview(SessionListener):
    """Publishes one session into ``hub``; :meth:`attach` it to a runner before ``run()``."""

    def __init__(self, hub: PreviewHub, *, title: str = "") -> None:
        self.hub = hub
        self.title = title
        self._runner: SessionRunner | None = None
        self._publisher: StackerPublisher | None = None

    def attach(self, runner: SessionRunner) -> SessionPreview:
        """Subscribe to ``runner``'s callbacks; the hub starts afresh for this session."""
        self._runner = runner
        self._publisher = None
        self.hub.reset(title=self.title or runner.folder.root.name)
        self.hub.update_progress(total=runner.plan.frames, units=runner.plan.units)
        runner.subscribe(self)
        return self

    def on_status(self, status: SessionStatus) -> None:
        # The session's own counts, after the stacker's (which the publisher gives with each
        # frame): they also count frames that could not be read, and a first frame the stack
        # started again without.
        self.hub.update_progress(
            state=shown_state(status.state, status.finish_reason),
            captured=status.captured,
            stacked=status.merged + status.rejected,
            merged=status.merged,
            rejected=status.rejected,
            total=status.total,
            position_um=status.position,
            eta_s=status.eta_s,
            message=status.message or (status.warnings[-1] if status.warnings else ""),
        )

    def on_frame_captured(self, entry: FrameEntry) -> None:
        self.hub.update_frame(
            entry.index,
            number=entry.index,
            name=entry.files[0].name if entry.files else "",
            position_um=entry.position,
        )

    def on_frame_merged(self, job: StackJob, record: Any, previews: StackPreviews) -> None:
        """On the stacking thread: encode previews, fill the row, answer pending crops."""
        runner = self._runner
        if runner is None or runner.stacker is None:
            return
        # A new stacker when the stack started again without a bad first frame.
        if self._publisher is None or self._publisher.stacker is not runner.stacker:
            self._publisher = attach_stacker(self.hub, runner.stacker)  # type: ignore[arg-type]
        row: dict[str, Any] = {"number": job.index}  # plans number frames from 1
        if job.replay and self._runner is not None:  # shot before a resume: no capture row
            row.update(position_um=self._runner.plan.position_of(job.index), replay=True)
        self._publisher.publish(record, previews=previews, index=job.index, row=row)

    def on_finished(self, result: SessionResult) -> None:
        state = shown_state(RunState.FINISHED, result.reason)
        message = str(result.error) if result.error is not None else ""
        publisher = self._publisher
        # Nothing follows: let go of the runner and the stacker (the hub keeps what it shows),
        # so that neither outlives the session in a reference cycle through this listener.
        self._runner = self._publisher = None
        # Completed and interrupted runs join the stacking thread before they end, and so
        # does any run that wrote its outputs: only then may the hub use the stacker.
        if publisher is not None and (
            result.reason.value in ("completed", "interrupted") or result.outputs
        ):
            publisher.finish(state, message)
        else:
            self.hub.crops.set_provider(None)
            self.hub.update_progress(state=state, message=message)


@contextlib.contextmanager
def session_preview(
    enabled: bool, host: str, port: int, *, out: TextIO | None = None
) -> Iterator[PreviewHub | None]:
    """For ``rig shoot/resume/demo/tether --preview``: a hub whose page is served while in the
    block (``None`` without ``--preview``); attach the session's runner with
    :class:`SessionPreview`. Enter it before making the session folder: a port already in use
    then stops the command with nothing left behind (a half-made session took the name).
    """
    if not enabled:
        yield None
        return
    hub = PreviewHub()
    server = serve_preview(hub, host, port, out=out)
    try:
        yield hub
    finally:
        server.stop()
