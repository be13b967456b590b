"""Stacking an existing set of frames (``stacker stack``): the same engine as live capture.

Inputs are files or folders (images inside, in natural order). Problems with single frames are
warnings (fatal with ``strict``); problems with the stack as a whole — mismatched sizes, fewer
than two usable frames, an unwritable output — are errors, and the output is checked before any
work starts.

The run is pipelined: each frame merges in the background while the next is decoded and
aligned (:class:`~stacker.stack.Stacker` with ``overlap``), and on three cores or more the next
frame is also decoded on a reader thread (:class:`ReadAhead`) while the current one is aligned,
so decoding, aligning and merging share the cores. On two cores the caller and the merge keep
both busy already: there the reader thread and OpenCV's own worker pool only contend with them,
and both are left out (:func:`opencv_threads`; 4 to 6 % less wall time, benchmarks/README.md).
``pipelined=False`` does each step after the other, with the same result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from stacker.errors import OutOfMemoryError, StackerError
from stacker.framepool import FramePool
from stacker.io import (
    READ_KINDS,
    UNREAD_EXTENSIONS,
    OrientedReader,
    check_writable_output,
    is_image_path,
    is_raw_path,
    remove_temporaries,
)
from stacker.lonefirst import left_out_reason
from stacker.natsort import frame_order
from stacker.options import StackOptions
from stacker.output import check_writable_depth, save_outputs
from stacker.pairs import Prefer, lone_note, one_of_each_shot, partners_note
from stacker.paths import check_distinct, is_our_output, once_each, output_paths
from stacker.pipeline import ReadAhead
from stacker.stack import FrameRecord, Stacker, parse_reference


def usable_cores() -> int:
    """The cores this process may run on: its affinity (``taskset``, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


@contextmanager
def opencv_threads(count: int | None) -> Iterator[None]:
    """OpenCV's worker pool set to ``count`` threads in the block (``None``: as it is), then
    back to what it was."""
    if count is None:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def collect_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    on_note: Callable[[str], None] | None = None,
    prefer: Prefer | None = None,
) -> list[Path]:
    """Expand files and folders into a list of image files (a folder's in natural order, from the
    first frame after a wrap of the camera's file counter: :func:`frame_order`).

    Result images stackrig wrote into a folder (an earlier run's composite, depth map or depth
    preview: they carry its mark) are left out, and ``on_note`` is told; a file named on its own
    is taken as given. A file met again (``frames/ frames/*.jpg``, or a link to a frame already
    named) is stacked once, where it first came, and ``on_note`` is told: the same exposure
    twice would count double in every average of the merge. With ``prefer``, a folder's
    RAW+JPEG pairs give one file each (:func:`~stacker.pairs.one_of_each_shot`), and
    ``on_note`` is told.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(_folder_frames(p, on_note, prefer))
        elif p.is_file():
            files.append(p)
        elif p.exists():  # a pipe or a device: reading it could block or never end
            raise StackerError(f"{p}: not an image file (a pipe or a device); give image files")
        else:
            raise StackerError(f"{p}: no such file or folder")
    files = once_each(files, on_note)
    if len(files) < 2:
        raise StackerError(
            f"{len(files)} input frame{'s' if len(files) != 1 else ''}: a stack needs at least two"
        )
    return files


def _folder_frames(
    p: Path, on_note: Callable[[str], None] | None, prefer: Prefer | None
) -> list[Path]:
    """The frames in folder ``p`` (see :func:`collect_inputs`). A capture session's folder,
    whose own images are its results, gives the frames in its ``frames/``, as ``stacker
    batch`` takes them: "holds only results of earlier runs" sent the photographer to stack
    the old composite and depth map."""
    entries = list(p.iterdir())
    named = [f for f in entries if is_image_path(f)]
    unread = [
        f for f in entries if f.suffix.lower() in UNREAD_EXTENSIONS and not f.name.startswith(".")
    ]
    images = frame_order(f for f in named if f.is_file())
    found = [f for f in images if not is_our_output(f)]
    if on_note is not None and len(images) < len(named):
        files_here = set(images)
        odd = ", ".join(_not_a_frame(f) for f in named if f not in files_here)
        on_note(f"{p}: left out, not image files: {odd}")
    if on_note is not None and len(found) < len(images):
        ours = ", ".join(f.name for f in images if f not in found)
        on_note(f"{p}: left out results of an earlier run: {ours}")
    session = p / "frames"
    if not found and session.is_dir() and not session.is_symlink():
        if on_note is not None:
            on_note(f"{p}: a capture session: stacking its frames, in {session}")
        return _folder_frames(session, on_note, prefer)
    if not found and images:
        raise StackerError(
            f"{p}: holds only results of earlier runs; to stack them, name the files one by one"
        )
    kinds = ", ".join(sorted({f.suffix.lower() for f in unread}))
    if not found:
        hint = f"; {kinds} files are not read: export them as JPEG or TIFF"
        raise StackerError(
            f"{p}: no images in this folder (looked for {READ_KINDS} files)"
            + (hint if unread else "")
        )
    if unread and on_note is not None:  # a frame shot as HEIF among JPEGs was left out unsaid
        names = ", ".join(f.name for f in frame_order(unread))
        on_note(f"{p}: left out, {kinds} files are not read (export them as JPEG or TIFF): {names}")
    if prefer is not None:
        found, partners, lone = one_of_each_shot(found, prefer)
        if lone and on_note is not None:
            on_note(lone_note(p, lone, prefer))
        if partners and on_note is not None:
            other = (
                "--prefer raw for the other"
                if prefer == "jpeg"  # a DNG output takes the RAW: not with --prefer jpeg
                else "--prefer jpeg and a .tif, .png or .jpg output for the other"
            )
            on_note(partners_note(p, partners, prefer, other))
    return found


def _not_a_frame(path: Path) -> str:
    """``path``'s name and what it is instead of an image file (a copy from a share can leave
    a link whose target stayed behind: a frame missing without a word)."""
    if path.is_symlink() and not path.exists():
        return f"{path.name} (a link to nothing)"
    return f"{path.name} ({'a folder' if path.is_dir() else 'a pipe or a device'})"


@dataclass
class StackRun:
    """What an offline stacking run did."""

    stacker: Stacker
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """The files not stacked that were not frames rejected either: unreadable, or
    :attr:`left_out`, with why."""
    left_out: list[Path] = field(default_factory=list)
    """First frames that aligned with none of the frames after them, and the stack was made
    again without (see :func:`stack_files`): read, and rejected, not unreadable."""
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    final_seconds: float = 0.0
    """From the last frame merged to every output written."""
    last_read_seconds: float = 0.0
    """From taking the last frame (decoded) to every output written."""
    file_numbers: dict[int, int] = field(default_factory=dict)
    """Each record's frame number as the user counts it, its file's place in :attr:`files`
    from 1 (a stack made again without its first frame numbers its records from that frame)."""


def stack_files(
    files: list[Path],
    output: Path,
    *,
    stack: StackOptions | None = None,
    depth_map: Path | None = None,
    strict: bool = False,
    jpeg_quality: int = 95,
    pipelined: bool = True,
    on_frame: Callable[[Path, FrameRecord | None, str | None], None] | None = None,
    on_restart: Callable[[Path, str, int], None] | None = None,
) -> StackRun:
    """Stack ``files`` into ``output``; ``on_frame(path, record, warning)`` reports progress.

    ``stack`` says how (method, alignment, reference, resampling, crop; the defaults without
    it); the output's format is its suffix. Everything that can be checked before the work is:
    the outputs are writable and distinct from the inputs and from each other, and a numbered
    reference (counted from 1, in the order of ``files``) names one of the files. ``pipelined``
    overlaps decoding, aligning and merging (see the module docstring).

    A stack whose first merged frame aligns with none of the others (a flash that did not fire
    on the first shot, a blown or a stray frame) is stacked again without it, up to
    :data:`MAX_RESTARTS` times, as that frame anywhere else would only be left out:
    ``on_restart(path, why, frames_left)`` is told before the frames are read again (and
    ``on_frame`` then reports them again).
    """
    options = stack or StackOptions()
    check_writable_output(output)
    if output.suffix.lower() == ".dng" and not is_raw_path(files[0]):
        raise StackerError(
            f"{output}: a DNG composite needs RAW frames (NEF, CR2, ARW, DNG...), and "
            f"{files[0].name} is not one; write .tif, .png or .jpg instead"
        )
    if depth_map is not None:
        check_writable_depth(depth_map)
    check_distinct(output_paths(output, depth_map), files)
    if not 1 <= jpeg_quality <= 100:
        raise StackerError(f"JPEG quality {jpeg_quality} is out of range: use 1 to 100")
    ref_file = _reference_file(options.reference, files)
    t0 = time.perf_counter()

    def one_pass(first: int) -> tuple[Stacker, StackRun, dict[int, int], float]:
        return _stack_pass(
            files, first, options, ref_file, strict=strict, pipelined=pipelined, on_frame=on_frame
        )

    stacker, run, added, t_last = one_pass(0)
    left_out: list[tuple[Path, str]] = []
    anchors: list[Path] = []
    for _ in range(MAX_RESTARTS):
        if stacker.frames_merged >= 2 or not _restartable(stacker, added, ref_file):
            break
        # The pass merged its first frame alone: every frame after it was rejected against it
        # (a flash that did not fire, a blown or a stray frame shot first), and the stack failed
        # where the same frame anywhere else is only left out.
        first = added[_first_merged(stacker)]
        anchor = files[first - 1]
        why = f"{anchor}: {left_out_reason(len(files) - first)}"
        before = set(files[:first])  # the frames after it are read again
        left_out += [*(s for s in run.skipped if s[0] in before), (anchor, why)]
        anchors.append(anchor)
        if on_restart is not None:
            on_restart(anchor, why, len(files) - first)
        stacker, run, added, t_last = one_pass(first)
    run.skipped[:0] = left_out
    run.left_out = anchors
    run.file_numbers = dict(added)
    ref = next((r for r in stacker.records if added[r.index] == ref_file), None)
    if ref is not None and not ref.merged:
        raise StackerError(
            f"{files[added[ref.index] - 1]}: the --reference frame was not merged "
            f"({ref.reason}); choose another --reference"
        )
    if stacker.frames_merged < 2:
        raise StackerError(
            f"only {stacker.frames_merged} usable frame(s) of {len(files)}: "
            f"a stack needs at least two that align{_skipped_note(run.skipped)}"
        )
    stacker.wait()
    t_merged = time.perf_counter()
    ref_path = files[added[stacker.reference_record().index] - 1]
    run.written = save_outputs(
        stacker,
        output,
        depth_map,
        jpeg_quality=jpeg_quality,
        metadata_from=ref_path,
        crop=options.crop,
    )
    # Those a stack killed mid-write (kill -9, a power cut) left, each as large as its output;
    # a minute's quiet, as another program may be writing one now.
    remove_temporaries(output_paths(output, depth_map), idle_s=60.0)
    t_end = time.perf_counter()
    run.seconds, run.final_seconds, run.last_read_seconds = (
        t_end - t0,
        t_end - t_merged,
        t_end - t_last,
    )
    return run


def _skipped_note(skipped: list[tuple[Path, str]]) -> str:
    """The first frame left out and why, for the error of a stack that failed: ``stacker
    batch`` reports that one line alone (the warnings naming each frame are the command line's),
    and a folder of damaged files read as frames that did not align."""
    if not skipped:
        return ""
    more = f"; {len(skipped) - 1} more left out" if len(skipped) > 1 else ""
    return f" ({skipped[0][1]}{more})"


MAX_RESTARTS = 2
"""How many first frames :func:`stack_files` leaves out, one after the other, when a stack fails
because no frame after its first merged one aligns with that one."""


def _stack_pass(
    files: list[Path],
    first: int,
    options: StackOptions,
    ref_file: int | None,
    *,
    strict: bool,
    pipelined: bool,
    on_frame: Callable[[Path, FrameRecord | None, str | None], None] | None,
) -> tuple[Stacker, StackRun, dict[int, int], float]:
    """Read, align and merge ``files[first:]`` (``ref_file`` counts from 1 in ``files``): the
    stacker, the run (its skipped frames), each record's file number (from 1, in ``files``) and
    when the last frame was read."""
    stacker = Stacker(
        **options.stacker_kwargs(), expected_frames=len(files) - first, overlap=pipelined
    )
    run = StackRun(stacker, files)
    added: dict[int, int] = {}
    t_last = time.perf_counter()
    few_cores = usable_cores() <= 2
    depth = 1 if pipelined and not few_cores else 0
    # On the reader thread: frames in order, one at a time, each decoded into the memory of
    # one already stacked (the frames alive at once: the one stacked and those read ahead).
    reader = OrientedReader(FramePool(size=depth + 1))
    with (
        opencv_threads(1 if few_cores else None),
        ReadAhead(files[first:], reader.read, depth=depth) as frames,
    ):
        # Not ``enumerate(frames)``: its result tuple, kept for reuse, would hold each frame
        # until the next one has been read, when nothing else needs it (at 45 MP, 270 MB
        # while LibRaw decodes; and the frame pool's array for the next frame).
        number = first
        for loaded in frames:
            number += 1
            t_last = time.perf_counter()
            path = loaded.item
            if loaded.value is None:
                if isinstance(loaded.error, OutOfMemoryError):
                    raise loaded.error  # the machine's fault, not the frame's: not skipped
                if strict or number == ref_file:
                    why = (
                        "--strict stops at unreadable frames" if strict else "the --reference frame"
                    )
                    raise StackerError(f"{loaded.error} ({why})")
                run.skipped.append((path, str(loaded.error)))
                if on_frame:
                    on_frame(path, None, f"skipped {loaded.error}")
                continue
            image, turned = loaded.value
            del loaded
            record = stacker.add(image, name=path.name, linear=is_raw_path(path), number=number)
            del image  # the stacker keeps a warped copy; the next frame is being decoded
            added[record.index] = number
            warning = turned
            if number == ref_file:
                # The stacker numbers the frames it was given; unreadable files before are not.
                stacker.reference = record.index
                # With the first frame merged alone, the fault may be that frame's: the pass
                # goes on, and the stack is tried again without it (or the reference's
                # record says why it was not merged).
                if not record.merged and stacker.frames_merged > 1:
                    raise StackerError(
                        f"{path}: the --reference frame was not merged ({record.reason}); "
                        "choose another --reference"
                    )
            if not record.merged:
                # Turned to the first frame's orientation, a frame shown upright elsewhere may
                # fail to align: the note says why, where the reason alone does not.
                why = f"; {turned.removeprefix(f'{path}: ')}" if turned else ""
                warning = f"{path}: not merged: {record.reason}{why}"
                if strict:
                    raise StackerError(f"{warning} (--strict stops at rejected frames)")
            if on_frame:
                on_frame(path, record, warning)
    return stacker, run, added, t_last


def _first_merged(stacker: Stacker) -> int:
    """The index (in the stacker's records) of its first merged frame."""
    return next(r.index for r in stacker.records if r.merged)


def _restartable(stacker: Stacker, added: dict[int, int], ref_file: int | None) -> bool:
    """True when a failed pass merged its first frame alone, at least two frames after it were
    read and kept out against it (files that could not be read are not its fault, and would
    not stack without it either), and a numbered ``--reference`` is a frame after it."""
    if stacker.frames_merged != 1:
        return False
    anchor = _first_merged(stacker)
    first = added[anchor]
    kept_out = sum(1 for r in stacker.records if r.index > anchor and not r.merged)
    return kept_out >= 2 and (ref_file is None or ref_file > first)


def _reference_file(reference: str | int, files: list[Path]) -> int | None:
    """The 1-based number of the file a numbered ``reference`` names (None for a name)."""
    parsed = parse_reference(reference)
    if not isinstance(parsed, int):
        return None
    if parsed >= len(files):
        raise StackerError(
            f"--reference {parsed + 1}: there are only {len(files)} frames; give a number from "
            f"1 to {len(files)}, or first, middle or last"
        )
    return parsed + 1
