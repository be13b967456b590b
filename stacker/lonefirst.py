"""A live stack held by its first frame: said once, while the photographer can still act.

Each frame is aligned with the last merged one, so a bad first frame (a flash that did not
fire, a blown or a stray shot) keeps every later frame out, where the same frame anywhere else
is only left out. ``stacker stack`` stacks such a folder again without it. A live stack (a
watch, a capture session) notices as soon as two frames in a row after the first were kept
out, and nothing else was merged: a watch starts again without the first frame when the frames
kept out align with each other (:func:`align_with_each_other`); otherwise it says so, while
the photographer can still act.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from stacker.errors import StackerError

PROBE_SIDE = 1024
"""Longest side of the copies :func:`align_with_each_other` registers (at most twice the
registration size of a probe stacker, as a stacker registers its frames)."""


def align_with_each_other(frames: Sequence[np.ndarray], *, align: str, linear: bool) -> bool:
    """Whether ``frames`` (two or more kept out against a lone first frame, in order) all merge
    into a stack of their own: then the first frame is the odd one, and a live stack may start
    again without it. Judged on small copies, in a small stacker of its own, so that the live
    stack keeps its buffers meanwhile."""
    from stacker.stack import Stacker

    if len(frames) < 2:
        return False
    probe = Stacker(align=align, align_size=PROBE_SIDE // 2, preview_size=64, overlap=False)
    for frame in frames:
        small = frame
        while max(small.shape[:2]) > PROBE_SIDE:
            small = cv2.pyrDown(small)
        try:
            probe.add(np.ascontiguousarray(small), linear=linear)
        except StackerError:  # a frame the stack cannot take (too small, another size)
            return False
    return probe.frames_merged == len(frames)


def left_out_reason(kept: int) -> str:
    """Why a first frame was left out, and what happens instead: the ``kept`` frames after it
    did not align with it."""
    return (
        f"left out: none of the {kept} frames after it aligns with it (a dark, blown or stray "
        "first frame?); stacking again without it"
    )


class LoneFirstFrame:
    """Feed :meth:`after` every frame's outcome; it answers once with the warning to give."""

    def __init__(self) -> None:
        self._first: str | None = None
        self._kept_out = 0
        self._done = False

    @property
    def alone(self) -> bool:
        """True while a first frame is merged and no other has been since."""
        return self._first is not None and not self._done

    def after(self, name: str, merged: bool) -> str | None:
        """The warning, the first time two frames after a lone first merged frame were kept
        out; ``None`` otherwise (and for good once a second frame merged)."""
        if self._done:
            return None
        if merged:
            self._done = self._first is not None  # a second frame merged: the first is fine
            self._first = self._first or name
            return None
        if self._first is None:
            return None
        self._kept_out += 1
        if self._kept_out < 2:
            return None
        self._done = True
        return (
            f"{self._first}: every frame since was kept out against it; if it is bad (a flash "
            "that did not fire, a stray shot), "
        )
