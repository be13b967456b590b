"""Tethering bodies that bracket by themselves, announced as each family's libgphoto2 path does.

The bursts come from :mod:`rig.sim.bracketing` layered over libgphoto2's virtual camera (the
layer answers for the burst's files; everything else goes through libgphoto2).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.camera import Camera, RetryPolicy
from rig.camera.tether import Tether
from rig.errors import RigError
from rig.session.engine import EngineHooks
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.tether import TetherEngine, TetherSettings, tether_plan
from rig.sim.bracketing import FAMILIES, BracketingBody
from rig.sim.vcamera import VirtualCameraFolder

FAST = RetryPolicy(first_delay_s=0.005, max_delay_s=0.05, reconnect_timeout_s=1.0)


def frame_jpeg(n: int) -> bytes:
    """A JPEG no other frame number gives, so a mixed-up or repeated download cannot pass."""
    image = np.random.default_rng(n).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return bytes(encoded.tobytes())


def tether_burst(body: BracketingBody, dest: Path, frames: int) -> list[list[Path]]:
    """Press the body's shutter once and download every shot of the burst."""
    shots: list[list[Path]] = []
    with Camera.open(retry=FAST, wrap_handle=body.wrap) as camera:
        tether = Tether(camera, files_per_shot=2 if body.raw_plus_jpeg else 1, quiet_s=0.5)
        body.press()
        while len(shots) < frames:
            shot = tether.next_shot(5.0)
            assert shot is not None, f"only {len(shots)} of {frames} shots came"
            shots.append(tether.download(shot, dest, f"frame_{len(shots) + 1:04d}"))
        body.wait()
        assert tether.next_shot(0.3) is None, "a file was announced twice"
    return shots


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("raw_plus_jpeg", [False, True], ids=["jpeg", "raw+jpeg"])
def test_every_frame_of_a_burst_arrives_once_in_order(
    card: VirtualCameraFolder, tmp_path: Path, family: str, raw_plus_jpeg: bool
) -> None:
    body = BracketingBody(family, frame_jpeg, frames=6, fps=20, raw_plus_jpeg=raw_plus_jpeg)
    shots = tether_burst(body, tmp_path / "frames", 6)
    for n, files in enumerate(shots, 1):
        assert [p.suffix != ".jpg" for p in files] == ([True, False] if raw_plus_jpeg else [False])
        assert all(p.read_bytes() == frame_jpeg(n) for p in files), f"frame {n} mixed up"
        assert all(p.stem == f"frame_{n:04d}" for p in files)
    assert body.log.shots == 6


@pytest.mark.slow
def test_nikon_busy_answers_are_waited_out(card: VirtualCameraFolder, tmp_path: Path) -> None:
    """A Nikon writing a frame answers Device Busy; the download retries until it is done."""
    body = BracketingBody("nikon", frame_jpeg, frames=5, fps=10, write_s=0.15)
    body.link_bytes_per_s = 0
    shots = tether_burst(body, tmp_path / "frames", 5)
    assert len(shots) == 5
    assert body.log.busy_answers > 0


@pytest.mark.slow
def test_announcements_held_until_the_burst_ends(card: VirtualCameraFolder, tmp_path: Path) -> None:
    body = BracketingBody("olympus", frame_jpeg, frames=8, fps=20, hold_events=True)
    shots = tether_burst(body, tmp_path / "frames", 8)
    assert [p.read_bytes() for (p,) in shots] == [frame_jpeg(n) for n in range(1, 9)]


def test_canon_ram_names_pair_across_the_per_file_counter(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    body = BracketingBody("canon", frame_jpeg, frames=3, fps=20, raw_plus_jpeg=True)
    tether_burst(body, tmp_path / "frames", 3)
    assert body.log.files == [
        f"capt{i:04d}.{e}" for i in range(6) for e in ["cr3", "jpg"][i % 2 :][:1]
    ]


def test_bursts_over_the_vendor_quirk_layer(card: VirtualCameraFolder, tmp_path: Path) -> None:
    """The burst layer sits on the vendor quirk layer (settings as a Nikon answers them)."""
    from rig.sim.camera_quirks import CameraQuirks

    quirks = CameraQuirks("nikon", raw_plus_jpeg=True)
    body = BracketingBody("nikon", frame_jpeg, frames=4, fps=20, raw_plus_jpeg=True)
    dest = tmp_path / "frames"
    with Camera.open(retry=FAST, wrap_handle=lambda real: body.wrap(quirks.wrap(real))) as camera:
        assert camera.vendor == "nikon" and camera.files_per_shot() == 2
        tether = Tether(camera, quiet_s=0.5)
        body.press()
        for n in range(1, 5):
            shot = tether.next_shot(5.0)
            assert shot is not None
            files = tether.download(shot, dest, f"frame_{n:04d}")
            assert [p.name for p in files] == [f"frame_{n:04d}.nef", f"frame_{n:04d}.jpg"]
    assert sorted(p.name for p in dest.iterdir())[-1] == "frame_0004.nef"


def test_a_video_clip_between_bursts_takes_no_frame_number(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """A clip recorded between two brackets became frame 3 (``frame_0003.mov``), counted as a
    frame and, unreadable, reshot into that number on resume."""
    body = BracketingBody("nikon", frame_jpeg, frames=2, fps=20)
    folder = SessionFolder.create(tmp_path / "s", tether_plan(None), SessionConfig(rig={}))
    warnings: list[str] = []
    hooks = EngineHooks(threading.Event(), lambda *_: None, warnings.append)
    with Camera.open(retry=FAST, wrap_handle=body.wrap) as camera:
        tether = Tether(camera, files_per_shot=1, quiet_s=0.3)
        engine = TetherEngine(folder, tether, TetherSettings(idle_timeout_s=5.0), hooks=hooks)
        body.press()
        body.wait()
        clip = body.record_clip()
        body.press()
        shots = [engine.expose(engine.approach(i)) for i in range(1, 5)]
    assert [p.name for shot in shots for p in shot.files] == [
        f"frame_{i:04d}.jpg" for i in range(1, 5)
    ]
    assert clip == "DSC_0003.MOV"
    assert warnings == [f"{clip}: not a still image (RAW, JPEG, TIFF, HEIF); left on the camera"]


def test_a_switch_to_raw_plus_jpeg_between_brackets_keeps_one_frame_per_shot(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """The count of files per shot was read once: after a switch to RAW+JPEG on the body, the
    RAW and the JPEG of each shot became two frames."""
    from rig.sim.camera_quirks import CameraQuirks

    quirks = CameraQuirks("nikon", raw_plus_jpeg=False)
    body = BracketingBody("nikon", frame_jpeg, frames=2, fps=20)
    dest = tmp_path / "frames"
    with Camera.open(retry=FAST, wrap_handle=lambda real: body.wrap(quirks.wrap(real))) as camera:
        tether = Tether(camera, quiet_s=5.0)
        body.press()
        names = []
        for n in (1, 2):
            shot = tether.next_shot(5.0)
            assert shot is not None
            names += [p.name for p in tether.download(shot, dest, f"frame_{n:04d}")]
        widget = quirks.widgets[quirks.profile.format_key]
        widget.value = quirks.profile.formats[0]  # the photographer turns the dial
        body.raw_plus_jpeg = True
        assert tether.next_shot(1.5) is None  # nothing shot meanwhile
        body.press()
        for n in (3, 4):
            shot = tether.next_shot(5.0)  # the quiet window (5 s) never closes a shot here
            assert shot is not None
            names += [p.name for p in tether.download(shot, dest, f"frame_{n:04d}")]
    assert names == [
        "frame_0001.jpg", "frame_0002.jpg",
        "frame_0003.nef", "frame_0003.jpg", "frame_0004.nef", "frame_0004.jpg",
    ]  # fmt: skip


def test_a_stopped_photographer_switches_the_body_off() -> None:
    """The tether demo's body rendered frames (in OpenCV) after its session had ended: a C++
    thread pool busy while the interpreter exited ended `rig demo --tether --camera canon` in
    std::terminate (exit 134) after a double Ctrl-C, about one run in two at 24 frames."""
    from rig.sim.shutter import BracketPress

    rendered: list[int] = []

    def source(n: int) -> bytes:
        rendered.append(n)
        return frame_jpeg(n)

    body = BracketingBody("canon", source, frames=200, fps=100)
    photographer = BracketPress(body)
    photographer.start()
    deadline = time.monotonic() + 10
    while len(rendered) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    photographer.stop()
    after_stop = len(rendered)
    time.sleep(0.1)
    assert 3 <= len(rendered) == after_stop < 200


def test_releases_without_a_file_end_the_session_at_the_idle_timeout(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """With --trigger-every, every release restarted the idle time: a body that took the
    releases but sent no file (movie mode, no card) was never idle, and the session fired the
    shutter until it was stopped by hand."""
    body = BracketingBody("nikon", frame_jpeg, frames=0)
    folder = SessionFolder.create(tmp_path / "s", tether_plan(None), SessionConfig(rig={}))
    stop = threading.Event()
    hooks = EngineHooks(stop, lambda *_: None, lambda _: None)
    settings = TetherSettings(idle_timeout_s=1.0, trigger_every_s=0.25)
    with Camera.open(retry=FAST, wrap_handle=body.wrap) as camera:
        engine = TetherEngine(folder, Tether(camera, files_per_shot=1), settings, hooks=hooks)
        guard = threading.Timer(10.0, stop.set)  # without the fix: stopped here, not idle
        guard.start()
        started = time.monotonic()
        try:
            with pytest.raises(RigError, match=r"no frame came from the camera in 1 s"):
                engine.approach(1)
        finally:
            guard.cancel()
    assert time.monotonic() - started < 5.0


def test_a_canon_release_from_the_computer_keeps_the_file_still_to_be_taken(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """libgphoto2's trigger on an EOS frees every event fetched but not yet returned
    (``camera_trigger_canon_eos_capture``): with --trigger-every, a body slower than the
    interval lost the previous frame's file at each release, and nothing said so."""
    body = BracketingBody("canon", frame_jpeg, frames=1, fps=20, write_s=0.05)
    with Camera.open(retry=FAST, wrap_handle=body.wrap) as camera:
        tether = Tether(camera, files_per_shot=1, quiet_s=0.3)
        tether.trigger()
        time.sleep(0.3)  # its file is ready on the body, not yet taken
        tether.trigger()
        shots = [tether.next_shot(5.0) for _ in range(2)]
    assert body.log.discarded == []
    assert [s is not None and len(s.files) for s in shots] == [1, 1]
    assert body.log.shots == 2
