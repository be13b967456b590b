"""Hot folder: the frames other software (tethering programs, Wi-Fi/FTP upload) drops, each
handed out once, when it is completely written.

:class:`HotFolder` turns operating-system file events (watchdog: inotify, FSEvents, or polling)
into a stream of *complete* frames. A file counts as complete on Linux when its writer closes it
(inotify's close-after-write) or when it is renamed into the folder (the atomic-write pattern);
elsewhere, and with ``polling=True``, when its size and modification time stay unchanged for
``settle`` seconds. It must then also decode; a file that does not is retried a few times before
being reported unreadable. Temporary, hidden and non-image files are ignored, and a RAW+JPEG pair
(the same stem, or gphoto2's consecutive ``capt`` numbers) is taken once (see :class:`HotFolder`
for which one). :mod:`stacker.watch` stacks what it hands out.

Threads: watchdog's observer thread only enqueues ``(event, path)`` tuples; checking files and
decoding happen on the one thread that iterates the hot folder.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from watchdog import events as watchdog_events
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from stacker.errors import TOO_MANY_FILES, ShortOfFilesError, StackerError, UnreadableImageError
from stacker.io import (
    IMAGE_EXTENSIONS,
    UNREAD_EXTENSIONS,
    OrientedReader,
    is_image_path,
    is_raw_path,
    truncation,
)
from stacker.mounts import unheard_writes
from stacker.natsort import NaturalKey, frame_order, natural_key
from stacker.pairs import Prefer, ShotKeys, stem_key
from stacker.paths import FileIdentity, file_identity, is_our_output
from stacker.pinned import OutsideFolder, pinned
from stacker.raw import has_rawpy

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver


__all__ = [
    "TEMPORARY_SUFFIXES",
    "HotFolder",
    "HotFolderError",
    "Prefer",
    "ReadyFrame",
    "UnreadableFrame",
    "is_candidate",
]

#: Name endings of files still being written by browsers, FTP/SFTP servers and sync tools.
TEMPORARY_SUFFIXES = (
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".filepart",
    ".!sync",
)


_UNNAMED_UPLOADS = ("tmpfile", ".pureftpd-upload.", ".davfs.tmp")
"""Temporary names that do not carry the final one: gphoto2's downloads (main.c,
``save_file_to_file``), pure-ftpd's uploads (``-0``; ftpd.c, ``fill_atomic_prefix``) and Apache
mod_dav's (``DAV_FS_TMP_PREFIX``), each renamed to the frame's name once written."""

_CARRIES_IMAGE = re.compile(
    r"\.(" + "|".join(sorted(e[1:] for e in IMAGE_EXTENSIONS)) + r")(\.|$)", re.IGNORECASE
)
"""An image's extension inside a temporary name: ``x.jpg.part``, ``.x.jpg.Ab12Cd``."""


class HotFolderError(StackerError):
    """The hot folder is missing, unreadable, or cannot be watched."""


def is_candidate(path: Path) -> bool:
    """True for a file name that may be a finished frame: an image, not hidden, not temporary."""
    name = path.name.lower()
    if name.startswith(".") or name.startswith("~$") or name.endswith("~"):
        return False
    if name.endswith(TEMPORARY_SUFFIXES):
        return False
    return is_image_path(path)


@dataclass(frozen=True)
class ReadyFrame:
    """A completely written, decoded frame from the hot folder."""

    path: Path
    image: np.ndarray
    reader: OrientedReader | None = field(default=None, compare=False, repr=False)
    """The reader that turned it (:meth:`HotFolder.read_again` may start another since)."""


@dataclass(frozen=True)
class UnreadableFrame:
    """A file that looked complete but still did not decode after the retries."""

    path: Path
    message: str


@dataclass
class _Entry:
    """Book-keeping for one candidate file that has not been taken yet."""

    path: Path
    order: tuple[int, int]  # (0, natural rank) for files found at start, (1, batch): see _arrive
    initial: bool
    written: bool = False  # write events seen: on inotify, wait for the close event
    closed: bool = False  # closed after writing, or renamed into the folder
    signature: tuple[int, int] | None = None  # (size, mtime_ns) at the last look
    stable_since: float = 0.0
    attempts: int = 0  # failed decodes so far
    retry_at: float | None = None
    hold_until: float | None = None  # a RAW/JPEG waiting for its preferred partner
    found_at: float = 0.0  # when a file found at start was found
    rank: int = 0  # among the files of its batch, in the order they were shot (_rank_batches)

    def place(self) -> tuple[tuple[int, int], int, NaturalKey]:
        """Where the file goes in the order frames are handed out: ``order``, then its rank in
        its batch, then its name."""
        return self.order, self.rank, natural_key(self.path.name)


#: ``(kind, src, dest, at)``: ``at`` is the monotonic time watchdog's thread reported the event.
_Event = tuple[str, str, str, float]


class _Enqueue(FileSystemEventHandler):
    """Runs on watchdog's thread: only turns events into :data:`_Event` tuples."""

    def __init__(self, events: queue.SimpleQueue[_Event]) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._names: set[str] = set()  # every name an event told of (see unheard)

    def on_any_event(self, event: FileSystemEvent) -> None:
        with self._lock:  # a folder's events too: a folder made in the watched one
            self._names.update(
                os.path.basename(os.fsdecode(p)) for p in (event.src_path, _dest(event)) if p
            )
        if event.is_directory:
            return
        src = os.fsdecode(event.src_path)
        self._events.put((event.event_type, src, _dest(event), time.monotonic()))

    def heard_of(self, names: Iterable[str]) -> None:
        """Count ``names`` as told of (the folder's entries when the watch starts)."""
        with self._lock:
            self._names.update(names)

    def unheard(self, names: Iterable[str]) -> set[str]:
        """The ``names`` no event told of."""
        with self._lock:
            return {name for name in names if name not in self._names}


def _dest(event: FileSystemEvent) -> str:
    dest = getattr(event, "dest_path", "")
    return os.fsdecode(dest) if dest else ""


_TAKEN = (-1, -1)  # marks a path in HotFolder._done that is never looked at again
_SKIPPED = (-2, -2)  # the same, for the partner of a RAW+JPEG pair whose other file is stacked
_NEWS = _Entry(Path(), order=(0, 0), initial=False)  # HotFolder._next: something to tell
UNHEARD_LOOKS = 3
"""Looks in a row at which an entry no event told of stops the watch (see
:meth:`HotFolder._check_still_hearing`)."""
_LOOK_EVERY = 2.0  # seconds between looks at the subfolders and at frames refused as unreadable
_ATTRIB: type[FileSystemEvent] | None = getattr(watchdog_events, "FileAttribEvent", None)
"""A chmod or chown (see :meth:`HotFolder._readable_again`): an event of its own from watchdog
7 on; watchdog 6, the last for Python 3.10, has none (see :meth:`HotFolder._look_at_denied`)."""
_EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    *([_ATTRIB] if _ATTRIB else []),
    # Not frames, but entries of the folder: heard, or a folder made in it looked like an
    # entry no event told of (see HotFolder._check_still_hearing).
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class HotFolder:
    """Watch ``folder`` and hand out each completely written frame once.

    Parameters
    ----------
    folder
        The folder other software writes frames into (not its subfolders: those that images are
        written into meanwhile are named in :attr:`landing`, see :meth:`_look_below`).
    settle
        Seconds a file's size and modification time must stay unchanged to count as complete
        where close events are not available (macOS, Windows, ``polling=True``), and for files
        already in the folder at start.
    prefer
        Which file of a RAW+JPEG pair (the same stem, or gphoto2's ``capt0006.cr3`` and
        ``capt0007.jpg``, see :meth:`_pair_key`) to stack: ``"jpeg"`` (default: fast, and what
        the camera rendered) or ``"raw"`` (more latitude; needs the ``raw`` extra). The other file
        of the pair is never read. A file of the non-preferred kind that arrives alone is held
        for ``pair_wait`` seconds in case its partner follows (and for as long as a temporary
        file that may be that partner is being written), then stacked on its own.
    pair_wait
        See ``prefer``.
    pairs
        False: every file is handed out, each when it is complete, for a caller that groups
        the files of a shot itself (a cable-fired camera keeps the RAW with its JPEG, see
        :mod:`rig.camera.cable`); ``prefer`` and ``pair_wait`` then play no part.
    polling
        Poll the folder instead of using native events. A folder on a network share (NFS, SMB),
        a FUSE mount or a virtual machine's shared folder is polled anyway (see
        :mod:`stacker.mounts`): writes made there by other machines raise no local events. Its
        file system type is then in :attr:`polled_for`.
    ignore
        Paths never to take (the composite and depth map when they are written into the folder).
        Result images stackrig wrote (they carry its mark, see :mod:`stacker.paths`) are never
        taken either, whatever their name; they are listed in :attr:`ours`.
    existing
        Take the files already in the folder at start, before any new one, in natural order
        (from the first frame after a wrap of the camera's file counter: :func:`frame_order`).
    decode_retries, retry_interval
        A complete-looking file that fails to decode is tried again this many times, this many
        seconds apart, before being reported unreadable.
    close_grace
        On Linux, a file seen being written whose close event never comes (written through a
        memory map, hard-linked in) is taken after this many quiet seconds.

    Files are handed out in natural order for those present at start (from the first frame after
    a wrap of the camera's file counter, see :func:`frame_order`), then in arrival order (first
    event seen; files one poll finds together count as arriving at once, in natural order); a file
    complete before one that began to arrive earlier waits for it (for as long as that one is still
    being written), so the frames keep their order. Each file is handed out once, whatever it is
    renamed to later and whatever other names it has (a second name of a file taken already, a
    hard or symbolic link, is left out with a note in :attr:`notes`): one rewritten in place or
    renamed over (a re-export) is not stacked again, except one that was reported unreadable,
    which is looked at again when it changes. A new file under the name of one deleted or renamed
    away is a new frame; so is a shot under the name of a RAW+JPEG shot deleted whole, while a
    shot renamed (both its files) is still one frame. A file moved out of the folder once it was
    opened is read whole all the same; one moved out or deleted before that (another program
    importing from the folder) is named in :attr:`notes`. A poll cannot tell a file renamed
    over a frame from one renamed in after the frame was deleted (gphoto2's
    ``--force-overwrite`` unlinks, then renames its download in): both show as the old file
    gone and a new one there, and polled, both are new frames.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        settle: float = 0.5,
        prefer: Prefer = "jpeg",
        pair_wait: float = 2.0,
        pairs: bool = True,
        polling: bool = False,
        ignore: Iterable[str | os.PathLike[str]] = (),
        existing: bool = True,
        decode_retries: int = 3,
        retry_interval: float = 0.5,
        close_grace: float | None = None,
    ) -> None:
        if prefer not in ("jpeg", "raw"):
            raise StackerError(f"--prefer {prefer!r} is not known: use jpeg or raw")
        if not 0 < settle < math.inf:  # nan or inf: no file would ever count as written
            raise StackerError(f"--settle {settle}: give a positive number of seconds")
        self.folder = Path(folder).absolute()
        self.settle = float(settle)
        self.prefer: Prefer = prefer
        self.pair_wait = float(pair_wait)
        self.pairs = pairs
        self.polling = polling
        self.existing = existing
        self.decode_retries = int(decode_retries)
        self.retry_interval = float(retry_interval)
        self.close_grace = (
            float(close_grace) if close_grace is not None else max(5.0, 10 * self.settle)
        )
        self._ignore_names: set[str] = set()
        self._ignore = [Path(p) for p in ignore]
        self.uses_close_events = False
        #: The file system type that made this watch poll though not asked to (``cifs``...).
        self.polled_for: str | None = None
        #: Files of a RAW+JPEG pair that were not stacked because their partner was.
        self.skipped: list[Path] = []
        #: Files :meth:`paths` handed out still visibly cut short, once it gave up waiting for
        #: the rest (see :meth:`_cut_short`), with why: its caller, which does not decode them,
        #: looks here rather than reading each file again.
        self.cut_short: dict[Path, str] = {}
        #: Result images written by stackrig (see :mod:`stacker.paths`): never frames.
        self.ours: list[Path] = []
        #: Notes for the user, in the order they came: frames read in the first frame's
        #: orientation (:class:`OrientedReader`), second names of a file taken already.
        self.notes: list[str] = []
        self._said: set[Path] = set()
        """Files a note was made about (a format not read, a frame rewritten): said once."""
        self._reader = OrientedReader()
        #: Monotonic time of the last sign of life: a frame handed out or a write in progress.
        self.last_activity = time.monotonic()
        self._working = threading.Event()  # see working()
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._handler = _Enqueue(self._events)
        self._entries: dict[Path, _Entry] = {}
        self._vanished: dict[Path, _Entry] = {}  # found gone before the event saying how
        self._denied: set[Path] = set()  # reported unreadable for want of permission
        self._done: dict[Path, tuple[int, int]] = {}
        self._refused: set[Path] = set()  # taken, then left out: links out, second names
        self._said_short_of_files = False  # a frame could not be opened for want of descriptors
        self._claimed: dict[str, Path] = {}  # each shot's key to its file taken
        self._partnered: set[str] = set()  # the keys of the shots a partner was passed over in
        self._fading: dict[str, float] = {}  # claims whose file is gone, until when (_end_shot)
        self._identities: dict[FileIdentity, Path] = {}  # of the files taken, to each's name
        self._shot_keys = ShotKeys()  # see _pair_key
        self._arrivals = 0
        self._poll_interval = min(0.5, self.settle)  # of the polling observer
        self._batch_gap = self._poll_interval / 2  # files reported closer together: one batch
        self._batch = 0  # the arrival number of the first file of the latest batch (_arrive)
        self._last_arrival = -math.inf  # when the latest file of that batch was reported
        self._held_back = False  # a complete frame waits for an earlier one, or for its batch
        self._observer: BaseObserver | None = None
        self._real_folder = self.folder
        self._identity: tuple[int, int] | None = None
        # The folder's entries no event told of, and at how many looks in a row
        # (:meth:`_check_still_hearing`).
        self._unheard: dict[str, int] = {}
        """The watched folder's (device, inode) when the watch started."""
        #: Subfolders found receiving images since the start, not told yet (see _look_below).
        self.landing: list[Path] = []
        self._subfolders_at_start: dict[str, set[tuple[str, int]]] = {}
        """Each subfolder there at the start, with its entries' names and inodes then."""
        self._subfolder_times: dict[str, int] = {}  # modification times at the last look
        self._told: set[Path] = set()  # the subfolders once in landing
        self._next_look = 0.0  # monotonic time of the next look at the subfolders

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> HotFolder:
        """Check the folder, start watching it, then list the files already there."""
        if self._observer is not None:
            return self
        folder = self.folder
        if not folder.exists():
            raise HotFolderError(f"{folder}: no such folder; create it or check the path")
        if not folder.is_dir():
            raise HotFolderError(f"{folder}: not a folder; give the folder frames are written to")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise HotFolderError(f"{folder}: not readable; check its permissions")
        self._real_folder = folder.resolve()
        if not self.polling and (kind := unheard_writes(folder)) is not None:
            self.polling, self.polled_for = True, kind
        self._ignore_names = {
            p.name for p in self._ignore if p.absolute().parent.resolve() == self._real_folder
        }
        observer = self._make_observer()
        try:
            self._handler = _Enqueue(self._events)
            observer.schedule(self._handler, str(folder), event_filter=_EVENT_TYPES)
            observer.start()
        except OSError as exc:
            with contextlib.suppress(Exception):
                observer.stop()
            raise HotFolderError(
                f"{folder}: cannot watch this folder ({exc.strerror or exc}); try --poll, or raise "
                "the inotify limits (sysctl fs.inotify.max_user_watches / max_user_instances)"
            ) from None
        self._observer = observer
        self._identity = _identity(folder)
        listing = _listed(folder)
        self._handler.heard_of(listing.names if listing else [])
        self._subfolder_times = _subfolders(folder)
        self._subfolders_at_start = {n: _entries(folder / n) for n in self._subfolder_times}
        if self.existing:
            self._list_existing()
        self.last_activity = time.monotonic()
        return self

    def _make_observer(self) -> BaseObserver:
        if not self.polling:
            try:
                from watchdog.observers.inotify import InotifyObserver
            except (ImportError, OSError):  # not Linux: FSEvents/kqueue/Windows, no close events
                from watchdog.observers import Observer

                return Observer()
            try:
                # Full events: a file moved in from elsewhere on the same disk arrives as a
                # move with no source (complete), not as a bare "created" that never closes.
                observer = InotifyObserver(generate_full_events=True)
            except OSError as exc:
                raise HotFolderError(
                    f"{self.folder}: cannot start inotify ({exc.strerror or exc}); try --poll"
                ) from None
            self.uses_close_events = True
            return observer
        from watchdog.observers.polling import PollingObserver

        return PollingObserver(timeout=self._poll_interval)

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def __enter__(self) -> HotFolder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- iteration -----------------------------------------------------------------------------

    def paths(
        self, *, stop: threading.Event | None = None, idle_timeout: float | None = None
    ) -> Iterator[Path]:
        """Yield each completely written frame's path (not decoded), until stopped or idle.

        Ends when ``stop`` is set or when nothing happened for ``idle_timeout`` seconds (no
        frame handed out, no file being written); the time the caller spends between items does
        not count as idle (a caller that iterates on a reader thread, and so runs ahead of its
        own work, says when it works with :meth:`working`).
        """
        self._require_started()
        while (entry := self._next(stop, idle_timeout)) is not None:
            if self._cut_short(entry):
                continue
            if self._take(entry):
                yield entry.path
            self.last_activity = time.monotonic()

    def _cut_short(self, entry: _Entry) -> bool:
        """Whether ``entry``, complete by its events or its quiet, is visibly cut short
        (:func:`~stacker.io.truncation`) and is looked at again later, as :meth:`frames` does
        with a file it cannot decode: polled, an upload that stalls for longer than ``settle``
        (Wi-Fi, a network share) looked written, and its first half was handed out (and copied
        as a cable-released shot). After ``decode_retries`` looks it goes out as it is, named
        in :attr:`cut_short`."""
        try:
            with pinned(entry.path, self._real_folder) as held:
                reason = truncation(held)
        except (OSError, OutsideFolder):  # gone, or a link out: _take and the reader tell
            return False
        if reason is None:
            return False
        if entry.attempts >= self.decode_retries:
            self.cut_short[entry.path] = reason
            return False
        entry.attempts += 1
        entry.retry_at = time.monotonic() + self.retry_interval
        return True

    def frames(
        self,
        *,
        stop: threading.Event | None = None,
        idle_timeout: float | None = None,
        on_unreadable: Callable[[UnreadableFrame], None] | None = None,
    ) -> Iterator[ReadyFrame]:
        """Yield each complete frame, decoded by a :class:`stacker.io.OrientedReader`.

        A file that fails to decode (or is visibly truncated, or changes while being read) is
        tried again later; after ``decode_retries`` failures it is passed to ``on_unreadable``
        (which may raise to stop) and skipped. Stopping works as in :meth:`paths`.
        """
        for frame in self.frames_with_news(stop, idle_timeout, on_unreadable, news=False):
            if frame is not None:
                yield frame

    def frames_with_news(
        self,
        stop: threading.Event | None,
        idle_timeout: float | None,
        on_unreadable: Callable[[UnreadableFrame], None] | None,
        *,
        news: bool,
    ) -> Iterator[ReadyFrame | None]:
        """:meth:`frames`; with ``news``, also a ``None`` whenever there is something to tell
        while waiting (:attr:`notes`, :attr:`landing`), which the caller takes."""
        self._require_started()
        while (entry := self._next(stop, idle_timeout, news=news)) is not None:
            if entry is _NEWS:
                yield None
                continue
            outcome = self._decode(entry) if self._take(entry) else None
            if isinstance(outcome, ReadyFrame):
                yield outcome
            elif isinstance(outcome, UnreadableFrame) and on_unreadable is not None:
                on_unreadable(outcome)
                if news:  # told now, not when the next frame lands (--strict stops at once)
                    self.last_activity = time.monotonic()
                    yield None
                    continue
            self.last_activity = time.monotonic()

    def left_empty(self) -> list[str]:
        """Notes for the files still empty as the watch ends, for its caller to tell once it
        has stopped (a stop ends the watch before its queued notes): an empty file is a
        placeholder, never a frame, but one that stays so is a copy or upload that failed,
        and the stack is a frame short of what the photographer counts."""
        return [
            f"{entry.path.name}: still empty when the watch ended; not stacked (copy it in "
            "again, then stack the folder)"
            for entry in sorted(self._entries.values(), key=_Entry.place)
            if entry.signature is not None and entry.signature[0] == 0
        ]

    def taken(self) -> list[Path]:
        """The files handed out so far, in no particular order."""
        return [
            path
            for path, what in self._done.items()
            if what is _TAKEN and path not in self._refused
        ]

    def waiting(self) -> list[Path]:
        """The files not handed out yet that hold something, in the order they would go: what
        a stop leaves in the folder unstacked (a RAW+JPEG pair's partner that waits for its
        preferred file is left out, as is an empty placeholder, see :meth:`left_empty`)."""
        keys = {self._pair_key(e.path) for e in self._entries.values() if self._preferred(e.path)}
        return [
            entry.path
            for entry in sorted(self._entries.values(), key=_Entry.place)
            if entry.signature is not None
            and entry.signature[0] > 0
            and not is_our_output(entry.path)
            and (self._preferred(entry.path) or self._pair_key(entry.path) not in keys)
        ]

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Hold the idle timeout while the caller works on a frame, and count it from the end."""
        self._working.set()
        try:
            yield
        finally:
            self.last_activity = time.monotonic()
            self._working.clear()

    def _require_started(self) -> None:
        if self._observer is None:
            raise RuntimeError("HotFolder.start() (or 'with HotFolder(...)') must come first")

    def _next(
        self, stop: threading.Event | None, idle_timeout: float | None, *, news: bool = False
    ) -> _Entry | None:
        while True:
            now = time.monotonic()
            self._drain(now)
            entry = self._select(now)
            if entry is not None and is_our_output(entry.path):
                self._pass_over(entry)
                continue
            if entry is not None:
                return entry
            if stop is not None and stop.is_set():
                return None
            if (
                idle_timeout is not None
                and now - self.last_activity >= idle_timeout
                and not self._working.is_set()
                and not self._due_later(now)
            ):
                return None
            self._check_still_watched()
            if now >= self._next_look:
                self._next_look = now + _LOOK_EVERY
                listing = _listed(self.folder)  # one listing for both looks
                self._check_still_hearing(listing)
                self._look_below(listing)
                self._look_at_denied(now)
            if news and (self.notes or self.landing):
                return _NEWS
            try:
                event = self._events.get(timeout=0.05 if self._entries else 0.2)
            except queue.Empty:
                continue
            self._drain(time.monotonic(), first=event)

    def _check_still_watched(self) -> None:
        """Raise when the folder is gone, or is another folder now: one made again under its
        name (a tethering program recreating a folder moved to the Trash) or a disk unplugged
        and mounted again. The watch still followed the old folder, and frames landing in the
        new one waited for ever without a word."""
        identity = _identity(self.folder)  # one look at the folder: it runs every turn
        if identity is None or (self._observer is not None and not self._observer.is_alive()):
            raise HotFolderError(
                f"{self.folder}: the folder was removed or can no longer be watched"
            )
        if self._identity is not None and identity != self._identity:
            raise HotFolderError(
                f"{self.folder}: the folder was replaced (moved away and made again, or its disk "
                "mounted again); start the watch again to take the frames landing in it"
            )

    def _check_still_hearing(self, listing: _Listing | None) -> None:
        """Raise when an entry of the folder that no file event told of is still there, still
        untold, at :data:`UNHEARD_LOOKS` looks in a row (4 s and more: a machine too loaded
        to read an event for that long is not taken for a deaf watch).

        A disk unmounted and mounted again at the same place (a card pulled and put back, a
        USB reset) keeps its folders' device and inode numbers, and its mount may even get
        its old ID back, so :meth:`_check_still_watched` saw the same folder; but the kernel
        had dropped the watch with the old mount, and every frame landing after went unseen
        ("stacked 2 of 2" with 4 on the card). Looked at every :data:`_LOOK_EVERY` seconds: an
        event is read within milliseconds of the change that makes it. Inotify only: a poll
        lists the folder again, and other systems' events may come late."""
        if not self.uses_close_events:
            return
        if listing is None:
            return  # gone or unreadable: _check_still_watched and the entries say so
        names = listing.names
        # Frames only: sidecars or other programs' files flooding in may overflow the event
        # queue, and a file this watch would pass over anyway is no sign that it went deaf.
        frames = (name for name in names if is_candidate(self.folder / name))
        unheard = self._handler.unheard(frames)
        self._unheard = {name: self._unheard.get(name, 0) + 1 for name in unheard}
        long_unheard = sorted(n for n, looks in self._unheard.items() if looks >= UNHEARD_LOOKS)
        if long_unheard:
            raise HotFolderError(
                f"{self.folder}: {long_unheard[0]} landed in it, but no file event told of it "
                "(its disk unmounted and mounted again?); start the watch again to take the "
                "frames landing in it"
            )

    def _due_later(self, now: float) -> bool:
        """Whether a file will be handed out later with no further event: a RAW or JPEG held
        for its partner, a frame whose decode is to be tried again, a complete frame waiting
        for an earlier one or for the rest of its poll, or a file with content waiting to count
        as written (``settle``, or ``close_grace`` for one linked in, which raises no close
        event). None is idleness: an idle timeout shorter than those waits would otherwise drop
        the frame."""
        return self._held_back or any(
            (e.hold_until is not None and now < e.hold_until)
            or (e.retry_at is not None and now < e.retry_at)
            or (e.signature is not None and e.signature[0] > 0 and not self._complete(e, now))
            for e in self._entries.values()
        )

    def _look_at_denied(self, now: float) -> None:
        """Take the frames refused for want of permission that have become readable, where
        no event says so: watchdog 6 has no event of its own for a chmod (it reports a
        modification, which leaves a frame of unchanged size and time where it was), and its
        polling does not compare modes."""
        for path in list(self._denied):
            self._readable_again(path, now, now)

    def _look_below(self, listing: _Listing | None) -> None:
        """Add to :attr:`landing` each subfolder images are written into, once; every
        :data:`_LOOK_EVERY` seconds at most.

        Tethering programs often write into a subfolder of the folder they were given, one per
        session or day (darktable's film rolls, a Capture One session's ``Capture``, EOS
        Utility's date folders, a card's ``100CANON`` in ``DCIM``): a watch of the folder above
        would wait for frames that never come. Only direct subfolders are looked at, and only
        those changed since the last look (a folder's modification time moves when a file is
        created or renamed in it): a large tree costs a listing of the folder.
        """
        for name, mtime in (listing.subfolders if listing else {}).items():
            if self._subfolder_times.get(name) == mtime:
                continue
            self._subfolder_times[name] = mtime
            sub = self.folder / name
            if sub not in self._told and self._landed(name):
                self._told.add(sub)
                self.landing.append(sub)

    def _landed(self, name: str) -> int:
        """How many images the subfolder ``name`` got since the watch started (all of them, in
        a subfolder made since); results of ours written there are none. Told by the files
        there at the start, not by modification times: those are the camera's clock's
        (libgphoto2 dates a download by the camera), and the Pi's own may have been set by
        NTP since the start."""
        before = self._subfolders_at_start.get(name, set())
        ours = {p.absolute() for p in self._ignore}
        count = 0
        with contextlib.suppress(OSError), os.scandir(self.folder / name) as entries:
            for e in entries:
                path = Path(e.path)
                with contextlib.suppress(OSError):
                    count += bool(
                        is_candidate(path)
                        and (e.name, e.inode()) not in before
                        and e.is_file(follow_symlinks=False)
                        and path not in ours
                        and not is_our_output(path)
                    )
        return count

    def most_landed_below(self) -> tuple[int, Path | None]:
        """The subfolder that got most images since the watch started, and how many (see
        :meth:`_look_below`); ``(0, None)`` when none got any."""
        found = [(self._landed(n), n) for n in sorted(_subfolders(self.folder), key=natural_key)]
        count, name = max(found, default=(0, ""))
        return (count, self.folder / name) if count else (0, None)

    # -- events --------------------------------------------------------------------------------

    def _drain(self, now: float, first: _Event | None = None) -> None:
        if first is not None:
            self._apply(first, now)
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._apply(event, now)

    def give_way(self, path: Path) -> None:
        """The stack refused ``path`` for its kind (a JPEG in a stack begun with a RAW, its
        JPEG late): its pair partner, passed over, is offered instead, as for a file that
        cannot be read. Safe from any thread: it goes through the event queue."""
        self._events.put(("give_way", str(path), "", time.monotonic()))

    def _apply(self, event: _Event, now: float) -> None:
        kind, src, dest, at = event
        if kind == "give_way":
            self._free_partners(Path(src))
        elif kind == "deleted":
            self._free_name(Path(src), self._forget(Path(src), gone=True))
        elif kind == "moved":
            # Renamed within the folder it stays a frame, under its new name; else it is gone:
            # out of the folder, or (not said as such) to a temporary name in it, as pure-ftpd
            # does to a file whose upload it resumes (ftpd.c, dostor), then renames it back.
            gone = not (dest and self._watched(Path(dest)))
            left = not (dest and Path(dest).parent == self.folder)
            refused = bool(src) and Path(src) in self._refused
            marker = self._forget(Path(src), gone=gone, left=left) if src else None
            taken = marker is _TAKEN
            same = bool(dest) and taken and file_identity(dest) in self._identities
            if same:
                self._done[Path(dest)] = _TAKEN  # a frame taken, renamed: the same frame
                if refused:  # ... or a second name left out, renamed: still left out
                    self._refused.add(Path(dest))
                self._claim_renamed(Path(src), Path(dest))
            if src:
                self._free_name(Path(src), marker)
            if dest and not same:
                # Renamed in: complete. From a frame taken but not that file: a poll reports a
                # frame deleted and a new file given its inode number (ext4 gives a freed one
                # again at once) as a rename; the new file is a new frame, written once it settles.
                self._touch(Path(dest), now, at, closed=not taken)
            if src and self._watched(Path(src)) and self._signature(Path(src)) is not None:
                # A new file under the old name already. A poll reports it before the move that
                # frees the name (created, then moved): it was passed over as the file renamed.
                self._touch(Path(src), now, at, closed=False)
        elif kind in ("created", "modified"):
            self._touch(Path(src), now, at, closed=False)
        elif kind == "closed":
            self._touch(Path(src), now, at, closed=True)
        elif kind == "attrib":
            self._readable_again(Path(src), now, at)

    def _readable_again(self, path: Path, now: float, at: float) -> None:
        """Look again at a file reported unreadable for want of permission that now can be read.

        A file written by another user with a restrictive umask cannot be read (an FTP server
        writes a camera's uploads as the user it logs in as, and vsftpd's ``local_umask`` is 077
        unless configured). Making it readable changes neither its size nor its modification
        time, only its mode or owner: an event of its own, ignored for every other file.
        """
        if path not in self._denied or not os.access(path, os.R_OK):
            return
        self._denied.discard(path)
        if self._done.get(path) not in (None, _TAKEN, _SKIPPED):
            del self._done[path]
            self._touch(path, now, at, closed=True)

    def _watched(self, path: Path) -> bool:
        return (
            path.parent == self.folder
            and path.name not in self._ignore_names
            and is_candidate(path)
        )

    def _touch(self, path: Path, now: float, at: float, *, closed: bool) -> None:
        if not self._watched(path):
            if path.parent == self.folder:
                self._partner_coming(path.name.casefold(), now)
                self._not_a_frame(path, now)
            return
        done = self._done.get(path)
        if done is not None:
            if done == _TAKEN:
                self._taken_changed(path)
                return
            if done == _SKIPPED:  # still being written: a JPEG lands first, its RAW after
                return
            if done == self._signature(path):
                return
            del self._done[path]  # an unreadable file that changed since: look again
        claimed = self._claim_of(self._pair_key(path), now)
        if claimed is not None and claimed != path:
            self._skip(path)
            return
        entry = self._entries.get(path)
        if entry is None:
            entry = self._arrive(path, at)
        entry.closed = closed
        entry.written = entry.written or not closed
        if not closed:
            entry.attempts = 0  # being (re)written: earlier decode failures do not count
        entry.retry_at = None
        self.last_activity = now

    def _arrive(self, path: Path, at: float | None) -> _Entry:
        """Book a new candidate file, reported by an event at ``at`` (None: found otherwise).

        Polling and coalescing observers report the files that appeared since their last look
        together, in no particular order, and the watcher may read those events in one go or
        one at a time. Files reported less than half a poll interval after the one before form
        a batch, whatever the reading: one ``order``, so natural order among themselves (see
        :meth:`_Entry.place`), after the batches before. Until that long after its latest file
        the batch may still grow, and a file of it complete at once (a rename) waits
        (:meth:`_may_grow`): at most that long, as a file written in place settles for longer.
        With close events (inotify) each file is a batch of its own: arrival order.
        """
        self._arrivals += 1
        if at is None or self.uses_close_events:
            self._batch, self._last_arrival = self._arrivals, -math.inf
        else:
            if at - self._last_arrival >= self._batch_gap:
                self._batch = self._arrivals
            self._last_arrival = at
        entry = _Entry(path, order=(1, self._batch), initial=False)
        self._entries[path] = entry
        return entry

    def _pair_key(self, path: Path) -> str:
        """What the files of one shot share (:class:`~stacker.pairs.ShotKeys`), as they land;
        with ``pairs`` off, each file is a shot of its own."""
        return self._shot_keys.key(path) if self.pairs else str(path)

    def _not_a_frame(self, path: Path, now: float) -> None:
        """What a file that is no frame says: a frame still written under a temporary name
        (``X.jpg.part``, rsync's ``.X.jpg.Ab12Cd``, or one of :data:`_UNNAMED_UPLOADS`) is
        activity, so an idle timeout does not end the watch before it lands (it did, and the
        frame was never stacked); a HEIC or AVIF file, which is not read, is said once."""
        name = path.name.casefold()
        if name.startswith(_UNNAMED_UPLOADS) or (
            _CARRIES_IMAGE.search(name)
            and not any(own.casefold() in name for own in self._ignore_names)
        ):
            self.last_activity = now
        elif path.suffix.casefold() in UNREAD_EXTENSIONS and path not in self._said:
            self._said.add(path)
            self.notes.append(
                f"{path.name}: {path.suffix[1:].upper()} is not read; set the camera or phone "
                "to save JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)"
            )

    def _taken_changed(self, path: Path) -> None:
        """A frame written again after it was stacked (or another renamed over it): the
        composite keeps what was stacked; said once, where it went unsaid."""
        identity = file_identity(path)
        if path in self._said or identity is None or identity in self._identities:
            return
        self._said.add(path)
        self.notes.append(
            f"{path.name}: written again after it was stacked; the composite keeps the first "
            "version (stack the folder again with `stacker stack` to use the new one)"
        )

    def _partner_coming(self, temporary: str, now: float) -> None:
        """A file being written under a temporary name may be the partner a held RAW or JPEG
        waits for: its hold lasts while that file is written, then ``pair_wait`` more. Such
        names carry the final one (rsync's ``.IMG_0001.CR3.XXXXXX``, ``IMG_0001.CR3.part``);
        gphoto2 downloads into ``tmpfileXXXXXX`` (main.c, ``save_file_to_file``) the file
        numbered after the last ``capt`` file; an upload under another name that does not tell
        (:data:`_UNNAMED_UPLOADS`) may be any held file's partner.
        """
        numbers = self._shot_keys.capt_numbers
        latest = numbers[max(numbers)] if numbers else None
        unnamed = temporary.startswith(_UNNAMED_UPLOADS) and not temporary.startswith("tmpfile")
        for entry in self._entries.values():
            if entry.hold_until is None:
                continue
            if (
                f"{stem_key(entry.path)}." in temporary
                or unnamed
                or (temporary.startswith("tmpfile") and entry.path == latest)
            ):
                entry.hold_until = max(entry.hold_until, now + self.pair_wait)

    def _pass_over(self, entry: _Entry) -> None:
        """Leave out a result image of ours (an earlier run's composite or depth preview).

        Remembered with its signature: a file later written over it under the same name is
        looked at again.
        """
        del self._entries[entry.path]
        self._done[entry.path] = self._signature(entry.path) or _TAKEN
        self.ours.append(entry.path)

    def _forget(self, path: Path, *, gone: bool, left: bool = True) -> tuple[int, int] | None:
        """``path`` is gone (deleted, or renamed away); what it was (``_TAKEN``, ``_SKIPPED``,
        or None for neither).

        Its name is free again: a new file written under it later is a new frame. A file with
        content not read yet that is ``gone`` (deleted, or moved to a name that is no frame's)
        and ``left`` the folder is named in :attr:`notes` (see :meth:`_lost`): also one found
        gone before this event came, which waits in ``_vanished`` for it to tell a move out
        from a rename within the folder.
        """
        vanished = self._vanished.pop(path, None)
        entry = self._entries.pop(path, vanished)
        self._refused.discard(path)
        if gone and left and entry is not None:
            self._lost(entry)
        marker = self._done.get(path)
        if marker not in (_TAKEN, _SKIPPED):
            return None
        del self._done[path]
        if not gone and marker is _SKIPPED and path in self.skipped:  # counted again, renamed
            self.skipped.remove(path)
        return marker

    def _free_name(self, path: Path, marker: tuple[int, int] | None) -> None:
        """``path``'s name is free (its file deleted, or renamed away after its claim moved
        with it, see :meth:`_claim_renamed`): a frame's or a partner's shot may end with it
        (:meth:`_end_shot`; a poll reports a file deleted and a new one given its inode as a
        rename), and a file given that name later is paired afresh."""
        if marker in (_TAKEN, _SKIPPED):
            self._end_shot(self._pair_key(path))
        self._shot_keys.forget(path)

    def _end_shot(self, key: str) -> None:
        """Free the name of a shot whose file taken and every partner passed over for it are
        gone: a new shot under it is a new frame, where it was passed over as the old shot's
        partner (gphoto2 numbers its downloads from ``capt0000`` again each run; a folder
        cleared for a new stack, the camera's numbering reset). A shot whose partner never
        came keeps its claim: an importer that moves each file on as it lands would otherwise
        have the late RAW of a JPEG it took stacked as well, the same exposure twice."""
        claimed = self._claimed.get(key)
        if claimed is None or self._done.get(claimed) is _TAKEN:
            return
        if any(what is _SKIPPED and self._pair_key(p) == key for p, what in self._done.items()):
            return
        if key not in self._partnered:  # its partner may still land: for a while
            self._fading[key] = time.monotonic() + self.pair_wait
            return
        del self._claimed[key]
        self._partnered.discard(key)

    def _claim_of(self, key: str, now: float) -> Path | None:
        """The file taken of shot ``key``, while its claim holds: a claim left by a file gone
        whose partner never came lasts ``pair_wait`` (the time a partner has to follow), so
        that a later shot under the same name (a gphoto2 run after a JPEG-only one, numbered
        from ``capt0000`` again) is not passed over for it."""
        until = self._fading.get(key)
        if until is not None and now >= until:
            del self._fading[key]
            self._claimed.pop(key, None)
        return self._claimed.get(key)

    def _claim_renamed(self, src: Path, dest: Path) -> None:
        """A file taken, renamed in the folder (a tethering program's naming template, applied
        to both files of a RAW+JPEG shot): its shot's claim goes with it, so that the partner
        renamed the same way is passed over too, and one renamed first and waiting is passed
        over now (it was stacked: the same exposure twice)."""
        if self._claimed.get(self._pair_key(src)) != src:
            return
        key = self._pair_key(dest)
        if self._claimed.get(key, dest) == dest:
            self._claim(key, dest)

    def _claim(self, key: str, path: Path) -> None:
        """``path`` is shot ``key``'s file: a partner of it already complete and waiting is
        passed over now, one that lands later when it does (:meth:`_touch`)."""
        self._claimed[key] = path
        self._fading.pop(key, None)
        for other in [e.path for e in self._entries.values() if self._pair_key(e.path) == key]:
            self._skip(other)

    def _lost(self, entry: _Entry) -> None:
        """Say that a file that had content left the folder before it was read.

        An importer watching the same folder moves files on as soon as it sees them (Lightroom's
        Auto Import moves each into its destination folder): every frame it wins would
        otherwise be missing from the stack without a word. An empty placeholder is no frame.
        """
        if entry.signature is None or entry.signature[0] == 0:
            return
        self.notes.append(
            f"{entry.path.name}: moved out of the watched folder or deleted before it could be "
            "read; not stacked (if another program imports from this folder, such as "
            "Lightroom's Auto Import, watch the folder it moves files to instead)"
        )

    def _skip(self, path: Path) -> None:
        """Pass over ``path``, the partner of a file of its shot claimed for stacking; what
        is written to it after is no news ("written again after it was stacked" was said of
        every RAW whose JPEG landed first)."""
        self._entries.pop(path, None)
        self._done[path] = _SKIPPED
        self._partnered.add(self._pair_key(path))
        self.skipped.append(path)

    def _list_existing(self) -> None:
        """Book the frames already in the folder, in the order :func:`frame_order` gives (the
        order of ``stacker stack`` on the folder), before any new one."""
        try:
            names = os.listdir(self.folder)
        except OSError as exc:
            raise HotFolderError(f"{self.folder}: cannot list ({exc.strerror or exc})") from None
        found: dict[Path, os.stat_result] = {}
        for name in names:
            path = self.folder / name
            if not self._watched(path) or path in self._entries:
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISREG((st := os.stat(path)).st_mode):
                    found[path] = st
        now, wall = time.monotonic(), time.time()
        for rank, path in enumerate(frame_order(found)):
            st = found[path]
            age = max(0.0, wall - st.st_mtime)
            self._entries[path] = _Entry(
                path,
                order=(0, rank),
                initial=True,
                signature=(st.st_size, st.st_mtime_ns),
                stable_since=now - age,
                found_at=now,
            )

    # -- deciding what is ready ----------------------------------------------------------------

    @staticmethod
    def _signature(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None

    def _complete(self, entry: _Entry, now: float) -> bool:
        if entry.signature is None or entry.signature[0] == 0:
            return False  # an empty placeholder is never a frame
        if entry.retry_at is not None:
            return now >= entry.retry_at
        if entry.closed:
            return True
        quiet = now - entry.stable_since
        if not self.uses_close_events or not entry.written:
            return quiet >= self.settle
        return quiet >= self.close_grace

    def _preferred(self, path: Path) -> bool:
        return not self.pairs or is_raw_path(path) == (self.prefer == "raw")

    def _select(self, now: float) -> _Entry | None:
        by_stem: dict[str, list[_Entry]] = {}
        for entry in list(self._entries.values()):
            signature = self._signature(entry.path)
            if signature is None and _cannot_look(entry.path):
                # The folder unreadable a while (a chmod, a mount's permissions): the file is
                # still there; taken for gone, it waited for a deletion that never came and
                # was never stacked nor named.
                continue
            if signature is None:  # its deletion or move is reported next (see _forget)
                self._vanished[entry.path] = self._entries.pop(entry.path)
                continue
            if signature != entry.signature:
                entry.signature, entry.stable_since = signature, now
            by_stem.setdefault(self._pair_key(entry.path), []).append(entry)
        self._rank_batches()
        ready: list[_Entry] = []
        coming: list[_Entry] = []  # frames-to-be that are not complete yet
        for entry in self._entries.values():
            if not self._preferred(entry.path):
                partners = by_stem.get(self._pair_key(entry.path), [])  # unlooked-at: none
                if any(self._preferred(p.path) for p in partners if p is not entry):
                    continue  # the preferred file of the pair is here: wait for it instead
            if not self._complete(entry, now):
                if entry.signature is not None and entry.signature[0] > 0:
                    coming.append(entry)
                continue
            if not self._preferred(entry.path):
                if entry.hold_until is None:
                    # From completion; for a file found at start, from then: not from its
                    # last write, whose time a download takes from the camera's clock
                    # (gphoto2 sets it), hours behind or ahead.
                    since = entry.found_at if entry.initial else now
                    entry.hold_until = since + self.pair_wait
                if now < entry.hold_until:
                    coming.append(entry)
                    continue
            ready.append(entry)
        first = min(ready, key=_Entry.place, default=None)
        # A frame that began to arrive earlier and is still being written goes first: files
        # complete out of order (a rename seen at once beside plain writes still settling,
        # parallel transfers) and the stack is aligned frame to frame, in order. So does one of
        # the same poll whose event is not read yet (see _arrive).
        self._held_back = first is not None and (
            any(e.place() < first.place() for e in coming) or self._may_grow(first, now)
        )
        return None if self._held_back else first

    def _rank_batches(self) -> None:
        """Rank the files of each batch as :func:`frame_order` orders them: a camera's counter
        may wrap within one poll (IMG_9999 and IMG_0001 land together), and by name alone the
        frame after the wrap went first, as the files found at start no longer do."""
        batches: dict[tuple[int, int], list[_Entry]] = {}
        for entry in self._entries.values():
            if not entry.initial:
                batches.setdefault(entry.order, []).append(entry)
        for members in batches.values():
            if len(members) > 1:
                by_path = {entry.path: entry for entry in members}
                for rank, path in enumerate(frame_order(by_path)):
                    by_path[path].rank = rank

    def _may_grow(self, entry: _Entry, now: float) -> bool:
        """Whether ``entry``'s batch may still get a file that goes before it (see _arrive)."""
        return entry.order == (1, self._batch) and now - self._last_arrival < self._batch_gap

    def _take(self, entry: _Entry) -> bool:
        """Hand out ``entry`` once; False when it is a second name (a hard or symbolic link) of a
        file taken already, which is left out with a note."""
        del self._entries[entry.path]
        self._done[entry.path] = _TAKEN
        outside = self._outside(entry.path)
        if outside is not None:
            self.notes.append(
                f"{entry.path.name}: a link to {outside}, outside the watched folder; not stacked "
                "(copy the file in to stack it)"
            )
            self._refused.add(entry.path)  # not a frame a stop leaves behind unstacked
            return False
        identity = file_identity(entry.path)
        if identity is not None:
            first = self._identities.setdefault(identity, entry.path)
            if first != entry.path:
                self.notes.append(f"{entry.path.name}: the same file as {first.name}, stacked once")
                self._refused.add(entry.path)
                return False
        self._claim(self._pair_key(entry.path), entry.path)
        return True

    def _outside(self, path: Path) -> str | None:
        """Where ``path`` leads when it is a symbolic link out of the watched folder: whoever
        may drop files here could otherwise have the watch read (and its page show) any image
        this user can read."""
        if not path.is_symlink():
            return None
        target = os.path.realpath(path)
        home = os.path.realpath(self.folder)
        return None if target.startswith(home + os.sep) else target

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, entry: _Entry) -> ReadyFrame | UnreadableFrame | None:
        path = entry.path
        before = self._signature(path)
        if before is None:  # gone already: its deletion or move is reported next (see _forget)
            self._release(entry, None)
            self._vanished[path] = entry
            return None
        image, denied, reader = None, False, self._reader
        try:
            (image, after), message = self._read(path, reader), ""
        except ShortOfFilesError:  # the decoder's own open: as below
            self._short_of_files(entry, errno.EMFILE)
            return None
        except UnreadableImageError as exc:
            message = str(exc)
        except PermissionError as exc:  # written by another user: see _readable_again
            message, denied = _denied_message(path, exc), True
        except OSError as exc:  # removed while being read
            if exc.errno in TOO_MANY_FILES:  # the process's want, not the frame's: again later
                self._short_of_files(entry, exc.errno)
                return None
            message = f"{path}: cannot read ({exc.strerror or exc})"
        except OutsideFolder as exc:  # made a link out since it was taken
            self.notes.append(f"{path.name}: became a link to {exc.target}; not stacked")
            self._release(entry, before)
            return None
        if image is None:  # not read whole through a handle: the name tells what is there
            after = self._signature(path)
        if after != before:
            # Still being written after all: back to waiting, this attempt does not count.
            self._requeue(entry, retry_at=None)
            return None
        if image is not None:
            return ReadyFrame(path, image, reader)
        entry.attempts += 1
        final = entry.attempts > self.decode_retries or (is_raw_path(path) and not has_rawpy())
        if not final:
            self._requeue(entry, retry_at=time.monotonic() + self.retry_interval)
            return None
        self._release(entry, before)
        if denied:
            self._denied.add(path)
        return UnreadableFrame(path, message)

    def _short_of_files(self, entry: _Entry, code: int) -> None:
        """Try ``entry`` again later: it could not be opened for want of file descriptors (the
        live page's clients held them); said once. It was called unreadable after its retries
        and skipped for good: "stacked 36 of 60", exit 0."""
        if not self._said_short_of_files:
            self._said_short_of_files = True
            self.notes.append(
                f"{entry.path.name}: cannot be opened now ({os.strerror(code)}); tried again "
                f"until it can: {TOO_MANY_FILES[code]}"
            )
        self._requeue(entry, retry_at=time.monotonic() + self.retry_interval)

    def read_again(self, path: Path, *, first: bool = False) -> np.ndarray:
        """A frame taken already, read again (a live stack starting again without a bad first
        frame); raises as reading it did. As the new stack's ``first`` frame it is read in its
        own orientation, and the frames after it keep that one, not the left-out frame's: a
        stray first shot held upright turned every frame after it a quarter turn."""
        reader = OrientedReader() if first else self._reader
        image = self._read(path, reader)[0]
        self._reader = reader
        return image

    def as_read_now(self, frame: ReadyFrame) -> ReadyFrame:
        """``frame``, read again if it was read (ahead) before :meth:`read_again` started
        reading in another first frame's orientation."""
        if frame.reader is None or frame.reader is self._reader:
            return frame
        return ReadyFrame(frame.path, self.read_again(frame.path), self._reader)

    def _read(
        self, path: Path, reader: OrientedReader
    ) -> tuple[np.ndarray, tuple[int, int] | None]:
        """Decode ``path`` with ``reader`` as the file it names now, wherever its name leads
        later (see :mod:`stacker.pinned`); messages and notes name ``path``.

        Also gives the signature of the file read, as it was once read: through the handle held
        open, so that a file an importer moved out of the folder meanwhile (it was read whole)
        is not taken for one still being written.
        """
        with pinned(path, self._real_folder) as held:
            try:
                reason = truncation(held)
                if reason is not None:
                    raise UnreadableImageError(f"{held}: {reason}")
                image, turned = reader.read(held)
            except UnreadableImageError as exc:  # named by its own name, of its own kind
                raise type(exc)(str(exc).replace(str(held), str(path))) from None
            after = self._signature(held)
        if turned is not None:
            self.notes.append(turned.replace(str(held), str(path)))
        return image, after

    def _requeue(self, entry: _Entry, *, retry_at: float | None) -> None:
        self._done.pop(entry.path, None)
        entry.retry_at = retry_at
        if retry_at is None:
            entry.closed = False
        self._entries[entry.path] = entry

    def _release(self, entry: _Entry, signature: tuple[int, int] | None) -> None:
        """Give up on ``entry``: its pair partner, if any, may be stacked instead."""
        if signature is None:
            self._done.pop(entry.path, None)
        else:
            self._done[entry.path] = signature
        self._free_partners(entry.path)

    def _free_partners(self, path: Path) -> None:
        """``path`` no longer holds its shot's claim: the partners passed over for it are
        candidates again."""
        key = self._pair_key(path)
        if self._claimed.get(key) == path:
            del self._claimed[key]
        for other in [p for p in self.skipped if self._pair_key(p) == key and p.exists()]:
            self.skipped.remove(other)
            self._done.pop(other, None)
            self._arrive(other, None)


def _cannot_look(path: Path) -> bool:
    """Whether ``path`` cannot be looked at now (permission denied on the way to it), as
    opposed to gone or not a regular file."""
    try:
        os.lstat(path)
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def _identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of ``folder``, or ``None`` when it is no folder or cannot be looked at."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class _Listing(NamedTuple):
    """What one listing of a folder gives the periodic looks."""

    names: list[str]
    """Every entry's name."""
    subfolders: dict[str, int]
    """The direct subfolders (not links to folders, not hidden ones: rsync ``--delay-updates``
    stages its files in ``.~tmp~``, Syncthing keeps replaced ones in ``.stversions``), with
    their modification times in nanoseconds."""


def _listed(folder: Path) -> _Listing | None:
    """``folder``'s entries, or None where it cannot be listed."""
    names: list[str] = []
    subfolders: dict[str, int] = {}
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                names.append(e.name)
                with contextlib.suppress(OSError):
                    if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                        subfolders[e.name] = e.stat(follow_symlinks=False).st_mtime_ns
    except OSError:
        return None
    return _Listing(names, subfolders)


def _subfolders(folder: Path) -> dict[str, int]:
    """:attr:`_Listing.subfolders` of ``folder`` (none where it cannot be listed)."""
    listing = _listed(folder)
    return listing.subfolders if listing else {}


def _entries(folder: Path) -> set[tuple[str, int]]:
    """The names and inode numbers of what ``folder`` holds."""
    found: set[tuple[str, int]] = set()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for e in entries:
            with contextlib.suppress(OSError):
                found.add((e.name, e.inode()))
    return found


def _denied_message(path: Path, exc: PermissionError) -> str:
    """What to do about a frame this user may not read (see HotFolder._readable_again)."""
    return (
        f"{path}: cannot read ({exc.strerror or exc}); make it readable (chmod a+r) and it is "
        "stacked then, or have the program writing it create files others can read (umask 022)"
    )
