"""The station over real loopback HTTP on the simulated rig: tokens, traversal, sessions."""

from __future__ import annotations

import fcntl
import gc
import io
import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from rig.session.folder import SessionConfig, SessionFolder
from rig.station.auth import TOKEN_ENV, load_token
from rig.station.errors import StationError
from rig.station.service import plan_from_request
from stacker.preview import PreviewServer
from stacker.preview.access import cookie_name
from tests.resources import open_files
from tests.stations import TOKEN, folder_entries


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


PLAN = {"from": "0mm", "to": "3mm", "frames": 6, "settle": 0.01}


# ------------------------------------------------------------------------------ tokens
@pytest.mark.slow
def test_requests_without_the_token_are_refused(server: PreviewServer) -> None:
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as anon:
        for path in ("/api/state", "/api/station", "/api/sessions", "/img/composite.jpg"):
            r = anon.get(path)
            assert r.status_code == 401, path
            assert "access token" in r.json()["error"]
        assert anon.post("/api/jog", json={"by": "1mm"}).status_code == 401
        assert anon.post("/api/sessions", json={"plan": PLAN}).status_code == 401
        with anon.stream("GET", "/api/events") as r:
            assert r.status_code == 401
        # The page shell loads, so it can ask for the token.
        assert anon.get("/").status_code == 200
        assert anon.get("/static/station.js").status_code == 200

        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        assert anon.get("/api/station", headers=wrong).status_code == 403
        anon.cookies.set(cookie_name(server.port), "not-the-token-at-all")
        assert anon.get("/api/station").status_code == 403
        assert anon.post("/api/login", json={"token": "guess"}).status_code == 403


def test_login_sets_a_strict_http_only_cookie(server: PreviewServer) -> None:
    with httpx.Client(base_url=server.url.rstrip("/"), timeout=5) as browser:
        r = browser.post("/api/login", json={"token": TOKEN})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/api/station").status_code == 200
        # Control requests must be JSON: a plain form from another page is refused.
        form = browser.post("/api/jog", data={"by": "1mm"})
        assert form.status_code == 415


def test_the_token_comes_from_the_option_or_a_private_file(tmp_path: Path) -> None:
    assert load_token("x" * 16, tmp_path / "t")[0] == "x" * 16
    with pytest.raises(StationError, match="at least 12"):
        load_token("short", tmp_path / "t")
    token, source = load_token(None, tmp_path / "cfg" / "token")
    assert len(token) >= 20 and source.endswith("(new)")
    assert (tmp_path / "cfg" / "token").stat().st_mode & 0o777 == 0o600
    assert load_token(None, tmp_path / "cfg" / "token") == (token, str(tmp_path / "cfg/token"))


def test_no_home_folder_for_the_token_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit or container with a user the system does not know and no HOME: Path.home()
    raises, and the station ended in a traceback. (The user is stood in for by making
    Path.home() fail as it then does: this test runs as a known user.)"""

    def unknown_user() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setattr(Path, "home", unknown_user)
    with pytest.raises(StationError, match=r"no home folder .*give --token-file"):
        load_token(None)


def test_stations_started_at_once_share_one_token(tmp_path: Path) -> None:
    """Two units starting at boot, the first time: each must serve the token the file keeps,
    not one the other overwrote (threads race through the look and the creation as processes
    would; an flock excludes both alike)."""
    for n in range(20):
        path = tmp_path / f"cfg{n}" / "station-token"
        start = threading.Barrier(6)
        tokens: list[str] = []

        def station(path: Path, start: threading.Barrier, tokens: list[str]) -> None:
            start.wait()
            tokens.append(load_token(None, path)[0])

        threads = [threading.Thread(target=station, args=(path, start, tokens)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(tokens) == {path.read_text().strip()}
        assert path.stat().st_mode & 0o777 == 0o600


def test_a_token_folder_held_locked_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rig.station.auth.TOKEN_FOLDER_WAIT_S", 0.2)
    path = tmp_path / "cfg" / "station-token"
    path.parent.mkdir()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StationError, match=r"cfg: another process keeps this folder locked"):
            load_token(None, path)
    finally:
        os.close(fd)
    assert load_token(None, path)[1].endswith("(new)")


# --------------------------------------------------------------------------- traversal
def _raw_get(server: PreviewServer, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as given (clients would normalise ``..`` away)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.slow
def test_only_files_of_its_own_sessions_are_served(station, server, client, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (tmp_path / "sessions" / "outside").symlink_to(tmp_path)  # a link out of the root
    sid = client.post("/api/sessions", json={"plan": PLAN, "name": "t1", "format": "jpg"})
    assert sid.status_code == 201, sid.text
    station.wait(60)
    frames = client.get("/api/sessions").json()[0]
    assert frames["id"] == "t1" and frames["frames"] == 6
    assert client.get("/api/sessions/t1/frames/frame_0001.jpg").status_code == 200

    refused = [
        "/api/sessions/..%2Fsecret.txt/composite",
        "/api/sessions/%2e%2e/composite",
        "/api/sessions/%2E%2E%2F%2E%2E/composite",
        "/api/sessions/outside/composite",
        "/api/sessions/t1/frames/..%2F..%2F..%2Fsecret.txt",
        "/api/sessions/t1/frames/%2e%2e%2fplan.json",
        "/api/sessions/t1/frames/%2Fetc%2Fpasswd",
        f"/api/sessions/t1/frames/{str(secret).replace('/', '%2F')}",
        "/api/sessions/t1/..%2F..%2Fsecret.txt",
        "/api/sessions/t1/plan.json",
        "/api/sessions/t1/journal.jsonl",
        "/api/sessions/t1/frames.zip/..%2F..%2Fsecret.txt",
    ]
    for path in refused:
        r = client.get(path)
        assert r.status_code == 404, path
        assert b"TOP SECRET" not in r.content and b"root:" not in r.content
    for target in (
        "/api/sessions/../../secret.txt",
        "/api/sessions/t1/frames/../../../secret.txt",
        "/api/sessions/t1/../../secret.txt",
        "//etc/passwd",
        f"/api/sessions/t1/frames/{secret}",
    ):
        status, data = _raw_get(server, target)
        assert status == 404, target
        assert b"TOP SECRET" not in data and b"root:" not in data

    bad = client.post("/api/sessions", json={"plan": PLAN, "name": "../evil"})
    assert bad.status_code == 400 and "session name" in bad.json()["error"]
    assert not (tmp_path / "evil").exists()
    # A FAT or exFAT disk mounted by Linux drops a last dot, and Windows cannot open such a folder.
    dotted = client.post("/api/sessions", json={"plan": PLAN, "name": "beetle."})
    assert dotted.status_code == 400 and "not '.' last" in dotted.json()["error"]
    # Named as the JSON calls it, as the other fields are, not as the command line does.
    beyond = client.post("/api/sessions", json={"plan": PLAN, "name": "t2", "reference": "99"})
    assert beyond.status_code == 400
    assert beyond.json()["error"].startswith("'reference' 99: the plan shoots")
    assert [s["id"] for s in client.get("/api/sessions").json()] == ["t1"]


# ---------------------------------------------------------------------------- sessions
def test_plan_jog_and_test_shot(station, client) -> None:
    plan = client.post("/api/plan", json={"from": "0mm", "to": "2mm", "step": "250um"})
    assert plan.status_code == 200 and plan.json()["frames"] == 9
    optics = client.post(
        "/api/plan", json={"from": "0mm", "to": "1mm", "magnification": 2, "f_number": 8}
    ).json()
    assert optics["optics"] and optics["frames"] > 2
    bad = client.post("/api/plan", json={"from": "0mm", "to": "2mm", "step": "5 parsecs"})
    assert bad.status_code == 400 and "'step'" in bad.json()["error"]
    both = client.post("/api/plan", json={"from": "0", "to": "2mm", "frames": 3})
    assert both.status_code == 400
    for settle in ("0.5s", 0.5, "0.5"):  # the same units as `rig plan --settle`
        timed = client.post(
            "/api/plan", json={"from": "0mm", "to": "1mm", "frames": 3, "settle": settle}
        )
        assert timed.status_code == 200, timed.text

    assert client.post("/api/jog", json={"by": "500um"}).json()["position"] == pytest.approx(500)
    assert client.post("/api/jog", json={"to": "1.5mm"}).json()["position"] == pytest.approx(1500)
    assert client.post("/api/jog", json={"by": "5 steps"}).status_code == 400

    shot = client.post("/api/test-shot", json={})
    assert shot.status_code == 200, shot.text
    assert (shot.json()["width"], shot.json()["height"]) == (320, 240)
    last = cv2.imdecode(np.frombuffer(client.get("/img/last.jpg").content, np.uint8), 1)
    assert last.shape == (240, 320, 3)
    assert client.get("/api/state").json()["progress"]["position_um"] == pytest.approx(1500)


def test_a_dng_composite_on_the_simulated_rig_is_refused_as_rig_demo_refuses_it(
    station, client
) -> None:
    """``"format": "dng"`` on ``rig station --sim`` made a session that shot its first frame
    and stopped there, nothing stacked, where ``rig demo --format dng`` is refused at once."""
    plan = {"from": "0mm", "to": "1mm", "frames": 3}
    refused = client.post("/api/sessions", json={"plan": plan, "format": "DNG"})
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "'format' dng stacks RAW frames, and the simulated camera shoots JPEG: use tif, png or jpg"
    )
    assert folder_entries(station) == []


@pytest.mark.slow
def test_start_stop_resume_and_download_through_the_api(station, client) -> None:
    plan = {**PLAN, "frames": 8, "settle": 0.3}  # still shooting when the stop arrives
    r = client.post("/api/sessions", json={"plan": plan, "name": "beetle"})
    assert r.status_code == 201 and r.json()["id"] == "beetle"
    assert client.post("/api/sessions", json={"plan": plan}).status_code == 409  # one at a time
    assert client.post("/api/jog", json={"by": "1mm"}).status_code == 409
    _wait(lambda: station.hub.progress.captured >= 2)
    stop = client.post("/api/sessions/beetle/stop", json={})
    assert stop.status_code == 202
    result = station.wait(60)
    assert result is not None and result.reason.value == "interrupted"
    state = client.get("/api/state").json()
    assert state["progress"]["state"] == "stopped"
    listed = client.get("/api/sessions").json()[0]
    assert listed["id"] == "beetle" and 2 <= listed["frames"] < 8 and listed["composite"]
    assert client.post("/api/sessions/beetle/stop", json={}).status_code == 404

    assert client.post("/api/sessions/beetle/resume", json={}).status_code == 202
    result = station.wait(60)
    assert result is not None and result.reason.value == "completed"
    assert client.get("/api/state").json()["progress"]["state"] == "finished"
    assert client.get("/api/sessions").json()[0]["frames"] == 8

    composite = client.get("/api/sessions/beetle/composite")
    assert composite.status_code == 200
    assert "beetle-composite.tif" in composite.headers["content-disposition"]
    img = cv2.imdecode(np.frombuffer(composite.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape[:2][0] > 200
    _resumable(client, "/api/sessions/beetle/composite", composite)
    depth = client.get("/api/sessions/beetle/depth")
    assert depth.status_code == 200 and depth.content[:4] == b"\x89PNG"
    z = client.get("/api/sessions/beetle/frames.zip")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = zf.namelist()
        assert names == [f"beetle/frames/frame_{i:04d}.jpg" for i in range(1, 9)]
        on_disk = (station.root / "beetle" / "frames" / "frame_0003.jpg").read_bytes()
        assert zf.read("beetle/frames/frame_0003.jpg") == on_disk
    assert client.get("/api/sessions/nope/composite").status_code == 404
    bogus = client.get("/api/sessions/beetle/bogus")  # every kind the README lists, named
    assert bogus.status_code == 404
    assert bogus.json()["error"].endswith(
        "use composite, depth, depth-json, depth-preview or thumbnail"
    )
    # What the 16-bit map's values mean: without it the map could not be read in µm.
    scale = client.get("/api/sessions/beetle/depth-json")
    assert scale.status_code == 200 and "json" in scale.headers["content-type"]
    assert scale.json() == json.loads((station.root / "beetle" / "depth.json").read_text())
    assert client.get("/api/sessions").json()[0]["depth_json"] is True
    assert client.get("/api/sessions/beetle/thumbnail").status_code == 200
    assert folder_entries(station) == ["beetle"]


@pytest.mark.slow
def test_the_session_list_asked_for_when_a_session_ends_shows_it_ended(station, client) -> None:
    """The page asks for the list once, when the station's "running" changes. It was told
    before the session's thread had ended, and the list, which asked the thread, still said
    "running": the session stayed so on the phone (the station browser test's 30 s timeouts
    under load)."""
    seen: list[str | None] = []
    told = station.hub.set_extra

    def set_extra(**extra):
        if "station" in extra and extra["station"]["running"] is None:
            seen.append(station.running)
            time.sleep(0.2)  # the page's request arrives while the thread is still here
            seen.append(station.running)
        return told(**extra)

    station.hub.set_extra = set_extra
    r = client.post("/api/sessions", json={"plan": {**PLAN, "frames": 2}, "name": "ant"})
    assert r.status_code == 201
    assert station.wait(60) is not None
    assert seen[-2:] == [None, None]


def test_a_page_told_of_a_move_is_not_told_otherwise_by_an_older_word(station) -> None:
    """Each change of the station's controls was read under its lock but published after
    letting go of it: a publish that read "no move" just before a jog began could land after
    the jog's own "jog", and every other phone's Stop stayed off for the whole jog. Here the
    older publish is held up (for half a second at most) until the jog's has gone out."""
    told = station.hub.set_extra
    jog_told = threading.Event()
    first = threading.Event()

    def set_extra(**extra):
        if not first.is_set():  # the older publish, which read "no move"
            first.set()
            jog_told.wait(0.5)
        result = told(**extra)
        if extra["station"]["moving"] == "jog":
            jog_told.set()
        return result

    station.hub.set_extra = set_extra
    older = threading.Thread(target=station._publish_controls)
    older.start()
    assert first.wait(5)
    with station._moving("jog"):
        older.join(5)
        assert station.hub.snapshot().extra["station"]["moving"] == "jog"


def test_a_download_cut_off_by_the_client_closes_its_file_at_once(station, server) -> None:
    """A phone that sleeps mid-download: the station lets go of the frame at once, not when
    the garbage collector (switched off here) finds the abandoned reader."""
    plan = plan_from_request(PLAN, units=station.units)
    folder = SessionFolder.create(station.root / "big", plan, SessionConfig(rig={}))
    folder.unlock()
    folder.make_frames_dir()
    (folder.frames_dir / "frame_0001.jpg").write_bytes(b"\xff\xd8" + bytes(40_000_000))
    gc.disable()
    try:
        for path in ("/api/sessions/big/frames/frame_0001.jpg", "/api/sessions/big/frames.zip"):
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", server.port)) as s:
                    s.sendall(
                        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
                    )
                    assert s.recv(65536).startswith(b"HTTP/1.1 200")
            _wait(lambda: not open_files(folder.root), timeout=10)
    finally:
        gc.enable()


def _resumable(client: httpx.Client, url: str, whole: httpx.Response) -> None:
    """A download cut off (a phone's Wi-Fi over a composite of hundreds of MB) started again
    from zero: the station sent the whole file whatever Range was asked, with nothing to tell
    the browser the file was still the same. A HEAD read the whole file too."""
    data, size = whole.content, len(whole.content)
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["etag"]
    etag, modified = whole.headers["etag"], whole.headers["last-modified"]
    for asked, (first, last) in {
        "bytes=100-199": (100, 199),
        f"bytes={size - 10}-": (size - 10, size - 1),
        "bytes=-5": (size - 5, size - 1),
        f"bytes=0-{size + 100}": (0, size - 1),
    }.items():
        part = client.get(url, headers={"Range": asked, "If-Range": etag})
        assert part.status_code == 206, (asked, part.status_code)
        assert part.content == data[first : last + 1]
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert client.get(url, headers={"Range": "bytes=0-9", "If-Range": modified}).status_code == 206
    changed = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
    assert changed.status_code == 200 and changed.content == data  # not the file it began
    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    for odd in ("bytes=5-3", "bytes=" + "9" * 5000 + "-", "items=0-9", "bytes=0-1,5-9"):
        whole = client.get(url, headers={"Range": odd})  # not a range to answer: all of it
        assert whole.status_code == 200 and whole.content == data, odd
    head = client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(size)
    assert head.content == b""
