"""Access by token for a page served to other machines: the rig station always, a live preview
whenever it listens beyond loopback.

Everything but the page shell (``/``, ``/static/``) and ``POST /api/login`` needs the token:
``Authorization: Bearer TOKEN`` (scripts), or the ``stackrig_token_PORT`` cookie that
``POST /api/login`` sets (``HttpOnly``, ``SameSite=Strict``, so other sites cannot ride on it).
Browsers keep cookies per host name, not per port: named by the port the server listens on, the
cookie of a station on one port and that of a preview on another live side by side, where one
name made each login log the other page out.
A missing token is refused with 401, a wrong one with 403. The page (``static/login.js``) reads
the token from the address printed at start (``http://host:8000/#token=...``: a fragment never
reaches the server or its logs) and logs in once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from stacker.preview.guard import HttpMiddleware, error_json

NO_STORE = {"Cache-Control": "no-store"}
COOKIE = "stackrig_token"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
OPEN_PATHS = frozenset({"/", "/api/login", "/favicon.ico"})
LOGIN_SCRIPT = "login.js"
"""The page script (in the preview's static files) that logs in with the address's token."""
UNAUTHORIZED = (
    "this page needs its access token: open the address printed at start "
    "(…/#token=…) or send Authorization: Bearer TOKEN"
)
WRONG_TOKEN = "wrong access token"


def new_token() -> str:
    """A random access token (144 bits, URL-safe)."""
    return secrets.token_urlsafe(18)


def error_response(status: int, message: str, **extra: str) -> Response:
    """A JSON ``{"error": message}`` answer with ``status``, never cached.

    Written by :func:`~stacker.preview.guard.error_json`, as the request guard's own refusals
    are: ASCII JSON (a message that quotes the sender's text may hold a lone surrogate,
    ``"\\ud800"`` being valid JSON, which UTF-8 cannot encode: Starlette's JSON answer then
    failed with a 500), a long message cut in its middle."""
    return Response(
        error_json(message, **extra),
        status_code=status,
        media_type="application/json",
        headers=NO_STORE,
    )


def loads_json(raw: bytes) -> Any:
    """A request body's JSON; :class:`ValueError` for a body that is not JSON, or whose arrays
    and objects nest too deeply for the parser (a few kilobytes of ``[`` exhaust its recursion
    limit, which would otherwise be a 500 with a traceback)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def presented_token(scope: Scope) -> str | None:
    """The token a request carries: bearer header, else the login cookie."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    # Browsers send every cookie of the host name, whatever the port: another app's cookie
    # that the strict parser of http.cookies refuses must not hide ours (it drops the rest).
    return cookie_parser(headers.get("cookie", "")).get(_scope_cookie(scope))


def cookie_name(port: int | None) -> str:
    """The login cookie's name on a server listening on ``port``: ``stackrig_token_PORT``."""
    return f"{COOKIE}_{port}" if port else COOKIE


def _scope_cookie(scope: Scope) -> str:
    server = scope.get("server")
    return cookie_name(server[1] if server else None)


def is_json(request: Request) -> bool:
    """Whether the request says its body is JSON (media types ignore case, RFC 9110 8.3.1)."""
    media_type = request.headers.get("content-type", "").split(";")[0]
    return media_type.strip().lower() == "application/json"


def token_matches(presented: str, token: str) -> bool:
    """Whether ``presented`` is ``token``, compared in constant time; a lone surrogate from a
    JSON login (``"\\ud800"``) is kept as such and never matches (UTF-8 cannot encode it)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), token.encode("utf-8"))


class TokenGate(HttpMiddleware):
    """ASGI middleware: refuses requests without the token (401) or with a wrong one (403),
    except for the page shell and the login endpoint."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in OPEN_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        if presented is None:
            response = error_response(401, UNAUTHORIZED)
        elif not token_matches(presented, self.token):
            await asyncio.sleep(0.2)  # slow down guessing
            response = error_response(403, WRONG_TOKEN)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def token_middleware(token: str) -> Middleware:
    return Middleware(TokenGate, token=token)


def login_routes(token: str) -> list[BaseRoute]:
    """``POST /api/login`` (``{"token": ...}`` → the cookie) and ``POST /api/logout``."""

    async def login(request: Request) -> Response:
        if not is_json(request):
            return error_response(415, 'send the token as JSON: {"token": "..."}')
        try:
            given = loads_json(await request.body()).get("token")
        except (ValueError, AttributeError):
            given = None
        if not isinstance(given, str) or not token_matches(given.strip(), token):
            await asyncio.sleep(0.2)
            return error_response(403, WRONG_TOKEN)
        response = Response(status_code=204)
        response.set_cookie(
            _scope_cookie(request.scope),
            token,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            path="/",
            # Behind a TLS proxy on this machine (SECURITY.md; uvicorn believes its
            # X-Forwarded-Proto from loopback only): cookies are not tied to a scheme, and a
            # plain http request to the same name (a typed address, the proxy's port-80
            # redirect) carried the token in the clear over the Wi-Fi.
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = Response(status_code=204)
        response.delete_cookie(_scope_cookie(request.scope), path="/")
        return response

    return [
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
    ]
