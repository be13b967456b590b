"""The preview server over real loopback HTTP: state, images, server-sent events, crops."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest

from stacker.preview import PreviewHub, PreviewServer, PreviewServerError
from stacker.preview.hub import CropResult
from stacker.preview.publisher import encode_jpeg
from stacker.preview.server import (
    MALFORMED,
    MAX_CONNECTIONS,
    REFUSALS,
    EventStreams,
    create_app,
)
from tests.crops import crop_owner
from tests.resources import fd_count


@pytest.fixture
def hub() -> PreviewHub:
    return PreviewHub(title="test stack")


@pytest.fixture
def server(hub: PreviewHub) -> Iterator[PreviewServer]:
    with PreviewServer(hub) as srv:
        yield srv


@pytest.fixture
def client(server: PreviewServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as c:
        yield c


def _jpeg(value: int, w: int = 64, h: int = 48) -> tuple[bytes, int, int]:
    return encode_jpeg(np.full((h, w, 3), value, np.uint8))


def _events(response: httpx.Response) -> Iterator[dict]:
    """Parse an SSE byte stream into ``{"id", "event", "data"}`` dicts (comments skipped)."""
    message: dict = {}
    for line in response.iter_lines():
        if line == "":
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(": ")
            message[key] = value


def test_the_server_binds_loopback_on_a_free_port_and_serves_the_page(server, client):
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="viewport"' in page.text and "static/app.js" in page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "css")):
        r = client.get(asset)
        assert r.status_code == 200 and kind in r.headers["content-type"]
        # Asked about again before each use: a phone kept a script from before an upgrade.
        assert r.headers["cache-control"] == "no-cache"
        again = client.get(asset, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_a_port_out_of_range_is_refused_not_wrapped(hub: PreviewHub, port: int) -> None:
    """The resolver takes a port modulo 65536: 70000 listened on 4464."""
    with pytest.raises(PreviewServerError, match=f"^port {port}: use 1 to 65535"):
        PreviewServer(hub, port=port).start()


def test_state_reports_progress_frames_and_image_versions(hub, client):
    hub.update_progress(state="running", total=5, captured=2, position_um=150.0)
    hub.update_frame(0, name="a.jpg", position_um=0.0, merged=True, score=0.99)
    hub.update_frame(1, name="b.jpg", merged=False, reason="alignment failed", score=0.2)
    v = hub.set_images(composite=_jpeg(10))
    state = client.get("/api/state").json()
    assert state["progress"]["captured"] == 2 and state["progress"]["total"] == 5
    assert state["progress"]["position_um"] == 150.0
    assert state["images"]["composite"]["version"] == v
    assert [(f["index"], f["merged"]) for f in state["frames"]] == [(0, True), (1, False)]
    assert state["frames"][1]["reason"] == "alignment failed"
    assert client.get("/api/state", params={"since": v}).json()["frames"] == []
    bad = client.get("/api/state", params={"since": "soon"})
    assert bad.status_code == 400 and "'since' must be a whole number" in bad.json()["error"]


def test_a_frame_named_by_bytes_that_are_not_utf8_keeps_the_state_served(hub, client):
    """A hot folder's file may be named by any bytes: its row held a lone surrogate, which
    UTF-8 cannot encode, and from then on every request for the state answered 500 with a
    traceback (attack_hotfolder.py --preview). The state is ASCII JSON, as its events are."""
    name = os.fsdecode(b"frame_\xff\xfe.jpg")
    hub.update_frame(0, name=name, merged=True)
    r = client.get("/api/state")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["frames"][0]["name"] == name
    assert r.content.isascii()


def test_images_are_the_producers_bytes_and_absent_ones_are_404(hub, client):
    assert client.get("/img/composite.jpg").status_code == 404
    assert client.get("/img/secret.jpg").status_code == 404
    jpeg = _jpeg(200)
    hub.set_images(composite=jpeg, depth=_jpeg(30))
    r = client.get("/img/composite.jpg", params={"v": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == jpeg[0]
    assert r.headers["cache-control"] == "no-store"
    img = cv2.imdecode(np.frombuffer(client.get("/img/depth.jpg").content, np.uint8), 1)
    assert img.shape == (48, 64, 3) and abs(int(img.mean()) - 30) <= 2
    assert client.get("/img/last.jpg").status_code == 404


@pytest.mark.slow
def test_events_deliver_the_state_then_a_message_after_each_update(hub, server):
    hub.update_frame(0, name="first")
    with (
        httpx.Client(timeout=5) as c,
        c.stream("GET", server.url + "api/events") as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
        first = next(events)
        assert first["event"] == "state"
        state = json.loads(first["data"])
        assert state["frames"][0]["name"] == "first"
        assert first["id"] == f"{hub.run}.{state['version']}"

        threading.Timer(0.1, lambda: hub.update_frame(1, name="second", merged=True)).start()
        second = json.loads(next(events)["data"])
        # Only the row that changed since the last message travels.
        assert [f["name"] for f in second["frames"]] == ["second"]
        assert second["version"] > state["version"]

        threading.Timer(0.1, lambda: hub.set_images(composite=_jpeg(1))).start()
        third = json.loads(next(events)["data"])
        assert third["images"]["composite"]["version"] == third["version"]


def test_a_quiet_stream_pings_with_its_interval(hub):
    """A page knows its stream is alive only by hearing from it (SSE comments do not reach its
    script): a stream with no news sends a ``ping`` event naming how often it will."""
    with (
        PreviewServer(hub, app=create_app(hub, ping_s=0.3)) as srv,
        httpx.Client(timeout=5) as c,
        c.stream("GET", srv.url + "api/events") as r,
    ):
        events = _events(r)
        assert next(events)["event"] == "state"
        t0 = time.monotonic()
        pings = [next(events), next(events)]
        assert time.monotonic() - t0 >= 0.55  # two quiet spells of 0.3 s
    assert [(m["event"], json.loads(m["data"])) for m in pings] == [("ping", {"every_s": 0.3})] * 2
    assert all("id" not in m for m in pings)  # a reconnection still resumes from the last state


def test_a_reconnecting_client_gets_only_what_it_missed(hub, server):
    hub.update_frame(0, name="seen")
    seen = hub.update_frame(1, name="seen too")
    hub.update_frame(2, name="missed")
    with (
        httpx.Client(timeout=5) as c,
        c.stream(
            "GET", server.url + "api/events", headers={"Last-Event-ID": f"{hub.run}.{seen}"}
        ) as r,
    ):
        state = json.loads(next(_events(r))["data"])
    assert [f["name"] for f in state["frames"]] == ["missed"]


def test_a_page_left_open_across_a_restart_gets_the_new_run_whole() -> None:
    """A phone asleep while the station restarted (a power cut) reconnects with the last id of
    the old run. Versions and epochs start afresh in each run, so the new run's numbers were
    taken for the old one's: the page got only the rows changed after that version, and kept
    the old stack's other rows (same epoch) beside them."""
    before = PreviewHub()
    before.reset(title="yesterday")
    for i in range(3):
        before.update_frame(i, name=f"yesterday-{i}")
    with (
        PreviewServer(before) as srv,
        httpx.Client(timeout=5) as c,
        c.stream("GET", srv.url + "api/events") as r,
    ):
        last_id = next(_events(r))["id"]
    after = PreviewHub()
    after.reset(title="today")
    for i in range(5):
        after.update_frame(i, name=f"today-{i}")
        after.update_progress(captured=i + 1)
    with (
        PreviewServer(after) as srv,
        httpx.Client(timeout=5) as c,
        c.stream("GET", srv.url + "api/events", headers={"Last-Event-ID": last_id}) as r,
    ):
        message = next(_events(r))
    state = json.loads(message["data"])
    assert [f["name"] for f in state["frames"]] == [f"today-{i}" for i in range(5)]
    assert state["epoch"] == 1 and state["run"] == after.run != before.run  # a new table
    assert message["id"] == f"{after.run}.{state['version']}"


def test_stop_ends_open_event_streams_promptly(hub):
    srv = PreviewServer(hub)
    srv.graceful_shutdown_s = 30  # a stream left to the graceful timeout would take this long
    srv.start()
    opened = threading.Event()
    ended = threading.Event()

    def listen() -> None:
        with httpx.Client(timeout=10) as c, c.stream("GET", srv.url + "api/events") as r:
            opened.set()
            for _ in r.iter_lines():
                pass
        ended.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert opened.wait(5)
    t0 = time.monotonic()
    srv.stop(timeout=30)  # not forced after the default 5 s either
    assert ended.wait(30)
    listener.join()
    assert time.monotonic() - t0 < 10  # ended by the server, not by its graceful timeout
    assert hub.subscriber_count == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url, timeout=1)


def test_a_stream_the_server_ends_first_sends_the_state_it_ended_at(hub):
    """``stacker watch --preview`` marks its run finished and at once stops the server: both
    woke the streams together, they saw the server closing and ended without that last state,
    and every page was left saying "running" (attack_hotfolder.py --preview). A stream ends
    with the state as it stands at the stop, and with nothing more when nothing changed."""
    streams = EventStreams(hub)

    async def follow(change: bool) -> list[str]:
        messages = streams.stream(hub.version)
        first = await anext(messages)
        if change:
            hub.update_progress(state="finished", merged=3)
        streams.close()
        return [first] + [m async for m in messages]

    said = asyncio.run(follow(change=True))
    assert len(said) == 2
    progress = json.loads(said[1].split("data: ", 1)[1])["progress"]
    assert (progress["state"], progress["merged"]) == ("finished", 3)
    streams = EventStreams(hub, ping_s=0.2)
    said = asyncio.run(follow(change=False))
    assert len(said) == 1 and said[0].startswith("event: ping")


def test_stop_cuts_a_client_that_reads_nothing_without_a_traceback(hub, caplog):
    """A client that asks for an image and reads none of it (a stalled phone, a script) held
    the stop for uvicorn's whole graceful timeout, whose end cancelled its request with
    "Exception in ASGI application" and a traceback on the watch's terminal
    (attack_hotfolder.py --preview). It now has a moment to take its answer, then is cut."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    hub.set_images(composite=(b"\xff\xd8" + bytes(16 << 20), 4000, 3000))  # never decoded
    srv = PreviewServer(hub)
    srv.graceful_shutdown_s = 30  # what a stuck connection was given
    srv.start()
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", srv.port))
        reader.sendall(b"GET /img/composite.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reader.settimeout(10)
        assert reader.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"  # the answer is on its way
        t0 = time.monotonic()
        srv.stop(timeout=30)
        assert time.monotonic() - t0 < 10  # cut, not left to the graceful timeout
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_event_streams_of_clients_that_go_away_are_let_go(hub, server):
    """Phones that sleep or close the page drop their event streams, with or without a
    goodbye (a reset): each stream's subscription and connection is given back at once."""
    fds = fd_count()
    for linger in (False, True) * 5:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"event: state" not in data:
            data += s.recv(65536)
        if linger:  # close with a reset, as a phone whose Wi-Fi went away does when it wakes
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    hub.update_progress(captured=1)  # a change after they left
    deadline = time.monotonic() + 5
    while hub.subscriber_count or fd_count() != fds:
        assert time.monotonic() < deadline, (hub.subscriber_count, fd_count(), fds)
        time.sleep(0.05)


def test_a_taken_port_is_a_one_line_user_error(hub):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(PreviewServerError, match=f"127.0.0.1:{port}.*choose another --port"):
            PreviewServer(hub, port=port).start()


def test_an_address_of_another_machine_names_the_host_option(hub):
    """192.0.2.1 (TEST-NET-1) is no address of this machine: the port is not at fault."""
    with pytest.raises(PreviewServerError, match=r"192\.0\.2\.1:8765: .*for --host"):
        PreviewServer(hub, host="192.0.2.1", port=8765).start()


def test_crop_returns_both_100_percent_crops_from_the_owner_thread(hub, client):
    assert client.get("/api/crop", params={"x": 0.5, "y": 0.5}).status_code == 503
    # A 400x300 "composite" with a gradient; the worker thread owns it, as a stacker would.
    yy, xx = np.mgrid[0:300, 0:400]
    composite = np.dstack([xx % 256, yy % 256, np.zeros_like(xx)]).astype(np.uint8)
    ran_on: list[threading.Thread] = []

    def provider(fx: float, fy: float, size: int) -> CropResult:
        ran_on.append(threading.current_thread())
        x, y = int(fx * 400) - size // 2, int(fy * 300) - size // 2
        c = composite[y : y + size, x : x + size]
        last = 255 - c  # the "last frame" is the composite's negative
        return CropResult(
            encode_jpeg(c, 95)[0], encode_jpeg(last, 95)[0], x, y, size, size, 400, 300
        )

    with crop_owner(hub, provider) as owner:
        r = client.get("/api/crop", params={"x": 0.5, "y": 0.5, "size": 64})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["x"], body["y"], body["width"], body["height"]) == (168, 118, 64, 64)
    assert (body["frame_width"], body["frame_height"]) == (400, 300)
    decoded = []
    for key in ("composite", "last"):
        head, _, data = body[key].partition(",")
        assert head == "data:image/jpeg;base64"
        decoded.append(cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), 1))
    want = composite[118:182, 168:232].astype(int)
    assert np.abs(decoded[0].astype(int) - want).mean() < 3
    assert np.abs(decoded[1].astype(int) - (255 - want)).mean() < 3
    assert ran_on == [owner]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"y": 0.5}, "'x' is required"),
        ({"x": "left", "y": 0.5}, "'x' must be a number"),
        ({"x": 1.5, "y": 0.5}, "'x' must be between 0 and 1"),
        ({"x": 0.5, "y": 0.5, "size": 4}, "'size' must be between 16 and 2048"),
    ],
)
def test_bad_crop_parameters_are_refused_with_a_reason(client, params, message):
    r = client.get("/api/crop", params=params)
    assert r.status_code == 400 and message in r.json()["error"]


def test_requests_past_the_connection_limit_are_refused_with_one_line_a_minute(
    server, caplog, monkeypatch
):
    """Each request uvicorn refuses past MAX_CONNECTIONS was a log line of its own, scrolling
    the watch's terminal: now one line, then at most one a minute, counting what it held back."""
    monkeypatch.setattr(REFUSALS, "_next_at", 0.0)
    monkeypatch.setattr(REFUSALS, "_count", 0)
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    streams: list[socket.socket] = []

    def ask() -> bytes:  # pages on many phones: a few from each address
        phone = f"127.0.1.{len(streams) // 8 + 1}"
        streams.append(socket.create_connection(("127.0.0.1", server.port), None, (phone, 0)))
        streams[-1].sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        streams[-1].settimeout(10)
        return streams[-1].recv(64)

    try:
        answers = [ask() for _ in range(MAX_CONNECTIONS + 30)]
        busy = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
        assert busy == 31  # uvicorn counts the asking connection among those open
        assert sum(a.startswith(b"HTTP/1.1 200") for a in answers) == MAX_CONNECTIONS - 1
        said = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
        assert said == [
            f"preview: more than {MAX_CONNECTIONS} connections at once; 1 request(s) answered "
            "503 (busy), close some preview pages"
        ]
        monkeypatch.setattr(REFUSALS, "_next_at", 0.0)  # a minute later
        assert ask().startswith(b"HTTP/1.1 503")
        said = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
        assert len(said) == 2 and "; 31 request(s) answered 503" in said[1]
    finally:
        for s in streams:
            s.close()


def test_requests_that_break_http_are_one_line_a_minute(server, caplog, monkeypatch) -> None:
    """uvicorn logged "Invalid HTTP request received." for every request h11 cannot parse (a
    Host header twice, a length that is no number): a scanner on the network wrote a line per
    request into the terminal. Now one line, then at most one a minute, with the count."""
    monkeypatch.setattr(MALFORMED, "_next_at", 0.0)
    monkeypatch.setattr(MALFORMED, "_count", 0)
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    bad = [
        b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /api/state HTTP/1.1\r\n\r\n",
    ]

    def send(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(request)
            s.settimeout(10)
            return s.recv(64)

    for request in bad * 3:
        assert send(request).startswith(b"HTTP/1.1 400")
    said = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert len(said) == 1 and said[0].startswith("preview: 1 request(s) that break HTTP"), said
    monkeypatch.setattr(MALFORMED, "_next_at", 0.0)  # a minute later
    assert send(bad[0]).startswith(b"HTTP/1.1 400")
    said = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert len(said) == 2 and said[1].startswith("preview: 9 request(s)"), said


@pytest.mark.parametrize(
    ("host", "local"),
    [
        pytest.param(
            "127.0.1.1", True,
            marks=pytest.mark.skipif(sys.platform != "linux", reason="127.0.1.1 is Linux's"),
        ),
        ("localhost", True),
        ("0.0.0.0", False),
    ],
)  # fmt: skip
def test_a_server_knows_when_only_this_machine_reaches_it(hub: PreviewHub, host, local) -> None:
    """Raspberry Pi OS gives the machine's own name 127.0.1.1 in /etc/hosts: ``--host
    raspberrypi`` listened on loopback alone while the station printed an address that looked
    reachable, and no note, which was kept for the literal names of loopback."""
    with PreviewServer(hub, host, 0) as server:
        assert server.local_only is local


def test_without_a_default_route_the_address_shown_is_an_interface_s(monkeypatch) -> None:
    """A Pi serving its own Wi-Fi hotspot in the field has no default route: the address
    printed for the phone was the machine's bare name, which a phone cannot resolve."""
    from stacker.preview import server as preview_server

    found = preview_server._interface_addresses()
    assert all(not a.startswith(("127.", "169.254.")) for a in found)
    monkeypatch.setattr(preview_server, "_routed_address", lambda: None)
    monkeypatch.setattr(preview_server, "_interface_addresses", lambda: ["10.42.0.1"])
    assert preview_server._lan_address() == "10.42.0.1"
    monkeypatch.setattr(preview_server, "_interface_addresses", lambda: [])
    assert preview_server._lan_address() == socket.gethostname()


def test_connections_refused_for_want_of_descriptors_are_told_once_in_one_line() -> None:
    """asyncio logs each connection it cannot accept for want of descriptors with a whole
    traceback: 60 of them on a session's terminal with 20 page clients under ``ulimit -n 32``.
    The live page's server says it once, in one line."""
    import errno
    import io
    import logging

    from stacker.preview.server import SHORTAGE_SAID_ONCE

    SHORTAGE_SAID_ONCE.said = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(handler)
    try:
        for _ in range(3):
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError:
                asyncio_log.error("socket.accept() out of system resource", exc_info=True)
        asyncio_log.error("something else")
    finally:
        asyncio_log.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "the live page takes no more connections for now (Too many open files); raise the "
        "limit of open files (ulimit -n 4096)",
        "something else",
    ]
