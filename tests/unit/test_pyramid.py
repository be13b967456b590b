"""The Laplacian pyramid built in place: the same bands as the textbook construction, exact
reconstruction, and no level-sized allocation left to chance."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stacker import pyramid


def textbook(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Burt & Adelson with a fresh array at every step."""
    bands, gauss = [], image
    for _ in range(levels - 1):
        down = cv2.pyrDown(gauss)
        bands.append(cv2.subtract(gauss, cv2.pyrUp(down, dstsize=gauss.shape[1::-1])))
        gauss = down
    return [*bands, gauss]


@pytest.mark.parametrize(
    "shape", [(16, 16), (47, 33), (120, 200), (257, 129), (523, 40), (600, 31)]
)
def test_bands_match_the_textbook_and_collapse_exactly(shape: tuple[int, int]) -> None:
    """Every band as the textbook makes it, each level expanded a strip at a time into a
    scratch of :data:`~stacker.pyramid.SCRATCH_ROWS` rows (the taller frames take several
    strips, with odd heights at every level)."""
    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    h, w = shape
    levels = pyramid.pyramid_levels(h, w, coarsest=4)
    shapes = pyramid.level_shapes(h, w, levels)
    out = [np.full((3, bh, bw), 12345, np.int16) for bh, bw in shapes]
    work = pyramid.to_planes(frame, (1.0, 1.0, 1.0), out[0])
    # The textbook pyramid of the interleaved frame, each band then made planar.
    expected = textbook(np.ascontiguousarray(work.transpose(1, 2, 0)), levels)
    buffers = [b.ctypes.data for b in out]
    scratch = np.full((min(h, pyramid.SCRATCH_ROWS), w), 12345, np.int16)
    bands = pyramid.build(levels, out, scratch)
    assert [b.ctypes.data for b in bands] == buffers  # written where they were, not replaced
    for got, want in zip(bands, expected, strict=True):
        np.testing.assert_array_equal(got, want.transpose(2, 0, 1))
    restored = pyramid.from_work(pyramid.collapse(bands), np.dtype(np.uint8))
    np.testing.assert_array_equal(restored, frame)


def test_a_single_level_is_the_image() -> None:
    frame = np.arange(3 * 16 * 20, dtype=np.int16).reshape(3, 16, 20)
    out = [frame.copy()]
    pyramid.build(1, out, np.zeros(frame.shape[1:], np.int16))
    np.testing.assert_array_equal(out[0], frame)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(16, 16), (47, 33), (600, 257), (1031, 40)])
def test_reduced_is_the_pyramid_level_of_the_interleaved_frame(dtype, shape) -> None:
    """Made in strips of planes, every row of every level as ``cv2.pyrDown`` makes it (the
    600- and 1031-row frames take several strips, with odd heights and widths)."""
    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, np.iinfo(dtype).max, (*shape, 3), dtype=dtype)
    want = frame
    for times in range(4):
        np.testing.assert_array_equal(pyramid.reduced(frame, times), want)
        want = cv2.pyrDown(want)


@pytest.mark.parametrize("gains", [(1.0, 1.0, 1.0), (0.83, 1.21, 1.999), (1.5, 0.5, 1.0312)])
def test_eight_bit_frames_convert_as_a_rounded_saturating_product(gains) -> None:
    frame = np.arange(256, dtype=np.uint8).repeat(3 * 7).reshape(256, 7, 3)
    got = pyramid.to_planes(frame, gains, np.empty((3, 256, 7), np.int16))
    want = np.rint(frame * (np.array(gains) * pyramid.FIXED_POINT)).clip(-32768, 32767)
    # 255 is clipped: it stays at least white, whatever a gain below 1 would make of it
    want[255] = np.rint(255 * np.maximum(gains, 1.0) * pyramid.FIXED_POINT)
    np.testing.assert_array_equal(got, want.astype(np.int16).transpose(2, 0, 1))


@pytest.mark.parametrize("gains", [(1.0, 1.0, 1.0), (0.83, 1.21, 1.999), (0.9999999, 1.0, 0.5)])
def test_sixteen_bit_frames_convert_at_a_quarter_and_keep_white_white(gains) -> None:
    """600 rows: the frame is split in several strips. White comes back 65535, not 65532:
    a quarter of it is 16383.75, and a gain a hair under 1 (as every pair gain is where the
    frames match) once truncated it."""
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 65536, (600, 9, 3), dtype=np.uint16)
    frame[::50] = 65535
    got = pyramid.to_planes(frame, gains, np.empty((3, 600, 9), np.int16))
    scale = np.array(gains) * pyramid.WIDE_SCALE
    want = np.rint(frame * scale).clip(-32768, 32767)
    # white stays white in a channel whose gain would have dimmed it
    white = np.rint(65535 * pyramid.WIDE_SCALE * np.maximum(gains, 1.0))
    want = np.where((frame == 65535) & (np.array(gains) < 1.0), white, want)
    np.testing.assert_array_equal(got, want.astype(np.int16).transpose(2, 0, 1))
    back = pyramid.from_work(got, np.dtype(np.uint16))
    assert (back[frame == 65535] == 65535).all()
