"""Servers run as child processes by the end-to-end tests: a free port, and a clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterable


def free_port() -> int:
    """A loopback TCP port nothing listens on at the moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interrupt(processes: Iterable[subprocess.Popen | None]) -> None:
    """Ctrl-C each process in turn (``None`` is skipped), then wait for each; one that is
    still there after 30 s is killed."""
    running = [p for p in processes if p is not None]
    for p in running:
        p.send_signal(signal.SIGINT)
    for p in running:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
