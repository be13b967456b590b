"""The station's session list while its folder changes under it (files on disk, no server)."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import zipfile
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


def test_frames_dated_outside_what_a_zip_can_hold_are_still_zipped(tmp_path: Path) -> None:
    """A Raspberry Pi has no clock: booted without a network it may write its frames in 1970,
    and a zip entry cannot be dated before 1980 (nor after 2107). The whole download failed
    on the first such frame; its date is now moved to the nearest one a zip holds."""
    plan = json.dumps(ShotPlan.from_frames(0.0, 1000.0, 3).to_dict())
    frames = tmp_path / "s" / "frames"
    frames.mkdir(parents=True)
    (tmp_path / "s" / "plan.json").write_text(plan)
    when = {1: 0.0, 2: 1.7e9, 3: 7.3e9}  # 1970, 2023, 2201
    for index, mtime in when.items():
        frame = frames / f"frame_{index:04d}.jpg"
        frame.write_bytes(b"\xff\xd8" + bytes([index]) * 100)
        os.utime(frame, (mtime, mtime))
    data = b"".join(SessionFiles(tmp_path).frames_zip("s"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = {i.filename.rsplit("/", 1)[-1]: i for i in zf.infolist()}
        assert zf.read("s/frames/frame_0002.jpg") == b"\xff\xd8" + bytes([2]) * 100
    assert sorted(entries) == ["frame_0001.jpg", "frame_0002.jpg", "frame_0003.jpg"]
    assert entries["frame_0001.jpg"].date_time[0] == 1980
    assert entries["frame_0002.jpg"].date_time[:3] == time.localtime(1.7e9)[:3]
    assert entries["frame_0003.jpg"].date_time[0] == 2107
