"""Focus peaking: the in-focus edges of a live-view frame, marked in colour.

The frame is reduced to a small working width, its luma's focus measure is taken with the same
operator the merger uses (:func:`stacker.focus.focus_measure`: locally averaged Laplacian energy;
Pertuz et al. 2013), and the places where that measure stands out are painted over the frame.
"Stands out" is relative to the frame's own sharpest detail (a fraction of a high percentile), so
a dim or low-contrast subject still peaks, with an absolute floor so a frame that is blurred
everywhere marks nothing. Everything runs at the working width (320 px by default), which keeps
the cost to a few milliseconds on a Raspberry Pi class CPU whatever the camera sends.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stacker.focus import focus_measure, luma
from stacker.io import white_level

PEAK_COLOUR = (255, 0, 255)
"""BGR magenta: rare in subjects, unlike camera makers' red, and readable on green and grey."""


@dataclass(frozen=True)
class Peaking:
    """Where a frame is in focus: a boolean mask at the working size."""

    mask: np.ndarray
    fraction: float
    """Share of the frame marked as in focus (0 to 1)."""


def peaking_mask(
    frame: np.ndarray,
    *,
    work_width: int = 320,
    relative: float = 0.35,
    floor: float = 0.01,
) -> Peaking:
    """The in-focus areas of a BGR (or grey) frame, at ``work_width`` pixels across.

    ``relative``: a pixel is in focus where its focus measure exceeds this fraction of the
    frame's 99.5th percentile; ``floor``: and exceeds this absolute measure (luma scaled to 0..1;
    sensor noise of 1.5 levels in 255 gives about 0.001, a sharp edge about 0.5),
    so a frame with nothing sharp in it marks nothing.
    """
    h, w = frame.shape[:2]
    scale = min(1.0, work_width / max(1, w))
    small = frame
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    gray = luma(small) * np.float32(1.0 / white_level(small))
    measure = focus_measure(gray, window=1.0)
    threshold = max(floor, relative * float(np.percentile(measure, 99.5)))
    mask = measure > threshold
    return Peaking(mask=mask, fraction=float(mask.mean()))


def paint_peaking(frame: np.ndarray, peaking: Peaking) -> np.ndarray:
    """A copy of the 8-bit BGR ``frame`` with the in-focus areas' edges painted in magenta."""
    h, w = frame.shape[:2]
    mask = peaking.mask.astype(np.uint8)
    edges = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    # Edges of the marked areas and a sparse fill inside them: the subject stays visible.
    fill = mask.copy()
    fill[1::2, :] = 0
    fill[:, 1::2] = 0
    marks = cv2.resize(edges | fill, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    out[marks] = PEAK_COLOUR
    return out
