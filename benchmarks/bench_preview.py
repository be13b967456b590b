"""Does the live preview slow capture? Capture cadence of demo sessions with and without viewers.

One simulated rig (libgphoto2's virtual camera, the GRBL simulator on a pseudo-terminal, the
synthetic scene) shoots the same plan under each condition, in turn, ``--repeats`` times:

* ``off``      no preview at all (the baseline),
* ``server``   the preview server running, nobody watching,
* ``http``     two page-like HTTP clients, each in its own process: each follows
               ``/api/events`` and fetches every new composite, last frame and depth JPEG, as
               the page does (the server's cost, without a browser's rendering),
* ``chromium`` two real headless Chromium pages (Playwright, Debian's /usr/bin/chromium) on the
               same machine: an upper bound, since on a rig the browsers run on phones.

The simulated camera renders each frame with the CPU, where a real camera just takes time, so
on a small machine anything else that uses the CPU (the viewers above all) shows up here more
than it would at a real rig.

Reported per condition: median and 90th-percentile interval between captured frames, the
whole session's wall time, and the stacking lag (last capture to session end). Recorded, never
asserted: the bar is that ``http`` and ``server`` stay within noise of ``off``.

    python benchmarks/bench_preview.py --frames 12 --size 1440x1080 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
import common  # noqa: E402

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

CONDITIONS = ("off", "server", "http", "chromium")


def page_like_client(url: str) -> int:
    """Follow the event stream and fetch each new image version, like the page; print counts.

    Runs as its own process (``--client URL``) so it shares no interpreter lock with capture.
    """
    import httpx

    seen: dict[str, int] = {}
    events = images = 0
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as c:
        try:
            with c.stream("GET", "/api/events") as r:
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    events += 1
                    state = json.loads(line[6:])
                    for kind, info in state["images"].items():
                        if seen.get(kind) != info["version"]:
                            seen[kind] = info["version"]
                            c.get(f"/img/{kind}.jpg", params={"v": info["version"]})
                            images += 1
        except httpx.HTTPError:
            pass  # the server went away at the end of the session
    print(json.dumps({"events": events, "images": images}), flush=True)
    return 0


def one_session(sim: Any, root: Path, name: str, frames: int, condition: str) -> dict[str, Any]:
    from rig.preview import SessionPreview
    from rig.session.runner import RunnerOptions
    from stacker.preview import PreviewHub, PreviewServer

    runner, captured = common.sim_session(
        sim,
        root / name,
        frames,
        settle_s=0.05,
        return_to_start=True,
        options=RunnerOptions(retry_delay_s=0.2, write_outputs=False),
    )
    extra: dict[str, Any] = {}
    with ExitStack() as stack:
        clients: list[subprocess.Popen[str]] = []
        if condition != "off":
            hub = PreviewHub()
            SessionPreview(hub).attach(runner)
            server = stack.enter_context(PreviewServer(hub))
            if condition == "http":
                me = [sys.executable, str(Path(__file__).resolve()), "--client", server.url]
                clients = [subprocess.Popen(me, stdout=subprocess.PIPE, text=True) for _ in "ab"]
                connected = hub.subscriber_count + 2
                while hub.subscriber_count < connected:
                    time.sleep(0.02)
            elif condition == "chromium":
                from playwright.sync_api import sync_playwright

                pw = stack.enter_context(sync_playwright())
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                stack.callback(browser.close)
                for _ in range(2):
                    page = browser.new_context().new_page()
                    page.goto(server.url)
                    page.wait_for_selector("#link[data-live='true']")
        t0 = time.monotonic()
        result = runner.run()
        t_end = time.monotonic()
    for c in clients:  # the server has stopped: the clients see the end of the stream
        out, _ = c.communicate(timeout=30)
        extra["images_fetched"] = extra.get("images_fetched", 0) + json.loads(out)["images"]
    if result.reason.value != "completed":
        raise SystemExit(f"{condition}: session ended {result.reason.value}: {result.error}")
    return {
        "condition": condition,
        **common.capture_cadence(captured),
        "wall_s": t_end - t0,
        "stack_lag_s": t_end - captured[-1],
        **extra,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", default="1440x1080")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--json", type=Path, help="Also write the raw runs here.")
    ap.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return page_like_client(args.client)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if "chromium" in conditions and (missing := common.chromium_missing()):
        print(f"{missing}: skipping the chromium runs")
        conditions.remove("chromium")

    from rig.sim.rig import SimRigSpec, SimulatedRig, enable_virtual_camera, parse_size

    enable_virtual_camera()  # before anything imports gphoto2
    width, height = parse_size(args.size)
    spec = SimRigSpec(width=width, height=height)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp, SimulatedRig(spec) as sim:
        for rep in range(args.repeats):
            for condition in conditions:  # interleaved, so drift in machine load hits all alike
                run = one_session(sim, Path(tmp), f"{condition}-{rep}", args.frames, condition)
                runs.append(run)
                print(
                    f"  {condition:<9} run {rep + 1}: interval {run['interval_median_s']:.3f} s "
                    f"(p90 {run['interval_p90_s']:.3f}), wall {run['wall_s']:.1f} s",
                    flush=True,
                )
                sim.focuser.move_to(0.0)
    print(f"\n{args.frames} frames of {width}x{height}, {args.repeats} runs each (medians):")
    common.print_cadence_medians(runs, conditions, 10, (("stack_lag_s", "stack lag s", ".2f"),))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
