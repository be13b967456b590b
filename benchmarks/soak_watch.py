"""``stacker watch --preview`` soaked: frames landing for a long time, preview clients that drop.

Runs the real command on a hot folder as its own process and drops ``--frames`` frames into
the folder one after another (a synthetic stack of a few frames, written again under new
names), while server-sent-event clients connect to the preview page and leave in turn:
closed, reset, half-closed, killed while reading, and stalled (a child stopped with SIGSTOP,
killed at the end). Every ``--every`` frames it records the watch's resident memory, open file
descriptors and threads; at the end, the frames stacked and merged, and what is left in the
hot folder that is no frame, beside the output, and in the watch's own ``$TMPDIR``.

    python benchmarks/soak_watch.py --frames 300 --clients 50
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.soak_station import end_stalled, record, save, sse_client, stop  # noqa: E402


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rig.sim.scene import SceneSpec, SyntheticStack
    from stacker.io import write_image

    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="soak-watch-"))
    hot, staged = work / "hot", work / "staged"
    hot.mkdir()
    staged.mkdir()
    stack = SyntheticStack(SceneSpec(width=width, height=height, seed=4), 6)
    sources = []
    for i, frame in enumerate(stack):
        sources.append(staged / f"f{i}.jpg")
        write_image(sources[-1], frame.image)
    tmp = work / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    cmd = [sys.executable, "-m", "stacker.cli", "watch", str(hot), "-o", str(work / "out.tif")]
    cmd += ["--preview", "--port", "0", "--settle", "0.05"]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    out: dict[str, Any] = {"rows": []}
    try:
        assert proc.stderr is not None
        port = 0
        while not port:
            line = proc.stderr.readline()
            assert line, "the watch ended before serving its preview"
            if m := re.search(r"Live preview: http://127\.0\.0\.1:(\d+)/", line):
                port = int(m[1])
        ways = ("closed", "reset", "half", "killed", "stalled")
        clients = 0
        for n in range(1, args.frames + 1):
            src = sources[(n - 1) % len(sources)]
            part = hot / f".part-{n:05d}"
            part.write_bytes(src.read_bytes())
            os.replace(part, hot / f"frame-{n:05d}.jpg")
            if clients < args.clients and n % max(1, args.frames // args.clients) == 0:
                clients += 1
                sse_client(port, ways[clients % len(ways)], token=None)
            time.sleep(args.pause)
            if n == 1 or n % args.every == 0:
                record(out["rows"], proc.pid, frames=n, clients=clients)
        end_stalled()
        time.sleep(3)
        record(out["rows"], proc.pid, frames=args.frames, clients=clients)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=10) as r:
            progress = json.load(r)["progress"]
        out["stacked"], out["merged"] = progress["stacked"], progress["merged"]
        out["in_tmpdir"] = sorted(os.listdir(tmp))
        out["not_frames_in_hot"] = sorted(p.name for p in hot.iterdir() if p.suffix != ".jpg")
        out["beside_output"] = sorted(p.name for p in work.iterdir())
        print({k: v for k, v in out.items() if k != "rows"})
    finally:
        stop(proc, 60)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--every", type=int, default=50, help="record the figures every N frames")
    ap.add_argument("--pause", type=float, default=0.15, help="seconds between frames")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path, default=HERE / "_work" / "soak_watch.json")
    args = ap.parse_args()
    save(args, run(args))


if __name__ == "__main__":
    main()
