"""The README's promises: its first commands, its plan line and its Python example, run as
written; the station plan's fields it names."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from rig.sim.scene import SceneSpec, write_stack
from stacker.io import read_image
from tests.paths import ROOT

README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_first_command_installs_and_runs_the_demo_and_ci_runs_the_second() -> None:
    demo, tests = (b.strip() for b in blocks("sh")[:2])
    assert demo.startswith("python3 -m venv .venv") and demo.endswith("rig demo")
    assert tests.startswith("python3 -m venv .venv") and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_python_example_runs(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_stack(folder, SceneSpec(width=240, height=180, seed=2), 4)
    paths = sorted(folder.glob("*.jpg"))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        (example,) = blocks("python")
        exec(compile(example, "README.md", "exec"), {"paths": paths})
    finally:
        os.chdir(cwd)
    assert read_image(tmp_path / "stacked.tif").shape[2] == 3
    assert (tmp_path / "depth.png").exists()


def test_the_arrays_example_it_points_to_runs(tmp_path: Path) -> None:
    """examples/stack_arrays.py: 12-bit greyscale frames in memory, a greyscale 16-bit
    composite and a depth map in micrometres out."""
    assert "examples/stack_arrays.py" in README
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "stack_arrays.py"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "8 frames merged: composite" in proc.stdout and "uint16" in proc.stdout
    with tifffile.TiffFile(tmp_path / "out" / "stacked.tif") as tif:
        assert tif.pages[0].samplesperpixel == 1 and tif.pages[0].dtype == np.uint16
    assert json.loads((tmp_path / "out" / "depth.json").read_text())["units"] == "micrometres"


def test_the_station_plan_fields_it_names_are_those_the_station_takes() -> None:
    """The README said a station plan's fields were those of `rig plan`'s plan files (``near``,
    ``far``, ``settle_s``), which the station refuses: it takes the options' names."""
    from rig.spec import PLAN_KEYS

    start = README.index("The\nfields of a plan are")
    sentence = README[start : README.index("Every error is one line of JSON", start)]
    assert re.findall(r"`([a-z][a-z_]*)`", sentence) == list(PLAN_KEYS)


def test_the_plan_line_prints_the_plan_its_comment_and_the_prose_describe() -> None:
    """``rig plan --from 0mm --to 4mm -m 1 -N 8``, whose comment gives the depth-of-field step
    and the step fitted to the range, and the prose the frame count: run by no test."""
    from typer.testing import CliRunner

    from rig.cli import app

    line = blocks("sh")[2].splitlines()[0]
    command, comment = (part.strip() for part in line.split("#", 1))
    said = re.fullmatch(r"1:1 at f/8: DOF step (\d+) µm, fitted to ([\d.]+) µm", comment)
    assert said, comment
    dof_step, fitted = said.groups()
    assert f"(above: 12 frames {fitted} µm apart)" in " ".join(README.split())
    result = CliRunner().invoke(app, shlex.split(command)[1:], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "1:1 at f/8, CoC 0.015 mm: depth of field 480 µm, 20% overlap" in result.output
    assert float(dof_step) == 480 * (1 - 0.2)
    assert f"12 frames, step {fitted}" in result.output


def test_the_exit_statuses_it_lists_are_those_the_commands_use() -> None:
    """Exit statuses 3, 4, 5 and 6 were nowhere in the README, which named only 130, 4 (for a
    session still running) and 1 (for a batch)."""
    from rig.errors import DeviceBusyError, DeviceNotFoundError, MotionError
    from rig.session.folder import SessionBusyError
    from rig.session.state import DEVICE_FAULT_EXIT
    from rig.station.errors import StationBusyError
    from stacker.errors import Interrupted, UserError
    from stacker.watch import NoFramesError

    section = README.split("\n## Exit status\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", section, flags=re.M))
    assert "input to fix" in rows[str(UserError.exit_code)]
    assert "no camera or rail answers" in rows[str(DeviceNotFoundError.exit_code)]
    busy = {DeviceBusyError.exit_code, SessionBusyError.exit_code, StationBusyError.exit_code}
    assert busy == {4} and rows["4"].startswith("busy")
    assert "a move refused" in rows[str(MotionError.exit_code)]
    assert "camera or rail fault" in rows[str(DEVICE_FAULT_EXIT)]
    assert "Ctrl-C" in rows[str(Interrupted.exit_code)]
    assert "`stacker watch` had no frame" in rows[str(NoFramesError.exit_code)]
    assert len(rows) == 7
