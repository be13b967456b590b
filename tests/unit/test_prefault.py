"""Backing a stack's buffers with memory ahead of use (stacker.prefault): the pages are there
afterwards, the contents are untouched, and a cancelled run stops."""

from __future__ import annotations

import mmap
import resource
import threading

import numpy as np
import pytest

from stacker import prefault

pytestmark = pytest.mark.skipif(
    not prefault.supported(), reason="madvise(MADV_POPULATE_WRITE) needs Linux 5.14 or later"
)

SIZE = 64 << 20  # 64 MB: 16384 small pages, 32 huge ones


def _fresh() -> np.ndarray:
    """A zeroed array on pages never touched: an anonymous mapping of its own. ``np.zeros``
    may take memory the allocator kept from an earlier array (another test's, in the same
    worker), already backed: the baseline then counted no faults at all."""
    return np.frombuffer(mmap.mmap(-1, SIZE), np.uint8)


def _faults_writing(array: np.ndarray) -> int:
    """Page faults this thread takes writing every byte of ``array``."""
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    array.fill(1)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def test_a_fresh_array_is_backed_and_writing_it_then_takes_no_page_faults() -> None:
    assert _faults_writing(_fresh()) >= 16  # the baseline: faults as written
    array = _fresh()
    assert prefault.populate([array])
    # Only the partial pages at the array's two ends are left to the first write.
    assert _faults_writing(array) <= 4


def test_the_contents_are_left_as_they_are_while_another_thread_writes() -> None:
    array = np.zeros(SIZE, np.uint8)
    array[: SIZE // 2] = 7  # half written already, half never touched
    job = prefault.populate_in_background([array])
    assert job is not None
    array[SIZE // 2 :: 4096] = 9  # written while the helper backs the same pages
    job.join()
    assert np.all(array[: SIZE // 2] == 7)
    assert np.all(array[SIZE // 2 :: 4096] == 9)
    rest = array[SIZE // 2 :].reshape(-1, 4096)[:, 1:]
    assert not rest.any()


def test_a_cancelled_run_backs_nothing_more() -> None:
    stop = threading.Event()
    stop.set()
    array = _fresh()
    assert prefault.populate([array], stop)
    assert _faults_writing(array) >= 16


def test_nothing_to_back_starts_no_thread() -> None:
    assert prefault.populate_in_background([np.zeros(16, np.uint8)]) is None
    assert prefault.populate_in_background([np.zeros((512, 512), np.uint8)[:, ::2]]) is None
