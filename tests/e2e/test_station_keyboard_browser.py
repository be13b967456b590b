"""The station page used from a keyboard (or a switch) and heard through a screen reader, in
headless Chromium against ``rig station --sim``: focus stays where the last key left it, what
the page says is in live regions, and a session card still reads on a phone zoomed to 200 %.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, SKIP_REASON, chromium
from tests.station_process import interrupt, shoot, station_process

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)

TOKEN = "keyboard-browser-token-3"
FOCUSED = "(e => e && (e.id || e.dataset.by))(document.activeElement)"


@pytest.fixture
def station(tmp_path: Path) -> Iterator[str]:
    with station_process(tmp_path / "sessions", token=TOKEN) as (url, _proc, _where):
        yield url


def _page(browser: Any, url: str, width: int = 1280, height: int = 900) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "#token=" + TOKEN)
    page.wait_for_selector("#st-jog button")
    page.errors = errors
    return page


def _rail_at(page: Any, after: str) -> float:
    """The position the rail message gives, once it says something other than ``after``."""
    page.wait_for_function(
        "t => { const m = document.getElementById('st-msg').textContent;"
        " return m.startsWith('rail at') && m !== t; }",
        arg=after,
    )
    match = re.search(r"rail at (-?[\d.]+)", page.text_content("#st-msg"))
    assert match, page.text_content("#st-msg")
    return float(match[1])


def test_a_jog_pressed_twice_from_the_keyboard_moves_twice(station: str) -> None:
    """The button is disabled while its request runs, and Chromium then drops the focus: a
    second Enter did nothing, and Tab went on from the next button."""
    with chromium() as browser:
        page = _page(browser, station)
        page.focus("#st-jog button[data-by='+100um']")
        page.keyboard.press("Enter")
        first = _rail_at(page, "")
        # Back on the button, enabled again, once the request is over.
        page.wait_for_function(f"({FOCUSED}) === '+100um' && !document.activeElement.disabled")
        said = page.text_content("#st-msg")
        page.keyboard.press("Enter")
        second = _rail_at(page, said)
        assert second == pytest.approx(first + 100)
        assert page.errors == []


def test_what_the_page_says_is_in_live_regions(station: str) -> None:
    """No message line was a live region: a screen reader said neither a session's fault nor
    "the rig does not answer"."""
    with chromium() as browser:
        page = _page(browser, station)
        page.wait_for_selector("#lv-msg", state="attached")
        silent = page.eval_on_selector_all(
            ".message, #link, #run-state",
            "ms => ms.filter(m => !['status', 'alert'].includes(m.getAttribute('role')))"
            ".map(m => m.id)",
        )
        assert silent == []
        page.route("**/api/jog", lambda route: route.abort("connectionrefused"))
        page.focus("#st-jog button[data-by='+1mm']")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('st-msg').textContent !== ''")
        assert page.text_content("#st-msg").startswith("the rig does not answer")
        assert page.get_attribute("#st-msg", "aria-live") == "assertive"
        # An empty line stays in the accessibility tree, or its first words go unsaid.
        assert page.eval_on_selector("#st-run-msg", "m => getComputedStyle(m).display") != "none"
        assert page.errors == []


def test_a_session_card_reads_at_200_percent_and_delete_keeps_the_focus(station: str) -> None:
    """A 390 px phone with its text zoomed to 200 % lays the page out 195 px wide: the card's
    fixed thumbnail column left its name and buttons a column of a few letters. Deleting from
    the keyboard then left the focus nowhere."""
    shoot(station, TOKEN, "zoomed", {"from": "0mm", "to": "1mm", "frames": 2, "settle": 0})
    with chromium() as browser:
        page = _page(browser, station, width=195, height=422)
        row = "#st-sessions tr[data-id='zoomed']"
        page.wait_for_selector(row + "[data-state='complete']", timeout=30000)
        widths = page.eval_on_selector_all(
            row + " td:not(:first-child)", "ts => ts.map(t => t.getBoundingClientRect().width)"
        )
        assert widths and min(widths) > 150, widths
        assert page.evaluate("document.documentElement.scrollWidth") <= 195
        page.on("dialog", lambda dialog: dialog.accept())
        page.focus(row + " button.delete")
        page.keyboard.press("Enter")
        page.wait_for_selector(row, state="detached", timeout=30000)
        page.wait_for_function(f"({FOCUSED}) === 'st-sess-msg'", timeout=10000)
        assert page.errors == []


def test_resume_from_the_keyboard_leaves_the_focus_in_the_list(station: str) -> None:
    """Resume's row is drawn again as its session starts: the focus put back on its button
    fell to the page's body with the old row."""
    interrupt(station, TOKEN, "halfway")
    with chromium() as browser:
        page = _page(browser, station)
        row = "#st-sessions tr[data-id='halfway']"
        page.wait_for_selector(row + "[data-state='interrupted']", timeout=30000)
        page.focus(row + " button.resume")
        page.keyboard.press("Enter")
        page.wait_for_selector(row + "[data-state='running']", timeout=30000)
        page.wait_for_function(f"({FOCUSED}) === 'st-sess-msg'", timeout=10000)
        httpx.post(
            station + "api/sessions/halfway/stop", json={}, timeout=10,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
        assert page.errors == []


def test_plan_again_tapped_on_a_phone_stays_at_the_form(station: str) -> None:
    """The page scrolled to the form, then jumped back to the card as the tapped button was
    given its focus again: the form ended 1500 px above the screen."""
    shoot(station, TOKEN, "again", {"from": "0mm", "to": "1mm", "frames": 2, "settle": 0})
    with chromium() as browser:
        context = browser.new_context(
            viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
        )
        page = context.new_page()
        page.goto(station + "#token=" + TOKEN)
        button = "#st-sessions tr[data-id='again'] button.plan-again"
        page.wait_for_selector(button, timeout=30000)
        page.locator(button).scroll_into_view_if_needed()
        page.tap(button)
        page.wait_for_function(
            "document.getElementById('st-run-msg').textContent.startsWith('the plan of again')"
        )
        time.sleep(0.5)  # past the button's request and whatever it does after
        top = page.eval_on_selector("#st-plan", "f => f.getBoundingClientRect().top")
        assert -5 <= top < 740, top
