"""The live preview web server: a Starlette app over a :class:`PreviewHub`, run by uvicorn.

Starlette and uvicorn are a small, well-kept ASGI pair: routing, static files and streaming
responses (server-sent events) without a framework's weight, and uvicorn runs anywhere Python
does, a Raspberry Pi included. :class:`PreviewServer` runs uvicorn on its own thread and event
loop, so the capture and stacking threads never wait for a browser.

Endpoints
---------
``GET /``                        the page (``static/index.html``; ``/static/`` has its JS and CSS)
                                 plus the scripts and stylesheets of the host's extension
``GET /api/state?since=V``       progress, image versions and the frame rows changed after ``V``
``GET /api/events``              server-sent events: one ``state`` message (same JSON as
                                 ``/api/state``, rows changed since the last message) after every
                                 hub update; bursts faster than a client reads are coalesced
                                 into one message with the newest state, never queued up;
                                 a ``ping`` message (``{"every_s": S}``) after S seconds of quiet;
                                 stopping, the server ends each stream after the state it
                                 stopped at (a finished run's last numbers reach every page)
``GET /img/{kind}.jpg``          the latest ``composite``, ``last`` frame or ``depth`` JPEG, as
                                 encoded by the producer (the server never decodes images)
``GET /api/crop?x=&y=&size=``    a 100 % crop of the composite and of the last frame around the
                                 point at fractions ``x, y`` of the image, as JPEG data URLs

The event streams read only the hub's small snapshot (numbers and table rows), never image data.
Whoever hosts the preview (the rig station) adds its own routes, middleware, static files and
page scripts with a :class:`PageExtension`; this module knows nothing of them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import ipaddress
import json
import logging
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio.to_thread
import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from uvicorn.protocols.http.h11_impl import H11Protocol

from stacker.errors import TOO_MANY_FILES, UserError
from stacker.preview.access import (
    LOGIN_SCRIPT,
    error_response,
    login_routes,
    new_token,
    token_middleware,
)
from stacker.preview.guard import (
    MAX_BODY_BYTES,
    RequestGuard,
    allowed_host_names,
    is_loopback,
    warn_if_wildcard,
)
from stacker.preview.hub import IMAGE_KINDS, CropUnavailableError, PreviewHub, Snapshot

STATIC_DIR = Path(__file__).with_name("static")
PING_S = 15.0
"""Seconds of quiet after which an event stream sends a ``ping``: it keeps idle connections
(and proxies) open, and tells the page its stream still lives (see ``static/app.js``)."""
CROP_TIMEOUT_S = 10.0
NO_STORE = {"Cache-Control": "no-store"}
HEADER_TIMEOUT_S = 10.0
"""Seconds a connection has to send a request's headers, first or next, before it is closed."""
KEEP_ALIVE_S = 5
"""Seconds an idle connection is kept open after an answer."""
MAX_CONNECTIONS = 256
"""Connections open at once, the asking one included; past this, requests are answered 503 at
once (event streams of a room full of phones fit well below it)."""
MAX_OPEN_CONNECTIONS = MAX_CONNECTIONS + 64
"""Connections open at once past which a new one is cut as soon as it is accepted: idle ones
that send nothing would otherwise pile up faster than their deadline closes them, until the
process runs out of file descriptors and the session it runs cannot open its next frame."""
MAX_CONNECTIONS_PER_CLIENT = 64
"""Connections one address may hold open at once before its new ones are cut: a browser opens
six or so to a server, and a client opening them without end leaves the rest for others."""
LISTEN_BACKLOG = 64
"""Connections the kernel queues before they are accepted, and the most accepted at once."""
MAX_HEADER_BYTES = 16 * 1024
"""The largest request line plus headers accepted (h11's incomplete-event limit)."""
STOP_GRACE_S = 1.0
"""Seconds a connection has, once the server stops, to take the rest of its answer before it is
cut (less than :attr:`PreviewServer.graceful_shutdown_s`, whose end cancels requests with a
traceback)."""


class _LinesCounted(logging.Filter):
    """uvicorn logs a line of ``text`` for every request it answers by itself: the first is
    said, in ``say``'s words, then at most one line every ``every_s`` seconds, with how many
    there were meanwhile. A page left open on many phones, a flood or a scanner scrolled the
    terminal with them, and hid what the run itself had to say."""

    def __init__(self, text: str, say: Callable[[int], str], every_s: float = 60.0) -> None:
        super().__init__()
        self.text, self.say, self.every_s = text, say, every_s
        self._lock = threading.Lock()
        self._count = 0
        self._next_at = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.text:
            return True
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now < self._next_at:
                return False
            count, self._count, self._next_at = self._count, 0, now + self.every_s
        record.msg, record.args = self.say(count), ()
        return True


REFUSALS = _LinesCounted(
    "Exceeded concurrency limit.",
    lambda n: (
        f"preview: more than {MAX_CONNECTIONS} connections at once; {n} request(s) "
        "answered 503 (busy), close some preview pages"
    ),
)
"""Requests past :data:`MAX_CONNECTIONS`."""
MALFORMED = _LinesCounted(
    "Invalid HTTP request received.",
    lambda n: (
        f"preview: {n} request(s) that break HTTP (a header twice or missing, a bad "
        "length or chunk) answered 400; a client other than a browser is talking to this port"
    ),
)
"""Requests that h11 cannot parse (a scanner, a broken script)."""
CUT = _LinesCounted(
    "Connection cut: too many open.",
    lambda n: (
        f"preview: {n} connection(s) cut as they came: more than {MAX_CONNECTIONS_PER_CLIENT} "
        f"open from one address, or {MAX_OPEN_CONNECTIONS} in all (a client opening "
        "connections without end)"
    ),
)
"""Connections cut as they came (see :class:`BoundedH11Protocol`)."""
for _counted in (REFUSALS, MALFORMED, CUT):
    logging.getLogger("uvicorn.error").addFilter(_counted)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request headers, and one at a stop.

    uvicorn bounds the wait *between* requests (``timeout_keep_alive``) but not the time a client
    takes to finish sending headers: any byte received cancels its timer, so a client that sends
    half a header holds the connection, and a file descriptor, for ever. Here a timer armed when
    the connection opens, and again after every answer, closes it unless a request is being
    answered by then. A new connection past :data:`MAX_CONNECTIONS_PER_CLIENT` from its address,
    or past :data:`MAX_OPEN_CONNECTIONS` in all, is cut at once.

    At a stop, uvicorn lets a connection finish its answer until its graceful timeout, then
    cancels the request, which it logs with a traceback. A client that reads nothing (a
    stalled phone, a script) never finishes: it held the watch's exit for the whole timeout and
    left a traceback on its terminal. Here a connection still open ``stop_grace_s`` after the
    stop began is cut, and its request ends as for any client that went away.
    """

    header_timeout_s = HEADER_TIMEOUT_S
    stop_grace_s = STOP_GRACE_S
    _header_deadline: asyncio.TimerHandle | None = None
    _cut_at_stop: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._opened_at = self.loop.time()
        if self._client_holds_too_many():
            logging.getLogger("uvicorn.error").warning(CUT.text)
            self.transport.abort()  # past its share: gone before it costs more
            return
        if len(self.connections) >= MAX_CONNECTIONS:
            self._make_room()
        if len(self.connections) > MAX_OPEN_CONNECTIONS:
            logging.getLogger("uvicorn.error").warning(CUT.text)
            self.transport.abort()  # every slot, and none idle to close
            return
        self._arm_header_deadline()

    def _make_room(self) -> None:
        """Every slot taken: close connections that carry no request (idle, or yet to send
        one, or still sending its body: see :func:`_carries_nothing`), those of the address
        holding most first, oldest first, until this one's request would be served. A few
        addresses each holding its share of idle connections (four times 64) filled every
        slot, and the phone's Stop was answered 503 while the session shot on; an event stream,
        a request being answered, is never closed for room."""
        others = [c for c in self.connections if c is not self and _carries_nothing(c)]
        held = Counter(_host(c) for c in self.connections)
        others.sort(key=lambda c: (-held[_host(c)], getattr(c, "_opened_at", 0.0)))
        excess = len(self.connections) - (MAX_CONNECTIONS - 1)  # uvicorn counts the asking one
        for victim in others[:excess]:
            victim.transport.abort()
            self.connections.discard(victim)  # its connection_lost comes on the next turn

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def _client_holds_too_many(self) -> bool:
        if not self.client:
            return False
        host = self.client[0]
        return sum(_host(c) == host for c in self.connections) > MAX_CONNECTIONS_PER_CLIENT

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_deadline, self._cut_at_stop):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's graceful close (now if idle, after the answer otherwise), and a cut after
        ``stop_grace_s`` for a connection still open (an answer nobody reads stays in our
        buffer, and a closed transport waits for it to drain)."""
        super().shutdown()
        self._cut_at_stop = self.loop.call_later(self.stop_grace_s, self.transport.abort)

    def send_400_response(self, msg: str) -> None:
        """Answer a request that breaks HTTP (a malformed chunk of its body, say) and close.

        uvicorn does so while the app may be running for that request, without telling it:
        the app's own answer then made h11 raise, and a 400 after an answer begun or sent
        made h11 raise in uvicorn itself (a traceback on the terminal either way). The app is
        told the client has gone, and after an answer of its own the connection is closed."""
        try:
            super().send_400_response(msg)
        except h11.LocalProtocolError:  # no second status line after an answer
            self.transport.close()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        """No request is being answered at the deadline: close, whether the client is still
        to finish its headers or its body. An answer given before the body was read (a 401, a
        refused origin) leaves h11 waiting for that body: a client that sends a byte of it
        and then nothing held the connection for ever, and 255 of them every slot."""
        self._header_deadline = None
        cycle = self.cycle
        if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def _host(connection: object) -> str:
    """The address a connection comes from (``""`` when it has none)."""
    return (getattr(connection, "client", None) or ("",))[0]


def _carries_nothing(connection: object) -> bool:
    """Whether a connection has no request being answered: idle after an answer, yet to send
    its first request, or still sending the body of one. A login's body trickled a byte at a
    time (no token needed) held its slot for the whole body deadline, and a few addresses doing
    so kept the phone's Stop out; a control request's small body comes with its headers."""
    cycle = getattr(connection, "cycle", None)
    transport = getattr(connection, "transport", None)
    if transport is None or transport.is_closing():
        return False
    return (
        cycle is None
        or cycle.response_complete
        or (not cycle.response_started and getattr(cycle, "more_body", False))
    )


@dataclass(frozen=True)
class PageExtension:
    """What a host adds to the preview app.

    ``routes`` are matched before the preview's own, ``middleware`` wraps everything, the files
    of ``static_dir`` are served under ``/static/`` after the preview's own, and the page loads
    ``stylesheets`` and ``scripts`` (names in ``static_dir``) after its own.
    """

    routes: Sequence[BaseRoute] = ()
    middleware: Sequence[Middleware] = ()
    static_dir: Path | None = None
    stylesheets: Sequence[str] = ()
    scripts: Sequence[str] = ()

    def page(self) -> str:
        """``index.html`` with the extension's stylesheets and scripts linked in."""
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        links = "".join(f'<link rel="stylesheet" href="static/{n}">\n' for n in self.stylesheets)
        tags = "".join(f'<script src="static/{n}"></script>\n' for n in self.scripts)
        return html.replace("</head>", links + "</head>", 1).replace("</body>", tags + "</body>", 1)


class _ShortageSaidOnce(logging.Filter):
    """asyncio logs every connection it cannot accept for want of descriptors with a whole
    traceback (``socket.accept() out of system resource``): 60 of them on the terminal of a
    session whose page had 20 clients under ``ulimit -n 32``. Said once, in one line, with the
    limit to raise."""

    def __init__(self) -> None:
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "out of system resource" not in str(record.msg):
            return True
        if self.said:
            return False
        self.said = True
        exc = record.exc_info[1] if record.exc_info else None
        errno_ = getattr(exc, "errno", None)
        remedy = TOO_MANY_FILES.get(errno_, "") if errno_ is not None else ""
        why = getattr(exc, "strerror", None) or exc or "out of system resource"
        record.msg = f"the live page takes no more connections for now ({why}); {remedy}".rstrip(
            "; "
        )
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


SHORTAGE_SAID_ONCE = _ShortageSaidOnce()
logging.getLogger("asyncio").addFilter(SHORTAGE_SAID_ONCE)


class PreviewServerError(UserError):
    """The preview server cannot start (port taken, address not available)."""


class EventStreams:
    """The open server-sent-event streams of one app, so the server can end them on shutdown."""

    def __init__(self, hub: PreviewHub, ping_s: float = PING_S) -> None:
        self.hub = hub
        self.ping_s = ping_s
        self._closing = False
        self._wakers: set[Callable[[], None]] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        """End every open stream (they would otherwise keep uvicorn from shutting down)."""
        with self._lock:
            self._closing = True
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    async def stream(self, since: int) -> AsyncIterator[str]:
        """Yield SSE messages: the state changed after ``since`` now, then after every change;
        closed, the state as it stands then (if it changed) and no more."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake(_version: int = 0) -> None:
            # Runs on producer threads: only schedule the wake-up on this stream's loop.
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(changed.set)

        with self._lock:
            if self._closing:
                return
            self._wakers.add(wake)
        unsubscribe = self.hub.subscribe(wake)
        # A named event, not an SSE comment: a page sees only events, and one that hears nothing
        # for a few of these knows its stream died without a word (a phone's Wi-Fi).
        ping = f"event: ping\ndata: {json.dumps({'every_s': self.ping_s})}\n\n"
        try:
            last = since
            changed.set()
            while True:
                try:
                    await asyncio.wait_for(changed.wait(), self.ping_s)
                except asyncio.TimeoutError:
                    yield ping
                    continue
                changed.clear()
                # Closed before the snapshot is taken, the stream ends after sending it: the
                # state a run stopped at (a watch finished) comes before the stop.
                closing = self._closing
                snap = self.hub.snapshot(since=last)
                if snap.version != last or last == 0:
                    last = snap.version
                    body = state_json(snap)
                    yield f"id: {self.hub.run}.{snap.version}\nevent: state\ndata: {body}\n\n"
                if closing:
                    return
        finally:
            unsubscribe()
            with self._lock:
                self._wakers.discard(wake)


def state_json(snap: Snapshot) -> str:
    """``snap`` as compact ASCII JSON: the body of ``/api/state`` and of each ``state`` event.

    A frame named by bytes that are not UTF-8 (a hot folder's file) holds a lone surrogate in
    its name: ASCII JSON keeps it (``"\\udcff"``, valid JSON), which UTF-8 cannot encode
    (Starlette's JSON answer failed with a 500 on every request for the state)."""
    return json.dumps(snap.to_dict(), separators=(",", ":"))


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"'{name}' must be a whole number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise _BadRequest(f"'{name}' must be between {lo} and {hi}, not {value}")
    return value


def _fraction_param(request: Request, name: str) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        raise _BadRequest(f"'{name}' is required: a fraction of the image from 0 to 1")
    try:
        value = float(raw)
    except ValueError:
        raise _BadRequest(f"'{name}' must be a number from 0 to 1, not {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise _BadRequest(f"'{name}' must be between 0 and 1, not {value:g}")
    return value


class _BadRequest(Exception):
    pass


def preview_routes(
    hub: PreviewHub, streams: EventStreams, extension: PageExtension | None = None
) -> list[BaseRoute]:
    """The read-only preview routes; :func:`create_app` serves them with the host's extension."""
    extension = extension or PageExtension()
    page = extension.page()

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=NO_STORE)

    async def state(request: Request) -> Response:
        try:
            since = _int_param(request, "since", 0, 0, 2**62)
        except _BadRequest as exc:
            return error_response(400, str(exc))
        return Response(
            state_json(hub.snapshot(since=since)), media_type="application/json", headers=NO_STORE
        )

    async def events(request: Request) -> Response:
        try:
            since = _int_param(request, "since", 0, 0, 2**62)
        except _BadRequest as exc:
            return error_response(400, str(exc))
        run, _, last = request.headers.get("last-event-id", "").partition(".")
        if run == hub.run and re.fullmatch(r"[0-9]{1,18}", last):  # "²" is a digit to isdigit
            # EventSource reconnecting: send only what it missed (an id of another run, or
            # none this server issued, gets everything: see PreviewHub.run and .snapshot)
            since = int(last)
        return StreamingResponse(
            streams.stream(since),
            media_type="text/event-stream",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def image(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in IMAGE_KINDS:
            return error_response(404, f"no image {kind!r}: use one of {', '.join(IMAGE_KINDS)}")
        item = hub.image(kind)
        if item is None:
            return error_response(404, f"no {kind} image yet")
        data, version = item
        return Response(
            data, media_type="image/jpeg", headers={**NO_STORE, "ETag": f'"{kind}-{version}"'}
        )

    async def crop(request: Request) -> Response:
        try:
            fx = _fraction_param(request, "x")
            fy = _fraction_param(request, "y")
            size = _int_param(request, "size", 256, 16, 2048)
        except _BadRequest as exc:
            return error_response(400, str(exc))
        try:
            result = await anyio.to_thread.run_sync(
                partial(hub.crops.request, fx, fy, size, CROP_TIMEOUT_S)
            )
        except CropUnavailableError as exc:
            return error_response(503, str(exc))
        except UserError as exc:
            return error_response(409, str(exc))

        def data_url(jpeg: bytes) -> str:
            return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")

        return JSONResponse(
            {
                "x": result.x,
                "y": result.y,
                "width": result.width,
                "height": result.height,
                "frame_width": result.frame_width,
                "frame_height": result.frame_height,
                "composite": data_url(result.composite_jpeg),
                "last": data_url(result.last_jpeg),
            },
            headers=NO_STORE,
        )

    async def no_icon(request: Request) -> Response:
        # A picture opened on its own (the station's depth map in a tab) has no page naming
        # the icon (index.html carries it): the browser asked for /favicon.ico, and logged a
        # 404 each time. Nothing, said as nothing.
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    return [
        Route("/", index),
        Route("/favicon.ico", no_icon),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/crop", crop),
        Route("/img/{kind}.jpg", image),
        Mount("/static", _static_files(extension.static_dir), name="static"),
    ]


class _Revalidated(StaticFiles):
    """Static files a browser asks about again before each use (answered 304 while they have
    not changed): with only an ETag and a date, a phone kept a page script from before an
    upgrade for days, beside the new page and API."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def _static_files(extra: Path | None) -> StaticFiles:
    """The preview's static files, then the host's (``StaticFiles`` looks in each in turn)."""
    files = _Revalidated(directory=STATIC_DIR)
    if extra is not None:
        files.all_directories = [*files.all_directories, extra]
    return files


def create_app(
    hub: PreviewHub, extension: PageExtension | None = None, *, ping_s: float = PING_S
) -> Starlette:
    """The preview app for ``hub``, with what ``extension`` adds (the station's control API,
    its token check, its page script); event streams ping after ``ping_s`` seconds of quiet.

    ``app.state.streams`` holds the :class:`EventStreams`, closed by :class:`PreviewServer`.
    """
    streams = EventStreams(hub, ping_s)
    extension = extension or PageExtension()
    routes = [*extension.routes, *preview_routes(hub, streams, extension)]
    app = Starlette(
        routes=routes,
        middleware=list(extension.middleware),
        exception_handlers={404: _routing_error, 405: _routing_error},
    )
    app.state.streams = streams
    app.state.hub = hub
    return app


async def _routing_error(request: Request, exc: Exception) -> Response:
    """No such route, or not with that method: JSON under ``/api/`` as every API answer is,
    plain text elsewhere."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        why = "no such route" if exc.status_code == 404 else "method not allowed"
        answer = error_response(exc.status_code, f"{request.method} {request.url.path}: {why}")
        answer.headers.update(exc.headers or {})
        return answer
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


class PreviewServer:
    """Serve the preview of ``hub`` over HTTP from a background thread.

    ``port=0`` picks a free port; :attr:`url` tells which. The socket is bound in
    :meth:`start`, so a taken port is reported at once as a :class:`PreviewServerError`.
    Usable as a context manager.

    Whatever ``app`` it serves is wrapped in a :class:`~stacker.preview.guard.RequestGuard`
    (``Host`` names: loopback, the bound address and ``allow_hosts``; same-origin state changes;
    bodies up to ``max_body`` bytes), and connections are bounded: headers within
    ``header_timeout_s`` and the body within as long again, idle keep-alive
    :data:`KEEP_ALIVE_S`, :data:`MAX_CONNECTIONS` at once.
    """

    graceful_shutdown_s = 2
    """How long :meth:`stop` lets open requests finish (event streams are ended at once, and
    connections still open after :data:`STOP_GRACE_S` are cut) before it cancels them."""

    def __init__(
        self,
        hub: PreviewHub,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app: Starlette | None = None,
        allow_hosts: Sequence[str] = (),
        max_body: int = MAX_BODY_BYTES,
        header_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.app = app if app is not None else create_app(hub)
        self.allow_hosts = tuple(allow_hosts)
        self.max_body = max_body
        self.header_timeout_s = header_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.local_only = False
        """Once started: whether it listens on a loopback address alone, which no other
        machine reaches (``--host localhost``, or the machine's own name where
        ``/etc/hosts`` gives it 127.0.1.1, as Raspberry Pi OS does)."""

    @property
    def url(self) -> str:
        """The address a browser should open (a LAN address when bound to all interfaces)."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = _lan_address()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> PreviewServer:
        """Bind, start serving, and return once the server accepts connections."""
        if self._thread is not None:
            return self
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.local_only = ipaddress.ip_address(sock.getsockname()[0].partition("%")[0]).is_loopback
        guarded = RequestGuard(
            self.app,
            hosts=allowed_host_names(self.host, self.allow_hosts),
            max_body=self.max_body,
            body_timeout_s=self.header_timeout_s,
        )
        protocol = type(
            "PreviewH11Protocol", (BoundedH11Protocol,), {"header_timeout_s": self.header_timeout_s}
        )
        config = uvicorn.Config(
            guarded,
            http=protocol,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
            # asyncio accepts up to this many at each turn of the loop, before any is cut:
            # uvicorn's 2048 ran a process allowed 1,024 descriptors out of them in one turn.
            backlog=LISTEN_BACKLOG,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=self.graceful_shutdown_s,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="preview-server", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise PreviewServerError(
                    f"the preview server on {self.host}:{self.port} did not start"
                )
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End open event streams, stop uvicorn and join its thread. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.app.state.streams.close()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> PreviewServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_preview(
    hub: PreviewHub, host: str = "127.0.0.1", port: int = 0, *, out: TextIO | None = None
) -> PreviewServer:
    """Start a :class:`PreviewServer` and print where to open it (for the command lines).

    Listening beyond loopback, the page needs a token made for this run, printed in the
    address (``#token=...``), as the rig station's does.
    """
    stream = out if out is not None else sys.stderr
    warn_if_wildcard(host, stream)
    token = None if is_loopback(host) else new_token()
    app = None if token is None else create_app(hub, token_extension(token))
    server = PreviewServer(hub, host, port, app=app).start()
    address = server.url if token is None else f"{server.url}#token={token}"
    print(f"Live preview: {address}", file=stream, flush=True)
    return server


def token_extension(token: str) -> PageExtension:
    """The page behind ``token``: its gate, the login routes and the login script."""
    return PageExtension(
        routes=login_routes(token), middleware=[token_middleware(token)], scripts=[LOGIN_SCRIPT]
    )


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        # getaddrinfo takes the port modulo 65536: 70000 would listen on 4464.
        raise PreviewServerError(f"port {port}: use 1 to 65535, or 0 for any free one")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PreviewServerError(
            f"cannot listen on '{host}': {exc.strerror}; use an address of this machine"
        ) from None
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES) and port:
            hint = "choose another --port"  # in use, or below 1024 without the right
        else:
            hint = "use an address of this machine for --host (0.0.0.0: all of them)"
        raise PreviewServerError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _lan_address() -> str:
    """The address other machines most likely reach us at (no packet is sent): that of the
    default route; without one (a Pi serving its own Wi-Fi hotspot in the field), the first
    interface's own that is not loopback; else the machine's name."""
    return _routed_address() or next(iter(_interface_addresses()), socket.gethostname())


def _routed_address() -> str | None:
    """The address packets to a private range would leave from: the default route's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        return str(probe.getsockname()[0])


_SIOCGIFADDR = 0x8915  # Linux's ioctl for an interface's IPv4 address


def _interface_addresses() -> list[str]:
    """The IPv4 addresses of this machine's interfaces, loopback left out (Linux; elsewhere
    none)."""
    found: list[str] = []
    if not sys.platform.startswith("linux"):
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            try:
                asked = struct.pack("256s", name[:15].encode())
                address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, asked)[20:24])
            except OSError:  # no IPv4 address
                continue
            ip = ipaddress.ip_address(address)
            if not (ip.is_loopback or ip.is_link_local):  # 169.254: no DHCP answered there
                found.append(address)
    return found
