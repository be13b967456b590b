"""What this test process holds: open files, for checks that a resource is given back."""

from __future__ import annotations

import os
from pathlib import Path


def open_files(under: Path) -> list[str]:
    """The files under ``under`` that this process has open (from ``/proc/self/fd``)."""
    prefix = str(Path(under).resolve()) + os.sep
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, or one closed meanwhile
            continue
        if target.startswith(prefix):
            held.append(target)
    return sorted(held)


def fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one that lists them
