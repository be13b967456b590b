"""A camera fired through a rail controller's shutter cable, its frames arriving in a folder.

Bodies that are not tethered by USB (no libgphoto2 driver, or a USB port busy with Wi-Fi
transfer) are still stacked: the rail controller's own shutter cable fires them (a StackShot
or a WeMacro can), and the files reach the computer some other way — a tethering program, the
camera's Wi-Fi/FTP upload, or a card reader's folder. :class:`CableReleaseCamera` does for a
session what a USB camera does: :meth:`capture` fires, waits for the shot's file to be
completely written into ``incoming`` (the hot-folder rules of :class:`stacker.hotfolder.HotFolder`:
close-after-write or an atomic rename, temporary names ignored), and copies it atomically into
the session's ``frames/`` under the frame's stem. The originals are left where they landed:
they belong to the program that wrote them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from rig.camera.errors import CameraError
from stacker.hotfolder import HotFolder
from stacker.io import atomic_write_bytes

log = logging.getLogger(__name__)


class ShutterTrigger(Protocol):
    """Something that can fire a camera through a cable (a rail controller)."""

    @property
    def name(self) -> str: ...

    def fire_shutter(self) -> None: ...


class CableReleaseCamera:
    """See the module docstring.

    Parameters
    ----------
    trigger
        The controller whose shutter cable fires the camera.
    incoming
        The folder the camera's files arrive in.
    timeout_s
        How long a shot may take to arrive (exposure, write to card, transfer).
    polling
        Poll ``incoming`` instead of using file events (network shares).
    """

    def __init__(
        self,
        trigger: ShutterTrigger,
        incoming: str | Path,
        *,
        timeout_s: float = 30.0,
        polling: bool = False,
    ) -> None:
        self.trigger = trigger
        self.incoming = Path(incoming)
        self.timeout_s = timeout_s
        if not self.incoming.is_dir():
            raise CameraError(
                f"{self.incoming} is not a folder: give the folder your camera's files arrive "
                "in (a tethering program's or card reader's)"
            )
        self._hot = HotFolder(self.incoming, existing=False, polling=polling, settle=0.3)
        self._hot.start()

    @property
    def description(self) -> str:
        return f"camera on {self.trigger.name}'s shutter cable, files from {self.incoming}"

    def capture(
        self, dest_dir: Path, stem: str | None = None, *, on_progress: Any = None
    ) -> list[Path]:
        """Fire, wait for the shot's file, copy it into ``dest_dir`` as ``stem``."""
        for stray in self._hot.paths(idle_timeout=0.0):
            log.warning("%s arrived between shots and belongs to no frame; left alone", stray)
        self.trigger.fire_shutter()
        arrived = next(iter(self._hot.paths(idle_timeout=self.timeout_s)), None)
        if arrived is None:
            raise CameraError(
                f"no file arrived in {self.incoming} within {self.timeout_s:g} s of firing "
                f"through {self.trigger.name}; check the shutter cable, that the camera is on "
                "and in manual focus, and that its files go to that folder"
            )
        partners = [p for p in self._hot.skipped if p.stem == arrived.stem]
        for partner in partners:  # the RAW of a RAW+JPEG pair: kept with its frame
            self._hot.skipped.remove(partner)
        base = stem or arrived.stem
        return [
            atomic_write_bytes(Path(dest_dir) / (base + path.suffix.lower()), path.read_bytes())
            for path in (arrived, *partners)
        ]

    def close(self) -> None:
        self._hot.stop()

    def __enter__(self) -> CableReleaseCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
