"""The station's memory when the page asks for every session's thumbnail at once.

Makes ``--sessions`` sessions, each with a 6000x4000 16-bit composite (PNG by default: the
format whose decoder runs beside others), starts ``rig station --sim`` on them with the
``rig`` of checkout ``--root``, asks for every thumbnail at the same moment, and prints the
station's peak RSS (``VmHWM``) and how long the answers took. Linux only (``/proc``).

    python benchmarks/bench_thumbnails.py
    python benchmarks/bench_thumbnails.py --root /tmp/stackrig-old    # an older checkout
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
import httpx
import numpy as np

from rig.plan import ShotPlan
from stacker.io import write_image

RIG_CLI = "import sys; sys.path.insert(0, sys.argv.pop(1)); from rig.cli import main; main()"
TOKEN = "bench-thumbnails-token"


def make_sessions(root: Path, count: int, ext: str) -> None:
    """``count`` sessions in ``root``, each a plan and one large 16-bit composite."""
    shutil.rmtree(root, ignore_errors=True)
    first = root / "big1"
    (first / "frames").mkdir(parents=True)
    (first / "plan.json").write_text(ShotPlan.from_frames(0.0, 1000.0, 2).to_json())
    image = np.random.default_rng(1).integers(0, 65535, (4000, 6000, 3), dtype=np.uint16)
    write_image(first / f"composite{ext}", image)
    for n in range(2, count + 1):
        shutil.copytree(first, root / f"big{n}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=common.HERE.parent, help="checkout to run")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--format", default="png", help="composite format: png or tif")
    args = ap.parse_args()
    folder = common.WORK / "thumbnail_sessions"
    make_sessions(folder, args.sessions, f".{args.format}")
    port = free_port()
    cmd = [sys.executable, "-c", RIG_CLI, str(args.root), "station", "--sim", "--sessions",
           str(folder), "--port", str(port), "--token", TOKEN, "--size", "320x240"]  # fmt: skip
    station = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        for _ in range(120):
            try:
                if httpx.get(base + "/api/station", headers=auth, timeout=2).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        answers: list[tuple[int, float]] = []
        t0 = time.perf_counter()

        def ask(n: int) -> None:
            r = httpx.get(f"{base}/api/sessions/big{n}/thumbnail", headers=auth, timeout=120)
            answers.append((r.status_code, time.perf_counter() - t0))

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(1, args.sessions + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status = Path(f"/proc/{station.pid}/status").read_text()
        peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    finally:
        station.terminate()
        station.wait(30)
    codes = sorted({code for code, _ in answers})
    last = max(t for _, t in answers)
    peak_kb = peak.split(":")[1].strip()
    print(
        f"{args.sessions} thumbnails of 6000x4000 16-bit {args.format.upper()} composites at "
        f"once: answers {codes}, the last after {last:.1f} s; station {peak_kb} at its peak"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
