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
