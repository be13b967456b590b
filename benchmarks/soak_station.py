"""A station soaked over HTTP: sessions one after another, and event-stream clients that drop.

Starts ``rig station --sim`` as its own process, as systemd does on the Pi, and drives it
through its API only: ``--sessions`` short sessions (start, wait, list, thumbnail, composite,
half a frames.zip whose reader goes away, live view, a test shot), then ``--clients``
server-sent-event clients that connect and leave in turn: closed politely, reset, killed
while reading (a child process ended by SIGKILL), and stalled (a child stopped with SIGSTOP
while updates keep coming, then killed). Before and after each phase it records the station's
resident memory, open file descriptors and threads; at the end, what is left in its own
``$TMPDIR`` and any temporary file in the session folders.

    python benchmarks/soak_station.py --sessions 40 --clients 50
    python benchmarks/soak_station.py --sessions 5 --clients 10 --size 640x480
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.common import machine, write_json  # noqa: E402

TOKEN = "soak-token-0123456789"
PLAN = {"from": "0mm", "to": "1mm", "frames": 3, "settle": 0}


def figures(pid: int) -> dict[str, Any]:
    """RSS (MB), file descriptors and threads of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]
    return {
        "rss_mb": round(rss, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
    }


class Client:
    """A keep-alive JSON client of the station, with the token."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def ask(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Host": "127.0.0.1"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, data, headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.conn.close()  # the keep-alive connection timed out: once more
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.ask(method, path, body)
        assert status < 300, (method, path, status, data[:300])
        return json.loads(data)


def _sse_request(token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()


def _read_until_state(s: socket.socket) -> None:
    data = b""
    s.settimeout(10)
    while b"event: state" not in data:
        chunk = s.recv(65536)
        assert chunk, "the event stream ended"
        data += chunk


CHILD = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(sys.argv[2].encode())
s.recv(4096)
print("reading", flush=True)
while s.recv(4096):
    pass
"""


def sse_client(port: int, how: str, token: str | None = TOKEN) -> None:
    """One event-stream client that connects, hears the state, and leaves ``how``."""
    if how in ("killed", "stalled"):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(port), _sse_request(token).decode()],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdout.readline() == "reading\n"
        if how == "stalled":  # reads no more, its socket open: killed by end_stalled()
            child.send_signal(signal.SIGSTOP)
            STALLED.append(child)
            return
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        return
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(_sse_request(token))
    _read_until_state(s)
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "half":
        s.shutdown(socket.SHUT_WR)
    s.close()


STALLED: list[subprocess.Popen[str]] = []
"""The stalled clients' processes, still holding their connections."""


def end_stalled() -> None:
    """Kill the stalled clients, as a phone that never comes back is at last."""
    while STALLED:
        child = STALLED.pop()
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def record(rows: list[dict[str, Any]], pid: int, **where: Any) -> None:
    """Add process ``pid``'s figures at this point of the soak (``where``) to ``rows``, and print
    them."""
    rows.append({**where, **figures(pid)})
    print(rows[-1], flush=True)


def stop(proc: subprocess.Popen[str], wait_s: float) -> None:
    """End the soaked process as systemd does: SIGTERM, then SIGKILL if it has not ended within
    ``wait_s``."""
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def save(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Write ``result`` to ``args.json``, with the machine and the arguments it ran with."""
    write_json(args.json, {"machine": machine(), "args": {**vars(args), "json": str(args.json)},
                           **result})  # fmt: skip


def leftovers(sessions: Path, tmp: Path) -> dict[str, Any]:
    """What the station keeps in its temporary folder (``$TMPDIR``, its own here: the simulated
    rig's two folders), and entries in the sessions folder that look like temporary files."""
    odd = [
        str(p.relative_to(sessions))
        for p in sessions.rglob("*")
        if p.name.startswith((".tmp", "tmp")) or p.suffix in (".tmp", ".part")
    ]
    return {"in_tmpdir": sorted(os.listdir(tmp)), "odd_in_sessions": odd}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="soak-station-"))
    sessions, tmp = work / "sessions", work / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    cmd = [sys.executable, "-m", "rig.cli", "station", "--sim", "--size", args.size]
    cmd += ["--port", "0", "--token", TOKEN, "--sessions", str(sessions)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out: dict[str, Any] = {"rows": []}
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line)[1])  # type: ignore[index]
        api = Client(port)
        api.json("GET", "/api/station")

        def row(phase: str, n: int) -> None:
            record(out["rows"], proc.pid, phase=phase, n=n)

        row("start", 0)
        for n in range(1, args.sessions + 1):
            sid = api.json("POST", "/api/sessions", {"plan": PLAN, "name": f"s{n:03d}"})["id"]
            while api.json("GET", "/api/station")["running"] is not None:
                time.sleep(0.05)
            api.json("GET", "/api/sessions")
            assert api.ask("GET", f"/api/sessions/{sid}/thumbnail")[0] == 200
            assert api.ask("GET", f"/api/sessions/{sid}/composite")[0] == 200
            # A frames.zip whose reader goes away after the first bytes.
            with socket.create_connection(("127.0.0.1", port)) as z:
                z.sendall(
                    f"GET /api/sessions/{sid}/frames.zip HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
                )
                z.recv(1024)
            api.ask("GET", "/api/liveview?peaking=1")
            api.json("POST", "/api/test-shot", {})
            if n % args.delete_every == 0:
                api.json("POST", f"/api/sessions/{sid}/delete", {"confirm": sid})
            if n in (1, 2, 5) or n % 10 == 0 or n == args.sessions:
                row("sessions", n)
        ways = ("closed", "reset", "half", "killed", "stalled")
        for n in range(1, args.clients + 1):
            sse_client(port, ways[n % len(ways)])
            api.json("POST", "/api/jog", {"by": "10um"})  # an update every stream must hear
            if n % 10 == 0:
                row("sse clients", n)
        end_stalled()
        for _ in range(20):
            api.json("POST", "/api/jog", {"by": "10um"})
        time.sleep(2)
        row("after clients", args.clients)
        out["leftovers"] = leftovers(sessions, tmp)
        print(out["leftovers"])
    finally:
        stop(proc, 30)
        out["station_stderr_lines"] = len((proc.stderr.read() if proc.stderr else "").splitlines())
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    ap.add_argument("--delete-every", type=int, default=4, help="delete every Nth session")
    ap.add_argument("--keep", action="store_true", help="keep the sessions folder")
    ap.add_argument("--json", type=Path, default=HERE / "_work" / "soak_station.json")
    args = ap.parse_args()
    save(args, run(args))


if __name__ == "__main__":
    main()
