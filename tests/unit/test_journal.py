"""The session journal: fsynced JSON lines, torn-line tolerance, repair before appending."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from rig.session.journal import (
    Journal,
    JournalContents,
    JournalError,
    RailLeft,
    rail_left,
    read_journal,
)


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as j:
        j.append("start", frames=3)
        j.append("frame", index=1, position=0.0, files=["frames/frame_0001.jpg"])
        j.append("frame", index=2, position=50.0, files=["frames/frame_0002.jpg"])
    contents = read_journal(path)
    assert not contents.torn_tail
    assert [r["event"] for r in contents.records] == ["start", "frame", "frame"]
    assert sorted(contents.frames()) == [1, 2]
    assert contents.frames()[2]["position"] == 50.0


def test_missing_journal_is_empty(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "nope.jsonl").records == ()


@pytest.mark.parametrize(
    "tail", [b'{"event":"frame","index":3,"pos', b'{"event":"fr\n', b"\x00\x00"]
)
def test_torn_last_line_is_ignored_and_cut_before_appending(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as j:
        j.append("frame", index=1, position=0.0, files=[])
        j.append("frame", index=2, position=1.0, files=[])
    whole = path.read_bytes()
    path.write_bytes(whole + tail)
    contents = read_journal(path)
    assert contents.torn_tail
    assert sorted(contents.frames()) == [1, 2]
    with Journal.open(path) as j:  # repairs, then appends on a clean line boundary
        j.append("frame", index=3, position=2.0, files=[])
    again = read_journal(path)
    assert not again.torn_tail
    assert sorted(again.frames()) == [1, 2, 3]
    assert path.read_bytes().startswith(whole)


def test_damage_in_the_middle_is_an_error_not_a_guess(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"event":"start"}\n{garbage\n{"event":"frame","index":1}\n')
    with pytest.raises(JournalError, match="line 2"):
        read_journal(path)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal.open(path)

    def write(kind: str) -> None:
        for i in range(50):
            j.append(kind, index=i, payload="x" * 200)

    threads = [threading.Thread(target=write, args=(k,)) for k in ("frame", "merge")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    j.close()
    contents = read_journal(path)
    assert len(contents.of_kind("frame")) == 50 and len(contents.of_kind("merge")) == 50


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "journal.jsonl")
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append("frame", index=1)


@pytest.mark.parametrize(
    ("err", "said"),
    [(errno.ENOSPC, "free some space, then resume"), (errno.EIO, "check the disk, then resume")],
)
def test_a_refused_append_says_what_to_do_about_that_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, said: str
) -> None:
    """Every refused append said "free some disk space", an input/output error (a failing
    card) too. The refusal is injected: no file system here fails an append on request."""
    import rig.session.journal

    def refused(fd: int, line: bytes) -> None:
        raise OSError(err, os.strerror(err))

    j = Journal.open(tmp_path / "journal.jsonl")
    monkeypatch.setattr(rig.session.journal, "_append_whole", refused)
    with pytest.raises(JournalError, match=f"{os.strerror(err)}\\); {said}$"):
        j.append("frame", index=1)
    j.close()


def test_a_journal_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    """A link in a session folder copied from elsewhere: its repair and appends hit its target."""
    victim = tmp_path / "elsewhere.jsonl"
    victim.write_bytes(b'{"event":"start"}\n{"torn')  # what a repair would cut short
    link = tmp_path / "journal.jsonl"
    link.symlink_to(victim)
    with pytest.raises(JournalError, match=r"journal\.jsonl: a symbolic link, not the session.s"):
        read_journal(link)
    with pytest.raises(JournalError, match="a symbolic link"):
        Journal.open(link)
    assert victim.read_bytes() == b'{"event":"start"}\n{"torn'


def test_where_the_rail_was_left_is_the_latest_frame_move_or_finish() -> None:
    """A resume told that nothing has moved (``--accept-position``) gives a restarted
    controller this place. The last frame's was wrong whenever the run moved on after it: to
    the next frame before the last one was journaled, into a settle a stop cut short, back to
    the start at the end."""

    def left(*records: dict) -> RailLeft | None:
        return rail_left(JournalContents(tuple(records)))

    def frame(index: int, position: float, **more: object) -> dict:
        return {"event": "frame", "index": index, "position": position, **more}

    assert left() is None and left({"event": "start"}) is None
    # A stackrig before moves were journaled moved on before journaling too: its last frame
    # is not where it left the rail (a resume so told shot every missing frame a step off).
    assert left({"event": "start"}, frame(1, 0.0), frame(2, 100.0)) == RailLeft(None)
    moved_on = (frame(1, 0.0), {"event": "move", "to": 200.0}, frame(2, 100.0))
    assert left(*moved_on) == RailLeft(200.0, None)
    returned = (*moved_on, {"event": "move", "to": 0.0}, {"event": "finish", "rail_at": 0.0})
    assert left(*returned) == RailLeft(0.0, 1)  # frame 1 was shot there
    assert left(*moved_on, {"event": "finish", "rail_at": 150.0}) == RailLeft(150.0, None)
    assert left(*moved_on, {"event": "finish", "rail_at": None}) == RailLeft(None, None)
    assert left(*moved_on, {"event": "finish"}) == RailLeft(200.0, None)  # no rail (a tether)
    adopted = (*returned, {"event": "resume"}, frame(3, 200.0, adopted=True))
    assert left(*adopted) == RailLeft(0.0, 1)  # found on disk at a resume: nothing moved
    assert left(
        {"event": "start"}, {"event": "move", "to": 0.0}, frame(1, 0.0),
        {"event": "resume"}, frame(2, 100.0, adopted=True),
    ) == RailLeft(0.0, 1)  # fmt: skip
    # A newer session resumed by an older stackrig (no moves journaled), then by this one:
    # where the older left the rail is not known, whatever the newer's finish said.
    newer = ({"event": "start"}, {"event": "move", "to": 0.0}, frame(1, 0.0),
             {"event": "move", "to": 100.0}, {"event": "finish", "rail_at": 100.0})  # fmt: skip
    assert left(*newer) == RailLeft(100.0, None)
    older = ({"event": "resume"}, frame(2, 100.0), frame(3, 200.0), {"event": "finish"})
    assert left(*newer, *older) == RailLeft(None)
    assert left(*newer, *older, {"event": "resume"}, {"event": "move", "to": 300.0}) == (
        RailLeft(300.0, None)  # moved again since: known again
    )


def test_a_new_journal_s_name_is_made_durable_once(tmp_path: Path, monkeypatch) -> None:
    """The records were fsynced but the folder holding the new file's name was not: a power
    cut soon after a session began could keep its frames and lose its journal."""
    import rig.session.journal as journal_module

    synced: list[Path] = []
    monkeypatch.setattr(journal_module, "fsync_dir", synced.append)
    path = tmp_path / "journal.jsonl"
    Journal.open(path).close()
    Journal.open(path).close()  # an existing journal: its name is already there
    assert synced == [tmp_path]


def test_a_whole_last_record_without_its_newline_is_kept_not_cut(tmp_path: Path) -> None:
    """A journal corrected by hand, as its errors ask, and saved without a final newline: its
    last record, whole, was taken for a torn append and cut off the file (a finish record's
    rail_at with it, which a resume with --accept-position gives the rail)."""
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as j:
        j.append("frame", index=1, position=0.0, files=[])
        j.append("finish", reason="interrupted", rail_at=123.4)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    contents = read_journal(path)
    assert not contents.torn_tail and contents.records[-1]["rail_at"] == 123.4
    assert rail_left(contents) == RailLeft(123.4)
    with Journal.open(path) as j:
        j.append("resume", frames=2)
    again = read_journal(path)
    assert not again.torn_tail and not again.unterminated
    assert [r["event"] for r in again.records] == ["frame", "finish", "resume"]
