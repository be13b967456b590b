"""``rig station`` on a GRBL rail that restarts locked whenever its port opens.

Real parts: the station process (its HTTP API over a real server), the GRBL driver over a real
pseudo-terminal to the GRBL simulator (stock behaviour: restart on open, homing on, locked at
boot), and libgphoto2's virtual camera (``VCAMERADIR``) for the body the station opens.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rig.sim.grbl import GrblSimulator

TOKEN = "grbl-lock-token-0123"
QUICK_HOMING = {24: 400.0, 25: 3000.0}  # homing feeds (mm/min) raised to keep the test short


@pytest.fixture
def grbl() -> Iterator[GrblSimulator]:
    with GrblSimulator(time_scale=20.0, settings=QUICK_HOMING) as sim:
        yield sim


def station_cmd(sessions: Path, url: str, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "rig.cli", "station", "--rail", url, "--port", "0",
        "--token", TOKEN, "--sessions", str(sessions), *flags,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_station_on_a_locked_board_starts_and_its_page_sets_the_reference(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """Started as systemd starts it at boot (no --home, no --accept-position), the station used
    to stop at once on a board that restarts as its port opens: it starts, says why the rail
    waits, and the page's Unlock takes where the carriage stands as the reference."""
    env = {**os.environ, "VCAMERADIR": str(vcam)}
    sessions = tmp_path / "sessions"
    proc = subprocess.Popen(
        station_cmd(sessions, grbl.url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []  # setup warnings (the unknown position, GRBL's $1=25) come first
        while not (
            match := re.match(
                r"stackrig station: (http://127\.0\.0\.1:\d+/)#", line := proc.stdout.readline()
            )
        ):
            assert line, "".join(lines)
            lines.append(line)
        assert any("restarted when its port was opened" in ln and "Unlock" in ln for ln in lines)
        assert grbl.motion_log == []
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=match[1].rstrip("/"), headers=auth, timeout=30) as c:
            r = c.post("/api/jog", json={"by": "500um"})
            assert r.status_code >= 400, r.text  # locked, and nothing moved
            assert grbl.motion_log == []
            assert c.post("/api/unlock", json={}).status_code == 200
            start = grbl.carriage[0]
            # Accepted: the page's jogs move at once, and keep working, because the station
            # holds the port open (no restart, no new lock).
            for _ in range(2):
                r = c.post("/api/jog", json={"by": "500um"})
                assert r.status_code == 200, r.text
            assert grbl.carriage[0] == pytest.approx(start + 1.0, abs=0.002)
            grbl.trigger_alarm(2)  # a later alarm is not cleared behind the user's back
            r = c.post("/api/jog", json={"by": "500um"})
            assert r.status_code >= 400 and "ALARM" in r.text, r.text
            assert c.post("/api/unlock", json={}).status_code == 200
            assert c.post("/api/jog", json={"by": "-500um"}).status_code == 200
            assert grbl.carriage[0] == pytest.approx(start + 0.5, abs=0.002)
            r = c.post("/api/home", json={})
            assert r.status_code == 200, r.text
            assert grbl.carriage[0] == pytest.approx(-1.0, abs=0.002)  # pulled off the switch
            assert c.post("/api/jog", json={"to": "-3mm"}).status_code == 200
            assert grbl.carriage[0] == pytest.approx(-3.0, abs=0.002)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
