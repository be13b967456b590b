"""A camera fired through a rail controller's shutter cable, its frames arriving in a folder.

Bodies that are not tethered by USB (no libgphoto2 driver, or a USB port busy with Wi-Fi
transfer) are still stacked: the rail controller's own shutter cable fires them (a StackShot
or a WeMacro can), and the files reach the computer some other way — a tethering program, the
camera's Wi-Fi/FTP upload, or a card reader's folder. :class:`CableReleaseCamera` does for a
session what a USB camera does: :meth:`capture` fires, waits for the shot's file to be
completely written into ``incoming`` (the hot-folder rules of :class:`stacker.hotfolder.HotFolder`:
close-after-write or an atomic rename, temporary names ignored), and copies it atomically into
the session's ``frames/`` under the frame's stem. A body shooting RAW+JPEG sends two files a
shot: the second (the same stem, or gphoto2's next ``capt`` number) is waited for until it is
written as well, and kept with its frame. The originals are left where they landed: they
belong to the program that wrote them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from rig.camera.errors import CameraError, ShotCutShortError
from stacker.hotfolder import HotFolder
from stacker.io import atomic_write_bytes, is_raw_path
from stacker.pairs import ShotKeys

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
    pair_wait
        How long after a shot's first file its second may still begin to land (RAW+JPEG); the
        first shot waits this long to learn whether the camera sends pairs, a shot after one
        that came as a pair waits for its partner as long again.
    """

    def __init__(
        self,
        trigger: ShutterTrigger,
        incoming: str | Path,
        *,
        timeout_s: float = 30.0,
        polling: bool = False,
        pair_wait: float = 2.0,
    ) -> None:
        self.trigger = trigger
        self.incoming = Path(incoming)
        self.timeout_s = timeout_s
        self.pair_wait = pair_wait
        self._pairs: bool | None = None  # whether the camera sends RAW+JPEG; None: not known yet
        if not self.incoming.is_dir():
            raise CameraError(
                f"{self.incoming} is not a folder: give the folder your camera's files arrive "
                "in (a tethering program's or card reader's)"
            )
        self._hot = HotFolder(
            self.incoming, existing=False, polling=polling, settle=0.3, pairs=False
        )
        self._hot.start()

    @property
    def description(self) -> str:
        return f"camera on {self.trigger.name}'s shutter cable, files from {self.incoming}"

    def capture(
        self, dest_dir: Path, stem: str | None = None, *, on_progress: Any = None
    ) -> list[Path]:
        """Fire, wait for the shot's files, copy them into ``dest_dir`` as ``stem``."""
        for stray in self._hot.paths(idle_timeout=0.0):
            _stray(stray)
        self.trigger.fire_shutter()
        arrived = next(iter(self._hot.paths(idle_timeout=self.timeout_s)), None)
        if arrived is None:
            raise CameraError(
                f"no file arrived in {self.incoming} within {self.timeout_s:g} s of firing "
                f"through {self.trigger.name}; check the shutter cable, that the camera is on "
                "and in manual focus, and that its files go to that folder"
            )
        shot = [arrived, *self._partner(arrived)]
        shot.sort(key=is_raw_path)  # the rendered file first, as a USB camera's
        # The hot folder hands out at last a file that stays cut short, and says so.
        cut = [(path, self._hot.cut_short.pop(path, None)) for path in shot]
        for path, reason in cut:
            if reason is not None:
                raise ShotCutShortError(
                    f"{path}: {reason}; its transfer broke off or stalled: the frame is shot again"
                )
        base = stem or arrived.stem
        return [
            atomic_write_bytes(Path(dest_dir) / (base + path.suffix.lower()), path.read_bytes())
            for path in shot
        ]

    def _partner(self, arrived: Path) -> list[Path]:
        """The other file of ``arrived``'s shot, once written whole (its RAW or JPEG), or none.

        Waited for at the first shot, and at every shot once one came as a pair: a RAW being
        written is activity, so the wait lasts while it lands (a partner copied as it was
        still being written was cut short in the session's frames)."""
        if self._pairs is False:
            return []
        keys = ShotKeys()
        key = keys.key(arrived)
        for path in self._hot.paths(idle_timeout=self.pair_wait):
            if keys.key(path) == key and is_raw_path(path) != is_raw_path(arrived):
                self._pairs = True
                return [path]
            _stray(path)
        if self._pairs:
            log.warning("%s came without its RAW or JPEG partner this time", arrived.name)
        self._pairs = bool(self._pairs)
        return []

    def close(self) -> None:
        self._hot.stop()

    def __enter__(self) -> CableReleaseCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stray(path: Path) -> None:
    log.warning("%s arrived between shots and belongs to no frame; left alone", path)
