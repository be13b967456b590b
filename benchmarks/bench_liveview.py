"""Live view with focus peaking on the simulated rig: frame rate and the CPU it costs.

Three measurements, in one process, on the simulated rig (libgphoto2's virtual camera, the GRBL
simulator on a pseudo-terminal, the synthetic scene rendered at the rail's position):

* ``peaking``  the rig's part of each frame: decode the live-view JPEG, focus measure at 320 px,
               paint, encode (``rig.station.liveview.peaked_jpeg``), on one thread, CPU seconds
               per frame (``time.process_time``);
* ``render``   the simulated body's part: rendering the scene and encoding the live-view JPEG.
               A real camera does this in its own hardware, so it costs the rig nothing;
* ``http``     the page's loop over real loopback HTTP (``GET /api/liveview``, the next request
               once a frame has arrived), with and without peaking: frames per second and the
               whole process's CPU seconds per frame (server, simulated body and client).

The difference between ``http`` with and without peaking is the peaking's cost as served.

    python benchmarks/bench_liveview.py --size 1440x1080 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from benchmarks.common import machine, table, write_json  # noqa: E402

TOKEN = "bench-liveview-token"


def _cpu_per_call(fn: Any, n: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call of ``fn``, over ``n`` calls after one warm-up."""
    fn()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - cpu0) / n, (time.perf_counter() - wall0) / n


def _http_loop(client: Any, *, peaking: bool, seconds: float) -> dict[str, float]:
    frames = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        r = client.get("/api/liveview", params={"peaking": int(peaking)})
        r.raise_for_status()
        frames += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"frames": frames, "fps": frames / wall, "cpu_ms_per_frame": 1000 * cpu / frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1440x1080", help="simulated sensor size")
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP condition")
    parser.add_argument("--repeats", type=int, default=40, help="calls per CPU measurement")
    parser.add_argument("--json", type=Path, default=HERE / "_work" / "bench_liveview.json")
    args = parser.parse_args()

    from rig.sim.rig import SimRigSpec, SimulatedRig, enable_virtual_camera, parse_size

    enable_virtual_camera()
    import cv2
    import httpx
    import numpy as np

    from rig.station.api import station_app
    from rig.station.liveview import peaked_jpeg
    from rig.station.service import Station
    from stacker.preview import PreviewServer

    width, height = parse_size(args.size)
    spec = SimRigSpec(width=width, height=height)
    results: dict[str, Any] = {"machine": machine(), "size": args.size}
    with SimulatedRig(spec) as rig:
        station = Station(
            HERE / "_work" / "liveview-sessions",
            focuser=rig.focuser,
            camera=rig.camera,  # type: ignore[arg-type]
            rig=spec.to_dict(),
        )
        rig.focuser.move_to(1500.0)
        jpeg = rig.camera.capture_preview()
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        results["liveview_px"] = f"{frame.shape[1]}x{frame.shape[0]}"
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        cpu, wall = _cpu_per_call(lambda: peaked_jpeg(jpeg), args.repeats)
        cv2.setNumThreads(threads)
        results["peaking"] = {"cpu_ms_per_frame": 1000 * cpu, "wall_ms_per_frame": 1000 * wall}
        cpu, wall = _cpu_per_call(lambda: rig.render_preview(1500.0), max(5, args.repeats // 4))
        results["render"] = {"cpu_ms_per_frame": 1000 * cpu, "wall_ms_per_frame": 1000 * wall}
        with PreviewServer(station.hub, app=station_app(station, TOKEN)) as server:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=server.url.rstrip("/"), headers=auth, timeout=30) as c:
                for peaking in (False, True):
                    key = "http_peaking" if peaking else "http_plain"
                    results[key] = _http_loop(c, peaking=peaking, seconds=args.seconds)
    results["machine"]["loadavg_1min_end"] = os.getloadavg()[0]
    rows = [
        ["peaking only (1 thread)", "", f"{results['peaking']['cpu_ms_per_frame']:.1f}"],
        ["simulated body render", "", f"{results['render']['cpu_ms_per_frame']:.1f}"],
        *(
            [k, f"{results[k]['fps']:.1f}", f"{results[k]['cpu_ms_per_frame']:.1f}"]
            for k in ("http_plain", "http_peaking")
        ),
    ]
    print(f"live view {results['liveview_px']} from a {args.size} simulated body")
    print(table(rows, ["measurement", "fps", "CPU ms/frame"]))
    m = results["machine"]
    load = f"{m['loadavg_1min']:.1f} (end {m['loadavg_1min_end']:.1f})"
    print(f"load average {load} on {m['cores']} cores")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
