"""A VCAMERADIR that cannot be the virtual camera's folder is a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "proc"])
def test_demo_with_vcameradir_not_a_folder_is_one_line(tmp_path: Path, kind: str) -> None:
    # `VCAMERADIR=some.jpg rig demo` ended in a FileExistsError traceback from mkdir (and
    # a folder under /proc in a FileNotFoundError one), before anything was shot.
    if kind == "file":
        target = tmp_path / "frame.jpg"
        target.write_bytes(b"not a folder")
    else:
        target = Path("/proc/stackrig-no-such-folder")
    env = {**os.environ, "VCAMERADIR": str(target)}
    result = subprocess.run(
        [sys.executable, "-m", "rig.cli", "demo", "--frames", "2", "--size", "64x64",
         "-o", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rig: error: VCAMERADIR=") and str(target) in lines[0]
    assert not (tmp_path / "demo").exists()
