"""The README's stacking commands (a folder, RAW/DNG, batch) run as written, in a folder of
synthetic stacks.

The cluster commands run on loopback only: the scheduler's host name becomes 127.0.0.1, its
port a free one, and the worker is told to listen on 127.0.0.1 too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rig.sim.bayer import write_raw_stack
from rig.sim.scene import SceneSpec, write_stack
from stacker.io import read_image
from stacker.raw import read_raw_linear
from tests.processes import free_port, interrupt

pytestmark = pytest.mark.slow  # local Dask clusters
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def section_blocks(heading: str) -> list[list[str]]:
    """The ``sh`` blocks of the README section whose heading starts with ``heading``."""
    (body,) = [s for s in README.split("\n## ") if s.startswith(heading)]
    blocks = re.findall(r"```sh\n(.*?)```", body, flags=re.S)
    return [[ln for ln in b.splitlines() if ln.strip()] for b in blocks]


def run(line: str, cwd: Path) -> None:
    proc = subprocess.run(line, shell=True, cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"{line}\n{proc.stderr}"


def test_stacking_an_existing_folder(tmp_path: Path) -> None:
    """Its two commands, a folder and a camera's file names, were run by no test as written."""
    write_stack(tmp_path / "frames", SceneSpec(width=240, height=180, seed=3), 4)
    for frame in sorted((tmp_path / "frames").glob("frame_*.jpg")):
        shutil.copy(frame, tmp_path / frame.name.replace("frame_", "IMG_").replace(".jpg", ".JPG"))
    (block,) = section_blocks("Stacking an existing folder")
    for line in block:
        run(line, tmp_path)
    written = {"stacked.tif", "depth.png", "depth-preview.jpg", "depth.json", "stacked.jpg"}
    assert written <= {p.name for p in tmp_path.iterdir()}
    assert read_image(tmp_path / "stacked.jpg").shape[2] == 3


def test_raw_commands(tmp_path: Path) -> None:
    write_raw_stack(tmp_path / "raw", SceneSpec(width=240, height=180, seed=4, bit_depth=16), 4)
    (block,) = section_blocks("RAW frames and DNG output")
    for line in block:
        run(line, tmp_path)
    assert read_raw_linear(tmp_path / "stacked.dng").shape[2] == 3
    assert (tmp_path / "depth.png").exists() and (tmp_path / "stacked.tif").exists()


def test_batch_commands(tmp_path: Path) -> None:
    for tray, seed in (("tray1", 1), ("tray2", 2)):
        write_stack(tmp_path / "specimens" / tray / "beetle", SceneSpec(width=160, height=120,
                                                                        seed=seed), 3)  # fmt: skip
    local, cluster = section_blocks("Thousands of stacks")
    for line in local:
        run(line, tmp_path)
    names = sorted(p.name for p in (tmp_path / "stacked").iterdir())
    assert "tray1-beetle.tif" in names and "tray2-beetle-depth.png" in names
    assert "batch-report.jsonl" in names and "report.csv" in names

    # a frame of tray2 replaced since: the cluster has that stack to do again
    later = (tmp_path / "stacked" / "tray2-beetle.tif").stat().st_mtime + 10
    os.utime(tmp_path / "specimens" / "tray2" / "beetle" / "frame_0002.jpg", (later, later))
    port = free_port()
    background: list[subprocess.Popen] = []
    try:
        for line in cluster:
            line = line.replace("scheduler:8786", f"127.0.0.1:{port}")
            line = line.replace("--host scheduler --port 8786", f"--host 127.0.0.1 --port {port}")
            if line.startswith("dask worker"):
                line = line.replace(" &", " --host 127.0.0.1 &")
            if line.endswith("&"):
                background.append(subprocess.Popen(shlex.split(line[:-1]), cwd=tmp_path, env=ENV,
                                                   stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))  # fmt: skip
            else:
                assert "127.0.0.1" in line
                run(line, tmp_path)
    finally:
        interrupt(reversed(background))
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "stacked" / "batch-report.jsonl")
                                         .read_text().splitlines())}  # fmt: skip
    # the README's second line (--method depthmap) restacked both; the cluster line, with the
    # default method again, restacks both once more (tray2 for its new frame as well)
    with (tmp_path / "stacked" / "report.csv").open(newline="") as fh:
        second = list(csv.DictReader(fh))
    assert sorted(row["status"] for row in second) == ["done", "done"]
    assert rows["tray1-beetle"]["status"] == "done"
    assert rows["tray2-beetle"]["status"] == "done"
    assert rows["tray2-beetle"]["worker"].startswith("tcp://127.0.0.1:")
