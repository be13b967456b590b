"""The real commands with their storage failing mid-run: a full SD card, or one the kernel
remounted read-only after an error.

Each run gives its command a small file system of its own and makes it fail at a random
moment. The commands, as subprocesses through their console-script entry points
(:mod:`rig.launch`, :mod:`stacker.launch`):

- ``demo``: ``rig demo`` (rail, 12 frames of 640x480); ``tether``: ``rig demo --tether`` (12
  frames); ``raw``: ``rig demo --camera nikon --raw-plus-jpeg --raw-mb 8`` (6 pairs, 8 MB RAW
  files);
- ``stack``: ``stacker stack`` of 16 frames of 1280x960 kept elsewhere, ``-o`` on the disk;
  ``watch``: ``stacker watch --idle-timeout 3s`` of a folder elsewhere into which the frames are
  dropped one by one (0.15 s apart), its output on the disk;
- ``station``: ``rig station --sim`` with ``--sessions`` on the disk, a 12-frame session started
  through ``POST /api/sessions``, the station stopped by SIGTERM once the session ended.

The faults (``k`` random: frames journalled, frames dropped, or for ``stack`` a moment within
the clean run's time):

- ``full``: a filler takes every free byte of the tmpfs after ``k`` (in half the runs it leaves
  a random amount up to twice the target's largest file: room for the check before a shot, not
  for the frame);
- ``full_early``: the tmpfs is full before the command starts (in half the runs a random 1 to
  512 KiB left);
- ``full_then_free``: as ``full``, and the filler is removed 2 s later, the command still
  running (it may cope, or stop cleanly);
- ``ro``: the disk is ext4 on a loop device mounted ``errors=remount-ro``, and an error is
  raised in it after ``k`` (``/sys/fs/ext4/DEV/trigger_fs_error``): the kernel remounts it
  read-only as it does an SD card's (a tmpfs cannot go read-only while a file is open for
  writing).

A run is a *fault* if the command hangs (120 s); prints a traceback (stdout, stderr,
``session.log``); exits with a status it does not document (``rig``: 0 complete, 130
interrupted, 2 to 6 refusals and device faults; 1 is a bug; ``stacker``: 0, or 2 for a refusal;
the station: 0 at its SIGTERM); prints more than one error line (``prog: error:``, ``fault:``),
or ends non-zero without one that names a path on the disk and says what to do, or says that a
resume only has the composite to write while frames are still to shoot; leaves the journal
damaged before its last line, a frame on disk that is not journalled or not whole (decoded; a
RAW file's size against its record), a journalled frame missing or changed, a temporary
(``*.tmp``) or an unreadable output. A ``rig resume`` while the disk is still full or
read-only is judged the same way (a refusal in one line, nothing lost). Then the space comes
back (the filler removed; the ext4 disk unmounted, checked with ``e2fsck -fy`` and mounted
again, as a Raspberry Pi reboots) and a session not completed must complete with ``rig
resume`` (the station: ``POST /api/sessions/ID/resume`` on a station started again; the stacker
commands: the same command again), with a composite bit-identical to the clean run's of the
same seed (a tether session that lost a frame: to the frames it holds stacked in one go).

    python benchmarks/attack_disk.py                      # every target x fault, 3 rounds
    python benchmarks/attack_disk.py --targets demo --faults ro --rounds 1 --seed 4

Needs root (mount, losetup); each fault line ends with the command that re-runs that run. Last
result (2026-12-02, 2-core x86-64, every target and fault, 3 rounds, ``--seed 1``; details in
``benchmarks/README.md``): 72 runs; on the code before the fixes (937bccf) 33 with faults (a
session's fault replaced by its failed final write in 29, a refused merge record taken for a
bug in 5, refusals that said nothing to do in 12); after them (6a8f55c) none, in 6.1 minutes,
every composite bit-identical to the clean run's once the space came back.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from attack_streams import (
    RIG,
    STACKER,
    campaign_folder,
    campaign_parser,
    chosen,
    env_for,
    free_port,
    hung,
    journal,
    run_all,
)
from crash_resume import psnr, read_image, stack_held

PY = sys.executable
TOKEN = "attack-disk-token-0123456789"
HANG_S = 120.0
FREE_AFTER_S = 2.0
DROP_EVERY_S = 0.15

# --------------------------------------------------------------------------- targets
_RAIL = ["--settle", "0s", "--time-scale", "50"]
_RAW = shlex.split("--camera nikon --raw-plus-jpeg --raw-mb 8 --frames 6 --size 640x480")
RIG_TARGETS = {  # name: (rig arguments before --out, frames, disk MiB)
    "demo": (["demo", "--frames", "12", "--size", "640x480", *_RAIL, "--seed", "7"], 12, 16),
    "tether": (["demo", "--tether", "--frames", "12", "--size", "640x480", "--seed", "7"], 12, 16),
    "raw": (["demo", *_RAW, *_RAIL, "--seed", "9"], 6, 72),
}
STACK_FRAMES = 16
STATION_FRAMES = 12
STATION_PLAN = {"from": "0mm", "to": "3mm", "frames": STATION_FRAMES, "settle": 0}
TARGETS = [*RIG_TARGETS, "stack", "watch", "station"]
DISK_MB = {"stack": 16, "watch": 16, "station": 16}
FILE_BYTES = {"raw": 8 << 20, "stack": 1536 << 10, "watch": 1536 << 10}  # the largest file
FAULTS = ["full", "full_early", "full_then_free", "ro"]
ERROR_LINE = re.compile(r"^(rig: error:|stacker: error:|fault:|error:)", re.IGNORECASE)
WHAT_TO_DO = ("rig resume", "resume", "free some space", "choose another", "mount it again")


def run_quiet(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------- the disk
class Disk:
    """A small file system of the run's own: a tmpfs, or (``ro``) ext4 on a loop device."""

    def __init__(self, where: Path, size_mb: int, ext4: bool) -> None:
        self.where, self.size_mb, self.ext4 = where, size_mb, ext4
        self.image = where.parent / "disk.img"
        self.filler = where / "filler.bin"
        where.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        if self.ext4:
            if not self.image.exists():
                with self.image.open("wb") as fh:
                    fh.truncate(self.size_mb << 20)
                made = run_quiet("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
                if made.returncode:
                    raise RuntimeError(f"mkfs.ext4: {made.stderr.strip()}")
            done = run_quiet("mount", "-o", "loop,errors=remount-ro", str(self.image),
                             str(self.where))  # fmt: skip
        else:
            done = run_quiet("mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs",
                             str(self.where))  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"mount {self.where}: {done.stderr.strip()}")

    def umount(self) -> None:
        run_quiet("umount", str(self.where))
        if os.path.ismount(self.where):
            run_quiet("umount", "-l", str(self.where))

    def fill(self, leave: int = 0) -> None:
        """Take every free byte (but ``leave``), as a camera's other files or a log would."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        chunk = b"\0" * (1 << 20)
        try:
            while chunk:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    chunk = chunk[: len(chunk) // 16] if len(chunk) > 4096 else b""
            if leave:
                os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        finally:
            os.close(fd)

    def break_down(self) -> None:
        """An error in the file system: the kernel remounts it read-only at once."""
        source = run_quiet("findmnt", "-no", "SOURCE", str(self.where)).stdout.strip()
        Path(f"/sys/fs/ext4/{Path(source).name}/trigger_fs_error").write_text("attack_disk\n")

    def recover(self) -> None:
        """Space again: the filler gone; a read-only disk checked and mounted again."""
        if self.ext4:
            self.umount()
            run_quiet("e2fsck", "-fy", str(self.image))
            self.mount()
        self.filler.unlink(missing_ok=True)

    def read_only(self) -> bool:
        options = run_quiet("findmnt", "-no", "OPTIONS", str(self.where)).stdout
        return "ro" in options.strip().split(",")


# --------------------------------------------------------------------------- one run
class Run:
    """One target under one fault at one random moment: start, fail the disk, judge, resume."""

    def __init__(self, target: str, fault: str, n: int, seed: int, base: Path, repo: str,
                 baselines: dict) -> None:  # fmt: skip
        self.target, self.fault, self.n, self.seed = target, fault, n, seed
        self.rng = random.Random(seed)
        self.repo, self.baselines = repo, baselines
        self.dir = base / f"{target}-{fault}-{n}"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tmp").mkdir(parents=True)
        size = RIG_TARGETS[target][2] if target in RIG_TARGETS else DISK_MB[target]
        self.disk = Disk(self.dir / "disk", size, ext4=fault == "ro")
        self.out = self.disk.where / ("sessions" if target == "station" else "s")
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.frames_total = RIG_TARGETS[target][1] if target in RIG_TARGETS else STATION_FRAMES
        self.k = self.rng.randint(1, self.frames_total if target != "stack" else 100)
        self.printed = ""
        # room for the probe before a shot but not for the frame, as often as none at all
        room = FILE_BYTES.get(target, 256 << 10) * 2
        self.leave = self.rng.choice([0, self.rng.randint(1, room)])
        self.env = env_for(repo, self.dir / "tmp", None, {})

    # the commands -----------------------------------------------------------------------
    def argv(self) -> list[str]:
        if self.target in RIG_TARGETS:
            return [PY, "-c", RIG, *RIG_TARGETS[self.target][0], "--out", str(self.out)]
        if self.target == "stack":
            return [PY, "-c", STACKER, "stack", str(self.baselines["frames"]), "-o",
                    str(self.out / "composite.tif")]  # fmt: skip
        if self.target == "watch":
            return [PY, "-c", STACKER, "watch", str(self.dir / "drop"), "-o",
                    str(self.out / "composite.tif"), "--idle-timeout", "3s", "--settle",
                    "0.2s"]  # fmt: skip
        self.port = free_port()
        return [PY, "-c", RIG, "station", "--sim", "--size", "640x480", "--port", str(self.port),
                "--token", TOKEN, "--sessions", str(self.out)]  # fmt: skip

    def spawn(self, cmd: list[str], tag: str) -> subprocess.Popen:
        out = (self.dir / f"{tag}.out").open("wb")
        proc = subprocess.Popen(cmd, env=self.env, cwd=self.repo, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        out.close()
        return proc

    def finish(self, proc: subprocess.Popen, tag: str) -> tuple[int, str]:
        if hung(proc, HANG_S):
            self.problems.append(f"{tag}: hung ({HANG_S:.0f} s)")
        return proc.returncode, (self.dir / f"{tag}.out").read_text("utf-8", "replace")

    # the moment ---------------------------------------------------------------------------
    def progress(self) -> int:
        """Frames journalled (a session), dropped (watch), or percent of the clean time."""
        if self.target == "watch":
            return self.dropped
        if self.target == "stack":
            return int(100 * (time.monotonic() - self.t0) / self.baselines["stack"]["seconds"])
        folder = self.session_dir()
        return sum(r.get("event") == "frame" for r in journal(folder)) if folder else 0

    def session_dir(self) -> Path | None:
        if self.target != "station":
            return self.out
        sid = self.__dict__.get("sid")
        return self.out / sid if sid else None

    def strike(self, proc: subprocess.Popen) -> bool:
        """Fail the disk once ``k`` is reached; whether that came before the command ended."""
        deadline = time.monotonic() + 90
        while proc.poll() is None and self.progress() < self.k:
            if time.monotonic() > deadline or (self.target == "station" and self.station_idle()):
                break
            time.sleep(0.005)
        if proc.poll() is not None or (self.target == "station" and self.station_idle()):
            self.notes.append(f"ended before k={self.k}")
            return False
        if self.fault == "ro":
            self.disk.break_down()
            self.notes.append(f"at k={self.k}")
        else:
            self.disk.fill(self.leave)
            self.notes.append(f"at k={self.k}, {self.leave >> 10} KiB left")
        if self.fault == "full_then_free":
            time.sleep(FREE_AFTER_S)
            self.notes.append("freed " + ("while running" if proc.poll() is None else "after"))
            self.disk.filler.unlink(missing_ok=True)
        return True

    # the station ----------------------------------------------------------------------------
    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_station(self, proc: subprocess.Popen) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if self.api("GET", "/api/station")[0] == 200:
                    return True
            except (OSError, ValueError):
                pass  # not listening yet, or its first answer cut short: ask again
            time.sleep(0.1)
        self.problems.append("the station never answered")
        return False

    def station_idle(self) -> bool:
        try:
            return self.api("GET", "/api/station")[1].get("running") is None
        except (OSError, ValueError):
            return False

    def station_session(self, proc: subprocess.Popen, resume: bool) -> None:
        """Start (or resume) the session; wait until it ends; SIGTERM the station."""
        if not self.wait_station(proc):
            return
        if resume:
            status, body = self.api("POST", f"/api/sessions/{self.sid}/resume", {})
        else:
            status, body = self.api("POST", "/api/sessions", {"plan": STATION_PLAN, "name": "s1"})
            self.sid = "s1"
        self.notes.append(f"{'resume' if resume else 'start'} {status}")
        if status >= 400:
            self.check_api_error(status, body)
        elif not resume and self.fault != "full_early":
            self.struck = self.strike(proc)
        deadline = time.monotonic() + HANG_S
        while not self.station_idle() and time.monotonic() < deadline:
            time.sleep(0.1)
        if time.monotonic() >= deadline:
            self.problems.append("station: the session never ended")
        if self.api("GET", "/api/station")[0] != 200:
            self.problems.append("station: no answer after the session")
        proc.send_signal(signal.SIGTERM)

    def check_api_error(self, status: int, body: dict) -> None:
        error = str(body.get("error", ""))
        if status >= 500 or "\n" in error or not error:
            self.problems.append(f"station answered {status} {body}")
        elif str(self.disk.where) not in error:
            self.problems.append(f"station's refusal names no path on the disk: {error!r}")
        else:
            self.notes.append(f"refused: {error[:80]}")

    # the watched folder ---------------------------------------------------------------------
    def dropper(self) -> threading.Thread:
        """Frames land in the watched folder one by one, as a camera's card reader writes them."""
        drop = self.dir / "drop"
        drop.mkdir()
        self.dropped = 0

        def run() -> None:
            for frame in sorted(Path(self.baselines["frames"]).glob("*.jpg")):
                time.sleep(DROP_EVERY_S)
                part = drop / f".{frame.name}.part"
                shutil.copyfile(frame, part)
                os.replace(part, drop / frame.name)
                self.dropped += 1

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    # a run ----------------------------------------------------------------------------------
    def go(self) -> dict:
        try:
            self.disk.mount()
            try:
                self.drive()
            finally:
                self.keep_evidence()
                self.disk.umount()
        except Exception:
            self.problems.append("driver: " + traceback.format_exc())
        return {"target": self.target, "fault": self.fault, "n": self.n, "seed": self.seed,
                "notes": self.notes, "problems": self.problems, "dir": str(self.dir)}  # fmt: skip

    def drive(self) -> None:
        if self.target in ("stack", "watch"):
            self.out.mkdir()
            os.sync()  # the user's folder, made long before: an error cannot take it back
        if self.fault == "full_early":
            leave = self.rng.choice([0, self.rng.randint(1, 512) << 10])
            self.disk.fill(leave)
            self.notes.append(f"full, {leave >> 10} KiB left")
        dropping = self.dropper() if self.target == "watch" else None
        self.t0 = time.monotonic()
        proc = self.spawn(self.argv(), "run")
        self.struck = self.fault == "full_early"
        if self.target == "station":
            self.station_session(proc, resume=False)
        elif self.fault != "full_early":
            self.struck = self.strike(proc)
        rc, printed = self.finish(proc, "run")
        if dropping is not None:
            dropping.join()
        self.notes.append(f"rc={rc}")
        self.judge(rc, printed)
        self.resume_while_broken()
        self.disk.recover()
        if self.disk.read_only():
            self.problems.append("driver: the disk stayed read-only")
        self.again(rc)

    def resume_while_broken(self) -> None:
        """``rig resume`` before the space comes back, as a photographer tries first: a
        refusal in one line, nothing lost."""
        if self.target not in RIG_TARGETS or self.fault == "full_then_free" or self.completed():
            return
        if not (self.out / "plan.json").is_file():
            return
        cmd = [PY, "-c", RIG, "resume", str(self.out)]
        rc, printed = self.finish(self.spawn(cmd, "early"), "early")
        self.notes.append(f"resumed while {'read-only' if self.fault == 'ro' else 'full'}: rc={rc}")
        before = len(self.problems)
        self.judge(rc, printed)
        self.problems[before:] = [f"resume while broken: {p}" for p in self.problems[before:]]

    def keep_evidence(self) -> None:
        if self.problems and os.path.ismount(self.disk.where):
            shutil.copytree(self.disk.where, self.dir / "kept", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("filler.bin", "lost+found"))  # fmt: skip

    # the judgement ----------------------------------------------------------------------------
    def judge(self, rc: int, printed: str) -> None:
        folder = self.session_dir()
        log = folder / "session.log" if folder else None
        logged = log.read_text("utf-8", "replace") if log and log.is_file() else ""
        if "Traceback" in printed:
            self.problems.append(f"traceback printed: {printed[-400:]!r}")
        if "Traceback" in logged:
            self.problems.append("traceback in session.log")
        allowed = {
            "stack": {0, 2}, "watch": {0, 2}, "station": {0},
        }.get(self.target, {0, 2, 3, 4, 5, 6, 130})  # fmt: skip
        if rc not in allowed:
            self.problems.append(f"exit status {rc}, not in {sorted(allowed)}")
        errors = [ln.strip() for ln in printed.splitlines() if ERROR_LINE.match(ln.strip())]
        warnings = sum(ln.startswith("warning:") for ln in printed.splitlines())
        if warnings:
            self.notes.append(f"{warnings} warnings")
        if len(errors) > 1:
            self.problems.append(f"{len(errors)} error lines: {errors[:3]}")
        if rc not in (0, 130):
            self.check_error_line(errors[-1] if errors else "")
        if self.target == "station":
            self.check_station_finish()
        if folder is not None and folder.is_dir() and self.target not in ("stack", "watch"):
            self.check_journal(folder)
            self.check_frames(folder)
        self.check_debris()

    def check_error_line(self, line: str) -> None:
        if not line:
            self.problems.append("ended non-zero without an error line")
            return
        if str(self.disk.where) not in line:
            self.problems.append(f"error line names no path on the disk: {line!r}")
        if not any(hint in line for hint in WHAT_TO_DO):
            self.problems.append(f"error line says nothing to do: {line!r}")
        folder = self.session_dir()
        shot = sum(r.get("event") == "frame" for r in journal(folder)) if folder else 0
        if "writes the composite" in line and shot < self.frames_total:
            self.problems.append(
                f"says a resume writes the composite, {self.frames_total - shot} frames unshot: "
                f"{line!r}"
            )

    def check_station_finish(self) -> None:
        folder = self.session_dir()
        finish = [r for r in journal(folder) if r.get("event") == "finish"] if folder else []
        if finish and finish[-1].get("reason") != "completed":
            self.check_error_line(f"fault: {finish[-1].get('error') or ''}")

    def check_journal(self, folder: Path) -> None:
        """Whole lines, but for a last one cut short."""
        try:
            lines = (folder / "journal.jsonl").read_bytes().split(b"\n")
        except OSError:
            return
        for number, line in enumerate(lines[:-1], 1):
            try:
                json.loads(line)
            except ValueError:
                self.problems.append(f"journal damaged at line {number}: {line[:60]!r}")
        if lines[-1]:
            self.notes.append("journal's last line torn")

    def check_frames(self, folder: Path) -> None:
        """Every frame file journalled and whole; every journalled frame there, unchanged."""
        sizes = {}
        for record in journal(folder):
            if record.get("event") == "frame":
                sizes.update(zip(record.get("files", []), record.get("sizes", []), strict=False))
        for path in sorted((folder / "frames").glob("frame_*")):
            name = f"frames/{path.name}"
            if name not in sizes:
                self.problems.append(f"{name} on disk, not journalled ({path.stat().st_size} B)")
            elif path.stat().st_size != sizes[name]:
                self.problems.append(f"{name}: {path.stat().st_size} B, journalled {sizes[name]}")
            if path.suffix == ".jpg" and read_image(path) is None:
                self.problems.append(f"{name} not whole")
        for name in sizes:
            if not (folder / name).is_file():
                self.problems.append(f"{name} journalled, not on disk")

    def check_debris(self) -> None:
        for path in self.disk.where.rglob("*"):
            if path.name.endswith(".tmp") or path.name.endswith(".part"):
                self.problems.append(f"temporary left: {path.relative_to(self.disk.where)}")
            elif (
                path.name.startswith(("composite.", "depth.", "depth-preview."))
                and path.suffix != ".json"
                and read_image(path) is None
            ):
                self.problems.append(f"output unreadable: {path.relative_to(self.disk.where)}")

    # after the space is back ------------------------------------------------------------------
    def again(self, rc: int) -> None:
        if self.target in ("stack", "watch"):
            self.again_stacker(rc)
        elif self.target == "station":
            self.again_station()
        else:
            self.again_session()

    def completed(self) -> bool:
        folder = self.session_dir()
        finish = [r for r in journal(folder) if r.get("event") == "finish"] if folder else []
        return bool(finish) and finish[-1].get("reason") == "completed"

    def again_session(self) -> None:
        if not self.completed():
            if not (self.out / "plan.json").is_file():  # refused before the folder was made
                self.notes.append("no session made")
                shutil.rmtree(self.out, ignore_errors=True)
                rc, printed = self.finish(self.spawn(self.argv(), "rerun"), "rerun")
            else:
                rc, printed = self.finish(
                    self.spawn([PY, "-c", RIG, "resume", str(self.out)], "resume"), "resume"
                )
            if rc != 0 or "Traceback" in printed:
                self.problems.append(f"not completed after the space came back: rc {rc} "
                                     f"{printed[-300:]!r}")  # fmt: skip
                return
            self.notes.append("resumed")
        self.check_frames(self.out)
        self.compare_session(self.out)

    def compare_session(self, folder: Path) -> None:
        composite = read_image(folder / "composite.tif")
        base = self.baselines[self.target]
        held = sorted(p.name for p in (folder / "frames").iterdir())
        if held != base["frames"]:
            self.notes.append(f"{len(held)} frame files, clean {len(base['frames'])}")
            reference = stack_held(self.repo, folder, self.dir / "held.tif")
        else:
            reference = base["composite"]
        self.compare(composite, reference)

    def compare(self, image: object, reference: object) -> None:
        if image is None or reference is None:
            self.problems.append("composite missing or unreadable after the space came back")
            return
        value = psnr(image, reference)  # type: ignore[arg-type]
        if value != float("inf"):
            self.problems.append(f"composite {value:.1f} dB from the clean run's, not identical")
        else:
            self.notes.append("identical")

    def again_stacker(self, rc: int) -> None:
        composite = self.out / "composite.tif"
        if rc != 0:
            again, printed = self.finish(self.spawn(self.argv_again(), "rerun"), "rerun")
            if again != 0:
                self.problems.append(f"rerun ended {again}: {printed[-300:]!r}")
                return
            self.notes.append("rerun")
        self.compare(read_image(composite), self.baselines[self.target]["composite"])

    def argv_again(self) -> list[str]:
        """The same command; the watch now finds every frame in its folder."""
        return self.argv()

    def again_station(self) -> None:
        folder = self.session_dir()
        if folder is None or not (folder / "plan.json").is_file():
            self.notes.append("no session made")
            shutil.rmtree(self.out / "s1", ignore_errors=True)
            proc = self.spawn(self.argv(), "rerun")
            self.station_session_clean(proc, resume=False)
        elif not self.completed():
            proc = self.spawn(self.argv(), "rerun")
            self.station_session_clean(proc, resume=True)
        else:
            proc = None
        if proc is not None:
            rc, printed = self.finish(proc, "rerun")
            if rc != 0 or "Traceback" in printed:
                self.problems.append(f"station rerun ended {rc}: {printed[-300:]!r}")
            if not self.completed():
                self.problems.append("station: the session not completed after the space came back")
                return
        self.compare(read_image(self.out / "s1" / "composite.tif"),
                     self.baselines["station"]["composite"])  # fmt: skip

    def station_session_clean(self, proc: subprocess.Popen, resume: bool) -> None:
        self.sid = "s1"
        fault, self.fault = self.fault, "none"
        try:
            self.k = 10**9
            self.station_session(proc, resume)
        finally:
            self.fault = fault


# --------------------------------------------------------------------------- campaign
def make_baselines(base: Path, repo: str, targets: list[str]) -> dict:
    """A clean run of each target on its own disk: the composites to match, the times."""
    frames = base / "frames"
    code = ("import sys; from pathlib import Path; from rig.sim.scene import SceneSpec, "
            "write_stack; write_stack(Path(sys.argv[1]), SceneSpec(width=1280, height=960, "
            f"seed=4, jpeg_quality=90), {STACK_FRAMES})")  # fmt: skip
    subprocess.run([PY, "-c", code, str(frames)], check=True, cwd=repo,
                   env={**os.environ, "PYTHONPATH": repo})  # fmt: skip
    baselines: dict = {"frames": frames, "stack": {"seconds": 5.0}}
    for target in targets:
        run = Clean(target, base, repo, baselines)
        t0 = time.monotonic()
        run.go()
        seconds = time.monotonic() - t0
        if run.problems:
            raise SystemExit(f"baseline {target}: {run.problems}")
        baselines[target] = {"composite": run.composite, "frames": run.frame_names,
                             "seconds": seconds}  # fmt: skip
        print(f"baseline {target}: {seconds:.1f} s, {run.used >> 10} KiB on disk", flush=True)
    return baselines


class Clean(Run):
    """A run with no fault: what the runs under faults must match."""

    def __init__(self, target: str, base: Path, repo: str, baselines: dict) -> None:
        super().__init__(target, "none", 0, 0, base, repo, baselines)
        self.k = 10**9
        self.composite: object = None
        self.frame_names: list[str] = []
        self.used = 0

    def drive(self) -> None:
        if self.target in ("stack", "watch"):
            self.out.mkdir()
        dropping = self.dropper() if self.target == "watch" else None
        self.t0 = time.monotonic()
        proc = self.spawn(self.argv(), "run")
        if self.target == "station":
            self.station_session(proc, resume=False)
        rc, printed = self.finish(proc, "run")
        if dropping is not None:
            dropping.join()
        if rc != 0:
            self.problems.append(f"rc {rc}: {printed[-500:]}")
            return
        folder = self.out / "s1" if self.target == "station" else self.out
        self.composite = read_image(folder / "composite.tif")
        if (folder / "frames").is_dir():
            self.frame_names = sorted(p.name for p in (folder / "frames").iterdir())
        self.used = shutil.disk_usage(self.disk.where).used


def main() -> None:
    ap = campaign_parser(__doc__.split("\n\n")[0], TARGETS, FAULTS)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each target x fault")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seed-run", type=int, default=None, help="one run's own seed (printed)")
    a = ap.parse_args()
    targets, faults = chosen(ap, a, TARGETS, FAULTS)
    if os.geteuid() != 0:
        ap.error("mounting a file system of each run's own needs root")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    a.repo = str(Path(a.repo).resolve())
    base = campaign_folder(a.out, "stackrig-disk-")
    t0 = time.monotonic()
    baselines = make_baselines(base, a.repo, targets)
    master = random.Random(a.seed)
    runs = [(t, f, n, master.randrange(2**32) if a.seed_run is None else a.seed_run)
            for n in range(a.rounds) for t in targets for f in faults]  # fmt: skip

    run_all(
        runs, lambda spec: Run(*spec, base, a.repo, baselines).go(), base, a.workers,
        keep=a.keep, widths=(8, 15), started=t0,
        again=lambda r: f".venv/bin/python benchmarks/attack_disk.py --targets {r['target']} "
                        f"--faults {r['fault']} --rounds 1 --seed-run {r['seed']}",
    )  # fmt: skip


if __name__ == "__main__":
    main()
