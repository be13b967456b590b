"""Numbers with units as people type them, read the same way by every stackrig command.

A quantity is a number and an optional unit (``0.5s``, ``500 ms``, ``1.5mm``); a decimal comma
(``0,5s``) is named as such rather than misread. Durations are read here, for ``stacker
watch``'s windows and for ``rig``'s settle times and device URLs alike: ``0.5``, ``0.5s`` and
``500ms`` are all half a second everywhere. :mod:`rig.units` adds lengths and speeds on top.
"""

from __future__ import annotations

import math
import re

from stacker.errors import StackerError

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_QUANTITY = re.compile(rf"\s*({_NUMBER})\s*([^0-9\s.+-]\S*)?\s*")
"""A number in ASCII digits and an optional unit; spaces around them, no-break ones too (text
copied from a web page). Another script's digits are not read."""
_DECIMAL_COMMA = re.compile(r"[0-9],[0-9]")

TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 0.001, "min": 60.0}
"""Seconds per time unit, by the names a duration may use."""


class QuantityError(StackerError):
    """A number with a unit that cannot be read; the message shows accepted forms."""


def split_quantity(text: str) -> tuple[float, str]:
    """``(number, unit)`` of ``text`` (the unit ``""`` when none is written).

    Raises :class:`QuantityError` for a decimal comma (naming the fix) and ``ValueError`` for
    anything else that is not a finite number with an optional unit: the caller knows what
    kind of quantity was meant and says so.
    """
    if _DECIMAL_COMMA.search(text):
        # 1,000um: a thousands separator, or 1.000um?
        if re.search(r"[0-9],[0-9]{3}(?![0-9])", text):
            plain, point = text.replace(",", ""), text.replace(",", ".")
            raise QuantityError(
                f"{text!r}: no commas in numbers; write {plain} (a thousand) or {point}"
            )
        raise QuantityError(f"{text!r}: write decimals with a point, e.g. {text.replace(',', '.')}")
    match = _QUANTITY.fullmatch(text)
    if not match or len(text.splitlines()) > 1:  # a second line pasted in
        raise ValueError(text)
    value = float(match.group(1))
    if not math.isfinite(value):
        raise ValueError(text)
    return value, (match.group(2) or "")


def parse_duration(text: str) -> float:
    """Read a duration in seconds: ``0.5``, ``0.5s``, ``500ms`` or ``1min``.

    Unlike lengths, a bare number is accepted and means seconds: there is no other plausible
    reading of ``settle=0.5``.
    """
    try:
        value, unit = split_quantity(str(text))
    except ValueError:
        raise QuantityError(
            f"cannot read {text!r} as a duration: write e.g. 0.5s or 500ms"
        ) from None
    factor = 1.0 if not unit else TIME_UNITS.get(unit.lower())
    if factor is None:
        raise QuantityError(f"unknown time unit {unit!r} in {text!r}: use s, ms or min")
    if value < 0:
        raise QuantityError(f"duration {text!r} must not be negative")
    return value * factor
