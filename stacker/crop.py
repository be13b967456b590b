"""The area every merged frame covers, and the largest upright rectangle inside it.

Smeared or half-covered borders are the first thing users notice in a stacked image, so results
are cropped by default. Coverage is the intersection of the frames' warped footprints, kept as a
small mask; because each footprint is convex (a warped rectangle), peeling off the edge line
with the most uncovered pixels until none is left finds the rectangle quickly.
"""

from __future__ import annotations

import cv2
import numpy as np

from stacker.errors import StackerError


class NoCommonAreaError(StackerError):
    """No place is covered by every merged frame: there is nothing to crop to."""


class Coverage:
    """Intersection of warped frame footprints on a coarse grid of the reference frame."""

    def __init__(self, height: int, width: int, longest: int = 320) -> None:
        self.full = (height, width)
        # The short side gets as many cells as a 3:2 frame's: a crop loses about a cell on
        # each side (eroded, then rounded inwards), and a 6000x400 strip on 320 cells along
        # its length had 21 across, 19 px each: a tenth of its height cut from the composite.
        shortest = longest * 2 / 3
        self.scale = min(1.0, max(longest / max(height, width), shortest / min(height, width)))
        self.size = (max(2, round(width * self.scale)), max(2, round(height * self.scale)))
        self.mask = np.full((self.size[1], self.size[0]), 255, np.uint8)

    def footprint(self, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Where a frame warped by ``matrix`` (frame -> reference pixels) lands, at ``size``.

        ``size`` is (w, h) of the wanted mask; the result is 0/255, eroded by one pixel so that
        interpolated border pixels do not count as covered.
        """
        h, w = self.full
        sx, sy = size[0] / w, size[1] / h
        s = np.diag([sx, sy, 1.0])
        m = s @ matrix @ np.linalg.inv(s)
        ones = np.full((size[1], size[0]), 255, np.uint8)
        out = cv2.warpPerspective(ones, m, size, flags=cv2.INTER_NEAREST, borderValue=0)
        return cv2.erode(out, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)

    def add(self, matrix: np.ndarray) -> None:
        """Intersect with the footprint of a frame warped by ``matrix``."""
        cv2.bitwise_and(self.mask, self.footprint(matrix, self.size), dst=self.mask)

    def rectangle(self, matrix: np.ndarray | None = None) -> tuple[int, int, int, int]:
        """(x, y, w, h) in full-resolution pixels of an upright rectangle fully covered.

        ``matrix`` maps the coverage's geometry to the output's (for a reference other than the
        first frame); the rectangle is then found in the output's geometry.
        """
        mask: np.ndarray = self.mask
        if matrix is not None and not np.allclose(matrix, np.eye(3)):
            s = np.diag([self.size[0] / self.full[1], self.size[1] / self.full[0], 1.0])
            m = s @ matrix @ np.linalg.inv(s)
            mask = cv2.warpPerspective(mask, m, self.size, flags=cv2.INTER_NEAREST, borderValue=0)
        if not mask.any():
            # The view moved across the whole frame in the stack (a rail on a slope, a slow
            # drift over hundreds of frames): the whole frame came back, called cropped, and
            # from any reference but the first, smeared out of its edge pixels.
            raise NoCommonAreaError(
                "the merged frames share no area that every one of them covers (the view moved "
                "across the whole frame during the stack): stack a shorter run of frames, or "
                "keep the first frame's view with --no-crop"
            )
        x0, y0, x1, y1 = largest_rectangle(mask > 0)
        h, w = self.full
        fx, fy = w / self.mask.shape[1], h / self.mask.shape[0]
        left, top = int(np.ceil(x0 * fx)), int(np.ceil(y0 * fy))
        right, bottom = int(np.floor(x1 * fx)), int(np.floor(y1 * fy))
        if right <= left or bottom <= top:  # less than a pixel of the full frame
            left, top = min(left, w - 1), min(top, h - 1)
            right, bottom = max(right, left + 1), max(bottom, top + 1)
        return left, top, right - left, bottom - top


def largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of a large all-True upright rectangle in ``mask``."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0, 0, mask.shape[1], mask.shape[0]
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    while y1 > y0 and x1 > x0:
        sub = mask[y0:y1, x0:x1]
        if sub.all():
            break
        misses = (
            sub.shape[1] - int(sub[0].sum()),
            sub.shape[1] - int(sub[-1].sum()),
            sub.shape[0] - int(sub[:, 0].sum()),
            sub.shape[0] - int(sub[:, -1].sum()),
        )
        side = int(np.argmax(misses))
        if side == 0:
            y0 += 1
        elif side == 1:
            y1 -= 1
        elif side == 2:
            x0 += 1
        else:
            x1 -= 1
    return x0, y0, x1, y1
