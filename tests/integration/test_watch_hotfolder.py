"""The hot folder on its own: real file events on a real folder, real files written by threads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stacker.hotfolder import HotFolder, HotFolderError, ReadyFrame, UnreadableFrame, is_candidate
from stacker.io import _jpeg_is_complete, read_image
from stacker.offline import collect_inputs
from stacker.pairs import Prefer
from stacker.watch import MergedFrame, watch_and_stack
from tests.hotfolder import write_old, write_slowly


def textured_jpeg(seed: int, *, shift: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    """A 320x240 textured frame (blurred noise, slightly shifted), JPEG-encoded."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = rng.random((h + 16, w + 16, 3)).astype(np.float32) * 255
    base = cv2.GaussianBlur(base, (0, 0), 1.5)
    img = np.ascontiguousarray(base[8 + shift : 8 + shift + h, 8 : 8 + w]).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


#: Seconds a test waits at most for the files it expects (then ends the watch and fails).
LIMIT = 30.0


def wait_until(condition: Callable[[], bool], limit: float = LIMIT) -> None:
    """Return once ``condition()`` holds, or after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def stop_when(
    writer: threading.Thread, done: Callable[[], bool], grace: float = 0.5
) -> threading.Event:
    """An event set ``grace`` seconds after ``writer`` is done and ``done()`` holds (everything
    expected was handed out): time for a file that must not come to show up. A slow machine
    delays it, and it is set after :data:`LIMIT` seconds at the latest, so a missing file fails
    the test's assertion."""
    stop = threading.Event()

    def wait() -> None:
        deadline = time.monotonic() + LIMIT
        writer.join(LIMIT)
        wait_until(done, deadline - time.monotonic())
        time.sleep(grace)
        stop.set()

    in_thread(wait)
    return stop


def collect_paths(
    hot: HotFolder,
    writer: threading.Thread,
    count: int,
    *,
    skipped: int = 0,
    grace: float = 0.5,
    got: list[tuple[Path, int]] | None = None,
) -> list[tuple[Path, int]]:
    """Every ready path with its size at the moment it was handed out (appended to ``got``), until
    ``grace`` seconds after ``writer`` is done and ``count`` paths and ``skipped`` pair partners
    are in (see :func:`stop_when`)."""
    got = [] if got is None else got
    for path in hot.paths(stop=all_in(hot, writer, got, count, skipped, grace), idle_timeout=20):
        got.append((path, path.stat().st_size))
    return got


def collect_frames(hot: HotFolder, writer: threading.Thread, count: int, **limits: Any) -> list:
    """:func:`collect_paths` for decoded frames (``limits``: its ``skipped`` and ``grace``, and
    ``on_unreadable`` for :meth:`HotFolder.frames`)."""
    got: list[ReadyFrame] = []
    on_unreadable = limits.pop("on_unreadable", None)
    stop = all_in(hot, writer, got, count, **limits)
    for frame in hot.frames(stop=stop, idle_timeout=20, on_unreadable=on_unreadable):
        got.append(frame)  # one at a time: all_in counts them as they come
    return got


def all_in(
    hot: HotFolder, writer: threading.Thread, got: list, count: int, skipped: int = 0, grace=0.5
) -> threading.Event:
    """:func:`stop_when` ``count`` items are in ``got`` and ``skipped`` partners were set aside."""
    return stop_when(writer, lambda: len(got) >= count and len(hot.skipped) >= skipped, grace)


def in_thread(fn, *args, **kwargs) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fn, args=args, kwargs=kwargs, daemon=True)
    t.start()
    return t


def test_jpeg_end_marker_check_spots_every_truncation() -> None:
    data = textured_jpeg(1)
    assert _jpeg_is_complete(data)
    for cut in range(4, len(data) - 1, 311):
        assert not _jpeg_is_complete(data[:cut]), cut
    assert not _jpeg_is_complete(data[:-2])


def test_candidate_names() -> None:
    for name in ["a.jpg", "IMG_0001.CR2", "b.TIFF", "frame 10.png"]:
        assert is_candidate(Path(name)), name
    for name in [
        ".a.jpg",
        "a.jpg.tmp",
        "a.jpg.part",
        "a.crdownload",
        "a.jpg~",
        "~$a.jpg",
        "notes.txt",
        "a.xmp",
        "a.jpg.filepart",
    ]:
        assert not is_candidate(Path(name)), name


@pytest.mark.slow
def test_slow_writes_are_taken_at_close_even_after_a_stall(tmp_path: Path) -> None:
    """On inotify a stalled upload (longer than the settle time) is not taken half-written."""
    frames = {f"f{i}.jpg": textured_jpeg(i, shift=i) for i in range(3)}
    with HotFolder(tmp_path, settle=0.3) as hot:
        assert hot.uses_close_events  # Linux: the close-after-write path is what is tested

        def writer() -> None:
            for i, (name, data) in enumerate(frames.items()):
                write_slowly(tmp_path / name, data, pause_at=2 if i == 1 else None)

        t = in_thread(writer)
        got = collect_paths(hot, t, len(frames))
        t.join()
    assert [(p.name, size) for p, size in got] == [(n, len(d)) for n, d in frames.items()]


@pytest.mark.slow
def test_polling_takes_files_once_size_and_mtime_settle(tmp_path: Path) -> None:
    frames = {f"p{i}.jpg": textured_jpeg(10 + i) for i in range(2)}
    with HotFolder(tmp_path, settle=0.4, polling=True) as hot:
        assert not hot.uses_close_events

        def writer() -> None:
            for name, data in frames.items():
                write_slowly(tmp_path / name, data)

        t = in_thread(writer)
        got = collect_paths(hot, t, len(frames), grace=1.5)
        t.join()
    assert [(p.name, size) for p, size in got] == [(n, len(d)) for n, d in frames.items()]


@pytest.mark.slow
def test_a_polled_frame_that_stalls_less_than_the_settle_time_is_waited_for(
    tmp_path: Path,
) -> None:
    """Polled, nothing says a file is closed: a TIFF (no end marker to check) whose writer
    stalls for two polls, less than ``settle``, is taken whole, once, and never half."""
    image = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    data = cv2.imencode(".tif", image)[1].tobytes()
    with HotFolder(tmp_path, settle=2.0, polling=True) as hot:

        def writer() -> None:
            with (tmp_path / "stalled.tif").open("wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(1.0)  # two polls (0.5 s each), half the settle time
                fh.write(data[len(data) // 2 :])

        t = in_thread(writer)
        got = collect_paths(hot, t, 1, grace=2.5)
        t.join()
    assert [(p.name, size) for p, size in got] == [("stalled.tif", len(data))]


@pytest.mark.slow
def test_a_polled_jpeg_that_stalls_longer_than_the_settle_time_is_not_handed_out_half(
    tmp_path: Path,
) -> None:
    """Polled, a Wi-Fi upload that stalls for longer than ``settle`` looks written; a JPEG
    without its end marker is looked at again, and handed out whole once the upload goes on."""
    data = textured_jpeg(30)
    with HotFolder(tmp_path, settle=0.3, polling=True) as hot:

        def writer() -> None:
            with (tmp_path / "stalled.jpg").open("wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(1.0)  # two polls, more than three times the settle time
                fh.write(data[len(data) // 2 :])

        t = in_thread(writer)
        got = collect_paths(hot, t, 1, grace=2.0)
        t.join()
    assert [(p.name, size) for p, size in got] == [("stalled.jpg", len(data))]


@pytest.mark.slow
def test_a_polled_jpeg_that_stays_cut_short_is_handed_out_after_the_retries(
    tmp_path: Path,
) -> None:
    """An upload that never finishes is not waited for forever: after ``decode_retries`` looks
    the file goes out as it is, and its reader reports it."""
    data = textured_jpeg(31)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with HotFolder(tmp_path, settle=0.2, polling=True, retry_interval=0.2) as hot:
        start = time.monotonic()
        got = [
            (p.name, p.stat().st_size, time.monotonic() - start) for p in hot.paths(idle_timeout=3)
        ]
    assert [(name, size) for name, size, _ in got] == [("cut.jpg", len(data) // 2)]
    assert hot.cut_short == {tmp_path / "cut.jpg": "truncated JPEG (no end-of-image marker)"}
    assert got[0][2] >= 3 * 0.2  # looked at again decode_retries times first


def test_a_frame_written_again_while_it_is_read_is_read_again_once_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that rewrites a frame just as the watch reads it: what was read is not the
    file, so it is read again once the file has settled, and handed out once, as it ends.
    (The moment cannot be hit from outside reliably: the watch's own reader writes the new
    content as soon as it has read the old, a writer beside it in time.)"""
    first, final = textured_jpeg(21), textured_jpeg(22, shift=3)
    path = tmp_path / "rewritten.jpg"
    with HotFolder(tmp_path, settle=0.3) as hot:
        real = hot._reader.read
        rewritten: list[Path] = []

        def read_then_rewrite(held: Path) -> Any:
            result = real(held)
            if not rewritten:
                rewritten.append(held)
                path.write_bytes(final)
            return result

        monkeypatch.setattr(hot._reader, "read", read_then_rewrite)
        t = in_thread(write_slowly, path, first)
        got = collect_frames(hot, t, 1, grace=1.5)
        t.join()
    assert rewritten and [f.path.name for f in got] == ["rewritten.jpg"]
    np.testing.assert_array_equal(got[0].image, read_image(path))
    assert path.read_bytes() == final


@pytest.mark.slow
def test_decoded_frames_equal_the_finished_files(tmp_path: Path) -> None:
    names = [f"d{i}.jpg" for i in range(3)]
    unreadable: list[UnreadableFrame] = []
    with HotFolder(tmp_path, settle=0.3) as hot:
        t = in_thread(
            lambda: [write_slowly(tmp_path / n, textured_jpeg(20 + i)) for i, n in enumerate(names)]
        )
        got = collect_frames(hot, t, len(names), on_unreadable=unreadable.append)
        t.join()
    assert unreadable == []
    assert [f.path.name for f in got] == names
    for frame in got:
        assert np.array_equal(frame.image, read_image(frame.path))


@pytest.mark.slow
def test_temporary_hidden_and_other_files_are_ignored_renames_are_taken(tmp_path: Path) -> None:
    data = textured_jpeg(3)
    with HotFolder(tmp_path, settle=0.3, ignore=[tmp_path / "stacked.jpg"]) as hot:

        def writer() -> None:
            for name in [".hidden.jpg", "a.jpg.part", "b.crdownload", "c.jpg~", "notes.txt"]:
                write_slowly(tmp_path / name, data)
            (tmp_path / "stacked.jpg").write_bytes(data)  # our own output: never a frame
            write_slowly(tmp_path / "x.jpg.tmp", data)
            os.rename(tmp_path / "x.jpg.tmp", tmp_path / "x.jpg")

        t = in_thread(writer)
        got = collect_paths(hot, t, 1)
        t.join()
    assert [(p.name, size) for p, size in got] == [("x.jpg", len(data))]


def test_file_moved_in_from_elsewhere_is_taken(tmp_path: Path) -> None:
    watched = tmp_path / "hot"
    watched.mkdir()
    outside = tmp_path / "y.jpg"
    outside.write_bytes(textured_jpeg(4))
    with HotFolder(watched, settle=0.3, close_grace=30) as hot:
        t = in_thread(lambda: (time.sleep(0.2), os.rename(outside, watched / "y.jpg")))
        got = collect_paths(hot, t, 1)
        t.join()
    assert [p.name for p, _ in got] == ["y.jpg"]


@pytest.mark.slow
def test_raw_jpeg_pair_counts_once_and_the_raw_is_never_read(tmp_path: Path) -> None:
    fake_raw = b"not a raw file, must never be decoded" * 100
    unreadable: list[UnreadableFrame] = []
    with HotFolder(tmp_path, settle=0.3) as hot:

        def writer() -> None:
            write_slowly(tmp_path / "IMG_0001.CR2", fake_raw)  # RAW first, JPEG after
            write_slowly(tmp_path / "IMG_0001.JPG", textured_jpeg(5))
            write_slowly(tmp_path / "IMG_0002.jpg", textured_jpeg(6))  # JPEG first, RAW after
            time.sleep(0.3)
            write_slowly(tmp_path / "IMG_0002.cr2", fake_raw)

        t = in_thread(writer)
        got = collect_frames(hot, t, 2, skipped=2, on_unreadable=unreadable.append)
        t.join()
    assert unreadable == []  # a decoded fake RAW would have been reported here
    assert [f.path.name for f in got] == ["IMG_0001.JPG", "IMG_0002.jpg"]
    assert sorted(p.name for p in hot.skipped) == ["IMG_0001.CR2", "IMG_0002.cr2"]
    # A RAW written after its JPEG was stacked was said to be "written again after it was
    # stacked": at every such shot, of a file never stacked.
    assert not [note for note in hot.notes if "written again" in note], hot.notes


@pytest.mark.slow
def test_lone_raw_is_taken_after_the_pair_wait_and_prefer_raw_skips_jpegs(
    tmp_path: Path,
) -> None:
    fake_raw = b"raw bytes" * 500
    with HotFolder(tmp_path, settle=0.3, pair_wait=0.3) as hot:
        t = in_thread(lambda: write_slowly(tmp_path / "solo.nef", fake_raw))
        got = collect_paths(hot, t, 1, grace=1.0)
        t.join()
    assert [p.name for p, _ in got] == ["solo.nef"]

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    with HotFolder(raw_dir, settle=0.3, prefer="raw") as hot:

        def writer() -> None:
            write_slowly(raw_dir / "a.jpg", textured_jpeg(7))
            write_slowly(raw_dir / "a.arw", fake_raw)

        t = in_thread(writer)
        got = collect_paths(hot, t, 1, skipped=1)
        t.join()
    assert [p.name for p, _ in got] == ["a.arw"]
    assert [p.name for p in hot.skipped] == ["a.jpg"]


def test_a_file_found_at_start_waits_for_its_partner_whatever_its_date(tmp_path: Path) -> None:
    """gphoto2 dates each download by the camera's clock: a RAW that had just landed when the
    watch started looked an hour old, its wait for its JPEG was over before it began, and the
    JPEG landing half a second later was passed over (a RAW in a JPEG stack, or a shot lost).
    The wait for a partner of a file found at start counts from when it was found."""
    raw = tmp_path / "IMG_0001.CR2"
    raw.write_bytes(b"raw bytes" * 500)
    an_hour_ago = time.time() - 3600
    os.utime(raw, (an_hour_ago, an_hour_ago))
    with HotFolder(tmp_path, settle=0.3, pair_wait=2.0) as hot:
        t = in_thread(
            lambda: (time.sleep(0.5), write_old(tmp_path / "IMG_0001.JPG", textured_jpeg(5)))
        )
        got = collect_paths(hot, t, 1, skipped=1)
        t.join()
    assert [p.name for p, _ in got] == ["IMG_0001.JPG"]
    assert [p.name for p in hot.skipped] == ["IMG_0001.CR2"]


@pytest.mark.parametrize("raw_first", [False, True])
@pytest.mark.parametrize("polling", [False, True])
@pytest.mark.slow
def test_a_raw_jpeg_shot_renamed_after_it_was_taken_is_still_one_frame(
    tmp_path: Path, polling: bool, raw_first: bool
) -> None:
    """A tethering program that renames both files of a shot by its naming template: the RAW
    under its new name is the partner it was, not a new frame (the same exposure twice), in
    whichever order the two are renamed; the partners skipped are counted once."""
    raw = b"raw bytes" * 500
    got: list[tuple[Path, int]] = []
    with HotFolder(tmp_path, settle=0.3, pair_wait=0.5, polling=polling) as hot:

        def tool() -> None:
            (tmp_path / "IMG_0001.JPG").write_bytes(textured_jpeg(60))
            (tmp_path / "IMG_0001.CR3").write_bytes(raw)
            wait_until(lambda: len(got) == 1 and len(hot.skipped) == 1)
            order = ["CR3", "JPG"] if raw_first else ["JPG", "CR3"]
            for suffix in order:
                os.rename(tmp_path / f"IMG_0001.{suffix}", tmp_path / f"Beetle_0001.{suffix}")

        t = in_thread(tool)
        collect_paths(hot, t, 1, skipped=1, grace=2.0, got=got)
        t.join()
    assert [p.name for p, _ in got] == ["IMG_0001.JPG"]
    assert [p.name for p in hot.skipped] == ["Beetle_0001.CR3"]


@pytest.mark.parametrize("polling", [False, True])
@pytest.mark.slow
def test_a_new_shot_under_the_name_of_a_shot_deleted_whole_is_a_new_frame(
    tmp_path: Path, polling: bool
) -> None:
    """A folder cleared for the next stack, the camera's numbering reset (gphoto2 names its
    downloads from capt0000 again each run): a RAW alone under the name of a deleted RAW+JPEG
    shot is stacked after the pair wait, not passed over as the old shot's partner. A JPEG
    moved out by an importer keeps its shot's claim for the pair wait: its late RAW is not
    stacked."""
    raw = b"raw bytes" * 500
    hot_dir, library = tmp_path / "hot", tmp_path / "library"
    hot_dir.mkdir()
    library.mkdir()
    got: list[tuple[Path, int]] = []
    with HotFolder(hot_dir, settle=0.3, pair_wait=1.0, polling=polling) as hot:

        def camera() -> None:
            (hot_dir / "capt0000.jpg").write_bytes(textured_jpeg(61))
            (hot_dir / "capt0000.cr3").write_bytes(raw)
            (hot_dir / "capt0002.jpg").write_bytes(textured_jpeg(62))
            wait_until(lambda: len(got) == 2 and len(hot.skipped) == 1)
            for name in ["capt0000.jpg", "capt0000.cr3"]:
                (hot_dir / name).unlink()
            os.rename(hot_dir / "capt0002.jpg", library / "capt0002.jpg")  # an importer's
            time.sleep(0.2)
            (hot_dir / "capt0002.cr3").write_bytes(raw)  # the moved JPEG's RAW, late
            time.sleep(2.0)  # the events reach the watch, the pair wait is over
            (hot_dir / "capt0000.cr3").write_bytes(raw * 2)  # the new run's shot: RAW only

        t = in_thread(camera)
        collect_paths(hot, t, 3, skipped=2, grace=2.0, got=got)
        t.join()
    assert [(p.name, size) for p, size in got] == [
        ("capt0000.jpg", len(textured_jpeg(61))),
        ("capt0002.jpg", len(textured_jpeg(62))),
        ("capt0000.cr3", 2 * len(raw)),
    ]
    # The moved JPEG's late RAW is passed over. (Polled, the old RAW's deletion may be told
    # as its rename to capt0002.cr3, the inode given again: then it is counted once.)
    assert hot.skipped[-1].name == "capt0002.cr3"


@pytest.mark.slow
def test_existing_files_first_in_natural_order_then_arrival_order(tmp_path: Path) -> None:
    for name in ["frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "Frame_3.jpg"]:
        write_old(tmp_path / name, textured_jpeg(8))
    with HotFolder(tmp_path, settle=0.3) as hot:

        def writer() -> None:
            for name in ["new_b.jpg", "new_a.jpg"]:
                write_slowly(tmp_path / name, textured_jpeg(9))

        t = in_thread(writer)
        got = collect_paths(hot, t, 6)
        t.join()
    assert [p.name for p, _ in got] == [
        "frame_1.jpg",
        "frame_2.jpg",
        "Frame_3.jpg",
        "frame_10.jpg",
        "new_b.jpg",
        "new_a.jpg",
    ]


def test_a_restarted_watch_takes_the_frames_after_a_counter_wrap_last(tmp_path: Path) -> None:
    """The watch was restarted in the middle of a stack whose file numbers wrapped (a camera
    counts IMG_9999, then IMG_0001): by name the frames after the wrap came first, and the stack
    was aligned and merged from the middle of its focus range. ``stacker stack`` on the folder
    takes the same order."""
    names = ["IMG_9998.JPG", "IMG_9999.JPG", "IMG_0001.JPG", "IMG_0002.JPG"]
    now = time.time()
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(textured_jpeg(i))
        os.utime(tmp_path / name, (now - 60 + i, now - 60 + i))
    with HotFolder(tmp_path, settle=0.3) as hot:
        got = [p.name for p in hot.paths(idle_timeout=1.0)]
    assert got == names
    assert [p.name for p in collect_inputs([tmp_path])] == names


@pytest.mark.slow
@pytest.mark.parametrize("temporary", ["b.jpg.part", ".b.jpg.Xk3j9a", "tmpfileAb12Cd"])
def test_an_idle_timeout_waits_for_a_frame_still_written_under_a_temporary_name(
    tmp_path: Path, temporary: str
) -> None:
    """A frame uploaded slowly under a temporary name, then renamed, raised no event the watch
    counted: the idle timeout ended the watch during the upload, and the frame landed after,
    never stacked."""
    write_old(tmp_path / "a.jpg", textured_jpeg(1))
    data = textured_jpeg(2)

    def upload() -> None:
        time.sleep(0.3)
        write_slowly(tmp_path / temporary, data, chunk=len(data) // 10 + 1, gap=0.25)
        (tmp_path / temporary).rename(tmp_path / "b.jpg")

    writer = in_thread(upload)
    with HotFolder(tmp_path, settle=0.3) as hot:
        got = [p.name for p in hot.paths(idle_timeout=1.5)]  # the upload lasts 2.8 s: over it
    writer.join()
    assert got == ["a.jpg", "b.jpg"]


@pytest.mark.slow
def test_a_frame_written_again_after_it_was_stacked_is_said(tmp_path: Path) -> None:
    """The composite kept the first exposure, and nothing said the file had changed; a HEIC
    file, which is not read, ended in 'no frame could be merged' with no word on why."""
    write_old(tmp_path / "a.jpg", textured_jpeg(1))
    notes: list[str] = []
    with HotFolder(tmp_path, settle=0.3) as hot:
        for path in hot.paths(idle_timeout=1.5):
            if path.name == "a.jpg":
                (tmp_path / "a.jpg").write_bytes(textured_jpeg(5))  # a new exposure, same name
                (tmp_path / "IMG_0002.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
        notes = list(hot.notes)
    assert any("a.jpg: written again after it was stacked" in note for note in notes), notes
    assert sum("IMG_0002.HEIC: HEIC is not read" in note for note in notes) == 1, notes


@pytest.mark.slow
def test_unreadable_file_is_retried_reported_and_looked_at_again_when_rewritten(
    tmp_path: Path,
) -> None:
    unreadable: list[UnreadableFrame] = []
    with HotFolder(tmp_path, settle=0.3, decode_retries=2, retry_interval=0.1) as hot:

        def writer() -> None:
            (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 garbage " * 200)
            write_slowly(tmp_path / "good.jpg", textured_jpeg(11))
            wait_until(lambda: len(unreadable) > 0)
            write_slowly(tmp_path / "bad.jpg", textured_jpeg(12))  # fixed once reported

        t = in_thread(writer)
        got = collect_frames(hot, t, 2, on_unreadable=unreadable.append)
        t.join()
    assert [u.path.name for u in unreadable] == ["bad.jpg"]
    assert "bad.jpg" in unreadable[0].message
    assert [f.path.name for f in got] == ["good.jpg", "bad.jpg"]
    assert np.array_equal(got[1].image, read_image(tmp_path / "bad.jpg"))


def sized(hot: HotFolder, *names: str, timeout: float = 10.0) -> None:
    """Wait until the watch has read the size of each of ``names``: a poll saw the file and
    the watch took its event. (A fixed sleep reached that state only on an idle machine; this
    looks at the watch's own book of files, which no public attribute shows.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        book = {p.name: e.signature for p, e in list(hot._entries.items())}
        if all((book.get(n) or (0, 0))[0] > 0 for n in names):
            return
        time.sleep(0.02)
    raise AssertionError(f"the watch did not see {names} within {timeout} s")


@pytest.mark.slow
def test_a_file_moved_out_before_it_settled_is_named(tmp_path: Path) -> None:
    """A file an importer moves on before it counts as complete (Lightroom's Auto Import takes
    what lands in its watched folder; polled here, the watch waits for ``settle``) is not a
    frame lost without a word. One renamed within the folder is the same frame, under its new
    name, and one deleted before anything was written is no frame at all."""
    hot_dir, imported = tmp_path / "hot", tmp_path / "imported"
    hot_dir.mkdir()
    imported.mkdir()
    with HotFolder(hot_dir, settle=3.0, polling=True) as hot:

        def writer() -> None:
            (hot_dir / "a.jpg").write_bytes(textured_jpeg(1))
            (hot_dir / "empty.jpg").touch()
            (hot_dir / "b.jpg").write_bytes(textured_jpeg(2))
            sized(hot, "a.jpg", "b.jpg")  # seen by a poll, not yet settled
            (hot_dir / "a.jpg").rename(imported / "a.jpg")
            (hot_dir / "empty.jpg").unlink()
            (hot_dir / "b.jpg").rename(hot_dir / "c.jpg")

        t = in_thread(writer)
        got = collect_paths(hot, t, 1, grace=2.0)
    assert [p.name for p, _ in got] == ["c.jpg"]
    assert len(hot.notes) == 1
    assert hot.notes[0].startswith("a.jpg: moved out of the watched folder or deleted before")


#: Watches the folder given, as the user that runs it, reporting what it hands out on stdout.
_WATCH_ONE = """
import os, sys, tempfile
from pathlib import Path
import cv2, numpy as np
from stacker.io import OrientedReader, truncation
from stacker.hotfolder import HotFolder

def unreadable(bad):
    print("unreadable", bad.message, flush=True)

poll = sys.argv[2] == "poll"
with HotFolder(sys.argv[1], settle=0.2, polling=poll, decode_retries=1, retry_interval=0.1) as hot:
    if os.geteuid() == 0:  # become nobody, once what the watch reads with is loaded
        with tempfile.TemporaryDirectory() as warm:
            cv2.imwrite(f"{warm}/warm.jpg", np.zeros((8, 8, 3), np.uint8))
            truncation(Path(f"{warm}/warm.jpg"))
            OrientedReader().read(Path(f"{warm}/warm.jpg"))
        os.setgid(65534)
        os.setuid(65534)
    for frame in hot.frames(idle_timeout=5.0, on_unreadable=unreadable):
        print("frame", frame.path.name, flush=True)
        break
"""


def _watch_one(share: Path, events: str, script: str = _WATCH_ONE) -> subprocess.Popen[str]:
    """:data:`_WATCH_ONE` (or ``script``) watching ``share`` in a process of its own."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-c", script, str(share), events],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


@pytest.mark.parametrize("events", ["native", "poll"])
def test_a_frame_another_user_wrote_unreadable_is_taken_once_made_readable(events: str) -> None:
    """An FTP server writes what a camera uploads as the user it logs in as, with its umask
    (vsftpd's local_umask is 077 unless configured): mode 0600, unreadable to the watch. It is
    reported with what to do, and taken once someone makes it readable, a change of permissions
    only (its size and time stay). Run as root, the watch becomes nobody, whom modes stop."""
    share = Path(tempfile.mkdtemp(prefix="stackrig-perm-"))
    try:
        share.chmod(0o777)
        frame = share / "DSC_0001.JPG"
        frame.write_bytes(textured_jpeg(5))
        frame.chmod(0o600 if os.geteuid() == 0 else 0)
        child = _watch_one(share, events)
        assert child.stdout is not None
        first = child.stdout.readline()
        frame.chmod(0o644)  # the user's fix, as the message says
        try:
            rest, errors = child.communicate(timeout=LIMIT)
        finally:
            child.kill()
    finally:
        shutil.rmtree(share, ignore_errors=True)
    assert first.startswith(f"unreadable {frame}: cannot read (Permission denied)"), errors
    assert "chmod a+r" in first
    assert rest == "frame DSC_0001.JPG\n", errors


@pytest.mark.parametrize("events", ["native", "poll"])
@pytest.mark.slow
def test_a_frame_that_lands_while_the_folder_is_unreadable_is_taken_once_it_is_readable(
    events: str,
) -> None:
    """A folder made unreadable a while (a chmod, a share's permissions) as a frame lands:
    the frame could not be looked at, was taken for deleted, waited for a deletion that never
    came, and was never stacked nor named. Run as root, the watch becomes nobody."""
    share = Path(tempfile.mkdtemp(prefix="stackrig-perm-"))
    try:
        share.chmod(0o777)
        loop = "    for frame in hot.frames("
        child = _watch_one(
            share, events, _WATCH_ONE.replace(loop, "    print('ready', flush=True)\n" + loop)
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        share.chmod(0)  # nobody may look inside now
        (share / "DSC_0001.JPG").write_bytes(textured_jpeg(5))
        time.sleep(1.5)  # past the settle time: looked at, and refused, several times
        share.chmod(0o777)
        try:
            rest, errors = child.communicate(timeout=LIMIT)
        finally:
            child.kill()
    finally:
        share.chmod(0o777)
        shutil.rmtree(share, ignore_errors=True)
    assert rest == "frame DSC_0001.JPG\n", errors


@pytest.mark.slow
def test_stop_event_ends_iteration(tmp_path: Path) -> None:
    stop = threading.Event()
    with HotFolder(tmp_path) as hot:
        threading.Timer(0.3, stop.set).start()
        assert list(hot.paths(stop=stop)) == []


def test_missing_or_non_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(HotFolderError, match="no such folder"):
        HotFolder(tmp_path / "absent").start()
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(HotFolderError, match="not a folder"):
        HotFolder(tmp_path / "file.jpg").start()


def test_folder_removed_while_watching_is_a_one_line_error(tmp_path: Path) -> None:
    hot_dir = tmp_path / "hot"
    hot_dir.mkdir()
    with HotFolder(hot_dir) as hot:
        threading.Timer(0.2, hot_dir.rmdir).start()
        with pytest.raises(HotFolderError, match="removed"):
            list(hot.paths(idle_timeout=10))


@pytest.mark.slow
def test_an_idle_timeout_shorter_than_the_pair_wait_still_takes_a_lone_raw(
    tmp_path: Path,
) -> None:
    """A RAW held for its JPEG partner is pending, not idle: the watch waits for it.

    The idle timeout also runs between the start and the watcher reading the RAW's events, which
    a busy machine delays: it is long enough for that, and still half the pair wait."""
    with HotFolder(tmp_path, settle=0.1, pair_wait=2.0) as hot:
        write_slowly(tmp_path / "solo.nef", b"raw bytes" * 500)
        t0 = time.monotonic()
        got = list(hot.paths(idle_timeout=1.0))
    assert [p.name for p in got] == ["solo.nef"]
    assert time.monotonic() - t0 >= 1.5  # handed out at the end of the pair wait


@pytest.mark.slow
def test_fresh_raw_found_at_start_waits_for_its_jpeg(tmp_path: Path) -> None:
    """The camera wrote the RAW just before the watch started; the JPEG follows."""
    (tmp_path / "IMG_7.CR2").write_bytes(b"raw" * 1000)  # mtime: now
    write_old(tmp_path / "IMG_6.CR2", b"raw" * 1000)  # long alone: taken on its own
    with HotFolder(tmp_path, settle=0.2) as hot:
        t = in_thread(
            lambda: (time.sleep(0.4), write_slowly(tmp_path / "IMG_7.jpg", textured_jpeg(2)))
        )
        got = collect_paths(hot, t, 2, skipped=1)
        t.join()
    assert [p.name for p, _ in got] == ["IMG_6.CR2", "IMG_7.jpg"]
    assert [p.name for p in hot.skipped] == ["IMG_7.CR2"]


@pytest.mark.slow
def test_a_rename_seen_at_once_waits_for_earlier_frames_still_settling(tmp_path: Path) -> None:
    """Polling (a network share): rsync writes ``.<name>.XXXXXX`` and renames it (rsync's
    receiver.c ``get_tmpname``, then ``finish_transfer``). A rename seen by the poll is complete
    at once, while frames copied just before it, seen as plain new files, still settle: the
    renamed frame must not jump ahead of them, or the stack is aligned out of order."""
    data = textured_jpeg(13)
    with HotFolder(tmp_path, settle=1.0, polling=True) as hot:

        def writer() -> None:
            for name in ["IMG_0001.JPG", "IMG_0002.JPG"]:
                (tmp_path / name).write_bytes(data)  # seen by the next poll as new files
            temporary = tmp_path / ".IMG_0003.JPG.a1B2c3"
            temporary.write_bytes(data)
            time.sleep(0.6)  # a poll sees the temporary name before the rename
            os.rename(temporary, tmp_path / "IMG_0003.JPG")

        t = in_thread(writer)
        got = collect_paths(hot, t, 3, grace=2.0)
        t.join()
    assert [p.name for p, _ in got] == ["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG"]


@pytest.mark.slow
def test_a_folder_whose_disk_is_mounted_again_in_place_is_not_watched_deaf(
    tmp_path: Path,
) -> None:
    """A card pulled and put back, a USB reset: the disk mounted again at the same place keeps
    its folders' device and inode numbers, but the kernel drops the watch with the old mount.
    Every frame landing after went unseen ("stacked 2 of 2" with 4 on the card). An ext4 image
    on a loop device stands in for the card (root only)."""
    card, hot_dir = tmp_path / "card.img", tmp_path / "hot"
    hot_dir.mkdir()
    with card.open("wb") as fh:
        fh.truncate(16 << 20)
    for command in (
        ["mkfs.ext4", "-q", str(card)],
        ["mount", "-o", "loop", str(card), str(hot_dir)],
    ):
        done = subprocess.run(command, capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a disk here ({command[0]}: {done.stderr.decode().strip()})")
    try:
        with HotFolder(hot_dir, settle=0.2) as hot:
            write_slowly(hot_dir / "IMG_0001.JPG", textured_jpeg(41))
            assert next(hot.paths(idle_timeout=5.0)).name == "IMG_0001.JPG"
            subprocess.run(["umount", str(hot_dir)], check=True)
            subprocess.run(["mount", "-o", "loop", str(card), str(hot_dir)], check=True)
            write_slowly(hot_dir / "IMG_0002.JPG", textured_jpeg(42))
            with pytest.raises(HotFolderError, match="no file event told of it"):
                list(hot.paths(idle_timeout=12.0))
    finally:
        subprocess.run(["umount", "-l", str(hot_dir)], check=False)


def test_only_a_frame_no_event_told_of_stops_the_watch(tmp_path: Path) -> None:
    """Sidecars or other programs' files flooding in can overflow the event queue: one no event
    told of is no sign that the watch went deaf, a frame is. The kernel watch is taken off the
    folder (as an unmount drops it), so that no event can come; the looks are made by hand."""
    from stacker.hotfolder import _listed

    with HotFolder(tmp_path, settle=0.2) as hot:
        assert hot._observer is not None
        hot._observer.unschedule_all()  # deaf, as after a remount; the thread still runs
        (tmp_path / "notes.xmp").write_bytes(b"x")
        for _ in range(4):
            hot._check_still_hearing(_listed(tmp_path))
        (tmp_path / "IMG_0001.JPG").write_bytes(textured_jpeg(3))
        for _ in range(2):
            hot._check_still_hearing(_listed(tmp_path))
        with pytest.raises(HotFolderError, match=r"IMG_0001\.JPG landed in it"):
            hot._check_still_hearing(_listed(tmp_path))


@pytest.fixture
def share(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(server, mount)``: a FUSE mount (bindfs) of the folder ``server``.

    A file written into ``server`` shows on the mount without any file event there, as another
    machine's writes show on an SMB or NFS share (inotify(7): "it does not catch remote events
    that occur on network filesystems").
    """
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (apt-get install bindfs)")
    server, mount = tmp_path / "server", tmp_path / "share"
    server.mkdir()
    mount.mkdir()
    done = subprocess.run(["bindfs", str(server), str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount FUSE here: {done.stderr.strip()}")
    unmount = shutil.which("fusermount") or shutil.which("fusermount3")
    try:
        yield server, mount
    finally:
        command = [unmount, "-u", str(mount)] if unmount else ["umount", str(mount)]
        subprocess.run(command, check=False)


@pytest.mark.slow
def test_a_share_is_polled_without_asking_and_other_writers_files_are_taken(
    share: tuple[Path, Path], tmp_path: Path
) -> None:
    server, mount = share
    names = ["IMG_0001.JPG", "IMG_0002.JPG"]
    with HotFolder(mount, settle=0.3) as hot:
        assert hot.polled_for == "fuse"
        t = in_thread(
            lambda: [write_slowly(server / n, textured_jpeg(30 + i)) for i, n in enumerate(names)]
        )
        got = collect_paths(hot, t, len(names), grace=1.5)
        t.join()
    assert [p.name for p, _ in got] == names

    warnings: list[str] = []
    for name in names:
        (server / name).unlink()
    t = in_thread(
        lambda: (time.sleep(0.5), write_slowly(server / "IMG_0003.JPG", textured_jpeg(33)))
    )
    stacked: list[MergedFrame] = []
    summary = watch_and_stack(
        mount,
        tmp_path / "stacked.tif",
        settle=0.3,
        stop=stop_when(t, lambda: len(stacked) >= 1, grace=2.0),
        on_frame=stacked.append,
        on_warning=warnings.append,
    )
    assert summary.status.merged == 1
    assert warnings == [
        f"{mount} is on a fuse file system, where other machines' writes raise no file events: "
        "polling it"
    ]


def gphoto2_save(folder: Path, name: str, data: bytes, *, gap: float = 0.0) -> None:
    """Save a download as ``gphoto2 --capture-tethered`` does with the working folder watched:
    into ``tmpfileXXXXXX`` there, renamed to the camera's name, closed after the rename
    (gphoto2's main.c: ``save_file_to_file`` and ``save_camera_file_to_file``); ``gap`` seconds
    between 8 KiB pieces as they come from the camera."""
    temporary = folder / "tmpfileAb12Cd"
    fd = os.open(temporary, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        for start in range(0, len(data), 8192):
            os.write(fd, data[start : start + 8192])
            time.sleep(gap)
        os.rename(temporary, folder / name)
    finally:
        os.close(fd)


@pytest.mark.slow
@pytest.mark.parametrize("raw_first", [True, False])
def test_gphoto2_ram_captures_of_one_shot_are_one_frame(tmp_path: Path, raw_first: bool) -> None:
    """libgphoto2 names a camera's RAM captures ``capt%04d`` with a counter bumped per file
    (camlibs/ptp2/library.c, ``camera_wait_for_event``): one RAW+JPEG shot is capt0000.cr3 and
    capt0001.jpg, whose stems differ. Each shot is still one frame, whichever file comes first."""
    fake_raw = b"raw bytes" * 500
    hot_dirs = {prefer: tmp_path / prefer for prefer in ("jpeg", "raw")}
    for prefer, folder in hot_dirs.items():
        folder.mkdir()
        with HotFolder(folder, settle=0.3, prefer=prefer, pair_wait=1.0) as hot:

            def camera(folder: Path = folder) -> None:
                number = 0
                for shot in range(3):
                    files = [("cr3", fake_raw), ("jpg", textured_jpeg(40 + shot))]
                    for ext, data in files if raw_first else files[::-1]:
                        gphoto2_save(folder, f"capt{number:04d}.{ext}", data)
                        number += 1
                    time.sleep(0.3)

            t = in_thread(camera)
            got = [p.name for p, _ in collect_paths(hot, t, 3, skipped=3, grace=1.5)]
            t.join()
        kinds = {"jpeg": ".jpg", "raw": ".cr3"}
        assert len(got) == 3, (prefer, got)
        assert all(name.endswith(kinds[prefer]) for name in got), (prefer, got)
        assert len(hot.skipped) == 3


@pytest.mark.slow
def test_a_shot_deleted_whole_frees_its_name_when_a_poll_calls_a_deletion_a_rename(
    tmp_path: Path,
) -> None:
    """A poll reports a file deleted and a new one given its inode (ext4 and tmpfs give a
    freed one again at once) as a rename: the deleted partner "renamed" to the next shot's
    RAW kept the old shot's claim, and a new shot under the old name was passed over. Which
    inode a file gets cannot be chosen from outside: the partner is renamed here, which is
    the event the poll reports."""
    raw = b"raw bytes" * 500
    got: list[tuple[Path, int]] = []
    with HotFolder(tmp_path, settle=0.3, pair_wait=0.5) as hot:

        def camera() -> None:
            (tmp_path / "capt0000.jpg").write_bytes(textured_jpeg(63))
            (tmp_path / "capt0000.cr3").write_bytes(raw)
            wait_until(lambda: len(got) == 1 and len(hot.skipped) == 1)
            (tmp_path / "capt0000.jpg").unlink()
            (tmp_path / "capt0000.cr3").rename(tmp_path / "capt0002.cr3")  # the inode, reused
            time.sleep(1.5)
            (tmp_path / "capt0000.cr3").write_bytes(raw * 2)  # the next run's shot: RAW only

        t = in_thread(camera)
        collect_paths(hot, t, 3, grace=1.5, got=got)
        t.join()
    assert [p.name for p, _ in got] == ["capt0000.jpg", "capt0002.cr3", "capt0000.cr3"]


@pytest.mark.parametrize(
    ("first", "second", "prefer", "expected"),
    [
        ("pair", "jpeg", "jpeg", ["capt0001.jpg", "capt0003.jpg", "capt0000.jpg", "capt0001.jpg"]),
        ("pair", "jpeg", "raw", ["capt0000.cr3", "capt0002.cr3", "capt0000.jpg", "capt0001.jpg"]),
        ("jpeg", "pair", "raw", ["capt0000.jpg", "capt0001.jpg", "capt0000.cr3", "capt0002.cr3"]),
    ],
)
@pytest.mark.slow
def test_gphoto2_run_again_in_another_mode_after_the_folder_is_cleared(
    tmp_path: Path, first: str, second: str, prefer: Prefer, expected: list[str]
) -> None:
    """gphoto2 numbers its downloads from capt0000 again each run. After a RAW+JPEG run and a
    cleared folder, a JPEG-only run's capt0001.jpg kept the old run's pairing (the key of
    capt0000.cr3) and was passed over as the new capt0000.jpg's partner: a frame lost. After
    a JPEG-only run, the next run's RAWs were passed over for the old JPEGs' claims."""
    got: list[tuple[Path, int]] = []
    with HotFolder(tmp_path, settle=0.3, pair_wait=0.5, prefer=prefer) as hot:

        def run(mode: str, seed: int) -> None:
            number = 0
            for shot in range(2):
                if mode == "pair":
                    gphoto2_save(tmp_path, f"capt{number:04d}.cr3", b"raw bytes" * 500)
                    number += 1
                gphoto2_save(tmp_path, f"capt{number:04d}.jpg", textured_jpeg(seed + shot))
                number += 1
                time.sleep(0.3)

        def gphoto2() -> None:
            run(first, 70)
            wait_until(lambda: len(got) == 2)
            for path in tmp_path.iterdir():
                path.unlink()
            time.sleep(1.5)  # the deletions are seen, the pair wait is over
            run(second, 80)

        t = in_thread(gphoto2)
        collect_paths(hot, t, 4, skipped=2, grace=1.5, got=got)
        t.join()
    assert [p.name for p, _ in got] == expected


@pytest.mark.parametrize("prefix", [".pureftpd-upload.6a1f.21.4242.", ".davfs.tmp"])
@pytest.mark.slow
def test_an_upload_under_a_temporary_name_that_does_not_tell_is_waited_for(
    tmp_path: Path, prefix: str
) -> None:
    """pure-ftpd (``-0``) and Apache mod_dav write an upload under a hidden name that does not
    carry the file's, then rename it: the upload was no activity, so a watch with an idle
    timeout shorter than the upload ended, and the frame landed unstacked. A RAW held for its
    JPEG was not kept waiting while the JPEG uploaded, so the RAW was stacked instead."""
    data = textured_jpeg(90)
    with HotFolder(tmp_path, settle=0.3, pair_wait=0.5) as hot:

        def ftpd() -> None:
            (tmp_path / "DSC_0001.NEF").write_bytes(b"raw bytes" * 500)
            temporary = tmp_path / f"{prefix}Xy12"
            write_slowly(temporary, data, chunk=len(data) // 8, gap=0.3)  # 2.4 s
            os.rename(temporary, tmp_path / "DSC_0001.JPG")

        t = in_thread(ftpd)
        got = [p.name for p in hot.paths(idle_timeout=1.0)]
        t.join()
    assert got == ["DSC_0001.JPG"]
    assert [p.name for p in hot.skipped] == ["DSC_0001.NEF"]


def test_an_upload_resumed_by_pure_ftpd_is_not_said_to_have_left(tmp_path: Path) -> None:
    """pure-ftpd resumes an upload by renaming the file to its temporary name, appending,
    and renaming it back (ftpd.c, dostor): the frame was stacked, and the notes said it was
    "moved out of the watched folder or deleted before it could be read; not stacked"."""
    data = textured_jpeg(91)
    with HotFolder(tmp_path, settle=0.3) as hot:

        def ftpd() -> None:
            path, temporary = tmp_path / "IMG_0007.JPG", tmp_path / ".pureftpd-upload.Ab"
            path.write_bytes(data[: len(data) // 2])  # the upload that broke off
            time.sleep(0.3)
            os.rename(path, temporary)
            with temporary.open("ab") as fh:
                fh.write(data[len(data) // 2 :])
            os.rename(temporary, path)

        t = in_thread(ftpd)
        got = [(f.path.name, f.image.shape) for f in collect_frames(hot, t, 1, grace=1.0)]
        t.join()
    assert got == [("IMG_0007.JPG", (240, 320, 3))]
    assert hot.notes == []


@pytest.mark.slow
def test_a_hidden_staging_folder_is_not_where_frames_are_said_to_land(tmp_path: Path) -> None:
    """rsync ``--delay-updates`` stages each file in ``.~tmp~`` and renames it in at the end,
    Syncthing keeps replaced files in ``.stversions``: the watch told the photographer to
    stop and watch those folders instead."""
    with HotFolder(tmp_path, settle=0.3) as hot:

        def rsync() -> None:
            staging = tmp_path / ".~tmp~"
            staging.mkdir()
            for i in range(3):
                (staging / f"IMG_{i}.JPG").write_bytes(textured_jpeg(92 + i))
            time.sleep(2.5)  # the watch looks below every two seconds
            for i in range(3):
                os.rename(staging / f"IMG_{i}.JPG", tmp_path / f"IMG_{i}.JPG")

        t = in_thread(rsync)
        got = [p.name for p, _ in collect_paths(hot, t, 3, grace=1.0)]
        t.join()
    assert got == ["IMG_0.JPG", "IMG_1.JPG", "IMG_2.JPG"]
    assert hot.landing == [] and hot.most_landed_below() == (0, None)


@pytest.mark.slow
@pytest.mark.parametrize("polling", [False, True])
def test_a_frame_renamed_is_not_stacked_again_and_its_old_name_is_free(
    tmp_path: Path, polling: bool
) -> None:
    """A tool (or a gphoto2 ``--hook-script``) that downloads to a fixed name and renames each
    file by its naming template: every shot is one frame, taken once. gphoto2
    ``--force-overwrite`` unlinks an existing file before renaming its download over it (main.c,
    ``save_camera_file_to_file``): with file events, the new shot is a new frame too (a poll
    cannot tell it from a rewrite when the new file gets the old one's inode)."""
    names = ["Beetle_0001.jpg", "Beetle_0002.jpg"]
    sizes = [len(textured_jpeg(seed)) for seed in (50, 51, 52, 53)]
    expected = [("capture.jpg", sizes[0]), ("capture.jpg", sizes[1])]
    if not polling:
        expected += [("capt0000.jpg", sizes[2]), ("capt0000.jpg", sizes[3])]
    got: list[tuple[Path, int]] = []

    def taken(count: int) -> None:
        wait_until(lambda: len(got) >= count)

    with HotFolder(tmp_path, settle=0.3, polling=polling) as hot:

        def tool() -> None:
            for i, name in enumerate(names):
                write_slowly(tmp_path / "capture.jpg", textured_jpeg(50 + i))
                taken(i + 1)  # under its first name, before the rename
                os.rename(tmp_path / "capture.jpg", tmp_path / name)
            if not polling:
                gphoto2_save(tmp_path, "capt0000.jpg", textured_jpeg(52))
                taken(3)
                os.unlink(tmp_path / "capt0000.jpg")  # --force-overwrite after a restart
                gphoto2_save(tmp_path, "capt0000.jpg", textured_jpeg(53))

        t = in_thread(tool)
        collect_paths(hot, t, len(expected), grace=1.5, got=got)
        t.join()
    assert [(p.name, size) for p, size in got] == expected


def delete_and_write_anew(folder: Path) -> tuple[bool, list[str]]:
    """Polled: a.jpg written and taken, then deleted and b.jpg written at once. Whether b.jpg got
    a.jpg's inode number, and the names handed out."""
    got: list[tuple[Path, int]] = []
    reused: list[bool] = []
    with HotFolder(folder, settle=0.3, polling=True) as hot:

        def writer() -> None:
            (folder / "a.jpg").write_bytes(textured_jpeg(60))
            wait_until(lambda: len(got) >= 1)
            number = (folder / "a.jpg").stat().st_ino
            data = textured_jpeg(61)  # encoded first: the freed number goes to the next file made
            (folder / "a.jpg").unlink()  # within one poll interval: one look sees both
            (folder / "b.jpg").write_bytes(data)
            reused.append((folder / "b.jpg").stat().st_ino == number)

        t = in_thread(writer)
        collect_paths(hot, t, 2, got=got)
        t.join()
    return reused == [True], [p.name for p, _ in got]


@pytest.mark.slow
def test_a_polled_frame_given_a_deleted_frames_inode_number_is_a_new_frame(
    tmp_path: Path,
) -> None:
    """ext4 gives a new file the inode number of one deleted just before: a poll sees the frame
    taken gone and the new one there with its number, which watchdog reports as a rename. The
    new frame was then left out as the old one renamed (and a RAW waiting for it as its JPEG
    partner was stacked alone). Tried a few times: the number is not always given again (a
    file another test worker makes meanwhile may take it)."""
    for attempt in range(10):
        (folder := tmp_path / str(attempt)).mkdir()
        reused, names = delete_and_write_anew(folder)
        if reused:
            break
    else:
        pytest.skip("the file system gave no inode number again")
    assert names == ["a.jpg", "b.jpg"]


@pytest.mark.slow
def test_a_raw_copied_onto_a_share_is_taken_whole_after_a_stall(share: tuple[Path, Path]) -> None:
    """Samba sets an SMB client's copy to its full size, then fills it (exfat-linux issue #31:
    "an initial truncate() to set the filesize, and then the real file content is written"). A
    stall in the copy longer than the settle time (Wi-Fi) left a polled RAW looking finished with
    a zero tail, which LibRaw decodes: it must wait for the rest instead."""
    pytest.importorskip("rawpy", reason="RAW support is the [raw] extra")
    from rig.sim.bayer import encode_bayer_dng

    frame = np.random.default_rng(7).integers(4096, 60000, (240, 320, 3), dtype=np.uint16)
    data = encode_bayer_dng(frame)
    server, mount = share
    unreadable: list[UnreadableFrame] = []
    with HotFolder(mount, settle=0.3, prefer="raw") as hot:

        def smb_copy() -> None:
            with (server / "DSC_0001.dng").open("wb") as fh:
                fh.truncate(len(data))
                for start in range(0, len(data), 16384):
                    fh.write(data[start : start + 16384])
                    fh.flush()
                    time.sleep(0.8 if start == 16384 * 3 else 0.02)

        t = in_thread(smb_copy)
        got = collect_frames(hot, t, 1, grace=1.5, on_unreadable=unreadable.append)
        t.join()
    assert unreadable == []
    assert [f.path.name for f in got] == ["DSC_0001.dng"]
    assert np.array_equal(got[0].image, read_image(server / "DSC_0001.dng"))


def rsync_save(folder: Path, name: str, data: bytes, *, gap: float = 0.0) -> None:
    """Write as rsync's receiver does: ``.<name>.XXXXXX`` (receiver.c ``get_tmpname``), renamed
    when whole; ``gap`` seconds between 8 KiB pieces."""
    temporary = folder / f".{name}.Xy12Zw"
    with temporary.open("wb") as fh:
        for start in range(0, len(data), 8192):
            fh.write(data[start : start + 8192])
            fh.flush()
            time.sleep(gap)
    os.rename(temporary, folder / name)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("save", "names"),
    [
        (rsync_save, ["IMG_0001.JPG", "IMG_0001.CR3"]),
        (gphoto2_save, ["capt0000.jpg", "capt0001.cr3"]),
    ],
)
def test_a_raw_still_downloading_under_a_temporary_name_is_waited_for(
    tmp_path: Path, save: Callable[..., None], names: list[str]
) -> None:
    """--prefer raw: the JPEG lands, then the RAW downloads for longer than the pair wait under
    a temporary name. Stacking the JPEG meanwhile made the stack a rendered one, and every RAW
    after it was rejected: the JPEG waits while its partner is on its way."""
    jpeg, raw = names
    with HotFolder(tmp_path, settle=0.2, prefer="raw", pair_wait=0.5) as hot:

        def camera() -> None:
            save(tmp_path, jpeg, textured_jpeg(60))
            save(tmp_path, raw, b"raw bytes" * 20000, gap=0.07)  # 1.5 s

        t = in_thread(camera)
        got = collect_paths(hot, t, 1, skipped=1, grace=1.5)
        t.join()
    assert [p.name for p, _ in got] == [raw]
    assert [p.name for p in hot.skipped] == [jpeg]


def test_a_frame_swapped_for_a_fifo_after_it_was_checked_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever may drop files into the folder can put a FIFO where a frame was, between the
    look that found a complete regular file and the look at whether it is one of our results
    (the attacker's timing, made certain here): opening it to read would wait for a writer
    forever, and the watch with it."""
    for i in range(2):
        write_old(tmp_path / f"a{i}.jpg", textured_jpeg(i))
    select = HotFolder._select

    def select_then_swap(self: HotFolder, now: float) -> Any:
        entry = select(self, now)
        if entry is not None and entry.path.name == "a1.jpg" and entry.path.is_file():
            entry.path.unlink()
            os.mkfifo(entry.path)
        return entry

    monkeypatch.setattr(HotFolder, "_select", select_then_swap)
    got: list[ReadyFrame] = []
    with HotFolder(tmp_path, settle=0.2) as hot:
        reader = in_thread(lambda: got.extend(hot.frames(idle_timeout=1.0)))
        reader.join(LIMIT)
        if reader.is_alive():  # let it go: a writer opening the FIFO ends the wait
            os.close(os.open(tmp_path / "a1.jpg", os.O_WRONLY | os.O_NONBLOCK))
        assert not reader.is_alive(), "blocked opening a FIFO"
    assert [f.path.name for f in got] == ["a0.jpg"]


@pytest.mark.slow
def test_a_frame_linked_in_is_taken_though_the_idle_timeout_is_shorter_than_its_wait(
    tmp_path: Path,
) -> None:
    """A hard link into the folder (``cp -l``, an importer linking its downloads in) raises no
    close event: the frame is taken after ``close_grace`` quiet seconds. An idle timeout shorter
    than that ended the watch first, and the frame, in the folder in time, was never stacked."""
    hot, elsewhere = tmp_path / "hot", tmp_path / "elsewhere"
    hot.mkdir()
    elsewhere.mkdir()
    (elsewhere / "a1.jpg").write_bytes(textured_jpeg(1))
    with HotFolder(hot, settle=0.2, close_grace=2.0) as hot_folder:
        assert hot_folder.uses_close_events
        os.link(elsewhere / "a1.jpg", hot / "a1.jpg")
        got = list(hot_folder.paths(idle_timeout=0.5))
    assert got == [hot / "a1.jpg"]


@pytest.mark.parametrize("poll", [False, True], ids=["events", "poll"])
def test_a_folder_replaced_under_its_name_is_a_one_line_error(tmp_path: Path, poll: bool) -> None:
    """A tethering program makes its folder again after the photographer moved it to the
    Trash, or a card reader is unplugged and mounted again at the same path: the watch went on
    following the old folder, and the frames landing in the new one waited for ever."""
    hot_dir = tmp_path / "hot"
    hot_dir.mkdir()

    def replace() -> None:
        hot_dir.rename(tmp_path / "trash")
        hot_dir.mkdir()
        (hot_dir / "IMG_0003.JPG").write_bytes(textured_jpeg(3))

    with HotFolder(hot_dir, polling=poll) as hot:
        threading.Timer(0.3, replace).start()
        with pytest.raises(HotFolderError, match="the folder was replaced"):
            list(hot.paths(idle_timeout=10))
