"""stackrig against its peers on the same synthetic stacks: quality (PSNR) and wall time.

Contenders, each run as its own process from JPEG files on disk to a TIFF on disk:

* **stackrig** — ``stacker.stack.Stacker`` with ``--method`` (default pyramid),
* **baseline** — the textbook recipe (:func:`evaluation.scoring.baseline_stack`),
* **enfuse** — Hugin's ``align_image_stack -m -a`` then ``enfuse`` with the focus-stack weights
  (``--exposure-weight=0 --saturation-weight=0 --contrast-weight=1 --hard-mask``).

Quality is PSNR against the known all-in-focus truth, in the geometry of the first frame, over
the area every frame and every output covers. Each output is first registered to the truth
(:func:`evaluation.scoring.fit_to_reference`); it is resampled only if it sits more than a
quarter pixel away (cropped outputs always are), and the table says how far it was.

    python benchmarks/bench_peers.py --sizes 2,6 --frames 24

enfuse and align_image_stack come from Debian's ``enfuse`` and ``hugin-tools`` packages.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import cv2
import numpy as np

from evaluation.scoring import (
    corner_rms_error,
    coverage_mask,
    edge_band_mask,
    fit_to_reference,
    flat_mask,
    psnr,
    to_reference,
)
from rig.sim.scene import SyntheticStack
from stacker.io import read_image

ENFUSE_FLAGS = [
    "--exposure-weight=0",
    "--saturation-weight=0",
    "--contrast-weight=1",
    "--hard-mask",
    "--contrast-window-size=5",
]
HEADER = ["stack", "method", "PSNR dB", "flat dB", "edges dB", "wall s", "offset px", "note"]
INSTALL_HINT = "install them with: sudo apt-get install enfuse hugin-tools"


def worker(method: str, folder: Path, out: Path, stack_method: str) -> int:
    """Stack ``folder`` into ``out`` in this process (timed by the parent, start to finish)."""
    from stacker.io import write_image

    paths = common.frame_paths(folder)
    if method == "baseline":
        from evaluation.scoring import baseline_stack

        result = baseline_stack(read_image(p) for p in paths)
        image = result.image
    else:
        stacker_cls, why = common.load_stacker()
        if stacker_cls is None:
            print(why, file=sys.stderr)
            return 3
        positions = common.frame_positions(folder)
        stacker = stacker_cls(method=stack_method)
        for p in paths:
            stacker.add(read_image(p), name=p.name, position_um=positions.get(p.name))
        image = common.stacker_result(stacker)
    write_image(out, image)
    return 0


def run_python(method: str, folder: Path, out: Path, stack_method: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__)), "--worker", method, "--folder", str(folder)]
    cmd += ["--out", str(out), "--method", stack_method]
    return common.timed_run(cmd)


def run_enfuse(folder: Path, out: Path) -> dict[str, Any]:
    missing = [t for t in ("enfuse", "align_image_stack") if shutil.which(t) is None]
    if missing:
        return {"error": f"{' and '.join(missing)} not found; {INSTALL_HINT}"}
    paths = [str(p) for p in common.frame_paths(folder)]
    with tempfile.TemporaryDirectory(prefix="enfuse_", dir=common.WORK) as tmp:
        prefix = str(Path(tmp) / "aligned_")
        t0 = time.perf_counter()
        align = subprocess.run(
            ["align_image_stack", "-m", "--use-given-order", "-a", prefix, *paths],
            capture_output=True,
            text=True,
        )
        t_align = time.perf_counter() - t0
        if align.returncode != 0:
            return {"error": "align_image_stack failed: " + align.stderr.strip()[-300:]}
        aligned = sorted(str(p) for p in Path(tmp).glob("aligned_*.tif"))
        t1 = time.perf_counter()
        fuse = subprocess.run(
            ["enfuse", *ENFUSE_FLAGS, "-o", str(out), *aligned], capture_output=True, text=True
        )
        t_fuse = time.perf_counter() - t1
        if fuse.returncode != 0:
            return {"error": "enfuse failed: " + fuse.stderr.strip()[-300:]}
    return {"wall_s": t_align + t_fuse, "align_s": t_align, "fuse_s": t_fuse}


def read_output(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An output as 8-bit BGR and its valid-pixel mask (alpha channel where there is one)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"bench_peers: cannot read {path}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3]), img[:, :, 3] > 0
    return img, np.ones(img.shape[:2], bool)


def place_outputs(
    outputs: dict[str, Path], truth: np.ndarray, transforms: list[np.ndarray]
) -> tuple[dict[str, tuple[np.ndarray, float]], np.ndarray]:
    """Every output in the truth's geometry with its offset (px), and the area all cover."""
    h, w = truth.shape[:2]
    common_mask = coverage_mask(transforms, (w, h), inset_px=4)
    coverage = common_mask.copy()  # what every frame saw: the fit looks only there
    placed: dict[str, tuple[np.ndarray, float]] = {}
    for name, path in outputs.items():
        img, valid = read_output(path)
        fit = fit_to_reference(img, truth, mask=coverage)
        ident = np.eye(3)
        ih, iw = img.shape[:2]
        offset = corner_rms_error(fit.transform, ident, iw, ih)
        if img.shape[:2] == (h, w) and offset < 0.25:
            ref_img, ref_valid = img, valid
        else:
            ref_img = to_reference(img, fit.transform, (w, h), interpolation=cv2.INTER_CUBIC)
            ref_valid = (
                to_reference(
                    valid.astype(np.uint8), fit.transform, (w, h), interpolation=cv2.INTER_NEAREST
                )
                > 0
            )
        common_mask &= cv2.erode(ref_valid.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        placed[name] = (ref_img, offset)
    return placed, common_mask


def evaluate(outputs: dict[str, Path], stack: SyntheticStack) -> dict[str, dict[str, Any]]:
    """PSNR of every output against the truth on the area all of them cover."""
    truth = stack.truth()
    placed, common_mask = place_outputs(outputs, truth, stack.transforms())
    flat = common_mask & flat_mask(truth)
    edges = common_mask & edge_band_mask(truth)
    scores: dict[str, dict[str, Any]] = {
        name: {
            "psnr_db": psnr(img, truth, common_mask),
            "flat_psnr_db": psnr(img, truth, flat),
            "edge_psnr_db": psnr(img, truth, edges),
            "offset_px": offset,
        }
        for name, (img, offset) in placed.items()
    }
    scores["_area"] = {
        "fraction": float(common_mask.mean()),
        "flat_fraction": float(flat.mean()),
        "edge_fraction": float(edges.mean()),
    }
    return scores


def single_frames(folder: Path, stack: SyntheticStack, mask: np.ndarray) -> dict[str, float]:
    """PSNR of the best and worst single frames (ideally registered with their true transform)."""
    truth = stack.truth()
    h, w = truth.shape[:2]
    values = []
    for path, t in zip(common.frame_paths(folder), stack.transforms(), strict=True):
        img = read_image(path)
        values.append(
            psnr(to_reference(img, t, (w, h), interpolation=cv2.INTER_CUBIC), truth, mask)
        )
    return {"best_single_frame_db": max(values), "worst_single_frame_db": min(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,6", help="megapixels, comma separated (default 2,6)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--method", default="pyramid", help="stackrig method (default pyramid)")
    ap.add_argument("--skip", default="", help="comma separated: stackrig, baseline, enfuse")
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_peers.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.folder, args.out, args.method)

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    _, stacker_missing = common.load_stacker()
    if stacker_missing and "stackrig" not in skip:
        print(f"note: {stacker_missing}; stackrig rows are skipped")
        skip.add("stackrig")
    if "enfuse" not in skip and not (shutil.which("enfuse") and shutil.which("align_image_stack")):
        print(f"note: enfuse/align_image_stack not found; {INSTALL_HINT}")
        skip.add("enfuse")

    results = []
    for mp in [float(s) for s in args.sizes.split(",") if s.strip()]:
        folder = common.ensure_stack(mp, args.frames)
        stack = SyntheticStack.from_folder(folder)
        outdir = common.WORK / f"peers_{folder.name}"
        outdir.mkdir(parents=True, exist_ok=True)
        runs: dict[str, dict[str, Any]] = {}
        outputs: dict[str, Path] = {}
        for name in ("stackrig", "baseline", "enfuse"):
            if name in skip:
                continue
            out = outdir / f"{name}.tif"
            out.unlink(missing_ok=True)
            print(f"{mp:g} MP: running {name} ...", flush=True)
            if name == "enfuse":
                runs[name] = run_enfuse(folder, out)
            else:
                runs[name] = run_python(name, folder, out, args.method)
            if "error" in runs[name]:
                print(f"  {name}: {runs[name]['error']}")
            else:
                outputs[name] = out
        scores = evaluate(outputs, stack) if outputs else {}
        for name, s in scores.items():
            if name in runs:
                runs[name].update(s)
        h, w = stack.spec.height, stack.spec.width
        single_mask = coverage_mask(stack.transforms(), (w, h), inset_px=8)
        singles = single_frames(folder, stack, single_mask)
        results.append(
            {
                "mp": mp,
                "size": [stack.spec.width, stack.spec.height],
                "frames": args.frames,
                "runs": runs,
                "common_area": scores.get("_area", {}),
                **singles,
            }
        )

    rows = []
    for r in results:
        for name, run in r["runs"].items():
            if "error" in run:
                rows.append([f"{r['mp']:g} MP", name, "-", "-", "-", "-", "-", run["error"][:60]])
                continue
            rows.append(
                [
                    f"{r['mp']:g} MP",
                    name,
                    f"{run['psnr_db']:.2f}",
                    f"{run['flat_psnr_db']:.2f}",
                    f"{run['edge_psnr_db']:.2f}",
                    f"{run['wall_s']:.1f}",
                    f"{run['offset_px']:.2f}",
                    "",
                ]
            )
        for which in ("best", "worst"):
            value = f"{r[f'{which}_single_frame_db']:.2f}"
            rows.append([f"{r['mp']:g} MP", f"{which} single frame", value, "", "", "", "", ""])
    print()
    print(common.table(rows, HEADER))
    common.write_json(
        args.json, {"machine": common.machine(), "method": args.method, "results": results}
    )
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
