"""The depth map's flat-region rules replayed on recorded stacks: two versions of
``stacker/depth_regions.py`` compared on the very same stacker states, in a minute or two.

``record`` renders and stacks each stack of ``bench_depth.py`` once (the same renders, the same
stacker) and saves what the end-of-stack vote (:func:`stacker.depth_regions.vote_flat_regions`)
is given, with what the map goes through after it (the composite level its steps are snapped
to, its full size) and the truth, in ``benchmarks/_work/depth_states/``. ``replay`` runs the
checked-out vote on every recorded stack and scores the map as ``bench_depth.py`` does; replayed
under two commits, it compares them with everything before the vote held fixed.

    python benchmarks/bench_depth_replay.py record --seeds 1,2,...,48
    python benchmarks/bench_depth_replay.py record --seeds 1,2,3 --size 3000x2000
    python benchmarks/bench_depth_replay.py replay --json after.json
    git stash; python benchmarks/bench_depth_replay.py replay --json before.json; git stash pop

The replayed figures are ``bench_depth.py``'s as long as the code before the vote (focus
tracker, fill) and after it (snapping, upsampling: :meth:`stacker.stack.Stacker.depth_frames`)
is what was recorded: after a change there, record again. Stacking is most of
``bench_depth.py``'s time; a replay takes about a second a stack.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import common
import cv2
import numpy as np
from bench_depth import family_spec, render_stack, score

import stacker.stack as stack_module
from stacker import depth
from stacker.depth_regions import vote_flat_regions
from stacker.stack import Stacker

STATES = common.WORK / "depth_states"


def state_path(layout: str, seed: int, size: tuple[int, int], frames: int) -> Path:
    """Where a stack's recorded state is kept (``bench_depth.py``'s default size and frame count
    in the plain name)."""
    tail = "" if (size, frames) == ((1500, 1000), 16) else f"_{size[0]}x{size[1]}_{frames}f"
    return STATES / f"{layout}_{seed}{tail}.npz"


def record(layout: str, seed: int, size: tuple[int, int], frames: int) -> Path:
    """Stack one ``bench_depth.py`` stack and save what its vote is given (kept if saved)."""
    path = state_path(layout, seed, size, frames)
    if path.exists():
        return path
    rendered = render_stack(family_spec(layout, seed, *size), frames)
    stacker = Stacker(method="pyramid")
    for f in rendered:
        stacker.add(f.image, name=f"frame {f.index}", position_um=f.focus_um)
    stacker.wait()
    given: dict[str, np.ndarray] = {}

    def kept(filled, guide, peaks, *, halo_px, ends):  # type: ignore[no-untyped-def]
        given.update(filled=filled.copy(), guide=guide.copy(), halo_px=np.float32(halo_px),
                     ends=np.array(ends), best=peaks[0], index=peaks[1], second=peaks[2],
                     second_index=peaks[3])  # fmt: skip
        return vote_flat_regions(filled, guide, peaks, halo_px=halo_px, ends=ends)

    stack_module.vote_flat_regions = kept  # type: ignore[assignment]
    try:
        stacked = np.asarray(stacker.depth_frames(crop=False), np.float32)
    finally:
        stack_module.vote_flat_regions = vote_flat_regions
    assert stacker.shape is not None
    detail = stacker._snap_detail(given["filled"].shape)  # what the map's steps are snapped to
    STATES.mkdir(parents=True, exist_ok=True)
    np.savez(path, **given, detail=detail, truth=rendered.true_index().astype(np.float32),
             stacked=stacked, shape=np.array(stacker.shape))  # fmt: skip
    return path


def replay(path: Path) -> tuple[float, float]:
    """(within one frame under the checked-out vote, as recorded), in % of the central 80 %."""
    r = np.load(path)
    peaks = (r["best"], r["index"], r["second"], r["second_index"])
    ends = (int(r["ends"][0]), int(r["ends"][1]))
    filled = vote_flat_regions(r["filled"], r["guide"], peaks, halo_px=float(r["halo_px"]),
                               ends=ends)  # fmt: skip
    np.clip(filled, ends[0], ends[1], out=filled)
    snapped = depth.snap_edges(filled, r["guide"], r["detail"])
    h, w = (int(v) for v in r["shape"])
    full = snapped if snapped.shape == (h, w) else cv2.resize(snapped, (w, h))
    return (100 * score(full, r["truth"])["within_1_frame"],
            100 * score(r["stacked"], r["truth"])["within_1_frame"])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("record", "replay"))
    ap.add_argument("--layouts", default="board,shapes")
    ap.add_argument("--seeds", type=common.seed_list, default="1,2,3")
    ap.add_argument("--size", default="1500x1000")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None, help="replay: the figures per stack")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    stacks = [(lay, s) for lay in args.layouts.split(",") for s in args.seeds]
    figures = {}
    for layout, seed in stacks:
        path = (record if args.action == "record" else state_path)(
            layout, seed, (w, h), args.frames
        )
        if args.action == "replay":
            now, recorded = replay(path)
            figures[f"{layout} {seed}"] = round(now, 3)
            print(f"{layout:>8} {seed:>4}  {now:7.3f} %  (recorded {recorded:7.3f} %)", flush=True)
    if figures:
        values = list(figures.values())
        print(f"mean {statistics.mean(values):.3f} %, {sum(v >= 97 for v in values)} of "
              f"{len(values)} at 97 %")  # fmt: skip
    if args.json:
        common.write_json(args.json, {"machine": common.machine(), "stacks": figures})


if __name__ == "__main__":
    main()
