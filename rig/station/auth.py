"""Who may use the station: its access token, where it is kept, and the gate that checks it.

The token comes from ``--token`` (or ``$STACKRIG_STATION_TOKEN``), else from a token file that
the first start creates with a random token (mode 0600), so a bookmarked address keeps working.
A token file other users may read is refused: whoever holds the token controls the rig.

Everything but the page shell (``/``, ``/static/``) and ``POST /api/login`` needs the token:
``Authorization: Bearer TOKEN`` (scripts), or the ``stackrig_token`` cookie that
``POST /api/login`` sets (``HttpOnly``, ``SameSite=Strict``, so other sites cannot ride on it).
A missing token is refused with 401, a wrong one with 403.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import secrets
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rig.station.errors import StationError
from stacker.preview.server import NO_STORE

TOKEN_ENV = "STACKRIG_STATION_TOKEN"
MIN_TOKEN_LENGTH = 12
COOKIE = "stackrig_token"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
OPEN_PATHS = frozenset({"/", "/api/login", "/favicon.ico"})
UNAUTHORIZED = (
    "this station needs its access token: open the address it printed at start "
    "(…/#token=…) or send Authorization: Bearer TOKEN"
)


def error_response(status: int, message: str) -> JSONResponse:
    """A JSON ``{"error": message}`` answer with ``status``, never cached."""
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def default_token_file() -> Path:
    """``$XDG_CONFIG_HOME/stackrig/station-token`` (``~/.config/...`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stackrig" / "station-token"


def load_token(token: str | None, token_file: Path | None = None) -> tuple[str, str]:
    """The station's access token and where it came from.

    ``token`` (``--token``, or the ``STACKRIG_STATION_TOKEN`` variable) wins; else the token file
    is read, or created with a new random token readable by its owner only.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN_LENGTH or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise StationError(
                f"--token: use at least {MIN_TOKEN_LENGTH} printable characters without spaces"
            )
        return token, "--token"
    path = token_file or default_token_file()
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise StationError(
                f"{path}: the token file can be read by other users (mode {mode & 0o777:o}); "
                f"make it private with chmod 600 {path}, or delete it for a new token"
            )
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise StationError(f"{path}: cannot read the token file ({exc.strerror})") from None
    if text:
        if len(text) < MIN_TOKEN_LENGTH:
            raise StationError(f"{path}: the token is too short; delete the file for a new one")
        return text, str(path)
    new = secrets.token_urlsafe(18)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new + "\n")
    except OSError as exc:
        raise StationError(
            f"{path}: cannot save the new token ({exc.strerror}); give one with --token"
        ) from None
    return new, f"{path} (new)"


def presented_token(scope: Scope) -> str | None:
    """The token a request carries: bearer header, else the login cookie."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie_header = headers.get("cookie")
    if cookie_header:
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except Exception:
            return None
        if COOKIE in cookies:
            return cookies[COOKIE].value
    return None


def token_matches(presented: str, token: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))


class TokenGate:
    """ASGI middleware: refuses requests without the station's token (401) or with a wrong one
    (403), except for the page shell and the login endpoint."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in OPEN_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        if presented is None:
            response = error_response(401, UNAUTHORIZED)
        elif not token_matches(presented, self.token):
            await asyncio.sleep(0.2)  # slow down guessing
            response = error_response(403, "wrong access token for this station")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
