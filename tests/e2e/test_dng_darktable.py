"""darktable opens stackrig's linear DNG and renders it with the as-shot white balance.

darktable-cli (darktable 4.2 here: `apt-get install darktable`) is installed by .ci/run; on a
developer's machine without it this test is skipped and says so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.sim.bayer import write_raw_stack
from rig.sim.scene import SceneSpec
from stacker.offline import stack_files
from stacker.raw import read_profile, read_raw_linear, render

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="darktable-cli not installed")
def test_darktable_renders_the_dng_like_stackrig(tmp_path: Path) -> None:
    frames = write_raw_stack(tmp_path / "raw", SceneSpec(width=320, height=240, seed=3,
                                                         bit_depth=16), 3)  # fmt: skip
    dng = tmp_path / "stacked.dng"
    stack_files(frames, dng)
    out = tmp_path / "darktable.png"
    proc = subprocess.run(["darktable-cli", str(dng), str(out), "--core", "--configdir",
                           str(tmp_path / "dtconf"), "--library", ":memory:"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    theirs = cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(np.float64)
    ours = render(read_raw_linear(dng), read_profile(dng)).astype(np.float64)
    assert theirs.shape[:2] == ours.shape[:2]
    # darktable's default exposure and tone curve differ from a plain sRGB rendering, but the
    # white balance (channel ratios) and the picture itself must agree
    ratio_theirs = theirs.mean((0, 1)) / theirs.mean((0, 1))[1]
    ratio_ours = ours.mean((0, 1)) / ours.mean((0, 1))[1]
    np.testing.assert_allclose(ratio_theirs, ratio_ours, rtol=0.04)
    a, b = (
        cv2.cvtColor(theirs.astype(np.float32), cv2.COLOR_BGR2GRAY),
        cv2.cvtColor(ours.astype(np.float32), cv2.COLOR_BGR2GRAY),
    )
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
