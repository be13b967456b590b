"""`stacker stack` on damaged frames and odd file names: each problem is one line on stderr."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.commands import one_line_error, stacker

TABLE = ("┏", "┃", "┡", "│", "└")


def write_frames(folder: Path, count: int = 3) -> list[Path]:
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur((rng.random((72, 96, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
    paths = [folder / f"good{n}.png" for n in range(count)]
    for n, p in enumerate(paths):
        frame[0, 0] = n  # each a frame of its own: copies of one are stacked once
        cv2.imwrite(str(p), frame)
    return paths


def stray_lines(stderr: str) -> list[str]:
    """Lines that are neither a warning, the one error, nor the summary table."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith(("warning: ", "stacker: error: ", *TABLE))
        and not line.strip().endswith("frames merged")
    ]


@pytest.mark.slow
def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    """The warning and the error printed the name as it is: its newline cut the message in
    two, the second line naming neither the problem nor the run."""
    good = write_frames(tmp_path)
    bad = tmp_path / "bad\nframe.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "out.tif"
    proc = stacker("stack", good[0], bad, *good[1:], "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert not stray_lines(proc.stderr), proc.stderr
    assert "bad\\nframe.jpg" in proc.stderr
    line = one_line_error(stacker("stack", "--strict", good[0], bad, *good[1:], "-o", out))
    assert "bad\\nframe.jpg" in line and not stray_lines(proc.stderr)
