"""``rig station``: run the rig headless and control it from a browser.

The station opens the rail and camera once (or the simulated rig with ``--sim``), serves the
preview page with its control panel, and prints the address with the access token. It runs
until Ctrl-C, SIGTERM (systemd's stop) or SIGHUP (its terminal closed; not under ``nohup``),
which stops a running session cleanly first.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from rig.cli import options as opt
from rig.errors import RigError
from rig.spec import RigSpec
from stacker.cliutil import signals_handled, takes


@contextlib.contextmanager
def _devices(
    *, sim: bool, size: str, rig: RigSpec | None, home: bool = False, accept_position: bool = False
) -> Iterator[tuple[Any, Any, RigSpec]]:
    """(focuser, camera, the sessions' rig) for the station's lifetime.

    A rail whose controller restarted when its port opened (an Arduino's GRBL or Marlin) is
    homed with ``home``, or its position accepted with ``accept_position``, as for ``rig shoot``;
    without either the station starts anyway, and the page's Home or Unlock settles it before
    anything moves (a station started at boot by systemd has nobody to give the flags).
    """
    if sim or rig is None:
        from rig.sim.rig import SimRigSpec, SimulatedRig, enable_virtual_camera, parse_size

        enable_virtual_camera()  # before anything imports gphoto2
        width, height = parse_size(size)
        spec = SimRigSpec(width=width, height=height)
        with SimulatedRig(spec) as simulated:
            yield simulated.focuser, simulated.camera, RigSpec.parse(spec.to_dict())
        return
    from rig.devices import hardware_rig

    with hardware_rig(
        rig,
        home=home,
        accept_position=accept_position,
        warn=lambda text: print(f"warning: {text}"),
        reference_later=True,
        simulated="rig station --sim",
    ) as (focuser, camera):
        yield focuser, camera, rig


@takes(opt.device_options, "devices")
def station_cmd(
    *,
    host: Annotated[
        str, typer.Option("--host", help="Address to serve on; 0.0.0.0 for the whole network.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to serve on (0: any free one).")
    ] = 8000,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also answer to this host name (a DNS name the rig is reached by); repeatable.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="Access token (default: from --token-file, made on first run)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Where the token is kept (~/.config/stackrig/...)."),
    ] = None,
    root: Annotated[
        Path, typer.Option("--sessions", help="Folder the sessions are kept in.")
    ] = Path("stackrig-sessions"),
    sim: Annotated[
        bool, typer.Option("--sim", help="Run the simulated rig (no hardware).")
    ] = False,
    devices: dict[str, Any],
    travel: Annotated[
        str | None,
        typer.Option(
            "--travel",
            help="How far from 0 the page may jog a rail without soft limits, and a session "
            "reach, e.g. 150mm (default 300mm, or 100000 steps for a lens).",
        ),
    ] = None,
    size: opt.Size = "1440x1080",
    home: opt.Home = False,
    accept_position: opt.AcceptPosition = False,
) -> None:
    """Serve the rig's control page: plan, jog, test shot, start/stop/resume, downloads."""
    from rig.station.api import station_app
    from rig.station.auth import load_token
    from rig.station.service import Station
    from rig.units import parse_length
    from stacker.preview.guard import warn_if_wildcard
    from stacker.preview.server import PreviewServer

    hardware = {
        "--rail": devices["rail"] is not None,
        "--focus": devices["focus"] != "rail",
        "--camera-model": devices["camera_model"] is not None,
        "--camera-port": devices["camera_port"] is not None,
    }
    given = [option for option, on in hardware.items() if on]
    if sim and given:
        raise RigError(f"{given[0]}: --sim drives the simulated rig; leave one of them out")
    rig = None if sim else opt.rig_from_options(devices)
    secret, source = load_token(token, token_file)
    try:
        reach = None if travel is None else parse_length(travel)[0]
    except RigError as exc:
        raise RigError(f"--travel: {exc}") from None
    if reach is not None and not reach > 0:  # before the rail is opened (an Arduino restarts)
        raise RigError(f"--travel {travel}: give a positive length, e.g. 150mm")
    stop = threading.Event()

    with _devices(sim=sim, size=size, rig=rig, home=home, accept_position=accept_position) as (
        focuser,
        camera,
        spec,
    ):
        # A rail homed or told its place as the station started has a new 0, as after the
        # page's Home or Unlock (a simulated rail keeps its own).
        real_rail = rig is not None and not sim
        accepted = real_rail and bool(getattr(focuser, "position_accepted", False))
        station = Station(
            root, focuser=focuser, camera=camera, rig=spec.to_dict(), travel=reach,
            homed=real_rail and home, accepted=accepted,
        )  # fmt: skip
        warn_if_wildcard(host)
        app = station_app(station, secret)
        server = PreviewServer(station.hub, host, port, app=app, allow_hosts=allow_host or [])
        server.start()
        try:
            with signals_handled(lambda _signum: stop.set()):
                print(f"stackrig station: {server.url}#token={secret}", flush=True)
                print(f"sessions in {root.resolve()}; token from {source}", flush=True)
                if server.local_only:  # also a name that stands for 127.0.1.1 in /etc/hosts
                    print("only this machine can connect; use --host 0.0.0.0 for the network")
                while not stop.wait(0.5):
                    pass
                print("stopping: finishing the session in progress, if any", flush=True)
        finally:
            station.close()
            server.stop()
