"""Faults and interruptions mid-session leave a consistent, resumable session folder.

The faults are real failures of the simulated devices, rehearsed with ``rig demo --fault``: the
GRBL simulator raises ``ALARM:1`` (as a tripped limit switch would), or drops its pseudo-terminal
(a pulled USB cable); the virtual camera's download fails inside libgphoto2. SIGINT is sent to
the real process, as Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.commands import env, rig, rig_cmd

pytestmark = pytest.mark.slow  # whole sessions in subprocesses

ARGS = ["--frames", "8", "--size", "480x360", "--time-scale", "50"]


def records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "journal.jsonl").read_text().splitlines()]


def frames_on_disk(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (folder / "frames").glob("frame_*.jpg"))


def assert_consistent(folder: Path) -> list[int]:
    """Journal and disk agree: every frame record has its file, every file its record."""
    shot = [r["index"] for r in records(folder) if r["event"] == "frame"]
    assert len(shot) == len(set(shot)), shot
    assert sorted(shot) == frames_on_disk(folder)
    for r in records(folder):
        for f in r.get("files", []):
            assert (folder / f).is_file()
    return sorted(shot)


def resume_completes(folder: Path, frames: int = 8) -> None:
    proc = rig("resume", str(folder))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert assert_consistent(folder) == list(range(1, frames + 1))
    assert records(folder)[-1]["reason"] == "completed"
    assert (folder / "composite.tif").is_file()


def demo_interrupted_after(out: Path, frames: int, *args: str) -> subprocess.Popen[str]:
    """``rig demo --out OUT ARGS`` as a child process, sent Ctrl-C's SIGINT once ``frames``
    frames are in its journal (or after 60 s)."""
    proc = subprocess.Popen(
        rig_cmd("demo", "--out", str(out), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count('"event":"frame"') >= frames:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    return proc


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """What ``proc`` printed up to and including ``needle`` (or all it printed before it ended
    or ``timeout`` ran out), read from the pipe unbuffered so that ``communicate`` still gets
    every later byte."""
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


@pytest.mark.parametrize(
    ("fault", "code", "shot", "needle"),
    [
        ("alarm@4", 5, [1, 2, 3], "ALARM:1"),
        ("disconnect@4", 6, [1, 2, 3], "ttyGRBL"),
        ("camera@3", 6, [1, 2], "capture"),
    ],
)
def test_device_fault_stops_cleanly_and_resumes(
    tmp_path: Path, fault: str, code: int, shot: list[int], needle: str
) -> None:
    out = tmp_path / "s"
    proc = rig("demo", "--out", str(out), *ARGS, "--settle", "0.01s", "--fault", fault)
    assert proc.returncode == code, proc.stderr + proc.stdout
    assert "session fault" in proc.stdout and needle in proc.stdout
    assert f"rig resume {out}" in proc.stdout
    assert assert_consistent(out) == shot
    last = records(out)[-1]
    assert last["event"] == "finish" and last["reason"] == "fault" and needle in last["error"]
    # What was shot is stacked and saved even though the session stopped.
    assert (out / "composite.tif").is_file()
    resume_completes(out)


def test_sigint_stops_after_the_frame_in_flight_with_exit_130(tmp_path: Path) -> None:
    out = tmp_path / "s"
    proc = demo_interrupted_after(out, 3, *ARGS, "--settle", "0.4s")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "stopping after this frame" in stdout
    assert "session interrupted" in stdout
    shot = assert_consistent(out)
    assert 3 <= len(shot) < 8 and shot == list(range(1, len(shot) + 1))
    last = records(out)[-1]
    assert last["event"] == "finish" and last["reason"] == "interrupted"
    assert last["merged"] == len(shot)  # the queue was drained before the composite was written
    assert (out / "composite.tif").is_file()
    resume_completes(out)


def test_second_sigint_aborts_at_once_and_the_session_still_resumes(tmp_path: Path) -> None:
    out = tmp_path / "s"
    # Larger frames make the orderly stop (drain, write the composite) take long enough for
    # the second signal to land during it.
    proc = demo_interrupted_after(out, 2, "--frames", "5", "--size", "960x720", "--settle", "0")
    # Signals are not queued: the second is sent once the first handler has said it ran.
    said = read_until(proc, "stopping after this frame", timeout=30)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    stdout = said + stdout
    assert proc.returncode == 130, stdout + stderr
    assert "aborting" in stdout
    assert "session aborted" in stdout
    last = records(out)[-1]  # every line whole: the journal parses
    assert last["event"] != "finish" or last["reason"] == "aborted"
    resume_completes(out, frames=5)
