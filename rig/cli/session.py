"""``rig plan``, ``rig shoot``, ``rig resume`` and ``rig demo``: capture sessions from the shell.

``rig demo`` is the first command to try: a complete session on the simulated rig (libgphoto2's
virtual camera, the GRBL simulator on a pseudo-terminal, a synthetic 3-D scene rendered at each
rail position) with live stacking. It points libgphoto2 at its virtual camera (``VCAMERADIR``)
before anything imports gphoto2, which is why no camera code is imported at module level here.

Exit codes: 0 complete, 130 interrupted (Ctrl-C, SIGTERM; resumable), 2 bad input, 3 device not
found, 4 device busy, 5 motion refused or alarm, 6 other device fault, 1 a bug.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, get_args

import typer
from rich.console import Console
from rich.table import Table

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.plan import (
    Direction,
    PlanError,
    ShotPlan,
    default_settle_s,
    format_position,
    parse_plan_length,
)
from rig.session.folder import OUTPUT_FORMATS, SessionConfig, SessionFolder
from rig.session.journal import read_journal
from rig.session.runner import (
    RunnerOptions,
    SessionResult,
    SessionRunner,
    check_plan_fits,
    check_plan_within,
)
from rig.session.state import FinishReason
from rig.units import UnitError, parse_duration
from stacker.errors import UserError

METHODS = ("pyramid", "depthmap")
ALIGN_MODELS = ("similarity", "translation", "affine", "homography", "none")
ABORT_GRACE_S = 2.0
log = logging.getLogger("rig.session")
MAGNIFICATION_HELP = "Lens magnification (1 for 1:1), for the depth-of-field step; with -N."
F_NUMBER_HELP = "The lens's f-number as set, for the depth-of-field step; with -m."
OVERLAP_HELP = "Depth-of-field overlap between neighbouring frames, 0 to below 1."
DIRECTION_HELP = "Which end of the range is shot first."
DIRECTION_CHOICES = "<" + "|".join(get_args(Direction)) + ">"
EXPOSURE_DELAY_HELP = "Extra wait after the settle, before the shutter (mirror-up), e.g. 0.5s."
FLASH_RECYCLE_HELP = "Shortest time between two shutter releases (flash recharge), e.g. 2s."
RETURN_HELP = "Move back to the start of the range at the end."
ALIGN_HELP = "How frames are aligned: a similarity copes with focus breathing."
ALIGN_CHOICES = "<" + "|".join(ALIGN_MODELS) + ">"
CHECKPOINT_HELP = "Write the composite so far every N merged frames, so a crash loses little."
CAMERA_MODEL_HELP = "Camera model as `rig cameras` lists it (or a part), if several are connected."
CAMERA_PORT_HELP = "Camera port as `rig cameras` lists it (usb:001,007), if several are connected."
SETTLE_HELP = (
    "Wait after each move, e.g. 1.5s. Default: 0.5 s up to 1:1, then growing with "
    "--magnification to 2 s at 5x (at most 3 s)."
)
TARGET_HELP = (
    "Where the camera stores shots: auto (card on Canon, Nikon, Panasonic; RAM on Sony), "
    "ram, card (deleted after download) or both (a copy stays on the card)."
)
OVERLAP_HELP = (
    "Move to the next position while the last frame downloads (once its exposure is over)."
)
VIBRATION_HELP = (
    "Switch on the body's anti-shake release for the session: mirror lock-up (Canon, "
    "mirrorlock), exposure delay mode (Nikon, exposuredelaymode), electronic shutter (Sony, "
    "shuttertype; no flash sync)."
)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- plan options
def build_plan(
    *,
    plan_file: Path | None,
    start: str | None,
    end: str | None,
    step: str | None,
    frames: int | None,
    magnification: float | None,
    f_number: float | None,
    na: float | None,
    coc_mm: float,
    overlap: float,
    direction: str,
    settle: str | None,
    exposure_delay: str,
    flash_recycle: str,
    return_to_start: bool,
) -> ShotPlan:
    """A plan from ``--plan FILE`` or from ``--from/--to`` plus one way of spacing frames."""
    if plan_file is not None:
        try:
            text = plan_file.read_text()
        except OSError as exc:
            raise PlanError(f"{plan_file}: cannot read the plan ({exc.strerror})") from None
        plan = ShotPlan.from_json(text, source=str(plan_file))
        if settle is not None:
            plan = replace(plan, settle_s=_duration(settle, "--settle"))
        return plan
    if start is None or end is None:
        raise PlanError("give the range with --from and --to (e.g. --from 0mm --to 2mm)")
    near, near_units = parse_plan_length(start, what="--from")
    far, far_units = parse_plan_length(end, what="--to")
    if near_units != far_units:
        raise PlanError("--from and --to must both be lengths (um, mm) or both lens steps")
    ways = sum(x is not None for x in (step, frames)) + (
        1 if (magnification is not None or f_number is not None or na is not None) else 0
    )
    if ways != 1:
        raise PlanError(
            "space the frames one way: --step 50um, --frames 40, or the optics "
            "(--magnification 1 --f-number 8, or --na 0.25)"
        )
    timing: dict[str, Any] = {
        "direction": _direction(direction),
        "settle_s": (
            _duration(settle, "--settle") if settle is not None else default_settle_s(magnification)
        ),
        "exposure_delay_s": _duration(exposure_delay, "--exposure-delay"),
        "flash_recycle_s": _duration(flash_recycle, "--flash-recycle"),
        "return_to_start": return_to_start,
    }
    if step is not None:
        value, units = parse_plan_length(step, what="--step")
        if units != near_units:
            raise PlanError(f"--step {step} is not in the same units as --from/--to")
        return ShotPlan.from_step(near, far, value, units=near_units, **timing)
    if frames is not None:
        return ShotPlan.from_frames(near, far, frames, units=near_units, **timing)
    if near_units != "um":
        raise PlanError("a depth-of-field step needs --from/--to as lengths (um, mm), not steps")
    return ShotPlan.from_optics(
        near,
        far,
        magnification=magnification,
        f_number=f_number,
        numerical_aperture=na,
        coc_mm=coc_mm,
        overlap=overlap,
        **timing,
    )


def _duration(text: str, what: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as exc:
        raise PlanError(f"{what}: {exc}") from None


def _capture_target(text: str | None) -> Any:
    """``--capture-target`` checked (imported here: no camera code at module level)."""
    from rig.camera.shot import parse_capture_target

    return parse_capture_target(text)


def _direction(text: str) -> Any:
    if text not in ("near-to-far", "far-to-near"):
        raise PlanError(f"--direction {text}: use near-to-far or far-to-near")
    return text


def print_plan(plan: ShotPlan, console: Console, *, speed_per_s: float = 2000.0) -> None:
    """The plan as a table of positions with the step, count and estimated duration."""
    positions = plan.positions()
    console.print(f"shot plan: {plan.describe()}", markup=False)
    table = Table(show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("frame")
    table.add_column("position", justify="right")
    shown = positions if len(positions) <= 24 else (*positions[:10], None, *positions[-10:])
    for shot in shown:
        if shot is None:
            table.add_row("…", f"({len(positions) - 20} more)", "…")
        else:
            table.add_row(str(shot.index), shot.stem, format_position(shot.position, plan.units))
    console.print(table)
    if plan.optics is not None:
        console.print(f"optics: {plan.optics.describe()}")
    console.print(
        f"step {format_position(plan.step, plan.units)} × {plan.frames} frames, "
        f"settle {plan.settle_s:g} s"
        + (f", exposure delay {plan.exposure_delay_s:g} s" if plan.exposure_delay_s else "")
        + (f", flash recycle {plan.flash_recycle_s:g} s" if plan.flash_recycle_s else "")
        + (", return to start" if plan.return_to_start else "")
    )
    minutes, seconds = divmod(round(plan.estimate_duration(speed_per_s=speed_per_s)), 60)
    console.print(f"estimated duration: {minutes} min {seconds:02d} s (1.5 s per shot assumed)")


# ----------------------------------------------------------------------------- run a session
def run_interruptible(runner: SessionRunner, console: Console) -> SessionResult:
    """Run ``runner`` on a capture thread; Ctrl-C/SIGTERM stop it, a second one aborts.

    The first signal asks the session to stop after the frame in flight (the rail halts at
    once; journal and composite are written). The second aborts: stacking is dropped and, if
    the capture thread does not return within a moment (a camera stuck mid-transfer), the
    process exits 130 with the journal closed between two whole lines.
    """
    box: list[SessionResult] = []
    signals = 0
    aborted_at: float | None = None

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal signals, aborted_at
        signals += 1
        name = signal.Signals(signum).name
        if signals == 1:
            console.print(
                f"[yellow]{name}: stopping after this frame "
                "(press Ctrl-C again to abort at once)[/yellow]"
            )
            runner.request_stop()
        else:
            console.print(f"[red]{name}: aborting[/red]")
            aborted_at = time.monotonic()
            runner.abort()

    thread = threading.Thread(target=lambda: box.append(runner.run()), name="capture", daemon=True)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            if aborted_at is not None and time.monotonic() - aborted_at > ABORT_GRACE_S:
                _hard_exit(runner, 130)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return box[0]


def _hard_exit(runner: SessionRunner, code: int) -> None:
    """Exit now, the journal closed between two whole lines (an abort with a thread stuck)."""
    runner.close_journal()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def report(result: SessionResult, folder: SessionFolder, console: Console) -> None:
    """Say how the session ended and where everything is."""
    s = result.status
    reason = result.reason
    colour = {"completed": "green", "interrupted": "yellow", "aborted": "yellow"}.get(
        reason.value, "red"
    )
    console.print(
        f"[{colour}]session {reason.value}[/{colour}]: {s.captured}/{s.total} frames captured, "
        f"{s.merged} merged" + (f", {s.rejected} kept out" if s.rejected else "")
    )
    if result.error is not None and reason is FinishReason.FAULT:
        console.print(f"[red]fault:[/red] {result.error}", markup=True)
    for p in result.outputs:
        console.print(f"  {p}")
    console.print(f"session folder: {folder.root}")
    if reason is not FinishReason.COMPLETED:
        console.print(f"continue with: rig resume {folder.root}")


def _run_and_exit(
    runner: SessionRunner,
    folder: SessionFolder,
    console: Console,
    preview: tuple[bool, str, int] = (False, "127.0.0.1", 8000),
) -> None:
    from rig.preview import serve_session_preview
    from rig.session.display import SessionDisplay

    display = SessionDisplay(console, title=folder.root.name)
    display.attach(runner)
    with serve_session_preview(runner, *preview), display:
        result = run_interruptible(runner, console)
    report(result, folder, console)
    if result.reason is FinishReason.ABORTED and runner.stacking:
        _hard_exit(runner, 130)  # never finalise the interpreter under a thread in C code
    if result.reason is FinishReason.ERROR and not isinstance(result.error, RigError | None):
        raise result.error  # a bug: keep its traceback
    raise typer.Exit(result.exit_code)


def _default_out(prefix: str) -> Path:
    return Path(f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise PlanError(f"{what} '{value}': use {', '.join(choices)}")
    return value


def _with_hint(exc: UserError, hint: str) -> UserError:
    """``exc`` with ``; hint`` appended, keeping its type (and so its exit code)."""
    try:
        return type(exc)(f"{exc}; {hint}")
    except TypeError:
        plain = RigError(f"{exc}; {hint}")
        plain.exit_code = exc.exit_code
        return plain


def establish_reference(
    focuser: Any, *, home: bool, accept: bool, last_shot: tuple[int, float] | None, units: str
) -> None:
    """Make sure the focuser's positions mean what the plan's do before anything moves.

    A controller that restarted when its port was opened (an Arduino resets on DTR) counts from
    0 wherever the carriage stands, and a lens counts from where focus stood; shooting on
    regardless would shift the whole stack, possibly into a hard stop. So: ``home`` runs the
    homing cycle; ``accept`` takes the current position as the reference (for a resume, the
    focuser is told it stands where ``last_shot``, the last frame shot, was); otherwise an
    unreferenced focuser is refused with a one-line error saying what to do.
    """
    if home:
        focuser.home()
        return
    problem = focuser.capabilities.unreferenced
    if problem is None:
        return
    if accept:
        focuser.accept_position(None if last_shot is None else last_shot[1])
        return
    if last_shot is None:
        raise MotionError(
            f"{focuser.name}: {problem}; home it first (--home), or take the current position "
            "as the reference with --accept-position"
        )
    index, position = last_shot
    raise MotionError(
        f"{focuser.name}: {problem}, so this session's positions would shift; home it (--home) "
        f"if the session was shot after homing, or, if nothing has moved since frame {index} "
        f"was shot at {format_position(position, units)}, resume with --accept-position"
    )


@contextlib.contextmanager
def hardware_rig(
    rig: dict[str, Any],
    *,
    rail_hint: str | None = None,
    home: bool = False,
    accept_position: bool = False,
    last_shot: tuple[int, float] | None = None,
    units: str = "um",
    say: Callable[[str], Any] = log.info,
) -> Iterator[tuple[Any, Any]]:
    """Open the focuser and camera described by a session's ``rig`` block.

    ``home``, ``accept_position`` and ``last_shot`` (the last frame shot, when resuming) go to
    :func:`establish_reference`, so positions mean the same after a power cut or a controller
    reset. A new lens-motor session counts from where focus stands: that is its reference.
    ``say`` reports what the camera set up (the anti-vibration setting, if asked for).
    """
    from rig.camera import Camera
    from rig.camera.shot import parse_capture_target
    from rig.rails import open_focuser

    focus = rig.get("focus", "rail")
    try:
        camera_cm = Camera.open(
            model=rig.get("camera_model"),
            port=rig.get("camera_port"),
            capture_target=parse_capture_target(rig.get("capture_target", "auto")),
        )
        camera = camera_cm.__enter__()
    except DeviceNotFoundError as exc:
        raise _with_hint(exc, "no camera? `rig demo` runs the simulated rig") from None
    try:
        try:
            if focus == "camera":  # the lens motor of the camera just opened
                focuser = open_focuser(rig.get("rail") or "camera://", camera=camera)
            else:
                focuser = open_focuser(rig["rail"])
        except UserError as exc:
            if rail_hint is None:
                raise
            raise _with_hint(exc, rail_hint) from None
        try:
            if rig.get("anti_vibration"):
                done = camera.reduce_vibration()
                say(f"anti-vibration: {done or 'this body offers none; settle time only'}")
            new_lens_session = focus == "camera" and last_shot is None
            establish_reference(
                focuser,
                home=home,
                accept=accept_position or new_lens_session,
                last_shot=last_shot,
                units=units,
            )
            for text in getattr(focuser, "setup_warnings", list)():
                _console().print(f"warning: {text}", markup=False, style="yellow")
            yield focuser, camera
        finally:
            focuser.close()
    finally:
        camera_cm.__exit__(None, None, None)


# ----------------------------------------------------------------------------- commands
def register(app: typer.Typer) -> None:
    """Add ``plan``, ``shoot``, ``resume`` and ``demo`` to the ``rig`` app."""

    @app.command("plan")
    def plan_cmd(
        start: str | None = typer.Option(None, "--from", help="Near end: 0mm, 250um, 0steps."),
        end: str | None = typer.Option(None, "--to", help="Far end: 2mm, 1500um, 40steps."),
        step: str | None = typer.Option(None, "--step", help="Distance between frames: 50um."),
        frames: int | None = typer.Option(None, "--frames", help="Number of frames."),
        magnification: float | None = typer.Option(
            None, "--magnification", "-m", help=MAGNIFICATION_HELP
        ),
        f_number: float | None = typer.Option(None, "--f-number", "-N", help=F_NUMBER_HELP),
        na: float | None = typer.Option(None, "--na", help="Microscope objective NA."),
        coc: float = typer.Option(0.015, "--coc", help="Circle of confusion, mm."),
        overlap: float = typer.Option(0.2, "--overlap", help=OVERLAP_HELP),
        direction: str = typer.Option(
            "near-to-far", "--direction", help=DIRECTION_HELP, metavar=DIRECTION_CHOICES
        ),
        settle: str | None = typer.Option(None, "--settle", help=SETTLE_HELP),
        exposure_delay: str = typer.Option("0s", "--exposure-delay", help=EXPOSURE_DELAY_HELP),
        flash_recycle: str = typer.Option("0s", "--flash-recycle", help=FLASH_RECYCLE_HELP),
        return_to_start: bool = typer.Option(True, "--return/--no-return", help=RETURN_HELP),
        plan_file: Path | None = typer.Option(None, "--plan", help="Read a plan JSON file."),
        save: Path | None = typer.Option(None, "--save", help="Write the plan as JSON."),
    ) -> None:
        """Print a shot plan (positions, step, count, duration); moves nothing."""
        plan = build_plan(
            plan_file=plan_file,
            start=start,
            end=end,
            step=step,
            frames=frames,
            magnification=magnification,
            f_number=f_number,
            na=na,
            coc_mm=coc,
            overlap=overlap,
            direction=direction,
            settle=settle,
            exposure_delay=exposure_delay,
            flash_recycle=flash_recycle,
            return_to_start=return_to_start,
        )
        console = _console()
        print_plan(plan, console)
        if save is not None:
            from stacker.io import atomic_write_bytes

            try:
                atomic_write_bytes(save, plan.to_json().encode())
            except OSError as exc:
                raise PlanError(f"{save}: cannot write the plan ({exc.strerror})") from None
            console.print(f"plan written to {save}")

    @app.command("shoot")
    def shoot_cmd(
        rail: str | None = typer.Option(None, "--rail", help="Rail URL: grbl:///dev/ttyUSB0."),
        focus: str = typer.Option("rail", "--focus", help="rail, or camera (lens motor)."),
        start: str | None = typer.Option(None, "--from", help="Near end: 0mm, 0steps."),
        end: str | None = typer.Option(None, "--to", help="Far end: 2mm, 40steps."),
        step: str | None = typer.Option(None, "--step", help="Distance between frames: 50um."),
        frames: int | None = typer.Option(None, "--frames", help="Number of frames."),
        magnification: float | None = typer.Option(
            None, "--magnification", "-m", help=MAGNIFICATION_HELP
        ),
        f_number: float | None = typer.Option(None, "--f-number", "-N", help=F_NUMBER_HELP),
        na: float | None = typer.Option(None, "--na", help="Microscope objective NA."),
        coc: float = typer.Option(0.015, "--coc", help="Circle of confusion, mm."),
        overlap: float = typer.Option(0.2, "--overlap", help=OVERLAP_HELP),
        direction: str = typer.Option(
            "near-to-far", "--direction", help=DIRECTION_HELP, metavar=DIRECTION_CHOICES
        ),
        settle: str | None = typer.Option(None, "--settle", help=SETTLE_HELP),
        exposure_delay: str = typer.Option("0s", "--exposure-delay", help=EXPOSURE_DELAY_HELP),
        flash_recycle: str = typer.Option("0s", "--flash-recycle", help=FLASH_RECYCLE_HELP),
        return_to_start: bool = typer.Option(True, "--return/--no-return", help=RETURN_HELP),
        plan_file: Path | None = typer.Option(None, "--plan", help="Read a plan JSON file."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Session folder to create."),
        method: str = typer.Option("pyramid", "--method", help="pyramid or depthmap."),
        align: str = typer.Option("similarity", "--align", help=ALIGN_HELP, metavar=ALIGN_CHOICES),
        output_format: str = typer.Option(
            "tif", "--format", help="tif, png, jpg, or dng (stacks the RAW files in linear light)."
        ),
        checkpoint_every: int = typer.Option(8, "--checkpoint-every", help=CHECKPOINT_HELP),
        camera_model: str | None = typer.Option(None, "--camera-model", help=CAMERA_MODEL_HELP),
        camera_port: str | None = typer.Option(None, "--camera-port", help=CAMERA_PORT_HELP),
        capture_target: str = typer.Option("auto", "--capture-target", help=TARGET_HELP),
        anti_vibration: bool = typer.Option(
            False, "--anti-vibration/--no-anti-vibration", help=VIBRATION_HELP
        ),
        move_during_download: bool = typer.Option(
            True, "--move-during-download/--no-move-during-download", help=OVERLAP_HELP
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; move nothing."),
        home: bool = typer.Option(
            False, "--home", help="Home the rail first (positions are then from its switch)."
        ),
        accept_position: bool = typer.Option(
            False,
            "--accept-position",
            help="Take the rail's current position as the reference, even though its "
            "controller restarted when the port opened (it then reads 0 where it stands).",
        ),
        preview: bool = typer.Option(
            False, "--preview/--no-preview", help="Serve the live preview page."
        ),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Preview address; 0.0.0.0 lets other machines in."
        ),
        port: int = typer.Option(8000, "--port", help="Preview port."),
    ) -> None:
        """Step focus, shoot a frame at each position and stack it live."""
        plan = build_plan(
            plan_file=plan_file,
            start=start,
            end=end,
            step=step,
            frames=frames,
            magnification=magnification,
            f_number=f_number,
            na=na,
            coc_mm=coc,
            overlap=overlap,
            direction=direction,
            settle=settle,
            exposure_delay=exposure_delay,
            flash_recycle=flash_recycle,
            return_to_start=return_to_start,
        )
        _check_choice(method, METHODS, "--method")
        _check_choice(align, ALIGN_MODELS, "--align")
        _check_choice(output_format, tuple(OUTPUT_FORMATS), "--format")
        if focus not in ("rail", "camera"):
            raise PlanError(f"--focus {focus}: use rail or camera")
        if rail is not None and rail.startswith("camera://"):
            focus = "camera"  # --rail camera://?size=2 drives the lens with options
        if focus == "rail" and rail is None:
            raise PlanError(
                "give the rail with --rail URL (e.g. grbl:///dev/ttyUSB0), or --focus camera"
            )
        if focus == "camera" and plan.units != "steps":
            raise PlanError(
                "--focus camera moves the lens in steps: give --from/--to/--step in steps"
            )
        if focus == "rail" and plan.units != "um":
            raise PlanError("a rail moves in um/mm: give --from/--to/--step as lengths")
        _capture_target(capture_target)
        console = _console()
        if dry_run:
            from rig.rails import declared_capabilities

            url = rail or "camera://"
            check_plan_within(plan, url, declared_capabilities(url))
            print_plan(plan, console)
            console.print("dry run: nothing moved (soft limits checked: those in the URL)")
            return
        rig = {
            "kind": "hardware",
            "focus": focus,
            "rail": rail,
            "camera_model": camera_model,
            "camera_port": camera_port,
            "capture_target": capture_target,
            "anti_vibration": anti_vibration,
        }
        config = SessionConfig(
            rig=rig,
            method=method,
            align=align,
            output_format=output_format,
            checkpoint_every=checkpoint_every,
        )
        root = out or _default_out("stack")
        with hardware_rig(
            rig,
            home=home,
            accept_position=accept_position,
            units=plan.units,
            say=console.print,
        ) as (focuser, camera):
            check_plan_fits(plan, focuser)
            folder = SessionFolder.create(root, plan, config)
            console.print(f"session {folder.root}: {plan.describe()}")
            runner = SessionRunner(
                folder,
                focuser=focuser,
                camera=camera,
                plan=plan,
                config=config,
                options=RunnerOptions(move_during_download=move_during_download),
            )
            _run_and_exit(runner, folder, console, (preview, host, port))

    @app.command("resume")
    def resume_cmd(
        session: Path = typer.Argument(..., help="The session folder to continue."),
        rail: str | None = typer.Option(None, "--rail", help="New rail URL if its port changed."),
        camera_model: str | None = typer.Option(None, "--camera-model", help=CAMERA_MODEL_HELP),
        camera_port: str | None = typer.Option(None, "--camera-port", help=CAMERA_PORT_HELP),
        capture_target: str | None = typer.Option(
            None, "--capture-target", help=TARGET_HELP + " Default: as the session was shot."
        ),
        move_during_download: bool = typer.Option(
            True, "--move-during-download/--no-move-during-download", help=OVERLAP_HELP
        ),
        home: bool = typer.Option(
            False,
            "--home",
            help="Home the rail first: after a power cut the controller forgot its position.",
        ),
        accept_position: bool = typer.Option(
            False,
            "--accept-position",
            help="Nothing has moved since the last frame was shot: the rail (or lens) is told "
            "it stands there and the session continues.",
        ),
        preview: bool = typer.Option(
            False, "--preview/--no-preview", help="Serve the live preview page."
        ),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Preview address; 0.0.0.0 lets other machines in."
        ),
        port: int = typer.Option(8000, "--port", help="Preview port."),
    ) -> None:
        """Continue an interrupted session at its first missing frame; nothing is shot twice.

        Positions are the rail's own coordinates: the rail must still know where it is, or be
        homed with --home when the session was shot after homing too. A controller that
        restarted (an Arduino resets when its port opens) or a lens motor does not know: resume
        refuses unless --home, or --accept-position when nothing has moved since the last frame.
        """
        folder = SessionFolder.find(session)
        plan = folder.load_plan()
        config = folder.load_config()
        journal = read_journal(folder.journal_path)  # a broken hand edit: refused before the rig
        console = _console()
        _capture_target(capture_target)
        options = RunnerOptions(move_during_download=move_during_download)
        if config.rig.get("kind") == "simulated":
            _prepare_virtual_camera()
            from rig.sim.rig import SimRigSpec, SimulatedRig

            spec = SimRigSpec.from_dict(config.rig)
            if capture_target is not None:
                spec = replace(spec, capture_target=capture_target)
            with SimulatedRig(spec) as sim:
                console.print(f"resuming {folder.root} on the simulated rig")
                runner = SessionRunner(
                    folder,
                    focuser=sim.focuser,
                    camera=sim.camera,
                    plan=plan,
                    config=config,
                    options=options,
                )
                _run_and_exit(runner, folder, console, (preview, host, port))
            return
        overrides = {
            "rail": rail,
            "camera_model": camera_model,
            "camera_port": camera_port,
            "capture_target": capture_target,
        }
        rig = {**config.rig, **{k: v for k, v in overrides.items() if v is not None}}
        hint = f"if the rail is on another port now, give it: rig resume {folder.root} --rail URL"
        # read_journal checked the records: an index is a whole number, a position finite
        shot = [r for r in journal.of_kind("frame") if r.get("position") is not None]
        last_shot = (int(shot[-1]["index"]), float(shot[-1]["position"])) if shot else None
        with hardware_rig(
            rig,
            rail_hint=hint,
            home=home,
            accept_position=accept_position,
            last_shot=last_shot,
            units=plan.units,
            say=console.print,
        ) as (focuser, camera):
            if rig != config.rig:
                config = replace(config, rig=rig)
                folder.save_config(config)
            console.print(f"resuming {folder.root}")
            runner = SessionRunner(
                folder, focuser=focuser, camera=camera, plan=plan, config=config, options=options
            )
            _run_and_exit(runner, folder, console, (preview, host, port))

    @app.command("demo")
    def demo_cmd(
        out: Path | None = typer.Option(None, "--out", "-o", help="Session folder to create."),
        frames: int = typer.Option(24, "--frames", help="Number of frames."),
        size: str = typer.Option("1440x1080", "--size", help="Frame size WxH."),
        method: str = typer.Option("pyramid", "--method", help="pyramid or depthmap."),
        output_format: str = typer.Option("tif", "--format", help="tif, png or jpg."),
        settle: str = typer.Option("0.5s", "--settle", help="Wait after each move."),
        time_scale: float = typer.Option(5.0, "--time-scale", help="Rail runs this much faster."),
        fault: str | None = typer.Option(
            None,
            "--fault",
            help="Rehearse a fault: camera@K, alarm@K or disconnect@K fails at frame K.",
        ),
        seed: int = typer.Option(7, "--seed", help="Scene seed."),
        camera: str = typer.Option(
            "virtual",
            "--camera",
            help="virtual (libgphoto2's virtual body), or canon, nikon, sony: the virtual body "
            "answering as those bodies do through libgphoto2.",
        ),
        capture_target: str | None = typer.Option(None, "--capture-target", help=TARGET_HELP),
        raw_mb: float = typer.Option(
            0.0, "--raw-mb", help="Simulate the USB 2 transfer of files this large (50: 2 s)."
        ),
        raw_plus_jpeg: bool = typer.Option(False, "--raw-plus-jpeg", help="Two files a shot."),
        move_during_download: bool = typer.Option(
            True, "--move-during-download/--no-move-during-download", help=OVERLAP_HELP
        ),
        preview: bool = typer.Option(
            False, "--preview/--no-preview", help="Serve the live preview page."
        ),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Preview address; 0.0.0.0 lets other machines in."
        ),
        port: int = typer.Option(8000, "--port", help="Preview port."),
    ) -> None:
        """A complete session on the simulated rig: virtual camera, GRBL simulator, 3-D scene."""
        _prepare_virtual_camera()  # before anything imports gphoto2
        from rig.camera.shot import parse_capture_target
        from rig.sim.rig import SimRigSpec, SimulatedRig, parse_fault, parse_size

        width, height = parse_size(size)
        _check_choice(method, METHODS, "--method")
        _check_choice(output_format, tuple(OUTPUT_FORMATS), "--format")
        if OUTPUT_FORMATS[output_format] == ".dng":
            raise PlanError(
                "--format dng stacks RAW frames, and the simulated camera shoots JPEG: "
                "use tif, png or jpg"
            )
        if not 2 <= frames <= 500:
            raise PlanError(f"--frames {frames}: the demo takes 2 to 500 frames")
        spec = SimRigSpec(
            width=width,
            height=height,
            seed=seed,
            time_scale=time_scale,
            camera=camera,
            capture_target=parse_capture_target(capture_target),
            raw_mb=raw_mb,
            raw_plus_jpeg=raw_plus_jpeg,
            fault=parse_fault(fault),
        )
        plan = ShotPlan.from_frames(
            0.0,
            spec.depth_um,
            frames,
            settle_s=_duration(settle, "--settle"),
            return_to_start=True,
        )
        config = SessionConfig(
            rig=spec.to_dict(),
            method=method,
            output_format=output_format,
            checkpoint_every=max(4, frames // 4),
        )
        console = _console()
        root = out or _default_out("demo")
        with SimulatedRig(spec) as sim:
            folder = SessionFolder.create(root, plan, config)
            console.print(
                f"demo: {frames} frames of {width}x{height} from the virtual camera, "
                f"rail {sim.rail_url}, session {folder.root}"
            )
            runner = SessionRunner(
                folder,
                focuser=sim.focuser,
                camera=sim.camera,
                plan=plan,
                config=config,
                options=RunnerOptions(retry_delay_s=0.2, move_during_download=move_during_download),
            )
            _run_and_exit(runner, folder, console, (preview, host, port))

    _ = (plan_cmd, shoot_cmd, resume_cmd, demo_cmd)


def _prepare_virtual_camera() -> None:
    """Point libgphoto2 at the virtual camera; must run before gphoto2 is first imported."""
    from rig.sim.rig import enable_virtual_camera

    enable_virtual_camera()
