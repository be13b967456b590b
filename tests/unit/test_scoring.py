"""Yardsticks and the textbook baseline stacker."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from evaluation.scoring import (
    baseline_stack,
    corner_rms_error,
    coverage_mask,
    edge_band_mask,
    fit_to_reference,
    flat_mask,
    psnr,
    to_reference,
)
from rig.sim.scene import SceneSpec, SyntheticStack

W, H = 320, 240


def test_psnr_basics() -> None:
    a = np.full((10, 10, 3), 100, np.uint8)
    assert psnr(a, a) == math.inf
    b = a + 10
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 10))
    a16 = a.astype(np.uint16) * 257
    assert psnr(a16, a16 + 2570) == pytest.approx(20 * math.log10(65535 / 2570))
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    c = a.copy()
    c[5:] = 0  # differences only outside the mask
    assert psnr(a, c, mask) == math.inf
    assert psnr(a, c) == pytest.approx(10 * math.log10(255**2 / (100**2 / 2)))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, a[:5])
    with pytest.raises(ValueError, match="no pixel"):
        psnr(a, c, np.zeros((10, 10), bool))


def test_corner_error_of_identity_against_a_known_shift() -> None:
    shift = np.array([[1.0, 0, 3.0], [0, 1.0, 4.0], [0, 0, 1.0]])
    assert corner_rms_error(np.eye(3), shift, 640, 480) == pytest.approx(5.0)
    assert corner_rms_error(shift[:2], shift, 640, 480) == pytest.approx(0.0)
    # A 1 % zoom about the origin moves the far corner by 1 % of the diagonal.
    zoom = np.diag([1.01, 1.01, 1.0])
    far = 0.01 * math.hypot(639, 479)
    expected = math.sqrt((0 + (0.01 * 639) ** 2 + far**2 + (0.01 * 479) ** 2) / 4)
    assert corner_rms_error(zoom, np.eye(3), 640, 480) == pytest.approx(expected)


def test_coverage_mask_of_a_shifted_frame() -> None:
    shift = np.array([[1.0, 0, 10.0], [0, 1.0, 0.0], [0, 0, 1.0]])
    mask = coverage_mask([np.eye(3), shift], (100, 50), inset_px=0)
    # x_frame = x_ref + 10: reference columns 90.. fall outside the frame.
    assert mask[:, :89].all()
    assert not mask[:, 91:].any()


def _truth() -> np.ndarray:
    return SyntheticStack(SceneSpec(width=W, height=H, seed=11), 2).truth()


def test_baseline_recovers_a_known_shift() -> None:
    truth = _truth()
    known = np.array([[1.0, 0, 5.0], [0, 1.0, -3.0], [0, 0, 1.0]])
    moved = cv2.warpAffine(truth, known[:2], (W, H), flags=cv2.INTER_CUBIC)
    result = baseline_stack([truth, moved])
    assert result.failed == []
    assert corner_rms_error(result.transforms[1], known, W, H) < 0.5
    assert corner_rms_error(np.eye(3), known, W, H) > 5  # the check can fail


def test_baseline_beats_the_worst_single_frame() -> None:
    spec = SceneSpec(width=W, height=H, seed=12, jitter_px=2.0)
    stack = SyntheticStack(spec, 8)
    frames = list(stack)
    truth = stack.truth()
    result = baseline_stack(f.image for f in frames)
    mask = coverage_mask([f.transform for f in frames], (W, H), inset_px=6)
    singles = [psnr(to_reference(f.image, f.transform, (W, H)), truth, mask) for f in frames]
    stacked = psnr(result.image, truth, mask)
    assert stacked > min(singles) + 3
    assert result.index_map.max() > 0 and result.index_map.shape == (H, W)


def test_fit_to_reference_finds_a_crop() -> None:
    truth = _truth()
    crop = truth[14:200, 23:300]
    fit = fit_to_reference(crop, truth, work_px=160)
    expected = np.array([[1.0, 0, -23.0], [0, 1.0, -14.0], [0, 0, 1.0]])
    assert corner_rms_error(fit.transform, expected, crop.shape[1], crop.shape[0]) < 0.3
    assert fit.correlation > 0.95


def test_fit_to_reference_looks_only_where_the_mask_says() -> None:
    """A composite made in the geometry of a frame that saw 6 % less of the scene, put back in
    the truth's: beyond what that frame saw its borders are replicated. Fitted over the whole
    image they pull the fit a quarter pixel off (which then resamples a perfect output);
    fitted over the area the frame saw, it is exact."""
    truth = _truth()
    M = cv2.getRotationMatrix2D((W / 2, H / 2), 0, 1.06)
    M[:, 2] += (-9.0, -4.0)
    flags, border = cv2.INTER_CUBIC, cv2.BORDER_REPLICATE
    seen = cv2.warpAffine(truth, M, (W, H), flags=flags, borderMode=border)
    back = cv2.warpAffine(seen, M, (W, H), flags=flags | cv2.WARP_INVERSE_MAP, borderMode=border)
    inside = cv2.warpAffine(np.ones((H, W), np.uint8), M, (W, H),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)  # fmt: skip
    inside = cv2.erode(inside, np.ones((9, 9), np.uint8)) > 0
    whole = fit_to_reference(back, truth, work_px=160)
    masked = fit_to_reference(back, truth, work_px=160, mask=inside)
    assert corner_rms_error(whole.transform, np.eye(3), W, H) > 0.15  # the check can fail
    assert corner_rms_error(masked.transform, np.eye(3), W, H) < 0.05


def test_flat_and_edge_masks() -> None:
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, 40:] = 200  # one strong vertical edge at x = 40
    img[:30, :20] = np.arange(20, dtype=np.uint8)[None, :, None] * 5  # a ramp: not flat
    flat = flat_mask(img, radius=2)
    assert flat[45, 10] and flat[45, 60]
    assert not flat[10, 10]  # on the ramp
    assert not flat[45, 39]  # next to the edge
    band = edge_band_mask(img, width=4)
    assert band[45, 36] and band[45, 43]
    assert not band[45, 30] and not band[45, 50]
    # The synthetic scene has flat patches (only sensor noise there) and strong edges.
    truth = _truth()
    assert 0.01 < flat_mask(truth).mean() < 0.5
    assert 0.01 < edge_band_mask(truth).mean() < 0.6
