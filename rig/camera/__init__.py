"""Camera control through libgphoto2 (python-gphoto2): detect, configure, shoot, drive focus.

The public face is :class:`Camera` (one long-lived session per body) and
:func:`list_cameras`; errors are :class:`~rig.camera.errors.CameraError` subclasses, each one
line naming the camera and what to do. python-gphoto2 is imported on first use only.
"""

from rig.camera.camera import Camera, CaptureTarget, ProgressCallback
from rig.camera.config import ConfigItem
from rig.camera.detect import CameraInfo, list_cameras
from rig.camera.errors import (
    CameraBusyError,
    CameraClaimError,
    CameraDisconnectedError,
    CameraError,
    CameraNotFoundError,
    CameraUnsupportedError,
    ConfigKeyError,
    ConfigValueError,
    FocusEndStopError,
)
from rig.camera.retry import RetryPolicy
from rig.camera.summary import CameraSummary, StorageSummary

__all__ = [
    "Camera",
    "CameraBusyError",
    "CameraClaimError",
    "CameraDisconnectedError",
    "CameraError",
    "CameraInfo",
    "CameraNotFoundError",
    "CameraSummary",
    "CameraUnsupportedError",
    "CaptureTarget",
    "ConfigItem",
    "ConfigKeyError",
    "ConfigValueError",
    "FocusEndStopError",
    "ProgressCallback",
    "RetryPolicy",
    "StorageSummary",
    "list_cameras",
]
