"""A capture session whose console goes away or fills runs to completion.

``nohup rig shoot ... &`` on a Pi whose SD card fills, a log file on a full disk, or ``rig demo
| head``: the session's frames, journal and ``session.log`` are its record, so a failed write to
its stdout must not end it (it ended in a traceback, exit 1, no composite). The session goes
quiet on that stream and says so once in ``session.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.commands import env, rig_cmd
from tests.polling import eventually

pytestmark = pytest.mark.slow  # whole sessions in subprocesses

ARGS = ["--frames", "6", "--size", "160x120", "--settle", "0s", "--time-scale", "50"]


def assert_completed(out: Path) -> str:
    """The session completed with its composite; its ``session.log``."""
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "finish" and records[-1]["reason"] == "completed", records[-1]
    assert len(list((out / "frames").glob("frame_*.jpg"))) == 6
    assert (out / "composite.tif").is_file()
    return (out / "session.log").read_text()


def test_a_session_whose_stdout_is_on_a_full_disk_completes(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            rig_cmd("demo", "--out", str(out), *ARGS),
            stdout=full, stderr=subprocess.PIPE, text=True, env=env(), timeout=120,
        )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    log = assert_completed(out)
    assert log.count("console output lost") == 1
    assert "console output lost (stdout: No space left on device)" in log


def test_a_session_piped_into_head_completes(tmp_path: Path) -> None:
    """``rig demo | head -1``: the reader goes after the first line; the session goes on."""
    out = tmp_path / "s"
    proc = subprocess.Popen(
        rig_cmd("demo", "--out", str(out), *ARGS),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith("demo: ")
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (0, "")
    log = assert_completed(out)
    assert log.count("console output lost (stdout: Broken pipe)") == 1


def test_a_session_on_a_dumb_terminal_prints_a_line_per_frame(tmp_path: Path) -> None:
    """Emacs's shell, a serial console, some ssh clients: a terminal with ``TERM=dumb``, on
    which rich draws no live display. The session printed nothing between its first lines and
    its report, as the plain lines were kept for what is not a terminal."""
    out = tmp_path / "s"
    main, side = os.openpty()
    proc = subprocess.Popen(
        rig_cmd("demo", "--out", str(out), *ARGS),
        stdin=subprocess.DEVNULL, stdout=side, stderr=side, env={**env(), "TERM": "dumb"},
    )  # fmt: skip
    os.close(side)
    printed = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other end closed: the command ended
            break
        if not chunk:
            break
        printed += chunk
    os.close(main)
    assert proc.wait(timeout=120) == 0, printed
    text = printed.decode()
    assert [f"captured {i}/6" in text for i in range(1, 7)] == [True] * 6, text
    assert "stacked 6: merged" in text
    assert_completed(out)


def _journal(out: Path) -> list[dict]:
    path = out / "journal.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.mark.parametrize("stopped", [False, True], ids=["runs-on", "sigterm"])
def test_a_session_on_a_terminal_nobody_reads_shoots_on_and_stops_when_told(
    tmp_path: Path, stopped: bool
) -> None:
    """An ssh client asleep, or Ctrl-S: the terminal takes no more output. The capture thread
    waited on the live panel, whose refresh was held by the write: the session stopped
    shooting, and SIGTERM (systemd's stop, ``kill``) was not heard, its handler held printing
    before it asked the session to stop. Here the terminal is stopped by XOFF (Ctrl-S)."""
    out = tmp_path / "s"
    frames = "40" if stopped else "6"
    main, side = os.openpty()
    proc = subprocess.Popen(
        rig_cmd("demo", "--out", str(out), *ARGS[:-4], "--frames", frames, "--settle", "0.3s"),
        stdin=subprocess.DEVNULL, stdout=side, stderr=side, env={**env(), "TERM": "xterm"},
    )  # fmt: skip
    os.close(side)
    try:
        assert eventually(lambda: any(r["event"] == "frame" for r in _journal(out)), 60)
        os.write(main, b"\x13")  # Ctrl-S: the terminal takes nothing more
        if stopped:
            proc.send_signal(signal.SIGTERM)
        finished = eventually(lambda: any(r["event"] == "finish" for r in _journal(out)), 60)
        assert finished, _journal(out)
        finish = _journal(out)[-1]
        shot = sum(r["event"] == "frame" for r in _journal(out))
        if stopped:
            assert finish["reason"] == "interrupted" and shot < 40, (finish, shot)
        else:
            assert finish["reason"] == "completed" and shot == 6, (finish, shot)
        os.write(main, b"\x11")  # Ctrl-Q: the terminal is read again
        os.set_blocking(main, False)
        while proc.poll() is None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(main, 65536)
            time.sleep(0.05)
        assert proc.returncode == (130 if stopped else 0)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
