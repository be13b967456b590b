"""Marlin's M211 soft-endstop report, as the firmware prints it, read by the rail driver.

The lines are Marlin's own: ``gcode/config/M211.cpp`` (``M211_report``) prints a replayable
``M211 S1 ; ON`` line and then the limits since Marlin 2.0.9.2, and one ``echo:`` line before
that; ``STR_ON``/``STR_OFF`` (``core/language.h``) are upper case in both.
"""

from __future__ import annotations

import pytest

from rig.rails.marlin import parse_soft_endstops

MARLIN_21 = ["M211 S1 ; ON", "Min:  X0.00 Y0.00 Z0.00   Max:  X220.00 Y220.00 Z250.00"]
MARLIN_20 = ["echo:Soft endstops: ON  Min:  X-5.00 Y0.00 Z0.00   Max:  X220.00 Y220.00 Z250.00"]


@pytest.mark.parametrize(
    ("lines", "axis", "expected"),
    [
        (MARLIN_21, "X", (0.0, 220_000.0)),
        (MARLIN_21, "Z", (0.0, 250_000.0)),
        (MARLIN_20, "X", (-5_000.0, 220_000.0)),
    ],
)
def test_soft_endstops_are_read_from_either_report(
    lines: list[str], axis: str, expected: tuple[float, float]
) -> None:
    assert parse_soft_endstops(lines, axis) == expected


@pytest.mark.parametrize(
    "lines",
    [
        ["M211 S0 ; OFF", "Min:  X0.00 Y0.00 Z0.00   Max:  X220.00 Y220.00 Z250.00"],
        ["echo:Soft endstops: OFF  Min:  X0.00 Y0.00 Z0.00   Max:  X220.00 Y220.00 Z250.00"],
        ["M211 S1 ; ON"],  # no limits printed
        ['echo:Unknown command: "M211"'],  # a build without soft endstops
    ],
)
def test_no_soft_endstops_when_off_or_not_reported(lines: list[str]) -> None:
    assert parse_soft_endstops(lines, "X") is None
