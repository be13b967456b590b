"""The unit parsers answer any text with a finite value or a one-line UnitError."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rig.units import UnitError, format_length, parse_duration, parse_length, parse_speed

SUFFIXES = ["", "um", "µm", "mm", "cm", "m", "km", "steps", "s", "ms", "min", "mm/min", " mm", "e"]
quantities = st.builds(
    lambda x, u: f"{x!r}{u}",
    st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400)),
    st.sampled_from(SUFFIXES),
)
texts = st.one_of(st.text(max_size=24), quantities)


@pytest.mark.slow
@pytest.mark.parametrize(
    "parse",
    [lambda t: parse_length(t)[0], parse_speed, parse_duration],
    ids=["length", "speed", "duration"],
)
@settings(max_examples=400, deadline=None)
@given(text=texts)
@example(text="1e308m")
@example(text="1e305km")
def test_any_text_is_a_finite_value_or_a_one_line_error(
    parse: Callable[[str], float], text: str
) -> None:
    try:
        value = parse(text)
    except UnitError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
    else:
        assert math.isfinite(value)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(value=st.floats(min_value=-1e6, max_value=1e6), unit=st.sampled_from(["um", "steps"]))
def test_a_formatted_length_reads_back(value: float, unit: str) -> None:
    text = format_length(value, unit)  # type: ignore[arg-type]
    back, got = parse_length(text)
    assert got == unit
    assert back == pytest.approx(value, rel=1e-3, abs=0.01)
