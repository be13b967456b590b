"""The station's JSON API answers arbitrary bodies with a result or a one-line error (400, 409,
404), never a 500 or a traceback: Hypothesis against a real server on the simulated rig."""

from __future__ import annotations

import json
import logging
import math
import socket
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.plan import ShotPlan
from stacker.preview import PreviewServer
from tests.stations import TOKEN, folder_entries

UNITS = ["um", "mm", "m", "cm", "steps", "", " mm", "µm", "km", "e"]
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e-320, 1e-300, 1e300, 1e308, 5e-324, 3.5, -1, 10**20]),
    st.integers(min_value=-(10**25), max_value=10**25),
)
lengths = st.builds(lambda x, u: f"{x!r}{u}", numbers, st.sampled_from(UNITS))
values = st.one_of(
    st.none(), st.booleans(), numbers, lengths, st.text(max_size=12),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers()),
)  # fmt: skip
SPACING = ["step", "frames", "magnification", "f_number", "na", "settle"]
plans = st.fixed_dictionaries(
    {
        "from": st.one_of(st.sampled_from(["0mm", "0um"]), values),
        "to": st.one_of(st.sampled_from(["1mm", "300um"]), values),
    },
    optional={k: values for k in SPACING},
)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _answered(r: httpx.Response) -> dict:
    assert r.status_code < 500, (r.status_code, r.text)
    data = r.json()
    if r.status_code >= 400:
        assert isinstance(data["error"], str) and data["error"].strip()
        assert "\n" not in data["error"] and "Traceback" not in data["error"]
    return data


@pytest.mark.slow
@FUZZ
@given(body=plans)
def test_any_plan_request_is_a_plan_or_a_one_line_error(client, body) -> None:
    r = client.post("/api/plan", json=body)
    data = _answered(r)
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert 1 <= data["frames"] <= 10_000 and math.isfinite(data["duration_s"])


@pytest.mark.slow
@FUZZ
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "plan": st.one_of(values, plans),
            "name": values,
            "method": st.one_of(values, st.sampled_from(["pyramid", "depthmap", "pmax"])),
            "align": st.one_of(values, st.sampled_from(["similarity", "affine", "none"])),
            "format": st.one_of(values, st.sampled_from(["tif", "png", "jpg", "gif"])),
        },
    )
)
def test_any_session_request_starts_one_or_is_refused_in_one_line(station, client, body):
    r = client.post("/api/sessions", json=body)
    _answered(r)
    assert r.status_code in (201, 400, 409)
    if r.status_code == 201:
        station.stop()
        station.wait(60)


@pytest.mark.slow
@FUZZ
@given(body=st.dictionaries(st.sampled_from(["by", "to", "x"]), values, max_size=2))
def test_any_jog_request_moves_within_the_travel_or_is_refused(station, client, body) -> None:
    lo, hi = station.limits
    r = client.post("/api/jog", json={k: v for k, v in body.items() if k != "x"} or body)
    data = _answered(r)
    if r.status_code == 200:
        assert lo <= data["position"] <= hi
    client.post("/api/jog", json={"to": "0mm"})


def test_a_broken_plan_file_leaves_the_station_answering(station, client) -> None:
    """Issue 11 item 8: a hand-edited plan.json with "frames": 3.5 made the station lists 500."""
    folder = station.root / "edited"
    folder.mkdir(parents=True)
    data = ShotPlan.from_frames(0.0, 1000.0, 3).to_dict()
    data["frames"] = 3.5
    (folder / "plan.json").write_text(json.dumps(data))
    for path in ("/api/station", "/api/sessions"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
    r = client.post("/api/sessions/edited/resume", json={})
    assert r.status_code in (400, 404) and "\n" not in r.json()["error"]


def test_absurd_plan_numbers_are_one_line_errors_naming_the_field(client) -> None:
    """Issue 11 item 8: each of these was a 500 with a traceback, or (settle) a session that
    died later."""
    base = {"from": "0mm", "to": "1mm"}
    for extra, needle in (
        ({"step": "1e-320um"}, "step"),
        ({"magnification": 1e-300, "f_number": 8}, "magnification"),
        ({"magnification": 1e300, "f_number": 8}, "magnification"),
        ({"na": 1e-300}, "'na'"),
        ({"frames": 3, "settle": 1e300}, "settle"),
    ):
        r = client.post("/api/plan", json={**base, **extra})
        assert r.status_code == 400, (extra, r.text)
        assert needle in r.json()["error"] and "\n" not in r.json()["error"]


def test_a_plan_is_checked_as_a_sessions_request_holds_it(client) -> None:
    """The README's session request sent to ``/api/plan`` to see its frames first answered
    "unknown plan field(s) 'plan'": the plan inside it is read as ``/api/sessions`` reads it."""
    plan = {"from": "0mm", "to": "2mm", "step": "250um", "settle": "0.2s"}
    bare = client.post("/api/plan", json=plan)
    wrapped = client.post("/api/plan", json={"plan": plan, "name": "beetle"})
    assert bare.status_code == wrapped.status_code == 200, wrapped.text
    assert wrapped.json() == bare.json() and bare.json()["frames"] == 9
    typo = client.post("/api/plan", json={"plan": plan, "nmae": "beetle"})
    assert typo.status_code == 400 and "unknown field(s) 'nmae'" in typo.json()["error"]


def test_deeply_nested_json_is_a_one_line_error_not_a_500(server, client) -> None:
    """64 KiB of ``[`` exhausted the JSON parser's recursion limit: a 500 with a traceback on the
    station's terminal, from ``/api/login`` even without the token."""
    body = b"[" * 60_000
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=10) as anonymous:
        r = anonymous.post("/api/login", content=body, headers=headers)
    assert r.status_code == 403, r.text
    for path in ("/api/jog", "/api/plan", "/api/sessions", "/api/camera/settings"):
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 400, (path, r.text)
        assert "not valid JSON" in _answered(r)["error"]


@pytest.mark.slow
def test_unknown_method_or_align_is_refused_before_a_session_starts(station, client) -> None:
    """Issue 11 item 13: an unknown method or align was a 201 and a fault later."""
    plan = {"from": "0mm", "to": "1mm", "frames": 3, "settle": 0.01}
    for field in ("method", "align"):
        r = client.post("/api/sessions", json={"plan": plan, "name": f"bad-{field}", field: "x"})
        assert r.status_code == 400, r.text
        assert field in r.json()["error"]
    assert folder_entries(station) == []


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the server logged carries a traceback (uvicorn's "Exception in ASGI application")."""
    logged = [r.getMessage() for r in caplog.records if r.exc_info or "Exception" in r.getMessage()]
    assert logged == []


def test_a_malformed_origin_is_refused_without_a_traceback(server, client, caplog) -> None:
    """An ``Origin`` with an unclosed IPv6 bracket made the request guard's URL parser raise:
    a 500 with a traceback, even without the token."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    for origin in ("http://[::1", "http://["):
        with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as anonymous:
            r = anonymous.post("/api/login", json={"token": TOKEN}, headers={"Origin": origin})
        assert r.status_code == 403 and origin in _answered(r)["error"], r.text
        r = client.post("/api/jog", json={"by": "1um"}, headers={"Origin": origin})
        assert r.status_code == 403 and origin in _answered(r)["error"], r.text
    _no_tracebacks(caplog)


def test_a_proxy_that_passes_a_host_of_its_own_is_told_how_to_pass_the_browser_s(
    server, client
) -> None:
    """nginx's default sends ``Host: 127.0.0.1:PORT``, which the page's Origin does not match:
    every login was refused with a line that said neither why nor what to change."""
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as anonymous:
        r = anonymous.post(
            "/api/login",
            json={"token": TOKEN},
            headers={"Origin": "http://192.0.2.2:8081", "Host": "127.0.0.1:8801"},
        )
    error = _answered(r)["error"]
    assert r.status_code == 403 and "addressed to '127.0.0.1:8801'" in error, error
    assert "proxy_set_header Host $http_host" in error


def test_an_event_id_with_a_non_ascii_digit_gets_the_whole_state(station, client, caplog):
    """A ``Last-Event-ID`` of this run ending in a Latin-1 superscript two (a digit to
    ``str.isdigit``, not to ``int``) was a 500 with a traceback."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    last_id = f"{station.hub.run}.".encode() + b"\xb2"
    with client.stream("GET", "/api/events", headers={"Last-Event-ID": last_id}) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()).startswith("id: ")
    _no_tracebacks(caplog)


def _exchange(server: PreviewServer, raw: bytes, *, half_close: bool = False) -> bytes:
    """Send ``raw`` on a connection of its own and read until the server closes it; then wait
    until the server has finished every request it received (its log is then complete)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(raw)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    _settled(server)
    return answer


def _settled(server: PreviewServer) -> None:
    """Wait until the server has finished every request it received."""
    assert server._server is not None
    state = server._server.server_state
    deadline = time.monotonic() + 5
    while state.tasks and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_client_leaving_mid_body_leaves_no_traceback(server, caplog) -> None:
    """A client that went away before its JSON body was complete (a phone losing Wi-Fi) made
    Starlette's ``request.body()`` raise ``ClientDisconnect``, which nothing answered: a
    traceback on the station's terminal for each such request."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    for path in ("/api/plan", "/api/jog", "/api/login"):
        raw = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        ).encode()
        _exchange(server, raw, half_close=True)
    _no_tracebacks(caplog)


def test_a_malformed_chunked_body_is_answered_once_without_a_traceback(server, caplog) -> None:
    """uvicorn answers a body whose chunk framing is broken with its own 400, without telling
    the app running for that request: the app's answer (the token gate's 401 at once, or a
    route that never reads the body) then made h11 raise, a traceback on the terminal."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    for request, auth in (
        ("POST /api/plan", ""),
        ("GET /api/station", f"Authorization: Bearer {TOKEN}\r\n"),
    ):
        raw = (
            f"{request} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json"
            "\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n"
        ).encode()
        answer = _exchange(server, raw)
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1") == 1, answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            f"GET /api/station HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n".encode()
        )
        answer = s.recv(65536)
        while b'"formats"' not in answer:  # the whole answer, before the body is complete
            answer += s.recv(65536)
        s.sendall(b"zz\r\n")
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1, answer
    _settled(server)
    _no_tracebacks(caplog)


def test_a_lone_surrogate_in_a_body_is_refused_in_one_line(server, client, caplog) -> None:
    """``"\\ud800"`` is valid JSON but no UTF-8 text: as the login's token it made the token
    comparison raise, without the token; echoed in an error answer it made the answer's
    encoding raise. Each was a 500 with a traceback."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as anonymous:
        for token in ('"\\ud800"', f'"{TOKEN}\\udfff"'):
            r = anonymous.post("/api/login", content=f'{{"token": {token}}}', headers=headers)
            assert r.status_code == 403 and "wrong access token" in _answered(r)["error"]
    body = '{"from": "0mm", "to": "1mm", "step": "100um", "direction": "\\ud800"}'
    r = client.post("/api/plan", content=body, headers=headers)
    assert r.status_code == 400 and "direction" in _answered(r)["error"], r.text
    _no_tracebacks(caplog)


PLAN = {"from": "0mm", "to": "1mm", "frames": 3}
ONE_LINE_BODIES = [
    ("/api/plan", {"from": "0mm", "to": "1mm", "step": "100um", "direction": "a\nb"}, "direction"),
    ("/api/plan", {"from": "1 \n steps", "to": "2 steps", "frames": 3}, "from"),
    ("/api/plan", {"from": "0mm", "to": "1mm", "step": "1 \n steps"}, "step"),
    ("/api/plan", {"from": "0mm", "to": "1mm", "frames": 3, "settle": "5000 \n s"}, "settle"),
    ("/api/sessions", {"plan": PLAN, "method": "a\nb"}, "method"),
    ("/api/sessions", {"plan": PLAN, "reference": "a\nb"}, "reference"),
    ("/api/jog", {"by": "1 \n steps"}, "cannot read '1 \\n steps'"),  # quoted, one line
    ("/api/jog", {"to": "400 \n mm"}, "cannot read '400 \\n mm'"),
    ("/api/sessions/x%0Ay/delete", {"confirm": "no"}, "confirm"),
]  # fmt: skip


def test_the_senders_text_is_quoted_so_every_error_is_one_line(station, client, monkeypatch):
    """A line break in a field (or, percent-encoded, in the path) was written into the error
    unquoted: a message of two lines, which the page and a terminal show as two."""

    def refused(path: str, body: dict, needle: str) -> None:
        r = client.post(path, json=body)
        assert r.status_code in (400, 409), (path, body, r.text)
        assert needle in _answered(r)["error"], (path, body, r.text)

    for case in ONE_LINE_BODIES:
        refused(*case)
    monkeypatch.setattr(station, "_runner", object())  # session "other" shoots
    monkeypatch.setattr(type(station), "running", property(lambda self: "other"))
    refused("/api/sessions/x%0Ay/stop", {}, "is not running")
    with station._lock:  # and another request holds the rig
        refused("/api/camera/settings", {"name": "a\nb", "value": "1"}, "busy")
    r = client.get("/img/x%0Ay.jpg")
    assert r.status_code == 404 and _answered(r), r.text


def test_a_field_the_route_does_not_know_is_refused_before_anything_happens(station, client):
    """A misspelt or unsupported field was ignored without a word: ``"crop": false`` or
    ``"formt": "png"`` started a session with the defaults, ``"speed"`` jogged at the usual
    speed. Each is refused naming the field and what the route takes; nothing moves or starts."""
    start = station.focuser.position
    plan = {"from": "0mm", "to": "0.2mm", "frames": 2, "settle": 0}
    for path, body, field in (
        ("/api/sessions", {"plan": plan, "name": "cropless", "crop": False}, "crop"),
        ("/api/sessions", {"plan": plan, "name": "typo", "formt": "png"}, "formt"),
        ("/api/jog", {"by": "10um", "speed": "1mm/s"}, "speed"),
        ("/api/camera/settings", {"name": "shutter", "value": "0.0100s", "x": 1}, "x"),
        ("/api/sessions/none/delete", {"confirm": "none", "force": True}, "force"),
        ("/api/home", {"axis": "z"}, "axis"),
        ("/api/test-shot", {"count": 3}, "count"),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert f"unknown field(s) '{field}'" in _answered(r)["error"], (path, r.text)
    assert folder_entries(station) == []
    assert station.focuser.position == start


def test_an_error_quoting_a_long_text_of_the_sender_is_cut_short(client) -> None:
    """The sender's text is quoted whole in its error: a 5,000-character session id or a
    10 KB Host header made an error line as long, on the page and in a log. The message keeps
    its start and end, and says how much of the middle is left out."""
    sid = "s" * 5000
    r = client.post(f"/api/sessions/{sid}/delete", json={"confirm": sid})
    message = _answered(r)["error"]
    assert r.status_code in (400, 404) and len(message) < 700, (r.status_code, len(message))
    assert "characters left out" in message
    r = client.get("/api/station", headers={"Host": "h" * 10_000})
    message = _answered(r)["error"]
    assert r.status_code == 421 and len(message) < 700, (r.status_code, len(message))
