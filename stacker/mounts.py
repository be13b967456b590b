"""Which file system a folder is on, and whether this machine hears of other writers' files.

File events (Linux inotify) come from this machine's own kernel: they report what processes
here do to a file. A network share (NFS, SMB/CIFS), a FUSE mount (sshfs, a desktop's gvfs mount
of an SMB share, rclone) or a virtual machine's shared folder (VirtualBox, VMware, Parallels,
9p and virtiofs, WSL's view of the Windows drives) is written by another machine or operating
system, whose writes raise no event here (inotify(7), "Limitations and caveats": "Inotify
reports only events that a user-space program triggers through the filesystem API. As a
result, it does not catch remote events that occur on network filesystems"). Such a folder
must be polled.

The type comes from the kernel's mount table, ``/proc/self/mountinfo`` (proc(5)); elsewhere
nothing is known and ``None`` is returned.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["MOUNTINFO", "mount_type", "unheard_writes"]

MOUNTINFO = Path("/proc/self/mountinfo")

#: File systems whose files other machines or systems write without this kernel knowing.
REMOTE_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "9p",  # QEMU shares; WSL 2's /mnt/c (Windows' own programs write there)
        "drvfs",
        "virtiofs",
        "vboxsf",
        "vmhgfs",
        "prl_fs",
        "fuse",  # a FUSE file system that names no subtype (bindfs, davfs2...)
    }
)

_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in a mount point as octal escapes.
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_type(path: str | os.PathLike[str], mountinfo: Path = MOUNTINFO) -> str | None:
    """The type of the file system ``path`` is on (``ext4``, ``cifs``, ``fuse.sshfs``...).

    ``None`` where the mount table cannot be read (not Linux).
    """
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = -1, None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:] or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        # The longest mount point holding the path; of mounts stacked on one point, the last.
        if inside and len(point) >= best:
            best, best_type = len(point), fields[fields.index("-", 6) + 1]
    return best_type


def unheard_writes(path: str | os.PathLike[str], mountinfo: Path = MOUNTINFO) -> str | None:
    """The file system type if other machines' writes to ``path`` raise no file events here.

    Network and virtual-machine shares, and FUSE mounts (``fuse.sshfs``, ``fuse.gvfsd-fuse``)
    other than ``fuseblk``, a local disk (an exFAT or NTFS card read through FUSE).
    """
    kind = mount_type(path, mountinfo)
    if kind is None:
        return None
    if kind in REMOTE_TYPES or kind.startswith("fuse."):
        return kind
    return None
