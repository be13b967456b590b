"""A live stack held by its first frame: started again without it, or said once.

Each frame is aligned with the last merged one, so a bad first frame (a flash that did not
fire, a blown or a stray shot) keeps every later frame out, where the same frame anywhere else
is only left out. ``stacker stack`` stacks such a folder again without it. A live stack (a
watch, a capture session) cannot see the frames still to come, so it waits until
:data:`KEPT_OUT` frames in a row after the first were kept out, and nothing else was merged.
If those align with each other (:func:`align_with_each_other`), the first frame is the odd
one, and the stack starts again from them without it; otherwise the photographer is told,
while the shoot can still be fixed. Two frames are not enough: a flash that failed twice in a
row after a good first frame gives two dark frames that align with each other, and the frame
after them merges with the first again. Nor is three, where the frames kept out are all far
darker than a first frame that is not blown out (:func:`misfired`): that is a flash that did
not recycle, and the stack goes on with its good first frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from stacker.errors import StackerError
from stacker.io import white_level

K = TypeVar("K")

KEPT_OUT = 3
"""How many frames in a row kept out after a lone first frame make it suspect."""

PROBE_SIDE = 1024
"""Longest side of the copies :func:`align_with_each_other` registers (at most twice the
registration size of a probe stacker, as a stacker registers its frames)."""


def small_copy(frame: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` at most :data:`PROBE_SIDE` on its longest side, to keep a frame kept
    out for :func:`align_with_each_other` (the frame itself is read again to stack it)."""
    small = frame
    while max(small.shape[:2]) > PROBE_SIDE:
        small = cv2.pyrDown(small)
    return np.array(small, copy=True)


def align_with_each_other(frames: Sequence[np.ndarray], *, align: str, linear: bool) -> bool:
    """Whether ``frames`` (two or more kept out against a lone first frame, in order; their
    :func:`small_copy`) all merge into a stack of their own: then the first frame is the odd
    one, and a live stack may start again without it. Judged in a small stacker of its own, so
    that the live stack keeps its buffers meanwhile."""
    from stacker.stack import Stacker

    if len(frames) < 2:
        return False
    probe = Stacker(align=align, align_size=PROBE_SIDE // 2, preview_size=64, overlap=False)
    for frame in frames:
        try:
            probe.add(small_copy(frame), linear=linear)
        except StackerError:  # a frame the stack cannot take (too small, another size)
            return False
    return probe.frames_merged == len(frames)


DARKER = 0.5
"""Frames kept out whose mean is below this share of the first frame's are flash misfires (the
stack holds exposures down to half the first's), unless the first is blown out."""

FIRST_BLOWN_SHARE = 0.01
"""A first frame blown out (any channel at white) over more than this share of its pixels may
be the odd one even against far darker frames: a flash that fired twice, a light left on."""


def brightness(image: np.ndarray) -> tuple[float, float]:
    """An image's mean and the share of its pixels blown out (any channel at white), from every
    eighth pixel."""
    sample = image[::8, ::8]
    white = 0.99 * (white_level(image) if image.dtype.kind in "ui" else 1.0)
    top = sample.max(axis=2) if sample.ndim == 3 else sample
    return float(sample.mean()), float(np.count_nonzero(top >= white)) / max(1, top.size)


def misfired(first: tuple[float, float], kept: Sequence[np.ndarray]) -> bool:
    """Whether the frames ``kept`` out against a first frame of :func:`brightness` ``first`` are
    all far darker than it while it is not blown out: flashes that did not fire, not a first
    frame that is the odd one."""
    mean, blown = first
    return blown <= FIRST_BLOWN_SHARE and all(brightness(k)[0] < DARKER * mean for k in kept)


def misfire_note(first: str, kept: int) -> str:
    """What a live stack says when the ``kept`` frames after ``first`` were :func:`misfired`."""
    return (
        f"the {kept} frames after {first} are far darker than it (a flash that did not fire "
        f"or recycle?): they are left out and the stack goes on from {first}"
    )


def left_out_reason(kept: int) -> str:
    """Why a first frame was left out, and what happens instead: the ``kept`` frames after it
    did not align with it."""
    return (
        f"left out: none of the {kept} frames after it aligns with it (a dark, blown or stray "
        "first frame?); stacking again without it"
    )


class LoneFirstFrame(Generic[K]):
    """Feed :meth:`after` every frame's outcome; it answers once with the warning to give, and
    keeps small copies of the frames kept out meanwhile for :meth:`start_again_from`."""

    def __init__(self) -> None:
        self._first: str | None = None
        self._kept_out = 0
        self._done = False
        self._kept: list[tuple[K, np.ndarray]] = []
        self._first_level: tuple[float, float] | None = None
        self._first_kind: tuple[tuple[int, ...], np.dtype[Any]] | None = None
        self._next_check = KEPT_OUT
        self._misfire_said = False
        self.unfit: set[K] = set()
        """The frames kept out that the stack could not take at all (another size or bit
        depth): the stacker holds no record of them."""
        self.misfire: str | None = None
        """Set by the :meth:`start_again_from` call that finds the frames kept out
        :func:`misfired`: what to say instead of the warning :meth:`after` gave."""

    def after(
        self, name: str, merged: bool, key: K | None = None, frame: np.ndarray | None = None
    ) -> str | None:
        """The warning, the first time :data:`KEPT_OUT` frames after a lone first merged
        frame were kept out; ``None`` otherwise (and for good once a second frame merged).
        A frame kept out after the first merged one is noted by ``key`` with a
        :func:`small_copy` of ``frame`` while the first stands alone; the first merged frame's
        ``frame``, given, tells misfires from a bad first frame (:func:`misfired`)."""
        if self._done:
            return None
        if merged:
            self._done = self._first is not None  # a second frame merged: the first is fine
            if self._first is None and frame is not None:
                self._first_level = brightness(frame)
                self._first_kind = (frame.shape, frame.dtype)
            self._first = self._first or name
            if self._done:
                self._kept.clear()
            return None
        if self._first is None:
            return None
        if key is not None and frame is not None:
            self._kept.append((key, small_copy(frame)))
            if self._first_kind is not None and (frame.shape, frame.dtype) != self._first_kind:
                self.unfit.add(key)
        self._kept_out += 1
        if self._kept_out < self._next_check:
            return None
        self._done = True
        return self._stranded()

    def _stranded(self) -> str:
        return (
            f"{self._first}: every frame since was kept out against it; if it is bad (a flash "
            "that did not fire, a stray shot), "
        )

    def at_end(self) -> str | None:
        """At the end of a live stack: the warning :meth:`after` gives, where frames kept out
        were taken for misfires and the first frame still stands alone with two or more kept
        out after it (a stray shot brighter than the stack, not blown out, before too few
        frames to tell): the stack is then started again without it, as ``stacker stack``
        leaves such a first frame out. ``None`` otherwise."""
        if not self._misfire_said or self._done or len(self._kept) < 2:
            return None
        self._done = True
        return self._stranded()

    def start_again_from(self, stacker: object) -> list[K]:
        """The frames kept out (their keys), in order, to start the stack again from without
        its first frame: when they align with each other (:func:`align_with_each_other`) and
        ``stacker``'s reference is not a frame number, which counts from the first frame.
        Empty otherwise. The copies are let go either way.

        Frames kept out that are :func:`misfired` leave the first frame in, said once, and
        the check goes on: should :data:`KEPT_OUT` more be kept out, the first frame was the
        odd one after all (a stray shot brighter than the stack, not blown out), and the
        stack starts again without it if they align with each other. Frames the stack could
        not take (:attr:`unfit`) are never misfires."""
        self.misfire = None
        if (
            not self._misfire_said
            and self._first_level is not None
            and not self.unfit
            and misfired(self._first_level, [c for _, c in self._kept])
        ):
            self.misfire = misfire_note(self._first or "the first frame", len(self._kept))
            self._misfire_said, self._done = True, False
            self._next_check = self._kept_out + KEPT_OUT
            return []
        kept, self._kept = self._kept, []
        if isinstance(getattr(stacker, "reference", None), int):
            return []
        together = align_with_each_other(
            [copy for _, copy in kept],
            align=getattr(stacker, "align", "similarity"),
            linear=bool(getattr(stacker, "linear", False)),
        )
        return [key for key, _ in kept] if together else []
