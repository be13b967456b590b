"""A phone's Wi-Fi dropping every connection while the station moves the rail: how long until
the page frees the move's button and follows the rig again.

The station runs in this process on a real-time simulated GRBL rail, slowed so that a move to
the far end outlasts the page's dead-link window; the phone is headless Chromium behind a relay
that drops every open connection without a word (as a router's restart does) while new ones go
through. The page is opened, Go to far end tapped, the link dropped; then the page is sampled
every 0.25 s for its Go-to-far button (enabled again once the page gives up on the move's
request) and its link indicator ("reconnecting…", then "live").

    .venv/bin/python benchmarks/dead_link.py                # the station's own 15 s pings
    .venv/bin/python benchmarks/dead_link.py --ping 0.5     # as the browser test runs it
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common

from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.station.api import station_app
from stacker.preview import PreviewServer
from tests.browser import chromium, fill_plan, phone_page
from tests.relay import sleeping_relay
from tests.stations import TOKEN, station_of

REAL_TIME = SimRigSpec(width=320, height=240, time_scale=1)


def measure(ping_s: float, rate_mm_min: float, far_mm: float, limit_s: float) -> dict[str, object]:
    """One drop: seconds from it until the button is free, the link is seen lost, and live."""
    with SimulatedRig(REAL_TIME) as rig, tempfile.TemporaryDirectory() as root:
        rig.focuser.send(f"$110={rate_mm_min:g}")  # type: ignore[attr-defined]
        station = station_of(rig, Path(root) / "sessions", REAL_TIME)
        try:
            app = station_app(station, TOKEN, ping_s=ping_s)
            with (
                PreviewServer(station.hub, app=app) as server,
                sleeping_relay(server.port, every_connection=True) as (via, drop),
                chromium() as browser,
            ):
                page, errors = phone_page(browser)
                page.goto(via + "#token=" + TOKEN)
                page.wait_for_selector("#link[data-live='true']")
                page.wait_for_function(f"quietLimitMs === {ping_s * 3000:g}", timeout=ping_s * 3000)
                fill_plan(page, to=f"{far_mm:g}mm")
                page.click("#st-go-far")
                page.wait_for_function("document.getElementById('st-stop').disabled === false")
                t0 = time.monotonic()
                drop()
                freed = lost = live = None
                while time.monotonic() - t0 < limit_s and (freed is None or live is None):
                    now = time.monotonic() - t0
                    if freed is None and not page.is_disabled("#st-go-far"):
                        freed = now
                    text = page.text_content("#link")
                    if lost is None and text != "live":
                        lost = now
                    if lost is not None and live is None and text == "live":
                        live = now
                    if freed is not None and lost is None and text == "live":
                        live = now  # lost and live again between two samples
                    page.wait_for_timeout(250)
                moved_mm = float(station.focuser.position) / 1000.0
                station.stop_rail()
                return {
                    "ping_s": ping_s,
                    "button_free_s": freed,
                    "link_lost_seen_s": lost,
                    "live_again_s": live,
                    "rail_mm_at_end": round(moved_mm, 2),
                    "script_errors": errors,
                }
        finally:
            station.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ping", type=float, default=15.0, help="the stream's ping period, s")
    parser.add_argument("--rate", type=float, default=30.0, help="the rail's top speed, mm/min")
    parser.add_argument("--far", type=float, default=40.0, help="the far end, mm")
    parser.add_argument("--limit", type=float, default=120.0, help="how long to wait, s")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if missing := common.chromium_missing():
        raise SystemExit(f"dead_link: {missing}: the phone is a headless Chromium page")
    result = measure(args.ping, args.rate, args.far, args.limit)
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
