"""Finding cameras: what is connected, and which one the user meant.

Detection goes through libgphoto2's autodetect, which lists every supported camera on every port
(USB, and the virtual camera in tests). A camera is chosen by model, by port, or as "the only
one"; ambiguity is an error that lists what is there, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.camera.backend import load_gphoto2
from rig.camera.errors import CameraError, CameraNotFoundError, camera_error

NO_CAMERA_HINT = "connect a camera by USB, switch it on and set it to PC/PTP mode"


@dataclass(frozen=True)
class CameraInfo:
    """A detected camera: libgphoto2's model name and the port it is on (``usb:001,007``)."""

    model: str
    port: str

    def __str__(self) -> str:
        return f"{self.model} on {self.port}"


def list_cameras() -> list[CameraInfo]:
    """Every camera libgphoto2 detects, in its order (the virtual camera when enabled)."""
    gp = load_gphoto2()
    try:
        found = gp.Camera.autodetect()
    except gp.GPhoto2Error as exc:
        raise camera_error(
            exc.code, exc.string, what="detect cameras", camera="libgphoto2"
        ) from None
    return [CameraInfo(found.get_name(i), found.get_value(i)) for i in range(found.count())]


CHOOSE_HINT = (
    "choose one by model or port (--camera-model or --camera-port for a session, "
    "--model or --port for `rig camera`)"
)
"""How to pick one of several cameras: the flags differ, as `rig shoot --port` is the
preview page's."""


def choose_camera(
    cameras: list[CameraInfo], model: str | None = None, port: str | None = None
) -> CameraInfo:
    """The one camera matching ``model`` and ``port`` (either may be ``None``).

    ``model`` matches libgphoto2's model name exactly (ignoring case) or, failing that, as a
    unique substring (``"D750"`` for ``"Nikon DSC D750"``). ``port`` must match exactly.
    """
    wanted = " ".join(p for p in (model and f"model {model!r}", port and f"port {port}") if p)
    if not cameras:
        raise CameraNotFoundError(f"no camera found: {NO_CAMERA_HINT}")
    matches = cameras
    if port is not None:
        matches = [c for c in matches if c.port == port]
    if model is not None:
        exact = [c for c in matches if c.model.lower() == model.lower()]
        matches = exact or [c for c in matches if model.lower() in c.model.lower()]
    present = "; ".join(str(c) for c in cameras)
    if not matches:
        raise CameraNotFoundError(f"no camera with {wanted} found; connected: {present}")
    if len(matches) > 1:
        raise CameraError(
            f"{len(matches)} cameras match{' ' + wanted if wanted else ''} ({present}): "
            f"{CHOOSE_HINT}"
        )
    return matches[0]
