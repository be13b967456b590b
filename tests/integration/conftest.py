"""Fixtures shared by the integration tests: a rail opened by URL, and a served station."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rig.focuser import Focuser
from rig.rails import open_focuser
from rig.sim.rig import SimulatedRig
from rig.station.api import station_app
from rig.station.service import Station
from stacker.preview import PreviewServer
from tests.stations import SPEC, TOKEN, station_of


@pytest.fixture
def rail(sim: Any) -> Iterator[Focuser]:
    """The module's simulator (its ``sim`` fixture) opened by its URL, as a user opens a rail."""
    focuser = open_focuser(sim.url)
    yield focuser
    focuser.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[SimulatedRig]:
    """The station tests' simulated rig, one per module."""
    with SimulatedRig(SPEC) as sim:
        yield sim


@pytest.fixture
def station(rig: SimulatedRig, tmp_path: Path) -> Iterator[Station]:
    """A station with its sessions in ``tmp_path``; the rail goes back to 0 afterwards."""
    st = station_of(rig, tmp_path / "sessions")
    yield st
    st.close()
    rig.focuser.move_to(0.0)


@pytest.fixture
def server(station: Station) -> Iterator[PreviewServer]:
    """The station's web API served on loopback with the test token."""
    with PreviewServer(station.hub, app=station_app(station, TOKEN)) as srv:
        yield srv


@pytest.fixture
def client(server: PreviewServer) -> Iterator[httpx.Client]:
    """An HTTP client of ``server`` that sends the token."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url.rstrip("/"), headers=auth, timeout=10) as c:
        yield c
