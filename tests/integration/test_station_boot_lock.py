"""A station on a GRBL board that restarts and boots locked as its port opens, on the real
virtual camera.

In a module of its own: libgphoto2's virtual camera counts captures per process while any
handle to it lives (26, then "store full"), and the station tests' module-wide simulated rig
keeps one open, so beside them this test's captures began wherever their count stood.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.station.errors import StationError
from rig.station.service import Station
from tests.stations import folder_entries


@pytest.mark.slow
def test_a_station_on_a_board_that_restarts_when_opened_starts_and_the_page_settles_it(
    card, tmp_path: Path, capsys
) -> None:
    """An Arduino's GRBL restarts as its port opens and boots locked (homing on): `rig station
    --rail ...` without --home or --accept-position stopped at once, so the systemd unit that
    starts it at boot restarted it every few seconds. It now starts; a session is refused until
    the page's Unlock (or Home) settles the position, and no folder is left behind."""
    from rig.cli.station import _devices
    from rig.sim.grbl import GrblSimulator
    from rig.spec import RigSpec

    with GrblSimulator(time_scale=20.0) as grbl:
        rig = RigSpec.parse({"rail": grbl.url})
        with _devices(sim=False, size="320x240", rig=rig) as (focuser, camera, _):
            assert "press Home, or Unlock" in capsys.readouterr().out
            station = Station(tmp_path / "s", focuser=focuser, camera=camera, rig={})
            plan = ShotPlan.from_frames(0.0, 400.0, 3, settle_s=0.0)
            with pytest.raises(StationError, match=r"restarted when its port was opened.*Unlock"):
                station.start(plan)
            assert folder_entries(station) == []
            station.unlock()
            assert focuser.capabilities.unreferenced is None
            sid = station.start(plan, name="after-unlock")
            deadline = time.monotonic() + 60
            while station.running is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sorted(os.listdir(tmp_path / "s" / sid / "frames")) == [
                f"frame_{i:04d}.jpg" for i in (1, 2, 3)
            ]
            station.close()
