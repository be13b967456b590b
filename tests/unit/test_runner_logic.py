"""The session runner's logic on in-memory fakes (tests/fakes.py): order, retries, faults, stops.

The same runner against the real virtual camera and the GRBL simulator is in
tests/integration/test_session_runner.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rig.errors import DeviceBusyError, MotionError, RigError
from rig.plan import ShotPlan
from rig.session.events import (
    FrameCaptured,
    SessionEvent,
    SessionFinished,
    SessionWarning,
    StatusChanged,
)
from rig.session.folder import (
    SessionBusyError,
    SessionConfig,
    SessionFolder,
    SessionFolderError,
    dated_folder,
)
from rig.session.journal import RailLeft, rail_left, read_journal
from rig.session.runner import RunnerOptions, SessionRunner, check_plan_fits
from rig.session.state import FinishReason, RunState
from stacker.io import atomic_write_bytes
from stacker.options import StackOptions
from tests.fakes import FakeCamera, FakeFocuser, FakeStacker

PLAN = ShotPlan.from_frames(0.0, 400.0, 5, settle_s=0.0)
OPTIONS = RunnerOptions(retry_delay_s=0.0, write_outputs=False, previews=False)


def runner(root: Path, camera: FakeCamera, focuser: FakeFocuser | None = None) -> SessionRunner:
    if not (root / "plan.json").exists():
        SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}))
    return SessionRunner(
        SessionFolder(root),
        focuser=focuser or FakeFocuser(),
        camera=camera,
        stacker_factory=lambda config, frames: FakeStacker(),
        options=OPTIONS,
    )


def frames(root: Path) -> list[int]:
    return [r["index"] for r in read_journal(root / "journal.jsonl").of_kind("frame")]


def test_every_position_is_shot_in_order_and_the_rail_returns(tmp_path: Path) -> None:
    focuser, states = FakeFocuser(), []
    run = runner(tmp_path / "s", FakeCamera(), focuser)
    run.subscribe(lambda e: isinstance(e, StatusChanged) and states.append(e.status.state))
    result = run.run()
    assert result.reason is FinishReason.COMPLETED and result.status.merged == 5
    assert focuser.moves == [0.0, 100.0, 200.0, 300.0, 400.0, 0.0]
    assert frames(tmp_path / "s") == [1, 2, 3, 4, 5]
    walked = [s for i, s in enumerate(states) if i == 0 or s is not states[i - 1]]
    assert walked == [RunState.PREPARING, RunState.RUNNING, RunState.FINISHING, RunState.FINISHED]


def test_a_far_to_near_session_stacks_its_frames_as_shot_from_the_far_end(tmp_path: Path) -> None:
    """The stacker is told the frames' order from the plan, whatever session.json says (an
    older one has no order), and a new session.json records it."""
    plan = replace(PLAN, direction="far-to-near")
    root = tmp_path / "s"
    SessionFolder.create(root, plan, SessionConfig(rig={"kind": "hardware"}))
    assert SessionFolder(root).config.stack.order == "far-to-near"
    (root / "session.json").write_text('{"format": 1, "rig": {"kind": "hardware"}}')
    seen = []

    def factory(config: SessionConfig, frames: int) -> FakeStacker:
        seen.append(config.stack.stacker_kwargs()["far_first"])
        return FakeStacker()

    focuser = FakeFocuser()
    run = SessionRunner(SessionFolder(root), focuser=focuser, camera=FakeCamera(),
                        stacker_factory=factory, options=OPTIONS)  # fmt: skip
    assert run.run().reason is FinishReason.COMPLETED
    assert seen == [True] and focuser.moves[0] == 400.0


@pytest.mark.parametrize("every", [1, 2, 5])
def test_the_last_frame_is_written_once_not_checkpointed_first(tmp_path: Path, every: int) -> None:
    """A checkpoint falling on the plan's last frame wrote the composite, and the final write
    at once wrote it again: on a slow card the wait after the last frame doubled. The
    checkpoints along the way stay; the writes are recorded, not made."""
    root = tmp_path / "s"
    config = SessionConfig(rig={"kind": "hardware"}, checkpoint_every=every)
    SessionFolder.create(root, PLAN, config)
    session = runner(root, FakeCamera())
    session.options = dataclasses.replace(OPTIONS, write_outputs=True)
    writes: list[tuple[int, bool]] = []

    def recorded(*, depth: bool = True) -> tuple[Path, ...]:
        writes.append((session.status().merged, depth))
        return ()

    session._write_outputs = recorded  # type: ignore[method-assign]
    assert session.run().reason is FinishReason.COMPLETED
    along = [(n, False) for n in range(every, PLAN.frames, every)]
    assert writes == [*along, (PLAN.frames, True)]


def test_a_busy_camera_is_retried_and_its_partial_files_set_aside(tmp_path: Path) -> None:
    def fail(stem: str, attempt: int) -> BaseException | None:
        return DeviceBusyError("busy") if stem == "frame_0002" and attempt == 1 else None

    result = runner(tmp_path / "s", FakeCamera(fail=fail, partial=(".cr2",))).run()
    assert result.reason is FinishReason.COMPLETED
    attempts = {
        r["index"]: r["attempts"]
        for r in read_journal(tmp_path / "s/journal.jsonl").of_kind("frame")
    }
    assert attempts[2] == 2 and attempts[1] == 1
    assert [p.name for p in (tmp_path / "s/failed-attempts").iterdir()] == [
        "frame_0002.attempt1.cr2"
    ]
    assert not (tmp_path / "s/frames/frame_0002.cr2").exists()


class OverlappingCamera(FakeCamera):
    """A body whose release returns after the exposure and whose files download while the rail
    moves on (``RunnerOptions.move_during_download``); notes where the rail stood at each
    exposure."""

    def __init__(self, focuser: FakeFocuser, **kw: Any) -> None:
        super().__init__(**kw)
        self.focuser = focuser
        self.exposed_at: dict[str, list[float]] = {}

    def release(self, dest_dir: Path, stem: str | None = None) -> SimpleNamespace:
        assert stem is not None
        self.exposed_at.setdefault(stem, []).append(self.focuser.position)
        return SimpleNamespace(
            download=lambda on_progress=None: FakeCamera.capture(self, dest_dir, stem)
        )

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: object = None):
        assert stem is not None
        self.exposed_at.setdefault(stem, []).append(self.focuser.position)
        return super().capture(dest_dir, stem)


def test_a_download_shot_again_does_not_leave_the_next_frame_at_its_position(
    tmp_path: Path,
) -> None:
    """Frame 2's download failed after the rail had moved on to frame 3; frame 2 was shot again
    at its own position, and frame 3 was then exposed there too, without a move, while the
    journal said 200 µm: a stack with one plane twice and one missing, reported complete."""

    def fail(stem: str, attempt: int) -> BaseException | None:
        return DeviceBusyError("download failed") if stem == "frame_0002" and attempt == 1 else None

    focuser = FakeFocuser()
    camera = OverlappingCamera(focuser, fail=fail)
    result = runner(tmp_path / "s", camera, focuser).run()
    assert result.reason is FinishReason.COMPLETED
    assert camera.exposed_at == {
        "frame_0001": [0.0],
        "frame_0002": [100.0, 100.0],
        "frame_0003": [200.0],
        "frame_0004": [300.0],
        "frame_0005": [400.0],
    }
    journaled = read_journal(tmp_path / "s/journal.jsonl").of_kind("frame")
    assert [r["position"] for r in journaled] == [0.0, 100.0, 200.0, 300.0, 400.0]


def test_the_last_frame_s_failed_download_is_shot_again_too(tmp_path: Path) -> None:
    """A transient failure of any frame's download was shot again, but the last frame's ended
    the session in a fault: it was landed as if the session were stopping."""

    def fail(stem: str, attempt: int) -> BaseException | None:
        return DeviceBusyError("download failed") if stem == "frame_0005" and attempt == 1 else None

    focuser = FakeFocuser()
    camera = OverlappingCamera(focuser, fail=fail)
    result = runner(tmp_path / "s", camera, focuser).run()
    assert result.reason is FinishReason.COMPLETED, result.error
    assert camera.exposed_at["frame_0005"] == [400.0, 400.0]
    journaled = read_journal(tmp_path / "s/journal.jsonl").of_kind("frame")
    assert [r["index"] for r in journaled] == [1, 2, 3, 4, 5]


def test_a_stopped_session_journals_where_it_left_the_rail(tmp_path: Path) -> None:
    """Stopped (Ctrl-C) as the rail reached frame 3's 200 µm, frame 2 still downloading: a
    resume that accepts the rail's place must not take it for frame 2's 100 µm, the last
    position journaled."""
    run: SessionRunner | None = None

    class StoppedThere(FakeFocuser):
        def move_to(self, position: float) -> None:
            super().move_to(position)
            if position == 200.0 and run is not None:
                run.request_stop()

    focuser = StoppedThere()
    run = runner(tmp_path / "s", OverlappingCamera(focuser), focuser)
    assert run.run().reason is FinishReason.INTERRUPTED
    contents = read_journal(tmp_path / "s/journal.jsonl")
    assert [r["index"] for r in contents.of_kind("frame")] == [1, 2]
    assert contents.of_kind("finish")[-1]["rail_at"] == 200.0
    assert rail_left(contents) == RailLeft(200.0, None)


def test_a_damaged_shot_goes_aside_whole_and_is_shot_again_under_its_own_name(
    tmp_path: Path,
) -> None:
    """A power cut left frame 3's JPEG its full size but zero-filled: resumes merged around it
    for ever. Its RAW partner goes aside with it, or it would hold the frame's name and the new
    pair land under another."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    jpeg = root / "frames/frame_0003.jpg"
    jpeg.write_bytes(bytes(jpeg.stat().st_size))
    (root / "frames/frame_0003.nef").write_bytes(b"MM\x00*" + bytes(100) + b"sensor data")
    camera = FakeCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == ["frame_0003"]
    assert sorted(p.name for p in (root / "failed-attempts").iterdir()) == [
        "frame_0003.damaged.jpg",
        "frame_0003.damaged.nef",
    ]
    assert sorted(p.name for p in (root / "frames").iterdir() if "0003" in p.name) == [
        "frame_0003.jpg"
    ]


def test_a_frame_a_photo_manager_wrote_a_rating_into_is_kept(tmp_path: Path) -> None:
    """A photo manager writing a rating or keywords into a frame changes its size, and the
    resume took the whole image for damaged: moved aside and shot again (later, the subject
    perhaps moved), or, in a tether session, left out for good. A file grown and still
    complete is kept as it is; one shorter than written is still set aside."""
    root = tmp_path / "s"
    assert runner(root, RawPlusJpegCamera()).run().reason is FinishReason.COMPLETED
    jpeg = root / "frames/frame_0002.jpg"
    data = jpeg.read_bytes()
    assert data[:2] == b"\xff\xd8"
    comment = b"rating=5; keywords=beetle"
    jpeg.write_bytes(
        data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
    )
    nef = root / "frames/frame_0003.nef"
    nef.write_bytes(nef.read_bytes()[:-7])  # cut short
    camera = RawPlusJpegCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == ["frame_0003"]
    assert sorted(p.name for p in (root / "failed-attempts").iterdir()) == [
        "frame_0003.damaged.jpg",
        "frame_0003.damaged.nef",
    ]
    assert comment in jpeg.read_bytes()


@pytest.mark.parametrize("planted", ["file", "link"])
def test_a_failed_attempts_that_is_no_folder_of_the_session_s_is_refused(
    tmp_path: Path, planted: str
) -> None:
    """Setting a damaged frame aside into a ``failed-attempts`` that was a file ended in a
    traceback; one that was a link moved the frame out of the session to where it pointed."""
    root, elsewhere = tmp_path / "s", tmp_path / "elsewhere"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    jpeg = root / "frames/frame_0002.jpg"
    jpeg.write_bytes(bytes(jpeg.stat().st_size))
    elsewhere.mkdir()
    if planted == "file":
        (root / "failed-attempts").write_text("notes")
    else:
        (root / "failed-attempts").symlink_to(elsewhere)
    result = runner(root, FakeCamera()).run()
    assert result.reason is FinishReason.FAULT
    message = str(result.error)
    assert "\n" not in message and "failed-attempts: " in message
    assert "move it out of the session folder, then resume" in message
    assert jpeg.exists() and list(elsewhere.iterdir()) == []


def test_a_folder_named_like_a_temporary_among_the_frames_is_left_alone(tmp_path: Path) -> None:
    """Removing the hidden temporaries a crash left, a folder of such a name (the user's) ended
    the resume in a traceback."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    (root / "frames/.frame_0004.jpg.abc.tmp").mkdir()
    (root / "frames/.frame_0005.jpg.def.tmp").write_bytes(b"half a frame")
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    assert sorted(p.name for p in (root / "frames").iterdir() if p.name.startswith(".")) == [
        ".frame_0004.jpg.abc.tmp"
    ]


def test_what_holds_a_lost_frame_s_name_goes_aside_so_it_is_shot_once(tmp_path: Path) -> None:
    """Frame 3 deleted with a photo manager's sidecar left (``frame_0003.jpg.xmp``), frame 2
    replaced by a folder: the camera wrote them as ``frame_0003_2.jpg`` and
    ``frame_0002_2.jpg``, which no later resume counted, so every resume shot them again."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    (root / "frames/frame_0003.jpg").unlink()
    (root / "frames/frame_0003.jpg.xmp").write_text("<x:xmpmeta/>")
    (root / "frames/frame_0002.jpg").unlink()
    (root / "frames/frame_0002.jpg").mkdir()
    camera = FakeCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == ["frame_0002", "frame_0003"]
    assert sorted(p.name for p in (root / "failed-attempts").iterdir()) == [
        "frame_0002.in-the-way.jpg",
        "frame_0003.jpg.in-the-way.xmp",
    ]
    again = FakeCamera()
    assert runner(root, again).run().reason is FinishReason.COMPLETED
    assert again.shots == []


def test_an_empty_frame_without_its_record_is_shot_again_not_adopted(tmp_path: Path) -> None:
    """A crash between a frame's rename and its journal record, and a power cut that left the
    file empty: resume adopted it as shot, the stacker kept it out, and the session called
    itself complete with a plane missing from the stack."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    journal = root / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(ln for ln in lines if b'"index":5,"position"' not in ln))
    (root / "frames/frame_0005.jpg").write_bytes(b"")
    camera = FakeCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == ["frame_0005"]
    assert [p.name for p in (root / "failed-attempts").iterdir()] == ["frame_0005.damaged.jpg"]
    assert (root / "frames/frame_0005.jpg").stat().st_size > 0
    assert not [r for r in read_journal(journal).of_kind("frame") if r.get("adopted")]


@pytest.mark.parametrize("index", [1, 4])
def test_half_a_raw_plus_jpeg_shot_without_its_record_is_shot_again(
    tmp_path: Path, index: int
) -> None:
    """A crash between the two downloads of a RAW+JPEG shot left its RAW alone: resume adopted
    it, and the stacker kept it out (a stack cannot mix linear and rendered frames), so the
    session called itself complete with a plane missing; as frame 1, the RAW made the whole
    stack linear and every JPEG was kept out."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    journal = root / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(ln for ln in lines if b'"index":%d,' % index not in ln))
    (root / f"frames/frame_{index:04d}.jpg").unlink()
    (root / f"frames/frame_{index:04d}.nef").write_bytes(b"MM\x00*" + bytes(100))
    camera = FakeCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == [f"frame_{index:04d}"]
    assert [p.name for p in (root / "failed-attempts").iterdir()] == [
        f"frame_{index:04d}.damaged.nef"
    ]
    assert not [r for r in read_journal(journal).of_kind("frame") if r.get("adopted")]


def test_a_frame_on_disk_without_its_record_is_adopted_when_it_can_be_stacked(
    tmp_path: Path,
) -> None:
    """A whole shot whose record a crash lost is kept, and a DNG session's JPEG alone is not."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    journal = root / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(ln for ln in lines if b'"index":5,' not in ln))
    camera = FakeCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == []
    dng = tmp_path / "dng"
    stack = StackOptions(output_format="dng")
    SessionFolder.create(dng, PLAN, SessionConfig(rig={"kind": "hardware"}, stack=stack))
    (dng / "frames").mkdir(exist_ok=True)
    (dng / "frames/frame_0002.jpg").write_bytes((root / "frames/frame_0002.jpg").read_bytes())
    camera = FakeCamera()
    result = runner(dng, camera).run()
    aside = [p.name for p in (dng / "failed-attempts").iterdir()]
    assert [n for n in aside if n.startswith("frame_0002")], aside  # the JPEG alone went aside
    # The fake camera shoots JPEG alone: the first shot without a RAW file ends the session.
    assert camera.shots == ["frame_0001"] and result.reason is FinishReason.FAULT


def test_a_fault_stops_cleanly_and_resume_shoots_only_what_is_missing(tmp_path: Path) -> None:
    broken = FakeCamera(fail=lambda stem, _: RigError("cable") if stem == "frame_0004" else None)
    result = runner(tmp_path / "s", broken).run()
    assert result.reason is FinishReason.FAULT and result.exit_code == 6
    assert frames(tmp_path / "s") == [1, 2, 3]
    camera = FakeCamera()
    assert runner(tmp_path / "s", camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == ["frame_0004", "frame_0005"]


def test_a_composite_a_fault_kept_from_being_written_is_said_on_the_console(
    tmp_path: Path,
) -> None:
    """A disk that filled while a frame was written stopped the session, and the composite's
    write failed on the same full disk: only session.log said so, while the console showed 3
    merged and composite.tif on disk was an older checkpoint. The composite's refusal is
    injected: the frame's own is the fault."""
    from stacker.errors import ResultWriteError

    full = OSError(28, "No space left on device")
    broken = FakeCamera(fail=lambda stem, _: full if stem == "frame_0004" else None)
    session = runner(tmp_path / "s", broken)
    session.options = dataclasses.replace(OPTIONS, write_outputs=True)

    def refused(**kwargs: object) -> tuple[Path, ...]:
        raise ResultWriteError(tmp_path / "s" / "composite.tif", "No space left on device", "")

    session._write_outputs = refused  # type: ignore[method-assign]
    result = session.run()
    assert result.reason is FinishReason.FAULT and result.outputs == ()
    said = [w for w in result.status.warnings if w.startswith("composite not written")]
    assert said == [
        f"composite not written ({tmp_path / 's' / 'composite.tif'}: No space left on device); "
        f"`rig resume {tmp_path / 's'}` writes it"
    ]


def test_frames_that_share_no_area_are_written_uncropped_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view that moved across the whole frame leaves nothing every frame covers. The crop
    then refused the composite, and a session (which has no --no-crop) wrote none: it is
    written uncropped, with a warning. The stacker's refusal is injected."""
    from stacker import output
    from stacker.crop import NoCommonAreaError

    crops: list[bool] = []

    def save(stacker: object, out: Path, depth: object, **kwargs: Any) -> list[Path]:
        crops.append(kwargs["crop"])
        if kwargs["crop"]:
            raise NoCommonAreaError("the merged frames share no area")
        return [Path(out)]

    monkeypatch.setattr(output, "save_outputs", save)
    session = runner(tmp_path / "s", FakeCamera())
    session.options = dataclasses.replace(OPTIONS, write_outputs=True)
    result = session.run()
    assert result.reason is FinishReason.COMPLETED
    assert result.outputs == (tmp_path / "s" / "composite.tif",) and crops[-2:] == [True, False]
    assert any("written uncropped" in w for w in result.status.warnings)


def test_a_stop_between_frames_interrupts_after_the_frame_in_flight(tmp_path: Path) -> None:
    focuser = FakeFocuser()
    run = runner(tmp_path / "s", FakeCamera(), focuser)

    def stop_after_two(event: SessionEvent) -> None:
        if isinstance(event, FrameCaptured) and event.entry.index == 2:
            run.request_stop()

    run.subscribe(stop_after_two)
    result = run.run()
    assert result.reason is FinishReason.INTERRUPTED and result.exit_code == 130
    assert frames(tmp_path / "s") == [1, 2] and focuser.stops == 1
    assert focuser.moves == [0.0, 100.0]  # no return to start after a stop


def test_a_ctrl_c_in_a_program_running_a_session_aborts_it_and_goes_on(tmp_path: Path) -> None:
    """A KeyboardInterrupt in a program that runs the session itself (the README's
    examples/session_api.py) ended it as an error with an empty message, journaled so, and
    swallowed: a script shooting several subjects went on to the next. The run is aborted,
    journaled as such (resumable), and the interrupt raised again."""
    ctrl_c = FakeCamera(fail=lambda stem, _: KeyboardInterrupt() if stem == "frame_0004" else None)
    run = runner(tmp_path / "s", ctrl_c)
    finished: list[SessionEvent] = []
    run.subscribe(lambda e: isinstance(e, SessionFinished) and finished.append(e))
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert [e.result.reason for e in finished] == [FinishReason.ABORTED]  # type: ignore[attr-defined]
    ends = read_journal(tmp_path / "s" / "journal.jsonl").of_kind("finish")
    assert [(r["reason"], r.get("error")) for r in ends] == [("aborted", None)]
    assert frames(tmp_path / "s") == [1, 2, 3]
    camera = FakeCamera()
    assert runner(tmp_path / "s", camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == ["frame_0004", "frame_0005"]


def test_a_plan_outside_the_soft_limits_is_refused_before_anything_moves() -> None:
    focuser = FakeFocuser(max_position=300.0)
    with pytest.raises(MotionError, match="outside the soft limits"):
        check_plan_fits(PLAN, focuser)
    assert focuser.moves == []


def test_a_session_another_run_holds_is_refused_before_anything_is_touched(
    tmp_path: Path,
) -> None:
    """Two runs of one folder would each shoot its missing positions into one journal."""
    root = tmp_path / "s"
    holder = SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}))
    focuser, camera = FakeFocuser(), FakeCamera()
    result = runner(root, camera, focuser).run()
    assert result.reason is FinishReason.FAULT and result.exit_code == 4
    assert "another process is running this session" in str(result.error)
    assert camera.shots == [] and focuser.moves == []
    assert not (root / "journal.jsonl").exists() and not (root / "session.log").exists()
    holder.unlock()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED  # released again


def test_a_folder_being_created_is_not_created_twice(tmp_path: Path) -> None:
    root, config = tmp_path / "s", SessionConfig(rig={"kind": "hardware"})
    busy = SessionFolder(root)
    root.mkdir()
    busy.lock()
    with pytest.raises(SessionBusyError, match="another process"):
        SessionFolder.create(root, PLAN, config)
    assert list(root.iterdir()) == []
    busy.unlock()
    SessionFolder.create(root, PLAN, config).unlock()
    with pytest.raises(SessionFolderError, match="already holds a session"):
        SessionFolder.create(root, PLAN, config)


def test_a_new_session_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    """Frames found there were adopted into the new session as its own (stacked into its
    composite), and someone else's composite.tif was written over."""
    root, config = tmp_path / "d", SessionConfig(rig={"kind": "hardware"})
    (root / "frames").mkdir(parents=True)
    (root / "frames" / "frame_0001.jpg").write_bytes(b"someone else's")
    (root / "composite.tif").write_bytes(b"theirs")
    with pytest.raises(SessionFolderError, match=r"holds other files \(composite.tif, frames\)"):
        SessionFolder.create(root, PLAN, config)
    assert sorted(p.name for p in root.rglob("*")) == ["composite.tif", "frame_0001.jpg", "frames"]
    empty = tmp_path / "empty"
    empty.mkdir()
    SessionFolder.create(empty, PLAN, config).unlock()  # an empty folder is a new one


def _clock_stopped_at(monkeypatch: pytest.MonkeyPatch, *when: int) -> None:
    """Session folders named by the clock all get the moment ``when`` (year, month, ...)."""

    class SameSecond(datetime):
        @classmethod
        def now(cls, tz: object = None) -> SameSecond:
            return cls(*when)

    monkeypatch.setattr("rig.session.folder.datetime", SameSecond)


def test_sessions_named_by_the_clock_in_one_second_get_names_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rig shoot``, ``rig demo`` and ``rig tether`` without ``--out`` name the session by the
    clock, as the station does: a second one within the same second (or after the clock was
    set back) was refused as a folder that "already holds a session"."""
    _clock_stopped_at(monkeypatch, 2026, 3, 29, 2, 30, 0)
    config = SessionConfig(rig={"kind": "hardware"})
    names = []
    for _ in range(3):
        root = dated_folder(tmp_path, "demo")
        SessionFolder.create(root, PLAN, config).unlock()
        names.append(root.name)
    assert names == ["demo-20260329-023000", "demo-20260329-023000-2", "demo-20260329-023000-3"]
    (tmp_path / "demo-20260329-023000-4").symlink_to(tmp_path / "nowhere")  # taken all the same
    assert dated_folder(tmp_path, "demo").name == "demo-20260329-023000-5"


def test_two_sessions_that_chose_the_same_clock_name_at_once_both_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ``rig shoot`` without ``--out`` started in one second both chose the name before
    either made the folder: the second was refused, after it had opened (and so restarted)
    its rail, as holding "a session; continue it with rig resume", the first one's."""
    _clock_stopped_at(monkeypatch, 2026, 12, 6, 2, 42, 13)
    config = SessionConfig(rig={"kind": "hardware"})
    chosen = [dated_folder(tmp_path, "stack") for _ in range(2)]  # both before either starts
    assert chosen[0] == chosen[1]
    made = [SessionFolder.create(root, PLAN, config, named=False) for root in chosen]
    for folder in made:
        folder.unlock()
    assert [f.root.name for f in made] == ["stack-20261206-024213", "stack-20261206-024213-2"]
    again = [dated_folder(tmp_path, "stack") for _ in range(2)]  # both chose "-3"
    made = [SessionFolder.create(root, PLAN, config, named=False) for root in again]
    for folder in made:
        folder.unlock()
    assert [f.root.name for f in made] == ["stack-20261206-024213-3", "stack-20261206-024213-4"]
    with pytest.raises(SessionFolderError, match="already holds a session"):  # a name given
        SessionFolder.create(chosen[0], PLAN, config)


def test_a_session_s_frames_folder_given_for_it_names_the_session(tmp_path: Path) -> None:
    """``rig resume beetle/frames`` said only "not a session folder", leaving the user to see
    that the session is the folder above."""
    root = tmp_path / "beetle"
    SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"})).unlock()
    with pytest.raises(SessionFolderError) as refused:
        SessionFolder.find(root / "frames")
    assert str(refused.value).endswith(f"no plan.json); give its session folder, {root}")
    with pytest.raises(SessionFolderError, match=r"give the folder `rig shoot` made$"):
        SessionFolder.find(tmp_path)


def test_a_folder_whose_making_was_cut_short_is_made_anew(tmp_path: Path) -> None:
    """Killed before plan.json was in place: no frame shot, and the folder could be neither
    resumed ("not a session folder") nor reused ("holds other files")."""
    root, config = tmp_path / "s", SessionConfig(rig={"kind": "hardware"})
    (root / "frames").mkdir(parents=True)
    (root / "session.json").write_text('{"format": 1, "rig": {"kind": "hardware"}}')
    (root / ".plan.json.1h9y3rny.tmp").write_text("{")
    with pytest.raises(SessionFolderError, match=r"making was cut short .* start it again"):
        SessionFolder.find(root)
    SessionFolder.create(root, PLAN, config).unlock()
    assert sorted(p.name for p in root.iterdir()) == ["frames", "plan.json", "session.json"]
    for rig, command in [({"kind": "simulated"}, "rig demo"),
                         ({"kind": "simulated", "tether": {}}, "rig demo --tether"),
                         ({"kind": "hardware", "tether": {}}, "rig tether")]:  # fmt: skip
        # a demo killed as it made its folder was told to start again with `rig shoot`
        made = tmp_path / command.replace(" ", "_")
        made.mkdir()
        (made / "session.json").write_text(json.dumps({"format": 1, "rig": rig}))
        with pytest.raises(SessionFolderError, match=f"start it again with `{command} --out`"):
            SessionFolder.find(made)
    half = tmp_path / "shot"
    (half / "frames").mkdir(parents=True)
    (half / "session.json").write_text("{}")
    (half / "frames" / "frame_0001.jpg").write_bytes(b"a frame")  # something was shot after all
    with pytest.raises(SessionFolderError, match=r"holds other files \(frames\)"):
        SessionFolder.create(half, PLAN, config)


def test_a_shot_session_that_lost_its_plan_is_not_called_cut_short(tmp_path: Path) -> None:
    """A session with frames and a journal whose plan.json went missing (or was replaced by a
    folder) was told "nothing was shot; start it again with `rig shoot --out` this folder",
    which then refused the folder as one that holds a session: the frames were never named."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    (root / "plan.json").unlink()
    with pytest.raises(SessionFolderError) as missing:
        SessionFolder.find(root)
    message = str(missing.value)
    assert message.startswith(f"{root / 'plan.json'}: missing; restore it from a backup")
    assert "nothing was shot" not in message and "stacker stack" in message
    (root / "plan.json").mkdir()
    (root / "journal.jsonl").unlink()  # the frames alone tell it was shot
    with pytest.raises(SessionFolderError, match=r"plan\.json: not a file; restore it"):
        SessionFolder.find(root)


def test_the_stack_command_offered_for_a_damaged_session_can_be_pasted(tmp_path: Path) -> None:
    """The frames of a session named with a space were offered as ``stacker stack my
    beetle/frames``, which the shell splits into two inputs."""
    root = tmp_path / "my beetle"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    (root / "plan.json").unlink()
    with pytest.raises(SessionFolderError) as missing:
        SessionFolder.find(root)
    assert f"`stacker stack '{root / 'frames'}' -o composite.tif`" in str(missing.value)


def test_links_planted_for_the_journal_or_the_log_are_not_written_through(
    tmp_path: Path,
) -> None:
    root, victim = tmp_path / "s", tmp_path / "victim.sh"
    victim.write_text("echo mine\n")
    run = runner(root, FakeCamera())
    (root / "session.log").symlink_to(victim)
    assert run.run().reason is FinishReason.COMPLETED  # unlogged, not logged into the victim
    assert frames(root) == [1, 2, 3, 4, 5]
    (root / "journal.jsonl").rename(tmp_path / "journal.jsonl")
    (root / "journal.jsonl").symlink_to(victim)
    result = runner(root, FakeCamera()).run()
    assert result.reason is FinishReason.FAULT and "a symbolic link" in str(result.error)
    assert victim.read_text() == "echo mine\n"


def test_a_session_running_unlogged_prints_nothing_behind_its_display(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A session.log that cannot be opened (a read-only disk, a link) left the session's
    warnings to logging's last resort, which printed each one on stderr under the display
    that shows them already: a read-only disk's fault was said three times."""
    root = tmp_path / "s"
    run = runner(root, FakeCamera())
    (root / "session.log").symlink_to(tmp_path / "elsewhere.log")
    (root / "frames").mkdir(exist_ok=True)
    (root / "frames" / "frame_0009.jpg").write_bytes(b"x")  # warned about: not in the plan
    monkeypatch.setattr(logging.root, "handlers", [])  # as in the commands: no handler at all
    warned: list[str] = []
    run.subscribe(lambda e: isinstance(e, SessionWarning) and warned.append(e.message))
    assert run.run().reason is FinishReason.COMPLETED
    assert any("frame_0009.jpg" in w for w in warned)
    assert capfd.readouterr().err == ""


def test_a_frames_folder_that_is_a_link_is_refused_not_shot_again(tmp_path: Path) -> None:
    """Through the link every frame counted as gone: the whole stack was shot again there."""
    root, elsewhere = tmp_path / "s", tmp_path / "elsewhere"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    (root / "frames").rename(elsewhere)
    (root / "frames").symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(SessionFolderError, match="frames: a symbolic link"):
        SessionFolder.find(root)
    camera = FakeCamera()
    result = runner(root, camera).run()
    assert result.reason is FinishReason.FAULT and "a symbolic link" in str(result.error)
    assert camera.shots == [] and sorted(p.name for p in elsewhere.iterdir()) == before


def test_a_plan_edited_to_move_the_frames_shot_is_refused(tmp_path: Path) -> None:
    """Turned round mid-session, the missing frames went to depths already shot: the far
    quarter was never shot, and the session still called itself complete."""
    root = tmp_path / "s"
    broken = FakeCamera(fail=lambda stem, _: RigError("cable") if stem == "frame_0003" else None)
    assert runner(root, broken).run().reason is FinishReason.FAULT
    saved = (root / "plan.json").read_text()
    turned = replace(PLAN, direction="far-to-near")
    (root / "plan.json").write_text(turned.to_json())
    camera = FakeCamera()
    result = runner(root, camera).run()
    assert result.reason is FinishReason.FAULT and camera.shots == []
    assert str(result.error) == (
        f"{root / 'plan.json'}: frame 1 was shot at 0 µm but this plan puts it at 400 µm; the "
        "plan was changed after shooting began: put plan.json back, or shoot the new plan as "
        "a new session"
    )
    (root / "plan.json").write_text(saved)
    longer = ShotPlan.from_step(0.0, 600.0, PLAN.step, settle_s=0.0)  # the same frames, 2 more
    (root / "plan.json").write_text(longer.to_json())
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == [f"frame_{i:04d}" for i in range(3, 8)]


def test_a_resume_removes_the_temporaries_of_outputs_a_kill_cut_short(tmp_path: Path) -> None:
    """kill -9 while a checkpoint is written leaves a hidden copy as large as the composite."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    stale = [root / ".composite.tif.hpuehob9.tmp", root / ".depth-preview.jpg.a1b2c3.tmp"]
    theirs = [root / ".notes.txt.a1b2c3.tmp", root / "composite.tif.tmp"]
    for p in [*stale, *theirs, root / "frames/.frame_0006.jpg.x1y2.tmp"]:
        p.write_bytes(b"\0" * 1024)
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    assert sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp")) == sorted(
        p.name for p in theirs
    )
    assert not list((root / "frames").glob(".*.tmp"))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_under_session_log_costs_log_lines_not_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writes to /dev/full fail with ENOSPC, as session.log's do on a full disk: each line
    printed a traceback, and closing the log killed the capture thread."""
    import logging

    from rig.session.runner import _OwnLogFile

    handler = _OwnLogFile(tmp_path / "session.log", encoding="utf-8")
    handler.stream.close()
    handler.stream = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115 - the handler's
    logger = logging.getLogger("rig.test_full_disk")
    logger.addHandler(handler)
    try:
        logger.warning("x" * 10_000)  # more than the buffer: written, and refused, at once
    finally:
        logger.removeHandler(handler)
    handler.close()
    assert capsys.readouterr().err == ""


def test_a_session_whose_own_files_are_damaged_points_to_its_frames(tmp_path: Path) -> None:
    """The advice was to delete the session (its frames with it), or that `rig shoot` had not
    made the folder; the frames are all there and stack as they are."""
    root = tmp_path / "s"
    assert runner(root, FakeCamera()).run().reason is FinishReason.COMPLETED
    kept = rf"frames are kept: `stacker stack {root / 'frames'} -o composite.tif`"
    (root / "session.json").unlink()
    with pytest.raises(SessionFolderError, match=rf"missing; restore it .*{kept}"):
        SessionFolder(root).load_config()
    for damaged in ('{"a"', "[" * 100_000):  # nested too deeply: RecursionError, not ValueError
        (root / "session.json").write_text(damaged)
        with pytest.raises(SessionFolderError, match=rf"unreadable .*; restore it .*{kept}"):
            SessionFolder(root).load_config()
    (root / "plan.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SessionFolderError, match=rf"not text \(damaged\); restore it .*{kept}"):
        SessionFolder(root).load_plan()
    # Empty, or cut short: what a power cut on a card's FAT or exFAT leaves of a rewrite.
    for damaged in ("", '{"near": 0.0, "fa'):
        (root / "plan.json").write_text(damaged)
        with pytest.raises(SessionFolderError, match=rf"not JSON \(damaged\); restore it .*{kept}"):
            SessionFolder(root).load_plan()


def test_the_stack_command_for_a_damaged_session_s_frames_can_be_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session folder starting with a dash (``rig tether -o -x`` takes one) was offered as
    ``stacker stack -x/frames``, which the command takes for an unknown option."""
    monkeypatch.chdir(tmp_path)
    assert runner(Path("-s"), FakeCamera()).run().reason is FinishReason.COMPLETED
    (tmp_path / "-s" / "session.json").unlink()
    with pytest.raises(SessionFolderError, match=r"`stacker stack \./-s/frames -o composite"):
        SessionFolder(Path("-s")).load_config()


def test_the_composite_s_metadata_comes_from_the_session_s_own_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray frame_0000.jpg (outside the plan, left alone) was the frame the composite took
    its EXIF from: another shot's, a JPEG for a DNG composite (refused), and through a link
    to a named pipe the session hung writing its composite."""
    import stacker.io

    root = tmp_path / "s"
    SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}, checkpoint_every=2))
    stray = root / "frames" / "frame_0000.jpg"
    stray.symlink_to(tmp_path / "elsewhere.jpg")
    read: list[Path] = []
    real = stacker.io.read_metadata
    monkeypatch.setattr(
        stacker.io, "read_metadata", lambda p, **kw: read.append(p) or real(p, **kw)
    )
    camera = FakeCamera(size=(96, 72))
    run = SessionRunner(
        SessionFolder(root),
        focuser=FakeFocuser(),
        camera=camera,
        options=RunnerOptions(retry_delay_s=0.0, previews=False),
    )
    result = run.run()
    assert result.reason is FinishReason.COMPLETED, result.error
    assert (root / "composite.tif").is_file()
    assert read and {p.name for p in read} == {"frame_0001.jpg"}


def test_a_disk_that_refuses_the_resume_s_preparation_is_a_one_line_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card the kernel remounted read-only after a power cut, with a frame's temporary left
    by the kill: removing it raised an OSError that ended the resume as a bug (a traceback,
    exit 1) rather than the fault it is."""
    import errno

    root = tmp_path / "s"
    broken = FakeCamera(fail=lambda stem, _: RigError("cable") if stem == "frame_0003" else None)
    assert runner(root, broken).run().reason is FinishReason.FAULT
    left = root / "frames" / ".frame_0003.jpg.x1y2.tmp"
    left.write_bytes(b"half")

    def read_only(self: SessionFolder) -> list[Path]:
        raise OSError(errno.EROFS, "Read-only file system", str(left))

    monkeypatch.setattr(SessionFolder, "remove_temporaries", read_only)
    camera = FakeCamera()
    result = runner(root, camera).run()
    assert result.reason is FinishReason.FAULT and result.exit_code == 6
    assert isinstance(result.error, RigError) and camera.shots == []
    assert str(result.error) == (
        f"{left}: Read-only file system; the disk is read-only: check it and mount it again "
        "(or restart) and resume the session"
    )


class RawPlusJpegCamera(FakeCamera):
    """A body at RAW+JPEG: the RAW file first (as Canon and Nikon send it), then the JPEG;
    RAW files of one size each, as an uncompressed RAW setting writes them."""

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: object = None):
        assert stem is not None
        jpeg = super().capture(dest_dir, stem)  # named first: the RAW would take its name
        raw = dest_dir / f"{stem}.nef"
        atomic_write_bytes(raw, b"MM\x00*" + bytes(1000))
        return [raw, *jpeg]


@pytest.mark.parametrize("index", [1, 4])
def test_a_journaled_raw_plus_jpeg_shot_missing_its_jpeg_is_shot_again(
    tmp_path: Path, index: int
) -> None:
    """A frame shot again (its files were gone or damaged) and killed between the two
    downloads: the RAW of the new shot stood beside the old shot's record, the size it says,
    and counted as the whole frame. Stacked alone it was kept out, or, as frame 1, made the
    whole stack linear and kept every JPEG out; the session called itself complete."""
    root = tmp_path / "s"
    assert runner(root, RawPlusJpegCamera()).run().reason is FinishReason.COMPLETED
    (root / f"frames/frame_{index:04d}.jpg").unlink()
    camera = RawPlusJpegCamera()
    assert runner(root, camera).run().reason is FinishReason.COMPLETED
    assert camera.shots == [f"frame_{index:04d}"]
    assert [p.name for p in (root / "failed-attempts").iterdir()] == [
        f"frame_{index:04d}.damaged.nef"
    ]
    assert sorted(p.name for p in (root / "frames").glob(f"frame_{index:04d}.*")) == [
        f"frame_{index:04d}.jpg",
        f"frame_{index:04d}.nef",
    ]
    # a JPEG kept without its RAW stacks as it is, and a file of a shot that is no frame (a
    # RAW+HEIF body's HEIF) is never missed: nothing is shot again for either, on any resume
    (root / "frames/frame_0002.nef").unlink()
    journal = root / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    with_heif = []
    for line in lines:
        record = json.loads(line)
        if record["event"] == "frame" and record["index"] == 3:
            record["files"][-1] = "frames/frame_0003.hif"
            record["sizes"][-1] = 11
            line = (json.dumps(record) + "\n").encode()
        with_heif.append(line)
    journal.write_bytes(b"".join(with_heif))
    (root / "frames/frame_0003.jpg").rename(root / "frames/frame_0003.hif")
    (root / "frames/frame_0003.hif").write_bytes(b"a HEIF file")
    assert read_journal(journal).frames()[3]["files"][-1] == "frames/frame_0003.hif"
    for _ in range(2):
        camera = RawPlusJpegCamera()
        runner(root, camera).run()
        assert camera.shots == []


class _KeptOutAfterTheFirst(FakeStacker):
    """Merges the first frame and keeps every later one out against it (a flash that did not
    fire on the first shot)."""

    def add(self, image: Any, name: str = "", **ignored: object) -> Any:
        record = super().add(image, name)
        if len(self.names) > 1:
            record.merged, record.reason = False, "exposure jump against the previous frame"
        return record


def test_a_first_frame_that_keeps_the_rest_out_is_said_once(tmp_path: Path) -> None:
    """Every frame after a bad first one was kept out, a warning each, and nothing said what to
    do while the session could still be stopped."""
    root = tmp_path / "s"
    SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}))
    run = SessionRunner(
        SessionFolder(root), focuser=FakeFocuser(), camera=FakeCamera(),
        stacker_factory=lambda config, frames: _KeptOutAfterTheFirst(), options=OPTIONS,
    )  # fmt: skip
    said: list[str] = []
    run.subscribe(lambda e: isinstance(e, SessionWarning) and said.append(e.message))
    result = run.run()
    assert result.status.merged == 1 and result.status.rejected == 4
    stranded = [w for w in said if "every frame since" in w]
    assert len(stranded) == 1
    first = root / "frames" / "frame_0001.jpg"
    assert stranded[0] == (
        f"{first.name}: every frame since was kept out against it; if it is bad (a flash that "
        "did not fire, a stray shot), stop, check it, and stack the frames again with "
        f"`stacker stack {first.parent}`, which leaves such a first frame out"
    )
    assert said.index(stranded[0]) == said.index(next(w for w in said if "frame 4 kept" in w)) + 1


class _SceneCamera(FakeCamera):
    """Shoots a synthetic scene stepping in focus; the first shot is dark (a flash that did not
    fire)."""

    def __init__(self) -> None:
        super().__init__()
        from rig.sim.scene import SceneSpec, SyntheticScene

        self.scene = SyntheticScene(SceneSpec(width=320, height=240, seed=7, depth_um=600.0))

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: object = None):
        import cv2

        n = len(self.shots)
        self.shots.append(stem or "")
        frame = self.scene.render(n * 120.0, pose=self.scene.random_pose(n), noise_seed=n, index=n)
        image = (frame.image * 0.03).astype(frame.image.dtype) if n == 0 else frame.image
        path = dest_dir / f"{stem}.jpg"
        atomic_write_bytes(path, cv2.imencode(".jpg", image)[1].tobytes())
        return [path]


def test_a_bad_first_frame_is_left_out_and_the_session_stacks_on_without_it(
    tmp_path: Path,
) -> None:
    """A first flash that did not fire kept every frame of the session out against it: the
    composite was that dark frame alone, and the session only said to stack again afterwards.
    Once three frames after it are kept out and align with each other, the stack starts again
    from them without it, and the page's row of the first frame says why it is out."""
    from rig.preview import SessionPreview
    from stacker.preview.hub import PreviewHub

    root = tmp_path / "s"
    SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}))
    run = SessionRunner(
        SessionFolder(root), focuser=FakeFocuser(), camera=_SceneCamera(),
        options=replace(OPTIONS, write_outputs=True, previews=True),
    )  # fmt: skip
    hub = PreviewHub()
    SessionPreview(hub).attach(run)
    said: list[str] = []
    run.subscribe(lambda e: isinstance(e, SessionWarning) and said.append(e.message))
    result = run.run()
    assert result.reason is FinishReason.COMPLETED
    assert (result.status.merged, result.status.rejected) == (4, 1)
    left = [w for w in said if "left out" in w]
    assert left == [
        "frame 1: left out: none of the 3 frames after it aligns with it (a dark, blown or "
        "stray first frame?); stacking again without it"
    ]
    assert not [w for w in said if "every frame since" in w]
    merges = [r for r in read_journal(root / "journal.jsonl").records if r["event"] == "merge"]
    assert [(r["index"], r["merged"]) for r in merges][-5:] == [
        (1, False), (2, True), (3, True), (4, True), (5, True)
    ]  # fmt: skip
    rows = {row["number"]: row for row in hub.snapshot().frames}
    assert rows[1]["merged"] is False and rows[1]["reason"].startswith("left out: none of the 3")
    assert all(rows[i]["merged"] for i in (2, 3, 4, 5))
    p = hub.progress  # the first frame counts as kept out on the page too
    assert (p.captured, p.stacked, p.merged, p.rejected) == (5, 5, 4, 1)
    assert result.outputs and result.outputs[0].exists()


class _UprightFirstCamera(_SceneCamera):
    """The dark first shot is a stray one held upright: its EXIF says turn it (6)."""

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: object = None):
        from tests.exif import tag_jpeg

        files = super().capture(dest_dir, stem, on_progress=on_progress)
        if len(self.shots) == 1:
            files[0].write_bytes(tag_jpeg(files[0].read_bytes(), 6))
        return files


def test_a_session_started_again_takes_its_new_first_frame_s_orientation(
    tmp_path: Path,
) -> None:
    """Frames keep the first frame's orientation, and the frames kept out against a stray
    first shot held upright were read again turned a quarter to fit it when the stack started
    again without it: the composite came out a quarter turn from every frame in it."""
    import cv2

    root = tmp_path / "s"
    SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}))
    run = SessionRunner(
        SessionFolder(root), focuser=FakeFocuser(), camera=_UprightFirstCamera(),
        options=replace(OPTIONS, write_outputs=True),
    )  # fmt: skip
    result = run.run()
    assert (result.status.merged, result.status.rejected) == (4, 1)
    height, width = cv2.imread(str(result.outputs[0]), cv2.IMREAD_UNCHANGED).shape[:2]
    assert height < width  # landscape, as the frames (320x240) are


def test_the_composite_s_metadata_comes_from_a_frame_that_was_stacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The composite took its EXIF and colour profile from the first frame handed to the
    stacker, though that frame could not be read (a download cut short): the composite carried
    no camera data, and a DNG composite, whose profile is read from that RAW file, could not be
    written at all, nor by every resume after."""
    import stacker.io

    class DamagedFirst(FakeCamera):
        def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: object = None):
            paths = super().capture(dest_dir, stem, on_progress=on_progress)
            if stem == "frame_0001":
                atomic_write_bytes(paths[0], b"\xff\xd8 cut short")
            return paths

    root = tmp_path / "s"
    SessionFolder.create(root, PLAN, SessionConfig(rig={"kind": "hardware"}, checkpoint_every=2))
    read: list[Path] = []
    real = stacker.io.read_metadata
    monkeypatch.setattr(
        stacker.io, "read_metadata", lambda p, **kw: read.append(p) or real(p, **kw)
    )
    run = SessionRunner(
        SessionFolder(root),
        focuser=FakeFocuser(),
        camera=DamagedFirst(size=(96, 72)),
        options=RunnerOptions(retry_delay_s=0.0, previews=False),
    )
    result = run.run()
    assert result.reason is FinishReason.COMPLETED, result.error
    assert (root / "composite.tif").is_file()
    assert read and {p.name for p in read} == {"frame_0002.jpg"}


def test_a_session_written_by_a_newer_stackrig_is_refused_by_its_format(tmp_path: Path) -> None:
    """session.json carried a format number that nothing read: a session of a newer format
    (or a hand edit) was resumed as if it were this one's."""
    for fmt in (2, 99, "1", True, None):
        with pytest.raises(SessionFolderError, match=r"session format .* is not one this stackrig"):
            SessionConfig.from_dict({"format": fmt, "rig": {"kind": "hardware"}}, source="s.json")
    for data in ({"format": 1, "rig": {}}, {"rig": {}}):  # 1, or none from a hand-made one
        assert SessionConfig.from_dict(data, source="s.json").rig == {}


def test_a_warning_that_names_a_file_not_in_utf8_is_still_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line naming a file whose name is not UTF-8 (``--incoming`` frames from an old card
    reader or a Samba share) raised in session.log's handler, which dropped the whole line."""
    # Kept from pytest's own capture, whose report to its workers cannot carry the name.
    monkeypatch.setattr(logging.getLogger("rig"), "propagate", False)
    root = tmp_path / "s"
    run = runner(root, FakeCamera())
    attached = run._attach_log()
    odd = os.fsdecode(b"IMG_0009\xff.JPG")
    try:
        logging.getLogger("rig.session").warning("%s arrived between shots; left alone", odd)
    finally:
        run._detach_log(attached)
    log = (root / "session.log").read_text(encoding="utf-8")
    assert "IMG_0009\\udcff.JPG arrived between shots" in log, log
