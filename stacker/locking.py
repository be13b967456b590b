"""One process at a time: an exclusive ``flock`` held through an open descriptor.

The kernel lets go of it when the descriptor closes or the process ends however it ends (kill
-9, a power cut), so a crash never leaves a stale lock behind. Used on a batch's output folder,
a capture session's folder, a station's sessions folder and the folder of its token file; and,
through a lock file of the user's own (:func:`claimed`), on a watch's composite.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def try_lock(fd: int) -> bool | None:
    """Lock ``fd`` exclusively without waiting: True when held, False when another process
    holds it, None when the file system cannot lock (some network mounts)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def lock_holder(fd: int) -> int | None:
    """The process that holds a ``flock`` on the file open as ``fd``, as Linux lists it in
    ``/proc/locks``; ``None`` where it cannot be told (another system, a lock gone since).
    A lock on a folder leaves no file to write a process id into."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            listed = f.read()
    except OSError:
        return None
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in listed.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 14287 fe:00:2188924 0 EOF"; waiters are marked "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where:
            pid = int(fields[4]) if fields[4].isdigit() else 0
            return pid if pid > 0 and pid != os.getpid() else None
    return None


@contextmanager
def folder_locked(folder: Path, wait_s: float = 10.0) -> Iterator[None]:
    """Hold ``folder`` locked (``flock`` on the folder itself, so no lock file is left behind)
    for the block, waiting up to ``wait_s`` for whoever holds it, then ``TimeoutError``
    (``wait_s=0``: one try). A check and what it decides then happen as one. Where the file
    system cannot lock (some network mounts), the block runs unlocked; a folder that cannot be
    opened is an ``OSError``.
    """
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + wait_s
        while try_lock(fd) is False:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{folder}: another process keeps this folder locked")
            time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # lets go of the lock


class Claimed(Exception):
    """Another process holds the claim :func:`claimed` asked for; ``pid`` is it, where known."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


def _lock_folder() -> Path:
    """Where :func:`claimed` keeps its lock files: ``/run/lock``, the system's folder for
    them, where it is shared by all (world-writable, sticky), else ``/tmp``. A service with
    ``PrivateTmp=yes`` (systemd) has a ``/tmp`` of its own: a watch it ran and one started from
    an ssh login took their locks in different folders, and both wrote the same composite."""
    with contextlib.suppress(OSError):
        st = os.stat("/run/lock")
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o1777 == 0o1777:
            return Path("/run/lock")
    return Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())


_LOCKS = _lock_folder()


@contextmanager
def claimed(path: Path) -> Iterator[None]:
    """Hold a claim on writing ``path`` for the block, or raise :class:`Claimed`.

    The file itself cannot carry a lock (it is replaced at each atomic write) and its folder
    may hold other processes' results, so the lock is on a file named for the resolved path in
    a folder of the user's own (``/run/lock/stackrig-<uid>``: see :func:`_lock_folder`), made
    private and checked to be so: another user's folder or link there leaves the block
    unclaimed, as a file system that cannot lock does. The folder is the same whatever the
    environment says: under ``$XDG_RUNTIME_DIR``, a watch started from an ssh login and one
    from cron (which has none) took their locks in different folders, and both wrote the same
    composite.
    """
    folder = _LOCKS / f"stackrig-{os.getuid()}"
    key = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:32]
    fd = -1
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        st = os.lstat(folder)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
            fd = os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        fd = -1
    try:
        if fd >= 0 and try_lock(fd) is False:
            raise Claimed(lock_holder(fd))
        yield
    finally:
        if fd >= 0:
            os.close(fd)
