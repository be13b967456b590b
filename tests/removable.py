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

    def __init__(self, image: Path, mount: Path, mounts_within_s: float = 10.0) -> None:
        self.image, self.mount = image, mount
        self.mounts_within_s = mounts_within_s
        self._fuse: subprocess.Popen[bytes] | None = None

    @classmethod
    def made(cls, folder: Path, size_mb: int = 64, *, mounts_within_s: float = 10.0) -> Stick:
        """A new stick in ``folder``, plugged in; skips the test where the tools are missing."""
        for tool in ("mkfs.vfat", "fusefat", "fusermount"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed (apt-get install dosfstools fusefat fuse)")
        stick = cls(folder / "stick.img", folder / "stick", mounts_within_s)
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
        deadline = time.monotonic() + self.mounts_within_s
        while not os.path.ismount(self.mount):
            if self._fuse.poll() is not None:
                self._fuse = None
                why = said.read_text(errors="replace").strip().splitlines()
                pytest.skip(f"cannot mount FUSE here: {why[-1] if why else 'fusefat ended'}")
            if time.monotonic() > deadline:
                # Left running, it mounted the stick later and kept it past the test run.
                self._fuse.kill()
                self.unplug()
                pytest.fail(f"fusefat did not mount the stick in {self.mounts_within_s} s")
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
        fuse, self._fuse = self._fuse, None
        if fuse is None:
            return
        try:
            self._unmount()
            try:
                fuse.wait(10)
            except subprocess.TimeoutExpired:
                fuse.kill()
                fuse.wait(10)
        finally:
            # A fusefat killed while mounted (or that mounted after the first unmount) leaves
            # a dead mount ("Transport endpoint is not connected") on the machine.
            self._unmount()

    def _unmount(self) -> None:
        subprocess.run(["fusermount", "-u", "-z", str(self.mount)], capture_output=True)
