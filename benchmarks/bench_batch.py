"""Throughput of ``stacker batch``: stacks per minute on a LocalCluster of 1 and 2 workers.

The stacks are synthetic JPEG focus stacks (the benchmark scene, default 12 stacks of 6 frames
at 2 MP), rendered once into ``benchmarks/_work/``. Each worker count runs
:func:`stacker.batch.run_batch` into a fresh output folder, as ``stacker batch`` does, and
reports the end-to-end rate (cluster start included), the steady rate (between the first and the
last stack finished), the mean time a task took, and the input it read per second.

    .venv/bin/python benchmarks/bench_batch.py --stacks 12 --frames 6 --mp 2 --workers 1,2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common

from rig.sim.scene import SceneSpec, write_stack
from stacker.batch import StackReport, find_stacks, run_batch
from stacker.options import StackOptions

OPTIONS = {"stack": StackOptions(), "strict": False, "jpeg_quality": 95}


def ensure_stacks(n: int, frames: int, mp: float) -> Path:
    """``n`` stack folders of ``frames`` JPEGs at ``mp`` MP, rendered once."""
    root = common.WORK / f"batch_{n}x{frames}f_{mp:g}mp"
    w, h = common.size_for_mp(mp)
    missing = [i for i in range(n) if not (root / f"s{i:03d}" / "synthetic_truth.json").exists()]
    if missing:
        print(f"rendering {len(missing)} stacks of {frames} frames {w}x{h} (once) ...", flush=True)
    for i in missing:
        write_stack(root / f"s{i:03d}", SceneSpec(width=w, height=h, seed=1000 + i), frames)
    return root


def run(root: Path, workers: int) -> dict[str, Any]:
    out = common.WORK / f"_batch_out_{workers}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = find_stacks([root], out)
    finished: list[float] = []

    def on_report(rep: StackReport) -> None:
        finished.append(time.perf_counter())

    t0 = time.perf_counter()
    summary = run_batch(jobs, OPTIONS, out / "report.jsonl", workers=workers, on_report=on_report)
    wall = time.perf_counter() - t0
    done = [r for r in summary.reports if r.status == "done"]
    assert len(done) == len(jobs), [r.error for r in summary.reports if r.error]
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) * 60 if len(finished) > 1 else 0
    input_mb = sum(f.stat().st_size for job in jobs for f in job.frames) / 2**20
    return {
        "workers": workers,
        "stacks": len(jobs),
        "wall_s": wall,
        "stacks_per_min": len(jobs) / wall * 60,
        "steady_stacks_per_min": steady,
        "task_mean_s": statistics.mean(r.seconds for r in done),
        "task_peak_mb_max": max(r.peak_memory_mb or 0 for r in done),
        "input_mb": input_mb,
        "input_mb_per_s": input_mb / wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", type=int, default=12)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--mp", type=float, default=2.0)
    ap.add_argument("--workers", default="1,2", help="worker counts, comma separated")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_batch.json")
    args = ap.parse_args()
    root = ensure_stacks(args.stacks, args.frames, args.mp)
    results, rows = [], []
    for n in (int(x) for x in args.workers.split(",")):
        r = run(root, n)
        results.append(r)
        rows.append([str(n), str(r["stacks"]), f"{r['wall_s']:.1f}", f"{r['stacks_per_min']:.1f}",
                     f"{r['steady_stacks_per_min']:.1f}", f"{r['task_mean_s']:.1f}",
                     f"{r['task_peak_mb_max']:.0f}", f"{r['input_mb_per_s']:.2f}"])  # fmt: skip
    header = ["workers", "stacks", "wall s", "stacks/min", "steady/min", "task s", "task MB",
              "input MB/s"]  # fmt: skip
    print(common.table(rows, header))
    common.write_json(args.json, {"machine": common.machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
