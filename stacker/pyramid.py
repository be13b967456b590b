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
    """Convert a frame to the pyramid's working type, applying per-channel exposure gains."""
    if out.dtype == np.int16:
        k = FIXED_POINT if image.dtype == np.uint8 else WIDE_SCALE
        scale = (*tuple(float(g) * k for g in gains), 0.0)
        cv.multiply(image, scale, dst=out, dtype=cv2.CV_16S)  # saturates, never wraps
    else:
        cv.multiply(image, (*tuple(float(g) for g in gains), 0.0), dst=out, dtype=cv2.CV_32F)
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
    last)."""
    gauss = image
    for k in range(levels - 1):
        h, w = out[k + 1].shape[:2]
        down = cv2.pyrDown(gauss, dstsize=(w, h))
        up = cv2.pyrUp(down, dstsize=(gauss.shape[1], gauss.shape[0]))
        cv2.subtract(gauss, up, dst=out[k])
        gauss = down
    out[levels - 1][...] = gauss
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
