"""Reading ahead: decode the next frame on its own thread while the current one is stacked.

Decoding a 24 MP JPEG takes about a fifth of a second, and OpenCV's decoder releases the GIL,
so it can run on another core while the stacker aligns and merges the frame before. A
:class:`ReadAhead` pulls items (file paths, capture jobs) from an iterable on a reader thread,
loads each (``read_image`` for frames) and hands them over in order. It holds at most ``depth``
loaded items that the consumer has not taken yet, and loads nothing more until one is taken, so
memory stays bounded whatever the length of the stack: with the default ``depth=1`` the frame
being stacked and the next one are the only decoded frames alive. ``depth=0`` loads each item
on the consumer's thread when it is asked for: the sequential run, through the same code.

A load that fails with an expected error (an unreadable file: :class:`~stacker.errors.UserError`)
is handed over in place of the frame, so the consumer reports it in order, exactly as it would
reading sequentially. Anything else raised on the reader thread, by the loader or by the items
iterable itself (a hot folder that disappears), is raised again in the consumer. Closing (on
leaving the ``with`` block, after a break, an error or Ctrl-C) stops the reader at its next
item; a load in progress finishes on the daemon thread and is dropped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stacker.errors import UserError
from stacker.launch import WAKE_S

T = TypeVar("T")
R = TypeVar("R")

_ITEM, _END, _FAIL = "item", "end", "fail"


@dataclass(frozen=True)
class Loaded(Generic[T, R]):
    """One item as loaded by the reader: ``value``, or the ``error`` that loading it raised."""

    item: T
    value: R | None
    error: UserError | None = None


class ReadAhead(Generic[T, R]):
    """Load ``items`` with ``load`` on a reader thread, at most ``depth`` ahead of the consumer.

    Iterate it (once) inside ``with``::

        with ReadAhead(paths, read_image) as frames:
            for loaded in frames:
                ...  # loaded.item, loaded.value or loaded.error
    """

    def __init__(
        self,
        items: Iterable[T],
        load: Callable[[T], R],
        *,
        depth: int = 1,
        name: str = "read-ahead",
    ) -> None:
        if depth < 0:
            raise ValueError(f"depth {depth}: give 0 (no reader thread) or more")
        self.depth = depth
        self._items = iter(items)
        self._load = load
        self._slots = threading.Semaphore(max(1, depth))
        self._handover: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._loading = 0  # items the reader has begun to load (written by the reader only)
        self._taken = 0  # items the consumer has taken (written by the consumer only)

    @property
    def holding(self) -> int:
        """Items loaded, or being loaded, that the consumer has not taken yet."""
        return self._loading - self._taken

    def start(self) -> ReadAhead[T, R]:
        """Start the reader thread (once; iterating starts it too)."""
        if not self._started:
            self._started = True
            if self.depth:
                self._thread.start()
        return self

    def __enter__(self) -> ReadAhead[T, R]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Loaded[T, R]]:
        self.start()
        if not self.depth:
            for item in self._items:
                self._loading += 1
                self._taken += 1
                yield self._load_one(item)
            return
        while True:
            try:
                kind, payload = self._handover.get(timeout=WAKE_S)
            except queue.Empty:
                continue  # Python code ran: a signal that came meanwhile has been handled
            if kind == _END:
                return
            if kind == _FAIL:
                raise payload
            self._taken += 1
            self._slots.release()
            yield payload

    def close(self, timeout: float = 1.0) -> None:
        """Stop reading at the next item; a load in progress finishes on the reader and is
        dropped. Waits up to ``timeout`` seconds for the reader (not for an items iterable that
        is blocked waiting for its next item: the thread is a daemon)."""
        self._closed.set()
        self._slots.release()  # wake a reader waiting for a free slot
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _load_one(self, item: T) -> Loaded[T, R]:
        try:
            return Loaded(item, self._load(item))
        except UserError as exc:
            return Loaded(item, None, exc)

    def _run(self) -> None:
        try:
            while True:
                self._slots.acquire()
                if self._closed.is_set():
                    return
                try:
                    item = next(self._items)
                except StopIteration:
                    break
                if self._closed.is_set():
                    return
                self._loading += 1
                self._handover.put((_ITEM, self._load_one(item)))
        except BaseException as exc:  # handed to the consumer, raised there
            self._handover.put((_FAIL, exc))
            return
        self._handover.put((_END, None))
