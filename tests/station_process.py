"""``rig station --sim`` as a child process for the end-to-end tests: its address and output."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def station_process(
    sessions: Path, *, token: str, size: str = "320x240"
) -> Iterator[tuple[str, subprocess.Popen[str], str]]:
    """(address, process, the line naming the sessions folder); the process is killed after."""
    env = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}  # its own virtual camera
    cmd = [sys.executable, "-m", "rig.cli", "station", "--sim", "--size", size]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", "--token", token, "--sessions", str(sessions)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"stackrig station: (http://127\.0\.0\.1:\d+/)#token=(\S+)\n", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        assert match[2] == token
        where = proc.stdout.readline()  # read here: communicate() skips what readline buffered
        yield match[1], proc, where
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
