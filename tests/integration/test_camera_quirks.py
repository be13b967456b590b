"""Canon, Nikon, Sony and Fuji behaviour on libgphoto2's virtual camera, with the quirk layer.

Every shot is taken and downloaded through the real libgphoto2 (ptp2 driver, vusb I/O); the
quirk layer (rig.sim.camera_quirks, a test double named as such) answers the calls around it as
libgphoto2's ptp2 camlib does for each vendor, citing the function it follows. Each test here
failed against the camera code before it learnt the behaviour.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rig.camera.camera as camera_module
from rig.camera import Camera, CameraError, CameraUnsupportedError, FocusEndStopError, RetryPolicy
from rig.camera.config import WIDGET_TEXT
from rig.camera.errors import GP_ERROR_IO_USB_FIND, CaptureLostError
from rig.camera.shot import check_saves_raw, files_per_shot, vendor_of
from rig.errors import RigError
from rig.rails.lens import LensFocuser
from rig.session.engine import retryable
from rig.sim.camera_quirks import (
    CANON,
    EOS_RELEASE_2_5_34,
    EOS_RELEASE_BEFORE_2_5_34,
    CameraQuirks,
    QuirkyHandle,
    SimWidget,
)
from rig.sim.vcamera import VirtualCameraFolder

FAST = RetryPolicy(first_delay_s=0.001, max_delay_s=0.01, reconnect_timeout_s=1.0)
SLOT = 3 << 20
"""Larger than one 1 MiB piece, so downloads try to read in pieces."""


@pytest.fixture
def card(tmp_path: Path) -> Iterator[VirtualCameraFolder]:
    folder = VirtualCameraFolder(tmp_path / "card", slot_bytes=SLOT)
    folder.activate()
    yield folder


def open_body(quirks: CameraQuirks, **kwargs: object) -> Camera:
    return Camera.open(retry=FAST, wrap_handle=quirks.wrap, **kwargs)  # type: ignore[arg-type]


def body_files(camera: Camera) -> list[tuple[str, str]]:
    handle = camera._cam
    assert isinstance(handle, QuirkyHandle)
    return handle.files_on_body()


# ------------------------------------------------------------------ 1. where RAW files land


@pytest.mark.slow
@pytest.mark.parametrize("vendor", ["canon", "sony", "nikon"])
def test_a_ram_capture_that_cannot_be_read_in_pieces_is_downloaded_whole(
    card: VirtualCameraFolder, tmp_path: Path, vendor: str
) -> None:
    quirks = CameraQuirks(vendor, usb_bytes_per_s=0)
    with open_body(quirks, capture_target="ram") as cam:
        for i in range(3):
            staged = card.stage(bytes([0xFF, 0xD8, i]))
            paths = cam.capture(tmp_path / "out")
            assert [p.read_bytes() for p in paths] == [staged]
        assert body_files(cam) == []


def test_card_captures_are_read_in_pieces_with_progress_and_removed(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    quirks = CameraQuirks("canon", usb_bytes_per_s=0)
    calls: list[tuple[str, int, int]] = []
    with open_body(quirks, capture_target="card") as cam:
        staged = card.stage(b"\xff\xd8card")
        paths = cam.capture(tmp_path / "out", "f", on_progress=lambda *a: calls.append(a))
        assert paths[0].read_bytes() == staged and paths[0].name == "f.jpg"
        assert body_files(cam) == []
    assert [c[1] for c in calls] == [0, 1 << 20, 2 << 20, SLOT]


@pytest.mark.parametrize(
    ("vendor", "value"),
    [("canon", "Memory card"), ("nikon", "Memory card"), ("sony", "sdram")],
)
def test_auto_capture_target_follows_the_vendor(
    card: VirtualCameraFolder, vendor: str, value: str
) -> None:
    with open_body(CameraQuirks(vendor), capture_target="auto") as cam:
        assert cam.vendor == vendor
        assert cam.get_config("capturetarget").value == value


def test_a_tether_session_sends_a_canon_s_frames_to_its_card(
    card: VirtualCameraFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left at libgphoto2's default a Canon's bracket went to the computer alone: a stop, a
    dropped link or a full disk lost its frames not yet downloaded."""
    from rig.cli.tether import open_tether

    quirks = CameraQuirks("canon", usb_bytes_per_s=0)
    real_open = Camera.open
    monkeypatch.setattr(
        Camera, "open", lambda *a, **kw: real_open(*a, wrap_handle=quirks.wrap, **kw)
    )
    with open_tether(None, None):
        assert quirks.widgets["capturetarget"].value == "Memory card"
    assert quirks.widgets["capturetarget"].value == "Internal RAM"  # put back
    # A Sony keeps its own: at card+sdram its card copy stays.
    quirks = CameraQuirks("sony", usb_bytes_per_s=0)
    quirks.widgets["capturetarget"].value = "card+sdram"
    with open_tether(None, None):
        assert quirks.widgets["capturetarget"].value == "card+sdram"


def test_both_keeps_a_copy_on_the_card(card: VirtualCameraFolder, tmp_path: Path) -> None:
    with open_body(CameraQuirks("sony", usb_bytes_per_s=0), capture_target="both") as cam:
        assert cam.get_config("capturetarget").value == "card+sdram"
        cam.capture(tmp_path)
        assert body_files(cam) == [("/store_00010001/DCIM/100MSDCF", "DSC00001.JPG")]
    with open_body(CameraQuirks("canon", usb_bytes_per_s=0), capture_target="both") as cam:
        assert cam.get_config("capturetarget").value == "Memory card"
        cam.capture(tmp_path)
        assert body_files(cam) == [("/store_00020001/DCIM/100CANON", "IMG_0001.JPG")]


def test_the_virtual_body_is_recognised_as_the_nikon_it_emulates(
    card: VirtualCameraFolder,
) -> None:
    with Camera.open(retry=FAST) as cam:
        assert cam.vendor == "nikon"
    assert vendor_of("GP", "VC", "Canon EOS 5D") == "canon"
    assert vendor_of("OM Digital Solutions") == "olympus"


# ------------------------------------------------------------------------------ 4. RAW+JPEG


def test_files_per_shot_from_the_image_format() -> None:
    """Canon's labels as libgphoto2 2.5.32 and later write them (``RAW + L``, each half named
    by its size) and as earlier releases did (``RAW + Large Fine JPEG``); Nikon's, Sony's and
    Fuji's; a Panasonic's, which libgphoto2 shows as bare numbers, say nothing."""
    for value in (
        "RAW + L", "cRAW + cL", "mRAW + S1", "RAW + M2", "RAW + Large Fine JPEG",
        "cRAW + Small JPEG", "NEF+Fine", "RAW+JPEG", "RAW+HEIF", "RAW + JPEG Fine",
    ):  # fmt: skip
        assert files_per_shot(value) == 2, value
    for value in ("L", "cM", "S1", "Large Fine JPEG", "NEF (Raw)", "RAW", "cRAW", "JPEG Fine"):
        assert files_per_shot(value) == 1, value
    for value in ("3", " 12 "):
        assert files_per_shot(value) is None, value


@pytest.mark.slow
@pytest.mark.parametrize("target", ["ram", "card"])
def test_a_late_jpeg_is_waited_for_and_kept_with_its_raw(
    card: VirtualCameraFolder, tmp_path: Path, target: str
) -> None:
    quirks = CameraQuirks("canon", raw_plus_jpeg=True, second_file_delay_s=0.8, usb_bytes_per_s=0)
    with open_body(quirks, capture_target=target) as cam:
        staged = card.stage(b"\xff\xd8pair")
        paths = cam.capture(tmp_path / "out", "frame_0001")
        assert [p.name for p in paths] == ["frame_0001.cr2", "frame_0001.jpg"]
        assert all(p.read_bytes() == staged for p in paths)
        assert body_files(cam) == []


@pytest.mark.slow
def test_a_straggler_is_collected_with_the_next_shot_never_lost(
    card: VirtualCameraFolder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(camera_module, "SHOT_FILES_LIMIT_S", 0.2)
    quirks = CameraQuirks("nikon", raw_plus_jpeg=True, second_file_delay_s=0.6, usb_bytes_per_s=0)
    out = tmp_path / "out"
    with open_body(quirks, capture_target="card") as cam, caplog.at_level(logging.WARNING):
        first = cam.capture(out, "frame_0001")
        assert [p.name for p in first] == ["frame_0001.nef"]
        assert any("1 of 2 files arrived" in r.message for r in caplog.records)
        quirks.sleep(0.7)
        second = cam.capture(out, "frame_0002")
        assert [p.name for p in second] == ["frame_0002.nef"]
        assert (out / "frame_0001.jpg").exists()
        quirks.sleep(0.7)
        cam.capture(out, "frame_0003")
        assert (out / "frame_0002.jpg").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "frame_0001.jpg",
        "frame_0001.nef",
        "frame_0002.jpg",
        "frame_0002.nef",
        "frame_0003.jpg",  # collected when the camera closed
        "frame_0003.nef",
    ]
    assert quirks.state.shots == 3 and not quirks.store  # nothing left on the body


@pytest.mark.slow
@pytest.mark.parametrize(
    ("vendor", "target"), [("canon", "card"), ("nikon", "ram"), ("sony", "ram")]
)
def test_a_late_file_arriving_during_the_next_shot_stays_with_its_own_shot(
    card: VirtualCameraFolder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vendor: str,
    target: str,
) -> None:
    """A late JPEG announced after the next release was taken as that shot's first (or
    second) file: every RAW+JPEG pair from then on held the JPEG of the shot before."""
    monkeypatch.setattr(camera_module, "SHOT_FILES_LIMIT_S", 0.3)
    quirks = CameraQuirks(vendor, raw_plus_jpeg=True, second_file_delay_s=0.5, usb_bytes_per_s=0)
    out = tmp_path / "out"
    with open_body(quirks, capture_target=target) as cam:
        for shot in range(1, 5):
            card.stage(bytes([0xFF, 0xD8, shot]))
            cam.capture(out, f"frame_{shot:04d}")
    exposures = {p.name: p.read_bytes()[2] for p in out.iterdir()}
    assert len(exposures) == 8 and not quirks.store
    assert all(exposures[name] == int(name[6:10]) for name in exposures), exposures


def test_a_format_changed_while_the_camera_is_open_applies_to_the_next_shot(
    card: VirtualCameraFolder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A station keeps its camera open for days, and its page (or the body's own dial) may
    change the image format meanwhile. The files a shot makes were read from the format once,
    at the first shot: after a switch to RAW+JPEG every JPEG was lost (RAM) or saved as a
    stray ``camera_*.jpg``; after a switch back, every shot waited for a RAW never coming."""
    monkeypatch.setattr(camera_module, "SHOT_FILES_LIMIT_S", 3.0)
    quirks = CameraQuirks("canon", raw_plus_jpeg=False, second_file_delay_s=0.2, usb_bytes_per_s=0)
    out = tmp_path / "out"
    with open_body(quirks, capture_target="ram") as cam, caplog.at_level(logging.WARNING):
        assert [p.name for p in cam.capture(out, "frame_0001")] == ["frame_0001.jpg"]
        cam.set_config("imageformat", "RAW + L")
        for stem in ("frame_0002", "frame_0003"):
            assert [p.name for p in cam.capture(out, stem)] == [f"{stem}.cr2", f"{stem}.jpg"]
        cam.set_config("imageformat", "L")
        assert [p.name for p in cam.capture(out, "frame_0004")] == ["frame_0004.jpg"]
        assert body_files(cam) == []
    assert not [r.message for r in caplog.records if "files arrived" in r.message]
    assert sorted(p.name for p in out.iterdir()) == [
        "frame_0001.jpg",
        "frame_0002.cr2",
        "frame_0002.jpg",
        "frame_0003.cr2",
        "frame_0003.jpg",
        "frame_0004.jpg",
    ]


@pytest.mark.parametrize("vendor", ["nikon", "sony"])
def test_a_ram_capture_lost_with_the_link_is_said_and_shot_again(
    card: VirtualCameraFolder, tmp_path: Path, vendor: str
) -> None:
    """A RAM capture lives in libgphoto2's memory of its connection: after the link dropped
    its download answered "File not found [-108]", a fault that named neither the frame nor
    what to do. (The simulated body kept such captures across a reconnection.)"""
    quirks = CameraQuirks(vendor, usb_bytes_per_s=0)
    with open_body(quirks, capture_target="ram") as cam:
        card.stage(b"\xff\xd8lost")
        pending = cam.release(tmp_path / "out", "frame_0002")
        cam.reconnect("USB cable knocked")
        with pytest.raises(CaptureLostError, match=r"frame_0002: .*shoot this frame again") as e:
            pending.download()
        assert retryable(e.value)  # a session shoots it again at once
        card.stage(b"\xff\xd8again")
        assert [p.name for p in cam.capture(tmp_path / "out", "frame_0002")] == ["frame_0002.jpg"]


def test_a_sony_sends_the_computer_only_what_its_pc_save_setting_says(
    card: VirtualCameraFolder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At RAW+JPEG a Sony sends the computer only the JPEG (or only the RAW) when its
    "RAW+J PC Save Image" (``pcsaveimgformat``) says so: every shot waited for a second file
    that never came, and a DNG stack was let start with no RAW to come."""
    quirks = CameraQuirks("sony", raw_plus_jpeg=True, usb_bytes_per_s=0)
    quirks.widgets["pcsaveimgformat"].value = "JPEG Only"
    out = tmp_path / "out"
    with open_body(quirks, capture_target="ram") as cam, caplog.at_level(logging.WARNING):
        with pytest.raises(RigError, match="JPEG Only"):
            check_saves_raw(cam, ".dng")
        start = time.monotonic()
        assert [p.name for p in cam.capture(out, "frame_0001")] == ["frame_0001.jpg"]
        assert time.monotonic() - start < camera_module.SHOT_FILES_LIMIT_S / 2
        cam.set_config("pcsaveimgformat", "RAW Only")
        assert [p.name for p in cam.capture(out, "frame_0002")] == ["frame_0002.arw"]
        cam.set_config("pcsaveimgformat", "RAW & JPEG")
        names = [p.name for p in cam.capture(out, "frame_0003")]
        assert names == ["frame_0003.arw", "frame_0003.jpg"]
    assert not [r.message for r in caplog.records if "files arrived" in r.message]


# --------------------------------------------------------- 2. Canon lens stacking without AF


@pytest.mark.parametrize("vendor", ["sony", "fuji"])
def test_a_rail_stack_is_not_refocused_at_every_release(
    card: VirtualCameraFolder, tmp_path: Path, vendor: str
) -> None:
    """With the body in an AF mode, libgphoto2's capture focused a Sony or Fuji before every
    frame of a rail stack: every frame sharp on the same plane, nothing to stack."""
    quirks = CameraQuirks(vendor, usb_bytes_per_s=0)
    quirks.state.lens = 100.0  # where the photographer focused; the rail moves the camera
    with open_body(quirks) as cam:
        cam.hold_focus()  # as a rail session does
        for shot in range(2):
            card.stage(bytes([0xFF, 0xD8, shot]))
            cam.capture(tmp_path / "out")
    assert quirks.state.exposures == [100.0, 100.0]
    assert quirks.widgets["focusmode"].value == quirks.profile.focus_modes[0]  # put back


def test_a_rail_rig_opens_its_camera_holding_the_lens_focus(
    card: VirtualCameraFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rig shoot --rail` and the station open the camera through hardware_rig, which holds
    its focus; the lens-motor rig does not (its strategy sets the body up itself)."""
    from rig.devices import hardware_rig
    from rig.sim.grbl import GrblSimulator
    from rig.spec import RigSpec

    quirks = CameraQuirks("sony", usb_bytes_per_s=0)
    quirks.state.lens = 100.0
    real_open = Camera.open

    def open_quirky(**options: Any) -> Any:  # the quirk layer around libgphoto2's handle
        return real_open(retry=FAST, wrap_handle=quirks.wrap, **options)

    monkeypatch.setattr(Camera, "open", open_quirky)
    with GrblSimulator(time_scale=50) as grbl:
        rig = RigSpec(kind="hardware", focus="rail", rail=grbl.url)
        with hardware_rig(rig, accept_position=True) as (_, camera):
            card.stage(b"\xff\xd8rail")
            camera.capture(tmp_path / "out")
    assert quirks.state.exposures == [100.0]


@pytest.mark.parametrize("choices", [EOS_RELEASE_2_5_34, EOS_RELEASE_BEFORE_2_5_34])
def test_canon_lens_stacking_releases_without_autofocus(
    card: VirtualCameraFolder, tmp_path: Path, choices: tuple[str, ...]
) -> None:
    """Before libgphoto2 2.5.34 the release choices were twelve in another order: the indices
    of 2.5.34's "Press Full MF" and "Release" were "Release Full" and "Press 2", a press with AF
    never released, so the lens refocused at every frame."""
    quirks = CameraQuirks("canon", usb_bytes_per_s=0, eos_release_choices=choices)
    with open_body(quirks, capture_target="card") as cam:
        lens = LensFocuser(cam, settle_s=0)
        for _ in range(3):
            lens.move_by(2)  # Far 1 twice: 2 drive units
            cam.capture(tmp_path / "out")
        assert quirks.state.exposures == [2.0, 4.0, 6.0]
        quirks.state.af_fails = True  # AF could not lock: a half-press would fail the shot
        assert len(cam.capture(tmp_path / "out")) == 1


def test_a_panasonic_s_live_view_is_switched_off_on_close(card: VirtualCameraFolder) -> None:
    """A Panasonic's viewfinder always reads 2 (its state unknown to libgphoto2), and writing
    the 2 back on close switched live view on (``_put_Panasonic_ViewFinder``: ``if (val)``)."""
    panasonic = dataclasses.replace(
        CANON,
        vendor="panasonic",
        manufacturer="Panasonic",
        model="DC-G9",
        lens="panasonic-radio",
        viewfinder_unknown=True,
        af_on_release=False,
    )
    quirks = CameraQuirks(panasonic, usb_bytes_per_s=0)
    with open_body(quirks) as cam:
        LensFocuser(cam, settle_s=0).move_by(2)
        assert quirks.state.live_view and quirks.state.lens == 2.0
    assert not quirks.state.live_view


# --------------------------------------------------------------------------- 3. Nikon -113


def test_nikon_step_too_small_is_not_taken_for_the_end_stop(card: VirtualCameraFolder) -> None:
    quirks = CameraQuirks("nikon")
    quirks.state.nikon_min_amount = 3
    with open_body(quirks) as cam:
        lens = LensFocuser(cam, settle_s=0)
        with pytest.raises(CameraError, match="step too small") as err:
            lens.move_by(1)
        assert not isinstance(err.value, FocusEndStopError)
        lens.move_by(0)
    quirks = CameraQuirks("nikon")
    quirks.state.lens_travel = 10
    with open_body(quirks) as cam:
        lens = LensFocuser(cam, settle_s=0)
        lens.move_by(8)
        with pytest.raises(FocusEndStopError, match="far end stop after 0 of 4"):
            lens.move_by(4)
        assert quirks.state.lens == 10  # the probe went back to the end of travel


@pytest.mark.slow
def test_a_nikon_drive_that_outlasts_libgphoto2_s_wait_is_not_sent_again(
    card: VirtualCameraFolder,
) -> None:
    """After a drive libgphoto2 waits about a second for the body and then answers busy while
    the lens still runs (``_put_Nikon_MFDrive``, ``nikon_wait_busy``): retried like any busy
    answer, the drive was taken again, and the lens went two or three times as far. The
    default back-off is used: its retries outlast the drive, so a resent drive would be taken."""
    quirks = CameraQuirks("nikon")
    quirks.state.lens_travel = 10_000
    with Camera.open(retry=RetryPolicy(), wrap_handle=quirks.wrap) as cam:
        lens = LensFocuser(cam, size=100, settle_s=0)
        lens.move_by(40)  # 4000 units: 2 s at the simulated lens's speed
        assert quirks.state.lens == 4000.0
        assert lens.position == 40
        lens.move_by(-5)  # the body is waited for, not the drive resent
        assert quirks.state.lens == 3500.0


def test_a_nikon_drive_refused_while_the_lens_still_runs_is_sent_again(
    card: VirtualCameraFolder,
) -> None:
    """Reading ``manualfocusdrive`` asks a Nikon nothing (``_get_Nikon_MFDrive``), so it cannot
    tell that an earlier drive still runs; the next drive is then answered busy at once and not
    taken. It was counted as made: the lens stayed, and every later frame was off by it."""
    quirks = CameraQuirks("nikon")
    quirks.state.lens_travel = 10_000
    with open_body(quirks) as cam:
        lens = LensFocuser(cam, size=100, settle_s=0)
        lens.move_by(30)  # 3000 units: 1.5 s, libgphoto2 answers busy after about 1 s
        handle = cam._cam
        assert isinstance(handle, QuirkyHandle)
        assert time.monotonic() < quirks.state.lens_moving_until
        handle.get_single_config("manualfocusdrive")  # no busy answer while the lens runs
        for _ in range(3):
            lens.move_by(1)
        assert lens.position == 33 and quirks.state.lens == 3300.0


def test_a_nikon_that_ended_live_view_by_itself_is_told_to_start_it_again(
    card: VirtualCameraFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drive was answered 'not in live view' until the stack failed: only the restart after
    a capture was waited for, and live view, switched on once per session, never again."""
    monkeypatch.setattr("rig.camera.focus.LIVE_VIEW_WAIT_S", 0.3)
    quirks = CameraQuirks("nikon")
    with open_body(quirks) as cam:
        lens = LensFocuser(cam, settle_s=0)
        lens.move_by(3)
        quirks.state.live_view = False  # the body ended it
        lens.move_by(3)
        assert quirks.state.lens == 6.0 and quirks.state.live_view


def test_a_drive_cut_by_a_dropped_link_is_made_in_the_live_view_started_again(
    card: VirtualCameraFolder, caplog: pytest.LogCaptureFixture
) -> None:
    """Live view ends with the PTP session, so the reconnection a dropped link brings finds it
    off; the drive retried on the new connection needs the session's settings sent again, or
    it is refused and waits for live view that is not coming back by itself."""
    quirks = CameraQuirks("nikon")
    with open_body(quirks) as cam, caplog.at_level(logging.WARNING):
        lens = LensFocuser(cam, settle_s=0)
        lens.move_by(3)
        handle = cam._cam
        assert isinstance(handle, QuirkyHandle)

        def dropped(key: str, widget: Any) -> None:
            del handle.set_single_config  # the class's again: no cycle keeps the handle alive
            raise handle._error(GP_ERROR_IO_USB_FIND)

        handle.set_single_config = dropped  # type: ignore[method-assign]
        lens.move_by(3)
        assert cam._cam is not handle
        assert quirks.state.lens == 6.0 and quirks.state.live_view
    assert "live view had ended" not in caplog.text


def test_a_drive_cut_by_a_link_that_does_not_come_back_counts_what_it_made(
    card: VirtualCameraFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four of ten Canon steps were made when the cable came out for good: the focuser still
    said the drive's start, so the fault's journal said the lens stood there, and a resume
    with --accept-position counted every frame four steps off. The step cut off with the link
    may have been taken, so where focus stands is not known to the step either."""
    quirks = CameraQuirks("canon")
    with open_body(quirks) as cam:
        lens = LensFocuser(cam, settle_s=0)
        lens.accept_position()
        lens.move_by(3)
        drives = 0
        real = QuirkyHandle.set_single_config

        def unplugged_after_four(self: QuirkyHandle, key: str, widget: Any) -> None:
            nonlocal drives
            if key == "manualfocusdrive":
                drives += 1
                if drives > 4:
                    raise self._error(GP_ERROR_IO_USB_FIND)
            real(self, key, widget)

        monkeypatch.setattr(QuirkyHandle, "set_single_config", unplugged_after_four)
        monkeypatch.setattr(camera_module, "list_cameras", lambda: [])  # not plugged in again
        with pytest.raises(CameraError, match="connection lost"):
            lens.move_by(10)
        assert quirks.state.lens == 7.0 and lens.position == 7
        assert lens.capabilities.unreferenced is not None


@pytest.mark.slow
def test_nikon_drive_waits_for_live_view_after_a_capture(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    quirks = CameraQuirks("nikon", usb_bytes_per_s=0, live_view_restart_s=0.5)
    with open_body(quirks, capture_target="card") as cam:
        lens = LensFocuser(cam, settle_s=0)
        for _ in range(3):
            lens.move_by(5)
            cam.capture(tmp_path / "out")
        assert quirks.state.exposures == [5.0, 10.0, 15.0]


# ----------------------------------------------------------------- 5. Sony: speed, not steps


def test_sony_lens_drive_is_refused_unless_approximate_is_accepted(
    card: VirtualCameraFolder, caplog: pytest.LogCaptureFixture
) -> None:
    quirks = CameraQuirks("sony")
    with open_body(quirks) as cam:
        with pytest.raises(CameraUnsupportedError, match=r"speed.*approximate=1"):
            LensFocuser.from_url("camera://", camera=cam)
        with caplog.at_level(logging.WARNING):
            lens = LensFocuser.from_url("camera://?approximate=1&settle=0", camera=cam)
        assert any("approximate" in r.message for r in caplog.records)
        lens.move_by(3)
        lens.move_by(3)
        # Six "steps" at speed 1 moved six units; at speed 2 they would move 18, not 12.
        assert quirks.state.lens == 6.0


@pytest.mark.parametrize(
    ("vendor", "url", "target", "step", "af_mode"),
    [
        ("sony", "camera://?approximate=1&settle=0", "ram", 2, "Automatic"),
        ("fuji", "camera://?settle=0", "auto", 100, "Single-Servo AF"),
    ],
)
def test_sony_and_fuji_lens_stacking_captures_without_refocusing(
    card: VirtualCameraFolder, tmp_path: Path, vendor, url, target, step, af_mode
) -> None:
    """libgphoto2 half-presses a Sony before each capture and, unless the body's focus mode is
    Manual, lets it focus (``camera_sony_capture``); it sends a Fuji its focus action first
    (``camera_fuji_capture``). In an AF mode every frame was shot where AF put the lens, and a
    frame where AF could not lock failed ("perhaps no focus", "Perhaps no auto-focus?")."""
    quirks = CameraQuirks(vendor, usb_bytes_per_s=0)
    with open_body(quirks, capture_target=target) as cam:
        assert cam.vendor == vendor
        lens = LensFocuser.from_url(url, camera=cam)
        for _ in range(3):
            lens.move_by(step)
            cam.capture(tmp_path / "out")
        assert quirks.state.exposures == [step, 2.0 * step, 3.0 * step]
        quirks.state.af_fails = True
        assert len(cam.capture(tmp_path / "out")) == 1
        if vendor == "fuji":
            assert body_files(cam) == []  # no capture target: on the card, deleted once downloaded
    assert quirks.widgets["focusmode"].value == af_mode  # put back on close


@pytest.mark.parametrize(
    ("vendor", "url", "target"),
    [("sony", "camera://?approximate=1&settle=0", "ram"), ("fuji", "camera://?settle=0", "auto")],
)
def test_a_lens_stack_s_first_frame_is_shot_where_focus_stands(
    card: VirtualCameraFolder, tmp_path: Path, vendor: str, url: str, target: str
) -> None:
    """The first frame is at the session's start: no drive before it. The body was set up for
    driving (manual focus) only at the first drive, so a Sony or Fuji in an AF mode focused at
    that release and the stack was counted from wherever AF put the lens."""
    quirks = CameraQuirks(vendor, usb_bytes_per_s=0)
    quirks.state.lens = 100.0  # where the photographer focused by hand
    with open_body(quirks, capture_target=target) as cam:
        lens = LensFocuser.from_url(url, camera=cam)
        # Opened only (`rig rail status camera://`): the body is left as it was.
        assert quirks.widgets["focusmode"].value == quirks.profile.focus_modes[0]
        lens.move_to(lens.position)
        card.stage(b"\xff\xd8first")
        cam.capture(tmp_path / "out")
    assert quirks.state.exposures == [100.0]


def test_a_fuji_refocused_at_the_release_stops_the_stack(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """A Fuji whose focus mode selector is not at M cannot be set to Manual from here, and
    every release focuses first (``camera_fuji_capture``). Each move then started from where
    AF put the lens: the whole stack was shot on AF's plane, its frames labelled 10 to 13
    steps. The body tells where its lens is, so the focuser sees it at the next move; focus
    moved by hand with no frame shot since is only taken as the new position."""
    quirks = CameraQuirks("fuji", usb_bytes_per_s=0)
    quirks.state.lens = 100.0
    quirks.state.focus_mode_locked = True  # the body's S/C/M selector at S
    with open_body(quirks) as cam:
        lens = LensFocuser.from_url("camera://?settle=0&size=10", camera=cam)
        lens.move_to(10)
        quirks.state.lens = 120.0  # turned by hand
        lens.move_to(13)
        assert quirks.state.lens == 130.0 and lens.position == 13
        cam.capture(tmp_path / "out")
        with pytest.raises(RigError, match=r"focus moved by itself from 13 to 123\.4 steps"):
            lens.move_to(14)
        assert quirks.state.exposures == [quirks.state.af_position]
        assert lens.position == pytest.approx(123.4)  # where focus stands, not the plan's 14


def test_a_fuji_focused_by_hand_before_a_test_shot_is_not_said_to_refocus(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """Focus turned by hand at a station, a test shot, then a session: its first move was
    refused, "focus moved by itself ... while frames were shot", with the body at M and the
    test shot taken where focus stood. Moved before the release, focus is taken where it is."""
    quirks = CameraQuirks("fuji", usb_bytes_per_s=0)
    quirks.state.lens = 100.0
    with open_body(quirks) as cam:
        lens = LensFocuser.from_url("camera://?settle=0&size=10", camera=cam)
        lens.move_to(12)  # a jog
        quirks.state.lens = 150.0  # turned by hand
        cam.capture(tmp_path / "out")  # a test shot
        assert quirks.state.exposures == [150.0]
        lens.move_to(16)
        assert quirks.state.lens == 160.0 and lens.position == 16


def test_a_canon_release_list_of_an_unknown_layout_is_said(
    card: VirtualCameraFolder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A libgphoto2 with another eosremoterelease list fell back to its own release, which
    focuses first, without a word."""
    quirks = CameraQuirks(
        "canon", usb_bytes_per_s=0, eos_release_choices=(*EOS_RELEASE_2_5_34, "Press 4")
    )
    with open_body(quirks, capture_target="card") as cam, caplog.at_level(logging.WARNING):
        for shot in range(2):
            card.stage(bytes([0xFF, 0xD8, shot]))
            cam.capture(tmp_path / "out")
    said = [r.getMessage() for r in caplog.records if "eosremoterelease" in r.getMessage()]
    assert len(said) == 1 and "9 choices" in said[0] and "focuses first" in said[0]


def test_a_focus_mode_set_by_a_switch_on_the_body_is_left_with_a_warning(
    card: VirtualCameraFolder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the focus mode follows a switch, libgphoto2 shows it read-only, or (Sony) takes the
    new value and keeps the old: the session must still start, and say to turn the switch to
    M."""
    for locked_by in ("read-only", "answered as done"):
        caplog.clear()
        quirks = CameraQuirks("sony", usb_bytes_per_s=0)
        if locked_by == "read-only":
            quirks.widgets["focusmode"].readonly = True
        else:  # a Sony whose lens switch is at AF (_put_Sony_FocusMode returns GP_OK)
            quirks.state.focus_mode_locked = True
        with open_body(quirks, capture_target="ram") as cam, caplog.at_level(logging.WARNING):
            lens = LensFocuser.from_url("camera://?approximate=1&settle=0", camera=cam)
            lens.move_by(2)
            assert len(cam.capture(tmp_path / "out")) == 1
        said = [r.getMessage() for r in caplog.records if "focus mode" in r.getMessage()]
        assert said, locked_by
        assert (
            "focus mode is 'Automatic'" in said[0] and "switch on the body or lens to M" in said[0]
        )


# ------------------------------------------------------------------------- 6. shutter shake


@pytest.mark.parametrize(
    ("vendor", "key", "value"),
    [
        ("canon", "mirrorlock", "1"),
        ("nikon", "exposuredelaymode", "On"),
        ("sony", "shuttertype", "Electronic"),
    ],
)
def test_vibration_remedy_per_vendor_is_set_and_restored(
    card: VirtualCameraFolder, vendor: str, key: str, value: str
) -> None:
    quirks = CameraQuirks(vendor)
    before = quirks.widgets[key].value
    with open_body(quirks) as cam:
        assert key in (cam.reduce_vibration() or "")
        assert cam.get_config(key).value == value
    assert quirks.widgets[key].value == before


@pytest.mark.parametrize("live_view", [False, True])
def test_a_canon_with_mirror_lock_up_is_pressed_again_only_when_the_mirror_rose(
    card: VirtualCameraFolder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    live_view: bool,
) -> None:
    """With mirror lock-up set (--anti-vibration) and live view off, a Canon's first press
    only raises its mirror: every frame waited 40 s for a file, then was shot again. In live
    view the mirror is already up, and a second press would be a second exposure."""
    monkeypatch.setattr(camera_module, "MIRROR_SETTLE_S", 0.3)
    quirks = CameraQuirks("canon", usb_bytes_per_s=0)
    quirks.widgets["shutterspeed"] = SimWidget("shutterspeed", WIDGET_TEXT, "1/125")
    quirks.state.live_view = live_view
    with open_body(quirks) as cam:
        cam.reduce_vibration()
        start = time.monotonic()
        for shot in range(1, 3):
            card.stage(bytes([0xFF, 0xD8, shot]))
            paths = cam.capture(tmp_path / "out", f"frame_{shot:04d}")
            assert [p.read_bytes()[2] for p in paths] == [shot]
        assert time.monotonic() - start < 5.0
    assert quirks.state.shots == 2 and not quirks.state.mirror_up


def test_no_vibration_remedy_on_the_virtual_body(card: VirtualCameraFolder) -> None:
    with Camera.open(retry=FAST) as cam:
        assert cam.reduce_vibration() is None


def test_a_dng_tether_session_is_refused_while_the_camera_saves_no_raw(
    card: VirtualCameraFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rig tether --format dng` with a body set to JPEG downloaded the whole burst, then
    failed at the composite: it is refused before the session is made, as `rig shoot` is."""
    from typer.testing import CliRunner

    from rig.cli import app
    from rig.errors import RigError
    from rig.sim.camera_quirks import CameraQuirks

    quirks, opened = CameraQuirks("nikon", raw_plus_jpeg=False), Camera.open
    monkeypatch.setattr(  # the virtual camera, as a Nikon body set to JPEG Fine
        Camera, "open", staticmethod(lambda *a, **k: opened(*a, **k, wrap_handle=quirks.wrap))
    )
    out = tmp_path / "burst"
    args = ["tether", "--format", "dng", "--frames", "2", "--idle-timeout", "1s", "--out", out]
    proc = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(proc.exception, RigError), proc.output  # one line, status 2, from `rig`
    assert str(proc.exception).startswith("--format dng stacks RAW files, and the camera saves")
    assert not out.exists()


@pytest.mark.parametrize(("raw_plus_jpeg", "refused"), [(False, True), (True, False)])
def test_a_dng_session_is_refused_while_the_camera_saves_no_raw(
    card: VirtualCameraFolder, raw_plus_jpeg: bool, refused: bool
) -> None:
    """`rig shoot --format dng` with a body set to JPEG shot every frame, then failed at the
    composite, and `rig resume` failed the same way: it is now refused before anything moves."""
    from rig.camera.shot import check_saves_raw
    from rig.errors import RigError
    from rig.sim.camera_quirks import CameraQuirks

    quirks = CameraQuirks("nikon", raw_plus_jpeg=raw_plus_jpeg)
    with Camera.open(retry=FAST, wrap_handle=quirks.wrap) as camera:
        check_saves_raw(camera, ".tif")  # any format but DNG takes what the camera saves
        if refused:
            with pytest.raises(RigError, match=r"--format dng stacks RAW files, and the camera"):
                check_saves_raw(camera, ".dng")
        else:
            check_saves_raw(camera, ".dng")


def test_a_dng_session_is_let_start_when_the_format_reads_as_a_number() -> None:
    """libgphoto2 shows a Panasonic's image formats as the property's raw numbers
    (``_get_Panasonic_ImageFormat``): ``"3"`` says nothing of RAW, and refusing it left no
    setting the photographer could choose to get past the check."""
    from rig.camera.shot import check_saves_raw
    from rig.errors import RigError

    class Body:
        def __init__(self, value: str) -> None:
            self.value = value

        def image_format(self) -> str:
            return self.value

    check_saves_raw(Body("3"), ".dng")
    with pytest.raises(RigError, match=r"the camera saves 'L'"):
        check_saves_raw(Body("L"), ".dng")


def test_a_long_exposure_is_waited_out_with_its_dark_frame() -> None:
    """A Canon released without AF waited 40 s for its file whatever the shutter speed: at 30 s
    with long-exposure noise reduction (30 s more) every frame failed as "no file arrived",
    and its file landed later as a stray. libgphoto2 itself waits 90 s for an EOS capture."""
    from rig.camera.camera import RELEASE_FILE_TIMEOUT_S, release_timeout_s

    assert release_timeout_s("30") >= 90
    assert release_timeout_s("1/125") == pytest.approx(RELEASE_FILE_TIMEOUT_S, abs=0.1)
    assert release_timeout_s("bulb") == pytest.approx(RELEASE_FILE_TIMEOUT_S + 2)
