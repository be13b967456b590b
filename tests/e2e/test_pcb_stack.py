"""The real pcb stack (strong focus breathing): it stacks with no visible misalignment.

The residual is measured independently of stackrig's own registration: SIFT keypoints matched
between consecutive frames after both are warped into the reference with the recovered
transforms should not move. Needs ../shared (the project's shared data; see the
``shared_data`` fixture).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from stacker.io import read_image
from stacker.stack import Stacker


@pytest.fixture(scope="module")
def stacked(shared_data: Path) -> tuple[Stacker, list[np.ndarray]]:
    frames = [read_image(p) for p in sorted((shared_data / "pcb-stack").glob("pcb_0*.jpg"))]
    s = Stacker()
    for i, f in enumerate(frames):
        s.add(f, name=f"pcb_{i + 1:03d}.jpg")
    return s, frames


def residuals(a: np.ndarray, b: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    """Displacements (px) of SIFT matches between two images already in the same geometry."""
    x, y, w, h = crop
    ga = cv2.cvtColor(a[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
    gb = cv2.cvtColor(b[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
    sift = cv2.SIFT_create(nfeatures=3000)
    ka, da = sift.detectAndCompute(ga, None)
    kb, db = sift.detectAndCompute(gb, None)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.7 * n.distance]
    pa = np.array([ka[m.queryIdx].pt for m in good])
    pb = np.array([kb[m.trainIdx].pt for m in good])
    d = pb - pa
    return d[np.hypot(*d.T) < 3.0]  # gross mismatches are not misalignment


def test_pcb_frames_register_with_subpixel_residual(stacked) -> None:
    s, frames = stacked
    assert all(r.merged for r in s.records)
    h, w = frames[0].shape[:2]
    warped = [
        cv2.warpAffine(f, r.matrix[:2], (w, h), flags=cv2.INTER_CUBIC)
        for f, r in zip(frames, s.records, strict=True)
    ]
    crop = s.crop_rectangle()
    for i in range(1, len(frames)):
        d = residuals(warped[i - 1], warped[i], crop)
        bias = np.hypot(*np.median(d, axis=0))
        spread = np.median(np.hypot(*d.T))
        print(
            f"pair {i}: {len(d)} matches, residual bias {bias:.3f} px, median |d| {spread:.3f} px"
        )
        assert len(d) > 50
        # Sparse matches on the blurriest pairs locate the residual less precisely (about
        # median |d| / sqrt(n)), and at macro distances magnification varies a little with
        # depth, which one similarity cannot follow everywhere.
        limit = 0.3 if len(d) >= 200 else 0.75
        assert bias < limit, f"frames {i - 1} and {i} are misaligned by {bias:.2f} px"
        assert spread < 1.2


def test_pcb_breathing_recovered(stacked) -> None:
    s, _ = stacked
    scales = [float(np.sqrt(np.linalg.det(r.matrix[:2, :2]))) for r in s.records]
    # the field of view widens by several percent, steadily, from near to far
    assert all(b > a for a, b in itertools.pairwise(scales))
    assert 1.02 < scales[-1] < 1.08


def tile_detail(img: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """Fine detail per tile of 6x8 over ``rect`` (x, y, w, h): the mean square of the
    Laplacian of luma."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    x, y, cw, ch = rect
    e = (cv2.Laplacian(g, cv2.CV_32F) ** 2)[y : y + ch, x : x + cw]
    th, tw = ch // 6, cw // 8
    return e[: th * 6, : tw * 8].reshape(6, th, 8, tw).mean(axis=(1, 3))


def test_pcb_composite_is_as_sharp_as_the_sharpest_frame_everywhere(stacked) -> None:
    """All in focus: in every tile the composite has about the detail of the best frame there.

    (focus-stack's reference result is not a usable yardstick for this: its maximum-coefficient
    selection also amplifies noise, which any energy measure counts as detail.)
    """
    s, frames = stacked
    h, w = frames[0].shape[:2]
    out = s.result(crop=False)
    ours = tile_detail(out, s.crop_rectangle())
    best = np.max(
        [tile_detail(cv2.warpAffine(f, r.matrix[:2], (w, h), flags=cv2.INTER_CUBIC),
                     s.crop_rectangle())
         for f, r in zip(frames, s.records, strict=True)],
        axis=0,
    )  # fmt: skip
    ratio = ours / best
    print(
        f"composite / sharpest frame per tile: median {np.median(ratio):.2f}, min {ratio.min():.2f}"
    )
    assert np.median(ratio) > 0.9
    assert ratio.min() > 0.6


def test_a_composite_put_in_another_frames_geometry_keeps_its_detail(stacked) -> None:
    """The composite is merged in the first frame's geometry. The same frames fed far end
    first with the near end as the reference are resampled a second time at the end; a
    bilinear second resampling kept 0.71 of the near-to-far composite's fine detail (median
    over the tiles), a bicubic one keeps 0.97."""
    forward, frames = stacked
    s = Stacker(reference="last", far_first=True)
    for f in frames[::-1]:
        s.add(f)
    rect = forward.crop_rectangle()
    ratio = tile_detail(s.result(crop=False), rect) / tile_detail(forward.result(crop=False), rect)
    print(f"fine detail against near to far: median {np.median(ratio):.3f}, min {ratio.min():.3f}")
    assert np.median(ratio) > 0.9
