"""``rig resume`` of a session another process is running: refused before any device is opened.

Two runs of one folder would each find the same positions missing and shoot them twice, and a
second process opening the rail's port restarts an Arduino controller under the first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.session.folder import SessionConfig, SessionFolder
from tests import commands


@pytest.mark.slow  # runs `rig resume` as a process
def test_resume_of_a_running_session_is_a_one_line_busy_error(tmp_path: Path) -> None:
    root = tmp_path / "s"
    rig = {"kind": "hardware", "focus": "rail", "rail": "grbl:///dev/stackrig-no-such-port"}
    running = SessionFolder.create(root, ShotPlan.from_frames(0.0, 300.0, 4), SessionConfig(rig))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in root.iterdir())
    proc = commands.rig("resume", str(root), "--home", timeout=60)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    # The holder is named where the system lists who holds a lock (Linux's /proc/locks).
    who = f"process {os.getpid()}" if Path("/proc/locks").exists() else "another process"
    assert proc.stderr.splitlines() == [
        f"rig: error: {root}: {who} is running this session; let it finish or stop it "
        "(Ctrl-C), then resume"
    ]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in root.iterdir()) == before
    running.unlock()
    proc = commands.rig("resume", str(root), "--home", timeout=60)
    assert proc.returncode == 3 and "no camera found" in proc.stderr  # past the lock: the devices
