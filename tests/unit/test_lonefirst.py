"""When a live stack says its first frame keeps the rest out: once, and only then."""

from __future__ import annotations

import numpy as np

from stacker.lonefirst import LoneFirstFrame, brightness, misfired


def outcomes(*frames: tuple[str, bool]) -> list[str]:
    check = LoneFirstFrame()
    return [said for name, merged in frames if (said := check.after(name, merged)) is not None]


def test_said_once_at_the_third_frame_kept_out_after_a_lone_first() -> None:
    """Not at the second: a flash that failed twice after a good first frame keeps two out."""
    frames = [("a", True), ("b", False), ("c", False)]
    assert outcomes(*frames) == []
    said = outcomes(*frames, ("d", False), ("e", False))
    assert len(said) == 1 and said[0].startswith("a: every frame since was kept out")


def test_not_said_when_a_second_frame_merged_or_nothing_merged() -> None:
    assert outcomes(("a", True), ("b", True), ("c", False), ("d", False), ("e", False)) == []
    assert outcomes(("a", True), ("b", False), ("c", False), ("d", True), ("e", False)) == []
    assert outcomes(("a", False), ("b", False), ("c", False), ("d", False)) == []


def test_the_first_merged_frame_is_named_when_frames_before_it_were_kept_out() -> None:
    said = outcomes(("a", False), ("b", True), ("c", False), ("d", False), ("e", False))
    assert len(said) == 1 and said[0].startswith("b: ")


def _frame(level: float, blown: float = 0.0) -> np.ndarray:
    frame = np.full((64, 64, 3), level, np.uint8)
    frame[: int(64 * blown)] = 255
    return frame


def test_frames_far_darker_than_a_first_frame_not_blown_out_are_misfires() -> None:
    """Three flash misfires after a good first frame align with each other: without this the
    stack started again from them and kept every good frame after them out."""
    check: LoneFirstFrame[int] = LoneFirstFrame()
    check.after("a", True, frame=_frame(120))
    for i in range(3):
        check.after(f"m{i}", False, i, _frame(30))
    assert check.start_again_from(object()) == []
    assert check.misfire is not None and check.misfire.startswith("the 3 frames after a are")


def test_a_blown_out_first_frame_is_still_the_odd_one_against_darker_frames() -> None:
    first = brightness(_frame(200, blown=0.2))
    assert not misfired(first, [_frame(60)] * 3)
    assert misfired(brightness(_frame(200)), [_frame(60)] * 3)
    assert not misfired(brightness(_frame(100)), [_frame(60), _frame(30), _frame(30)])
    assert not misfired(brightness(_frame(20)), [_frame(120)] * 3)  # a dark first frame
