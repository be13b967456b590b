"""Camera sessions against libgphoto2's own virtual camera (real ptp2 driver, real vusb I/O).

tests/conftest.py sets VCAMERADIR before gphoto2 is first imported; each test then gives the
virtual body its own card folder through rig.sim.vcamera.
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rig.camera import (
    Camera,
    CameraError,
    CameraNotFoundError,
    CameraUnsupportedError,
    ConfigKeyError,
    ConfigValueError,
    RetryPolicy,
    list_cameras,
)
from rig.sim.vcamera import (
    SHOTS_PER_CONNECTION,
    VIRTUAL_MODEL,
    VIRTUAL_PORT,
    VirtualCameraError,
    VirtualCameraFolder,
    pad_jpeg,
    placeholder_jpeg,
)
from stacker.io import truncation
from tests.capture_target import ROUND_TRIP, changed

FAST = RetryPolicy(first_delay_s=0.001, max_delay_s=0.01, reconnect_timeout_s=1.0)


def noise_jpeg(seed: int, size: int = 48) -> bytes:
    """A JPEG no other seed produces, so a mixed-up download cannot pass."""
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return bytes(encoded.tobytes())


@pytest.fixture
def camera(card: VirtualCameraFolder) -> Iterator[Camera]:
    with Camera.open(retry=FAST) as cam:
        yield cam


# --------------------------------------------------------------------------- detection


def test_lists_the_virtual_camera(card: VirtualCameraFolder) -> None:
    assert [(c.model, c.port) for c in list_cameras()] == [(VIRTUAL_MODEL, VIRTUAL_PORT)]


def test_opens_by_model_part_port_or_as_the_only_one(card: VirtualCameraFolder) -> None:
    choices: list[tuple[str | None, str | None]] = [
        (None, None),
        ("d750", None),
        (None, VIRTUAL_PORT),
        (VIRTUAL_MODEL, VIRTUAL_PORT),
    ]
    for model, port in choices:
        with Camera.open(model, port) as cam:
            assert cam.info.port == VIRTUAL_PORT
        assert not cam.is_open


@pytest.mark.slow
def test_unknown_model_or_port_names_what_is_connected(card: VirtualCameraFolder) -> None:
    with pytest.raises(CameraNotFoundError, match=r"model 'EOS R5'.*Nikon DSC D750 on usb:001"):
        Camera.open(model="EOS R5")
    with pytest.raises(CameraNotFoundError, match=r"port usb:002,003"):
        Camera.open(port="usb:002,003")


def test_summary(camera: Camera) -> None:
    info = camera.summary()
    assert (info.manufacturer, info.model, info.serial, info.battery) == ("GP", "VC", "0.1", "50%")
    assert info.port == VIRTUAL_PORT
    assert len(info.storage) == 1
    store = info.storage[0]
    assert store.description == "GPVC Storage"
    assert store.capacity_bytes and store.free_bytes and store.free_bytes < store.capacity_bytes
    assert ("Serial", "0.1") in info.rows()


# ------------------------------------------------------------------------ configuration


def test_config_items_describe_every_setting(camera: Camera) -> None:
    items = {item.key: item for item in camera.config_items()}
    target = items["capturetarget"]
    assert (target.kind, target.choices) == ("radio", ("Internal RAM", "Memory card"))
    assert target.section == "settings"
    assert (
        items["f-number"].choices[0] == "f/2.8"
        and items["f-number"].value in items["f-number"].choices
    )
    assert items["serialnumber"].readonly and items["serialnumber"].value == "0.1"
    assert items["fastfs"].kind == "toggle" and items["fastfs"].value in (0, 1)
    assert items["datetime"].kind == "date" and isinstance(items["datetime"].value, int)
    assert all(item.kind not in ("window", "section") for item in items.values())


def test_get_and_set_config_round_trip(camera: Camera) -> None:
    assert camera.set_config("f-number", "f/8").value == "f/8"
    assert camera.get_config("f-number").value == "f/8"
    assert camera.set_config("exposurecompensation", "-1.5").value == "-1.5"
    # Case is forgiven when only one choice matches.
    assert camera.set_config("capturetarget", "memory CARD").value == "Memory card"
    camera.set_config("capturetarget", "Internal RAM")
    assert camera.set_config("fastfs", "off").value == 0
    assert camera.set_config("fastfs", True).value == 1


def test_bad_values_are_refused_naming_key_and_choices(camera: Camera) -> None:
    before = camera.get_config("f-number").value
    with pytest.raises(ConfigValueError) as err:
        camera.set_config("f-number", "f/99")
    message = str(err.value)
    assert "'f-number'" in message and "'f/99'" in message
    assert "f/2.8, f/3.5" in message and "f/22" in message
    assert camera.get_config("f-number").value == before
    with pytest.raises(ConfigValueError, match=r"'fastfs'.*on or off"):
        camera.set_config("fastfs", "sometimes")
    with pytest.raises(ConfigValueError, match=r"'serialnumber' is read-only"):
        camera.set_config("serialnumber", "123")


def test_unknown_key_is_refused_with_suggestions(camera: Camera) -> None:
    with pytest.raises(ConfigKeyError, match=r"no setting 'fnumber'; did you mean f-number"):
        camera.get_config("fnumber")
    with pytest.raises(ConfigKeyError, match=r"no setting 'capturetargt'.*capturetarget"):
        camera.set_config("capturetargt", "Memory card")


def test_session_settings_are_restored_on_close(card: VirtualCameraFolder, tmp_path: Path) -> None:
    """In a process of its own, with libgphoto2's settings file of its own: libgphoto2 keeps
    the capture target in settings global to the process and in that file, which every process
    rewrites whole (tests/conftest.py)."""
    home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    done = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **home},
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert not changed(line), line


def test_libgphoto2_settings_stay_in_the_test_process_home(card: VirtualCameraFolder) -> None:
    """Test processes side by side must not share libgphoto2's settings file, nor write the
    user's: each has a home of its own (tests/conftest.py), where the file lands."""
    assert Path(os.environ["HOME"]) != Path(pwd.getpwuid(os.getuid()).pw_dir)
    with Camera.open(capture_target="card") as cam:  # a fresh file means RAM: this writes it
        assert cam.get_config("capturetarget").value == "Memory card"
    places = (  # up to libgphoto2 2.5.33, and from 2.5.34
        Path(os.environ["HOME"], ".gphoto", "settings"),
        Path(os.environ["XDG_CONFIG_HOME"], "gphoto", "settings"),
    )
    assert any(f.is_file() and "ptp2=capturetarget=" in f.read_text() for f in places)


# ------------------------------------------------------------------------------ capture


@pytest.mark.slow
def test_many_captures_have_unique_ordered_names_and_staged_contents(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    staged = []
    written: list[Path] = []
    for i in range(12):
        staged.append(card.stage(noise_jpeg(i)))
        paths = camera.capture(out)
        assert len(paths) == 1
        written += paths
    names = [p.name for p in written]
    assert names == [f"frame_{i:04d}.jpg" for i in range(1, 13)]
    assert names == sorted(names)
    assert [p.read_bytes() for p in written] == staged
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary files left behind


@pytest.mark.slow
def test_caller_stem_and_collisions_never_overwrite(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    first = card.stage(noise_jpeg(1))
    assert [p.name for p in camera.capture(out, "0007")] == ["0007.jpg"]
    second = card.stage(noise_jpeg(2))
    again = camera.capture(out, "0007")
    assert [p.name for p in again] == ["0007_2.jpg"]
    assert (out / "0007.jpg").read_bytes() == first and again[0].read_bytes() == second
    # The renamed shot still sorts between its neighbours.
    assert sorted(["0008.jpg", "0007_2.jpg", "0007.jpg"]) == ["0007.jpg", "0007_2.jpg", "0008.jpg"]
    # Automatic stems continue after the highest frame number already there.
    (out / "frame_0041.jpg").write_bytes(b"earlier shot")
    assert [p.name for p in camera.capture(out)] == ["frame_0042.jpg"]


@pytest.mark.slow
def test_progress_reports_start_and_end_of_each_file(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    calls: list[tuple[str, int, int]] = []
    card.stage(noise_jpeg(3))
    camera.capture(tmp_path, "shot", on_progress=lambda *a: calls.append(a))
    assert calls[0] == ("shot.jpg", 0, card.slot_bytes)
    assert calls[-1] == ("shot.jpg", card.slot_bytes, card.slot_bytes)
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)


@pytest.mark.slow
def test_files_are_deleted_from_the_card_unless_kept(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    def files_on_card(cam: Camera, folder: str) -> int:
        # Read straight from the libgphoto2 handle: the session has no card browser.
        return int(cam._call("list", lambda c: c.folder_list_files(folder)).count())

    with Camera.open(capture_target="card", keep_on_card=True) as cam:
        path = cam.capture(tmp_path / "a")[0]
        folder = "/store_00010001/DCIM/100GPHOT"
        assert files_on_card(cam, folder) == 1 and path.exists()
    with Camera.open(capture_target="card", keep_on_card=False) as cam:
        cam.capture(tmp_path / "b")
        assert files_on_card(cam, folder) == 0


def test_preview_is_refused_clearly_on_a_body_without_live_view(camera: Camera) -> None:
    with pytest.raises(CameraUnsupportedError) as err:
        camera.capture_preview()
    assert str(err.value) == (
        "Nikon DSC D750 on usb:001,001 cannot give a live-view preview frame: "
        "not supported by this camera"
    )


def test_focus_drive_on_a_body_without_lens_drive_points_at_rails(camera: Camera) -> None:
    with pytest.raises(CameraUnsupportedError, match=r"cannot drive its lens focus.*focus rail"):
        camera.focus_drive(1)


def test_closed_camera_refuses_work(card: VirtualCameraFolder, tmp_path: Path) -> None:
    cam = Camera.open()
    cam.close()
    cam.close()  # idempotent
    with pytest.raises(CameraError, match="is closed"):
        cam.capture(tmp_path)


# ------------------------------------------------- the virtual body, as the harness says


@pytest.mark.slow
def test_virtual_body_reads_bytes_at_download_and_the_tree_at_open(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    a = card.stage(noise_jpeg(10))
    b = card.stage(noise_jpeg(11))  # replaced after open, before the shot: b is served
    assert camera.capture(tmp_path, "x")[0].read_bytes() == b != a
    late = card.path / "late.jpg"
    late.write_bytes(pad_jpeg(noise_jpeg(12), card.slot_bytes))
    root = "/store_00010001"

    def names() -> set[str]:
        listing = camera._call("list", lambda c: c.folder_list_files(root))
        return {listing.get_name(i) for i in range(listing.count())}

    assert "late.jpg" not in names()  # read when the camera was opened
    camera.reconnect()
    assert "late.jpg" in names()
    late.unlink()


@pytest.mark.slow
def test_store_fills_after_26_shots_until_reconnect(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    for i in range(SHOTS_PER_CONNECTION):
        card.stage(noise_jpeg(100 + i))
        camera.capture(tmp_path)
    with pytest.raises(CameraError):
        camera.capture(tmp_path)
    camera.reconnect()
    staged = card.stage(noise_jpeg(999))
    assert camera.capture(tmp_path, "after")[0].read_bytes() == staged


def test_harness_slot_padding_and_refusals(tmp_path: Path) -> None:
    jpeg = placeholder_jpeg()
    padded = pad_jpeg(jpeg, len(jpeg) + 100)
    assert padded.startswith(jpeg) and len(padded) == len(jpeg) + 100
    decoded = cv2.imdecode(np.frombuffer(padded, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (48, 64, 3)
    # Stored as the RAW half of a RAW+JPEG shot, a slot must not look like a copy under way.
    as_raw = tmp_path / "capt0001.nef"
    as_raw.write_bytes(pad_jpeg(jpeg, len(jpeg) + 200_000))
    assert truncation(as_raw) is None
    with pytest.raises(VirtualCameraError, match="larger slot_bytes"):
        pad_jpeg(jpeg, len(jpeg) - 1)
    with pytest.raises(VirtualCameraError, match="only serves JPEG"):
        pad_jpeg(b"GIF89a", 1000)
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    (crowded / "other.JPG").write_bytes(jpeg)
    with pytest.raises(VirtualCameraError, match=r"other\.JPG.*arbitrary JPEG"):
        VirtualCameraFolder(crowded)
    folder = VirtualCameraFolder(tmp_path / "ok", slot_bytes=5000)
    assert folder.slot_path.stat().st_size == 5000
    image = np.zeros((20, 30, 3), np.uint8)
    assert folder.stage_image(image) == folder.staged()


def test_use_virtual_camera_refuses_after_a_real_driver_import(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VCAMERADIR", "IOLIBS", "CAMLIBS")}
    script = textwrap.dedent(
        f"""
        import gphoto2
        from rig.sim.vcamera import VirtualCameraError, use_virtual_camera
        try:
            use_virtual_camera({str(tmp_path)!r})
        except VirtualCameraError as exc:
            print("refused:", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "refused: gphoto2 was already imported without VCAMERADIR" in out.stdout


# ------------------------------------------------------------------- multi-file shots


def _add_file_on_the_card(handle: Any) -> None:
    """Send the virtual body's own test opcode (0x9999, 0): it adds a file to the card and
    announces it with a PTP ObjectAdded event, as the second file of a RAW+JPEG shot is."""
    widget = handle.get_single_config("opcode")
    widget.set_value("0x9999,0x0,0x1")
    handle.set_single_config("opcode", widget)


class TwoFileShots:
    """The real libgphoto2 handle; each capture is followed by a second file on the card."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def capture(self, *args: Any) -> Any:
        first = self.real.capture(*args)
        _add_file_on_the_card(self.real)
        return first


@pytest.mark.slow
def test_every_file_of_a_shot_is_downloaded_under_one_stem(
    camera: Camera, card: VirtualCameraFolder, tmp_path: Path
) -> None:
    camera._cam = TwoFileShots(camera._cam)
    staged = card.stage(noise_jpeg(5))
    paths = camera.capture(tmp_path / "out")
    assert [p.name for p in paths] == ["frame_0001.jpg", "frame_0001-2.jpg"]
    assert all(p.read_bytes() == staged for p in paths)
    assert camera.capture(tmp_path / "out")[0].name == "frame_0002.jpg"


@pytest.mark.slow
def test_a_file_announced_before_the_shot_is_not_taken_for_it(
    camera: Camera, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _add_file_on_the_card(camera._cam)
    with caplog.at_level(logging.WARNING, logger="rig.camera.camera"):
        paths = camera.capture(tmp_path / "out")
    assert [p.name for p in paths] == ["frame_0001.jpg"]
    assert any("appeared before this shot" in r.message for r in caplog.records)
