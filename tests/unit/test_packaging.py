"""What ``pyproject.toml`` declares: floors that ``.ci/lowest`` installs (a floor raised, or a
dependency added, without the other would leave a floor no run has tried), and package data
that carries every file the packages need (an editable install, which the tests run from,
finds any file; a wheel only those declared)."""

from __future__ import annotations

import re
import shutil
import subprocess
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


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _floors() -> dict[str, Version]:
    """Each dependency's lowest version, runtime and optional (``test`` is tooling, not a floor
    users meet)."""
    project = _project()["project"]
    wanted = list(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "test":
            wanted += requirements
    floors: dict[str, Version] = {}
    for text in wanted:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue  # another platform's (gphoto2's floor on aarch64 is its first wheel there)
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


def test_every_file_of_the_packages_goes_into_the_wheel() -> None:
    """Modules are found by package; anything else (the live pages' HTML, JavaScript, CSS) only
    where ``package-data`` names it, by setuptools' globs relative to the package's folder."""
    data = _project()["tool"]["setuptools"]["package-data"]
    tracked = subprocess.run(
        ["git", "ls-files", "stacker", "rig"], capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    declared = {
        found.relative_to(ROOT).as_posix()
        for package, patterns in data.items()
        for pattern in patterns
        for found in (ROOT / Path(*package.split("."))).glob(pattern)
    }
    left_out = [name for name in tracked if not name.endswith(".py") and name not in declared]
    assert left_out == []


@pytest.mark.parametrize(
    ("system", "machine", "release", "floor"),
    [
        ("linux", "x86_64", "6.1.0", "2.5"),
        ("linux", "aarch64", "6.6.51+rpt-rpi-2712", "2.5"),  # a Raspberry Pi 5
        ("darwin", "x86_64", "24.1.0", "2.5"),  # macOS 15 on an Intel Mac
        ("darwin", "x86_64", "23.6.0", None),  # macOS 14: 2.6.4's wheels need 15
        ("darwin", "arm64", "23.1.0", "2.5"),
        ("darwin", "arm64", "22.6.0", None),  # macOS 13 on Apple silicon: no wheel
        ("linux", "armv7l", "6.1.0", None),  # 32-bit Raspberry Pi OS: no wheel
        ("linux", "x86_64", "6.1.0-18-amd64", "2.5"),  # Debian's kernel: no PEP 440 version
    ],
)
def test_the_camera_library_is_asked_for_only_where_it_has_a_wheel(
    system: str, machine: str, release: str, floor: str | None
) -> None:
    """Where python-gphoto2's newest release has no wheel pip builds it (its source before an
    older release's wheel), which fails without libgphoto2's headers: the whole install failed
    there, the stacker with it. 2.6.4's wheels need macOS 14 (Darwin 23) on Apple silicon and
    macOS 15 (Darwin 24) on Intel Macs."""
    here = {"sys_platform": system, "platform_machine": machine, "platform_release": release}
    asked = [
        req
        for req in map(Requirement, _project()["project"]["dependencies"])
        if req.name == "gphoto2" and (req.marker is None or req.marker.evaluate(here))
    ]
    assert [str(min(s.version for s in r.specifier)) for r in asked] == ([floor] if floor else [])


def test_the_kernel_release_is_never_compared_as_a_version() -> None:
    """pip 24.1 to 25.3 (packaging 22 to 25) evaluate every clause of a marker, and raised
    InvalidVersion before resolving anything where the release stood on the left of a
    comparison and the kernel's is no PEP 440 version (Debian's 6.1.0-18-amd64, Ubuntu's
    6.8.0-45-generic): the install failed on most Linux machines. On the right, a release
    that is no version is compared as a string."""
    for dependency in _project()["project"]["dependencies"]:
        marker = str(Requirement(dependency).marker or "")
        assert "platform_release >" not in marker and "platform_release <" not in marker


def test_ci_goes_on_where_fusefat_cannot_be_installed(tmp_path: Path) -> None:
    """The removable-disk tests skip without fusefat, but ``.ci/run`` (``set -e``) stopped at
    its install on a system whose package lists have none, before any test ran."""
    step = re.search(
        r"^if ! command -v fusefat .*?^fi$", (ROOT / ".ci" / "run").read_text(), re.M | re.S
    )
    assert step is not None, ".ci/run installs fusefat in an `if ! command -v fusefat` step"
    apt_get = tmp_path / "apt-get"
    apt_get.write_text('#!/bin/sh\necho "E: Unable to locate package fusefat" >&2\nexit 100\n')
    apt_get.chmod(0o755)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{step[0]}\necho on to the tests"],
        env={"PATH": str(tmp_path)},
        executable=shutil.which("bash"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "on to the tests" in proc.stdout, proc.stderr
    assert "removable-disk tests skip" in proc.stderr
