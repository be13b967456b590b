"""The station page on a small phone (360x740 CSS pixels, three device pixels to one, touch),
in headless Chromium against ``rig station --sim``: the states of Start and Stop, errors said
in words where the photographer looks, a finished session's card, and a phone waking from
sleep.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser import CHROMIUM, SKIP_REASON, chromium, fill_plan
from tests.relay import relay, sleeping_relay
from tests.station_process import interrupt, shoot, station_process

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)

TOKEN = "phone-browser-token-7"
SMALL_PHONE = {"width": 360, "height": 740}


@pytest.fixture
def station(tmp_path: Path) -> Iterator[str]:
    with station_process(tmp_path / "sessions", token=TOKEN) as (url, _proc, _where):
        yield url


def _small_phone(browser: Any) -> tuple[Any, list[str]]:
    """A page on a small phone, and the list of its uncaught script errors."""
    context = browser.new_context(
        viewport=SMALL_PHONE, device_scale_factor=3, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def _open(page: Any, url: str, *, live: bool = True) -> None:
    """Open the page; with ``live``, wait for its first live-view frame (the page's height is
    then set), which a station shooting a session does not serve until the session ends."""
    page.goto(url + "#token=" + TOKEN)
    page.wait_for_selector("#st-jog button")
    if live:
        page.wait_for_selector("#lv-img:not([hidden])", timeout=30000)


@contextlib.contextmanager
def _phone_on(url: str, *, live: bool = True) -> Iterator[Any]:
    """The station page at ``url`` open on a small phone (:func:`_open`, with ``live``), which
    must have thrown no script error by the end of the block."""
    with chromium() as browser:
        page, errors = _small_phone(browser)
        _open(page, url, live=live)
        yield page
        assert errors == []


def _shoot(url: str, name: str) -> None:
    """A short session, run through the API to its end."""
    shoot(url, TOKEN, name, {"from": "0mm", "to": "2mm", "frames": 3, "settle": 0})


def _interrupt(url: str, name: str) -> None:
    """A session stopped after a frame or two, through the API: it can be resumed."""
    interrupt(url, TOKEN, name)


def _answer_late(route: Any) -> None:
    """Let the rig act at once but give the page its answer 2 s later, as a slow link does:
    the event stream says what happened before the request that did it has its answer."""
    if route.request.method != "POST":
        route.continue_()  # the list of sessions
        return
    response = route.fetch()
    time.sleep(2)
    route.fulfill(response=response)


SAID = "t => [...document.querySelectorAll('.message')].some(m => m.textContent.startsWith(t))"


def _in_view(page: Any, text: str) -> bool:
    """Whether an error message holding ``text`` is shown inside the viewport."""
    return page.evaluate(
        """text => [...document.querySelectorAll('.message.error')].some(m => {
             const r = m.getBoundingClientRect();
             return m.textContent.includes(text) && r.height > 0 && r.top >= 0
               && r.bottom <= innerHeight; })""",
        text,
    )


def test_start_and_stop_follow_the_session_not_their_own_answers(station) -> None:
    """Start was enabled again once its request had its answer, although the session it
    started (told by the event stream meanwhile) was running; Stop likewise once the session
    it stopped had ended."""
    with _phone_on(station) as page:
        page.route("**/api/sessions", _answer_late)
        page.route("**/api/sessions/*/stop", _answer_late)
        page.select_option("#st-mode", "frames")
        fill_plan(page, to="3mm", frames="30", settle="0.3", name="late")
        page.tap("#st-start")
        page.wait_for_function(SAID, arg="started")  # the answer, 2 s after the session started
        assert page.is_disabled("#st-start") and page.is_enabled("#st-stop")
        page.tap("#st-stop")
        page.wait_for_selector("#run-state[data-state='stopped']", timeout=60000)
        page.wait_for_function(SAID, arg="late stopped")  # the answer came after it had
        assert page.is_disabled("#st-stop") and page.is_enabled("#st-start")
        page.unroute_all(behavior="ignoreErrors")


def test_stopping_is_said_until_the_session_has_stopped_and_no_longer(station) -> None:
    """ "stopping after this frame" stayed under Start once the session had stopped, through
    its resume, and after the resumed session had finished."""
    with _phone_on(station) as page:
        # Idle, the bar stands empty: it slid to and fro as if the station were working.
        idle = "b => [b.getAttribute('value'), b.position]"
        assert page.eval_on_selector("#progress-bar", idle) == ["0", 0]
        page.select_option("#st-mode", "frames")
        fill_plan(page, to="3mm", frames="30", settle="0.3", name="halt")
        page.tap("#st-start")
        page.wait_for_function("() => !document.getElementById('st-stop').disabled")
        # The start's own message may land after Stop is enabled: it is waited for first.
        page.wait_for_function(SAID, arg="started halt")
        page.evaluate(
            """() => {
              window.said = [];
              const m = document.getElementById('st-run-msg');
              new MutationObserver(() => window.said.push(m.textContent))
                .observe(m, {childList: true, characterData: true, subtree: true});
            }"""
        )
        page.tap("#st-stop")
        page.wait_for_selector("#run-state[data-state='stopped']", timeout=60000)
        page.wait_for_function(SAID, arg="halt stopped")
        said = page.evaluate("window.said")
        # "stopping" while the frame in flight ends (unless the answer came after it did)
        assert said[-1] == "halt stopped" and set(said) <= {
            "stopping halt after this frame",
            "halt stopped",
        }, said
        assert "stopping" not in page.text_content("#st-run-msg")


def test_the_plan_summary_shows_the_default_plan_at_once(station) -> None:
    """The plan's summary line (frames, step, duration) stayed empty on a fresh page until a
    field of the plan was edited."""
    with _phone_on(station) as page:
        page.wait_for_function(
            "document.getElementById('st-plan-info').textContent !== ''", timeout=5000
        )
        info = page.text_content("#st-plan-info") or ""
        assert info.startswith("21 frames from 0") and "step 100" in info and "about" in info


def test_the_page_asks_for_no_missing_icon(station) -> None:
    """Every load of the page logged a 404 for /favicon.ico: the page named no icon, so the
    browser asked for the usual one, which the station does not have."""
    with chromium() as browser:
        page, errors = _small_phone(browser)
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        page.on("console", lambda m: missing.append(m.text) if "404" in m.text else None)
        _open(page, station)
        page.wait_for_timeout(1000)
        assert missing == []
        assert (page.get_attribute("link[rel='icon']", "href") or "").startswith("data:image/")
        assert errors == []


def test_a_refused_start_is_said_beside_start(station) -> None:
    """A refused Start was said under the Rail section, below a small phone's screen: tapping
    Start seemed to do nothing."""
    _shoot(station, "taken")
    with _phone_on(station) as page:
        fill_plan(page, name="taken")
        page.evaluate("document.getElementById('st-start').scrollIntoView({block: 'center'})")
        page.tap("#st-start")
        page.wait_for_function(
            "[...document.querySelectorAll('.message.error')]"
            ".some(m => m.textContent.includes('exists already'))"
        )
        assert _in_view(page, "exists already")


def test_a_refusal_under_start_goes_once_the_plan_is_fixed(station) -> None:
    """A Start refused for its plan stood on in red under Start after the plan was fixed and
    its summary said it was fine."""
    with _phone_on(station) as page:
        fill_plan(page, step="0.1")
        page.tap("#st-start")
        page.wait_for_function(
            "document.getElementById('st-run-msg').textContent.includes('has no unit')"
        )
        fill_plan(page, step="100um")
        page.wait_for_function("document.getElementById('st-run-msg').textContent === ''")
        assert "frames from" in page.text_content("#st-plan-info")


def test_a_request_without_an_answer_is_said_in_words(station) -> None:
    """The rig out of reach (restarting, or the phone off its Wi-Fi): a jog said the browser's
    "Failed to fetch"."""
    with _phone_on(station) as page:
        page.route("**/api/jog", lambda route: route.abort("connectionrefused"))
        page.evaluate("document.getElementById('st-jog').scrollIntoView({block: 'center'})")
        page.tap("#st-jog button[data-by='+1mm']")
        page.wait_for_function("document.getElementById('st-msg').textContent !== ''")
        assert page.text_content("#st-msg").startswith("the rig does not answer")
        assert _in_view(page, "the rig does not answer")


def test_a_finished_session_fits_a_small_phone(station) -> None:
    """On a 360 px phone the session card's links did not wrap: "frames.zip" ran past the
    card's edge, cut off. The depth map's caption said "frame index" under a colour key in
    micrometres."""
    _shoot(station, "done")
    with _phone_on(station) as page:
        row = "#st-sessions tr[data-id='done']"
        page.wait_for_selector(row + "[data-state='complete'] a")
        page.wait_for_selector("#depth:not([hidden])")
        clipped = page.evaluate(
            """row => {
              const box = document.querySelector('#st-sessions').closest('.table-wrap')
                .getBoundingClientRect();
              return [...document.querySelectorAll(row + ' a, ' + row + ' button')]
                .map(e => [e.textContent, e.getBoundingClientRect()])
                .filter(([, r]) => r.left < box.left || r.right > box.right + 0.5)
                .map(([t]) => t);
            }""",
            row,
        )
        assert clipped == []
        caption = page.text_content("#depth-open + figcaption") or ""
        assert caption.startswith("Depth map") and "frame index" not in caption
        assert page.evaluate("document.documentElement.scrollWidth") <= SMALL_PHONE["width"]


def test_a_finished_session_offers_its_colour_depth_map(station) -> None:
    """A past session's card offered only the 16-bit depth PNG, near black on a phone's
    screen: the colour depth map with its key, which the station has, had no link."""
    _shoot(station, "mapped")
    with _phone_on(station) as page:
        row = "#st-sessions tr[data-id='mapped']"
        page.wait_for_selector(row + "[data-state='complete'] a")
        links = dict(
            page.eval_on_selector_all(
                row + " a", "as => as.map(a => [a.textContent, a.getAttribute('href')])"
            )
        )
        assert links["depth map"] == "api/sessions/mapped/depth-preview"
        assert links["depth 16-bit"] == "api/sessions/mapped/depth"
        status, kind, shown = page.evaluate(
            "href => fetch(href).then(r => [r.status, r.headers.get('content-type'),"
            " r.headers.get('content-disposition')])",
            links["depth map"],
        )
        assert (status, kind) == (200, "image/jpeg")
        # Opened in a tab to be looked at, not saved among the downloads (a phone's downloads
        # list is where a file goes to be forgotten); its name kept for saving it from there.
        assert shown == 'inline; filename="mapped-depth-preview.jpg"', shown
        target, download = page.eval_on_selector(
            row + " a[href$='depth-preview']",
            "a => [a.target, a.hasAttribute('download')]",
        )
        assert (target, download) == ("_blank", False)
        # Opened on its own, the picture has no page to name the icon: a phone's browser asks
        # for /favicon.ico, which was a 404 (logged on the page) each time.
        assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 204


def test_resume_and_delete_stand_apart_in_a_session_card(station) -> None:
    """In a stopped session's card on a phone, Resume and Delete touched: a thumb aiming for
    Resume could delete the session."""
    _interrupt(station, "halfway")
    with _phone_on(station) as page:
        row = "#st-sessions tr[data-id='halfway'][data-state='interrupted']"
        page.wait_for_selector(row + " button.delete")
        gap = page.evaluate(
            """row => {
              const r = document.querySelector(row + ' button.resume').getBoundingClientRect();
              const d = document.querySelector(row + ' button.delete').getBoundingClientRect();
              return Math.max(d.left - r.right, d.top - r.bottom);
            }""",
            row,
        )
        assert gap >= 16  # CSS px between the two targets


@pytest.mark.parametrize("viewport", [(390, 844), (844, 390), (926, 428), (768, 1024)])
def test_a_session_s_buttons_and_long_name_fit_a_phone_sideways_or_a_tablet(
    station, viewport: tuple[int, int]
) -> None:
    """Held sideways, a phone is 844 to 932 px wide, past the cards' old 767 px: the table's
    Resume and Delete lay past the right edge. A long name with no break in it widened the
    page, which a phone then showed zoomed out."""
    name = "Carabus_auratus_elytra_microsculpture_01"
    _interrupt(station, name)
    width, height = viewport
    with chromium() as browser:
        context = browser.new_context(
            viewport={"width": width, "height": height}, is_mobile=True, has_touch=True
        )
        page = context.new_page()
        _open(page, station, live=False)
        row = f"#st-sessions tr[data-id='{name}']"
        page.wait_for_selector(row + " button.delete")
        outside = page.evaluate(
            """row => [...document.querySelectorAll(row + ' button')]
                 .filter(b => b.getBoundingClientRect().right > innerWidth)
                 .map(b => b.textContent)""",
            row,
        )
        assert outside == []
        assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_running_sessions_row_counts_its_frames(station) -> None:
    """The running session's row in the list said "0 / 30" until the session ended, while the
    progress panel above counted the frames coming in."""
    with _phone_on(station) as page:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=station.rstrip("/"), headers=auth, timeout=10) as c:
            plan = {"from": "0mm", "to": "3mm", "frames": 30, "settle": 0.3}
            assert c.post("/api/sessions", json={"plan": plan, "name": "growing"}).is_success
            running = "#st-sessions tr[data-id='growing'][data-state='running']"
            row = running + " td:nth-child(3)"  # the frame count
            page.wait_for_selector(row)
            page.wait_for_function(
                "row => parseInt(document.querySelector(row).textContent) >= 4",
                arg=row,
                timeout=20000,
            )
            assert (page.text_content(row) or "").endswith(" / 30")
            assert c.get("/api/station").json()["running"] == "growing"  # counted as it shot
            c.post("/api/sessions/growing/stop", json={})


WAKE = """() => {
  for (const state of ['hidden', 'visible']) {
    Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
    Object.defineProperty(document, 'hidden', {value: state === 'hidden', configurable: true});
    document.dispatchEvent(new Event('visibilitychange'));
  }
}"""


def test_a_phone_waking_from_sleep_follows_the_rig_again(station) -> None:
    """The event stream lost while the phone slept stayed open on the page, which went on
    saying "live" with the state from before the sleep, for ever."""
    with sleeping_relay(urlsplit(station).port or 80) as (via, sleep), _phone_on(via) as page:
        page.wait_for_selector("#link[data-live='true']")
        assert page.text_content("#position") == "0.0 µm"
        sleep()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(station + "api/jog", json={"by": "1mm"}, headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        page.wait_for_timeout(1000)
        assert page.text_content("#position") == "0.0 µm"  # the stream is lost: nothing came
        page.evaluate(WAKE)
        page.wait_for_function(
            "document.getElementById('position').textContent === '1.000 mm'", timeout=10000
        )
        assert page.text_content("#link") == "live"


def test_out_of_reach_errors_are_cleared_once_the_rig_is_heard_again(station) -> None:
    """ "The rig does not answer" stood on in red under Start, and "the connection was lost"
    under the rail's buttons, long after the link said "live" again."""
    with _phone_on(station) as page:
        said = page.evaluate(
            """() => {
              const lost = "the connection to the rig was lost before it answered: the page " +
                "follows the rig again when it reconnects";
              const none = "the rig does not answer: check that it runs and that this phone " +
                "reaches it";
              window.stackrigStation.message("st-msg", lost, true);
              window.stackrigStation.message("st-run-msg", none, true);
              window.stackrigStation.message("st-sess-msg", "session x exists already", true);
              return document.querySelectorAll("#station .message.error").length;
            }"""
        )
        assert said == 3
        page.evaluate(WAKE)  # a fresh event stream, as after a reconnection
        page.wait_for_function("document.querySelectorAll('#station .message.error').length == 1")
        assert page.text_content("#st-sess-msg") == "session x exists already"  # still true


def test_a_past_sessions_plan_is_shot_again_from_its_card(station) -> None:
    """Shooting a subject again with a past session's plan meant typing its range and spacing
    anew, and the page has no field for the order or delays: "Plan again" on its card puts the
    plan in the form, and Start shoots the same positions in the same order."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=station.rstrip("/"), headers=auth, timeout=10) as c:
        plan = {"from": "0.5mm", "to": "1.7mm", "step": "0.4mm", "settle": 0.1,
                "direction": "far-to-near", "flash_recycle": "0.2s",
                "return_to_start": False}  # fmt: skip
        assert c.post("/api/sessions", json={"plan": plan, "name": "first"}).status_code == 201
        while c.get("/api/station").json()["running"]:
            time.sleep(0.2)
        with _phone_on(station) as page:
            card = "#st-sessions tr[data-id='first'][data-state='complete']"
            page.wait_for_selector(card + " button.plan-again")
            page.tap(card + " button.plan-again")
            page.wait_for_function(
                "document.getElementById('st-plan-info').textContent.startsWith('4 frames')"
            )
            assert page.input_value("#st-from") == "500.0um"
            assert page.input_value("#st-to") == "1700.0um"
            assert page.input_value("#st-mode") == "frames"
            assert "far end first" in (page.text_content("#st-plan-info") or "")
            # What the rig will do beyond the range is in sight, not carried unseen.
            assert page.get_attribute("#st-timing", "open") is not None
            assert page.input_value("#st-direction") == "far-to-near"
            assert page.input_value("#st-flash-recycle") == "0.2"
            assert not page.is_checked("#st-return")
            page.fill("#st-name", "again")
            page.tap("#st-start")
            page.wait_for_function(SAID, arg="started again")
            while c.get("/api/station").json()["running"]:
                time.sleep(0.2)
        specs = {s["id"]: s["spec"] for s in c.get("/api/sessions").json()}
    assert specs["again"] == specs["first"]
    assert specs["first"]["direction"] == "far-to-near" and specs["first"]["frames"] == 4
    assert specs["first"]["flash_recycle"] == 0.2 and specs["first"]["return_to_start"] is False


def test_the_order_and_delays_are_set_on_the_page(station) -> None:
    """The page had no field for the order of the frames, the delays a mirror or a flash needs,
    or staying at the far end: a photographer shooting with flash could not start from it."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _phone_on(station) as page:
        assert page.get_attribute("#st-timing", "open") is None  # the defaults, folded away
        fill_plan(page, from_="0mm", to="1mm")
        page.select_option("#st-mode", "frames")
        fill_plan(page, frames="3", settle="0")
        page.tap("#st-timing summary")
        page.select_option("#st-direction", "far-to-near")
        fill_plan(page, **{"exposure-delay": "0.3", "flash-recycle": "0.5", "name": "flash"})
        page.tap("#st-return")
        page.wait_for_function(
            "document.getElementById('st-plan-info').textContent.endsWith('far end first')"
        )
        page.tap("#st-start")
        page.wait_for_function(SAID, arg="started flash")
        with httpx.Client(base_url=station.rstrip("/"), headers=auth, timeout=10) as c:
            deadline = time.monotonic() + 60
            while c.get("/api/station").json()["running"]:
                assert time.monotonic() < deadline, "the session did not end"
                time.sleep(0.2)
            spec = {s["id"]: s["spec"] for s in c.get("/api/sessions").json()}["flash"]
            position = c.get("/api/station").json()["rail"]["position"]
    assert spec == {"from": "0.0um", "to": "1000.0um", "frames": 3, "settle": 0.0,
                    "exposure_delay": 0.3, "flash_recycle": 0.5, "direction": "far-to-near",
                    "return_to_start": False}  # fmt: skip
    assert position == 0.0  # far end first, and left at the last frame: the near end


def test_a_page_opened_during_a_session_shows_its_plan(station) -> None:
    """A page opened or reloaded while a session shot showed the default plan in the form, as
    if that were what the rig was doing."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=station.rstrip("/"), headers=auth, timeout=10) as c:
        plan = {"from": "0.2mm", "to": "2.2mm", "frames": 30, "settle": 0.3}
        assert c.post("/api/sessions", json={"plan": plan, "name": "shooting"}).status_code == 201
        try:
            with _phone_on(station, live=False) as page:
                page.wait_for_function(
                    "document.getElementById('st-plan-info').textContent.startsWith('30 frames')"
                )
                page.wait_for_function(
                    "document.getElementById('lv-msg').textContent"
                    ".startsWith('Live view pauses while the session shoots')"
                )
                assert page.input_value("#st-from") == "200.0um"
                assert page.input_value("#st-to") == "2200.0um"
                assert page.input_value("#st-settle") == "0.3"
                # Stop is in sight: it lay just below a phone's screen, under the paused
                # live view and the plan.
                page.wait_for_function(
                    "(r => r.top >= 0 && r.bottom <= innerHeight)"
                    "(document.getElementById('st-stop').getBoundingClientRect())"
                )
        finally:
            c.post("/api/sessions/shooting/stop", json={})
            while c.get("/api/station").json()["running"]:
                time.sleep(0.2)


def test_a_session_deleted_on_another_phone_leaves_this_ones_list(station) -> None:
    """A session deleted from one phone stayed in the list on another phone open at the same
    time, for as long as no session started or ended there; its Delete then said "no session"
    and left the row in place."""
    _shoot(station, "gone")
    with chromium() as browser:
        first, first_errors = _small_phone(browser)
        second, second_errors = _small_phone(browser)
        for page in (first, second):
            _open(page, station, live=False)
            page.wait_for_selector("#st-sessions tr[data-id='gone'] button.delete")
        first.on("dialog", lambda dialog: dialog.accept())
        first.tap("#st-sessions tr[data-id='gone'] button.delete")
        first.wait_for_function(SAID, arg="deleted gone")
        second.wait_for_selector("#st-sessions tr[data-id='gone']", state="detached")
        assert first_errors == second_errors == []


def test_the_plan_summary_is_the_last_plan_typed(station) -> None:
    """On a slow link the plan's summary could say the frame count of a plan typed before the
    one in the form: the answers to the plans checked while typing were shown in the order they
    came, and a late one for "3" frames overwrote the one for "30"."""
    with _phone_on(station, live=False) as page:
        page.wait_for_function("document.getElementById('st-plan-info').textContent !== ''")
        held: list[Any] = []

        def slow_first(route: Any) -> None:
            if (route.request.post_data_json or {}).get("frames") == "3":
                held.append(route)  # answered below, after the later plan's answer
            else:
                route.continue_()

        page.route("**/api/plan", slow_first)
        page.select_option("#st-mode", "frames")
        with page.expect_request(
            lambda r: r.url.endswith("/api/plan") and (r.post_data_json or {}).get("frames") == "3"
        ):
            fill_plan(page, frames="3")
        fill_plan(page, frames="30")
        page.wait_for_function(
            "document.getElementById('st-plan-info').textContent.startsWith('30 frames')"
        )
        assert len(held) == 1
        with page.expect_response("**/api/plan") as late:
            held[0].continue_()
        late.value.finished()
        page.wait_for_timeout(500)  # the page's handling of the late answer
        assert (page.text_content("#st-plan-info") or "").startswith("30 frames")
        page.unroute_all(behavior="ignoreErrors")


def test_a_list_request_that_failed_is_asked_again(station) -> None:
    """One list request lost (a phone between two Wi-Fi access points) left a finished
    session shown running, without its downloads, and the error standing, until the next
    session started or ended."""
    with _phone_on(station) as page:
        page.wait_for_function("() => !document.getElementById('st-start').disabled")
        lost: list[str] = []

        def lose_two(route: Any) -> None:
            if route.request.method == "GET" and len(lost) < 2:
                lost.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        page.route("**/api/sessions", lose_two)
        _shoot(station, "gap")
        row = "#st-sessions tr[data-id='gap']"
        page.wait_for_selector(row + "[data-state='complete']", timeout=30000)
        assert lost and page.text_content("#st-msg") == ""
        page.unroute_all(behavior="ignoreErrors")


def test_a_session_that_fails_says_why_beside_start(tmp_path: Path) -> None:
    """A session's fault was said only in the progress panel, above a phone's screen and in
    grey: under Start stood "started ..." on, and the ETA counted down a run long over."""
    with _phone_on_own_station(tmp_path, fault="camera@3") as page:
        _frames_plan(page, "2mm", 6, "fails")
        page.evaluate("document.getElementById('st-start').scrollIntoView()")
        page.tap("#st-start")
        page.wait_for_function(
            "document.getElementById('st-run-msg').textContent.includes('fails failed:')",
            timeout=60000,
        )
        assert page.get_attribute("#st-run-msg", "class").split().count("error") == 1
        assert _in_view(page, "fails failed:")
        assert page.text_content("#eta") == "–"


@contextlib.contextmanager
def _phone_on_own_station(tmp_path: Path, fault: str | None = None) -> Iterator[Any]:
    """A small phone's page on a station of the test's own, in this process, its simulated
    rig given ``fault`` (``camera@3``: the camera fails at frame 3)."""
    from rig.sim.rig import SimRigSpec, SimulatedRig, parse_fault
    from rig.station.api import station_app
    from rig.station.service import Station
    from stacker.preview import PreviewServer

    spec = SimRigSpec(width=320, height=240, time_scale=50, fault=parse_fault(fault))
    with SimulatedRig(spec) as sim:
        station = Station(tmp_path / "s", focuser=sim.focuser, camera=sim.camera, rig={})
        server = PreviewServer(station.hub, app=station_app(station, TOKEN))
        with server, _phone_on(server.url, live=False) as page:
            yield page
        station.close()


def _frames_plan(page: Any, to: str, frames: int, name: str) -> None:
    """Type a plan of ``frames`` frames from 0 to ``to`` named ``name`` into the form."""
    fill_plan(page, from_="0mm", to=to)
    page.select_option("#st-mode", "frames")
    fill_plan(page, frames=str(frames), name=name)


def test_a_session_ended_before_its_start_was_answered_is_said(tmp_path: Path) -> None:
    """On a slow link a short session ended before the page had Start's answer: "started"
    stood on under Start, and how the session ended was never said."""
    with _phone_on_own_station(tmp_path) as page:
        _frames_plan(page, "1mm", 2, "quick")
        page.route("**/api/sessions", _answer_late)
        page.tap("#st-start")
        page.wait_for_function(
            "document.getElementById('st-run-msg').textContent === 'quick finished'",
            timeout=30000,
        )


def test_a_rig_heard_again_after_the_browser_reconnected_clears_no_answer(station) -> None:
    """The browser reconnects a broken event stream by itself (a rig restarting): "the rig
    does not answer" stayed under a link that said "live" again."""
    cut: list[socket.socket] = []

    def pump(src: socket.socket, dst: socket.socket, answers: bool) -> None:
        cut.extend((src, dst))
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)

    none = "the rig does not answer: check that it runs and that this phone reaches it"
    with relay(urlsplit(station).port or 80, pump) as via, _phone_on(via) as page:
        page.wait_for_selector("#link[data-live='true']")
        page.evaluate("m => window.stackrigStation.message('st-run-msg', m, true)", none)
        for sock in list(cut):  # every connection cut, as when the rig restarts
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        page.wait_for_selector("#link[data-live='false']", timeout=10000)
        page.wait_for_selector("#link[data-live='true']", timeout=20000)
        page.wait_for_function("document.getElementById('st-run-msg').textContent === ''")
