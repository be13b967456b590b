"""Camera errors: libgphoto2 result codes turned into one-line messages a photographer can act on.

libgphoto2 reports failures as negative integers (``gphoto2-result.h``,
``gphoto2-port-result.h``). The codes are part of its stable ABI, so they are spelled out here and
this module never imports gphoto2: the mapping can be used (and tested) without a camera library.

:func:`classify` says what the session should do about a code (retry, reconnect, give up);
:func:`camera_error` builds the :class:`CameraError` subclass with the message that names the
camera, what was being done, and the usual cause and fix.
"""

from __future__ import annotations

from typing import Literal

from rig.errors import DeviceBusyError, DeviceNotFoundError, MotionError, RigError

GP_ERROR = -1
GP_ERROR_BAD_PARAMETERS = -2
GP_ERROR_NO_MEMORY = -3
GP_ERROR_UNKNOWN_PORT = -5
GP_ERROR_NOT_SUPPORTED = -6
GP_ERROR_IO = -7
GP_ERROR_TIMEOUT = -10
GP_ERROR_IO_INIT = -31
GP_ERROR_IO_READ = -34
GP_ERROR_IO_WRITE = -35
GP_ERROR_IO_UPDATE = -37
GP_ERROR_IO_USB_CLEAR_HALT = -51
GP_ERROR_IO_USB_FIND = -52
GP_ERROR_IO_USB_CLAIM = -53
GP_ERROR_IO_LOCK = -60
GP_ERROR_MODEL_NOT_FOUND = -105
GP_ERROR_FILE_NOT_FOUND = -108
GP_ERROR_CAMERA_BUSY = -110
"""What ptp2 reports for PTP response 0x2019 "Device Busy"."""
GP_ERROR_CAMERA_ERROR = -113
"""Camera could not complete the operation; Nikon's focus drive says this at an end stop."""
GP_ERROR_NO_SPACE = -115

BUSY_CODES = frozenset({GP_ERROR_CAMERA_BUSY})
TRANSIENT_CODES = frozenset({GP_ERROR_TIMEOUT, GP_ERROR_IO_USB_CLEAR_HALT, GP_ERROR_IO_UPDATE})
DISCONNECT_CODES = frozenset(
    {
        GP_ERROR_IO,
        GP_ERROR_IO_READ,
        GP_ERROR_IO_WRITE,
        GP_ERROR_IO_USB_FIND,
        GP_ERROR_UNKNOWN_PORT,
        GP_ERROR_IO_INIT,
    }
)
CLAIM_CODES = frozenset({GP_ERROR_IO_USB_CLAIM, GP_ERROR_IO_LOCK})

Remedy = Literal["retry", "reconnect", "fail"]

CLAIM_HINT = (
    "another program holds the camera, usually the desktop's gvfs-gphoto2 volume monitor: "
    "run `pkill -f gvfs-gphoto2-volume-monitor` (or close the other tethering program) and retry"
)
DISCONNECT_HINT = "check the USB cable and that the camera is switched on and awake"
BUSY_HINT = "the camera stayed busy (still writing to the card or focusing); wait and retry"


class CameraError(RigError):
    """A camera problem; ``code`` is the libgphoto2 result code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CameraNotFoundError(CameraError, DeviceNotFoundError):
    """No camera answers, or none matches the model/port asked for."""


class CameraDisconnectedError(CameraError, DeviceNotFoundError):
    """The camera went away during the session and did not come back in time."""


class CameraBusyError(CameraError, DeviceBusyError):
    """The camera reported busy after every retry."""


class CameraClaimError(CameraBusyError):
    """The USB device is held by another program (gvfs, another tethering tool)."""


class CameraUnsupportedError(CameraError):
    """The body cannot do what was asked (live view, lens focus drive, a setting)."""


class ConfigKeyError(CameraError):
    """A configuration key the camera does not have."""


class ConfigValueError(CameraError):
    """A value a configuration key cannot take (not a choice, out of range, read-only)."""


class CaptureLostError(CameraError):
    """A shot's file went with a dropped USB link before it was downloaded: a capture to the
    camera's RAM is held in libgphoto2's memory of that connection (``gp_camera_exit`` resets
    its file system), and is on no card. Shooting the frame again is the only remedy, which a
    session does at once (``transient``)."""

    transient = True


class ShotCutShortError(CameraError):
    """A cable-fired shot's file landed visibly cut short (an upload that broke off, a polled
    share that stalled longer than the wait for its partner): the frame is shot again at once
    (``transient``) rather than kept half black."""

    transient = True


class FocusEndStopError(CameraError, MotionError):
    """The lens reached the physical end of its focus travel; ``steps_done`` steps were made."""

    def __init__(self, message: str, steps_done: int = 0, code: int | None = None) -> None:
        super().__init__(message, code)
        self.steps_done = steps_done


def classify(code: int) -> Remedy:
    """What a session should do about libgphoto2 result ``code``.

    ``"retry"`` for busy and transient timeouts (after a back-off), ``"reconnect"`` for I/O
    errors that mean the USB link broke, ``"fail"`` for everything else.
    """
    if code in BUSY_CODES or code in TRANSIENT_CODES:
        return "retry"
    if code in DISCONNECT_CODES:
        return "reconnect"
    return "fail"


def camera_error(code: int, detail: str, *, what: str, camera: str) -> CameraError:
    """The :class:`CameraError` for libgphoto2 result ``code`` while doing ``what``.

    Parameters
    ----------
    code
        libgphoto2 result code (negative).
    detail
        libgphoto2's own text for the code (``gp_result_as_string``).
    what
        The operation, e.g. ``"capture"`` or ``"set 'iso'"``.
    camera
        How to name the camera to the user, e.g. ``"Canon EOS 80D on usb:001,007"``.
    """
    head = f"{camera}: {what} failed: {detail} [{code}]"
    if code in CLAIM_CODES:
        return CameraClaimError(f"{head}; {CLAIM_HINT}", code)
    if code in BUSY_CODES:
        return CameraBusyError(f"{head}; {BUSY_HINT}", code)
    if code in DISCONNECT_CODES or code in TRANSIENT_CODES:
        return CameraDisconnectedError(f"{head}; {DISCONNECT_HINT}", code)
    if code == GP_ERROR_MODEL_NOT_FOUND:
        return CameraNotFoundError(f"{head}; libgphoto2 does not know this model", code)
    if code == GP_ERROR_NOT_SUPPORTED:
        return CameraUnsupportedError(f"{head}; not supported by this camera", code)
    if code == GP_ERROR_NO_SPACE:
        return CameraError(f"{head}; the memory card is full: free space or shoot to RAM", code)
    if code == GP_ERROR_CAMERA_ERROR:
        return CameraError(
            f"{head}; the camera refused (autofocus could not lock? switch the lens to MF)", code
        )
    return CameraError(head, code)
