"""``rig station --sim`` as a child process for the end-to-end tests: its address and output."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


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


def shoot(url: str, token: str, name: str, plan: dict[str, Any]) -> None:
    """A session of ``plan`` named ``name``, started through the station's API and waited for
    to its end."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=auth, timeout=10) as c:
        assert c.post("/api/sessions", json={"plan": plan, "name": name}).status_code == 201
        deadline = time.monotonic() + 60
        while c.get("/api/station").json()["running"]:
            assert time.monotonic() < deadline, "the session did not end"
            time.sleep(0.2)


def interrupt(url: str, token: str, name: str) -> None:
    """A session stopped after a frame or two through the station's API: it can be resumed."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=auth, timeout=10) as c:
        plan = {"from": "0mm", "to": "3mm", "frames": 30, "settle": 0.3}
        assert c.post("/api/sessions", json={"plan": plan, "name": name}).status_code == 201
        time.sleep(1)
        assert c.post(f"/api/sessions/{name}/stop", json={}).status_code == 202
        deadline = time.monotonic() + 60
        while c.get("/api/station").json()["running"]:
            assert time.monotonic() < deadline, "the session did not stop"
            time.sleep(0.2)
