"""The glow scene family renders what it claims: layout, truth, masks, defocus models, JPEG."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evaluation.scoring import central_mask, fitted_psnr, perfect_choice, to_reference
from rig.sim.glow import (
    GlowSpec,
    GlowStack,
    write_glow_stack,
)
from stacker.errors import StackerError

W, H = 320, 240


def small(**kw) -> GlowStack:
    spec = GlowSpec(width=W, height=H, seed=11, max_blur_px=8.0, n_components=8, **kw)
    return GlowStack(spec, 6)


def chroma(image: np.ndarray) -> np.ndarray:
    f = image.astype(np.float32)
    return f.max(axis=2) - f.min(axis=2)


@pytest.fixture(scope="module")
def textured() -> GlowStack:
    return small(background="textured", defocus="scatter")


def test_objects_are_saturated_and_the_band_rings_them(textured: GlowStack) -> None:
    truth, objects, band = textured.truth(), textured.objects(), textured.glow_band()
    assert truth.shape == (H, W, 3) and truth.dtype == np.uint8
    assert 0.02 < objects.mean() < 0.5
    inner = cv2.erode(objects.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.median(chroma(truth)[inner]) > 150  # strongly saturated inside
    assert np.median(chroma(truth)[~objects]) < 100  # the background is not
    assert not (band & objects).any()
    dist = cv2.distanceTransform(np.where(objects, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    assert dist[band].min() > 2 and dist[band].max() <= 16  # 2 x max_blur_px


def test_objects_are_near_and_background_far(textured: GlowStack) -> None:
    depth, objects = textured.height_um(), textured.objects()
    d = textured.spec.depth_um
    assert depth[objects].max() <= 0.12 * d + 1e-3
    fringe = cv2.dilate(objects.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # anti-aliasing
    fringe[[0, -1], :] = fringe[:, [0, -1]] = True  # that of an object just outside the view
    assert depth[~fringe].min() >= 0.8 * d - 1e-3


def test_first_frame_sharp_on_objects_last_frame_on_background(textured: GlowStack) -> None:
    truth, objects = textured.truth(), textured.objects()
    first, last = textured.frame(0), textured.frame(5)
    edge = cv2.morphologyEx(objects.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
    back = cv2.erode((~objects).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    back &= central_mask(H, W)
    last_ref = to_reference(last.image, last.transform, (W, H), interpolation=cv2.INTER_CUBIC)
    last_ref = (last_ref / last.gains).astype(np.float32)  # undo the exposure drift

    def err(img: np.ndarray, mask: np.ndarray) -> float:
        return float(np.abs(img.astype(float) - truth.astype(float))[mask > 0].mean())

    assert err(first.image, edge) < err(last_ref, edge) / 2
    assert err(last_ref, back) < err(first.image, back) / 2


def test_scatter_spreads_object_colour_into_the_band_gather_does_not() -> None:
    """Focused on the background, a scatter render shows the objects' haze in the glow band;
    a gather render keeps the background there as it is (its haze is inside the objects)."""
    errors = {}
    for model in ("scatter", "gather"):
        stack = small(background="black", defocus=model, noise_sigma=0.0, jpeg_quality=None)
        last = stack.frame(5)
        img = to_reference(last.image, last.transform, (W, H), interpolation=cv2.INTER_CUBIC)
        band = stack.glow_band() & central_mask(H, W, 0.9)
        errors[model] = float(np.abs(img.astype(float) - stack.truth())[band].mean())
    assert errors["scatter"] > 5.0
    assert errors["gather"] < errors["scatter"] / 3


def test_frames_are_jpeg_with_420_chroma(textured: GlowStack) -> None:
    data = textured.frame(2).encoded
    assert data is not None and data[:2] == b"\xff\xd8"
    sof = data.index(b"\xff\xc0")  # baseline frame header: components and their sampling
    n = data[sof + 9]
    factors = [data[sof + 10 + 3 * i + 1] for i in range(n)]
    assert n == 3 and factors == [0x22, 0x11, 0x11]  # luma 2x2, chroma 1x1: 4:2:0


def test_drift_like_the_base_generator(textured: GlowStack) -> None:
    frames = [textured.frame(i) for i in range(3)]
    assert np.array_equal(frames[0].transform, np.eye(3))
    assert not np.allclose(frames[2].transform, np.eye(3))
    assert not np.allclose(frames[2].gains, 1.0)


def test_write_and_reload(tmp_path, textured: GlowStack) -> None:
    paths = write_glow_stack(tmp_path, textured)
    assert [p.name for p in paths][:2] == ["frame_0001.jpg", "frame_0002.jpg"]
    again = GlowStack.from_folder(tmp_path)
    assert again.spec == textured.spec
    assert np.array_equal(again.truth(), textured.truth())


def test_bad_spec_and_sidecar_are_clear_errors(tmp_path) -> None:
    with pytest.raises(StackerError, match="background 'grey'"):
        GlowSpec(background="grey")
    with pytest.raises(StackerError, match="defocus 'blur'"):
        GlowSpec(defocus="blur")
    with pytest.raises(StackerError, match="no sidecar"):
        GlowStack.from_folder(tmp_path)


def test_scores() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(20, 200, (40, 60, 3)).astype(np.uint8)
    mask = central_mask(40, 60)
    assert mask.sum() == 32 * 48
    brighter = np.clip(truth.astype(float) * 1.1, 0, 255).astype(np.uint8)
    assert fitted_psnr(brighter, truth, mask) > 45  # a gain costs nothing
    noisy = np.clip(truth + rng.normal(0, 5, truth.shape), 0, 255).astype(np.uint8)
    assert 32 < fitted_psnr(noisy, truth, mask, luma=False) < 36
    frames = [noisy, truth // 2, truth]
    out, index = perfect_choice(frames, truth)
    assert np.array_equal(out, truth) and (index == 2).all()
    out, index = perfect_choice(frames[:2], truth, guides=[truth, truth // 2])
    assert np.array_equal(out, noisy) and (index == 0).all()
