"""Stacking a hot folder: each frame :class:`~stacker.hotfolder.HotFolder` hands out is merged as
it lands.

:func:`watch_and_stack` feeds those frames, one at a time on the calling thread, into a
:class:`stacker.stack.Stacker` (the next one is decoded on a reader thread meanwhile) and writes
the composite atomically after each merged frame, so the output on disk is always a complete
image; while more frames are already waiting (a folder filled beforehand, a burst), the write
waits until they are stacked, since each write holds up the next frame and is outdated by it.
Callbacks report each merged frame (the live preview subscribes here) and every change of
status (the command line's progress display).

Threads: the hot folder is iterated on a reader thread (:class:`stacker.pipeline.ReadAhead`),
which checks and decodes files and stays at most one frame ahead of the calling thread; that
thread merges, writes and reports, in the order the frames were taken.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stacker.errors import OutputBusyError, ResultWriteError, StackerError, UnreadableImageError
from stacker.hotfolder import HotFolder, ReadyFrame, UnreadableFrame, is_candidate
from stacker.io import check_writable_output, is_raw_path, remove_temporaries
from stacker.locking import Claimed, claimed
from stacker.lonefirst import LoneFirstFrame, left_out_reason
from stacker.metadata import read_metadata
from stacker.output import check_writable_depth, save_outputs
from stacker.pairs import Prefer, pair_choice
from stacker.paths import check_distinct, is_our_output, output_paths
from stacker.pinned import OutsideFolder
from stacker.pipeline import ReadAhead
from stacker.raw import display_of

if TYPE_CHECKING:
    from rich.console import RenderableType

    from stacker.stack import FrameRecord, Stacker

__all__ = [
    "MergedFrame",
    "NoFramesError",
    "WatchStatus",
    "WatchSummary",
    "render_status",
    "summary_line",
    "watch_and_stack",
]


class NoFramesError(StackerError):
    """Watching ended before any frame could be merged, so there is nothing to write."""

    exit_code = 1


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot of a watch, handed to ``on_status`` whenever something changes."""

    folder: Path
    """The watched folder."""
    state: str = "waiting"
    """``"waiting"`` (for the next file: the stacker is not touched until the state changes
    again), ``"merging"`` (from just before :meth:`Stacker.add` until after ``on_frame``),
    ``"writing"`` or ``"done"``."""
    seen: int = 0
    """Files taken from the folder."""
    merged: int = 0
    """Frames merged into the composite."""
    rejected: int = 0
    """Frames that decoded but could not be aligned or do not fit the stack."""
    unreadable: int = 0
    """Files that could not be decoded (kept out, or the end of a ``strict`` watch)."""
    skipped: int = 0
    """The partners of RAW+JPEG pairs, of which one file is stacked."""
    writes: int = 0
    """How many times the outputs were written."""
    last_name: str | None = None
    """Name of the file taken last."""
    last_score: float | None = None
    """Alignment score of the last frame offered to the stacker; ``None`` when it had none."""
    last_problem: str | None = None
    """Why the last file was kept out, until a frame merges again."""


@dataclass(frozen=True)
class MergedFrame:
    """What ``on_frame`` receives after each frame went through :meth:`Stacker.add`.

    Called on the merging thread: ``stacker.preview()`` and friends may be called from the
    callback (hand the small arrays to other threads); ``record.merged`` tells whether the frame
    made it into the composite.
    """

    path: Path
    image: np.ndarray
    record: FrameRecord
    stacker: Stacker
    index: int
    """The frame's number in the watch, from 0: ``record.index``, but a stack started again
    without its first frame goes on with the numbers the frames already had."""


@dataclass(frozen=True)
class WatchSummary:
    """How a watch ended: ``finish`` is ``"idle"`` (idle timeout) or ``"stopped"``."""

    status: WatchStatus
    finish: str
    outputs: list[Path]
    records: list[FrameRecord]


def _check_watch_settings(
    prefer: Prefer, every: int, idle_timeout: float | None, jpeg_quality: int
) -> None:
    """Refuse settings a watch cannot run with, in one line naming the option, before it starts."""
    if every < 1:
        raise StackerError(f"--every {every}: write at least every 1 frame (1 or more)")
    if idle_timeout is not None and not idle_timeout > 0:  # nan would never time out
        raise StackerError(f"--idle-timeout {idle_timeout}: give a positive number of seconds")
    if not 1 <= jpeg_quality <= 100:
        raise StackerError(f"JPEG quality {jpeg_quality} is out of range: use 1 to 100")


def _far_first(order: str) -> bool:
    """Whether ``--order`` says the frames come from the far end first, read as every front end
    reads it (:class:`~stacker.options.StackOptions`)."""
    from stacker.options import StackOptions, option_name

    return StackOptions.parse({"order": order}, name=option_name).far_first


def watch_and_stack(
    folder: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    depth_map: str | os.PathLike[str] | None = None,
    method: str = "pyramid",
    align: str = "similarity",
    reference: str | int = "first",
    interpolation: str = "linear",
    jpeg_quality: int = 95,
    strict: bool = False,
    crop: bool = True,
    every: int = 1,
    idle_timeout: float | None = None,
    settle: float = 0.5,
    prefer: Prefer | None = None,
    polling: bool = False,
    order: str = "near-to-far",
    stop: threading.Event | None = None,
    on_frame: Callable[[MergedFrame], None] | None = None,
    on_status: Callable[[WatchStatus], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> WatchSummary:
    """Stack every frame that lands in ``folder`` into ``output`` until idle or stopped.

    Runs on the calling thread (the one merging thread): files already in the folder first, in
    natural order (see :func:`frame_order`), then new ones as they complete. After every
    ``every``-th merged frame the composite (and ``depth_map``) is written atomically, and once
    more at the end, so ``output`` is always a complete image; when another frame is already
    waiting then, the write waits for the first merged frame after which none is, so the file
    holds every merged frame whenever the watch has caught up with the folder. Stops when
    ``stop`` is set (after the frame being merged) or after ``idle_timeout`` seconds without a
    new frame. ``order``: ``near-to-far`` or ``far-to-near``; ``interpolation``: ``linear`` or
    ``cubic`` resampling, as :class:`~stacker.stack.Stacker`.

    A file that does not decode, or a frame that cannot be aligned or does not fit the stack, is
    reported through ``on_warning`` and skipped; with ``strict`` it ends the watch with a
    :class:`~stacker.errors.StackerError` (after writing what was merged so far). Raises
    :class:`NoFramesError` when the watch ends with nothing merged.
    """
    from stacker.stack import Stacker

    out = check_writable_output(output).absolute()
    prefer = pair_choice(prefer, out)
    _check_watch_settings(prefer, every, idle_timeout, jpeg_quality)
    depth = check_writable_depth(depth_map).absolute() if depth_map is not None else None
    written = output_paths(out, depth)
    _check_outputs_in_folder(Path(folder), written)
    with _output_claimed(out):
        # Those of a watch killed mid-write; a minute's quiet: another program may write these.
        remove_temporaries(written, idle_s=60.0)
        fresh = partial(Stacker, method=method, align=align, reference=reference,
                        interpolation=interpolation, far_first=_far_first(order))  # fmt: skip
        hot = HotFolder(folder, settle=settle, prefer=prefer, polling=polling, ignore=written)
        run = _WatchRun(
            fresh(),
            fresh,
            out,
            depth,
            jpeg_quality=jpeg_quality,
            strict=strict,
            crop=crop,
            every=every,
            status=WatchStatus(folder=Path(folder).absolute()),
            on_frame=on_frame,
            on_status=on_status,
            on_warning=on_warning,
            reread=hot.read_again,
            as_read_now=hot.as_read_now,
            give_way=hot.give_way,
        )
        halt = _Halt(stop)
        arrivals = _arrivals(hot, halt, idle_timeout, out)  # runs once iterated, with hot started
        with hot, ReadAhead(arrivals, _as_is, name="watch-reader") as reader:
            run.waiting = lambda: reader.holding > 0
            run.publish()
            try:
                for loaded in reader:
                    # The reader looks for the next frame meanwhile: time spent merging and
                    # writing does not count as idle (see HotFolder.paths).
                    with hot.working():
                        frame = loaded.item
                        if isinstance(frame, str):  # a note: a frame turned to fit, a share polled
                            run.warn(frame)
                        elif isinstance(frame, UnreadableFrame):
                            run.unreadable(frame)
                        else:
                            run.skipped(len(hot.skipped))
                            run.add(frame)
                            if stop is not None and stop.is_set():
                                break
                        run.write_if_due()  # one put off while this item waited, if none waits
            except StackerError:
                with contextlib.suppress(StackerError):
                    run.finish()  # keep what was merged before failing (--strict, a bad output)
                raise
            finally:
                halt.set()  # the reader stops looking for frames
        return _summary(run, hot, stop is not None and stop.is_set())


def _summary(run: _WatchRun, hot: HotFolder, stopped: bool) -> WatchSummary:
    """Finish a watch that ``stopped`` (or went idle): its last write, and what it did."""
    run.ended(hot)
    if stopped:
        _tell_left_behind(run, hot)
    outputs = run.finish()
    if not outputs:
        why = "stopped" if stopped else "went idle"
        raise NoFramesError(
            f"{hot.folder}: no frame could be merged before the watch {why}; {run.output} not "
            "written" + _written_below(hot)
        )
    return WatchSummary(run.status, "stopped" if stopped else "idle", outputs,
                        list(run.stacker.records))  # fmt: skip


@contextmanager
def _output_claimed(out: Path) -> Iterator[None]:
    """One watch at a time writes ``out``: a second with the same ``-o`` (another method, say)
    rewrote the same composite, whichever wrote last winning, its depth map perhaps the other
    watch's (see :func:`~stacker.locking.claimed`). Two watches of one folder into different
    files go on."""
    try:
        with claimed(out):
            yield
    except Claimed as held:
        who = f" (process {held.pid})" if held.pid else ""
        raise OutputBusyError(
            f"{out}: another stacker watch{who} writes this composite; stop it, or give -o "
            "another file"
        ) from None


def _tell_left_behind(run: _WatchRun, hot: HotFolder) -> None:
    """A stop ends the watch after the frame being merged: frames already complete in the
    folder, or read ahead, are not in the composite. The summary said "13 of 13" with 30 in
    the folder (a card copied in, stopped a moment later); they are named, with the command
    that stacks them all."""
    left = [p for p in hot.taken() if p not in run.handled] + hot.waiting()
    if not left:
        return
    names = left[0].name if len(left) == 1 else f"{left[0].name} to {left[-1].name}"
    run.warn(
        f"{len(left)} frame{'s' if len(left) > 1 else ''} in {hot.folder} not stacked when the "
        f"watch stopped ({names}): stacker stack {shlex.quote(str(hot.folder))} -o "
        f"{shlex.quote(str(run.output))} stacks every frame there"
    )


class _Halt(threading.Event):
    """Set by the watch when it ends, and also set whenever the caller's ``stop`` is."""

    def __init__(self, stop: threading.Event | None) -> None:
        super().__init__()
        self._stop = stop

    def is_set(self) -> bool:
        return super().is_set() or (self._stop is not None and self._stop.is_set())


Arrival = ReadyFrame | UnreadableFrame | str  # str: a note for the user


def _arrivals(
    hot: HotFolder, halt: threading.Event, idle_timeout: float | None, output: Path
) -> Iterator[Arrival]:
    """Decoded frames, unreadable files and notes (on turned frames, on a share that is polled,
    on frames landing in a subfolder, as soon as they come), in the order they came."""
    if hot.polled_for is not None:
        yield (
            f"{hot.folder} is on a {hot.polled_for} file system, where other machines' writes "
            "raise no file events: polling it"
        )
    bad: list[UnreadableFrame] = []
    handed_on = False  # a frame was handed on to be stacked: this watch will write ``output``

    def pending() -> Iterator[Arrival]:
        while bad:
            yield bad.pop(0)
        while hot.notes:
            yield hot.notes.pop(0)
        while hot.landing:
            yield _landing_note(hot.landing.pop(0), output, handed_on)

    for frame in hot.frames_with_news(halt, idle_timeout, bad.append, news=True):
        yield from pending()
        if frame is not None:
            handed_on = True
            yield frame
    yield from pending()


def _as_is(arrival: Arrival) -> Arrival:
    return arrival


def _written_below(hot: HotFolder) -> str:
    """Where frames went instead, when a subfolder got images since the watch began (see
    :meth:`HotFolder.most_landed_below`)."""
    count, sub = hot.most_landed_below()
    if sub is None:
        return ""
    return (
        f"; {count} images were written into {sub} meanwhile: subfolders are not "
        "watched, watch that folder instead"
    )


def _landing_note(sub: Path, output: Path, handed_on: bool) -> str:
    """What to do when frames land in a subfolder of the watched folder, which is not watched.
    Once this watch has been handed a frame to stack (it writes its result when it ends, if not
    before), or ``output`` exists, the command told writes another beside it: the same ``-o``
    would replace the composite of the frames stacked so far."""
    if handed_on or output.exists():
        output = output.with_name(f"{output.stem}-{sub.name}{output.suffix}")
    return (
        f"frames are landing in {sub}, a subfolder, which is not watched: to stack them, stop "
        f"(Ctrl-C) and run stacker watch {shlex.quote(str(sub))} -o {shlex.quote(str(output))}"
    )


def _check_outputs_in_folder(folder: Path, outputs: list[Path]) -> None:
    """Refuse outputs that replace a frame in the watched folder, or each other."""
    check_distinct(outputs)
    frame = _frame_at_output(folder, outputs)
    if frame is not None:
        raise StackerError(
            f"{frame}: is a frame in the watched folder and would be overwritten; "
            "write the result to another name or folder"
        )


def _frame_at_output(folder: Path, outputs: list[Path]) -> Path | None:
    """The first of ``outputs`` that is a frame in the watched folder, if any.

    An existing image there that is not one of our results is a frame (or will be taken as one);
    writing the composite over it would destroy it.
    """
    try:
        where = folder.resolve()
    except (OSError, RuntimeError):  # a link loop, a name too long: the watch's start says so
        return None
    for out in outputs:
        if (
            out.parent.resolve() == where
            and is_candidate(out)
            and out.is_file()
            and not is_our_output(out)
        ):
            return out
    return None


@dataclass
class _WatchRun:
    """The merging side of a watch: counts, strictness, and when to write the outputs."""

    stacker: Stacker
    """The stack every readable frame goes into."""
    fresh: Callable[[], Stacker]
    """Makes another, empty stacker with the watch's settings (to start again without a bad
    first frame)."""
    output: Path
    """The composite's file."""
    depth_map: Path | None
    """The depth map's file, if one is wanted."""
    jpeg_quality: int
    """Quality of the JPEG outputs."""
    strict: bool
    """Stop at the first file that cannot be read or stacked, instead of keeping it out."""
    crop: bool
    """Crop the outputs to the area every merged frame covers."""
    every: int
    """Write the outputs after this many merged frames (and at the end), once no frame is
    waiting (:attr:`waiting`)."""
    status: WatchStatus
    """The latest snapshot; every change replaces it and goes to ``on_status``."""
    on_frame: Callable[[MergedFrame], None] | None
    """Called on this thread after each frame went through the stacker."""
    on_status: Callable[[WatchStatus], None] | None
    """Called with every new status."""
    on_warning: Callable[[str], None] | None
    """Called with a one-line message for each file kept out (unless ``strict``)."""
    reread: Callable[..., np.ndarray]
    """Reads a frame of the folder again, ``first=True`` as the first of a stack started
    again (:meth:`HotFolder.read_again`)."""
    as_read_now: Callable[[ReadyFrame], ReadyFrame]
    """A frame read ahead, read again if the stack started again in another orientation
    meanwhile (:meth:`HotFolder.as_read_now`)."""
    give_way: Callable[[Path], None]
    """Offers the partner of a frame refused for its kind instead (:meth:`HotFolder.give_way`)."""
    first_path: Path | None = field(default=None, init=False)
    """The first merged frame, whose metadata the outputs carry."""
    unwritten: int = field(default=0, init=False)
    """Merged frames not yet in the file on disk."""
    outputs: list[Path] = field(default_factory=list, init=False)
    """The files the last write produced."""
    refused: bool = field(default=False, init=False)
    """The disk refused the last write along the way (said once, tried again)."""
    given_up: set[Path] = field(default_factory=set, init=False)
    """Files reported unreadable: one written on after a long pause may still come."""
    lone_first: LoneFirstFrame[Path] = field(default_factory=LoneFirstFrame, init=False)
    """Says when a bad first frame keeps the rest out, and which frames to start again from."""
    stranded: str | None = field(default=None, init=False)
    """The warning :attr:`lone_first` gave with the last frame, until it is acted on."""
    waiting: Callable[[], bool] = field(default=lambda: False, init=False)
    """Whether another frame is read and waiting to be stacked (the watch's reader holds one)."""
    numbered: int = field(default=0, init=False)
    """Frames numbered by stackers before this one that it will not see again: a stack started
    again keeps each frame's number (:attr:`MergedFrame.index`)."""
    handled: set[Path] = field(default_factory=set, init=False)
    """Every frame this run was handed (merged, kept out or unreadable)."""

    def publish(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        if self.on_status is not None:
            self.on_status(self.status)

    def warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def skipped(self, count: int) -> None:
        if count != self.status.skipped:
            self.publish(skipped=count)

    def ended(self, hot: HotFolder) -> None:
        """The hot folder has stopped: its last count of skipped partners, and the files it
        still holds empty, which a stop ends the watch before it could tell."""
        for note in hot.left_empty():
            self.warn(note)
        self.skipped(len(hot.skipped))

    def unreadable(self, bad: UnreadableFrame) -> None:
        self.handled.add(bad.path)
        self.given_up.add(bad.path)
        self.publish(
            seen=self.status.seen + 1,
            unreadable=self.status.unreadable + 1,
            last_name=bad.path.name,
            last_score=None,
            last_problem=bad.message,
        )
        if self.strict:
            raise UnreadableImageError(f"{bad.message} (--strict stops at the first bad file)")
        self.warn(f"skipped {bad.message}")

    def add(self, frame: ReadyFrame) -> None:
        self.handled.add(frame.path)
        if frame.path in self.given_up:  # its writer paused, then finished it: counted once
            self.given_up.discard(frame.path)
            self.publish(seen=self.status.seen - 1, unreadable=self.status.unreadable - 1)
            self.warn(f"{frame.path.name}: complete now after all; stacked")
        self.publish(state="merging", seen=self.status.seen + 1, last_name=frame.path.name)
        if self.output.suffix.lower() == ".dng" and not is_raw_path(frame.path):
            # Merged first, it would make the composite a rendered one that no DNG can hold.
            self.reject(
                frame.path,
                f"{frame.path.name}: not a RAW frame, and {self.output.name} is made from RAW "
                "frames only (watch with -o .tif to stack rendered frames)",
            )
            self.publish(state="waiting")
            return
        try:
            frame = self.as_read_now(frame)
        except (StackerError, OSError, OutsideFolder) as exc:  # gone or changed meanwhile
            self.reject(frame.path, f"{frame.path.name}: cannot be read again ({exc})")
            self.publish(state="waiting")
            return
        self.stack(frame)
        if self.stranded is not None:
            self.start_again()
        self.publish(state="waiting")

    def stack(self, frame: ReadyFrame) -> None:
        """Offer ``frame`` to the stacker; count, warn, write along the way and tell
        ``on_frame`` as it turns out."""
        try:
            record = self.stacker.add(
                frame.image,
                name=frame.path.name,
                linear=is_raw_path(frame.path),
                number=self.numbered + len(self.stacker.records) + 1,  # its row on the page
            )
        except StackerError as exc:
            # A frame that does not fit the stack (size, bit depth) is rejected like a
            # misaligned one: the stack so far stays intact.
            if self.stacker.frames_merged and is_raw_path(frame.path) != self.stacker.linear:
                # The other file of its shot fits: a RAW whose JPEG came late began a RAW
                # stack, and every later shot's JPEG, taken as the pair rule says, was refused.
                kinds = ("rendered", "RAW") if self.stacker.linear else ("RAW", "rendered")
                first = self.first_path.name if self.first_path is not None else "its first"
                self.reject(
                    frame.path,
                    f"{frame.path.name}: a {kinds[0]} frame in a stack of {kinds[1]} frames "
                    f"(begun with {first}); the {kinds[1]} file of its shot is stacked "
                    "instead, if it has one",
                )
                self.give_way(frame.path)
            else:
                self.reject(frame.path, str(exc))
                # A first frame of another size or bit depth keeps every later one out.
                self.stranded = self.lone_first.after(
                    frame.path.name, False, frame.path, frame.image
                )
            return
        if record.merged:
            self.lone_first.after(frame.path.name, True, frame=frame.image)
            if self.first_path is None:
                self.first_path = frame.path
                if self.stacker.linear:
                    self.stacker.display = display_of(frame.path)
                else:
                    self.stacker.icc = read_metadata(frame.path, for_result=False).icc
            self.unwritten += 1
            self.publish(merged=self.status.merged + 1, last_score=record.score, last_problem=None)
            self.write_if_due()
        else:
            self.reject(frame.path, f"{frame.path.name}: {record.reason or 'not merged'}", record)
            # Acted on after on_frame.
            self.stranded = self.lone_first.after(frame.path.name, False, frame.path, frame.image)
        if self.on_frame is not None:
            index = self.numbered + record.index
            self.on_frame(MergedFrame(frame.path, frame.image, record, self.stacker, index))

    def start_again(self) -> None:
        """The first merged frame keeps every frame since out. When those align with each
        other, it is the bad one (a test shot framed elsewhere, a flash that did not fire):
        the stack starts again from them, without it, in a new stacker (``on_frame`` is then
        handed that one). Otherwise, or with ``--reference N`` (which counts from the first
        frame), the photographer is told what to do."""
        stranded, self.stranded = self.stranded, None
        again = self.lone_first.start_again_from(self.stacker)
        first = self.first_path
        if self.lone_first.misfire is not None:
            self.warn(self.lone_first.misfire)
            return
        if first is None or not again:
            self.warn(
                f"{stranded}move it out of the folder and watch again (`stacker stack` on the "
                "folder leaves such a first frame out)"
            )
            return
        self.warn(f"{first}: {left_out_reason(len(again))}")
        self.stacker.release()  # the live page may hold it until the next frame: not its buffers
        # Frames the old stack could not take (another size than its first) hold no record.
        self.numbered += self.stacker.frames_added - sum(
            p not in self.lone_first.unfit for p in again
        )
        self.stacker = self.fresh()
        self.first_path, self.unwritten, self.lone_first = None, 0, LoneFirstFrame()
        self.publish(merged=0, rejected=self.status.rejected + 1 - len(again))
        for path in again:
            added = self.stacker.frames_added
            try:  # the first read in its own orientation (not the left-out frame's)
                image = self.reread(path, first=not self.stacker.frames_added)
            except (StackerError, OSError, OutsideFolder) as exc:  # gone or changed meanwhile
                self.reject(path, f"{path.name}: cannot be read again ({exc})")
            else:
                self.stack(ReadyFrame(path, image))
            # A frame the new stack holds no record of keeps its number all the same: the
            # frames after it would take its row on the page.
            self.numbered += 1 - (self.stacker.frames_added - added)

    def reject(self, path: Path, message: str, record: FrameRecord | None = None) -> None:
        self.publish(
            rejected=self.status.rejected + 1,
            last_score=record.score if record is not None else None,
            last_problem=message,
        )
        if self.strict:
            raise StackerError(f"{message} (--strict stops at the first rejected frame)")
        self.warn(f"rejected {message}")

    def reference_pending(self) -> bool:
        """True while ``--reference N`` names a frame that has not arrived yet.

        The composite is in that frame's geometry, so nothing can be written before it.
        """
        ref = self.stacker.reference
        return isinstance(ref, int) and self.stacker.frames_added <= ref

    def write(self) -> None:
        # A frame another program wrote under an output's name after the watch began (the
        # hot folder leaves it out) would be replaced: refused like a full disk, so it stays.
        frame = _frame_at_output(self.status.folder, output_paths(self.output, self.depth_map))
        if frame is not None:
            raise ResultWriteError(frame, "a frame was written under this name; it is kept", "")
        # Back to the state the write interrupted: "waiting" lends the stacker to the live
        # preview, which must not happen before on_frame has run.
        state = self.status.state
        self.publish(state="writing")
        self.outputs = save_outputs(
            self.stacker,
            self.output,
            self.depth_map,
            jpeg_quality=self.jpeg_quality,
            crop=self.crop,
            metadata_from=self.first_path,
        )
        self.unwritten = 0
        self.publish(state=state, writes=self.status.writes + 1)

    def write_if_due(self) -> None:
        """Write the outputs when ``every`` merged frames are not on disk yet, the
        ``--reference`` frame has come, and no other frame waits: with frames waiting each
        write would hold up the next and be outdated by it (24 frames of 24 MP filled in
        beforehand took twice as long, written after each)."""
        if self.unwritten >= self.every and not self.reference_pending() and not self.waiting():
            self.write_along_the_way()

    def write_along_the_way(self) -> None:
        """Write the outputs while frames still come. A disk that refuses them (full, or gone
        read-only) ended the watch, and the frames after were never stacked; the shoot goes
        on, so merging goes on, and the write is tried again with the next frame. The final
        write (:meth:`finish`) still fails in one line if the disk still refuses."""
        state = self.status.state
        try:
            self.write()
        except ResultWriteError as exc:
            self.publish(state=state)  # as write() leaves it when it succeeds
            if not self.refused:
                on_disk = self.status.merged - self.unwritten
                self.warn(
                    f"{exc.where}: cannot write the result ({exc.reason}); merging goes on and "
                    f"the write is tried again with each frame ({on_disk} of "
                    f"{self.status.merged} merged frames are on disk)"
                )
            self.refused = True
            return
        if self.refused:
            self.refused = False
            self.warn(f"{self.output.name}: written again, with every merged frame")

    def finish(self) -> list[Path]:
        """Write the merged frames not yet on disk; the paths written, empty if none ever.

        A first frame still alone after frames kept out as misfires is left out now, as
        ``stacker stack`` leaves it out, if those align with each other."""
        said = self.lone_first.at_end()
        if said is not None:
            self.stranded = said
            self.start_again()
        if self.unwritten and self.reference_pending():  # the frame never came
            raise StackerError(
                f"--reference {int(self.stacker.reference) + 1}: the watch ended after "
                f"{self.stacker.frames_added} frames, before that one; nothing written (stack "
                "the folder with 'stacker stack' and another --reference)"
            )
        if self.unwritten:
            self.write()
        self.publish(state="done")
        return self.outputs


def render_status(status: WatchStatus) -> RenderableType:
    """The live progress line(s) of ``stacker watch``."""
    from rich.text import Text

    from stacker.cliutil import one_line

    text = Text()
    text.append(f"{status.state:<8} ", style="bold cyan")
    text.append(f"{one_line(str(status.folder))}\n", style="dim")
    text.append(f"seen {status.seen}  ")
    text.append(f"merged {status.merged}  ", style="green")
    text.append(f"rejected {status.rejected}  ", style="yellow" if status.rejected else "")
    text.append(f"unreadable {status.unreadable}  ", style="red" if status.unreadable else "")
    text.append(f"pair partners skipped {status.skipped}  written {status.writes}x")
    if status.last_name is not None:
        text.append(f"\nlast: {one_line(status.last_name)}")
        if status.last_score is not None:
            text.append(f"  alignment score {status.last_score:.2f}")
        if status.last_problem:
            text.append(f"  ({one_line(status.last_problem)})", style="yellow")
    return text


def frame_line(frame: MergedFrame) -> str:
    """One line for a frame, where no live display is drawn (a log, a service's journal)."""
    from stacker.cliutil import one_line

    record = frame.record
    if not record.merged:
        return f"{one_line(frame.path.name)}: kept out ({one_line(record.reason or '')})"
    return f"{one_line(frame.path.name)}: merged, alignment score {record.score:.2f}"


def summary_line(summary: WatchSummary) -> str:
    """One line saying what a finished watch did."""
    s = summary.status
    how = "went idle" if summary.finish == "idle" else "stopped"
    written = ", ".join(str(p) for p in summary.outputs)
    return (
        f"stacked {s.merged} of {s.seen} frames from {s.folder} ({s.rejected} rejected, "
        f"{s.unreadable} unreadable, {s.skipped} RAW+JPEG partners skipped); {how}; "
        f"wrote {written}"
    )
