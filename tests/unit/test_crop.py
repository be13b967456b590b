"""The area every merged frame covers, and the rectangle a composite is cropped to."""

from __future__ import annotations

import numpy as np
import pytest

from stacker.crop import Coverage
from stacker.errors import StackerError


def shifted(dx: float, dy: float = 0.0) -> np.ndarray:
    """Frame -> reference pixels of a frame whose view moved by (dx, dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def test_the_rectangle_is_what_every_frame_covers() -> None:
    coverage = Coverage(240, 320)
    for dx in (0.0, 20.0, 40.0):
        coverage.add(shifted(dx, dx / 2))
    x, y, w, h = coverage.rectangle()
    assert 40 <= x <= 44 and 20 <= y <= 24
    assert 316 <= x + w <= 320 and 236 <= y + h <= 240


def test_frames_that_share_no_area_are_refused_not_returned_whole() -> None:
    """A view that moved across the whole frame during the stack (a rail on a slope, 6 px a
    frame over 60 frames): the whole frame came back as the crop, uncropped and, from another
    reference than the first, smeared out of its edge pixels, with exit 0."""
    coverage = Coverage(240, 320)
    for i in range(60):
        coverage.add(shifted(6.0 * i))
    with pytest.raises(StackerError, match="share no area that every one of them covers"):
        coverage.rectangle()


def scaled(s: float, width: int, height: int) -> np.ndarray:
    """Frame -> reference pixels of a frame imaged ``1 / s`` times larger (focus breathing)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([[s, 0.0, cx * (1 - s)], [0.0, s, cy * (1 - s)], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(("width", "height"), [(6000, 400), (400, 6000), (1200, 800)])
def test_a_long_thin_frame_keeps_its_short_side(width: int, height: int) -> None:
    """A 6000x400 strip (a scanned slide's edge, a PCB's row of pins) breathing 12 %: its
    common area is 357 px tall, and the crop kept 303, a tenth of the strip thrown away on
    a grid of 320x21 cells (one cell eroded and rounded away on each side was 19 px)."""
    coverage = Coverage(height, width)
    for s in (1.0, 1 / 1.04, 1 / 1.08, 1 / 1.12):
        coverage.add(scaled(s, width, height))
    x, y, w, h = coverage.rectangle()
    common_w, common_h = width / 1.12, height / 1.12
    x0, y0 = (width - common_w) / 2, (height - common_h) / 2
    assert x >= x0 and y >= y0 and x + w <= x0 + common_w and y + h <= y0 + common_h
    assert w >= 0.98 * common_w and h >= 0.98 * common_h
