"""The depth-map merger blends a strip of rows at a time, as it would the whole frame."""

from __future__ import annotations

import numpy as np
import pytest

from stacker import merge as merge_module
from stacker.merge import DepthMapMerger


def blended(frames, gains, rows: int, monkeypatch) -> np.ndarray:
    """The merger's float32 composite of ``frames`` with ``rows`` frame rows a strip."""
    monkeypatch.setattr(merge_module, "FOLD_ROWS", rows)
    h, w = frames[0].shape[:2]
    m = DepthMapMerger(h, w, frames[0].dtype)
    th, tw = m.tracker.best.shape
    rng = np.random.default_rng(5)
    for image, gain in zip(frames, gains, strict=True):
        winner = (rng.random((th, tw)) > 0.5).astype(np.uint8) * 255
        valid = np.full((th, tw), 255, np.uint8)
        valid[: th // 5] = 0  # a frame that does not cover the top
        m.fold(image, gain, valid, winner)
    return m.comp


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(64, 48), (131, 97), (130, 97)])
def test_strips_blend_as_the_whole_frame(dtype, shape, monkeypatch) -> None:
    """Across strip edges and an odd last strip, with a gain below 1 (clipped values kept)."""
    rng = np.random.default_rng(sum(shape))
    top = np.iinfo(dtype).max
    frames = [rng.integers(0, top, (*shape, 3), dtype=dtype, endpoint=True) for _ in range(3)]
    for f in frames:
        f[:3] = top  # blown highlights, which a gain below 1 must leave clipped
    gains = [(1.0, 1.0, 1.0), (0.9, 1.05, 0.97), (1.1, 0.95, 1.0)]
    whole = blended(frames, gains, 10**6, monkeypatch).copy()
    strips = blended(frames, gains, 7, monkeypatch)
    np.testing.assert_array_equal(strips, whole)
