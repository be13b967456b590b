"""A stop signal that another thread takes, so that it does not wake the main thread.

A signal handler runs on the main thread between two steps of Python code. A signal that lands
just before the main thread blocks, or that the kernel gives to another thread, does not wake
it: a wait without a bound then never runs the handler. Blocking the signal on the main thread
makes the second case happen every time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator


class Signalled(Exception):
    """Raised on the main thread by the handler of the signal :func:`taken_elsewhere` sends."""


@contextlib.contextmanager
def taken_elsewhere() -> Iterator[Callable[[], None]]:
    """In the block, SIGUSR1 raises :class:`Signalled` on the main thread, but is delivered to
    another thread; yields the function that sends it."""

    def raise_signalled(_signum: int, _frame: object) -> None:
        raise Signalled

    done = threading.Event()
    taker = threading.Thread(target=done.wait, daemon=True)
    taker.start()  # before the main thread blocks the signal: it leaves it unblocked
    before = signal.signal(signal.SIGUSR1, raise_signalled)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        yield lambda: os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        signal.signal(signal.SIGUSR1, before)
        done.set()
