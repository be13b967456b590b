"""Ctrl-C, SIGTERM or SIGHUP during a pipelined ``stacker stack``: a clean stop, exit 130, no
partial output."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rig.sim.scene import SceneSpec, write_stack
from tests.commands import stack_started


@pytest.mark.parametrize(
    "signum",
    [
        signal.SIGINT,
        pytest.param(signal.SIGTERM, marks=pytest.mark.slow),  # stopped the same way as Ctrl-C
        pytest.param(signal.SIGHUP, marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_mid_stack_stops_cleanly(tmp_path: Path, signum: int) -> None:
    """SIGTERM (``kill``) and SIGHUP (the terminal closed) stop it as Ctrl-C does: they ended
    it where it stood, unsaid."""
    frames, rendered = tmp_path / "in", tmp_path / "rendered"
    write_stack(rendered, SceneSpec(width=1200, height=800, seed=4, jpeg_quality=90), 16)
    # Each rendered frame linked under ten names: a stack long enough that the interrupt lands
    # mid-stack on a fast machine too.
    frames.mkdir()
    for k in range(160):
        os.link(rendered / f"frame_{k % 16 + 1:04d}.jpg", frames / f"frame_{k + 1:04d}.jpg")
    out, log = tmp_path / "out.tif", tmp_path / "stderr.txt"
    proc = stack_started(frames, out, log)
    time.sleep(0.5)  # into the stack: reading ahead and merging in the background
    os.kill(proc.pid, signum)
    t0 = time.monotonic()
    stdout, _ = proc.communicate(timeout=60)
    stderr = log.read_text()
    assert time.monotonic() - t0 < 10  # stops within a frame or two, not at the end
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("stacker: interrupted after ") and "nothing written" in last, stderr
    assert "stacked" not in stdout
    assert not out.exists() and not list(tmp_path.glob(".out.tif*"))
