"""A camera you can run without a camera: libgphoto2's own virtual PTP body, fed from a folder.

python-gphoto2's wheels bundle libgphoto2's virtual camera ("vusb" I/O library). python-gphoto2
selects it *when it is first imported*: if ``VCAMERADIR`` is set then, it points libgphoto2 at the
``vusb`` I/O library instead of the USB/serial ones (``IOLIBS``), and autodetect lists one camera,
``Nikon DSC D750`` on ``usb:001,001`` (manufacturer ``GP``, model ``VC``, serial ``0.1``), driven by
the real ptp2 driver. The folder named by ``VCAMERADIR`` is its memory card.

How the virtual body behaves (libgphoto2 2.5.34, found by experiment and confirmed in its
``vcamera.c``):

* **The folder is read when a camera is opened**, not at import: files added later are invisible
  until the next open, and ``VCAMERADIR`` may change between opens as long as gphoto2 was first
  imported with it set. Precisely, the tree lives in the ``vusb`` library, which libgphoto2
  unloads when the last camera handle is *freed*: a handle kept alive (say by a stored
  exception's traceback) keeps the old tree, and :class:`rig.camera.Camera` takes care not to.
* **A capture serves the first JPEG of the tree**, which is the *last* ``*.jpg`` in ``readdir``
  order (entries are prepended), i.e. an arbitrary file when there are several. It is not
  round-robin and not the newest. With exactly one JPEG in the folder the choice is certain.
* **The file's size is fixed at open** (from ``stat``), but its bytes are read at download. A
  replacement of the same size is therefore served as-is; a larger one is truncated and a smaller
  one fails the download ("Unspecified error").
* **26 captures per connection**: the 27th reports the store full (libgphoto2 -3); close and open
  the camera (:meth:`rig.camera.Camera.reconnect`) to start again.
* No live view (``capture_preview`` is "Unsupported operation"), no lens focus drive.
* Its test opcode 0x9999 (sent by setting the ``opcode`` widget to ``0x9999,0x0,0x1``) adds a
  copy of the served JPEG to the card and announces it with an ObjectAdded event, which is how
  the second file of a RAW+JPEG shot arrives on a real body.

So :class:`VirtualCameraFolder` keeps one capture slot, ``capture.jpg``, of a fixed size, and
:meth:`VirtualCameraFolder.stage` replaces its content (atomically) with the next image padded
with filler bytes after the JPEG end marker, which every JPEG decoder ignores. The downloaded file
is byte-for-byte the staged slot.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from rig.errors import RigError
from stacker.io import atomic_write_bytes

ENV_VAR = "VCAMERADIR"
SLOT_NAME = "capture.jpg"
DEFAULT_SLOT_BYTES = 2 << 20
SHOTS_PER_CONNECTION = 26
"""Captures the virtual body allows before it reports its store full (until reopened)."""
VIRTUAL_MODEL = "Nikon DSC D750"
VIRTUAL_PORT = "usb:001,001"


class VirtualCameraError(RigError):
    """The virtual camera cannot be set up as asked."""


def placeholder_jpeg(width: int = 64, height: int = 48) -> bytes:
    """A small mid-grey JPEG, the slot's content until something is staged."""
    image = np.full((height, width, 3), 128, np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:  # pragma: no cover - OpenCV always encodes a plain array
        raise VirtualCameraError("OpenCV could not encode the placeholder JPEG")
    return bytes(encoded.tobytes())


#: What fills the slot after the JPEG: decoders stop at its end marker, and not zero bytes, which
#: would make the file look unfinished when it is stored as the RAW half of a RAW+JPEG shot
#: (a RAW file that ends in zeros is one still being copied, see ``stacker.io.truncation``).
PADDING = b"\x55"


def pad_jpeg(jpeg: bytes, size: int) -> bytes:
    """``jpeg`` followed by filler bytes up to exactly ``size`` bytes (decoders stop at EOI)."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise VirtualCameraError("the virtual camera only serves JPEG data (no FF D8 start marker)")
    if len(jpeg) > size:
        raise VirtualCameraError(
            f"image of {len(jpeg)} bytes does not fit the virtual camera's {size}-byte slot: "
            "create the VirtualCameraFolder with a larger slot_bytes before opening the camera"
        )
    return jpeg + PADDING * (size - len(jpeg))


class VirtualCameraFolder:
    """The virtual camera's card: one fixed-size capture slot whose content is set per shot.

    Parameters
    ----------
    path
        Folder to own (created if needed). Any other ``*.jpg`` in it is refused, because the
        virtual body would serve an arbitrary one of them.
    slot_bytes
        Size of every image the camera delivers; staged JPEGs are padded to it. Fixed for the
        lifetime of a camera connection, so choose it before opening the camera.
    """

    def __init__(self, path: str | os.PathLike[str], *, slot_bytes: int = DEFAULT_SLOT_BYTES):
        self.path = Path(path)
        self.slot_bytes = int(slot_bytes)
        self.path.mkdir(parents=True, exist_ok=True)
        others = [
            p.name
            for p in self.path.iterdir()
            if p.name != SLOT_NAME and p.suffix.lower() in (".jpg", ".jpeg")
        ]
        if others:
            raise VirtualCameraError(
                f"{self.path} already holds {', '.join(sorted(others))}: the virtual camera "
                "would serve an arbitrary JPEG; give it an empty folder"
            )
        if not self.slot_path.exists() or self.slot_path.stat().st_size != self.slot_bytes:
            self.stage(placeholder_jpeg())

    @property
    def slot_path(self) -> Path:
        """The file every capture serves."""
        return self.path / SLOT_NAME

    def stage(self, jpeg: bytes) -> bytes:
        """Make the next capture deliver ``jpeg``; return the exact bytes it will deliver."""
        data = pad_jpeg(jpeg, self.slot_bytes)
        atomic_write_bytes(self.slot_path, data)
        return data

    def stage_image(self, image: np.ndarray, quality: int = 95) -> bytes:
        """Encode a BGR ``uint8`` image as JPEG and :meth:`stage` it."""
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise VirtualCameraError("OpenCV could not encode the image to stage as JPEG")
        return self.stage(bytes(encoded.tobytes()))

    def staged(self) -> bytes:
        """The bytes the next capture will deliver."""
        return self.slot_path.read_bytes()

    def close(self) -> None:
        """Remove the capture slot (the folder stays); captures fail until a new one is made."""
        self.slot_path.unlink(missing_ok=True)

    def __enter__(self) -> VirtualCameraFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def activate(self) -> None:
        """Point ``VCAMERADIR`` at this folder (see :func:`use_virtual_camera`)."""
        use_virtual_camera(self.path)


def gphoto2_uses_virtual_camera() -> bool | None:
    """Whether the imported gphoto2 chose the virtual camera; ``None`` if not imported yet."""
    module = sys.modules.get("gphoto2")
    if module is None:
        return None
    iolibs = getattr(module, "_iolibs", None)
    if iolibs is not None:
        return Path(str(iolibs)).name == "vusb"
    return "vusb" in os.environ.get("IOLIBS", "")


def use_virtual_camera(folder: str | os.PathLike[str]) -> None:
    """Set ``VCAMERADIR`` to ``folder`` for the cameras opened from now on.

    Before gphoto2's first import this decides that the process uses the virtual camera. After
    it, switching folders works only if gphoto2 was imported with the virtual camera already
    chosen; otherwise this refuses, because python-gphoto2 picked the real USB drivers at import.
    """
    value = str(Path(folder).resolve())
    virtual = gphoto2_uses_virtual_camera()
    if virtual is False:
        raise VirtualCameraError(
            f"gphoto2 was already imported without {ENV_VAR} (real USB drivers chosen), so the "
            f"virtual camera cannot be enabled for {value}: set {ENV_VAR} before the first "
            "import of gphoto2, or run in a fresh process"
        )
    os.environ[ENV_VAR] = value
