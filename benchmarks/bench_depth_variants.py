"""The depth map's rules under other settings, on the same stacks: before/after in one run.

Each stack of ``bench_depth.py`` (family and seed) is rendered and stacked once; then the
end-of-stack depth map is made again under each named variant, a set of module constants of
``stacker.depth_regions`` or ``stacker.depth`` given other values, and scored against the truth
as ``bench_depth.py`` scores it (share of pixels within one frame, central 80 %). Stacking is
most of the time, so a variant costs well under a second a stack: a rule's threshold can be
judged on every stack at once, with the same renders on both sides.

    python benchmarks/bench_depth_variants.py --seeds 1,2,3 \\
        --variants '{"now": {}, "cap 5 %": {"depth_regions._MAX_AREA": 0.05}}'

One JSON line per stack goes to ``--out`` (appended, so that two processes may share a list of
seeds), and a summary per variant (mean, stacks at the 97 % bar, the largest losses and gains
against the first variant) is printed at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import common
import numpy as np
from bench_depth import family_spec, render_stack, score

from stacker import depth, depth_regions
from stacker.stack import Stacker

MODULES = {"depth_regions": depth_regions, "depth": depth}


def scored_variants(layout: str, seed: int, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Stack one synthetic stack and score its depth map under every variant."""
    spec = family_spec(layout, seed, 1500, 1000)
    stack = render_stack(spec, 16)
    stacker = Stacker(method="pyramid")
    for f in stack:
        stacker.add(f.image, name=f"frame {f.index}", position_um=f.focus_um)
    stacker.wait()
    truth = stack.true_index()
    row: dict[str, Any] = {"layout": layout, "seed": seed}
    for name, settings in variants.items():
        saved = {}
        for key, value in settings.items():
            module, constant = key.split(".")
            saved[key] = getattr(MODULES[module], constant)
            setattr(MODULES[module], constant, value)
        try:
            stacker._depth_cache = None  # made again under this variant's settings
            stacker._snapped_cache = None
            estimate = np.asarray(stacker.depth_frames(crop=False), np.float32)
            row[name] = round(100 * score(estimate, truth)["within_1_frame"], 3)
        finally:
            for key, value in saved.items():
                module, constant = key.split(".")
                setattr(MODULES[module], constant, value)
    return row


def summary(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """One line per variant: mean, stacks at the bar, largest changes against the first."""
    lines = []
    for name in names:
        values = [r[name] for r in rows]
        change = sorted((r[name] - r[names[0]], f"{r['layout']} {r['seed']}") for r in rows)
        lines.append(
            f"{name}: mean {np.mean(values):.3f} %, {sum(v >= 97 for v in values)} of "
            f"{len(values)} at 97 %; worst {change[0][1]} {change[0][0]:+.3f}, "
            f"best {change[-1][1]} {change[-1][0]:+.3f}"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default="board,shapes")
    ap.add_argument("--seeds", type=common.seed_list, default="1,2,3")
    ap.add_argument("--variants", required=True, help='JSON: {"name": {"module.CONST": value}}')
    ap.add_argument("--out", type=Path, default=common.WORK / "bench_depth_variants.jsonl")
    args = ap.parse_args()
    variants = json.loads(args.variants)
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for layout in args.layouts.split(","):
            row = scored_variants(layout, seed, variants)
            rows.append(row)
            with args.out.open("a") as f:
                print(json.dumps(row), file=f)
            print(json.dumps(row), flush=True)
    print("\n".join(summary(rows, list(variants))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
