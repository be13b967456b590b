"""The Stacker fed numpy arrays from Python, as a camera SDK or a notebook gives them: greyscale
frames, floats, other layouts, and stackers let go of or left empty."""

from __future__ import annotations

import gc
import threading
import weakref

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.errors import StackerError
from stacker.stack import Stacker


@pytest.fixture(scope="module")
def colour() -> list[np.ndarray]:
    return [f.image for f in SyntheticStack(SceneSpec(width=320, height=240, seed=3), 5)]


@pytest.fixture(scope="module")
def grey(colour: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in colour]


def stacked(frames: list[np.ndarray], **kw: object) -> Stacker:
    s = Stacker(**kw)  # type: ignore[arg-type]
    for i, frame in enumerate(frames):
        assert s.add(frame, position_um=10.0 * i).merged
    return s


def test_an_empty_stack_s_depth_map_is_a_stacker_error() -> None:
    """A depth map asked of a stacker before any frame was merged failed on a bare assert."""
    for read in ("depth_index", "depth_frames", "depth_frames_small", "depth_um", "depth_preview"):
        with pytest.raises(StackerError, match=r"^no frame has been merged yet$"):
            getattr(Stacker(), read)()


def test_a_stacker_let_go_mid_stack_is_freed_without_the_cycle_collector(colour) -> None:
    """The background merge's closure held its stacker, and the stacker held the merge: a
    stacker let go before its last merge was waited for (its caller's loop raised) kept its
    merge state and buffers until the cycle collector ran."""
    gc.disable()
    try:
        s = Stacker()
        for image in colour[:3]:
            s.add(image)
        freed = weakref.ref(s)
        del s
        for thread in threading.enumerate():  # the merge runs to its end
            if thread.name.startswith("stacker-merge-"):
                thread.join()
        assert freed() is None
    finally:
        gc.enable()
