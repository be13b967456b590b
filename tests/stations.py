"""The station under test: its token, the simulated rig it drives, and what its folder holds.

The fixtures that serve it (``rig``, ``station``, ``server``, ``client``) are in
``tests/integration/conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from rig.session.runner import RunnerOptions
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.station.service import LOCK_FILE, Station

TOKEN = "s3cret-token-for-tests"
SPEC = SimRigSpec(width=320, height=240, time_scale=50)


def station_of(rig: SimulatedRig, root: Path, spec: SimRigSpec = SPEC) -> Station:
    """A station with its sessions in ``root``, driving ``rig`` (made from ``spec``); a failed
    shot is retried after a tenth of a second."""
    return Station(
        root,
        focuser=rig.focuser,
        camera=rig.camera,  # type: ignore[arg-type]
        rig=spec.to_dict(),
        runner_options=RunnerOptions(retry_delay_s=0.1),
    )


def folder_entries(station: Station) -> list[str]:
    """What lies in the station's sessions folder, but for the lock file that holds it."""
    return sorted(name for name in os.listdir(station.root) if name != LOCK_FILE)
