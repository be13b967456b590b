"""Reading a file of a shared folder as the file its name led to when it was opened.

Whoever may drop files into a hot folder could swap a frame, once checked, for a symbolic link
out of the folder before the decoder opens it by name, and have the watch read (and its page
show) any image its user can read. A file is therefore opened once, where it stands is read from
the open handle, and every later read goes through that handle: on Linux through a link of our
own, in a private folder, to ``/proc/self/fd/N``, which reopens the very file held open, with
the name's extension kept for the decoders that go by it. Elsewhere the check falls back to the
name resolved just before the read.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PROC_FD = Path("/proc/self/fd")
_lock = threading.Lock()
_names = itertools.count(1)
_folder: Path | None = None


class OutsideFolder(Exception):
    """The file opened lies outside the folder it was taken from; ``target`` is where."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def open_regular(path: Path) -> int:
    """A descriptor of ``path`` open for reading, or ``OSError`` when it is no regular file.

    Opened without blocking: a FIFO put where a frame was, in a folder others write to, would
    otherwise hold the open until someone writes to it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(0, "not a regular file")
    return fd


def read_small_text(path: Path, limit: int = 1 << 20) -> str:
    """The UTF-8 text of a small regular file (a plan, a session's settings).

    ``OSError`` for anything else: a named pipe that would hang the read, a device with no end
    (``/dev/zero`` fills memory), a file of more than ``limit`` bytes; ``UnicodeDecodeError``
    for bytes that are not text.
    """
    with os.fdopen(open_regular(path), "rb") as kept:
        data = kept.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"more than {limit >> 10} KiB, far too large")
    return data.decode()


@contextmanager
def pinned(path: Path, folder: Path) -> Iterator[Path]:
    """Yield a name to read ``path`` by, held to the file ``path`` names as this is entered.

    Raises :class:`OutsideFolder` when that file lies outside ``folder`` (given resolved), and
    ``OSError`` when it cannot be opened (gone, no permission, not a regular file).
    """
    fd = open_regular(path)
    try:
        handle = _PROC_FD / str(fd)
        held = os.path.exists(handle)
        target = os.readlink(handle) if held else os.path.realpath(path)
        if not target.startswith(str(folder) + os.sep):
            raise OutsideFolder(target)
        if not held:
            yield path
            return
        alias = _private_folder() / f"{next(_names)}{path.suffix}"
        os.symlink(handle, alias)
        try:
            yield alias
        finally:
            os.unlink(alias)
    finally:
        os.close(fd)


def _private_folder() -> Path:
    """A folder only this user may enter, for the links to held files; gone at exit. Made
    again when something removed it (a temporary-file cleaner, ``rm -rf /tmp/*`` to free
    space): every later frame of a watch was skipped as unreadable."""
    global _folder
    with _lock:
        if _folder is None or not _is_own_folder(_folder):
            _folder = Path(tempfile.mkdtemp(prefix="stackrig-held-"))
            atexit.register(shutil.rmtree, _folder, ignore_errors=True)
        return _folder


def _is_own_folder(folder: Path) -> bool:
    """Whether ``folder`` is still a folder of this user's that only it may enter (not a link,
    nor one someone else made under the same name)."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077
