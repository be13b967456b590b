"""``rig station``: run the rig headless and control it from a browser.

The station opens the rail and camera once (or the simulated rig with ``--sim``), serves the
preview page with its control panel, and prints the address with the access token. It runs
until Ctrl-C or SIGTERM (systemd's stop), which stops a running session cleanly first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from rig.cli.session import CAMERA_MODEL_HELP, CAMERA_PORT_HELP
from rig.errors import RigError


@contextlib.contextmanager
def _devices(
    *,
    sim: bool,
    rail: str | None,
    focus: str,
    camera_model: str | None,
    camera_port: str | None,
    size: str,
    home: bool = False,
    accept_position: bool = False,
) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """(focuser, camera, the sessions' ``rig`` block) for the station's lifetime.

    A rail whose controller restarted when its port opened must be homed (``home``) or its
    position accepted (``accept_position``) first, as for ``rig shoot``.
    """
    if sim:
        from rig.sim.rig import SimRigSpec, SimulatedRig, enable_virtual_camera, parse_size

        enable_virtual_camera()  # before anything imports gphoto2
        width, height = parse_size(size)
        spec = SimRigSpec(width=width, height=height)
        with SimulatedRig(spec) as rig:
            yield rig.focuser, rig.camera, spec.to_dict()
        return
    if focus not in ("rail", "camera"):
        raise RigError(f"--focus {focus}: use rail or camera")
    if focus == "rail" and rail is None:
        raise RigError(
            "give the rail with --rail URL (grbl:///dev/ttyUSB0), --focus camera, or --sim"
        )
    from rig.cli.session import hardware_rig

    block = {
        "kind": "hardware",
        "focus": focus,
        "rail": rail,
        "camera_model": camera_model,
        "camera_port": camera_port,
    }
    with hardware_rig(block, home=home, accept_position=accept_position) as (focuser, camera):
        yield focuser, camera, block


def register(app: typer.Typer) -> None:
    """Add ``station`` to the ``rig`` app."""

    @app.command("station")
    def station_cmd(
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to serve on; 0.0.0.0 for the whole network."
        ),
        port: int = typer.Option(8000, "--port", help="Port to serve on."),
        allow_host: list[str] = typer.Option(
            [],
            "--allow-host",
            help="Also answer to this host name (a DNS name the rig is reached by); repeatable.",
        ),
        token: str | None = typer.Option(
            None, "--token", help="Access token (default: from --token-file, made on first run)."
        ),
        token_file: Path | None = typer.Option(
            None, "--token-file", help="Where the token is kept (~/.config/stackrig/...)."
        ),
        root: Path = typer.Option(
            Path("stackrig-sessions"), "--sessions", help="Folder the sessions are kept in."
        ),
        sim: bool = typer.Option(False, "--sim", help="Run the simulated rig (no hardware)."),
        rail: str | None = typer.Option(None, "--rail", help="Rail URL: grbl:///dev/ttyUSB0."),
        focus: str = typer.Option("rail", "--focus", help="rail, or camera (lens motor)."),
        camera_model: str | None = typer.Option(None, "--camera-model", help=CAMERA_MODEL_HELP),
        camera_port: str | None = typer.Option(None, "--camera-port", help=CAMERA_PORT_HELP),
        travel: str | None = typer.Option(
            None,
            "--travel",
            help="How far from 0 the page may jog a rail without soft limits, e.g. 150mm "
            "(default 300mm, or 100000 steps for a lens).",
        ),
        size: str = typer.Option("1440x1080", "--size", help="Frame size of the simulated rig."),
        home: bool = typer.Option(False, "--home", help="Home the rail first."),
        accept_position: bool = typer.Option(
            False,
            "--accept-position",
            help="Take the rail's current position as the reference (no homing switch).",
        ),
    ) -> None:
        """Serve the rig's control page: plan, jog, test shot, start/stop/resume, downloads."""
        from rig.station.api import station_app
        from rig.station.auth import load_token
        from rig.station.service import Station
        from rig.units import parse_length
        from stacker.preview.guard import warn_if_wildcard
        from stacker.preview.server import PreviewServer

        secret, source = load_token(token, token_file)
        try:
            reach = None if travel is None else parse_length(travel)[0]
        except RigError as exc:
            raise RigError(f"--travel: {exc}") from None
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        with _devices(
            sim=sim,
            rail=rail,
            focus=focus,
            camera_model=camera_model,
            camera_port=camera_port,
            size=size,
            home=home,
            accept_position=accept_position,
        ) as (focuser, camera, block):
            station = Station(root, focuser=focuser, camera=camera, rig=block, travel=reach)
            warn_if_wildcard(host)
            app = station_app(station, secret)
            server = PreviewServer(station.hub, host, port, app=app, allow_hosts=allow_host)
            server.start()
            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                print(f"stackrig station: {server.url}#token={secret}", flush=True)
                print(f"sessions in {root.resolve()}; token from {source}", flush=True)
                if host in ("127.0.0.1", "localhost", "::1"):
                    print("only this machine can connect; use --host 0.0.0.0 for the network")
                while not stop.wait(0.5):
                    pass
                print("stopping: finishing the session in progress, if any", flush=True)
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
                station.close()
                server.stop()

    _ = station_cmd
