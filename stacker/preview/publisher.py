"""Publishing a :class:`~stacker.stack.Stacker`'s progress to a :class:`PreviewHub`.

The stacking worker thread (the one that calls ``Stacker.add``) calls
:meth:`StackerPublisher.publish` after each add: it encodes the three small previews to JPEG
once, fills in the frame's table row and the counts, and answers any pending 100 % crop
requests, all on that thread, as the stacker requires. Web clients then only ever read bytes.

Typical use in a worker loop::

    publisher = attach_stacker(hub, stacker)
    while (item := next_frame(timeout=0.2)) is not DONE:
        if item is None:            # no frame yet: answer crop clicks while idle
            publisher.serve_crops()
            continue
        publisher.add(item.image, name=item.name, position_um=item.position)
    publisher.finish()              # hand crops over to the hub; the page shows "finished"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from stacker.errors import StackerError
from stacker.metadata import Metadata, embed_metadata
from stacker.preview.hub import CropResult, PreviewHub
from stacker.runstate import RunState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PREVIEW_JPEG_QUALITY = 80
CROP_JPEG_QUALITY = 92


class _Record(Protocol):
    """The part of :class:`stacker.stack.FrameRecord` the publisher shows."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def position_um(self) -> float | None: ...
    @property
    def merged(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def score(self) -> float: ...
    @property
    def seconds(self) -> float: ...


class StackerLike(Protocol):
    """The part of :class:`stacker.stack.Stacker` a stacking loop and its previews use."""

    display: Callable[[np.ndarray], np.ndarray] | None
    """How the previews show a linear (RAW) stack (:attr:`stacker.stack.Stacker.display`)."""
    icc: bytes | None
    """The frames' ICC profile, which the previews carry (:attr:`stacker.stack.Stacker.icc`)."""

    @property
    def frames_merged(self) -> int: ...

    def add(
        self,
        image: np.ndarray,
        name: str = "",
        position_um: float | None = None,
        *,
        linear: bool = False,
        number: int | None = None,
    ) -> Any: ...

    def preview(self) -> np.ndarray | None: ...

    def preview_depth(self) -> np.ndarray | None: ...

    def last_frame_preview(self) -> np.ndarray | None: ...


class _Stacker(StackerLike, Protocol):
    """The part of :class:`stacker.stack.Stacker` the publisher uses."""

    @property
    def frames_added(self) -> int: ...

    def crop(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]: ...


class _Previews(Protocol):
    @property
    def composite(self) -> np.ndarray | None: ...

    @property
    def depth(self) -> np.ndarray | None: ...

    @property
    def last_frame(self) -> np.ndarray | None: ...


def encode_jpeg(
    img: np.ndarray, quality: int = PREVIEW_JPEG_QUALITY, icc: bytes | None = None
) -> tuple[bytes, int, int]:
    """Encode a BGR (or grey) image as JPEG, carrying the ICC profile ``icc`` of the colour
    space its pixels are in (None: sRGB); returns ``(bytes, width, height)``."""
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / 65535.0)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise StackerError(f"could not encode a {img.shape} preview as JPEG")
    data = buf.tobytes()
    if icc:
        data = embed_metadata(data, ".jpg", Metadata(icc=icc))
    return data, int(img.shape[1]), int(img.shape[0])


class StackerPublisher:
    """Pushes one stacker's previews, counts and frame rows into a hub, from the worker thread.

    Every method must be called on the thread that owns the stacker (the one calling ``add``),
    except that none may be called after :meth:`finish`.
    """

    def __init__(self, hub: PreviewHub, stacker: _Stacker, *, depth: bool = True) -> None:
        self.hub = hub
        self.stacker = stacker
        self.depth = depth
        self._frame_size: tuple[int, int] | None = None  # (width, height) of full frames

    def add(self, image: np.ndarray, **frame: Any) -> Any:
        """``stacker.add(image, **frame)``, then :meth:`publish`; returns the frame's record.

        ``frame`` is what :meth:`stacker.stack.Stacker.add` takes besides the image: ``name``,
        ``position_um``, ``linear``, ``number``.
        """
        self.busy()
        record = self.stacker.add(image, **frame)
        self.publish(record, frame_shape=image.shape)
        return record

    def publish(
        self,
        record: _Record | None = None,
        *,
        previews: _Previews | None = None,
        index: int | None = None,
        row: Mapping[str, Any] | None = None,
        frame_shape: Sequence[int] | None = None,
    ) -> None:
        """Publish the stacker's state after an add; ``record`` is what ``add`` returned.

        ``previews`` passes preview arrays the caller already computed (anything with
        ``composite``, ``depth`` and ``last_frame`` attributes, such as the session worker's
        ``StackPreviews``); without it they are asked from the stacker. ``index`` numbers the
        table row (default: the record's arrival index; a session passes its plan index) and
        ``row`` adds fields of the caller's own to it.
        ``frame_shape`` gives the full resolution for stackers that do not report ``shape``.
        """
        self.hub.crops.reclaim()
        if self._frame_size is None:
            shape = getattr(self.stacker, "shape", None) or frame_shape
            if shape is not None:
                self._frame_size = (int(shape[1]), int(shape[0]))
                self.hub.crops.set_provider(self._crop)
        if previews is not None:
            composite, last, depth = previews.composite, previews.last_frame, previews.depth
        else:
            composite = self.stacker.preview()
            last = self.stacker.last_frame_preview()
            depth = self.stacker.preview_depth() if self.depth else None
        # Encode outside the hub's lock: readers never wait for JPEG encoding.
        icc = self.stacker.icc
        images = {
            "composite": encode_jpeg(composite, icc=icc) if composite is not None else None,
            "last": encode_jpeg(last, icc=icc) if last is not None else None,
            "depth": encode_jpeg(depth) if depth is not None and self.depth else None,
        }
        added, merged = self.stacker.frames_added, self.stacker.frames_merged
        with self.hub.batch():
            self.hub.set_images(**images)
            changes: dict[str, Any] = {
                "stacked": added,
                "merged": merged,
                "rejected": added - merged,
            }
            if self.hub.progress.state is RunState.WAITING:
                changes["state"] = RunState.RUNNING
            self.hub.update_progress(**changes)
            if record is not None:
                fields: dict[str, Any] = {
                    "name": record.name,
                    "merged": bool(record.merged),
                    "reason": record.reason,
                    "score": round(float(record.score), 4),
                    "seconds": round(float(record.seconds), 3),
                }
                if record.position_um is not None:  # keep a position the producer already gave
                    fields["position_um"] = record.position_um
                fields.update(row or {})
                self.hub.update_frame(record.index if index is None else index, **fields)
        self.hub.crops.serve()

    def serve_crops(self, timeout: float = 0.0) -> int:
        """Answer pending crop requests; with ``timeout`` it doubles as the idle worker's sleep."""
        return self.hub.crops.serve(timeout)

    def idle(self) -> None:
        """The worker goes idle (waiting for files): crops may run on the asking thread meanwhile.

        The next :meth:`publish` (or :meth:`busy`) takes the stacker back first.
        """
        self.hub.crops.release()

    def busy(self) -> None:
        """The worker is about to use the stacker again (call before ``stacker.add``)."""
        self.hub.crops.reclaim()

    def finish(self, state: RunState = RunState.FINISHED, message: str = "") -> None:
        """The worker is done with the stacker: crops are now served by the hub directly."""
        self.hub.crops.release()
        self.hub.update_progress(state=state, message=message)

    def _crop(self, fx: float, fy: float, size: int) -> CropResult:
        """A ``size`` square 100 % crop centred at fractions ``fx, fy`` of the full frame."""
        if self._frame_size is None:  # pragma: no cover - the provider is set with the size
            raise StackerError("no frame has been stacked yet")
        width, height = self._frame_size
        w, h = min(size, width), min(size, height)
        x = int(np.clip(round(fx * width - w / 2), 0, width - w))
        y = int(np.clip(round(fy * height - h / 2), 0, height - h))
        composite, last = self.stacker.crop(x, y, w, h)
        return CropResult(
            composite_jpeg=encode_jpeg(composite, CROP_JPEG_QUALITY, self.stacker.icc)[0],
            last_jpeg=encode_jpeg(last, CROP_JPEG_QUALITY, self.stacker.icc)[0],
            x=x,
            y=y,
            width=int(composite.shape[1]),
            height=int(composite.shape[0]),
            frame_width=width,
            frame_height=height,
        )


def attach_stacker(hub: PreviewHub, stacker: _Stacker, *, depth: bool = True) -> StackerPublisher:
    """Connect ``stacker`` to ``hub``: call the returned publisher's ``add``/``publish`` per frame.

    Call this on the stacker's worker thread; set ``depth=False`` to skip the depth preview.
    """
    return StackerPublisher(hub, stacker, depth=depth)
