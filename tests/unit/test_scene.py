"""The synthetic focus-stack renderer: deterministic, honest about its transforms and gains."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from evaluation.scoring import coverage_mask, psnr, to_reference
from rig.sim.scene import (
    TRUTH_SIDECAR,
    FramePose,
    SceneSpec,
    SyntheticScene,
    SyntheticStack,
    write_stack,
)
from stacker.errors import StackerError
from stacker.io import read_image

W, H = 320, 240


def _still(seed: int, **changes: float) -> SceneSpec:
    """A W x H scene without noise, pose changes or exposure drift, but for ``changes``."""
    still = {"noise_sigma": 0.0, "jitter_px": 0.0, "rotation_deg": 0.0, "breathing": 0.0}
    still |= {"exposure_drift": 0.0, "wb_drift": 0.0}
    return SceneSpec(width=W, height=H, seed=seed, **(still | changes))  # type: ignore[arg-type]


def _sharpness(image: np.ndarray, mask: np.ndarray) -> float:
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    if image.dtype == np.uint16:
        luma /= 257.0
    return float(np.abs(cv2.Laplacian(luma, cv2.CV_32F))[mask].mean())


def test_same_seed_same_stack_and_different_seed_differs() -> None:
    spec = SceneSpec(width=W, height=H, seed=7, jpeg_quality=90)
    a, b = SyntheticStack(spec, 6), SyntheticStack(spec, 6)
    assert np.array_equal(a.truth(), b.truth())
    assert np.array_equal(a.height_um(), b.height_um())
    fa, fb = a.frame(3), b.frame(3)
    assert np.array_equal(fa.image, fb.image)
    assert np.array_equal(fa.transform, fb.transform)
    assert fa.encoded == fb.encoded
    other = SyntheticStack(SceneSpec(width=W, height=H, seed=8), 6)
    assert not np.array_equal(a.truth(), other.truth())


def test_first_frame_is_the_reference_geometry() -> None:
    stack = SyntheticStack(SceneSpec(width=W, height=H, seed=1, jitter_px=5), 5)
    first = stack.frame(0)
    assert np.array_equal(first.transform, np.eye(3))
    assert np.array_equal(first.gains, np.ones(3))
    assert first.focus_um == 0.0
    assert stack.frame(4).focus_um == pytest.approx(stack.spec.depth_um)
    # Later frames really move: jitter, rotation and breathing.
    assert not np.allclose(stack.frame(2).transform, np.eye(3))
    assert stack.truth().shape == (H, W, 3)
    assert stack.truth().dtype == np.uint8


def test_reported_transform_is_the_one_applied() -> None:
    spec = _still(2, blur_px_per_um=0.0, jitter_px=6.0, rotation_deg=1.5, breathing=0.1)
    stack = SyntheticStack(spec, 6)
    truth = stack.truth()
    for i in (1, 3, 5):
        frame = stack.frame(i)
        # Forward check: warping the truth by the reported transform reproduces the frame.
        forward = cv2.warpAffine(truth, frame.transform[:2], (W, H), flags=cv2.INTER_CUBIC)
        inner = np.zeros((H, W), bool)
        inner[12:-12, 12:-12] = True
        assert psnr(forward, frame.image, inner) > 32
        # A transform off by one pixel is clearly worse: the check can fail.
        off = frame.transform.copy()
        off[0, 2] += 1.0
        wrong = cv2.warpAffine(truth, off[:2], (W, H), flags=cv2.INTER_CUBIC)
        assert psnr(wrong, frame.image, inner) < psnr(forward, frame.image, inner) - 6
        # Backward: the frame resampled into reference geometry matches the truth.
        back = to_reference(frame.image, frame.transform, (W, H))
        mask = coverage_mask([frame.transform], (W, H), inset_px=4)
        assert psnr(back, truth, mask) > 30


def test_each_frame_is_sharpest_where_the_scene_sits_at_its_focus() -> None:
    spec = _still(3)
    n = 7
    stack = SyntheticStack(spec, n)
    depth = stack.height_um()
    frames = [f.image for f in stack]
    step = spec.depth_um / (n - 1)
    checked = 0
    for i, focus in enumerate(stack.positions_um):
        region = np.abs(depth - focus) < step / 3
        region[:4], region[-4:], region[:, :4], region[:, -4:] = False, False, False, False
        if region.sum() < 400:
            continue
        scores = [_sharpness(img, region) for img in frames]
        assert int(np.argmax(scores)) == i, (i, scores)
        checked += 1
    assert checked >= 4


def test_ends_of_a_deep_stack_are_strongly_defocused() -> None:
    # 16 bits so that rounding noise does not pass for detail in blurred areas.
    spec = SceneSpec(width=W, height=H, seed=4, noise_sigma=0.0, bit_depth=16)
    stack = SyntheticStack(spec, 10)
    depth = stack.height_um()
    # Eroded so that sharp edges of neighbouring regions do not count.
    kernel = np.ones((13, 13), np.uint8)
    far = cv2.erode((depth > 0.75 * spec.depth_um).astype(np.uint8), kernel) > 0
    near = cv2.erode((depth < 0.25 * spec.depth_um).astype(np.uint8), kernel) > 0
    assert far.sum() > 1000 and near.sum() > 150
    first, last = stack.frame(0).image, stack.frame(9).image
    assert _sharpness(first, far) < 0.25 * _sharpness(last, far)
    assert _sharpness(last, near) < 0.25 * _sharpness(first, near)


def test_gains_are_applied_per_channel() -> None:
    spec = _still(5, blur_px_per_um=0.0, exposure_drift=0.1, wb_drift=0.1)
    stack = SyntheticStack(spec, 4)
    truth = stack.truth().astype(np.float64)
    frame = stack.frame(2)
    assert not np.allclose(frame.gains, 1.0)
    assert np.all(np.abs(frame.gains - 1.0) <= 0.1 * 1.1 + 0.1)
    usable = (truth.max(axis=2) < 200) & (truth.min(axis=2) > 40)
    for c in range(3):
        ratio = frame.image[..., c][usable].sum() / truth[..., c][usable].sum()
        assert ratio == pytest.approx(frame.gains[c], abs=0.005)
    # An explicit pose renders with exactly the gains it names.
    scene = SyntheticScene(spec)
    rendered = scene.render(0.0, pose=FramePose(gains=(1.1, 1.0, 0.9)))
    assert np.array_equal(rendered.gains, [1.1, 1.0, 0.9])


def test_sixteen_bit_scene() -> None:
    stack = SyntheticStack(SceneSpec(width=W, height=H, seed=6, bit_depth=16), 3)
    frame = stack.frame(1)
    assert frame.image.dtype == np.uint16
    assert stack.truth().dtype == np.uint16
    assert frame.image.max() > 4096


def test_write_stack_files_sort_naturally_and_carry_the_truth(tmp_path) -> None:
    spec = SceneSpec(width=W, height=H, seed=9)
    paths = write_stack(tmp_path, spec, 12)
    names = [p.name for p in paths]
    assert names[0] == "frame_0001.jpg" and names[-1] == "frame_0012.jpg"

    def natural(name: str) -> list[object]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]

    on_disk = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert on_disk == names == sorted(names, key=natural)
    sidecar = json.loads((tmp_path / TRUTH_SIDECAR).read_text())
    assert [f["file"] for f in sidecar["frames"]] == names
    rebuilt = SyntheticStack.from_folder(tmp_path)
    assert np.array_equal(rebuilt.truth(), SyntheticStack(spec, 12).truth())
    stack = SyntheticStack(spec, 12)
    frame = stack.frame(5)
    assert np.allclose(sidecar["frames"][5]["transform"], frame.transform)
    assert psnr(read_image(paths[5]), frame.image) > 33  # JPEG at quality 95


def test_sidecar_missing_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(StackerError, match="sidecar"):
        SyntheticStack.from_folder(tmp_path)


@pytest.mark.parametrize(
    "bad",
    [{"width": 8}, {"depth_um": 0}, {"breathing": 0.9}, {"jpeg_quality": 0}, {"bit_depth": 12}],
)
def test_bad_spec_is_rejected_with_the_value(bad: dict[str, object]) -> None:
    with pytest.raises(StackerError, match=str(next(iter(bad.values())))):
        SceneSpec(**bad)  # type: ignore[arg-type]
