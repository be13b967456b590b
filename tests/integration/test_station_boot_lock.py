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

import httpx
import pytest

from rig.plan import ShotPlan
from rig.session.folder import SessionFolder
from rig.station.api import station_app
from rig.station.errors import StationError
from rig.station.service import Station
from stacker.preview import PreviewServer
from tests.stations import TOKEN, folder_entries


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


def _until_idle(station: Station, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while station.running is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert station.running is None, "the session did not end"


@pytest.mark.slow
def test_a_session_shot_before_the_rail_restarted_resumes_from_where_it_left_the_rail(
    card, tmp_path: Path
) -> None:
    """The station restarted (a Pi rebooted), its Arduino's GRBL with it, and the page said to
    press Unlock, which takes where the carriage stands as 0. Resumed then, a session stopped
    at 0.6 mm shot its missing frames 0.6 mm too far, the planes there never shot, and said it
    had completed. It is now refused (409, asking) until the photographer says the rail stayed
    where the session left it; then the rail is told it stands there, and the session ends
    where it began. Through the page's API, as its Resume button asks and answers. Clock
    times do not decide which sessions were shot before Unlock."""
    from rig.cli.station import _devices
    from rig.sim.grbl import GrblSimulator
    from rig.spec import RigSpec

    plan = ShotPlan.from_frames(0.0, 1400.0, 8, settle_s=0.4)
    with GrblSimulator(time_scale=20.0) as grbl:
        rig = RigSpec.parse({"rail": grbl.url})
        with _devices(sim=False, size="320x240", rig=rig) as (focuser, camera, _):
            station = Station(tmp_path / "s", focuser=focuser, camera=camera, rig={})
            station.unlock()
            origin = grbl.carriage[0]  # the session's 0, where the carriage physically stands
            sid = station.start(plan, name="cut")
            frames = tmp_path / "s" / sid / "frames"
            deadline = time.monotonic() + 60
            while len(os.listdir(frames)) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            station.stop(sid)
            _until_idle(station)
            station.close()
        assert 3 <= len(os.listdir(frames)) < 8
        stopped_at = grbl.carriage[0]
        assert stopped_at > origin + 0.3  # left mid-stack
        # Shot while the clock ran a day ahead (a Pi has no clock of its own, and NTP set it
        # back since): the journal looks written after the Unlock to come, which must not tell.
        ahead = time.time() + 86_400
        os.utime(SessionFolder.find(tmp_path / "s" / sid).journal_path, (ahead, ahead))
        # The port opened again: the board restarts and counts from 0 where the carriage is.
        with _devices(sim=False, size="320x240", rig=rig) as (focuser, camera, _):
            station = Station(tmp_path / "s", focuser=focuser, camera=camera, rig={})
            app = station_app(station, TOKEN)
            with (
                PreviewServer(station.hub, app=app) as srv,
                httpx.Client(
                    base_url=srv.url.rstrip("/"), headers={"Authorization": f"Bearer {TOKEN}"}
                ) as page,
            ):
                assert page.post("/api/unlock", json={}).status_code == 200
                refused = page.post(f"/api/sessions/{sid}/resume", json={})
                assert refused.status_code == 409, refused.text
                assert refused.json()["ask"] == "rail_where_left"
                assert "shot before the rail restarted" in refused.json()["error"]
                assert grbl.carriage[0] == stopped_at  # refused before anything moved
                answer = page.post(f"/api/sessions/{sid}/resume", json={"rail_where_left": True})
                assert answer.status_code == 202, answer.text
                _until_idle(station)
            station.close()
        assert sorted(os.listdir(frames)) == [f"frame_{i:04d}.jpg" for i in range(1, 9)]
        # Each missing frame at its own plane, and back to the start: where the session began.
        assert grbl.carriage[0] == pytest.approx(origin, abs=0.005)


@pytest.mark.slow
def test_a_session_shot_after_unlock_is_not_resumed_after_homing(card, tmp_path: Path) -> None:
    """Its positions count from where the carriage stood when Unlock took it as 0; pressing
    Home gives the rail another 0 (the switch's), and the session was resumed from that one:
    its missing frames landed tens of millimetres from the others, and it said "completed"."""
    from rig.cli.station import _devices
    from rig.sim.grbl import GrblSimulator
    from rig.spec import RigSpec

    plan = ShotPlan.from_frames(-3000.0, -1600.0, 8, settle_s=0.4)
    with GrblSimulator(time_scale=20.0) as grbl:
        rig = RigSpec.parse({"rail": grbl.url})
        with _devices(sim=False, size="320x240", rig=rig) as (focuser, camera, _):
            station = Station(tmp_path / "s", focuser=focuser, camera=camera, rig={})
            station.unlock()
            sid = station.start(plan, name="unlocked")
            frames = tmp_path / "s" / sid / "frames"
            deadline = time.monotonic() + 60
            while len(os.listdir(frames)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            station.stop(sid)
            _until_idle(station)
            shot = sorted(os.listdir(frames))
            station.home()
            homed_at = grbl.carriage[0]
            with pytest.raises(StationError, match=r"count from where the carriage stood"):
                station.resume(sid)
            with pytest.raises(StationError, match=r"count from where the carriage stood"):
                station.resume(sid, rail_where_left=True)
            assert grbl.carriage[0] == homed_at and sorted(os.listdir(frames)) == shot
            station.close()
