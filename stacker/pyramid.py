"""Laplacian pyramids (Burt & Adelson, "The Laplacian Pyramid as a Compact Image Code", 1983).

Pyramids are int16, half the memory and bandwidth of float32. 8-bit frames are held in fixed
point (value x 16): every band fits, and four bits of fraction keep rounding error below
visibility. 16-bit frames are held at a quarter of their value: 14 bits, the depth of a RAW
sensor's data (whose linear 16-bit rendering is the sensor's values times about four), with room
for gains up to 2 and for the bands. At 45 MP this is what keeps a RAW stack within its memory
bar (float32 would add about 1.4 GB).

Pyramids are planar, a band (3, h, w) holding each channel's plane in one piece: OpenCV has
vectorised kernels of ``pyrDown``, ``pyrUp`` and ``LUT`` for one channel, but (OpenCV 5.1) not
for three, where they run two to three times slower than on the three planes one by one.
Element-wise operations take a band as one image of 3h rows (:func:`rows`).
"""

from __future__ import annotations

import cv2
import numpy as np

from stacker.cvtyping import cv

FIXED_POINT = 16  # int16 pyramids of 8-bit frames store value * 16
WIDE_SCALE = 0.25  # int16 pyramids of 16-bit frames store value / 4
_STRIP_ROWS = 256  # rows of a frame split into planes at a time (:func:`to_planes`)
EXPAND_ROWS = 128  # rows of a band expanded and subtracted at a time (:func:`build`)
SCRATCH_ROWS = EXPAND_ROWS + 4  # rows of scratch :func:`build` needs (a strip and its margin)


def pyramid_levels(height: int, width: int, coarsest: int = 24) -> int:
    """Number of levels so the coarsest band is about ``coarsest`` pixels on its short side."""
    n = 1
    while min(height, width) / 2**n >= coarsest:
        n += 1
    return n


def level_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(h, w) of each level as cv2.pyrDown produces them."""
    shapes = [(height, width)]
    for _ in range(levels - 1):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def work_dtype(image_dtype: np.dtype) -> np.dtype:
    """The pyramid's element type for frames of ``image_dtype`` (8 or 16 bits): int16."""
    return np.dtype(np.int16)


def reduced(image: np.ndarray, times: int) -> np.ndarray:
    """``image`` (h, w, 3) after ``times`` ``cv2.pyrDown``: the same values, made a plane at a
    time (see the module docstring; at 24 MP 0.05 s instead of 0.09).

    The first reduction, the costly one, splits the frame into planes a strip of rows at a
    time: each strip with the two rows either side that its five-tap Gaussian reaches (the
    reduced strip's first row, which sees a reflected border there, is left out), so no plane
    of the frame is ever held whole.
    """
    if times == 0:
        return image
    h, w = image.shape[:2]
    half = np.empty((3, (h + 1) // 2, (w + 1) // 2), image.dtype)
    step = _STRIP_ROWS // 2  # output rows per strip
    strip = np.empty((3, min(h, 2 * step + 4), w), image.dtype)
    for a in range(0, half.shape[1], step):
        b = min(half.shape[1], a + step)
        r0, r1 = max(0, 2 * a - 2), min(h, 2 * b + 2)  # r0 is even: row r0 // 2 comes first
        planes = [p[: r1 - r0] for p in strip]
        cv2.split(image[r0:r1], planes)
        for plane, out in zip(planes, half, strict=True):
            down = cv2.pyrDown(plane)
            out[a:b] = down[a - r0 // 2 : b - r0 // 2]
    for _ in range(times - 1):
        half = np.stack([cv2.pyrDown(plane) for plane in half])
    return cv2.merge(list(half))


def to_work(
    image: np.ndarray,
    gains: tuple[float, float, float],
    out: np.ndarray,
    white: float | None = None,
) -> np.ndarray:
    """Convert a frame to float32 working values (``out``, interleaved like the frame), applying
    per-channel exposure gains: the depth-map merger's blend. A clipped value (at ``white``,
    see :func:`to_planes`) stays clipped."""
    cv.multiply(image, (*tuple(float(g) for g in gains), 0.0), dst=out, dtype=cv2.CV_32F)
    if image.dtype.kind == "u" and np.any(np.asarray(gains) < 1.0):
        top = white or np.iinfo(image.dtype).max
        gains_at_top = np.maximum(np.asarray(gains, dtype=np.float64), 1.0)
        np.copyto(out, (top * gains_at_top).astype(out.dtype), where=image >= top)
    return out


def to_planes(
    image: np.ndarray,
    gains: tuple[float, float, float],
    out: np.ndarray,
    white: float | None = None,
) -> np.ndarray:
    """Convert a frame (h, w, 3) to the pyramid's planar int16 working values ``out``
    (3, h, w), applying per-channel exposure gains.

    A clipped value (at ``white``: the stack's :func:`~stacker.io.white_level`, by default the
    type's largest) stays clipped: the sensor saw at least that much, and a gain below 1 made
    every blown highlight of a brighter frame grey and tinted (a gain per channel), dimming
    them in the composite where every frame had them white.

    The frame is split into planes a strip of rows at a time (the strip's planes stay in
    cache). An 8-bit plane goes through its channel's table of its 256 values (faster than the
    multiplication, and the same values: both round to nearest and saturate).
    """
    h, w = image.shape[:2]
    g = np.asarray(gains, dtype=np.float64)
    gains_at_top = np.maximum(g, 1.0)
    top = white or np.iinfo(image.dtype).max
    k = FIXED_POINT if image.dtype == np.uint8 else WIDE_SCALE
    tables = None
    if image.dtype == np.uint8:
        values = np.arange(256, dtype=np.float64)[:, None] * (g * k)
        values[255] = 255.0 * gains_at_top * k
        tables = np.rint(values).clip(-32768, 32767).astype(np.int16).T.copy()
    clipped = np.rint(top * k * gains_at_top).astype(np.int16)  # 65535 / 4 is 16383.75
    strip = np.empty((3, min(h, _STRIP_ROWS), w), image.dtype)
    for y0 in range(0, h, _STRIP_ROWS):
        y1 = min(h, y0 + _STRIP_ROWS)
        planes = [p[: y1 - y0] for p in strip]
        cv2.split(image[y0:y1], planes)
        for c, plane in enumerate(planes):
            dst = out[c, y0:y1]
            if tables is not None:
                cv2.LUT(plane, tables[c], dst=dst)
                continue
            cv2.multiply(plane, float(g[c] * k), dst=dst, dtype=cv2.CV_16S)  # saturates
            if g[c] < 1.0:
                np.copyto(dst, clipped[c], where=plane >= top)
    return out


def from_work(work: np.ndarray, image_dtype: np.dtype) -> np.ndarray:
    """Convert planar working values back to an interleaved frame of type ``image_dtype``,
    rounding and clipping (``work`` is clobbered)."""
    flat = rows(work)
    cv.max(flat, 0, dst=flat)
    if image_dtype == np.uint8:
        planes = cv2.convertScaleAbs(flat, alpha=1.0 / FIXED_POINT)
    else:  # saturating scale back: white stays 65535
        planes = cv.multiply(flat, 1.0 / WIDE_SCALE, dtype=cv2.CV_16U)
    return cv2.merge(list(planes.reshape(work.shape)))


def rows(planes: np.ndarray) -> np.ndarray:
    """A planar array (3, h, w) as one 2D image of 3h rows, for element-wise OpenCV calls (which
    would take a 3D array for an image of ``w`` channels)."""
    return planes.reshape(-1, planes.shape[-1])


def build(levels: int, out: list[np.ndarray], scratch: np.ndarray) -> list[np.ndarray]:
    """Laplacian pyramid, in place, of the planar image (3, h, w) that ``out[0]`` holds on entry
    (:func:`to_planes` writes it there): the bands go into preallocated planar ``out`` (finest
    first, lowpass last), allocating nothing. ``scratch``, a C-contiguous array of the bands'
    type holding at least ``min(h, SCRATCH_ROWS)`` rows of ``w``, is clobbered.

    Each Gaussian level is made in the next band's buffer; it is then expanded and subtracted
    from the level above :data:`EXPAND_ROWS` rows at a time, so the scratch is a strip rather
    than a plane of the frame (48 MB at 24 MP, 90 MB at 45 MP; and a frame-sized allocation
    per level would cost more than the arithmetic: at 24 MP the kernel zeroes about 240 MB of
    fresh pages per frame). Each strip is expanded from the rows of the next level it needs
    with one more on either side, and its rows that see a reflected border there are left
    out, so every row is the one ``cv2.pyrUp`` makes of the whole level.
    """
    h0, w0 = out[0].shape[1:]
    assert scratch.flags.c_contiguous and scratch.size >= min(h0, SCRATCH_ROWS) * w0  # views
    flat = scratch.reshape(-1)
    for c in range(out[0].shape[0]):
        planes = [band[c] for band in out]
        for k in range(levels - 1):
            gauss, small = planes[k], planes[k + 1]
            h, w = gauss.shape
            nh, nw = small.shape
            cv2.pyrDown(gauss, dst=small, dstsize=(nw, nh))
            for y0 in range(0, h, EXPAND_ROWS):
                y1 = min(h, y0 + EXPAND_ROWS)
                s0, s1 = max(0, y0 // 2 - 1), min(nh, (y1 + 1) // 2 + 1)
                rows = min(h, 2 * s1) - 2 * s0  # odd only at an odd level's last row
                up = flat[: rows * w].reshape(rows, w)
                cv2.pyrUp(small[s0:s1], dst=up, dstsize=(w, rows))
                strip = gauss[y0:y1]
                cv2.subtract(strip, up[y0 - 2 * s0 : y1 - 2 * s0], dst=strip)
    return out


def collapse(
    bands: list[np.ndarray], stop: int = 0, scratch: list[np.ndarray] | None = None
) -> np.ndarray:
    """Reconstruct the planar image from its bands, down to level ``stop`` (0 = full
    resolution).

    With ``scratch`` (buffers shaped like ``bands``) no level-sized memory is allocated; the
    returned array is then one of the scratch buffers.
    """
    img = bands[-1].copy()
    for k in range(len(bands) - 2, stop - 1, -1):
        h, w = bands[k].shape[1:]
        up = scratch[k] if scratch is not None else np.empty_like(bands[k])
        for c, plane in enumerate(img):
            cv2.pyrUp(plane, dst=up[c], dstsize=(w, h))
        cv2.add(rows(up), rows(bands[k]), dst=rows(up))
        img = up
    return img
