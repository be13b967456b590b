"""A number and its unit typed as two words (``--step 384 um``): the shell hands the command
two arguments, and the parser's own complaint ("Got unexpected extra argument(s) (um)") named
neither the option nor the fix."""

from __future__ import annotations

import sys

import pytest

import rig.cli
import stacker.cli


def _run(monkeypatch: pytest.MonkeyPatch, main, argv: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        main()
    return int(stopped.value.code or 0)


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["plan", "--from", "0mm", "--to", "4mm", "--step", "384", "um"], "--step 384um"),
        (["plan", "--from", "0mm", "--to", "4", "mm", "--frames", "5"], "--to 4mm"),
        (
            ["plan", "--from", "0mm", "--to", "4mm", "--step", "1", "mm", "--settle", "2", "s"],
            "--step 1mm",
        ),
        (["rail", "jog", "grbl:///dev/ttyUSB0", "-250", "µm"], "-250µm"),
    ],
)
def test_rig_names_the_quantity_typed_apart(monkeypatch, capsys, argv, fix) -> None:
    assert _run(monkeypatch, rig.cli.main, ["rig", *argv]) == 2
    err = capsys.readouterr().err
    assert f"as one word, {fix}" in err and "unexpected extra argument" not in err
    assert err.count("\n") == 1


def test_stacker_names_a_duration_typed_apart(monkeypatch, capsys, tmp_path) -> None:
    argv = ["stacker", "watch", str(tmp_path), "-o", "x.tif", "--idle-timeout", "30", "s"]
    assert _run(monkeypatch, stacker.cli.main, argv) == 2
    assert "as one word, --idle-timeout 30s" in capsys.readouterr().err


def test_words_that_may_be_paths_are_left_to_the_parser(monkeypatch, capsys) -> None:
    """``in`` and ``m`` could be folder names: not taken for units."""
    argv = ["rig", "plan", "--from", "0mm", "--to", "4mm", "--step", "1", "in"]
    assert _run(monkeypatch, rig.cli.main, argv) == 2
    assert "as one word" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("main", "argv", "said"),
    [
        (stacker.cli.main, ["stacker", "stack", "", "-o", "x.tif"], "an empty argument ("),
        (stacker.cli.main, ["stacker", "batch", "in", "-o", ""], "an empty argument after -o ("),
        (rig.cli.main, ["rig", "demo", "--out", ""], "an empty argument after --out ("),
    ],
)
def test_an_empty_argument_is_named_not_taken_for_this_folder(
    monkeypatch, capsys, tmp_path, main, argv, said
) -> None:
    """``stacker stack "$FRAMES" -o out.tif`` with the variable unset stacked the folder the
    shell stood in, and ``stacker batch in -o ""`` wrote its results there."""
    monkeypatch.chdir(tmp_path)
    assert _run(monkeypatch, main, argv) == 2
    err = capsys.readouterr().err
    assert said in err and "a shell variable that is not set?" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_watch_settle_past_an_hour_is_refused(monkeypatch, capsys, tmp_path) -> None:
    """``--settle 1e9`` stacked nothing, and ``--idle-timeout`` never ended the watch."""
    argv = ["stacker", "watch", str(tmp_path), "-o", "x.tif", "--settle", "1e9"]
    assert _run(monkeypatch, stacker.cli.main, argv) == 2
    assert capsys.readouterr().err == "stacker: error: --settle 1e9: at most 3600 s\n"
