"""Peak memory and time of a RAW stack: Bayer DNGs in, linear DNG out (``stacker stack`` path).

The frames are synthetic Bayer DNGs (``rig/sim/bayer.py``) of the benchmark scene at
45 MP (8208x5472, a Nikon D850's or Z 7's sensor) by default, rendered once into
``benchmarks/_work/``. Each size runs :func:`stacker.offline.stack_files` in a fresh interpreter,
so its peak RSS (``ru_maxrss``) is its own: LibRaw's decode (demosaicing included), the stacker's
state and the DNG encode all count. The bar scales the 24 MP bar (1.5 GB) by pixel count.

    .venv/bin/python benchmarks/bench_raw.py --mp 45 --frames 4
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common

from rig.sim.bayer import write_raw_stack
from rig.sim.scene import SceneSpec

BAR_24MP_MB = 1500.0


def size_for(mp: float) -> tuple[int, int]:
    """45 MP is the 8208x5472 sensor of 45 MP bodies; other sizes are 3:2 like the others."""
    return (8208, 5472) if mp == 45 else common.size_for_mp(mp)


def ensure_raw_stack(mp: float, frames: int) -> Path:
    """Folder of ``frames`` Bayer DNGs at ``mp`` MP, rendered now unless already cached."""
    w, h = size_for(mp)
    spec = SceneSpec(width=w, height=h, seed=common.SEED, bit_depth=16)
    folder = common.WORK / f"synthetic_raw_{mp:g}mp_{frames}f"
    if common.is_cached(folder, spec, frames):
        return folder
    print(f"rendering {frames} Bayer DNGs of {w}x{h} into {folder} (once) ...", flush=True)
    t0 = time.perf_counter()
    write_raw_stack(folder, spec, frames)
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def worker(folder: Path, method: str) -> dict[str, Any]:
    """Stack ``folder`` into a DNG in this process: its timings and peak RSS."""
    from stacker.offline import stack_files
    from stacker.options import StackOptions
    from stacker.raw import read_raw_linear

    paths = sorted(folder.glob("*.dng"))
    rss_start = common.peak_rss_mb()
    marks = [time.perf_counter()]

    def on_frame(path: Path, record: Any, warning: str | None) -> None:
        marks.append(time.perf_counter())

    dng = common.WORK / f"_bench_raw_{folder.name}.dng"
    run = stack_files(paths, dng, stack=StackOptions(method=method), on_frame=on_frame)
    t_end = time.perf_counter()
    peak = common.peak_rss_mb()
    t0 = time.perf_counter()
    read_raw_linear(paths[0])
    decode_s = time.perf_counter() - t0
    per_frame = [b - a for a, b in itertools.pairwise(marks)]
    payload = {
        "folder": str(folder),
        "method": method,
        "frames": len(paths),
        "merged": run.stacker.frames_merged,
        "shape": list(run.stacker.shape or ()),
        "frame_median_s": statistics.median(per_frame),
        "decode_s": decode_s,
        "write_s": t_end - marks[-1],
        "total_s": t_end - marks[0],
        "dng_mb": dng.stat().st_size / 2**20,
        "rss_before_frames_mb": rss_start,
        "peak_rss_mb": peak,
    }
    dng.unlink()
    return payload


def main() -> int:
    ap = common.worker_parser(__doc__, "pyramid or depthmap")
    ap.add_argument("--mp", default="45", help="megapixels, comma separated (default 45)")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--json", type=Path, default=common.WORK / "bench_raw.json")
    args = ap.parse_args()
    if args.worker is not None:
        return common.work(args, worker)
    rows, results = [], []
    for mp in (float(x) for x in args.mp.split(",")):
        folder = ensure_raw_stack(mp, args.frames)
        r = common.run_worker(__file__, folder, args.method)
        if r is None:
            return 1
        w, h = size_for(mp)
        r["bar_mb"] = BAR_24MP_MB * (w * h) / (6000 * 4000)
        results.append(r)
        rows.append([f"{w}x{h}", str(r["frames"]), f"{r['frame_median_s']:.1f}",
                     f"{r['decode_s']:.1f}", f"{r['write_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                     f"{r['bar_mb']:.0f}"])  # fmt: skip
    header = ["frames", "n", "s/frame", "decode s", "final+DNG s", "peak RSS MB", "bar MB"]
    print(common.table(rows, header))
    common.write_json(args.json, {"machine": common.machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
