"""Every ``rig`` and ``stacker`` command's ``--help``: no ``<bool>`` on flags, a description on
every option, and the choices of the options that take one of a few words."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from rig.cli import app as rig_app
from stacker.cli import app as stacker_app


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, group
    if isinstance(group, TyperGroup):
        for name, sub in sorted(group.commands.items()):
            if not sub.hidden:
                yield from _commands(sub, (*path, name))


COMMANDS = [
    (prog, path, command)
    for prog, app in (("rig", rig_app), ("stacker", stacker_app))
    for path, command in _commands(typer.main.get_command(app))
]


def _help(app: typer.Typer, path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


IDS = [" ".join((prog, *path)) for prog, path, _ in COMMANDS]


@pytest.mark.parametrize(("prog", "path", "command"), COMMANDS, ids=IDS)
def test_help_shows_no_bool_placeholder(prog, path, command) -> None:
    """Issue 11 item 17: flags (and --help itself) were listed as taking a ``<bool>``."""
    assert "<bool>" not in _help(rig_app if prog == "rig" else stacker_app, path)


@pytest.mark.parametrize(("prog", "path", "command"), COMMANDS, ids=IDS)
def test_every_option_has_a_description(prog, path, command) -> None:
    """Issue 11 item 17: -m, -N, --exposure-delay, --flash-recycle, --checkpoint-every,
    --camera-model and --camera-port had none."""
    bare = [
        "/".join(p.opts)
        for p in command.params
        if isinstance(p, TyperOption) and not (p.help or "").strip()
    ]
    assert bare == [], f"{prog} {' '.join(path)}: options without help text: {bare}"


def test_shoot_lists_the_choices_of_direction_and_align() -> None:
    text = _help(rig_app, ("shoot",))
    for choice in ("near-to-far", "far-to-near", "similarity", "translation", "homography"):
        assert choice in text, choice


def _flags(*path: str) -> set[str]:
    command = dict(_commands(typer.main.get_command(rig_app)))[path]
    return {flag for param in command.params for flag in getattr(param, "opts", [])}


def test_the_lens_focus_refusal_names_options_rig_shoot_takes() -> None:
    """The advice a body without a lens drive gets must be typeable as it stands."""
    from rig.camera.focus import RAIL_HINT

    named = set(re.findall(r"--[a-z][a-z-]*", RAIL_HINT))
    assert named and named <= _flags("shoot"), named - _flags("shoot")


def test_choosing_among_cameras_names_the_flags_each_command_takes() -> None:
    """``rig shoot --port`` is the preview page's port, not the camera's."""
    from rig.camera.detect import CameraInfo, choose_camera
    from rig.camera.errors import CameraError

    two = [CameraInfo("Nikon DSC D750", "usb:001,001"), CameraInfo("Phone (PTP)", "usb:001,005")]
    with pytest.raises(CameraError) as refused:
        choose_camera(two)
    session, camera = str(refused.value).split(" for a session")
    assert set(re.findall(r"--[a-z-]+", session)) == {"--camera-model", "--camera-port"}
    assert {"--camera-model", "--camera-port"} <= _flags("shoot") & _flags("resume")
    assert set(re.findall(r"--[a-z-]+", camera)) == {"--model", "--port"}
    assert {"--model", "--port"} <= _flags("camera", "shoot")
    # The session commands' names work there too: one way to choose a camera everywhere.
    for command in ("shoot", "summary", "config", "preview"):
        assert {"--camera-model", "--camera-port"} <= _flags("camera", command), command


@pytest.mark.parametrize(
    ("command", "prefix"), [("shoot", "stack"), ("demo", "demo"), ("tether", "tether")]
)
def test_session_commands_say_where_the_folder_goes_without_out(command, prefix) -> None:
    """Without --out a session lands in a dated folder of the current one; the help said only
    'Session folder to create.', so the first shot's folder had to be found by listing."""
    text = "".join(_help(rig_app, (command,)).split())  # wrapped at any space or hyphen
    assert f"Default:{prefix}-YYYYMMDD-HHMMSSinthecurrentfolder" in text


def test_every_preview_port_says_what_0_means() -> None:
    """``stacker watch --port`` said only 'Preview port.', where every ``rig`` command said
    that 0 takes any free port."""
    ports = {}
    for prog, path, command in COMMANDS:
        if any("--preview" in getattr(p, "opts", []) for p in command.params):
            text = _help(rig_app if prog == "rig" else stacker_app, path)
            line = " ".join(text.split("--port", 1)[1].split())
            ports[" ".join((prog, *path))] = "Preview port (0: any free one)." in line
    assert "stacker watch" in ports and "rig shoot" in ports
    assert all(ports.values()), ports


def test_tether_says_when_it_ends_without_frames() -> None:
    """``rig tether --frames`` read 'Number of frames.', as the plan's spacing option does,
    leaving unsaid that without it the session ends at --idle-timeout or Ctrl-C."""
    text = " ".join(_help(rig_app, ("tether",)).split())
    assert re.search(r"--frames \S+ End after this many frames", text)  # <int>, or INTEGER
    assert "(default: at --idle-timeout or Ctrl-C)" in text


@pytest.mark.parametrize(("prog", "app"), [("rig", rig_app), ("stacker", stacker_app)])
def test_version_names_stackrig_and_the_libraries_of_a_bug_report(prog, app) -> None:
    """``--version`` prints the installed package's version (one source, stacker.__version__)
    and the versions of the libraries a bug report needs; ``rig`` adds libgphoto2's."""
    from importlib.metadata import version

    import cv2

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == f"{prog} (stackrig) {version('stackrig')}"
    assert f"OpenCV {cv2.__version__}" in result.output
    assert ("libgphoto2 2." in result.output) == (prog == "rig")


def test_the_demo_names_every_simulated_body() -> None:
    """``rig demo --camera`` took ``fuji`` while its help and the README named three bodies."""
    from pathlib import Path

    from rig.sim.camera_quirks import PROFILES

    options = _help(rig_app, ("demo",)).split("--camera", 1)[1].split("--capture-target")[0]
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert all(vendor in options for vendor in PROFILES), options
    assert f"`rig demo --camera {'|'.join(PROFILES)}`" in readme


def test_the_demo_offers_only_the_formats_its_camera_can_give() -> None:
    """``rig demo --help`` offered ``--format dng``, which the demo then refused: its simulated
    camera shoots JPEG. The hardware commands still offer it."""
    demo = " ".join(_help(rig_app, ("demo",)).split("--format", 1)[1].split()[:8])
    assert "dng" not in demo and "tif, png or jpg" in demo
    assert "dng" in " ".join(_help(rig_app, ("shoot",)).split("--format", 1)[1].split()[:8])


@pytest.mark.parametrize(("prog", "path", "command"), COMMANDS, ids=IDS)
def test_arguments_are_named_as_the_help_names_them(prog, path, command) -> None:
    """``stacker stack --help`` read ``Usage: stacker stack [OPTIONS] {inputs}...`` and listed
    ``inputs... <list[Path]>``, ``stacker watch`` ``{folder}``, while their sentences say INPUTS
    and FOLDER: Typer 0.2x's way, not Click's."""
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if not arguments:
        return
    text = _help(rig_app if prog == "rig" else stacker_app, path)
    usage = text.splitlines()[0]
    listed = text.split("Arguments:", 1)[1].split("Options:", 1)[0]
    for param in arguments:
        name = param.name.upper()
        if not param.required:
            name = f"[{name}]"
        name += "..." if param.nargs != 1 else ""
        assert f" {name}" in usage, usage
        assert re.search(rf"^  {re.escape(name)}(  |$)", listed, flags=re.M), listed
    assert "{" not in usage and "<" not in listed, (usage, listed)


@pytest.mark.parametrize("option", ["--method", "--align", "--reference", "--interpolation"])
def test_the_stacking_options_read_the_same_in_both_commands(option: str) -> None:
    """``--align`` showed ``<str>`` in ``stacker stack --help`` and its choices in ``rig
    shoot --help``: two definitions of one option, each with its own help."""
    from stacker.align import MODELS
    from stacker.stack import INTERPOLATIONS, METHODS

    def line(app: typer.Typer, command: str) -> str:
        text = _help(app, (command,)).split(f"  {option} ", 1)[1]
        return " ".join(text.split("\n  -", 1)[0].split())

    seen = {line(stacker_app, "stack"), line(stacker_app, "watch"), line(rig_app, "shoot")}
    assert len(seen) == 1, seen
    choices = {"--method": METHODS, "--align": MODELS, "--interpolation": INTERPOLATIONS}
    if option in choices:
        assert seen.pop().startswith("<" + "|".join(choices[option]) + ">")
