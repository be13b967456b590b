"""Frames decoded into the arrays of frames already stacked (stacker.framepool): an array is
lent only when nothing else holds it, and a decode into it gives what a plain decode gives,
also for files OpenCV cannot decode into a given array."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stacker import io
from stacker.errors import UnreadableImageError
from stacker.framepool import FramePool

SHAPE = (48, 64, 3)


def _jpeg(path: Path, seed: int, shape: tuple[int, int, int] = SHAPE) -> Path:
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(image, (5, 5), 1.0))
    return path


def test_an_array_is_lent_again_only_once_nothing_else_holds_it() -> None:
    pool = FramePool(size=2)
    first = pool.lend(SHAPE)
    second = pool.lend(SHAPE)
    assert first is not None and second is not None and first is not second
    assert pool.lend(SHAPE) is None  # both held, and the pool is full
    address = first.ctypes.data
    view = first[:, :2]
    del first
    assert pool.lend(SHAPE) is None  # a view still holds it
    del view
    again = pool.lend(SHAPE)
    assert again is not None and again.ctypes.data == address
    assert not FramePool.written(again)
    again[-1] = 0
    assert FramePool.written(again)


def test_frames_of_another_size_let_the_old_arrays_go() -> None:
    pool = FramePool(size=1)
    kept = pool.lend(SHAPE)
    other = pool.lend((SHAPE[0] + 2, SHAPE[1], 3))
    assert other is not None and other.shape[0] == SHAPE[0] + 2
    assert kept is not None and kept.shape == SHAPE  # the caller's, untouched by the pool


@pytest.mark.skipif(not io._IMREAD_INTO, reason="decoding into an array needs OpenCV 5")
def test_a_frame_decoded_into_a_stacked_frames_array_is_the_same_frame(tmp_path: Path) -> None:
    pool = FramePool()
    names = [_jpeg(tmp_path / f"f{i}.jpg", i) for i in range(4)]
    first = io.read_image(names[0], pool=pool)
    assert np.array_equal(first, io.read_image(names[0]))
    address = first.ctypes.data
    del first  # stacked: nothing holds it any more
    second = io.read_image(names[1], pool=pool)
    assert second.ctypes.data == address
    assert np.array_equal(second, io.read_image(names[1]))
    # Held frames are never written over: the pool makes another array, then stops lending.
    kept = second.copy()
    third = io.read_image(names[2], pool=pool)
    fourth = io.read_image(names[3], pool=pool)
    assert np.array_equal(second, kept)
    assert third.ctypes.data != second.ctypes.data != fourth.ctypes.data
    assert np.array_equal(fourth, io.read_image(names[3]))


@pytest.mark.skipif(not io._IMREAD_INTO, reason="decoding into an array needs OpenCV 5")
def test_a_file_opencv_cannot_decode_into_the_array_gives_its_usual_result(
    tmp_path: Path,
) -> None:
    good = _jpeg(tmp_path / "good.jpg", 1)
    # Complete to the end marker, but its image data cut: OpenCV leaves a given array as it was.
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:400] + b"\xff\xd9")
    try:
        plain: np.ndarray | None = io.read_image(cut)
    except UnreadableImageError:
        plain = None
    pool = FramePool()
    if plain is None:
        with pytest.raises(UnreadableImageError):
            io.read_image(cut, pool=pool)
    else:
        assert np.array_equal(io.read_image(cut, pool=pool), plain)
    # An array of another size than the frame's (a header that does not tell the truth):
    # OpenCV raises, and the frame is decoded without it.
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    wrong = np.zeros((10, 10, 3), np.uint8)
    decoded = io._imread_into(str(good), flags, wrong)
    assert decoded is not None and np.array_equal(decoded, io.read_image(good))
    assert not wrong.any()


@pytest.mark.parametrize("kept", [0.3, 0.6, 0.9])
def test_a_frame_cut_short_decoded_into_a_used_array_shows_nothing_of_the_last(
    tmp_path: Path, kept: float
) -> None:
    """A JPEG cut inside its image data (a card pulled mid-write) decodes, as libjpeg makes
    it, its missing rows grey: into an array that held the frame before, every row is
    written, none left over from that frame."""
    shape = (480, 640, 3)
    earlier = _jpeg(tmp_path / "earlier.jpg", 1, shape)
    whole = _jpeg(tmp_path / "whole.jpg", 2, shape).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: int(len(whole) * kept)] + b"\xff\xd9")
    pool = FramePool()
    first = io.read_image(earlier, pool=pool)
    address = first.ctypes.data
    del first
    decoded = io.read_image(cut, pool=pool)
    assert decoded.ctypes.data == address or not io._IMREAD_INTO
    assert np.array_equal(decoded, io.read_image(cut))
