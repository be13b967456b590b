"""A long rail move on the station's page, in headless Chromium: Stop reaches it from any phone,
and a move whose request died with the phone's Wi-Fi does not hold the page.

The station runs in this process on a real-time simulated GRBL rail at 2 mm/s (a move to 60 mm takes
30 s), served with pings every half second, so that a page finds a dead link in 1.5 s
rather than 45; the phone's network is a relay that can drop every connection without a word.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.station.api import station_app
from rig.station.service import Station
from stacker.preview import PreviewServer
from tests.browser import CHROMIUM, SKIP_REASON, chromium, fill_plan, phone_page
from tests.relay import sleeping_relay
from tests.stations import TOKEN, station_of

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)

REAL_TIME = SimRigSpec(width=320, height=240, time_scale=1)
FAR = "60mm"
STOPPED = "document.getElementById('st-stop').disabled === false"
# The message line of a control's group, where its answer or error is said.
MESSAGE_OF = """(id) => {
  const line = document.getElementById(id).closest('[data-msg]');
  return document.getElementById(line ? line.dataset.msg : 'st-msg').textContent;
}"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Station, PreviewServer]]:
    with SimulatedRig(REAL_TIME) as rig:
        rig.focuser.send("$110=120")  # X's top speed 2 mm/s, as a fine-pitch macro rail
        station = station_of(rig, tmp_path / "sessions", REAL_TIME)
        try:
            with PreviewServer(station.hub, app=station_app(station, TOKEN, ping_s=0.5)) as srv:
                yield station, srv
        finally:
            station.close()


def _open(page: Any, url: str) -> None:
    """Open the page and wait until its stream has pinged once: the page then knows that three
    pings of silence (1.5 s, not the 45 s it assumes until told) mean a dead link."""
    page.goto(url + "#token=" + TOKEN)
    page.wait_for_selector("#st-jog button")
    page.wait_for_selector("#link[data-live='true']")
    page.wait_for_function("quietLimitMs === 1500")


def _position_mm(station: Station) -> float:
    return float(station.focuser.position) / 1000.0


def test_a_move_whose_link_died_frees_the_page_and_stop_still_halts_it(served) -> None:
    """Go to far end, then the phone's Wi-Fi dropped every connection without a word: the
    move's request waited for an answer that could never come, and its button stayed disabled
    (and the message line silent) until the phone's TCP gave up, minutes later. The page now
    drops it once it finds its event stream dead, says so, and Stop, told by the station that
    the rail still moves, halts it over the new connection."""
    station, server = served
    with sleeping_relay(server.port, every_connection=True) as (via, sleep), chromium() as browser:
        page, errors = phone_page(browser)
        _open(page, via)
        fill_plan(page, to=FAR)
        page.click("#st-go-far")
        page.wait_for_function(STOPPED)
        page.wait_for_timeout(300)  # under way
        sleep()
        page.wait_for_function(
            "document.getElementById('st-go-far').disabled === false", timeout=8000
        )
        said = page.evaluate(MESSAGE_OF, "st-go-far")
        assert "connection to the rig was lost" in said, said
        assert station.running is None
        assert 0.5 < _position_mm(station) < 40.0  # still on its way
        page.wait_for_selector("#link[data-live='true']", timeout=20_000)
        page.wait_for_function(STOPPED)  # the new stream says the rail moves
        page.click("#st-stop")
        page.wait_for_function(
            "document.body.innerText.includes('rail stopped (jog)')", timeout=8000
        )
        stopped_at = _position_mm(station)
        page.wait_for_timeout(1000)
        assert _position_mm(station) == pytest.approx(stopped_at, abs=0.01)
        assert stopped_at < 58.0
        page.wait_for_function("document.getElementById('st-stop').disabled === true")
        assert errors == []


def test_stop_on_one_phone_halts_a_move_another_phone_started(served) -> None:
    """A jog from one phone ran with Stop disabled on every other phone open on the station:
    only the phone that asked could halt it."""
    station, server = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: list[httpx.Response] = []

    def other_phone() -> None:
        answers.append(
            httpx.post(server.url + "api/jog", json={"to": FAR}, headers=auth, timeout=60)
        )

    with chromium() as browser:
        page, errors = phone_page(browser)
        _open(page, server.url)
        assert page.is_disabled("#st-stop")
        mover = threading.Thread(target=other_phone)
        mover.start()
        try:
            page.wait_for_function(STOPPED, timeout=8000)
            page.click("#st-stop")
            page.wait_for_function(
                "document.body.innerText.includes('rail stopped (jog)')", timeout=8000
            )
        finally:
            mover.join(60)
        assert _position_mm(station) < 58.0
        page.wait_for_function("document.getElementById('st-stop').disabled === true")
        assert errors == []
    assert len(answers) == 1
