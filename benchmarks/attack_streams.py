"""The real commands with their terminal and standard streams taken away, filled or closed.

Runs ``rig demo``, ``rig demo --tether``, ``rig shoot --rail sim://``, ``rig tether
--trigger-every`` (both on libgphoto2's virtual camera, staged per run as ``crash_resume.py``
does), ``rig resume`` of a session stopped after two frames, ``stacker stack`` on a folder of
24 frames of 1280x960, ``stacker watch --idle-timeout`` on it, and ``rig station --sim``
(started, asked for ``/api/station``, stopped by SIGTERM) as subprocesses through their
console-script entry points (:mod:`rig.launch`, :mod:`stacker.launch`), each under each fault:

- ``out_full``, ``err_full``, ``both_full``: stdout, stderr or both to ``/dev/full`` (a log file
  on a full SD card); ``head1``, ``head3``: stdout a pipe whose reader closes it after the first
  line, or after three (mid-session); ``out_closed``: stdout closed (``>&-``); ``in_closed``,
  ``in_null``: stdin closed (``<&-``) or ``/dev/null``;
- ``hup``: SIGHUP mid-session with pipes for streams; ``hup_pty``: the streams a pseudo-terminal
  that is the process's controlling terminal, whose master is closed mid-session (the ssh
  connection drops: SIGHUP, then EIO on every write); ``nohup``: SIGHUP ignored by the parent
  (``nohup``), then sent mid-session; ``int2``: SIGINT twice; ``term``: SIGTERM;
- ``dumb``, ``cols10``: on a pseudo-terminal with ``TERM=dumb`` or ``COLUMNS=10``; ``lang_c``,
  ``ascii``: ``LANG=C LC_ALL=C`` or ``PYTHONIOENCODING=ascii``, the output folder named
  ``séance-µm``.

"Mid-session" is after the session journalled a frame more than it started with (a rig session),
1.5 s after the start (``stacker stack``, ``stacker watch``), or after the station answered. A
run is a *fault* if the command hangs (120 s), prints a traceback (stdout, stderr, the terminal
or ``session.log``), exits with a status the command does not document (``rig``: 0 complete,
130 interrupted, 2 to 6 refusals and device faults; 1 is a bug; ``stacker``: 0, or 130 when a
signal stopped it; a signal's own status means it was not handled, but for a second SIGINT that
lands once the command has ended, as the interpreter resets its handlers on the way out: the
shell shows 130 all the same), prints more than one error
line, leaves a frame on disk that is not journalled or not whole, ends a session neither
completed nor resumable (a ``rig resume`` with plain streams must complete it), makes a
composite other than the clean run's (bit-identical expected; PSNR shown), does not say once in
``session.log`` that a capture session's console output was lost when its stdout went, or says
it more than once per stream; or when ``stacker stack`` or ``stacker watch`` ends 0 without
its composite (the clean run's, unless a signal stopped ``watch`` early), or the station did not
answer, or its stop was not clean (status 0).

    python benchmarks/attack_streams.py                       # every target x every fault
    python benchmarks/attack_streams.py --targets demo,stack --faults head1,hup_pty
    python benchmarks/attack_streams.py --keep --out /tmp/streams   # keep every run's folder

Each fault line ends with the command that re-runs that one run. Last result (2026-12-02, 2-core
x86-64, all targets and faults, details in ``benchmarks/README.md``): 136 runs; on the code
before the fixes (add9451) 47 with faults (a failed console write ended the command in 30, SIGHUP
killed it in 16, SIGTERM killed ``stacker stack`` in 1); after them (7ec10aa) none, in 4.8
minutes; at 34e2206 (a second SIGHUP after the stop ignored, the loading window handled, the
script safe under nohup) none, in 4.5 minutes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crash_resume import psnr, read_image, stage_vcam  # the same yardsticks, one way

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
RIG = "import sys; from rig.launch import main; sys.argv[0] = 'rig'; main()"
STACKER = "import sys; from stacker.launch import main; sys.argv[0] = 'stacker'; main()"
TOKEN = "attack-streams-token-0123456789"
WIDE = "séance-µm"  # a folder name no ASCII stream can print as it is
HANG_S = 120.0
STACK_MID_S = 1.5  # a signal this long after `stacker stack` or `watch` started
MIN_PSNR = 40.0

# --------------------------------------------------------------------------- targets
_DEMO = ["--frames", "6", "--size", "160x120", "--settle", "0s", "--time-scale", "50"]
_SHOOT = "--rail sim://?time_scale=20 --from 0mm --to 1.4mm --frames 6 --settle 0s --format png"
SESSIONS = {  # name: (rig arguments before --out, whether a staged virtual camera is used)
    "demo": (["demo", *_DEMO, "--seed", "7"], False),
    "demo_tether": (["demo", "--tether", *_DEMO[:4], "--seed", "7"], False),
    "shoot": (["shoot", *_SHOOT.split()], True),
    "tether": (["tether", "--frames", "6", "--trigger-every", "0.2s", "--format", "png"], True),
}
TARGETS = [*SESSIONS, "resume", "stack", "watch", "station"]


@dataclass(frozen=True)
class Fault:
    """How a run's streams, environment and moment of trouble are set up."""

    stdin: str = "pipe"  # pipe (kept open, never written), null, closed, pty
    stdout: str = "pipe"  # pipe, full, closed, pty, head1, head3
    stderr: str = "pipe"  # pipe, full, pty
    env: dict[str, str] = field(default_factory=dict)
    action: str = ""  # mid-session: HUP, INT2, TERM, hangup (close the pty's master)
    nohup: bool = False  # SIGHUP ignored from the start
    wide: bool = False  # the output folder named WIDE


FAULTS = {
    "out_full": Fault(stdout="full"),
    "err_full": Fault(stderr="full"),
    "both_full": Fault(stdout="full", stderr="full"),
    "head1": Fault(stdout="head1"),
    "head3": Fault(stdout="head3"),
    "out_closed": Fault(stdout="closed"),
    "in_closed": Fault(stdin="closed"),
    "in_null": Fault(stdin="null"),
    "hup": Fault(action="HUP"),
    "hup_pty": Fault(stdin="pty", stdout="pty", stderr="pty", action="hangup"),
    "nohup": Fault(action="HUP", nohup=True),
    "int2": Fault(action="INT2"),
    "term": Fault(action="TERM"),
    "dumb": Fault(stdin="pty", stdout="pty", stderr="pty", env={"TERM": "dumb"}),
    "cols10": Fault(stdin="pty", stdout="pty", stderr="pty", env={"COLUMNS": "10"}),
    "lang_c": Fault(env={"LANG": "C", "LC_ALL": "C"}, wide=True),
    "ascii": Fault(env={"PYTHONIOENCODING": "ascii"}, wide=True),
}
STDOUT_LOST = {"full", "head1", "head3"}


# --------------------------------------------------------------------------- helpers
def env_for(repo: str, tmp: Path, vcam: Path | None, extra: dict[str, str]) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("VCAMERADIR", "COLUMNS", "LINES")}
    e.update({"PYTHONPATH": repo, "TMPDIR": str(tmp), "TERM": "xterm-256color", **extra})
    if vcam is not None:
        e["VCAMERADIR"] = str(vcam)
    return e


def journal(folder: Path) -> list[dict]:
    """The journal's whole records (a torn last line left out)."""
    try:
        lines = (folder / "journal.jsonl").read_bytes().split(b"\n")
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def hung(proc: subprocess.Popen, seconds: float) -> bool:
    """Whether ``proc`` was still running ``seconds`` on: a hang, killed then."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True
    return False


def frames_counted(folder: Path) -> int:
    return sum(r.get("event") == "frame" for r in journal(folder))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def station_answers(port: int) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/station", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return answer.status == 200 and isinstance(json.loads(answer.read()), dict)
    except (OSError, ValueError):
        return False


class Reader(threading.Thread):
    """Drains a pipe or a pty master into ``data``, and closes it at the end; with
    ``close_after``, closes it after that many lines, as ``head -N`` does.

    Only this thread closes the descriptor: a ``close`` from another thread while this one is
    blocked reading would leave the file open (a pty master so kept never hangs up)."""

    def __init__(self, fd: int, close_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.fd, self.close_after, self.data = fd, close_after, b""
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not select.select([self.fd], [], [], 0.05)[0]:
                    continue
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # a pty whose other side is gone: EIO
                    break
                self.data += chunk
                if not chunk or (
                    self.close_after is not None and self.data.count(b"\n") >= self.close_after
                ):
                    break
        finally:
            os.close(self.fd)

    def close(self) -> None:
        """Stop reading and close the descriptor now."""
        self.stopping.set()
        self.join()

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- one run
class Run:
    """One target under one fault: start it, make the trouble, check what it left."""

    def __init__(self, target: str, fault: str, base: Path, repo: str, baselines: dict) -> None:
        self.target, self.fault_name, self.fault = target, fault, FAULTS.get(fault, Fault())
        self.repo, self.baselines = repo, baselines
        self.dir = base / f"{target}-{fault}"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tmp").mkdir(parents=True)
        self.out = self.dir / (WIDE if self.fault.wide else "s")
        self.vcam: Path | None = None
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.port = 0
        self.answered = False

    # setting up ------------------------------------------------------------------------
    def argv(self) -> list[str]:
        """The command of this run's target (the console scripts' entry points)."""
        if self.target in SESSIONS:
            args, vcam = SESSIONS[self.target]
            if vcam:
                self.vcam = self.dir / "vcam"
                stage_vcam(self.repo, self.vcam)
            return [PY, "-c", RIG, *args, "--out", str(self.out)]
        if self.target == "resume":
            self.interrupted_demo()
            return [PY, "-c", RIG, "resume", str(self.out)]
        if self.target == "station":
            self.port = free_port()
            return [PY, "-c", RIG, "station", "--sim", "--size", "160x120", "--port",
                    str(self.port), "--token", TOKEN, "--sessions", str(self.out)]  # fmt: skip
        frames = self.dir / f"in-{self.out.name}"
        shutil.copytree(self.baselines["frames"], frames, copy_function=os.link)
        self.out.mkdir()
        if self.target == "stack":
            return [PY, "-c", STACKER, "stack", str(frames), "-o", str(self.out / "composite.tif")]
        return [PY, "-c", STACKER, "watch", str(frames), "-o", str(self.out / "composite.tif"),
                "--idle-timeout", "2s", "--settle", "0.2s"]  # fmt: skip

    def interrupted_demo(self) -> None:
        """A demo session stopped by SIGTERM after two frames, with plain streams (made again
        when, on a loaded machine, it completed before the signal landed)."""
        env = env_for(self.repo, self.dir / "tmp", None, {})
        cmd = [PY, "-c", RIG, *SESSIONS["demo"][0], "--out", str(self.out)]
        for _ in range(3):
            shutil.rmtree(self.out, ignore_errors=True)
            quiet = subprocess.DEVNULL
            proc = subprocess.Popen(cmd, env=env, cwd=self.repo, stdin=quiet, stdout=quiet,
                                    stderr=quiet)  # fmt: skip
            deadline = time.monotonic() + 60
            while frames_counted(self.out) < 2 and proc.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            if proc.wait(60) == 130:
                return
        raise RuntimeError(f"the session to resume ended {proc.returncode}, not 130")

    def spawn(self, cmd: list[str]) -> tuple[subprocess.Popen, list[Reader], int | None]:
        """Start ``cmd`` with the fault's streams; the readers of what it prints, and the
        master of its pseudo-terminal if it has one."""
        f = self.fault
        kinds = {"stdin": f.stdin, "stdout": f.stdout, "stderr": f.stderr}
        master = slave = None
        if "pty" in kinds.values():
            master, slave = os.openpty()
            import fcntl
            import struct
            import termios

            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        wrap = []
        if f.stdin == "closed" or f.stdout == "closed" or f.nohup:
            script = "trap '' HUP; " if f.nohup else ""
            script += 'exec "$@"' + (" <&-" if f.stdin == "closed" else "")
            script += " >&-" if f.stdout == "closed" else ""
            wrap = ["sh", "-c", script, "sh"]
        if master is not None:
            wrap = ["setsid", "--ctty", *wrap]  # the pty becomes its controlling terminal
        streams: dict[str, object] = {}
        opened = []
        for name, kind in kinds.items():
            if kind == "pty":
                streams[name] = slave
            elif kind == "full":
                opened.append(open("/dev/full", "wb"))  # noqa: SIM115 (closed below)
                streams[name] = opened[-1]
            elif kind in ("null", "closed"):
                streams[name] = subprocess.DEVNULL
            else:
                streams[name] = subprocess.PIPE
        env = env_for(self.repo, self.dir / "tmp", self.vcam, f.env)
        proc = subprocess.Popen(wrap + cmd, env=env, cwd=self.repo, **streams)  # type: ignore[call-overload]
        for handle in opened:
            handle.close()
        readers = []
        if master is not None:
            os.close(slave)  # type: ignore[arg-type]
            readers.append(Reader(master))
        for pipe, kind in ((proc.stdout, f.stdout), (proc.stderr, f.stderr)):
            if pipe is not None:
                after = {"head1": 1, "head3": 3}.get(kind)
                readers.append(Reader(os.dup(pipe.fileno()), after))
                pipe.close()
        for reader in readers:
            reader.start()
        return proc, readers, master

    # the trouble ----------------------------------------------------------------------------
    def wait_mid(self, proc: subprocess.Popen, started: int) -> None:
        """Until the run is mid-way (see the module docstring) or over."""
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if self.target == "station":
                if station_answers(self.port):
                    self.answered = True
                    return
            elif self.target in ("stack", "watch"):
                if time.monotonic() > deadline - 60 + STACK_MID_S:
                    return
            elif frames_counted(self.out) > started:
                return
            time.sleep(0.02)

    def act(self, proc: subprocess.Popen, readers: list[Reader], master: int | None) -> bool:
        """Make the fault's trouble now; whether it came before the command ended. A station
        that the trouble does not stop is then stopped as systemd does, by SIGTERM."""
        action = self.fault.action
        if proc.poll() is not None:
            return not action
        if action == "hangup" and master is not None:
            readers[0].close()  # the master's reader: the terminal's far side is gone
        elif action in ("HUP", "TERM"):
            proc.send_signal(getattr(signal, f"SIG{action}"))
        elif action == "INT2":
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        stopped = action in ("hangup", "TERM", "INT2") or (action == "HUP" and not self.fault.nohup)
        if self.target == "station" and not stopped:
            time.sleep(0.5)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return True

    def go(self) -> dict:
        try:
            self.drive()
        except Exception:
            self.problems.append("driver: " + traceback.format_exc())
        return {"target": self.target, "fault": self.fault_name, "notes": self.notes,
                "problems": self.problems, "dir": str(self.dir)}  # fmt: skip

    def drive(self) -> None:
        cmd = self.argv()
        started = frames_counted(self.out)
        proc, readers, master = self.spawn(cmd)
        self.wait_mid(proc, started)
        if self.target in SESSIONS or self.target == "resume":
            self.notes.append(f"{frames_counted(self.out) - started} frames in")
        in_time = self.act(proc, readers, master)
        if hung(proc, HANG_S):
            self.problems.append(f"hung ({HANG_S:.0f} s)")
        for reader in readers:
            reader.join(5)
            reader.close()
        printed = "\n".join(r.text() for r in readers)
        (self.dir / "printed.txt").write_text(printed, encoding="utf-8")
        self.notes.append(f"rc={proc.returncode}" + ("" if in_time else " (ended before)"))
        self.check(proc.returncode, printed, signalled=bool(self.fault.action) and in_time)

    # the checks -----------------------------------------------------------------------------
    def check(self, rc: int, printed: str, *, signalled: bool) -> None:
        log = self.out / "session.log"
        logged = log.read_text("utf-8", "replace") if log.is_file() else ""
        if "Traceback" in printed:
            self.problems.append(f"traceback printed: {printed[-300:]!r}")
        if "Traceback" in logged:
            self.problems.append("traceback in session.log")
        errors = [ln for ln in printed.splitlines() if "error:" in ln.lower()]
        if len(errors) > 1:
            self.problems.append(f"{len(errors)} error lines: {errors[:3]}")
        stopping = signalled and not self.fault.nohup
        if rc == -signal.SIGINT and self.fault.action == "INT2" and "Traceback" not in printed:
            # the second Ctrl-C came after the command ended, once the interpreter had reset
            # its handlers on the way out: the shell sees 130 (128 + SIGINT) all the same
            self.notes.append("second SIGINT during the interpreter's exit")
            rc = 130
        if self.target in ("stack", "watch"):
            self.check_stack(rc, stopping)
        elif self.target == "station":
            self.notes.append("answered" if self.answered else "never answered")
            if not self.answered:
                self.problems.append("the station never answered /api/station")
            if rc != 0 and not (rc == 130 and self.fault.action == "INT2"):
                self.problems.append(f"station stopped with status {rc}, not 0")
        else:
            self.check_session(rc, stopping, logged)

    def check_stack(self, rc: int, stopping: bool) -> None:
        """Exit 0 with the clean run's composite; stopped by a signal, 130 and no composite
        (``stack``), or 0 and a composite of the frames merged so far (``watch``)."""
        allowed = (0, 130) if stopping else (0,)
        if rc not in allowed:
            self.problems.append(f"exit status {rc}, not {' or '.join(map(str, allowed))}")
        composite = self.out / "composite.tif"
        if rc == 0 and not stopping:
            self.compare(composite, self.target)
        elif rc == 0 and read_image(composite) is None:
            self.problems.append("ended 0 without a readable composite")
        elif rc != 0 and composite.exists() and read_image(composite) is None:
            self.problems.append("composite left unreadable")

    def check_session(self, rc: int, stopping: bool, logged: str) -> None:
        allowed = {0, 130, 2, 3, 4, 5, 6} if stopping else {0}
        if rc not in allowed:
            self.problems.append(f"exit status {rc}, not in {sorted(allowed)}")
        self.check_frames()
        lost = logged.count("console output lost")
        if self.fault.stdout in STDOUT_LOST and lost == 0:
            self.problems.append("stdout went, and session.log does not say so")
        if lost > 2:
            self.problems.append(f"session.log says {lost} times that console output was lost")
        last = [r for r in journal(self.out) if r.get("event") == "finish"][-1:]
        if not (last and last[0].get("reason") == "completed"):
            self.notes.append(f"ended {last[0].get('reason') if last else 'without finishing'}")
            self.resume()
        baseline = "demo" if self.target == "resume" else self.target
        name = "composite.png" if "png" in SESSIONS.get(self.target, ([], False))[0] else None
        self.compare(self.out / (name or "composite.tif"), baseline)

    def check_frames(self) -> None:
        """Every frame file on disk is journalled and whole."""
        journalled = {f for r in journal(self.out) if r.get("event") == "frame"
                      for f in r.get("files", [])}  # fmt: skip
        for path in sorted((self.out / "frames").glob("frame_*")):
            name = f"frames/{path.name}"
            if name not in journalled:
                self.problems.append(f"{name} on disk, not journalled")
            if read_image(path) is None:
                self.problems.append(f"{name} not whole ({path.stat().st_size} bytes)")

    def resume(self) -> None:
        """``rig resume`` with plain streams must complete the session."""
        env = env_for(self.repo, self.dir / "tmp", self.vcam, {})
        done = subprocess.run([PY, "-c", RIG, "resume", str(self.out)], env=env, cwd=self.repo,
                              capture_output=True, text=True, timeout=HANG_S)  # fmt: skip
        if done.returncode != 0 or "session completed" not in done.stdout:
            self.problems.append(f"not resumable: rc {done.returncode} {done.stderr[-300:]!r}")
        else:
            self.notes.append("resumed")

    def compare(self, composite: Path, baseline: str) -> None:
        """``composite`` against the clean run of ``baseline`` (none while that is made)."""
        image = read_image(composite)
        if baseline not in self.baselines:
            return
        reference = self.baselines[baseline]["composite"]
        if image is None or reference is None:
            self.problems.append(f"{composite.name} missing or unreadable")
            return
        value = psnr(image, reference)
        if value < MIN_PSNR:
            self.problems.append(f"{composite.name} {value:.1f} dB from the clean run's")
        self.notes.append("identical" if value == float("inf") else f"psnr {value:.1f}")


# --------------------------------------------------------------------------- campaign
def make_baselines(base: Path, repo: str, targets: list[str]) -> dict:
    """A clean run of each target (plain streams, no trouble): the composites to match."""
    baselines: dict = {"frames": base / "frames"}
    if {"stack", "watch"} & set(targets):  # 24 frames of 1280x960: stacked in about 2 s
        code = (
            "import sys; from pathlib import Path; from rig.sim.scene import SceneSpec, "
            "write_stack; write_stack(Path(sys.argv[1]), SceneSpec(width=1280, height=960, "
            "seed=4, jpeg_quality=90), 24)"
        )
        env = {**os.environ, "PYTHONPATH": repo}
        subprocess.run([PY, "-c", code, str(base / "frames")], check=True, env=env, cwd=repo)
    needed = list(dict.fromkeys(["demo", *targets]))
    for target in needed:
        if target in ("resume", "station"):
            continue
        run = Run(target, "baseline", base, repo, baselines)
        run.go()
        if run.problems:
            raise SystemExit(f"baseline {target}: {run.problems}")
        name = "composite.png" if "png" in SESSIONS.get(target, ([], False))[0] else "composite.tif"
        baselines[target] = {"dir": run.out, "composite": read_image(run.out / name)}
        print(f"baseline {target}: {'; '.join(run.notes)}", flush=True)
    return baselines


def main() -> None:
    ap = campaign_parser(__doc__.split("\n\n")[0], TARGETS, FAULTS)
    a = ap.parse_args()
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        # Run under nohup, every command would start with SIGHUP ignored and the hangup faults
        # test nothing (a station left waiting for a stop): a do-nothing handler of our own
        # keeps this run alive through a hangup, and children start with the default.
        signal.signal(signal.SIGHUP, lambda *_: None)
    targets, faults = chosen(ap, a, TARGETS, FAULTS)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # children get Ctrl-C as from a shell
    a.repo = str(Path(a.repo).resolve())
    base = campaign_folder(a.out, "stackrig-streams-")
    t0 = time.monotonic()
    baselines = make_baselines(base, a.repo, targets)
    pairs = [(t, f) for t in targets for f in faults]

    run_all(
        pairs, lambda pair: Run(*pair, base, a.repo, baselines).go(), base, a.workers,
        keep=a.keep, widths=(11, 10), started=t0,
        again=lambda r: f".venv/bin/python benchmarks/attack_streams.py --targets {r['target']} "
                        f"--faults {r['fault']}",
    )  # fmt: skip


def campaign_parser(
    description: str, targets: Iterable[str], faults: Iterable[str]
) -> argparse.ArgumentParser:
    """The options of a campaign of runs, targets under faults: which ones, how many runs at a
    time, whose code runs and where the runs go. A script adds its own."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--targets", default=",".join(targets), help="comma-separated targets")
    ap.add_argument("--faults", default=",".join(faults), help="comma-separated faults")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repo", default=str(REPO), help="the checkout whose code runs")
    ap.add_argument("--out", default=None, help="where runs go (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the folders of clean runs")
    return ap


def chosen(
    ap: argparse.ArgumentParser,
    a: argparse.Namespace,
    targets: Iterable[str],
    faults: Iterable[str],
) -> tuple[list[str], list[str]]:
    """The targets and faults ``a`` names; a usage error if one is not among ``targets`` or
    ``faults``."""
    known_targets, known_faults = list(targets), list(faults)
    wanted_targets, wanted_faults = a.targets.split(","), a.faults.split(",")
    unknown = [t for t in wanted_targets if t not in known_targets]
    unknown += [f for f in wanted_faults if f not in known_faults]
    if unknown:
        ap.error(f"unknown: {', '.join(unknown)}; targets {known_targets}, faults {known_faults}")
    return wanted_targets, wanted_faults


def campaign_folder(out: str | None, prefix: str) -> Path:
    """Where a campaign's runs go: ``out``, made if need be, or a new temporary folder."""
    base = Path(out or tempfile.mkdtemp(prefix=prefix)).resolve()
    base.mkdir(parents=True, exist_ok=True)
    return base


def run_all(
    items: list, go: Callable[[Any], dict], base: Path, workers: int, *, keep: bool,
    widths: tuple[int, int], again: Callable[[dict], str], started: float,
) -> None:  # fmt: skip
    """Run ``go`` on each item, ``workers`` at a time, and print a line per run as it ends:
    its target, fault and notes, and for a faulty run its problems and the command that runs
    it ``again``. Each result is appended to ``base/results.jsonl``; the folder of a run
    without problems is removed unless ``keep``. Then the summary of the campaign, timed from
    ``started`` (``time.monotonic()``), and where its runs are."""

    def one(item: Any) -> dict:
        result = go(item)
        if not result["problems"] and not keep:
            shutil.rmtree(result["dir"], ignore_errors=True)
        return result

    results = []
    target_w, fault_w = widths
    with ThreadPoolExecutor(workers) as pool, open(base / "results.jsonl", "w") as log:
        for r in pool.map(one, items):
            results.append(r)
            log.write(json.dumps(r) + "\n")
            log.flush()
            flag = "FAULT" if r["problems"] else "ok"
            told = "".join(f"\n      !! {p}" for p in r["problems"])
            if r["problems"]:
                told += f"\n      again: {again(r)}"
            print(f"{flag:5s} {r['target']:{target_w}s} {r['fault']:{fault_w}s} "
                  f"{'; '.join(r['notes'])}{told}", flush=True)  # fmt: skip
    summarize(results, time.monotonic() - started)
    print(f"runs and results.jsonl in {shlex.quote(str(base))}")


def summarize(results: list[dict], seconds: float) -> None:
    faulty = [r for r in results if r["problems"]]
    print(f"\n=== {len(results)} runs in {seconds / 60:.1f} min, {len(faulty)} with faults ===")
    for key in ("target", "fault"):
        counts = collections.Counter(r[key] for r in faulty)
        print(f"faults by {key}: {dict(counts) or 'none'}")


if __name__ == "__main__":
    main()
