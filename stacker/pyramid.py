"""Laplacian pyramids (Burt & Adelson, "The Laplacian Pyramid as a Compact Image Code", 1983).

Pyramids are int16, half the memory and bandwidth of float32. 8-bit frames are held in fixed
point (value x 16): every band fits, and four bits of fraction keep rounding error below
visibility. 16-bit frames are held at a quarter of their value: 14 bits, the depth of a RAW
sensor's data (whose linear 16-bit rendering is the sensor's values times about four), with room
for gains up to 2 and for the bands. At 45 MP this is what keeps a RAW stack within its memory
bar (float32 would add about 1.4 GB).
"""

from __future__ import annotations

import cv2
import numpy as np

from stacker.cvtyping import cv

FIXED_POINT = 16  # int16 pyramids of 8-bit frames store value * 16
WIDE_SCALE = 0.25  # int16 pyramids of 16-bit frames store value / 4


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


def to_work(image: np.ndarray, gains: tuple[float, float, float], out: np.ndarray) -> np.ndarray:
    """Convert a frame to the pyramid's working type, applying per-channel exposure gains.

    A clipped value stays clipped: the sensor saw at least that much, and a gain below 1 made
    every blown highlight of a brighter frame grey and tinted (a gain per channel), dimming
    them in the composite where every frame had them white.

    An 8-bit frame goes through a per-channel table of its 256 values (a third faster than the
    multiplication, and the same values: both round to nearest and saturate).
    """
    gains_at_top = np.maximum(np.asarray(gains, dtype=np.float64), 1.0)
    if out.dtype == np.int16 and image.dtype == np.uint8:
        values = np.arange(256, dtype=np.float64)[:, None] * (np.asarray(gains) * FIXED_POINT)
        values[255] = 255.0 * gains_at_top * FIXED_POINT
        table = np.rint(values).clip(-32768, 32767).astype(np.int16).reshape(256, 1, 3)
        return cv2.LUT(image, table, dst=out)
    k = 1.0
    if out.dtype == np.int16:
        k = FIXED_POINT if image.dtype == np.uint8 else WIDE_SCALE
        scale = (*tuple(float(g) * k for g in gains), 0.0)
        cv.multiply(image, scale, dst=out, dtype=cv2.CV_16S)  # saturates, never wraps
    else:
        cv.multiply(image, (*tuple(float(g) for g in gains), 0.0), dst=out, dtype=cv2.CV_32F)
    if image.dtype.kind == "u" and np.any(np.asarray(gains) < 1.0):
        top = np.iinfo(image.dtype).max
        np.copyto(out, (top * k * gains_at_top).astype(out.dtype), where=image >= top)
    return out


def from_work(work: np.ndarray, image_dtype: np.dtype) -> np.ndarray:
    """Convert working values back to the frames' type, rounding and clipping (``work`` is
    clobbered)."""
    cv.max(work, 0, dst=work)
    if image_dtype == np.uint8:
        return cv2.convertScaleAbs(work, alpha=1.0 / FIXED_POINT)
    if work.dtype == np.int16:  # saturating scale back: white stays 65535
        return cv.multiply(work, (1.0 / WIDE_SCALE,) * 3 + (0.0,), dtype=cv2.CV_16U)
    return np.minimum(work, 65535).astype(np.uint16)


def build(image: np.ndarray, levels: int, out: list[np.ndarray]) -> list[np.ndarray]:
    """Laplacian pyramid of ``image`` into preallocated ``out`` (finest band first, lowpass
    last), allocating nothing: ``image`` (in the working type) is clobbered.

    Each Gaussian level is made in the next band's buffer and expanded into this band's, where
    the difference then replaces it; coarser expansions go to the start of ``image``, whose
    content is no longer needed once the finest band is made. A frame-sized allocation per
    level would cost more than the arithmetic: at 24 MP the kernel zeroes about 240 MB of fresh
    pages per frame.
    """
    if levels == 1:
        out[0][...] = image
        return out
    gauss = image
    for k in range(levels - 1):
        h, w = gauss.shape[:2]
        nh, nw = out[k + 1].shape[:2]
        cv2.pyrDown(gauss, dst=out[k + 1], dstsize=(nw, nh))
        up = out[0] if k == 0 else image.reshape(-1)[: gauss.size].reshape(gauss.shape)
        cv2.pyrUp(out[k + 1], dst=up, dstsize=(w, h))
        cv2.subtract(gauss, up, dst=out[k])
        gauss = out[k + 1]
    return out


def collapse(
    bands: list[np.ndarray], stop: int = 0, scratch: list[np.ndarray] | None = None
) -> np.ndarray:
    """Reconstruct the image from its bands, down to level ``stop`` (0 = full resolution).

    With ``scratch`` (buffers shaped like ``bands``) no level-sized memory is allocated; the
    returned array is then one of the scratch buffers.
    """
    img = bands[-1].copy()
    for k in range(len(bands) - 2, stop - 1, -1):
        h, w = bands[k].shape[:2]
        out = scratch[k] if scratch is not None else None
        up = cv2.pyrUp(img, dst=out, dstsize=(w, h))
        img = cv2.add(up, bands[k], dst=up)
    return img
