"""Focus measures: how sharp each region of a frame is.

The measure is the locally averaged energy of the Laplacian of luma (a standard and robust
choice; Pertuz et al., "Analysis of focus measure operators for shape-from-focus", 2013), taken on
a reduced-resolution image: depth changes slowly across a subject, and the reduction suppresses
sensor noise, which would otherwise pass for detail in flat areas.
"""

from __future__ import annotations

import cv2
import numpy as np


def luma(image: np.ndarray) -> np.ndarray:
    """Float32 luma (Rec. 601 weights) of a BGR frame, in the frame's value range."""
    if image.ndim == 2:
        return image.astype(np.float32)
    return cv2.transform(image.astype(np.float32, copy=False), np.array([[0.114, 0.587, 0.299]]))


def focus_measure(gray: np.ndarray, window: float = 2.0) -> np.ndarray:
    """Smoothed Laplacian energy of a float32 luma image (same size)."""
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    energy = cv2.multiply(lap, lap)
    return cv2.GaussianBlur(energy, (0, 0), window)
