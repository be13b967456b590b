"""The subscriber list the preview hub and a session's event bus keep their callbacks in."""

from __future__ import annotations

import threading
from collections.abc import Callable

from stacker.subscribers import SubscriberList


def test_callbacks_stay_in_subscription_order_and_leave_once() -> None:
    subscribers = SubscriberList[Callable[[str], None]]()
    calls: list[str] = []
    first = subscribers.add(lambda who: calls.append(f"first {who}"))
    subscribers.add(lambda who: calls.append(f"second {who}"))
    for callback in subscribers.snapshot():
        callback("a")
    assert calls == ["first a", "second a"]
    first()
    first()  # removing again does nothing
    assert len(subscribers) == 1
    for callback in subscribers.snapshot():
        callback("b")
    assert calls == ["first a", "second a", "second b"]


def test_a_callback_may_unsubscribe_while_the_snapshot_is_called() -> None:
    subscribers = SubscriberList[Callable[[], None]]()
    calls: list[str] = []
    remove_second: list[Callable[[], None]] = []
    subscribers.add(lambda: (calls.append("first"), remove_second[0]()))
    remove_second.append(subscribers.add(lambda: calls.append("second")))
    for callback in subscribers.snapshot():
        callback()
    assert calls == ["first", "second"]  # removed meanwhile: still called this once
    assert len(subscribers) == 1


def test_the_owners_reentrant_lock_guards_the_list() -> None:
    cond = threading.Condition()
    subscribers = SubscriberList[Callable[[], None]](cond)
    with cond:  # the owner reads its own state and the list in one step
        subscribers.add(lambda: None)
        assert len(subscribers.snapshot()) == 1
    got: list[int] = []
    with cond:
        reader = threading.Thread(target=lambda: got.append(len(subscribers)))
        reader.start()
        reader.join(0.05)
        assert reader.is_alive()  # blocked on the owner's lock
    reader.join(5)
    assert got == [1]
