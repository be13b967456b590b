"""One process at a time: an exclusive ``flock`` held through an open descriptor.

The kernel lets go of it when the descriptor closes or the process ends however it ends (kill
-9, a power cut), so a crash never leaves a stale lock behind. Used on a batch's output folder,
a capture session's folder and a station's sessions folder.
"""

from __future__ import annotations

import errno
import fcntl


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
