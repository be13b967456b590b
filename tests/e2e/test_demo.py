"""``rig demo``, ``rig plan`` and ``rig shoot`` through the real command line (subprocesses).

The demo runs the whole simulated rig: libgphoto2's virtual camera (python-gphoto2), the GRBL
driver talking to the GRBL simulator over a real pseudo-terminal, the synthetic scene, and the
real stacker. Each run is a fresh process so libgphoto2 picks its virtual camera at import.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from rig.cli import app
from stacker.errors import UserError
from tests.paths import ROOT

SMALL = ["--frames", "8", "--size", "480x360", "--settle", "0.02s", "--time-scale", "50"]


def rig(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}  # each run its own camera
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "rig.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def journal(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


def test_demo_runs_a_complete_session(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = rig("demo", "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "session completed: 8/8 frames captured, 8 merged" in proc.stdout
    assert str(out / "composite.tif") in proc.stdout

    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == [f"frame_{i:04d}.jpg" for i in range(1, 9)]
    records = journal(out)
    shot = [r for r in records if r["event"] == "frame"]
    assert [r["index"] for r in shot] == list(range(1, 9))
    positions = [r["position"] for r in shot]
    assert positions[0] == 0 and positions[-1] == pytest.approx(3000.0)
    assert positions == sorted(positions)
    merged = [r for r in records if r["event"] == "merge"]
    assert sorted(r["index"] for r in merged) == list(range(1, 9))
    assert all(r["merged"] and r["score"] > 0.9 for r in merged)
    assert records[0]["event"] == "start" and records[-1] == {
        **records[-1],
        "event": "finish",
        "reason": "completed",
    }

    composite = cv2.imread(str(out / "composite.tif"))
    assert composite is not None and composite.shape[0] > 300 and composite.shape[1] > 400
    depth = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth is not None and depth.dtype.name == "uint16"
    assert depth.max() > 1000  # micrometres: the scene is 3 mm deep
    assert (out / "depth-preview.jpg").stat().st_size > 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["frames"] == 8
    assert json.loads((out / "session.json").read_text())["rig"]["kind"] == "simulated"
    assert "frame 8 at 3 mm" in (out / "session.log").read_text()


def test_demo_refuses_an_existing_session_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "plan.json").write_text("{}")
    proc = rig("demo", "--out", str(out), *SMALL)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "rig resume" in proc.stderr


def test_a_preview_port_in_use_leaves_no_session_behind(tmp_path: Path) -> None:
    """The folder was made before the port was bound: a half-made session then took the name
    ("already holds a session")."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "demo"
        proc = rig("demo", "--out", str(out), *SMALL, "--preview", "--port", str(port))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert not out.exists()


def test_odd_files_and_values_are_one_line_errors(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(b"\xff\xfe not text")
    result = CliRunner().invoke(app, ["plan", "--plan", str(plan)])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception) == f"{plan}: not a plan (not UTF-8 text); give a plan.json"
    result = CliRunner().invoke(app, ["rail", "simulate", "--time-scale", "0"])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception).startswith("--time-scale 0: give 1 (a real rail's speed) or more")
    # Slower than a real rail, a demo ended in "the GRBL controller stopped answering".
    result = CliRunner().invoke(app, ["demo", "--time-scale", "0.001", "--frames", "2"])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception).startswith("--time-scale 0.001: give 1")


def test_plan_prints_positions_step_count_and_duration() -> None:
    proc = rig("plan", "--from", "0mm", "--to", "3.84mm", "-m", "1", "-N", "8")
    assert proc.returncode == 0, proc.stderr
    assert "11 frames, step 384 µm" in proc.stdout
    assert "depth of field 480 µm" in proc.stdout
    assert "frame_0011" in proc.stdout and "3.84 mm" in proc.stdout
    assert "estimated duration" in proc.stdout


def test_plan_file_round_trips_through_the_cli(tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    proc = rig("plan", "--from", "1mm", "--to", "0mm", "--step", "250um", "--save", str(saved))
    assert proc.returncode == 0, proc.stderr
    again = rig("plan", "--plan", str(saved))
    assert again.returncode == 0
    assert "5 frames, step 250 µm, 1 mm → 0 µm" in again.stdout
    example = ROOT / "examples" / "plan-1to1-macro.json"
    assert rig("plan", "--plan", str(example)).returncode == 0


def test_shoot_dry_run_moves_nothing_and_needs_no_hardware(tmp_path: Path) -> None:
    proc = rig(
        "shoot", "--rail", "grbl:///dev/nonexistent", "--from", "0mm", "--to", "1mm",
        "--frames", "5", "--out", str(tmp_path / "s"), "--dry-run",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing moved" in proc.stdout
    assert "frame_0005" in proc.stdout
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "0", "--to", "1mm", "--frames", "3"], "has no unit"),
        (["--from", "0mm", "--to", "1mm"], "space the frames one way"),
        (["--from", "0mm", "--to", "1mm", "--step", "50um", "--frames", "3"], "one way"),
        (["--from", "0mm", "--to", "1mm", "--step", "-5um"], "positive step"),
        (["--from", "0mm", "--to", "1mm", "--frames", "3", "--method", "magic"], "--method"),
        (["--from", "0mm", "--to", "1mm", "-m", "1"], "f-number"),
        (["--from", "0mm", "--to", "1mm", "--frames", "3", "--settle", "soon"], "--settle"),
        # known only once the last frame was shot, and no resume could change it
        (["--from", "0mm", "--to", "1mm", "--frames", "3", "--reference", "9"], "shoots 3 frames"),
    ],
)
def test_bad_values_are_one_line_errors(args: list[str], needle: str) -> None:
    # In-process for speed: the command raises the UserError that `rig` prints as one line.
    result = CliRunner().invoke(app, ["shoot", "--rail", "sim://", *args, "--dry-run"])
    assert isinstance(result.exception, UserError), result.output
    assert needle in str(result.exception)
    assert "\n" not in str(result.exception)


def test_a_user_error_reaches_the_shell_as_one_line_and_exit_2() -> None:
    proc = rig("shoot", "--rail", "sim://", "--from", "0mm", "--to", "1mm", "--dry-run")
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith("rig: error: space the frames one way")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "demo"),
    [
        (["shoot", "--rail", "sim://", "--from", "0mm", "--to", "1mm", "--frames", "3"],
         "`rig demo`"),
        (["tether", "--frames", "3"], "`rig demo --tether`"),
    ],
    ids=["shoot", "tether"],
)  # fmt: skip
def test_a_session_without_a_camera_says_so_and_points_at_the_demo(
    tmp_path: Path, command: list[str], demo: str
) -> None:
    """``rig tether`` said only "no camera found", where ``rig shoot`` points at the demo."""
    # No VCAMERADIR: libgphoto2 loads its real USB drivers and finds no camera on this machine.
    proc = rig(*command, "--out", str(tmp_path / "s"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "no camera found" in proc.stderr and demo in proc.stderr
    assert not (tmp_path / "s").exists()


def test_the_session_api_example_runs_and_a_second_run_resumes(tmp_path: Path) -> None:
    """examples/session_api.py, as the README points to it; run twice on one folder it ended
    in a traceback ('already holds a session')."""
    example = ROOT / "examples" / "session_api.py"
    out = tmp_path / "api-session"
    own_camera = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(example), str(out)], capture_output=True,
                              text=True, timeout=300, env=own_camera)  # fmt: skip
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "completed: 10 frames merged" in proc.stdout, proc.stdout
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert len([r for r in records if r["event"] == "frame"]) == 10  # none shot twice
    assert (out / "composite.tif").is_file()


@pytest.mark.parametrize("command", ["shoot", "tether"])
def test_a_folder_no_session_can_go_in_is_refused_before_any_device_opens(
    tmp_path: Path, command: str
) -> None:
    """The rail was opened first (an Arduino restarts then) and its warnings printed, and only
    then did the folder turn out to hold a session: a rail that is not there proves the order."""
    taken = tmp_path / "beetle"
    taken.mkdir()
    (taken / "plan.json").write_text("{}")
    devices = ["--rail", "grbl:///dev/no-such-rail"] if command == "shoot" else []
    plan = ["--from", "0mm", "--to", "1mm", "--frames", "3"] if command == "shoot" else []
    proc = rig(command, *devices, *plan, "--out", str(taken))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{taken}: already holds a session" in proc.stderr, proc.stderr
    assert "no-such-rail" not in proc.stderr and "camera" not in proc.stderr
