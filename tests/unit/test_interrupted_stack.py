"""What an interrupted ``stacker stack`` says it wrote: judged by the files, not the clock."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stacker.errors import Interrupted
from stacker.io import atomic_write_bytes
from stacker.paths import interrupted_stack


def _interrupt(output: Path, depth: Path | None, write: list[Path]) -> str:
    with pytest.raises(Interrupted) as err, interrupted_stack(output, depth, 12, lambda: 5):
        for path in write:
            atomic_write_bytes(path, b"new")
        raise KeyboardInterrupt
    return str(err.value)


def test_an_old_output_dated_ahead_of_the_clock_is_not_called_new(tmp_path: Path) -> None:
    """Written while the clock ran an hour ahead (a Pi's clock before NTP set it back)."""
    output = tmp_path / "composite.tif"
    output.write_bytes(b"old")
    ahead = time.time() + 3600
    os.utime(output, (ahead, ahead))
    said = _interrupt(output, None, [])
    assert said == f"interrupted after 5 of 12 frames; nothing written ({output} left as it was)"


def test_an_output_written_after_the_clock_went_back_is_called_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output, depth = tmp_path / "composite.tif", tmp_path / "depth.png"
    output.write_bytes(b"old")
    behind = time.time() - 3600
    real_replace = os.replace

    def replace_then_date_back(src: str, dst: str) -> None:  # the clock set back meanwhile
        real_replace(src, dst)
        os.utime(dst, (behind, behind))

    monkeypatch.setattr(os, "replace", replace_then_date_back)
    said = _interrupt(output, depth, [output])
    assert said.startswith(f"interrupted after 5 of 12 frames; wrote {output}; not {depth}")
