"""Fixed sensor defects in a stack: what the composite and the depth map make of them.

A 16-frame synthetic stack (1500x1000, breathing, jitter, drift, noise, JPEG 95 after the
defects, as a camera writes them) is stacked clean and with one kind of defect at the same
sensor places in every frame: ``hot`` (150 single pixels at white, 150 2x2 clusters of one
colour, as demosaicing makes of a hot photosite), ``dead`` (the same places black), a dead
``column`` and a white row, amp ``glow`` in a corner, row ``banding`` (a 4-level ripple and
3-level row offsets), ``rows`` (1.5-level row offsets), ``fpn`` (4-level fixed pattern) and
``fpn2`` (1.5 levels). It prints the defect dots (places more than 40 levels off the clean
result) in one frame, in the composite, and in the mean and median of the frames warped with
their true transforms; the composite's PSNR against the truth; and the share of the depth map
more than a frame off the clean stack's.

    python benchmarks/bench_defects.py --kinds hot,dead,column,banding
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  # puts the checkout on the path, as every benchmark does
import cv2
import numpy as np

from evaluation.scoring import psnr
from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.stack import Stacker

W, H, N = 1500, 1000, 16
EDGE = 30


def defect_places(rng: np.random.Generator) -> list[tuple[int, int, int, tuple[int, ...]]]:
    ys, xs = rng.integers(20, H - 20, 300), rng.integers(20, W - 20, 300)
    out = []
    for i, (y, x) in enumerate(zip(ys, xs, strict=True)):
        if i < 150:
            out.append((int(y), int(x), 1, (255, 255, 255)))
        else:
            colour = [90, 90, 90]
            colour[int(rng.integers(0, 3))] = 255
            out.append((int(y), int(x), 2, tuple(colour)))
    return out


def with_defects(image: np.ndarray, kind: str, places, fpn: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32)
    yy = np.arange(H, dtype=np.float32)[:, None, None]
    if kind in ("hot", "dead"):
        for y, x, size, value in places:
            img[y : y + size, x : x + size] = value if kind == "hot" else 0
    elif kind == "column":
        img[:, 700] = 0
        img[:, 1100:1102] = 0
        img[400, :] = 255
    elif kind == "glow":
        xx = np.arange(W, dtype=np.float32)[None, :, None]
        img += 120 * np.exp(-np.hypot(xx - W, yy - H) / 150) * np.float32([0.3, 0.4, 1.0])
    elif kind == "banding":
        img += 4 * np.sin(yy / 3) + 3 * np.random.default_rng(4).normal(0, 1, (H, 1, 1))
    elif kind == "rows":
        img += 1.5 * np.random.default_rng(4).normal(0, 1, (H, 1, 1))
    elif kind in ("fpn", "fpn2"):
        img += (4.0 if kind == "fpn" else 1.5) * fpn[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray) -> np.ndarray:
    _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def dots(image: np.ndarray, clean: np.ndarray) -> int:
    wrong = (cv2.absdiff(image, clean).max(axis=2) > 40).astype(np.uint8)
    return cv2.connectedComponents(wrong[EDGE:-EDGE, EDGE:-EDGE])[0] - 1


def stacked(frames, stack) -> tuple[np.ndarray, np.ndarray]:
    s = Stacker()
    for i, (image, f) in enumerate(zip(frames, stack, strict=True)):
        s.add(image, name=f"frame {i + 1}", position_um=f.focus_um)
    return s.result(crop=False), s.depth_frames(crop=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="hot,dead,column,glow,banding,rows,fpn,fpn2")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    stack = SyntheticStack(SceneSpec(width=W, height=H, seed=args.seed, noise_sigma=1.5), N)
    rendered = [f.image for f in stack]
    truth = stack.truth()
    inner = np.zeros((H, W), bool)
    inner[60:-60, 60:-60] = True
    places = defect_places(np.random.default_rng(5))
    fpn = np.random.default_rng(9).normal(0, 1, (H, W)).astype(np.float32)
    clean = [jpeg(f) for f in rendered]
    clean_result, clean_depth = stacked(clean, stack)

    def warped(frames):
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        pairs = zip(frames, stack.transforms(), strict=True)
        return np.stack([cv2.warpAffine(f, t[:2], (W, H), flags=flags) for f, t in pairs])

    clean_warped = warped(clean)
    print(f"clean composite PSNR {psnr(clean_result, truth, inner):.2f} dB")
    print("kind      dots: frame composite mean median   PSNR dB   depth >1 frame off")
    for kind in args.kinds.split(","):
        frames = [jpeg(with_defects(f, kind, places, fpn)) for f in rendered]
        result, depth = stacked(frames, stack)
        w = warped(frames)
        mean = dots(
            w.mean(0).round().astype(np.uint8), clean_warped.mean(0).round().astype(np.uint8)
        )
        median = dots(np.median(w, 0).astype(np.uint8), np.median(clean_warped, 0).astype(np.uint8))
        off = float(np.mean((np.abs(depth - clean_depth) > 1.0)[inner]))
        one, merged = dots(frames[0], clean[0]), dots(result, clean_result)
        score = psnr(result, truth, inner)
        print(f"{kind:9s} {one:11d} {merged:9d} {mean:4d} {median:6d}   {score:7.2f}   {off:7.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
