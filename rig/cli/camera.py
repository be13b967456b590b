"""``rig cameras`` and ``rig camera ...``: look at, configure and test-fire a tethered camera.

Every command opens one libgphoto2 session, does its job and closes it (putting back what it
changed). With no camera attached each says so in one line and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rig.camera import Camera, ConfigItem, list_cameras
from rig.camera.detect import NO_CAMERA_HINT
from rig.camera.errors import CameraNotFoundError
from rig.camera.shot import parse_capture_target
from rig.cli import options as opt
from rig.errors import RigError
from stacker.cliutil import make_app, prints_its_result
from stacker.io import atomic_write_bytes, check_writable_output, is_image_path

app = make_app(
    "camera",
    "Inspect, configure and test a camera connected by USB (through libgphoto2).",
)

# Also under the session commands' names (--camera-model, --camera-port), where --port is the
# preview's and -m the magnification: a camera chosen for `rig shoot` is chosen here the same way.
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "--camera-model",
        "-m",
        help="Camera model as `rig cameras` lists it (or a part).",
    ),
]
PortOpt = Annotated[
    str | None,
    typer.Option(
        "--port", "--camera-port", "-p", help="Port as `rig cameras` lists it (usb:001,007)."
    ),
]

console = Console()


def cameras() -> None:
    """List the cameras libgphoto2 detects, with their ports."""
    prints_its_result()
    found = list_cameras()
    if not found:
        raise CameraNotFoundError(f"no camera found: {NO_CAMERA_HINT}")
    table = Table(title="Cameras")
    table.add_column("Model", overflow="fold")
    table.add_column("Port", no_wrap=True, min_width=max(len(info.port) for info in found))
    for info in found:
        table.add_row(info.model, info.port)
    console.print(table)


@app.command()
def summary(model: ModelOpt = None, port: PortOpt = None) -> None:
    """Manufacturer, model, serial number, battery level and storage of the camera."""
    prints_its_result()
    with Camera.open(model, port) as camera:
        info = camera.summary()
    table = Table("Field", "Value", title=camera.description, show_header=False)
    for field, value in info.rows():
        table.add_row(field, value)
    console.print(table)


_TABLE_ROOM = 50
"""Columns beside the longest key that the settings' table needs to be read; fewer (a phone's
ssh client held upright), and each setting is a line of its own."""


def _print_settings(title: str, items: list[ConfigItem]) -> None:
    """The camera's settings: a table, whose keys (what a photographer types) are never cut and
    nothing else ends in "…"; on a terminal too narrow for it, a line per setting."""
    longest = max((len(item.key) for item in items), default=3)
    if console.width < longest + _TABLE_ROOM:
        console.print(title, markup=False)
        for item in items:
            ro = ", read-only" if item.readonly else ""
            choices = _choices_text(item)
            line = f"{item.key} = {item.display_value()} ({item.label}; {item.kind}{ro})"
            console.print(line + (f" [{choices}]" if choices else ""), markup=False, soft_wrap=True)
        return
    table = Table(title=title)
    table.add_column("Key", no_wrap=True, min_width=longest)
    for heading in ("Label", "Type", "Value", "Choices"):
        table.add_column(heading, overflow="fold")
    for item in items:
        ro = " (read-only)" if item.readonly else ""
        table.add_row(
            item.key, item.label, item.kind + ro, item.display_value(), _choices_text(item)
        )
    console.print(table)


def _choices_text(item: ConfigItem) -> str:
    if item.kind in ("radio", "menu"):
        shown = ", ".join(item.choices[:12])
        more = len(item.choices) - 12
        return shown + (f", ... (+{more})" if more > 0 else "")
    if item.kind == "range" and item.range is not None:
        low, high, step = item.range
        return f"{low:g} .. {high:g} step {step:g}"
    return ""


@app.command("config", context_settings=opt.SIGNED)
def config(
    key: Annotated[str | None, typer.Argument(help="Setting to show or change.")] = None,
    value: Annotated[str | None, typer.Argument(help="New value for KEY.")] = None,
    model: ModelOpt = None,
    port: PortOpt = None,
) -> None:
    """List every setting; show one (KEY); or change one (KEY VALUE)."""
    if value is None:  # a listing; a change is done whether or not it could be told
        prints_its_result()
    with Camera.open(model, port) as camera:
        if key is None:
            _print_settings(camera.description, camera.config_items())
            return
        if value is None:
            item = camera.get_config(key)
            console.print(f"[bold]{item.key}[/bold] ({item.label}, {item.kind})")
            console.print(f"value: {item.display_value()}")
            console.print("read-only" if item.readonly else f"accepts: {item.valid_values()}")
            return
        item = camera.set_config(key, value)
        console.print(f"{item.key} = {item.display_value()}")


@app.command()
def shoot(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the frames.")],
    stem: Annotated[
        str | None, typer.Option(help="File name stem (default: next frame_NNNN).")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Capture to 'ram', 'card', 'both' (a copy stays on the card) or 'auto' "
            "(card on Canon, Nikon, Panasonic; RAM on Sony) for this shot."
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep/--no-keep", help="Keep the file on the card.")
    ] = False,
    model: ModelOpt = None,
    port: PortOpt = None,
) -> None:
    """Take one test shot and download it; prints the files written."""
    if not output.is_dir() and is_image_path(output):
        raise RigError(
            f"-o {output}: the folder for the frames, not a file name; give -o "
            f"{output.parent} --stem {output.stem} for {output.stem}{output.suffix.lower()}"
        )
    capture_target = parse_capture_target(target, "--target")
    with Camera.open(model, port, capture_target=capture_target, keep_on_card=keep) as camera:
        paths = camera.capture(output, stem)
    for path in paths:
        typer.echo(str(path))


@app.command()
def preview(
    output: Annotated[Path, typer.Option("--output", "-o", help="File for the live-view frame.")],
    model: ModelOpt = None,
    port: PortOpt = None,
) -> None:
    """Save one live-view frame (where the camera supports live view)."""
    if output.suffix.lower() not in (".jpg", ".jpeg") and not output.is_dir():
        example = output.with_suffix(".jpg")
        raise RigError(f"{output}: live view comes as JPEG; give a .jpg file, such as {example}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RigError(f"{output}: cannot make its folder ({exc.strerror or exc})") from None
    check_writable_output(output, example="live.jpg")  # a folder, a read-only place
    with Camera.open(model, port) as camera:
        data = camera.capture_preview()
    atomic_write_bytes(output, data)
    typer.echo(str(output))
