"""What every request to a preview server (and so to the rig station) passes first.

:class:`RequestGuard` wraps the whole app, so a route added later inherits it:

- **Host allow-list.** A page on another site can reach a server on this machine or the local
  network through DNS rebinding: its own name is made to resolve to our address, and the browser
  then treats our answers as that site's. Such a request still names the foreign site in its
  ``Host`` header, so only loopback names, IP addresses (a rebinding needs a name), the name the
  server was bound to, this machine's name and the names given with ``--allow-host`` are served.
- **Origin.** A state-changing request (anything but ``GET``, ``HEAD``, ``OPTIONS``) that a
  browser sends with an ``Origin`` must come from the page's own origin; a foreign or ``null``
  origin is refused even when it carries a valid login cookie. Scripts (no ``Origin``) pass.
- **Body size.** A declared ``Content-Length`` over the limit is refused before anything is read,
  and a body streamed without one is counted chunk by chunk and refused (413) as soon as it goes
  over, so a huge upload is never held in memory.
- **Not framed.** Every answer forbids framing by another site's page and type sniffing
  (:data:`NOT_FRAMED`).
- **Body time.** The body must arrive within ``body_timeout_s`` of the app's first asking for it;
  a client that trickles it (a byte now and then keeps a socket read alive for ever) gets a 408
  and the connection is closed. Once the body is complete, waiting for the client to leave (a
  stream of events) is not limited.
"""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import json
import socket
import sys
from collections.abc import Iterable
from typing import NoReturn, TextIO
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
"""The largest request body served: control requests are small JSON objects."""
BODY_TIMEOUT_S = 10.0
"""The longest a request body may take to arrive once the app reads it."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_FRAMED = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
)
"""Headers on every answer: no other site's page may show ours in a frame, where a click
meant for it would press our Stop or Delete (the ``SameSite=Strict`` login cookie already
keeps such a frame logged out: this holds if that ever changes); and a type is never
guessed."""


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` can be reached from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` names a server bound to ``bound`` answers (IP addresses always pass)."""
    names = set(LOOPBACK_NAMES)
    names.update(n.strip().lower().rstrip(".") for n in extra if n.strip())
    if bound not in WILDCARD_HOSTS:
        names.add(bound.strip("[]").lower())
    if not is_loopback(bound):  # this machine's own name, and its mDNS name (pi.local)
        machine = socket.gethostname().lower()
        if machine:
            names.update({machine, f"{machine.split('.')[0]}.local"})
    return frozenset(names)


def warn_if_wildcard(host: str, out: TextIO | None = None) -> bool:
    """Say once, at start, that a server bound to every interface is open to the whole network."""
    if host not in WILDCARD_HOSTS:
        return False
    print(
        f"warning: listening on {host or 'every address'}: every machine on this network can "
        "connect; use it on a trusted network only (plain HTTP, see SECURITY.md)",
        file=out if out is not None else sys.stderr,
        flush=True,
    )
    return True


def _split_host(value: str) -> str:
    """The name of a ``Host`` header or an origin's netloc, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _netloc(origin: str) -> str | None:
    """The ``host:port`` of an ``Origin`` header in lower case; None for ``null`` and for one
    that is not a URL (``http://[::1`` made :func:`urlsplit` raise, a 500 with a traceback)."""
    if origin == "null":
        return None
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HttpMiddleware(abc.ABC):
    """ASGI middleware that handles HTTP requests only: WebSocket and lifespan pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    @abc.abstractmethod
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, or hand it on to ``self.app``."""


class _BodyRefused(Exception):
    """The body was refused (too large or too slow) and answered, or the client left before
    sending all of it and there is nobody to answer."""


class RequestGuard(HttpMiddleware):
    """ASGI middleware: Host allow-list, same-origin state changes and a streaming body limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: frozenset[str],
        max_body: int = MAX_BODY_BYTES,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        super().__init__(app)
        self.hosts = hosts
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._check(scope["method"], headers)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        await self._limited(scope, receive, send)

    def _check(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        host_port = host.strip().lower()
        name = _split_host(host)
        if not name or not (name.rstrip(".") in self.hosts or _is_ip(name)):
            return 421, (
                f"this server does not answer to the name {host!r}; open it by its address, "
                "or start it with --allow-host NAME"
            )
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and _netloc(origin) != host_port:
            # Most often a reverse proxy that passes on a Host of its own (nginx's default):
            # every login was refused, and nothing said why.
            return 403, (
                f"requests from the page at {origin!r} are not accepted here (they came "
                f"addressed to {host!r}: behind a reverse proxy, pass the browser's Host on, "
                "e.g. nginx's proxy_set_header Host $http_host)"
            )
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return 400, f"Content-Length {length!r} is not a number of bytes"
            if int(length) > self.max_body:
                return 413, self._too_large()
        return None

    def _too_large(self) -> str:
        return f"request body too large: at most {self.max_body // 1024} KiB"

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = refused = whole = False
        deadline: float | None = None

        async def refuse(status: int, message: str) -> NoReturn:
            nonlocal refused
            if not started:
                refused = True
                await _answer(send, status, message)
            raise _BodyRefused

        def gone() -> NoReturn:
            # Starlette's request.body() raises ClientDisconnect, which nothing answers: a
            # traceback on the station's terminal for every phone that lost Wi-Fi mid-request.
            nonlocal refused
            refused = True
            raise _BodyRefused

        async def counted() -> Message:
            nonlocal received, whole, deadline
            if whole:  # the body is in; the app waits for the client to leave
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                await refuse(408, f"request body not received within {self.body_timeout_s:g} s")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if received > self.max_body:
                    await refuse(413, self._too_large())
            elif message["type"] == "http.disconnect":
                gone()  # before the whole body came
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already; the app's error answer is dropped
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), *NOT_FRAMED]}
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyRefused:
            pass
        except Exception:
            if not refused:
                raise


MAX_ERROR_CHARS = 600
"""An error answer's message is cut to about this length: it quotes the sender's text (a path,
a header, a field), and a 10 KB Host header made a 10 KB line on the page and in logs."""


def error_json(message: str, **extra: str) -> bytes:
    """``{"error": message}`` as ASCII JSON (``\\u`` escapes: a message quoting a lone
    surrogate from the sender stays encodable), the message's middle left out when it is long;
    ``extra`` fields beside it (what the page may do about it)."""
    if len(message) > MAX_ERROR_CHARS:
        keep = MAX_ERROR_CHARS // 2
        left_out = len(message) - 2 * keep
        message = f"{message[:keep]} [... {left_out} characters left out ...] {message[-keep:]}"
    return json.dumps({"error": message, **extra}).encode("ascii")


async def _answer(send: Send, status: int, message: str) -> None:
    body = error_json(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
