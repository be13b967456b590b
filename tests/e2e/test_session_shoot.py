"""``rig shoot`` and ``rig resume`` on the hardware path: a GRBL rail URL and a libgphoto2 camera.

The rail is the GRBL simulator on a real pseudo-terminal, run by this test process; the camera
is libgphoto2's virtual body (VCAMERADIR given to the ``rig`` subprocess) serving one staged
frame. Nothing in the command knows it is not talking to hardware.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rig.session.journal import read_journal
from rig.sim.grbl import GrblSimulator
from tests import commands
from tests.paths import ROOT


@pytest.fixture()
def grbl() -> Iterator[GrblSimulator]:
    with GrblSimulator(time_scale=50) as sim:
        yield sim


def rig(vcam: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return commands.rig(*args, timeout=90, VCAMERADIR=str(vcam))


def test_shoot_steps_the_rail_shoots_and_stacks(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    out = tmp_path / "s"
    # The board restarts as the port opens and calls where the carriage stands (mid-travel) 0;
    # --accept-position takes that as the reference.
    proc = rig(
        vcam, "shoot", "--rail", grbl.url, "--from", "-50mm", "--to", "-49.4mm", "--step",
        "200um", "--settle", "0.01s", "--out", str(out), "--format", "png", "--accept-position",
        "--capture-target", "card", "--anti-vibration",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "session completed: 4/4 frames captured, 4 merged" in proc.stdout
    frames = read_journal(out / "journal.jsonl").of_kind("frame")
    assert [f["position"] for f in frames] == [-50000.0, -49800.0, -49600.0, -49400.0]
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        f"frame_{i:04d}.jpg" for i in range(1, 5)
    ]
    assert (out / "composite.png").is_file() and (out / "depth.png").is_file()
    # The rail really went there (machine mm), then back to the start.
    ends = [round(end, 3) for _, end in grbl.axis_moves("X")]
    assert ends[-4:] == [-49.8, -49.6, -49.4, -50.0]  # (a power-up reset may move it first)
    config = json.loads((out / "session.json").read_text())
    assert config["rig"] == {
        "kind": "hardware",
        "focus": "rail",
        "rail": grbl.url,
        "camera_model": None,
        "camera_port": None,
        "capture_target": "card",
        "anti_vibration": True,  # the virtual body offers no remedy: only logged
        "incoming": None,
    }
    assert "anti-vibration: this body offers none; settle time only" in proc.stdout
    # Resuming a complete session restacks it and opens nothing: it asked for --accept-position
    # (the rail's port restarts the board) to shoot nothing.
    (out / "composite.png").unlink()
    again = rig(vcam, "resume", str(out), "--rail", "grbl:///dev/no-such-rail")
    assert again.returncode == 0, again.stderr + again.stdout
    assert "every frame is there, stacking them again" in again.stdout
    assert (out / "composite.png").is_file()


def test_resume_on_a_rail_that_came_back_on_another_port(tmp_path: Path, vcam: Path) -> None:
    out = tmp_path / "s"
    # A controller that does not reset when its port is opened keeps its position between runs.
    first = GrblSimulator(time_scale=50, reset_on_open=False).start()
    try:
        # Homing is on, so it powered up locked; unlocked once, it stays so across openings.
        assert rig(vcam, "rail", "unlock", first.url).returncode == 0
        proc = rig(
            vcam, "shoot", "--rail", first.url + "&axis=Y", "--from", "-50mm", "--to", "-49.5mm",
            "--frames", "3", "--settle", "0", "--out", str(out), "--no-return",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    finally:
        first.close()  # unplugged: its port is gone
    (out / "frames" / "frame_0003.jpg").unlink()

    gone = rig(vcam, "resume", str(out))
    assert gone.returncode != 0
    assert gone.stderr.count("\n") == 1 and "--rail URL" in gone.stderr
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "frame_0001.jpg",
        "frame_0002.jpg",
    ]

    with GrblSimulator(time_scale=50, reset_on_open=False) as other:
        assert rig(vcam, "rail", "unlock", other.url).returncode == 0
        moved = rig(vcam, "resume", str(out), "--rail", other.url)
        assert moved.returncode == 0, moved.stderr + moved.stdout
        # A board just powered up and unlocked looks referenced; it is said to stand elsewhere.
        assert "stands at 0 µm, but this session left it at -49.5 mm" in moved.stdout
        # The session's axis kept with the new port: the bare URL drove X, where the session's
        # frames were shot on Y.
        assert "--rail: the session's axis=Y kept" in moved.stdout
        assert [round(end, 3) for _, end in other.axis_moves("Y")] == [-49.5]
        assert other.axis_moves("X") == []
    config = json.loads((out / "session.json").read_text())
    assert config["rig"]["rail"] == other.url + "&axis=Y"
    frames = read_journal(out / "journal.jsonl").of_kind("frame")
    assert [f["index"] for f in frames] == [1, 2, 3, 3]
    assert frames[-1]["reshot"] is True


def test_rail_move_then_shoot_in_another_process_does_not_shift_the_stack(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """The board resets when ``rig shoot`` opens the port, forgetting the ``rig rail move``."""
    moved = subprocess.run(
        [sys.executable, "-m", "rig.cli", "rail", "move", "--accept-position", grbl.url, "2mm"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    carriage = grbl.carriage[0]
    motions = len(grbl.motion_log)
    out = tmp_path / "s"
    shoot = ["shoot", "--rail", grbl.url, "--from", "-3mm", "--to", "-2.6mm", "--frames", "3",
             "--settle", "0", "--out", str(out), "--no-return"]  # fmt: skip
    refused = rig(vcam, *shoot)
    assert refused.returncode == 5, refused.stderr + refused.stdout
    assert refused.stderr.count("\n") == 1
    assert "restarted when its port was opened" in refused.stderr
    assert "--home" in refused.stderr and "--accept-position" in refused.stderr
    assert len(grbl.motion_log) == motions and grbl.carriage[0] == carriage  # nothing moved
    assert not out.exists()

    homed = rig(vcam, *shoot, "--home")
    assert homed.returncode == 0, homed.stderr + homed.stdout
    # Positions count from the homing switch now (GRBL homes to machine -$27 = -1 mm, and a
    # homed machine frame is the carriage's own): the frames are where the plan says.
    assert [round(end, 3) for _, end in grbl.axis_moves("X")[-3:]] == [-3.0, -2.8, -2.6]
    assert grbl.carriage[0] == pytest.approx(-2.6, abs=0.002)


def test_resume_after_a_restart_needs_home_or_an_explicit_accept(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    out = tmp_path / "s"
    first = rig(
        vcam, "shoot", "--rail", grbl.url, "--from", "0mm", "--to", "0.6mm", "--frames", "4",
        "--settle", "0", "--out", str(out), "--no-return", "--accept-position",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr + first.stdout
    start_carriage = grbl.carriage[0] - 0.6
    (out / "frames" / "frame_0004.jpg").unlink()
    (out / "frames" / "frame_0003.jpg").unlink()
    grbl.power_cycle()  # and the next open resets it again anyway

    refused = rig(vcam, "resume", str(out))
    assert refused.returncode == 5, refused.stderr + refused.stdout
    assert refused.stderr.count("\n") == 1
    assert "frame 4 was shot at 600 µm" in refused.stderr
    assert "--accept-position" in refused.stderr and "--home" in refused.stderr
    # Homing gives this session's positions another 0: its missing frames were shot 50 mm
    # from the others, and the session said "completed".
    motions = len(grbl.motion_log)
    homed = rig(vcam, "resume", str(out), "--home")
    assert homed.returncode == 2, homed.stderr + homed.stdout
    assert homed.stderr.count("\n") == 1
    assert "count from where the carriage stood when it was shot" in homed.stderr
    assert len(grbl.motion_log) == motions  # refused before the port was opened

    resumed = rig(vcam, "resume", str(out), "--accept-position")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    # Told it stands at frame 4's 0.6 mm, the rail shoots frames 3 and 4 again where they
    # were: the board now calls that place 0, so 0.4 mm is machine -0.2 mm.
    assert [round(end, 3) for _, end in grbl.axis_moves("X")[-2:]] == [-0.2, 0.0]
    assert grbl.carriage[0] == pytest.approx(start_carriage + 0.6, abs=0.002)


def _shot_from_an_accepted_0(
    vcam: Path, grbl: GrblSimulator, out: Path, near: str, far: str
) -> None:
    """A four-frame session shot with --accept-position, its last frame then lost: one to
    resume."""
    first = rig(
        vcam, "shoot", "--rail", grbl.url, "--from", near, "--to", far, "--frames", "4",
        "--settle", "0", "--out", str(out), "--no-return", "--accept-position",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr + first.stdout
    (out / "frames" / "frame_0004.jpg").unlink()


def test_a_session_of_an_older_stackrig_is_not_resumed_where_its_journal_cannot_tell(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """Journals of stackrig before 2026-12-03 record no moves, and before 2026-12-06 not
    whether the zero was an accepted place. Resumed with --home, an accepted session's missing
    frames landed 50 mm from the others; with --accept-position, the rail was told it stood at
    the last frame while the older runner had moved on to the next, so every missing frame was
    shot a step off. Both are refused now, before anything moves, and the frames stay."""
    out = tmp_path / "s"
    _shot_from_an_accepted_0(vcam, grbl, out, "0mm", "0.6mm")
    journal = out / "journal.jsonl"
    older = []
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "move":
            continue
        record.pop("accepted", None)
        record.pop("rail_at", None)
        older.append(json.dumps(record))
    journal.write_text("\n".join(older) + "\n")
    kept = sorted(p.name for p in (out / "frames").iterdir())
    grbl.power_cycle()
    motions = len(grbl.motion_log)

    homed = rig(vcam, "resume", str(out), "--home")
    assert homed.returncode == 2, homed.stderr + homed.stdout
    assert homed.stderr.count("\n") == 1 and "shot by an older stackrig" in homed.stderr
    accepted = rig(vcam, "resume", str(out), "--accept-position")
    assert accepted.returncode == 5, accepted.stderr + accepted.stdout
    assert accepted.stderr.count("\n") == 1
    assert "does not say where its last run left the rail" in accepted.stderr
    assert len(grbl.motion_log) == motions  # nothing moved
    assert sorted(p.name for p in (out / "frames").iterdir()) == kept


@pytest.mark.parametrize("reference", ["--accept-position", "--home"])
def test_a_session_whose_journal_is_gone_is_not_resumed_from_a_place_nothing_records(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator, reference: str
) -> None:
    """A session folder copied without its journal (or the journal moved aside, as a damaged
    line's error once advised): taken as where the carriage stands, the missing frames were
    shot 0.6 mm off their places; homed, 50 mm; and the session said "completed". Refused now,
    before the port is opened, with the way out."""
    out = tmp_path / "s"
    _shot_from_an_accepted_0(vcam, grbl, out, "0mm", "0.6mm")
    (out / "journal.jsonl").rename(tmp_path / "journal.jsonl")
    kept = sorted(p.name for p in (out / "frames").iterdir())
    motions = len(grbl.motion_log)

    refused = rig(vcam, "resume", str(out), reference)
    assert refused.returncode == 2, refused.stderr + refused.stdout
    assert refused.stderr.count("\n") == 1
    assert "no record of the runs that shot this session's frames" in refused.stderr
    assert "stacker stack" in refused.stderr
    assert len(grbl.motion_log) == motions  # nothing moved
    assert sorted(p.name for p in (out / "frames").iterdir()) == kept


def test_a_resume_whose_camera_is_on_another_port_now_is_told_how_to_give_it(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """A body switched off and on (a battery change) comes back on another USB address. The
    resume's error named neither --camera-port nor the resume command, and offered `rig demo`."""
    out = tmp_path / "s"
    _shot_from_an_accepted_0(vcam, grbl, out, "0mm", "0.6mm")
    config = json.loads((out / "session.json").read_text())
    config["rig"]["camera_port"] = "usb:001,009"  # where the body was before
    (out / "session.json").write_text(json.dumps(config))

    refused = rig(vcam, "resume", str(out), "--accept-position")
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
    assert "usb:001,009" in refused.stderr
    assert f"rig resume {out} --camera-port PORT" in refused.stderr
    assert "rig demo" not in refused.stderr


def test_a_resume_whose_camera_now_gives_another_size_stops_and_shoots_those_again(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """Between a stop and a resume the body changed (or its image size). Every missing frame
    was shot, each kept out of the stack, the session said "completed" with exit 0, and a
    second resume found every frame there: they could never be stacked. Now the first frame
    unlike the others stops the session; it and those shot behind it are set aside, and a
    resume with the camera as it was shoots them again."""
    from rig.sim.scene import SceneSpec, SyntheticScene
    from rig.sim.vcamera import VirtualCameraFolder

    out = tmp_path / "s"
    _shot_from_an_accepted_0(vcam, grbl, out, "0mm", "0.6mm")
    (out / "frames" / "frame_0003.jpg").unlink()
    other = VirtualCameraFolder(tmp_path / "other", slot_bytes=256 << 10)
    spec = SceneSpec(width=384, height=256, seed=5, jpeg_quality=90)
    shot = SyntheticScene(spec).render(1500.0).encoded
    assert shot is not None
    other.stage(shot)

    changed = rig(other.path, "resume", str(out), "--accept-position")
    assert changed.returncode == 6, changed.stderr + changed.stdout
    assert "384x256 differs from the stack's 320x240" in changed.stdout + changed.stderr
    assert "set it as it was, then resume" in changed.stdout + changed.stderr
    aside = sorted(p.name for p in (out / "failed-attempts").iterdir())
    assert "frame_0003.unlike-the-others.jpg" in aside
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "frame_0001.jpg", "frame_0002.jpg",
    ]  # fmt: skip

    again = rig(vcam, "resume", str(out), "--accept-position")
    assert again.returncode == 0, again.stderr + again.stdout
    assert "4/4 frames captured, 4 merged" in again.stdout


def test_a_station_started_with_home_keeps_a_session_shot_from_an_accepted_0(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """Only the page's Home told the station that the rail's 0 had become the switch's: a
    station started with --home resumed a session shot with --accept-position from the homed
    0, its missing frames some 50 mm from the others."""
    sessions = tmp_path / "sessions"
    out = sessions / "accepted"
    _shot_from_an_accepted_0(vcam, grbl, out, "-3mm", "-2.4mm")
    kept = sorted(p.name for p in (out / "frames").iterdir())
    token = "station-home-token-5"
    station = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "station", "--rail", grbl.url, "--home", "--port", "0",
         "--token", token, "--sessions", str(sessions)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**commands.env(), "VCAMERADIR": str(vcam)},
    )  # fmt: skip
    try:
        assert station.stdout is not None
        said = ""
        while not (url := re.search(r"stackrig station: (http://127\.0\.0\.1:\d+)/", said)):
            line = station.stdout.readline()  # warnings about the board's settings first
            assert line, said
            said += line
        motions = len(grbl.motion_log)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url[1], headers=auth, timeout=30) as page:
            for body in ({}, {"rail_where_left": True}):
                refused = page.post("/api/sessions/accepted/resume", json=body)
                assert refused.status_code == 400, refused.text
                assert "count from where the carriage stood" in refused.json()["error"]
        assert len(grbl.motion_log) == motions
        assert sorted(p.name for p in (out / "frames").iterdir()) == kept
    finally:
        station.terminate()
        station.communicate(timeout=30)


def test_a_resume_that_accepts_the_rail_s_place_knows_it_went_back_to_the_start(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """A session that returned its rail to the start (the default) was resumed with the rail
    told it stood at its last frame's 0.6 mm: every frame shot again landed 0.6 mm short."""
    out = tmp_path / "s"
    first = rig(
        vcam, "shoot", "--rail", grbl.url, "--from", "0mm", "--to", "0.6mm", "--frames", "4",
        "--settle", "0", "--out", str(out), "--accept-position",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr + first.stdout
    start_carriage = grbl.carriage[0]
    (out / "frames" / "frame_0004.jpg").unlink()
    (out / "frames" / "frame_0003.jpg").unlink()
    grbl.power_cycle()

    refused = rig(vcam, "resume", str(out))
    assert refused.returncode == 5, refused.stderr + refused.stdout
    assert "if nothing has moved since frame 1 was shot at 0 µm" in refused.stderr

    resumed = rig(vcam, "resume", str(out), "--accept-position")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    # The board counts from 0 where it restarted, the session's start: frames 3 and 4 are
    # shot 0.4 and 0.6 mm from there (before: -0.2 and 0.0), and the rail returns.
    assert [round(end, 3) for _, end in grbl.axis_moves("X")[-3:]] == [0.4, 0.6, 0.0]
    assert grbl.carriage[0] == pytest.approx(start_carriage, abs=0.002)


def test_a_resume_after_a_power_cut_of_a_board_that_does_not_reset_accepts_its_place(
    tmp_path: Path, vcam: Path
) -> None:
    """A board that keeps running while its port is closed (its own USB chip) but lost power
    since: found in its power-up lock, it was trusted, so the resume met the lock; and
    ``--accept-position`` was refused by it (``G92``: error:9)."""
    out = tmp_path / "s"
    with GrblSimulator(time_scale=50, reset_on_open=False) as grbl:
        assert rig(vcam, "rail", "unlock", grbl.url).returncode == 0
        first = rig(
            vcam, "shoot", "--rail", grbl.url, "--from", "1mm", "--to", "1.6mm", "--frames",
            "4", "--settle", "0", "--out", str(out), "--no-return",
        )  # fmt: skip
        assert first.returncode == 0, first.stderr + first.stdout
        carriage = grbl.carriage[0]
        (out / "frames" / "frame_0004.jpg").unlink()
        kept = rig(vcam, "resume", str(out))  # still powered: trusted, where it was left
        assert kept.returncode == 0, kept.stderr + kept.stdout
        assert "but this session left it at" not in kept.stdout + kept.stderr
        (out / "frames" / "frame_0004.jpg").unlink()
        (out / "frames" / "frame_0003.jpg").unlink()
        grbl.power_cycle()  # the carriage stays where frame 4 was shot; the board counts 0

        refused = rig(vcam, "resume", str(out))
        assert refused.returncode == 5, refused.stderr + refused.stdout
        assert refused.stderr.count("\n") == 1
        assert "in ALARM when its port was opened" in refused.stderr
        assert "frame 4 was shot at 1.6 mm" in refused.stderr

        resumed = rig(vcam, "resume", str(out), "--accept-position")
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        # Told it stands at 1.6 mm, the board shoots frames 3 and 4 where they were.
        assert grbl.carriage[0] == pytest.approx(carriage, abs=0.002)
        assert [round(end, 3) for _, end in grbl.axis_moves("X")[-2:]] == [-0.2, 0.0]


def test_each_leg_of_a_backlash_approach_is_journaled_before_it_is_sent(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """Shot far to near, every move goes past its frame by the backlash and comes back. Only
    the frame's position was journaled, so a run killed during the first leg (the controller
    finishes it) was resumed as if the carriage stood at the frame: the backlash off."""
    out = tmp_path / "s"
    shot = rig(
        vcam, "shoot", "--rail", grbl.url + "&backlash=50um", "--from", "0mm", "--to",
        "0.4mm", "--frames", "3", "--direction", "far-to-near", "--settle", "0", "--out",
        str(out), "--no-return", "--accept-position",
    )  # fmt: skip
    assert shot.returncode == 0, shot.stderr + shot.stdout
    moves = [rec["to"] for rec in read_journal(out / "journal.jsonl").of_kind("move")]
    # frame 1 from where it stood (below: one leg); frames 2 and 3 from above: two legs each,
    # the overshoot journaled before the controller is told, then the frame's position
    assert moves == [400.0, 200.0, 150.0, 200.0, 0.0, -50.0, 0.0]
    axis = [round(end, 3) for _, end in grbl.axis_moves("X")]
    assert axis[-5:] == [0.4, 0.15, 0.2, -0.05, 0.0]


def test_the_readme_shoot_line_runs_as_written(
    tmp_path: Path, vcam: Path, grbl: GrblSimulator
) -> None:
    """The README's ``rig shoot --rail grbl:///dev/ttyUSB0 ...`` line, the board's port given the
    simulator's: run by no test, it was refused on the very Arduino GRBL it was written for
    until it said ``--accept-position``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Shooting a stack\n", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("rig shoot --rail ")]
    args = [grbl.url if a == "grbl:///dev/ttyUSB0" else a for a in shlex.split(line)[1:]]
    env = {**commands.env(), "VCAMERADIR": str(vcam)}
    proc = subprocess.run(commands.rig_cmd(*args), capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "session completed: 12/12 frames captured, 12 merged" in proc.stdout
    assert {"composite.tif", "depth.png", "depth-preview.jpg", "journal.jsonl", "frames"} <= {
        p.name for p in (tmp_path / "beetle").iterdir()
    }
