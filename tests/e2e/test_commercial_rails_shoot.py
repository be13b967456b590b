"""``rig shoot`` on the StackShot and WeMacro simulators with libgphoto2's virtual camera.

The rails speak their binary protocols on real pseudo-terminals run by this test process; the
``rig`` subprocess knows only their URLs. Both rails count from where they stand (no homing),
so the plan is written relative to that place.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
