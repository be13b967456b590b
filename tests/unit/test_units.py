"""Lengths, speeds and durations with explicit units."""

import re

import pytest

from rig.units import (
    UnitError,
    format_length,
    parse_duration,
    parse_length,
    parse_speed,
    parse_um,
)


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("1.5mm", 1500.0, "um"),
        ("0.25 mm", 250.0, "um"),
        ("250um", 250.0, "um"),
        ("250µm", 250.0, "um"),
        ("250μm", 250.0, "um"),  # Greek mu
        ("250 microns", 250.0, "um"),
        ("-0.1mm", -100.0, "um"),
        (".5mm", 500.0, "um"),
        ("2cm", 20000.0, "um"),
        ("500nm", 0.5, "um"),
        ("12steps", 12.0, "steps"),
        ("12 steps", 12.0, "steps"),
        ("1 step", 1.0, "steps"),
        ("  3 MM ", 3000.0, "um"),
    ],
)
def test_parse_length(text: str, value: float, unit: str) -> None:
    got_value, got_unit = parse_length(text)
    assert got_value == pytest.approx(value)
    assert got_unit == unit


def test_bare_number_is_refused_with_a_hint() -> None:
    with pytest.raises(UnitError, match=r"'250' has no unit: write a unit, e.g. 1.5mm"):
        parse_length("250")


@pytest.mark.parametrize(
    "text", ["", "mm", "1.5 furlongs", "1..5mm", "1.5 m m", "nan mm", "1e308m", "1e305km"]
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_length(text)
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "parse",
    [parse_length, parse_duration, parse_speed],
    ids=["length", "duration", "speed"],
)
@pytest.mark.parametrize(
    "text", ["1.5\nmm", "1.5\r\nmm/s", "1.5mm\n2mm", "0.5\u2028s", "\u0661.5mm", "\uff11mm"]
)
def test_a_line_break_or_another_scripts_digits_are_not_a_quantity(parse, text: str) -> None:
    """Python's own digits class reads Arabic-Indic and full-width digits, and its spaces a
    line break: a second line pasted into a field was read as the unit of the first."""
    with pytest.raises(UnitError) as info:
        parse(text)
    assert repr(text) in str(info.value)


def test_spaces_around_a_quantity_are_read_no_break_ones_too() -> None:
    assert parse_length("1.5\u00a0mm") == (1500.0, "um")
    assert parse_length("\t250 um\n") == (250.0, "um")
    assert parse_duration(" 500ms ") == 0.5
    assert parse_speed("2 mm/s") == 120.0


def test_parse_um_refuses_steps() -> None:
    assert parse_um("1.5mm") == 1500.0
    with pytest.raises(UnitError, match="lens steps"):
        parse_um("5steps")


def test_speeds_are_mm_per_minute() -> None:
    assert parse_speed("2mm/s") == pytest.approx(120.0)
    assert parse_speed("120 mm/min") == pytest.approx(120.0)
    assert parse_speed("500um/s") == pytest.approx(30.0)
    for bad in ("2", "2mm", "-1mm/s", "2mm/fortnight"):
        with pytest.raises(UnitError):
            parse_speed(bad)


def test_durations_accept_bare_seconds() -> None:
    assert parse_duration("0.5") == 0.5
    assert parse_duration("0.5s") == 0.5
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("1min") == 60.0
    for bad in ("-1", "3 parsecs", "soon"):
        with pytest.raises(UnitError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(1500.0, "um", "1.5 mm"), (250.0, "um", "250 µm"), (12.5, "um", "12.5 µm"),
     (-2000.0, "um", "-2 mm"), (12.0, "steps", "12 steps"), (0.0001, "um", "0.0001 µm"),
     (-0.0, "um", "0 µm"), (-0.0, "steps", "0 steps")],  # a plan to -0mm said "→ -0 µm"
)  # fmt: skip
def test_format_round_trips(value: float, unit: str, text: str) -> None:
    assert format_length(value, unit) == text  # type: ignore[arg-type]
    assert parse_length(text) == (pytest.approx(value), unit)


@pytest.mark.parametrize(
    ("parse", "text", "fix"),
    [(parse_length, "0,5mm", "0.5mm"), (parse_length, "1,25 mm", "1.25 mm"),
     (parse_duration, "1,5s", "1.5s")],
)  # fmt: skip
def test_a_decimal_comma_is_named_with_the_number_as_meant(parse, text: str, fix: str) -> None:
    """Typed as most of Europe writes it, '0,5mm' was called an unknown unit ',5mm'."""
    with pytest.raises(UnitError, match=re.escape(f"write decimals with a point, e.g. {fix}")):
        parse(text)


@pytest.mark.parametrize(
    ("text", "plain", "point"),
    [("1,000um", "1000um", "1.000um"), ("2,500 mm", "2500 mm", "2.500 mm")],
)
def test_a_comma_before_three_digits_is_not_guessed(text: str, plain: str, point: str) -> None:
    """'1,000um' was called a decimal comma, and the advice (1.000um) gave 1 µm for 1000."""
    with pytest.raises(UnitError) as info:
        parse_length(text)
    assert f"no commas in numbers; write {plain} (a thousand) or {point}" in str(info.value)


def test_capitals_are_read_but_mega_is_not_guessed() -> None:
    """'1M' and '1Mm' were read as one metre and one millimetre."""
    assert parse_length("1MM") == (1000.0, "um") and parse_length("2Steps") == (2.0, "steps")
    for text in ("1M", "1Mm", "3NM"):
        with pytest.raises(UnitError, match="write it in lower case"):
            parse_length(text)
