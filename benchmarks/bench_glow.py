"""Colour glow: stackrig against enfuse, the textbook baseline and the perfect per-pixel choice.

On the glow scene family (:mod:`rig.sim.glow`: saturated shapes and glyphs in front of a
textured or black background, defocus sigma up to 12 px, scatter or gather defocus, breathing,
jitter, exposure drift, JPEG 4:2:0), every contender stacks the JPEG files in its own process:

* **stackrig**: ``stacker stack --no-crop`` of this checkout (``--method`` to change),
* **before** (with ``--before ROOT``): the same command run from another checkout's
  ``stacker`` package (e.g. an export of an older commit), for before/after figures,
* **baseline** and **enfuse**: as in ``bench_peers.py``.

Scores, in the truth's geometry (outputs placed as ``bench_peers.py`` does): luma PSNR over the
central 80 % after a least-squares gain fit, and colour PSNR over the *glow band* (background
within 2..24 px of a saturated object, inside the central 80 %). "perfect choice" is the best
composite that takes every pixel from one frame, knowing the truth (frames warped with their
true transforms and exposure undone; :func:`evaluation.scoring.perfect_choice`).

    python benchmarks/bench_glow.py --seeds 2026,7 --before /tmp/stackrig-old

Scores move by a dB or more from one seed to the next (the objects land differently on the
background), so a change is judged on two seeds per family, never one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import bench_peers
import common
import cv2
import numpy as np

from evaluation.scoring import central_mask, fitted_psnr, perfect_choice, to_reference
from rig.sim.glow import (
    BACKGROUNDS,
    DEFOCUS_MODELS,
    GlowSpec,
    GlowStack,
    write_glow_stack,
)
from rig.sim.scene import TRUTH_SIDECAR
from stacker.io import read_image, write_image
from stacker.options import ORDERS

FAMILIES = [f"{b}-{d}" for b in BACKGROUNDS for d in DEFOCUS_MODELS]
HEADER = ["scene", "method", "luma dB", "glow band dB", "wall s", "offset px"]
REUSABLE = ("baseline", "enfuse")
"""Contenders whose output does not depend on this checkout: when skipped (``--skip``), their
output from an earlier run in the scene's output folder is scored again."""
CLI = common.STACKER_CLI


def ensure_glow_stack(family: str, width: int, height: int, frames: int, seed: int) -> Path:
    """Folder of the family's frames, rendered now unless already cached."""
    background, defocus = family.split("-")
    spec = GlowSpec(width=width, height=height, seed=seed, background=background, defocus=defocus)
    folder = common.WORK / f"glow_{family}_{width}x{height}_{frames}f_s{seed}"
    if common.is_cached(folder, spec, frames):
        return folder
    print(f"rendering {frames} frames of {family} into {folder} (once) ...", flush=True)
    write_glow_stack(folder, GlowStack(spec, frames))
    return folder


def scene_arguments(ap: argparse.ArgumentParser, *, size: str, frames: int, seeds: str) -> None:
    """The options every glow benchmark takes to choose its stacks, with its own defaults."""
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--size", default=size)
    ap.add_argument("--frames", type=int, default=frames)
    ap.add_argument(
        "--seeds",
        type=common.seed_list,
        default=seeds,
        help="scene seeds, comma separated: each family is rendered and scored once per seed",
    )


def glow_scores(image: np.ndarray, stack: GlowStack) -> tuple[float, float]:
    """Luma PSNR over the central 80 % and colour PSNR over the glow band, of a composite in
    the truth's geometry."""
    truth = stack.truth()
    centre = central_mask(*truth.shape[:2])
    band = centre & stack.glow_band()
    luma = fitted_psnr(image, truth, centre)
    return luma, fitted_psnr(image, truth, band, fit_mask=centre, luma=False)


def run_stacker_cli(
    root: Path, folder: Path, out: Path, method: str, order: str = "near-to-far"
) -> dict[str, Any]:
    """``stacker stack`` with the ``stacker`` package of checkout ``root``, timed. With
    ``order`` ``far-to-near`` the frames are given far end first, as a stack shot that way,
    and the result is put in the near end's geometry (the truth's)."""
    inputs = [str(folder)]
    if order == "far-to-near":
        inputs = [str(p) for p in reversed(common.frame_paths(folder))]
    cmd = [sys.executable, "-c", CLI, str(root), "stack", *inputs, "-o", str(out)]
    cmd += ["--no-crop", "--method", method]
    if order == "far-to-near":
        cmd += ["--order", order, "--reference", "last"]
    return common.timed_run(cmd)


def reference_frames(folder: Path, stack: GlowStack, images: Iterable[np.ndarray]):
    """``images`` (one per frame of ``folder``) in the truth's geometry, with the frames'
    exposure and white-balance gains undone: what a perfect aligner would merge."""
    h, w = stack.truth().shape[:2]
    for img, frame_t, gains in zip(images, stack.transforms(), _gains(folder), strict=True):
        ref = to_reference(img, frame_t, (w, h), interpolation=cv2.INTER_CUBIC)
        yield cv2.convertScaleAbs(
            ref.astype(np.float32) * np.float32(tuple(1.0 / g for g in gains))
        )


def frame_files(folder: Path) -> Iterator[np.ndarray]:
    """The frames of ``folder`` as read from their files."""
    return (read_image(p) for p in common.frame_paths(folder))


def clean_renders(stack: GlowStack) -> Iterator[np.ndarray]:
    """The frames of ``stack`` rendered again without noise or JPEG (the scene-aware guides)."""
    clean = GlowStack(replace(stack.spec, noise_sigma=0.0, jpeg_quality=None), stack.n_frames)
    return (f.image for f in clean)


def oracle(folder: Path, stack: GlowStack, outdir: Path) -> dict[str, Path]:
    """Write the perfect per-pixel choices of ``folder``'s frames: judged on the frames
    themselves ("noise-lucky"), and judged on noise-free renders of them ("scene-aware")."""
    truth = stack.truth()
    out = {
        "perfect choice (noise-lucky)": outdir / "oracle_lucky.tif",
        "perfect choice (scene-aware)": outdir / "oracle_scene.tif",
    }
    frames = reference_frames(folder, stack, frame_files(folder))
    write_image(out["perfect choice (noise-lucky)"], perfect_choice(frames, truth)[0])
    guides = reference_frames(folder, stack, clean_renders(stack))
    frames = reference_frames(folder, stack, frame_files(folder))
    write_image(
        out["perfect choice (scene-aware)"], perfect_choice(frames, truth, guides=guides)[0]
    )
    return out


def _gains(folder: Path) -> list[list[float]]:
    data = json.loads((folder / TRUTH_SIDECAR).read_text())
    return [f["gains_bgr"] for f in data["frames"]]


def score(outputs: dict[str, Path], stack: GlowStack) -> dict[str, dict[str, float]]:
    truth = stack.truth()
    h, w = truth.shape[:2]
    placed, covered = bench_peers.place_outputs(outputs, truth, stack.transforms())
    centre = central_mask(h, w) & covered
    band = centre & stack.glow_band()
    return {
        name: {
            "luma_psnr_db": fitted_psnr(img, truth, centre),
            "glow_psnr_db": fitted_psnr(img, truth, band, fit_mask=centre, luma=False),
            "offset_px": offset,
        }
        for name, (img, offset) in placed.items()
    }


def run_family(family: str, seed: int, args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    width, height = (int(v) for v in args.size.split("x"))
    folder = ensure_glow_stack(family, width, height, args.frames, seed)
    stack = GlowStack.from_folder(folder)
    far = "_far_first" if args.order == "far-to-near" else ""
    outdir = common.WORK / f"glow_out_{folder.name}{far}"
    outdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    contenders = ["stackrig", "before", "baseline", "enfuse"]
    for name in contenders:
        out = outdir / f"{name}.tif"
        if name in skip and name in REUSABLE and out.exists():
            print(f"{family}: {name} scored from its output of an earlier run")
            runs[name] = {"wall_s": float("nan"), "earlier_run": True}
            continue
        if name in skip or (name == "before" and args.before is None):
            continue
        out.unlink(missing_ok=True)
        print(f"{family}: running {name} ...", flush=True)
        if name == "enfuse":
            runs[name] = bench_peers.run_enfuse(folder, out)
        elif name == "baseline":
            runs[name] = bench_peers.run_python(name, folder, out, args.method)
        else:
            root = args.root if name == "stackrig" else args.before
            runs[name] = run_stacker_cli(root, folder, out, args.method, args.order)
        if "error" in runs[name]:
            print(f"  {name}: {runs[name]['error']}")
    outputs = {n: outdir / f"{n}.tif" for n, r in runs.items() if "error" not in r}
    for name, path in oracle(folder, stack, outdir).items():
        runs[name] = {"wall_s": float("nan")}
        outputs[name] = path
    for name, s in score(outputs, stack).items():
        runs[name].update(s)
    return {
        "scene": family,
        "seed": seed,
        "size": [width, height],
        "frames": args.frames,
        "runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scene_arguments(ap, size="1500x1000", frames=16, seeds=str(common.SEED))
    ap.add_argument("--method", default="pyramid", help="stackrig method (default pyramid)")
    ap.add_argument("--before", type=Path, help="checkout whose stacker/ gives 'before' rows")
    ap.add_argument(
        "--root",
        type=Path,
        default=common.HERE.parent,
        help="checkout whose stacker/ gives 'stackrig' rows (default: this one)",
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma separated: stackrig, baseline, enfuse (a skipped baseline or enfuse is "
        "scored from an earlier run's output when there is one)",
    )
    ap.add_argument(
        "--order",
        default="near-to-far",
        choices=ORDERS,
        help="far-to-near: stackrig and 'before' are given the frames far end first (told "
        "so); enfuse and the baseline take them as they are",
    )
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_glow.json")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    seeds = args.seeds
    results = [run_family(f, seed, args, skip) for f in families for seed in seeds]
    rows = []
    for r in results:
        scene = f"{r['scene']} s{r['seed']}"
        for name, run in r["runs"].items():
            if "error" in run:
                rows.append([scene, name, "-", "-", "-", run["error"][:50]])
                continue
            rows.append(
                [
                    scene,
                    name,
                    f"{run['luma_psnr_db']:.2f}",
                    f"{run['glow_psnr_db']:.2f}",
                    f"{run['wall_s']:.1f}",
                    f"{run['offset_px']:.2f}",
                ]
            )
    print()
    print(common.table(rows, HEADER))
    common.write_json(args.json, {"machine": common.machine(), "results": results})
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
