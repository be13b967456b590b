"""A pipelined run gives the sequential run's results; reading ahead is bounded and in order."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack, write_stack
from stacker.errors import UnreadableImageError
from stacker.io import read_image
from stacker.offline import collect_inputs, stack_files
from stacker.pipeline import ReadAhead
from stacker.stack import Stacker
from tests.signalled import Signalled, taken_elsewhere

SPEC = SceneSpec(width=480, height=320, seed=5, jpeg_quality=92)


@pytest.fixture(scope="module")
def frames() -> list:
    return list(SyntheticStack(SPEC, 8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("frames")
    write_stack(out, SPEC, 6)
    return out


@pytest.mark.parametrize("method", ["pyramid", "depthmap"])
def test_overlapped_merge_gives_the_sequential_result(frames, method: str) -> None:
    runs = {}
    for overlap in (False, True):
        s = Stacker(method=method, overlap=overlap)
        previews = []
        for i, f in enumerate(frames):
            s.add(f.image, name=f"f{i}", position_um=f.focus_um)
            if i % 3 == 1:  # reading mid-stack waits for the merge in progress
                previews.append(s.preview())
        runs[overlap] = (s, previews)
    (seq, seq_previews), (ovl, ovl_previews) = runs[False], runs[True]
    assert [r.transform for r in seq.records] == [r.transform for r in ovl.records]
    assert [r.merged for r in seq.records] == [r.merged for r in ovl.records]
    for a, b in zip(seq_previews, ovl_previews, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seq.result(), ovl.result())
    np.testing.assert_array_equal(seq.depth_index(), ovl.depth_index())
    np.testing.assert_array_equal(seq.last_frame_preview(), ovl.last_frame_preview())
    assert seq.crop_rectangle() == ovl.crop_rectangle()


def test_a_raw_stack_merges_behind_one_warped_frame_with_the_sequential_result(
    frames, monkeypatch
) -> None:
    """RAW (linear) frames keep one warped frame, not two (270 MB at 45 MP): the next frame is
    warped only once the last has merged. A slow merge shows a warp that does not wait."""
    from stacker import merge

    fold = merge._Merger.add

    def slow(self, *args, **kwargs) -> None:
        time.sleep(0.05)
        fold(self, *args, **kwargs)

    monkeypatch.setattr(merge._Merger, "add", slow)
    linear = [(f.image.astype(np.uint16) * 257, f.focus_um) for f in frames[:5]]
    runs = {}
    for overlap in (False, True):
        s = Stacker(overlap=overlap)
        for i, (image, um) in enumerate(linear):
            s.add(image, name=f"f{i}", position_um=um, linear=True)
        runs[overlap] = s
    assert len(runs[True]._buffers) == 1
    np.testing.assert_array_equal(runs[False].result(), runs[True].result())
    np.testing.assert_array_equal(runs[False].depth_index(), runs[True].depth_index())


@pytest.mark.parametrize("cores", [2, 4])
def test_pipelined_files_give_the_sequential_files(
    folder: Path, tmp_path: Path, cores: int, monkeypatch
) -> None:
    """On two cores the next frame is decoded after the last is stacked, into its array; on
    more, on the reader thread while it is stacked, into the other of two."""
    monkeypatch.setattr("stacker.offline.usable_cores", lambda: cores)
    files = collect_inputs([folder])
    outs = {}
    for pipelined in (False, True):
        out = tmp_path / f"out-{pipelined}.png"
        depth = tmp_path / f"depth-{pipelined}.png"
        run = stack_files(files, out, depth_map=depth, pipelined=pipelined)
        assert run.stacker.frames_merged == len(files)
        outs[pipelined] = (read_image(out), read_image(depth))
    for a, b in zip(outs[False], outs[True], strict=True):
        np.testing.assert_array_equal(a, b)


def test_each_frame_is_let_go_before_the_next_is_read(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    """On two cores the next frame is read once the last is stacked, and by then nothing holds
    the last: the frame pool decodes the next one into its array, and at 45 MP a RAW frame's
    270 MB is not held while LibRaw decodes the next one."""
    import weakref

    from stacker import io
    from stacker.framepool import FramePool
    from stacker.io import OrientedReader

    monkeypatch.setattr("stacker.offline.usable_cores", lambda: 2)
    files = collect_inputs([folder])
    lend = FramePool.lend
    lent: list[bool] = []

    def counted(self, shape):
        array = lend(self, shape)
        lent.append(array is not None)
        return array

    monkeypatch.setattr(FramePool, "lend", counted)
    stack_files(files, tmp_path / "pooled.png")
    # One array, lent again for every frame (OpenCV 5 on: before it, imread takes no array).
    assert lent == [True] * len(files) if io._IMREAD_INTO else not lent

    # Without the pool (which keeps its array), nothing holds a frame once it is stacked.
    monkeypatch.setattr(FramePool, "lend", lambda self, shape: None)
    read = OrientedReader.read
    last: list[weakref.ref] = []
    alive_at_read: list[bool] = []

    def watched(self, path):
        alive_at_read.append(bool(last) and last[-1]() is not None)
        image, note = read(self, path)
        last.append(weakref.ref(image))
        return image, note

    monkeypatch.setattr(OrientedReader, "read", watched)
    stack_files(files, tmp_path / "out.png")
    assert alive_at_read == [False] * len(files)


def test_unreadable_frame_is_reported_in_order(folder: Path, tmp_path: Path) -> None:
    files = collect_inputs([folder])
    bad = tmp_path / "frame_0002b.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    files.insert(3, bad)
    seen: dict[bool, list[tuple[str, str | None]]] = {}
    for pipelined in (False, True):
        order: list[tuple[str, str | None]] = []
        stack_files(files, tmp_path / "o.png", pipelined=pipelined,
                    on_frame=lambda p, r, w, order=order: order.append((p.name, w)))  # fmt: skip
        seen[pipelined] = order
    assert seen[False] == seen[True]
    assert [name for name, _ in seen[True]] == [p.name for p in files]
    warning = seen[True][3][1]
    assert warning is not None and warning.startswith(f"skipped {bad}: not a readable image")


def test_read_ahead_holds_at_most_depth_items() -> None:
    loading = threading.Event()
    loaded: list[int] = []

    def load(i: int) -> int:
        loaded.append(i)
        loading.set()
        return i * 10

    with ReadAhead(range(6), load, depth=1) as reader:
        got = []
        for item in reader:
            time.sleep(0.05)  # a slow consumer: the reader must wait, not run ahead
            assert len(loaded) - len(got) <= 2  # the item in hand and at most one more
            assert reader.holding <= 1
            got.append(item.value)
    assert got == [0, 10, 20, 30, 40, 50] and loaded == list(range(6))


def test_read_ahead_hands_over_load_errors_and_raises_source_errors() -> None:
    def load(i: int) -> int:
        if i == 2:
            raise UnreadableImageError(f"frame {i}: not a readable image")
        return i

    def source():
        yield from range(4)
        raise OSError("the folder went away")

    with ReadAhead(source(), load) as reader:
        got = []
        with pytest.raises(OSError, match="went away"):
            for item in reader:
                got.append((item.item, item.value, str(item.error) if item.error else None))
    assert got == [(0, 0, None), (1, 1, None), (2, None, "frame 2: not a readable image"),
                   (3, 3, None)]  # fmt: skip


def test_closing_early_stops_the_reader() -> None:
    loaded: list[int] = []
    reader = ReadAhead(range(1000), loaded.append, depth=2)
    with reader:
        for item in reader:
            if item.item == 3:
                break
    assert not reader._thread.is_alive()
    assert len(loaded) <= 6


def test_sequential_reading_loads_on_the_consumer_thread() -> None:
    threads: list[str] = []

    def load(i: int) -> None:
        threads.append(threading.current_thread().name)

    with ReadAhead(range(3), load, depth=0) as r:
        assert [x.item for x in r] == [0, 1, 2]
    assert set(threads) == {threading.current_thread().name}


def test_opencv_threads_are_set_for_the_block_and_restored() -> None:
    import cv2

    from stacker.offline import opencv_threads, usable_cores

    before = cv2.getNumThreads()
    with opencv_threads(1):
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before
    with opencv_threads(None):
        assert cv2.getNumThreads() == before
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_a_signal_taken_by_another_thread_reaches_a_waiting_consumer() -> None:
    """A stop signal that lands just before the consumer blocks waiting for an item, or on
    another thread, is handled only when the main thread next runs Python: ``stacker watch``,
    waiting on an empty folder for a frame, missed a SIGHUP and watched on for good (one run in
    a few hundred)."""
    never = threading.Event()

    def waiting() -> Iterator[int]:
        never.wait(10)  # an empty hot folder; ends after 10 s so that a failing test ends
        return
        yield

    try:
        with taken_elsewhere() as send:
            threading.Timer(0.3, send).start()
            started = time.monotonic()
            with pytest.raises(Signalled), ReadAhead(waiting(), lambda item: item) as items:
                for _ in items:
                    pass
            assert time.monotonic() - started < 5
    finally:
        never.set()
