"""The order a polled hot folder hands frames out in does not depend on how the watcher's thread
happens to read the events: a poll reports the files it found in no fixed order, and the
watcher may read them in one go or one at a time (its thread paused between them).

Driven on a fake clock by a fake polling observer that also stands in for the event queue, so
each case is exact and takes no real time.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest
from watchdog.events import (
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

import stacker.hotfolder
from stacker.hotfolder import HotFolder

SETTLE = 0.4
POLL = min(0.5, SETTLE)  # the polling observer's interval for this settle time


class Clock:
    """Stands in for the ``time`` module in :mod:`stacker.hotfolder`: monotonic time moves only when
    the watcher waits for an event."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


Poll = tuple[float, Callable[[], None], list[FileSystemEvent]]


class Poller:
    """A polling observer and the watcher's event queue in one.

    ``polls``: ``(time, change, events)``: at ``time`` the files change and a poll reports
    ``events``, all at that instant. With ``one_at_a_time`` the watcher gets a single event per
    wait and never a second one while draining, the most split reading there is.
    """

    def __init__(self, clock: Clock, polls: list[Poll], *, one_at_a_time: bool) -> None:
        self.clock = clock
        self.polls = deque(polls)
        self.one_at_a_time = one_at_a_time
        self.queued: deque[object] = deque()
        self.handler: FileSystemEventHandler | None = None

    # -- as the observer
    def schedule(self, handler: FileSystemEventHandler, path: str, **_: object) -> None:
        self.handler = handler

    def start(self) -> None:
        """No thread: the test's clock decides when each poll's events come (see ``get``)."""

    def stop(self) -> None:
        """Nothing runs, so nothing to stop."""

    def join(self, timeout: float | None = None) -> None:
        """Nothing runs, so nothing to wait for."""

    def is_alive(self) -> bool:
        return True

    # -- as the queue
    def put(self, item: object) -> None:
        self.queued.append(item)

    def get_nowait(self) -> object:
        if self.one_at_a_time or not self.queued:
            raise queue.Empty
        return self.queued.popleft()

    def get(self, timeout: float) -> object:
        if not self.queued:
            self._wait(timeout)
        if not self.queued:
            raise queue.Empty
        return self.queued.popleft()

    def _wait(self, timeout: float) -> None:
        end = self.clock.now + timeout
        if not self.polls or self.polls[0][0] > end:
            self.clock.now = end
            return
        at, change, events = self.polls.popleft()
        self.clock.now = max(self.clock.now, at)
        change()
        assert self.handler is not None
        for event in events:
            self.handler.dispatch(event)


def run(
    monkeypatch: pytest.MonkeyPatch, folder: Path, polls: list[Poll], *, one_at_a_time: bool
) -> list[tuple[str, float]]:
    """Each name handed out, with the fake time it was handed out at."""
    clock = Clock()
    poller = Poller(clock, polls, one_at_a_time=one_at_a_time)
    monkeypatch.setattr(stacker.hotfolder, "time", clock)
    hot = HotFolder(folder, settle=SETTLE, polling=True, existing=False)
    monkeypatch.setattr(hot, "_make_observer", lambda: poller)
    monkeypatch.setattr(hot, "_events", poller)
    with hot:
        return [(p.name, clock.now) for p in hot.paths(idle_timeout=5.0)]


def write(*paths: Path, data: bytes = b"frame " * 100) -> Callable[[], None]:
    def change() -> None:
        for path in paths:
            with path.open("ab") as fh:
                fh.write(data)

    return change


@pytest.mark.parametrize("one_at_a_time", [False, True])
@pytest.mark.parametrize(
    "names", [["p1.jpg", "p0.jpg"], ["IMG_0002.JPG", "IMG_0010.JPG", "IMG_0001.JPG"]]
)
def test_new_files_one_poll_finds_are_taken_in_natural_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names: list[str], one_at_a_time: bool
) -> None:
    files = [tmp_path / n for n in names]
    created: list[FileSystemEvent] = [FileCreatedEvent(str(f)) for f in files]
    got = run(monkeypatch, tmp_path, [(101.0, write(*files), created)], one_at_a_time=one_at_a_time)
    assert [name for name, _ in got] == sorted(names, key=stacker.hotfolder.natural_key)
    # No later than settling takes, and a poll's worth of waiting for the last event to be read.
    assert got[0][1] <= 101.0 + SETTLE + POLL


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_a_counter_wrap_within_one_poll_keeps_the_order_of_shooting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_at_a_time: bool
) -> None:
    """IMG_9999 and IMG_0001 in one poll (a camera's FTP burst): by name 0001 went first, in
    the middle of the stack, where the files found at start are ordered across the wrap."""
    import os

    names = ["IMG_9998.JPG", "IMG_9999.JPG", "IMG_0001.JPG"]
    files = [tmp_path / n for n in names]

    def shoot() -> None:
        write(*files)()
        for i, f in enumerate(files):  # written one after the other, as shot
            os.utime(f, (1000.0 + i, 1000.0 + i))

    created: list[FileSystemEvent] = [FileCreatedEvent(str(f)) for f in reversed(files)]
    got = run(monkeypatch, tmp_path, [(101.0, shoot, created)], one_at_a_time=one_at_a_time)
    assert [name for name, _ in got] == names


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_renames_one_poll_finds_are_taken_in_natural_order_without_delay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_at_a_time: bool
) -> None:
    """A rename is complete at once: the first one read must not go out before the watcher has
    read the rest of that poll."""
    names = ["IMG_0002.JPG", "IMG_0001.JPG"]
    files = [tmp_path / n for n in names]
    temporaries = [tmp_path / f".{n}.Xy12Zw" for n in names]

    moved: list[FileSystemEvent] = [
        FileMovedEvent(str(t), str(f)) for t, f in zip(temporaries, files, strict=True)
    ]
    got = run(monkeypatch, tmp_path, [(101.0, write(*files), moved)], one_at_a_time=one_at_a_time)
    assert [name for name, _ in got] == ["IMG_0001.JPG", "IMG_0002.JPG"]
    assert all(at <= 101.0 + POLL for _, at in got)


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_a_file_an_earlier_poll_found_still_goes_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_at_a_time: bool
) -> None:
    """Natural order only among the files of one poll: ``b`` was found a poll before ``a`` and is
    still being written when ``a`` is complete, so ``a`` waits for it."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    polls: list[Poll] = [
        (101.0, write(b), [FileCreatedEvent(str(b))]),
        (101.0 + POLL, write(a, b), [FileModifiedEvent(str(b)), FileCreatedEvent(str(a))]),
        (101.0 + 2 * POLL, write(b), [FileModifiedEvent(str(b))]),
    ]
    got = run(monkeypatch, tmp_path, polls, one_at_a_time=one_at_a_time)
    assert [name for name, _ in got] == ["b.jpg", "a.jpg"]


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_a_new_file_under_a_taken_frames_old_name_is_taken_though_reported_before_the_move(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_at_a_time: bool
) -> None:
    """A tool renames each frame once taken and writes the next under the same name, all
    between two polls. The poll reports the new file (created) before the move that frees its
    name (watchdog's order: deleted, modified, created, moved)."""
    capture, renamed = tmp_path / "capture.jpg", tmp_path / "Beetle_0001.jpg"

    def rename_and_write_the_next() -> None:
        capture.rename(renamed)
        write(capture, data=b"the next frame " * 100)()

    polls: list[Poll] = [
        (101.0, write(capture), [FileCreatedEvent(str(capture))]),
        (
            101.0 + SETTLE + 2 * POLL,
            rename_and_write_the_next,
            [FileCreatedEvent(str(capture)), FileMovedEvent(str(capture), str(renamed))],
        ),
    ]
    got = run(monkeypatch, tmp_path, polls, one_at_a_time=one_at_a_time)
    assert [name for name, _ in got] == ["capture.jpg", "capture.jpg"]
