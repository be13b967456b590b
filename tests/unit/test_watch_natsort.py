"""The order of frames in a folder (shared by ``stacker stack``, ``batch`` and ``watch``)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from stacker.natsort import frame_order, natural_key


def test_numbers_compare_as_numbers_and_case_is_ignored() -> None:
    names = ["frame_10.jpg", "frame_2.jpg", "Frame_1.jpg", "frame_100.jpg", "frame_9.jpg"]
    assert sorted(names, key=natural_key) == [
        "Frame_1.jpg",
        "frame_2.jpg",
        "frame_9.jpg",
        "frame_10.jpg",
        "frame_100.jpg",
    ]


def test_order_is_total_and_independent_of_input_order() -> None:
    names = ["f1.jpg", "f01.jpg", "F1.jpg", "f001.jpg", "f1.png", "g.jpg", "1.jpg", "f.jpg"]
    expected = sorted(names, key=natural_key)
    rng = random.Random(3)
    for _ in range(20):
        shuffled = names[:]
        rng.shuffle(shuffled)
        assert sorted(shuffled, key=natural_key) == expected
    assert expected[0] == "1.jpg"  # digits before letters, like plain sorting


def test_paths_sort_folder_by_folder() -> None:
    paths = [Path("s10/a.jpg"), Path("s2/b10.jpg"), Path("s2/b9.jpg"), Path("s1/z.jpg")]
    assert sorted(paths, key=natural_key) == [
        Path("s1/z.jpg"),
        Path("s2/b9.jpg"),
        Path("s2/b10.jpg"),
        Path("s10/a.jpg"),
    ]


def shot(folder: Path, names: list[str], times: list[float]) -> None:
    """Empty files named ``names`` with these modification times (seconds before now)."""
    now = time.time()
    for name, ago in zip(names, times, strict=True):
        (folder / name).write_bytes(b"")
        os.utime(folder / name, (now - ago, now - ago))


def test_frames_shot_across_a_counter_wrap_start_at_the_first_one_shot(tmp_path: Path) -> None:
    """The camera's counter went from 9999 to 0001 within the stack; a memory card keeps times to
    2 s, so frames on either side of the wrap may share one."""
    names = ["IMG_9997.JPG", "IMG_9998.JPG", "IMG_9999.JPG", "IMG_0001.JPG", "IMG_0002.JPG"]
    shot(tmp_path, names, [6, 6, 4, 4, 2])
    assert [p.name for p in frame_order(tmp_path.iterdir())] == names


def test_a_wrap_needs_both_the_names_and_the_times(tmp_path: Path) -> None:
    """Times that fall back once are no wrap when the numbers run on across that place (the first
    frames rotated in a viewer since), nor are names on both sides of a counter's end whose times
    do not say so (a copy in name order), nor numbers that are not a counter's."""
    cases = [
        (["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.JPG"], [2, 1, 6, 5]),
        (["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.JPG"], [3, 1, 4, 2]),
        (["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.JPG"], [5, 5, 5, 5]),
        (["IMG_0001.JPG", "IMG_0002.JPG", "IMG_9998.JPG", "IMG_9999.JPG"], [4, 3, 2, 1]),
        (["IMG_2.NEF", "IMG_10.NEF"], [1, 2]),
        (["a_0001.jpg", "b_9999.jpg"], [1, 2]),
    ]
    for names, ago in cases:
        for old in tmp_path.iterdir():
            old.unlink()
        shot(tmp_path, names, ago)
        assert [p.name for p in frame_order(tmp_path.iterdir())] == names, names


def test_a_wrap_of_a_counter_behind_a_fixed_zero_is_seen(tmp_path: Path) -> None:
    """Sony names frames DSC0 and a four-digit counter (DSC09999.JPG, then DSC00001.JPG): the
    counter wraps at 9999 even though the digits run five wide."""
    names = ["DSC09998.JPG", "DSC09999.JPG", "DSC00001.JPG", "DSC00002.JPG"]
    shot(tmp_path, names, [6, 4, 4, 2])
    assert [p.name for p in frame_order(tmp_path.iterdir())] == names


def test_five_digit_counters_that_run_on_are_not_a_wrap(tmp_path: Path) -> None:
    """A wider counter that crossed 9999 runs on in natural order, and one that only skipped
    numbers (shot in name order) is no wrap either."""
    cases = [
        (["f_09998.jpg", "f_09999.jpg", "f_10000.jpg", "f_10001.jpg"], [4, 3, 2, 1]),
        (["DSC00001.JPG", "DSC00002.JPG", "DSC09998.JPG", "DSC09999.JPG"], [4, 3, 2, 1]),
    ]
    for names, ago in cases:
        for old in tmp_path.iterdir():
            old.unlink()
        shot(tmp_path, names, ago)
        assert [p.name for p in frame_order(tmp_path.iterdir())] == names, names
