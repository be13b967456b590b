"""The ``rig`` command: cameras, rails, capture sessions and the station.

One module per command group (:mod:`~rig.cli.camera`, :mod:`~rig.cli.rail`,
:mod:`~rig.cli.session`, :mod:`~rig.cli.station`), option groups shared in
:mod:`~rig.cli.options`; this module only assembles them.
"""

from __future__ import annotations

from rig.cli import session, station, tether
from rig.cli.camera import app as camera_app
from rig.cli.camera import cameras
from rig.cli.rail import app as rail_app
from stacker.cliutil import library_versions, make_app, run_app

app = make_app(
    "rig",
    "Tethered focus-stacking rig: drive a camera and a focus rail, shoot and stack live.",
    versions=lambda: [*library_versions(), gphoto2_versions()],
)
app.add_typer(camera_app, name="camera")
app.command("cameras")(cameras)
app.add_typer(rail_app, name="rail")
app.command("plan")(session.plan_cmd)
app.command("shoot")(session.shoot_cmd)
app.command("resume")(session.resume_cmd)
app.command("demo")(session.demo_cmd)
app.command("tether")(tether.tether_cmd)
app.command("station")(station.station_cmd)


def gphoto2_versions() -> str:
    """python-gphoto2's and libgphoto2's versions, or why there are none."""
    try:
        import gphoto2
    except ImportError:
        return "python-gphoto2 not installed (`pip install 'stackrig[camera]'` for cameras)"
    library = gphoto2.gp_library_version(gphoto2.GP_VERSION_SHORT)[0]
    return f"python-gphoto2 {gphoto2.__version__}, libgphoto2 {library}"


def main() -> None:
    """Console-script entry point."""
    from rig.units import TYPED_APART

    run_app(app, "rig", units=TYPED_APART)


if __name__ == "__main__":
    main()
