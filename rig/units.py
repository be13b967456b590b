"""Lengths, speeds and durations written with explicit units.

Focus steps are small and a slip of a factor of 1000 ruins a stack, so a length is never a bare
number: ``1.5mm``, ``250um``, ``250µm``, ``0.25 mm`` for rails (converted to micrometres) and
``12steps`` / ``12 steps`` for a camera's lens motor, which has no absolute scale.

:func:`parse_length` returns ``(value, unit)`` with ``value`` in micrometres when ``unit`` is
``"um"`` and in lens steps when ``unit`` is ``"steps"``. :func:`parse_speed` and
:func:`parse_duration` serve device URLs (``speed=2mm/s``, ``settle=0.5``).
"""

from __future__ import annotations

import math

from rig.errors import RigError
from rig.focuser import Units
from stacker import quantities
from stacker.quantities import TIME_UNITS, QuantityError, split_quantity


def is_finite(value: float) -> bool:
    """Whether ``value`` is finite as a float: a whole number beyond a float's range (hundreds
    of digits in a hand-edited plan.json or journal) is not, rather than an OverflowError."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class UnitError(RigError):
    """A length, speed or duration that cannot be read; the message shows accepted forms."""


_LENGTH_UNITS: dict[str, tuple[float, Units]] = {
    "mm": (1000.0, "um"),
    "cm": (10000.0, "um"),
    "m": (1_000_000.0, "um"),
    "um": (1.0, "um"),
    "µm": (1.0, "um"),
    "μm": (1.0, "um"),  # Greek mu, which some keyboards produce instead of the micro sign
    "micron": (1.0, "um"),
    "microns": (1.0, "um"),
    "nm": (0.001, "um"),
    "in": (25400.0, "um"),
    "step": (1.0, "steps"),
    "steps": (1.0, "steps"),
}

_LENGTH_HELP = "write a unit, e.g. 1.5mm, 250um, 250µm or 12steps"

TYPED_APART = frozenset(_LENGTH_UNITS.keys() - {"m", "in"}) | frozenset(TIME_UNITS)
"""Units that, typed as a word of their own after a number (``--step 384 um``), can only
belong to it: the command line refuses the pair with the fix. ``m`` and ``in`` are left out,
as words a path might be."""


def _split(text: str) -> tuple[float, str]:
    """``(number, unit)`` of ``text``; a decimal comma (``0,5mm``) is named as such."""
    try:
        return split_quantity(text)
    except QuantityError as exc:
        raise UnitError(str(exc)) from None


MAX_LENGTH_UM = 10_000_000.0
"""The longest length read (10 m): far beyond any focus rail, short of what turns a timeout,
a step count or a 32-bit protocol field into an overflow (``1e30mm`` was a traceback, or a
rail running until it hit its end)."""

MAX_LENS_STEPS = 1_000_000.0
"""The most lens steps read: a lens's whole focus travel is a few thousand."""


def parse_length(text: str) -> tuple[float, Units]:
    """Read a length with its unit.

    Parameters
    ----------
    text
        For example ``"1.5mm"``, ``"250 um"``, ``"250µm"``, ``"-0.1 mm"`` or ``"12 steps"``.

    Returns
    -------
    (value, unit)
        ``value`` in micrometres when ``unit == "um"``, in lens steps when ``unit == "steps"``.

    Raises
    ------
    UnitError
        For a bare number (which unit was meant is a guess we refuse to make), an unknown unit
        or text that is not a number.
    """
    try:
        value, unit = _split(str(text))
    except ValueError:
        raise UnitError(f"cannot read {text!r} as a length: {_LENGTH_HELP}") from None
    if not unit:
        raise UnitError(f"{text!r} has no unit: {_LENGTH_HELP}")
    key = unit if unit in _LENGTH_UNITS else unit.lower()
    if key not in _LENGTH_UNITS:
        raise UnitError(f"unknown length unit {unit!r} in {text!r}: {_LENGTH_HELP}")
    if unit in ("M", "Mm", "NM", "Nm"):
        # Other capitals are read (MM, UM, Steps), but in SI 'M' is mega and 'N' a newton: a
        # 1M read as one metre was a guess.
        raise UnitError(f"length unit {unit!r} in {text!r}: write it in lower case ({key})")
    factor, kind = _LENGTH_UNITS[key]
    limit = MAX_LENGTH_UM if kind == "um" else MAX_LENS_STEPS
    if not abs(value * factor) <= limit:  # nan and inf too
        largest = format_length(limit, kind)
        raise UnitError(f"{text!r}: no focus axis moves that far; give at most {largest}")
    return value * factor, kind


def parse_um(text: str) -> float:
    """Read a physical length (``mm``, ``um``, ...) and return micrometres; steps are refused."""
    value, unit = parse_length(text)
    if unit != "um":
        raise UnitError(f"{text!r} is in lens steps; a physical length is needed, e.g. 250um")
    return value


def parse_speed(text: str) -> float:
    """Read a speed such as ``2mm/s``, ``120 mm/min`` or ``500um/s`` and return mm/min.

    G-code feed rates are in mm/min, so that is what drivers need.
    """
    bad = UnitError(f"cannot read {text!r} as a speed: write e.g. 2mm/s, 120mm/min or 500um/s")
    if "/" not in str(text):
        raise bad
    length_text, _, time_unit = str(text).rpartition("/")
    seconds = TIME_UNITS.get(time_unit.strip().lower())
    if seconds is None:
        raise bad
    try:
        um = parse_um(length_text)
    except UnitError:
        raise bad from None
    if um <= 0:
        raise UnitError(f"speed {text!r} must be positive")
    return um / 1000.0 / seconds * 60.0


def parse_duration(text: str) -> float:
    """Read a duration in seconds: ``0.5``, ``0.5s``, ``500ms`` or ``1min``
    (:func:`stacker.quantities.parse_duration`, as every stackrig command reads one)."""
    try:
        return quantities.parse_duration(text)
    except QuantityError as exc:
        raise UnitError(str(exc)) from None


def format_length(value: float, unit: Units = "um") -> str:
    """Format a length for people: ``"1.5 mm"``, ``"250 µm"``, ``"12 steps"``.

    Micrometre values of 1 mm or more are shown in millimetres. The result parses back with
    :func:`parse_length`.
    """
    value = float(value) + 0.0  # -0.0 (a plan to -0mm) is shown as 0
    if unit == "steps":
        count = f"{value:.0f}" if float(value).is_integer() else f"{value:g}"
        return f"{count} steps"
    if abs(value) >= 1000.0:
        return f"{value / 1000.0:.4f}".rstrip("0").rstrip(".") + " mm"
    if 0.0 < abs(value) < 0.005:  # would round to "0 µm": a step of 0.0001um is not nothing
        return f"{value:.2g} µm"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " µm"
