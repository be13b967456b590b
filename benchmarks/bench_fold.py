"""The pyramid merge's own time per frame, on one thread and split over two.

In a pipelined run (``stacker stack``, a capture session) every frame's merge waits for the
one before it, so the merge stage's time per frame bounds the rate however many cores the
machine has: on four cores or more the other stages (decoding, aligning) fit beside it. On
more than one core :meth:`stacker.merge.PyramidMerger.fold` makes and merges the finest band
on a helper thread while it does the rest; this script times ``fold`` alone, frames already
decoded, aligned and tracked (``Stacker(overlap=False)``), both ways in the same process,
alternating stacks (one thread, two, one, ...), and checks the two composites are the same.

    python benchmarks/bench_fold.py --mp 24 --frames 24 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import common
import cv2
import numpy as np

from stacker import merge
from stacker.stack import Stacker


def stack(images: list[np.ndarray], threads: int) -> tuple[list[float], np.ndarray]:
    """Seconds spent in ``fold`` per frame, and the composite, stacking on ``threads``."""
    seconds: list[float] = []
    fold = merge.PyramidMerger.fold

    def timed(self: merge.PyramidMerger, *args: Any) -> None:
        t = time.perf_counter()
        fold(self, *args)
        seconds.append(time.perf_counter() - t)

    cores = merge._cores
    merge.PyramidMerger.fold = timed  # type: ignore[method-assign]
    merge._cores = lambda: threads  # type: ignore[assignment]
    try:
        stacker = Stacker(overlap=False)
        for image in images:
            stacker.add(image)
        return seconds, stacker.result(crop=False)
    finally:
        merge.PyramidMerger.fold = fold  # type: ignore[method-assign]
        merge._cores = cores  # type: ignore[assignment]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mp", type=float, default=24.0)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3, help="stacks per setting (default 3)")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_fold.json")
    args = ap.parse_args()
    folder = common.ensure_stack(args.mp, args.frames)
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in common.frame_paths(folder)]
    runs: dict[int, list[float]] = {1: [], 2: []}
    composites: dict[int, np.ndarray] = {}
    for _ in range(args.repeats):
        for threads in (1, 2):
            seconds, composites[threads] = stack(images, threads)
            runs[threads].append(statistics.median(seconds[1:]))  # the first frame sets up
            print(f"  {threads} thread(s): {runs[threads][-1] * 1000:.0f} ms per frame")
    same = bool(np.array_equal(composites[1], composites[2]))
    one, two = (statistics.median(runs[t]) for t in (1, 2))
    print(f"\nmerge per frame, median of {args.repeats} stacks: one thread {one * 1000:.0f} ms, "
          f"two {two * 1000:.0f} ms ({one / two:.2f}x); composites identical: {same}")  # fmt: skip
    common.write_json(args.json, {
        "machine": common.machine(), "mp": args.mp, "frames": args.frames,
        "fold_s_one_thread": runs[1], "fold_s_two_threads": runs[2], "identical": same,
    })  # fmt: skip
    print(f"wrote {args.json}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
