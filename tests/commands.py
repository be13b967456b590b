"""Running ``rig`` and ``stacker`` as separate processes, as a user's shell does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def rig_cmd(*args: str) -> list[str]:
    """The command line of ``rig ARGS`` with this interpreter."""
    return [sys.executable, "-m", "rig.cli", *args]


def env() -> dict[str, str]:
    """The environment without ``VCAMERADIR``: each session chooses its own virtual camera."""
    return {k: v for k, v in os.environ.items() if k != "VCAMERADIR"}


def rig(*args: str, timeout: float = 120, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Run ``rig ARGS`` to the end (``timeout`` seconds at most) and return what it printed;
    ``env_vars`` are added to :func:`env`."""
    return subprocess.run(
        rig_cmd(*args), capture_output=True, text=True, timeout=timeout, env={**env(), **env_vars}
    )


def stacker(
    *args: str | Path, cwd: Path | None = None, timeout: float = 300, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """Run ``stacker ARGS`` to the end (``timeout`` seconds at most) and return what it printed;
    ``env_vars`` are added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "stacker.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, **env_vars},
    )  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Failed with exactly one error line (warnings before it are fine), no traceback, and
    stderr does not open blank; returns that line."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    assert not proc.stderr.startswith("\n"), repr(proc.stderr[:80])
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("stacker: error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def stack_started(frames: Path, out: Path, log: Path) -> subprocess.Popen[str]:
    """``stacker stack FRAMES -o OUT`` as a child process writing its stderr to ``log``, returned
    once it has started stacking: an unreadable first file, ``frame_0000a.jpg``, added to
    FRAMES, makes it say so as soon as it has (a fixed delay may end before a loaded machine
    has even imported the program)."""
    (frames / "frame_0000a.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stacker.cli", "stack", str(frames), "-o", str(out)],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while "frame_0000a.jpg" not in log.read_text() and proc.poll() is None:
        assert time.monotonic() < deadline, "the stack did not start within 60 s"
        time.sleep(0.05)
    return proc
