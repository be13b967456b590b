"""Thin near objects pasted whole, in the whole stacker: what the glow scenes gain, what a real
stack loses.

``bench_glow_decisions.py`` found one rule that gains on a gather scene without losing on a
scatter one ("near paste"): where the frame that won a place's finest band is more than one
frame *nearer* than the frame that leads the finest coarse level's focus score there (outside
quiet places), take that frame's pixels whole, feathered by 1.5 px. It was measured there on
frames placed by a perfect aligner. Here the rule runs inside :class:`stacker.stack.Stacker`
(its own alignment, exposure gains, the frames as read), with the bookkeeping it needs (the
frames' pixels where each last won the finest band, which frame that was, which frame leads
the coarse score, each frame's gains), and with conditions that might keep it to thin near
objects:

* ``base``: the rule as above;
* ``stands out r``: ... and the winner's finest-band activity ``r`` times the mean of all
  frames' there;
* ``tracker``: ... and the focus tracker's best frame there within one frame of the winner;
* ``sharper q``: ... and the winner's focus measure ``q`` times the coarse leader's there;
* ``in focus f``: ... and the best focus measure there at least ``f`` times the stack's 99th
  percentile of it (some frame shows the place sharp).

Each variant's composite is scored on the glow scenes as ``bench_glow.py`` scores them (luma and
glow-band PSNR), and on the real stack ``../shared/data/pcb-stack`` by the share of pixels it
moves by more than 10 levels from the composite without the rule; the 256 px tile each variant
changes most is written beside the composite without it, at 200 %, to
``benchmarks/_work/near_paste/`` for looking at.

    python benchmarks/bench_near_paste.py
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_glow
import bench_pcb_tiles
import common
import cv2
import numpy as np

import stacker.stack
from rig.sim.glow import GlowStack
from stacker.io import read_image, write_image
from stacker.merge import PyramidMerger

OUT = common.WORK / "near_paste"
FEATHER = 1.5  # sigma of the paste's edge, full-size pixels


class RecordingMerger(PyramidMerger):
    """The pyramid merge as coded, keeping what the paste needs; :attr:`paste` (0/1 at the
    finest decision size) is blended into :meth:`composite` when set."""

    def __init__(self, height: int, width: int, dtype: np.dtype) -> None:
        super().__init__(height, width, dtype)
        self.hard = np.zeros((height, width, 3), self.dtype)
        self.fine_index = np.zeros(self.decision_shapes[0], np.int32)
        coarse = self.shapes[self.fine]
        self.coarse_best = np.zeros(coarse, np.float32)
        self.coarse_index = np.zeros(coarse, np.int32)
        self.activity_sum = np.zeros(self.decision_shapes[0], np.float32)
        self.leader_measure = np.zeros(self.tracker.best.shape, np.float32)
        self.gains: list[tuple[float, float, float]] = []
        self.paste: np.ndarray | None = None

    def fold(self, frame, gains, valid_small, tracked) -> None:  # type: ignore[no-untyped-def]
        super().fold(frame, gains, valid_small, tracked)
        count = len(self.gains)
        self.gains.append(tuple(float(g) for g in gains))  # type: ignore[arg-type]
        h, w = self.hard.shape[:2]  # band 0's decision (made at half size) at full size
        full = cv2.resize(self._mask[0], (w, h), interpolation=cv2.INTER_NEAREST)
        cv2.copyTo(frame, full, self.hard)
        np.copyto(self.fine_index, count, where=self._mask[0] > 0)
        self.activity_sum += self._act_new[0].astype(np.float32)
        score = self._score[0]
        h, w = score.shape
        valid = cv2.resize(valid_small, (w, h), interpolation=cv2.INTER_NEAREST)
        ahead = (score > self.coarse_best) & (valid > 0)
        self.coarse_best[ahead] = score[ahead]
        self.coarse_index[ahead] = count
        th, tw = self.leader_measure.shape
        at = cv2.resize(ahead.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST)
        np.copyto(self.leader_measure, tracked.measure, where=at > 0)

    def at_decision(self, a: np.ndarray) -> np.ndarray:
        dh, dw = self.fine_index.shape
        return cv2.resize(a, (dw, dh), interpolation=cv2.INTER_NEAREST)

    def variants(self) -> dict[str, np.ndarray]:
        """Where each variant pastes (bool, at the finest decision size)."""
        fine = self.fine_index
        coarse = self.at_decision(self.coarse_index)
        base = (coarse - fine > 1) & (self.quiet[0] == 0)
        mean = self.activity_sum / len(self.gains)
        best = self.activity[0].astype(np.float32)
        tracker = self.at_decision(self.tracker.index.astype(np.int32))
        sharper = self.at_decision(self.holder[0] / np.maximum(self.leader_measure, 1e-6))
        focus = self.at_decision(self.tracker.best)
        top = float(np.quantile(self.tracker.best[self.tracker.best > 0], 0.99))
        return {
            "none": np.zeros_like(base),
            "base": base,
            "stands out 1.5": base & (best > 1.5 * mean),
            "stands out 2": base & (best > 2 * mean),
            "stands out 3": base & (best > 3 * mean),
            "tracker": base & (np.abs(tracker - fine) <= 1),
            "sharper 2": base & (sharper > 2),
            "sharper 4": base & (sharper > 4),
            "in focus 0.1": base & (focus > 0.1 * top),
            "in focus 0.25": base & (focus > 0.25 * top),
        }

    def composite(self, stop: int = 0) -> np.ndarray:
        out = super().composite(stop)
        if stop or self.paste is None or not self.paste.any():
            return out
        h, w = out.shape[:2]
        alpha = cv2.resize(self.paste.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        alpha = cv2.GaussianBlur(alpha, (0, 0), FEATHER)[..., None]
        index = cv2.resize(self.fine_index, (w, h), interpolation=cv2.INTER_NEAREST)
        gain = np.asarray(self.gains, np.float32)[index]
        near = np.minimum(self.hard * gain, float(np.iinfo(out.dtype).max))
        return np.rint(out * (1 - alpha) + near * alpha).astype(out.dtype)


def stacked(paths: list[Path]) -> tuple[stacker.stack.Stacker, RecordingMerger]:
    """The frames stacked near to far by a Stacker whose pyramid merger records."""
    original = stacker.stack.make_merger
    stacker.stack.make_merger = lambda method, h, w, dtype: RecordingMerger(h, w, dtype)  # type: ignore[assignment]
    try:
        s = stacker.stack.Stacker(overlap=False)
        for p in paths:
            s.add(read_image(p), name=p.name)
        s.wait()
    finally:
        stacker.stack.make_merger = original
    merger = s._state
    assert isinstance(merger, RecordingMerger)
    return s, merger


def composites(paths: list[Path]) -> dict[str, tuple[float, np.ndarray]]:
    """Each variant's share of the frame pasted and its composite (uncropped)."""
    s, merger = stacked(paths)
    out = {}
    for name, mask in merger.variants().items():
        merger.paste = mask
        s._full_cache = None
        out[name] = (float(mask.mean()), s.result(crop=False))
    return out


def glow_rows(family: str, seed: int) -> list[dict[str, Any]]:
    folder = bench_glow.ensure_glow_stack(family, 1500, 1000, 16, seed)
    stack = GlowStack.from_folder(folder)
    results = composites(common.frame_paths(folder))
    paths = {}
    for name, (_share, image) in results.items():
        paths[name] = OUT / f"{folder.name}_{name.replace(' ', '_')}.tif"
        write_image(paths[name], image)
    scores = bench_glow.score(paths, stack)
    return [
        {"stack": f"{family} s{seed}", "variant": name, "share pasted": round(share, 4),
         "luma dB": round(scores[name]["luma_psnr_db"], 2),
         "glow band dB": round(scores[name]["glow_psnr_db"], 2)}
        for name, (share, _image) in results.items()
    ]  # fmt: skip


def most_changed_tile(changed: np.ndarray, size: int = 256) -> tuple[int, int, float]:
    h, w = changed.shape
    step = size // 2
    tiles = [
        (y, x, float(changed[y : y + size, x : x + size].mean()))
        for y in range(0, h - size + 1, step)
        for x in range(0, w - size + 1, step)
    ]
    return max(tiles, key=lambda t: t[2])


def pcb_rows(folder: Path) -> list[dict[str, Any]]:
    results = composites(sorted(p for p in folder.iterdir() if p.name.startswith("pcb_")))
    plain = results["none"][1]
    rows = []
    for name, (share, image) in results.items():
        changed = np.abs(image.astype(np.int32) - plain.astype(np.int32)).max(axis=2) > 10
        y, x, _ = most_changed_tile(changed)
        pair = np.hstack([plain[y : y + 256, x : x + 256], image[y : y + 256, x : x + 256]])
        pair = cv2.resize(pair, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(OUT / f"pcb_{name.replace(' ', '_')}_{y}_{x}.png"), pair)
        rows.append({"stack": "pcb", "variant": name, "share pasted": round(share, 4),
                     "changed > 10 levels": round(float(changed.mean()), 4)})  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="textured-gather,textured-scatter")
    ap.add_argument("--seeds", type=common.seed_list, default="2026,7")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_near_paste.json")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    show: Callable[[dict[str, Any]], None] = lambda r: print(json.dumps(r), flush=True)  # noqa: E731
    if bench_pcb_tiles.PCB.is_dir():
        for r in pcb_rows(bench_pcb_tiles.PCB):
            show(r)
            rows.append(r)
    for family in args.families.split(","):
        for seed in args.seeds:
            for r in glow_rows(family, seed):
                show(r)
                rows.append(r)
    args.json.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
