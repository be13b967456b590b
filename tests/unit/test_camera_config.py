"""Validation of setting values against their widget description (no camera needed).

The virtual camera has no range widget, so range and date rules are checked on ConfigItem
values here; radio, toggle and read-only rules also run against the virtual camera in
test_camera_vcamera.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from rig.camera import ConfigItem, ConfigValueError
from rig.camera.config import coerce_value
from rig.camera.naming import free_stem, next_auto_stem, shot_file_names

ZOOM = ConfigItem("eoszoom", "Zoom", "range", 1.0, range=(1.0, 10.0, 0.5))
ISO = ConfigItem("iso", "ISO Speed", "radio", "100", choices=("Auto", "100", "200", "400"))


def test_range_values_must_be_inside_and_on_a_step() -> None:
    assert coerce_value(ZOOM, "2.5") == 2.5
    assert coerce_value(ZOOM, 10) == 10.0
    for bad, why in (("10.5", "out of range"), ("2.2", "not on a step"), ("wide", "not a number")):
        with pytest.raises(ConfigValueError) as err:
            coerce_value(ZOOM, bad)
        assert str(err.value) == (
            f"setting 'eoszoom' cannot be {bad!r}: {why}; valid: a number from 1 to 10 in steps "
            "of 0.5"
        )


def test_radio_choices_dates_and_buttons() -> None:
    assert coerce_value(ISO, "auto") == "Auto"
    assert coerce_value(ISO, 400) == "400"
    with pytest.raises(ConfigValueError, match=r"'iso' cannot be '1600'.*one of: Auto, 100, 200"):
        coerce_value(ISO, "1600")
    clock = ConfigItem("datetime", "Camera Date and Time", "date", 0)
    assert coerce_value(clock, "2026-03-04 05:06:07") == int(
        datetime(2026, 3, 4, 5, 6, 7).timestamp()
    )
    assert coerce_value(clock, "1700000000") == 1700000000
    with pytest.raises(ConfigValueError, match="not a date"):
        coerce_value(clock, "yesterday")
    for beyond in ("2200-01-01 00:00:00", "4294967296", "-3000000000", "9999-12-31 23:59:59"):
        with pytest.raises(ConfigValueError, match="outside 1970-01-01 to 2038-01-19"):
            coerce_value(clock, beyond)  # libgphoto2's int overflowed with a traceback
    button = ConfigItem("autofocusdrive", "Drive Nikon DSLR Autofocus", "button", None)
    with pytest.raises(ConfigValueError, match="action button"):
        coerce_value(button, "1")


def test_display_values() -> None:
    assert ZOOM.display_value() == "1"
    assert ISO.display_value() == "100"
    assert ISO.valid_values() == "one of: Auto, 100, 200, 400"


def test_stems_never_reuse_a_name_and_sort_in_shot_order(tmp_path: Path) -> None:
    assert next_auto_stem(tmp_path) == "frame_0001"
    (tmp_path / "frame_0009.cr2").write_bytes(b"")
    (tmp_path / "frame_0009.jpg").write_bytes(b"")
    (tmp_path / "frame_0010-2.jpg").write_bytes(b"")
    assert next_auto_stem(tmp_path) == "frame_0011"
    assert free_stem(tmp_path, "frame_0011", ["IMG_1.CR2"]) == "frame_0011"
    assert free_stem(tmp_path, "frame_0009", ["IMG_1.CR2", "IMG_1.JPG"]) == "frame_0009_2"
    # A second file with the same extension gets -2; that name must be free as well.
    (tmp_path / "s-2.jpg").write_bytes(b"")
    assert free_stem(tmp_path, "s", ["A.JPG", "B.JPG"]) == "s_2"
    assert shot_file_names("s", ["IMG_1.CR2", "IMG_1.JPG", "IMG_2.JPG"]) == [
        "s.cr2",
        "s.jpg",
        "s-2.jpg",
    ]
    assert sorted(["frame_0010.jpg", "frame_0009_2.jpg", "frame_0009.jpg"]) == [
        "frame_0009.jpg",
        "frame_0009_2.jpg",
        "frame_0010.jpg",
    ]
