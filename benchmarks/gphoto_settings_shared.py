"""Processes side by side that share libgphoto2's settings file, against each with its own.

libgphoto2 keeps the capture target in a settings file of the user's (``~/.gphoto/settings``,
or from 2.5.34 ``$XDG_CONFIG_HOME/gphoto/settings`` where that exists), which each process
reads once and rewrites whole at every change. This runs ``--processes`` loops at once, each
starting ``--rounds`` fresh interpreters that open the virtual camera ``--sequences`` times
as a session does (``tests/capture_target.py``: read the capture target, open with the other
one and read it, open once more and read it back). A sequence *saw a change* when a target
read is not the one set or put back. ``shared`` gives every process one home
(holding an older gphoto2's file, as this machine's home does); ``own`` a home each, as
tests/conftest.py gives each test process.

    .venv/bin/python benchmarks/gphoto_settings_shared.py --processes 4 --rounds 4 --sequences 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from tests.capture_target import ROUND_TRIP  # noqa: E402
from tests.capture_target import changed as round_changed  # noqa: E402


def new_home(under: Path, legacy_file: bool) -> Path:
    """An empty home with its config folder; with ``legacy_file``, an older gphoto2's file."""
    home = Path(tempfile.mkdtemp(prefix="gphoto-home-", dir=under))
    (home / ".config").mkdir()
    if legacy_file:
        (home / ".gphoto").mkdir()
        (home / ".gphoto" / "settings").write_text("ptp2=capturetarget=card\n")
    return home


def loop(under: Path, rounds: int, sequences: int, shared: Path | None) -> int:
    """Sequences that saw a change, over ``rounds`` fresh interpreters one after another."""
    changed = 0
    for _ in range(rounds):
        home = shared or new_home(under, legacy_file=False)
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        env["VCAMERADIR"] = tempfile.mkdtemp(prefix="vcamera-", dir=under)
        done = subprocess.run(
            [sys.executable, "-c", ROUND_TRIP, str(sequences)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=True,
        )  # fmt: skip
        changed += sum(map(round_changed, done.stdout.splitlines()))
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sequences", type=int, default=10)
    args = ap.parse_args()
    total = args.processes * args.rounds * args.sequences
    for mode in ("shared", "own"):
        with tempfile.TemporaryDirectory(prefix="gphoto-settings-") as scratch:
            under = Path(scratch)  # the homes and virtual cameras, removed after each mode
            shared = new_home(under, legacy_file=True) if mode == "shared" else None
            with ThreadPoolExecutor(args.processes) as pool:
                loops = [
                    pool.submit(loop, under, args.rounds, args.sequences, shared)
                    for _ in range(args.processes)
                ]
                changed = sum(f.result() for f in loops)
        print(f"{mode}: {changed} of {total} sequences saw the capture target change under them")


if __name__ == "__main__":
    main()
