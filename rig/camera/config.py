"""The camera's configuration tree as plain data, and type-aware validation of new values.

libgphoto2 presents settings as a tree of widgets: sections holding text, range, toggle, radio,
menu, button and date widgets, each with a unique ``name`` (the key users type: ``iso``,
``f-number``, ``capturetarget``). :class:`ConfigItem` is one leaf as a frozen value;
:func:`coerce_value` checks a user's value against it *before* anything is sent, because
libgphoto2 itself accepts any string for a radio widget and leaves the camera to misbehave.

The functions here only call widget methods (``get_type``, ``get_value``, ``get_choice``...), so
they work on real gphoto2 widgets and on any object with the same methods.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rig.camera.errors import ConfigKeyError, ConfigValueError

# libgphoto2's CameraWidgetType values (gphoto2-widget.h); stable ABI.
WIDGET_WINDOW = 0
WIDGET_SECTION = 1
WIDGET_TEXT = 2
WIDGET_RANGE = 3
WIDGET_TOGGLE = 4
WIDGET_RADIO = 5
WIDGET_MENU = 6
WIDGET_BUTTON = 7
WIDGET_DATE = 8

Kind = Literal["window", "section", "text", "range", "toggle", "radio", "menu", "button", "date"]
KINDS: dict[int, Kind] = {
    WIDGET_WINDOW: "window",
    WIDGET_SECTION: "section",
    WIDGET_TEXT: "text",
    WIDGET_RANGE: "range",
    WIDGET_TOGGLE: "toggle",
    WIDGET_RADIO: "radio",
    WIDGET_MENU: "menu",
    WIDGET_BUTTON: "button",
    WIDGET_DATE: "date",
}
Value = str | float | int | None

_TRUE = {"1", "on", "true", "yes"}
_FALSE = {"0", "off", "false", "no"}
_LIST_LIMIT = 40
"""Choices shown in an error message before it says how many more there are."""


@dataclass(frozen=True)
class ConfigItem:
    """One camera setting.

    Attributes
    ----------
    key
        The widget name users type (``iso``).
    label
        libgphoto2's human label (translated to the user's locale).
    kind
        ``text``, ``range``, ``toggle``, ``radio``, ``menu``, ``button`` or ``date``.
    value
        Current value: ``str`` for text/radio/menu, ``float`` for range, ``int`` for toggle
        (0/1; 2 means "unknown" on some bodies) and date (Unix time); ``None`` for buttons.
    choices
        Allowed values of a radio or menu widget, in the camera's order.
    range
        ``(minimum, maximum, step)`` of a range widget.
    readonly
        True when the camera reports the value but refuses changes.
    section
        Name of the section holding the setting (``capturesettings``).
    """

    key: str
    label: str
    kind: Kind
    value: Value
    choices: tuple[str, ...] = ()
    range: tuple[float, float, float] | None = None
    readonly: bool = False
    section: str = ""

    def display_value(self) -> str:
        """The value as a user would type it back."""
        if self.value is None:
            return ""
        if self.kind == "range" and isinstance(self.value, float):
            return _num(self.value)
        if self.kind == "date" and isinstance(self.value, int):
            return datetime.fromtimestamp(self.value).isoformat(sep=" ")
        return str(self.value)

    def valid_values(self) -> str:
        """What this setting accepts, for help text and error messages."""
        if self.kind in ("radio", "menu"):
            return "one of: " + _join(self.choices)
        if self.kind == "range" and self.range is not None:
            low, high, step = self.range
            steps = f" in steps of {_num(step)}" if step else ""
            return f"a number from {_num(low)} to {_num(high)}{steps}"
        if self.kind == "toggle":
            return "on or off (1/0)"
        if self.kind == "date":
            return "a date (YYYY-MM-DD HH:MM:SS), Unix seconds, or 'now'"
        if self.kind == "text":
            return "any text"
        return "nothing (it is an action button)"


def _num(x: float) -> str:
    return f"{x:g}"


def _join(choices: Iterable[str]) -> str:
    items = list(choices)
    quoted = [repr(c) if (not c or c != c.strip() or "," in c) else c for c in items]
    shown = ", ".join(quoted[:_LIST_LIMIT])
    if len(items) > _LIST_LIMIT:
        shown += f", ... ({len(items) - _LIST_LIMIT} more)"
    return shown or "(none)"


def choices_of(widget: Any) -> tuple[str, ...]:
    """The choices of a radio or menu widget, in order."""
    return tuple(str(widget.get_choice(i)) for i in range(widget.count_choices()))


def item_from_widget(widget: Any, section: str = "") -> ConfigItem:
    """A :class:`ConfigItem` describing ``widget`` now."""
    kind = KINDS.get(widget.get_type(), "text")
    value: Value = None
    choices: tuple[str, ...] = ()
    rng = None
    if kind not in ("window", "section", "button"):
        value = widget.get_value()
    if kind in ("radio", "menu"):
        choices = choices_of(widget)
    elif kind == "range":
        low, high, step = widget.get_range()
        rng = (float(low), float(high), float(step))
        value = float(value) if value is not None else None
    return ConfigItem(
        key=str(widget.get_name()),
        label=str(widget.get_label()),
        kind=kind,
        value=value,
        choices=choices,
        range=rng,
        readonly=bool(widget.get_readonly()),
        section=section,
    )


TOGGLE_UNKNOWN = 2
"""What a toggle reads where the camlib cannot tell its state: ``_get_Panasonic_ViewFinder``
always reads 2 ("always changed, unless we can find out the state"), and writing 2 back
switches live view on (``if (val)`` in ``_put_Panasonic_ViewFinder``)."""


def value_to_restore(item: ConfigItem) -> Value:
    """The value that puts ``item``'s setting back as it was found: a toggle of unknown state
    (:data:`TOGGLE_UNKNOWN`) is put back off, the state a tethered body starts in."""
    if item.kind == "toggle" and item.value == TOGGLE_UNKNOWN:
        return 0
    return item.value


def iter_leaves(root: Any, section: str = "") -> Iterator[tuple[Any, str]]:
    """Every non-section widget under ``root`` with the name of its enclosing section."""
    for i in range(root.count_children()):
        child = root.get_child(i)
        if child.get_type() in (WIDGET_WINDOW, WIDGET_SECTION):
            yield from iter_leaves(child, str(child.get_name()))
        else:
            yield child, section


def walk_items(root: Any) -> list[ConfigItem]:
    """Every setting in the tree, depth first in the camera's order."""
    return [item_from_widget(w, s) for w, s in iter_leaves(root)]


def find_widget(root: Any, key: str) -> Any | None:
    """The widget named ``key`` under ``root``, or ``None``."""
    for widget, _ in iter_leaves(root):
        if widget.get_name() == key:
            return widget
    return None


def unknown_key(key: str, known: Iterable[str], camera: str) -> ConfigKeyError:
    """The error for a key the camera lacks, suggesting near misses."""
    close = difflib.get_close_matches(key, list(known), n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigKeyError(
        f"{camera} has no setting {key!r}; {hint}list them with `rig camera config`"
    )


def coerce_value(item: ConfigItem, raw: object) -> str | float | int:
    """``raw`` converted to what ``item``'s widget takes, or a :class:`ConfigValueError`.

    Radio and menu values must be one of the choices (exact, else the only case-insensitive
    match); range values must lie within the range and on its step; toggles take
    on/off/true/false/yes/no/1/0; dates take ISO 8601, Unix seconds or ``now``.
    """
    if item.readonly:
        raise ConfigValueError(
            f"setting {item.key!r} is read-only (it is {item.display_value()!r})"
        )

    def refuse(why: str) -> ConfigValueError:
        return ConfigValueError(
            f"setting {item.key!r} cannot be {raw!r}: {why}; valid: {item.valid_values()}"
        )

    text = str(raw).strip() if not isinstance(raw, bool) else str(int(raw))
    if item.kind in ("radio", "menu"):
        if isinstance(raw, str) and raw in item.choices:
            return raw
        if text in item.choices:
            return text
        folded = [c for c in item.choices if c.strip().casefold() == text.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise refuse("not a choice")
    if item.kind == "range":
        assert item.range is not None
        try:
            number = float(text)
        except ValueError:
            raise refuse("not a number") from None
        low, high, step = item.range
        tol = 1e-6 * max(1.0, abs(step), abs(high - low))
        if not math.isfinite(number) or number < low - tol or number > high + tol:
            raise refuse("out of range")
        if step > 0:
            k = (number - low) / step
            if abs(k - round(k)) > 1e-6:
                raise refuse("not on a step")
        return number
    if item.kind == "toggle":
        if text.casefold() in _TRUE:
            return 1
        if text.casefold() in _FALSE:
            return 0
        raise refuse("not on/off")
    if item.kind == "date":
        return _date_value(text, refuse)
    if item.kind == "text":
        return str(raw)
    raise ConfigValueError(
        f"setting {item.key!r} is an action button, not a value; it cannot be set to {raw!r}"
    )


DATE_RANGE = (0, 2**31 - 1)
"""What a date setting holds: libgphoto2 keeps it as a C ``int`` of Unix seconds
(``gp_widget_set_value``), from 1970 to January 2038."""


def _date_value(text: str, refuse: Callable[[str], ConfigValueError]) -> int:
    """Unix seconds for a date setting: ``now``, Unix seconds or ISO 8601 (local time)."""
    if text.casefold() == "now":
        return int(time.time())
    try:
        seconds = int(text)
    except ValueError:
        try:
            seconds = int(datetime.fromisoformat(text).timestamp())
        except (ValueError, OverflowError, OSError):
            raise refuse("not a date") from None
    low, high = DATE_RANGE
    if not low <= seconds <= high:
        raise refuse("outside 1970-01-01 to 2038-01-19, the dates a camera setting holds")
    return seconds
