"""A list of callbacks that any thread may join, leave and call: how stackrig keeps subscribers.

The preview hub (:class:`~stacker.preview.hub.PreviewHub`) keeps its readers' wake-up callbacks
in one, a capture session (``rig.session.events.EventBus``) its listeners. Both call their
subscribers outside the lock, on a copy, so a subscriber may subscribe or unsubscribe (itself
or another) while it is being called.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

Callback = TypeVar("Callback", bound=Callable[..., Any])


class SubscriberList(Generic[Callback]):
    """Callbacks in the order they subscribed; safe to change and read from any thread.

    ``lock`` guards the list; give the owner's own lock (a re-entrant one, such as a default
    :class:`threading.Condition`) when the owner must read the list and its own state in one
    step, otherwise the list makes a lock of its own.
    """

    def __init__(self, lock: AbstractContextManager[Any] | None = None) -> None:
        self._callbacks: list[Callback] = []
        self._lock = threading.Lock() if lock is None else lock

    def add(self, callback: Callback) -> Callable[[], None]:
        """Append ``callback``; returns the call that removes it (a second call does nothing)."""
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def snapshot(self) -> list[Callback]:
        """The callbacks now, in order, to call outside the lock; one removed meanwhile is still
        called this once."""
        with self._lock:
            return list(self._callbacks)

    def __len__(self) -> int:
        with self._lock:
            return len(self._callbacks)
