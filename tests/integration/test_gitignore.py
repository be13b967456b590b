"""Session folders made without --out in a clone are not offered for commit."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.paths import ROOT


@pytest.mark.parametrize(
    "path",
    [
        "demo-20261130-061500/composite.tif",
        "stack-20261130-061500/frames/frame_0001.jpg",
        "tether-20261130-061500/journal.jsonl",  # `rig tether` without --out
        "api-session/plan.json",  # examples/session_api.py without an argument
        "arrays-out/stacked.tif",  # examples/stack_arrays.py without an argument
    ],
)
def test_default_session_folders_are_ignored(path: str) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert proc.returncode == 0, f"{path} is not ignored by .gitignore"
