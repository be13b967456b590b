"""A full disk while writing results: one-line errors, nothing captured lost, resumable.

The disk is a real, tiny tmpfs mounted for the test, so the kernel's own ``ENOSPC`` reaches the
code (no simulated write failure). Mounting needs root (or CAP_SYS_ADMIN); where it is not
allowed the tests are skipped, saying so.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.camera.naming import check_destination
from rig.errors import RigError
from rig.plan import ShotPlan
from rig.session.events import FrameCaptured, FrameMerged, SessionEvent
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.journal import Journal, JournalError, read_journal
from rig.session.runner import RunnerOptions, SessionRunner
from rig.session.state import FinishReason, RunState
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.sim.scene import SceneSpec, write_stack
from rig.sim.vcamera import use_virtual_camera
from rig.station.errors import StationError
from rig.station.service import Station
from stacker.errors import StackerError
from stacker.io import check_writable_output


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system."""
    filler = folder / "filler.bin"
    with filler.open("wb", buffering=0) as fh:  # unbuffered: nothing left to fail on close
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_stack_into_a_full_disk_is_one_line_and_leaves_no_debris(
    tmp_path: Path, small_disk: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_stack(frames, SceneSpec(width=480, height=360, seed=3), 4)
    filler = fill(small_disk)
    filler.write_bytes(b"\0" * (filler.stat().st_size - 8192))  # room for the probe, not more
    out = small_disk / "stacked.tif"
    proc = subprocess.run(
        [sys.executable, "-m", "stacker.cli", "stack", str(frames), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stderr.startswith("\n")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("stacker: error:")]
    assert errors == [
        f"stacker: error: {out}: cannot write the result (No space left on device); "
        "free some space or choose another output path"
    ]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin"]  # no temporaries


SPEC = SimRigSpec(width=320, height=240, time_scale=50.0)
FRAMES = 5


def test_a_watch_whose_disk_fills_keeps_merging_and_writes_once_there_is_room(
    tmp_path: Path, small_disk: Path
) -> None:
    """The disk of a watch's composite filled after its first frame: the watch ended with an
    error, and the frames of the shoot that went on were never stacked."""
    import threading

    from stacker.watch import watch_and_stack

    stack = tmp_path / "stack"
    write_stack(stack, SceneSpec(width=320, height=240, seed=4), 4)
    frames = sorted(stack.iterdir())
    hot = tmp_path / "hot"
    hot.mkdir()
    out = small_disk / "stacked.tif"
    warnings: list[str] = []
    filler: list[Path] = []

    def shoot() -> None:
        for i, frame in enumerate(frames):
            (hot / frame.name).write_bytes(frame.read_bytes())
            time.sleep(1.0)
            if i == 0:
                filler.append(fill(small_disk))  # after the first write
            if i == 2:
                filler[0].unlink()  # room again for the last frame's write

    shooter = threading.Thread(target=shoot, daemon=True)
    shooter.start()
    summary = watch_and_stack(hot, out, idle_timeout=3.0, settle=0.2,
                              on_warning=warnings.append)  # fmt: skip
    shooter.join()
    assert summary.status.merged == 4, warnings
    refused = [w for w in warnings if "cannot write the result" in w]
    assert len(refused) == 1 and "merging goes on" in refused[0], warnings
    assert out.is_file() and any("written again" in w for w in warnings)


def test_session_whose_final_composite_meets_a_full_disk_keeps_every_frame(
    small_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    use_virtual_camera(small_disk.parent / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    root = small_disk / "s"
    folder = SessionFolder.create(
        root, plan, SessionConfig(rig=SPEC.to_dict(), checkpoint_every=99)
    )
    filled: list[Path] = []

    def on_merged(event: SessionEvent) -> None:
        if (
            isinstance(event, FrameMerged) and event.job.index == FRAMES
        ):  # every frame is on disk and journaled: now the disk is full
            filled.append(fill(small_disk))

    with SimulatedRig(SPEC) as sim:
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera,
                               options=RunnerOptions(queue_size=2))  # fmt: skip
        runner.subscribe(on_merged)
        result = runner.run()
    assert filled
    assert result.reason is FinishReason.FAULT
    message = str(result.error)
    assert "\n" not in message and "No space left on device" in message
    assert f"every frame is kept: free some space, then `rig resume {root}`" in message, message
    assert "another output" not in message  # a session's outputs have their places
    assert sorted(folder.frames_on_disk()) == list(range(1, FRAMES + 1))
    assert not folder.composite_path("tif").exists()
    assert not list(root.glob(".*.tmp"))
    assert "Traceback" not in capfd.readouterr().err  # not even from the session log

    filled[0].unlink()  # space again: the resume writes the composite, shooting nothing
    with SimulatedRig(SPEC) as sim:
        again = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera).run()
    assert again.reason is FinishReason.COMPLETED, again.error
    assert folder.composite_path("tif").is_file()
    frames = read_journal(folder.journal_path).of_kind("frame")
    assert sorted(r["index"] for r in frames) == list(range(1, FRAMES + 1))


def test_a_disk_full_mid_session_is_the_fault_it_reports(small_disk: Path) -> None:
    """The disk filled after frame 2: the session stopped, then its final write failed too,
    and that second failure became its fault ("rig resume ... writes the composite"), hiding
    the cause and the three frames still to shoot."""
    use_virtual_camera(small_disk.parent / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    root = small_disk / "s"
    folder = SessionFolder.create(root, plan, SessionConfig(rig=SPEC.to_dict()))
    filled: list[Path] = []

    def on_captured(event: SessionEvent) -> None:
        if isinstance(event, FrameCaptured) and event.entry.index == 2:
            filled.append(fill(small_disk))

    with SimulatedRig(SPEC) as sim:
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera)
        runner.subscribe(on_captured)
        result = runner.run()
    assert result.reason is FinishReason.FAULT
    message = str(result.error)
    assert message.startswith(f"cannot keep frames in {root / 'frames'}: No space left"), message
    assert "writes the composite" not in message
    assert sorted(folder.frames_on_disk()) == [1, 2]
    filled[0].unlink()
    with SimulatedRig(SPEC) as sim:
        again = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera).run()
    assert again.reason is FinishReason.COMPLETED, again.error
    assert sorted(folder.frames_on_disk()) == list(range(1, FRAMES + 1))


def end_on_a_block(journal: Path, block: int = 4096) -> None:
    """Append one free-form record whose length makes ``journal`` end on a block boundary."""
    size = journal.stat().st_size
    frame = b'{"event":"pad","pad":""}\n'
    need = -size % block
    need += block if need < len(frame) else 0
    with journal.open("ab") as fh:
        fh.write(frame[:-3] + b"x" * (need - len(frame)) + frame[-3:])


@pytest.mark.parametrize("write_outputs", [True, False])
def test_a_merge_record_the_full_disk_refuses_is_a_fault_not_a_bug(
    small_disk: Path, caplog: pytest.LogCaptureFixture, write_outputs: bool
) -> None:
    """The disk filled once the last frame was shot, while its merge record was still to
    write: the stacking thread took the journal's refusal for a bug in stacking, with a
    traceback in session.log, and a session with nothing else to write ended "error" (exit
    status 1)."""
    use_virtual_camera(small_disk.parent / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    root = small_disk / "s"
    folder = SessionFolder.create(root, plan, SessionConfig(rig=SPEC.to_dict()))
    filled: list[Path] = []

    def on_merged(event: SessionEvent) -> None:  # on the stacking thread, before frame 5's merge
        if isinstance(event, FrameMerged) and event.job.index == FRAMES - 1:
            deadline = time.monotonic() + 30
            # Shooting done, the return to the start journaled too: the shooting thread appends
            # no more, so nothing but frame 5's merge record comes after the padding (a "move"
            # record slipped in between once, and the merge record fitted in its block).
            while runner.status().state is not RunState.FINISHING:
                assert time.monotonic() < deadline, "the shooting never ended"
                time.sleep(0.01)
            assert FRAMES in read_journal(folder.journal_path).frames()
            end_on_a_block(folder.journal_path)  # frame 5's merge record needs a new block
            filled.append(fill(small_disk))

    with SimulatedRig(SPEC) as sim:
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera,
                               options=RunnerOptions(write_outputs=write_outputs))  # fmt: skip
        runner.subscribe(on_merged)
        result = runner.run()
    assert filled
    assert result.reason is FinishReason.FAULT, result.error
    assert "No space left on device" in str(result.error) and "\n" not in str(result.error)
    assert not [r for r in caplog.records if r.exc_info], "a traceback in session.log"
    filled[0].unlink()
    with SimulatedRig(SPEC) as sim:
        again = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera).run()
    assert again.reason is FinishReason.COMPLETED, again.error
    assert folder.composite_path("tif").is_file()


def test_a_journal_record_the_full_disk_cuts_short_is_not_left_torn(small_disk: Path) -> None:
    """A record that needed a block the full disk did not have was written in part and taken
    as written: the next append, once there was space again, followed the torn bytes, and a
    resume refused the journal as damaged mid-file."""
    path = small_disk / "journal.jsonl"
    with Journal.open(path) as journal:
        journal.append("start", note="x" * 3000)
        filler = fill(small_disk)
        with pytest.raises(JournalError, match="No space left on device"):  # a second block
            journal.append("frame", index=1, position=0.0, files=["frames/frame_0001.jpg"],
                           note="y" * 2000)  # fmt: skip
        filler.unlink()
        journal.append("finish", reason="fault")
    contents = read_journal(path)
    assert [r["event"] for r in contents.records] == ["start", "finish"]
    assert not contents.torn_tail


def test_resume_on_a_read_only_disk_says_what_is_already_captured(small_disk: Path) -> None:
    """The run stops before it shoots, and its report counts the frames on disk (it said
    0/5 captured, as if a power cut had lost them) and says what to do (it did not)."""
    use_virtual_camera(small_disk.parent / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    root = small_disk / "s"
    folder = SessionFolder.create(root, plan, SessionConfig(rig=SPEC.to_dict()))
    with SimulatedRig(SPEC) as sim:
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera)
        assert runner.run().reason is FinishReason.COMPLETED
    for index, files in folder.frames_on_disk().items():
        if index > 3:
            files[0].unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with SimulatedRig(SPEC) as sim:
        again = SessionRunner(SessionFolder(root), focuser=sim.focuser, camera=sim.camera).run()
    assert again.reason is FinishReason.FAULT and "Read-only file system" in str(again.error)
    assert str(again.error).endswith("check it and mount it again (or restart), then resume")
    assert again.status.counted == f"3/{FRAMES}"


def test_a_test_shot_onto_a_full_disk_is_one_line(small_disk: Path) -> None:
    """The station's test shot met the full disk with a 500 and a traceback on its terminal,
    where starting a session on it says what is wrong."""
    use_virtual_camera(small_disk.parent / "vcam")
    with SimulatedRig(SPEC) as sim:
        station = Station(small_disk / "s", focuser=sim.focuser, camera=sim.camera, rig={})
        fill(small_disk)
        with pytest.raises(RigError) as refused:  # found before the shutter (naming.py)
            station.test_shot()
        station.close()
    message = str(refused.value)
    assert str(small_disk / "s" / ".test-shot") in message
    assert "No space left on device" in message and "\n" not in message


def test_a_session_that_cannot_be_created_leaves_no_folder_behind(small_disk: Path) -> None:
    """A start that met the full disk left a folder with ``frames/`` and no plan: its name was
    then taken ("exists already") by a session that could be neither resumed nor deleted."""
    use_virtual_camera(small_disk.parent / "vcam")
    plan = ShotPlan.from_frames(0.0, 1000.0, 2, settle_s=0.0)
    with SimulatedRig(SPEC) as sim:
        station = Station(small_disk / "s", focuser=sim.focuser, camera=sim.camera, rig={})
        filler = fill(small_disk)
        with pytest.raises(RigError) as refused:  # a 400 through the API
            station.start(plan, name="beetle")
        assert not (small_disk / "s" / "beetle").exists()
        filler.unlink()
        assert station.start(plan, name="beetle") == "beetle"
        assert station.wait(60) is not None
        station.close()
    assert str(refused.value).endswith(
        "(No space left on device); free some space, or choose another folder"
    )
    assert (small_disk / "s" / "beetle" / "plan.json").is_file()


def test_a_station_starts_on_a_full_disk(small_disk: Path) -> None:
    """A full card kept the station from starting (its new lock file had no room for the
    process number), and with it the page where old sessions are deleted to make room."""
    use_virtual_camera(small_disk.parent / "vcam")
    root = small_disk / "s"
    root.mkdir()
    fill(small_disk)
    with SimulatedRig(SPEC) as sim:
        station = Station(root, focuser=sim.focuser, camera=sim.camera, rig={})
        with pytest.raises(StationError, match="another station"):  # the lock holds all the same
            Station(root, focuser=sim.focuser, camera=sim.camera, rig={})
        station.close()


def test_frames_or_a_result_on_a_read_only_disk_say_it_is_read_only(small_disk: Path) -> None:
    """A card the kernel made read-only was refused as if full or locked: 'free some space or
    fix its permissions', neither of which helps."""
    (small_disk / "frames").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(RigError) as frames:
        check_destination(small_disk / "frames", None)
    with pytest.raises(StackerError) as result:
        check_writable_output(small_disk / "stacked.tif")
    with pytest.raises(RigError) as session:  # said "choose another folder" alone
        SessionFolder.create(
            small_disk / "s", ShotPlan.from_frames(0.0, 1000.0, 2), SessionConfig(rig={})
        )
    for refused in (frames.value, result.value, session.value):
        message = str(refused)
        assert "Read-only file system" in message and "\n" not in message, message
        assert "the disk is read-only: check it and mount it again" in message, message
        assert "free some space" not in message, message
