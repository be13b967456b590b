"""Which file of a RAW+JPEG shot a session stacks: the JPEG, or the RAW for a DNG composite."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.session.folder import (
    OUTPUT_FORMATS,
    SessionConfig,
    SessionFolder,
    SessionFolderError,
    stack_file,
)


def test_raster_first_unless_the_composite_is_a_dng() -> None:
    pair = [Path("frame_0001.NEF"), Path("frame_0001.jpg")]
    assert stack_file(pair) == Path("frame_0001.jpg")
    assert stack_file(pair, raw=True) == Path("frame_0001.NEF")
    # a single file is stacked whatever it is
    assert stack_file([Path("frame_0002.jpg")], raw=True) == Path("frame_0002.jpg")
    assert stack_file([Path("frame_0002.cr2")]) == Path("frame_0002.cr2")


def test_dng_is_a_session_output_format(tmp_path: Path) -> None:
    plan = ShotPlan.from_frames(0.0, 100.0, 3)
    folder = SessionFolder.create(tmp_path / "s", plan, SessionConfig(rig={}, output_format="dng"))
    assert folder.composite_path("dng") == tmp_path / "s" / "composite.dng"
    assert OUTPUT_FORMATS["dng"] == ".dng"
    with pytest.raises(SessionFolderError, match="use tif, png, jpg or dng"):
        SessionFolder.create(tmp_path / "t", plan, SessionConfig(rig={}, output_format="raw"))
