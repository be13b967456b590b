"""The rail moves to the next position while the last frame downloads (and only then).

A real session on the simulated rig: libgphoto2's virtual camera behind the Canon EOS quirk
layer, capturing to the card with each file charged a 25 MB USB 2 transfer (1 s, in
``file_get`` as on a real body; long enough for the next move on a loaded machine too), the
GRBL driver on a pseudo-terminal, the real stacker.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.runner import RunnerOptions, SessionRunner
from rig.sim.rig import SimRigSpec, SimulatedRig

TRANSFER_S = 25e6 / 25e6


@pytest.fixture(scope="module")
def sim() -> SimulatedRig:
    spec = SimRigSpec(
        width=320, height=240, camera="canon", capture_target="card", raw_mb=25, time_scale=50
    )
    with SimulatedRig(spec) as rig:
        yield rig  # type: ignore[misc]


def run(sim: SimulatedRig, root: Path, overlap: bool) -> list[dict]:
    plan = ShotPlan.from_frames(0.0, 600.0, 4, settle_s=0.05, return_to_start=False)
    config = SessionConfig(rig=sim.spec.to_dict(), checkpoint_every=0)
    folder = SessionFolder.create(root, plan, config)
    sim.focuser.move_to(0.0)
    runner = SessionRunner(
        folder,
        focuser=sim.focuser,
        camera=sim.camera,
        options=RunnerOptions(write_outputs=False, move_during_download=overlap),
    )
    result = runner.run()
    assert result.reason.value == "completed", result.error
    lines = (root / "journal.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "frame"]


def test_the_next_move_starts_while_the_last_frame_downloads(
    sim: SimulatedRig, tmp_path: Path
) -> None:
    frames = run(sim, tmp_path / "overlap", overlap=True)
    assert [f["index"] for f in frames] == [1, 2, 3, 4]
    for shot, following in itertools.pairwise(frames):
        # The move to the next position ended before this frame's download finished.
        assert following["moved_at"] < shot["captured_at"]
        assert following["captured_at"] - shot["captured_at"] >= TRANSFER_S * 0.9
    for f in frames:
        assert [Path(p).name for p in f["files"]] == [f"frame_{f['index']:04d}.jpg"]


def test_without_overlap_each_frame_is_down_before_the_rail_moves(
    sim: SimulatedRig, tmp_path: Path
) -> None:
    frames = run(sim, tmp_path / "sequential", overlap=False)
    for shot, following in itertools.pairwise(frames):
        assert following["moved_at"] > shot["captured_at"]
