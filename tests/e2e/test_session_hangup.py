"""A capture session whose terminal closes stops cleanly, as for SIGTERM, and resumes.

A session started by hand over ssh gets SIGHUP when the connection drops (and every later write
to the terminal fails with EIO). Its default ended the session where it stood: no composite, no
last journal record. Now it stops after the frame in flight with everything written and exits
130; under ``nohup`` (SIGHUP ignored from the start) it runs on to the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.commands import env, rig, rig_cmd

pytestmark = pytest.mark.slow  # whole sessions in subprocesses

ARGS = ["--frames", "6", "--size", "160x120", "--settle", "0.2s", "--time-scale", "50"]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def wait_for_frames(out: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        journal = out / "journal.jsonl"
        if journal.exists() and journal.read_text().count('"event":"frame"') >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} frames not shot within 60 s")


def assert_stopped_and_resumable(out: Path) -> None:
    last = records(out)[-1]
    assert last["event"] == "finish" and last["reason"] == "interrupted", last
    assert (out / "composite.tif").is_file()
    resumed = rig("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert records(out)[-1]["reason"] == "completed"


@pytest.mark.parametrize("hangups", [1, 2])
def test_sighup_stops_a_session_as_sigterm_does(tmp_path: Path, hangups: int) -> None:
    """One dropped connection may deliver SIGHUP twice (the kernel to the foreground job, the
    login shell to its jobs): the second does not abort the stop as a second Ctrl-C would."""
    out = tmp_path / "s"
    proc = subprocess.Popen(
        rig_cmd("demo", "--out", str(out), *ARGS),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    wait_for_frames(out, 2)
    for _ in range(hangups):
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "SIGHUP: stopping after this frame" in stdout and "Traceback" not in stderr
    assert_stopped_and_resumable(out)


def test_a_session_whose_terminal_hangs_up_stops_cleanly(tmp_path: Path) -> None:
    """The session's terminal is a pseudo-terminal, as an ssh login's is; its master closed is
    the connection dropped: SIGHUP to the session leader, then EIO on every write."""
    out = tmp_path / "s"
    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["setsid", "--ctty", *rig_cmd("demo", "--out", str(out), *ARGS)],
        stdin=slave, stdout=slave, stderr=slave, env=env(),
    )  # fmt: skip
    os.close(slave)
    try:
        wait_for_frames(out, 2)
    finally:
        os.close(master)
    assert proc.wait(60) == 130
    assert "Traceback" not in (out / "session.log").read_text()
    assert_stopped_and_resumable(out)


def test_under_nohup_a_hangup_is_ignored(tmp_path: Path) -> None:
    out = tmp_path / "s"
    proc = subprocess.Popen(
        ["nohup", *rig_cmd("demo", "--out", str(out), *ARGS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    wait_for_frames(out, 2)
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stdout + stderr
    assert records(out)[-1]["reason"] == "completed"
