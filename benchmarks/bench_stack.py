"""Speed and memory of the streaming stacker on synthetic 6 MP and 24 MP JPEG stacks.

For each size, in a fresh subprocess (so peak RSS belongs to that run alone):

* the median time of ``Stacker.add`` per frame (frames already decoded),
* the median time merely to decode a frame (``cv2.imdecode``: the floor),
* the time from the last frame to the final result, and the total,
* peak RSS (``ru_maxrss``) and RSS before the first frame.

Then the same at ``--memory-frames`` (48) frames, to show memory does not grow with the stack.
``--method baseline`` measures the textbook baseline instead (works before the Stacker exists).

    python benchmarks/bench_stack.py --sizes 6,24 --frames 24 --method pyramid

The bars, recorded rather than asserted: at most 1.0 s and 4x the decode time per 24 MP frame;
result within 1.5 s of the last frame; peak RSS at most 1.5 GB at 24 MP; 48 frames use no
more memory than 24.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import common


def worker(folder: Path, method: str) -> dict[str, Any]:
    """Stack ``folder`` with ``method`` in this process: its timings and peak RSS."""
    import cv2
    import numpy as np

    rss_start = common.peak_rss_mb()
    paths = common.frame_paths(folder)
    positions = common.frame_positions(folder)
    decode_s: list[float] = []
    add_s: list[float] = []

    def decoded() -> Iterator[tuple[Path, Any]]:
        for p in paths:
            data = np.fromfile(p, dtype=np.uint8)
            t = time.perf_counter()
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
            decode_s.append(time.perf_counter() - t)
            yield p, img

    t_start = time.perf_counter()
    if method == "baseline":
        from evaluation.scoring import baseline_stack

        marks: list[float] = []

        def timed() -> Iterator[Any]:
            for _, img in decoded():
                marks.append(time.perf_counter())
                yield img
                # Back here once the baseline has finished with this frame.
                add_s.append(time.perf_counter() - marks[-1])

        result = baseline_stack(timed())
        t_end = time.perf_counter()
        # The baseline has no separate final step: its last frame's work ends at the result.
        last_to_result = t_end - marks[-1]
        add_s.append(last_to_result)
        shape = result.image.shape
        merged = len(paths) - len(result.failed)
    else:
        stacker_cls, why = common.load_stacker()
        if stacker_cls is None:
            print(f"bench_stack: {why}; use --method baseline meanwhile", file=sys.stderr)
            raise SystemExit(3)
        stacker = stacker_cls(method=method)
        t_last = t_start
        for p, img in decoded():
            t = time.perf_counter()
            stacker.add(img, name=p.name, position_um=positions.get(p.name))
            t_last = time.perf_counter()
            add_s.append(t_last - t)
        image = common.stacker_result(stacker)
        t_end = time.perf_counter()
        last_to_result = t_end - t_last
        shape = image.shape
        records = getattr(stacker, "records", [])
        merged = sum(1 for r in records if getattr(r, "merged", True)) if records else len(paths)
    payload = {
        "folder": str(folder),
        "method": method,
        "frames": len(paths),
        "merged": merged,
        "shape": list(shape),
        "add_median_s": statistics.median(add_s),
        "add_max_s": max(add_s),
        "decode_median_s": statistics.median(decode_s),
        "last_frame_to_result_s": last_to_result,
        "total_s": t_end - t_start,
        "rss_before_frames_mb": rss_start,
        "peak_rss_mb": common.peak_rss_mb(),
    }
    return payload


def main() -> int:
    ap = common.worker_parser(__doc__, "pyramid, depthmap or baseline")
    ap.add_argument("--sizes", default="6,24", help="megapixels, comma separated (default 6,24)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--memory-frames", type=int, default=48, help="0 to skip (default 48)")
    ap.add_argument("--memory-size", type=float, default=6.0, help="MP for that run (default 6)")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_stack.json")
    args = ap.parse_args()
    if args.worker:
        return common.work(args, worker)

    if args.method != "baseline":
        stacker_cls, why = common.load_stacker()
        if stacker_cls is None:
            print(f"bench_stack: {why}.\nRun with --method baseline until it lands.")
            return 3
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    runs: list[dict[str, Any]] = []
    for mp in sizes:
        folder = common.ensure_stack(mp, args.frames)
        print(f"stacking {folder.name} with {args.method} ...", flush=True)
        r = common.run_worker(__file__, folder, args.method)
        if r:
            r["mp"] = mp
            runs.append(r)
    memory: dict[str, Any] | None = None
    if args.memory_frames:
        mp = args.memory_size
        short = next((r for r in runs if r["mp"] == mp and r["frames"] == args.frames), None)
        if short is None:
            short = common.run_worker(__file__, common.ensure_stack(mp, args.frames), args.method)
        folder = common.ensure_stack(mp, args.memory_frames)
        print(f"stacking {folder.name} with {args.method} ...", flush=True)
        long = common.run_worker(__file__, folder, args.method)
        if short and long:
            long["mp"] = mp
            runs.append(long)
            memory = {
                "mp": mp,
                f"peak_rss_mb_{short['frames']}": short["peak_rss_mb"],
                f"peak_rss_mb_{long['frames']}": long["peak_rss_mb"],
                "growth_mb": long["peak_rss_mb"] - short["peak_rss_mb"],
            }

    rows = []
    for r in runs:
        rows.append(
            [
                f"{r['mp']:g} MP x {r['frames']}",
                f"{r['shape'][1]}x{r['shape'][0]}",
                f"{r['merged']}/{r['frames']}",
                f"{r['add_median_s']:.3f}",
                f"{r['decode_median_s']:.3f}",
                f"{r['add_median_s'] / r['decode_median_s']:.1f}x",
                f"{r['last_frame_to_result_s']:.2f}",
                f"{r['total_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
        )
    header = [
        "stack",
        "output",
        "merged",
        "add s",
        "decode s",
        "add/dec",
        "final s",
        "total s",
        "peak MB",
    ]
    print(f"\nmethod: {args.method}")
    print(common.table(rows, header))
    if memory:
        print(
            f"\nmemory at {memory['mp']:g} MP: growth from {args.frames} to "
            f"{args.memory_frames} frames: {memory['growth_mb']:+.0f} MB"
        )
    common.write_json(
        args.json,
        {"machine": common.machine(), "method": args.method, "runs": runs, "memory": memory},
    )
    print(f"\nwrote {args.json}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
