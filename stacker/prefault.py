"""Fault in a stack's buffers ahead of use, on a helper thread, without touching their contents.

The merge state of a 24 MP stack is about 700 MB of arrays allocated when the first frame
arrives. The kernel backs each page only when it is first written, and that first write is
dear: the kernel zeroes the page, and on a virtual machine whose host takes freed memory back
(free page reporting, as on the cloud machines the benchmarks ran on) the host must back it
again, at 1 to 3 s a gigabyte. Left to itself, that cost falls on the first frame's merge, on
the critical path, while the other core idles (benchmarks/README.md).

:func:`populate_in_background` asks the kernel to back the pages at once with
``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14 on), from a thread of its own, while the first
frame is aligned. That call never reads or writes the memory itself, so it is safe while other
threads write to the same arrays: a page already backed is skipped. It goes a few megabytes at
a time, so that other threads allocating memory (which needs the address space's lock) never
wait long. Where the call does not exist (macOS, older kernels) nothing is done and the pages
are backed on first write, as before.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

MADV_POPULATE_WRITE = 23
"""``<asm-generic/mman-common.h>``, the same on x86-64 and aarch64."""
CHUNK_BYTES = 4 << 20
"""Bytes asked for per call: the address-space lock is held for one call at a time."""
_PAGE = 4096


def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()
_SUPPORTED: bool | None = None  # whether the call works here, once :func:`supported` has tried


def supported() -> bool:
    """Whether this system can back pages ahead of use (checked once, on a page of its own)."""
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = _MADVISE is not None and populate([np.empty(2 * _PAGE, np.uint8)])
    return _SUPPORTED


def populate(arrays: Iterable[np.ndarray], stop: threading.Event | None = None) -> bool:
    """Back every whole page of ``arrays`` (C-contiguous) with memory now; False where the
    system cannot (nothing was done from then on). ``stop``, once set, ends it early."""
    if _MADVISE is None:
        return False
    for array in arrays:
        start = (array.ctypes.data + _PAGE - 1) & ~(_PAGE - 1)
        end = (array.ctypes.data + array.nbytes) & ~(_PAGE - 1)
        for at in range(start, end, CHUNK_BYTES):
            if stop is not None and stop.is_set():
                return True
            if _MADVISE(at, min(end, at + CHUNK_BYTES) - at, MADV_POPULATE_WRITE) != 0:
                return False  # EINVAL before Linux 5.14; ENOMEM if memory ran short
    return True


class Prefault:
    """:func:`populate` of ``arrays`` on a daemon thread; :meth:`cancel` ends it at its next
    chunk. The thread holds the arrays until it ends, so none is freed under it."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=populate, args=(list(arrays), self._stop), name="stacker-prefault", daemon=True
        )
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def populate_in_background(arrays: Sequence[np.ndarray]) -> Prefault | None:
    """Start backing ``arrays`` on a helper thread, in the order given (the order their owner
    first writes them, so the helper keeps ahead of it); None where the system cannot, or
    there is nothing to do."""
    big = [a for a in arrays if a.flags.c_contiguous and a.nbytes >= 2 * _PAGE]
    if not big or not supported():
        return None
    return Prefault(big)
