"""Resuming over frames that cannot be trusted, and over a journal broken by a hand edit.

Sessions run in-process on the simulated rig (GRBL simulator on a pty, libgphoto2's virtual
camera); ``rig resume`` runs as a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from rig.plan import ShotPlan
from rig.session.events import SessionWarning
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.journal import read_journal
from rig.session.runner import SessionRunner
from rig.session.state import FinishReason
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.sim.vcamera import use_virtual_camera
from stacker.io import read_image

SPEC = SimRigSpec(width=320, height=240, time_scale=50.0)
FRAMES = 5


@pytest.fixture()
def session(tmp_path: Path) -> Iterator[SessionFolder]:
    use_virtual_camera(tmp_path / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    folder = SessionFolder.create(tmp_path / "s", plan, SessionConfig(rig=SPEC.to_dict()))
    with SimulatedRig(SPEC) as sim:
        result = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera).run()
    assert result.reason is FinishReason.COMPLETED
    yield folder


def frame(folder: SessionFolder, index: int) -> Path:
    return folder.frames_dir / f"frame_{index:04d}.jpg"


def test_truncated_and_symlinked_frames_are_set_aside_and_shot_again(
    session: SessionFolder, tmp_path: Path
) -> None:
    f2, f3, f4 = frame(session, 2), frame(session, 3), frame(session, 4)
    # Saved again smaller by an editor, complete to its end marker: an edit, kept (it was
    # called damaged, and a tether session lost it from the stack for good).
    edited = cv2.imencode(".jpg", cv2.convertScaleAbs(read_image(f2), alpha=1.1, beta=5))[1]
    f2.write_bytes(edited.tobytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "precious.jpg"
    victim.write_bytes(f3.read_bytes())
    f3.unlink()
    f3.symlink_to(victim)  # a link where a frame should be: never followed, never kept
    # frame 4: cut short inside its image data (the virtual camera pads every file to a fixed
    # size after the JPEG's end), and journaled by an older version that recorded no sizes
    data = f4.read_bytes()
    f4.write_bytes(data[: data.rfind(b"\xff\xd9") // 2])
    lines = session.journal_path.read_text().splitlines()
    records = [json.loads(x) for x in lines]
    for r in records:
        if r.get("event") == "frame" and r["index"] == 4:
            del r["sizes"]
    session.journal_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    victim_bytes = victim.read_bytes()

    warnings: list[str] = []
    with SimulatedRig(SPEC) as sim:
        runner = SessionRunner(session, focuser=sim.focuser, camera=sim.camera)
        runner.subscribe(lambda e: isinstance(e, SessionWarning) and warnings.append(e.message))
        result = runner.run()

    assert result.reason is FinishReason.COMPLETED, result.error
    journal = read_journal(session.journal_path)
    reshot = [r["index"] for r in journal.of_kind("frame") if r.get("reshot")]
    assert reshot == [3, 4]
    assert journal.of_kind("resume")[-1]["damaged"] == [3, 4]
    assert f2.read_bytes() == edited.tobytes()
    for f in (f2, f3, f4):
        assert not f.is_symlink() and read_image(f).shape == (240, 320, 3)
    assert victim.read_bytes() == victim_bytes  # the link's target was not touched
    aside = session.root / "failed-attempts"
    assert (aside / "frame_0003.damaged.jpg").is_symlink()
    assert sorted(p.name for p in aside.iterdir()) == [
        "frame_0003.damaged.jpg", "frame_0004.damaged.jpg",
    ]  # fmt: skip
    text = "\n".join(warnings)
    assert "frame_0002" not in text
    assert "frame_0003.jpg is a symbolic link" in text
    assert "frame_0004.jpg is truncated JPEG" in text


def test_rig_resume_names_a_broken_journal_line_before_starting(session: SessionFolder) -> None:
    with session.journal_path.open("a") as fh:
        fh.write('{"event":"frame","index":"six","position":1.0,"files":[]}\n')
    lines = len(session.journal_path.read_text().splitlines())
    env = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}
    proc = subprocess.run(
        [sys.executable, "-m", "rig.cli", "resume", str(session.root)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip() == (
        f"rig: error: {session.journal_path}: line {lines}: frame record without a frame "
        "number 'index' (a whole number): 'six'; correct or delete that line (frames on disk "
        "are found by their names), then resume"
    )
