"""The station as a photographer's remote, in headless Chromium against ``rig station --sim``.

Live view arrives and follows the rail, focus peaking marks the synthetic scene's in-focus band
and the band moves with the rail, set near / jog / set far fills the plan, a camera setting
changed on the page is read back from libgphoto2's virtual camera, an interrupted session resumes
from the list and a finished one is deleted, and the page fits a phone held either way with
touch targets of at least 48 px and nothing fetched from outside the rig. Screenshots go to
``$STACKRIG_SCREENSHOTS`` when it is set.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from rig.sim.rig import SimRigSpec
from rig.sim.scene import SceneSpec, SyntheticScene
from tests.browser import (
    CHROMIUM,
    PHONE,
    SET_VISIBILITY,
    SKIP_REASON,
    chromium,
    fill_plan,
    phone_page,
)
from tests.relay import relay
from tests.station_process import station_process

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)

TOKEN = "remote-browser-token-42"
W, H = 960, 720

# The displayed live-view frame, read back through a canvas: the magenta (peaking) pixels.
PEAKED_PIXELS = """async () => {
  const img = document.getElementById('lv-img');
  // The page loads the next frame into the same element: wait until the one it holds is whole.
  for (let i = 0; i < 50 && !(img.complete && img.naturalWidth); i++) {
    await img.decode().catch(() => new Promise((ok) => setTimeout(ok, 100)));
  }
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const out = [];
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] > 200 && d[i + 1] < 90 && d[i + 2] > 200) out.push(i / 4);
  }
  return {width: c.width, height: c.height, marked: out};
}"""


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    sessions = tmp_path / "sessions"
    with station_process(sessions, token=TOKEN, size=f"{W}x{H}") as (url, _proc, _where):
        yield url, sessions


@pytest.fixture(scope="module")
def depth_of() -> np.ndarray:
    """The simulated rig's scene depth per pixel (the same spec ``rig station --sim`` renders)."""
    rig = SimRigSpec(width=W, height=H)
    spec = SceneSpec(
        width=W, height=H, seed=rig.seed, depth_um=rig.depth_um, jpeg_quality=rig.jpeg_quality
    )
    return SyntheticScene(spec).height_um()


def _fresh_frames(page, n: int = 2) -> None:
    """Wait until ``n`` more live-view frames have been shown (all asked for after now)."""
    seen = int(page.get_attribute("#lv-img", "data-frames") or 0)
    page.wait_for_function(
        f"Number(document.getElementById('lv-img').dataset.frames) >= {seen + n}", timeout=30000
    )


def _marked_depth(page, depth_of: np.ndarray) -> float:
    got = page.evaluate(PEAKED_PIXELS)
    assert (got["width"], got["height"]) == (W, H)
    marked = np.asarray(got["marked"], dtype=np.int64)
    assert 0.002 < marked.size / (W * H) < 0.3, marked.size
    return float(np.median(depth_of.reshape(-1)[marked]))


def _jog(page, by: str, expect: str) -> None:
    page.click(f"#st-jog button[data-by='{by}']")
    page.wait_for_function(f"document.getElementById('st-msg').textContent.includes('{expect}')")
    _fresh_frames(page)


def _shoot(page, url: str) -> None:
    page.goto(url + "#token=" + TOKEN)
    page.wait_for_selector("#lv-img:not([hidden])", timeout=30000)
    _fresh_frames(page)


def test_live_view_peaking_and_setting_the_ends_by_eye(station, depth_of) -> None:
    url, _sessions = station
    with chromium() as browser:
        page, errors = phone_page(browser)
        _shoot(page, url)
        assert page.get_attribute("#lv-img", "data-source") == "camera"
        # Peaking at the near end marks the near part of the scene.
        near_depth = _marked_depth(page, depth_of)
        page.fill("#st-from", "1mm")  # 1 to 2 mm: 11 frames, until the near end is set
        page.wait_for_function(
            "document.getElementById('st-plan-info').textContent.startsWith('11 frames')"
        )
        page.click("#st-set-near")
        page.wait_for_function("document.getElementById('st-from').value === '0um'")
        # The set near end recomputes the plan at once (step mode, 0 to 2 mm: 21 frames).
        page.wait_for_function(
            "document.getElementById('st-plan-info').textContent.startsWith('21 frames')"
        )
        first = page.evaluate(PEAKED_PIXELS)["marked"]
        _jog(page, "+1mm", "1000")
        _jog(page, "+1mm", "2000")
        assert page.evaluate(PEAKED_PIXELS)["marked"] != first  # the frames follow the rail
        far_depth = _marked_depth(page, depth_of)
        assert abs(near_depth - 0) < 700 and abs(far_depth - 2000) < 700
        assert far_depth - near_depth > 700, (near_depth, far_depth)
        # Set far, then let the depth-of-field calculator space the frames.
        page.click("#st-set-far")
        page.wait_for_function("document.getElementById('st-to').value === '2000um'")
        page.select_option("#cam-aperture", "f/8")
        page.wait_for_function("document.getElementById('cam-msg').textContent.includes('f/8')")
        assert page.input_value("#st-fnum") == "8"
        page.select_option("#st-mode", "optics")
        page.fill("#st-mag", "2")
        spec = {"from": "0um", "to": "2000um", "magnification": "2", "f_number": "8"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url.rstrip("/"), headers=auth, timeout=10) as c:
            planned = c.post("/api/plan", json={**spec, "settle": "0.5"}).json()
            settings = {s["name"]: s for s in c.get("/api/camera/settings").json()["settings"]}
        assert settings["aperture"]["value"] == "f/8"  # read back from the virtual camera
        page.wait_for_function(
            "document.getElementById('st-plan-info').dataset.frames === "
            f"'{planned['frames']}' && "
            "document.getElementById('st-plan-info').textContent.includes('f/8')"
        )
        # Go to near checks the near end: the rail returns and so does the peaking band.
        page.click("#st-go-near")
        # Its own answer: the message before it ("far end set at 2000um") holds "0um" too.
        page.wait_for_function(
            "document.getElementById('st-msg').textContent.includes('near end: 0um')"
        )
        _fresh_frames(page)
        assert abs(_marked_depth(page, depth_of) - near_depth) < 300
        # Tap-to-zoom shows the frame at its own pixels around the tapped point.
        page.click("#lv-img", position={"x": 300, "y": 200})
        assert page.evaluate("document.getElementById('lv-wrap').classList.contains('zoom')")
        assert page.evaluate("document.getElementById('lv-img').getBoundingClientRect().width") == W
        assert page.evaluate("document.getElementById('lv-wrap').scrollLeft") > 0
        page.click("#lv-wrap")
        assert not page.evaluate("document.getElementById('lv-wrap').classList.contains('zoom')")
        # From the keyboard: Enter shows the centre at 1:1, and Enter again fits the frame.
        page.focus("#lv-wrap")
        page.keyboard.press("Enter")
        assert page.evaluate("document.getElementById('lv-wrap').classList.contains('zoom')")
        page.keyboard.press("Enter")
        assert not page.evaluate("document.getElementById('lv-wrap').classList.contains('zoom')")
        assert errors == []


def test_past_sessions_resume_and_delete_on_a_phone(station, tmp_path: Path) -> None:
    url, sessions = station
    shots = Path(os.environ.get("STACKRIG_SCREENSHOTS") or tmp_path)
    with chromium() as browser:
        page = browser.new_page(viewport=PHONE, has_touch=True)
        origins: set[str] = set()
        page.on(  # blob: URLs are frames the page already holds
            "request",
            lambda r: (
                r.url.startswith("blob:") or origins.add(re.sub(r"^(\w+://[^/]+).*", r"\1", r.url))
            ),
        )
        page.on("dialog", lambda d: d.accept())
        _shoot(page, url)
        page.select_option("#st-mode", "frames")
        fill_plan(page, to="3mm", frames="8", settle="0.8", name="slug")
        page.click("#st-start")
        page.wait_for_function("document.getElementById('captured').textContent.startsWith('1')",
                               timeout=30000)  # fmt: skip
        page.wait_for_function(
            "document.getElementById('lv-msg').textContent.includes('pauses while')"
        )
        page.click("#st-stop")
        page.wait_for_selector("#run-state[data-state='stopped']", timeout=60000)
        row = "#st-sessions tr[data-id='slug']"
        page.wait_for_selector(row + "[data-state='interrupted']")
        page.click(row + " button.resume")
        page.wait_for_selector("#run-state[data-state='finished']", timeout=120000)
        page.wait_for_selector(row + "[data-state='complete']", timeout=30000)
        frames = sorted(p.name for p in (sessions / "slug" / "frames").iterdir())
        assert frames == [f"frame_{i:04d}.jpg" for i in range(1, 9)]
        page.wait_for_function(f'document.querySelector("{row} img.thumb").naturalWidth > 0')
        _fresh_frames(page)  # live view is back once the session ends
        page.screenshot(path=str(shots / "station-portrait.png"), full_page=True)
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                  '#station button, #station select, #station input, #station summary, ' +
                  '#st-sessions a')]
                .filter(e => e.offsetParent !== null)
                .map(e => [e.id || e.textContent,
                           (e.type === 'checkbox' ? e.closest('label') : e)
                             .getBoundingClientRect()])
                .filter(([, r]) => r.height < 48 || r.width < 48)
                .map(([n]) => n)"""
        )
        assert small == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 844, "height": 390})
        page.evaluate("document.getElementById('lv').scrollIntoView()")
        page.screenshot(path=str(shots / "station-landscape.png"))
        assert page.evaluate("document.documentElement.scrollWidth") <= 844
        lv, plan = page.evaluate(
            """() => ['lv-img', 'st-plan'].map(
                id => document.getElementById(id).getBoundingClientRect().toJSON())"""
        )
        assert lv["right"] <= plan["left"] and lv["bottom"] > plan["top"]  # side by side
        # A smaller phone sideways (an iPhone SE): the past sessions as cards, every button
        # of a card on the screen, the thumbnail whole.
        page.set_viewport_size({"width": 667, "height": 375})
        card = page.evaluate(
            """row => ({buttons: Math.max(...[...document.querySelectorAll(row + ' button')]
                                    .map(b => b.getBoundingClientRect().right)),
                      thumb: document.querySelector(row + ' img.thumb')
                               .getBoundingClientRect().width})""",
            row,
        )
        assert card["buttons"] <= 667 and card["thumb"] >= 90, card
        assert page.evaluate("document.documentElement.scrollWidth") <= 667
        # Delete asks first, then the session is gone from the list and the disk.
        page.click(row + " button.delete")
        page.wait_for_selector(row, state="detached")
        assert not (sessions / "slug").exists()
        assert origins == {url.rstrip("/")}, origins  # nothing from the internet


@contextlib.contextmanager
def _cutting_proxy(port: int) -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """A relay to the station on ``port``: (its address, ``arm``, ``cut``). Once ``arm`` is set,
    the next live-view answer is cut off after its first 400 bytes and the connection closed,
    as a phone's Wi-Fi drops one; ``cut`` is set when that happened."""
    arm, cut = threading.Event(), threading.Event()
    doomed: set[int] = set()  # upstream sockets whose next answer is cut

    def pump(src: socket.socket, dst: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not answers and b"GET /api/liveview" in data and arm.is_set():
                    arm.clear()
                    doomed.add(id(dst))
                if answers and id(src) in doomed:
                    dst.sendall(data[:400])
                    cut.set()
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    with relay(port, pump) as url:
        yield url, arm, cut


def test_live_view_goes_on_after_a_frame_is_cut_off(station) -> None:
    """A live-view answer cut off mid-frame (the phone's link dropped) rejected the read of its
    body outside any handler: 'Failed to fetch' on the page, and live view stopped for good."""
    url, _sessions = station
    with _cutting_proxy(urlsplit(url).port or 80) as (relay, arm, cut), chromium() as browser:
        page, errors = phone_page(browser)
        _shoot(page, relay)
        arm.set()
        assert cut.wait(30)
        _fresh_frames(page, 3)
        assert errors == []


@pytest.mark.parametrize("woken", [True, False], ids=["woken", "waited"])
def test_live_view_goes_on_after_a_frame_that_never_comes(station, woken: bool) -> None:
    """A live-view request lost with the Wi-Fi (no answer, no close) froze the picture for
    good under a "live" link: the photographer framed on a stale frame. It is given up when
    the phone wakes (or the page finds its link dead), and after ten seconds in any case."""
    url, _sessions = station
    held: list = []
    armed = [False]

    def route(r) -> None:
        if armed[0] and not held:
            held.append(r)  # never answered
        else:
            r.continue_()

    with chromium() as browser:
        page, errors = phone_page(browser)
        page.route("**/api/liveview*", route)
        _shoot(page, url)
        armed[0] = True
        deadline = 30
        while not held and deadline:
            page.wait_for_timeout(100)
            deadline -= 1
        assert held
        if woken:
            page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        _fresh_frames(page, 2)
        assert errors == []


def test_a_tab_shown_again_after_a_moment_lets_a_jog_under_way_answer(station) -> None:
    """Brought back to the front, every page took itself for a phone woken from sleep and
    gave up the requests still under way: a jog glanced away from for a moment never showed
    where the rail went. Only a page hidden for seconds gives them up."""
    url, _sessions = station
    held: list = []
    with chromium() as browser:
        page, errors = phone_page(browser)
        _shoot(page, url)
        page.route("**/api/jog", lambda r: held.append(r))
        page.click("#st-jog button[data-by='+100um']")
        for _ in range(100):
            if held:
                break
            page.wait_for_timeout(50)
        assert held
        page.evaluate(SET_VISIBILITY, True)
        page.wait_for_timeout(300)
        page.evaluate(SET_VISIBILITY, False)
        page.wait_for_timeout(300)
        held[0].continue_()
        page.wait_for_function("document.getElementById('st-msg').textContent.includes('at ')")
        assert "lost" not in page.text_content("#st-msg")
        assert errors == []
