"""Running ``rig`` as a separate process, as a user's shell does, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys


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
