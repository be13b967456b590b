"""Smooth backgrounds: does the composite average the frames' noise away?

Out-of-focus backgrounds (bokeh) are smooth, and there the best estimate is the mean of the
frames: the noise of N frames' mean is 1/sqrt(N) of one frame's (0.35 for 8). A merge that
picks the most active frame there picks the largest of their noise draws instead, and comes out
as noisy as one frame or noisier. This measures it with ``stacker stack`` as a user runs it
(one process per stack) on 8 frames of 800x600, 16-bit TIFF: a smooth colour gradient, shot
noise whose sigma grows with the signal (``s * sqrt(signal / 30000)`` in 16-bit units), exposure
steps of +-3 %, no subject, so every place is flat in every frame. Printed: the composite's
high-pass noise over the quietest frame's, in the gradient; in column bands from dark to bright
for the noise sweep.

Cases: a black velvet (0) or a dark backdrop (1000) over a fifth of the frame, and noise from
ISO-100-like to ISO-3200-like. With ``--before ROOT`` the same stacks are stacked with the
``stacker`` package of another checkout (an export of an older commit) as well.

    python benchmarks/bench_flat_noise.py --before /tmp/stackrig-old
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import common
import cv2
import numpy as np

H, W, N = 600, 800, 8


def background(backdrop: float | None) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    base = 9000 + 30000 * (x / (W - 1)) + 6000 * np.sin(y / H * np.pi)
    scene = np.stack([base * 0.80, base * 1.00, base * 0.70], axis=2)
    if backdrop is not None:
        scene[: H // 5] = backdrop
    return scene


def high_pass(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    return (image - cv2.GaussianBlur(image, (0, 0), 3))[..., 1]


def write_frames(folder: Path, scene: np.ndarray, sigma: float) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    gains = 1 + 0.03 * np.sin(np.arange(N) * 2.1)
    gains[0] = 1.0
    frames = []
    for i in range(N):
        noisy = scene * gains[i] + rng.normal(0.0, sigma, scene.shape) * np.sqrt(scene / 30000.0)
        image = np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)
        cv2.imwrite(str(folder / f"f{i:02d}.tif"), image)
        frames.append(high_pass(image))
    return frames


def stacked(root: Path, folder: Path, out: Path) -> np.ndarray:
    cmd = [sys.executable, "-c", common.STACKER_CLI, str(root), "stack", str(folder), "-o"]
    done = subprocess.run([*cmd, str(out), "--align", "none"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stacker stack failed with {root}: {done.stderr.strip()[-300:]}")
    return high_pass(cv2.imread(str(out), cv2.IMREAD_UNCHANGED))


def ratios(composite: np.ndarray, frames: list[np.ndarray], top: int, bands: int) -> list[float]:
    width = (W - 80) // bands
    out = []
    for b in range(bands):
        region = np.s_[top + 40 : H - 40, 40 + b * width : 40 + (b + 1) * width]
        out.append(float(composite[region].std() / min(f[region].std() for f in frames)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="an export of an older checkout")
    args = parser.parse_args()
    roots = {"stackrig": common.HERE.parent, **({"before": args.before} if args.before else {})}
    cases = [
        ("no backdrop, s=300", None, 300.0, 1),
        ("black velvet (0) over 20 %, s=300", 0.0, 300.0, 1),
        ("dark backdrop (1000) over 20 %, s=300", 1000.0, 300.0, 1),
        ("no backdrop, s=800", None, 800.0, 5),
        ("no backdrop, s=1500 (ISO 3200-like)", None, 1500.0, 5),
    ]
    print(common.machine())
    print("composite noise / quietest frame's in the gradient (8 frames: their mean gives 0.35)")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (what, backdrop, sigma, bands) in enumerate(cases):
            folder = Path(tmp) / f"case{i}"
            frames = write_frames(folder, background(backdrop), sigma)
            top = H // 5 if backdrop is not None else 0
            for name, root in roots.items():
                composite = stacked(root, folder, Path(tmp) / f"case{i}_{name}.tif")
                shown = " ".join(f"{r:.2f}" for r in ratios(composite, frames, top, bands))
                print(f"{what:40s} {name:9s} {shown}")


if __name__ == "__main__":
    main()
