"""Option groups shared by the ``rig`` commands, declared once.

Each alias is a typed, documented ``typer.Option``; a command lists the groups it takes and
hands the values to the one parser of each specification (:class:`~rig.spec.PlanSpec`,
:class:`~stacker.options.StackOptions`, :class:`~rig.spec.RigSpec`), which names the options in
its one-line errors. The plan and stacking groups are whole: a command that says
``@takes(plan_options, "plan")`` (:func:`~stacker.cliutil.takes`) gets every plan option and
receives the parsed plan.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from rig.plan import DEFAULT_COC_MM, Direction, PlanError, ShotPlan
from rig.spec import PlanSpec, RigSpec, option_name, parse_timing
from stacker.cli_options import Align, Host, Interpolation, Method, Port, Reference
from stacker.options import OUTPUT_FORMATS, StackOptions, choice
from stacker.pinned import read_small_text

# ----------------------------------------------------------------------------- plan
From = Annotated[str | None, typer.Option("--from", help="Near end: 0mm, 250um, 0steps.")]
To = Annotated[str | None, typer.Option("--to", help="Far end: 2mm, 1500um, 40steps.")]
Step = Annotated[str | None, typer.Option("--step", help="Distance between frames: 50um.")]
Frames = Annotated[int | None, typer.Option("--frames", help="Number of frames.")]
Magnification = Annotated[
    str | None,
    typer.Option(
        "--magnification",
        "-m",
        help="Lens magnification (1 for 1:1), for the depth-of-field step; with -N.",
    ),
]
FNumber = Annotated[
    str | None,
    typer.Option(
        "--f-number", "-N", help="The lens's f-number as set, for the depth-of-field step; with -m."
    ),
]
NA = Annotated[str | None, typer.Option("--na", help="Microscope objective NA.")]
Coc = Annotated[
    str | None,
    typer.Option(
        "--coc",
        help=f"Circle of confusion, mm. Default: {DEFAULT_COC_MM:g}. At wide apertures "
        "diffraction's smaller depth of field sets the step instead.",
    ),
]
Overlap = Annotated[
    str | None,
    typer.Option(
        "--overlap",
        help="Depth-of-field overlap between neighbouring frames, 0 to below 1. Default: 0.2.",
    ),
]
DirectionOpt = Annotated[
    str | None,
    typer.Option(
        "--direction",
        help="Which end of the range is shot first. Default: near-to-far.",
        metavar="<" + "|".join(get_args(Direction)) + ">",
    ),
]
Settle = Annotated[
    str | None,
    typer.Option(
        "--settle",
        help="Wait after each move, e.g. 1.5s. Default: 0.5 s up to 1:1, then growing with "
        "--magnification to 2 s at 5x (at most 3 s).",
    ),
]
ExposureDelay = Annotated[
    str | None,
    typer.Option(
        "--exposure-delay",
        help="Extra wait after the settle, before the shutter (mirror-up), e.g. 0.5s. "
        "Default: none.",
    ),
]
FlashRecycle = Annotated[
    str | None,
    typer.Option(
        "--flash-recycle",
        help="Shortest time between two shutter releases (flash recharge), e.g. 2s. Default: none.",
    ),
]
Return = Annotated[
    bool | None,
    typer.Option(
        "--return/--no-return",
        help="Move back to the start of the range at the end. Default: --return.",
    ),
]
PlanFile = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        help="Read a plan JSON file: its range and spacing as saved; --direction and the "
        "timing options given beside it replace the file's.",
    ),
]

# ----------------------------------------------------------------------------- stacking
Format = Annotated[
    str,
    typer.Option("--format", help="tif, png, jpg, or dng (stacks the RAW files in linear light)."),
]
SimFormat = Annotated[
    str, typer.Option("--format", help="tif, png or jpg (the simulated camera shoots JPEG).")
]

CheckpointEvery = Annotated[
    int,
    typer.Option(
        "--checkpoint-every",
        min=0,
        help="Write the composite so far every N merged frames, so a crash loses little "
        "(0: only at the end).",
    ),
]

# ----------------------------------------------------------------------------- devices, preview
Rail = Annotated[str | None, typer.Option("--rail", help="Rail URL: grbl:///dev/ttyUSB0.")]
Focus = Annotated[str, typer.Option("--focus", help="rail, or camera (lens motor).")]
Home = Annotated[
    bool,
    typer.Option("--home", help="Home the rail first (positions are then from its switch)."),
]
AcceptPosition = Annotated[
    bool,
    typer.Option(
        "--accept-position",
        help="Take the rail's current position as the reference: it has no homing switch, or "
        "its controller restarted when the port opened (it then reads 0 where it stands).",
    ),
]
CameraModel = Annotated[
    str | None,
    typer.Option(
        "--camera-model",
        help="Camera model as `rig cameras` lists it (or a part), if several are connected.",
    ),
]
CameraPort = Annotated[
    str | None,
    typer.Option(
        "--camera-port",
        help="Camera port as `rig cameras` lists it (usb:001,007), if several are connected.",
    ),
]
Size = Annotated[str, typer.Option("--size", help="Frame size WxH of the simulated rig.")]


SIGNED = {"ignore_unknown_options": True}
"""The context settings of a command whose arguments may be negative ("-250um", an exposure
compensation of "-1"): arguments, not options."""


def _out_help(prefix: str) -> str:
    return f"Session folder to create. Default: {prefix}-YYYYMMDD-HHMMSS in the current folder."


ShootOut = Annotated[Path | None, typer.Option("--out", "-o", help=_out_help("stack"))]
DemoOut = Annotated[Path | None, typer.Option("--out", "-o", help=_out_help("demo"))]
TetherOut = Annotated[Path | None, typer.Option("--out", "-o", help=_out_help("tether"))]
Preview = Annotated[
    bool, typer.Option("--preview/--no-preview", help="Serve the live preview page.")
]


_SHAPE_KEYS = ("from", "to", "step", "frames", "magnification", "f_number", "na", "coc", "overlap")
"""Plan options that say where the frames go: a plan file already says it."""


def plan_from_options(plan_file: Path | None, **fields: Any) -> ShotPlan:
    """The plan of ``--plan FILE``, or of ``--from``, ``--to``, one spacing and the timing
    options (``fields``, named as in :data:`PLAN_KEYS <rig.spec.PLAN_KEYS>` with
    ``start``/``end`` for ``from``/``to``; None when not given).

    With a file, ``--direction`` and the timing options given replace the file's; a range or
    a spacing is refused rather than dropped: the rail would go where the file says.
    """
    data = {"from": fields.pop("start", None), "to": fields.pop("end", None), **fields}
    given = {k: v for k, v in data.items() if v is not None}
    if plan_file is None:
        return PlanSpec.parse(given, name=option_name).plan()
    shape = [option_name(k) for k in _SHAPE_KEYS if k in given]
    if shape:
        raise PlanError(
            f"--plan {plan_file} gives the range and the spacing: leave out {', '.join(shape)}, "
            "or leave out --plan"
        )
    try:
        text = read_small_text(plan_file)
    except OSError as exc:
        raise PlanError(f"{plan_file}: cannot read the plan ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise PlanError(f"{plan_file}: not a plan (not UTF-8 text); give a plan.json") from None
    plan = ShotPlan.from_json(text, source=str(plan_file))
    timing = parse_timing(given, option_name)
    return replace(plan, **timing) if timing else plan


def stack_from_options(**fields: Any) -> StackOptions:
    """:class:`StackOptions` from the stacking options, errors naming ``--method`` etc."""
    return StackOptions.parse(fields, name=option_name)


def plan_options(
    start: From = None,
    end: To = None,
    step: Step = None,
    frames: Frames = None,
    magnification: Magnification = None,
    f_number: FNumber = None,
    na: NA = None,
    coc: Coc = None,
    overlap: Overlap = None,
    direction: DirectionOpt = None,
    settle: Settle = None,
    exposure_delay: ExposureDelay = None,
    flash_recycle: FlashRecycle = None,
    return_to_start: Return = None,
    plan_file: PlanFile = None,
) -> ShotPlan:
    """The plan options of ``rig plan`` and ``rig shoot``, read into one plan."""
    return plan_from_options(
        plan_file, settle=settle, start=start, end=end, step=step, frames=frames,
        magnification=magnification, f_number=f_number, na=na, coc=coc, overlap=overlap,
        direction=direction, exposure_delay=exposure_delay, flash_recycle=flash_recycle,
        return_to_start=return_to_start,
    )  # fmt: skip


def stack_options(
    method: Method = "pyramid",
    align: Align = "similarity",
    reference: Reference = "first",
    interpolation: Interpolation = "linear",
    output_format: Format = "tif",
) -> StackOptions:
    """The stacking options of every command that stacks, read into one :class:`StackOptions`."""
    return stack_from_options(
        method=method, align=align, reference=reference, interpolation=interpolation,
        output_format=output_format,
    )  # fmt: skip


SIM_FORMATS = tuple(name for name, suffix in OUTPUT_FORMATS.items() if suffix != ".dng")
"""The composites the simulated rig writes: its camera shoots JPEG, no RAW frame to stack."""


def sim_stack_options(
    method: Method = "pyramid",
    align: Align = "similarity",
    reference: Reference = "first",
    interpolation: Interpolation = "linear",
    output_format: SimFormat = "tif",
) -> StackOptions:
    """The stacking options of the simulated rig, which has no RAW frames for ``--format dng``:
    a format it cannot write is refused with the choices it has."""
    from rig.sim.rig import check_composite_format

    check_composite_format(OUTPUT_FORMATS.get(str(output_format).strip().lower(), ""), "--format")
    choice(output_format, SIM_FORMATS, "--format")
    return stack_options(
        method=method, align=align, reference=reference, interpolation=interpolation,
        output_format=output_format,
    )  # fmt: skip


def preview_options(
    preview: Preview = False, host: Host = "127.0.0.1", port: Port = 8000
) -> tuple[bool, str, int]:
    """Whether a session serves its live preview page, and where: ``(on, host, port)``."""
    return preview, host, port


def device_options(
    rail: Rail = None,
    focus: Focus = "rail",
    camera_model: CameraModel = None,
    camera_port: CameraPort = None,
) -> dict[str, Any]:
    """The rail and the camera a command opens, as given: :func:`rig_from_options` reads them
    (not here, since ``rig station --sim`` needs neither)."""
    return {"rail": rail, "focus": focus, "camera_model": camera_model, "camera_port": camera_port}


def rig_from_options(devices: dict[str, Any], **fields: Any) -> RigSpec:
    """:class:`RigSpec` of a hardware rig from the :func:`device_options` and ``fields`` (the
    other camera options)."""
    return RigSpec.parse({"kind": "hardware", **devices, **fields}, name=option_name)


# ----------------------------------------------------------------------------- camera
TARGET_HELP = (
    "Where the camera stores shots: auto (card on Canon, Nikon, Panasonic; RAM on Sony), "
    "ram, card (deleted after download) or both (a copy stays on the card)."
)
CaptureTarget = Annotated[str, typer.Option("--capture-target", help=TARGET_HELP)]
AntiVibration = Annotated[
    bool,
    typer.Option(
        "--anti-vibration/--no-anti-vibration",
        help="Switch on the body's anti-shake release for the session: mirror lock-up (Canon, "
        "mirrorlock), exposure delay mode (Nikon, exposuredelaymode), electronic shutter (Sony, "
        "shuttertype; no flash sync).",
    ),
]
MoveDuringDownload = Annotated[
    bool,
    typer.Option(
        "--move-during-download/--no-move-during-download",
        help="Move to the next position while the last frame downloads (once its exposure "
        "is over).",
    ),
]
