"""How fast focus falls off its peak, frame by frame, on synthetic stacks and the pcb stack.

The depth map's rules measure in a halo fixed at 48 frame pixels (``stacker/stack.py``), and at
24 MP that is narrower than the blur of the board family's stacks. A halo that holds at every
size has to come from the stack itself. This measures one candidate, from what the focus
tracker keeps: the curvature of the log focus measure through each pixel's best frame and its
two neighbours (``ln before + ln after - 2 ln best``, per frame squared), at the confident half
of the pixels that have both neighbours. A defocus blur that grows faster per frame makes it
steeper.

    python benchmarks/bench_focus_curve.py
    python benchmarks/bench_focus_curve.py --stacks board:1500x1000,board:6000x4000 --json c.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import common
import numpy as np
from bench_depth import family_spec, render_stack

from stacker import depth
from stacker.io import read_image
from stacker.stack import Stacker

PCB = common.PCB


def curvature(stacker: Stacker) -> dict[str, Any]:
    """Quartiles of the negated log-focus curvature at the tracker's confident peaks."""
    tracker = stacker._merger.tracker  # type: ignore[union-attr]
    best, before, after = tracker.best, tracker.before, tracker.after
    ok = (before > 0) & (after > 0) & (best > 0)
    weight = depth.confidence(best)
    ok &= weight > np.quantile(weight[ok], 0.5)
    c = np.log(before[ok]) + np.log(after[ok]) - 2 * np.log(best[ok])
    steep = -c[c < 0]
    q25, q50, q75 = (float(np.quantile(steep, q)) for q in (0.25, 0.5, 0.75))
    return {"tracker": list(tracker.size), "pixels": int(steep.size),
            "median": q50, "p25": q25, "p75": q75}  # fmt: skip


def synthetic(layout: str, seed: int, size: tuple[int, int], frames: int) -> dict[str, Any]:
    stacker = Stacker(method="pyramid")
    for f in render_stack(family_spec(layout, seed, *size), frames):
        stacker.add(f.image, name=f"frame {f.index}", position_um=f.focus_um)
    stacker.wait()
    return curvature(stacker)


def real(folder: Path) -> dict[str, Any]:
    stacker = Stacker(method="pyramid")
    for path in common.frame_paths(folder):
        stacker.add(read_image(path), name=path.name)
    stacker.wait()
    return curvature(stacker)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = "board:1500x1000,board:6000x4000,shapes:1500x1000,shapes:6000x4000"
    ap.add_argument("--stacks", default=default, help="layout:WxH, comma separated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_focus_curve.json")
    args = ap.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    for item in args.stacks.split(","):
        layout, size = item.split(":")
        w, h = (int(v) for v in size.split("x"))
        rows[f"{layout} {args.seed} {size}"] = synthetic(layout, args.seed, (w, h), args.frames)
    if PCB.is_dir():
        rows["pcb-stack"] = real(PCB)
    print(f"{'stack':<24} {'tracker':>10} {'median':>7} {'p25':>6} {'p75':>6}")
    for name, r in rows.items():
        tracker = "x".join(map(str, r["tracker"]))
        print(f"{name:<24} {tracker:>10} {r['median']:7.3f} {r['p25']:6.3f} {r['p75']:6.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": common.machine(), "frames": args.frames,
                                     "stacks": rows}, indent=1))  # fmt: skip
    print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
