"""A command whose console fills or goes away ends without a traceback; one whose job is what
it prints fails when that could not be written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.commands import env, rig_cmd

PLAN = ("plan", "--from", "0mm", "--to", "1mm", "--step", "100um")
FULL = "stdout: No space left on device; the output is incomplete (a full disk?)"


@pytest.mark.parametrize(
    ("command", "prog"),
    [
        (rig_cmd(*PLAN), "rig"),
        (rig_cmd("rail", "status", "sim://"), "rig"),
        (rig_cmd("--version"), "rig"),
        ([sys.executable, "-m", "stacker.cli", "--version"], "stacker"),
        (rig_cmd("--help"), "rig"),
        (rig_cmd("rail", "--help"), "rig"),
        ([sys.executable, "-m", "stacker.cli", "stack", "--help"], "stacker"),
    ],
    ids=[
        "plan",
        "rail-status",
        "rig-version",
        "stacker-version",
        "rig-help",
        "rail-help",
        "stack-help",
    ],
)
@pytest.mark.slow
def test_a_printout_on_a_full_disk_fails_in_one_line(command: list[str], prog: str) -> None:
    """``rig plan > plan.txt`` on a full disk left an empty file and exit status 0 (once, an
    ``OSError: [Errno 28]`` traceback). So did ``stacker stack --help > options.txt``."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            command, stdout=full, stderr=subprocess.PIPE, text=True, env=env(), timeout=60
        )
    assert (done.returncode, done.stderr) == (1, f"{prog}: error: {FULL}\n")
