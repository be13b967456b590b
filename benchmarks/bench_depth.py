"""Accuracy of the depth map against synthetic truth, and a picture of its colour preview.

For each scene family and seed, a focus stack is rendered in memory (16 frames at 1500x1000,
JPEG 4:2:0 at quality 90, breathing, jitter, exposure and white-balance drift, noise), stacked
with positions known, and the depth map in frames (``Stacker.depth_frames``: fractional, where
older code gave the integer ``depth_index``) is compared with the true frame index per pixel
(``SyntheticStack.true_index``) over the central 80 % of each axis:

* share of pixels within one frame of the truth (the bar: at least 97 %),
* share within half a frame, median and 90th-percentile error in frames.

Families:

* ``board``: the circuit-board-like scene (hills, raised components, text, flat patches).
* ``shapes``: large flat saturated shapes and glyphs at single depths over a colourful
  textured background, with stronger defocus (sigma up to 12 px): textureless areas must take
  their depth from their own borders, not from the background next to them.
* ``glow-<background>-<defocus>`` (e.g. ``glow-textured-scatter``): the colour-glow scenes of
  ``bench_glow.py`` (:mod:`rig.sim.glow`), built for the composite, not for the depth map, so a
  check that its rules were not tuned to the two families above. Their objects lie in the front
  12 % of the depth and their ground in the back 20 %: frames in between show nothing sharp.
  On a ``black`` ground there is nothing to find the ground's depth by, so those figures say
  only how the map fills where no frame shows anything.

The colour preview ``--depth-map`` writes, for the first seed of each family, is saved as a PNG in
``benchmarks/_work/`` (``--pictures`` to change its name; copy one to ``results/`` to keep it
beside its figures), and all figures as JSON.

    python benchmarks/bench_depth.py --seeds 1,2,3 --method pyramid

``--order far-to-near`` stacks each stack from its far end (reversed, told so with
``far_first``) and scores it against the same truth.

``--speed MP`` instead times the depth path on the cached ``MP``-megapixel, 24-frame JPEG stack
of ``bench_stack.py``: ``Stacker.add`` per frame (which includes the focus tracker), the live
preview's ``preview_depth`` after each frame, and the final depth map (in frames and as written
by ``save_depth_map``). It works on older code too (without ``depth_frames`` it times
``depth_index``), so the same command measures before and after a change.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import common
import cv2
import numpy as np

from rig.sim.glow import GlowSpec, GlowStack
from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.options import ORDERS
from stacker.stack import Stacker


def family_spec(layout: str, seed: int, width: int, height: int) -> SceneSpec:
    """The scene of one family and seed (see the module docstring)."""
    if layout.startswith("glow-"):
        _, background, defocus = layout.split("-")
        return GlowSpec(width=width, height=height, seed=seed, background=background,
                        defocus=defocus)  # fmt: skip
    if layout == "shapes":
        return SceneSpec(width=width, height=height, seed=seed, jpeg_quality=90, layout="shapes",
                         blur_px_per_um=12.0 / 3000.0, max_blur_px=12.0)  # fmt: skip
    return SceneSpec(width=width, height=height, seed=seed, jpeg_quality=90)


def render_stack(spec: SceneSpec, frames: int) -> SyntheticStack:
    """The stack of a family's spec: a glow scene's own, or the base scene's."""
    return GlowStack(spec, frames) if isinstance(spec, GlowSpec) else SyntheticStack(spec, frames)


def estimated_frames(stacker: Stacker) -> np.ndarray:
    """The depth map in frames, uncropped: fractional where the stacker offers it."""
    frames = getattr(stacker, "depth_frames", None)
    if frames is not None:
        return np.asarray(frames(crop=False), np.float32)
    return stacker.depth_index(crop=False).astype(np.float32)


def depth_picture(stacker: Stacker) -> np.ndarray | None:
    """The colour preview ``--depth-map`` writes (cropped, legend below), or the live
    preview's at full size on code that has no ``colorize_depth``."""
    colorize = getattr(stacker, "colorize_depth", None)
    if colorize is not None:
        return np.asarray(colorize(stacker.depth_frames()))
    shape = stacker.shape or (1024, 1024)
    stacker.preview_size = max(shape)
    return stacker.preview_depth()


def central(a: np.ndarray, share: float = 0.8) -> np.ndarray:
    """The central ``share`` of each axis of ``a``."""
    h, w = a.shape[:2]
    my, mx = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return a[my : h - my, mx : w - mx]


def score(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Error figures of a depth map in frames against the true frame index."""
    err = np.abs(central(estimate) - central(truth))
    return {
        "within_1_frame": float(np.mean(err <= 1.0)),
        "within_half_frame": float(np.mean(err <= 0.5)),
        "median_error_frames": float(np.median(err)),
        "p90_error_frames": float(np.percentile(err, 90)),
    }


def run_one(
    spec: SceneSpec, frames: int, method: str, order: str = "near-to-far"
) -> tuple[dict[str, Any], Stacker]:
    """Stack one synthetic stack and score its depth map. ``far-to-near`` feeds the frames in
    reverse (the far end first, told so, in the geometry of the last: the near end's), and
    scores the map in the near-to-far numbering of the truth."""
    stack = render_stack(spec, frames)
    shot = list(stack)
    if order == "far-to-near":
        stacker = Stacker(method=method, reference="last", far_first=True)
        shot.reverse()
    else:
        stacker = Stacker(method=method)
    add_s = []
    for f in shot:
        t = time.perf_counter()
        stacker.add(f.image, name=f"frame {f.index}", position_um=f.focus_um)
        add_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    estimate = estimated_frames(stacker)
    depth_s = time.perf_counter() - t
    if order == "far-to-near":
        estimate = (frames - 1) - estimate
    figures = score(estimate, stack.true_index())
    figures.update(add_median_s=float(np.median(add_s)), depth_map_s=depth_s)
    return figures, stacker


def speed(mp: float, frames: int, method: str) -> dict[str, Any]:
    """Time the depth path on the cached benchmark stack (see the module docstring)."""
    import tempfile

    from stacker.output import save_depth_map

    folder = common.ensure_stack(mp, frames)
    positions = common.frame_positions(folder)
    stacker = Stacker(method=method)
    add_s, preview_s = [], []
    for p in common.frame_paths(folder):
        img = cv2.imdecode(np.fromfile(p, dtype=np.uint8), cv2.IMREAD_COLOR)
        t = time.perf_counter()
        stacker.add(img, name=p.name, position_um=positions.get(p.name))
        finish = getattr(stacker, "wait", None)  # a pipelined stacker merges in the background
        if finish is not None:
            finish()
        t1 = time.perf_counter()
        stacker.preview_depth()
        add_s.append(t1 - t)
        preview_s.append(time.perf_counter() - t1)
    t = time.perf_counter()
    estimated_frames(stacker)
    map_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        save_depth_map(stacker, Path(tmp) / "depth.png")
        save_s = time.perf_counter() - t
    return {
        "mp": mp,
        "frames": frames,
        "add_median_ms": 1000 * float(np.median(add_s)),
        "preview_depth_median_ms": 1000 * float(np.median(preview_s)),
        "depth_map_s": map_s,
        "save_depth_map_s": save_s,
        "peak_rss_mb": common.peak_rss_mb(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default="board,shapes")
    ap.add_argument("--seeds", type=common.seed_list, default="1,2,3")
    ap.add_argument("--size", default="1500x1000")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--method", default="pyramid")
    ap.add_argument(
        "--order",
        default="near-to-far",
        choices=ORDERS,
        help="far-to-near: the frames from the far end first, as a rail may shoot",
    )
    ap.add_argument("--pictures", default="depth", help="file name stem of the saved previews")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--speed", type=float, default=None, help="time the depth path at MP")
    args = ap.parse_args()
    if args.speed is not None:
        figures = {"machine": common.machine(), **speed(args.speed, 24, args.method)}
        print(json.dumps(figures, indent=1))
        common.write_json(args.json or common.WORK / "bench_depth_speed.json", figures)
        return 0
    width, height = (int(v) for v in args.size.lower().split("x"))
    seeds = args.seeds
    info = common.machine()
    runs: list[dict[str, Any]] = []
    rows = []
    for layout in args.layouts.split(","):
        for n, seed in enumerate(seeds):
            spec = family_spec(layout, seed, width, height)
            figures, stacker = run_one(spec, args.frames, args.method, args.order)
            runs.append({"layout": layout, "seed": seed, **figures})
            rows.append([layout, str(seed), f"{100 * figures['within_1_frame']:.1f} %",
                         f"{100 * figures['within_half_frame']:.1f} %",
                         f"{figures['median_error_frames']:.3f}",
                         f"{figures['p90_error_frames']:.2f}",
                         f"{figures['depth_map_s']:.2f}"])  # fmt: skip
            print(common.table(rows[-1:], HEADER), flush=True)
            if n == 0 and args.pictures:
                picture = depth_picture(stacker)
                if picture is not None:
                    path = common.WORK / f"{args.pictures}_{layout}_seed{seed}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(path), picture)
                    print(f"  preview: {path}")
    print()
    print(common.table(rows, HEADER))
    for layout in args.layouts.split(","):
        mine = [r for r in runs if r["layout"] == layout]
        worst = min(r["within_1_frame"] for r in mine)
        print(f"{layout}: worst seed {100 * worst:.1f} % within one frame (bar 97 %)")
    out = args.json or common.WORK / "bench_depth.json"
    common.write_json(out, {"machine": info, "method": args.method, "frames": args.frames,
                            "order": args.order, "size": [width, height],
                            "runs": runs})  # fmt: skip
    print(f"figures: {out}")
    return 0


HEADER = ["layout", "seed", "<=1 frame", "<=0.5", "median", "p90", "map s"]

if __name__ == "__main__":
    raise SystemExit(main())
