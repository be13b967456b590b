"""Which file of a RAW+JPEG shot a session stacks: the JPEG, or the RAW for a DNG composite."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.session.folder import SessionConfig, SessionFolder, stack_file
from stacker.errors import StackerError
from stacker.options import OUTPUT_FORMATS, StackOptions


def test_raster_first_unless_the_composite_is_a_dng() -> None:
    pair = [Path("frame_0001.NEF"), Path("frame_0001.jpg")]
    assert stack_file(pair) == Path("frame_0001.jpg")
    assert stack_file(pair, raw=True) == Path("frame_0001.NEF")
    # a single file is stacked whatever it is
    assert stack_file([Path("frame_0002.jpg")], raw=True) == Path("frame_0002.jpg")
    assert stack_file([Path("frame_0002.cr2")]) == Path("frame_0002.cr2")


def test_dng_is_a_session_output_format(tmp_path: Path) -> None:
    plan = ShotPlan.from_frames(0.0, 100.0, 3)
    stack = StackOptions.parse({"output_format": "dng"})
    SessionFolder.create(tmp_path / "s", plan, SessionConfig(rig={}, stack=stack))
    folder = SessionFolder(tmp_path / "s")
    assert folder.composite_path("dng") == tmp_path / "s" / "composite.dng"
    assert OUTPUT_FORMATS["dng"] == ".dng"
    with pytest.raises(StackerError, match="raw"):
        StackOptions.parse({"output_format": "raw"})
