"""``examples/stackrig-station.service``, the systemd unit a Pi station runs from, as written.

systemd checks the unit (``systemd-analyze verify``, skipped where systemd is not installed),
and its ``ExecStart`` line runs with only the paths, port and rail changed: a simulated GRBL
board on a pseudo-terminal and libgphoto2's virtual camera stand in for the rig's.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rig.sim.grbl import GrblSimulator
from rig.sim.vcamera import VirtualCameraFolder
from tests.paths import ROOT

UNIT = ROOT / "examples" / "stackrig-station.service"
RIG = Path(sys.executable).with_name("rig")
ADDRESS = re.compile(r"stackrig station: http://\S+:(\d+)/#token=(\S+)\n")


@functools.cache
def _service() -> dict[str, list[str]]:
    """The [Service] section's settings, each key with its values in order, lines joined where
    they end in a backslash as systemd joins them."""
    text = re.sub(r"\\\n", " ", UNIT.read_text())
    section, settings = "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value.strip())
    return settings


def _command(tmp_path: Path, rail: str) -> list[str]:
    """``ExecStart`` with the program, the port, the rail and the folders made this test's."""
    args = shlex.split(_service()["ExecStart"][0])
    assert Path(args[0]).name == "rig" and args[1] == "station", args
    swap = {
        "--port": "0",
        "--rail": rail,
        "--sessions": str(tmp_path / "sessions"),
        "--token-file": str(tmp_path / "home" / ".config" / "stackrig" / "station-token"),
    }
    for i, arg in enumerate(args[:-1]):
        if arg in swap:
            args[i + 1] = swap.pop(arg)
    assert not swap, f"the unit no longer passes {sorted(swap)}"
    return [str(RIG), *args[1:]]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    for value in _service().get("Environment", []):
        key, _, setting = value.partition("=")
        env[key] = setting
    env["PYTHONFAULTHANDLER"] = "1"  # not the unit's: for the report of a station that hangs
    return env


def _start(command: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    """The station started as systemd starts it: (process, its port, its token)."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment()
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the rail's warnings (a board that restarted on open) come first
        lines.append(line)
        if match := ADDRESS.fullmatch(line):
            return proc, match[1], match[2]
        if len(lines) == 5:
            break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"no address printed: {lines!r} {err!r}")


def _stop_as_systemd_does(proc: subprocess.Popen[str]) -> int:
    """``KillSignal``, then up to ``TimeoutStopSec`` for the process to end; its exit status."""
    settings = _service()
    proc.send_signal(getattr(signal, settings["KillSignal"][0]))
    try:
        proc.communicate(timeout=float(settings["TimeoutStopSec"][0]))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread stands
        _, err = proc.communicate()
        raise AssertionError(
            f"the station outlived TimeoutStopSec; systemd would kill it. Its threads: {err}"
        ) from None
    return proc.returncode


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_reads_every_line_of_the_unit(tmp_path: Path) -> None:
    """systemd ignores a misspelt setting with a warning and starts the unit without it (a
    ``SupplementaryGroup=`` would leave the station without access to the camera or rail)."""
    unit = tmp_path / UNIT.name
    program = shlex.split(_service()["ExecStart"][0])[0]
    unit.write_text(UNIT.read_text().replace(program, str(RIG)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_units_command_serves_keeps_its_token_and_stops_cleanly(
    tmp_path: Path, card: VirtualCameraFolder
) -> None:
    """Stopped with ``KillSignal``, the station must exit 0 within ``TimeoutStopSec``, or every
    ``systemctl stop`` is logged as a failure; started again (a reboot), it keeps the token the
    phone's bookmark holds, in a file only its user reads."""
    with GrblSimulator(time_scale=20) as sim:
        command = _command(tmp_path, sim.url)
        proc, _port, token = _start(command)
        try:
            token_file = Path(command[command.index("--token-file") + 1])
            assert token_file.stat().st_mode & 0o777 == 0o600
            assert token_file.read_text().strip() == token
        finally:
            assert _stop_as_systemd_does(proc) == 0
        proc, _port, again = _start(command)
        assert _stop_as_systemd_does(proc) == 0
    assert again == token


def test_without_a_camera_the_station_fails_so_that_systemd_starts_it_again(
    tmp_path: Path,
) -> None:
    """At boot the camera may still be switched off. The station then ends with a failure
    status, which ``Restart=on-failure`` answers by starting it again every ``RestartSec``
    until the camera answers; a status of 0 would leave the rig without its page."""
    assert _service()["Restart"] == ["on-failure"]
    env = _environment()
    env.pop("VCAMERADIR", None)  # libgphoto2's USB drivers: no camera on this machine
    with GrblSimulator(time_scale=20) as sim:
        done = subprocess.run(
            _command(tmp_path, sim.url), capture_output=True, text=True, env=env, timeout=120
        )
    assert done.returncode != 0
    assert done.stderr.startswith("rig: error: no camera found") and done.stderr.count("\n") == 1
    assert "`rig station --sim` runs the simulated rig" in done.stderr  # not `rig demo`
