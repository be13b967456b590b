"""The station's HTTP surface under mutated and conflicting requests.

Starts its own ``rig station --sim`` (a temporary sessions folder, a fixed token, a free port,
the station's stderr kept in a file beside the folder), shoots one small session through the
API and copies it to a few more, then plants symbolic links out of the sessions folder: a
session that is a link, a session whose ``frames/`` is a link, frames linked to a file and a
folder outside, a composite and depth maps linked out, and ``.test-shot`` linked to another
folder. Then:

- **mutated requests** (``--requests`` of them, ``--seed``, ``--concurrency`` at once), each on
  its own raw socket: JSON bodies of every POST route with mutated fields, values, encodings and
  bytes; transport framing (chunked, wrong or doubled Content-Length, pipelined requests);
  paths (session ids, frame names and kinds with ``..``, ``%2e``, NUL, 5000 characters),
  query strings, methods; Host, Origin, token and cookie headers. A request is a *fault* if it is
  answered 5xx (503 only as a one-line JSON error: the server's "not now"), not at all, or after
  12 s; if a 4xx under ``/api/`` is not a one-line JSON ``{"error": ...}``; if a 2xx comes
  without a valid token (outside the login page and its files) or with a Host that is not
  this machine; if a body holds the marker bytes of the files outside the sessions folder.
  New output in the station's log between batches of 2000 requests is a fault, with that
  batch's requests; uvicorn's ``Invalid HTTP request received.`` (one line for each request
  h11 cannot parse) is instead pinned down by sending one such request of each kind (no Host
  header, two Host headers, a bad Content-Length, a bad chunk, ...) again, alone. Any change
  to the files outside the sessions folder is a fault.
- **race rounds** (``--race-rounds``), from threads released at one barrier: many session
  starts at once with a resume, jog, test shot, camera setting, home and unlock (never two
  sessions); while one runs, every rig-moving request (all 409 while it is still running);
  stop, resume, delete and download of it at once; delete while downloading a finished one.
  Any 5xx or transport error is a fault.

Prints per-route counts, status counts and every fault with the request that triggered it
(truncated); ``--json PATH`` writes the same. Exits 1 if a fault was found.

    python benchmarks/fuzz_station.py --requests 20000 --race-rounds 5
    python benchmarks/fuzz_station.py --requests 2000 --seed 7 --json /tmp/fuzz.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.common import machine, table, write_json  # noqa: E402
from stacker.preview.access import cookie_name  # noqa: E402
from stacker.preview.guard import MAX_ERROR_CHARS  # noqa: E402

TOKEN = "fuzz-token-123456"
MARKER = b"OUTSIDEMARKER"
SECRET = b"SECRET"
BATCH = 2000  # requests between two looks at the station's log
HANG_S = 40.0  # no answer within this is a hang
SLOW_S = 12.0  # an answer after this is too slow
SHOWN = 400  # characters of a request kept in a fault
BASE_PLAN_JSON = {"from": "-3mm", "to": "-2.8mm", "frames": 3, "settle": 0}

# --- the mutations ------------------------------------------------------------------------

VALS = [
    "null", "true", "false", "0", "-0", "1", "-1", "0.5", "3", "1e400", "-1e400", "1e-400",
    "NaN", "Infinity", "-Infinity", "9" * 400, "-" + "9" * 400, "1" + "0" * 20, "1e308",
    '""', '" "', '"\\u0000"', '"\\ud800"', '"a\\nb"', '"1mm\\n"', '"0mm"', '"-2mm"', '"1e400mm"',
    '"nanmm"', '"infmm"', '"-infmm"', '"NaNum"', '"1_000um"', '"0x10mm"', '"\\u0663mm"',
    '"\\u00b2mm"', '"1,5mm"', '"1.5 mm"', '" 1mm "', '"steps"', '"12steps"', '"1e308m"',
    '"' + "9" * 400 + 'mm"', '"' + "a" * 3000 + '"', "[]", "{}", "[1]", '{"a":1}', '["1mm"]',
    "[" * 200 + "]" * 200, '"\\u202e"', '"\\u00e9"', '"x\\ty"', '"\\r\\n"', '"\\"\'<>&"',
    '"5\\nmm"', '"1 \\n steps"', '"1e-400mm"', '"-0mm"', '"0.0000001nm"', '"first"',
    '"middle"', '"last"', '"0"', '"-1"', '"\\u00b2"', '"99999999999"', '"' + "1" * 5000 + '"',
    '"pyramid"', '"depthmap"', '"tif"', '"dng"', '"png"', '"jpg"', '"similarity"', '"none"',
    '"far-to-near"', '"near-to-far"', '"iso"', '"shutter"', '"aperture"', '"format"', '"target"',
    '"0.0100s"', '"1.0000s"', '"f/8"', '"base"', '"s3"', '"../base"', '"."', '".."', '"/tmp"',
    '"0.5s"', '"500ms"', '"1min"', '"1e400s"', '"-1s"', '"3600s"', '"1h"', '"NaN s"',
    '"' + "\\u00ff" * 1000 + '"', '"CON"', '"a/b"', '"a\\\\b"', '"x' + "\\u0001" * 3 + '"',
]  # fmt: skip
"""JSON values as text, so that what ``json.dumps`` cannot write (NaN, 1e400, lone
surrogates, 200-deep arrays) is sent too."""
PLAN_FIELDS = [
    "from", "to", "step", "frames", "magnification", "f_number", "na", "coc", "overlap",
    "direction", "settle", "exposure_delay", "flash_recycle", "return_to_start",
]  # fmt: skip
SESSION_FIELDS = [
    "plan", "name", "method", "align", "reference", "interpolation", "format", "crop", "order",
]  # fmt: skip
FIELDS = {
    "/api/plan": PLAN_FIELDS,
    "/api/jog": ["by", "to"],
    "/api/sessions": SESSION_FIELDS,
    "/api/camera/settings": ["name", "value"],
    "/api/login": ["token"],
    "delete": ["confirm"],
}
BASE_PLAN = {"from": '"-3mm"', "to": '"-2.9mm"', "frames": "2", "settle": "0"}
BASES: dict[str, dict[str, Any]] = {
    "/api/plan": {"from": '"0mm"', "to": '"1mm"', "step": '"100um"'},
    "/api/jog": {"by": '"10um"'},
    "/api/sessions": {"plan": BASE_PLAN, "name": '"fz"'},
    "/api/camera/settings": {"name": '"shutter"', "value": '"0.0100s"'},
    "/api/login": {"token": json.dumps(TOKEN)},
    "delete": {"confirm": '"s5"'},
}
EXTRA_KEYS = ["x", "", "__proto__", "\u0000", "from ", "FROM", "plan", "a" * 300, "\n"]
BARE_ROUTES = ("/api/home", "/api/unlock", "/api/rail/stop", "/api/test-shot", "/api/logout")
BODY_ROUTES = (
    ["/api/plan"] * 5 + ["/api/jog"] * 2 + ["/api/sessions"] * 2
    + ["/api/camera/settings", "/api/login", "delete", *BARE_ROUTES]
)  # fmt: skip
CTYPES = ["application/json"] * 14 + [
    None, "text/plain", "application/json; charset=utf-16", "APPLICATION/JSON",
    "application/jsonx", "application/json;", " application/json ", "multipart/form-data",
    "application/x-www-form-urlencoded", "application/json, text/html",
]  # fmt: skip
NAMES = [
    "frame_0001.jpg", "frame_0009.jpg", "frame_0010.jpg", "..%2fplan.json", "%2e%2e", "..",
    "plan.json", "../../../etc/passwd", "%2Fetc%2Fpasswd", "frame_0001.jpg%00", "FRAME_0001.JPG",
    "frame_0001.jpg%20", "%ff", "a" * 300,
]  # fmt: skip
KINDS = [
    "composite", "depth", "depth-preview", "plan.json", "..", "%2e%2e", "frames.zip",
    "thumbnail", "stop", "resume", "delete", "journal.jsonl", "x" * 300, "%00", "frames",
]  # fmt: skip
STATIC = [
    "../../../etc/passwd", "%2e%2e/%2e%2e/pyproject.toml", "login.js",
    "..%2f..%2f..%2fpreview%2fserver.py", "/etc/passwd", "%00", "x" * 300, ".", "",
]  # fmt: skip
SINCE = [
    "since=", "since=-1", "since=²", "since=%C2%B2", "since=1e400", "since=" + "9" * 5000,
    "since=%00", "since=1&since=2", "since=4611686018427387905", "since=%ff", "since=٣",
]  # fmt: skip
CROP = [
    "", "0", "1", "0.5", "nan", "inf", "-0", "1e400", "%00", "²", "0x1", "%ff", "1" * 5000, "-1",
    "0.99999999999999999",
]  # fmt: skip
OTHER_PATHS = [
    "/api/station", "/api/sessions", "/api/camera/settings", "/", "/favicon.ico", "/api/nope",
    "//api/station", "/api/station/", "/API/STATION", "/api/./station", "/api/%2e/station",
    "/api/station%00", "/api/station?" + "a" * 10000, "/" + "a" * 15000, "/api/sessions/",
    "/api/sessions//frames.zip",
]  # fmt: skip
OTHER_METHODS = ["GET", "HEAD", "OPTIONS", "DELETE", "PUT", "TRACE", "PATCH", "GET"]
OPEN_PATHS = ("/", "/api/login", "/favicon.ico")
"""Answered without a token (with ``/static/``): the login page and what it needs."""


def encode(obj: Any) -> str:
    """A dict of JSON texts as one JSON object's text (the values are written as they are)."""
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + encode(v) for k, v in obj.items()) + "}"
    return obj


class Mutator:
    """Raw HTTP requests, mutated from valid ones; seeded, so a run can be repeated."""

    def __init__(self, seed: int, port: int, run: str, outside: Path) -> None:
        self.rnd = random.Random(seed)
        self.port = port
        self.run = run.encode()
        self.sids = [
            "base", "s1", "s2", "s3", "s4", "evil", "linked", "..", "%2e%2e", "%2E%2E", ".",
            "%2e", "..%2f..%2ftmp", quote(str(outside), safe=""), "base%00", "base%2F..%2F..",
            "a" * 300, "%ff", "%", "%zz", "%C3%A9", ".test-shot", ".station.lock", ".deleting-x",
            "base%0A", "base%20", "BASE", "base.", "nope", "fz", "stack-1", "%5c..%5c..", "...",
            "base%2f", "~", "%7e", "a" * 5000,
        ]  # fmt: skip

    def _plan_object(self) -> dict[str, Any]:
        rnd = self.rnd
        sub = dict(BASE_PLAN)
        for _ in range(rnd.choice([1, 2, 3])):
            key = rnd.choice(PLAN_FIELDS + EXTRA_KEYS[:3])
            if rnd.random() < 0.15:
                sub.pop(key, None)
            else:
                sub[key] = rnd.choice(VALS)
        return sub

    def json_text(self, route: str) -> str:
        """The route's valid body with one to three fields changed, dropped or added."""
        rnd = self.rnd
        body = dict(BASES[route])
        fields = FIELDS[route]
        for _ in range(rnd.choice([1, 1, 1, 2, 3])):
            op = rnd.random()
            if op < 0.55:
                key = rnd.choice(fields)
                if key == "plan" and rnd.random() < 0.6:
                    body[key] = self._plan_object()
                else:
                    body[key] = rnd.choice(VALS)
            elif op < 0.7:
                if body:
                    body.pop(rnd.choice(list(body)))
            elif op < 0.8:
                body[rnd.choice(EXTRA_KEYS)] = rnd.choice(VALS)
            else:
                body[rnd.choice(fields)] = rnd.choice(VALS)
        return encode(body)

    def body(self, route: str) -> bytes:
        """A body for a JSON route: mutated JSON, maybe cut, flipped, padded or re-encoded."""
        rnd = self.rnd
        if 0.7 <= rnd.random() < 0.8:
            text = rnd.choice(
                [*VALS, "", " ", "\n", "[{}]", '{"a":', "{", '{"by":"1mm","by":"2mm"}']
            )
        else:
            text = self.json_text(route)
        data = text.encode("utf-8", "surrogatepass")
        r = rnd.random()
        if r < 0.06:  # cut short
            data = data[: rnd.randrange(len(data) + 1)]
        elif r < 0.12 and data:  # one byte changed
            i = rnd.randrange(len(data))
            data = data[:i] + bytes([rnd.randrange(256)]) + data[i + 1 :]
        elif r < 0.16:  # a few bytes inserted
            i = rnd.randrange(len(data) + 1)
            junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 6)))
            data = data[:i] + junk + data[i:]
        elif r < 0.18:
            data = b"\xef\xbb\xbf" + data
        elif r < 0.20:
            data = text.encode("utf-16", "surrogatepass")
        elif r < 0.21:
            data = text.encode("utf-32", "surrogatepass")
        elif r < 0.22:
            data = b"\xff\xfe\xfd" + data
        elif r < 0.23:
            data = b" " * 70000 + data  # over the body limit
        return data

    def path(self) -> tuple[str, str]:
        """(path with query, method) for a request that is mostly its path."""
        rnd = self.rnd
        r = rnd.random()
        sid = rnd.choice(self.sids)
        if r < 0.08 or r >= 0.95:
            return f"/api/sessions/{sid}/{rnd.choice(['stop', 'resume', 'delete'])}", "POST"
        if r < 0.25:
            return f"/api/sessions/{sid}/{rnd.choice(KINDS)}", "GET"
        if r < 0.4:
            return f"/api/sessions/{sid}/frames/{rnd.choice(NAMES)}", "GET"
        if r < 0.5:
            return f"/api/sessions/{sid}/frames.zip", "GET"
        if r < 0.6:
            return f"/api/sessions/{sid}/thumbnail", "GET"
        if r < 0.65:
            return f"/static/{rnd.choice(STATIC)}", "GET"
        if r < 0.72:
            return f"/api/state?{rnd.choice(SINCE)}", "GET"
        if r < 0.8:
            sizes = [*CROP, "16", "2048", "2049", "256"]
            q = f"x={rnd.choice(CROP)}&y={rnd.choice(CROP)}&size={rnd.choice(sizes)}"
            if rnd.random() < 0.2:
                q = q.replace("x=", "xx=")
            return f"/api/crop?{q}", "GET"
        if r < 0.85:
            img = rnd.choice(["last", "composite", "depth", "..", "%2e%2e", "x", "last.jpg"])
            return f"/img/{img}.jpg", "GET"
        if r < 0.9:
            peaking = rnd.choice(["1", "0", "", "%00", "yes", "x" * 300])
            return f"/api/liveview?peaking={peaking}", "GET"
        if r < 0.92:
            q = rnd.choice(["", "since=1", "since=-1", "since=%C2%B2", "since=" + "9" * 30])
            return "/api/events?" + q, "GET"
        return rnd.choice(OTHER_PATHS), rnd.choice(OTHER_METHODS)

    def auth(self) -> tuple[list[tuple[str, str | bytes]], bool | None]:
        """Token headers and whether they carry the valid token (None: either answer is right)."""
        if self.rnd.random() < 0.75:
            return [("Authorization", f"Bearer {TOKEN}")], True
        name = cookie_name(self.port)
        cookie = f"{name}={TOKEN}"
        options: list[tuple[list[tuple[str, str | bytes]], bool | None]] = [
            ([], False),
            ([("Authorization", "Bearer ")], False),
            ([("Authorization", "Bearer wrong")], False),
            ([("Authorization", f"bearer {TOKEN}")], True),
            ([("Authorization", f"Bearer  {TOKEN}  ")], True),
            ([("Authorization", f"Basic {TOKEN}")], False),
            ([("Authorization", f"Bearer {TOKEN}x")], False),
            ([("Authorization", f"Bearer {TOKEN[:-1]}")], False),
            ([("Authorization", "Bearer " + "A" * 15000)], False),
            ([("Authorization", b"Bearer \xff\xfe")], False),
            ([("Authorization", b"Bearer " + TOKEN.encode() + b"\xff")], False),
            ([("Cookie", cookie)], True),
            ([("Cookie", f'{name}="{TOKEN}')], False),
            ([("Cookie", f"other=1; {cookie}; x")], True),
            ([("Cookie", f"{name}=wrong; {cookie}")], None),
            ([("Cookie", cookie), ("Cookie", f"{name}=wrong")], None),
            ([("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {TOKEN}")], None),
            ([("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer wrong")], None),
            ([("Authorization", "Bearer wrong"), ("Cookie", cookie)], False),
            ([("Cookie", f"{name}=" + "%" * 3000)], False),
            ([("Cookie", f"=;;=; {name}")], False),
        ]
        return self.rnd.choice(options)

    def host(self) -> tuple[list[tuple[str, str]], bool | None]:
        """Host headers and whether they name this machine (None: either answer is right).

        ``[::1`` reads as the address ::1 (addresses always pass: a page on another site
        cannot make a browser send one for its own name), so it may be served."""
        if self.rnd.random() < 0.85:
            return [("Host", f"127.0.0.1:{self.port}")], True
        options: list[tuple[list[tuple[str, str]], bool | None]] = [
            ([("Host", "evil.example")], False), ([("Host", "")], False), ([], False),
            ([("Host", "localhost")], True), ([("Host", "LOCALHOST.")], True),
            ([("Host", "[::1")], None), ([("Host", "[::1]:1")], True),
            ([("Host", "localhost:abc:1")], False), ([("Host", "127.1")], None),
            ([("Host", "evil.example"), ("Host", "localhost")], None),
            ([("Host", "localhost"), ("Host", "evil.example")], None),
            ([("Host", "2130706433")], False), ([("Host", "0x7f.1")], None),
            ([("Host", "localhost@evil")], False), ([("Host", "a" * 10000)], False),
        ]  # fmt: skip
        return self.rnd.choice(options)

    def origin(self) -> list[tuple[str, str]]:
        if self.rnd.random() < 0.88:
            return []
        return [
            (
                "Origin",
                self.rnd.choice([
                    "null", "http://evil", "http://[::1", f"http://127.0.0.1:{self.port}", "",
                    "http://127.0.0.1", "://", "http://a:b:c", "http://[",
                    f"HTTP://127.0.0.1:{self.port}", "file://", "%", "http://[::1]x",
                ]),
            )
        ]  # fmt: skip

    def last_event_id(self) -> bytes:
        run = self.run
        return self.rnd.choice([
            b"", b".", b"x.1", b"1", run + b".1", run + b".\xb2", run + b"." + b"9" * 30,
            run + b".-1", run + b". 1", run + b".\xff", run + b".\xd9\xa3", b"\xff" * 10,
            run + b".0x1",
        ])  # fmt: skip

    def framing(self, headers: list, body: bytes) -> bool:
        """Add the body's framing headers (mostly right, sometimes not); True if chunked."""
        rr = self.rnd.random()
        if rr < 0.9:
            headers.append(("Content-Length", str(len(body))))
        elif rr < 0.94:
            headers.append(("Transfer-Encoding", "chunked"))
            return True
        elif rr < 0.96:
            headers.append(("Content-Length", str(len(body) + self.rnd.choice([-1, 5]))))
        elif rr < 0.98:
            wrong = ["abc", "-1", "1e3", "²", " 5", "99999999999999999999", "0x10"]
            headers.append(("Content-Length", self.rnd.choice(wrong)))
        else:
            headers += [("Content-Length", str(len(body)))] * 2
        return False

    def request(self) -> tuple[bytes, dict[str, Any]]:
        """One raw request and what the checks need to know about it."""
        rnd = self.rnd
        if rnd.random() < 0.55:
            route = rnd.choice(BODY_ROUTES)
            if route in BARE_ROUTES:
                bare = [b"", b"{}", b"[]", b"null", b"{", b"\xff", b'{"a":1}', b"1e400"]
                body, path = rnd.choice([*bare, b"[" * 3000]), route
            else:
                body = self.body(route)
                path = route
                if route == "delete":
                    sid = rnd.choice(["s5", "s4", "nope", "..", "evil", "base"])
                    path = f"/api/sessions/{sid}/delete"
            method = "POST" if rnd.random() < 0.97 else rnd.choice(["PUT", "GET", "PATCH"])
            ctype = rnd.choice(CTYPES)
        else:
            path, method = self.path()
            body = b"" if rnd.random() < 0.9 else rnd.choice([b"{}", b"x" * 100, b"\xff"])
            ctype = None if rnd.random() < 0.7 else "application/json"
            route = "path"
        host, host_ok = self.host()
        auth, auth_ok = self.auth()
        origin = self.origin()
        headers: list[tuple[str, str | bytes]] = [*host, *auth, *origin]
        events = path.startswith("/api/events")
        if events and rnd.random() < 0.7:
            headers.append(("Last-Event-ID", self.last_event_id()))
        if ctype is not None:
            headers.append(("Content-Type", ctype))
        chunked = self.framing(headers, body)
        if rnd.random() < 0.02:
            headers.append(("X-Injected", "a\r\nSet-Cookie: x=1"))
        headers.append(("Connection", "close"))
        raw = f"{method} {path} HTTP/1.1\r\n".encode("latin-1", "replace")
        for name, value in headers:
            v = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
            raw += name.encode() + b": " + v + b"\r\n"
        raw += b"\r\n"
        if rnd.random() < 0.03 and not events:  # a second request pipelined after the body
            body += (
                b"GET /api/station HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
            )
        if chunked:
            for i in range(0, len(body), 1000):
                part = body[i : i + 1000]
                raw += f"{len(part):x}\r\n".encode() + part + b"\r\n"
            raw += b"0\r\n\r\n" if rnd.random() < 0.9 else b"zz\r\n"
        else:
            raw += body
        info = {
            "route": route, "path": path, "method": method, "auth_ok": auth_ok,
            "host_ok": host_ok,
        }  # fmt: skip
        return raw, info


# --- answers and their checks ---------------------------------------------------------------


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status or -1, headers in lower case (first of each), body de-chunked)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", lines[0])
    status = int(m.group(1)) if m else -1
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower().decode("latin-1"), value.strip().decode("latin-1"))
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            try:
                n = int(size, 16)
            except ValueError:
                break
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return status, headers, body


def route_key(info: dict[str, Any]) -> str:
    """The route a request was aimed at, for the per-route counts."""
    method, route = info["method"], info["route"]
    if route == "delete":
        return f"{method} /api/sessions/{{sid}}/delete (body mutated)"
    if route != "path":
        return f"{method} {route}" if method == "POST" else "wrong method on a POST route"
    path = info["path"].split("?")[0]
    m = re.match(r"/api/sessions/[^/]*/(frames/|)([^/]*)$", path)
    if m:
        named = ("frames.zip", "thumbnail", "stop", "resume", "delete")
        kind = "frames/{name}" if m[1] else (m[2] if m[2] in named else "{kind}")
        return f"{method} /api/sessions/{{sid}}/{kind}"
    for prefix in ("/static/", "/img/", "/api/crop", "/api/state", "/api/liveview", "/api/events"):
        if path.startswith(prefix):
            return f"{method} {prefix}"
    return "other paths and methods"


def shown(raw: bytes) -> str:
    """A request as text for a report, cut to SHOWN characters."""
    text = raw.decode("latin-1")
    return text if len(text) <= SHOWN else text[:SHOWN] + f"... ({len(raw)} bytes)"


class Tally:
    """Counts of answers, and the faults with the requests that caused them."""

    def __init__(self) -> None:
        self.statuses: collections.Counter[str] = collections.Counter()
        self.routes: collections.Counter[str] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()
        self.faults: list[dict[str, Any]] = []
        self.http_layer_refused: list[bytes] = []
        """Requests h11 could not parse, answered by uvicorn's plain 400 before any app code."""
        self.log_lines: collections.Counter[str] = collections.Counter()

    def fault(self, kind: str, request: str, detail: str = "") -> None:
        self.faults.append({"kind": kind, "request": request, "detail": detail[:1000]})
        print(f"FAULT {kind}: {detail[:200]!r}\n  request: {request[:300]!r}", flush=True)

    def check(self, raw: bytes, info: dict[str, Any], data: bytes, elapsed: float) -> None:
        status, headers, body = parse_response(data)
        self.statuses[str(status)] += 1
        self.routes[route_key(info)] += 1

        def fault(kind: str, detail: str = "") -> None:
            self.fault(kind, shown(raw), detail)

        if status == -1:
            fault("no status line", repr(data[:200]))
            return
        path = info["path"].split("?")[0]
        api = path.startswith("/api/")
        text = body.decode("utf-8", "replace")
        if status >= 500 and not (status == 503 and _one_line_error(headers, body)):
            fault(f"{status}", text)
        if MARKER in body or SECRET in body:
            fault("bytes of a file outside the sessions folder", text[:200])
        open_path = path in OPEN_PATHS or path.startswith("/static/")
        if 200 <= status < 300 and not open_path and info["auth_ok"] is False:
            fault("2xx without the token", f"{status} {text[:200]}")
        if 200 <= status < 300 and info["host_ok"] is False:
            fault("2xx for a Host that is not this machine", f"{status} {text[:200]}")
        if 400 <= status < 500 and api and body:
            problem = _error_problem(headers, body)
            if problem == "not JSON":
                self.notes[f"4xx not JSON (from the HTTP layer): {status}"] += 1
                self.http_layer_refused.append(raw)
            elif problem:
                fault(problem, text[:600])
            elif len(json.loads(body)["error"]) > MAX_ERROR_CHARS + 60:
                fault("an error message not cut short", text[:600])
            elif "characters left out" in text:
                self.notes["long errors cut short (they quote what was sent)"] += 1
        if elapsed > SLOW_S:
            fault("slow", f"{elapsed:.1f} s, status {status}")
        if status == 201 and info["route"] == "/api/sessions":
            self.notes["sessions started"] += 1


def _one_line_error(headers: dict[str, str], body: bytes) -> bool:
    return _error_problem(headers, body) is None


def _error_problem(headers: dict[str, str], body: bytes) -> str | None:
    """What is wrong with an error answer's body, or None if it is ``{"error": "one line"}``."""
    if not headers.get("content-type", "").startswith("application/json"):
        # h11 answers a request it cannot parse with a plain 400 before any app code runs
        return "not JSON" if b"Invalid HTTP request" in body else "error answer not JSON"
    try:
        message = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return "error answer without an error string"
    if not isinstance(message, str) or not message.strip():
        return "empty error"
    if "\n" in message or "\r" in message:
        return "error of more than one line"
    if "Traceback" in message:
        return "traceback in an error"
    return None


# --- the station and its folder --------------------------------------------------------------


def start_station(root: Path, size: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``rig station --sim`` on a free port; (process, port, its stderr file)."""
    out, err = root / "station.out", root / "station.err"
    env = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}  # its own virtual camera
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "rig.cli", "station", "--sim", "--size", size, "--port", "0"]
    cmd += ["--token", TOKEN, "--sessions", str(root / "sessions")]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", out.read_text())
        if m:
            return proc, int(m[1]), err
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the station did not start:\n{err.read_text()[-3000:]}")


def stop_station(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as systemd stops it; killed after 60 s. Its exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def wait_idle(client: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/api/station").json()["running"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the station's session did not end")
        time.sleep(0.2)


def prepare_sessions(client: Any, sessions: Path, outside: Path, elsewhere: Path) -> None:
    """A real session ``base`` and copies ``s1``..``s5``; links out of the sessions folder.

    Outside: ``secret.txt`` and a fake session, each file ending in the marker bytes.
    ``evil`` is a link to the fake session; ``linked`` has its ``frames/`` linked to the fake
    session's; ``s1``'s frame 9 is linked to ``secret.txt`` and ``s2``'s frame 10 to the
    outside folder; ``s3``'s composite and depth map and ``s4``'s depth preview are linked to
    outside files; ``.test-shot`` is a link to ``elsewhere`` (which holds ``keep.txt``)."""
    r = client.post("/api/sessions", json={"plan": BASE_PLAN_JSON, "name": "base"})
    r.raise_for_status()
    wait_idle(client)
    base = sessions / "base"
    for n in range(1, 6):
        shutil.copytree(base, sessions / f"s{n}")
    fake = outside / "fakesession"
    (fake / "frames").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET + b"\n" + MARKER + b"\n")
    shutil.copy(base / "plan.json", fake / "plan.json")
    frame = (base / "frames" / "frame_0001.jpg").read_bytes()
    (fake / "frames" / "frame_0001.jpg").write_bytes(frame + MARKER)
    (fake / "composite.tif").write_bytes((base / "composite.tif").read_bytes() + MARKER)
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("KEEP\n")

    shutil.copytree(base, sessions / "linked")
    shutil.rmtree(sessions / "linked" / "frames")
    links = {
        sessions / "evil": fake,
        sessions / "linked" / "frames": fake / "frames",
        sessions / "s1" / "frames" / "frame_0009.jpg": outside / "secret.txt",
        sessions / "s2" / "frames" / "frame_0010.jpg": outside,
        sessions / "s3" / "composite.tif": fake / "composite.tif",
        sessions / "s3" / "depth.png": outside / "secret.txt",
        sessions / "s4" / "depth-preview.jpg": fake / "frames" / "frame_0001.jpg",
        sessions / ".test-shot": elsewhere,
    }
    for link, target in links.items():
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, modification time in ns)."""
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def new_log(err: Path, since: int, limit: int | None = 4000) -> str:
    with err.open("rb") as f:
        f.seek(since)
        return f.read(limit if limit is not None else -1).decode("utf-8", "replace")


UVICORN_INVALID = "Invalid HTTP request received."
"""uvicorn's warning for a request h11 cannot parse (it answers it with a plain 400)."""
COUNTED = re.compile(r"preview: (\d+ request\(s\) that break HTTP|more than \d+ connections)")
"""The server's own count of such requests (and of refusals past its connection limit), one
line a minute at most: expected, not a fault."""


def framing_fault(raw: bytes) -> str:
    """What in a request h11 refuses, as far as the mutations go."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")[1:]
    lengths = [
        line.split(b":", 1)[1].strip() for line in lines if line.startswith(b"content-length:")
    ]
    hosts = sum(line.startswith(b"host:") for line in lines)
    if hosts != 1:
        return "no Host header" if not hosts else "two Host headers"
    if not raw.split(b"\r\n", 1)[0].isascii():
        return "a byte outside ASCII in the request line"
    if len(lengths) > 1:
        return "two Content-Length headers"
    if lengths and not lengths[0].isdigit():
        return "a Content-Length that is not a whole number"
    if b"transfer-encoding: chunked" in lines and rest.endswith(b"zz\r\n"):
        return "a chunk size that is not hexadecimal"
    return "other framing"


async def confirm_log_lines(port: int, err: Path, tally: Tally) -> None:
    """If the station logged UVICORN_INVALID, send one request of each kind the HTTP layer
    refused again, alone, and make a fault of each that writes a log line on its own."""
    logged = tally.log_lines[UVICORN_INVALID]
    if not logged:
        return
    causes = collections.Counter(framing_fault(raw) for raw in tally.http_layer_refused)
    examples = {framing_fault(raw): raw for raw in reversed(tally.http_layer_refused)}
    tally.notes.update({f"refused by the HTTP layer: {k}": n for k, n in causes.items()})
    for cause, raw in sorted(examples.items()):
        before = err.stat().st_size
        data, _ = await exchange(port, raw)
        await asyncio.sleep(0.3)
        after = new_log(err, before).strip()
        status = data.split(b"\r\n", 1)[0].decode("latin-1")
        what = f"{after!r}" if after else "nothing"
        tally.fault(
            f"station log: {what} for a request with {cause}",
            shown(raw),
            f"sent alone: answered {status!r}, logged {what}; in the run {causes[cause]} "
            f"requests with {cause}, {logged} such log lines in all",
        )


# --- mutated requests ------------------------------------------------------------------------


async def exchange(port: int, raw: bytes) -> tuple[bytes, float]:
    """Send one raw request on its own connection; the answer (for the event stream, up to
    its first event) and how long it took."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        if raw.startswith(b"GET /api/events"):
            data = b""
            while not (
                data.startswith(b"HTTP/1.1 200") and b"\n\n" in data.partition(b"\r\n\r\n")[2]
            ):
                chunk = await asyncio.wait_for(reader.read(4096), HANG_S)
                if not chunk:
                    break
                data += chunk
            return data.replace(b"Transfer-Encoding: chunked", b"X-Was: chunked"), (
                time.monotonic() - t0
            )
        data = await asyncio.wait_for(reader.read(-1), HANG_S)
    finally:
        writer.close()
    return data, time.monotonic() - t0


async def fuzz(
    mutator: Mutator, port: int, err: Path, total: int, concurrency: int, tally: Tally
) -> None:
    """``total`` mutated requests, ``concurrency`` at a time; the log looked at every BATCH."""
    queue: asyncio.Queue[tuple[bytes, dict[str, Any]] | None] = asyncio.Queue(concurrency * 4)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            raw, info = item
            try:
                data, elapsed = await exchange(port, raw)
            except asyncio.TimeoutError:
                tally.fault("no answer", shown(raw), f"nothing within {HANG_S:.0f} s")
                continue
            except (ConnectionResetError, BrokenPipeError):
                tally.statuses["connection reset"] += 1
                tally.routes[route_key(info)] += 1
                continue
            tally.check(raw, info, data, elapsed)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    log_at = err.stat().st_size
    batch: list[bytes] = []
    t0 = time.monotonic()
    for i in range(1, total + 1):
        raw, info = mutator.request()
        batch.append(raw)
        await queue.put((raw, info))
        if i % BATCH == 0 or i == total:
            if i == total:  # the last batch's answers are in before the log is read
                for _ in workers:
                    await queue.put(None)
                await asyncio.gather(*workers)
            if err.stat().st_size != log_at:
                text = new_log(err, log_at, limit=None)
                log_at = err.stat().st_size
                lines = [line for line in text.splitlines() if line.strip()]
                tally.log_lines.update(lines)
                other = [
                    line for line in lines if line != UVICORN_INVALID and not COUNTED.match(line)
                ]
                if other:
                    requests = "\n---\n".join(shown(r)[:200] for r in batch)
                    where = f"requests {i - len(batch) + 1}-{i}"
                    tally.fault(f"station log output in {where}", requests, "\n".join(other))
            batch = []
            codes = dict(tally.statuses.most_common(8))
            print(f"{i} requests, {time.monotonic() - t0:.0f} s: {codes}", flush=True)


# --- race rounds -----------------------------------------------------------------------------


RACE_PLAN = {"from": "-3mm", "to": "-2.5mm", "frames": 8, "settle": "0.1"}


def burst(base_url: str, requests: list[tuple[str, str, Any]]) -> list[Any]:
    """Send all ``requests`` (method, path, JSON or None) at the same moment, each from its
    own thread and client; the responses (or the exceptions) in order."""
    import httpx

    out: list[Any] = [None] * len(requests)
    go = threading.Barrier(len(requests))

    def run(i: int) -> None:
        method, path, body = requests[i]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as c:
            go.wait()
            try:
                out[i] = c.request(method, path, json=body)
            except httpx.HTTPError as exc:
                out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _codes(out: list[Any]) -> list[Any]:
    return [getattr(r, "status_code", repr(r)) for r in out]


def _describe(requests: list[tuple[str, str, Any]], out: list[Any]) -> str:
    return "; ".join(f"{m} {p} -> {c}" for (m, p, _), c in zip(requests, _codes(out), strict=True))


def race_round(client: Any, base_url: str, n: int, tally: Tally) -> None:
    """One round of conflicting requests; see the module's docstring."""
    import httpx

    def check_answered(what: str, requests: list, out: list) -> None:
        bad = [r for r in out if not isinstance(r, httpx.Response) or r.status_code >= 500]
        if bad:
            tally.fault(f"race: 5xx or no answer ({what})", _describe(requests, out))
        for r in out:
            tally.statuses[str(getattr(r, "status_code", "error"))] += 1
        tally.routes[f"race: {what}"] += len(out)

    wait_idle(client)
    tag = f"race{n}"
    named = [{"plan": RACE_PLAN, "name": f"{tag}-{i}"} for i in range(6)]
    starts = [("POST", "/api/sessions", body) for body in [*named, *[{"plan": RACE_PLAN}] * 3]]
    others = [
        ("POST", "/api/sessions/s3/resume", {}), ("POST", "/api/jog", {"by": "10um"}),
        ("POST", "/api/test-shot", {}),
        ("POST", "/api/camera/settings", {"name": "shutter", "value": "0.0100s"}),
        ("GET", "/api/liveview", None), ("POST", "/api/home", {}), ("POST", "/api/unlock", {}),
        ("POST", "/api/rail/stop", {}),
    ]  # fmt: skip
    requests = starts + others
    out = burst(base_url, requests)
    check_answered("starts at once", requests, out)
    launched = [i for i, r in enumerate(out[:10]) if getattr(r, "status_code", 0) in (201, 202)]
    if len(launched) > 1:
        tally.fault("race: two sessions launched at once", _describe(requests, out))
    running = [s["id"] for s in client.get("/api/station").json()["sessions"] if s["running"]]
    if len(running) > 1:
        tally.fault("race: two sessions running", f"{running}; {_describe(requests, out)}")
    started = [i for i in launched if i < len(starts)]
    if started:
        sid = out[started[0]].json()["id"]
        _while_running(client, base_url, sid, tag, tally, check_answered)
        _stop_race(client, base_url, sid, check_answered)
    _delete_while_downloading(client, base_url, check_answered)
    state = client.get("/api/station").json()
    if state["running"]:  # a resume that won its race
        client.post(f"/api/sessions/{state['running']}/stop", json={})
        wait_idle(client)


def _while_running(client: Any, base_url: str, sid: str, tag: str, tally: Tally, check) -> None:
    """Everything that moves the rig, while a session runs: all 409."""
    requests = [
        ("POST", "/api/jog", {"by": "10um"}),
        ("POST", "/api/sessions", {"plan": RACE_PLAN, "name": tag + "-x"}),
        ("POST", "/api/sessions/s3/resume", {}),
        ("POST", f"/api/sessions/{sid}/delete", {"confirm": sid}),
        ("POST", "/api/camera/settings", {"name": "shutter", "value": "0.0100s"}),
        ("POST", "/api/test-shot", {}), ("POST", "/api/home", {}), ("GET", "/api/liveview", None),
        ("POST", f"/api/sessions/{sid}/resume", {}),
    ]  # fmt: skip
    before = client.get("/api/station").json()["running"]
    out = burst(base_url, requests)
    after = client.get("/api/station").json()["running"]
    check("while running", requests, out)
    if before == sid == after:
        if any(getattr(r, "status_code", 0) != 409 for r in out):
            tally.fault("race: not 409 while a session runs", _describe(requests, out))
        tally.notes["race: all 409 while running"] += 1
    else:
        tally.notes["race: session ended before the while-running burst was over"] += 1


def _stop_race(client: Any, base_url: str, sid: str, check) -> None:
    requests = [
        ("POST", f"/api/sessions/{sid}/stop", {}), ("POST", f"/api/sessions/{sid}/resume", {}),
        ("POST", f"/api/sessions/{sid}/delete", {"confirm": sid}),
        ("GET", f"/api/sessions/{sid}/frames.zip", None),
    ]  # fmt: skip
    check("stop, resume, delete, download", requests, burst(base_url, requests))
    wait_idle(client)


def _delete_while_downloading(client: Any, base_url: str, check) -> None:
    done = [
        s["id"]
        for s in client.get("/api/sessions").json()
        if s["frames"] > 0 and not s["running"] and s["id"].startswith("race")
    ]
    if not done:
        return
    sid = done[0]
    requests = [
        ("GET", f"/api/sessions/{sid}/frames.zip", None),
        ("GET", f"/api/sessions/{sid}/composite", None),
        ("POST", f"/api/sessions/{sid}/delete", {"confirm": sid}),
        ("POST", f"/api/sessions/{sid}/resume", {}),
        ("GET", f"/api/sessions/{sid}/thumbnail", None),
        ("POST", f"/api/sessions/{sid}/delete", {"confirm": sid}),
    ]
    check("delete while downloading", requests, burst(base_url, requests))
    wait_idle(client)


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Tally:
    import httpx

    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="fuzz-station-") as tmp:
        root = Path(tmp)
        outside, elsewhere = root / "outside", root / "elsewhere"
        proc, port, err = start_station(root, args.size)
        base_url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                prepare_sessions(client, root / "sessions", outside, elsewhere)
                before = {"outside": snapshot(outside), "elsewhere": snapshot(elsewhere)}
                run_id = client.get("/api/state").json()["run"]
                print(f"station on port {port}; {args.requests} requests, seed {args.seed}")
                mutator = Mutator(args.seed, port, str(run_id), outside)
                t0 = time.monotonic()
                asyncio.run(fuzz(mutator, port, err, args.requests, args.concurrency, tally))
                asyncio.run(confirm_log_lines(port, err, tally))
                tally.notes["seconds of mutated requests"] = round(time.monotonic() - t0)
                log_at = err.stat().st_size
                for n in range(args.race_rounds):
                    race_round(client, base_url, n, tally)
                if err.stat().st_size != log_at:
                    tally.fault("station log output in the race rounds", "", new_log(err, log_at))
            for name, folder in (("outside", outside), ("elsewhere", elsewhere)):
                if snapshot(folder) != before[name]:
                    detail = f"before {before[name]}, after {snapshot(folder)}"
                    tally.fault(f"files changed outside the sessions folder ({name})", "", detail)
        finally:
            code = stop_station(proc)
        if code != 0:
            tally.fault("station exit", "", f"exit code {code}: {new_log(err, 0)[-2000:]}")
    return tally


def report(tally: Tally) -> None:
    rows = [[k, str(v)] for k, v in tally.routes.most_common()]
    print(table(rows, ["route", "requests"]))
    print()
    codes = sorted(tally.statuses.items(), key=lambda kv: kv[0])
    print(table([[k, str(v)] for k, v in codes], ["status", "answers"]))
    print()
    for note, n in tally.notes.items():
        print(f"{note}: {n}")
    for line, n in tally.log_lines.most_common():
        print(f"station log lines {line[:100]!r}: {n}")
    print(f"\n{len(tally.faults)} fault(s)")
    for f in tally.faults:
        print(f"- {f['kind']}: {f['detail'][:300]!r}\n  request: {f['request'][:SHOWN]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000, help="mutated requests (default 5000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=8, help="requests at once (default 8)")
    ap.add_argument("--race-rounds", type=int, default=0, help="rounds of conflicting requests")
    ap.add_argument("--size", default="320x240", help="simulated frame size WxH")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    tally = run(args)
    report(tally)
    if args.json is not None:
        payload = {
            "machine": machine(),
            "args": {**vars(args), "json": str(args.json)},
            "routes": dict(tally.routes.most_common()),
            "statuses": dict(tally.statuses),
            "notes": dict(tally.notes),
            "log_lines": dict(tally.log_lines),
            "faults": tally.faults,
        }
        write_json(args.json, payload)
    sys.exit(1 if tally.faults else 0)


if __name__ == "__main__":
    main()
