"""GRBL variants and settings: grblHAL's banner, inch reports ($13=1), motors idling ($1).

Real parts: the GRBL driver and ``rig rail`` over a real pseudo-terminal to the GRBL simulator,
which prints grblHAL's banner (grblHAL core report.c) on request, reports inches with $13=1
(GRBL print.c) and ships GRBL's default $1=25 (defaults.h).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rig.cli.rail import app
from rig.errors import MotionError
from rig.rails import open_focuser
from rig.rails.grbl import GrblRail
from rig.sim.grbl import GrblSimulator
from tests.rails import connected

STEP_UM = 1000.0 / 800.0


def test_grblhal_banner_is_recognised_and_its_restart_seen() -> None:
    with (
        GrblSimulator(time_scale=20.0, firmware="grblhal", homing_init_lock=False) as sim,
        connected(sim, GrblRail) as rail,
    ):
        assert (rail.firmware, rail.version, rail.dialect.name) == ("GrblHAL", "1.1f", "grblHAL")
        assert "restarted when its port was opened" in (rail.capabilities.unreferenced or "")
        rail.accept_position()
        rail.move_to(1500.0)
        assert abs(rail.position - 1500.0) <= STEP_UM


@pytest.mark.slow
def test_a_grblhal_board_that_only_homing_unlocks_says_so_and_homes() -> None:
    """grblHAL with its homing init lock boots into ALARM:11 and refuses $X with error:46
    (system.c, check_status): accepting the position ended in "'$X' refused: error:46
    (unknown error code)", after the move's own advice to unlock."""
    with (
        GrblSimulator(time_scale=20.0, firmware="grblhal") as sim,
        connected(sim, GrblRail) as rail,
    ):
        with pytest.raises(MotionError, match=r"grblHAL will not unlock \(error:46 \(Home machine"):
            rail.accept_position()
        rail.home()
        rail.move_to(-1500.0)
        assert sim.state == "Idle" and abs(rail.position + 1500.0) <= STEP_UM


def test_grblhal_left_locked_after_homing_the_rail_s_axis_alone_says_what_to_set() -> None:
    """grblHAL keeps its lock, printing nothing, until every axis of its homing cycle is
    homed: $HX homed the rail and the driver then said to home it, again and again."""
    with (
        GrblSimulator(time_scale=20.0, firmware="grblhal", single_axis_homing=True) as sim,
        connected(sim, GrblRail) as rail,
        pytest.raises(MotionError, match=r"X axis is homed, but grblHAL stays locked .*\$44"),
    ):
        rail.home()
    assert sim.state == "Alarm"


def test_grblhal_s_emergency_stop_is_named_and_reset_before_unlocking() -> None:
    """grblHAL's ALARM:10 is its emergency stop, critical as a hard limit is (alarms.h); it
    was named GRBL's dual-axis homing failure, and unlocking skipped the reset it needs."""
    with (
        GrblSimulator(time_scale=20.0, firmware="grblhal", homing_init_lock=False) as sim,
        connected(sim, GrblRail) as rail,
    ):
        rail.accept_position()
        sim.trigger_alarm(10)
        with pytest.raises(MotionError, match=r"ALARM:10 \(EStop asserted"):
            rail.move_to(1000.0)
        rail.unlock()
        assert sim.state == "Idle"
        rail.accept_position()
        rail.move_to(1000.0)


def test_fluidnc_s_unhomed_boot_alarm_is_the_power_up_lock() -> None:
    """FluidNC boots into ALARM:14 (Unhomed) when an axis has homing (Protocol.cpp): taken for
    an alarm of unknown meaning, accepting the position never unlocked it."""
    with (
        GrblSimulator(time_scale=20.0, firmware="fluidnc") as sim,
        connected(sim, GrblRail) as rail,
    ):
        assert (rail.firmware, rail.dialect.name) == ("Grbl", "FluidNC")
        rail.accept_position()
        rail.move_to(1500.0)
        assert abs(rail.position - 1500.0) <= STEP_UM


def test_inch_reports_are_converted() -> None:
    with GrblSimulator(time_scale=20.0, settings={13: 1}) as sim, connected(sim, GrblRail) as rail:
        rail.accept_position()
        rail.move_to(2000.0)
        assert sim.machine_position[0] == pytest.approx(2.0)
        assert abs(rail.position - 2000.0) <= STEP_UM + 1.27
        rail.send("G10 L20 P1 X1")  # work offsets are reported in inches too
        assert abs(rail.position - 1000.0) <= STEP_UM + 1.27


@pytest.mark.slow
def test_motors_idling_between_frames_is_warned_about_and_can_be_fixed() -> None:
    with GrblSimulator(time_scale=20.0) as sim:
        url = sim.url + "&settle=0.5"  # the hint, pasted into a shell, keeps every option
        status = CliRunner().invoke(app, ["status", url])
        assert status.exit_code == 0, status.output
        assert "$1 (step idle delay) is 25 ms" in status.output
        assert f"rig rail keep-motors-on '{url}'" in status.output.replace("\n", "")
        fixed = CliRunner().invoke(app, ["keep-motors-on", sim.url])
        assert fixed.exit_code == 0, fixed.output
        assert sim.settings[1] == 255
        with connected(sim, GrblRail) as rail:
            assert rail.setup_warnings() == []


def test_rail_simulate_offers_a_grblhal_board() -> None:
    from rig.cli.rail import _simulator

    device = _simulator("grblhal", 20.0, None)
    assert isinstance(device, GrblSimulator)
    with device, connected(device, GrblRail) as rail:
        assert rail.firmware == "GrblHAL"


def test_a_garbled_setting_line_is_ignored_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``$$`` line whose value is line noise ("250.0.0" still fits the setting's pattern)
    stopped the connection on ValueError; it is ignored, as a line that is no setting is."""
    with GrblSimulator(time_scale=20.0) as sim:
        real = sim._setting_text
        noisy = {100: "$100=250.0.0", 101: "$101=-"}
        monkeypatch.setattr(sim, "_setting_text", lambda key: noisy.get(key) or real(key))
        with connected(sim, GrblRail) as rail:
            assert 100 not in rail.settings and 101 not in rail.settings
            assert 102 in rail.settings


@pytest.mark.slow
def test_a_board_slower_to_start_than_the_wakeup_is_told_to_raise_it() -> None:
    """An ESP32 board (FluidNC) can take longer to start than the driver waits: it answered
    nothing, was reset, and the rail was then said to be held by a limit alarm alone."""
    with GrblSimulator(time_scale=20.0, boot_delay=1.5, homing_init_lock=False) as sim:
        with connected(sim, GrblRail) as rail, pytest.raises(MotionError, match=r"\?wakeup=5"):
            rail.move_to(1000.0)
        patient = open_focuser(sim.url.replace("?wakeup=0", "?wakeup=2"))
        try:
            patient.accept_position()
            patient.move_to(1000.0)
        finally:
            patient.close()


@pytest.mark.parametrize(("firmware", "dialect"), [("grblhal", "grblHAL"), ("fluidnc", "FluidNC")])
def test_a_board_that_keeps_running_when_its_port_opens_is_told_by_its_build_info(
    firmware: str, dialect: str
) -> None:
    """A grblHAL board on native USB or an ESP32 on USB-CDC does not restart when its port
    opens, so its banner is never seen: its codes were read as GRBL's (grblHAL's refusal to
    unlock was "error:46 (unknown error code)"). ``$I`` names it."""
    with (
        GrblSimulator(time_scale=20.0, firmware=firmware, reset_on_open=False) as sim,
        connected(sim, GrblRail) as rail,
    ):
        assert rail.dialect.name == dialect
        if firmware == "grblhal":  # locked since power-up: only homing unlocks it
            with pytest.raises(MotionError, match=r"will not unlock \(error:46 \(Home machine"):
                rail.accept_position()
