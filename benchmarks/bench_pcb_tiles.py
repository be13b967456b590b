"""Real-stack sharpness, new against old: per-tile variance of the Laplacian on the pcb stack.

Stacks ``../shared/data/pcb-stack`` (or ``--folder``) twice with ``stacker stack --no-crop``:
with this checkout's ``stacker`` package and with the one under ``--before`` (an export of an
older commit). Registration is the same code in both, so both composites share the first
frame's geometry and compare tile by tile. Over the area every frame covers (the crop the
stacker reports), split into ``--tiles`` tiles, it prints the ratio new/old of the variance of
the Laplacian of luma (a standard sharpness measure; Pech-Pacheco et al. 2000), and writes
100 % crops of both composites side by side to ``benchmarks/_work/pcb_crops/`` for looking at
halos and glow.

    python benchmarks/bench_pcb_tiles.py --before /tmp/stackrig-old
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import common
import cv2
import numpy as np

from stacker.io import read_image

CLI = common.STACKER_CLI
PCB = common.PCB


def stack(root: Path, frames: list[Path], out: Path) -> np.ndarray:
    cmd = [sys.executable, "-c", CLI, str(root), "stack", *map(str, frames), "-o", str(out)]
    proc = subprocess.run([*cmd, "--no-crop"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"stacker stack failed with {root}: {proc.stderr.strip()[-300:]}")
    return read_image(out)


def tile_sharpness(image: np.ndarray, rect: tuple[int, int, int, int], tiles: tuple[int, int]):
    """Variance of the Laplacian of luma in each tile of ``rect`` (rows x cols array)."""
    x, y, w, h = rect
    luma = cv2.cvtColor(image[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY).astype(np.float32)
    lap = cv2.Laplacian(luma, cv2.CV_32F, ksize=3)
    rows, cols = tiles
    th, tw = h // rows, w // cols
    lap = lap[: th * rows, : tw * cols].reshape(rows, th, cols, tw)
    return lap.var(axis=(1, 3))


def common_rect(frames: list[Path]) -> tuple[int, int, int, int]:
    from stacker.stack import Stacker

    s = Stacker()
    for p in frames:
        s.add(read_image(p))
    return s.crop_rectangle()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=PCB)
    ap.add_argument("--before", type=Path, required=True, help="checkout of the old stacker/")
    ap.add_argument("--tiles", default="6x8", help="rows x columns (default 6x8)")
    args = ap.parse_args()
    frames = [p for p in common.frame_paths(args.folder) if p.suffix.lower() == ".jpg"]
    if not frames:
        raise SystemExit(f"{args.folder}: no frames (*.jpg)")
    outdir = common.WORK / "pcb_crops"
    outdir.mkdir(parents=True, exist_ok=True)
    new = stack(common.HERE.parent, frames, outdir / "new.tif")
    old = stack(args.before, frames, outdir / "old.tif")
    rect = common_rect(frames)
    tiles = tuple(int(v) for v in args.tiles.split("x"))
    ratio = tile_sharpness(new, rect, tiles) / tile_sharpness(old, rect, tiles)  # type: ignore[arg-type]
    print(f"{len(frames)} frames of {args.folder}, area {rect}, {tiles[0]}x{tiles[1]} tiles")
    print("variance of Laplacian, new / old, per tile:")
    for row in ratio:
        print("  " + " ".join(f"{v:5.2f}" for v in row))
    print(f"median {np.median(ratio):.3f}, min {ratio.min():.3f}, max {ratio.max():.3f}")
    x, y, w, h = rect
    for i, (cx, cy) in enumerate([(0.25, 0.3), (0.5, 0.5), (0.75, 0.7), (0.3, 0.75)]):
        px, py = int(x + cx * w) - 200, int(y + cy * h) - 150
        pair = np.hstack([old[py : py + 300, px : px + 400], new[py : py + 300, px : px + 400]])
        cv2.imwrite(str(outdir / f"crop{i}_old_left_new_right.png"), pair)
    common.write_json(
        common.WORK / "bench_pcb_tiles.json",
        {"machine": common.machine(), "ratio": ratio.tolist(), "rect": list(rect)},
    )
    print(f"crops (old left, new right, 100 %) in {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
