"""The live preview of capture sessions on the simulated rig (virtual camera, GRBL simulator)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rig.plan import ShotPlan
from rig.preview import SessionPreview
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.runner import RunnerOptions, SessionRunner
from rig.sim.rig import SimRigSpec, SimulatedRig
from stacker.preview import PreviewHub

SPEC = SimRigSpec(width=320, height=240, time_scale=50)


def test_a_session_fills_the_hub_with_plan_numbered_rows(tmp_path: Path) -> None:
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, 4, settle_s=0.01)
    config = SessionConfig(rig=SPEC.to_dict(), checkpoint_every=0)
    hub = PreviewHub()
    with SimulatedRig(SPEC) as sim:
        folder = SessionFolder.create(tmp_path / "s1", plan, config)
        runner = SessionRunner(
            folder,
            focuser=sim.focuser,
            camera=sim.camera,  # type: ignore[arg-type]
            options=RunnerOptions(retry_delay_s=0.1),
        )
        SessionPreview(hub).attach(runner)
        seen_states = set()
        hub.subscribe(lambda _v: seen_states.add(hub.progress.state))
        result = runner.run()
    assert result.reason.value == "completed"
    snap = hub.snapshot()
    p = snap.progress
    assert (p.state, p.captured, p.total, p.merged, p.title) == ("finished", 4, 4, 4, "s1")
    assert {"preparing", "running", "finishing"} <= seen_states
    assert [f["number"] for f in snap.frames] == [1, 2, 3, 4]
    assert [f["name"] for f in snap.frames] == [f"frame_{i:04d}.jpg" for i in range(1, 5)]
    assert [f["position_um"] for f in snap.frames] == pytest.approx([0, 1000, 2000, 3000])
    assert all(f["merged"] and f["score"] > 0.5 for f in snap.frames)
    assert set(snap.images) == {"composite", "last", "depth"}
    # The run joined its stacking thread: crops now come straight from the hub.
    crop = hub.crops.request(0.5, 0.5, 100, timeout=1)
    assert (crop.frame_width, crop.frame_height) == (320, 240)


def test_rig_demo_preview_serves_the_session_while_it_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}  # its own virtual camera
    args = ["demo", "--out", str(tmp_path / "demo"), "--frames", "4", "--size", "320x240"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", *args, "--preview", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    totals, composites = set(), 0
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"Live preview: (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + proc.stderr.read()
        url = match[1]
        while proc.poll() is None:
            try:
                state = httpx.get(url + "api/state", timeout=10).json()
            except httpx.TimeoutException:
                continue  # a loaded machine: ask again while the session runs
            except httpx.TransportError:
                break  # the session ended and took its server with it
            totals.add(state["progress"]["total"])
            composites = max(composites, state["images"].get("composite", {}).get("version", 0))
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "session completed: 4/4 frames captured" in out
    # None: the page is up (its port bound) before the session folder and the runner exist
    assert totals in ({4}, {None, 4}) and composites > 0
