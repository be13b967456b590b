"""Focus measures: how sharp each region of a frame is.

The measure is the locally averaged energy of the Laplacian of luma (a standard and robust
choice; Pertuz et al., "Analysis of focus measure operators for shape-from-focus", 2013). The
Laplacian is taken at half resolution, from the frame already warped into the reference at full
resolution and area-averaged: adjacent frames of a stack differ in blur by a fraction of a pixel,
which a quarter-size image no longer shows, and resampling a small image by a sub-pixel shift
blurs it by an amount that changes from frame to frame (enough to decide which of two adjacent
frames wins). The energy is then averaged over a window of about 6 full-resolution pixels and
kept at the tracker's reduced size: depth changes slowly across a subject, and averaging
suppresses sensor noise, which would otherwise pass for detail in flat areas.
"""

from __future__ import annotations

import cv2
import numpy as np

from stacker.cvtyping import cv

MEASURE_LEVEL = 1
"""Pyramid level (1 = half size) of the luma the Laplacian is taken on."""
WINDOW_PX = 6.0
"""Sigma of the averaging window, in full-resolution pixels."""
COARSE_PX = 1024
"""The depth map's coarse measure is taken at the first level no longer than this."""


def coarse_level(height: int, width: int) -> int:
    """Pyramid level of the depth map's coarse measure for frames of this size (at least one
    below :data:`MEASURE_LEVEL`).

    Blur grows with resolution: where a large frame's steps are wide, a place half-way
    between two frames is blurred in both beyond what the half-size Laplacian sees, and noise
    picks its frame; so does a ground whose only texture is coarse. A Laplacian at about the
    scale of a 1000 px frame still tells the nearer frame (the depth map takes it where the
    fine measure is unsure: :meth:`stacker.stack.Stacker.depth_frames`)."""
    longest = max(height, width)
    level = MEASURE_LEVEL + 1
    while -(-longest // 2**level) > COARSE_PX:
        level += 1
    return level


def luma(image: np.ndarray) -> np.ndarray:
    """Float32 luma (Rec. 601 weights) of a BGR frame, in the frame's value range."""
    if image.ndim == 2:
        return image.astype(np.float32)
    return cv2.transform(image.astype(np.float32, copy=False), np.array([[0.114, 0.587, 0.299]]))


def measure_luma(frame: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Luma of a full-size warped frame at :data:`MEASURE_LEVEL` (area-averaged), float32,
    times ``gain`` (the frame's exposure gain)."""
    h, w = frame.shape[:2]
    size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
    half = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(half, cv2.COLOR_BGR2GRAY) if half.ndim == 3 else half
    return cv.multiply(gray, gain, dtype=cv2.CV_32F) if gain != 1.0 else gray.astype(np.float32)


def focus_measure(
    gray: np.ndarray,
    size: tuple[int, int] | None = None,
    window: float = WINDOW_PX / 2,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """Smoothed Laplacian energy of a float32 luma image, area-averaged to ``size`` (w, h;
    default: the same size) and then blurred with sigma ``window`` pixels of that size.

    ``scratch``, a float32 array of ``gray``'s shape, holds the Laplacian and its energy: a
    caller measuring frame after frame passes the same one. Fresh, those 24 MB (at the half
    size of a 24 MP frame) cost as much again as the filtering, in page faults.
    """
    lap = cv2.Laplacian(gray, cv2.CV_32F, dst=scratch, ksize=3)
    energy = cv2.multiply(lap, lap, dst=lap)
    if size is not None and size != (gray.shape[1], gray.shape[0]):
        energy = cv2.resize(energy, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(energy, (0, 0), window)
