"""Focuser URLs: ``scheme://port?option=value&...``.

One string names a device and how to drive it, so the same plan runs on a bench simulator and a
real rail by changing only the URL::

    grbl:///dev/ttyUSB0?baud=115200&axis=X&backlash=50um&settle=0.5
    marlin:///dev/ttyACM0?feed=300mm/min
    sim://?speed=2mm/s

Options shared by all rails (:func:`rail_options`): ``backlash`` (a length), ``approach``
(``below``/``above``), ``settle`` (seconds), ``min`` and ``max`` (lengths). Each driver reads its
own options and :meth:`DeviceURL.finish` refuses any that nobody read, so a typo such as
``backlsh=50um`` is an error, not a silently ignored setting.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from rig.errors import RigError
from rig.rails.base import RailOptions
from rig.units import UnitError, parse_duration, parse_um

MAX_OPTION_S = 3600.0
"""The longest duration a URL option takes, as a plan's delays: an hour."""

RailT = TypeVar("RailT")


class URLError(RigError):
    """A focuser URL that cannot be understood."""


def on_new_port(new: str, old: str) -> tuple[str, list[str]]:
    """``new``, the URL a resumed session's rail is given now, with the options of ``old``, the
    session's, that ``new`` does not name (and the ``key=value`` of those kept).

    A resume names the rail again when its port changed (``rig resume --rail URL``); the axis,
    backlash, approach, limits and direction are the session's geometry, and a URL of the port
    alone drove the X axis where the session's frames were shot on Y. Another kind of
    controller (another scheme) takes ``new`` as given.
    """
    n, o = urlsplit(new), urlsplit(old)
    if n.scheme.lower() != o.scheme.lower():
        return new, []
    named = {key for key, _ in parse_qsl(n.query, keep_blank_values=True)}
    kept = [(k, v) for k, v in parse_qsl(o.query, keep_blank_values=True) if k not in named]
    if not kept:
        return new, []
    query = "&".join(part for part in (n.query, urlencode(kept)) if part)
    # Not urlunsplit: it writes grbl:///dev/x as grbl:/dev/x, which is no focuser URL.
    return f"{new.split('?', 1)[0]}?{query}", [f"{k}={v}" for k, v in kept]


def left_behind(new: str, old: str) -> list[str]:
    """The ``key=value`` options of ``old``, the session's rail URL, that a ``new`` one of
    another kind of controller (another scheme) does not carry (:func:`on_new_port`): the
    session's axis, direction and backlash were dropped without a word, and the missing frames
    were shot along another axis or the other way."""
    if urlsplit(new).scheme.lower() == urlsplit(old).scheme.lower():
        return []
    named = {key for key, _ in parse_qsl(urlsplit(new).query, keep_blank_values=True)}
    return [
        f"{k}={v}"
        for k, v in parse_qsl(urlsplit(old).query, keep_blank_values=True)
        if k not in named
    ]


@dataclass
class DeviceURL:
    """A parsed focuser URL; options are consumed with the ``take_*`` methods."""

    text: str
    scheme: str
    path: str
    options: dict[str, str]
    host: str = ""
    """What came between ``//`` and the next ``/``: in ``grbl://dev/ttyUSB0``, ``dev``. A
    device path's URL has none (``grbl:///dev/ttyUSB0``); :attr:`path` holds it either way."""
    _taken: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, text: str) -> DeviceURL:
        """Split ``text`` into scheme, device path and options."""
        if "://" not in text:
            raise URLError(
                f"{text!r} is not a focuser URL: write scheme://port, e.g. "
                "grbl:///dev/ttyUSB0, marlin:///dev/ttyACM0 or sim://"
            )
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # an unbalanced [ or ] ("Invalid IPv6 URL")
            raise URLError(
                f"{text!r} is not a focuser URL ({exc}): write scheme://port, e.g. "
                "grbl:///dev/ttyUSB0, marlin:///dev/ttyACM0 or sim://"
            ) from None
        if "?" in parts.query:  # options appended to a URL that had some (the simulator's)
            raise URLError(
                f"{text!r} has a second '?': join the options with '&', e.g. "
                f"{text.split('?', 1)[0]}?{parts.query.replace('?', '&')}"
            )
        path = unquote(parts.netloc + parts.path)
        options: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in options:
                raise URLError(f"option {key!r} is given twice in {text!r}")
            options[key] = value
        return cls(
            text=text, scheme=parts.scheme.lower(), path=path, options=options,
            host=unquote(parts.netloc),
        )  # fmt: skip

    def take(self, key: str, default: str | None = None) -> str | None:
        """The raw value of option ``key`` (or ``default``), marked as understood."""
        self._taken.add(key)
        return self.options.get(key, default)

    def take_float(self, key: str, default: float) -> float:
        """Option ``key`` as a finite number (``nan`` and ``inf`` are refused), or ``default``."""
        raw = self.take(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise URLError(f"option {key}={raw!r} in {self.text!r} must be a number")
        return value

    def take_length(self, key: str) -> float | None:
        """Option ``key`` as a physical length in µm (``50um``, ``0.05mm``), or ``None``."""
        raw = self.take(key)
        if raw is None:
            return None
        try:
            return parse_um(raw)
        except UnitError as exc:
            raise URLError(f"option {key}={raw} in {self.text!r}: {exc}") from None

    def take_duration(self, key: str, default: str) -> float:
        """Option ``key`` as seconds (``0.5``, ``500ms``), at most an hour, or ``default``."""
        raw = self.take(key) or default
        try:
            seconds = parse_duration(raw)
        except UnitError as exc:
            raise URLError(f"option {key}={raw} in {self.text!r}: {exc}") from None
        if seconds > MAX_OPTION_S:
            raise URLError(f"option {key}={raw} in {self.text!r}: at most an hour")
        return seconds

    def take_int(self, key: str, default: int) -> int:
        """Option ``key`` as a whole number, or ``default``."""
        value = self.take_float(key, float(default))
        if not value.is_integer():
            raise URLError(f"option {key}={value:g} in {self.text!r} must be a whole number")
        return int(value)

    def take_bool(self, key: str, default: bool) -> bool:
        raw = self.take(key)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise URLError(f"option {key}={raw!r} in {self.text!r} must be true or false")

    def finish(self) -> None:
        """Refuse options no driver code read (typos, options of another driver)."""
        unknown = sorted(set(self.options) - self._taken)
        if unknown:
            known = ", ".join(sorted(self._taken))
            raise URLError(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in "
                f"{self.text!r}; {self.scheme}:// understands: {known}"
            )


def rail_options(url: DeviceURL, **overrides: object) -> RailOptions:
    """Read the options every rail shares; keyword ``overrides`` win over the URL."""

    values: dict[str, object] = {
        "backlash_um": url.take_length("backlash") or 0.0,
        "approach": url.take("approach", "below"),
        "settle_s": url.take_duration("settle", "0"),
        "min_um": url.take_length("min"),
        "max_um": url.take_length("max"),
    }
    values.update({k: v for k, v in overrides.items() if k in values})
    return RailOptions(**values)  # type: ignore[arg-type]


def open_port_rail(
    cls: Callable[..., RailT],
    url: str,
    example: str,
    read_settings: Callable[[DeviceURL], dict[str, Any]],
    overrides: dict[str, Any],
) -> RailT:
    """Open the rail on the port ``url`` names, for every serial driver's ``from_url``.

    ``read_settings`` takes the driver's own options from the URL; the shared ones come from
    :func:`rail_options`; keyword ``overrides`` win over both. ``example`` (a URL with a port)
    is what the error shows when the URL names no port.
    """
    parsed = DeviceURL.parse(url)
    if not parsed.path:
        raise URLError(f"{url!r} names no port: write e.g. {example}")
    if _host_taken_for_a_folder(parsed):
        raise URLError(
            f"{url!r}: a device path takes three slashes after the scheme, "
            f"{_with_three_slashes(url, parsed.host)} (with two, {parsed.host!r} reads as a "
            "host name)"
        )
    options = rail_options(parsed, **overrides)
    settings = read_settings(parsed)
    parsed.finish()
    settings.update({k: v for k, v in overrides.items() if k in settings})
    return cls(parsed.path, options, name=url, **settings)


def _with_three_slashes(url: str, host: str) -> str:
    """``url`` as it was meant: ``grbl://dev/ttyUSB0`` keeps ``dev`` as the path's first
    folder; the local host of a file-URL habit (``grbl://localhost/dev/ttyUSB0``) goes."""
    name = host.rpartition("@")[2].rsplit(":", 1)[0]  # without a user or a port, if written
    if name.lower() in ("localhost", "127.0.0.1"):
        return re.sub(f"://{re.escape(host)}/", ":///", url, count=1, flags=re.IGNORECASE)
    return url.replace("://", ":///", 1)


def _host_taken_for_a_folder(parsed: DeviceURL) -> bool:
    """True for ``grbl://dev/ttyUSB0``, where ``urlsplit`` read ``dev`` as a host name: the
    port became ``dev/ttyUSB0``, a relative path that no serial port answers to. A path that
    exists there is taken as written, and so is a port that is a URL of pyserial's own
    (``grbl://socket://192.168.1.5:23``, ``grbl://spy:///dev/ttyUSB0``)."""
    path = parsed.path
    return (
        bool(parsed.host) and path != parsed.host and "://" not in path and not os.path.exists(path)
    )
