"""The session runner in-process: state machine, callbacks, stop, abort, resume, the worker queue.

Sessions run on the simulated rig: the GRBL driver over a real pty to the GRBL simulator, and
libgphoto2's virtual camera through python-gphoto2 (VCAMERADIR is set by tests/conftest.py
before gphoto2 is imported; each test points it at its own folder).
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rig.cli.session import _console, report
from rig.plan import ShotPlan
from rig.session.events import (
    FrameCaptured,
    FrameMerged,
    SessionEvent,
    SessionFinished,
    SessionWarning,
    StatusChanged,
)
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.journal import read_journal
from rig.session.runner import RunnerOptions, SessionResult, SessionRunner
from rig.session.state import FinishReason, RunState, SessionStatus, can_transition, exit_code
from rig.session.worker import StackJob, StackPreviews, StackWorker
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.sim.vcamera import use_virtual_camera
from stacker.errors import UserError
from stacker.options import StackOptions
from stacker.stack import Stacker

SPEC = SimRigSpec(width=320, height=240, time_scale=50.0)
FRAMES = 6


@pytest.fixture()
def sim(tmp_path: Path) -> Iterator[SimulatedRig]:
    use_virtual_camera(tmp_path / "vcam")
    with SimulatedRig(SPEC) as rig:
        yield rig


def new_session(root: Path) -> SessionFolder:
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    return SessionFolder.create(root, plan, SessionConfig(rig=SPEC.to_dict(), checkpoint_every=2))


def runner_for(folder: SessionFolder, sim: SimulatedRig) -> SessionRunner:
    return SessionRunner(
        folder, focuser=sim.focuser, camera=sim.camera, options=RunnerOptions(queue_size=2)
    )


def failing_once(
    root: Path, sim: SimulatedRig, camera: type[BusyOnce], stem: str, error: Exception
) -> tuple[SessionFolder, SessionRunner]:
    """A new session whose ``camera`` wraps the simulated one and fails once at frame ``stem``
    with ``error``; its runner retries (when the error is transient) after 10 ms."""
    folder = new_session(root)
    runner = SessionRunner(
        folder,
        focuser=sim.focuser,
        camera=camera(sim.camera, stem, error),
        options=RunnerOptions(retry_delay_s=0.01),
    )
    return folder, runner


def frame_indexes(folder: SessionFolder) -> list[int]:
    return [r["index"] for r in read_journal(folder.journal_path).of_kind("frame")]


def on_frame(index: int, action: Callable[[], None]) -> Callable[[SessionEvent], None]:
    """A subscriber that calls ``action`` once frame ``index`` is captured."""

    def subscriber(event: SessionEvent) -> None:
        if isinstance(event, FrameCaptured) and event.entry.index == index:
            action()

    return subscriber


def run_stopped(
    root: Path, sim: SimulatedRig, index: int, stop: Callable[[SessionRunner], None]
) -> tuple[SessionFolder, SessionResult]:
    """A new session, run until ``stop(runner)`` is called once frame ``index`` is captured."""
    folder = new_session(root)
    runner = runner_for(folder, sim)
    runner.subscribe(on_frame(index, lambda: stop(runner)))
    return folder, runner.run()


@pytest.mark.slow
def test_complete_run_walks_the_state_machine_and_calls_back(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    folder = new_session(tmp_path / "s")
    runner = runner_for(folder, sim)
    states: list[RunState] = []
    captured: list[int] = []
    merged: list[tuple[int, Any, StackPreviews]] = []
    finished: list[SessionResult] = []

    def subscriber(event: SessionEvent) -> None:
        match event:
            case StatusChanged(status) if status.state not in states:
                states.append(status.state)
            case FrameCaptured(entry):
                captured.append(entry.index)
            case FrameMerged(job, record, previews):
                merged.append((job.index, record, previews))
            case SessionFinished(result):
                finished.append(result)

    runner.subscribe(subscriber)

    result = runner.run()

    assert result.reason is FinishReason.COMPLETED and result.exit_code == 0
    assert states == [
        RunState.PREPARING,
        RunState.RUNNING,
        RunState.FINISHING,
        RunState.FINISHED,
    ]
    assert captured == list(range(1, FRAMES + 1))
    assert [i for i, _, _ in merged] == captured
    _, record, previews = merged[-1]
    assert record.merged and 0.9 < record.score <= 1.0
    assert previews.composite is not None and previews.composite.dtype == np.uint8
    assert previews.depth is not None and previews.last_frame is not None
    assert finished == [result]
    status = result.status
    assert (status.captured, status.merged, status.total) == (FRAMES, FRAMES, FRAMES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.captured = 0  # type: ignore[misc]
    assert folder.composite_path("tif") in result.outputs
    assert sim.focuser.position == pytest.approx(0.0, abs=2.0)  # returned to start


def test_stop_request_finishes_the_frame_then_resume_completes(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    folder, result = run_stopped(tmp_path / "s", sim, 2, SessionRunner.request_stop)
    assert result.reason is FinishReason.INTERRUPTED and result.exit_code == 130
    assert frame_indexes(folder) == [1, 2]
    assert result.status.merged == 2  # the queue was drained
    assert folder.composite_path("tif").is_file()

    again = runner_for(folder, sim)
    replayed: list[bool] = []
    again.subscribe(lambda e: replayed.append(e.job.replay) if isinstance(e, FrameMerged) else None)
    result = again.run()
    assert result.reason is FinishReason.COMPLETED
    assert frame_indexes(folder) == list(range(1, FRAMES + 1))
    assert replayed == [True, True] + [False] * (FRAMES - 2)
    events = [r["event"] for r in read_journal(folder.journal_path).records]
    assert events.count("start") == 1 and events.count("resume") == 1


def test_a_stop_at_the_last_frame_leaves_the_rail_where_it_is(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    """Stop means the rail halts: a stop heard while the last frame lands does not send the
    rail back to the start (the photographer may be reaching for the subject)."""
    folder, result = run_stopped(tmp_path / "s", sim, FRAMES, SessionRunner.request_stop)
    assert result.reason is FinishReason.COMPLETED  # every frame was shot
    assert frame_indexes(folder) == list(range(1, FRAMES + 1))
    assert sim.focuser.position == pytest.approx(SPEC.depth_um, abs=2.0)


@pytest.mark.slow
@pytest.mark.parametrize("index", [3, FRAMES])  # FRAMES: the composite was all that was left
def test_abort_leaves_a_consistent_journal_and_no_composite(
    tmp_path: Path, sim: SimulatedRig, index: int
) -> None:
    folder, result = run_stopped(tmp_path / "s", sim, index, SessionRunner.abort)
    assert result.reason is FinishReason.ABORTED and result.exit_code == 130
    assert frame_indexes(folder) == list(range(1, index + 1))
    assert not folder.composite_path("tif").exists() or result.outputs == ()
    lines = folder.journal_path.read_bytes().splitlines()
    assert all(json.loads(line) for line in lines)
    assert json.loads(lines[-1])["reason"] == "aborted"


class AbortAfterRelease:
    """The simulated camera, except that the runner is aborted as frame ``stem`` is released,
    and that frame's download is held back until ``go`` is set (or 5 s pass)."""

    def __init__(self, camera: Any, stem: str) -> None:
        self.camera, self.stem = camera, stem
        self.runner: SessionRunner | None = None
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.camera, name)

    def release(self, dest_dir: Path, stem: str | None = None) -> Any:
        shot = self.camera.release(dest_dir, stem)
        if stem != self.stem:
            return shot
        assert self.runner is not None
        self.runner.abort()
        wrapper = self

        class Held:
            def download(self, on_progress: Any = None) -> list[Path]:
                wrapper.go.wait(5)
                return list(shot.download(on_progress))

        return Held()


@pytest.mark.slow
def test_an_abort_does_not_wait_for_the_frame_in_flight(tmp_path: Path, sim: SimulatedRig) -> None:
    """A second Ctrl-C ends the run at once: the frame still downloading is left on the camera
    and shot again on resume, not waited for and journaled."""
    folder = new_session(tmp_path / "s")
    camera = AbortAfterRelease(sim.camera, "frame_0003")
    runner = SessionRunner(folder, focuser=sim.focuser, camera=camera)
    camera.runner = runner
    try:
        result = runner.run()
        assert result.reason is FinishReason.ABORTED
        assert frame_indexes(folder) == [1, 2]
    finally:
        camera.go.set()


def test_worker_queue_is_bounded_and_keeps_order(tmp_path: Path) -> None:
    from rig.sim.scene import SceneSpec, SyntheticScene

    scene = SyntheticScene(SceneSpec(width=160, height=120, seed=3, jpeg_quality=90))
    paths = []
    for i, focus in enumerate((0.0, 1500.0, 3000.0)):
        path = tmp_path / f"frame_{i + 1:04d}.jpg"
        frame = scene.render(focus, pose=scene.random_pose(i))
        assert frame.encoded is not None
        path.write_bytes(frame.encoded)
        paths.append(path)
    order: list[int] = []
    worker = StackWorker(Stacker(), max_queue=1, on_merged=lambda j, r, p: order.append(j.index))
    worker.submit(StackJob(2, paths[1]))
    with pytest.raises(queue.Full):  # capture would wait here: the queue is full
        worker.submit(StackJob(3, paths[2]), timeout=0.05)
    worker.start(replay=[StackJob(1, paths[0], replay=True)])
    worker.submit(StackJob(3, paths[2]))
    assert worker.finish(timeout=30)
    assert order == [1, 2, 3]
    assert worker.processed == 3 and worker.error is None


def test_an_unreadable_frame_is_reported_and_kept_out(tmp_path: Path) -> None:
    bad = tmp_path / "frame_0001.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    failures: list[tuple[int, UserError]] = []
    worker = StackWorker(Stacker(), on_failed=lambda j, e: failures.append((j.index, e)))
    worker.start()
    worker.submit(StackJob(1, bad))
    assert worker.finish(timeout=10)
    assert [i for i, _ in failures] == [1] and "frame_0001.jpg" in str(failures[0][1])
    assert worker.error is None


def test_state_machine_and_exit_codes() -> None:
    assert can_transition(RunState.WAITING, RunState.PREPARING)
    assert not can_transition(RunState.FINISHED, RunState.RUNNING)
    assert not can_transition(RunState.RUNNING, RunState.PREPARING)
    assert exit_code(FinishReason.COMPLETED) == 0
    assert exit_code(FinishReason.INTERRUPTED) == 130
    from rig.errors import DeviceNotFoundError, MotionError, RigError

    assert exit_code(FinishReason.FAULT, MotionError("alarm")) == 5
    assert exit_code(FinishReason.FAULT, DeviceNotFoundError("gone")) == 3
    assert exit_code(FinishReason.FAULT, RigError("camera I/O")) == 6
    assert exit_code(FinishReason.ERROR, RuntimeError("bug")) == 1
    status = SessionStatus(state=RunState.RUNNING, total=3, captured=1, merged=0)
    assert not status.done


class BusyOnce:
    """Wraps the real simulated camera and reports busy once at one frame.

    A stand-in only for the failure: libgphoto2's virtual body cannot report "PTP Device Busy"
    (and rig.camera already retries busy internally), so the error the camera raises after its
    own retries is raised here; the capture itself is the real one.
    """

    times = 1

    def __init__(self, camera: Any, frame: str, error: Exception) -> None:
        self.camera, self.frame, self.error, self.raised = camera, frame, error, 0

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: Any = None):
        if stem == self.frame and self.raised < self.times:
            self.raised += 1
            raise self.error
        return self.camera.capture(dest_dir, stem, on_progress=on_progress)


@pytest.mark.slow
def test_a_busy_camera_is_retried_and_the_session_completes(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    from rig.camera import CameraBusyError

    busy = CameraBusyError("VC: capture failed: busy")
    folder, runner = failing_once(tmp_path / "s", sim, BusyOnce, "frame_0003", busy)
    warnings: list[str] = []
    runner.subscribe(
        lambda e: warnings.append(e.message) if isinstance(e, SessionWarning) else None
    )
    result = runner.run()
    assert result.reason is FinishReason.COMPLETED
    attempts = {
        r["index"]: r["attempts"] for r in read_journal(folder.journal_path).of_kind("frame")
    }
    assert attempts == {1: 1, 2: 1, 3: 2, 4: 1, 5: 1, 6: 1}
    assert any("frame 3" in w and "retrying" in w for w in warnings)


@pytest.mark.slow
@pytest.mark.parametrize("times", [3, 4])
def test_a_frame_is_tried_as_often_as_the_retries_allow_and_no_more(
    tmp_path: Path, sim: SimulatedRig, times: int
) -> None:
    """``capture_retries`` (3) retries after the first try: busy three times is shot at the
    fourth attempt, busy four times ends the session with the frames before it kept."""
    from rig.camera import CameraBusyError

    busy = CameraBusyError("VC: capture failed: busy")
    camera = type("BusyTimes", (BusyOnce,), {"times": times})
    folder, runner = failing_once(tmp_path / "s", sim, camera, "frame_0003", busy)
    assert runner.options.capture_retries == 3
    result = runner.run()
    if times == 3:
        assert result.reason is FinishReason.COMPLETED
        attempts = {
            r["index"]: r["attempts"] for r in read_journal(folder.journal_path).of_kind("frame")
        }
        assert attempts[3] == 4
    else:
        assert result.reason is FinishReason.FAULT and "busy" in str(result.error)
        assert frame_indexes(folder) == [1, 2]


@pytest.mark.slow
def test_a_camera_error_that_is_not_transient_stops_the_session(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    from rig.camera import CameraError

    full = CameraError("VC: capture failed: card full")
    folder, runner = failing_once(tmp_path / "s", sim, BusyOnce, "frame_0002", full)
    result = runner.run()
    assert result.reason is FinishReason.FAULT and result.exit_code == 6
    assert frame_indexes(folder) == [1]
    assert "card full" in str(result.error)


def three_frames_as(
    output_format: str, root: Path, sim: SimulatedRig
) -> tuple[SessionFolder, SessionResult]:
    """A three-frame session whose composite is written as ``output_format``, run."""
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, 3, settle_s=0.0)
    config = SessionConfig(
        rig=SPEC.to_dict(), stack=StackOptions(output_format=output_format), checkpoint_every=0
    )
    folder = SessionFolder.create(root, plan, config)
    return folder, runner_for(folder, sim).run()


@pytest.mark.slow
def test_output_format_follows_the_session_config(tmp_path: Path, sim: SimulatedRig) -> None:
    _, result = three_frames_as("jpg", tmp_path / "s", sim)
    assert result.reason is FinishReason.COMPLETED
    assert (tmp_path / "s" / "composite.jpg").is_file()
    assert not (tmp_path / "s" / "composite.tif").exists()


@pytest.mark.slow
def test_a_dng_session_of_frames_without_raw_files_says_how_to_stack_them(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    """A camera whose image format does not show (the virtual one shoots JPEG) was told at the
    end to resume the session to write its DNG composite, and every resume failed the same.
    It shot the whole plan before that: the first frame without a RAW file stops it now."""
    folder, result = three_frames_as("dng", tmp_path / "s", sim)
    assert result.reason is FinishReason.FAULT
    assert [p.name for p in folder.frames_dir.glob("frame_*")] == ["frame_0001.jpg"]
    assert str(result.error).startswith("frame 1: a DNG composite needs RAW frames, and the ")
    again = runner_for(folder, sim).run()  # a resume stops before it shoots
    assert again.reason is FinishReason.FAULT and str(again.error) == str(result.error)
    assert [p.name for p in folder.frames_dir.glob("frame_*")] == ["frame_0001.jpg"]
    frames, tif = folder.frames_dir, folder.root / "composite.tif"
    assert f"`stacker stack {frames} -o {tif}` stacks them" in str(result.error)
    assert "rig resume" not in str(result.error)
    console = _console()
    with console.capture() as printed:
        report(result, folder, console)
    assert "continue with" not in printed.get()  # a resume cannot write it either


@pytest.mark.slow
def test_the_stack_command_for_a_dng_session_s_frames_can_be_pasted(
    tmp_path: Path, sim: SimulatedRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session folder starting with a dash (``rig tether -o -x``) was offered as
    ``stacker stack -x/frames``, which the command takes for an unknown option."""
    monkeypatch.chdir(tmp_path)
    _, result = three_frames_as("dng", Path("-s"), sim)
    assert result.reason is FinishReason.FAULT
    assert "`stacker stack ./-s/frames -o ./-s/composite.tif` stacks them" in str(result.error)


def test_a_plan_outside_the_soft_limits_is_refused_before_anything_moves() -> None:
    from rig.errors import MotionError, RigError
    from rig.rails import open_focuser
    from rig.session.runner import check_plan_fits

    rail = open_focuser("sim://?max=1mm&time_scale=100")
    try:
        check_plan_fits(ShotPlan.from_frames(0.0, 1000.0, 5), rail)
        with pytest.raises(MotionError, match="outside the soft limits"):
            check_plan_fits(ShotPlan.from_frames(0.0, 2000.0, 5), rail)
        with pytest.raises(RigError, match="moves in um but the plan is in steps"):
            check_plan_fits(ShotPlan.from_step(0, 10, 2, units="steps"), rail)
        assert rail.position == 0.0
    finally:
        rail.close()


class HalfShotOnce(BusyOnce):
    """The first attempt at one frame writes a RAW and then fails before its JPEG (stand-in for
    a transfer dying mid-shot, which the virtual body cannot do); later attempts are real."""

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: Any = None):
        if stem == self.frame and not self.raised:
            (Path(dest_dir) / f"{stem}.nef").write_bytes(b"raw bytes of a broken shot")
        return super().capture(dest_dir, stem, on_progress=on_progress)


@pytest.mark.slow
def test_files_of_a_failed_shot_are_set_aside_not_mixed_with_the_retry(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    from rig.camera import CameraBusyError

    busy = CameraBusyError("VC: download failed")
    folder, runner = failing_once(tmp_path / "s", sim, HalfShotOnce, "frame_0002", busy)
    assert runner.run().reason is FinishReason.COMPLETED
    assert sorted(p.name for p in folder.frames_dir.iterdir()) == [
        f"frame_{i:04d}.jpg" for i in range(1, FRAMES + 1)
    ]
    kept = folder.root / "failed-attempts" / "frame_0002.attempt1.nef"
    assert kept.read_bytes() == b"raw bytes of a broken shot"


def test_runner_refuses_to_move_a_rail_that_lost_its_reference(
    tmp_path: Path, sim: SimulatedRig
) -> None:
    """A rail opened afresh (the board resets and counts from 0) is never moved unreferenced."""
    from rig.rails import open_focuser

    folder = new_session(tmp_path / "s")
    sim.focuser.close()
    rail = open_focuser(sim.rail_url)
    try:
        before = rail.position
        result = SessionRunner(folder, focuser=rail, camera=sim.camera).run()
        assert rail.position == before
    finally:
        rail.close()
    assert result.reason is FinishReason.FAULT
    assert "restarted when its port was opened" in str(result.error)
    assert frame_indexes(folder) == []


class SlowStacker:
    """A stacker that takes ``seconds`` per frame, as a Raspberry Pi does at 24 MP: the end of
    a session then waits for several frames still queued."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.frames_merged = seconds, 0

    def add(self, image: Any, name: str = "", position_um: Any = None, **_: object):
        time.sleep(self.seconds)
        self.frames_merged += 1


def test_a_session_end_that_waits_for_slow_stacking_ends(tmp_path: Path) -> None:
    """The session's end asks the worker to finish every half second; each ask queued another
    stop, the first of which ended the worker, so with the queue full of stops the next ask
    waited for room for ever (a demo under emulation hung after its last merge)."""
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    worker = StackWorker(SlowStacker(0.15), max_queue=2, previews=False)
    worker.start()
    for index in (1, 2, 3):
        worker.submit(StackJob(index, path))
    ended = threading.Event()

    def session_end() -> None:  # as SessionRunner._finish asks, in short turns
        while not worker.finish(timeout=0.02):
            pass
        ended.set()

    threading.Thread(target=session_end, daemon=True).start()
    assert ended.wait(10), "the end of the session never came"
    assert worker.processed == 3 and worker.error is None
