"""Colour glow, in-process: the pyramid merge's coarse-band settings against each other.

For trying a change to :class:`stacker.merge.PyramidMerger` quickly, before a full
``bench_glow.py`` run: each glow stack (the same JPEG folders ``bench_glow.py`` renders and
caches) is stacked in this process once per setting, and scored as ``bench_glow.py`` scores it
(gain-fitted luma PSNR over the central 80 %, colour PSNR over the glow band). The composite is
in the first frame's geometry, which is the truth's to within its jitter: figures compare
settings with each other, not with the peers. Every family runs on each of ``--seeds``.

    python benchmarks/bench_glow_sweep.py --size 750x500 --frames 10 \\
        --set sharpness=4 --set sharpness=2 --set coarse_from=2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_glow
import common

from rig.sim.glow import GlowStack
from stacker.io import read_image
from stacker.merge import PyramidMerger
from stacker.stack import Stacker


def parse_setting(text: str) -> dict[str, float]:
    """``"sharpness=2,score_sigma=1"`` as a dict of PyramidMerger class attributes."""
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not hasattr(PyramidMerger, name.strip()):
            raise SystemExit(f"--set {text!r}: PyramidMerger has no setting {name.strip()!r}")
        kind = type(getattr(PyramidMerger, name.strip()))
        out[name.strip()] = kind(float(value))
    return out


def run(folder, setting: dict[str, float]) -> tuple[float, float, float]:
    """Stack ``folder`` with ``setting``; luma and glow-band PSNR, and seconds."""
    saved = {k: getattr(PyramidMerger, k) for k in setting}
    for k, v in setting.items():
        setattr(PyramidMerger, k, v)
    try:
        stacker = Stacker()
        t0 = time.perf_counter()
        for path in common.frame_paths(folder):
            stacker.add(read_image(path))
        out = stacker.result(crop=False)
        seconds = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            setattr(PyramidMerger, k, v)
    luma, glow = bench_glow.glow_scores(out, GlowStack.from_folder(folder))
    return luma, glow, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_glow.scene_arguments(ap, size="750x500", frames=10, seeds=f"{common.SEED},7")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="one setting to run, e.g. sharpness=2,score_sigma=1 (repeat; default: as coded)",
    )
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_glow_sweep.json")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    settings = [parse_setting(s) for s in args.set] or [{}]
    seeds = args.seeds
    header = [
        "scene",
        *(",".join(f"{k}={v}" for k, v in s.items()) or "as coded" for s in settings),
    ]
    rows, results = [], []
    for family in (f.strip() for f in args.families.split(",") if f.strip()):
        for seed in seeds:
            folder = bench_glow.ensure_glow_stack(family, width, height, args.frames, seed)
            scores = [run(folder, s) for s in settings]
            rows.append([f"{family} s{seed}", *(f"{lu:.2f} / {gl:.2f}" for lu, gl, _ in scores)])
            results.append({"scene": family, "seed": seed, "scores": scores})
            print(rows[-1], flush=True)
    print()
    print("luma dB / glow band dB")
    print(common.table(rows, header))
    payload = {"machine": common.machine(), "settings": settings, "results": results}
    common.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
