"""The stacking worker: one thread that feeds captured frames to the Stacker, beside capture.

Capture hands over *paths* of frames already safe on disk; the worker decodes and stacks them in
the order given, decoding the next frame on a reader thread
(:class:`stacker.pipeline.ReadAhead`, one frame ahead) while the current one is stacked. The
hand-over queue is bounded, so when stacking falls behind a slow machine the capture loop
eventually waits instead of holding an ever-growing backlog; frames that were already on disk
before a resume are replayed first from their own list, so capture can restart at once. The
:class:`~stacker.stack.Stacker` is not thread-safe: only this thread touches it until
:meth:`StackWorker.finish` has joined the thread. After each merge the worker computes the small
previews (composite, depth, last frame) and hands copies to subscribers, and every
``checkpoint_every`` merged frames it calls ``checkpoint`` (which writes the composite
atomically) from this same thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rig.errors import RigError
from stacker.errors import FrameMismatchError, UserError
from stacker.io import OrientedReader, is_raw_path
from stacker.lonefirst import LoneFirstFrame, left_out_reason
from stacker.metadata import read_metadata
from stacker.pipeline import Loaded, ReadAhead
from stacker.preview.publisher import StackerLike
from stacker.raw import display_of

log = logging.getLogger("rig.session")


@dataclass(frozen=True)
class StackJob:
    """A frame to stack: its plan index, focus position (µm, or None for lens steps), file."""

    index: int
    path: Path
    position_um: float | None = None
    replay: bool = False
    """True for frames re-added from disk when a session resumes."""


class FramesChangedError(RigError):
    """A frame shot now that does not fit the frames the stack already holds (another size or
    bit depth): the camera was changed, or its image size or format, since they were shot.
    Every later frame would be shot and kept out the same way, so the session stops, the frame
    is set aside (a resume shoots it again) and the photographer is told what changed."""

    def __init__(self, job: StackJob, mismatch: FrameMismatchError) -> None:
        super().__init__(
            f"frame {job.index}: {mismatch}. The camera gives frames unlike the ones this "
            "session shot before (another body, or its image size or format changed): set it "
            "as it was, then resume"
        )
        self.job = job


@dataclass(frozen=True)
class StackPreviews:
    """Small uint8 BGR images of the stack after a merge, safe to use from any thread."""

    composite: np.ndarray | None
    depth: np.ndarray | None
    last_frame: np.ndarray | None


MergedCallback = Callable[[StackJob, Any, StackPreviews], None]
FailedCallback = Callable[[StackJob, UserError], None]
RestartCallback = Callable[[StackJob, Any, list[StackJob], StackerLike], None]
"""``(first, its record now, the frames kept out against it, the new stacker)``."""
StrandedCallback = Callable[[StackJob, str, bool], None]
"""Told the first merged frame and what to say of the frames kept out against it; the flag
says whether advice on what to do should follow (not where they were flash misfires)."""

_STOP = object()
_UNFIT = object()  # what StackWorker._add gives for a frame the stack could not take
Frame = tuple[np.ndarray, str | None, OrientedReader]
"""A decoded frame, a note if it was turned to fit, and the reader that turned it."""


class StackWorker:
    """Runs ``stacker.add`` for each submitted :class:`StackJob` on its own thread."""

    def __init__(
        self,
        stacker: StackerLike,
        *,
        max_queue: int = 8,
        on_merged: MergedCallback | None = None,
        on_failed: FailedCallback | None = None,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_every: int = 0,
        previews: bool = True,
        fresh: Callable[[], StackerLike] | None = None,
        on_restart: RestartCallback | None = None,
        on_stranded: StrandedCallback | None = None,
    ) -> None:
        self.stacker = stacker
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_queue))
        self._replay: deque[StackJob] = deque()
        self._reader = OrientedReader()  # frames keep the first one's orientation
        self._on_merged = on_merged
        self._on_failed = on_failed
        self._checkpoint = checkpoint
        self._checkpoint_every = checkpoint_every
        self._previews = previews
        self._abort = threading.Event()
        self._stop_queued = False
        self._thread = threading.Thread(target=self._run, name="stack-worker", daemon=True)
        self._lock = threading.Lock()
        self.processed = 0
        self.failed = 0
        self.error: BaseException | None = None
        """An unexpected exception that stopped stacking (a bug); capture should stop."""
        self._since_checkpoint = 0
        self._busy_with: int | None = None
        self._ahead: ReadAhead[StackJob, Frame | None] | None = None
        # A bad first frame (a flash that did not fire) keeps every frame after it out: the
        # stack starts again from those without it (see stacker.lonefirst).
        self._fresh = fresh
        self._on_restart = on_restart
        self._on_stranded = on_stranded
        self._lone_first: LoneFirstFrame[StackJob] = LoneFirstFrame()
        self._stranded: str | None = None  # what it said with the last frame
        self._first: tuple[StackJob, Any] | None = None  # the first merged frame, its record

    # ---------------------------------------------------------------- control
    def start(self, replay: Iterable[StackJob] = ()) -> None:
        """Start the thread; ``replay`` jobs (frames from before a resume) go first."""
        self._replay.extend(replay)
        self._thread.start()

    def submit(self, job: StackJob, *, timeout: float | None = None) -> None:
        """Queue ``job``; blocks only while the queue is full."""
        self._queue.put(job, timeout=timeout)

    @property
    def pending(self) -> int:
        """Frames waiting to be stacked (replays included) plus the one being stacked."""
        reader = self._ahead
        ahead = reader.holding if reader is not None else 0
        return len(self._replay) + self._queue.qsize() + ahead + (self._busy_with is not None)

    def finish(self, timeout: float | None = None) -> bool:
        """Stack everything queued, then stop the thread. True when the thread has ended;
        with a ``timeout`` (seconds), call again until it is.

        The stop is queued once: a session's end calls this every half second while a slow
        machine stacks its last frames, and a stop queued per call filled the queue behind the
        first one, which ends the thread, so a later call waited for room for ever.
        """
        if not self._thread.is_alive():
            return True
        if not self._stop_queued:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:  # frames still queued: the next call tries again
                return False
            self._stop_queued = True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Stop after the frame being stacked; queued frames are dropped (they stay on disk)."""
        self._abort.set()
        self._replay.clear()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
            self._stop_queued = True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---------------------------------------------------------------- thread
    def _next(self) -> Any:
        if self._replay:
            return self._replay.popleft()
        return self._queue.get()

    def _jobs(self) -> Iterator[StackJob]:
        while True:
            job = self._next()
            if job is _STOP or self._abort.is_set():
                return
            yield job

    def _read(self, job: StackJob) -> Frame | None:
        reader = self._reader
        return None if self.error is not None else (*reader.read(job.path), reader)

    def _run(self) -> None:
        try:
            with ReadAhead(self._jobs(), self._read, name="stack-reader") as reader:
                self._ahead = reader
                for loaded in reader:
                    if self._abort.is_set():
                        return
                    if self.error is not None:
                        continue  # keep draining so capture never blocks on a dead worker
                    self._busy_with = loaded.item.index
                    try:
                        self._stack(loaded)
                    except UserError as exc:  # the journal refused the merge record: disk full
                        log.error("stacking frame %d stopped: %s", loaded.item.index, exc)
                        self.error = exc
                    except BaseException as exc:  # a bug: report it, the runner stops the session
                        log.exception("stacking frame %d failed", loaded.item.index)
                        self.error = exc
                    finally:
                        self._busy_with = None
        except BaseException as exc:  # the reader itself failed (a bug, out of memory)
            log.exception("reading frames to stack failed")
            self.error = exc
            for _ in self._jobs():  # keep draining so capture never blocks on a dead worker
                pass
        finally:
            # The reader holds this worker (its read function), and so the stacker, in a
            # cycle: let go of it, so the stack is freed with the worker, not by a later GC.
            self._ahead = None

    def _stack(self, loaded: Loaded[StackJob, Frame | None]) -> None:
        job = loaded.item
        try:
            if loaded.error is not None:
                raise loaded.error
            assert loaded.value is not None
            image, turned, reader = loaded.value
            del loaded
            if reader is not self._reader:  # read ahead, and the stack started again since
                image, turned = self._read_again(job)
            if turned is not None:
                log.warning("%s", turned)
        except UserError as exc:  # unreadable frame: kept out, reported
            self._failed(job, exc)
            return
        record = self._add(job, image)
        del image  # the stacker keeps a warped copy: not held through previews and checkpoint
        if record is not _UNFIT:
            self._report(job, record)
        if self._stranded is not None:
            self._start_again()

    def _failed(self, job: StackJob, exc: UserError) -> None:
        self.failed += 1
        if self._on_failed is not None:
            self._on_failed(job, exc)

    def _add(self, job: StackJob, image: np.ndarray) -> Any:
        """Stack one decoded frame: its record, or ``_UNFIT`` when it did not fit the stack."""
        try:
            record = self.stacker.add(
                image, name=job.path.name, position_um=job.position_um,
                linear=is_raw_path(job.path), number=job.index,
            )  # fmt: skip
            if is_raw_path(job.path) and self.stacker.display is None and record.merged:
                self.stacker.display = display_of(job.path)  # the live page shows it rendered
        except UserError as exc:  # a frame that does not fit the stack: kept out, reported
            # Not a lone odd first frame: the camera changed since the frames before.
            mismatch = isinstance(exc, FrameMismatchError) and not job.replay
            if mismatch and self.stacker.frames_merged >= 2:
                raise FramesChangedError(job, exc) from None  # type: ignore[arg-type]
            self._failed(job, exc)
            # A first frame of another size or bit depth keeps every later one out.
            self._stranded = self._lone_first.after(job.path.name, False, job, image)
            return _UNFIT
        self._follow_first(job, image, record)
        return record

    def _report(self, job: StackJob, record: Any) -> None:
        """Tell ``on_merged`` with the previews, and checkpoint when it is time."""
        self.processed += 1
        if self._on_merged is not None:
            previews = self._make_previews() if self._previews else StackPreviews(None, None, None)
            self._on_merged(job, record, previews)
        self._since_checkpoint += 1
        if (
            self._checkpoint is not None
            and self._checkpoint_every > 0
            and self._since_checkpoint >= self._checkpoint_every
            and not job.replay
        ):
            self._since_checkpoint = 0
            self._checkpoint()

    def _follow_first(self, job: StackJob, image: np.ndarray, record: Any) -> None:
        """Note the first merged frame, and the frames kept out while it stands alone."""
        merged = bool(getattr(record, "merged", True))
        if merged and self._first is None:
            self._first = (job, record)
            if not is_raw_path(job.path):  # the live page shows the frames in their profile
                self.stacker.icc = read_metadata(job.path, for_result=False).icc
        self._stranded = self._lone_first.after(job.path.name, merged, job, image)

    def _start_again(self) -> None:
        """The first merged frame keeps every frame since out. When those align with each
        other it is the bad one: the stack starts again from them without it, in a fresh
        stacker (``on_restart`` says so first). Otherwise, or without a way to make a stacker,
        or with a numbered reference (counted from the first frame), ``on_stranded`` is told."""
        stranded, self._stranded = self._stranded, None
        again = self._lone_first.start_again_from(self.stacker)
        first = self._first
        if first is None or not again or self._fresh is None:
            if self._lone_first.misfire is not None:
                if self._on_stranded is not None and first is not None:
                    self._on_stranded(first[0], self._lone_first.misfire, False)
                return
            if self._on_stranded is not None and stranded is not None and first is not None:
                self._on_stranded(first[0], stranded, True)
            return
        job, record = first
        why = left_out_reason(len(again))
        if is_dataclass(record):
            record = replace(record, merged=False, reason=why)  # type: ignore[type-var]
        release = getattr(self.stacker, "release", None)
        if release is not None:
            release()  # the live page may hold it until the next frame: not its buffers
        self.stacker = self._fresh()
        self._first, self._lone_first = None, LoneFirstFrame()
        if self._on_restart is not None:
            self._on_restart(job, record, again, self.stacker)
        anew = True  # the first read again sets the orientation afresh
        for kept in again:
            try:
                image, _turned = self._read_again(kept, anew=anew)  # said when first read
            except UserError as exc:
                self._failed(kept, exc)
                continue
            anew = False
            record = self._add(kept, image)
            del image
            if record is not _UNFIT:
                self._report(kept, record)

    def _read_again(self, job: StackJob, *, anew: bool = False) -> tuple[np.ndarray, str | None]:
        """Read ``job``'s frame again. ``anew``: as the first of a stack started again, in its
        own orientation, which the frames after it keep, not the left-out frame's (a stray
        first shot held upright turned every frame after it a quarter turn)."""
        reader = OrientedReader() if anew else self._reader
        try:
            frame = reader.read(job.path)
        except (UserError, OSError) as exc:  # gone or changed meanwhile
            raise UserError(f"{job.path}: cannot be read again ({exc})") from None
        self._reader = reader
        return frame

    def _make_previews(self) -> StackPreviews:
        def copy(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.array(a, copy=True)

        return StackPreviews(
            composite=copy(self.stacker.preview()),
            depth=copy(self.stacker.preview_depth()),
            last_frame=copy(self.stacker.last_frame_preview()),
        )
