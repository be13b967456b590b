"""Laplacian pyramids (Burt & Adelson, "The Laplacian Pyramid as a Compact Image Code", 1983).

8-bit frames are held as int16 in fixed point (value x 16): every band of an 8-bit image fits,
four bits of fraction keep rounding error below visibility, and the whole pyramid takes half the
memory and bandwidth of float32. 16-bit frames use float32.
"""

from __future__ import annotations

import cv2
import numpy as np

from stacker.cvtyping import cv

FIXED_POINT = 16  # int16 pyramids store value * 16


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
    """The pyramid's element type for frames of ``image_dtype``."""
    return np.dtype(np.int16) if image_dtype == np.uint8 else np.dtype(np.float32)


def to_work(image: np.ndarray, gains: tuple[float, float, float], out: np.ndarray) -> np.ndarray:
    """Convert a frame to the pyramid's working type, applying per-channel exposure gains."""
    if out.dtype == np.int16:
        scale = (*tuple(float(g) * FIXED_POINT for g in gains), 0.0)
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
