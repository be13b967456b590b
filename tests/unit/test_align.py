"""Pairwise registration recovers known transforms (the scikit-image way: warp by a known amount,
check it is recovered), under the blur, gain and noise differences of focus-stack neighbours."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stacker.align import corner_displacement, project_to_model, register, rescale_matrix

W, H = 640, 480


def textured(seed: int = 0) -> np.ndarray:
    """Band-limited texture with detail at several scales (float32, 0..255)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W), np.float32)
    for s in (2, 5, 13, 40):
        noise = rng.random((H // s + 2, W // s + 2)).astype(np.float32)
        img += cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC) * s**0.5
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), angle_deg, scale)
    m[:, 2] += (tx, ty)
    return np.vstack([m, [0, 0, 1]])


def moved(base: np.ndarray, t: np.ndarray, blur: float, gain: float, seed: int) -> np.ndarray:
    """``base`` seen through ``t`` (template -> moving coords), blurred, with gain and noise."""
    img = cv2.warpPerspective(base, t, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    rng = np.random.default_rng(seed)
    return img * gain + 4.0 + rng.normal(0, 1.0, img.shape).astype(np.float32)


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty", "blur", "gain"),
    [
        (1.004, 0.0, 1.3, -0.7, 0.0, 1.0),  # one breathing step
        (1.02, 0.4, 6.2, -4.1, 1.5, 1.08),  # blur and exposure differ, as between neighbours
        (0.99, -2.0, -25.0, 12.0, 2.5, 0.92),  # 2 degrees, 4 % of the width
    ],
)
def test_similarity_recovered(scale, angle, tx, ty, blur, gain) -> None:
    base = textured()
    truth = similarity(scale, angle, tx, ty)
    reg = register(base, moved(base, truth, blur, gain, 1), model="similarity")
    # reg.matrix maps moving -> template pixels, the inverse of ``truth``
    err = corner_displacement(reg.matrix @ truth, W, H)
    assert err < 0.03, f"corner error {err:.4f} px"
    assert reg.score > 0.95


def test_translation_model_ignores_nothing_it_should_fit() -> None:
    base = textured(2)
    truth = similarity(1.0, 0.0, 3.25, -2.5)
    reg = register(base, moved(base, truth, 1.0, 1.0, 3), model="translation")
    assert np.allclose(reg.matrix[:2, :2], np.eye(2))
    assert np.allclose(reg.matrix[:2, 2], [-3.25, 2.5], atol=0.02)


@pytest.mark.parametrize("model", ["affine", "homography"])
def test_general_models(model: str) -> None:
    base = textured(4)
    truth = similarity(1.01, 0.5, 2.0, 1.0)
    truth[0, 1] += 0.004  # a little shear: not a similarity
    if model == "homography":
        truth[2, 0] = 2e-6
    reg = register(base, moved(base, truth, 0.8, 1.0, 5), model=model)
    assert corner_displacement(reg.matrix @ truth, W, H) < 0.05


def test_similarity_cannot_fit_shear_and_says_so_in_score() -> None:
    base = textured(6)
    truth = similarity(1.0, 0.0, 0.0, 0.0)
    truth[0, 1] = 0.03
    sim = register(base, moved(base, truth, 0, 1.0, 7), model="similarity")
    aff = register(base, moved(base, truth, 0, 1.0, 7), model="affine")
    assert aff.score > sim.score


def test_unrelated_images_score_low() -> None:
    reg = register(textured(8), textured(9), model="similarity")
    assert reg.score < 0.5


def test_model_projection_and_rescaling() -> None:
    m = similarity(1.02, 1.0, 5.0, -3.0)
    m[0, 1] += 0.01
    p = project_to_model(m, "similarity")
    assert np.isclose(p[0, 0], p[1, 1]) and np.isclose(p[0, 1], -p[1, 0])
    t = project_to_model(m, "translation")
    assert np.allclose(t[:2, :2], np.eye(2)) and np.allclose(t[:2, 2], m[:2, 2])
    # a transform at half resolution, scaled up, maps scaled points the same way
    half = rescale_matrix(m, 0.5)
    pt = np.array([100.0, 60.0, 1.0])
    assert np.allclose(m @ pt, rescale_matrix(half, 2.0) @ pt)
    assert np.allclose((half @ (pt * [0.5, 0.5, 1]))[:2], (m @ pt)[:2] * 0.5)


@pytest.mark.parametrize("pattern", ["pads", "grid"])
def test_a_texture_finer_than_the_coarse_levels_registers_without_locking_on_a_wrong_period(
    pattern: str,
) -> None:
    """A PCB's 20 px pad array, a 32 px grid: their coarsest levels are flat but for aliasing,
    and registration started there came back 10 and 220 px off (frames merged off by whole
    periods, a grid stack refused). The pyramid now stops above the level that lost the
    signal."""
    h, w = 640, 960
    y, x = np.mgrid[: h + 80, : w + 80].astype(np.float32)
    if pattern == "pads":
        scene = np.where(((x % 20) < 11) & ((y % 20) < 11), 180.0, 60.0).astype(np.float32)
    else:
        scene = np.where(((x % 32) < 2) | ((y % 32) < 2), 30.0, 220.0).astype(np.float32)
    rng = np.random.default_rng(3)

    def frame(tx: float, ty: float) -> np.ndarray:
        m = np.float32([[1, 0, 40 + tx], [0, 1, 40 + ty]])
        img = cv2.warpAffine(scene, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        return img + rng.normal(0, 1.5, img.shape).astype(np.float32)

    truth = (-2.8, 1.2)
    reg = register(frame(0, 0), frame(*truth))
    # moving pixel (x, y) shows the scene at (x + tx, y + ty): the first frame's (x + tx, ...)
    assert np.hypot(reg.matrix[0, 2] - truth[0], reg.matrix[1, 2] - truth[1]) < 0.2, reg.matrix
    assert reg.score > 0.9


@pytest.mark.parametrize("shift", [(0.0, 60.0), (70.0, 0.0)])
def test_a_pair_that_moved_beyond_the_border_band_is_registered_on_shared_content(shift) -> None:
    """Frames 15 % of their height apart (a rail on a slope, a knock): the grid's border band
    is 6 %, and beyond it the template was compared with the moving frame's reflection: here
    0.13 and 0.08 px off (0.3-1.4 px on synthetic stacks at 640x480), scores 0.94, merged
    without a word. Samples from outside the moving frame are left out now: 0.003 px."""
    big = textured(3)
    h, w = H - 80, W - 80
    dx, dy = int(shift[0]), int(shift[1])
    template = big[:h, :w]
    rng = np.random.default_rng(4)
    moving = big[dy : dy + h, dx : dx + w] * 1.05 + rng.normal(0, 1.0, (h, w)).astype(np.float32)
    truth = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]])
    reg = register(template, np.ascontiguousarray(moving), model="similarity")
    err = corner_displacement(reg.matrix @ truth, w, h)
    assert err < 0.02, f"corner error {err:.3f} px"
    assert reg.score > 0.95


def test_distortion_is_what_a_transform_has_beyond_a_similarity() -> None:
    from stacker.align import distortion

    assert distortion(similarity(1.04, 2.0, 30.0, -12.0), W, H) < 1e-9
    shear = np.eye(3)
    shear[0, 1] = 0.2
    assert distortion(shear, W, H) == pytest.approx(0.2 / np.sqrt(2), rel=0.02)  # 0.1 each way
    tilt = np.eye(3)
    tilt[2, 0] = 2e-4  # perspective: the far side a tenth larger than the near one
    assert distortion(tilt, W, H) > 0.1


def lattice_with_a_disc(period: int, h: int, w: int) -> np.ndarray:
    """A compound eye's or a diatom array's lattice of bumps, and one non-periodic feature."""
    y, x = np.mgrid[:h, :w].astype(np.float32)
    scene = 128 + 56 * (np.cos(2 * np.pi * x / period) + np.cos(2 * np.pi * y / period))
    cv2.circle(scene, (220, 300), 40, 240.0, -1, cv2.LINE_AA)
    return scene


def lattice_pair(period: int, tx: float, ty: float, angle: float, sharp_strip: bool, seed: int):
    """(template, moving, truth): neighbours in a stack over a lattice, moved by a similarity
    (``truth``: template pixels -> moving pixels), each sharp over the whole frame or, with
    ``sharp_strip``, only in a strip at the left (the focus plane tilted across the subject)."""
    scene = lattice_with_a_disc(period, H + 80, W + 80)
    rng = np.random.default_rng(seed)
    ramp = (np.arange(W, dtype=np.float32) / W)[None, :]

    def frame(m: np.ndarray, blur: float, strip: float) -> np.ndarray:
        img = cv2.warpAffine(scene, m[:2], (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        if sharp_strip:
            weight = np.clip(ramp * strip, 0, 1)
            img = (
                cv2.GaussianBlur(img, (0, 0), 0.7) * (1 - weight)
                + cv2.GaussianBlur(img, (0, 0), 6.0) * weight
            )
        else:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        return img + rng.normal(0, 1.5, img.shape).astype(np.float32)

    base = np.array([[1, 0, 40], [0, 1, 40], [0, 0, 1.0]])
    truth = similarity(1.0013, angle, tx, ty)
    return frame(base, 1.2, 8), frame(base @ truth, 0.9, 6), truth


@pytest.mark.parametrize(("tx", "ty", "angle", "seed"), [(4.6, -1.2, 0.3, 2), (1.0, 5.0, -0.2, 3)])
def test_a_lattice_pair_is_seeded_at_the_level_it_is_solved_on(tx, ty, angle, seed) -> None:
    """An 8 px lattice keeps two pyramid levels; the phase-correlation seed was measured on the
    coarsest level of all (a sixteenth) and added to the warp of the second, four times too
    small: the solver started most of a period off and settled a whole period off (8 px, score
    0.93, merged without a word)."""
    template, moving, truth = lattice_pair(8, tx, ty, angle, sharp_strip=False, seed=seed)
    reg = register(template, moving)
    err = corner_displacement(reg.matrix @ np.linalg.inv(truth), W, H)
    assert err < 0.2, f"corner error {err:.2f} px (score {reg.score:.3f})"


@pytest.mark.parametrize(
    ("period", "tx", "ty", "angle", "seed"), [(12, -3.5, 2.0, -0.15, 1), (24, 1.0, 5.0, -0.2, 3)]
)
def test_a_lattice_sharp_in_a_strip_only_does_not_wander_off_by_whole_periods(
    period, tx, ty, angle, seed
) -> None:
    """A lattice in focus over a strip of the frame only (the rest blurred away): on the
    coarsest level it keeps, its period is 3 px, and Gauss-Newton's full steps there swung by
    whole periods, climbing to a wrong lattice point or a wrong scale: 41 and 54 px off,
    scores 0.94 and 0.39, merged. A step that lowers the score is taken back and halved."""
    template, moving, truth = lattice_pair(period, tx, ty, angle, sharp_strip=True, seed=seed)
    reg = register(template, moving)
    err = corner_displacement(reg.matrix @ np.linalg.inv(truth), W, H)
    assert err < 0.3, f"corner error {err:.2f} px (score {reg.score:.3f})"
