"""End to end in a real headless Chromium: the page follows a real Stacker fed on a thread.

Playwright drives Debian's Chromium (``apt-get install chromium``); the test is skipped, with the
reason, only where that browser is not installed.
"""

from __future__ import annotations

import contextlib
import io
import queue
import re
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.preview import PreviewHub, PreviewServer, attach_stacker
from stacker.preview.publisher import encode_jpeg
from stacker.preview.server import create_app, token_extension
from stacker.preview.watchfeed import serve_watch_preview
from stacker.stack import Stacker
from stacker.watch import MergedFrame, WatchStatus
from tests.browser import CHROMIUM, SET_VISIBILITY, SKIP_REASON, chromium, phone_page
from tests.relay import relay, sleeping_relay

N_FRAMES = 6

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)


@pytest.fixture(scope="module")
def frames() -> list:
    stack = SyntheticStack(SceneSpec(width=400, height=300, seed=5), N_FRAMES)
    return [(f.image, float(p)) for f, p in zip(stack, stack.positions_um, strict=True)]


@pytest.fixture
def browser() -> Iterator:
    with chromium() as b:
        yield b


def _feed(
    hub: PreviewHub, frames: list, shoot: threading.Semaphore, added: queue.Queue[int]
) -> None:
    """The stacking worker: adds a frame each time ``shoot`` is released, answering crop clicks
    while it waits, and puts the composite's version after each frame in ``added``."""
    stacker = Stacker(preview_size=400, expected_frames=N_FRAMES)
    publisher = attach_stacker(hub, stacker)
    hub.update_progress(state="running", total=N_FRAMES)
    for i, (image, position) in enumerate(frames):
        while not shoot.acquire(timeout=0.05):  # the next "capture" takes a moment
            publisher.serve_crops(timeout=0.05)
        hub.update_progress(captured=i + 1, position_um=position)
        publisher.add(image, name=f"frame_{i:03d}.png", position_um=position)
        composite = hub.image("composite")
        added.put(composite[1] if composite is not None else 0)
    publisher.finish()
    added.put(-1)


def test_the_page_follows_a_live_stack_and_shows_a_100_percent_crop(browser, frames):
    hub = PreviewHub(title="synthetic board")
    shoot, added = threading.Semaphore(0), queue.Queue[int]()
    worker = threading.Thread(target=_feed, args=(hub, frames, shoot, added), daemon=True)
    with PreviewServer(hub) as server:
        worker.start()
        page, errors = phone_page(browser)
        page.goto(server.url)
        page.wait_for_selector("#link[data-live='true']")
        # Record every composite the page shows, without reloading it.
        page.evaluate(
            """() => {
              window.shown = [];
              const img = document.getElementById('composite');
              new MutationObserver(() => window.shown.push(img.dataset.version))
                .observe(img, {attributes: true, attributeFilter: ['data-version']});
            }"""
        )
        # A frame at a time, once the page shows the last: every version published reaches it,
        # however slow the machine (a live page may skip versions it has not fetched in time).
        for _ in range(N_FRAMES):
            shoot.release()
            version = added.get(timeout=60)
            if version:
                page.wait_for_function(
                    "v => document.getElementById('composite').dataset.version === v",
                    arg=str(version),
                )
        assert added.get(timeout=60) == -1, "the stacking thread did not finish"
        final = hub.image("composite")
        assert final is not None
        page.wait_for_function(
            "v => document.getElementById('composite').dataset.version === v", arg=str(final[1])
        )
        page.wait_for_selector("#run-state[data-state='finished']")

        shown = page.evaluate("window.shown")
        assert len(set(shown)) >= 3, f"the composite changed only {shown} during the stack"
        assert page.inner_text("#captured") == f"{N_FRAMES} / {N_FRAMES}"
        assert page.inner_text("#merged") == str(hub.progress.merged)
        assert page.eval_on_selector("#progress-bar", "b => [b.value, b.max]") == [N_FRAMES] * 2
        assert page.inner_text("#position") == f"{frames[-1][1] / 1000:.3f} mm"
        rows = page.locator("#frames tbody tr")
        assert rows.count() == N_FRAMES
        assert rows.nth(2).inner_text().split("\t")[1] == "frame_002.png"
        assert page.locator("#frames tbody tr[data-result='ok']").count() == hub.progress.merged
        assert page.eval_on_selector("#last", "i => i.naturalWidth") == 400
        assert page.eval_on_selector("#depth", "i => !i.hidden && i.naturalWidth > 0")
        # Its key is too small to read beside the last frame on a phone: a tap opens it whole.
        opened = page.eval_on_selector(
            "#depth-open", "a => [a.href === document.getElementById('depth').src, a.target]"
        )
        assert opened == [True, "_blank"]
        # Nothing runs off the side of a phone screen, and each frame's result shows without
        # sliding the table sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate(
            """() => {
              const right = (sel) => document.querySelector(sel).getBoundingClientRect().right;
              return right('#frames th:last-child') <= right('.frames .table-wrap');
            }"""
        )

        # Click into the composite: both 100 % crops appear, at the place clicked.
        box = page.locator("#composite").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
        page.wait_for_selector("#crop-panel[data-loading='false']")
        where = re.fullmatch(r"at (\d+), (\d+) \((\d+)×(\d+) px\)", page.inner_text("#crop-where"))
        assert where is not None
        size = int(where[3])
        assert size == int(where[4]) and 64 <= size < 200  # as much as a phone shows twice
        # Centred on the click (100, 150 in frame pixels), give or take a pixel.
        assert (
            abs(int(where[1]) - (100 - size / 2)) <= 1
            and abs(int(where[2]) - (150 - size / 2)) <= 1
        )
        page.wait_for_function(
            "n => ['crop-composite', 'crop-last'].every(id => {"
            "  const im = document.getElementById(id);"
            "  return im.naturalWidth === n && im.getBoundingClientRect().width === n; })",
            arg=size,
        )  # 1:1 on this screen (device pixel ratio 1), and both fit side by side:
        assert page.eval_on_selector("#crop-last", "i => i.getBoundingClientRect().right") <= 390
        marker = page.locator("#crop-marker")
        assert marker.is_visible()
        close = page.locator("#crop-close").bounding_box()
        assert close is not None and min(close["width"], close["height"]) >= 48  # a thumb's
        page.click("#crop-close")
        assert page.locator("#crop-panel").is_hidden()

        # From the keyboard: the composite is reached with Tab, and Enter checks its centre.
        page.focus("#composite")
        page.keyboard.press("Enter")
        page.wait_for_selector("#crop-panel[data-loading='false']")
        where = re.fullmatch(r"at (\d+), (\d+) \((\d+)×\d+ px\)", page.inner_text("#crop-where"))
        assert where is not None
        assert abs(int(where[1]) + int(where[3]) / 2 - 200) <= 1
        assert abs(int(where[2]) + int(where[3]) / 2 - 150) <= 1
        assert page.get_attribute("#composite", "tabindex") == "0"
        assert errors == []
    worker.join(5)


def test_after_a_restart_the_page_reconnects_or_asks_for_the_new_token(browser):
    """A preview listening beyond loopback makes a new token each run. After a restart the
    event stream's reconnection got a 403, on which EventSource gives up for good: the page
    said "reconnecting…" for ever and never asked for the new token."""
    hub = PreviewHub(title="restarted")

    def serving(token: str, port: int = 0) -> PreviewServer:
        return PreviewServer(hub, port=port, app=create_app(hub, token_extension(token)))

    page, errors = phone_page(browser)
    with serving("first-token-0123") as first:
        port = first.port
        page.goto(first.url + "#token=first-token-0123")
        page.wait_for_selector("#link[data-live='true']")
    page.wait_for_selector("#link[data-live='false']")
    # The same token again (the station keeps its token in a file): the page is live again.
    with serving("first-token-0123", port):
        hub.update_progress(captured=3)
        page.wait_for_selector("#link[data-live='true']", timeout=15_000)
    # A new token: the page asks for it instead of waiting for ever.
    with serving("new-token-456789", port):
        page.wait_for_selector("#login:not([hidden])", timeout=15_000)
        assert page.text_content("#link") == "locked"
        page.fill("#login-token", "new-token-456789")
        page.click("#login button")
        page.wait_for_selector("#link[data-live='true']", timeout=15_000)
    assert errors == []


def test_a_page_left_open_across_a_restart_shows_the_new_run_alone(browser, frames):
    """A phone asleep while the station restarted (a power cut) wakes to the new run. Versions
    and epochs start afresh in each run: the page kept the old stack's rows beside the new
    one's (same epoch), and the old composite (a higher version than the new run's)."""
    yesterday = PreviewHub()
    yesterday.reset(title="yesterday")
    for i in range(5):
        yesterday.update_frame(i, name=f"yesterday-{i}")
    for value in range(0, 250, 10):  # many previews: the old composite's version is high
        yesterday.set_images(composite=encode_jpeg(np.full((30, 40, 3), value, np.uint8)))
    page, errors = phone_page(browser)
    with PreviewServer(yesterday) as first:
        port = first.port
        page.goto(first.url)
        page.wait_for_selector("#frames tbody tr:nth-child(5)")
        page.wait_for_function("() => document.getElementById('composite').naturalWidth === 40")
    today = PreviewHub()
    today.reset(title="today")
    for i in range(2):
        today.update_frame(i, name=f"today-{i}")
    with PreviewServer(today, port=port):
        page.wait_for_function("() => document.getElementById('title').textContent === 'today'")
        # No composite yet in the new run: yesterday's was still shown, as if of this one.
        assert page.is_hidden("#composite") and page.is_visible("#composite-empty")
        today.set_images(composite=encode_jpeg(frames[0][0]))
        page.wait_for_function("() => document.getElementById('composite').naturalWidth === 400")
        names = page.locator("#frames tbody tr td:nth-child(2)").all_inner_texts()
        assert names == ["today-0", "today-1"]
    assert errors == []


@pytest.mark.parametrize(
    ("every_connection", "clock_set_back"),
    [(False, False), (True, False), (False, True)],
    ids=["stream", "router", "clock-set-back"],
)
def test_a_visible_page_whose_stream_died_silently_follows_the_rig_again(
    browser, every_connection, clock_set_back
):
    """A connection that dies without a word (Wi-Fi out of reach and back, a router's restart)
    left the page open and "live" on a stream that delivered nothing more, for as long as the
    page stayed on screen. The server pings a quiet stream; a page that hears nothing for three
    pings opens a new one; when every connection died (a router's restart), the browser may
    send that one's request on a kept-alive connection that is dead too, and the page tries
    again while none answers. The silence is timed on the page's own steady clock: timed by
    the date, it did not end for an hour once the phone's clock was set back an hour."""
    hub = PreviewHub(title="quiet")
    hub.update_progress(state="running", captured=1, total=10)
    with (
        PreviewServer(hub, app=create_app(hub, ping_s=0.5)) as server,
        sleeping_relay(server.port, every_connection=every_connection) as (via, sleep),
    ):
        page, errors = phone_page(browser)
        streams: list[str] = []
        page.on("request", lambda r: streams.append(r.url) if "/api/events" in r.url else None)
        page.goto(via)
        page.wait_for_function("document.getElementById('captured').textContent === '1 / 10'")
        page.wait_for_timeout(2500)  # quiet, but pinged: the stream lives on
        assert len(streams) == 1
        if clock_set_back:  # the network's time came in, an hour behind the phone's
            page.evaluate("() => { const d = Date.now; Date.now = () => d() - 3600e3; }")
        sleep()
        hub.update_progress(captured=2)
        page.wait_for_function(
            "document.getElementById('captured').textContent === '2 / 10'", timeout=10_000
        )
        assert page.text_content("#link") == "live"
        assert errors == []


@contextlib.contextmanager
def _page_through(browser, hub: PreviewHub, pump) -> Iterator[tuple]:
    """A phone's page of ``hub``'s preview (pinged every 15 s, as served) opened through a
    relay whose ``pump`` plays the network: (the page, the errors it logs)."""
    with (
        PreviewServer(hub, app=create_app(hub, ping_s=15.0)) as server,
        relay(server.port, pump) as via,
    ):
        page, errors = phone_page(browser)
        page.goto(via)
        yield page, errors


def test_a_stream_that_says_nothing_at_first_is_asked_for_again_at_once(browser):
    """After a router's restart the browser sends the new stream's request on a kept-alive
    connection that died too, and no answer ever comes: the page waited three pings (45 s)
    for each such connection, "reconnecting…" for minutes. A new stream is answered with the
    state at once, so one silent for five seconds is given up and another asked for. Here the
    page's first stream is the one lost, with the server's 15 s pings."""
    hub = PreviewHub(title="first word")
    hub.update_progress(state="running", captured=3, total=10)
    streams: list[int] = []

    def pump(src, dst, answers: bool) -> None:
        upstream = id(src if answers else dst)
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not answers and b"GET /api/events" in data:
                    streams.append(upstream)
                if answers and streams and upstream == streams[0]:
                    continue  # the first stream's answer is lost on the way
                dst.sendall(data)

    with _page_through(browser, hub, pump) as (page, errors):
        page.wait_for_function(
            "document.getElementById('captured').textContent === '3 / 10'", timeout=9000
        )
        assert page.text_content("#link") == "live"
        assert len(streams) == 2
        assert errors == []


def test_a_hot_folder_s_page_shows_no_rail(browser, frames, tmp_path):
    """A watch has no rail: its page showed "Rail –" and a Position column of dashes."""
    out = io.StringIO()
    with serve_watch_preview(True, "127.0.0.1", 0, tmp_path, out=out) as feed:
        stacker = Stacker(preview_size=400)
        for i, (image, _) in enumerate(frames[:2]):
            record = stacker.add(image, name=f"IMG_{i}.jpg")
            feed.on_frame(MergedFrame(tmp_path / f"IMG_{i}.jpg", image, record, stacker, i))
            feed.on_status(WatchStatus(folder=tmp_path, state="waiting", seen=i + 1))
        page, errors = phone_page(browser)
        page.goto(out.getvalue().split("Live preview: ")[1].strip())
        page.wait_for_selector("#frames tbody tr:nth-child(2)")
        assert page.inner_text("#captured") == "2"
        assert page.locator("#position").is_hidden()
        assert page.locator("#frames th", has_text="Position").is_hidden()
        assert page.locator("#frames tbody tr").first.inner_text().split("\t")[:2] == [
            "1",
            "IMG_0.jpg",
        ]
        assert page.locator("#frames tbody td.rail").first.is_hidden()
        assert errors == []


def test_a_crop_the_rig_cannot_answer_is_said_in_words(browser, frames):
    """A tap on the composite while the rig was out of reach said "No crop: Failed to fetch",
    and behind a proxy answering with its own error page "No crop: Unexpected token '<' ... is
    not valid JSON"."""
    hub = PreviewHub(title="crop")
    hub.set_images(composite=encode_jpeg(frames[0][0]))
    with PreviewServer(hub) as server:
        page, errors = phone_page(browser)
        page.goto(server.url)
        page.wait_for_selector("#composite:not([hidden])")
        page.route("**/api/crop*", lambda route: route.abort("connectionrefused"))
        page.click("#composite")
        page.wait_for_selector("#crop-panel[data-loading='error']")
        assert page.text_content("#crop-error") == (
            "No crop: the rig does not answer: check that it runs and that this device reaches it"
        )
        page.unroute("**/api/crop*")
        page.route(
            "**/api/crop*",
            lambda route: route.fulfill(
                status=502, content_type="text/html", body="<html><body>Bad Gateway</body></html>"
            ),
        )
        page.click("#crop-close")
        page.click("#composite")
        page.wait_for_selector("#crop-panel[data-loading='error']")
        assert page.text_content("#crop-error") == "No crop: Bad Gateway"
        assert errors == []


def _open_with_composites_routed(page, url: str, route) -> None:
    """Open the page at ``url``, its composite's loads handed to ``route`` (the network's
    part), once it is live and has the state."""
    page.route("**/img/composite.jpg*", route)
    page.goto(url)
    page.wait_for_selector("#link[data-live='true']")
    page.wait_for_function("() => document.body.dataset.version !== undefined")


def test_a_picture_whose_load_failed_is_loaded_again_and_only_the_newest_is_fetched(browser):
    """A load that failed (a Wi-Fi blip while a frame landed) was never tried again: the
    composite stayed old under a page that said "live", for good after the last frame. And a
    slow phone fetched every version in turn, falling further behind with each frame."""
    hub = PreviewHub()
    hub.reset(title="blip")
    hub.set_images(composite=encode_jpeg(np.full((30, 40, 3), 10, np.uint8)))
    page, errors = phone_page(browser)
    fetched: list[str] = []
    failing, held, pending = [True], [False], []

    def route(r) -> None:
        fetched.append(r.request.url)
        if failing[0]:
            r.abort()
        elif held[0]:  # a slow link: answered only once let go
            pending.append(r)
        else:
            r.continue_()

    with PreviewServer(hub) as server:
        _open_with_composites_routed(page, server.url, route)
        failing[0] = False  # the link is back; no new frame comes to ask again
        page.wait_for_function("() => document.getElementById('composite').naturalWidth === 40")
        assert page.is_visible("#composite")

        held[0] = True
        fetched.clear()
        for value in range(20, 120, 20):  # five versions while the first is still loading
            hub.set_images(composite=encode_jpeg(np.full((32, 48, 3), value, np.uint8)))
            page.wait_for_function("v => document.body.dataset.version === v", arg=str(hub.version))
        held[0] = False
        for r in pending:
            r.continue_()
        last = str(hub.image("composite")[1])  # type: ignore[index]
        page.wait_for_function(
            "v => document.getElementById('composite').dataset.version === v", arg=last
        )
    assert len(fetched) == 2, fetched  # the one in flight, then the newest
    assert errors == []


def test_a_picture_whose_load_never_ends_is_given_up_when_the_phone_wakes(browser):
    """A picture's request lost with the Wi-Fi (no answer, no close) held that picture for good:
    a new stream, a wake, new versions, nothing loaded it again until the page was reloaded.
    Woken, the page gives up what it was waiting for and asks again."""
    hub = PreviewHub()
    hub.reset(title="lost picture")
    hub.set_images(composite=encode_jpeg(np.full((30, 40, 3), 10, np.uint8)))
    page, errors = phone_page(browser)
    held: list = []

    def route(r) -> None:
        if not held:
            held.append(r)  # never answered: lost on the way
        else:
            r.continue_()

    with PreviewServer(hub) as server:
        _open_with_composites_routed(page, server.url, route)
        hub.set_images(composite=encode_jpeg(np.full((32, 48, 3), 60, np.uint8)))
        page.wait_for_function("v => document.body.dataset.version === v", arg=str(hub.version))
        page.wait_for_timeout(500)
        assert len(held) == 1 and page.evaluate("document.getElementById('composite').hidden")
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # woken
        page.wait_for_function(
            "() => document.getElementById('composite').naturalWidth === 48", timeout=10_000
        )
    assert errors == []


def test_the_page_works_behind_a_proxy_under_a_path_of_its_own(browser):
    """nginx's ``location /stackrig/ { proxy_pass http://127.0.0.1:8000/; }``: every address
    the page used started at the root, so its scripts, styles, login, stream and pictures were
    asked of the proxy's own site, 404, and the page stood at "connecting…". The relay here
    strips the prefix from each request, as such a proxy does."""
    hub = PreviewHub(title="prefixed")
    hub.update_progress(state="running", captured=2, total=5)
    hub.set_images(composite=encode_jpeg(np.full((30, 40, 3), 90, np.uint8)))
    asked: list[bytes] = []

    def pump(src, dst, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                request = None if answers else re.match(rb"([A-Z]+) (/\S*)", data)
                if request is not None:  # a request's first line (not a body sent after it)
                    asked.append(request[0])
                    if not request[2].startswith(b"/stackrig/"):
                        dst.close()  # not the proxy's to pass on: its own site has no such page
                        return
                    data = request[1] + b" /" + data[request.end(1) + len(b" /stackrig/") :]
                dst.sendall(data)

    app = create_app(hub, token_extension("prefix-token-0123"))
    with PreviewServer(hub, app=app) as server, relay(server.port, pump) as via:
        page, errors = phone_page(browser)
        page.goto(via + "stackrig/#token=prefix-token-0123")
        page.wait_for_selector("#link[data-live='true']", timeout=15_000)
        page.wait_for_function("document.getElementById('captured').textContent === '2 / 5'")
        page.wait_for_function("() => document.getElementById('composite').naturalWidth === 40")
    assert asked and all(b" /stackrig/" in line for line in asked), asked
    assert errors == []


def test_a_hidden_page_lets_its_stream_go_and_takes_it_up_when_shown(browser):
    """A browser keeps six connections to one address, and each open tab held its event
    stream: a seventh tab of the page never loaded. Hidden, a page closes its stream; shown
    again, it opens one, which brings the whole state."""
    hub = PreviewHub(title="tabs")
    hub.update_progress(state="running", captured=1, total=10)
    with PreviewServer(hub) as server:
        page, errors = phone_page(browser)
        page.goto(server.url)
        page.wait_for_selector("#link[data-live='true']")
        page.evaluate(SET_VISIBILITY, True)
        assert page.evaluate("source.readyState") == 2  # closed
        hub.update_progress(captured=4)
        page.wait_for_timeout(500)
        assert page.text_content("#captured") == "1 / 10"  # nothing heard while hidden
        page.evaluate(SET_VISIBILITY, False)
        page.wait_for_function("document.getElementById('captured').textContent === '4 / 10'")
        assert page.text_content("#link") == "live"
    assert errors == []


def test_a_stream_opened_again_says_live_at_once(browser):
    """A stream cut and opened again by the browser said "reconnecting…" until the next ping,
    15 s later: with nothing new since, the server sends nothing when it opens."""
    import socket

    hub = PreviewHub(title="again")
    hub.update_progress(state="running", captured=3, total=10)
    first: list[socket.socket] = []

    def pump(src, dst, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not answers and b"GET /api/events" in data and not first:
                    first.append(src)
                dst.sendall(data)

    with _page_through(browser, hub, pump) as (page, errors):
        page.wait_for_function("document.getElementById('captured').textContent === '3 / 10'")
        page.wait_for_selector("#link[data-live='true']")
        first[0].shutdown(socket.SHUT_RDWR)
        page.wait_for_selector("#link[data-live='false']", timeout=5000)
        page.wait_for_selector("#link[data-live='true']", timeout=9000)
        assert errors == []
