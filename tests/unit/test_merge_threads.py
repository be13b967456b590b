"""The pyramid merge on two threads (the finest band on a helper) gives the composite, the
decisions and the focus memory of the merge on one, to the bit; and a forked process, which
inherits the helper pool but not its thread, still merges."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker import merge
from stacker.merge import PyramidMerger
from stacker.stack import Stacker

W, H = 320, 240


def frames(bits: int) -> list[np.ndarray]:
    stack = SyntheticStack(SceneSpec(width=W, height=H, seed=5), 8)
    out = [f.image for f in stack]
    return [f.astype(np.uint16) * 257 for f in out] if bits == 16 else out


def merged(images: list[np.ndarray], parallel: bool) -> PyramidMerger:
    """The merge state after stacking ``images`` as a machine with two cores, or one, does."""
    cores = merge._cores
    merge._cores = lambda: 2 if parallel else 1  # type: ignore[assignment]
    try:
        stacker = Stacker()
        for image in images:
            stacker.add(image)
        stacker.wait()
    finally:
        merge._cores = cores  # type: ignore[assignment]
    merger = stacker._merger
    assert isinstance(merger, PyramidMerger)
    assert (merger._scratch is not None) == parallel
    return merger


@pytest.mark.parametrize("bits", [8, 16])
def test_two_threads_merge_as_one(bits: int) -> None:
    images = frames(bits)
    one, two = merged(images, False), merged(images, True)
    for name in ("fused", "activity", "quiet", "holder"):
        for a, b in zip(getattr(one, name), getattr(two, name), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(one.composite(), two.composite())


def _merge_in_child(images: list[np.ndarray], queue) -> None:
    queue.put(merged(images, True).composite())


def test_a_forked_process_merges_with_a_helper_of_its_own() -> None:
    images = frames(8)
    expected = merged(images, True).composite()  # the helper thread exists in this process
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_merge_in_child, args=(images, queue))
    child.start()
    try:
        got = queue.get(timeout=60)  # the inherited pool's thread is gone: it would hang
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)
