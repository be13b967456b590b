"""Tethered shooting: download whatever the camera shoots by itself, one shot at a time.

In-camera focus bracketing (Nikon Z focus shift, Canon focus bracketing, OM System, Fujifilm,
Panasonic, recent Sony bodies) and a photographer pressing the shutter both make files without
a capture call: libgphoto2 announces each one as a ``GP_EVENT_FILE_ADDED`` from
``gp_camera_wait_for_event``. :class:`Tether` listens for those events on a
:class:`~rig.camera.Camera`, groups the files into shots (a RAW+JPEG pair is one shot),
downloads each shot once under one stem, written atomically, and frees the camera's RAM (card
files stay on the card).

How files of one shot are recognised (:class:`ShotGrouper`): libgphoto2 reports card files under
the camera's own names (``DSC_0042.NEF`` and ``DSC_0042.JPG``) and Sony's RAM files as
``capt_<camera name>`` (``camera_wait_for_event``'s Sony branch), so a shared stem pairs them. For
Canon EOS and Nikon RAM captures it invents the names, with a counter bumped *per file*
(``sprintf(path->name, "capt%04d.", params->capcnt++)`` in ``camera_wait_for_event``'s EOS
ObjectTransfer and Nikon ObjectAddedInSDRAM branches): ``capt0007.cr3`` and ``capt0008.jpg`` are
one shot. Such files join the shot before them while it lacks their kind (RAW or raster) and has
fewer files than the body's image format makes. A shot is complete when it has that many files,
when a file arrives that cannot belong to it, or after a quiet window; a file that arrives for a
shot already downloaded (same stem, or the kind an incomplete RAM shot still owes) is written
beside it, never taken for a new frame.

Nothing is lost when frames come faster than they download: libgphoto2 queues the events, card
files wait on the card and RAM captures in libgphoto2's file cache until they are fetched.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from rig.camera.errors import CameraBusyError
from rig.camera.naming import shot_file_names
from rig.camera.retry import RetryPolicy
from stacker.io import RASTER_EXTENSIONS, RAW_EXTENSIONS, atomic_write_bytes

if TYPE_CHECKING:
    from rig.camera.camera import Camera

log = logging.getLogger(__name__)

FileKind = Literal["raw", "raster", "other"]
POLL_S = 0.1
"""Longest single wait for an event: the camera lock is free between waits (for a trigger)."""
DEFAULT_QUIET_S = 1.5
"""A shot still missing files is complete after this long without a file for it."""
BUSY_PATIENCE_S = 120.0
"""How long a download waits for a body busy shooting its burst (300 frames at 3 fps)."""
BUSY_WAIT_S = 0.2
RECENT_SHOTS = 16
"""Downloaded shots remembered for late files."""
TETHER_RETRY = RetryPolicy(attempts=10, first_delay_s=0.02, max_delay_s=1.0)
"""Retries for a tethered camera: a body shooting a burst is busy for a few tens of
milliseconds between frames, so the first retries come soon (the default waits 0.1 s, then
0.2 s..., which at 10 frames per second falls behind)."""
FORMAT_REREAD_S = 1.0
"""Files stop coming for this long: the body's image format is read again (see
:meth:`Tether._reread_format`)."""

_SYNTHETIC = re.compile(r"^capt\d{4,}\.[a-z0-9]+$")  # "capt%04d.": five digits from 10000


def file_kind(name: str) -> FileKind:
    """``raw`` for camera RAW formats, ``raster`` for JPEG/TIFF/HEIF..., else ``other``."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in RAW_EXTENSIONS:
        return "raw"
    if suffix in RASTER_EXTENSIONS or suffix in (".heif", ".heic", ".hif"):
        return "raster"
    return "other"


@dataclass(frozen=True)
class CameraFile:
    """A file libgphoto2 announced: its folder and name on the camera."""

    folder: str
    name: str

    @property
    def kind(self) -> FileKind:
        return file_kind(self.name)

    @property
    def synthetic(self) -> bool:
        """A name libgphoto2 made up with its per-file counter (``capt0007.jpg``)."""
        return bool(_SYNTHETIC.match(self.name))

    @property
    def in_ram(self) -> bool:
        """A capture libgphoto2 holds for us (folder ``/`` or a ``capt`` name: RAM captures of
        Canon EOS, Nikon SDRAM, Sony), freed once downloaded; anything else is a card file.

        The prefix is lower case, as libgphoto2 writes it and as its own ``delete_file_func``
        (``camlibs/ptp2/library.c``) tests it: card names are upper case (DCF), and a body set
        to name its files ``CAPT0001.JPG`` keeps them."""
        return self.folder == "/" or self.name.startswith("capt")

    @property
    def stem(self) -> str:
        """The camera's stem, case-folded (``DSC_0042``; ``capt_DSC00042`` → ``dsc00042``)."""
        stem = PurePosixPath(self.name).stem.casefold()
        return stem[5:] if stem.startswith("capt_") else stem


@dataclass
class CameraShot:
    """The files of one shot, in the order the camera announced them."""

    number: int
    files: list[CameraFile] = field(default_factory=list)
    last_file_at: float = 0.0
    expected: int | None = None

    def kinds(self) -> set[FileKind]:
        return {f.kind for f in self.files}

    @property
    def complete(self) -> bool:
        if self.expected is not None:
            return len(self.files) >= self.expected
        return self.kinds() >= {"raw", "raster"}

    def owes(self, f: CameraFile) -> bool:
        """Whether ``f`` can be the file this (closed, incomplete) RAM shot is still missing."""
        return (
            self.expected is not None
            and len(self.files) < self.expected
            and f.synthetic
            and all(g.synthetic for g in self.files)
            and f.kind not in self.kinds()
        )

    def accepts(self, f: CameraFile) -> bool:
        """Whether ``f`` belongs to this open shot (a shot never holds two files of a kind)."""
        if f.kind in self.kinds():
            return False
        if any(g.stem == f.stem and not g.synthetic for g in self.files):
            return True
        full = self.expected is not None and len(self.files) >= self.expected
        return not full and f.synthetic and all(g.synthetic for g in self.files)


@dataclass(frozen=True)
class LateFile:
    """A file that arrived after its shot was handed out."""

    shot: CameraShot
    file: CameraFile


class ShotGrouper:
    """Turns a stream of announced files into shots (see the module docstring for the rule).

    ``add`` and ``due`` return what is ready: whole shots, and late files of shots handed out
    before. Pure logic, with the time passed in, so it is tested without a camera.
    """

    def __init__(self, files_per_shot: int | None = None, quiet_s: float = DEFAULT_QUIET_S):
        self.files_per_shot = files_per_shot
        self.quiet_s = quiet_s
        self._open: CameraShot | None = None
        self._recent: deque[CameraShot] = deque(maxlen=RECENT_SHOTS)
        self._count = 0

    def add(self, f: CameraFile, now: float) -> list[CameraShot | LateFile]:
        """Take one announced file; return the shots (and late files) it completes."""
        ready: list[CameraShot | LateFile] = []
        shot = self._open
        if shot is not None and shot.accepts(f):
            shot.files.append(f)
            shot.last_file_at = now
            if shot.complete:
                ready.append(self._close())
            return ready
        late = self._late_owner(f)
        if late is not None:
            late.files.append(f)
            return [LateFile(late, f)]
        if shot is not None:
            ready.append(self._close())
        self._count += 1
        self._open = CameraShot(self._count, [f], now, self.files_per_shot)
        if self._open.complete or (self.files_per_shot is None and f.kind == "other"):
            ready.append(self._close())
        return ready

    def due(self, now: float) -> list[CameraShot | LateFile]:
        """The open shot, once nothing came for it within the quiet window."""
        shot = self._open
        if shot is not None and now - shot.last_file_at >= self.quiet_s:
            return [self._close()]
        return []

    @property
    def pending(self) -> bool:
        return self._open is not None

    def _close(self) -> CameraShot:
        shot = self._open
        assert shot is not None
        self._open = None
        self._recent.append(shot)
        return shot

    def _late_owner(self, f: CameraFile) -> CameraShot | None:
        return late_owner(reversed(self._recent), f)


def late_owner(shots: Iterable[CameraShot], f: CameraFile) -> CameraShot | None:
    """The first of ``shots`` that ``f`` arrived late for: one with a file of the same camera
    stem and none of ``f``'s kind, or an incomplete RAM shot that owes ``f``'s kind."""
    for shot in shots:
        named = any(g.stem == f.stem and not g.synthetic for g in shot.files)
        if (named and f.kind not in shot.kinds()) or shot.owes(f):
            return shot
    return None


class Tether:
    """Listens to ``camera`` for files it makes by itself, and downloads them shot by shot.

    Parameters
    ----------
    camera
        An open :class:`~rig.camera.Camera` (with :data:`TETHER_RETRY` for bursts). Files on
        the card stay there — the photographer shot them, whatever the capture-target setting
        says; RAM captures are freed once downloaded.
    files_per_shot
        Files each shot makes (2 for RAW+JPEG); ``None`` asks the camera's image-format setting
        where it can, else pairs by name and kind.
    quiet_s
        How long a shot still missing files waits for them.
    """

    def __init__(
        self,
        camera: Camera,
        *,
        files_per_shot: int | None = None,
        quiet_s: float = DEFAULT_QUIET_S,
    ) -> None:
        self.camera = camera
        self._asks_camera = files_per_shot is None
        if files_per_shot is None:
            files_per_shot = camera.files_per_shot()
        self.grouper = ShotGrouper(files_per_shot, quiet_s)
        self._ready: deque[CameraShot] = deque()
        self._placed: dict[int, tuple[Path, str]] = {}
        self._last_file_at = self._format_read_at = time.monotonic()

    def _reread_format(self) -> None:
        """Read the body's image format again between shots: the photographer may switch to
        RAW+JPEG (or back) between two brackets, and a count kept from the start would then
        make each RAW+JPEG shot two frames, or wait for a RAW that never comes.

        Never while a shot is open, nor during a burst (a Nikon writing frames answers busy,
        and its retries would hold up the download): once per spell of
        :data:`FORMAT_REREAD_S` without a file.
        """
        if not self._asks_camera or self.grouper.pending:
            return
        t = time.monotonic()
        if t - self._last_file_at < FORMAT_REREAD_S or self._format_read_at > self._last_file_at:
            return
        self._format_read_at = t
        count = self.camera.files_per_shot()
        if count is not None:  # a body that cannot say now keeps the count it gave
            self.grouper.files_per_shot = count

    def next_shot(self, timeout_s: float, stop: threading.Event | None = None) -> CameraShot | None:
        """The next complete shot, or ``None`` after ``timeout_s`` (or once ``stop`` is set)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._ready:
                return self._ready.popleft()
            if stop is not None and stop.is_set():
                return None
            left = deadline - time.monotonic()
            if left <= 0 and not self.grouper.pending:
                return None
            self._reread_format()
            # Past the deadline, a shot still open waits out its quiet window.
            self._poll(max(0.001, min(POLL_S, left if left > 0 else POLL_S)))
            self._take(self.grouper.due(time.monotonic()))

    def _poll(self, seconds: float) -> None:
        gp = self.camera._gp
        kind, data = self.camera._wait_event(max(1, int(seconds * 1000)))
        if kind == gp.GP_EVENT_FILE_ADDED:
            self._last_file_at = time.monotonic()
            f = CameraFile(str(data.folder), str(data.name))
            log.debug("%s: file added %s/%s", self.camera.description, f.folder, f.name)
            self._take(self.grouper.add(f, time.monotonic()))

    def _take(self, ready: list[CameraShot | LateFile]) -> None:
        for item in ready:
            if isinstance(item, LateFile):
                self._write_late(item)
            else:
                self._ready.append(item)

    def download(self, shot: CameraShot, dest_dir: Path, stem: str) -> list[Path]:
        """Write every file of ``shot`` into ``dest_dir`` as ``stem.<ext>``; free the camera."""
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        names = shot_file_names(stem, [f.name for f in shot.files])
        written = [
            self._fetch(f, dest_dir / local) for f, local in zip(shot.files, names, strict=True)
        ]
        self._placed[shot.number] = (dest_dir, stem)
        while len(self._placed) > RECENT_SHOTS:
            self._placed.pop(next(iter(self._placed)))
        return written

    def _fetch(self, f: CameraFile, path: Path) -> Path:
        camera = self.camera
        data = self._read(f, path.name)
        written = atomic_write_bytes(path, data)
        if f.in_ram:
            try:
                camera._delete(f.folder, f.name)
            except Exception as exc:  # a file that cannot be freed is only a warning
                log.debug("%s: %s/%s not deleted: %s", camera.description, f.folder, f.name, exc)
        return written

    def _read(self, f: CameraFile, local: str) -> bytes:
        """The file's bytes; a body busy shooting the rest of its burst is waited out.

        A Nikon answers Device Busy while it writes frames, and a 300-frame bracket at 10 fps
        keeps it busy longer than the camera's own retries last: the file is on the body, so
        the download is tried again for up to ``BUSY_PATIENCE_S``.
        """
        deadline = time.monotonic() + BUSY_PATIENCE_S
        while True:
            try:
                return self.camera._download(f.folder, f.name, local, None)
            except CameraBusyError:
                if time.monotonic() >= deadline:
                    raise
                log.info("%s: busy shooting; %s waits", self.camera.description, f.name)
                self.camera.sleep(BUSY_WAIT_S)

    def _write_late(self, late: LateFile) -> None:
        placed = self._placed.get(late.shot.number)
        if placed is None:  # its shot is not downloaded yet: it goes with the shot
            return
        dest_dir, stem = placed
        local = shot_file_names(stem, [f.name for f in late.shot.files])[-1]
        log.warning(
            "%s: %s/%s came late for %s; written beside it as %s",
            self.camera.description,
            late.file.folder,
            late.file.name,
            stem,
            local,
        )
        self._fetch(late.file, dest_dir / local)

    def trigger(self) -> None:
        """Release the shutter without waiting for the file (it arrives as an event)."""
        self.camera.trigger()
