"""Resuming sessions after a crash: SIGKILL half-way, orphan frames, torn journal, lost files.

Every session runs in its own process on the simulated rig (virtual camera through libgphoto2,
GRBL simulator on a pty). The simulated scene is rendered from the rail's reported position
with position-seeded jitter and noise, so a resumed session sees the same frames as an
uninterrupted one; the stacker gets them in the same order, so the composites must agree.
Tolerance: PSNR >= 40 dB between the resumed and the uninterrupted composite (identical inputs
in identical order give identical output; the margin only absorbs floating-point differences).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.session.journal import read_journal
from tests.commands import env, rig, rig_cmd

pytestmark = pytest.mark.slow  # whole sessions in subprocesses

ARGS = ["--frames", "8", "--size", "480x360", "--time-scale", "50"]
MIN_PSNR_DB = 40.0


def records(folder: Path) -> list[dict]:
    return list(read_journal(folder / "journal.jsonl").records)  # a kill may tear the last line


def frame_records(folder: Path) -> list[dict]:
    return [r for r in records(folder) if r["event"] == "frame"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def composite(folder: Path) -> np.ndarray:
    img = cv2.imread(str(folder / "composite.tif"))
    assert img is not None, f"no composite in {folder}"
    return img


def assert_every_position_once(folder: Path, n: int = 8) -> None:
    shot = frame_records(folder)
    assert sorted(r["index"] for r in shot) == list(range(1, n + 1)), shot
    names = sorted(p.name for p in (folder / "frames").iterdir())
    assert names == [f"frame_{i:04d}.jpg" for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted session with the same plan and scene."""
    out = tmp_path_factory.mktemp("ref") / "session"
    proc = rig("demo", "--out", str(out), *ARGS, "--settle", "0.01s")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out


def test_sigkill_half_way_then_resume_matches_an_uninterrupted_session(
    tmp_path: Path, reference: Path
) -> None:
    out = tmp_path / "killed"
    # A longer settle spreads the session out so the kill lands half-way.
    proc = subprocess.Popen(
        rig_cmd("demo", "--out", str(out), *ARGS, "--settle", "0.4s"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "journal.jsonl").exists() and len(frame_records(out)) >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    done = len(frame_records(out))
    assert 4 <= done < 8, "the kill should land half-way"
    assert not (out / "composite.tif").exists() or done >= 4

    resumed = rig("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "session completed: 8/8 frames captured, 8 merged" in resumed.stdout
    assert_every_position_once(out)
    kinds = [r["event"] for r in records(out)]
    assert kinds.count("resume") == 1
    ref_positions = [r["position"] for r in frame_records(reference)]
    got = sorted(frame_records(out), key=lambda r: r["index"])
    assert [r["position"] for r in got] == pytest.approx(ref_positions)
    value = psnr(composite(out), composite(reference))
    assert value >= MIN_PSNR_DB, f"PSNR {value:.1f} dB"


def test_orphan_frame_is_adopted_a_lost_one_reshot_and_a_torn_line_ignored(
    tmp_path: Path, reference: Path
) -> None:
    out = tmp_path / "crashed"
    shutil.copytree(reference, out)
    for name in ("composite.tif", "depth.png", "depth-preview.jpg", "depth.json"):
        (out / name).unlink()
    # The crash: frames 7 and 8 were written but only frame 6's journal record made it, and the
    # append for frame 7 was cut short. Frame 3's file was lost (deleted by hand).
    kept = [r for r in records(out) if r["event"] in ("start", "frame") and r["index" if r[
        "event"] == "frame" else "event"] not in (7, 8)]  # fmt: skip
    lines = b"".join(json.dumps(r).encode() + b"\n" for r in kept)
    (out / "journal.jsonl").write_bytes(lines + b'{"event":"frame","index":7,"posi')
    (out / "frames" / "frame_0008.jpg").unlink()
    (out / "frames" / "frame_0003.jpg").unlink()
    orphan = out / "frames" / "frame_0007.jpg"
    orphan_stat = orphan.stat()
    (out / "frames" / ".frame_0008.jpg.x1y2.tmp").write_bytes(b"half a frame")

    proc = rig("resume", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "frame 7: on disk without a journal record; kept (not reshot)" in proc.stdout
    assert "frame 3: journaled but its files are gone; shooting it again" in proc.stdout
    shot = [r["index"] for r in frame_records(out)]
    # Frame 3 has its original record and the re-shot one; every other index exactly one.
    assert sorted(shot) == [1, 2, 3, 3, 4, 5, 6, 7, 8]
    assert [r["index"] for r in frame_records(out) if r.get("reshot")] == [3]
    names = sorted(p.name for p in (out / "frames").iterdir())  # the temporary is gone too
    assert names == [f"frame_{i:04d}.jpg" for i in range(1, 9)]
    after = orphan.stat()
    assert (after.st_ino, after.st_mtime_ns) == (orphan_stat.st_ino, orphan_stat.st_mtime_ns)
    new = [r for r in records(out) if r["event"] == "frame" and r.get("attempts")]
    assert sorted(r["index"] for r in new if r["time"] > kept[-1]["time"]) == [3, 8]
    adopted = [r for r in frame_records(out) if r.get("adopted")]
    assert [r["index"] for r in adopted] == [7]
    value = psnr(composite(out), composite(reference))
    assert value >= MIN_PSNR_DB, f"PSNR {value:.1f} dB"


def test_resume_of_a_finished_session_shoots_nothing(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "again"
    shutil.copytree(reference, out)
    before = len(frame_records(out))
    proc = rig("resume", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(frame_records(out)) == before
    assert "8/8 frames captured, 8 merged" in proc.stdout


def test_resume_of_a_folder_that_is_not_a_session_is_one_line(tmp_path: Path) -> None:
    proc = rig("resume", str(tmp_path))
    assert proc.returncode == 2
    assert "not a session folder" in proc.stderr and proc.stderr.count("\n") == 1
