"""``rig rail``: check, home, move and jog a focus rail, or run a simulated one.

Every command takes a focuser URL (``grbl:///dev/ttyUSB0``, ``marlin:///dev/ttyACM0``,
``stackshot:///dev/stackshot``, ``wemacro:///dev/focusrail``, ``sim://``) and lengths with units
(``1.5mm``, ``250um``). Ctrl-C, SIGTERM or SIGHUP (the terminal closed) during motion stops the
rail before exiting.

Each command opens the port, and an Arduino restarts whenever its port is opened (DTR): GRBL
then counts from 0 wherever the carriage stands and, with homing enabled (``$22=1``) on a stock
build, boots locked in ALARM. ``rig rail home`` works from that lock; ``move`` and ``jog`` take
``--home`` (home first, in the same opening) or ``--accept-position`` (take the carriage's place
as it is, GRBL ``$X``), and without them a locked board refuses with a one-line error saying so.
``rig station`` keeps the port open, so one unlock or homing lasts there.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from rig.cli import options as opt
from rig.devices import establish_reference
from rig.errors import MotionError, RigError
from rig.focuser import Focuser
from rig.rails import open_focuser
from rig.sim.ptyserial import PtyDevice
from rig.units import format_length, parse_length
from stacker.cliutil import make_app, prints_its_result, signals_as_ctrl_c, signals_handled

app = make_app(
    "rail",
    "Focus rails: status, homing, moves, jogs; `rig rail simulate` runs a simulated one.",
)

UrlArg = Annotated[
    str,
    typer.Argument(
        help="Focuser URL, e.g. grbl:///dev/ttyUSB0?backlash=50um, marlin:///dev/ttyACM0, sim://"
    ),
]


@contextmanager
def _opened(url: str) -> Iterator[Focuser]:
    focuser = open_focuser(url)
    try:
        yield focuser
    finally:
        focuser.close()


def _describe(focuser: Focuser) -> str:
    caps = focuser.capabilities
    here = format_length(focuser.position, caps.units)
    details = []
    state = getattr(focuser, "status", None)
    if callable(state):
        report = state()
        details.append(f"state {getattr(report, 'state', report)}")
    if caps.unreferenced is not None:
        details.append(f"no reference: {caps.unreferenced}")
    else:
        details.append("position known" if caps.absolute else "position relative (not homed)")
    if caps.min_position is not None or caps.max_position is not None:
        low = "-inf" if caps.min_position is None else format_length(caps.min_position, caps.units)
        high = "+inf" if caps.max_position is None else format_length(caps.max_position, caps.units)
        details.append(f"soft limits {low} .. {high}")
    return f"{focuser.name}: at {here} ({', '.join(details)})"


def _motion(
    url: str, action: Callable[[Focuser], None], *, home: bool = False, accept: bool = False
) -> None:
    """Open the rail at ``url``, run ``action`` on it and say where it stands; Ctrl-C,
    SIGTERM, SIGHUP or any error stops the rail before the command ends.

    ``home`` runs the homing cycle first and ``accept`` takes the position as it stands, both
    in this opening of the port (see the module docstring for why that matters)."""
    with _opened(url) as focuser, signals_as_ctrl_c():
        try:
            if home or accept:
                units = focuser.capabilities.units
                establish_reference(focuser, home=home, accept=accept, left=None, units=units)
            action(focuser)
        except BaseException as exc:
            # A rail must not run on after the command: a StackShot or a GRBL jog keeps
            # going to its end once told to move, whatever ended the command.
            with contextlib.suppress(Exception):
                focuser.stop()
            if isinstance(exc, KeyboardInterrupt):  # say where it stopped
                where = _where_stopped(focuser)
                with contextlib.suppress(Exception):
                    typer.echo(f"stopped: {where}", err=True)
            raise
        typer.echo(_describe(focuser))


def _where_stopped(focuser: Focuser) -> str:
    """:func:`_describe` of a rail just stopped, asked twice: a controller still braking may
    not answer at once (the line was left out, and the photographer did not learn where the
    carriage stood). Failing that, why it could not be told."""
    for attempt in range(2):
        try:
            return _describe(focuser)
        except Exception as exc:
            if attempt:
                return f"{focuser.name}; where it stands could not be read ({exc})"
            time.sleep(STOPPED_REASK_S)
    raise AssertionError("unreachable")


STOPPED_REASK_S = 0.5
"""How long a stopped rail that did not say where it stands is given before it is asked again."""


def _distance(focuser: Focuser, length: tuple[float, str]) -> float:
    """``length`` (as :func:`parse_length` reads it, before the port is opened: a typo found
    after homing cost a whole homing cycle, and opening an Arduino's port restarts it) in
    the rail's units, or a one-line error."""
    value, unit = length
    if unit != focuser.capabilities.units:
        wanted = "a length such as 250um or 1.5mm" if unit == "steps" else "lens steps"
        raise RigError(f"{focuser.name} moves in {focuser.capabilities.units}: give {wanted}")
    return value


def _warnings(focuser: Focuser) -> None:
    for text in getattr(focuser, "setup_warnings", list)():
        typer.echo(f"warning: {text}", err=True)


@app.command()
def status(url: UrlArg) -> None:
    """Show where the rail is and what it can do."""
    prints_its_result()
    with _opened(url) as focuser:
        typer.echo(_describe(focuser))
        _warnings(focuser)


@app.command()
def home(url: UrlArg) -> None:
    """Run the homing cycle (GRBL: $HX if the build has it, else $H; see homing=; Marlin: G28)."""
    _motion(url, lambda focuser: focuser.home())


def _url_first(command: str, first: str, second: str) -> None:
    """Refuse ``rig rail move -1mm grbl:///...`` by naming the order, not the length as a URL."""
    if "://" not in first and "://" in second:
        url, length = shlex.quote(second), shlex.quote(first)
        raise RigError(f"the URL comes first: rig rail {command} {url} {length}")


@app.command(context_settings=opt.SIGNED)
def move(
    url: UrlArg,
    position: Annotated[str, typer.Argument(help="Target with a unit: 12.5mm, 250um")],
    home: opt.Home = False,
    accept_position: opt.AcceptPosition = False,
) -> None:
    """Move to an absolute POSITION (with backlash compensation and settling)."""
    _url_first("move", url, position)
    target = parse_length(position)
    _motion(
        url,
        lambda focuser: focuser.move_to(_distance(focuser, target)),
        home=home,
        accept=accept_position,
    )


@app.command(context_settings=opt.SIGNED)
def jog(
    url: UrlArg,
    distance: Annotated[str, typer.Argument(help="Signed distance with a unit: -0.5mm, 100um")],
    home: opt.Home = False,
    accept_position: opt.AcceptPosition = False,
) -> None:
    """Move by DISTANCE (GRBL: a $J= jog that Ctrl-C cancels)."""
    _url_first("jog", url, distance)
    length = parse_length(distance)

    def by(focuser: Focuser) -> None:
        delta = _distance(focuser, length)
        jog_method = getattr(focuser, "jog", None)
        if jog_method is not None:
            jog_method(delta)
        else:
            focuser.move_by(delta)

    _motion(url, by, home=home, accept=accept_position)


@app.command()
def stop(url: UrlArg) -> None:
    """Stop the rail now (GRBL: feed hold then reset, or jog cancel; Marlin: M410)."""
    with _opened(url) as focuser:
        focuser.stop()
        typer.echo(f"{focuser.name}: stopped at {format_length(focuser.position)}")


def _extra(focuser: Focuser, method: str, what: str) -> Callable[[], None]:
    action = getattr(focuser, method, None)
    if not callable(action):
        raise RigError(f"{focuser.name} cannot {what}")
    return action


@app.command()
def zero(url: UrlArg) -> None:
    """Make where the rail stands position 0 (StackShot, WeMacro: rails with no homing)."""
    with _opened(url) as focuser:
        _extra(
            focuser,
            "zero",
            f"set its zero: its positions come from homing (rig rail home {url}), or, once it "
            "has restarted, from --accept-position on a move or jog",
        )()
        typer.echo(_describe(focuser))


@app.command("keep-motors-on")
def keep_motors_on(url: UrlArg) -> None:
    """Keep the motors powered between moves (GRBL $1=255), so they hold their microstep."""
    with _opened(url) as focuser:
        _extra(focuser, "keep_motors_on", "change a motor idle setting")()
        typer.echo(f"{focuser.name}: motors stay powered between moves")


@app.command()
def shutter(url: UrlArg) -> None:
    """Fire the camera through the controller's shutter cable (StackShot, WeMacro)."""
    with _opened(url) as focuser:
        _extra(focuser, "fire_shutter", "fire a shutter cable")()
        typer.echo(f"{focuser.name}: shutter fired")


@app.command()
def unlock(url: UrlArg) -> None:
    """Clear a GRBL alarm ($X) when you know the position is still right; else home."""
    with _opened(url) as focuser:
        clear = getattr(focuser, "unlock", None)
        if clear is None:
            raise MotionError(f"{focuser.name} has no alarm lock to clear")
        clear()
        typer.echo(_describe(focuser))
        caps = focuser.capabilities
        if caps.unreferenced is not None and caps.can_home:  # homing on: locked at boot
            typer.echo(
                f"note: {focuser.name} restarted when its port was opened, so it will be locked "
                "again by the next command that opens it; move it with `rig rail move "
                "--accept-position` (or --home), or from `rig station`, which keeps it open",
                err=True,
            )


def _simulator(firmware: str, time_scale: float, keep_state: bool | None) -> PtyDevice:
    """The simulated controller for ``firmware``, with its own power-on habits by default."""
    from rig.sim.grbl import GrblSimulator
    from rig.sim.marlin import MarlinSimulator
    from rig.sim.stackshot import StackShotSimulator
    from rig.sim.wemacro import WeMacroSimulator

    kinds: dict[str, Callable[..., PtyDevice]] = {
        "grbl": GrblSimulator,
        "grblhal": functools.partial(GrblSimulator, firmware="grblhal"),
        "fluidnc": functools.partial(GrblSimulator, firmware="fluidnc"),
        "marlin": MarlinSimulator,
        "stackshot": StackShotSimulator,
        "wemacro": WeMacroSimulator,
    }
    kind = kinds.get(firmware)
    if kind is None:
        raise RigError(f"unknown firmware {firmware!r}: use {', '.join(kinds)}")
    if not 1 <= time_scale < math.inf:  # nan too
        raise RigError(
            f"--time-scale {time_scale:g}: give 1 (a real rail's speed) or more; slower, "
            "its moves outlast the driver's timeouts and read as a stalled rail"
        )
    if keep_state is None:
        return kind(time_scale=time_scale)
    return kind(time_scale=time_scale, reset_on_open=not keep_state)


@app.command()
def simulate(
    time_scale: Annotated[
        float, typer.Option(help="Simulated seconds per real second (10 = ten times faster).")
    ] = 1.0,
    firmware: Annotated[
        str, typer.Option(help="grbl, grblhal, fluidnc, marlin, stackshot or wemacro")
    ] = "grbl",
    keep_state: Annotated[
        bool | None,
        typer.Option(
            "--keep-state/--reset-on-open",
            help="Keep position between connections, or reset on every open like an Arduino "
            "does; by default each controller does what the real one does.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a simulated controller on a pseudo-terminal until Ctrl-C (or SIGTERM, SIGHUP),
    printing its URL."""
    device = _simulator(firmware, time_scale, keep_state)
    with device:
        typer.echo(f"{firmware} simulator on {device.path} (-> {device.pts})")
        typer.echo(f"url: {getattr(device, 'url', '')}")
        typer.echo("press Ctrl-C to stop")
        done = threading.Event()
        with signals_handled(lambda _signum: done.set()):
            while not done.wait(0.5):
                pass
    typer.echo("simulator stopped")
