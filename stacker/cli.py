"""The ``stacker`` command: stack a folder of frames, or watch a hot folder."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stacker.cli_options import Align, Host, Interpolation, Method, Port, Reference
from stacker.cliutil import (
    library_versions,
    make_app,
    one_line,
    run_app,
    signals_as_ctrl_c,
    signals_handled,
    takes,
    terminal_progress,
)

if TYPE_CHECKING:
    from stacker.options import StackOptions

app = make_app(
    "stacker",
    "Align and merge focus stacks into one all-in-focus image.",
    versions=library_versions,
)

# Options the stacking commands share, declared once (those rig takes too: cli_options).
DepthMap = Annotated[
    Path | None,
    typer.Option(
        "--depth-map",
        help="Also write a 16-bit PNG depth map, a colour preview (-preview.jpg) and a .json "
        "that turns its values into µm or frames.",
    ),
]
Strict = Annotated[
    bool, typer.Option("--strict", help="Stop at the first unreadable or rejected frame.")
]
NoCrop = Annotated[
    bool,
    typer.Option("--no-crop", help="Keep the full frame instead of the area all frames cover."),
]
JpegQuality = Annotated[
    int | None,
    typer.Option(
        "--jpeg-quality",
        help="Quality of JPEG outputs, 1 to 100 (default: 95); other formats have none.",
    ),
]
JPEG_QUALITY = 95
"""The quality of a JPEG output when ``--jpeg-quality`` is not given."""


def _jpeg_quality(given: int | None, suffix: str, output: str) -> int:
    """The quality to write ``output`` (a path, or ``--format jpg``) with, if its ``suffix``
    makes it a JPEG.

    Given for another format, ``--jpeg-quality`` is said to change nothing, in one warning
    line, rather than refused: a script or alias that passes it to every run, whatever it
    writes, keeps working, and the user learns that the TIFF did not get the quality asked
    for. A value out of range is left for the one-line error that names it.
    """
    if given is not None and suffix.lower() not in (".jpg", ".jpeg") and 1 <= given <= 100:
        print(
            f"warning: --jpeg-quality {given} changes nothing: {one_line(output)} is not a "
            "JPEG (only a .jpg output has a quality)",
            file=sys.stderr,
        )
    return JPEG_QUALITY if given is None else given


PreferPair = Annotated[
    str | None,
    typer.Option(
        "--prefer",
        help="For RAW+JPEG pairs: stack the jpeg (fast; the default) or the raw (needs the raw "
        "extra; the default for a .dng output).",
    ),
]
Order = Annotated[
    str,
    typer.Option(
        "--order",
        help="near-to-far (the first frame focused nearest, as a camera's focus bracketing "
        "shoots) or far-to-near: the depth map's rules need to know which side is in front.",
    ),
]


def stack_options(
    method: Method = "pyramid",
    align: Align = "similarity",
    reference: Reference = "first",
    interpolation: Interpolation = "linear",
    no_crop: NoCrop = False,
    order: Order = "near-to-far",
) -> StackOptions:
    """How ``stack``, ``watch`` and ``batch`` stack, checked with errors that name the options."""
    from stacker.options import StackOptions, option_name

    return StackOptions.parse(
        {
            "method": method,
            "align": align,
            "reference": reference,
            "interpolation": interpolation,
            "crop": not no_crop,
            "order": order,
        },
        name=option_name,
    )


@app.command("stack")
@takes(stack_options, "stack")
def stack_command(
    *,
    inputs: list[Path] = typer.Argument(..., help="Frames, or folders of frames (natural order)."),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Composite to write: .tif or .png (16-bit kept), .jpg, or .dng (RAW frames).",
    ),
    stack: StackOptions,
    depth_map: DepthMap = None,
    strict: Strict = False,
    jpeg_quality: JpegQuality = None,
    prefer: PreferPair = None,
) -> None:
    """Align and merge INPUTS into one all-in-focus image."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from stacker.offline import collect_inputs, stack_files
    from stacker.pairs import pair_choice
    from stacker.paths import interrupted_stack
    from stacker.report import summary_table

    console = Console(stderr=True)
    quality = _jpeg_quality(jpeg_quality, output.suffix, str(output))

    def note(message: str) -> None:
        console.print(one_line(message), markup=False, soft_wrap=True)

    files = collect_inputs(inputs, on_note=note, prefer=pair_choice(prefer, output))
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[frame]}", markup=False), TimeElapsedColumn(),
    )  # fmt: skip
    with terminal_progress(console, *columns) as progress:
        task = progress.add_task("stacking", total=len(files), frame="")

        def on_frame(path, record, warning) -> None:
            if warning:
                progress.console.print(
                    f"warning: {one_line(warning)}", markup=False, soft_wrap=True
                )
            score = f" score {record.score:.3f}" if record is not None else ""
            progress.update(task, advance=1, frame=f"{one_line(path.name)}{score}")

        def on_restart(path, why, frames_left) -> None:
            progress.console.print(f"warning: {one_line(why)}", markup=False, soft_wrap=True)
            progress.reset(task, total=frames_left, frame="")

        with (
            signals_as_ctrl_c(),  # SIGTERM and SIGHUP stop it as Ctrl-C does
            interrupted_stack(output, depth_map, len(files), lambda: progress.tasks[0].completed),
        ):
            run = stack_files(
                files, output, stack=stack, depth_map=depth_map, strict=strict,
                jpeg_quality=quality, on_frame=on_frame, on_restart=on_restart,
            )  # fmt: skip
    console.print(summary_table(run.stacker, run.file_numbers, len(files)))
    s = run.stacker
    print(
        f"stacked {s.frames_merged} of {len(files)} frames in {run.seconds:.1f} s, written "
        f"{run.final_seconds:.1f} s after the last frame was stacked "
        f"({run.last_read_seconds:.1f} s after it was read): "
        + ", ".join(one_line(str(p)) for p in run.written)
    )


@app.command("watch")
@takes(stack_options, "stack")
def watch_command(
    *,
    folder: Path = typer.Argument(..., help="Folder that tethering software writes frames into."),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Composite to write (.tif, .png, .jpg, or .dng from RAW frames), rewritten as "
        "frames land.",
    ),
    depth_map: DepthMap = None,
    stack: StackOptions,
    jpeg_quality: JpegQuality = None,
    strict: Strict = False,
    every: int = typer.Option(
        1,
        "--every",
        help="Write the composite after every N merged frames (with frames already waiting, "
        "once they are stacked).",
    ),
    idle_timeout: str | None = typer.Option(
        None,
        "--idle-timeout",
        help="Stop after this long without a new frame: 30, 30s, 2min (default: never).",
    ),
    prefer: PreferPair = None,
    settle: str = typer.Option(
        "0.5s",
        "--settle",
        help="How long a file must stay unchanged to count as written (no close events): "
        "0.5, 0.5s, 500ms.",
    ),
    poll: bool = typer.Option(
        False, "--poll", help="Poll the folder (network shares and FUSE mounts are polled anyway)."
    ),
    preview: bool = typer.Option(
        False, "--preview/--no-preview", help="Serve a live preview page while stacking."
    ),
    host: Host = "127.0.0.1",
    port: Port = 8000,
) -> None:
    """Stack frames as other software drops them into FOLDER; stop with Ctrl-C or --idle-timeout."""
    options = {
        "depth_map": depth_map, "method": stack.method, "align": stack.align,
        "reference": stack.reference, "interpolation": stack.interpolation,
        "jpeg_quality": _jpeg_quality(jpeg_quality, output.suffix, str(output)), "strict": strict,
        "crop": stack.crop, "every": every,
        "idle_timeout": None if idle_timeout is None else _seconds("--idle-timeout", idle_timeout),
        "settle": _seconds("--settle", settle, at_most=MAX_SETTLE_S), "prefer": prefer,
        "polling": poll,
        "order": stack.order,
    }  # fmt: skip
    _watch(folder, output, (preview, host, port), options)


MAX_SETTLE_S = 3600.0
"""The longest ``--settle``: a file unchanged for an hour is written (a day's value stacked
nothing, and kept ``--idle-timeout`` from ever ending the watch)."""


def _seconds(option: str, text: str, at_most: float = math.inf) -> float:
    """A duration option's value in seconds, above zero, or a one-line error naming the option
    as typed."""
    from stacker.quantities import QuantityError, parse_duration

    try:
        seconds = parse_duration(text)
    except QuantityError as exc:
        raise QuantityError(f"{option} {text}: {exc}") from None
    if not seconds > 0:
        raise QuantityError(f"{option} {text}: give a positive duration, e.g. 2s")
    if seconds > at_most:
        raise QuantityError(f"{option} {text}: at most {at_most:g} s")
    return seconds


def _watch(
    folder: Path, output: Path, preview: tuple[bool, str, int], options: dict[str, Any]
) -> None:
    """Run :func:`~stacker.watch.watch_and_stack` with a live status line until it ends."""
    import threading

    from rich.console import Console
    from rich.live import Live

    from stacker.preview.watchfeed import serve_watch_preview
    from stacker.watch import (
        MergedFrame,
        NoFramesError,
        WatchStatus,
        frame_line,
        render_status,
        summary_line,
        watch_and_stack,
    )

    stop = threading.Event()
    console = Console(stderr=True)

    announced = threading.Event()
    try:
        with (
            # A second Ctrl-C interrupts at once (the composite on disk is complete anyway).
            signals_handled(lambda _signum: stop.set(), ctrl_c_again_interrupts=True),
            serve_watch_preview(*preview, folder) as feed,
            Live(console=console, refresh_per_second=8, transient=True) as live,
        ):

            def show(status: WatchStatus) -> None:
                if not announced.is_set():  # the folder is being watched from now on
                    announced.set()
                    live.console.print(
                        f"watching {one_line(str(status.folder))} -> {one_line(str(output))}; "
                        "Ctrl-C to finish",
                        markup=False,
                        soft_wrap=True,
                    )
                live.update(render_status(status))

            def warn(message: str) -> None:
                live.console.print(f"warning: {one_line(message)}", markup=False, soft_wrap=True)
                feed.on_warning(message)  # the page says it too

            def on_frame(frame: MergedFrame) -> None:
                feed.on_frame(frame)
                if not console.is_interactive:  # no live display: a log, a service's journal
                    live.console.print(frame_line(frame), markup=False, soft_wrap=True)

            summary = watch_and_stack(
                folder,
                output,
                **options,
                stop=stop,
                on_frame=on_frame,
                on_status=feed.also(show),
                on_warning=warn,
            )
    except NoFramesError as exc:
        if stop.is_set():
            console.print(
                f"stacker: interrupted: {one_line(str(exc))}", markup=False, soft_wrap=True
            )
            raise typer.Exit(130) from None
        raise
    print(summary_line(summary))


@app.command("batch")
@takes(stack_options, "stack")
def batch_command(
    *,
    roots: list[Path] = typer.Argument(..., help="Folders holding stack folders (searched deep)."),
    outdir: Path = typer.Option(
        ..., "--output", "-o", help="Folder for every stack's composite, depth map and the report."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler (tcp://host:8786); default: a local cluster."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Local worker processes (default: one per core; at most four per core, and never "
        "more than the stacks to do). With --scheduler: wait for that many workers.",
    ),
    pattern: str | None = typer.Option(
        None, "--pattern", help="Frame file names to take, e.g. '*.NEF' (default: all images)."
    ),
    output_format: str = typer.Option("tif", "--format", help="tif, png, jpg, or dng (RAW)."),
    depth_maps: bool = typer.Option(
        True, "--depth-maps/--no-depth-maps", help="Write each stack's depth map beside it."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Report file, .jsonl or .csv (default OUTDIR/batch-report.jsonl)."
    ),
    stack: StackOptions,
    strict: bool = typer.Option(False, "--strict", help="Fail a stack at its first bad frame."),
    jpeg_quality: JpegQuality = None,
) -> None:
    """Stack every stack folder under ROOTS, one Dask task per stack; reruns skip finished ones."""
    from stacker.batchcli import run_batch_command

    code = run_batch_command(
        roots, outdir, scheduler=scheduler, workers=workers, pattern=pattern,
        output_format=output_format, depth_maps=depth_maps, report=report,
        options={
            "stack": stack, "strict": strict,
            "jpeg_quality": _jpeg_quality(
                jpeg_quality, f".{output_format}", f"--format {output_format}"
            ),
        },
    )  # fmt: skip
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    run_app(app, "stacker")


if __name__ == "__main__":
    main()
