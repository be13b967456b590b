"""``rig tether`` and ``rig demo --tether``: stack what the camera shoots by itself.

The camera steps focus (Nikon Z focus shift, Canon / OM System / Fujifilm / Panasonic / Sony
focus bracketing) or the photographer presses the shutter at each turn of a manual rail;
stackrig keeps the camera connected, downloads every file as it lands and stacks it at once,
into the same session folder as ``rig shoot`` (see :mod:`rig.session.tether`). It never
releases the shutter unless ``--trigger-every`` asks it to. ``rig resume`` continues a tether
session into the same folder. Gphoto2 is imported lazily: the demo chooses libgphoto2's virtual
camera before that import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from rig.camera.shot import check_saves_raw
from rig.cli import options as opt
from rig.devices import with_hint
from rig.errors import DeviceNotFoundError
from rig.plan import MAX_FRAMES
from rig.preview import session_preview
from rig.session.folder import SessionConfig, SessionFolder, check_new, dated_folder
from rig.session.tether import TetherSettings, tether_plan, tether_runner
from stacker.cliutil import takes
from stacker.options import StackOptions
from stacker.preview.hub import PreviewHub

IdleTimeout = Annotated[
    str | None,
    typer.Option(
        "--idle-timeout", help="End after this long without a new frame: 30s (default: wait)."
    ),
]
TriggerEvery = Annotated[
    str | None,
    typer.Option(
        "--trigger-every",
        help="Release the shutter every S seconds, for bodies that do not bracket by themselves.",
    ),
]


def is_tether_session(config: SessionConfig) -> bool:
    """Whether a session folder's ``session.json`` describes a tether session."""
    return isinstance(config.rig.get("tether"), dict)


def _run(
    folder: SessionFolder,
    tether: Any,
    settings: TetherSettings,
    console: Console,
    page: PreviewHub | None,
    *,
    shutter: Any = None,
) -> None:
    from rig.cli.session import _run_and_exit

    runner = tether_runner(folder, tether, settings)
    frames = folder.plan.frames
    ends = [f"after {frames} frames"] if frames != MAX_FRAMES else []
    if settings.idle_timeout_s is not None:
        ends.append(f"after {settings.idle_timeout_s:g} s without a new frame")
    ends.append("on Ctrl-C")
    console.print(
        f"tethered to {tether.camera.description}: waiting for the camera's shots "
        f"(ends {', '.join(ends)})"
        + (
            f"; releasing the shutter every {settings.trigger_every_s:g} s"
            if settings.trigger_every_s
            else ""
        ),
        markup=False,
    )
    if shutter is not None:
        runner.subscribe(shutter)
        shutter.start()
    try:
        _run_and_exit(runner, folder, console, page)
    finally:
        if shutter is not None:
            shutter.stop()


@takes(opt.stack_options, "stack")
@takes(opt.preview_options, "preview")
def tether_cmd(
    *,
    out: opt.TetherOut = None,
    frames: Annotated[
        int | None,
        typer.Option(
            "--frames",
            help=f"End after this many frames, at most {MAX_FRAMES} (default: at --idle-timeout "
            "or Ctrl-C).",
        ),
    ] = None,
    idle_timeout: IdleTimeout = None,
    trigger_every: TriggerEvery = None,
    stack: StackOptions,
    checkpoint_every: opt.CheckpointEvery = 8,
    camera_model: opt.CameraModel = None,
    camera_port: opt.CameraPort = None,
    preview: tuple[bool, str, int],
) -> None:
    """Download and stack what the camera shoots by itself (in-camera focus bracketing)."""
    from rig.cli.session import _console

    settings = TetherSettings.parse(frames, idle_timeout, trigger_every)
    plan = tether_plan(frames)
    rig = {
        "kind": "tether",
        "camera_model": camera_model,
        "camera_port": camera_port,
        "tether": settings.to_dict(),
    }
    config = SessionConfig(rig=rig, stack=stack, checkpoint_every=checkpoint_every)
    console = _console()
    root = out or dated_folder(Path(), "tether")
    check_new(root)  # before the camera is opened
    with session_preview(*preview) as page, open_tether(camera_model, camera_port) as tether:
        check_saves_raw(tether.camera, stack.suffix)  # as rig shoot: before the burst
        folder = SessionFolder.create(root, plan, config, named=out is not None)
        _run(folder, tether, settings, console, page)


@contextlib.contextmanager
def open_tether(model: str | None, port: str | None) -> Iterator[Any]:
    """The camera, opened for bursts (busy retried soon), as a Tether. A body whose session
    captures go to its card (Canon, Nikon, Panasonic) is set so for the tether too: left at
    libgphoto2's default, a Canon sent its frames to the computer alone (``capturetarget``
    PC), and a stop, a dropped link or a full disk lost the rest of the bracket. Other bodies
    keep their own setting (a Sony at ``card+sdram`` keeps its card copy)."""
    from rig.camera import Camera
    from rig.camera.shot import default_capture_target
    from rig.camera.tether import TETHER_RETRY, Tether

    with contextlib.ExitStack() as opened:
        try:
            camera = opened.enter_context(Camera.open(model, port, retry=TETHER_RETRY))
        except DeviceNotFoundError as exc:
            raise with_hint(exc, "no camera? `rig demo --tether` simulates one") from None
        if default_capture_target(camera.vendor) == "card":
            camera.set_capture_target("card")
        yield Tether(camera)


def resume_tether(
    folder: SessionFolder,
    console: Console,
    preview: tuple[bool, str, int],
    *,
    camera_model: str | None = None,
    camera_port: str | None = None,
) -> None:
    """Continue a tether session: new frames are numbered after those on disk."""
    rig = folder.config.rig
    settings = TetherSettings.from_rig(rig, folder.plan, source=str(folder.config_path))
    with session_preview(*preview) as page:
        if rig.get("kind") == "simulated":
            _demo_session(folder, settings, console, page)
            return
        model = camera_model or rig.get("camera_model")
        port = camera_port or rig.get("camera_port")
        with open_tether(model, port) as tether:
            check_saves_raw(tether.camera, folder.config.stack.suffix)
            console.print(f"resuming tether session {folder.root}")
            _run(folder, tether, settings, console, page)


def demo_tether(
    root: Path,
    frames: int,
    spec: Any,
    stack: Any,
    console: Console,
    preview: tuple[bool, str, int],
    *,
    named: bool = True,
) -> None:
    """``rig demo --tether``: the simulated rig presses the shutter ``frames`` times."""
    settings = TetherSettings(frames=frames, idle_timeout_s=30.0)
    plan = tether_plan(frames)
    rig = {**spec.to_dict(), "tether": settings.to_dict()}
    config = SessionConfig(rig=rig, stack=stack, checkpoint_every=max(4, frames // 4))
    with session_preview(*preview) as page:
        folder = SessionFolder.create(root, plan, config, named=named)
        _demo_session(folder, settings, console, page)


def _demo_session(
    folder: SessionFolder,
    settings: TetherSettings,
    console: Console,
    page: PreviewHub | None,
) -> None:
    from rig.camera.tether import Tether
    from rig.session.folder import reconcile
    from rig.session.journal import read_journal
    from rig.sim.rig import SimRigSpec, SimulatedRig
    from rig.sim.shutter import BracketPress, SimulatedShutter

    spec = SimRigSpec.from_dict(folder.config.rig, folder.config_path)
    plan = folder.plan
    # The frames the session will take: a frame it lost is left out, not shot again (its
    # numbers follow its last frame), so the photographer skips that focus plane too.
    recon = reconcile(plan, read_journal(folder.journal_path), folder.frames_on_disk())
    recon.leave_out_lost()
    missing = recon.missing
    last = max(plan.frames - 1, 1)
    positions = {i: spec.depth_um * (i - 1) / last for i in missing}
    bracketing = spec.camera != "virtual"
    with SimulatedRig(spec, body=_bracketing_body(positions) if bracketing else None) as sim:
        body = sim.body
        if body is None:
            tether = Tether(sim.gphoto_camera, files_per_shot=1)
            shutter: Any = SimulatedShutter(sim, tether, positions)
            doing = f"the simulated rig turns focus and presses the shutter {len(missing)} times"
        else:
            tether = Tether(sim.gphoto_camera)  # one file a shot or two, as the body is set
            shutter = BracketPress(body)
            doing = f"a simulated {body.profile.model} brackets {len(missing)} frames by itself"
        console.print(f"demo: {doing}; session {folder.root}", markup=False)
        _run(folder, tether, settings, console, page, shutter=shutter)


BURST_FPS = 5.0
"""Frames a second the tether demo's bracketing bodies shoot (a focus-shift burst)."""


def _bracketing_body(positions: dict[int, float]) -> Any:
    """Makes the body of the simulated rig's camera family, bracketing the frames of
    ``positions`` (index -> µm) in one burst, rendered by the rig."""
    from rig.sim.bracketing import BracketingBody

    order = sorted(positions)

    def make(rig: Any) -> BracketingBody:
        spec = rig.spec
        return BracketingBody(
            spec.camera,
            lambda n: rig.render_jpeg(positions[order[n - 1]]),
            frames=len(order),
            fps=BURST_FPS,
            raw_plus_jpeg=spec.raw_plus_jpeg,
            nominal_file_bytes=int(spec.raw_mb * 1e6),
        )

    return make
