"""When a live stack says its first frame keeps the rest out: once, and only then."""

from __future__ import annotations

from stacker.lonefirst import LoneFirstFrame


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
