"""``rig shoot`` on the StackShot and WeMacro simulators with libgphoto2's virtual camera.

The rails speak their binary protocols on real pseudo-terminals run by this test process; the
``rig`` subprocess knows only their URLs. Both rails count from where they stand (no homing),
so the plan is written relative to that place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig.session.journal import read_journal
from rig.sim.ptyserial import PtyDevice
from rig.sim.stackshot import StackShotSimulator
from rig.sim.wemacro import WeMacroSimulator


@pytest.mark.parametrize("kind", [StackShotSimulator, WeMacroSimulator])
def test_shoot_steps_a_commercial_rail(
    tmp_path: Path, vcam: Path, kind: type[StackShotSimulator | WeMacroSimulator]
) -> None:
    out = tmp_path / "s"
    device: PtyDevice
    with kind(time_scale=50) as device:
        start_mm = device.carriage.position_mm
        proc = subprocess.run(
            [
                sys.executable, "-m", "rig.cli", "shoot", "--rail", device.url, "--from", "0mm",
                "--to", "0.6mm", "--step", "200um", "--settle", "0s", "--out", str(out),
                "--accept-position",  # neither rail can home: here is the reference
            ],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "VCAMERADIR": str(vcam)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "session completed: 4/4 frames captured" in proc.stdout
        positions = [f["position"] for f in read_journal(out / "journal.jsonl").of_kind("frame")]
        assert positions == [0.0, 200.0, 400.0, 600.0]
        ends = [round(end - start_mm, 3) for _, end in device.carriage.log]
        assert ends[-4:] == [0.2, 0.4, 0.6, 0.0]  # every frame, then back to the start


def test_an_interrupted_stackshot_session_says_how_to_resume_it(tmp_path: Path, vcam: Path) -> None:
    """The hint after an interruption was a plain `rig resume`, which a StackShot (no position
    of its own) then refused for want of --accept-position."""
    out = tmp_path / "s"
    env = {**os.environ, "VCAMERADIR": str(vcam)}
    with StackShotSimulator(time_scale=50) as device:
        shoot = subprocess.Popen(
            [
                sys.executable, "-m", "rig.cli", "shoot", "--rail", device.url, "--from", "0mm",
                "--to", "1mm", "--step", "100um", "--settle", "0.3s", "--out", str(out),
                "--accept-position",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        journal = out / "journal.jsonl"
        deadline = time.monotonic() + 60
        while not (journal.exists() and '"frame"' in journal.read_text()):
            assert time.monotonic() < deadline and shoot.poll() is None, "no frame was shot"
            time.sleep(0.05)
        shoot.send_signal(signal.SIGINT)
        stdout, stderr = shoot.communicate(timeout=60)
        assert shoot.returncode == 130, stderr + stdout
        hint = f"continue with: rig resume {out} (with --accept-position if nothing has moved"
        assert hint in stdout
        resume = subprocess.run(
            [sys.executable, "-m", "rig.cli", "resume", str(out), "--accept-position"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert resume.returncode == 0, resume.stderr + resume.stdout
        assert "session completed: 11/11 frames captured" in resume.stdout
