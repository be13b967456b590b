"""How fast ``rig tether`` downloads a burst the camera shoots by itself, and whether it keeps up.

A simulated body (:mod:`rig.sim.bracketing`, over libgphoto2's virtual camera) shoots a burst of
``--frames`` frames at ``--fps``; :class:`rig.camera.tether.Tether` downloads every shot as
``frame_NNNN.<ext>`` with atomic, fsynced writes — the camera side of a tether session, without
the stacking (which runs on its own thread behind a queue of file paths). Each frame carries its
number after the JPEG end marker, so a lost, repeated or mixed-up frame is caught.

Two figures:

* **sustained**: the body shoots faster than anything can download (``--fps 1000``): frames
  written per second from the first announcement to the last file on disk;
* **at pace**: the body shoots at ``--pace-fps`` (Nikon Z focus shift at reduced size: 10/s):
  the largest backlog (frames shot but not yet on disk) and the lag after the last exposure.

Run::

    .venv/bin/python benchmarks/bench_tether.py --frames 200 --file-mb 3 --family nikon
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

WORK = HERE / "_work"


def _frame(n: int, size: int, jpeg: bytes) -> bytes:
    from rig.sim.vcamera import pad_jpeg

    data = bytearray(pad_jpeg(jpeg, size))
    data[-8:] = n.to_bytes(8, "little")  # after the end marker: decoders ignore it
    return bytes(data)


def run(args: argparse.Namespace, fps: float) -> dict[str, float]:
    from rig.camera import Camera
    from rig.camera.tether import TETHER_RETRY, Tether
    from rig.sim.bracketing import BracketingBody
    from rig.sim.vcamera import VirtualCameraFolder, placeholder_jpeg

    size = int(args.file_mb * 1e6)
    jpeg = placeholder_jpeg(640, 480)
    shot_at: dict[int, float] = {}

    def source(n: int) -> bytes:
        shot_at[n] = time.monotonic()
        return _frame(n, size, jpeg)

    root = Path(tempfile.mkdtemp(prefix="bench-tether-", dir=WORK))
    try:
        card = VirtualCameraFolder(root / "card", slot_bytes=32_000)
        card.activate()
        body = BracketingBody(
            args.family,
            source,
            frames=args.frames,
            fps=fps,
            raw_plus_jpeg=args.raw_plus_jpeg,
            link_bytes_per_s=args.link_mb_s * 1e6,
        )
        per_shot = 2 if args.raw_plus_jpeg else 1
        dest = root / "frames"
        backlog = 0
        with Camera.open(retry=TETHER_RETRY, wrap_handle=body.wrap) as camera:
            tether = Tether(camera, files_per_shot=per_shot)
            body.press()
            t0 = time.monotonic()
            for index in range(1, args.frames + 1):
                shot = tether.next_shot(30.0)
                if shot is None:
                    raise SystemExit(f"frame {index} never came: a file was lost")
                tether.download(shot, dest, f"frame_{index:04d}")
                backlog = max(backlog, len(shot_at) - index)
            t_end = time.monotonic()
            body.wait()
        for index in range(1, args.frames + 1):
            got = (dest / f"frame_{index:04d}.jpg").read_bytes()
            if int.from_bytes(got[-8:], "little") != index:
                raise SystemExit(f"frame_{index:04d}.jpg holds another frame")
        first = min(shot_at.values())
        return {
            "fps_asked": fps,
            "frames_per_s": args.frames / (t_end - t0),
            "mb_per_s": args.frames * per_shot * size / 1e6 / (t_end - t0),
            "max_backlog": backlog,
            "lag_after_last_exposure_s": t_end - max(shot_at.values()),
            "burst_s": max(shot_at.values()) - first,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--file-mb", type=float, default=3.0, help="size of each file")
    parser.add_argument("--family", default="nikon")
    parser.add_argument("--raw-plus-jpeg", action="store_true")
    parser.add_argument("--link-mb-s", type=float, default=120.0, help="USB rate; 0: instant")
    parser.add_argument("--pace-fps", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=WORK / "bench_tether.json")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("VCAMERADIR", str(WORK))  # before gphoto2 is imported
    results = {"sustained": run(args, 1000.0), "at_pace": run(args, args.pace_fps)}
    load = os.getloadavg()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "load": [round(x, 2) for x in load],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **results,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    s, p = results["sustained"], results["at_pace"]
    files = "RAW+JPEG" if args.raw_plus_jpeg else "JPEG"
    print(
        f"{args.frames} frames of {args.file_mb:g} MB ({files}), {args.family}, link "
        f"{args.link_mb_s:g} MB/s, load {load[0]:.2f}"
    )
    print(f"sustained: {s['frames_per_s']:.1f} frames/s ({s['mb_per_s']:.0f} MB/s written)")
    print(
        f"at {p['fps_asked']:g} fps: max backlog {p['max_backlog']:.0f} frames, "
        f"last file on disk {p['lag_after_last_exposure_s']:.2f} s after the last exposure"
    )
    print(f"(written to {args.json})")


if __name__ == "__main__":
    main()
