"""Where python-gphoto2 has no wheel the stacker still installs without it: ``stacker`` must then
work in full, and a ``rig`` command that needs the camera library must say how to get it.

python-gphoto2 cannot be uninstalled for one test, so a ``sitecustomize`` on the child's path
makes its import fail as a missing package's does (``ModuleNotFoundError``, nothing left in
``sys.modules``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rig.sim.scene import SceneSpec, write_stack
from stacker.io import read_image
from tests.commands import env

_NO_GPHOTO2 = """
import sys

class _NoGphoto2:
    def find_spec(self, name, path=None, target=None):
        if name == "gphoto2" or name.startswith("gphoto2."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoGphoto2())
"""
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_gphoto2(tmp_path: Path) -> dict[str, str]:
    """The environment of a child process in which ``import gphoto2`` fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NO_GPHOTO2)
    return {**env(), "PYTHONPATH": f"{site}:{ROOT}"}


def _run(module: str, *args: str | Path, env_vars: dict[str, str], cwd: Path):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True, text=True, timeout=300, env=env_vars, cwd=cwd,
    )  # fmt: skip


def test_the_stacker_stacks_without_the_camera_library(
    tmp_path: Path, no_gphoto2: dict[str, str]
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_stack(frames, SceneSpec(width=240, height=180, seed=3, jpeg_quality=92), 4)
    (frames / "synthetic_truth.json").unlink()
    probe = _run("stacker.cli", "--version", env_vars=no_gphoto2, cwd=tmp_path)
    assert probe.returncode == 0 and "gphoto2" not in probe.stdout + probe.stderr
    done = _run(
        "stacker.cli", "stack", frames, "-o", tmp_path / "out.tif", "--no-crop", "--depth-map",
        tmp_path / "depth.png", env_vars=no_gphoto2, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert read_image(tmp_path / "out.tif").shape[:2] == (180, 240)
    assert (tmp_path / "depth.png").is_file()


def test_a_rig_command_that_needs_the_camera_says_how_to_install_it(
    tmp_path: Path, no_gphoto2: dict[str, str]
) -> None:
    version = _run("rig.cli", "--version", env_vars=no_gphoto2, cwd=tmp_path)
    assert version.returncode == 0
    assert "python-gphoto2 not installed (`pip install 'stackrig[camera]'`" in version.stdout
    demo = _run("rig.cli", "demo", "--frames", "3", "--out", tmp_path / "d",
                env_vars=no_gphoto2, cwd=tmp_path)  # fmt: skip
    assert demo.returncode == 2 and "Traceback" not in demo.stderr
    assert demo.stderr.splitlines() == [
        "rig: error: python-gphoto2 is not available (No module named 'gphoto2'); install it "
        "with `pip install 'stackrig[camera]'` (it needs libgphoto2 on platforms without wheels)"
    ]
    assert not (tmp_path / "d").exists()
