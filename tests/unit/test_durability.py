"""What a power cut cannot undo: a journal record and an atomically written file are on the
disk (fsynced) before anything counts on them.

No test here can cut the power, so the system calls are watched instead: ``os.write``,
``os.fsync`` and ``os.replace`` are wrapped (they still run) and each call is recorded with the
inode it touched. The order on one inode is what makes the file durable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rig.session.journal import Journal, read_journal
from stacker.io import atomic_write_bytes

Calls = list[tuple[str, int]]


def _inode_of_fd(fd: int) -> int:
    return os.fstat(fd).st_ino


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """``(call, inode)`` of every write, fsync and replace, in order."""
    seen: Calls = []

    def watch(name: str, inode: Callable[..., int]) -> None:
        real = getattr(os, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            node = inode(*args)
            result = real(*args, **kwargs)
            seen.append((name, node))
            return result

        monkeypatch.setattr(os, name, call)

    watch("write", lambda fd, _data: _inode_of_fd(fd))
    watch("fsync", _inode_of_fd)
    watch("replace", lambda src, _dst: os.stat(src).st_ino)
    return seen


def test_a_journal_record_is_fsynced_after_its_bytes(tmp_path: Path, calls: Calls) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:
        calls.clear()
        journal.append("frame", index=1, position=0.0, files=["frames/frame_0001.jpg"])
        inode = path.stat().st_ino
        mine = [name for name, node in calls if node == inode]
    assert "write" in mine and mine[-1] == "fsync", mine
    assert sorted(read_journal(path).frames()) == [1]


def test_an_atomic_write_is_fsynced_before_its_rename(tmp_path: Path, calls: Calls) -> None:
    target = tmp_path / "frame_0001.jpg"
    atomic_write_bytes(target, b"\xff\xd8 a frame \xff\xd9")
    inode = target.stat().st_ino
    mine = [name for name, node in calls if node == inode]
    assert mine[-2:] == ["fsync", "replace"], mine
    folder = tmp_path.stat().st_ino
    after = calls[[n for n, _ in calls].index("replace") :]
    assert ("fsync", folder) in after  # the rename itself made durable
    assert target.read_bytes() == b"\xff\xd8 a frame \xff\xd9"
