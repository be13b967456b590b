"""Crash-injection campaign against stackrig capture sessions (simulated rig).

Usage: crash_resume.py [RUNS] [--seed S] [--workers W] [--repo PATH] [--out DIR] [--only KIND]
                       [--configs PREFIX[,PREFIX...]]

    python benchmarks/crash_resume.py 240 --seed 2   # about 35 minutes on two cores
    python benchmarks/crash_resume.py 90 --configs tether   # tether sessions only, ~5 minutes
    python benchmarks/crash_resume.py 80 --configs tetherN,tetherC,tetherS,tetherF  # bursts
    python benchmarks/crash_resume.py 40 --seed 3 --configs tetherO   # open-ended, ~6 minutes

Without --configs every configuration below takes part; `--configs demo,shoot` draws the runs
the script drew before it had tether configurations.

Each run: start `rig demo` / `rig shoot --rail sim://` / `rig demo --tether` (the rig's
photographer presses the shutter, or a Nikon, Canon, Sony or Fujifilm body brackets by itself,
RAW+JPEG on two) / `rig tether --trigger-every` in its own process, kill it at a chosen moment
(SIGKILL mostly; SIGTERM, SIGINT, double SIGINT), check the aftermath (outputs whole or absent,
frames whole, journal readable), optionally damage it as a power cut would (the last frame's
files as one), then `rig resume` (sometimes killed again, sometimes twice at once) and check the
result against an uninterrupted run of the same configuration (PSNR of the composites).

Tether sessions (configurations named ``tether*``: the camera shoots, stackrig downloads) are
checked against what a tether session promises (``rig.session.tether``): the camera cannot be
asked for a frame again, so a frame that was in the folder and is lost or damaged there is left
out and new frames are numbered after the last one. Their checks: no frame that was whole on
disk before the resume is lost or replaced; the only frame numbers missing at the end are frames
the run damaged; no frame is journalled twice; the last run merged exactly the frames on disk,
in order, and finished "completed"; each frame holds the image the camera made for its number
(the demo's focus plane, the virtual body's staged JPEG); the composite equals a stack of the
frames the folder holds made in one go (and the uninterrupted run's when none is missing); a
second resume of the finished session says every frame is there and restacks them without
opening the camera; and every resume ends in one line, never a traceback. ``tetherO`` is
`rig tether` open-ended (no --frames, no --idle-timeout): every run of it ends with the Ctrl-C
the driver presses at its frame count (:data:`OPEN_ENDED`), "interrupted" is its normal end, and
a resume of it tethers more rather than restacking.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
MIN_PSNR = 40.0  # identical inputs in identical order give identical output

# --------------------------------------------------------------------------- configurations
_SMALL = "--settle 0s --time-scale 50"
CONFIGS = {  # name: (command, its arguments, frames, composite's file name)
    "demoA": (
        "demo",
        shlex.split(f"--frames 8 --size 160x120 {_SMALL} --seed 7"),
        8,
        "composite.tif",
    ),
    "demoB": (
        "demo",
        shlex.split(
            "--frames 12 --size 192x144 --settle 0.05s --time-scale 50 --seed 11 "
            "--method depthmap --format png"
        ),
        12,
        "composite.png",
    ),
    "demoC": (
        "demo",
        shlex.split(f"--frames 6 --size 160x120 {_SMALL} --seed 3 --camera canon --raw-mb 4"),
        6,
        "composite.tif",
    ),
    "demoD": (
        "demo",
        shlex.split(
            f"--frames 9 --size 160x120 {_SMALL} --seed 5 --no-move-during-download "
            "--reference middle"
        ),
        9,
        "composite.tif",
    ),
    "demoP": (
        "demo",
        shlex.split(
            f"--frames 6 --size 160x120 {_SMALL} --seed 9 --camera nikon --raw-plus-jpeg --raw-mb 8"
        ),
        6,
        "composite.tif",
    ),
    "shootE": (
        "shoot",
        shlex.split(
            "--rail sim://?time_scale=20 --from 0mm --to 1.4mm --frames 8 --settle 0s "
            "--direction far-to-near --format png"
        ),
        8,
        "composite.png",
    ),
    # tether sessions: the simulated rig's photographer presses the shutter (`rig demo
    # --tether`), or stackrig releases it itself on the virtual body (`rig tether`)
    "tetherD": (
        "demo",
        shlex.split("--tether --frames 8 --size 160x120 --seed 7"),
        8,
        "composite.tif",
    ),
    "tetherP": (
        "demo",
        shlex.split("--tether --frames 10 --size 192x144 --seed 11 --method depthmap --format png"),
        10,
        "composite.png",
    ),
    "tetherT": (
        "tether",
        shlex.split("--frames 6 --trigger-every 0.2s --format png"),
        6,
        "composite.png",
    ),
    # open-ended: no --frames, no --idle-timeout; ends on Ctrl-C (see OPEN_ENDED)
    "tetherO": (
        "tether",
        shlex.split("--trigger-every 0.2s --format png"),
        6,
        "composite.png",
    ),
    # bodies that bracket by themselves: one press, a burst announced as the family's
    # libgphoto2 path does (rig.sim.bracketing); RAW+JPEG pairs on two of them
    "tetherN": (
        "demo",
        shlex.split("--tether --camera nikon --raw-plus-jpeg --frames 8 --size 160x120 --seed 5"),
        8,
        "composite.tif",
    ),
    "tetherC": (
        "demo",
        shlex.split(
            "--tether --camera canon --raw-plus-jpeg --frames 8 --size 160x120 --seed 3 "
            "--format png"
        ),
        8,
        "composite.png",
    ),
    "tetherS": (
        "demo",
        shlex.split("--tether --camera sony --frames 8 --size 160x120 --seed 9"),
        8,
        "composite.tif",
    ),
    "tetherF": (
        "demo",
        shlex.split("--tether --camera fuji --frames 8 --size 160x120 --seed 13 --method depthmap"),
        8,
        "composite.tif",
    ),
}


OPEN_ENDED = {"tetherO"}
"""Configurations that end only on Ctrl-C, as `rig tether` without --frames or --idle-timeout
does: the driver presses it once the journal holds ``frames`` frames, as a photographer ends
the session when the body's burst is over, in every run of them (first, resumes, baselines).
Its normal end is then "interrupted" (exit 130), and a resume of it tethers more."""


def ctrl_c_at(proc: subprocess.Popen, journal: Path, frames: int) -> None:
    """In the background: SIGINT to ``proc`` once ``journal`` has ``frames`` frame records, and
    one more than when ``proc`` started (a resume is for tethering more); read leniently, as the
    runs damage journals."""

    def shot() -> int:
        try:
            return journal.read_text(errors="replace").count('"event":"frame"')
        except OSError:
            return 0

    target = max(frames, shot() + 1)

    def watch() -> None:
        while proc.poll() is None:
            if shot() >= target:
                proc.send_signal(signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def is_tether(cfg: str) -> bool:
    kind, args, _, _ = CONFIGS[cfg]
    return kind == "tether" or "--tether" in args


def uses_vcam(cfg: str) -> bool:
    """Configurations whose camera is the virtual body fed from a folder of the run's own."""
    return CONFIGS[cfg][0] in ("shoot", "tether")


CORRUPTIONS = [
    "none",
    "truncate_journal",
    "temp_frame",
    "remove_last_frame",
    "zero_frame",
    "drop_last_record",
    "temp_composite",
    "zerofill_frame",
    "journal_nul_tail",
]


def env_for(repo: str, tmp: Path, vcam: Path | None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}
    e["PYTHONPATH"] = repo
    e["TMPDIR"] = str(tmp)
    if vcam is not None:
        e["VCAMERADIR"] = str(vcam)
    return e


def stage_vcam(repo: str, folder: Path) -> None:
    code = (
        "from rig.sim.scene import SceneSpec, SyntheticScene\n"
        "from rig.sim.vcamera import VirtualCameraFolder\n"
        "from pathlib import Path\nimport sys\n"
        "f = VirtualCameraFolder(Path(sys.argv[1]), slot_bytes=256<<10)\n"
        "fr = SyntheticScene(SceneSpec(width=160, height=120, seed=5, jpeg_quality=90))"
        ".render(700.0)\nf.stage(fr.encoded)\n"
    )
    subprocess.run(
        [PY, "-c", code, str(folder)],
        check=True,
        env={**os.environ, "PYTHONPATH": repo},
        cwd=repo,
    )


_STACK_HELD = """
import sys
from dataclasses import replace
from pathlib import Path
from rig.session.folder import SessionFolder, stack_file
from rig.session.runner import make_stacker
from stacker.io import OrientedReader, is_raw_path
from stacker.output import save_outputs
folder = SessionFolder.find(Path(sys.argv[1]))
config = folder.config
stack = replace(config.stack, order=folder.plan.direction)
stacker = make_stacker(replace(config, stack=stack), folder.plan.frames)
reader = OrientedReader()
on_disk = folder.frames_on_disk()
for index in sorted(on_disk):
    path = stack_file(on_disk[index])
    if is_raw_path(path):  # a half pair: a stack of rendered frames keeps a RAW frame out
        continue
    image, _ = reader.read(path)
    stacker.add(image, name=path.name, position_um=None, linear=False)
save_outputs(stacker, sys.argv[2], None, metadata_from=stack_file(on_disk[min(on_disk)]),
             crop=config.stack.crop)
"""


def stack_held(repo: str, session: Path, out: Path) -> np.ndarray | None:
    """The frames ``session`` holds stacked in one go, in frame order, with its options."""
    p = subprocess.run(
        [PY, "-c", _STACK_HELD, str(session), str(out)],
        env={**os.environ, "PYTHONPATH": repo},
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode != 0:
        raise RuntimeError(f"stacking the held frames failed: {p.stderr[-600:]}")
    return read_image(out)


def start_cmd(cfg: str, out: Path) -> list[str]:
    kind, args, _, _ = CONFIGS[cfg]
    return [PY, "-m", "rig.cli", kind, *args, "--out", str(out)]


def resume_cmd(out: Path) -> list[str]:
    return [PY, "-m", "rig.cli", "resume", str(out)]


# --------------------------------------------------------------------------- checks
def read_image(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return -1.0
    peak = 65535.0 if a.dtype == np.uint16 else 255.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def journal_records(path: Path) -> tuple[list[dict], bool]:
    """Whole records and whether the last line was torn (independent of stackrig's reader)."""
    if not path.exists():
        return [], False
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    recs = []
    for i, ln in enumerate(lines[:-1]):
        try:
            recs.append(json.loads(ln))
        except ValueError:
            if i == len(lines) - 2:
                torn = True
            else:
                raise
    return recs, torn


OUTPUT_NAMES = ("composite.tif", "composite.png", "composite.jpg", "depth.png", "depth-preview.jpg")


def check_outputs_whole(folder: Path) -> list[str]:
    problems = []
    for name in OUTPUT_NAMES:
        p = folder / name
        if p.exists() and read_image(p) is None:
            problems.append(f"{name} exists but is unreadable ({p.stat().st_size} bytes)")
    dj = folder / "depth.json"
    if dj.exists():
        try:
            json.loads(dj.read_text())
        except ValueError:
            problems.append("depth.json exists but is not JSON")
    return problems


def frames_in(folder: Path) -> dict[str, bytes]:
    d = folder / "frames"
    if not d.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")}


def frame_complete(data: bytes) -> bool:
    return len(data) > 4 and data[:2] == b"\xff\xd8" and b"\xff\xd9" in data


def clean_output(proc_out: str, proc_err: str) -> list[str]:
    problems = []
    if "Traceback" in proc_out + proc_err:
        problems.append("traceback printed")
    return problems


# --------------------------------------------------------------------------- one run
class Run:
    def __init__(
        self,
        n: int,
        rng: random.Random,
        base: Path,
        repo: str,
        baselines: dict,
        only: str | None,
        configs: list[str],
    ) -> None:
        self.n = n
        self.rng = rng
        self.repo = repo
        self.baselines = baselines
        self.dir = base / f"run{n:04d}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir(parents=True)
        self.out = self.dir / "s"
        self.cfg = rng.choice(configs)
        self.vcam = None
        if uses_vcam(self.cfg):
            self.vcam = self.dir / "vcam"
            stage_vcam(repo, self.vcam)
        self.env = env_for(repo, self.tmp, self.vcam)
        r = rng.random()
        self.sig = "KILL" if r < 0.72 else "TERM" if r < 0.82 else "INT" if r < 0.91 else "INT2"
        self.when = rng.choice(["time", "time", "frames", "frames", "write", "write_final"])
        if only:
            self.when = only
        self.corrupt = rng.choice(CORRUPTIONS) if self.sig == "KILL" else "none"
        self.resume_kill = rng.random() < 0.15
        self.concurrent = rng.random() < 0.12
        self.finished_again = rng.random() < 0.2
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.outcome = "?"
        self.psnr: float | None = None
        self.pre_import_int = False
        self.damaged_names: set[str] = set()

    # the kill ------------------------------------------------------------------
    def spawn(self, cmd: list[str]) -> subprocess.Popen:
        """``cmd`` in its own session, in the checkout under test, with its output kept (and,
        for an open-ended session, its Ctrl-C to come)."""
        proc = subprocess.Popen(cmd, env=self.env, cwd=self.repo, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)  # fmt: skip
        if self.cfg in OPEN_ENDED:
            ctrl_c_at(proc, self.out / "journal.jsonl", CONFIGS[self.cfg][2])
        return proc

    def kill_session(self) -> None:
        proc = self.spawn(start_cmd(self.cfg, self.out))
        frames = CONFIGS[self.cfg][2]
        dur = self.baselines[self.cfg]["duration"]
        deadline = time.monotonic() + 120
        fired = False
        if self.when == "time":
            delay = self.rng.uniform(1.0, dur * 1.05)
            self.notes.append(f"after {delay:.2f}s")
            try:
                proc.wait(delay)
            except subprocess.TimeoutExpired:
                fired = self.fire(proc)
        elif self.when == "frames":
            k = self.rng.randint(0, frames)
            extra = self.rng.choice([0.0, 0.0, self.rng.uniform(0, 0.3)])
            self.notes.append(f"after {k} frame records +{extra:.3f}s")
            while proc.poll() is None and time.monotonic() < deadline:
                recs, _ = self.safe_records()
                if sum(r.get("event") == "frame" for r in recs) >= k and (
                    (self.out / "journal.jsonl").exists()
                ):
                    time.sleep(extra)
                    fired = self.fire(proc)
                    break
                time.sleep(0.002)
        else:  # write / write_final: while an output temporary exists
            final = self.when == "write_final"
            extra = self.rng.choice([0.0, self.rng.uniform(0, 0.02)])
            self.notes.append(f"during {'final ' if final else ''}output write +{extra:.3f}s")
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    names = os.listdir(self.out)
                except OSError:
                    names = []
                if final:
                    recs, _ = self.safe_records()
                    ok = sum(r.get("event") == "merge" for r in recs) >= frames
                else:
                    ok = True
                if ok and any(
                    n.startswith((".composite", ".depth")) and n.endswith(".tmp") for n in names
                ):
                    time.sleep(extra)
                    fired = self.fire(proc)
                    break
                time.sleep(0.001)
        if not fired and proc.poll() is None:
            fired = self.fire(proc)
        out, err = proc.communicate(timeout=120)
        self.first_rc = proc.returncode
        self.notes.append(f"rc={proc.returncode}{'' if fired else ' (ended before the kill)'}")
        recs, _ = self.safe_records()
        started = any(r.get("event") in ("start", "resume") for r in recs)
        if self.sig == "TERM" and proc.returncode == -signal.SIGTERM and not started:
            self.notes.append("SIGTERM before the handlers were installed: a crash")
        elif (
            self.sig.startswith("INT")
            and proc.returncode == -signal.SIGINT
            and not started
            and err.rstrip().endswith("KeyboardInterrupt")
        ):
            self.notes.append("SIGINT while Python imported the program: its traceback")
            self.pre_import_int = True
        elif (
            fired
            and proc.returncode in (-signal.SIGINT, -signal.SIGTERM)
            and not clean_output(out, err)
            and recs
            and recs[-1].get("event") == "finish"
        ):
            # the session had ended; the signal came while the interpreter shut down (SIGTERM
            # has its default handler back then; a Ctrl-C is let pass, a second one exits 130):
            # the shell shows 130 or 143 all the same
            self.notes.append("signal during interpreter exit, after the session finished")
        elif self.sig != "KILL" or not fired:
            self.problems += clean_output(out, err)
            if fired and proc.returncode not in (0, 130):
                self.problems.append(f"graceful stop exit {proc.returncode}: {err[-300:]}")
        self.first_out = out + err

    def safe_records(self) -> tuple[list[dict], bool]:
        try:
            return journal_records(self.out / "journal.jsonl")
        except (ValueError, OSError):
            return [], False

    def fire(self, proc: subprocess.Popen) -> bool:
        if proc.poll() is not None:
            return False
        if self.sig == "KILL":
            os.killpg(proc.pid, signal.SIGKILL)
        elif self.sig == "TERM":
            proc.send_signal(signal.SIGTERM)
        elif self.sig == "INT":
            proc.send_signal(signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
            time.sleep(self.rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        return True

    # the aftermath ---------------------------------------------------------------
    def check_aftermath(self) -> None:
        if not self.out.exists():
            return
        self.problems += [f"after kill: {p}" for p in check_outputs_whole(self.out)]
        for name, data in frames_in(self.out).items():
            if not frame_complete(data) and name not in self.damaged_names:
                self.problems.append(f"after kill: frame {name} incomplete ({len(data)} bytes)")
        try:
            journal_records(self.out / "journal.jsonl")
        except ValueError:
            self.problems.append("after kill: journal damaged before its last line")

    def damage(self) -> None:
        kind = self.corrupt
        out = self.out
        j = out / "journal.jsonl"
        if kind == "none" or not out.exists():
            return
        frames = (
            sorted(p for p in (out / "frames").glob("frame_*")) if (out / "frames").is_dir() else []
        )
        # the last frame is every file of its stem (a RAW+JPEG pair is damaged as one)
        last_frame = [p for p in frames if frames and p.stem == frames[-1].stem]
        recs, _ = self.safe_records()
        journaled = [r for r in recs if r.get("event") == "frame"]
        if kind == "truncate_journal" and j.exists() and j.stat().st_size > 2:
            data = j.read_bytes().rstrip(b"\n")
            start = data.rfind(b"\n") + 1
            cut = self.rng.randint(start + 1, len(data)) if len(data) > start + 1 else len(data)
            j.write_bytes(data[:cut])
            self.notes.append(f"journal cut at {cut}/{len(data) + 1}")
        elif kind == "drop_last_record" and journaled and j.exists():
            data = j.read_bytes().rstrip(b"\n").split(b"\n")
            last = max(i for i, ln in enumerate(data) if b'"event":"frame"' in ln)
            del data[last]
            j.write_bytes(b"\n".join(data) + b"\n" if data else b"")
            self.notes.append("last frame record dropped")
        elif kind == "journal_nul_tail" and j.exists():
            with j.open("ab") as fh:
                fh.write(b"\0" * self.rng.randint(1, 300))
        elif kind == "temp_frame" and (out / "frames").is_dir():
            src = frames[-1].read_bytes() if frames else b"\xff\xd8" + b"x" * 5000
            k = len(frames) + 1
            (out / "frames" / f".frame_{k:04d}.jpg.a1b2c3.tmp").write_bytes(src[: len(src) // 2])
        elif kind == "temp_composite":
            (out / ".composite.tif.zz99.tmp").write_bytes(b"II*\x00" + b"\0" * 3000)
            (out / ".depth.png.zz98.tmp").write_bytes(b"\x89PNG" + b"\0" * 100)
        elif kind in ("remove_last_frame", "zero_frame", "zerofill_frame") and frames:
            for path in last_frame:
                if kind == "remove_last_frame":
                    path.unlink()
                else:
                    size = path.stat().st_size if kind == "zerofill_frame" else 0
                    path.write_bytes(b"\0" * size)
                self.damaged_names.add(path.name)
            self.notes.append(f"{kind}: {', '.join(p.name for p in last_frame)}")

    # resume ---------------------------------------------------------------------------
    def resume(
        self, tag: str, *, kill_after: float | None = None, sig: int = signal.SIGKILL
    ) -> tuple[int, str, str]:
        proc = self.spawn(resume_cmd(self.out))
        if kill_after is not None:
            try:
                proc.wait(kill_after)
            except subprocess.TimeoutExpired:
                if sig == signal.SIGKILL:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            self.problems.append(f"{tag}: hung")
        return proc.returncode, out, err

    def judge_resume(self, tag: str, rc: int, out: str, err: str) -> str:
        self.problems += [f"{tag}: {p}" for p in clean_output(out, err)]
        if rc == 0 and "session completed" in out:
            return "completed"
        if self.cfg in OPEN_ENDED and rc == 130 and "session interrupted:" in out:
            return "completed"  # its Ctrl-C, from ctrl_c_at
        errors = [ln for ln in err.splitlines() if ln.startswith("rig: error:")]
        if rc != 0 and len(errors) == 1 and ("Traceback" not in err):
            self.notes.append(f"{tag} refused: {errors[0][:200]}")
            return "refused"
        self.problems.append(
            f"{tag}: rc={rc} unclear outcome: out={out[-400:]!r} err={err[-600:]!r}"
        )
        return "bad"

    def run_resumes(self) -> None:
        if self.resume_kill:
            delay = self.rng.uniform(0.5, 4.0)
            sig = self.rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
            rc, out, err = self.resume("resume-killed", kill_after=delay, sig=sig)
            self.notes.append(f"resume {sig.name} after {delay:.2f}s (rc {rc})")
            if sig != signal.SIGKILL and rc not in (0, 130, -sig) and "error:" not in err:
                self.problems.append(f"resume stopped by {sig.name}: rc {rc} {err[-300:]}")
            if (
                sig != signal.SIGKILL
                and "Traceback" in err
                and not err.rstrip().endswith("KeyboardInterrupt")
            ):
                self.problems.append(f"resume stopped by {sig.name}: traceback {err[-500:]}")
            self.check_aftermath()
        if self.concurrent:
            box: list = []
            ts = [
                threading.Thread(target=lambda t=t: box.append((t, *self.resume(t))))
                for t in ("resumeA", "resumeB")
            ]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            kinds = []
            for tag, rc, out, err in box:
                if rc == 4 and "is running this session" in err:  # "process N is ..."
                    kinds.append("busy")
                    self.problems += [f"{tag}: {p}" for p in clean_output(out, err)]
                else:
                    kinds.append(self.judge_resume(tag, rc, out, err))
            self.notes.append(f"concurrent: {kinds}")
            if kinds.count("completed") == 2 and self.cfg not in OPEN_ENDED:
                both = [o for _, _, o, _ in box]
                if not any("every frame is there" in o for o in both):
                    self.problems.append("two resumes at once both shot frames")
            self.outcome = (
                "completed" if "completed" in kinds else "refused" if "refused" in kinds else "bad"
            )
            refusals = {ln for _, _, _, e in box for ln in e.splitlines() if "error:" in ln}
            same_refusal = kinds == ["refused", "refused"] and len(refusals) == 1
            if "busy" not in kinds and kinds.count("completed") < 2 and not same_refusal:
                self.problems.append(f"concurrent resumes: {kinds}")
        else:
            rc, out, err = self.resume("resume")
            self.outcome = self.judge_resume("resume", rc, out, err)

    # final state -----------------------------------------------------------------------
    def journal_after_resume(self) -> tuple[list[dict], list[dict]]:
        """The journal's records, and those of its last run (from its last start or resume);
        a journal still torn is a problem."""
        recs, torn = journal_records(self.out / "journal.jsonl")
        if torn:
            self.problems.append("journal still torn after resume")
        starts = [i for i, r in enumerate(recs) if r.get("event") in ("start", "resume")]
        return recs, (recs[starts[-1] :] if starts else [])

    def check_final(self, before: dict[str, bytes]) -> None:
        if is_tether(self.cfg):
            self.check_final_tether(before)
            return
        _, _, frames, comp_name = CONFIGS[self.cfg]
        names = sorted(frames_in(self.out))
        want = sorted(self.baselines[self.cfg]["frames"])  # each RAW partner too, if any
        if names != want:
            self.problems.append(f"frames/ holds {names}")
        after = frames_in(self.out)
        half = sorted(
            n for n in before if n.endswith(".nef") and n.replace(".nef", ".jpg") not in before
        )
        if half:  # killed between a pair's two files: shot again whole
            self.notes.append(f"half a pair before the resume: {half}")
        for name, data in before.items():
            if frame_complete(data) and name in after and after[name] != data:
                self.problems.append(f"{name}: a frame captured before the kill was replaced")
            if frame_complete(data) and name not in after:
                self.problems.append(f"{name}: a frame captured before the kill was lost")
        recs, last = self.journal_after_resume()
        merges = [r["index"] for r in last if r.get("event") == "merge"]
        if merges != list(range(1, frames + 1)):
            self.problems.append(f"merges of the last run: {merges}")
        if not last or last[-1].get("event") != "finish" or last[-1].get("reason") != "completed":
            self.problems.append(f"last record: {last[-1] if last else None}")
        idx = collections.Counter(r["index"] for r in recs if r.get("event") == "frame")
        shot_before = {int(n[6:10]) for n, d in before.items() if frame_complete(d)}
        for i, c in idx.items():
            if c > 1:
                later = [r for r in recs if r.get("event") == "frame" and r["index"] == i][1:]
                if (
                    i in shot_before
                    and not all(r.get("adopted") for r in later)
                    and (self.corrupt not in ("remove_last_frame", "zero_frame", "zerofill_frame"))
                ):
                    self.problems.append(f"frame {i} journaled {c} times: {later}")
        problems = check_outputs_whole(self.out)
        self.problems += [f"final: {p}" for p in problems]
        comp = read_image(self.out / comp_name)
        depth = read_image(self.out / "depth.png")
        if comp is None or depth is None:
            self.problems.append("final: composite or depth map missing")
            return
        if depth.dtype != np.uint16:
            self.problems.append(f"depth.png is {depth.dtype}")
        self.psnr = psnr(comp, self.baselines[self.cfg]["composite"])
        if self.psnr < MIN_PSNR:
            self.problems.append(f"final: composite {self.psnr:.1f} dB from the uninterrupted one")
        kept_out = [r["index"] for r in last if r.get("event") == "merge" and not r.get("merged")]
        if kept_out:
            self.problems.append(f"final: frames kept out of the stack: {kept_out}")

    def check_final_tether(self, before: dict[str, bytes]) -> None:
        """The promise of a tether session: nothing on disk lost, frames not shot again, the
        stack of what the folder holds (see the module docstring)."""
        comp_name = CONFIGS[self.cfg][3]
        after = frames_in(self.out)
        base = self.baselines[self.cfg]
        want = set(base["frames"])  # frame_NNNN.jpg, and each RAW partner if the body pairs
        open_ended = self.cfg in OPEN_ENDED
        if open_ended:  # as many frames as the Ctrl-C let in: numbers 1 to the last one held
            last_held = max((int(n[6:10]) for n in after), default=0)
            want = {f"frame_{i:04d}.jpg" for i in range(1, last_held + 1)}
        if set(after) - want:
            self.problems.append(f"frames/ holds {sorted(set(after) - want)}")
        missing = sorted(want - set(after))
        damaged = {name[:10] for name in self.damaged_names}  # a pair is lost as a frame
        # A frame held by its RAW file alone: the kill came between the two downloads of its
        # pair. The camera cannot give the JPEG again, and a stack of rendered frames keeps the
        # RAW out, saying why.
        half = {
            n[:10] for n in missing if n.endswith(".jpg") and any(a[:10] == n[:10] for a in after)
        }
        if half:
            self.notes.append(f"held by the RAW file alone: {sorted(half)}")
        if {name[:10] for name in missing} - damaged - half:
            self.problems.append(f"frames missing that nothing damaged: {missing}")
        for name, data in before.items():
            if frame_complete(data) and after.get(name, data) != data:
                self.problems.append(f"{name}: a frame on disk before the resume was replaced")
            if frame_complete(data) and name not in after:
                self.problems.append(f"{name}: a frame on disk before the resume was lost")
        for name, data in after.items():
            made = base["frames"]["frame_0001.jpg"] if open_ended else base["frames"].get(name)
            if name in want and data != made:
                self.problems.append(f"{name}: not the image the camera made for that number")
        recs, last = self.journal_after_resume()
        merges = [r["index"] for r in last if r.get("event") == "merge"]
        held = sorted({int(n[6:10]) for n in after if n in want})
        if merges != held:
            self.problems.append(f"merges of the last run: {merges}, frames held: {held}")
        end = "interrupted" if open_ended else "completed"
        if not last or last[-1].get("event") != "finish" or last[-1].get("reason") != end:
            self.problems.append(f"last record: {last[-1] if last else None}")
        idx = collections.Counter(r["index"] for r in recs if r.get("event") == "frame")
        for i, c in idx.items():
            later = [r for r in recs if r.get("event") == "frame" and r["index"] == i][1:]
            if c > 1 and not all(r.get("adopted") for r in later):
                self.problems.append(f"frame {i} journaled {c} times: {later}")
        self.problems += [f"final: {p}" for p in check_outputs_whole(self.out)]
        comp = read_image(self.out / comp_name)
        if comp is None or read_image(self.out / "depth.png") is None:
            self.problems.append("final: composite or depth map missing")
            return
        ref = stack_held(self.repo, self.out, self.dir / f"held{Path(comp_name).suffix}")
        self.psnr = psnr(comp, ref) if ref is not None else -1.0
        if self.psnr < MIN_PSNR:
            self.problems.append(f"final: composite {self.psnr:.1f} dB from the held frames'")
        as_uninterrupted = not missing and set(after) == set(base["frames"])
        if as_uninterrupted and psnr(comp, base["composite"]) < MIN_PSNR:
            self.problems.append("final: every frame held, but not the uninterrupted composite")
        kept_out = [
            r["index"]
            for r in last
            if r.get("event") == "merge"
            and not r.get("merged")
            and r.get("name", "")[:10] not in half
        ]
        if kept_out:
            self.problems.append(f"final: frames kept out of the stack: {kept_out}")

    def check_finished_again(self, before: dict[str, bytes]) -> None:
        """A second resume of a completed session opens no device, shoots nothing, restacks."""
        recs, _ = journal_records(self.out / "journal.jsonl")
        shot = sum(r.get("event") == "frame" for r in recs)
        rc, out, err = self.resume("resume-finished")
        self.problems += [f"resume-finished: {p}" for p in clean_output(out, err)]
        recs, _ = journal_records(self.out / "journal.jsonl")
        if rc != 0 or "every frame is there" not in out:
            self.problems.append(f"resume of a finished session: rc {rc} {out[-300:]}")
        if sum(r.get("event") == "frame" for r in recs) != shot:
            self.problems.append("resume of a finished session shot frames")
        self.check_final(before)

    def go(self) -> dict:
        try:
            self.kill_session()
            self.check_aftermath()
            self.damage()
            before = frames_in(self.out)
            self.run_resumes()
            if self.outcome == "completed":
                self.check_final(before)
                if self.finished_again and self.cfg not in OPEN_ENDED:  # it would tether more
                    self.check_finished_again(before)
        except Exception:
            self.problems.append("driver: " + traceback.format_exc())
        return {
            "n": self.n,
            "cfg": self.cfg,
            "sig": self.sig,
            "when": self.when,
            "corrupt": self.corrupt,
            "resume_kill": self.resume_kill,
            "concurrent": self.concurrent,
            "outcome": self.outcome,
            "psnr": self.psnr,
            "notes": self.notes,
            "problems": self.problems,
            "dir": str(self.dir),
            "pre_import_int": self.pre_import_int,
        }


# --------------------------------------------------------------------------- baselines
def make_baselines(base: Path, repo: str, configs: list[str]) -> dict:
    out: dict = {}
    for cfg in configs:
        results = []
        for k in range(2):
            d = base / f"baseline-{cfg}-{k}"
            shutil.rmtree(d, ignore_errors=True)
            (d / "tmp").mkdir(parents=True)
            vcam = None
            if uses_vcam(cfg):
                vcam = d / "vcam"
                stage_vcam(repo, vcam)
            t0 = time.monotonic()
            p = subprocess.Popen(start_cmd(cfg, d / "s"), env=env_for(repo, d / "tmp", vcam),
                                 cwd=repo, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)  # fmt: skip
            if cfg in OPEN_ENDED:
                ctrl_c_at(p, d / "s" / "journal.jsonl", CONFIGS[cfg][2])
            said = p.communicate(timeout=300)
            dur = time.monotonic() - t0
            assert p.returncode == (130 if cfg in OPEN_ENDED else 0), (cfg, *said)
            img = read_image(d / "s" / CONFIGS[cfg][3])
            results.append((dur, img, frames_in(d / "s")))
        first, second = results[0][2], results[1][2]
        if cfg in OPEN_ENDED:  # a frame more or less, by when the Ctrl-C fell
            first = {k: v for k, v in first.items() if k in second}
            second = {k: v for k, v in second.items() if k in first}
        if is_tether(cfg) and first != second:
            raise SystemExit(f"baseline {cfg}: two uninterrupted runs made different frames")
        out[cfg] = {
            "duration": results[0][0],
            "composite": results[0][1],
            "frames": results[0][2],
            "noise_psnr": psnr(results[0][1], results[1][1]),
        }
        print(
            f"baseline {cfg}: {results[0][0]:.1f}s, two uninterrupted runs agree to "
            f"{out[cfg]['noise_psnr']:.1f} dB",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=int, nargs="?", default=220)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repo", default=str(REPO), help="the checkout whose code runs")
    ap.add_argument("--out", default=None, help="where runs go (default: a new temporary folder)")
    ap.add_argument("--only", default=None, help="one kill moment: time|frames|write|write_final")
    ap.add_argument("--keep", action="store_true", help="keep the folders of clean runs")
    ap.add_argument(
        "--configs",
        default=None,
        help="configurations whose names start with these comma-separated prefixes "
        f"(default: all of {', '.join(CONFIGS)})",
    )
    a = ap.parse_args()
    prefixes = tuple(a.configs.split(",")) if a.configs else ("",)
    configs = [c for c in CONFIGS if c.startswith(prefixes)]
    if not configs:
        ap.error(f"--configs {a.configs}: no configuration; there are {', '.join(CONFIGS)}")
    # Children get Ctrl-C as a shell gives it (a driver started in the background with `&`
    # would otherwise pass SIGINT on ignored).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # `python -m` and `-c` put the working folder first on sys.path: each process runs in the
    # checkout it is to test, whatever folder the driver was started from
    a.repo = str(Path(a.repo).resolve())
    base = Path(a.out or tempfile.mkdtemp(prefix="stackrig-crash-")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    baselines = make_baselines(base, a.repo, configs)
    master = random.Random(a.seed)
    seeds = [master.randrange(2**32) for _ in range(a.runs)]
    results = []
    with open(base / "results.jsonl", "w") as log:

        def one(n: int) -> dict:
            r = Run(n, random.Random(seeds[n]), base, a.repo, baselines, a.only, configs).go()
            if not r["problems"] and not a.keep:
                shutil.rmtree(r["dir"], ignore_errors=True)
            return r

        with ThreadPoolExecutor(a.workers) as pool:
            for r in pool.map(one, range(a.runs)):
                results.append(r)
                log.write(json.dumps(r) + "\n")
                log.flush()
                flag = "FAIL" if r["problems"] else "ok"
                ps = "-" if r["psnr"] is None else f"{r['psnr']:.1f}"
                print(
                    f"[{r['n']:3d}] {flag:4s} {r['cfg']:6s} {r['sig']:4s} {r['when']:11s} "
                    f"{r['corrupt']:17s} {r['outcome']:9s} psnr={ps} {'; '.join(r['notes'])}"
                    + ("".join(f"\n      !! {p}" for p in r["problems"])),
                    flush=True,
                )
    summarize(results)
    print(f"runs and results.jsonl in {base}")


def summarize(results: list[dict]) -> None:
    print("\n=== summary ===")
    print(f"runs: {len(results)}, with problems: {sum(bool(r['problems']) for r in results)}")
    for key in ("sig", "when", "corrupt", "cfg", "outcome"):
        c = collections.Counter(r[key] for r in results)
        print(f"{key}: {dict(c)}")
    print(
        f"resume killed too: {sum(r['resume_kill'] for r in results)}, "
        f"two resumes at once: {sum(r['concurrent'] for r in results)}"
    )
    groups = collections.defaultdict(list)
    for r in results:
        if r["psnr"] is not None:
            groups[r["sig"]].append(r["psnr"])
            groups["all"].append(r["psnr"])
    for k, v in groups.items():
        fin = [x for x in v if x != float("inf")]
        inf = len(v) - len(fin)
        med = statistics.median(v) if v else None
        print(
            f"PSNR {k}: n={len(v)} min={min(v):.1f} median={med} identical={inf}"
            + (f" finite-median={statistics.median(fin):.1f}" if fin else "")
        )


if __name__ == "__main__":
    main()
