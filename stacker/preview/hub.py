"""The preview hub: thread-safe state that producers push to and the preview server reads.

Producers (the stacking worker through :mod:`stacker.preview.publisher`, a capture session, a hot
folder watcher) push small, already-encoded JPEG previews, progress numbers and per-frame rows.
Readers (the web server, a terminal view, tests) take cheap snapshots. Nothing in here touches
pixels: images are stored as the JPEG bytes the producer encoded once per merged frame, so any
number of browsers costs the capture loop nothing.

Every change bumps a single ``version`` counter. Each image and each frame row remembers the
version at which it last changed, so a reader that has seen version ``v`` asks for
``snapshot(since=v)`` and receives only the rows that changed after it. Readers learn about
changes either by blocking in :meth:`PreviewHub.wait` (threads) or through :meth:`subscribe`
callbacks (the event-loop based server wakes its server-sent-event streams this way).

Crops at 100 % are different: they need the full-resolution stack, which only the stacking worker
thread may touch. See :class:`CropBroker` for how a crop request reaches that thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal

from stacker.errors import UserError
from stacker.runstate import RunState
from stacker.subscribers import SubscriberList

IMAGE_KINDS = ("composite", "last", "depth")


class CropUnavailableError(UserError):
    """A 100 % crop cannot be made: no stack yet, or the stacking worker did not answer in time."""


@dataclass(frozen=True)
class Progress:
    """Where a stack stands. ``None`` means unknown (no plan, no rail, no estimate yet)."""

    state: RunState = RunState.WAITING
    """What the run is doing (the page's status badge)."""
    captured: int = 0
    """Frames that exist on disk (shot by the rig or dropped into the hot folder)."""
    stacked: int = 0
    """Frames the stacker has processed, merged or rejected."""
    merged: int = 0
    """Frames merged into the composite."""
    rejected: int = 0
    """Frames kept out of the composite (not aligned, or not fitting the stack)."""
    total: int | None = None
    """Frames planned, when a plan says so."""
    position_um: float | None = None
    """Current rail position in micrometres (lens steps when ``units`` is ``"steps"``, the frame
    number for frames the camera focused itself, ``"frames"``)."""
    units: Literal["um", "steps", "frames", "none"] = "um"
    """What ``position_um`` counts: micrometres, lens steps or frame numbers; ``"none"`` where
    nothing moves focus (a hot folder), so the page shows no rail."""
    eta_s: float | None = None
    """Seconds until the last frame is captured; the hub estimates it when the producer does not."""
    title: str = ""
    """The page's heading (the session or folder name); empty shows "stackrig"."""
    message: str = ""
    """The latest warning or note for the photographer, shown under the counts."""


@dataclass(frozen=True)
class CropResult:
    """A 100 % crop of the composite and the same region of the last frame, as JPEG bytes."""

    composite_jpeg: bytes
    last_jpeg: bytes
    x: int
    y: int
    width: int
    height: int
    """The region in full-resolution composite pixels."""
    frame_width: int
    frame_height: int
    """The full-resolution size the region lies in (for drawing it on the preview)."""


CropProvider = Callable[[float, float, int], CropResult]
"""``provider(fx, fy, size)``: crop a ``size`` pixel square centred at fractions ``fx, fy``."""


@dataclass
class _Image:
    data: bytes
    version: int
    width: int
    height: int


@dataclass
class _Row:
    fields: dict[str, Any]
    version: int


@dataclass(frozen=True)
class Snapshot:
    """A consistent, JSON-able view of the hub at one ``version``."""

    version: int
    progress: Progress
    images: dict[str, dict[str, int]]
    """Per kind (composite, last, depth): ``version``, ``width``, ``height`` of what is stored."""
    frames: list[dict[str, Any]]
    """Rows that changed after the ``since`` version the snapshot was asked for, by index."""
    frames_count: int
    crop_available: bool
    epoch: int
    """Grows when :meth:`PreviewHub.reset` starts a new stack: readers drop their old rows."""
    run: str = ""
    """The hub's own id (:attr:`PreviewHub.run`): versions and epochs count within one run."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON types (the body of ``/api/state`` and of each event)."""
        return {
            "version": self.version,
            "progress": dataclasses.asdict(self.progress),
            "images": self.images,
            "frames": self.frames,
            "frames_count": self.frames_count,
            "crop_available": self.crop_available,
            "epoch": self.epoch,
            "run": self.run,
            **self.extra,
        }


class CropBroker:
    """Carries 100 % crop requests from server threads to the one thread that owns the stack.

    The stacker is not thread-safe and must only be used by its worker thread. So a request is
    queued here with a :class:`~concurrent.futures.Future`; the worker answers pending requests
    whenever it calls :meth:`serve` (after each added frame, and while idle if it wants crops to
    be snappy between frames), and the requesting thread waits for the future with a timeout.

    When the worker is done with the stacker for good it calls :meth:`release`: ownership passes
    to the broker, which from then on calls the provider directly, one request at a time under a
    lock. A finished stack can therefore still be inspected at 1:1. A worker that sits idle
    between frames for long (a hot folder waiting for files) may :meth:`release` while idle and
    :meth:`reclaim` before it touches the stacker again: ``reclaim`` waits for a crop in flight,
    so no request ever runs concurrently with the worker.
    """

    def __init__(self, max_pending: int = 8) -> None:
        self._lock = threading.Lock()
        self._provider: CropProvider | None = None
        self._released = False
        self._pending: queue.Queue[tuple[float, float, int, Future[CropResult]]] = queue.Queue(
            maxsize=max_pending
        )

    @property
    def available(self) -> bool:
        """True once a provider is set (there is a stack to crop from)."""
        return self._provider is not None

    def set_provider(self, provider: CropProvider | None) -> None:
        """Called on the worker thread: crops now come from ``provider`` (``None`` to withdraw)."""
        with self._lock:
            self._provider = provider
            self._released = False
        if provider is None:
            self._fail_pending("the stack was closed")

    def release(self) -> None:
        """Called on the worker thread: it leaves the stacker alone until :meth:`reclaim`."""
        with self._lock:
            self._released = True
        self.serve()

    def reclaim(self) -> None:
        """Called on the worker thread before it uses the stacker again after :meth:`release`.

        Returns once no crop is running; from then on requests queue for the worker again.
        """
        with self._lock:
            self._released = False

    def request(self, fx: float, fy: float, size: int, timeout: float = 10.0) -> CropResult:
        """Ask for a crop centred at fractions ``fx, fy``; block up to ``timeout`` seconds.

        Raises :class:`CropUnavailableError` when there is no stack yet, the request queue is
        full, or the worker did not answer in time (it is busy merging a large frame).
        """
        with self._lock:
            provider, released = self._provider, self._released
            if provider is not None and released:
                return provider(fx, fy, size)
        if provider is None:
            raise CropUnavailableError("no stack to crop yet: wait for the first merged frame")
        fut: Future[CropResult] = Future()
        try:
            self._pending.put_nowait((fx, fy, size, fut))
        except queue.Full:
            raise CropUnavailableError("too many crop requests waiting; try again") from None
        # The worker may have released ownership between our check and the put: serve it here.
        with self._lock:
            if self._released:
                self._serve_locked()
        try:
            return fut.result(timeout=timeout)
        except FutureTimeout:
            fut.cancel()
            raise CropUnavailableError(
                f"the stacker did not answer within {timeout:g} s (busy merging); try again"
            ) from None

    def serve(self, timeout: float = 0.0) -> int:
        """Answer pending crop requests; called on the thread that owns the stacker.

        With ``timeout > 0`` waits up to that long for a first request, so an idle worker can
        use this as its sleep. Returns the number of requests answered.
        """
        if timeout > 0:
            try:
                item = self._pending.get(timeout=timeout)
            except queue.Empty:
                return 0
            with self._lock:
                return self._answer(item) + self._serve_locked()
        with self._lock:
            return self._serve_locked()

    def _serve_locked(self) -> int:
        served = 0
        while True:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                return served
            served += self._answer(item)

    def _answer(self, item: tuple[float, float, int, Future[CropResult]]) -> int:
        fx, fy, size, fut = item
        if not fut.set_running_or_notify_cancel():
            return 0
        provider = self._provider
        if provider is None:
            fut.set_exception(CropUnavailableError("the stack was closed"))
            return 1
        try:
            fut.set_result(provider(fx, fy, size))
        except Exception as exc:
            fut.set_exception(exc)
        return 1

    def _fail_pending(self, why: str) -> None:
        while True:
            try:
                _, _, _, fut = self._pending.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(CropUnavailableError(why))


class PreviewHub:
    """Latest previews, progress and frame table of one stack, shared between threads.

    All methods are safe to call from any thread. Producers call :meth:`set_images`,
    :meth:`update_progress` and :meth:`update_frame`; readers call :meth:`snapshot`,
    :meth:`image`, :meth:`wait` or register a :meth:`subscribe` callback.
    """

    def __init__(self, title: str = "") -> None:
        self._cond = threading.Condition()
        self._version = 0
        self._progress = Progress(title=title)
        self._images: dict[str, _Image] = {}
        self._rows: dict[int, _Row] = {}
        self._subscribers = SubscriberList[Callable[[int], None]](self._cond)
        self._extra: dict[str, Any] = {}
        self._capture_times: list[float] = []
        self._batch_depth = 0
        self._epoch = 0
        self.run = secrets.token_hex(4)
        """Which hub the versions and epochs count in. Each run of a program starts them
        afresh, so a page left open across a restart (a phone asleep while the station's power
        was cut) would take the new run's numbers for its own: asked for what it missed since
        its last version, it got only some rows of the new stack, under the old one's."""
        self.crops = CropBroker()

    # ---------------------------------------------------------------- producers
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group several updates into one notification (one SSE message per merged frame).

        Other threads wait while a batch is open, so keep slow work (JPEG encoding) outside it.
        """
        with self._cond:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                version, outermost = self._version, self._batch_depth == 0
        if outermost:
            self._notify(version)

    def set_images(
        self,
        *,
        composite: tuple[bytes, int, int] | None = None,
        last: tuple[bytes, int, int] | None = None,
        depth: tuple[bytes, int, int] | None = None,
    ) -> int:
        """Store new preview JPEGs, each as ``(jpeg_bytes, width, height)``; ``None`` keeps one."""
        new = {"composite": composite, "last": last, "depth": depth}
        with self._cond:
            version = self._bump()
            for kind, item in new.items():
                if item is not None:
                    data, width, height = item
                    self._images[kind] = _Image(bytes(data), version, int(width), int(height))
        return self._notify(version)

    def update_progress(self, **changes: Any) -> int:
        """Change some :class:`Progress` fields, e.g. ``update_progress(captured=3, total=40)``.

        Unknown field names raise ``TypeError``. ``captured`` never falls behind ``stacked``.
        """
        if "state" in changes:
            changes["state"] = RunState(changes["state"])
        with self._cond:
            before = self._progress
            progress = dataclasses.replace(before, **changes)
            if progress.stacked > progress.captured:
                progress = dataclasses.replace(progress, captured=progress.stacked)
            if progress.captured > before.captured:
                now = time.monotonic()
                self._capture_times.extend([now] * (progress.captured - before.captured))
                del self._capture_times[:-20]
            self._progress = progress
            version = self._bump()
        return self._notify(version)

    def update_frame(self, index: int, **fields: Any) -> int:
        """Merge ``fields`` (JSON types) into the table row of frame ``index``.

        Usual fields: ``name``, ``position_um``, ``merged`` (``True``/``False``, absent while
        pending), ``reason`` (why rejected), ``score`` (alignment score 0..1), ``seconds``.
        """
        with self._cond:
            version = self._bump()
            row = self._rows.get(index)
            merged_fields = {**(row.fields if row else {}), **fields, "index": int(index)}
            self._rows[index] = _Row(merged_fields, version)
        return self._notify(version)

    def set_extra(self, **values: Any) -> int:
        """Attach extra JSON values to every snapshot (e.g. a session id, station controls)."""
        with self._cond:
            self._extra.update(values)
            version = self._bump()
        return self._notify(version)

    def reset(self, title: str = "") -> int:
        """Forget everything of the previous stack (a new session starts on the same page)."""
        self.crops.set_provider(None)
        with self._cond:
            self._progress = Progress(title=title)
            self._images.clear()
            self._rows.clear()
            self._capture_times.clear()
            self._epoch += 1
            version = self._bump()
        return self._notify(version)

    # ------------------------------------------------------------------ readers
    @property
    def version(self) -> int:
        """The number of changes so far; grows by one with every update."""
        with self._cond:
            return self._version

    @property
    def progress(self) -> Progress:
        with self._cond:
            return self._progress

    def image(self, kind: str) -> tuple[bytes, int] | None:
        """The stored JPEG of ``kind`` (composite, last, depth) and its version, or ``None``."""
        with self._cond:
            item = self._images.get(kind)
            return (item.data, item.version) if item else None

    def snapshot(self, since: int = 0) -> Snapshot:
        """Everything but image bytes; ``frames`` holds the rows changed after ``since``.

        A ``since`` this hub never reached (a client of an earlier run of the server, whose
        count went further) gets every row: it cannot know what it missed.
        """
        with self._cond:
            if since > self._version:
                since = 0
            rows = [
                dict(row.fields) for _, row in sorted(self._rows.items()) if row.version > since
            ]
            progress = self._progress
            if progress.eta_s is None:
                progress = dataclasses.replace(progress, eta_s=self._estimate_eta(progress))
            return Snapshot(
                version=self._version,
                progress=progress,
                images={
                    kind: {"version": im.version, "width": im.width, "height": im.height}
                    for kind, im in self._images.items()
                },
                frames=rows,
                frames_count=len(self._rows),
                crop_available=self.crops.available,
                epoch=self._epoch,
                run=self.run,
                extra=dict(self._extra),
            )

    def wait(self, after: int, timeout: float | None = None) -> int:
        """Block until ``version > after`` (or ``timeout``); return the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > after, timeout=timeout)
            return self._version

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(version)`` after every change; returns the function that unsubscribes.

        Callbacks run on the producer's thread, so they must only hand the news on (set an
        event, schedule a wake-up on an event loop) and never block or raise.
        """
        return self._subscribers.add(callback)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    # ----------------------------------------------------------------- internals
    def _bump(self) -> int:
        self._version += 1
        self._cond.notify_all()
        return self._version

    def _notify(self, version: int) -> int:
        with self._cond:
            if self._batch_depth:
                return version  # the open batch notifies once when it closes
            subscribers = self._subscribers.snapshot()
        for callback in subscribers:
            callback(version)
        return version

    def _estimate_eta(self, progress: Progress) -> float | None:
        """Remaining frames times the recent capture interval (no estimate before two frames)."""
        if progress.total is None or progress.state is not RunState.RUNNING:
            return None
        times = self._capture_times
        remaining = max(progress.total - progress.captured, 0)
        if remaining == 0:
            return 0.0
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        interval = (times[-1] - times[0]) / (len(times) - 1)
        since_last = time.monotonic() - times[-1]
        return max(remaining * interval - since_last, 0.0)
