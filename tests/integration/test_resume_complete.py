"""``rig resume`` of a session that has every frame: it says so and stacks them again, opening
no device, whichever rig shot it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.cli import app
from rig.plan import ShotPlan
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.journal import read_journal
from rig.session.runner import SessionRunner
from rig.session.state import FinishReason
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.sim.vcamera import use_virtual_camera

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
