"""Capture cadence with and without moving the rail while the last RAW downloads.

One simulated rig shoots the same plan with ``move_during_download`` on and off, interleaved,
``--repeats`` times: libgphoto2's virtual camera behind the Canon EOS quirk layer
(:mod:`rig.sim.camera_quirks`) capturing to the card, each file charged the USB 2 transfer time
of a ``--raw-mb`` RAW (50 MB at 25 MB/s: 2 s, spent in ``file_get`` as on a real body), the
GRBL simulator on a pseudo-terminal at real speed (``--time-scale 1``), ``--settle`` after each
move (0.5 s, the 1:1 default). Frames are small (640x480) so rendering the synthetic scene
costs little CPU: the figure is about waiting, not computing.

Reported per condition: median and 90th-percentile interval between captured frames and the
session's wall time. Recorded, never asserted.

    python benchmarks/bench_overlap.py --frames 10 --raw-mb 50 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
import common  # noqa: E402

CONDITIONS = {"overlap": True, "sequential": False}


def one_session(sim: Any, root: Path, name: str, args: argparse.Namespace, overlap: bool) -> Any:
    from rig.session.runner import RunnerOptions

    runner, captured = common.sim_session(
        sim,
        root / name,
        args.frames,
        settle_s=args.settle,
        return_to_start=False,
        options=RunnerOptions(
            retry_delay_s=0.2, write_outputs=False, previews=False, move_during_download=overlap
        ),
    )
    t0 = time.monotonic()
    result = runner.run()
    wall = time.monotonic() - t0
    if result.reason.value != "completed":
        raise SystemExit(f"{name}: session ended {result.reason.value}: {result.error}")
    return {"condition": name.split("-")[0], **common.capture_cadence(captured), "wall_s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--raw-mb", type=float, default=50.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--camera", default="canon")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, help="Also write the raw runs here.")
    args = ap.parse_args()

    from rig.sim.rig import SimRigSpec, SimulatedRig, enable_virtual_camera

    enable_virtual_camera()  # before anything imports gphoto2
    spec = SimRigSpec(
        width=640,
        height=480,
        time_scale=args.time_scale,
        camera=args.camera,
        capture_target="card",
        raw_mb=args.raw_mb,
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-overlap-") as tmp, SimulatedRig(spec) as sim:
        for rep in range(args.repeats):
            for condition, overlap in CONDITIONS.items():
                sim.focuser.move_to(0.0)
                run = one_session(sim, Path(tmp), f"{condition}-{rep}", args, overlap)
                runs.append(run)
                print(
                    f"  {condition:<10} run {rep + 1}: interval {run['interval_median_s']:.3f} s "
                    f"(p90 {run['interval_p90_s']:.3f}), wall {run['wall_s']:.1f} s",
                    flush=True,
                )
    print(
        f"\n{args.frames} frames, {args.camera} quirk layer, card target, {args.raw_mb:g} MB "
        f"per file over USB 2, settle {args.settle:g} s, rail x{args.time_scale:g} (medians):"
    )
    common.print_cadence_medians(runs, CONDITIONS, 11)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
