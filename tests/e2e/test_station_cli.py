"""``rig station --sim`` as a process: address and token printed, a session run, clean stop.

The browser part drives Debian's Chromium through Playwright (skipped, with the reason, only
where /usr/bin/chromium is not installed).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM, SKIP_REASON, chromium, fill_plan, phone_page
from tests.station_process import station_process

TOKEN = "cli-test-token-0123"


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], str]]:
    with station_process(tmp_path / "sessions", token=TOKEN) as running:
        yield running


def _wait_finished(c: httpx.Client, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = c.get("/api/state").json()
        if state["progress"]["state"] in ("finished", "stopped", "failed"):
            return state
        time.sleep(0.2)
    raise AssertionError("the session did not end")


def test_the_station_process_runs_a_session_and_stops_cleanly(station) -> None:
    url, proc, where = station
    sessions = Path(where.split()[2][:-1])
    assert where == f"sessions in {sessions}; token from --token\n" and sessions.is_absolute()
    assert httpx.get(url + "api/station", timeout=5).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=auth, timeout=10) as c:
        plan = {"from": "0mm", "to": "3mm", "frames": 3, "settle": 0}
        r = c.post("/api/sessions", json={"plan": plan, "name": "first"})
        assert r.status_code == 201, r.text
        assert _wait_finished(c)["progress"]["state"] == "finished"
        assert c.get("/api/sessions/first/composite").status_code == 200
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping" in out
    assert sorted(p.name for p in (sessions / "first" / "frames").iterdir()) == [
        "frame_0001.jpg",
        "frame_0002.jpg",
        "frame_0003.jpg",
    ]


@pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)
def test_the_station_page_logs_in_from_the_address_and_runs_a_session(station) -> None:
    url, _proc, _where = station
    with chromium() as browser:
        page, errors = phone_page(browser)
        # Without the token the page asks for it.
        page.goto(url)
        page.wait_for_selector("#login:not([hidden])")
        assert page.locator("#station").is_hidden()
        assert page.text_content("#login-error") == ""
        # An old link's token is said to be refused, not met with the bare prompt.
        page.goto(url + "#token=an-old-token-0000")
        page.reload()
        page.wait_for_selector("#login:not([hidden])")
        assert "link's token was not accepted" in page.text_content("#login-error")
        # Said to a screen reader too: an alert, tied to the field it refuses.
        assert page.get_attribute("#login-error", "role") == "alert"
        assert page.get_attribute("#login-token", "aria-invalid") == "true"
        assert page.get_attribute("#login-token", "aria-describedby") == "login-error"
        # The printed address logs in and the fragment is dropped from the address bar.
        page.goto(url + "#token=" + TOKEN)
        page.reload()
        page.wait_for_selector("#station:not([hidden])")
        assert "#token" not in page.url
        page.wait_for_selector("#st-jog button")
        page.click("#st-jog button[data-by='+1mm']")
        page.wait_for_function("document.getElementById('st-msg').textContent.includes('1000')")
        assert page.locator("#st-step").is_visible()
        assert not page.locator("#st-frames").is_visible()
        page.select_option("#st-mode", "frames")
        assert page.locator("#st-frames").is_visible()
        assert not page.locator("#st-step").is_visible()
        assert not page.locator("#st-mag").is_visible()
        fill_plan(page, from_="0mm", to="3mm", frames="3", settle="0", name="from-the-phone")
        page.click("#st-check")
        page.wait_for_function(
            "document.getElementById('st-plan-info').textContent.startsWith('3 frames')"
        )
        page.click("#st-start")
        page.wait_for_selector("#run-state[data-state='finished']", timeout=60000)
        page.wait_for_selector("#st-sessions tr[data-id='from-the-phone'] a")
        links = page.eval_on_selector_all(
            "#st-sessions tr[data-id='from-the-phone'] a", "as => as.map(a => a.textContent)"
        )
        assert links == ["composite", "depth map", "depth 16-bit", "depth scale", "frames.zip"]
        assert page.locator("#frames tbody tr").count() == 3
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.table-wrap'))
                .map(e => e.tagName + '#' + e.id)"""
        )
        assert wide == [], wide  # nothing but scrollable tables runs off a phone screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert errors == []


@pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)
def test_an_answer_that_is_not_json_is_shown_by_its_status(station) -> None:
    """A TLS proxy in front of the station (SECURITY.md advises one) answers 502 with an HTML
    page while the station restarts; the page showed "Unexpected token '<' ... is not valid
    JSON". The proxy's answer is stood in for by Playwright's request routing."""
    url, _proc, _where = station
    with chromium() as browser:
        page, errors = phone_page(browser)
        page.goto(url + "#token=" + TOKEN)
        page.wait_for_selector("#st-shot")
        page.route(
            "**/api/test-shot",
            lambda route: route.fulfill(
                status=502, content_type="text/html", body="<html><h1>502 Bad Gateway</h1></html>"
            ),
        )
        page.click("#st-shot")
        page.wait_for_function("document.getElementById('st-msg').textContent !== ''")
        assert page.text_content("#st-msg") == "Bad Gateway"
        assert errors == []


def test_the_station_stops_cleanly_when_its_terminal_closes(station) -> None:
    """A station started by hand over ssh gets SIGHUP when the connection drops: it stops as
    for SIGTERM (a running session finished cleanly first); the hangup ended it unsaid."""
    _, proc, _ = station
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping" in out
