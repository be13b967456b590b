"""The commands that run until they are told to stop, stopped over and over under load.

``rig station --sim``, ``stacker watch`` (a few frames already in its folder) and ``rig rail
simulate`` run until Ctrl-C, SIGTERM (``kill``, systemd's stop) or SIGHUP (the terminal closed).
A signal lands between any two steps of the program, wherever it stands: this campaign starts
each command as its console script, sends it one of those signals at a random moment (mostly
after it says it is ready, sometimes while it still loads), sometimes a second one a few
milliseconds later, and waits for it to end, with busy processes taking the cores meanwhile.

A cycle is a *fault* if the command has not ended ``--timeout`` seconds after the signal (it is
then sent SIGABRT, and the report shows where its threads stood: ``PYTHONFAULTHANDLER``), if
it died of a signal, exited with a status other than 0 or 130, or printed a traceback; but
not if the first signal ended it, silent, while the interpreter was still starting (no program
answers a signal before it sets a handler).

    .venv/bin/python benchmarks/stop_signals.py --cycles 60 --workers 3 --load 2 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BIN = Path(sys.executable).parent
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Command:
    """A command line and the start of the line it prints once ready (on stdout or stderr)."""

    name: str
    argv: list[str]
    ready: str


def commands(work: Path) -> list[Command]:
    frames = work / "hot"
    frames.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 256, (60, 80, 3), np.uint8), (320, 240))
    for i in range(3):
        cv2.imwrite(str(frames / f"frame_{i}.jpg"), cv2.GaussianBlur(texture, (0, 0), 1 + i))
    return [
        Command(
            "station",
            [
                str(BIN / "rig"),
                "station",
                "--sim",
                "--size",
                "320x240",
                "--port",
                "0",
                "--sessions",
                str(work / "sessions"),
                "--token-file",
                str(work / "token"),
            ],
            "stackrig station: ",
        ),
        Command(
            "watch",
            [
                str(BIN / "stacker"),
                "watch",
                str(frames),
                "-o",
                str(work / "watched.tif"),
                "--align",
                "none",
            ],
            "watching ",
        ),
        Command("rail simulate", [str(BIN / "rig"), "rail", "simulate"], "press Ctrl-C"),
    ]


@dataclass
class Cycle:
    command: str
    signals: list[str]
    early: bool
    status: int | None
    seconds: float
    fault: str = ""
    unborn: bool = False
    """Ended by the signal's default action before the interpreter ran any of stackrig: no
    program can answer a signal before it sets a handler. Not a fault."""


def run_cycle(command: Command, rng: random.Random, timeout: float) -> Cycle:
    """Start ``command``, signal it once or twice, and judge how it ended."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen(
        command.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    lines: list[str] = []
    ready = threading.Event()

    def read(stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)
            if line.startswith(command.ready):
                ready.set()

    readers = [
        threading.Thread(target=read, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)
    ]
    for r in readers:
        r.start()
    early = rng.random() < 0.2
    if early:
        time.sleep(rng.uniform(0.0, 1.5))
    elif not ready.wait(60):
        proc.kill()
        proc.wait()
        return Cycle(command.name, [], False, proc.returncode, 0.0, "never said it was ready")
    else:
        time.sleep(rng.uniform(0.0, 0.5))
    sent = [rng.choice(SIGNALS)]
    if rng.random() < 0.3:
        sent.append(rng.choice(SIGNALS))
    t0 = time.monotonic()
    for i, s in enumerate(sent):
        if i:
            time.sleep(rng.uniform(0.0, 0.05))
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(s)
    fault = ""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait()
        fault = f"still running {timeout:.0f} s after the signal"
    seconds = time.monotonic() - t0
    for r in readers:
        r.join(5)
    text = "".join(lines)
    unborn = early and not text and proc.returncode == -sent[0]
    if not fault and not unborn:
        if proc.returncode < 0:
            fault = f"died of {signal.Signals(-proc.returncode).name}"
        elif proc.returncode not in (0, 130):
            fault = f"exit status {proc.returncode}"
        elif "Traceback" in text:
            fault = "printed a traceback"
    if fault:
        fault += "\n" + text[-6000:]
    names = [signal.Signals(s).name for s in sent]
    return Cycle(command.name, names, early, proc.returncode, seconds, fault, unborn)


@contextlib.contextmanager
def load(processes: int) -> Iterator[None]:
    """Busy processes that take the cores while the commands run."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for p in busy:
            p.kill()
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=30, help="cycles per command and worker")
    ap.add_argument("--workers", type=int, default=3, help="cycles run at once")
    ap.add_argument("--load", type=int, default=2, help="busy processes meanwhile")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to end after a signal")
    args = ap.parse_args()
    results: list[Cycle] = []
    with tempfile.TemporaryDirectory() as tmp, load(args.load):

        def worker(index: int) -> None:
            rng = random.Random(args.seed * 1000 + index)
            work = Path(tmp) / f"w{index}"
            cmds = commands(work)
            for _ in range(args.cycles):
                for command in cmds:
                    results.append(run_cycle(command, rng, args.timeout))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    report(results)
    return 1 if any(c.fault for c in results) else 0


def report(results: list[Cycle]) -> None:
    print("| command | cycles | signalled while loading | two signals | exit 0 | exit 130 "
          "| ended before Python ran | slowest stop s | faults |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in dict.fromkeys(c.command for c in results):
        mine = [c for c in results if c.command == name]
        status = Counter(c.status for c in mine)
        print(
            f"| {name} | {len(mine)} | {sum(c.early for c in mine)} "
            f"| {sum(len(c.signals) == 2 for c in mine)} | {status[0]} | {status[130]} "
            f"| {sum(c.unborn for c in mine)} | {max(c.seconds for c in mine):.1f} "
            f"| {sum(bool(c.fault) for c in mine)} |"
        )
    for c in results:
        if c.fault:
            print(f"\nFAULT {c.command} {'+'.join(c.signals)} (early: {c.early}): {c.fault}")


if __name__ == "__main__":
    sys.exit(main())
