"""The live preview of a hot-folder watch: callbacks for :func:`stacker.watch.watch_and_stack`.

The watch merges on the thread that iterates the hot folder and then waits, often for minutes,
for the photographer's next frame. So crops are not only answered after each frame: whenever the
watch reports ``waiting`` the stacker is lent to the hub (crops run on the asking thread), and any
other state (``merging``, ``writing``) takes it back first, waiting for a crop in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stacker.lonefirst import left_out_reason
from stacker.preview.hub import PreviewHub
from stacker.preview.publisher import StackerPublisher, attach_stacker
from stacker.preview.server import serve_preview

if TYPE_CHECKING:
    from stacker.watch import MergedFrame, WatchStatus


class WatchPreview:
    """Pass :meth:`on_frame` and :meth:`on_status` to ``watch_and_stack`` to feed ``hub``.

    With ``hub=None`` (no preview asked for) both callbacks do nothing.
    """

    def __init__(self, hub: PreviewHub | None) -> None:
        self.hub = hub
        self.publisher: StackerPublisher | None = None
        self._message = ""  # the page's line: the latest warning or problem
        self._problem: str | None = None  # the watch's last problem, as last seen

    def on_warning(self, message: str) -> None:
        """A warning the terminal shows (a frame kept out, frames landing in a subfolder, a
        HEIC file, frames a stop left unstacked): the page shows it too, until the next. The
        page is how a photographer away from the terminal follows the watch, and it said
        nothing of frames that would never be stacked."""
        if self.hub is None:
            return
        self._message = " ".join(message.split())
        self.hub.update_progress(message=self._message)

    def on_frame(self, frame: MergedFrame) -> None:
        """After each frame went through the stacker (merged or not)."""
        if self.hub is None:
            return
        if self.publisher is not None and self.publisher.stacker is not frame.stacker:
            self._started_again(frame.index)
            self.publisher = None
        if self.publisher is None:
            self.publisher = attach_stacker(self.hub, frame.stacker)
        self.publisher.publish(frame.record, frame_shape=frame.image.shape, index=frame.index)

    def _started_again(self, first: int) -> None:
        """The watch started its stack again without its first frame, from frame ``first``:
        that frame's row says it was left out, and the frames stacked again keep their rows
        and numbers (their outcome is published anew)."""
        assert self.hub is not None
        self.hub.crops.set_provider(None)  # the old stacker's buffers are gone
        rows = self.hub.snapshot().frames
        dropped = [row["index"] for row in rows if row.get("merged") and row["index"] < first]
        for index in dropped:
            kept = sum(row["index"] > index for row in rows)
            self.hub.update_frame(index, merged=False, reason=left_out_reason(kept))

    def also(self, callback: Callable[[WatchStatus], None]) -> Callable[[WatchStatus], None]:
        """An ``on_status`` that calls ``callback`` (the terminal display) and then this one."""

        def both(status: WatchStatus) -> None:
            callback(status)
            self.on_status(status)

        return both

    def on_status(self, status: WatchStatus) -> None:
        """After every change of the watch's status; lends the stacker out while waiting."""
        if self.hub is None:
            return
        if self.publisher is not None:
            if status.state == "done":
                self.publisher.finish()
            elif status.state == "waiting":
                self.publisher.idle()
            else:
                self.publisher.busy()
        # The watch's own counts, after the stacker's (which the publisher gives with each
        # frame): they also count frames that did not fit the stack, and a first frame the
        # stack started again without.
        self.hub.update_progress(
            captured=status.seen,
            stacked=status.merged + status.rejected,
            merged=status.merged,
            rejected=status.rejected,
            message=self._latest(status.last_problem),
            **({"title": status.folder.name} if not self.hub.progress.title else {}),
        )

    def _latest(self, problem: str | None) -> str:
        """The page's line: the watch's problem when it changed, else the latest warning."""
        if problem != self._problem:
            self._problem = problem
            if problem:
                self._message = problem
        return self._message


@contextlib.contextmanager
def serve_watch_preview(
    enabled: bool, host: str, port: int, folder: str | Path, *, out: TextIO | None = None
) -> Iterator[WatchPreview]:
    """For ``stacker watch --preview``: serve the page (printing its address) while in the block."""
    if not enabled:
        yield WatchPreview(None)
        return
    hub = PreviewHub(title=Path(folder).name)
    hub.update_progress(units="none")  # frames come from elsewhere: no rail to show
    server = serve_preview(hub, host, port, out=out)
    try:
        yield WatchPreview(hub)
    finally:
        server.stop()
