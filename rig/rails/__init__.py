"""Focus rails and other focusers, opened by URL.

:func:`open_focuser` looks the URL's scheme up in the ``stackrig.focusers`` entry-point group,
so a third-party package adds a driver by declaring, in its own ``pyproject.toml``::

    [project.entry-points."stackrig.focusers"]
    myrail = "mypackage.rail:MyRail"    # a class with from_url(url: str, **kwargs)

stackrig itself registers ``grbl``, ``marlin``, ``sim`` (an in-process simulated rail) and
``camera`` (the lens motor).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from rig.focuser import Focuser, FocuserCapabilities
from rig.rails.url import DeviceURL, URLError, rail_options

ENTRY_POINT_GROUP = "stackrig.focusers"

__all__ = ["ENTRY_POINT_GROUP", "declared_capabilities", "known_schemes", "open_focuser"]


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    """Schemes with a registered driver, sorted."""
    return sorted(_entry_points())


def open_focuser(url: str, **kwargs: Any) -> Focuser:
    """Open the focuser named by ``url`` (``grbl:///dev/ttyUSB0?backlash=50um``, ``sim://``...).

    Keyword arguments go to the driver's ``from_url`` and override URL options.

    Raises
    ------
    URLError
        Malformed URL or a scheme with no registered driver (the message lists the known ones).
    """
    scheme = _known_scheme(url)
    registry = _entry_points()
    try:
        driver = registry[scheme].load()
    except (ImportError, AttributeError) as exc:
        raise URLError(
            f"the {scheme}:// driver {registry[scheme].value!r} cannot be loaded: {exc}"
        ) from exc
    return cast(Focuser, driver.from_url(url, **kwargs))


def _known_scheme(url: str) -> str:
    """The scheme of ``url``, one a driver is registered for; else a :class:`URLError` that
    lists them."""
    scheme = DeviceURL.parse(url).scheme
    registry = _entry_points()
    if scheme not in registry:
        raise URLError(
            f"no focuser driver for {scheme}:// in {url!r}; known schemes: "
            f"{', '.join(s + '://' for s in sorted(registry)) or 'none (is stackrig installed?)'}"
        )
    return scheme


def declared_capabilities(url: str) -> FocuserCapabilities:
    """Units and soft limits (``min``/``max``) that ``url`` declares, without opening anything.

    Opening a serial port resets an Arduino-based controller, so ``--dry-run`` checks a plan
    against this instead. A ``camera://`` lens moves in steps and declares no limits (the body
    reports its own when opened). A scheme no driver serves is refused here too: ``--dry-run``
    said a plan on ``nosuch:///dev/x`` was fine.
    """
    _known_scheme(url)
    parsed = DeviceURL.parse(url)
    if parsed.scheme == "camera":
        return FocuserCapabilities(absolute=False, units="steps")
    options = rail_options(parsed)
    return FocuserCapabilities(
        absolute=False,
        units="um",
        min_position=options.min_um,
        max_position=options.max_um,
        backlash=options.backlash_um,
        approach=options.approach,
    )
