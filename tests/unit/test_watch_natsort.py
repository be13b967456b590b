"""Natural ordering of frame names (shared by ``stacker stack`` and ``stacker watch``)."""

from __future__ import annotations

import random
from pathlib import Path

from stacker.natsort import natural_key


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
