"""The station's session files: listing, safe lookup and zip streaming of frames.

Only files of the station's own sessions are ever served, and they are found by *listing*
(session folders under the root, frame files in a session's ``frames/`` folder), never by
joining a name from a request onto a path, so ``..``, encoded or absolute names match nothing.
A symbolic link is never followed: :func:`served_file` passes only regular files whose real path
lies inside the session folder, :func:`open_served` opens them without following a link swapped
in since, and :func:`own_empty_folder` removes a link it finds where the station writes instead
of deleting through it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rig.errors import RigError
from rig.session.folder import OUTPUT_FORMATS, SessionBusyError, SessionFolder
from rig.station.errors import DownloadCut, NotFoundError, StationBusyError, StationError

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ZIP_CHUNK = 1 << 20
TRASH_PREFIX = ".deleting-"
"""A deleted session's folder is renamed to this prefix, its id and a random tail, then removed."""
ZIP_DATES = ((1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 58))
"""The first and last dates a zip entry can carry (MS-DOS time): a frame written while the
clock said otherwise (a Raspberry Pi, which has no clock, booted without a network thinks it
is 1970) is dated to the nearest of them rather than failing the whole download."""


def served_file(path: Path, folder: Path) -> Path | None:
    """``path`` if it is a regular file, not a link, whose real path lies inside ``folder``."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        inside = path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
    except (OSError, RuntimeError):  # gone meanwhile, or a loop of links on the way
        return None
    return path if inside else None


def open_served(path: Path, root: Path) -> io.BufferedReader:
    """Open ``path``, a file :func:`served_file` passed somewhere under ``root``, following no
    link on the way: each folder below ``root`` is opened inside the one above it with
    ``O_NOFOLLOW``, and so is the file, so a link swapped in for any of them since the check
    is refused (:class:`OSError`) instead of leading outside. Anything but a regular file (a
    FIFO would block the open: ``O_NONBLOCK``) is refused too."""
    *folders, name = path.relative_to(root).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in folders:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(file_fd, "rb")


def own_empty_folder(path: Path) -> Path:
    """``path`` as an empty folder the station owns, for files it writes and later deletes.

    A link (or a file) found there is removed itself, never followed, and a folder of ours is
    opened with ``O_NOFOLLOW`` and emptied through that handle, so a link swapped in for it
    cannot lead the deletion into another folder.
    """
    try:
        try:
            mode: int | None = path.lstat().st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISDIR(mode):
            path.unlink()  # a link or file in our place: remove the entry, not its target
            mode = None
        if mode is None:
            path.mkdir(mode=0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for entry in os.scandir(fd):
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.name, dir_fd=fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StationError(f"{path}: cannot prepare the folder ({exc.strerror or exc})") from None
    return path


def hold_session(session: SessionFolder, what: str) -> None:
    """Take ``session``'s own lock (:meth:`SessionFolder.lock`), which a ``rig shoot`` or
    ``rig resume`` in a terminal holds while it shoots into the station's sessions folder:
    :class:`StationBusyError`, naming ``what`` was asked, when one does. Such a session is
    listed as an interrupted one; deleting it renamed its folder from under the frames being
    written (every frame gone), and a resume of it was answered as started and then failed."""
    try:
        session.lock()
    except SessionBusyError:
        raise StationBusyError(
            f"cannot {what}: another process (rig shoot or rig resume) is shooting it; let it "
            "finish or stop it first"
        ) from None


@contextlib.contextmanager
def unused_elsewhere(folder: Path, what: str) -> Iterator[None]:
    """:func:`hold_session` for the block."""
    session = SessionFolder(folder)
    hold_session(session, what)
    try:
        yield
    finally:
        session.unlock()


def empty_trash(root: Path) -> None:
    """Remove what deletions left behind in ``root`` (a station stopped, or the power cut, while
    it removed a session): hidden from the list, such a folder would hold its frames' space for
    ever. Only real folders named :data:`TRASH_PREFIX`... are removed, a link by that name is
    left alone, and :func:`shutil.rmtree` follows no link inside one."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(TRASH_PREFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


class SessionFiles:
    """The session folders under ``root`` and the files a station may hand out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def sessions(self, running: str | None = None) -> list[dict[str, Any]]:
        """The sessions, newest first, with what can be downloaded (``running``: its id).

        A folder removed or renamed while it is being read (a deletion from the page, another
        program tidying the folder) is left out rather than failing the whole list."""
        out = []
        for path in self._session_dirs():
            try:
                summary = self._summary(path, running)
            except OSError:
                continue
            if summary is not None:
                out.append(summary)
        out.sort(key=lambda s: s["modified"], reverse=True)
        return out

    def _summary(self, path: Path, running: str | None) -> dict[str, Any] | None:
        folder = SessionFolder(path)
        try:
            plan = folder.load_plan()
        except RigError:
            return None
        return {
            "id": path.name,
            "frames": len(self._frames_served(path)),
            "total": plan.frames,
            "plan": plan.describe(),
            "spec": plan.as_spec(),  # the page's "Plan again"
            "composite": self._composite(path) is not None,
            "depth": folder.depth_path.is_file(),
            "depth_preview": folder.depth_preview_path.is_file(),
            "depth_json": folder.depth_json_path.is_file(),
            "running": path.name == running,
            "modified": round(path.stat().st_mtime, 1),
        }

    def _session_dirs(self) -> list[Path]:
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return []
        return [
            p
            for p in entries
            if SESSION_ID.match(p.name)
            and not p.is_symlink()
            and p.is_dir()
            and served_file(p / "plan.json", p) is not None
        ]

    def session_dir(self, sid: str) -> Path:
        """The folder of session ``sid``, looked up among the listed sessions only."""
        for path in self._session_dirs():
            if path.name == sid:
                return path
        raise NotFoundError(f"no session {sid!r} on this station")

    def _composite(self, folder: Path) -> Path | None:
        for ext in sorted(set(OUTPUT_FORMATS.values())):
            p = served_file(folder / f"composite{ext}", folder)
            if p is not None:
                return p
        return None

    def result_file(self, sid: str, kind: str) -> Path:
        """``composite``, ``depth`` (16-bit PNG), ``depth-json`` (what the PNG's values mean:
        without it, a map downloaded from the station could not be read in µm) or
        ``depth-preview`` of session ``sid``."""
        folder = self.session_dir(sid)
        if kind == "composite":
            path = self._composite(folder)
        elif kind == "depth":
            path = SessionFolder(folder).depth_path
        elif kind == "depth-json":
            path = SessionFolder(folder).depth_json_path
        elif kind == "depth-preview":
            path = SessionFolder(folder).depth_preview_path
        else:
            raise NotFoundError(  # a thumbnail has a route of its own (rig.station.history)
                f"no {kind!r} result: use composite, depth, depth-json, depth-preview or thumbnail"
            )
        served = None if path is None else served_file(path, folder)
        if served is None:
            raise NotFoundError(f"session {sid} has no {kind} yet")
        return served

    def frame_files(self, sid: str) -> list[Path]:
        """The frame files of session ``sid``: regular files in its ``frames/`` folder, no links."""
        return [p for files in self._frames_served(self.session_dir(sid)).values() for p in files]

    @staticmethod
    def _frames_served(path: Path) -> dict[int, list[Path]]:
        """The frame files of the session in ``path`` per frame index, in order: regular files
        only (a link named like a frame is neither counted nor served); none once the session
        is deleted, which a download racing the deletion found as a 500 with a traceback."""
        folder = SessionFolder(path)
        try:
            on_disk = folder.frames_on_disk(links=False)  # none where frames/ is a link
            # Checked once for the folder: a regular file in it lies where it does. Resolved
            # for each of them, 25,000 frames on a station took seconds at every listing.
            if not folder.frames_dir.resolve(strict=True).is_relative_to(path.resolve()):
                return {}
        except (OSError, RuntimeError):  # the folder went (a deletion from the page) meanwhile
            return {}
        return dict(sorted(on_disk.items()))

    def frame_file(self, sid: str, name: str) -> Path:
        """One frame of session ``sid`` by its file name, found by listing, never by joining."""
        for path in self.frame_files(sid):
            if path.name == name:
                return path
        raise NotFoundError(f"session {sid} has no frame {name!r}")

    def open(self, path: Path) -> io.BufferedReader:
        """Open a file this class handed out, through no link (:func:`open_served`);
        :class:`NotFoundError` when it was swapped for one, or removed, since."""
        try:
            return open_served(path, self.root)
        except OSError:
            raise NotFoundError(f"{path.name} is no longer among this station's files") from None

    def frames_zip(self, sid: str) -> Iterator[bytes]:
        """A zip of the session's frames, produced piece by piece (frames are stored as is)."""
        files = self.frame_files(sid)
        if not files:
            raise NotFoundError(f"session {sid} has no frames yet")
        return _zip_stream(files, self.root, prefix=f"{sid}/frames/")


class _Chunks(io.RawIOBase):
    """A write-only, unseekable sink whose contents are taken out as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        b = bytes(data)
        self._parts.append(b)
        self._written += len(b)
        return len(b)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def _zip_stream(files: list[Path], root: Path, *, prefix: str) -> Iterator[bytes]:
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in files:
            try:
                src = open_served(path, root)
            except OSError:
                # Removed (the session deleted, a resume setting a damaged frame aside), or
                # swapped for a link, since it was listed. Skipped, the zip ended whole and
                # valid with frames missing, and the photographer kept it as the session.
                raise DownloadCut(
                    f"{prefix}{path.name} was deleted or moved during the download of the "
                    "session's frames: the download was cut; download it again"
                ) from None
            with src:
                when = time.localtime(os.fstat(src.fileno()).st_mtime)[:6]
                when = min(max(when, ZIP_DATES[0]), ZIP_DATES[1])
                info = zipfile.ZipInfo(prefix + path.name, when)
                with zf.open(info, "w", force_zip64=True) as dst:
                    while chunk := src.read(ZIP_CHUNK):
                        dst.write(chunk)
                        yield sink.take()
            yield sink.take()
    yield sink.take()
