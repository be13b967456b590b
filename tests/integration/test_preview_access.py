"""The live preview over real HTTP: open on loopback, behind a token beyond it."""

from __future__ import annotations

import io
import re

import httpx
import pytest

from stacker.preview import PreviewHub
from stacker.preview.access import cookie_name
from stacker.preview.server import serve_preview


@pytest.mark.slow
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
            shell = browser.get("/")
            assert shell.status_code == 200  # the shell, to ask for the token
            assert shell.headers["x-frame-options"] == "DENY"  # no other site frames it
            assert shell.headers["content-security-policy"] == "frame-ancestors 'none'"
            assert browser.get("/api/state").headers["x-content-type-options"] == "nosniff"
            assert "login.js" in browser.get("/").text
            assert browser.get("/static/login.js").status_code == 200
            assert browser.post("/api/login", json={"token": "guess"}).status_code == 403
            plain = browser.post("/api/login", json={"token": token[1]})
            assert plain.status_code == 204 and "secure" not in plain.headers["set-cookie"]
            assert cookie_name(server.port) in browser.cookies
            # Behind a TLS proxy on this machine, the cookie is for https only.
            proxied = httpx.post(
                base + "/api/login",
                json={"token": token[1]},
                headers={"X-Forwarded-Proto": "https"},
                timeout=5,
            )
            assert proxied.status_code == 204
            assert "; secure" in proxied.headers["set-cookie"].lower()
            assert browser.get("/api/state").status_code == 200
        bearer = {"Authorization": f"Bearer {token[1]}"}
        assert httpx.get(base + "/api/state", headers=bearer, timeout=5).status_code == 200
        # An empty login cookie is no token's match (HTTP strips a bearer header to "Bearer").
        for cookie in (f"{cookie_name(server.port)}=", f'{cookie_name(server.port)}=""'):
            for path in ("/api/state", "/img/last.jpg", "/api/events"):
                answer = httpx.get(base + path, headers={"Cookie": cookie}, timeout=5)
                assert answer.status_code in (401, 403), (cookie, path, answer.status_code)
    finally:
        server.stop()

    out = io.StringIO()
    server = serve_preview(hub, "127.0.0.1", 0, out=out)
    try:
        assert "#token=" not in out.getvalue() and "warning" not in out.getvalue()
        assert httpx.get(server.url + "api/state", timeout=5).status_code == 200
    finally:
        server.stop()


def test_logins_to_servers_on_two_ports_of_one_host_do_not_log_each_other_out() -> None:
    """Browsers keep cookies per host name, not per port: with one cookie name, logging in to
    a preview on one port replaced the login of a station or preview on another, whose page
    then got 403 on every request."""
    outs = [io.StringIO(), io.StringIO()]
    servers = [serve_preview(PreviewHub(title="t"), "0.0.0.0", 0, out=out) for out in outs]
    try:
        bases = [f"http://127.0.0.1:{server.port}" for server in servers]
        tokens = [re.findall(r"#token=(\S+)", out.getvalue())[0] for out in outs]
        with httpx.Client(timeout=5) as browser:  # one cookie jar for the host, as a browser
            for base, token in zip(bases, tokens, strict=True):
                assert browser.post(base + "/api/login", json={"token": token}).status_code == 204
            for base in bases:
                assert browser.get(base + "/api/state").status_code == 200
            assert browser.post(bases[0] + "/api/logout").status_code == 204
            assert browser.get(bases[0] + "/api/state").status_code == 401
            assert browser.get(bases[1] + "/api/state").status_code == 200
    finally:
        for server in servers:
            server.stop()
