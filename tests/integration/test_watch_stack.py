"""Stacking a hot folder: real files written by threads or dropped in while `stacker watch` runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticScene
from stacker.cli import main
from stacker.errors import StackerError, UnreadableImageError
from stacker.io import read_image
from stacker.watch import (
    MergedFrame,
    NoFramesError,
    WatchStatus,
    _landing_note,
    watch_and_stack,
)
from tests.hotfolder import write_old, write_slowly
from tests.paths import ROOT

SPEC = SceneSpec(width=320, height=240, seed=7, depth_um=600.0, noise_sigma=1.0, jpeg_quality=92)


@pytest.fixture
def hot(tmp_path: Path) -> Path:
    """An empty folder to watch, ``tmp_path / "hot"``."""
    folder = tmp_path / "hot"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def stack_jpegs() -> list[bytes]:
    """Six 320x240 JPEG frames of one synthetic scene, focus stepping near to far."""
    scene = SyntheticScene(SPEC)
    frames = []
    for i in range(6):
        frame = scene.render(i * 120.0, pose=scene.random_pose(i), noise_seed=i, index=i)
        assert frame.encoded is not None
        frames.append(frame.encoded)
    return frames


@pytest.mark.slow
def test_frames_written_slowly_are_stacked_whole_existing_ones_first(
    hot: Path, stack_jpegs: list[bytes]
) -> None:
    # Already there at start, named so that plain string order would be wrong.
    for name, data in [("f10.jpg", stack_jpegs[2]), ("f2.jpg", stack_jpegs[1])]:
        write_old(hot / name, data)
    write_old(hot / "f1.jpg", stack_jpegs[0])
    out = hot / "stacked.jpg"  # inside the watched folder: must never be taken as a frame
    handed: list[tuple[Path, np.ndarray, bool]] = []
    statuses: list[WatchStatus] = []

    def on_frame(event: MergedFrame) -> None:
        handed.append((event.path, event.image.copy(), event.record.merged))
        if event.path.name == "g5.jpg":  # no frame waits behind the last: written before this
            assert out.exists() and event.record.merged
        assert event.stacker.preview() is not None

    def writer() -> None:
        for i in (3, 4, 5):
            write_slowly(hot / f"g{i}.jpg", stack_jpegs[i])

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    summary = watch_and_stack(
        hot,
        out,
        idle_timeout=1.5,
        settle=0.3,
        on_frame=on_frame,
        on_status=statuses.append,
    )
    t.join()
    names = [p.name for p, _, _ in handed]
    assert names == ["f1.jpg", "f2.jpg", "f10.jpg", "g3.jpg", "g4.jpg", "g5.jpg"]
    for path, image, _ in handed:  # what the stacker got is the whole file, never a prefix
        assert np.array_equal(image, read_image(path))
    assert all(merged for _, _, merged in handed)
    assert summary.finish == "idle"
    # A frame is written only if the next was not read yet when it merged, which depends on
    # how fast this machine stacks (test_a_write_waits_for_the_frames_already_waiting).
    assert summary.status.merged == 6 and 1 <= summary.status.writes <= 6
    assert summary.outputs[0] == out
    result = read_image(out)
    assert result.ndim == 3 and 200 <= result.shape[1] <= 320 and 150 <= result.shape[0] <= 240
    assert statuses[-1].state == "done"
    assert not list(hot.glob(".*"))  # no temporary output files left behind


@pytest.mark.slow
def test_every_n_and_depth_map(hot: Path, stack_jpegs: list[bytes]) -> None:
    write_old(hot / "s0.jpg", stack_jpegs[0])

    def writer() -> None:  # each lands once the frame before is stacked: none waits
        for i in (1, 2):
            time.sleep(0.6)
            write_slowly(hot / f"s{i}.jpg", stack_jpegs[i])

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    # Both inside the watched folder: the depth map's JPEG preview must not become a frame.
    out, depth = hot / "out.png", hot / "depth.png"
    summary = watch_and_stack(
        hot, out, depth_map=depth, every=2, idle_timeout=1.5, settle=0.2, crop=False
    )
    t.join()
    assert (hot / "depth-preview.jpg").exists()
    assert summary.status.merged == 3 and summary.status.seen == 3
    assert summary.status.writes == 2  # after frame 2, and the final one for frame 3
    assert read_image(out).shape[:2] == (240, 320)  # --no-crop keeps the full frame
    assert depth in summary.outputs and depth.exists()


@pytest.mark.slow
def test_a_write_waits_for_the_frames_already_waiting(
    hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames filled in beforehand are stacked one after another and the composite written
    once, when no frame waits any more, rather than after each (at 24 MP each write took as
    long as stacking a frame): the file holds every merged frame once the watch has caught
    up. Stacking is slowed here so that the reader has always read the next frame by then."""
    from stacker.stack import Stacker

    for i in range(4):
        write_old(hot / f"w{i}.jpg", stack_jpegs[i])
    add = Stacker.add

    def slow_add(self: Stacker, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)
        return add(self, *args, **kwargs)

    monkeypatch.setattr(Stacker, "add", slow_add)
    out = hot.parent / "w.png"
    seen: list[bool] = []
    summary = watch_and_stack(
        hot, out, idle_timeout=0.5, settle=0.2, on_frame=lambda e: seen.append(out.exists())
    )
    assert summary.status.merged == 4
    assert summary.status.writes == 1
    assert seen == [False, False, False, True]  # written before the last frame's callback
    reference = watch_and_stack(hot, hot.parent / "v.png", every=100, idle_timeout=0.5, settle=0.2)
    assert reference.status.writes == 1  # the final write alone: the same composite
    assert np.array_equal(read_image(out), read_image(hot.parent / "v.png"))


@pytest.mark.slow
def test_raw_jpeg_pair_is_stacked_once(tmp_path: Path, hot: Path, stack_jpegs: list[bytes]) -> None:
    warnings: list[str] = []

    def writer() -> None:
        for i in range(2):
            write_slowly(hot / f"IMG_{i}.CR2", b"fake raw, never decoded" * 300)
            write_slowly(hot / f"IMG_{i}.JPG", stack_jpegs[i])

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.5, settle=0.3, on_warning=warnings.append
    )
    t.join()
    assert warnings == []
    assert [r.name for r in summary.records] == ["IMG_0.JPG", "IMG_1.JPG"]
    assert summary.status.skipped == 2 and summary.status.seen == 2


def test_a_frame_under_a_second_name_is_stacked_once(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A hard link or a symbolic link to a frame in the folder is the same exposure: merged
    twice, it would count double in the merge's averages. Found at start or renamed in."""
    for i in range(3):
        write_old(hot / f"a{i}.jpg", stack_jpegs[i])
    os.link(hot / "a0.jpg", hot / "b_link.jpg")
    (hot / "c_symlink.jpg").symlink_to(hot / "a1.jpg")
    warnings: list[str] = []

    def writer() -> None:
        write_slowly(hot / "d3.jpg", stack_jpegs[3])
        os.link(hot / "d3.jpg", hot / ".d3.tmp")  # a tool that links, then renames into place
        os.rename(hot / ".d3.tmp", hot / "e_again.jpg")

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.5, settle=0.3, on_warning=warnings.append
    )
    t.join()
    assert [r.name for r in summary.records] == ["a0.jpg", "a1.jpg", "a2.jpg", "d3.jpg"]
    assert sorted(warnings) == [
        "b_link.jpg: the same file as a0.jpg, stacked once",
        "c_symlink.jpg: the same file as a1.jpg, stacked once",
        "e_again.jpg: the same file as d3.jpg, stacked once",
    ]
    assert summary.status.merged == 4


def _two_frames_and_a_link_out(tmp_path: Path, hot: Path, stack_jpegs: list[bytes]) -> Path:
    """a0.jpg and a1.jpg in ``hot``, and a2.jpg a link to a frame outside it; the folder that
    frame is in."""
    private = tmp_path / "private"
    private.mkdir()
    write_old(private / "secret.jpg", stack_jpegs[2])
    write_old(hot / "a0.jpg", stack_jpegs[0])
    write_old(hot / "a1.jpg", stack_jpegs[1])
    (hot / "a2.jpg").symlink_to(private / "secret.jpg")
    return private


def test_a_link_out_of_the_watched_folder_is_not_followed(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """Whoever may drop files in the folder could have the watch read, and its page show, any
    image this user can read."""
    private = _two_frames_and_a_link_out(tmp_path, hot, stack_jpegs)
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert [r.name for r in summary.records] == ["a0.jpg", "a1.jpg"]
    assert warnings == [
        f"a2.jpg: a link to {private / 'secret.jpg'}, outside the watched folder; not stacked "
        "(copy the file in to stack it)"
    ]


def test_files_left_out_on_purpose_are_not_named_as_left_behind_at_a_stop(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A link out of the folder and a second name of a frame are left out, and said so. A stop
    then named them too, as frames not stacked yet, with a `stacker stack` that stacks them
    (the outside file the watch had refused to read among them)."""
    _two_frames_and_a_link_out(tmp_path, hot, stack_jpegs)
    os.link(hot / "a0.jpg", hot / "b_again.jpg")
    warnings: list[str] = []
    stop = threading.Event()

    def stop_once_told(message: str) -> None:
        warnings.append(message)
        if len(warnings) == 2:  # both left out: nothing is left to stack
            stop.set()

    summary = watch_and_stack(hot, tmp_path / "out.jpg", settle=0.2, stop=stop,
                              on_warning=stop_once_told)  # fmt: skip
    assert [r.name for r in summary.records] == ["a0.jpg", "a1.jpg"]
    assert len(warnings) == 2, warnings  # the two left out, no "not stacked when ... stopped"


@pytest.mark.slow
def test_a_second_name_left_out_and_renamed_is_still_left_out_at_a_stop(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A second name of a frame, left out, then renamed within the folder, became a frame
    taken under its new name, and a stop named it as left behind."""
    write_old(hot / "a0.jpg", stack_jpegs[0])
    write_old(hot / "a1.jpg", stack_jpegs[1])
    os.link(hot / "a0.jpg", hot / "b_again.jpg")
    warnings: list[str] = []
    stop = threading.Event()

    def rename_once_told(message: str) -> None:
        warnings.append(message)
        if "stacked once" in message:
            os.rename(hot / "b_again.jpg", hot / "c_again.jpg")
            threading.Timer(1.5, stop.set).start()

    summary = watch_and_stack(hot, tmp_path / "out.jpg", settle=0.2, stop=stop,
                              on_warning=rename_once_told)  # fmt: skip
    assert [r.name for r in summary.records] == ["a0.jpg", "a1.jpg"]
    assert warnings == ["b_again.jpg: the same file as a0.jpg, stacked once"]


def _after_taking(monkeypatch: pytest.MonkeyPatch, name: str, act: Callable[[], Any]) -> None:
    """Run ``act`` right after the watch takes the file ``name``, before it reads it: another
    program's timing, made certain."""
    from stacker.hotfolder import HotFolder

    take = HotFolder._take

    def take_then_act(self: HotFolder, entry: Any) -> bool:
        taken = take(self, entry)
        if entry.path.name == name:
            act()
        return taken

    monkeypatch.setattr(HotFolder, "_take", take_then_act)


def test_a_frame_swapped_for_a_link_out_after_it_was_checked_is_not_read(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link check and the read are one: a frame replaced by a link out of the folder just
    after it was taken (the attacker's timing, made certain here) is not decoded."""
    private = tmp_path / "private"
    private.mkdir()
    write_old(private / "secret.jpg", stack_jpegs[2])
    for i in range(3):
        write_old(hot / f"a{i}.jpg", stack_jpegs[i])

    def swap() -> None:
        (hot / "a2.jpg").unlink()
        (hot / "a2.jpg").symlink_to(private / "secret.jpg")

    _after_taking(monkeypatch, "a2.jpg", swap)
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert [r.name for r in summary.records] == ["a0.jpg", "a1.jpg"]
    assert warnings == [f"a2.jpg: became a link to {private / 'secret.jpg'}; not stacked"]


def test_a_frame_an_importer_moves_out_while_it_is_read_is_stacked(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightroom's Auto Import moves each file out of its watched folder as soon as it sees it;
    one moved just after the watch opened it (made certain here) is read whole through the
    handle held open, and stacked, not dropped as if it were still being written."""
    from stacker.io import OrientedReader

    imported = tmp_path / "imported"
    imported.mkdir()
    for i in range(3):
        write_old(hot / f"a{i}.jpg", stack_jpegs[i])
    read = OrientedReader.read

    def moved_out_then_read(self: OrientedReader, path: Path, *args: Any, **kwargs: Any) -> Any:
        name = Path(os.path.realpath(path)).name
        if name == "a1.jpg" and (hot / name).exists():
            (hot / name).rename(imported / name)
        return read(self, path, *args, **kwargs)

    monkeypatch.setattr(OrientedReader, "read", moved_out_then_read)
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert (imported / "a1.jpg").is_file()
    assert [r.name for r in summary.records] == ["a0.jpg", "a1.jpg", "a2.jpg"]
    assert warnings == []


def test_a_frame_an_importer_moves_out_before_it_is_read_is_named(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame moved out of the folder after it was complete but before it was opened (an
    importer quicker than the watch) cannot be stacked; the watch says so instead of silently
    stacking one frame fewer."""
    imported = tmp_path / "imported"
    imported.mkdir()
    for i in range(3):
        write_old(hot / f"a{i}.jpg", stack_jpegs[i])
    _after_taking(monkeypatch, "a1.jpg", lambda: (hot / "a1.jpg").rename(imported / "a1.jpg"))
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert [r.name for r in summary.records] == ["a0.jpg", "a2.jpg"]
    assert len(warnings) == 1
    assert warnings[0].startswith("a1.jpg: moved out of the watched folder or deleted before")


def test_a_file_still_empty_when_the_watch_ends_is_named(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """An empty file is a placeholder, never a frame; one that stayed empty (an upload that
    failed) was left out without a word, the summary counting one frame fewer than shot."""
    write_old(hot / "a0.jpg", stack_jpegs[0])
    write_old(hot / "a1.jpg", b"")
    write_old(hot / "a2.jpg", stack_jpegs[2])
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=0.5, settle=0.2, on_warning=warnings.append
    )
    assert [r.name for r in summary.records] == ["a0.jpg", "a2.jpg"]
    said = [
        "a1.jpg: still empty when the watch ended; not stacked (copy it in again, then stack "
        "the folder)"
    ]
    assert warnings == said
    # Stopped (Ctrl-C) rather than idle: the watch ends at once after the frame it merges,
    # and the complete frames it did not come to are named too: the summary said "1 of 1".
    stop, warnings[:] = threading.Event(), []
    summary = watch_and_stack(
        hot, tmp_path / "again.jpg", settle=0.2, stop=stop,
        on_frame=lambda merged: stop.set(), on_warning=warnings.append,
    )  # fmt: skip
    assert [r.name for r in summary.records] == ["a0.jpg"]
    assert warnings == [
        *said,
        f"1 frame in {hot} not stacked when the watch stopped (a2.jpg): stacker stack {hot} "
        f"-o {tmp_path / 'again.jpg'} stacks every frame there",
    ]


def test_a_restarted_watch_removes_what_a_killed_one_left_half_written(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """kill -9 while the composite is rewritten leaves its hidden temporary, as large as the
    composite; one that another process may still be writing (touched in the last minute) and
    files that are not ours stay."""
    out = tmp_path / "live.tif"
    stale, fresh = tmp_path / ".live.tif.ab12cd34.tmp", tmp_path / ".live.tif.ef56gh78.tmp"
    theirs = tmp_path / ".notes.txt.ab12cd34.tmp"
    for p in (stale, fresh, theirs):
        p.write_bytes(b"\0" * 4096)
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(theirs, (hour_ago, hour_ago))
    for i in range(2):
        write_old(hot / f"a{i}.jpg", stack_jpegs[i])
    watch_and_stack(hot, out, idle_timeout=0.5, settle=0.2)
    assert not stale.exists() and fresh.exists() and theirs.exists() and out.is_file()


@pytest.mark.slow
def test_time_spent_merging_does_not_count_as_idle(
    hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge longer than ``--idle-timeout`` (a slow machine, large frames): the reader,
    looking for the next frame meanwhile, counted the merge as idle time, and the watch ended
    right after the first frame while the camera was still shooting."""
    import stacker.stack

    add = stacker.stack.Stacker.add

    def slow_add(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(1.2)
        return add(self, *args, **kwargs)

    monkeypatch.setattr(stacker.stack.Stacker, "add", slow_add)
    write_old(hot / "f1.jpg", stack_jpegs[0])

    def next_shot(event: MergedFrame) -> None:
        if event.path.name == "f1.jpg":  # the camera's next frame, soon after the merge
            timer = threading.Timer(0.1, write_old, (hot / "f2.jpg", stack_jpegs[1]))
            timer.start()

    summary = watch_and_stack(
        hot, hot.parent / "out.jpg", idle_timeout=0.8, settle=0.1, on_frame=next_shot
    )
    assert summary.finish == "idle" and summary.status.merged == 2


@pytest.mark.slow
def test_idle_without_frames_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    with pytest.raises(NoFramesError, match="no frame could be merged"):
        watch_and_stack(tmp_path, out, idle_timeout=0.3)
    assert not out.exists()


def test_frames_written_into_a_subfolder_are_named_when_nothing_merged(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """darktable's tethering puts each session in a film roll folder of its own (its manual,
    tethering panels: "A new session equals a new film roll"), named by its import pattern. A
    photographer who watches the folder above sees nothing stacked: the error says where the
    frames went."""
    session = hot / "20261130_beetle"
    session.mkdir()
    write_old(session / "IMG_0001.jpg", stack_jpegs[0])  # an earlier session's frame
    stop = threading.Event()

    def darktable() -> None:
        time.sleep(0.3)
        for i, data in enumerate(stack_jpegs[1:3]):
            write_slowly(session / f"IMG_{i + 2:04d}.jpg", data)
        time.sleep(0.3)
        stop.set()

    threading.Thread(target=darktable, daemon=True).start()
    with pytest.raises(NoFramesError) as info:
        watch_and_stack(hot, tmp_path / "stacked.tif", settle=0.3, stop=stop)
    message = str(info.value)
    assert message.endswith(
        f"; 2 images were written into {session} meanwhile: subfolders are not watched, "
        "watch that folder instead"
    )
    assert "\n" not in message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("made_since", "slow_stacking", "camera_behind"),
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True)],
)
def test_frames_landing_in_a_subfolder_are_named_while_the_watch_waits(
    tmp_path: Path,
    hot: Path,
    stack_jpegs: list[bytes],
    made_since: bool,
    slow_stacking: bool,
    camera_behind: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Capture One writes a session's frames into its ``Capture`` folder, EOS Utility and
    darktable into a folder per day or session made as the session starts (the files' times
    may be the camera's). A photographer who watches the folder above waits for a stack that
    never grows: the watch says at once, once, where the frames land and what to run (an
    output of its own: the watch's, written then or later, would be replaced). Its own
    composite, written into a subfolder, is no such frame. Stacking slowed, as on a loaded
    machine, the note comes before the watch's first write, and names the same file. Frames
    dated by a camera whose clock is an hour behind (libgphoto2 dates a download by the
    camera's clock) are new frames all the same."""
    if slow_stacking:
        from stacker.stack import Stacker

        add = Stacker.add

        def slow_add(self: Stacker, *args: Any, **kwargs: Any) -> Any:
            time.sleep(0.8)
            return add(self, *args, **kwargs)

        monkeypatch.setattr(Stacker, "add", slow_add)
    for i in range(2):
        write_old(hot / f"top{i}.jpg", stack_jpegs[i])
    out = hot / "results" / "stacked.tif"
    out.parent.mkdir()
    capture = hot / "Capture"
    if not made_since:
        capture.mkdir()
        write_old(capture / "IMG_0001.jpg", stack_jpegs[0])  # shot before the watch began
    warnings: list[str] = []
    stop = threading.Event()

    def capture_one() -> None:
        time.sleep(0.5)  # the two frames at the top are being stacked by then
        capture.mkdir(exist_ok=True)
        for i in (2, 3):
            if made_since:
                write_old(capture / f"IMG_{i:04d}.jpg", stack_jpegs[i])
            else:
                write_slowly(capture / f"IMG_{i:04d}.jpg", stack_jpegs[i])
            if camera_behind:
                behind = time.time() - 3600
                os.utime(capture / f"IMG_{i:04d}.jpg", (behind, behind))
        time.sleep(2.5)  # the next look at the subfolders says nothing new
        stop.set()

    def warn(message: str) -> None:
        warnings.append(message)
        assert not stop.is_set()  # while the watch waits, not as it ends

    threading.Thread(target=capture_one, daemon=True).start()
    summary = watch_and_stack(hot, out, settle=0.2, stop=stop, on_warning=warn)
    assert summary.status.merged == 2 and out.is_file()
    assert warnings == [
        f"frames are landing in {capture}, a subfolder, which is not watched: to stack them, stop "
        f"(Ctrl-C) and run stacker watch {capture} -o {out.with_name('stacked-Capture.tif')}"
    ]


@pytest.mark.parametrize(
    ("stacking", "written", "told"),
    [(False, False, "stacked.tif"), (True, False, "stacked-Capture.tif"),
     (False, True, "stacked-Capture.tif")],
)  # fmt: skip
def test_the_command_told_for_a_subfolder_never_replaces_this_watchs_result(
    tmp_path: Path, stacking: bool, written: bool, told: str
) -> None:
    """Told while this watch has frames to stack but has not written its result yet (it writes
    when it ends, or once the stack settles), the same ``-o`` would replace that result: on a
    loaded machine the note came before the first write, and named it."""
    out = tmp_path / "stacked.tif"
    if written:
        out.write_bytes(b"a composite")
    note = _landing_note(tmp_path / "Capture", out, stacking)
    assert note.endswith(f"-o {tmp_path / told}")


@pytest.mark.slow
def test_strict_stops_at_an_unreadable_file_keeping_the_merged_result(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    write_old(hot / "a1.jpg", stack_jpegs[0])
    write_old(hot / "a2.jpg", b"\xff\xd8 not really a jpeg" * 50)
    out = tmp_path / "out.jpg"
    with pytest.raises(UnreadableImageError, match=r"a2\.jpg"):
        watch_and_stack(hot, out, idle_timeout=5, settle=0.2, strict=True, every=5)
    assert read_image(out).ndim == 3  # a1 was merged and written before the strict stop


def test_an_unreadable_last_file_is_told_at_once_not_when_the_watch_ends(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """An unreadable file was told (and --strict stopped) only when the next frame landed, or
    when the watch ended: with none coming, the photographer saw 'watching' for as long."""
    write_old(hot / "a1.jpg", stack_jpegs[0])
    write_old(hot / "a2.jpg", b"\xff\xd8 not really a jpeg" * 50)
    stop = threading.Event()
    threading.Timer(12.0, stop.set).start()  # the watch's end, if nothing told before
    start = time.monotonic()
    try:
        with pytest.raises(UnreadableImageError, match=r"a2\.jpg"):
            watch_and_stack(hot, tmp_path / "out.jpg", settle=0.2, strict=True, stop=stop)
        assert not stop.is_set(), "told only as the watch ended"
        assert time.monotonic() - start < 12.0
    finally:
        stop.set()


@pytest.mark.slow
def test_a_file_given_up_on_and_finished_later_counts_once(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A writer that stalled for seconds mid-file got the file reported unreadable ('skipped
    ... truncated'); finished, it was stacked, and the count said 1 unreadable of 2 seen."""
    data = stack_jpegs[0]
    warnings: list[str] = []

    def write_with_a_long_stall() -> None:
        with (hot / "f_001.jpg").open("wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(8.0)
            fh.write(data[len(data) // 2 :])

    writer = threading.Thread(target=write_with_a_long_stall, daemon=True)
    writer.start()
    summary = watch_and_stack(hot, tmp_path / "out.jpg", idle_timeout=12, settle=0.2,
                              on_warning=warnings.append)  # fmt: skip
    writer.join()
    status = summary.status
    assert (status.merged, status.seen, status.unreadable) == (1, 1, 0), warnings
    assert any("complete now after all" in w for w in warnings), warnings


# -- the command line, as a separate process -----------------------------------------------------


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_watch_outlives_its_test() -> Iterator[None]:
    """A watch that a failing test left running would watch on beside the next tests."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_watch(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacker.cli", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(proc)
    return proc


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_cli_stacks_frames_dropped_in_while_it_runs(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    out = tmp_path / "out.jpg"
    proc = run_watch(str(hot), "-o", str(out), "--idle-timeout", "2", "--settle", "0.3")
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("watching ")  # the folder is empty and watched
    for i in range(3):
        time.sleep(0.3)
        write_slowly(hot / f"IMG_{i + 1}.jpg", stack_jpegs[i])
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stacked 3 of 3 frames" in stdout
    assert read_image(out).ndim == 3
    # No live display on a pipe (a service's journal): a line per frame instead.
    merged = [line.partition(":")[0] for line in stderr.splitlines() if ": merged, " in line]
    assert merged == ["IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg"], stderr


@pytest.mark.slow
def test_cli_ctrl_c_writes_the_result_and_exits_0(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    out = tmp_path / "out.tif"
    for i in range(2):
        write_old(hot / f"x{i}.jpg", stack_jpegs[i])
    proc = run_watch(str(hot), "-o", str(out), "--settle", "200ms")  # as rig writes durations
    wait_for(out)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped" in stdout
    assert read_image(out).shape[2] == 3


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_cli_sigterm_or_hangup_before_any_frame_exits_130(tmp_path: Path, signum: int) -> None:
    """SIGHUP (the terminal closed) stops the watch as SIGTERM does; it ended it unsaid."""
    proc = run_watch(str(tmp_path), "-o", str(tmp_path / "out.tif"))
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("watching ")  # nothing to stack, ever
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.slow
def test_cli_missing_folder_is_one_line(tmp_path: Path) -> None:
    proc = run_watch(str(tmp_path / "absent"), "-o", str(tmp_path / "o.tif"))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert (
        stderr.strip()
        == f"stacker: error: {tmp_path / 'absent'}: no such folder; create it or check the path"
    )


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: [str(d), "-o", str(d / "nodir" / "o.tif")], "does not exist"),
        (lambda d: [str(d), "-o", str(d / "o.gif")], "unknown output format"),
        (lambda d: [str(d), "-o", str(d / "o.tif"), "--method", "magic"], "magic"),
        (lambda d: [str(d), "-o", str(d / "o.tif"), "--every", "0"], "--every 0"),
        (lambda d: [str(d), "-o", str(d / "o.jpg"), "--jpeg-quality", "0"], "JPEG quality 0"),
        (lambda d: [str(d), "-o", str(d / "o.jpg"), "--prefer", "tiff"], "--prefer"),
        (lambda d: [str(d), "-o", str(d / "o.tif"), "--order", "up"], "--order 'up'"),
        # nan and inf were taken: files already in the folder were never stacked, and a watch
        # never went idle. Refused before the folder is looked at (a missing one here).
        (lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--settle", "nan"], "--settle nan"),
        (lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--settle", "inf"], "--settle inf"),
        (lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--settle", "0"], "--settle 0"),
        # Named as typed: "--settle 0.0" and "--idle-timeout 0.0" for 0ms and 0s.
        (
            lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--settle", "0ms"],
            "--settle 0ms: give a positive duration, e.g. 2s",
        ),
        (
            lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--idle-timeout", "0s"],
            "--idle-timeout 0s: give a positive duration, e.g. 2s",
        ),
        (
            lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--settle", "0,5"],
            "--settle 0,5: '0,5': write decimals with a point, e.g. 0.5",
        ),
        (
            lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--idle-timeout", "soon"],
            "--idle-timeout soon: cannot read 'soon' as a duration",
        ),
        (
            lambda d: [str(d / "no"), "-o", str(d / "o.tif"), "--idle-timeout", "nan"],
            "--idle-timeout nan",
        ),
        (lambda d: [str(d), "-o", str(d / "o.tif"), "--depth-map", str(d)], "depth.png"),
        # 70000 was taken modulo 65536: the page was served on port 4464.
        (lambda d: [str(d), "-o", str(d / "o.tif"), "--preview", "--port", "70000"], "70000"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path,
    make_args,  # type: ignore[no-untyped-def]
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process through the console-script entry point (the subprocess test above covers
    # a real process); saves a Python start-up per case.
    monkeypatch.setattr(sys, "argv", ["stacker", "watch", *make_args(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.slow
def test_output_folder_removed_mid_watch_is_a_one_line_error(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()

    def meddle() -> None:
        time.sleep(0.3)
        outdir.rmdir()  # e.g. a card or share unmounted after the watch started
        write_slowly(hot / "a.jpg", stack_jpegs[0])

    t = threading.Thread(target=meddle, daemon=True)
    t.start()
    with pytest.raises(StackerError, match="cannot write the result"):
        watch_and_stack(hot, outdir / "o.jpg", idle_timeout=3, settle=0.2)
    t.join()


def test_a_frame_landing_under_the_output_name_is_never_written_over(
    hot: Path, stack_jpegs: list[bytes]
) -> None:
    """The composite, written into the watched folder, was checked against its frames only at
    start: a frame another program wrote under its name later was replaced by the next write."""
    for i in range(3):
        write_old(hot / f"a{i}.jpg", stack_jpegs[i])
    out = hot / "b.jpg"
    warnings: list[str] = []

    def on_frame(event: MergedFrame) -> None:
        if event.path.name == "a0.jpg":  # the composite is on disk: a frame lands on its name
            out.write_bytes(stack_jpegs[3])

    with pytest.raises(StackerError, match=r"b\.jpg: cannot write the result \(a frame"):
        watch_and_stack(hot, out, idle_timeout=0.5, settle=0.2, on_frame=on_frame,
                        on_warning=warnings.append)  # fmt: skip
    assert out.read_bytes() == stack_jpegs[3]
    assert len(warnings) == 1 and "merging goes on" in warnings[0], warnings


@pytest.mark.slow
def test_numbered_reference_defers_writing_until_that_frame_arrived(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    for i in range(3):
        write_old(hot / f"r{i}.jpg", stack_jpegs[i])
    writes: list[int] = []

    def on_frame(event: MergedFrame) -> None:
        writes.append(event.stacker.frames_added if (tmp_path / "o.png").exists() else -1)
        if event.stacker.frames_added == 3:  # lands after: frame 3 has nothing waiting behind
            write_old(hot / "r3.jpg", stack_jpegs[3])

    summary = watch_and_stack(
        hot, tmp_path / "o.png", reference=3, idle_timeout=0.5, settle=0.2, on_frame=on_frame
    )
    assert writes == [-1, -1, 3, 4]  # first written once frame 3 was merged
    assert summary.status.merged == 4
    assert read_image(tmp_path / "o.png").ndim == 3
    # a watch that ends before the reference frame came said that frame "was not merged"
    with pytest.raises(StackerError, match=r"--reference 8: the watch ended after 4 frames, bef"):
        watch_and_stack(hot, tmp_path / "p.png", reference=8, idle_timeout=0.5, settle=0.2)
    assert not (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_frame_that_does_not_fit_is_rejected_or_fatal_with_strict(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    write_old(hot / "k1.jpg", stack_jpegs[0])
    small = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    write_old(hot / "k2.jpg", small)  # another camera's size: cannot join this stack
    write_old(hot / "k3.jpg", stack_jpegs[1])
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "o.jpg", idle_timeout=0.5, settle=0.2, on_warning=warnings.append
    )
    assert (summary.status.merged, summary.status.rejected, summary.status.seen) == (2, 1, 3)
    assert len(warnings) == 1 and "k2.jpg" in warnings[0]

    with pytest.raises(StackerError, match=r"k2\.jpg.*--strict"):
        watch_and_stack(hot, tmp_path / "s.jpg", idle_timeout=0.5, settle=0.2, strict=True)
    assert read_image(tmp_path / "s.jpg").ndim == 3  # k1, merged before the stop, is kept


def test_watch_takes_the_stacking_options_of_stack_and_batch(
    hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``stacker watch`` had no --interpolation (``stack``, ``batch`` and every ``rig`` session
    have it), and said "method 'foo' is not known" where they say "--method 'foo'"."""
    from stacker.stack import INTERPOLATIONS, Stacker

    made: list[Stacker] = []
    real_init = Stacker.__init__

    def recording_init(self: Stacker, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Stacker, "__init__", recording_init)
    for i in range(2):
        write_old(hot / f"f{i}.jpg", stack_jpegs[i])
    out = hot.parent / "out.tif"
    args = ["--idle-timeout", "0.3", "--settle", "0.1", "--interpolation", "cubic"]
    monkeypatch.setattr(sys, "argv", ["stacker", "watch", str(hot), "-o", str(out), *args])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code in (None, 0) and out.is_file()
    assert [s.interpolation for s in made] == [INTERPOLATIONS["cubic"]]
    capsys.readouterr()
    monkeypatch.setattr(
        sys, "argv", ["stacker", "watch", str(hot), "-o", str(out), "--method", "x"]
    )
    with pytest.raises(SystemExit) as refused:
        main()
    assert refused.value.code == 2
    assert "stacker: error: --method 'x': use pyramid, depthmap" in capsys.readouterr().err


@pytest.mark.slow
def test_poll_watches_the_folder_by_polling(
    hot: Path, stack_jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The README's ``--poll`` (for a folder whose writes raise no file events) was given on no
    test's command line: it polls, and a frame written while it watches is stacked."""
    from stacker.hotfolder import HotFolder

    observers: list[str] = []
    real = HotFolder._make_observer

    def recording(self: HotFolder) -> Any:
        observer = real(self)
        observers.append(type(observer).__name__)
        return observer

    monkeypatch.setattr(HotFolder, "_make_observer", recording)
    write_old(hot / "f0.jpg", stack_jpegs[0])
    timer = threading.Timer(0.5, lambda: write_old(hot / "f1.jpg", stack_jpegs[1]))
    out = hot.parent / "out.tif"
    args = ["--idle-timeout", "2s", "--settle", "0.1", "--poll"]
    monkeypatch.setattr(sys, "argv", ["stacker", "watch", str(hot), "-o", str(out), *args])
    timer.start()
    try:
        with pytest.raises(SystemExit) as ended:
            main()
    finally:
        timer.join()
    assert ended.value.code in (None, 0)
    assert observers == ["PollingObserver"]
    assert "stacked 2 of 2 frames" in capsys.readouterr().out
    assert read_image(out).shape[2] == 3


@pytest.mark.slow
def test_a_file_larger_than_any_frame_is_not_read(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """Whoever may drop files into the folder could make the watch read gigabytes into memory at
    each of its looks: a file larger than any frame can be is reported unread."""
    import tracemalloc

    write_old(hot / "a1.jpg", stack_jpegs[0])
    with (hot / "huge.jpg").open("wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")  # a JPEG's start, then 3 GiB of nothing (sparse)
        fh.truncate(3 << 30)
    warnings: list[str] = []
    tracemalloc.start()
    try:
        summary = watch_and_stack(
            hot, tmp_path / "out.tif", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (summary.status.merged, summary.status.unreadable) == (1, 1)
    assert peak < 256 << 20
    assert warnings == [
        f"skipped {hot / 'huge.jpg'}: 3.2 GB, larger than any frame can be (2.0 GB); not read"
    ]


def _page_rows(feed: Any) -> list[dict[str, Any]]:
    """The rows of a watch's live page (a ``WatchPreview``), in frame order."""
    return sorted(feed.hub.snapshot().frames, key=lambda row: row["index"])


def test_a_bad_first_frame_is_left_out_and_the_stack_starts_again_without_it(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A flash that did not fire on the first shot: every later frame was kept out against
    it, and the watch only said to move it away and watch again. The three frames after it
    align with each other, so the stack now starts again from them (read again from the
    folder), without it, as ``stacker stack`` does; the page says the first frame was left
    out and shows the new stack under the frames' own numbers."""
    from stacker.preview.hub import PreviewHub
    from stacker.preview.watchfeed import WatchPreview

    first = cv2.imdecode(np.frombuffer(stack_jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    dark = cv2.imencode(".jpg", (first * 0.03).astype(np.uint8))[1].tobytes()
    for i, data in enumerate([dark, *stack_jpegs[1:4]]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    feed = WatchPreview(PreviewHub(title="hot"))
    out = tmp_path / "out.jpg"
    summary = watch_and_stack(
        hot,
        out,
        idle_timeout=1.0,
        settle=0.2,
        on_warning=warnings.append,
        on_frame=feed.on_frame,
        on_status=feed.on_status,
    )
    assert (summary.status.seen, summary.status.merged, summary.status.rejected) == (4, 3, 1)
    names = ["IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg"]
    assert [r.name for r in summary.records if r.merged] == names
    assert len(warnings) == 4
    assert [w.split(":")[0] for w in warnings[:3]] == [f"rejected {name}" for name in names]
    assert warnings[3] == (
        f"{hot / 'IMG_0.jpg'}: left out: none of the 3 frames after it aligns with it (a dark, "
        "blown or stray first frame?); stacking again without it"
    )
    composite = cv2.imread(str(out))
    assert composite.mean() > 10 * (first * 0.03).mean()  # the dark frame is not in it
    # Each frame keeps its number: the new stack's rows replace the old ones' "kept out".
    rows = _page_rows(feed)
    assert [(r["index"], r["name"], r["merged"]) for r in rows] == [
        (0, "IMG_0.jpg", False),
        (1, "IMG_1.jpg", True),
        (2, "IMG_2.jpg", True),
        (3, "IMG_3.jpg", True),
    ]
    assert rows[0]["reason"] == warnings[3].split(": ", 1)[1]
    p = feed.hub.progress  # the first frame counts as kept out on the page too
    assert (p.captured, p.stacked, p.merged, p.rejected) == (4, 4, 3, 1)


def test_a_frame_gone_before_the_stack_starts_again_keeps_the_numbers_of_the_frames_after(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A frame kept out against a bad first frame, deleted before the stack starts again, is
    not read again; the frames after it keep their own numbers on the page. Numbered by the
    new stacker alone, the next frame took the row of the one that was gone."""
    from stacker.preview.hub import PreviewHub
    from stacker.preview.watchfeed import WatchPreview

    first = cv2.imdecode(np.frombuffer(stack_jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    dark = cv2.imencode(".jpg", (first * 0.03).astype(np.uint8))[1].tobytes()
    for i, data in enumerate([dark, *stack_jpegs[1:4]]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if message.startswith("rejected IMG_3.jpg"):  # just before the stack starts again
            (hot / "IMG_1.jpg").unlink()

    feed = WatchPreview(PreviewHub(title="hot"))
    summary = watch_and_stack(
        hot,
        tmp_path / "out.jpg",
        idle_timeout=1.0,
        settle=0.2,
        on_warning=warn,
        on_frame=feed.on_frame,
        on_status=feed.on_status,
    )
    assert [r.name for r in summary.records if r.merged] == ["IMG_2.jpg", "IMG_3.jpg"]
    assert any(w.startswith("rejected IMG_1.jpg: cannot be read again") for w in warnings)
    rows = _page_rows(feed)
    assert [(r["index"], r["name"], r["merged"]) for r in rows] == [
        (0, "IMG_0.jpg", False),
        (1, "IMG_1.jpg", False),
        (2, "IMG_2.jpg", True),
        (3, "IMG_3.jpg", True),
    ]
    assert (summary.status.seen, summary.status.merged, summary.status.rejected) == (4, 2, 2)
    p = feed.hub.progress
    assert (p.captured, p.stacked, p.merged, p.rejected) == (4, 4, 2, 2)


def test_a_stack_started_again_takes_its_new_first_frame_s_orientation(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A stray first shot held upright (EXIF orientation 6) turned every later frame to fit
    it, and they were read again turned the same way when the stack started without it: the
    composite came out a quarter turn from its frames, where ``stacker stack`` leaves that
    shot out and keeps them as they are. The frame read ahead meanwhile is turned alike."""
    from tests.exif import tag_jpeg

    first = cv2.imdecode(np.frombuffer(stack_jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    dark = cv2.imencode(".jpg", (first * 0.03).astype(np.uint8))[1].tobytes()
    for i, data in enumerate([tag_jpeg(dark, 6), *stack_jpegs[1:5]]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    out = tmp_path / "out.jpg"
    summary = watch_and_stack(
        hot, out, idle_timeout=1.0, settle=0.2, on_warning=warnings.append, crop=False
    )
    names = ["IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg", "IMG_4.jpg"]
    assert [r.name for r in summary.records if r.merged] == names
    assert cv2.imread(str(out)).shape[:2] == first.shape[:2]  # 240x320, as its frames


def test_a_flash_that_fails_twice_after_a_good_first_frame_leaves_the_first_frame_in(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """Two dark frames in a row after a good first one align with each other: taken as the
    sign of a bad first frame, the stack would start again from them and keep every good frame
    after out. The frame after them merges with the first again, and nothing starts again."""
    frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in stack_jpegs]
    dark = [cv2.imencode(".jpg", (f * 0.03).astype(np.uint8))[1].tobytes() for f in frames[1:3]]
    for i, data in enumerate([stack_jpegs[0], *dark, *stack_jpegs[3:5]]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert [r.merged for r in summary.records] == [True, False, False, True, True]
    assert not [w for w in warnings if "left out" in w or "every frame since" in w]


def test_three_flash_misfires_after_a_good_first_frame_leave_the_first_frame_in(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """Three dark frames in a row align with each other as well as two do: the watch took the
    good first frame for the bad one, started again from the misfires and kept every good
    frame after them out (3 of 6 stacked, the composite a quarter as bright). Frames far
    darker than a first frame that is not blown out are misfires: the stack goes on."""
    frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in stack_jpegs]
    dark = [cv2.imencode(".jpg", (f * 0.25).astype(np.uint8))[1].tobytes() for f in frames[1:4]]
    for i, data in enumerate([stack_jpegs[0], *dark, *stack_jpegs[4:6]]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    out = tmp_path / "out.jpg"
    summary = watch_and_stack(hot, out, idle_timeout=1.0, settle=0.2, on_warning=warnings.append)
    assert [r.merged for r in summary.records] == [True, False, False, False, True, True]
    assert not [w for w in warnings if "left out:" in w or "every frame since" in w]
    assert (
        "the 3 frames after IMG_0.jpg are far darker than it (a flash that did not fire or "
        "recycle?): they are left out and the stack goes on from IMG_0.jpg"
    ) in warnings
    assert cv2.imread(str(out)).mean() > 0.8 * frames[0].mean()


def test_a_first_frame_of_another_size_is_left_out_and_the_stack_starts_again_without_it(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A portrait test shot left at the front of the folder: every later frame was refused
    for its size, and the watch wrote that one shot as the composite, exit 0. It is now left
    out as a bad first frame is."""
    first = cv2.imdecode(np.frombuffer(stack_jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    upright = cv2.imencode(".jpg", cv2.rotate(first, cv2.ROTATE_90_CLOCKWISE))[1].tobytes()
    for i, data in enumerate([upright, *stack_jpegs[1:5]]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    out = tmp_path / "out.jpg"
    summary = watch_and_stack(
        hot, out, idle_timeout=1.0, settle=0.2, on_warning=warnings.append, crop=False
    )
    assert [r.name for r in summary.records if r.merged] == [f"IMG_{i}.jpg" for i in range(1, 5)]
    assert any("IMG_0.jpg: left out: none of the 3 frames after it" in w for w in warnings)
    assert cv2.imread(str(out)).shape[:2] == first.shape[:2]


def test_a_stray_first_frame_brighter_than_the_stack_is_left_out_all_the_same(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A test shot three times as bright (wide open, a lamp on), not blown out: the frames
    after it were taken for flash misfires, and the watch stacked the test shot alone. Kept
    out three more times (or to the end of the watch), the first frame is left out as
    ``stacker stack`` leaves it out."""
    frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in stack_jpegs]
    dimmer = [cv2.imencode(".jpg", (f * 0.33).astype(np.uint8))[1].tobytes() for f in frames[1:]]
    for i, data in enumerate([stack_jpegs[0], *dimmer]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert [r.name for r in summary.records if r.merged] == [f"IMG_{i}.jpg" for i in range(1, 6)]
    assert any("IMG_0.jpg: left out: none of the 5 frames after it" in w for w in warnings)


def test_a_bright_first_frame_of_another_size_is_no_sign_of_misfires(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """A portrait test shot more than twice as bright as the stack: the frames refused for
    their size were compared by brightness too, taken for misfires, and the stack stayed on
    the one odd shot. And the rows of the page, counted as if the refused frames had records
    in the first stack, went below zero and over the first frame's row."""
    frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in stack_jpegs]
    upright = cv2.imencode(".jpg", cv2.rotate(frames[0], cv2.ROTATE_90_CLOCKWISE))[1].tobytes()
    dimmer = [cv2.imencode(".jpg", (f * 0.45).astype(np.uint8))[1].tobytes() for f in frames[1:5]]
    for i, data in enumerate([upright, *dimmer]):
        write_old(hot / f"IMG_{i}.jpg", data)
    rows: list[tuple[str, int]] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, crop=False,
        on_frame=lambda f: rows.append((f.path.name, f.index)),
    )  # fmt: skip
    assert [r.name for r in summary.records if r.merged] == [f"IMG_{i}.jpg" for i in range(1, 5)]
    assert rows[-4:] == [(f"IMG_{i}.jpg", i) for i in range(1, 5)]
    assert summary.records[-1].index == 3 and rows[0] == ("IMG_0.jpg", 0)


def test_a_first_frame_is_kept_when_the_frames_after_it_do_not_align_with_each_other(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """Stray shots after a good first frame are not a reason to drop it: the stack keeps it,
    and the photographer is told once what to do, while the shoot can still be fixed."""
    rng = np.random.default_rng(3)
    noise = [cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), np.uint8))[1].tobytes()
             for _ in range(3)]  # fmt: skip
    for i, data in enumerate([stack_jpegs[0], *noise]):
        write_old(hot / f"IMG_{i}.jpg", data)
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "out.jpg", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert [r.merged for r in summary.records] == [True, False, False, False]
    said = [w for w in warnings if "every frame since" in w]
    assert said == [
        "IMG_0.jpg: every frame since was kept out against it; if it is bad (a flash that did "
        "not fire, a stray shot), move it out of the folder and watch again (`stacker stack` "
        "on the folder leaves such a first frame out)"
    ]
    assert warnings.index(said[0]) == 3  # as the third frame after it is kept out


@pytest.mark.slow
def test_frames_kept_out_for_what_they_are_do_not_blame_the_first_frame(
    tmp_path: Path, hot: Path
) -> None:
    """JPEGs in a folder watched into a DNG are kept out whatever the first frame is: they were
    counted as kept out against it, and the watch said to move a good RAW first frame away."""
    pytest.importorskip("rawpy")
    from rig.sim.bayer import encode_bayer_dng

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 60000, (240, 320, 3), dtype=np.uint16)
    write_old(hot / "IMG_0.dng", encode_bayer_dng(raw))
    for i in (1, 2, 3):
        jpeg = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        write_old(hot / f"IMG_{i}.jpg", cv2.imencode(".jpg", jpeg)[1].tobytes())
    warnings: list[str] = []
    watch_and_stack(
        hot, tmp_path / "out.dng", idle_timeout=1.0, settle=0.2, on_warning=warnings.append
    )
    assert sum("not a RAW frame" in w for w in warnings) == 3, warnings
    assert not [w for w in warnings if "every frame since" in w]


@pytest.mark.slow
def test_a_second_watch_writing_the_same_composite_is_refused(
    tmp_path: Path, hot: Path, stack_jpegs: list[bytes]
) -> None:
    """Two watches with the same -o (one with another method) both ran, each rewriting the
    composite, whichever wrote last winning and its depth map perhaps the other's. Two watches
    of the folder into different files still run side by side."""
    write_old(hot / "a0.jpg", stack_jpegs[0])
    write_old(hot / "a1.jpg", stack_jpegs[1])
    out, stop, first_merged = tmp_path / "out.tif", threading.Event(), threading.Event()
    first = threading.Thread(
        target=watch_and_stack, args=(hot, out),
        kwargs={"settle": 0.2, "stop": stop, "on_frame": lambda m: first_merged.set()},
    )  # fmt: skip
    first.start()
    try:
        assert first_merged.wait(30)
        with pytest.raises(
            StackerError, match=r"out\.tif: another stacker watch.* writes this composite"
        ) as busy:
            watch_and_stack(hot, out, settle=0.2, method="depthmap", idle_timeout=0.5)
        assert busy.value.exit_code == 4  # busy, as the README's exit status table says
        # Whatever the environment of the second says (cron has no XDG_RUNTIME_DIR, an ssh
        # login its own): its lock was taken in another folder, and both watches wrote.
        for elsewhere in (str(tmp_path / "run"), "", str(tmp_path / "tmp")):
            with pytest.MonkeyPatch.context() as env, pytest.raises(StackerError):
                env.setenv("XDG_RUNTIME_DIR", elsewhere)
                env.setenv("TMPDIR", elsewhere or str(tmp_path))
                watch_and_stack(hot, out, settle=0.2, idle_timeout=0.5)
        other = watch_and_stack(hot, tmp_path / "other.tif", settle=0.2, idle_timeout=0.5)
        assert [r.name for r in other.records] == ["a0.jpg", "a1.jpg"]
        # A service's /tmp of its own (systemd's PrivateTmp=yes), where the system lets one
        # be made here: both watches wrote, as /tmp held the locks. (The folder the locks
        # were kept in is made private: the frames and the composite are under /tmp too.)
        kept = Path("/tmp") / f"stackrig-{os.getuid()}"
        kept.mkdir(mode=0o700, exist_ok=True)
        watch = f"{sys.executable} -m stacker.cli watch {hot} -o {out} --idle-timeout 0.5"
        if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
            private = f"mount -t tmpfs -o mode=0700 none {kept}"
            second = subprocess.run(
                ["unshare", "-m", "sh", "-c", f"{private} && {watch}"],
                capture_output=True, text=True, timeout=60, cwd=ROOT,
            )  # fmt: skip
            assert second.returncode == 4, second.stderr  # busy
            assert "another stacker watch" in second.stderr
    finally:
        stop.set()
        first.join(30)
    again = watch_and_stack(hot, out, settle=0.2, idle_timeout=0.5)  # free once it ended
    assert len(again.records) == 2
