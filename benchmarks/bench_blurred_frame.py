"""One badly blurred frame in a stack: PSNR against the truth, with and without passing it over.

A frame blurred by a shake (or shot while the rail still rang) is merged with a fair score;
aligned with it, every later frame inherited its alignment error. The stacker passes such a
frame over as the next frame's alignment reference (``stacker.stack.BLURRED_REFERENCE``);
``--threshold 0`` turns that off, for the figures before. Synthetic stacks (the project's
board scene, 8 frames at 640x480 by default) with one frame (``--frame``, counted from 1)
blurred by a Gaussian of each ``--sigmas``, stacked as ``stacker stack`` does, scored in the
first frame's geometry over the area the result covers; the stack without that frame is the
bar. It also reports, for the benchmark families (``--families``), how many frames were passed
over: none should be, as neighbouring frames there never differ that much in sharpness.

    python benchmarks/bench_blurred_frame.py
    python benchmarks/bench_blurred_frame.py --threshold 0      # before
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import common
import cv2
import numpy as np

from rig.sim.scene import SceneSpec, SyntheticStack, write_stack
from stacker import stack as stack_module
from stacker.io import read_image
from stacker.offline import collect_inputs, stack_files


def psnr_against_truth(folder: Path, out: Path) -> float:
    """PSNR of the result at ``out`` against the truth of the stack in ``folder``, wherever
    the (cropped) result lies in it."""
    truth = SyntheticStack.from_folder(folder).truth().astype(np.float32)
    result = read_image(out).astype(np.float32)
    h, w = result.shape[:2]
    fit = cv2.matchTemplate(truth, result, cv2.TM_SQDIFF)
    y, x = np.unravel_index(int(np.argmin(fit)), fit.shape)
    mse = float(np.mean((result - truth[y : y + h, x : x + w]) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def blurred_copy(base: Path, to: Path, frame: int, sigma: float | None) -> Path:
    """``base``'s frames in ``to``, frame ``frame`` blurred by ``sigma`` (None: left out)."""
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(base, to)
    path = to / f"frame_{frame:04d}.jpg"
    if sigma is None:
        path.unlink()
    else:
        cv2.imwrite(str(path), cv2.GaussianBlur(cv2.imread(str(path)), (0, 0), sigma))
    return to


def passed_over(images) -> int:
    """How many frames of a stack the stacker passed over as alignment reference."""
    stacker = stack_module.Stacker(overlap=False)
    count = 0
    for image in images:
        stacker.add(image)
        count += stacker._weak is not None
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--frame", type=int, default=5, help="the blurred frame, from 1")
    ap.add_argument("--sigmas", default="3,6,10,15,25")
    ap.add_argument("--seeds", type=common.seed_list, default="0,1,2")
    ap.add_argument("--threshold", type=float, default=stack_module.BLURRED_REFERENCE)
    ap.add_argument("--families", default="board:1,shapes:1,pcb", help="'' for none")
    args = ap.parse_args()
    stack_module.BLURRED_REFERENCE = args.threshold
    w, h = map(int, args.size.split("x"))
    work = common.WORK / "blurred_frame"
    rows = []
    for seed in args.seeds:
        base = work / f"base_s{seed}"
        write_stack(base, SceneSpec(width=w, height=h, seed=seed), args.frames)
        cases: list[tuple[str, float | None]] = [("none", 0.0), ("left out", None)]
        cases += [(f"sigma {s}", float(s)) for s in args.sigmas.split(",")]
        for label, sigma in cases:
            folder = base if sigma == 0.0 else blurred_copy(base, work / "case", args.frame, sigma)
            out = work / "out.png"
            stack_files(collect_inputs([folder]), out)
            rows.append([str(seed), label, f"{psnr_against_truth(folder, out):.2f}"])
    print(f"threshold {args.threshold}; frame {args.frame} of {args.frames} at {args.size}")
    print(common.table(rows, ["seed", "frame blurred", "PSNR dB"]))
    for family in filter(None, args.families.split(",")):
        if family == "pcb":
            if not common.PCB.is_dir():
                print(f"pcb: left out, no {common.PCB} (the real stack beside the checkout)")
                continue
            images = (read_image(p) for p in common.frame_paths(common.PCB))
        else:
            layout, seed = family.split(":")
            spec = SceneSpec(width=1500, height=1000, seed=int(seed), jpeg_quality=90,
                             layout=layout)  # fmt: skip
            images = (f.image for f in SyntheticStack(spec, 16))
        print(f"{family}: {passed_over(images)} frames passed over as reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
