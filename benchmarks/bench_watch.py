"""The whole ``stacker watch`` process on a hot folder filled beforehand (a shoot copied in, or a
watch started after the camera): how long until the composite is on disk.

Each run is the real command in a fresh process, on a fresh folder of links to the same frames:

    stacker watch HOT -o OUT.tif --idle-timeout 2s --no-preview

timed from launch to exit (the idle timeout included: the wall time less it is the time to
stack and write), with its peak RSS and system CPU time. With ``--against OTHER`` (a checkout
or a ``git archive`` of one) runs of this checkout and of ``OTHER`` alternate, each first in
half the pairs.

    python benchmarks/bench_watch.py --mp 24 --frames 24 --repeats 2 --against /tmp/old
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

IDLE_S = 2.0


def run_watch(frames: Path, root: Path, work: Path) -> dict[str, Any]:
    """One ``stacker watch`` of a new folder holding links to ``frames``' JPEGs."""
    hot = work / "hot"
    shutil.rmtree(hot, ignore_errors=True)
    hot.mkdir(parents=True)
    for path in common.frame_paths(frames):
        os.link(path, hot / path.name)  # old files: no settle wait, as a folder filled earlier
    out = work / "watch_out.tif"
    cmd = [sys.executable, "-c", common.STACKER_CLI, str(root), "watch", str(hot), "-o",
           str(out), "--idle-timeout", f"{IDLE_S:g}s", "--no-preview"]  # fmt: skip
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = (stream.read().decode() for stream in (proc.stdout, proc.stderr))
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stacker watch failed:\n{stderr[-2000:]}")
    return {
        "root": str(root),
        "wall_s": wall,
        "stack_and_write_s": wall - IDLE_S,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "sys_s": usage.ru_stime,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_1min": load,
        "summary": stdout.strip().splitlines()[-1] if stdout.strip() else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mp", type=float, default=24.0, help="frame size in megapixels")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each checkout")
    ap.add_argument("--against", type=Path, help="another checkout, run alternately")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_watch.json")
    args = ap.parse_args()
    frames = common.ensure_stack(args.mp, args.frames)
    work = common.WORK / "watch"
    here = common.HERE.parent
    roots = [here] if args.against is None else [here, args.against.resolve()]
    rows: list[dict[str, Any]] = []
    for i in range(args.repeats):
        order = roots if i % 2 == 0 else roots[::-1]
        for root in order:
            r = run_watch(frames, root, work)
            rows.append(r)
            print(f"  {root}: {r['wall_s']:.1f} s ({r['stack_and_write_s']:.1f} s to stack and "
                  f"write), {r['peak_rss_mb']:.0f} MB, sys {r['sys_s']:.1f} s "
                  f"(load {r['load_1min']:.1f})", flush=True)  # fmt: skip
    table = []
    for root in roots:
        mine = [r for r in rows if r["root"] == str(root)]
        table.append([
            str(root), f"{statistics.median(r['stack_and_write_s'] for r in mine):.1f}",
            ", ".join(f"{r['stack_and_write_s']:.1f}" for r in mine),
            f"{max(r['peak_rss_mb'] for r in mine):.0f}",
            f"{statistics.median(r['sys_s'] for r in mine):.1f}",
        ])  # fmt: skip
    print(f"\n{args.frames} frames at {args.mp:g} MP in the folder before the watch began; "
          f"idle timeout {IDLE_S:g} s left out")  # fmt: skip
    header = ["checkout", "median s", "runs s", "peak MB", "sys s"]
    print(common.table(table, header))
    common.write_json(args.json, {"machine": common.machine(), "args": vars(args) | {
        "against": str(args.against), "json": str(args.json)}, "runs": rows})  # fmt: skip
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
