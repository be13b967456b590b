"""A FAT32 USB stick for the tests: an image file formatted by ``mkfs.vfat`` and mounted through
FUSE (``fusefat``), since the kernel's own vfat needs root and a loop device. Cameras' cards and
the sticks a Raspberry Pi rig writes sessions to are FAT32 or exFAT: no symbolic or hard links,
no permissions (``chmod`` is ENOSYS), names without ``: * ? " < > |``, times in steps of 2 s.

Pulling the stick is done two ways: as a desktop does when a USB disk goes (a lazy unmount,
``fusermount -u -z``: the path then leads to the folder below the mount point) and as a crash of
the file system's program (its process killed: every call on the mount fails with ENOTCONN).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest


class Stick:
    """A FAT32 file system in ``image``, mounted at ``mount`` while :attr:`plugged`."""

    def __init__(self, image: Path, mount: Path) -> None:
        self.image, self.mount = image, mount
        self._fuse: subprocess.Popen[bytes] | None = None

    @classmethod
    def made(cls, folder: Path, size_mb: int = 64) -> Stick:
        """A new stick in ``folder``, plugged in; skips the test where the tools are missing."""
        for tool in ("mkfs.vfat", "fusefat", "fusermount"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed (apt-get install dosfstools fusefat fuse)")
        stick = cls(folder / "stick.img", folder / "stick")
        stick.mount.mkdir()
        with stick.image.open("wb") as fh:
            fh.truncate(size_mb << 20)
        made = subprocess.run(
            ["mkfs.vfat", "-F", "32", str(stick.image)], capture_output=True, text=True
        )
        if made.returncode != 0:
            pytest.skip(f"mkfs.vfat failed: {made.stderr.strip()}")
        stick.plug()
        return stick

    @property
    def plugged(self) -> bool:
        return self._fuse is not None and self._fuse.poll() is None

    def plug(self) -> None:
        """Mount the stick (again)."""
        # fusefat talks on stderr all the time: into a pipe nobody reads, it blocked, and with
        # it every write to the stick.
        said = self.image.with_suffix(".log")
        with said.open("ab") as log:
            self._fuse = subprocess.Popen(
                ["fusefat", "-f", "-o", "rw+", str(self.image), str(self.mount)],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mount):
            if self._fuse.poll() is not None:
                why = said.read_text(errors="replace").strip().splitlines()
                pytest.skip(f"cannot mount FUSE here: {why[-1] if why else 'fusefat ended'}")
            assert time.monotonic() < deadline, "fusefat never mounted the stick"
            time.sleep(0.02)

    def pull(self, how: str = "unmounted") -> None:
        """Take the stick away: ``unmounted`` as a desktop does (lazily), ``killed`` as a crash
        of the file system's program."""
        assert self._fuse is not None
        if how == "killed":
            self._fuse.send_signal(signal.SIGKILL)
            self._fuse.wait(10)
        else:
            subprocess.run(["fusermount", "-u", "-z", str(self.mount)], check=True)

    def unplug(self) -> None:
        """Unmount and wait for fusefat to write everything to the image and end."""
        if self._fuse is None:
            return
        subprocess.run(["fusermount", "-u", "-z", str(self.mount)], capture_output=True)
        try:
            self._fuse.wait(10)
        except subprocess.TimeoutExpired:
            self._fuse.kill()
            self._fuse.wait(10)
        self._fuse = None
