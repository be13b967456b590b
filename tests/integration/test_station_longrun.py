"""A station left running, as on a Raspberry Pi at the rig: what happens to it over time.

The rail's cable is pulled and plugged back, the clock says the same second twice, sessions
follow one another: the station carries on without a restart.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rig.errors import MotionError
from rig.sim.rig import SimulatedRig
from rig.station.service import Station, plan_from_request
from stacker.stack import Stacker
from tests.resources import fd_count
from tests.stations import SPEC

PLAN = {"from": "0mm", "to": "1mm", "frames": 2, "settle": 0.01}


def _serial_readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("serial ")]


@pytest.mark.slow
def test_a_rail_whose_cable_was_pulled_is_reconnected_by_the_next_request(
    tmp_path: Path,
) -> None:
    """The link to the rail broke once (a USB hiccup): every jog, homing and session after it
    failed with "lost the connection ... then reconnect" until the station was restarted, as
    nothing on the station reconnected. Now the next request opens the port again; the board
    restarted with its power, so it wants homing first, as at start-up."""
    with SimulatedRig(SPEC) as rig:
        station = Station(
            tmp_path / "sessions", focuser=rig.focuser, camera=rig.camera, rig=SPEC.to_dict()
        )
        try:
            station.jog(by="100um")
            readers, fds = _serial_readers(), fd_count()
            for _ in range(2):
                rig.arm_rail_fault("disconnect")
                deadline = time.monotonic() + 10
                while not rig.focuser.link_lost:  # type: ignore[attr-defined]
                    assert time.monotonic() < deadline, "the rail never noticed the cable"
                    time.sleep(0.02)
                rig.replug_rail()
                with pytest.raises(MotionError, match=r"position unknown.*home the rail"):
                    station.jog(by="100um")
                homed = station.home()
                assert station.jog(by="-100um") == pytest.approx(homed - 100, abs=2)
            assert _serial_readers() == readers  # one reader thread, the old ones ended
            assert fd_count() == fds  # and their ports closed
        finally:
            station.close()


@pytest.mark.slow  # whole sessions, one after another
def test_sessions_started_within_one_second_get_names_of_their_own(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two starts without a name within the same second (or after the clock was set back)
    made the same date-and-time name: the second was refused as a session that "exists
    already; resume it or choose a new name", a name the photographer never chose."""

    class SameSecond(datetime):
        @classmethod
        def now(cls, tz: object = None) -> SameSecond:
            return cls(2026, 3, 29, 2, 30, 0)

    monkeypatch.setattr("rig.session.folder.datetime", SameSecond)
    plan = plan_from_request(PLAN, units=station.units)
    names = []
    for _ in range(3):
        names.append(station.start(plan))
        result = station.wait(60)
        assert result is not None and result.reason.value == "completed"
    assert names == ["stack-20260329-023000", "stack-20260329-023000-2", "stack-20260329-023000-3"]
    assert {s["id"] for s in station.sessions()} == set(names)


@pytest.mark.slow  # whole sessions, one after another
def test_a_finished_sessions_stack_is_freed_when_the_next_one_starts(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The station kept every finished session's stacker (hundreds of MB each for large
    frames) alive in reference cycles (runner, stacking worker and its reader, the preview
    listener) until the garbage collector happened to run: at 6 MP its memory went 0.8, 1.1,
    1.3, 1.6 GB over four sessions. Now only the last stack stays, for 100 % crops, however
    long the collector waits (switched off here); and no session leaves a file or a thread."""
    made: list[weakref.ref[Stacker]] = []
    init = Stacker.__init__

    def counted(self: Stacker, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Stacker, "__init__", counted)
    plan = plan_from_request(PLAN, units=station.units)
    fds, threads = fd_count(), threading.active_count()
    gc.disable()
    try:
        for _ in range(3):
            station.start(plan)
            result = station.wait(60)
            assert result is not None and result.reason.value == "completed"
        alive = [ref for ref in made if ref() is not None]
    finally:
        gc.enable()
    assert len(made) == 3 and alive == made[-1:]
    assert (fd_count(), threading.active_count()) == (fds, threads)  # journals, logs, workers
