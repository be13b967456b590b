"""``rig demo`` with the virtual camera answering as a Canon shooting RAW+JPEG to RAM.

A subprocess (libgphoto2 picks its virtual camera at import). Canon RAM captures land in folder
``/`` where a piecewise read fails; the late JPEG of each pair must be waited for and kept.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import commands

pytestmark = pytest.mark.slow


def rig(*args: str) -> subprocess.CompletedProcess[str]:
    return commands.rig(*args, timeout=180, COLUMNS="200")


def test_demo_as_a_canon_shooting_raw_plus_jpeg_to_ram(tmp_path: Path) -> None:
    out = tmp_path / "canon"
    proc = rig(
        "demo", "--out", str(out), "--frames", "4", "--size", "480x360", "--settle", "0.02s",
        "--time-scale", "50", "--camera", "canon", "--capture-target", "ram", "--raw-plus-jpeg",
        "--raw-mb", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "session completed: 4/4 frames captured, 4 merged" in proc.stdout
    names = sorted(p.name for p in (out / "frames").iterdir())
    assert names == sorted(f"frame_{i:04d}.{ext}" for i in range(1, 5) for ext in ("cr2", "jpg"))
    rig_block = json.loads((out / "session.json").read_text())["rig"]
    assert (rig_block["camera"], rig_block["capture_target"]) == ("canon", "ram")


def test_bad_capture_target_is_one_line(tmp_path: Path) -> None:
    proc = rig("demo", "--out", str(tmp_path / "x"), "--capture-target", "sd")
    assert proc.returncode == 2
    assert "--capture-target 'sd': use one of auto, ram, card, both" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
