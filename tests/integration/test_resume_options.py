"""``rig resume`` of a session shot on the simulated rig: options naming hardware are refused,
not dropped without a word."""

from __future__ import annotations

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
