"""What the size the depth map is filled at is worth: each stack of ``bench_depth.py`` stacked
once, its end-of-stack map made at each size, scored against the truth as ``bench_depth.py``
scores it.

``--sizes`` names the longest side of the filled map, in map pixels, or ``auto`` for
:func:`stacker.stack.depth_map_size` (what ``stacker stack`` uses); ``384`` is the size every
frame over 1536 px was filled at until 2026-12-05.

    python benchmarks/bench_depth_map_size.py --size 6000x4000 --seeds 4,5 --sizes 384,auto
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import common
import numpy as np
from bench_depth import family_spec, render_stack, score

import stacker.stack as stack_module
from stacker.stack import Stacker

AUTO = stack_module.depth_map_size
"""What ``stacker stack`` uses (kept before any size is patched in)."""


def size_rule(name: str) -> Callable[[int], int]:
    """The map size for frames ``longest`` px long: ``auto`` or a cap on the longest side."""
    if name == "auto":
        return AUTO
    cap = int(name)
    return lambda longest: min(-(-longest // 4), cap)


def one_stack(layout: str, seed: int, size: tuple[int, int], frames: int, sizes: list[str]):
    """Figures of one stack's map at each of ``sizes``."""
    rendered = render_stack(family_spec(layout, seed, *size), frames)
    stacker = Stacker(method="pyramid")
    for f in rendered:
        stacker.add(f.image, name=f"frame {f.index}", position_um=f.focus_um)
    stacker.wait()
    truth = rendered.true_index()
    row = {}
    try:
        for name in sizes:
            stack_module.depth_map_size = size_rule(name)  # type: ignore[assignment]
            stacker._snapped_cache = None  # kept per merge state; the fill is kept per size
            t = time.perf_counter()
            estimate = np.asarray(stacker.depth_frames(crop=False), np.float32)
            seconds = time.perf_counter() - t
            figures = score(estimate, truth)
            row[name] = {
                "map_px": stack_module.depth_map_size(max(size)),
                "within_1_frame_pct": round(100 * figures["within_1_frame"], 3),
                "median_error_frames": round(figures["median_error_frames"], 4),
                "depth_map_s": round(seconds, 2),
            }
    finally:
        stack_module.depth_map_size = AUTO  # type: ignore[assignment]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default="board,shapes")
    ap.add_argument("--seeds", type=common.seed_list, default="4,5")
    ap.add_argument("--size", default="6000x4000")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--sizes", default="384,auto", help="map sizes: pixels or auto")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_depth_map_size.json")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    sizes = args.sizes.split(",")
    stacks = {}
    for layout in args.layouts.split(","):
        for seed in args.seeds:
            row = one_stack(layout, seed, (w, h), args.frames, sizes)
            stacks[f"{layout} {seed}"] = row
            cells = "  ".join(
                f"{n} ({r['map_px']} px): {r['within_1_frame_pct']:.3f} % "
                f"(median {r['median_error_frames']:.3f}, {r['depth_map_s']:.2f} s)"
                for n, r in row.items()
            )
            print(f"{layout:>8} {seed:>3}  {cells}", flush=True)
    common.write_json(
        args.json,
        {"machine": common.machine(), "size": args.size, "frames": args.frames, "stacks": stacks},
    )
    print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
