"""Awkward stacks real rigs produce, each against its truth: what the stacker makes of them.

In-process, on synthetic stacks whose truth is known (the project's board scene, 8 frames at
960x720 unless said), the case made from the clean stack by one change:

- ``bright``: the fifth frame at twice the exposure, clipped (a flash that fired twice); PSNR
  of the pyramid composite against the all-in-focus truth over the central 70 %, and the
  frames kept out.
- ``bumped``: the tripod bumped 140 px down from the fifth frame on; the largest error of a
  frame's exposure gain against the true one.
- ``blurred``: the fifth frame blurred by a Gaussian of sigma 8 px (a shake); the share of the
  depth map within one frame of the truth over the central 70 %, and the share of the pixels
  in focus just before the blurred frame put two frames deeper.
- ``pads`` and ``grid``: a 20 px pad array and a 32 px grid, textures finer than the
  registration pyramid's coarse levels, jittered up to 3 px a frame; the largest error of a
  frame's recovered shift.

    python benchmarks/bench_awkward.py
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import common
import cv2
import numpy as np

from evaluation.scoring import central_mask, psnr
from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.stack import Stacker

W, H, N = 960, 720, 8


def _clean() -> SyntheticStack:
    return SyntheticStack(SceneSpec(width=W, height=H, seed=1), N)


def _stacked(images: list[np.ndarray], **kw) -> Stacker:
    s = Stacker(overlap=False, **kw)
    for i, image in enumerate(images):
        s.add(image, name=f"frame_{i + 1:04d}")
    return s


def bright() -> dict:
    stack = _clean()
    frames = list(stack)
    images = [np.clip(f.image * (2.0 if f.index == 4 else 1.0), 0, 255).astype(np.uint8)
              for f in frames]  # fmt: skip
    s = _stacked(images)
    clean = _stacked([f.image for f in frames])
    centre = central_mask(H, W, 0.7)
    return {
        "psnr_db": round(psnr(s.result(crop=False), stack.truth(), centre), 2),
        "clean_psnr_db": round(psnr(clean.result(crop=False), stack.truth(), centre), 2),
        "kept_out": [r.name for r in s.records if not r.merged],
    }


def bumped() -> dict:
    frames = list(_clean())
    images = []
    for f in frames:
        image = f.image.copy()
        if f.index >= 4:
            image = np.roll(image, 140, axis=0)
            image[:140] = 0
        images.append(image)
    s = _stacked(images)
    errors = [float(np.max(np.abs(np.array(r.gain) * f.gains - 1.0)))
              for r, f in zip(s.records, frames, strict=True)]  # fmt: skip
    return {"largest_gain_error": round(max(errors), 4),
            "kept_out": [r.name for r in s.records if not r.merged]}  # fmt: skip


def blurred() -> dict:
    stack = _clean()
    images = [cv2.GaussianBlur(f.image, (0, 0), 8) if f.index == 4 else f.image for f in stack]
    found = np.rint(_stacked(images).depth_frames(crop=False))
    truth = np.rint(stack.true_index())
    centre = central_mask(H, W, 0.7)
    before = centre & (truth == 3)
    return {
        "within_one_frame": round(float((np.abs(found - truth)[centre] <= 1).mean()), 3),
        "before_blurred_put_two_deeper": round(float((found[before] == 5).mean()), 3),
    }


def _texture(kind: str) -> Callable[[float, float], np.ndarray]:
    """A frame of a periodic texture seen shifted by (tx, ty), with sensor noise."""
    y, x = np.mgrid[: H + 80, : W + 80].astype(np.float32)
    if kind == "pads":
        scene = np.where(((x % 20) < 11) & ((y % 20) < 11), 180.0, 60.0)
    else:
        scene = np.where(((x % 32) < 2) | ((y % 32) < 2), 30.0, 220.0)
    scene = cv2.cvtColor(scene.astype(np.float32), cv2.COLOR_GRAY2BGR)
    rng = np.random.default_rng(3)

    def frame(tx: float, ty: float) -> np.ndarray:
        m = np.float32([[1, 0, 40 + tx], [0, 1, 40 + ty]])
        img = cv2.warpAffine(scene, m, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        return np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)

    return frame


def periodic(kind: str) -> dict:
    rng = np.random.default_rng(7)
    shifts = [(0.0, 0.0)] + [tuple(rng.uniform(-3, 3, 2)) for _ in range(N - 1)]
    frame = _texture(kind)
    s = _stacked([frame(tx, ty) for tx, ty in shifts])
    errors = [float(np.hypot(r.matrix[0, 2] - tx, r.matrix[1, 2] - ty))
              for r, (tx, ty) in zip(s.records, shifts, strict=True) if r.merged]  # fmt: skip
    return {"largest_shift_error_px": round(max(errors), 2),
            "kept_out": [r.name for r in s.records if not r.merged]}  # fmt: skip


CASES: dict[str, Callable[[], dict]] = {
    "bright": bright,
    "bumped": bumped,
    "blurred": blurred,
    "pads": lambda: periodic("pads"),
    "grid": lambda: periodic("grid"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="which cases, comma-separated")
    args = ap.parse_args()
    results = {}
    for name in args.cases.split(","):
        results[name] = CASES[name]()
        print(f"{name:8s} {json.dumps(results[name])}", flush=True)
    out = common.WORK / "bench_awkward.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": common.machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
