"""The live preview of a hot-folder watch: callbacks for :func:`stacker.watch.watch_and_stack`.

The watch merges on the thread that iterates the hot folder and then waits, often for minutes,
for the photographer's next frame. So crops are not only answered after each frame: whenever the
watch reports ``waiting`` the stacker is lent to the hub (crops run on the asking thread), and any
other state (``merging``, ``writing``) takes it back first, waiting for a crop in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stacker.preview.hub import PreviewHub
from stacker.preview.publisher import StackerPublisher, attach_stacker

if TYPE_CHECKING:
    from stacker.watch import MergedFrame, WatchStatus


class WatchPreview:
    """Pass :meth:`on_frame` and :meth:`on_status` to ``watch_and_stack`` to feed ``hub``."""

    def __init__(self, hub: PreviewHub) -> None:
        self.hub = hub
        self.publisher: StackerPublisher | None = None

    def on_frame(self, frame: MergedFrame) -> None:
        """After each frame went through the stacker (merged or not)."""
        if self.publisher is None:
            self.publisher = attach_stacker(self.hub, frame.stacker)
        self.publisher.publish(frame.record, frame_shape=frame.image.shape)

    def on_status(self, status: WatchStatus) -> None:
        """After every change of the watch's status; lends the stacker out while waiting."""
        if self.publisher is not None:
            if status.state == "done":
                self.publisher.finish()
            elif status.state == "waiting":
                self.publisher.idle()
            else:
                self.publisher.busy()
        self.hub.update_progress(
            captured=status.seen,
            message=status.last_problem or "",
            **({"title": status.folder.name} if not self.hub.progress.title else {}),
        )
