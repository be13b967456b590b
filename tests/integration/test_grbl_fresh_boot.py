"""A GRBL board that restarts when its port opens: the simulator does it, the driver notices.

Real parts: the GRBL driver over a real pseudo-terminal to the GRBL simulator, which resets on
open by default as an Arduino does on DTR (GRBL 1.1 main.c clears the machine position at
power-up, then prints its banner).
"""

from __future__ import annotations

import pytest

from rig.errors import MotionError
from rig.rails.grbl import GrblRail
from rig.sim.grbl import GrblSimulator
from tests.rails import accepted, connected

STEP_UM = 1000.0 / 800.0
QUICK_HOMING = {24: 200.0, 25: 2000.0}


def test_simulator_restarts_on_every_open_position_zero_banner_again() -> None:
    with GrblSimulator(time_scale=20.0) as sim:
        with accepted(sim, GrblRail) as rail:
            rail.move_to(2000.0)
            carriage = sim.carriage[0]
            assert sim.machine_position[0] == pytest.approx(2.0)
        with connected(sim, GrblRail) as again:
            # The carriage did not move, but the board calls where it stands zero, and with
            # homing on it is locked again (HOMING_INIT_LOCK).
            assert sim.carriage[0] == pytest.approx(carriage)
            assert sim.machine_position[0] == 0.0 and again.position == 0.0
            assert again.status().state == "Alarm"
            assert again.version == "1.1h" and again.firmware == "Grbl"


@pytest.mark.slow
def test_first_open_of_a_board_that_reset_is_unreferenced_until_homed_or_accepted() -> None:
    with GrblSimulator(time_scale=20.0, settings=QUICK_HOMING) as sim:
        with connected(sim, GrblRail) as rail:
            problem = rail.capabilities.unreferenced
            assert problem is not None and "restarted when its port was opened" in problem
            with pytest.raises(MotionError, match="ALARM since power-up"):
                rail.move_to(1000.0)  # locked: homing is on (HOMING_INIT_LOCK)
            rail.home()  # $H is allowed in the lock, and lifts it
            rail.move_to(-1000.0)
            assert rail.capabilities.unreferenced is None and rail.capabilities.absolute
        with connected(sim, GrblRail) as reopened:
            assert reopened.capabilities.unreferenced is not None  # every open, not only reconnects
            reopened.accept_position()
            assert reopened.capabilities.unreferenced is None


def test_accepting_a_given_position_sets_it_without_moving() -> None:
    with GrblSimulator(time_scale=20.0) as sim:
        with connected(sim, GrblRail) as rail:
            rail.accept_position()
            rail.move_to(1500.0)
        carriage = sim.carriage[0]
        with connected(sim, GrblRail) as rail:
            moves = len(sim.motion_log)
            rail.accept_position(1500.0)  # "nothing moved since the frame at 1.5 mm"
            assert abs(rail.position - 1500.0) <= STEP_UM
            assert len(sim.motion_log) == moves and sim.carriage[0] == pytest.approx(carriage)
            rail.move_to(1750.0)
            assert sim.carriage[0] == pytest.approx(carriage + 0.25, abs=0.002)


def test_accepting_the_position_clears_the_power_up_lock_of_a_board_that_reset() -> None:
    """Stock GRBL with homing enabled boots locked (HOMING_INIT_LOCK) on every open."""
    with GrblSimulator(time_scale=20.0) as sim, connected(sim, GrblRail) as rail:
        assert rail.status().state == "Alarm"
        rail.accept_position(1500.0)  # as `rig resume --accept-position` does
        assert rail.capabilities.unreferenced is None and rail.status().state == "Idle"
        rail.move_to(1750.0)
        assert abs(rail.position - 1750.0) <= STEP_UM


def test_a_later_alarm_is_not_cleared_by_accepting_the_position() -> None:
    with GrblSimulator(time_scale=20.0) as sim, connected(sim, GrblRail) as rail:
        sim.trigger_alarm(2)
        with pytest.raises(MotionError, match=r"ALARM:2"):
            rail.move_to(100.0)
        rail.accept_position()
        assert rail.status().state == "Alarm" and b"$X" not in bytes(sim.received)


def test_a_board_that_does_not_reset_keeps_its_work_offset() -> None:
    """GRBL reports WCO in one status report in 10 while idle: the driver waits for one."""
    with GrblSimulator(time_scale=20.0, reset_on_open=False) as sim:
        with connected(sim, GrblRail) as rail:
            rail.unlock()  # the power-up lock; the board keeps power, so once is enough
            rail.move_to(5000.0)
            rail.send("G10 L20 P1 X0")  # a work zero set here, as a CNC sender would
            assert rail.status().wco is not None  # the report after a change carries it
            # ...then one idle report in 10: poll up to that one, so that the next
            # connection's first reports carry none and the driver must wait for one.
            assert any(rail.status().wco is not None for _ in range(20))
        with connected(sim, GrblRail) as again:
            assert abs(again.position) <= STEP_UM
            again.move_to(100.0)
            assert sim.work_position[0] == pytest.approx(0.1, abs=0.002)


def test_a_board_that_does_not_reset_keeps_its_position_and_is_trusted() -> None:
    with GrblSimulator(time_scale=20.0, reset_on_open=False) as sim:
        with connected(sim, GrblRail) as rail:
            # Found in its power-up lock: it counts from where it was powered up.
            problem = rail.capabilities.unreferenced
            assert problem is not None and "in ALARM when its port was opened" in problem
            rail.unlock()  # the power-up lock; the board keeps power, so once is enough
            assert rail.capabilities.unreferenced is None  # unlocking vouches for the place
            rail.move_to(2000.0)
        with connected(sim, GrblRail) as again:
            assert again.capabilities.unreferenced is None and again.status().state == "Idle"
            assert abs(again.position - 2000.0) <= STEP_UM


def test_a_board_that_does_not_reset_found_locked_after_a_power_cut_is_accepted() -> None:
    """A board with its own USB chip keeps running while the port is closed; a power cut in
    between leaves it locked at power-up (HOMING_INIT_LOCK), counting from 0 where it stood.
    Its position used to be trusted, and accepting it failed on the lock: ``G92`` error:9."""
    with GrblSimulator(time_scale=20.0, reset_on_open=False) as sim:
        with connected(sim, GrblRail) as rail:
            rail.unlock()
            rail.move_to(2000.0)
        carriage = sim.carriage[0]
        sim.power_cycle()
        with connected(sim, GrblRail) as again:
            problem = again.capabilities.unreferenced
            assert problem is not None and "in ALARM when its port was opened" in problem
            with pytest.raises(MotionError, match="--accept-position") as refused:
                again.move_to(2500.0)
            assert "restarted when its port was opened" not in str(refused.value)
            again.accept_position(2000.0)  # as `rig resume --accept-position` does
            assert again.capabilities.unreferenced is None and again.status().state == "Idle"
            again.move_to(2500.0)
            assert sim.carriage[0] == pytest.approx(carriage + 0.5, abs=0.002)


def test_a_restart_seen_on_reconnect_blocks_moves_until_accepted() -> None:
    with GrblSimulator(time_scale=20.0) as sim, connected(sim, GrblRail) as rail:
        rail.accept_position()
        rail.move_to(500.0)
        sim.power_cycle()
        rail.reconnect()
        with pytest.raises(MotionError, match="position unknown"):
            rail.move_to(600.0)
        rail.accept_position(500.0)
        rail.move_to(600.0)
        assert abs(rail.position - 600.0) <= STEP_UM


def test_a_board_built_without_the_lock_moves_at_once_but_is_unreferenced() -> None:
    """A GRBL built without HOMING_INIT_LOCK (commented out in config.h) boots Idle."""
    with (
        GrblSimulator(time_scale=20.0, homing_init_lock=False) as sim,
        connected(sim, GrblRail) as rail,
    ):
        assert rail.capabilities.unreferenced is not None
        rail.move_to(1000.0)  # manual moves work, counted from where the board restarted
        assert abs(rail.position - 1000.0) <= STEP_UM


def test_a_board_that_started_on_a_limit_switch_must_be_homed_not_accepted() -> None:
    """GRBL's CHECK_LIMITS_AT_INIT: the carriage left on a switch by a hard-limit stop, then the
    board restarted (the port opened). Accepting the position unlocked it with $X, and the first
    move off the switch tripped the hard limit; the driver says to home instead."""
    on_switch = (0.001, -50.0, -50.0)
    with (
        GrblSimulator(time_scale=20.0, start_position=on_switch, settings=QUICK_HOMING) as sim,
        connected(sim, GrblRail) as rail,
    ):
        with pytest.raises(MotionError) as info:
            rail.accept_position()
        message = str(info.value)
        assert "Check Limits" in message and "rig rail home" in message
        assert "\n" not in message
        assert b"$X" not in bytes(sim.received) and sim.alarms == []
        with pytest.raises(MotionError, match="limit switch"):
            rail.move_to(-1000.0)
        rail.home()  # homing leaves the switch with hard limits off
        rail.move_to(-3000.0)
        assert abs(rail.position + 3000.0) <= STEP_UM and sim.alarms == []
