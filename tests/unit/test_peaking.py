"""Focus peaking on the synthetic scene: the marked areas lie at the depth the camera focuses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticScene
from stacker.peaking import PEAK_COLOUR, paint_peaking, peaking_mask


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(SceneSpec(width=320, height=240, seed=7, depth_um=3000.0))


def _marked_depth(scene: SyntheticScene, focus_um: float) -> float:
    peaking = peaking_mask(scene.render(focus_um).image)
    assert 0.002 < peaking.fraction < 0.2, peaking.fraction
    h, w = scene.spec.height, scene.spec.width
    mask = cv2.resize(peaking.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return float(np.median(scene.height_um()[mask.astype(bool)]))


def test_the_marked_band_follows_the_focus_position(scene: SyntheticScene) -> None:
    depths = [_marked_depth(scene, f) for f in (300.0, 1500.0, 2700.0)]
    assert depths[0] < depths[1] < depths[2], depths
    for focus, depth in zip((300.0, 1500.0, 2700.0), depths, strict=True):
        assert abs(depth - focus) < 700, (focus, depth)


def test_a_frame_blurred_everywhere_marks_nothing() -> None:
    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 12)
    assert peaking_mask(frame).fraction == 0.0


def test_painting_marks_only_inside_the_mask(scene: SyntheticScene) -> None:
    frame = scene.render(1500.0).image
    peaking = peaking_mask(frame)
    painted = paint_peaking(frame, peaking)
    changed = np.any(painted != frame, axis=2)
    assert changed.any()
    assert np.all(painted[changed] == PEAK_COLOUR)
    grown = cv2.dilate(peaking.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (changed & ~grown).any()
