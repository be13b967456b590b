"""The lowest versions ``.ci/lowest`` installs are the floors ``pyproject.toml`` declares: a floor
raised, or a dependency added, without the other would leave a floor that no run has tried."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # the lowest-versions run on Python 3.10 reads it with tomli, where it is installed
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]


def _floors() -> dict[str, Version]:
    """Each dependency's lowest version, runtime and optional (``test`` is tooling, not a floor
    users meet)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "test":
            wanted += requirements
    floors: dict[str, Version] = {}
    for text in wanted:
        req = Requirement(text)
        lowest = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert lowest, f"{text}: give a lowest version (>=) for .ci/lowest to install"
        # dask[distributed]: distributed is released with dask, under the same version
        for name in [req.name, *(sorted(req.extras) if req.name == "dask" else [])]:
            floors[name.lower()] = max([*lowest, floors.get(name.lower(), Version("0"))])
    return floors


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "lowest-versions.txt").read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()):
            pins[m[1].lower()] = Version(m[2])
    return pins


def test_every_floor_is_the_version_the_lowest_run_installs() -> None:
    floors, pins = _floors(), _pins()
    assert sorted(pins) == sorted(floors)
    for name, floor in floors.items():
        pin = pins[name]
        # the pin is the floor, or its first release with wheels (numpy 1.24 -> 1.24.4)
        assert pin >= floor and pin.release[: len(floor.release)] == floor.release, (
            f"{name}: pyproject.toml says >={floor}, .ci/lowest installs {pin}"
        )
