"""Run a capture session from Python, with a subscriber that reports every merged frame.

This uses the simulated rig (libgphoto2's virtual camera, the GRBL simulator, a synthetic
scene) so it runs anywhere::

    python examples/session_api.py /tmp/api-session

Run again on the same folder, it resumes that session (shooting only what is missing), also
after a Ctrl-C, which aborts the run and is raised again once the session is closed.

For real hardware, replace the simulated rig with ``rig.camera.Camera.open()`` and
``rig.rails.open_focuser("grbl:///dev/ttyUSB0")``, the plan's range with your subject's, and
the session's rig with the hardware one, so that ``rig resume`` reopens it::

    SessionConfig(rig={"kind": "hardware", "focus": "rail", "rail": "grbl:///dev/ttyUSB0"})

A GRBL board restarts when its port is opened and no longer knows where it stands: home it
(``focuser.home()``) or, if nothing moved, ``focuser.accept_position()`` before ``run()``, as
``rig shoot --home`` and ``--accept-position`` do.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rig.sim.rig import enable_virtual_camera

enable_virtual_camera()  # libgphoto2 picks its virtual camera when gphoto2 is first imported

from rig.plan import ShotPlan  # noqa: E402
from rig.session.events import FrameMerged, SessionEvent  # noqa: E402
from rig.session.folder import SessionConfig, SessionFolder  # noqa: E402
from rig.session.runner import SessionRunner  # noqa: E402
from rig.sim.rig import SimRigSpec, SimulatedRig  # noqa: E402


def on_event(event: SessionEvent) -> None:
    """Every session event; a merged frame arrives on the stacking thread (keep it quick)."""
    if not isinstance(event, FrameMerged):
        return
    job, record, previews = event.job, event.record, event.previews
    size = (
        "x".join(map(str, previews.composite.shape[1::-1]))
        if previews.composite is not None
        else "-"
    )
    print(
        f"frame {job.index}: merged={record.merged} alignment score {record.score:.3f}, "
        f"preview {size}"
    )


def main(out: Path) -> int:
    spec = SimRigSpec(width=800, height=600, time_scale=20.0)
    plan = ShotPlan.from_frames(0.0, spec.depth_um, 10, settle_s=0.1)
    config = SessionConfig(rig=spec.to_dict())
    with SimulatedRig(spec) as sim:
        if (out / "plan.json").exists():  # a session already: continue it
            folder = SessionFolder.find(out)
        else:
            folder = SessionFolder.create(out, plan, config)
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera)
        runner.subscribe(on_event)
        result = runner.run()
    print(f"{result.reason.value}: {result.status.merged} frames merged")
    for path in result.outputs:
        print(f"  {path}")
    return result.exit_code


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "api-session")
    try:
        sys.exit(main(folder))
    except KeyboardInterrupt:
        print(f"interrupted: run again to resume {folder}", file=sys.stderr)
        sys.exit(130)
