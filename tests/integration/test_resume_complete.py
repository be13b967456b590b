"""``rig resume`` of a session that has every frame: it says so and stacks them again, opening
no device, whichever rig shot it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rig.cli import app
from rig.plan import ShotPlan
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.journal import read_journal
from rig.session.runner import SessionRunner
from rig.session.state import FinishReason
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.sim.vcamera import VirtualCameraFolder, use_virtual_camera

SPEC = SimRigSpec(width=160, height=120, time_scale=50.0)


class NoRig:
    """Stands in for the simulated rig where a resume must not make one."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the resume of a complete session made a simulated rig")


def test_a_complete_demo_session_is_restacked_without_a_rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo killed while it wrote its outputs has every frame: its resume went on to make a
    simulated rig (a GRBL simulator, the virtual camera) to shoot nothing, and said only that it
    was resuming, where a hardware session is told every frame is there."""
    use_virtual_camera(tmp_path / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, 3, settle_s=0.0)
    folder = SessionFolder.create(tmp_path / "s", plan, SessionConfig(rig=SPEC.to_dict()))
    with SimulatedRig(SPEC) as sim:
        result = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera).run()
    assert result.reason is FinishReason.COMPLETED
    (folder.root / "composite.tif").unlink()  # as a kill during the final write can leave it
    monkeypatch.setattr("rig.sim.rig.SimulatedRig", NoRig)

    proc = CliRunner().invoke(app, ["resume", str(folder.root)])

    assert proc.exit_code == 0, proc.output
    assert "every frame is there, stacking them again" in proc.output
    assert "session completed: 3/3 frames captured, 3 merged" in proc.output
    assert (folder.root / "composite.tif").is_file()
    frames = read_journal(folder.journal_path).of_kind("frame")
    assert sorted(r["index"] for r in frames) == [1, 2, 3]


def no_camera(*args: object, **kwargs: object) -> None:
    raise AssertionError("the resume of a complete tether session opened the camera")


@pytest.mark.slow  # a tether session on the virtual camera: two frames, 1.5 s each
@pytest.mark.parametrize("lost", [False, True])
def test_a_tether_session_with_nothing_left_to_take_is_restacked_without_the_camera(
    tmp_path: Path, card: VirtualCameraFolder, monkeypatch: pytest.MonkeyPatch, lost: bool
) -> None:
    """A tether session killed while it wrote its outputs (or whose last frame was lost, which
    a tether session leaves out) has nothing left to take: its resume opened the camera all
    the same, so it failed with the camera unplugged, where a rail session is restacked."""
    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    card.stage_image(cv2.GaussianBlur(image, (5, 5), 1.0))
    root = tmp_path / "tether"
    args = ["tether", "--frames", "3", "--trigger-every", "0.2s", "--out", str(root)]
    proc = CliRunner().invoke(app, args)
    assert proc.exit_code == 0, proc.output
    (root / "composite.tif").unlink()  # as a kill during the final write can leave it
    if lost:
        (root / "frames" / "frame_0003.jpg").unlink()
    monkeypatch.setattr("rig.cli.tether.open_tether", no_camera)

    proc = CliRunner().invoke(app, ["resume", str(root)])

    assert proc.exit_code == 0, proc.output
    assert "stacking them again" in proc.output
    merged = 2 if lost else 3
    assert f"session completed: {merged}/3 frames captured, {merged} merged" in proc.output
    assert (root / "composite.tif").is_file()


def test_a_complete_tether_demo_is_restacked_without_a_rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_virtual_camera(tmp_path / "vcam")
    root = tmp_path / "demo"
    args = ["demo", "--tether", "--frames", "3", "--size", "160x120", "--out", str(root)]
    proc = CliRunner().invoke(app, args)
    assert proc.exit_code == 0, proc.output
    monkeypatch.setattr("rig.sim.rig.SimulatedRig", NoRig)

    proc = CliRunner().invoke(app, ["resume", str(root)])

    assert proc.exit_code == 0, proc.output
    assert "every frame is there, stacking them again" in proc.output
    assert "session completed: 3/3 frames captured, 3 merged" in proc.output
