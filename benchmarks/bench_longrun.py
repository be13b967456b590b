"""A station left running: memory, files and threads over many sessions in one process.

The station (:class:`rig.station.service.Station`) shoots ``--sessions`` small sessions one
after another on the simulated rig (libgphoto2's virtual camera, the GRBL simulator on a
pseudo-terminal, the synthetic scene), as a Raspberry Pi at a rig does over days. After each
session it records the process's resident memory, its open file descriptors, its threads and
how many :class:`~stacker.stack.Stacker` objects are still alive (only the last session's
should be: the page serves 100 % crops from it). The garbage collector runs as it normally
does; ``--no-gc`` switches it off, to show what outlives a session in reference cycles.

    python benchmarks/bench_longrun.py --size 3000x2000 --sessions 6 --frames 3
    python benchmarks/bench_longrun.py --size 320x240 --sessions 100 --frames 4
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from benchmarks.common import machine, table, write_json  # noqa: E402


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(width: int, height: int, sessions: int, frames: int) -> list[dict[str, Any]]:
    """Shoot ``sessions`` sessions of ``frames`` frames; one row of figures per session."""
    from rig.sim.rig import SimRigSpec, SimulatedRig
    from rig.station.service import Station, plan_from_request
    from stacker.stack import Stacker

    made: list[weakref.ref[Stacker]] = []
    init = Stacker.__init__

    def counted(self: Stacker, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    Stacker.__init__ = counted  # type: ignore[method-assign]
    spec = SimRigSpec(width=width, height=height, time_scale=50)
    rows = []
    with SimulatedRig(spec) as rig, tempfile.TemporaryDirectory() as tmp:
        station = Station(
            Path(tmp) / "sessions", focuser=rig.focuser, camera=rig.camera, rig=spec.to_dict()
        )
        plan = plan_from_request(
            {"from": "0mm", "to": "1mm", "frames": frames, "settle": 0}, units=station.units
        )
        try:
            for n in range(1, sessions + 1):
                t0 = time.perf_counter()
                station.start(plan)
                result = station.wait(600)
                assert result is not None, "a session did not end within 10 minutes"
                rig.focuser.move_to(0.0)
                rows.append(
                    {
                        "session": n,
                        "reason": result.reason.value,
                        "seconds": time.perf_counter() - t0,
                        "rss_mb": _rss_mb(),
                        "fds": len(os.listdir("/proc/self/fd")) - 1,
                        "threads": threading.active_count(),
                        "stackers_alive": sum(ref() is not None for ref in made),
                    }
                )
                print(rows[-1], flush=True)
        finally:
            station.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--frames", type=int, default=4, help="frames per session (default 4)")
    ap.add_argument("--no-gc", action="store_true", help="switch the garbage collector off")
    ap.add_argument("--json", type=Path, default=HERE / "_work" / "bench_longrun.json")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.no_gc:
        gc.disable()
    rows = run(width, height, args.sessions, args.frames)
    shown = [r for r in rows if r["session"] in (1, 2, 3, 5, 10, 20, 50, 100, len(rows))]
    print(
        table(
            [
                [
                    str(r["session"]),
                    f"{r['rss_mb']:.0f}",
                    str(r["fds"]),
                    str(r["threads"]),
                    str(r["stackers_alive"]),
                ]
                for r in shown
            ],
            ["session", "RSS MB", "fds", "threads", "stacks alive"],
        )
    )
    write_json(
        args.json,
        {"machine": machine(), "args": {**vars(args), "json": str(args.json)}, "rows": rows},
    )


if __name__ == "__main__":
    main()
