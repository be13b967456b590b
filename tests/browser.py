"""Headless Chromium for the browser tests and the preview benchmark.

Debian's Chromium (``apt-get install chromium``) is driven by Playwright's Python client;
Playwright's own browser download is never used. These flags keep Chromium from reaching out to
the network (this machine has none) and let it run as root without a display.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = "needs Chromium at /usr/bin/chromium: apt-get install chromium"

PHONE = {"width": 390, "height": 844}
"""A phone's viewport, in CSS pixels."""


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright; closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def phone_page(browser: Any) -> tuple[Any, list[str]]:
    """A new page of phone size, and the list that collects its uncaught script errors."""
    page = browser.new_page(viewport=PHONE)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def fill_plan(page: Any, **fields: str) -> None:
    """Type a plan into the station page's form, field by field: ``to="3mm"`` fills
    ``#st-to`` (``from_`` fills ``#st-from``), in the order given."""
    for name, value in fields.items():
        page.fill(f"#st-{name.rstrip('_')}", value)


SET_VISIBILITY = """hidden => {
  Object.defineProperty(document, 'visibilityState', {get: () => hidden ? 'hidden' : 'visible',
                                                      configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
"""``page.evaluate(SET_VISIBILITY, hidden)``: the page told it is hidden (the phone locked, the
tab left) or shown again, as headless Chromium never tells it by itself."""
