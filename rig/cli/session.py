"""``rig plan``, ``rig shoot``, ``rig resume`` and ``rig demo``: capture sessions from the shell.

``rig demo`` is the first command to try: a complete session on the simulated rig (libgphoto2's
virtual camera, the GRBL simulator on a pseudo-terminal, a synthetic 3-D scene rendered at each
rail position) with live stacking. It points libgphoto2 at its virtual camera (``VCAMERADIR``)
before anything imports gphoto2, which is why no camera code is imported at module level here.

Exit codes: 0 complete, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP; resumable), 2 bad input, 3
device not found, 4 device busy, 5 motion refused or alarm, 6 other device fault, 1 a bug. A
console that goes away or fills (the ssh connection dropped, output piped into ``head`` or to a
full disk) does not end a session: see :func:`stacker.cliutil.guard_std_streams`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.cli import options as opt
from rig.devices import hardware_rig
from rig.errors import RigError
from rig.plan import PlanError, ShotPlan, format_position
from rig.preview import session_preview
from rig.rails.url import left_behind, on_new_port
from rig.session.folder import (
    Reconciliation,
    SessionConfig,
    SessionFolder,
    check_new,
    check_plan_matches,
    check_reference,
    dated_folder,
    reconcile,
    resume_command,
    shell_path,
    stacked_kind,
)
from rig.session.journal import JournalContents, rail_left, read_journal
from rig.session.runner import (
    CompositeFormatError,
    RunnerOptions,
    SessionResult,
    SessionRunner,
    check_plan_fits,
    check_plan_within,
)
from rig.session.state import FinishReason
from rig.spec import RigSpec, check_rig_kinds, option_name, parse_timing
from stacker.cliutil import prints_its_result, signals_handled, takes
from stacker.launch import wind_down
from stacker.options import StackOptions
from stacker.preview.hub import PreviewHub

ABORT_GRACE_S = 2.0


def _console() -> Console:
    """The sessions' console: no markup, since what it prints holds folder names, rail and
    camera messages (``[MSG:...]``) whose brackets rich would take for styles or choke on."""
    return Console(highlight=False, soft_wrap=True, markup=False)


# ----------------------------------------------------------------------------- plans
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
    assumed = "1.5 s per shot" + (", the rail at 2 mm/s" if plan.units == "um" else "")
    console.print(f"estimated duration: {minutes} min {seconds:02d} s ({assumed} assumed)")


# ----------------------------------------------------------------------------- run a session
def run_interruptible(
    runner: SessionRunner, console: Console, *, referenced_by: str | None = None
) -> SessionResult:
    """Run ``runner`` on a capture thread; Ctrl-C, SIGTERM or SIGHUP stop it, a second
    Ctrl-C or SIGTERM aborts.

    The first signal asks the session to stop after the frame in flight (the rail halts at
    once; journal and composite are written). The second aborts: stacking is dropped and, if
    the capture thread does not return within a moment (a camera stuck mid-transfer), the
    process exits 130 with the journal closed between two whole lines, saying how to resume
    (``referenced_by``: see :func:`report`). A hangup (the terminal
    closed, the ssh connection dropped) never aborts: one drop may deliver it twice (the
    kernel to the foreground job, the login shell to each of its jobs), and nobody meant it.
    """
    box: list[SessionResult] = []
    signals = 0
    aborted_at: float | None = None

    def handler(signum: int) -> None:
        nonlocal signals, aborted_at
        if signals and signum == signal.SIGHUP:
            return  # a hangup after the first signal: the stop goes on (see above)
        signals += 1
        name = signal.Signals(signum).name
        # Done first, said after: on a terminal nobody reads (an ssh client asleep, Ctrl-S)
        # the saying blocks, and the stop was never asked for.
        if signals == 1:
            runner.request_stop()
            _say(
                console,
                f"{name}: stopping after this frame (press Ctrl-C again to abort at once)",
                style="yellow",
            )
        else:
            aborted_at = time.monotonic()
            runner.abort()
            _say(console, f"{name}: aborting", style="red")

    thread = threading.Thread(target=lambda: box.append(runner.run()), name="capture", daemon=True)
    with signals_handled(handler):
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            if aborted_at is not None and time.monotonic() - aborted_at > ABORT_GRACE_S:
                # A slow machine still stacking, or a camera stuck: no report is coming.
                _say(
                    console,
                    "session aborted: every frame on disk is kept\n"
                    f"continue with: {resume_hint(runner.folder.root, referenced_by)}",
                    style="yellow",
                )
                _hard_exit(runner, 130)
    if not signals:
        # The session is over, and its journal says how: a signal now (an ssh drop as the
        # report prints) is let pass, as once a command's work is done, and the command ends
        # with the session's status. Raised, it turned a completed session into "interrupted"
        # (status 130) and cut the camera's close short, its settings not put back.
        wind_down(passes=1)
    if not box:  # the run itself failed (a bug): its traceback is above; the frames are kept
        raise RigError(
            f"{runner.folder.root}: the session stopped unexpectedly; every frame on disk is "
            f"kept: {resume_command(runner.folder.root)}"
        )
    return box[0]


def _say(console: Console, text: str, **style: Any) -> threading.Thread:
    """Print ``text`` on a thread of its own: a terminal nobody reads holds the print, not
    whoever asked for it."""
    thread = threading.Thread(
        target=console.print, args=(text,), kwargs=style, name="say", daemon=True
    )
    thread.start()
    return thread


def _hard_exit(runner: SessionRunner, code: int) -> None:
    """Exit now, the journal closed between two whole lines (an abort with a thread stuck);
    what is still to print gets a moment, not for ever (a terminal nobody reads)."""
    runner.close_journal()
    flush = threading.Thread(
        target=lambda: (sys.stdout.flush(), sys.stderr.flush()), name="flush", daemon=True
    )
    flush.start()
    flush.join(HARD_EXIT_FLUSH_S)
    os._exit(code)


HARD_EXIT_FLUSH_S = 1.0


def report(
    result: SessionResult,
    folder: SessionFolder,
    console: Console,
    *,
    referenced_by: str | None = None,
) -> None:
    """Say how the session ended and where everything is, and how to go on if it did not end:
    ``referenced_by`` is the option (``--home``, ``--accept-position``) this run needed for the
    rail's reference, which its resume will need again."""
    s = result.status
    reason = result.reason
    colour = {"completed": "green", "interrupted": "yellow", "aborted": "yellow"}.get(
        reason.value, "red"
    )
    console.print(
        Text.assemble(
            (f"session {reason.value}", colour),
            f": {s.counted} frames captured, {s.merged} merged",
            f", {s.rejected} kept out" if s.rejected else "",
        )
    )
    if result.error is not None and reason is FinishReason.FAULT:
        console.print(Text.assemble(("fault:", "red"), f" {result.error}"))
    for p in result.outputs:
        console.print(f"  {p}")
    console.print(f"session folder: {folder.root}")
    if reason is not FinishReason.COMPLETED and not isinstance(result.error, CompositeFormatError):
        console.print(f"continue with: {resume_hint(folder.root, referenced_by)}")


def resume_hint(root: Path, referenced_by: str | None) -> str:
    """The command that continues the session in ``root``, quoted for a shell. A rail homed
    for this run is homed again; one whose place was accepted is accepted again only by the
    photographer who knows it has not moved since (else the stack would shift)."""
    command = resume_command(root)
    if referenced_by == "--home":
        return f"{command} --home"
    if referenced_by == "--accept-position":
        return f"{command} (with --accept-position if nothing has moved since the last frame)"
    return command


def _run_and_exit(
    runner: SessionRunner,
    folder: SessionFolder,
    console: Console,
    page: PreviewHub | None = None,
    *,
    referenced_by: str | None = None,
) -> None:
    """Run the session with its terminal display (and its page on ``page``, from
    :func:`rig.preview.session_preview`), report (``referenced_by``: see :func:`report`), and
    exit with its code."""
    from rig.preview import SessionPreview
    from rig.session.display import SessionDisplay

    try:
        display = SessionDisplay(console, title=folder.root.name)
        display.attach(runner)
        if page is not None:
            SessionPreview(page).attach(runner)
        with display:
            result = run_interruptible(runner, console, referenced_by=referenced_by)
    except KeyboardInterrupt:
        # A stop before the run took over the signals (one ssh drop as the session's folder
        # was made): "rig: interrupted" alone left no word of the session or how to go on.
        console.print(f"session {folder.root}: interrupted before its first frame")
        console.print(f"continue with: {resume_hint(folder.root, referenced_by)}")
        raise typer.Exit(130) from None
    report(result, folder, console, referenced_by=referenced_by)
    if result.reason is FinishReason.ABORTED and runner.stacking:
        _hard_exit(runner, 130)  # never finalise the interpreter under a thread in C code
    if result.reason is FinishReason.ERROR and not isinstance(result.error, RigError | None):
        raise result.error  # a bug: keep its traceback
    raise typer.Exit(result.exit_code)


def _warn(console: Console) -> Callable[[str], None]:
    """Print a device's setup warnings in yellow."""
    return lambda text: console.print(f"warning: {text}", markup=False, style="yellow")


# ----------------------------------------------------------------------------- commands
@takes(opt.plan_options, "plan")
def plan_cmd(
    *,
    plan: ShotPlan,
    save: Annotated[Path | None, typer.Option("--save", help="Write the plan as JSON.")] = None,
) -> None:
    """Print a shot plan (positions, step, count, duration); moves nothing."""
    prints_its_result()
    console = _console()
    if save is not None:  # first: a plan that cannot be kept is one line, not a table and then
        from stacker.io import atomic_write_bytes

        if not save.is_symlink() and save.exists() and not save.is_file():
            # Renamed over, a device (/dev/null) or a pipe would be replaced by the plan.
            raise PlanError(f"{save}: not a regular file; give a file name such as plan.json")
        if not save.parent.is_dir():  # as `stacker stack -o` says it
            raise PlanError(f"{save}: the folder {save.parent} does not exist; create it first")
        if not save.is_symlink() and save.is_file() and not _holds_a_plan(save):
            # Notes or a frame (--save frame_0001.jpg, a slip of the tab key) were replaced.
            raise PlanError(
                f"{save}: exists and holds no plan; give another file name, or delete it first"
            )
        try:
            atomic_write_bytes(save, plan.to_json().encode())
        except OSError as exc:
            raise PlanError(f"{save}: cannot write the plan ({exc.strerror})") from None
    print_plan(plan, console)
    if save is not None:
        console.print(f"plan written to {save}")


def _holds_a_plan(path: Path) -> bool:
    """Whether ``path`` holds a plan (one saved before, which ``--save`` may replace)."""
    from stacker.pinned import read_small_text

    try:
        ShotPlan.from_json(read_small_text(path), source=str(path))  # as --plan reads one
    except (OSError, UnicodeDecodeError, PlanError):
        return False
    return True


@takes(opt.device_options, "devices")
@takes(opt.plan_options, "plan")
@takes(opt.stack_options, "stack")
@takes(opt.preview_options, "preview")
def shoot_cmd(
    *,
    devices: dict[str, Any],
    plan: ShotPlan,
    out: opt.ShootOut = None,
    stack: StackOptions,
    checkpoint_every: opt.CheckpointEvery = 8,
    capture_target: opt.CaptureTarget = "auto",
    anti_vibration: opt.AntiVibration = False,
    move_during_download: opt.MoveDuringDownload = True,
    incoming: Annotated[
        Path | None,
        typer.Option(
            "--incoming",
            help="No USB camera: fire it through the rail's shutter cable (StackShot, WeMacro) "
            "and take each frame from this folder, where a tethering program, Wi-Fi upload or "
            "card reader puts it.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; move nothing.")
    ] = False,
    home: opt.Home = False,
    accept_position: opt.AcceptPosition = False,
    preview: tuple[bool, str, int],
) -> None:
    """Step focus, shoot a frame at each position and stack it live."""
    rig = opt.rig_from_options(
        devices, capture_target=capture_target, anti_vibration=anti_vibration, incoming=incoming
    )
    rig.check_units(plan)
    console = _console()
    _check_declared(plan, rig)
    if dry_run:
        check_reference(plan, stack)
        print_plan(plan, console)
        console.print("dry run: nothing moved (soft limits checked: those in the URL)")
        return
    config = SessionConfig(rig=rig.to_dict(), stack=stack, checkpoint_every=checkpoint_every)
    root = out or dated_folder(Path(), "stack")
    check_new(root)  # before the rail's port is opened: that restarts an Arduino
    with (
        session_preview(*preview) as page,
        hardware_rig(
            rig,
            home=home,
            accept_position=accept_position,
            units=plan.units,
            warn=_warn(console),
            say=console.print,
        ) as (focuser, camera),
    ):
        from rig.camera.shot import check_saves_raw

        check_plan_fits(plan, focuser)
        check_saves_raw(camera, stack.suffix)
        folder = SessionFolder.create(root, plan, config, named=out is not None)
        console.print(f"session {folder.root}: {plan.describe()}")
        options = RunnerOptions(move_during_download=move_during_download)
        runner = SessionRunner(folder, focuser=focuser, camera=camera, options=options)
        _run_and_exit(
            runner, folder, console, page, referenced_by=_reference(home, accept_position)
        )


@takes(opt.preview_options, "preview")
def resume_cmd(
    session: Annotated[Path, typer.Argument(help="The session folder to continue.")],
    *,
    rail: Annotated[
        str | None, typer.Option("--rail", help="New rail URL if its port changed.")
    ] = None,
    camera_model: opt.CameraModel = None,
    camera_port: opt.CameraPort = None,
    capture_target: Annotated[
        str | None,
        typer.Option(
            "--capture-target", help=opt.TARGET_HELP + " Default: as the session was shot."
        ),
    ] = None,
    move_during_download: opt.MoveDuringDownload = True,
    home: Annotated[
        bool,
        typer.Option(
            "--home",
            help="Home the rail first: after a power cut the controller forgot its position.",
        ),
    ] = False,
    accept_position: Annotated[
        bool,
        typer.Option(
            "--accept-position",
            help="Nothing has moved since the last frame was shot: the rail (or lens) is told "
            "it stands there and the session continues.",
        ),
    ] = False,
    preview: tuple[bool, str, int],
) -> None:
    """Continue an interrupted session at its first missing frame; nothing is shot twice.

    Positions are the rail's own coordinates: the rail must still know where it is, or be
    homed with --home when the session was shot after homing too. A controller that
    restarted (an Arduino resets when its port opens) or a lens motor does not know: resume
    refuses unless --home, or --accept-position when nothing has moved since the last frame.
    """
    folder = SessionFolder.find(session)
    folder.lock()  # before reading what is done or opening a device another run may hold
    plan, config = folder.plan, folder.config
    journal = read_journal(folder.journal_path)  # a broken hand edit: refused before the rig
    check_plan_matches(plan, journal, folder.frames_on_disk(), source=str(folder.plan_path))
    console = _console()
    from rig.cli.tether import is_tether_session

    stacked = None if is_tether_session(config) else stacked_kind(config)
    recon = reconcile(plan, journal, folder.frames_on_disk(), stacked=stacked)
    if is_tether_session(config):
        moving = {"--rail": rail, "--capture-target": capture_target, "--home": home,
                  "--accept-position": accept_position}  # fmt: skip
        _refuse_unused(folder, moving, _TETHERED)
        _resume_tethered(folder, recon, console, preview, (camera_model, camera_port))
        return
    options = RunnerOptions(move_during_download=move_during_download)
    every_frame = not recon.missing
    if config.rig.get("kind") == "simulated":
        hardware = {"--rail": rail, "--camera-model": camera_model, "--camera-port": camera_port,
                    "--home": home, "--accept-position": accept_position}  # fmt: skip
        _refuse_unused(folder, hardware, _SIMULATED)
        if every_frame:
            _restack(folder, options, console, preview)
        else:
            _resume_simulated(folder, capture_target, options, console, preview)
        return
    from rig.camera.shot import parse_capture_target

    parse_capture_target(capture_target)  # as typed: merged below, it is named by its key
    if rail is not None and isinstance(config.rig.get("rail"), str):
        dropped = left_behind(rail, config.rig["rail"])
        rail, kept = on_new_port(rail, config.rig["rail"])
        if kept:
            console.print(f"--rail: the session's {', '.join(kept)} kept", markup=False)
        if dropped:
            console.print(
                f"warning: --rail names another kind of controller: the session's "
                f"{', '.join(dropped)} are not carried over; name them in its URL if they "
                "still apply (the frames shot so far used them)",
                markup=False,
            )
    overrides = {"rail": rail, "camera_model": camera_model, "camera_port": camera_port,
                 "capture_target": capture_target}  # fmt: skip
    check_rig_kinds(config.rig, name=lambda key: f"{folder.config_path}: '{key}'")
    block = {**config.rig, **{k: v for k, v in overrides.items() if v is not None}}
    rig = RigSpec.parse(block)
    if every_frame:
        _restack(folder, options, console, preview)
        return
    reference = _reference(home, accept_position)
    _resume_on_hardware(folder, journal, rig, block, options, console, preview, reference)


def _resume_on_hardware(
    folder: SessionFolder,
    journal: JournalContents,
    rig: RigSpec,
    block: dict[str, Any],
    options: RunnerOptions,
    console: Console,
    preview: tuple[bool, str, int],
    reference: str | None,
) -> None:
    """Resume a session on its rail and camera (``rig``, from the session's ``block`` with the
    options given; saved if they changed it), given the ``reference`` option (``--home`` or
    ``--accept-position``) or none."""
    plan, config = folder.plan, folder.config
    _check_declared(plan, rig)
    _check_same_zero(folder, journal, reference)
    again = resume_hint(folder.root, None)
    hint = f"if the rail is on another port now, give it: {again} --rail URL"
    camera_hint = (
        f"if the camera is on another port now (switched off and on, plugged in again), give "
        f"it: {again} --camera-port PORT (--camera-model MODEL for another body), as `rig "
        "cameras` lists them"
    )
    # read_journal checked the records: an index is a whole number, a position finite
    left = rail_left(journal)
    with (
        session_preview(*preview) as page,
        hardware_rig(
            rig,
            rail_hint=hint,
            camera_hint=camera_hint,
            home=reference == "--home",
            accept_position=reference == "--accept-position",
            left=left,
            units=plan.units,
            warn=_warn(console),
            say=console.print,
        ) as (focuser, camera),
    ):
        from rig.camera.shot import check_saves_raw

        check_plan_fits(plan, focuser)  # the controller's own limits, as for shoot
        check_saves_raw(camera, config.stack.suffix)  # before anything moves, as for shoot
        if block != config.rig:
            folder.save_config(replace(config, rig=block))
        console.print(f"resuming {folder.root}")
        runner = SessionRunner(folder, focuser=focuser, camera=camera, options=options)
        _run_and_exit(runner, folder, console, page, referenced_by=reference)


def _check_same_zero(
    folder: SessionFolder, journal: JournalContents, reference: str | None
) -> None:
    """Refuse ``--home`` for a session whose positions counted from where the carriage stood
    (shot with ``--accept-position``): homed, its missing frames were shot 50 mm from the
    others, and the session said "completed"."""
    started = journal.of_kind("start")
    if reference is not None and not started and folder.frames_on_disk():
        # The journal gone (not copied along, moved aside) or its start cut out by hand:
        # nothing says where the rail's 0 was nor where its last run left it. Taken as where
        # the carriage stands, or homed, the missing frames landed off the others' places
        # and the session said "completed".
        raise RigError(
            f"{folder.journal_path}: it has no record of the runs that shot this session's "
            f"frames, so nothing says where their positions counted from ({reference} would "
            "shoot the missing ones elsewhere). Put the session's journal back if you have "
            f"it; else stack what it has (stacker stack {shell_path(folder.frames_dir)} -o "
            "composite.tif) and shoot the rest as a new session"
        )
    if reference != "--home" or not started:
        return
    accepted = started[0].get("accepted")
    if accepted is True:
        raise RigError(
            f"{folder.root}: its positions count from where the carriage stood when it was "
            "shot (--accept-position), not from the home switch: homed, its missing frames "
            "would land elsewhere. If the rail has not moved since its last frame, resume with "
            "--accept-position; else shoot it again as a new session"
        )
    if accepted is None:  # a journal of a stackrig before 2026-12-06: it did not say
        raise RigError(
            f"{folder.root}: shot by an older stackrig, whose journal does not say whether its "
            "positions count from the home switch or from where the carriage stood "
            "(--accept-position): homed, its missing frames could land far from the others. "
            "If the rail has not moved since its last frame, resume with --accept-position; "
            f"else stack what it has (stacker stack {folder.root / 'frames'} -o composite.tif) "
            "and shoot the rest as a new session"
        )


def _reference(home: bool, accept_position: bool) -> str | None:
    """The reference option given to this run, if any."""
    return "--home" if home else "--accept-position" if accept_position else None


def _resume_tethered(
    folder: SessionFolder,
    recon: Reconciliation,
    console: Console,
    preview: tuple[bool, str, int],
    camera: tuple[str | None, str | None],
) -> None:
    """Resume a tether session: with the camera (``camera``: model and port given) while it
    has frames left to take, numbered after the last it had; else restacked without it,
    which may be unplugged by now. Frames it lost are left out: the camera cannot take them."""
    from rig.cli.tether import resume_tether

    lost = recon.leave_out_lost()
    if not recon.missing:
        _restack(folder, RunnerOptions(), console, preview, left_out=lost)
        return
    if folder.config.rig.get("kind") == "simulated":
        _prepare_virtual_camera()
    resume_tether(folder, console, preview, camera_model=camera[0], camera_port=camera[1])


def _check_declared(plan: ShotPlan, rig: RigSpec) -> None:
    """Refuse a plan outside the soft limits the rail's URL declares, before its port is opened
    (that restarts an Arduino) or the rail homes; the controller's own are checked once open."""
    from rig.rails import declared_capabilities

    url = rig.rail or "camera://"
    check_plan_within(plan, url, declared_capabilities(url))


_TETHERED = "is a tether session (the camera shoots by itself, nothing moves focus)"
_SIMULATED = "was shot on the simulated rig (rig demo), and resumes on one made as it was"


def _refuse_unused(folder: SessionFolder, options: dict[str, Any], why: str) -> None:
    """Refuse the resume options a session of this kind has no use for, naming the first given
    and ``why`` (what the session is)."""
    given = [name for name, value in options.items() if value]
    if given:
        raise RigError(f"{given[0]}: {folder.root} {why}; resume it without that option")


def _restack(
    folder: SessionFolder,
    options: RunnerOptions,
    console: Console,
    preview: tuple[bool, str, int],
    *,
    left_out: list[int] | None = None,
) -> None:
    """Resume a session that has every frame: stack them and write the outputs again, opening
    no device (its rail's port would restart an Arduino, and ask for a reference for nothing).

    ``left_out``: given for a tether session, the frames it lost, which stay out (its camera
    cannot take them again); ``None`` for a rail session, which has every frame on disk.
    """
    from rig.session.engine import NothingToShoot

    engine = NothingToShoot(reshoots=left_out is None)
    what = "every frame is there"
    if left_out:
        what += f" but {', '.join(map(str, left_out))} (lost: left out)"
    with session_preview(*preview) as page:
        console.print(f"resuming {folder.root}: {what}, stacking them again")
        runner = SessionRunner(folder, options=options, engine=lambda _hooks: engine)
        _run_and_exit(runner, folder, console, page)


def _resume_simulated(
    folder: SessionFolder,
    capture_target: str | None,
    options: RunnerOptions,
    console: Console,
    preview: tuple[bool, str, int],
) -> None:
    """Resume a session shot on the simulated rig, on a simulated rig made as it was."""
    _prepare_virtual_camera()
    from rig.camera.shot import parse_capture_target
    from rig.sim.rig import SimRigSpec, SimulatedRig

    spec = SimRigSpec.from_dict(folder.config.rig, folder.config_path)
    if capture_target is not None:
        spec = replace(spec, capture_target=parse_capture_target(capture_target))
    with session_preview(*preview) as page, SimulatedRig(spec) as sim:
        console.print(f"resuming {folder.root} on the simulated rig")
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera, options=options)
        _run_and_exit(runner, folder, console, page)


@takes(opt.sim_stack_options, "stack")
@takes(opt.preview_options, "preview")
def demo_cmd(
    *,
    out: opt.DemoOut = None,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames.")] = 24,
    size: opt.Size = "1440x1080",
    stack: StackOptions,
    settle: Annotated[str, typer.Option("--settle", help="Wait after each move.")] = "0.5s",
    time_scale: Annotated[
        float, typer.Option("--time-scale", help="Rail runs this much faster.")
    ] = 5.0,
    fault: Annotated[
        str | None,
        typer.Option(
            "--fault", help="Rehearse a fault: camera@K, alarm@K or disconnect@K fails at frame K."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Scene seed.")] = 7,
    camera: Annotated[
        str,
        typer.Option(
            "--camera",
            help="virtual (libgphoto2's virtual body), or canon, nikon, sony, fuji: the virtual "
            "body answering as those bodies do through libgphoto2 (with --tether, bracketing "
            "by itself).",
        ),
    ] = "virtual",
    capture_target: Annotated[
        str | None, typer.Option("--capture-target", help=opt.TARGET_HELP)
    ] = None,
    raw_mb: Annotated[
        float,
        typer.Option("--raw-mb", help="Simulate the USB 2 transfer of files this large (50: 2 s)."),
    ] = 0.0,
    raw_plus_jpeg: Annotated[
        bool,
        typer.Option(
            "--raw-plus-jpeg",
            help="Two files a shot; the simulated RAW file is a stand-in (the JPEG's data).",
        ),
    ] = False,
    move_during_download: opt.MoveDuringDownload = True,
    tether: Annotated[
        bool,
        typer.Option(
            "--tether",
            help="As `rig tether`: the simulated rig turns focus and presses the shutter; "
            "stackrig downloads and stacks what the camera shoots.",
        ),
    ] = False,
    preview: tuple[bool, str, int],
) -> None:
    """A complete session on the simulated rig: virtual camera, GRBL simulator, 3-D scene."""
    _prepare_virtual_camera()  # before anything imports gphoto2
    from rig.camera.shot import parse_capture_target
    from rig.sim.rig import SimRigSpec, SimulatedRig, parse_fault, parse_size

    width, height = parse_size(size)
    if not 2 <= frames <= 500:
        raise PlanError(f"--frames {frames}: the demo takes 2 to 500 frames")
    rehearsed = parse_fault(fault)
    if rehearsed is not None and rehearsed.frame > frames:  # it would never happen
        raise PlanError(f"--fault {fault}: the demo shoots {frames} frames; fail at 1 to {frames}")
    spec = SimRigSpec(
        width=width,
        height=height,
        seed=seed,
        time_scale=time_scale,
        camera=camera,
        capture_target=parse_capture_target(capture_target),
        raw_mb=raw_mb,
        raw_plus_jpeg=raw_plus_jpeg,
        fault=rehearsed,
    )
    console = _console()
    root = out or dated_folder(Path(), "demo")
    if tether:
        _check_tether_demo({"--fault": fault is not None,
                            "--capture-target": capture_target is not None,
                            "--raw-mb": bool(raw_mb),
                            "--raw-plus-jpeg": raw_plus_jpeg}, camera)  # fmt: skip
        from rig.cli.tether import demo_tether

        demo_tether(root, frames, spec, stack, console, preview, named=out is not None)
        return
    plan = ShotPlan.from_frames(
        0.0, spec.depth_um, frames, settle_s=_demo_settle(settle), return_to_start=True
    )
    config = SessionConfig(rig=spec.to_dict(), stack=stack, checkpoint_every=max(4, frames // 4))
    with session_preview(*preview) as page, SimulatedRig(spec) as sim:
        folder = SessionFolder.create(root, plan, config, named=out is not None)
        console.print(
            f"demo: {frames} frames of {width}x{height} from the virtual camera, "
            f"rail {sim.rail_url}, session {folder.root}"
        )
        options = RunnerOptions(retry_delay_s=0.2, move_during_download=move_during_download)
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera, options=options)
        _run_and_exit(runner, folder, console, page)


def _demo_settle(settle: str) -> float:
    """``--settle`` in seconds, 0 to an hour, read as a plan's (the plan file's check named
    its own field: "plan settle_s is 1e+09 s")."""
    seconds: float = parse_timing({"settle": settle}, option_name)["settle_s"]
    return seconds


def _check_tether_demo(given: dict[str, bool], camera: str) -> None:
    """Refuse the demo options a tether demo would ignore: nothing it does moves a rail, a
    bracketing body stores its files where its family does, and libgphoto2's virtual body as
    it is shoots one JPEG a shot."""
    named = [option for option, on in given.items() if on]
    if "--fault" in named:
        raise RigError("--fault rehearses rail sessions; leave it out with --tether")
    if "--capture-target" in named:
        raise RigError(
            "--capture-target: a tether demo's body stores its shots where its family does; "
            "leave it out with --tether"
        )
    if named and camera == "virtual":
        raise RigError(
            f"{named[0]}: libgphoto2's virtual body shoots one JPEG a shot; add --camera canon, "
            "nikon, sony or fuji for a body that brackets by itself, RAW files included"
        )


def _prepare_virtual_camera() -> None:
    """Point libgphoto2 at the virtual camera; must run before gphoto2 is first imported."""
    from rig.sim.rig import enable_virtual_camera

    enable_virtual_camera()
