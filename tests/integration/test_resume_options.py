"""``rig resume`` of a session shot on the simulated rig: options naming hardware are refused,
not dropped without a word."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.cli import app
from rig.plan import ShotPlan
from rig.session.folder import SessionConfig, SessionFolder


@pytest.mark.parametrize(
    "given",
    [
        ["--rail", "grbl:///dev/ttyUSB0"],
        ["--camera-model", "Nikon"],
        ["--camera-port", "usb:001,007"],
        ["--home"],
        ["--accept-position"],
    ],
)
def test_a_demo_session_refuses_hardware_options(tmp_path: Path, given: list[str]) -> None:
    """``rig resume --rail URL demo-...`` resumed on the simulated rig as if no --rail was
    given, while the same option on a tether session was refused."""
    root = tmp_path / "demo"
    SessionFolder.create(
        root, ShotPlan.from_frames(0.0, 300.0, 4), SessionConfig({"kind": "simulated"})
    )
    result = CliRunner().invoke(app, ["resume", str(root), *given])
    assert result.exit_code != 0
    assert str(result.exception) == (
        f"{given[0]}: {root} was shot on the simulated rig (rig demo), and resumes on one made "
        "as it was; resume it without that option"
    )
    assert not (root / "frames").exists() or not any((root / "frames").iterdir())


@pytest.mark.parametrize(
    ("rig", "said"),
    [
        ({"kind": "simulated", "width": "320"}, "'width' '320' is not a whole number"),
        ({"kind": "simulated", "seed": 1e400}, "'seed' inf is not a whole number"),
        ({"kind": "simulated", "width": -5}, "size -5x1080: each side 64 to 8000"),
        (
            {"kind": "simulated", "seed": -1},
            "--seed -1: give a whole number from 0 to 9223372036854775807",
        ),
        ({"kind": "simulated", "time_scale": None}, "'time_scale' None is not a finite number"),
        ({"kind": "hardware", "rail": 5}, "'rail' 5: give text, or leave it out"),
        ({"kind": "hardware", "rail": "grbl:///x", "anti_vibration": "yes"}, "true or false"),
    ],
)
def test_a_rig_block_edited_by_hand_is_named_not_a_traceback(
    tmp_path: Path, rig: dict, said: str
) -> None:
    """A value of the wrong kind in session.json's rig block ended ``rig resume`` in a
    TypeError; one of the right kind but out of range was refused without naming the file."""
    root = tmp_path / "s"
    SessionFolder.create(root, ShotPlan.from_frames(0.0, 300.0, 4), SessionConfig(rig))
    result = CliRunner().invoke(app, ["resume", str(root)])
    assert result.exit_code != 0
    message = str(result.exception)
    assert message.startswith(f"{root / 'session.json'}: ") and said in message, message
    assert "\n" not in message


def test_a_session_json_that_is_a_pipe_is_one_line(tmp_path: Path) -> None:
    """A named pipe in session.json's place hung ``rig resume`` for ever."""
    root = tmp_path / "s"
    SessionFolder.create(root, ShotPlan.from_frames(0.0, 300.0, 4), SessionConfig({}))
    (root / "session.json").unlink()
    os.mkfifo(root / "session.json")
    result = CliRunner().invoke(app, ["resume", str(root)])
    assert result.exit_code != 0
    assert str(result.exception).startswith(f"{root / 'session.json'}: unreadable (")
    assert "not a regular file" in str(result.exception)


def test_a_bad_capture_target_is_named_as_the_option_given(tmp_path: Path) -> None:
    """``rig resume --capture-target floppy`` was refused as ``'capture_target' 'floppy'``, the
    key of session.json it was merged into, not the option typed."""
    root = tmp_path / "s"
    rig = {"kind": "hardware", "rail": "grbl:///dev/ttyUSB0"}
    SessionFolder.create(root, ShotPlan.from_frames(0.0, 300.0, 4), SessionConfig(rig))
    result = CliRunner().invoke(app, ["resume", str(root), "--capture-target", "floppy"])
    assert result.exit_code != 0
    assert str(result.exception).startswith("--capture-target 'floppy': use one of auto, ram")
