"""The station's session list while its folder changes under it (files on disk, no server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.session.folder import SessionFolder
from rig.station.files import SessionFiles


def test_a_session_removed_while_the_list_is_read_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder removed between reading its plan and its date made the whole list (and so
    ``/api/station``) a 500: 228 of 14317 listings failed while another thread created and
    removed folders in a loop. The removal is placed right after the plan is read here."""
    plan = json.dumps(ShotPlan.from_frames(0.0, 1000.0, 3).to_dict())
    for name in ("kept", "gone"):
        (tmp_path / name / "frames").mkdir(parents=True)
        (tmp_path / name / "plan.json").write_text(plan)
    read_plan = SessionFolder.load_plan

    def then_removed(folder: SessionFolder) -> ShotPlan:
        loaded = read_plan(folder)
        if folder.root.name == "gone":
            shutil.rmtree(folder.root)
        return loaded

    monkeypatch.setattr(SessionFolder, "load_plan", then_removed)
    assert [s["id"] for s in SessionFiles(tmp_path).sessions()] == ["kept"]
