"""Stacking many stacks at once (``stacker batch``): one Dask task per stack.

Digitisation projects shoot a stack per specimen, thousands a day. Each stack is independent, so
the work is one task per stack on Dask distributed (the ``cluster`` extra, imported only here):
a ``LocalCluster`` of single-threaded worker processes on this machine, or an existing cluster
given by its scheduler address, whose workers must see ROOT and OUTDIR under the same paths (a
shared store). A worker holds one stack at a time, so its memory is one stack's.

A *stack folder* is a capture-session folder (its ``frames/``) or any folder holding at least two
frames; roots are searched recursively. Results of ours in a folder (a composite ``stacker stack``
or an earlier batch wrote there, see :mod:`stacker.paths`) are never frames. Each stack is
written to ``OUTDIR/<name>.<ext>`` (and ``<name>-depth.png`` with its preview and sidecar),
atomically, by :func:`stacker.offline.stack_files` with the options ``stacker stack`` takes. A
stack whose outputs all exist and were made from the same frames with the same options
(:meth:`StackJob.up_to_date`) is skipped, so a rerun resumes; a stack that fails is reported
and the others go on. The report (JSON Lines, or CSV by extension) gets one row per stack as it
finishes: frames, merged, rejected, unreadable, seconds, peak memory of the task, outputs, error.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import resource
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from stacker.errors import StackerError
from stacker.io import is_image_path, remove_temporaries
from stacker.launch import wind_down
from stacker.locking import folder_locked
from stacker.natsort import frame_order, natural_key
from stacker.output import depth_paths
from stacker.pairs import Prefer, ShotKeys, lone_note, one_of_each_shot, partners_note
from stacker.paths import check_distinct, is_our_output, once_each, rewritten, same_file, stamps

REPORT_FIELDS = ("name", "status", "frames", "merged", "rejected", "unreadable", "seconds",
                 "peak_memory_mb", "outputs", "error", "worker", "folder")  # fmt: skip


@dataclass(frozen=True)
class StackJob:
    """One stack to make: its frames and where its outputs go."""

    name: str
    folder: Path
    frames: tuple[Path, ...]
    output: Path
    depth_map: Path | None
    settings: str = ""
    """The stacking options this run makes the outputs with (see :func:`with_settings`)."""
    made_with: str | None = None
    """The options the outputs on disk were made with, as the output folder's
    :data:`SETTINGS_FILE` recorded them; ``None`` when it has no record of them."""
    made_from: str | None = None
    """The folder (its real path) those outputs were stacked from, as recorded."""
    made_counts: tuple[int | None, int | None, int | None] = (None, None, None)
    """Frames merged, rejected and unreadable when those outputs were made, as recorded: a
    rerun's report keeps them for the stacks it finds up to date."""

    def outputs(self) -> list[Path]:
        """Every file a complete run of this stack leaves in OUTDIR."""
        paths = [self.output]
        if self.depth_map is not None:
            paths += list(depth_paths(self.depth_map))
        return paths

    def up_to_date(self) -> bool:
        """All outputs exist and were made from these frames with this run's options (a
        rerun with ``--method depthmap`` restacks). With the output folder's record of how
        they were made, that record says so (the frames' names, sizes and times are in it);
        without one, each output must be newer than every frame. Frames dated ahead of the
        clock (a camera's clock ahead, a time zone) were stacked again by every run."""
        if self.made_with is not None and self.made_with != self.settings:
            return False
        try:
            oldest_output = min(_mtime(p) for p in self.outputs())
            if self.made_with is not None:
                return True
            return oldest_output > max(f.stat().st_mtime for f in self.frames)
        except (OSError, ValueError):
            return False

    def replaces_another_stack(self) -> bool:
        """Whether this run would write over outputs an earlier run made from another folder
        with the same name below its root (``day1/tray1/s1`` and ``day2/tray1/s1``, batched
        one after the other into one output folder)."""
        if self.made_from is None or self.up_to_date():
            return False
        if self.made_from == str(self.folder.resolve()):
            return False
        return any(os.path.lexists(p) for p in self.outputs())


def _mtime(path: Path) -> float:
    """An output's time of change; never a link's target (outputs are never links)."""
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.ENOENT, "not a file", str(path))
    return st.st_mtime


SETTINGS_FILE = "batch-settings.jsonl"
"""In the output folder: one line per stack written, ``{"output": name, "settings": ...,
"folder": ..., "merged": n, "rejected": n, "unreadable": n}``, the options it was stacked with,
the folder it was stacked from and what became of its frames (the last line for a name holds).
Before a stack is stacked again, a line with empty ``settings`` says its outputs are about to
change (see :func:`record_restacking`)."""


def with_settings(jobs: Sequence[StackJob], options: dict[str, Any]) -> list[StackJob]:
    """``jobs`` knowing the options this run stacks with, and how their outputs were made
    (from :data:`SETTINGS_FILE`)."""
    recorded: dict[str, dict[str, Any]] = {}
    folders = {job.output.parent for job in jobs}
    for folder in folders:
        with contextlib.suppress(OSError):
            for line in (folder / SETTINGS_FILE).read_text(errors="replace").splitlines():
                # RecursionError: a line of a few thousand "[" is as unreadable as any
                with contextlib.suppress(ValueError, TypeError, KeyError, RecursionError):
                    row = json.loads(line)
                    row["settings"] = str(row["settings"])
                    recorded[str(folder / row["output"])] = row
    return [_as_recorded(job, options, recorded.get(str(job.output))) for job in jobs]


def _as_recorded(job: StackJob, options: dict[str, Any], row: dict[str, Any] | None) -> StackJob:
    settings = json.dumps(
        {"options": options, "frames": _frames_digest(job.frames)}, sort_keys=True, default=str
    )
    if row is None:
        return replace(job, settings=settings)

    def count(key: str) -> int | None:
        value = row.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    folder = row.get("folder")
    return replace(
        job,
        settings=settings,
        made_with=row["settings"],
        made_from=folder if isinstance(folder, str) else None,
        made_counts=(count("merged"), count("rejected"), count("unreadable")),
    )


def _frames_digest(frames: Sequence[Path]) -> str:
    """What the frames were: names, sizes and times. Frames taken out of a stack leave every
    time as it was, so a rerun judged by times alone kept the composite made with them."""
    digest = hashlib.sha256()
    for frame in frames:
        try:
            st = frame.stat()
            digest.update(
                f"{frame.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="replace")
            )
        except OSError:
            digest.update(f"{frame.name}\0?\n".encode(errors="replace"))
    return digest.hexdigest()[:32]


def check_outputs_ours(jobs: Sequence[StackJob]) -> None:
    """Refuse, before anything runs, a composite's or depth map's name that holds a file
    stackrig did not write (a rerun into a folder of other work replaced it in silence, or
    called it up to date). A link there is replaced, never followed, as every output is."""
    for job in jobs:
        for path in (job.output, job.depth_map):
            if path is None or not _is_file(path) or is_our_output(path):
                continue
            raise StackerError(
                f"{path}: exists and was not written by stackrig; move it away, or give "
                "--output another folder"
            )
        if job.replaces_another_stack():
            raise StackerError(
                f"{job.output}: was stacked from {job.made_from} by an earlier batch, and "
                f"{job.folder} would replace it; give --output another folder, or move the "
                "earlier result away (if it is that folder moved, and frames were added since, "
                "delete the result to stack it again)"
            )


def _is_file(path: Path) -> bool:
    """A regular file, not a link, at ``path``. A name too long for the file system is none
    (that stack then fails alone, saying so): ``Path.is_file`` raised ENAMETOOLONG, and a batch
    with one deeply nested folder ended in a traceback before it began."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def record_settings(job: StackJob, report: StackReport) -> None:
    """Note in the output folder how ``job``'s outputs were just made: the options, the folder
    and what became of its frames (``report``)."""
    row = {
        "output": job.output.name,
        "settings": job.settings,
        "folder": str(job.folder.resolve()),
        "merged": report.merged,
        "rejected": report.rejected,
        "unreadable": report.unreadable,
    }
    _append_rows(job.output.parent, [row])


def record_restacking(jobs: Sequence[StackJob]) -> None:
    """Note in the output folders, before ``jobs`` are stacked, that their outputs are about to
    change: made with no known options, until :func:`record_settings` says how. A batch killed
    (kill -9, out of memory, a power cut) after a worker replaced a stack's outputs but before
    it recorded them left the earlier record standing, and a rerun with that record's options
    found the new outputs up to date: a depthmap composite kept as the pyramid one."""
    by_folder: dict[Path, list[dict[str, Any]]] = {}
    for job in jobs:
        row = {"output": job.output.name, "settings": "", "folder": str(job.folder.resolve())}
        by_folder.setdefault(job.output.parent, []).append(row)
    for folder, rows in by_folder.items():
        _append_rows(folder, rows)


def _append_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to ``folder``'s :data:`SETTINGS_FILE`, on the disk before the outputs
    they speak of change."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with contextlib.suppress(OSError):  # unrecorded, the next run judges by the files' times
        fd = os.open(folder / SETTINGS_FILE, flags, 0o666)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):  # never a link, a pipe or a device
                os.write(fd, data)
                os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class StackReport:
    """What became of one stack: one report row."""

    name: str
    folder: str
    status: str  # "done", "failed", "skipped" (up to date) or "cancelled"
    frames: int = 0
    merged: int | None = None  # these three only for stacks stacked in this run
    rejected: int | None = None
    unreadable: int | None = None
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    worker: str | None = None


Note = Callable[[str], None]


def _frames_in(folder: Path, pattern: str | None, on_note: Note | None = None) -> list[Path]:
    """The frames in ``folder``: images matching ``pattern``, not results of ours (a composite
    or depth map written there by ``stacker stack`` or by a batch into this folder), each file
    once (a link to a frame is the same exposure)."""
    found = [p for p in folder.iterdir() if p.is_file() and is_image_path(p)]
    if pattern:
        found = [p for p in found if fnmatch.fnmatch(p.name.lower(), pattern.lower())]
    ordered = frame_order(p for p in found if not is_our_output(p))
    return once_each(ordered, on_note)


def _shots(frames: Sequence[Path]) -> int:
    """How many exposures ``frames`` (of one folder, in order) are: a RAW+JPEG pair is one
    (:class:`~stacker.pairs.ShotKeys`). One shot is no stack: a tray's overview taken RAW+JPEG
    beside its specimens' folders was taken for the tray's stack (and failed), and the
    specimens below it were left out."""
    keys = ShotKeys()
    return len({keys.key(frame) for frame in frames})


def _images_below(
    folder: Path, pattern: str | None, skip: Path | None, own: Path | None = None
) -> list[tuple[Path, str]]:
    """(real path, note) for each subfolder of stack ``folder`` that holds frames: a stack's
    folder is not searched further (its subfolders are its own: selects, retakes, exports), and a
    retake shot into one was left out without a word. A capture session's frames are in its
    ``frames/``. The notes wait for the whole search (see :func:`find_stacks`): a subfolder
    also given as a root, or reached by a link to a folder stacked, is not left out."""
    found: list[tuple[Path, str]] = []
    for sub in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if sub.name.startswith(".") or not sub.is_dir() or sub.resolve() in (skip, own):
            continue
        with contextlib.suppress(OSError):  # unreadable: a frame of it cannot be told of
            session = sub / "frames"
            count = len(_frames_in(session, pattern)) if session.is_dir() else 0
            if count < 2:  # no capture session: the frames in the folder itself
                count = len(_frames_in(sub, pattern))
            if count:
                note = (
                    f"{sub}: {count} frame(s) left out, in a subfolder of the stack {folder}; "
                    "give it as a root of its own to stack it"
                )
                found.append((sub.resolve(), note))
    return found


def _stack_folders(
    root: Path,
    pattern: str | None,
    skip: Path | None,
    seen: set[Path],
    on_note: Note | None,
    top: Path | None = None,
    below: list[tuple[Path, str]] | None = None,
) -> Iterable[tuple[Path, list[Path]]]:
    """(stack folder, its frames) under ``root``, depth first, in natural order.

    A folder reached again through a link (``seen`` holds the real paths so far) is passed
    over: a link to a parent folder made a loop that stacked the same frames dozens of times.
    So is a link to a folder above the root (every folder beside the root was stacked; a
    link to other stacks elsewhere is followed), and one that cannot be read (``lost+found``
    at a drive's root), each with a note.
    """
    real = root.resolve()
    hidden = top is not None and root.name.startswith(".")  # a root the user named is not
    top = real if top is None else top
    if real == skip or real in seen or hidden:
        return
    if real != top and top.is_relative_to(real):
        if on_note is not None:
            on_note(f"{root}: left out, a link to {real}, which holds {top}")
        return
    seen.add(real)
    try:
        frames_dir = root / "frames"
        if frames_dir.is_dir() and _shots(frames := _frames_in(frames_dir, pattern, on_note)) >= 2:
            yield root, frames  # a capture session: its frames, not its composite
            if below is not None:  # a retake beside them is left out as in any stack
                below.extend(_images_below(root, pattern, skip, frames_dir.resolve()))
            return
        if _shots(frames := _frames_in(root, pattern, on_note)) >= 2:
            yield root, frames
            if below is not None:
                below.extend(_images_below(root, pattern, skip))
            return
        subfolders = sorted((p for p in root.iterdir() if p.is_dir()),
                            key=lambda p: natural_key(p.name))  # fmt: skip
    except OSError as exc:
        if on_note is not None:
            on_note(f"{root}: left out, cannot be read ({exc.strerror or exc})")
        return
    for sub in subfolders:
        yield from _stack_folders(sub, pattern, skip, seen, on_note, top, below)


def find_stacks(
    roots: Sequence[Path],
    outdir: Path,
    *,
    ext: str = ".tif",
    pattern: str | None = None,
    depth_maps: bool = True,
    on_note: Note | None = None,
) -> list[StackJob]:
    """The stacks under ``roots``, each named by its path below its root (``a/b`` -> ``a-b``).

    A folder of RAW+JPEG pairs (a camera, a capture session) gives one file of each: the RAW
    for a DNG output, else the JPEG. ``on_note`` hears of folders that cannot be read, of
    frames named twice and of such pairs."""
    prefer: Prefer = "raw" if ext == ".dng" else "jpeg"
    skip = outdir.resolve()
    jobs: dict[str, StackJob] = {}
    seen: set[Path] = set()  # a folder given twice, or inside another given, is one stack
    below: list[tuple[Path, str]] = []  # subfolders of stack folders holding frames
    for root in roots:
        if not root.is_dir():
            what = "not a folder" if os.path.lexists(root) else "no such folder"
            raise StackerError(f"{root}: {what}; give folders that hold stacks")
        if root.resolve() == skip:  # it would be passed over, as an output folder inside a root
            raise StackerError(
                f"{root}: is also the output folder; give --output a folder of its own, "
                f"e.g. {root.resolve().parent / (root.resolve().name + '-stacked')}"
            )
        for folder, found in _stack_folders(root, pattern, skip, seen, on_note, below=below):
            try:
                frames, partners, lone = one_of_each_shot(found, prefer)
            except StackerError as exc:  # this stack is of the other kind: the rest go on
                if on_note is not None:
                    on_note(f"{exc}; not stacked")
                continue
            if lone and on_note is not None:
                on_note(lone_note(folder, lone, prefer))
            if partners and on_note is not None:
                other = "a .dng output stacks the RAW" if prefer == "jpeg" else "for a DNG output"
                on_note(partners_note(folder, partners, prefer, other))
            rel = folder.relative_to(root).parts
            name = portable_name("-".join(rel) if rel else root.resolve().name)
            if name in jobs:
                raise StackerError(
                    f"two stacks would both be written as '{name}': {jobs[name].folder} and "
                    f"{folder}; batch them into separate output folders"
                )
            jobs[name] = StackJob(
                name=name,
                folder=folder,
                frames=tuple(frames),
                output=outdir / f"{name}{ext}",
                depth_map=outdir / f"{name}-depth.png" if depth_maps else None,
            )
    for real, note in below:
        if real not in seen and on_note is not None:  # not searched after all (see _images_below)
            on_note(note)
    _check_output_folder(roots, outdir, pattern, list(jobs.values()), on_note)
    if not jobs:
        what = f"matching '{pattern}'" if pattern else "(JPEG, PNG, TIFF, RAW)"
        raise StackerError(
            f"no stacks under {', '.join(map(str, roots))}: no folder holds two or more frames "
            f"{what}"
        )
    _check_outputs_apart(list(jobs.values()))
    return list(jobs.values())


_REFUSED_IN_NAMES = re.compile(r'[\x00-\x1f:*?"<>|\\]')


def portable_name(name: str) -> str:
    """``name`` with the characters Windows, and FAT, exFAT and NTFS disks wherever they are
    mounted, refuse in file names (``: * ? " < > | \\``, control characters) made ``_``. A stack
    folder named by its time (``2026-12-06T10:30``) on a Linux disk, batched onto a USB stick,
    failed at its write as "Operation not permitted" (FAT) or "No such file or directory"
    (exFAT), after the batch had run."""
    return _REFUSED_IN_NAMES.sub("_", name)


def _check_output_folder(
    roots: Sequence[Path],
    outdir: Path,
    pattern: str | None,
    jobs: list[StackJob],
    on_note: Note | None,
) -> None:
    """Say so when the output folder, under a root, holds stacks of its own: it is never looked
    into, and they are left out (an error when they are all there is)."""
    real = outdir.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in roots):
        return
    taken = {f.resolve() for job in jobs for f in job.frames}
    hidden = [folder for folder, frames in _stack_folders(real, pattern, None, set(), None)
              if not {f.resolve() for f in frames} <= taken]  # fmt: skip
    if hidden and not jobs:
        raise StackerError(
            f"no stacks under {', '.join(map(str, roots))} but {outdir}, the output folder, "
            "which is never stacked; give --output a folder of its own"
        )
    if hidden and on_note is not None:
        names = ", ".join(str(h) for h in hidden[:3]) + (", ..." if len(hidden) > 3 else "")
        on_note(f"left out {names}: in {outdir}, the output folder, which is never stacked")


def _check_outputs_apart(jobs: list[StackJob]) -> None:
    """Refuse two stacks whose outputs share a file name (stack ``a``'s depth map is
    ``a-depth.png``, stack ``a-depth``'s composite too, with ``--format png``): one would
    replace the other, and a rerun would find both up to date."""
    owner: dict[str, StackJob] = {}
    for job in jobs:
        for path in job.outputs():
            other = owner.setdefault(path.name.casefold(), job)
            if other is not job:
                raise StackerError(
                    f"stacks '{other.name}' ({other.folder}) and '{job.name}' ({job.folder}) "
                    f"would both write {path}; rename one of the folders, or batch them into "
                    "separate output folders"
                )


# --------------------------------------------------------------------------- on the worker
def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: VmHWM), so a task measures its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset_worked: bool) -> float:
    if reset_worked:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except (OSError, ValueError, IndexError):
            pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the worker's lifetime peak
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def stack_one(job: StackJob, options: dict[str, Any]) -> StackReport:
    """Stack ``job`` with ``options``, the keyword arguments of
    :func:`~stacker.offline.stack_files` (``stack``, ``strict``, ``jpeg_quality``); never raises
    (errors are reported).

    Runs on a Dask worker. The peak memory is the task's own where the OS lets a process reset
    its peak (Linux), else the worker process's peak so far.
    """
    from stacker.offline import stack_files

    report = StackReport(name=job.name, folder=str(job.folder), status="failed",
                         frames=len(job.frames))  # fmt: skip
    try:
        from dask.distributed import get_worker

        report.worker = get_worker().address
    except (ImportError, ValueError):
        report.worker = None
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    try:
        run = stack_files(list(job.frames), job.output, depth_map=job.depth_map, **options)
    except Exception as exc:  # reported, and the batch goes on with the other stacks
        report.error = str(exc) if isinstance(exc, StackerError) else f"{type(exc).__name__}: {exc}"
    else:
        s = run.stacker
        report.status = "done"
        report.merged = s.frames_merged
        report.rejected = s.frames_added - s.frames_merged + len(run.left_out)
        report.unreadable = len(run.skipped) - len(run.left_out)
        report.outputs = [str(p) for p in run.written]
    report.seconds = round(time.perf_counter() - t0, 3)
    report.peak_memory_mb = round(_peak_rss_mb(reset), 1)
    return report


# --------------------------------------------------------------------------- the report
def check_report(path: Path, jobs: Sequence[StackJob]) -> None:
    """Refuse a report path that is not ``.jsonl`` or ``.csv``, or that is one of the frames
    under another name (a link): opening the report empties it."""
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise StackerError(f"--report {path}: name the report .jsonl (JSON Lines) or .csv")
    if any(same_file(path, job.output.parent / SETTINGS_FILE) for job in jobs):
        raise StackerError(
            f"--report {path}: is the batch's record of how each output was made; name another file"
        )
    check_distinct([path], [frame for job in jobs for frame in job.frames])


class ReportWriter:
    """Writes one row per stack as it finishes: JSON Lines, or CSV for a ``.csv`` path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.csv = path.suffix.lower() == ".csv"
        try:
            fd = _open_report(path)
        except OSError as exc:
            raise StackerError(
                f"--report {path}: cannot write the report ({exc.strerror or exc}); "
                "choose another file"
            ) from None
        # A folder name that is not UTF-8 is written escaped, as the JSON Lines report has it.
        self._fh = open(  # noqa: SIM115 - kept open for the run
            fd, "w", newline="", encoding="utf-8", errors="backslashreplace"
        )
        if self.csv:
            csv.writer(self._fh).writerow(REPORT_FIELDS)

    def write(self, report: StackReport) -> None:
        row = asdict(report)
        if self.csv:
            # One a line of the cell: a stack named after a folder such as "moth wing" has
            # spaces in its outputs' names, and joined by spaces the cell could not be split.
            row["outputs"] = "\n".join(report.outputs)
            out = io.StringIO()
            csv.writer(out).writerow(["" if row[k] is None else row[k] for k in REPORT_FIELDS])
            self._fh.write(out.getvalue())
        else:
            self._fh.write(json.dumps({k: row[k] for k in REPORT_FIELDS}) + "\n")
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:  # a full disk: the stacks' outputs cannot be written either
            raise StackerError(
                f"--report {self.path}: cannot write the report ({exc.strerror or exc}); free "
                "some space, or give --output a folder on another disk"
            ) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # said by ``write`` already
            self._fh.close()


def _open_report(path: Path) -> int:
    """The report file, emptied, opened for writing without following a link.

    A link in its place (one planted in the output folder, say) is replaced, never written
    through: the report used to empty whatever file it pointed to. Only a regular file is
    written; a pipe or a device is refused, not waited on.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a pipe with no reader
            raise OSError(errno.EINVAL, "not a regular file") from None
        if exc.errno != errno.ELOOP:
            raise
        path.unlink()  # the link itself
        fd = os.open(path, flags | os.O_EXCL, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    os.ftruncate(fd, 0)
    os.set_blocking(fd, True)
    return fd


def remove_stale_temporaries(jobs: Sequence[StackJob]) -> None:
    """Delete hidden temporaries an interrupted run left beside our outputs (atomic writes);
    the batch's lock on the output folder keeps any other run from writing one now."""
    remove_temporaries(p for job in jobs for p in job.outputs())


Progress = Callable[[int, int, int, int, int], None]
"""``(done, running, failed, skipped, workers)`` a few times a second; ``workers`` is how many
the cluster has (none yet, on a scheduler no worker has joined)."""


# --------------------------------------------------------------------------- the driver
@dataclass
class BatchSummary:
    """What a batch run did."""

    reports: list[StackReport] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    workers: int = 0

    def count(self, status: str) -> int:
        """How many stacks ended with ``status``."""
        return sum(r.status == status for r in self.reports)


LOCAL_WORKERS_PER_CORE = 4
"""A local cluster's bound, per core: more processes than that only compete for memory."""


def local_worker_limit() -> int:
    """The most worker processes ``stacker batch`` starts on this machine."""
    return LOCAL_WORKERS_PER_CORE * (os.cpu_count() or 1)


def require_dask() -> None:
    """Refuse, in one line, a batch on a machine without Dask (the ``cluster`` extra)."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise StackerError("stacker batch needs Dask: pip install 'stackrig[cluster]'") from None


SCHEDULER_ANSWER_S = 30.0
"""How long a scheduler may take to answer a new client."""


def _client_of(scheduler: str, connect: Callable[[], Any]) -> Any:
    """The client ``connect`` opens to ``scheduler``, or a one-line refusal: nothing there, or
    another server. It connects on a thread of its own because Dask waits for the scheduler's
    handshake without a limit, so a server that took the connection and said nothing held the
    batch for ever (one that answers in another protocol ended it in a traceback: its bytes
    read as a frame length of exabytes)."""
    made: list[Any] = []
    failed: list[BaseException] = []

    def attempt() -> None:
        try:
            made.append(connect())
        except Exception as exc:
            failed.append(exc)

    thread = threading.Thread(target=attempt, name="scheduler-check", daemon=True)
    thread.start()
    thread.join(SCHEDULER_ANSWER_S)
    elsewhere = "check the host and port (8786 unless told otherwise), or leave out --scheduler"
    if thread.is_alive():
        raise StackerError(
            f"{scheduler}: a server took the connection but no Dask scheduler answered within "
            f"{SCHEDULER_ANSWER_S:g} s; {elsewhere}"
        )
    if made:
        return made[0]
    exc = failed[0]
    if isinstance(exc, ValueError):  # not an address: no port, an unknown scheme
        raise StackerError(
            f"--scheduler {scheduler}: not a scheduler address ({exc}); give one such as "
            "tcp://host:8786"
        )
    if isinstance(exc, (OSError, TimeoutError)):
        raise StackerError(
            f"{scheduler}: no Dask scheduler answers there ({exc}); start one with "
            "'dask scheduler' or leave out --scheduler for a local cluster"
        )
    raise StackerError(  # another server's bytes read as Dask's: any error, even memory
        f"{scheduler}: what answers there is not a Dask scheduler ({type(exc).__name__}); "
        f"{elsewhere}"
    )


def _connect(scheduler: str | None, workers: int | None, stacks: int) -> tuple[Any, Any]:
    """A Dask client: to ``scheduler``, or to a new LocalCluster of ``workers`` processes (one
    per core by default), never more than the ``stacks`` to do."""
    require_dask()
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        client = _client_of(scheduler, lambda: Client(scheduler, timeout="15s"))
        if workers:
            try:
                client.wait_for_workers(workers, timeout=120)
            except TimeoutError:
                client.close()
                raise StackerError(
                    f"{scheduler}: fewer than {workers} workers joined within 2 minutes"
                ) from None
        return client, None
    # Its scheduler's HTTP server binds 8787 even without a dashboard, and says so in a raw
    # Python warning when another batch holds the port: it then takes any other.
    warnings.filterwarnings("ignore", r"Port \d+ is already in use", module="distributed")
    with _stops_held() as came:
        cluster = LocalCluster(
            n_workers=min(workers or os.cpu_count() or 1, stacks), threads_per_worker=1,
            processes=True, host="127.0.0.1", dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )  # fmt: skip
    if came:  # stopped while it started: nothing was submitted
        wind_down()  # a second Ctrl-C or SIGTERM does not wait for the cluster to close
        cluster.close()
        raise KeyboardInterrupt
    return Client(cluster), cluster


@contextmanager
def _stops_held() -> Iterator[list[int]]:
    """Start a local cluster in the block: its worker processes never see Ctrl-C, and a stop
    signal that comes meanwhile is noted in the list yielded, neither lost nor raised there.

    Worker processes keep the signal mask of the thread that starts them: Dask's, started in
    the block from this one with SIGINT blocked. So Ctrl-C, which the terminal sends to them
    too, reaches only this process, which cancels the batch and closes the cluster in order.
    Multiprocessing's resource tracker unblocks SIGINT in the thread that first starts it, so
    it is started before. SIGINT was ignored here instead, and a Ctrl-C in the seconds the
    cluster took to start was dropped: the batch ran to its end, status 0. SIGTERM or SIGHUP
    raised in the middle of the start, and Dask failed to close the half-started cluster,
    with a traceback. Once one came, the batch is stopping: a second Ctrl-C or SIGTERM ends it
    at once with 130, as :func:`~stacker.launch.wind_down` does, and a hang-up is ignored;
    noted too, the second waited for the start (seconds on a Pi, or the start's timeout).
    """
    import signal
    from multiprocessing import resource_tracker

    came: list[int] = []

    def note(signum: int, _frame: object) -> None:
        if came and signum != signal.SIGHUP:
            os._exit(130)
        came.append(signum)

    # The tracker frees the cluster's semaphores when a second stop ends the batch at once
    # (os._exit), as it is there to, and warned of "leaked semaphore objects" in three lines
    # under the one line. It takes this process's warning options as it starts.
    quiet = "ignore:resource_tracker:UserWarning"
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)
    resource_tracker.ensure_running()
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, note) for s in stops if signal.getsignal(s) != signal.SIG_IGN}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield came
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a Ctrl-C held is noted here
        for s, handler in previous.items():
            signal.signal(s, handler)


def _failed(job: StackJob, exc: BaseException) -> StackReport:
    return StackReport(name=job.name, folder=str(job.folder), status="failed",
                       frames=len(job.frames), error=f"{type(exc).__name__}: {exc}")  # fmt: skip


@contextmanager
def _batch_lock(outdir: Path) -> Iterator[None]:
    """Hold ``outdir`` locked for a run (:func:`folder_locked`). A second batch into the same
    folder stacked every stack again and emptied the first one's report under it, and could
    delete the temporaries it was writing. Where the file system cannot lock folders (some
    network shares), the run goes on unlocked."""
    held = ExitStack()
    try:
        held.enter_context(folder_locked(outdir, wait_s=0))
    except TimeoutError:
        raise StackerError(
            f"{outdir}: another stacker batch is writing into this folder; wait for it to "
            "finish, or give --output another folder"
        ) from None
    except OSError as exc:
        raise StackerError(f"{outdir}: cannot open the output folder ({exc.strerror})") from None
    with held:
        yield


def run_batch(
    jobs: Sequence[StackJob],
    options: dict[str, Any],
    report_path: Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    on_progress: Progress | None = None,
    on_report: Callable[[StackReport], None] | None = None,
) -> BatchSummary:
    """Stack every job not up to date, one Dask task each; Ctrl-C cancels what is left.

    One batch at a time writes into an output folder (see :func:`_batch_lock`)."""
    t0 = time.perf_counter()
    summary = BatchSummary()
    check_report(report_path, jobs)
    check_outputs_ours(jobs)
    with _batch_lock(jobs[0].output.parent if jobs else report_path.parent):
        writer = ReportWriter(report_path)
        counts = {"done": 0, "failed": 0, "skipped": 0}

        def record(rep: StackReport) -> None:
            writer.write(rep)  # first: a Ctrl-C between the two repeats a row, never drops one
            summary.reports.append(rep)
            if rep.status in counts:
                counts[rep.status] += 1
            if on_report:
                on_report(rep)

        todo = []
        for job in jobs:
            if not job.up_to_date():
                todo.append(job)
                continue
            merged, rejected, unreadable = job.made_counts
            skipped = StackReport(name=job.name, folder=str(job.folder), status="skipped",
                                  frames=len(job.frames), merged=merged, rejected=rejected,
                                  unreadable=unreadable,
                                  outputs=[str(p) for p in job.outputs()])  # fmt: skip
            if job.made_from not in (None, str(job.folder.resolve())):
                # The same frames in another folder: the stack moved (a disk mounted under
                # another name, a folder renamed). Recorded where it is now, so that a frame
                # added later restacks it, where "stacked from ... by an earlier batch"
                # refused the whole batch.
                record_settings(job, skipped)
            record(skipped)
        if jobs:
            remove_stale_temporaries(jobs)
        try:
            if todo:
                record_restacking(todo)
                _run_on_cluster(todo, options, scheduler, workers, summary, record, counts,
                                on_progress)  # fmt: skip
        finally:
            writer.close()
            summary.seconds = time.perf_counter() - t0
        return summary


def _finished_report(fut: Any) -> StackReport | None:
    """The report of a task that already finished successfully, else None."""
    if fut.status != "finished":
        return None
    try:
        return fut.result(timeout=5)
    except Exception:  # the connection went with the interrupt: count it as cancelled
        return None


def _run_on_cluster(todo, options, scheduler, workers, summary, record, counts, on_progress):
    before = {job.name: stamps(job.outputs()) for job in todo}  # see the interrupt below
    client, cluster = _connect(scheduler, workers, len(todo))
    from dask.distributed import as_completed

    futures: dict[Any, StackJob] = {}
    try:
        summary.workers = len(client.scheduler_info().get("workers", {}))
        for job in todo:
            # Dask's messages are UTF-8: a folder name that is not (its bytes kept as surrogates)
            # in the key lost the connection to the scheduler.
            name = job.name.encode("utf-8", "backslashreplace").decode()
            fut = client.submit(stack_one, job, options, key=f"stack-{name}-{os.getpid()}",
                                pure=False, retries=0)  # fmt: skip
            futures[fut] = job
        finished = as_completed(futures)
        while not finished.is_empty():
            for fut in finished.next_batch(block=False):
                # The job leaves ``futures`` once recorded: a Ctrl-C before that finds it there
                # (finished, so reported done) and a stack written whole stayed out of the
                # report and the settings record.
                job = futures[fut]
                try:
                    rep = fut.result()
                except Exception as exc:  # the worker died (out of memory...) or lost the task
                    rep = _failed(job, exc)
                if rep.status == "done":
                    record_settings(job, rep)
                record(rep)
                del futures[fut]
            if on_progress:
                processing = client.processing()  # every worker, busy or not
                running = sum(len(keys) for keys in processing.values())
                on_progress(counts["done"], running, counts["failed"], counts["skipped"],
                            len(processing))  # fmt: skip
            time.sleep(0.2)
    except KeyboardInterrupt:
        summary.interrupted = True
        # A stack that finished on its worker before the loop saw it is written whole: it is
        # reported done, not cancelled (a rerun finds it up to date either way).
        recorded = {rep.name for rep in summary.reports}
        futures = {fut: job for fut, job in futures.items() if job.name not in recorded}
        finished_first = {fut: _finished_report(fut) for fut in futures}
        client.cancel([fut for fut, rep in finished_first.items() if rep is None])
        left = [(finished_first[fut], job) for fut, job in futures.items()]
    else:
        left = []
    finally:
        # Closing mid-task makes Dask log lost connections, with tracebacks: expected here.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        client.close()
        if cluster is not None:
            cluster.close()
            # Its workers are gone: one stopped mid-write (the interrupt, a worker killed for
            # memory) left the hidden temporary of an output behind. A remote cluster's workers
            # may still be writing theirs; the next run's start removes what they leave.
            remove_stale_temporaries(todo)
    for report, job in left:
        if report is None:
            # Judged once the cluster is closed: a task cannot be cancelled while it runs, and
            # one that wrote its outputs whole after the interrupt came is done.
            outputs = before[job.name]
            done = bool(outputs) and len(rewritten(outputs)) == len(outputs)
            report = StackReport(
                name=job.name,
                folder=str(job.folder),
                status="done" if done else "cancelled",
                frames=len(job.frames),
                outputs=[str(p) for p in job.outputs()] if done else [],
            )
        if report.status == "done":
            record_settings(job, report)
        record(report)
