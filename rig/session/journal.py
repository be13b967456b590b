"""The session journal: an append-only JSON-lines file, one fsynced line per event.

Every captured frame gets a ``frame`` record (index, position, files, timestamps) once its files
are on disk under their final names; every stacked frame gets a ``merge`` record (alignment
score, transform, gain, or why it was kept out); every move of the rail a ``move`` record with
its target, before the rail is told. ``start``, ``resume`` and ``finish`` records bracket each
run; ``finish`` says where the rail was left (``rail_at``). A record is written with a single
``write`` followed by ``fsync``, so after a crash or a power cut the file holds whole lines plus
at most one torn last line, which :func:`read_journal` ignores and :meth:`Journal.open` cuts off
before appending.

The journal says which positions are done; :func:`rig.session.folder.reconcile` checks it
against the frames actually on disk when a session resumes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import RigError
from rig.units import is_finite
from stacker.io import fsync_dir, storage_remedy

JOURNAL_NAME = "journal.jsonl"


class JournalError(RigError):
    """A journal that cannot be read or written (corrupt in the middle, unwritable folder)."""


@dataclass(frozen=True)
class JournalContents:
    """What a journal holds: its whole records, and whether a torn last line was dropped."""

    records: tuple[dict[str, Any], ...]
    torn_tail: bool = False
    valid_bytes: int = 0
    """Length of the file up to the end of the last whole line."""
    unterminated: bool = False
    """The last record is whole but its line has no newline (a hand edit saved so): kept, and
    :meth:`Journal.open` ends its line before appending."""

    def of_kind(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == event]

    def frames(self) -> dict[int, dict[str, Any]]:
        """The latest ``frame`` record of each index.

        An index has two records only when its files vanished and it was shot again (the second
        is marked ``reshot``); the latest one describes what is on disk.
        """
        return {int(rec["index"]): rec for rec in self.of_kind("frame")}


@dataclass(frozen=True)
class RailLeft:
    """Where a session's runs left its rail (or lens), as the journal tells: what a resume
    gives a controller that restarted, told that nothing has moved since
    (``--accept-position``)."""

    position: float | None
    """None: a stop or fault cut a move short, and the rail's place could not be read; or a run
    of an older stackrig shot frames without journaling its moves."""
    frame: int | None = None
    """The frame shot at that position, when the rail stands where one was shot."""


def rail_left(contents: JournalContents) -> RailLeft | None:
    """Where the rail stands after the journal's last run; None when it never moved.

    Only moves move it: the latest ``move`` record's target (the rail goes on to the next frame
    before the last one is journaled, and a run killed mid-move leaves the controller to finish
    it), or the ``rail_at`` a later finish record read. A run that shot frames but recorded no
    move was one of a stackrig before moves were journaled (until 2026-12-03, or an older
    version resuming a newer session): it too moved on before journaling, so after it the
    rail's place is not known (``RailLeft(None)``), not that of its last frame.
    """
    left: float | None = None
    moved = False
    run_moved = True  # records before any start record: a hand-made journal
    unrecorded = False  # frames shot by a run that journaled no move, since the last move
    for rec in contents.records:
        event = rec.get("event")
        if event in ("start", "resume"):
            run_moved = False
        elif event == "move" and _is_number(rec.get("to")) and is_finite(rec["to"]):
            left, moved, run_moved, unrecorded = float(rec["to"]), True, True, False
        elif event == "finish" and "rail_at" in rec:
            at = rec["rail_at"]
            left, moved = (float(at) if _is_number(at) and is_finite(at) else None), True
            unrecorded = False
        elif event == "frame" and rec.get("position") is not None and not rec.get("adopted"):
            unrecorded = unrecorded or not run_moved
    shots = [
        (int(r["index"]), float(r["position"]))
        for r in contents.of_kind("frame")
        if r.get("position") is not None and not r.get("adopted")
    ]
    if not moved and not shots:
        return None
    if unrecorded or left is None:
        return RailLeft(None)
    there = [index for index, position in shots if abs(position - left) < 1e-6]
    return RailLeft(left, there[-1] if there else None)


def record_problem(rec: dict[str, Any]) -> str | None:
    """What is wrong with a whole record's fields (a hand edit), or None if it is usable.

    ``frame`` and ``merge`` records need a frame number ``index`` (a whole number); a
    frame's ``position`` is a finite number, its ``files`` and ``sizes`` lists of names and
    byte counts. Other events and fields are free-form.
    """
    event = rec.get("event")
    if event not in ("frame", "merge"):
        return None
    index = rec.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        return f"{event} record without a frame number 'index' (a whole number): {index!r}"
    if event != "frame":
        return None
    position = rec.get("position")
    if position is not None and not (_is_number(position) and is_finite(position)):
        return f"frame {index}: 'position' {position!r} is not a finite number"
    files = rec.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return f"frame {index}: 'files' {files!r} is not a list of file names"
    sizes = rec.get("sizes")
    if sizes is not None and (
        not isinstance(sizes, list)
        or len(sizes) != len(files)
        or not all(_is_int(n) and n >= 0 for n in sizes)
    ):
        return f"frame {index}: 'sizes' {sizes!r} is not one byte count per file"
    return None


def _usable(rec: dict[str, Any], path: Path, lineno: int) -> dict[str, Any]:
    """``rec``, line ``lineno`` of the journal at ``path``; :class:`JournalError` when a hand
    edit left it unusable (:func:`record_problem`)."""
    problem = record_problem(rec)
    if problem is not None:
        raise JournalError(
            f"{path}: line {lineno}: {problem}; correct or delete that line (frames on disk are "
            "found by their names), then resume"
        )
    return rec


def _whole_record(line: bytes) -> dict[str, Any] | None:
    """``line`` as a record when it is one whole JSON object, else None."""
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def open_own_file(path: Path, flags: int) -> int:
    """``os.open`` a file of the session's own (journal, log): never through a symbolic link.

    A link in a session folder (one copied or unpacked from elsewhere) would otherwise turn the
    journal's repair and appends, or the log, into writes to whatever file it points at.
    """
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)  # less the umask


def _cannot(path: Path, what: str, exc: OSError) -> JournalError:
    if exc.errno == errno.ELOOP:
        return JournalError(
            f"{path}: a symbolic link, not the session's own journal; move it out of the "
            "folder (frames on disk are found by their names), then resume"
        )
    hint = storage_remedy(exc, "make it readable and writable")
    return JournalError(
        f"{path}: cannot {what} the journal ({exc.strerror or exc}); {hint}, then resume"
    )


def read_journal(path: Path) -> JournalContents:
    """Read ``path``; a missing file is an empty journal, a torn last line is ignored.

    A damaged line anywhere but at the end is not a crash artefact (appends are whole lines), so
    it raises :class:`JournalError` naming the line rather than guessing. So does a whole record
    whose fields cannot be used (:func:`record_problem`: a hand edit gone wrong). Skipping it
    would silently drop what it records about a frame (where it was really shot, that it was a
    reshoot); stopping touches nothing, and the one-line error names the file and line to fix.
    """
    try:
        with os.fdopen(open_own_file(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise JournalError(f"{path}: not a file; move it out of the folder, then resume")
            data = fh.read()
    except FileNotFoundError:
        return JournalContents(records=())
    except OSError as exc:
        raise _cannot(path, "read", exc) from None
    records: list[dict[str, Any]] = []
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        lineno += 1
        if end < 0:  # no newline: the append was cut short, unless the record is whole
            last = _whole_record(data[pos:])
            if last is None:
                return JournalContents(tuple(records), torn_tail=True, valid_bytes=pos)
            # A cut append never parses: a record's object closes at its last byte. This one
            # lost only its newline, to an editor, and is kept (a finish record's rail_at).
            records.append(_usable(last, path, lineno))
            return JournalContents(tuple(records), valid_bytes=len(data), unterminated=True)
        line = data[pos:end]
        if line.strip():
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except (ValueError, RecursionError):
                if end + 1 >= len(data):  # a garbled last line: torn as well
                    return JournalContents(tuple(records), torn_tail=True, valid_bytes=pos)
                raise JournalError(
                    f"{path}: line {lineno} is damaged; correct or delete that line (frames on "
                    "disk are found by their names), then resume"
                ) from None
            records.append(_usable(rec, path, lineno))
        pos = end + 1
    return JournalContents(tuple(records), torn_tail=False, valid_bytes=len(data))


class Journal:
    """Appends records to ``journal.jsonl``; thread-safe (capture and stacking both write)."""

    def __init__(self, path: Path, fh: Any) -> None:
        self.path = path
        self._fh = fh
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open for appending, first cutting off a torn last line left by a crash."""
        contents = read_journal(path)
        try:
            if contents.torn_tail:
                repair = open_own_file(path, os.O_RDWR)
                try:
                    os.ftruncate(repair, contents.valid_bytes)
                    os.fsync(repair)
                finally:
                    os.close(repair)
            made = not os.path.lexists(path)
            fd = open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            if contents.unterminated:  # else the next record would join the last one's line
                try:
                    _append_whole(fd, b"\n")
                except OSError:
                    os.close(fd)
                    raise
        except OSError as exc:
            raise _cannot(path, "write", exc) from None
        if made:  # its name, not only its records, must outlive a power cut
            fsync_dir(path.parent)
        return cls(path, os.fdopen(fd, "ab", buffering=0))

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record (``event`` plus ``fields`` plus a wall-clock ``time``), fsynced."""
        record: dict[str, Any] = {"event": event, "time": round(time.time(), 3), **fields}
        line = (json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n").encode()
        with self._lock:
            if self._fh is None:
                raise JournalError(f"{self.path}: journal already closed")
            try:
                _append_whole(self._fh.fileno(), line)
            except OSError as exc:
                remedy = storage_remedy(exc, "check the disk")
                raise JournalError(
                    f"{self.path}: cannot append to the journal ({exc.strerror or exc}); "
                    f"{remedy}, then resume"
                ) from None
        return record

    def close(self, timeout: float = 5.0) -> None:
        """Close once any append in progress has finished (so no line is left half-written)."""
        if not self._lock.acquire(timeout=timeout):
            return  # a writer is stuck in the kernel; its line is whole or torn, both readable
        try:
            if self._fh is not None:
                fh, self._fh = self._fh, None
                # Every record was fsynced as it was appended: a close the disk refuses (a USB
                # disk pulled out: ENOTCONN, EIO) loses nothing, and raised out of the
                # session's end, past its fault and its log.
                with contextlib.suppress(OSError):
                    fh.close()
        finally:
            self._lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _append_whole(fd: int, line: bytes) -> None:
    """Append ``line`` whole and fsync it, or leave the file as it was and raise.

    A full disk can take part of a line (a short write, no error): taken as written, the record
    would be torn, and a later append once there was space again would follow the torn bytes,
    damaging the journal mid-file.
    """
    size = os.fstat(fd).st_size
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):  # a read-only disk keeps its torn tail: read as such
            os.ftruncate(fd, size)
        raise


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"cannot store {type(value).__name__} in the journal")


@dataclass
class FrameEntry:
    """A frame known to be on disk: its plan index and position, and its files."""

    index: int
    position: float
    files: list[Path]
    adopted: bool = False
    """True when found on disk without a journal record (crash between write and append)."""
    extra: dict[str, Any] = field(default_factory=dict)


def relative_files(folder: Path, files: Iterable[Path]) -> list[str]:
    """File names relative to the session folder, as stored in the journal."""
    out = []
    for f in files:
        try:
            out.append(str(Path(f).relative_to(folder)))
        except ValueError:
            out.append(str(f))
    return out
