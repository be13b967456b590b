"""The station flooded with idle connections while it shoots a session.

Starts ``rig station --sim`` as systemd would leave it (soft limit of 1,024 open files, the
example unit sets none), starts a session of ``--frames`` frames through the API, then opens
``--connections`` TCP connections from 127.0.0.1 that send nothing, reopening each one the
station closes, for ``--seconds``: no token is needed for that. Meanwhile a client on another
loopback address (127.0.0.2, a phone beside the flooding device) asks for the station's state
once a second. Reports how the session ended, how many frames it shot, how those requests
were answered and how many lines the station printed.

    python benchmarks/flood_station.py --connections 1100 --seconds 15 --frames 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "flood-benchmark-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(port: int, path: str, body: dict | None = None) -> tuple:
    """(status, JSON answer or None, seconds) of one request with the token."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null"), time.monotonic() - t0
    except OSError as exc:
        return type(exc).__name__, None, time.monotonic() - t0


def ask_from(port: int, path: str, source: str) -> tuple:
    """(status, None, seconds) of a GET of ``path`` sent from the loopback address ``source``."""
    t0 = time.monotonic()
    try:
        address = ("127.0.0.1", port)
        with socket.create_connection(address, timeout=10, source_address=(source, 0)) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode()
            )
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    except OSError as exc:
        return type(exc).__name__, None, time.monotonic() - t0
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else "no answer"
    return status, None, time.monotonic() - t0


def flood(port: int, count: int, seconds: float, peak: list[int]) -> None:
    """Hold ``count`` idle connections for ``seconds``, reopening those the station closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 200)), hard))
    selector = selectors.DefaultSelector()
    held: set[socket.socket] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        while len(held) < count:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                break
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
            held.add(s)
        peak[0] = max(peak[0], len(held))
        for key, _ in selector.select(0.2):
            s = key.fileobj  # type: ignore[assignment]
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                selector.unregister(s)
                held.discard(s)
                s.close()
    for s in held:
        s.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--nofile", type=int, default=1024, help="the station's soft limit")
    parser.add_argument("--keep", action="store_true", help="keep the sessions and log folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="flood-station-"))
    port = free_port()
    log_path = work / "station.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    rig = [sys.executable, "-m", "rig.cli"]
    with open(log_path, "wb") as log:
        station = subprocess.Popen(
            [*rig, "station", "--sim", "--port", str(port), "--token", TOKEN,
             "--sessions", str(work / "sessions"), "--size", "640x480"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        for _ in range(100):
            if ask(port, "/api/station")[0] == 200:
                break
            time.sleep(0.2)
        ask(port, "/api/unlock", {})
        plan = {"from": "-3mm", "to": "-1mm", "frames": args.frames, "settle": "0.3s"}
        started = ask(port, "/api/sessions", {"plan": plan, "name": "flooded"})
        assert started[0] == 201, started
        time.sleep(2)
        peak = [0]
        flooding = threading.Thread(target=flood, args=(port, args.connections, args.seconds, peak))
        flooding.start()
        answers = []
        time.sleep(1)
        while flooding.is_alive():
            answers.append(ask_from(port, "/api/station", "127.0.0.2"))
            time.sleep(1)
        flooding.join()
        for _ in range(120):
            state = ask(port, "/api/state")[1]
            progress = (state or {}).get("progress", {})
            if progress.get("state") in ("finished", "failed"):
                break
            time.sleep(1)
    finally:
        station.terminate()
        station.wait(60)
    answered = [a for a in answers if a[0] == 200]
    lines = log_path.read_text(errors="replace").splitlines()
    print(f"session: {progress.get('state')}, {progress.get('captured')} of {args.frames} shot"
          + (f" ({progress['message']})" if progress.get("message") else ""))  # fmt: skip
    print(f"flood: {peak[0]} connections held at the peak, {args.seconds:g} s")
    print(
        f"another address during the flood: {len(answered)} of {len(answers)} answered 200"
        + (f", slowest {max(a[2] for a in answered):.3f} s" if answered else "")
        + f"; others: {sorted({str(a[0]) for a in answers if a[0] != 200}) or 'none'}"
    )
    ok = progress.get("state") == "finished" and len(answered) == len(answers)
    if ok and not args.keep:
        shutil.rmtree(work)
        print(f"station's output: {len(lines)} lines")
    else:
        print(f"station's output: {len(lines)} lines (kept in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
