"""What the ``rig`` and ``stacker`` parsers refuse, and how it is told."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from rig.cli import app as rig_app
from stacker.cli import app as stacker_app
from stacker.cliutil import run_app
from stacker.errors import UserError


def _command(app: typer.Typer, *path: str) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize(
    ("app", "path", "args", "missing"),
    [
        (rig_app, ("rail", "status"), [], "url"),
        (rig_app, ("rail", "move"), [], "url"),
        (rig_app, ("resume",), [], "session"),
        (stacker_app, ("stack",), ["a.jpg"], "output"),
        (stacker_app, ("stack",), ["-o", "b.tif"], "inputs"),
        (stacker_app, ("watch",), ["-o", "b.tif"], "folder"),
    ],
)
def test_a_required_option_or_argument_left_out_is_refused_by_the_parser(
    app: typer.Typer, path: tuple[str, ...], args: list[str], missing: str
) -> None:
    """Typer 0.16 under Click 8.2 or later (which pip installs beside it) passed ``None`` for
    it: ``rig rail status`` without a URL ended in a ``TypeError`` traceback."""
    with pytest.raises(typer.BadParameter) as refused:
        _command(app, *path).make_context(path[-1], list(args))
    assert type(refused.value).__name__ == "MissingParameter"
    assert refused.value.param is not None and refused.value.param.name == missing


RIG = [
    (["plan", "--frames", "abc"], "--frames 'abc' is not a whole number (see rig plan --help)"),
    (["plan", "--frames", "1.5"], "--frames '1.5' is not a whole number"),
    (["demo", "--port", "99999"], "Invalid value for '--port': 99999 "),
    (["shoot", "--checkpoint-every", "-1"], "Invalid value for '--checkpoint-every': -1 "),
    (["demo", "--time-scale", "x"], "--time-scale 'x' is not a number (see rig demo --help)"),
    (["plan", "--bogus"], "No such option"),
    (["plan", "--frame", "3"], "did you mean --frames"),
    (["--bogus"], "No such option"),
    (["bogus"], "No such command 'bogus' (see rig --help)"),
    (["rail", "status"], "Missing argument 'URL' (see rig rail status --help)"),
    (["plan", "a"], "Got unexpected extra argument"),
    # a path part longer than the file system takes: Path.exists() of Python 3.10 to 3.12
    # raises ENAMETOOLONG, a traceback from eleven commands
    (["resume", "c" * 300], "...cccccccccccccccc: too long a name for the file system"),
    (["demo", "-o", "c" * 300, "--frames", "2"], "too long a name for the file system"),
]
STACKER = [
    (
        ["stack", "--jpeg-quality", "abc", "a.jpg", "-o", "b.tif"],
        "--jpeg-quality 'abc' is not a whole number (see stacker stack --help)",
    ),
    (["stack", "a.jpg"], "Missing option"),
    (["stack", "-o", "b.tif"], "Missing argument 'INPUTS...' (see stacker stack --help)"),
    (["watch", "--bogus"], "No such option"),
    (["stack", "c" * 300, "-o", "b.tif"], "too long a name for the file system"),
    (["batch", ".", "-o", "c" * 300], "too long a name for the file system; give another path"),
]


def _run(prog: str, args: list[str], monkeypatch, capsys) -> tuple[Any, str, str]:
    monkeypatch.setattr(sys, "argv", [prog, *args])
    with pytest.raises(SystemExit) as ended:
        run_app(rig_app if prog == "rig" else stacker_app, prog)
    printed = capsys.readouterr()
    return ended.value.code, printed.out, printed.err


@pytest.mark.parametrize(
    ("prog", "args", "said"),
    [("rig", *case) for case in RIG] + [("stacker", *case) for case in STACKER],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_refused_command_line_is_one_line_with_status_2(
    prog: str, args: list[str], said: str, monkeypatch, capsys
) -> None:
    """``rig plan --frames abc``, an unknown option or a missing argument printed Click's block
    (``Usage:``, ``Try ... --help``, ``Error: ...``, boxed where Typer draws with rich), where
    every other error of input is one line."""
    code, _, err = _run(prog, args, monkeypatch, capsys)
    assert code == UserError.exit_code == 2
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and said in err, err


def test_out_of_file_descriptors_anywhere_is_one_line(monkeypatch, capsys) -> None:
    """``stacker watch`` under a small ``ulimit -n`` ended in a traceback when a module numpy
    or rich loads late could not be opened. The error is raised by a command made for the test:
    a real limit fails wherever the process happens to be."""
    import errno

    app = typer.Typer()

    @app.command()
    def watch() -> None:
        raise OSError(errno.EMFILE, "Too many open files", "/venv/rich/_emoji_codes.py")

    monkeypatch.setattr(sys, "argv", ["stacker"])
    with pytest.raises(SystemExit) as ended:
        run_app(app, "stacker")
    err = capsys.readouterr().err
    assert ended.value.code == 1
    assert err == (
        "stacker: error: Too many open files; raise the limit of open files (ulimit -n 4096)\n"
    )


def test_a_full_disk_where_no_command_expected_a_write_is_one_line(monkeypatch, capsys) -> None:
    """``rig demo`` with its temporary folder full ended in a 40-line traceback: the virtual
    camera's staging folder is written before any session file. The error is raised by a
    command made for the test: a real full disk fails wherever the process writes first."""
    import errno

    app = typer.Typer()

    @app.command()
    def demo() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/stackrig-vcam-x/capture.jpg")

    monkeypatch.setattr(sys, "argv", ["rig"])
    with pytest.raises(SystemExit) as ended:
        run_app(app, "rig")
    assert ended.value.code == 6
    assert capsys.readouterr().err == (
        "rig: error: /tmp/stackrig-vcam-x/capture.jpg: No space left on device; free some space\n"
    )


@pytest.mark.parametrize(("prog", "args"), [("rig", []), ("rig", ["rail"]), ("stacker", [])])
def test_a_bare_group_still_prints_its_help(prog: str, args: list[str], monkeypatch, capsys):
    code, _, err = _run(prog, args, monkeypatch, capsys)
    assert code == 2 and err.startswith(f"Usage: {' '.join([prog, *args])} [OPTIONS] COMMAND")
    assert "Commands:" in err and "error" not in err


def test_help_is_printed_as_before(monkeypatch, capsys) -> None:
    code, out, err = _run("rig", ["plan", "--help"], monkeypatch, capsys)
    assert code == 0 and err == "" and out.startswith("Usage: rig plan [OPTIONS]\n")


def test_a_click_without_no_args_is_help_error_still_parses(monkeypatch, capsys) -> None:
    """Click 8.1, which Typer 0.16 runs on as well as on 8.2 and later, has no
    ``NoArgsIsHelpError``: naming it where the parser's errors are caught ended ``--help`` and
    every refused command line in an ``AttributeError`` traceback."""
    import types

    from stacker import cliutil

    errors = cliutil._click_errors()
    click_81 = types.SimpleNamespace(
        **{k: v for k, v in vars(errors).items() if k != "NoArgsIsHelpError"}
    )
    monkeypatch.setattr(cliutil, "_click_errors", lambda: click_81)
    code, out, err = _run("rig", ["plan", "--help"], monkeypatch, capsys)
    assert code == 0 and err == "" and out.startswith("Usage: rig plan [OPTIONS]\n")
    code, _, err = _run("rig", ["plan", "--frames", "abc"], monkeypatch, capsys)
    assert (
        code == 2
        and err == "rig: error: --frames 'abc' is not a whole number (see rig plan --help)\n"
    )


def test_a_fraction_for_a_bounded_whole_number_is_worded_as_for_any_other() -> None:
    """Click's own parser (Typer 0.16) says "'1.5' is not a valid integer range." of an option
    with bounds (``--checkpoint-every``, ``--port``): the line read "Invalid value for
    '--checkpoint-every': '1.5' is not a valid integer range", where ``--frames 1.5`` read
    "is not a whole number", as both do under Typer 0.2x."""
    from stacker import cliutil

    errors = cliutil._click_errors()
    command = _command(rig_app, "shoot")
    ctx = command.make_context("shoot", ["--help"], resilient_parsing=True)
    param = next(p for p in command.params if p.name == "checkpoint_every")
    refused = errors.BadParameter("'1.5' is not a valid integer range.", ctx=ctx, param=param)
    assert cliutil.parser_error_line(refused).startswith(
        "--checkpoint-every '1.5' is not a whole number (see "
    )


def test_a_watch_of_a_loop_of_links_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """``Path.resolve`` of a link loop raises RuntimeError on Python 3.11: a traceback, where
    the other commands say the folder is not one."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    args = ["watch", str(tmp_path / "a"), "-o", str(tmp_path / "w.tif"), "--idle-timeout", "1s"]
    code, _, err = _run("stacker", args, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "a") in err, err


@pytest.mark.parametrize(
    ("prog", "args"),
    [("rig", ["demo", "--frames", "4", "--out=~/demo"]),
     ("stacker", ["batch", "specimens", "--output=~/stacked"]),
     ("stacker", ["stack", "frames", "--output=~"])],
)  # fmt: skip
def test_a_home_folder_after_an_equals_sign_is_refused_with_the_fix(
    prog: str, args: list[str], tmp_path: Path, monkeypatch, capsys
) -> None:
    """The shell expands ``~`` only at a word's start: ``rig demo --out=~/demo`` ran into a
    folder named ``~`` in the current one, which ``rm -rf ~``, tidying it up, turns into the
    loss of the home folder."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(prog, args, monkeypatch, capsys)
    option, value = args[-1].split("=")
    assert code == 2 and err == (
        f"{prog}: error: '{args[-1]}': the shell does not expand ~ after '='; write "
        f"{option} {value} (with a space) or {option}=$HOME{value[1:]}\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("prog", "args", "pair"),
    [("rig", ["shoot", "--rail", "sim://", "--out", "--dry-run"], "--out --dry-run"),
     ("rig", ["demo", "--frames", "--help"], "--frames --help"),
     ("stacker", ["watch", "incoming", "-o", "--preview", "--idle-timeout", "1s"],
      "-o --preview"),
     ("stacker", ["stack", "frames", "--output", "--align=none"], "--output --align=none")],
)  # fmt: skip
def test_an_option_left_without_its_value_is_refused_not_given_the_next_option(
    prog: str, args: list[str], pair: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The parser took the next option for the value: ``rig shoot --out --dry-run`` shot for
    real, into a folder named ``--dry-run``."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(prog, args, monkeypatch, capsys)
    option, value = pair.split(" ")
    assert code == 2 and err == (
        f"{prog}: error: '{pair}': {option} takes a value and {value} is an option; "
        f"give {option} its value\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("prog", "args"),
    [("rig", ["rail", "jog", "sim://", "-250um", "--help"]),
     ("stacker", ["stack", "frames", "-o", "-x.tif", "--help"])],
)  # fmt: skip
def test_values_that_start_with_a_dash_are_still_values(
    prog: str, args: list[str], monkeypatch, capsys
) -> None:
    code, out, _ = _run(prog, args, monkeypatch, capsys)
    assert code == 0 and out.startswith("Usage:")


def test_a_terminal_width_of_zero_in_the_environment_still_prints(monkeypatch, capsys) -> None:
    """``COLUMNS=0`` (exported by some container and CI wrappers): rich took it for a console
    no character fits on, and ``rig plan`` printed nothing, exit 0."""
    monkeypatch.setenv("COLUMNS", "0")
    code, out, _ = _run("rig", ["plan", "--from", "0mm", "--to", "1mm", "--step", "250um"],
                        monkeypatch, capsys)  # fmt: skip
    assert code in (0, None) and "5 frames" in out, out


def test_a_read_only_root_takes_temporary_files_to_a_writable_folder(
    tmp_path: Path, monkeypatch
) -> None:
    """``docker --read-only`` or ``ProtectSystem=strict``: no /tmp. A watch said "cannot read"
    of every frame, and a batch, a demo or a simulator ended in a traceback."""
    import tempfile

    from stacker.cliutil import writable_temporary_folder

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path / "ro")])
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("TMPDIR", raising=False)
    assert writable_temporary_folder() == str(runtime)
    assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(runtime)
    assert Path(tempfile.mkdtemp()).parent == runtime

    # Python's last resort, the current folder (the user's files, the hot folder perhaps),
    # gives way to the runtime folder too.
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path)])
    assert writable_temporary_folder() == str(runtime)

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path / "ro")])
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    monkeypatch.setattr(os.path, "isdir", lambda p: False)  # no /dev/shm either
    with pytest.raises(UserError, match="no writable folder for temporary files"):
        writable_temporary_folder()
