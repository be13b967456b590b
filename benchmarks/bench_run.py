"""The whole ``stacker stack`` process on a 24 MP stack: on all cores and pinned to one.

Each run is the real command in a fresh process (start-up, decoding, stacking, writing):

    stacker stack FOLDER -o OUT.tif [--depth-map D.png]

timed wall-clock from launch to exit, with its peak RSS (``RUSAGE_CHILDREN`` of a helper
process that runs only it) and, from the command's own summary line, the time from the last
frame merged to the outputs written ("final") and from the last frame read to the same.
Beside it, the floor: a process that merely decodes the same JPEGs one after the other
(the fastest of ``cv2.imread`` of each file, with and without an output argument, and
``cv2.imdecode`` of its bytes, summed). Runs
on all cores and runs pinned to core 0 with ``taskset -c 0`` alternate (1, all, all, 1, ...),
so that a machine shared with other jobs disturbs both alike; the 1-minute load average is
recorded before every run. On a shared machine, raise the run's CPU share by running it from
a shell whose autogroup is niced (``echo -20 > /proc/self/autogroup``, as root): with
autogrouping, a plain ``nice`` only ranks processes within their own session.

    python benchmarks/bench_run.py --mp 24 --frames 24 --repeats 3

With ``--against OTHER`` (a checkout or a ``git archive`` of one) it compares instead: runs of
this checkout and of ``OTHER`` on all cores, alternated, and the ratio of each pair, which a
machine whose speed drifts between runs disturbs less than it does medians taken apart. Give an
even ``--repeats``: each checkout then runs first in half the pairs, and the order-balanced
ratio cancels what running first does by itself.

The bars, recorded rather than asserted: at most 1.0 s per frame and at most 4x the decode
time; peak RSS at most 1.5 GB; the result written within 1.5 s of the last frame; on two cores
at least 1.6x faster than on one. From the 1-to-N-core speed-up the script also gives the
parallel fraction (Amdahl) and what it predicts for four cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

FINAL = re.compile(r"written ([0-9.]+) s after the last frame was stacked \(([0-9.]+) s after")


def decode_floor(folder: Path) -> dict[str, float]:
    """Seconds to decode every frame of ``folder`` once, in a fresh process (files cached):
    with ``cv2.imread`` from the file, with it given an output argument too where OpenCV takes
    one (``imread(name, None, flags)``, OpenCV 5 on, a quarter faster there, and what the
    stacker's reader uses), and with ``cv2.imdecode`` from its bytes in memory (which adds a
    copy of the result). The floor is the fastest."""
    code = (
        "import json, sys, time, cv2, numpy as np\n"
        "into = int(cv2.__version__.split('.')[0]) >= 5\n"
        "total = {'imread': 0.0, 'imdecode': 0.0, **({'imread_into': 0.0} if into else {})}\n"
        "for p in sys.argv[1:]:\n"
        "    t = time.perf_counter()\n"
        "    img = cv2.imread(p, cv2.IMREAD_COLOR)\n"
        "    total['imread'] += time.perf_counter() - t\n"
        "    del img\n"
        "    if into:\n"
        "        t = time.perf_counter()\n"
        "        img = cv2.imread(p, None, cv2.IMREAD_COLOR)\n"
        "        total['imread_into'] += time.perf_counter() - t\n"
        "        del img\n"
        "    data = np.fromfile(p, dtype=np.uint8)\n"
        "    t = time.perf_counter()\n"
        "    img = cv2.imdecode(data, cv2.IMREAD_COLOR)\n"
        "    total['imdecode'] += time.perf_counter() - t\n"
        "    del img\n"
        "print(json.dumps(total))\n"
    )
    paths = [str(p) for p in common.frame_paths(folder)]
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True)
    out.check_returncode()
    totals: dict[str, float] = json.loads(out.stdout)
    return {**totals, "floor": min(totals.values())}


def run_stack(
    folder: Path, out: Path, cores: str | None, extra: list[str], root: Path
) -> dict[str, Any]:
    """One ``stacker stack`` process with the ``stacker`` of checkout ``root``; ``cores`` is a
    taskset list ("0") or None for all."""
    cmd = [sys.executable, "-c", common.STACKER_CLI, str(root), "stack", str(folder), "-o",
           str(out), *extra]  # fmt: skip
    if cores is not None:
        cmd = ["taskset", "-c", cores, *cmd]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=common.HERE.parent)  # fmt: skip
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    # communicate() has reaped the child: its peak RSS is in the children's usage, which only
    # ever grows, so every run starts from a fresh interpreter below (see main).
    if proc.returncode != 0:
        raise SystemExit(f"stacker stack failed ({proc.returncode}):\n{stderr[-2000:]}")
    match = FINAL.search(stdout)
    return {
        "cores": cores or "all",
        "wall_s": wall,
        "final_s": float(match.group(1)) if match else None,
        "from_read_s": float(match.group(2)) if match else None,
        "load_1min": load,
        "stdout": stdout.strip(),
    }


def measured(
    folder: Path, out: Path, cores: str | None, extra: list[str], root: Path
) -> dict[str, Any]:
    """``run_stack`` in a fresh helper process, so ``RUSAGE_CHILDREN`` is this run's alone."""
    helper = [sys.executable, __file__, "--one", str(folder), "--out", str(out)]
    helper += ["--root", str(root)]
    helper += ["--cores", cores or "all", "--", *extra]
    proc = subprocess.run(helper, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout)


def one(folder: Path, out: Path, cores: str, extra: list[str], root: Path) -> int:
    import resource

    r = run_stack(folder, out, None if cores == "all" else cores, extra, root)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    r["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    # CPU time is what the run costs whatever else shares the machine: on an idle machine
    # the wall time cannot be less than cpu_s / cores.
    r["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(r))
    return 0


def amdahl(speedup: float, cores: int) -> float:
    """Parallel fraction implied by ``speedup`` on ``cores`` cores."""
    return (1 - 1 / speedup) / (1 - 1 / cores)


def order_balanced(ratios: list[float]) -> dict[str, float]:
    """Geometric means of the pairs' ratios (this / that) with this checkout run first (pairs
    0, 2, ...) and run second (1, 3, ...), and the geometric mean of the two: the ratio with
    the effect of the order itself cancelled. On the benchmark machine the first run of a pair,
    the one after the decode floor, ran 10-25 % slower (2026-12-05), so a median of an odd
    number of pairs leans towards whichever ran first more often."""
    groups = [ratios[0::2], ratios[1::2]]
    means = [math.exp(statistics.fmean(math.log(r) for r in g)) if g else math.nan for g in groups]
    return {
        "this_first": means[0],
        "this_second": means[1],
        "balanced": math.sqrt(means[0] * means[1]) if groups[1] else math.nan,
    }


def paired(folder: Path, out: Path, args: argparse.Namespace) -> int:
    """``--against``: this checkout and another alternated on all cores (A B, B A, ...), so
    that a machine whose speed drifts from minute to minute slows both alike, and the ratio
    within each pair says what the change did."""
    decodes = [decode_floor(folder)["floor"]]
    pairs: list[dict[str, Any]] = []
    for i in range(args.repeats):
        if i:
            decodes.append(decode_floor(folder)["floor"])  # the machine's pace, pair by pair
        roots = [args.root, args.against] if i % 2 == 0 else [args.against, args.root]
        got = {}
        for root in roots:
            got[root] = r = measured(folder, out, None, args.extra, root)
            print(f"  {root}: {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, "
                  f"{r['peak_rss_mb']:.0f} MB (load {r['load_1min']:.1f})", flush=True)  # fmt: skip
        pairs.append({"this": got[args.root], "against": got[args.against]})
    wall = {k: [p[k]["wall_s"] for p in pairs] for k in ("this", "against")}
    ratio = [a / b for a, b in zip(wall["this"], wall["against"], strict=True)]
    cpu = [p["this"]["cpu_s"] / p["against"]["cpu_s"] for p in pairs]
    decode = statistics.median(decodes)
    summary = {
        "decode_s": decode,
        "decode_runs_s": decodes,
        "this_s": statistics.median(wall["this"]),
        "against_s": statistics.median(wall["against"]),
        "wall_ratios": ratio,
        "cpu_ratios": cpu,
        "wall_by_order": order_balanced(ratio),
        "cpu_by_order": order_balanced(cpu),
    }
    print(
        f"\ndecode alone {decode:.2f} s; this {summary['this_s']:.1f} s "
        f"({summary['this_s'] / decode:.1f}x decode), {args.against} {summary['against_s']:.1f} s "
        f"({summary['against_s'] / decode:.1f}x); this / that, pair by pair: wall "
        f"{', '.join(f'{x:.3f}' for x in ratio)} (median {statistics.median(ratio):.3f}), "
        f"CPU {', '.join(f'{x:.3f}' for x in cpu)} (median {statistics.median(cpu):.3f})"
    )
    for kind in ("wall", "cpu"):
        o = summary[f"{kind}_by_order"]
        print(
            f"{kind}: this run first {o['this_first']:.3f}, second {o['this_second']:.3f}, "
            f"order-balanced {o['balanced']:.3f}"
        )
    if args.repeats % 2:
        print("(an odd number of pairs: the medians lean towards the one run first more often)")
    common.write_json(args.json, {"machine": common.machine(), "summary": summary, "pairs": pairs})
    print(f"wrote {args.json}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mp", type=float, default=24.0)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3, help="runs per core setting (default 3)")
    ap.add_argument("--format", default="tif", help="output format: tif, png or jpg")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_run.json")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cores", default="all", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, default=common.HERE.parent,
                    help="checkout whose stacker/ runs (default: this one)")  # fmt: skip
    ap.add_argument("--against", type=Path,
                    help="another checkout: runs of both, alternated, compared")  # fmt: skip
    ap.add_argument("extra", nargs="*", help="more stacker stack options, after --")
    args = ap.parse_args()
    if args.one:
        return one(args.one, args.out, args.cores, args.extra, args.root)
    if shutil.which("taskset") is None:
        print("bench_run: taskset (util-linux) is needed to pin a run to one core")
        return 2

    folder = common.ensure_stack(args.mp, args.frames)
    out = common.WORK / f"bench_run_out.{args.format}"
    if args.against:
        return paired(folder, out, args)
    ncores = len(os.sched_getaffinity(0))
    decodes: list[dict[str, float]] = []
    runs: list[dict[str, Any]] = []
    decodes.append(decode_floor(folder))  # also brings the files into the page cache
    for i in range(args.repeats):
        order = ["0", None] if i % 2 == 0 else [None, "0"]
        for cores in order:
            r = measured(folder, out, cores, args.extra, args.root)
            runs.append(r)
            print(
                f"  cores {r['cores']:>3}: {r['wall_s']:.1f} s, final {r['final_s']} s, "
                f"{r['peak_rss_mb']:.0f} MB, cpu {r['cpu_s']:.1f} s (load {r['load_1min']:.1f})",
                flush=True,
            )
        decodes.append(decode_floor(folder))
    decode = statistics.median(d["floor"] for d in decodes)
    one_core = [r for r in runs if r["cores"] == "0"]
    all_cores = [r for r in runs if r["cores"] == "all"]
    t1 = statistics.median(r["wall_s"] for r in one_core)
    tn = statistics.median(r["wall_s"] for r in all_cores)
    speedup = t1 / tn
    p = amdahl(speedup, ncores) if ncores > 1 else float("nan")
    summary = {
        "mp": args.mp,
        "frames": args.frames,
        "cores": ncores,
        "decode_s": decode,
        "decode_runs_s": decodes,
        "one_core_s": t1,
        "all_cores_s": tn,
        "per_frame_s": tn / args.frames,
        "x_decode": tn / decode,
        "final_s": statistics.median(r["final_s"] for r in all_cores),
        "from_read_s": statistics.median(r["from_read_s"] for r in all_cores),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "cpu_s_one_core": statistics.median(r["cpu_s"] for r in one_core),
        "cpu_s_all_cores": statistics.median(r["cpu_s"] for r in all_cores),
        "speedup": speedup,
        "parallel_fraction": p,
        "predicted_4_cores_speedup": 1 / ((1 - p) + p / 4) if ncores > 1 else None,
    }
    rows = [
        [f"{r['cores']}", f"{r['wall_s']:.1f}", f"{r['wall_s'] / args.frames:.2f}",
         f"{r['wall_s'] / decode:.1f}x", f"{r['final_s']}", f"{r['from_read_s']}",
         f"{r['peak_rss_mb']:.0f}", f"{r['cpu_s']:.1f}",
         f"{r['load_1min']:.1f}"]
        for r in runs
    ]  # fmt: skip
    header = ["cores", "total s", "s/frame", "x decode", "final s", "from read s", "peak MB",
              "cpu s", "load"]  # fmt: skip
    print(f"\n{args.frames} frames at {args.mp:g} MP; decode alone {decode:.2f} s (median)")
    print(common.table(rows, header))
    print(
        f"\nmedian: {tn:.1f} s on {ncores} cores ({tn / args.frames:.2f} s/frame, "
        f"{tn / decode:.1f}x decode), {t1:.1f} s on one: speed-up {speedup:.2f}x; "
        f"parallel fraction {p:.2f}, predicting {summary['predicted_4_cores_speedup']:.2f}x "
        "on four cores"
    )
    common.write_json(args.json, {"machine": common.machine(), "summary": summary, "runs": runs})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
