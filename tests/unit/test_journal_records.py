"""Hand-edited and arbitrary journals: a result or a one-line error naming file and line.

Property-based (Hypothesis): whatever the lines of ``journal.jsonl`` hold, reading it and
reconciling it with a plan either works or raises :class:`JournalError` whose message is one
line naming the journal — never a KeyError, ValueError or TypeError from deep inside.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.plan import ShotPlan
from rig.session.folder import reconcile
from rig.session.journal import JournalError, read_journal

PLAN = ShotPlan.from_frames(0.0, 100.0, 5, settle_s=0.0)
# tmp_path is shared by the examples of one test (each rewrites the file); a shared, busy
# machine can make generation slow without anything being wrong.
SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=4,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["frame", "merge", "start", "finish"]) | st.text(max_size=5),
        "index": json_values | st.integers(min_value=-2, max_value=7),
        "position": json_values,
        "files": json_values | st.lists(st.text(max_size=12), max_size=2),
        "sizes": json_values | st.lists(st.integers(min_value=-1, max_value=10**6), max_size=2),
    },
)


def write_lines(folder: Path, lines: list[bytes]) -> Path:
    path = folder / "journal.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def read_and_reconcile(path: Path) -> None:
    """Read ``path`` and reconcile it; only a one-line JournalError may come out."""
    try:
        contents = read_journal(path)
    except JournalError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{path}: line ")
        return
    reconcile(PLAN, contents, {})
    for rec in contents.frames().values():
        assert isinstance(rec["index"], int)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(records, max_size=6))
def test_arbitrary_records_read_or_fail_in_one_line(tmp_path: Path, recs: list[dict]) -> None:
    path = write_lines(tmp_path, [json.dumps(r).encode() for r in recs])
    read_and_reconcile(path)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=5))
def test_arbitrary_bytes_read_or_fail_in_one_line(tmp_path: Path, lines: list[bytes]) -> None:
    read_and_reconcile(write_lines(tmp_path, lines))


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"event": "frame", "position": 1.0, "files": []}, "without a frame number 'index'"),
        ({"event": "frame", "index": "three", "files": []}, "'three'"),
        ({"event": "frame", "index": 2.5, "files": []}, "2.5"),
        ({"event": "frame", "index": True, "files": []}, "True"),
        ({"event": "frame", "index": 2, "position": "near"}, "'position' 'near'"),
        ({"event": "frame", "index": 2, "position": 10**400}, "'position' 1000"),
        ({"event": "frame", "index": 2, "files": "frame_0002.jpg"}, "'files'"),
        ({"event": "frame", "index": 2, "files": ["a.jpg"], "sizes": [1, 2]}, "'sizes'"),
        ({"event": "merge", "index": None}, "merge record without a frame number"),
    ],
)
def test_hand_edits_that_break_a_record_name_file_and_line(
    tmp_path: Path, record: dict, needle: str
) -> None:
    good = {"event": "frame", "index": 1, "position": 0.0, "files": ["frames/frame_0001.jpg"]}
    path = write_lines(tmp_path, [b'{"event":"start"}', json.dumps(good).encode(),
                                  json.dumps(record).encode(), b'{"event":"finish"}'])  # fmt: skip
    with pytest.raises(JournalError) as info:
        read_journal(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 3: ") and needle in message, message
    assert "\n" not in message


def test_nan_position_and_deep_nesting_are_one_line_errors(tmp_path: Path) -> None:
    path = write_lines(tmp_path, [b'{"event":"frame","index":1,"position":NaN}', b"{}"])
    with pytest.raises(JournalError, match="line 1: frame 1: 'position' nan"):
        read_journal(path)
    path = write_lines(tmp_path, [b"[" * 100000 + b"]" * 100000, b"{}"])
    with pytest.raises(JournalError, match="line 1 is damaged"):
        read_journal(path)


def test_a_frame_journaled_without_a_position_is_kept_at_the_plans(tmp_path: Path) -> None:
    """A frame record whose position is null (read_journal lets it through: the position is
    not known) stopped the resume on TypeError once its file was on disk."""
    frame = tmp_path / "frame_0002.jpg"
    frame.write_bytes(b"\xff\xd8\xff\xda\x00\x02\xff\xd9")
    record = {"event": "frame", "index": 2, "position": None, "files": ["frame_0002.jpg"]}
    path = write_lines(tmp_path, [json.dumps(record).encode()])
    result = reconcile(PLAN, read_journal(path), {2: [frame]})
    assert result.done[2].position == PLAN.position_of(2) and not result.adopted


def test_the_plans_first_and_last_frames_are_its_own_and_only_others_are_stray(
    tmp_path: Path,
) -> None:
    """Frames 1 and N are the plan's; frame_0000 and frame N+1 (another run's, a hand copy)
    are stray and left alone. The resume said "not part of this plan" of none of its own."""
    jpeg = b"\xff\xd8\xff\xda\x00\x02\xff\xd9"
    on_disk = {}
    for index in range(PLAN.frames + 2):
        path = tmp_path / f"frame_{index:04d}.jpg"
        path.write_bytes(jpeg)
        on_disk[index] = [path]
    result = reconcile(PLAN, read_journal(tmp_path / "journal.jsonl"), on_disk)
    assert sorted(result.done) == list(range(1, PLAN.frames + 1))
    assert sorted(p.name for p in result.stray) == ["frame_0000.jpg", "frame_0006.jpg"]
