"""Error mapping, busy retries and reconnection.

Busy replies, claim failures and unplugged cables cannot be provoked on libgphoto2's virtual
body, so those tests wrap the real libgphoto2 camera handle in FlakyHandle, which raises a real
gphoto2.GPhoto2Error for the first calls of one method and passes everything else (and every
later call) to the real virtual camera. Reconnection itself then runs for real: detection,
reopening, the serial number check and re-applying the session's settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gphoto2 as gp
import pytest

from rig.camera import (
    Camera,
    CameraBusyError,
    CameraClaimError,
    CameraDisconnectedError,
    CameraError,
    CameraInfo,
    CameraNotFoundError,
    CameraUnsupportedError,
    RetryPolicy,
    errors,
)
from rig.camera import camera as camera_module
from rig.camera.detect import choose_camera
from rig.errors import DeviceBusyError, DeviceNotFoundError, RigError
from rig.sim.vcamera import VIRTUAL_PORT, VirtualCameraFolder
from stacker.errors import UserError

NAME = "Nikon DSC D750 on usb:001,001"


class FlakyHandle:
    """The real libgphoto2 camera, except that ``method`` first raises ``codes`` in turn."""

    def __init__(self, real: Any, method: str, codes: list[int]) -> None:
        self.real = real
        self.method = method
        self.codes = list(codes)
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def flaky(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.codes:
                raise gp.GPhoto2Error(self.codes.pop(0))
            return attr(*args, **kwargs)

        return flaky


@pytest.fixture
def card_slot_bytes() -> int:
    return 16_000


@pytest.fixture
def camera(card: VirtualCameraFolder) -> Iterator[Camera]:
    policy = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.04, reconnect_timeout_s=0.3)
    with Camera.open(retry=policy) as cam:
        cam.sleep = _Sleeps()
        yield cam


class _Sleeps(list[float]):
    """Records back-off waits instead of sleeping (keeps the tests fast)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ------------------------------------------------------------------------- pure mapping


def test_error_codes_match_libgphoto2() -> None:
    for name in (
        "GP_ERROR",
        "GP_ERROR_BAD_PARAMETERS",
        "GP_ERROR_NOT_SUPPORTED",
        "GP_ERROR_IO",
        "GP_ERROR_TIMEOUT",
        "GP_ERROR_IO_READ",
        "GP_ERROR_IO_WRITE",
        "GP_ERROR_IO_USB_FIND",
        "GP_ERROR_IO_USB_CLAIM",
        "GP_ERROR_IO_LOCK",
        "GP_ERROR_MODEL_NOT_FOUND",
        "GP_ERROR_CAMERA_BUSY",
        "GP_ERROR_CAMERA_ERROR",
        "GP_ERROR_NO_SPACE",
    ):
        assert getattr(errors, name) == getattr(gp, name), name


def test_classify() -> None:
    assert errors.classify(gp.GP_ERROR_CAMERA_BUSY) == "retry"
    assert errors.classify(gp.GP_ERROR_TIMEOUT) == "retry"
    assert errors.classify(gp.GP_ERROR_IO_USB_FIND) == "reconnect"
    assert errors.classify(gp.GP_ERROR_IO) == "reconnect"
    assert errors.classify(gp.GP_ERROR_IO_USB_CLAIM) == "fail"
    assert errors.classify(gp.GP_ERROR_BAD_PARAMETERS) == "fail"


def test_claim_failure_names_gvfs_and_the_fix() -> None:
    err = errors.camera_error(
        -53, gp.gp_result_as_string(-53), what="open", camera="Canon EOS 80D on usb:001,007"
    )
    assert isinstance(err, CameraClaimError) and isinstance(err, DeviceBusyError)
    text = str(err)
    assert text.startswith("Canon EOS 80D on usb:001,007: open failed: Could not claim the USB")
    assert "gvfs-gphoto2 volume monitor" in text
    assert "pkill -f gvfs-gphoto2-volume-monitor" in text and "\n" not in text


def test_mapped_classes_are_user_errors_with_hints() -> None:
    def make(code: int) -> CameraError:
        return errors.camera_error(code, gp.gp_result_as_string(code), what="capture", camera="X")

    assert isinstance(make(-110), CameraBusyError) and "busy" in str(make(-110))
    assert isinstance(make(-52), CameraDisconnectedError) and "USB cable" in str(make(-52))
    assert isinstance(make(-52), DeviceNotFoundError)
    assert isinstance(make(-6), CameraUnsupportedError)
    assert "card is full" in str(make(-115))
    assert make(-1).code == -1
    assert all(isinstance(make(c), (RigError, UserError)) for c in (-1, -7, -53, -110, -113))


def test_choose_camera_refuses_ambiguity_and_absence() -> None:
    two = [CameraInfo("Canon EOS 80D", "usb:001,004"), CameraInfo("Canon EOS R", "usb:001,005")]
    assert choose_camera(two, model="80d").port == "usb:001,004"
    assert choose_camera(two, port="usb:001,005").model == "Canon EOS R"
    with pytest.raises(CameraError, match=r"2 cameras match model 'Canon'.*--model or --port"):
        choose_camera(two, model="Canon")
    with pytest.raises(CameraError, match=r"2 cameras match \(Canon EOS 80D on usb:001,004"):
        choose_camera(two)
    with pytest.raises(CameraNotFoundError, match="no camera found: connect a camera by USB"):
        choose_camera([])


# ------------------------------------------------------- retries on the real virtual body


@pytest.mark.slow
def test_busy_is_retried_with_back_off(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    staged = card.stage(b"\xff\xd8busy test\xff\xd9")
    flaky = FlakyHandle(camera._cam, "capture", [gp.GP_ERROR_CAMERA_BUSY] * 2)
    camera._cam = flaky
    paths = camera.capture(tmp_path / "out")
    assert [p.read_bytes() for p in paths] == [staged]
    assert flaky.calls == 3
    assert camera.sleep == [0.01, 0.02]


def test_busy_forever_gives_up_after_the_bounded_attempts(camera: Camera, tmp_path: Path) -> None:
    camera._cam = FlakyHandle(camera._cam, "capture", [gp.GP_ERROR_CAMERA_BUSY] * 10)
    with pytest.raises(CameraBusyError, match=r"capture failed: I/O in progress \[-110\].*busy"):
        camera.capture(tmp_path)
    assert camera.sleep == [0.01, 0.02, 0.04]


def test_claim_failure_is_not_retried(camera: Camera, tmp_path: Path) -> None:
    camera._cam = FlakyHandle(camera._cam, "capture", [gp.GP_ERROR_IO_USB_CLAIM])
    with pytest.raises(CameraClaimError, match="pkill -f gvfs-gphoto2-volume-monitor"):
        camera.capture(tmp_path)
    assert camera.sleep == []


@pytest.mark.slow
def test_disconnect_reconnects_and_keeps_the_session(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    camera.set_capture_target("card")
    flaky = FlakyHandle(camera._cam, "capture", [gp.GP_ERROR_IO_USB_FIND])
    camera._cam = flaky
    staged = card.stage(b"\xff\xd8after replug\xff\xd9")
    paths = camera.capture(tmp_path / "out", "0001")
    assert [p.read_bytes() for p in paths] == [staged]
    assert camera._cam is not flaky  # a fresh libgphoto2 handle on the virtual body
    assert camera.get_config("capturetarget").value == "Memory card"


def test_reconnect_finds_the_same_body_on_a_new_port(camera: Camera) -> None:
    # Pretend the camera was on another port before it was unplugged.
    camera.info = CameraInfo(camera.info.model, "usb:002,042")
    camera.reconnect("replugged")
    assert camera.info.port == VIRTUAL_PORT
    assert camera.summary().serial == "0.1"


def test_another_body_with_another_serial_is_not_taken(camera: Camera) -> None:
    camera._serial = "2171003344"
    start = time.monotonic()
    with pytest.raises(CameraDisconnectedError, match=r"did not come back within 0\.3 s"):
        camera.reconnect("unplugged")
    assert time.monotonic() - start < 5


def test_camera_that_never_returns_is_reported_within_the_timeout(
    camera: Camera, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera._cam = FlakyHandle(camera._cam, "capture", [gp.GP_ERROR_IO])
    # The virtual body cannot be unplugged: detection is made to find nothing instead.
    monkeypatch.setattr(camera_module, "list_cameras", lambda: [])
    with pytest.raises(CameraDisconnectedError) as err:
        camera.capture(tmp_path)
    assert f"{NAME}: connection lost (capture: I/O problem)" in str(err.value)
    assert "USB cable" in str(err.value)
    assert not camera.is_open


def test_a_camera_back_but_held_by_another_program_is_said_so(
    camera: Camera, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A desktop's gvfs takes a camera the moment it reappears on USB: after a cable knock the
    body is found again, but opening it answers GP_ERROR_IO_USB_CLAIM (libgphoto2's
    ``gp_libusb1_open``). The session ended with "check the USB cable", which sent the
    photographer after a fault already mended. The virtual body cannot be claimed by another
    process: libgphoto2's open is made to answer the claim code instead."""
    camera._cam = FlakyHandle(camera._cam, "capture", [gp.GP_ERROR_IO])

    class Held:
        """libgphoto2 whose cameras answer every open with the claim code."""

        def __getattr__(self, name: str) -> Any:
            return getattr(gp, name)

        def Camera(self) -> Any:  # python-gphoto2's name
            return FlakyHandle(gp.Camera(), "init", [gp.GP_ERROR_IO_USB_CLAIM] * 1000)

    monkeypatch.setattr(camera, "_gp", Held())
    with pytest.raises(CameraDisconnectedError) as err:
        camera.capture(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{NAME}: connection lost (capture: I/O problem); the camera came")
    assert "gvfs-gphoto2" in message and "USB cable" not in message
    assert err.value.code == gp.GP_ERROR_IO_USB_CLAIM
