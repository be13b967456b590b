"""Numbers the ``rig`` commands take are checked where they are read, before any device opens.

``--port 70000`` served the preview on port 4464 (70000 modulo 65536), and ``rig shoot
--checkpoint-every -3`` wrote a session that ``rig resume`` then refused to read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rig.cli import app
from rig.plan import PlanError
from stacker.errors import UserError

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


def refused_demo(out: Path, *options: str) -> BaseException | None:
    """The exception a 3-frame 64x64 ``rig demo`` into ``out`` with ``options`` ended in, once
    checked to have written nothing: options are refused before the demo makes its folder."""
    args = ["demo", "--frames", "3", "--size", "64x64", *options, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert not out.exists()
    return result.exception


@pytest.mark.parametrize(
    ("command", "args", "option"),
    [
        ("demo", ["--preview", "--port", "70000"], "--port"),
        ("station", ["--sim", "--port", "-1"], "--port"),
        ("shoot", ["--checkpoint-every", "-3"], "--checkpoint-every"),
        ("tether", ["--checkpoint-every", "-1"], "--checkpoint-every"),
    ],
)
def test_an_impossible_number_is_a_usage_error_naming_its_option(
    command: str, args: list[str], option: str
) -> None:
    """Only the command line is parsed (``make_context``): nothing runs, pass or fail."""
    with pytest.raises(typer.BadParameter) as refused:
        COMMANDS[command].make_context(command, list(args))
    assert refused.value.param is not None and option in refused.value.param.opts
    COMMANDS[command].make_context(command, [*args[:-1], "0"])  # the edge itself is taken


def test_the_preview_port_is_one_option_in_stacker_watch_and_rig() -> None:
    """``stacker watch --port 70000`` was checked only once the page was served, in other
    words ("port 70000: use 1 to 65535") than ``rig demo``'s usage error."""
    from stacker.cli import app as stacker_app

    watch = typer.main.get_command(stacker_app).commands["watch"]  # type: ignore[attr-defined]
    refused = []
    for command, args in ((watch, ["hot", "-o", "o.tif"]), (COMMANDS["demo"], [])):
        with pytest.raises(typer.BadParameter) as info:
            command.make_context("x", [*args, "--preview", "--port", "70000"])
        refused.append(info.value.format_message())
    assert refused[0] == refused[1]


def test_a_demo_fault_past_the_last_frame_is_refused(tmp_path: Path) -> None:
    """``--fault camera@99`` on a 3-frame demo rehearsed nothing and ended 'completed'."""
    refused = refused_demo(tmp_path / "d", "--fault", "camera@4")
    assert isinstance(refused, PlanError)
    assert str(refused) == "--fault camera@4: the demo shoots 3 frames; fail at 1 to 3"


@pytest.mark.parametrize("fault", ["camera@0", "alarm@-1"])
def test_a_demo_fault_before_the_first_frame_says_frames_count_from_1(
    tmp_path: Path, fault: str
) -> None:
    """``--fault camera@0`` was told only to be written KIND@FRAME, as it was."""
    refused = refused_demo(tmp_path / "d", "--fault", fault)
    kind = fault.split("@")[0]
    assert type(refused).__name__ == "SimulatedRigError"
    assert str(refused) == f"--fault {fault}: frames count from 1, the first is {kind}@1"


@pytest.mark.parametrize("size", ["-1", "nan", "inf", "1e308", "1e10"])
def test_a_demo_raw_size_that_is_no_size_is_refused(tmp_path: Path, size: str) -> None:
    """``--raw-mb nan`` was taken (every comparison with nan is false) and made no RAW files;
    ``1e308`` overflowed into a traceback and ``1e10`` simulated a transfer without end."""
    refused = refused_demo(tmp_path / "d", "--raw-mb", size)
    assert type(refused).__name__ == "SimulatedRigError"
    assert str(refused) == f"--raw-mb {float(size):g}: give a size from 0 to 1000 (MB)"


@pytest.mark.parametrize(("option", "value"), [("--seed", "-1"), ("--time-scale", "inf")])
def test_a_demo_seed_or_speed_out_of_range_is_one_line(
    tmp_path: Path, option: str, value: str
) -> None:
    """``--seed -1`` ended in numpy's traceback ('expected non-negative integer')."""
    refused = refused_demo(tmp_path / "d", option, value)
    assert type(refused).__name__ == "SimulatedRigError"
    assert str(refused).startswith(f"{option} {value}: give ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sim", "--rail", "grbl:///dev/ttyUSB0"], "--rail: --sim drives the simulated rig"),
        (["--sim", "--focus", "camera"], "--focus: --sim drives the simulated rig"),
        (["--sim", "--travel", "-5mm"], "--travel -5mm: give a positive length, e.g. 150mm"),
    ],
)
def test_station_options_it_would_ignore_or_find_wrong_too_late(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """--sim silently ignored --rail and --focus; a negative --travel was refused (as
    'travel -5000', no unit) only once the rail was open, which restarts an Arduino."""
    from rig.errors import RigError

    result = CliRunner().invoke(app, ["station", *args, "--sessions", str(tmp_path / "s")])
    assert isinstance(result.exception, RigError), result.exception
    assert str(result.exception) == message or str(result.exception).startswith(message)
    assert not (tmp_path / "s").exists()


def test_a_demo_settle_past_an_hour_names_the_option(tmp_path: Path) -> None:
    """``rig demo --settle 1e9s`` was refused as "plan settle_s is 1e+09 s", a field of a plan
    file the user never wrote, where ``rig plan`` names ``--settle``."""
    refused = refused_demo(tmp_path / "d", "--settle", "1e9s")
    assert isinstance(refused, PlanError)
    assert str(refused) == "--settle '1e9s': give 0 s to 3600 s (an hour) between frames"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("xyz", "--format 'xyz': use tif, tiff, png, jpg, jpeg"),
        ("DNG", "--format dng stacks RAW frames, and the simulated camera shoots JPEG: use tif, "),
    ],
)
def test_a_demo_format_it_cannot_write_is_refused_with_its_own_choices(
    tmp_path: Path, value: str, said: str
) -> None:
    """``rig demo --format xyz`` offered dng among the choices, which the demo then refused."""
    refused = refused_demo(tmp_path / "d", "--format", value)
    assert isinstance(refused, UserError) and str(refused).startswith(said)
    assert "dng" not in str(refused).split(": use ")[1]
