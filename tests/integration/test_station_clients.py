"""The station with clients that are careless rather than hostile, over real loopback HTTP on
the simulated rig: other sites' cookies, headers in another case, values of the wrong type,
routes that do not exist, a session damaged on the card, many thumbnails asked for at once."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import rig.station.history
from rig.station.service import Station
from stacker.preview import PreviewServer
from stacker.preview.access import cookie_name
from tests.stations import TOKEN, folder_entries

PLAN = {"from": "0mm", "to": "1mm", "frames": 2, "settle": 0}


def test_other_sites_cookies_do_not_hide_the_login_cookie(server: PreviewServer) -> None:
    """Browsers send every cookie of the host name whatever the port; one that Python's strict
    cookie parser refuses made it drop the rest, and a logged-in page got 401."""
    name = cookie_name(server.port)
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as browser:
        for others in ('prefs={"a":1}', "theme=a b", "lang=é", "stackrig_token_1=x"):
            cookie = f"{others}; {name}={TOKEN}".encode()
            r = browser.get("/api/station", headers={"Cookie": cookie})
            assert r.status_code == 200, (others, r.text)
        r = browser.get("/api/station", headers={"Cookie": f'prefs={{"a":1}}; {name}=guess'})
        assert r.status_code == 403


def test_media_type_in_any_case_and_a_name_that_is_not_text(station: Station, client) -> None:
    r = client.post(
        "/api/jog",
        content=json.dumps({"by": "1um"}),
        headers={"Content-Type": "Application/JSON; charset=UTF-8"},  # RFC 9110: no case
    )
    assert r.status_code == 200, r.text
    assert client.post("/api/jog", json={"by": "-1um"}).status_code == 200
    for name in (True, 1500, ["a"]):
        r = client.post("/api/sessions", json={"plan": PLAN, "name": name})
        assert r.status_code == 400 and "'name' must be text" in r.json()["error"], name
    assert folder_entries(station) == []


def test_unknown_routes_and_methods_under_api_answer_json(client) -> None:
    r = client.put("/api/jog")
    assert r.status_code == 405 and r.json()["error"] == "PUT /api/jog: method not allowed"
    assert "POST" in r.headers["allow"]
    r = client.get("/api/nonexistent")
    assert r.status_code == 404 and r.json()["error"] == "GET /api/nonexistent: no such route"
    assert client.get("/nonexistent").headers["content-type"].startswith("text/plain")


@pytest.mark.slow
def test_a_damaged_plan_hides_its_session_not_the_page(station: Station, client) -> None:
    """A power cut on an SD card can leave any bytes in plan.json; that answered 500 to the
    page's every poll, which then showed nothing."""
    assert client.post("/api/sessions", json={"plan": PLAN, "name": "good"}).status_code == 201
    assert station.wait(60) is not None
    shutil.copytree(station.root / "good", station.root / "bad")
    (station.root / "bad" / "plan.json").write_bytes(b"\xff\xfe\x00garbage")
    assert client.get("/api/station").status_code == 200
    r = client.get("/api/sessions")
    assert r.status_code == 200 and [s["id"] for s in r.json()] == ["good"]
    r = client.post("/api/sessions/bad/resume", json={})
    assert r.status_code == 400 and "plan.json: not text (damaged)" in r.json()["error"]


@pytest.mark.slow
def test_a_session_removed_by_hand_leaves_no_thumbnail_behind(station: Station, client) -> None:
    """Thumbnails were forgotten only for sessions deleted through the page: each one removed
    over ssh kept its JPEG in the station's memory for as long as it ran."""
    assert client.post("/api/sessions", json={"plan": PLAN, "name": "s0"}).status_code == 201
    assert station.wait(60) is not None
    for n in (1, 2):
        shutil.copytree(station.root / "s0", station.root / f"s{n}")
    history = rig.station.history.SessionHistory(station)
    history.thumbnail("s0")
    history.thumbnail("s1")
    shutil.rmtree(station.root / "s1")  # by hand
    history.thumbnail("s2")
    assert sorted(history._thumbs) == ["s0", "s2"]


@pytest.mark.slow
def test_thumbnails_asked_for_at_once_are_decoded_one_at_a_time(
    station: Station, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each decode of a 24 MP 16-bit composite takes about 150 MB; eight at once took a station
    from 265 MB to 2.8 GB. Instrumentation around the real decoder counts those in flight."""
    assert client.post("/api/sessions", json={"plan": PLAN, "name": "s0"}).status_code == 201
    assert station.wait(60) is not None
    for n in (1, 2, 3):
        shutil.copytree(station.root / "s0", station.root / f"s{n}")
    decode, lock = rig.station.history.decode_image, threading.Lock()
    in_flight, most = [0], [0]

    def counted(data: bytes, path: Path) -> np.ndarray:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.2)
            return decode(data, path)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(rig.station.history, "decode_image", counted)
    codes: list[int] = []
    threads = [
        threading.Thread(
            target=lambda n=n: codes.append(client.get(f"/api/sessions/s{n}/thumbnail").status_code)
        )
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [200] * 4 and most[0] == 1
