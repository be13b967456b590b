"""Shared pieces of the benchmarks: cached synthetic stacks, machine description, the stacker.

The benchmarks are scripts, never tests. Stacks are rendered once into ``benchmarks/_work/``
(git-ignored) and reused while their sidecar matches the requested spec.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

STACKER_CLI = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from stacker.cli import main; main()"
)
"""``python -c STACKER_CLI ROOT stack ...``: ``stacker`` with the package of checkout ``ROOT``.
Not ``PYTHONPATH=ROOT python -m stacker.cli``: ``-m`` puts the current folder first on
``sys.path``, so run from a checkout it imports that checkout's package whatever the path says."""
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from rig.sim.scene import TRUTH_SIDECAR, SceneSpec, write_stack  # noqa: E402
from stacker.natsort import natural_key  # noqa: E402

WORK = HERE / "_work"


def seed_list(text: str) -> list[int]:
    """``--seeds``: numbers separated by commas, where ``...`` goes on in the step of the two
    numbers before it (1 after a single one) up to the number after it, as the README writes
    them: ``1,2,...,48``, ``1,3,...,47``, ``1,...,16``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    seeds: list[int] = []
    for i, item in enumerate(items):
        if item != "...":
            if i == 0 or items[i - 1] != "...":
                seeds.append(int(item))
            continue
        if not seeds or i + 1 == len(items) or items[i + 1] == "...":
            raise argparse.ArgumentTypeError(f"{text!r}: '...' needs a number on each side")
        step = seeds[-1] - seeds[-2] if len(seeds) > 1 and i > 1 else 1
        end = int(items[i + 1])
        if step <= 0 or end < seeds[-1]:
            raise argparse.ArgumentTypeError(f"{text!r}: '...' counts up only")
        seeds.extend(range(seeds[-1] + step, end + 1, step))
        if seeds[-1] != end:
            seeds.append(end)
    return seeds


def chromium_missing() -> str | None:
    """Why the scripts that drive a page in headless Chromium cannot, or None: they use
    Debian's Chromium, as the browser tests do, not a Playwright download."""
    from tests.browser import CHROMIUM

    return None if CHROMIUM.exists() else f"no {CHROMIUM} (apt-get install chromium)"


SEED = 2026
JPEG_QUALITY = 95


def size_for_mp(mp: float) -> tuple[int, int]:
    """A 3:2 frame of ``mp`` megapixels with even sides: 6 -> 3000x2000, 24 -> 6000x4000."""
    w = math.sqrt(mp * 1e6 * 1.5)
    return int(round(w / 2) * 2), int(round(w / 1.5 / 2) * 2)


def bench_spec(mp: float) -> SceneSpec:
    """The benchmark scene at ``mp`` megapixels (defaults: breathing, jitter, drift, noise)."""
    w, h = size_for_mp(mp)
    return SceneSpec(width=w, height=h, seed=SEED)


def is_cached(folder: Path, spec: Any, frames: int) -> bool:
    """Whether ``folder`` holds ``frames`` frames rendered from ``spec`` (its sidecar says so)."""
    sidecar = folder / TRUTH_SIDECAR
    if not sidecar.exists():
        return False
    try:
        data = json.loads(sidecar.read_text())
        return bool(data["spec"] == spec.to_json() and data["n_frames"] == frames)
    except (ValueError, KeyError):
        return False


def ensure_stack(mp: float, frames: int, *, log: Any = print) -> Path:
    """Folder of ``frames`` JPEG frames at ``mp`` MP, rendered now unless already cached."""
    spec = bench_spec(mp)
    folder = WORK / f"synthetic_{mp:g}mp_{frames}f_q{JPEG_QUALITY}"
    if is_cached(folder, spec, frames):
        return folder
    log(f"rendering {frames} frames of {spec.width}x{spec.height} into {folder} (once) ...")
    t0 = time.perf_counter()
    write_stack(folder, spec, frames, jpeg_quality=JPEG_QUALITY)
    log(f"  done in {time.perf_counter() - t0:.0f} s")
    return folder


PCB = HERE.parents[1] / "shared" / "data" / "pcb-stack"
"""The real stack beside the checkout (``../shared``), where there is one."""


def frame_paths(folder: Path) -> list[Path]:
    """The stack's frames in natural order; not a peer's result kept beside them
    (``reference-result-focus-stack.jpg`` in the pcb stack)."""
    paths = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".jpg", ".jpeg", ".tif") and not p.name.startswith("reference")
    ]
    return sorted(paths, key=lambda p: natural_key(p.name))


def frame_positions(folder: Path) -> dict[str, float]:
    """Focus position (µm) of each frame file, from the sidecar (a rig knows its rail)."""
    data = json.loads((folder / TRUTH_SIDECAR).read_text())
    return {f["file"]: float(f["focus_um"]) for f in data["frames"]}


def load_stacker() -> tuple[Any, str | None]:
    """``(Stacker class, None)``, or ``(None, reason)`` when stacker.stack is not there yet."""
    try:
        from stacker.stack import Stacker
    except ImportError as exc:
        return None, f"stacker.stack.Stacker is not available ({exc})"
    return Stacker, None


def stacker_result(stacker: Any) -> np.ndarray:
    """The full composite in reference geometry when the API allows, else the default."""
    result = stacker.result
    try:
        takes_crop = "crop" in inspect.signature(result).parameters
        out = result(crop=False) if takes_crop else result()
    except (TypeError, ValueError):
        out = result()
    return out.image if hasattr(out, "image") else out


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / 1024.0 / 1024.0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    import cv2

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    dirty = bool(git("status", "--porcelain", "--", "stacker"))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "arch": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        # Others may share the machine: the 1-minute load average says how busy it was.
        "loadavg_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "commit": git("rev-parse", "--short", "HEAD") + (" (stacker/ modified)" if dirty else ""),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write benchmark results as indented JSON (folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain fixed-width text table."""
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def sim_session(
    sim: Any, folder: Path, frames: int, *, settle_s: float, return_to_start: bool, options: Any
) -> tuple[Any, list[float]]:
    """A session runner for ``frames`` frames over the simulated rig's depth, in ``folder``.

    Returns the runner and the list it fills with each frame's capture time
    (``time.monotonic``), for :func:`capture_cadence`.
    """
    from rig.plan import ShotPlan
    from rig.session.events import FrameCaptured
    from rig.session.folder import SessionConfig, SessionFolder
    from rig.session.runner import SessionRunner

    plan = ShotPlan.from_frames(
        0.0, sim.spec.depth_um, frames, settle_s=settle_s, return_to_start=return_to_start
    )
    config = SessionConfig(rig=sim.spec.to_dict(), checkpoint_every=0)
    session = SessionFolder.create(folder, plan, config)
    runner = SessionRunner(session, focuser=sim.focuser, camera=sim.camera, options=options)
    captured: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, FrameCaptured):
            captured.append(time.monotonic())

    runner.subscribe(on_event)
    return runner, captured


def capture_cadence(captured: list[float]) -> dict[str, float]:
    """Median and 90th-percentile interval between captured frames, in seconds."""
    gaps = [b - a for a, b in itertools.pairwise(captured)]
    return {
        "interval_median_s": statistics.median(gaps),
        "interval_p90_s": sorted(gaps)[int(0.9 * (len(gaps) - 1))],
    }


def print_cadence_medians(
    runs: list[dict[str, Any]],
    conditions: Iterable[str],
    width: int,
    extra: tuple[tuple[str, str, str], ...] = (),
) -> None:
    """Each condition's median interval, p90 and wall time, then each ``(key, title, format)``."""
    titles = "".join(f" {title:>{len(title) + 1}}" for _, title, _ in extra)
    print(f"{'condition':<{width}} {'interval s':>11} {'p90 s':>8} {'wall s':>8}{titles}")
    for condition in conditions:
        mine = [r for r in runs if r["condition"] == condition]

        def med(key: str, rows: list[dict[str, Any]] = mine) -> float:
            return statistics.median(r[key] for r in rows)

        cells = "".join(f" {med(key):>{len(title) + 1}{fmt}}" for key, title, fmt in extra)
        print(
            f"{condition:<{width}} {med('interval_median_s'):>11.3f} "
            f"{med('interval_p90_s'):>8.3f} {med('wall_s'):>8.1f}{cells}"
        )


def timed_run(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``: ``{"wall_s": seconds}``, or ``{"error": its last line of stderr}``."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return {"wall_s": wall}


def worker_parser(doc: str, methods: str) -> argparse.ArgumentParser:
    """The command line of a script measured in :func:`run_worker` processes.

    The description is ``doc``'s first paragraph; ``--method`` (one of ``methods``, default
    pyramid) and the hidden ``--worker FOLDER --out JSON`` are what :func:`run_worker` passes.
    """
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--method", default="pyramid", help=methods)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return ap


def work(args: argparse.Namespace, worker: Callable[[Path, str], dict[str, Any]]) -> int:
    """The worker process's side of :func:`run_worker`: measure, write the JSON, exit 0."""
    args.out.write_text(json.dumps(worker(args.worker, args.method)))
    return 0


def run_worker(script: str, folder: Path, method: str) -> dict[str, Any] | None:
    """Run ``script --worker FOLDER --method METHOD --out JSON`` in a fresh interpreter and
    return the JSON it wrote; None (and its stderr's tail) if it failed."""
    out = WORK / f"_run_{folder.name}_{method}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--worker", str(folder), "--method", method]
    cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        sys.stderr.write(proc.stderr[-3000:])
        return None
    return json.loads(out.read_text())
