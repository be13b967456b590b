"""A command whose console fills or goes away ends as it would have, without a traceback."""

from __future__ import annotations

import subprocess

from tests.commands import env, rig_cmd


def test_a_plan_printed_to_a_full_disk_is_no_traceback() -> None:
    """Every command prints through the same guarded streams: a table that cannot be written
    (stdout on a full disk) ended in ``OSError: [Errno 28]`` and its traceback, exit 1."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            rig_cmd("plan", "--from", "0mm", "--to", "1mm", "--step", "100um"),
            stdout=full, stderr=subprocess.PIPE, text=True, env=env(), timeout=60,
        )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
