"""The live preview over real HTTP: open on loopback, behind a token beyond it."""

from __future__ import annotations

import io
import re

import httpx

from stacker.preview import PreviewHub
from stacker.preview.access import COOKIE
from stacker.preview.server import serve_preview


def test_a_preview_beyond_loopback_needs_the_printed_token() -> None:
    """Issue 11 item 11: listening on every address, the preview warns once and asks for the
    token printed in its address; on loopback it stays open."""
    hub = PreviewHub(title="t")
    out = io.StringIO()
    server = serve_preview(hub, "0.0.0.0", 0, out=out)
    try:
        printed = out.getvalue()
        assert printed.count("warning:") == 1
        token = re.search(r"#token=(\S+)", printed)
        assert token is not None, printed
        base = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=base, timeout=5) as browser:
            assert browser.get("/api/state").status_code == 401
            assert browser.get("/img/last.jpg").status_code == 401
            assert browser.get("/").status_code == 200  # the shell, to ask for the token
            assert "login.js" in browser.get("/").text
            assert browser.get("/static/login.js").status_code == 200
            assert browser.post("/api/login", json={"token": "guess"}).status_code == 403
            assert browser.post("/api/login", json={"token": token[1]}).status_code == 204
            assert COOKIE in browser.cookies
            assert browser.get("/api/state").status_code == 200
        bearer = {"Authorization": f"Bearer {token[1]}"}
        assert httpx.get(base + "/api/state", headers=bearer, timeout=5).status_code == 200
    finally:
        server.stop()

    out = io.StringIO()
    server = serve_preview(hub, "127.0.0.1", 0, out=out)
    try:
        assert "#token=" not in out.getvalue() and "warning" not in out.getvalue()
        assert httpx.get(server.url + "api/state", timeout=5).status_code == 200
    finally:
        server.stop()
