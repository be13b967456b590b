"""Frames decoded into the memory of frames already stacked.

Decoding a 24 MP JPEG into a new 72 MB array makes the kernel hand over and zero 72 MB of fresh
pages while the decoder writes them: about 30 ms of the reading thread's 330 ms a frame on the
benchmark machine, and more on a virtual machine whose host takes freed memory back
(benchmarks/README.md). Once a frame is stacked nothing holds its array, and the next frame of
the same size can be decoded into it.

A :class:`FramePool` lends an array only when nothing else holds it (Python's reference count
says so), so a frame still in use (kept for a preview, or held by a caller) is never written
over: another array is made instead, up to :attr:`FramePool.size` of them. It is used from one
thread, the one that decodes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np


class FramePool:
    """Arrays that frames of one shape are decoded into again once nobody else holds them."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        """Arrays kept at most: the frames alive at once (one, when the next is read only
        once the last is stacked; two, when it is read meanwhile)."""
        self._arrays: list[np.ndarray] = [np.empty(0, np.uint8)]
        self._free_refs = 0
        self._free_refs = max(n for _, n in self._counted())  # held by the pool alone
        self._arrays = []

    def _counted(self) -> Iterator[tuple[np.ndarray, int]]:
        """Each array with its reference count, counted the same way for every call."""
        for array in self._arrays:
            yield array, sys.getrefcount(array)

    def lend(self, shape: tuple[int, int, int]) -> np.ndarray | None:
        """An 8-bit array of ``shape`` that nothing outside the pool holds, marked as not
        decoded into (:meth:`written`); None when every array is in use and the pool is full.
        Arrays of another shape are let go (the stack's frames changed size)."""
        self._arrays = [a for a in self._arrays if a.shape == shape]
        for array, refs in self._counted():
            if refs <= self._free_refs:
                return _marked(array)
        if len(self._arrays) >= self.size:
            return None
        array = np.empty(shape, np.uint8)
        self._arrays.append(array)
        return _marked(array)

    @staticmethod
    def written(array: np.ndarray) -> bool:
        """Whether a decode wrote ``array`` since :meth:`lend` marked it. OpenCV's ``imread``
        given an array returns it untouched when it cannot decode the file; a frame whose last
        row happens to match the mark is only decoded again without the pool."""
        return not np.array_equal(array[-1], _mark(array.shape[1]))


def _mark(width: int) -> np.ndarray:
    """A ramp of byte values down one row (width, 3): no camera's frame ends in it."""
    return (np.arange(width * 3, dtype=np.int64) % 251).astype(np.uint8).reshape(width, 3)


def _marked(array: np.ndarray) -> np.ndarray:
    array[-1] = _mark(array.shape[1])
    return array
