"""The README's account of the station's HTTP API: its routes are the station's, and its curl
example runs as written against a real station on the simulated rig."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from starlette.routing import Route

from rig.station.api import station_app
from rig.station.service import Station
from stacker.io import read_image
from stacker.preview import PreviewServer
from tests.paths import ROOT
from tests.stations import TOKEN

README = (ROOT / "README.md").read_text()
ROW = re.compile(r"^\| `(GET|POST) (/api/[^`]+)`(?:, `(GET|POST) (/api/[^`]+)`)? \|", re.M)
PAGE_ONLY = {"/api/login", "/api/logout", "/api/crop"}
"""Routes of the page itself (its login form, its 100 % crops), not for scripts."""


def _documented() -> set[tuple[str, str]]:
    routes = set()
    for match in ROW.finditer(README):
        routes.add((match[1], match[2]))
        if match[3]:
            routes.add((match[3], match[4]))
    # "`GET /api/camera/settings` ...; `POST` ... sets one": the same route's other method
    for line in README.splitlines():
        if line.startswith("| `GET ") and "; `POST`" in line:
            routes.add(("POST", line.split("`")[1].split()[1]))
    return routes


def _served(station: Station) -> set[tuple[str, str]]:
    routes = set()
    for route in station_app(station, TOKEN).routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            path = route.path.replace("{sid}", "{id}")
            routes.update((m, path) for m in route.methods or () if m in ("GET", "POST"))
    return routes


def test_the_readme_lists_every_route_a_script_can_call(station: Station) -> None:
    documented, served = _documented(), _served(station)
    # thumbnail, composite, depth... are kinds of one documented route
    served.discard(("GET", "/api/sessions/{id}/thumbnail"))
    assert documented - served == set()
    assert {r for r in served - documented if r[1] not in PAGE_ONLY} == set()


@pytest.mark.slow
def test_the_readme_curl_example_runs_as_written(
    station: Station, server: PreviewServer, tmp_path: Path
) -> None:
    """The three lines, with the station's address for ``http://pi:8000`` and its token in the
    file where ``rig station`` keeps it."""
    (example,) = [b for b in re.findall(r"```sh\n(.*?)```", README, re.S) if "curl" in b]
    lines = example.replace("http://pi:8000", server.url.rstrip("/")).strip().splitlines()
    config = tmp_path / "home" / ".config" / "stackrig"
    config.mkdir(parents=True)
    (config / "station-token").write_text(TOKEN + "\n")
    env = {**os.environ, "HOME": str(tmp_path / "home")}

    def run(script: str) -> str:
        done = subprocess.run(["bash", "-euc", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    token_line, status, start, download = lines
    assert '"rail"' in run(f"{token_line}\n{status}")
    assert '"id":"beetle"' in run(f"{token_line}\n{start}").replace(" ", "")
    deadline = time.monotonic() + 120
    while '"running":null' not in run(f"{token_line}\n{status}").replace(" ", ""):
        assert time.monotonic() < deadline, "the session did not end"
        time.sleep(0.3)
    run(f"{token_line}\n{download}")
    kept = read_image(station.root / "beetle" / "composite.tif")
    assert (read_image(tmp_path / "beetle.tif") == kept).all()
