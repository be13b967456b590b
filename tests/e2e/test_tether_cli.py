"""``rig tether``, ``rig demo --tether`` and ``rig resume`` of a tether session, as processes.

``rig demo --tether`` runs the simulated rig, whose shutter thread presses the virtual camera's
shutter through libgphoto2; ``rig tether --trigger-every`` presses it itself. Each run is a fresh
process so libgphoto2 picks its virtual camera at import.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.sim.vcamera import VirtualCameraFolder
from tests.commands import env, rig, rig_cmd

SMALL = ["--size", "320x240"]


def journal(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


def test_demo_tether_stacks_what_the_camera_shoots(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = rig("demo", "--tether", "--frames", "6", "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "session completed: 6/6 frames captured, 6 merged" in proc.stdout
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        f"frame_{i:04d}.jpg" for i in range(1, 7)
    ]
    shots = [r for r in journal(out) if r["event"] == "frame"]
    assert [(r["index"], r["units"]) for r in shots] == [(i, "frames") for i in range(1, 7)]
    depth = json.loads((out / "depth.json").read_text())
    assert all(f["position_um"] is None for f in depth["frames"])  # frame units
    assert cv2.imread(str(out / "composite.tif")) is not None
    assert json.loads((out / "session.json").read_text())["rig"]["tether"]


def test_a_stopped_tether_session_resumes_into_the_same_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = rig_cmd("demo", "--tether", "--frames", "8", "--out", str(out), *SMALL)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        frames = out / "frames"
        if frames.is_dir() and len(list(frames.glob("frame_*.jpg"))) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, output
    assert f"continue with: rig resume {out}" in output
    kept = len(list((out / "frames").glob("frame_*.jpg")))
    assert 3 <= kept < 8
    pairs = rig("demo", "--tether", "--raw-plus-jpeg", "--out", str(tmp_path / "c"))
    assert pairs.returncode == 2 and "--raw-plus-jpeg: libgphoto2's virtual body" in pairs.stderr
    assert not (tmp_path / "c").exists()  # was run with one JPEG a shot, the option ignored
    moving = rig("resume", str(out), "--rail", "grbl:///dev/ttyUSB0")  # was silently ignored
    assert moving.returncode != 0 and "Traceback" not in moving.stderr
    assert f"--rail: {out} is a tether session" in moving.stderr
    resumed = rig("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "session completed: 8/8 frames captured" in resumed.stdout
    indexes = [r["index"] for r in journal(out) if r["event"] == "frame"]
    assert indexes == list(range(1, 9))


RAW_SUFFIX = {"canon": ".cr3", "nikon": ".nef", "sony": ".arw", "fuji": ".raf"}


@pytest.mark.parametrize("body", sorted(RAW_SUFFIX))
def test_demo_tether_with_a_body_that_brackets_by_itself(tmp_path: Path, body: str) -> None:
    """``--camera`` with ``--tether``: one press and the body shoots the burst, its files
    announced as its family's libgphoto2 path does (Canon RAM transfers inside the event wait,
    Sony one file a call, Fujifilm card listings); it was refused, the tether demo knowing only
    libgphoto2's virtual body."""
    out = tmp_path / "demo"
    args = ("--tether", "--camera", body, "--raw-plus-jpeg", "--frames", "5")
    proc = rig("demo", *args, "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "brackets 5 frames by itself" in proc.stdout
    assert "session completed: 5/5 frames captured, 5 merged" in proc.stdout
    assert sorted(p.name for p in (out / "frames").iterdir()) == sorted(
        f"frame_{i:04d}{suffix}" for i in range(1, 6) for suffix in (".jpg", RAW_SUFFIX[body])
    )
    assert cv2.imread(str(out / "composite.tif")) is not None


def test_a_bracketing_body_shoots_only_the_frames_a_resume_takes(tmp_path: Path) -> None:
    """Stopped mid-burst, the session resumes with a burst of the frames still to take,
    numbered after the last one kept, each with its RAW file."""
    out = tmp_path / "demo"
    args = rig_cmd("demo", "--tether", "--camera", "nikon", "--raw-plus-jpeg", "--frames", "12",
                   "--out", str(out), *SMALL)  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(out.glob("frames/frame_*.nef"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, output
    kept = len(list((out / "frames").glob("frame_*.jpg")))
    assert 3 <= kept < 12, output
    resumed = rig("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert f"brackets {12 - kept} frames by itself" in resumed.stdout
    assert "session completed: 12/12 frames captured" in resumed.stdout
    assert [r["index"] for r in journal(out) if r["event"] == "frame"] == list(range(1, 13))
    assert sorted(p.name for p in (out / "frames").iterdir()) == sorted(
        f"frame_{i:04d}{suffix}" for i in range(1, 13) for suffix in (".jpg", ".nef")
    )


def test_rig_tether_releases_the_shutter_when_asked(tmp_path: Path) -> None:
    card = VirtualCameraFolder(tmp_path / "card", slot_bytes=64_000)
    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    card.stage_image(cv2.GaussianBlur(image, (5, 5), 1.0))
    out = tmp_path / "tether"
    run_env = {**env(), "VCAMERADIR": str(card.path)}
    args = ["tether", "--frames", "2", "--trigger-every", "0.3s", "--out", str(out)]
    proc = subprocess.run(rig_cmd(*args), capture_output=True, text=True, timeout=120, env=run_env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "releasing the shutter every 0.3 s" in proc.stdout
    assert "session completed: 2/2 frames captured" in proc.stdout
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "frame_0001.jpg",
        "frame_0002.jpg",
    ]


def test_rig_tether_that_never_gets_a_frame_says_so(tmp_path: Path) -> None:
    """It ended 'session completed: 0 frames captured' with exit 0, and no composite."""
    card = VirtualCameraFolder(tmp_path / "card", slot_bytes=32_000)
    out = tmp_path / "tether"
    run_env = {**env(), "VCAMERADIR": str(card.path)}
    args = ["tether", "--idle-timeout", "1s", "--out", str(out)]
    proc = subprocess.run(rig_cmd(*args), capture_output=True, text=True, timeout=60, env=run_env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr + proc.stdout
    assert "no frame came from the camera in 1 s" in proc.stdout
    assert journal(out)[-1]["reason"] == "fault"


def test_bad_tether_options_are_one_line_errors(tmp_path: Path) -> None:
    for args, words in (
        (["--idle-timeout", "-1s"], "--idle-timeout"),
        (["--trigger-every", "soon"], "--trigger-every"),
        (["--frames", "0"], "--frames 0"),
    ):
        proc = rig("tether", "--out", str(tmp_path / "x"), *args)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
