"""Colour glow: which per-pixel decision the pyramid merge lacks, scored on the glow scenes.

Every glow stack (the JPEG folders ``bench_glow.py`` renders and caches) is placed on the
truth's geometry with its true transforms and gains (a perfect aligner), then merged in this
process by :class:`stacker.merge.PyramidMerger` as coded, and again with one of its decisions
replaced, so that each row says how much that decision is worth on its own:

* **pyramid**: the merge as coded;
* **pyramid, quiet bands picked**: the merge with ``PyramidMerger.quiet_below = 0``, so the fine
  bands are the most active frame's even where every frame holds only noise;
* **pyramid on noise-free frames**: the merge as coded on the frames rendered again without
  noise or JPEG: the part of its error that noise makes;
* **pyramid, fine bands by perfect index**: the bands the merge selects per coefficient
  (``PyramidMerger.coarse_from`` finest) taken from the frame the scene-aware perfect choice
  names at that place: the most a better fine-band decision can give;
* **pyramid, every band by perfect index**: every band and the base so (a multi-resolution
  spline of the frames, Burt & Adelson 1983): what any band-wise selection can give;
* **hard choice, merge's own decision**: every pixel whole from the frame that won the merge's
  finest-band decision there (activity, 5x5 majority vote), no pyramid at all;
* **hard detail down to band c**: bands 0..c of that hard composite over the merge's coarser
  bands and base;
* **hybrid r**: the hard composite where the finest-band activity's winner stands out (best
  above ``r`` times the frames' mean), the pyramid elsewhere;
* **near paste**: the hard composite (feathered by 1.5 px) where the finest-band winner is
  more than one frame nearer than the frame that leads the finest coarse level's focus score
  there, outside quiet places: a thin near object (its frame wins its detail, a background
  frame the coarse bands around it) is kept whole instead of see-through. It needs the
  stack's direction (the glow stacks run near to far); "direction wrong" takes it reversed;
* **depthmap merge**: :class:`stacker.merge.DepthMapMerger` (the hard choice of a smoothed
  focus measure at half size, feathered), for comparison;
* **perfect choice**: each pixel from the frame closest to the truth, judged on noise-free
  renders (``bench_glow.py``'s scene-aware yardstick).

Scores as ``bench_glow.py``'s (gain-fitted luma PSNR over the central 80 %, colour PSNR over the
glow band), on every family and ``--seeds``; then, for the merge, its two variants and the
perfect choice, where the luma error lies: its mean square in each region of the central 80 %
(the objects, the 2 px just outside them, the glow band, the background beyond it) and each
region's share of the whole. Alignment plays no part, so the figures sit above
``bench_glow.py``'s and compare decisions with each other only.

    python benchmarks/bench_glow_decisions.py --size 750x500 --frames 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench_glow
import common
import cv2
import numpy as np

from evaluation.scoring import as_luma, central_mask, perfect_choice
from rig.sim.glow import GlowStack
from stacker import pyramid
from stacker.focus import measure_luma
from stacker.merge import DepthMapMerger, PyramidMerger

HYBRID_RATIOS = (1.5, 2.0, 3.0)


class Recorder:
    """A PyramidMerger run on reference-geometry frames that also keeps, per pixel, the frame
    its finest-band decision last chose (as a hard composite) and that activity's best and sum,
    and optionally overrides some bands with the frame a given index map names."""

    def __init__(
        self, shape: tuple[int, int], forced: np.ndarray | None, levels: int, **settings: float
    ) -> None:
        h, w = shape
        self.merger = PyramidMerger(h, w, np.dtype(np.uint8))
        for name, value in settings.items():
            setattr(self.merger, name, value)
        self.forced, self.forced_levels = forced, levels
        self.hard = np.zeros((h, w, 3), np.uint8)
        self.best: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.fine_index = np.zeros(self.merger.decision_shapes[0], np.uint8)
        self.coarse_best = np.zeros(self.merger.shapes[self.merger.fine], np.float32)
        self.coarse_index = np.zeros(self.merger.shapes[self.merger.fine], np.uint8)

    def add(self, frame: np.ndarray, index: int) -> None:
        m = self.merger
        valid = np.full(m.tracker.size[::-1], 255, np.uint8)
        m.add(frame, (1.0, 1.0, 1.0), m.tracker.measure(measure_luma(frame)), valid, index)
        h, w = self.hard.shape[:2]
        won = cv2.resize(m._mask[0], (w, h), interpolation=cv2.INTER_NEAREST)
        cv2.copyTo(frame, won, self.hard)
        self.fine_index[m._mask[0] > 0] = index
        score = m._score[0]  # the finest coarse level's focus score
        ahead = score > self.coarse_best
        self.coarse_best[ahead], self.coarse_index[ahead] = score[ahead], index
        act = m._act_new[0].astype(np.float32)
        if self.best is None or self.total is None:
            self.best, self.total = act.copy(), act.copy()
        else:
            np.maximum(self.best, act, out=self.best)
            self.total += act
        if self.forced is not None:
            for k in range(min(self.forced_levels, m.levels)):
                lh, lw = m.shapes[k]
                idx = cv2.resize(self.forced, (lw, lh), interpolation=cv2.INTER_NEAREST)
                sel = idx == index
                m.fused[k][:, sel] = m.bands[k][:, sel]

    def composite(self) -> np.ndarray:
        return self.merger.composite(0)

    def hard_detail(self, down_to: int) -> np.ndarray:
        """Bands 0..down_to of the hard composite over the merge's coarser bands."""
        m = self.merger
        h, w = self.hard.shape[:2]
        bands = [np.zeros_like(b) for b in m.fused]
        pyramid.to_planes(self.hard, (1.0, 1.0, 1.0), bands[0])
        pyramid.build(m.levels, bands, np.zeros((h, w), np.int16))
        mixed = bands[: down_to + 1] + [b.copy() for b in m.fused[down_to + 1 :]]
        return pyramid.from_work(pyramid.collapse(mixed), np.dtype(np.uint8))

    def near_paste(self, direction: int, gap: int = 1, feather: float = 1.5) -> np.ndarray:
        """The hard composite, feathered, where the finest-band winner is more than ``gap``
        frames nearer (``direction`` 1; -1: farther) than the frame the coarse bands follow
        there, outside quiet places; the pyramid elsewhere. A thin near object whose own
        frame wins its detail but not the coarse bands around it is kept whole (opaque)."""
        out = self.composite()
        h, w = out.shape[:2]
        dh, dw = self.fine_index.shape
        coarse = cv2.resize(self.coarse_index, (dw, dh), interpolation=cv2.INTER_NEAREST)
        nearer = (coarse.astype(np.int16) - self.fine_index.astype(np.int16)) * direction > gap
        paste = (nearer & (self.merger.quiet[0] == 0)).astype(np.float32)
        alpha = cv2.GaussianBlur(cv2.resize(paste, (w, h), interpolation=cv2.INTER_NEAREST),
                                 (0, 0), feather)[..., None]  # fmt: skip
        return np.round(out * (1.0 - alpha) + self.hard * alpha).astype(np.uint8)

    def hybrid(self, ratio: float, count: int) -> np.ndarray:
        """The hard composite where the best activity stands out, the pyramid elsewhere."""
        assert self.best is not None and self.total is not None
        h, w = self.hard.shape[:2]
        sure = (self.best > ratio * self.total / count).astype(np.uint8)
        sure = cv2.resize(sure, (w, h), interpolation=cv2.INTER_NEAREST)
        out = self.composite()
        cv2.copyTo(self.hard, sure, out)
        return out


def scene_rows(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every composite of one stack, by name."""
    stack = GlowStack.from_folder(folder)
    truth = stack.truth()
    frames = list(bench_glow.reference_frames(folder, stack, bench_glow.frame_files(folder)))
    clean = list(bench_glow.reference_frames(folder, stack, bench_glow.clean_renders(stack)))
    perfect, index = perfect_choice(iter(frames), truth, guides=iter(clean))
    index_f = index.astype(np.float32)
    fine = PyramidMerger.coarse_from
    runs = {
        "as coded": Recorder(truth.shape[:2], None, 0),
        "quiet picked": Recorder(truth.shape[:2], None, 0, quiet_below=0.0),
        "fine by perfect": Recorder(truth.shape[:2], index_f, fine),
        "all by perfect": Recorder(truth.shape[:2], index_f, 99),
    }
    noise_free = Recorder(truth.shape[:2], None, 0)
    h, w = truth.shape[:2]
    depthmap = DepthMapMerger(h, w, np.dtype(np.uint8))
    valid = np.full(depthmap.tracker.size[::-1], 255, np.uint8)
    for i, (frame, clean_frame) in enumerate(zip(frames, clean, strict=True)):
        for run in runs.values():
            run.add(frame, i)
        noise_free.add(clean_frame, i)
        depthmap.add(
            frame, (1.0, 1.0, 1.0), depthmap.tracker.measure(measure_luma(frame)), valid, i
        )
    base = runs["as coded"]
    rows = [
        ("pyramid (as coded)", base.composite()),
        ("pyramid, quiet bands picked", runs["quiet picked"].composite()),
        ("pyramid on noise-free frames", noise_free.composite()),
        (f"pyramid, bands 0-{fine - 1} by perfect index", runs["fine by perfect"].composite()),
        ("pyramid, every band by perfect index", runs["all by perfect"].composite()),
        ("hard choice, merge's own decision", base.hard),
    ]
    rows += [(f"hard detail, bands 0-{c}", base.hard_detail(c)) for c in (0, 1, 2, 3)]
    rows += [(f"hybrid r={r:g}", base.hybrid(r, len(frames))) for r in HYBRID_RATIOS]
    rows.append(("near paste (stack near to far)", base.near_paste(1)))
    rows.append(("near paste, direction wrong", base.near_paste(-1)))
    rows.append(("depthmap merge", depthmap.composite(0)))
    rows.append(("perfect choice (scene-aware)", perfect))
    return rows


REGION_ROWS = (
    "pyramid (as coded)",
    "pyramid, quiet bands picked",
    "pyramid on noise-free frames",
    "perfect choice (scene-aware)",
)


def region_errors(image: np.ndarray, stack: GlowStack) -> dict[str, tuple[float, float]]:
    """Per region of the central 80 %: the luma error's mean square (after the gain fit over
    the whole centre) and the region's share of the centre's summed squared error."""
    truth = stack.truth()
    centre = central_mask(*truth.shape[:2])
    objects = stack.objects()
    outside = cv2.distanceTransform(np.where(objects, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    band = stack.glow_band()
    regions = {
        "objects": objects,
        "edge (2 px out)": ~objects & (outside <= 2),
        "glow band": band,
        "beyond": ~objects & (outside > 2) & ~band,
    }
    a, b = as_luma(image), as_luma(truth)
    gain = (a[centre] * b[centre]).sum() / max((a[centre] ** 2).sum(), 1e-9)
    err = (a * gain - b) ** 2
    total = float(err[centre].sum())
    return {
        name: (float(err[mask & centre].mean()), float(err[mask & centre].sum()) / total)
        for name, mask in regions.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_glow.scene_arguments(ap, size="750x500", frames=10, seeds=f"{common.SEED},7")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_glow_decisions.json")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    seeds = args.seeds
    scenes: list[str] = []
    scores: dict[str, list[str]] = {}
    where: dict[str, list[str]] = {}
    results = []
    for family in (f.strip() for f in args.families.split(",") if f.strip()):
        for seed in seeds:
            folder = bench_glow.ensure_glow_stack(family, width, height, args.frames, seed)
            stack = GlowStack.from_folder(folder)
            scenes.append(f"{family} s{seed}")
            for name, image in scene_rows(folder):
                luma, glow = bench_glow.glow_scores(image, stack)
                scores.setdefault(name, []).append(f"{luma:.2f} / {glow:.2f}")
                row = {"scene": family, "seed": seed, "composite": name,
                       "luma_psnr_db": luma, "glow_psnr_db": glow}  # fmt: skip
                if name in REGION_ROWS:
                    regions = region_errors(image, stack)
                    row["regions_mse_share"] = regions
                    for region, (mse, share) in regions.items():
                        cell = where.setdefault(f"{name}: {region}", [])
                        cell.append(f"{mse:.2f} ({share:.0%})")
                results.append(row)
                print(f"{scenes[-1]:24s} {name:40s} {luma:6.2f} {glow:6.2f}", flush=True)
    print()
    print("luma dB / glow band dB")
    print(common.table([[name, *row] for name, row in scores.items()], ["composite", *scenes]))
    print()
    print("luma error's mean square per region (its share of the whole)")
    print(common.table([[name, *row] for name, row in where.items()], ["composite", *scenes]))
    common.write_json(args.json, {"machine": common.machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
