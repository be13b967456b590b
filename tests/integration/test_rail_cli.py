"""``rig rail``: commands against simulators, and one-line errors for bad ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from rig.cli.rail import app
from rig.sim.grbl import GrblSimulator
from rig.sim.marlin import MarlinSimulator

runner = CliRunner()


@pytest.fixture
def sim() -> Iterator[GrblSimulator]:
    """A stock GRBL on an Arduino: homing on, so every command's opening restarts it locked."""
    with GrblSimulator(time_scale=20.0) as simulator:
        yield simulator


def rig(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rig.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_locked_board_refuses_moves_in_one_line_until_accepted_or_homed(
    sim: GrblSimulator,
) -> None:
    result = runner.invoke(app, ["status", sim.url])
    assert result.exit_code == 0, result.output
    assert "at 0 µm (state Alarm, no reference: the controller restarted" in result.output
    for command in (["move", sim.url, "1mm"], ["jog", sim.url, "-250um"]):
        result = runner.invoke(app, command)
        message = str(result.exception)
        assert result.exit_code != 0 and "\n" not in message
        assert "ALARM since power-up" in message and "restarted when its port was opened" in message
        assert "--accept-position" in message and "--home" in message and "rig station" in message
    assert sim.motion_log == []
    result = runner.invoke(app, ["move", "--accept-position", sim.url + "&backlash=20um", "1.25mm"])
    assert result.exit_code == 0, result.output
    assert "at 1.25 mm" in result.output and sim.work_position[0] == pytest.approx(1.25)
    # The next opening restarts the board: 0 where the carriage stands, locked again.
    result = runner.invoke(app, ["jog", "--accept-position", sim.url, "-250um"])
    assert result.exit_code == 0, result.output
    assert "at -250 µm" in result.output and sim.motion_log[-1].kind == "jog"
    assert sim.carriage[0] == pytest.approx(-50.0 + 1.0, abs=0.002)


def test_zero_on_a_rail_that_homes_names_where_its_positions_come_from(
    sim: GrblSimulator,
) -> None:
    """``rig rail zero`` on a board with no reference said "it knows its position", while
    ``status`` of the same board said "no reference"."""
    result = runner.invoke(app, ["zero", sim.url])
    message = str(result.exception)
    assert result.exit_code != 0 and "\n" not in message
    assert "knows its position" not in message
    assert f"rig rail home {sim.url}" in message and "--accept-position" in message


@pytest.mark.slow
def test_home_works_from_the_lock_and_move_can_home_first(sim: GrblSimulator) -> None:
    result = runner.invoke(app, ["home", sim.url])
    assert result.exit_code == 0, result.output
    assert "at -1 mm" in result.output and "position known" in result.output
    result = runner.invoke(app, ["move", "--home", sim.url, "-2mm"])
    assert result.exit_code == 0, result.output
    assert "at -2 mm" in result.output and "position known" in result.output
    assert sim.carriage[0] == pytest.approx(-2.0, abs=0.002)


@pytest.mark.slow
def test_unlock_says_it_lasts_one_opening_then_stop(sim: GrblSimulator) -> None:
    result = runner.invoke(app, ["unlock", sim.url])
    assert result.exit_code == 0, result.output
    assert "state Idle" in result.stdout
    assert "locked again by the next command" in result.stderr
    result = runner.invoke(app, ["stop", sim.url])
    assert result.exit_code == 0 and "stopped at" in result.output


@pytest.mark.slow
def test_a_board_that_keeps_power_stays_unlocked_between_commands() -> None:
    """No DTR restart (a board with its own USB chip): one unlock lasts, an alarm stays."""
    with GrblSimulator(time_scale=20.0, reset_on_open=False) as board:
        result = runner.invoke(app, ["move", board.url, "1mm"])
        assert "ALARM" in str(result.exception) and "rig rail unlock" in str(result.exception)
        result = runner.invoke(app, ["unlock", board.url])
        assert result.exit_code == 0 and "locked again" not in result.stderr, result.output
        result = runner.invoke(app, ["move", board.url + "&backlash=20um", "1.25mm"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["jog", board.url, "-250um"])
        assert result.exit_code == 0 and "at 1 mm" in result.output, result.output
        board.trigger_alarm(1)
        result = runner.invoke(app, ["move", board.url, "-2mm"])
        assert "ALARM" in str(result.exception) and "rig rail home" in str(result.exception)


def test_marlin_and_sim_urls() -> None:
    with MarlinSimulator(time_scale=20.0) as marlin:
        result = runner.invoke(app, ["move", marlin.url, "11mm"])
        assert result.exit_code == 0, result.output
        assert "at 11 mm" in result.output
    result = runner.invoke(app, ["jog", "sim://?time_scale=50", "0.5mm"])
    assert result.exit_code == 0 and "at 500 µm" in result.output


@pytest.mark.slow  # waits out each wrong handshake's timeout
def test_a_url_for_the_other_firmware_names_the_one_answering(sim: GrblSimulator) -> None:
    with MarlinSimulator(time_scale=20.0) as marlin:
        for board, wrong, says in (
            (sim, "marlin", "answers like a GRBL controller: use grbl://"),
            (marlin, "grbl", "answers like a Marlin board: use marlin://"),
        ):
            result = runner.invoke(app, ["status", f"{wrong}://{board.path}?wakeup=0&timeout=1"])
            assert result.exit_code != 0 and f"{says}{board.path}" in str(result.exception)


def test_lengths_need_units_and_matching_kinds(sim: GrblSimulator) -> None:
    result = runner.invoke(app, ["move", sim.url, "250"])
    assert "has no unit" in str(result.exception)
    result = runner.invoke(app, ["move", sim.url, "12steps"])
    assert "moves in um" in str(result.exception)


@pytest.mark.slow
def test_bad_port_and_bad_scheme_are_one_line_errors() -> None:
    # Both run through the real `rig` entry point, side by side to save start-up time.
    bad_port = rig("rail", "status", "grbl:///dev/ttyUSB-stackrig-missing?wakeup=0")
    bad_scheme = rig("rail", "status", "tcp://rail")
    out, err = bad_port.communicate(timeout=60)
    assert bad_port.returncode == 3
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rig: error: no serial port /dev/ttyUSB-stackrig-missing")
    assert "/dev/serial/by-id" in lines[0] and "udev" in lines[0] and "dialout" in lines[0]
    out, err = bad_scheme.communicate(timeout=60)
    assert bad_scheme.returncode == 2
    assert err.count("\n") == 1 and "known schemes" in err and "tcp://" in err


@pytest.mark.slow
def test_simulate_prints_a_url_that_works_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "rail", "simulate", "--time-scale", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.startswith("grbl simulator on ")
        url = proc.stdout.readline().strip().removeprefix("url: ")
        assert url.startswith("grbl://") and url.endswith("?wakeup=0")
        moved = runner.invoke(app, ["move", "--accept-position", url, "2mm"])
        assert moved.exit_code == 0, moved.output
        # By default the simulated board resets when a program opens its port, like an
        # Arduino: a second connection finds it at 0, locked, and says it has no reference.
        status = runner.invoke(app, ["status", url])
        assert "at 0 µm (state Alarm, no reference" in status.output
    finally:
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "simulator stopped" in out


def simulated(firmware: str, *options: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rig.cli",
            "rail",
            "simulate",
            "--firmware",
            firmware,
            "--time-scale",
            "20",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(f"{firmware} simulator on ")
    return proc, proc.stdout.readline().strip().removeprefix("url: ")


@pytest.mark.slow
def test_simulate_keep_state_runs_a_board_that_keeps_its_place_between_commands() -> None:
    """The README's ``rig rail simulate --keep-state``, a board that does not restart when its
    port opens, which no test ran: unlocked once, it stays so and keeps its position."""
    proc, url = simulated("grbl", "--keep-state")
    try:
        assert runner.invoke(app, ["unlock", url]).exit_code == 0
        moved = runner.invoke(app, ["move", url, "2mm"])
        assert moved.exit_code == 0, moved.output
        status = runner.invoke(app, ["status", url])
        assert "at 2 mm (state Idle" in status.output, status.output
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("firmware", "reference", "after_reopen"),
    [
        ("stackshot", "no reference: a StackShot counts from where the rail stood", "at 1.75 mm"),
        ("wemacro", "no reference: a WeMacro never reports its position", "at 0 µm"),
    ],
)
def test_commercial_rail_simulators_serve_every_rail_command(
    firmware: str, reference: str, after_reopen: str
) -> None:
    proc, url = simulated(firmware)
    try:
        assert url.startswith(f"{firmware}://")
        status = runner.invoke(app, ["status", url])
        assert status.exit_code == 0, status.output
        assert reference in status.output
        moved = runner.invoke(app, ["move", url, "2mm"])
        assert moved.exit_code == 0 and "at 2 mm" in moved.output, moved.output
        jogged = runner.invoke(app, ["jog", url, "-250um"])
        assert jogged.exit_code == 0, jogged.output
        # StackShot keeps its counter between connections; WeMacro's is the host's own.
        assert after_reopen in runner.invoke(app, ["status", url]).output
        assert runner.invoke(app, ["zero", url]).exit_code == 0
        fired = runner.invoke(app, ["shutter", url])
        assert fired.exit_code == 0 and "shutter fired" in fired.output
        stopped = runner.invoke(app, ["stop", url])
        assert stopped.exit_code == 0 and "stopped at" in stopped.output
        homed = runner.invoke(app, ["home", url])
        assert homed.exit_code != 0 and "cannot home" in str(homed.exception)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def _wait_moving(simulator: Any) -> None:
    """Until the simulated carriage runs (a jog asked of another process has begun)."""
    deadline = time.monotonic() + 30
    while not simulator.carriage.moving and time.monotonic() < deadline:
        time.sleep(0.05)
    assert simulator.carriage.moving, "the jog never started"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_move_ended_by_a_signal_stops_the_rail(signum: int) -> None:
    """A StackShot told to move keeps going to its end on its own: SIGTERM (a service
    stopped, ``kill``) or SIGHUP (the ssh connection dropped) ended the command and left it
    running; only Ctrl-C stopped it."""
    from rig.sim.stackshot import StackShotSimulator

    with StackShotSimulator(time_scale=1.0, speed_mm_s=2.0) as simulator:
        proc = rig("rail", "jog", simulator.url, "50mm")
        _wait_moving(simulator)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert "stopped: " in err and " at " in err  # where it stands, said
        assert not simulator.carriage.moving
        stood = simulator.carriage.position_mm
        time.sleep(0.5)
        assert simulator.carriage.position_mm == stood < 50.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["stackshot", "wemacro"])
def test_a_cable_pulled_mid_move_is_a_rail_fault_not_input_to_fix(kind: str) -> None:
    """Unplugged mid-move, ``rig rail jog`` said so in one line, but with exit status 2, which
    the README keeps for input to fix; a rail fault is 6."""
    from rig.sim.stackshot import StackShotSimulator
    from rig.sim.wemacro import WeMacroSimulator

    device = StackShotSimulator if kind == "stackshot" else WeMacroSimulator
    with device(time_scale=1.0, speed_mm_s=2.0) as simulator:
        proc = rig("rail", "jog", simulator.url, "50mm")
        _wait_moving(simulator)
        simulator.disconnect()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 6, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_target_beyond_any_rail_is_refused_before_anything_moves(sim: GrblSimulator) -> None:
    """``1e30mm`` overflowed a timeout (GRBL) or a 32-bit field (WeMacro) in a traceback, or
    ran the rail into its end."""
    for target in ("1e30mm", "-20000mm", "2e9um"):
        result = runner.invoke(app, ["move", "--accept-position", sim.url, target])
        assert result.exit_code != 0
        assert "no focus axis moves that far" in str(result.exception), target
    assert runner.invoke(app, ["status", sim.url]).exit_code == 0


@pytest.mark.parametrize("command", ["move", "jog"])
def test_a_length_before_the_url_is_refused_by_naming_the_order(command: str) -> None:
    """``rig rail move -1mm sim://`` answered "'-1mm' is not a focuser URL", leaving the reader
    to work out that the URL was expected first."""
    url = "grbl:///dev/ttyUSB0?backlash=50um"
    result = runner.invoke(app, [command, "-1mm", url])
    assert result.exit_code != 0
    assert str(result.exception) == f"the URL comes first: rig rail {command} '{url}' -1mm"


@pytest.mark.parametrize("command", ["move", "jog"])
def test_a_length_typo_is_refused_before_the_port_is_opened(
    sim: GrblSimulator, command: str
) -> None:
    """``1,5mm`` was read after the port was opened and, with --home, after a whole homing
    cycle; opening an Arduino's port restarts it, so a typo cost the rail its position."""
    for typo in ("1,5mm", "250"):
        result = runner.invoke(app, [command, "--home", sim.url, typo])
        assert result.exit_code != 0 and typo in str(result.exception), result.output
    assert bytes(sim.received) == b""  # nothing was sent: the port was never opened


def test_a_rail_that_does_not_answer_at_once_after_a_stop_is_asked_again(monkeypatch) -> None:
    """A controller still braking may not say where it stands at once: the "stopped: ... at"
    line was left out, and the photographer did not learn where the carriage stood."""
    from rig.cli import rail
    from tests.fakes import FakeFocuser

    class Braking(FakeFocuser):
        asked = 0

        @property
        def position(self) -> float:
            self.asked += 1
            if self.asked <= self.silent:
                raise TimeoutError("no answer")
            return 1500.0

    monkeypatch.setattr(rail, "STOPPED_REASK_S", 0.0)
    late = Braking()
    late.silent = 1
    assert "1.5 mm" in rail._where_stopped(late)
    mute = Braking()
    mute.silent = 2
    assert rail._where_stopped(mute).endswith("where it stands could not be read (no answer)")
