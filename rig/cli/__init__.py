"""The ``rig`` command: cameras, rails, and capture sessions.

Each area registers its own Typer sub-app here; this module only assembles them.
"""

from __future__ import annotations

import typer

from rig.cli.camera import app as camera_app
from rig.cli.camera import cameras
from rig.cli.rail import app as rail_app
from rig.cli.session import register as register_session_commands
from rig.cli.station import register as register_station_command
from stacker.cliutil import run_app

app = typer.Typer(
    name="rig",
    help="Tethered focus-stacking rig: drive a camera and a focus rail, shoot and stack live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a <bool> placeholder, choices listed
)
app.add_typer(camera_app, name="camera")
app.command("cameras")(cameras)
app.add_typer(rail_app, name="rail")
register_session_commands(app)
register_station_command(app)


def main() -> None:
    """Console-script entry point."""
    run_app(app, "rig")


if __name__ == "__main__":
    main()
