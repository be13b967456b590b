"""Marlin as built by default: short moves merged, no emergency parser, soft endstops once homed.

Real parts: the Marlin driver over a real pseudo-terminal to the Marlin simulator, which follows
Marlin 2.1's planner.cpp (MIN_STEPS_PER_SEGMENT), motion.cpp (apply_motion_limits) and the stock
Configuration_adv.h (EMERGENCY_PARSER off). 400 steps/mm: six steps are 15 µm.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from rig.errors import MotionError, RigError
from rig.plan import ShotPlan
from rig.rails.base import MoveStoppedError
from rig.rails.marlin import MarlinRail
from rig.session.runner import check_plan_fits
from rig.sim.marlin import MarlinConfig, MarlinSimulator
from tests.rails import act_when, connected
from tests.signalled import Signalled, taken_elsewhere


@pytest.fixture
def sim() -> Iterator[MarlinSimulator]:
    with MarlinSimulator(time_scale=10.0) as simulator:
        yield simulator


def test_simulator_merges_a_move_under_six_steps_into_the_next(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        assert rail.send("G1 X0.01 F600") == []  # 4 steps: dropped by the planner
        (report,) = rail.send("M114")
        assert report.startswith("X:0.01 ") and "Count X:0 " in report  # commanded, not done
        rail.send("G1 X1 F600")
        rail.send("M400")
        (report,) = rail.send("M114")
        assert report.startswith("X:1.00 ") and "Count X:400 " in report
        assert [round(end[0] - start[0], 4) for start, end in sim.motion_log] == [1.0]


@pytest.mark.slow
def test_driver_refuses_moves_and_plans_below_six_steps(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        rail.accept_position()
        assert rail.steps_per_mm == 400.0
        assert rail.capabilities.min_step == pytest.approx(15.0)
        mark = len(sim.received)
        with pytest.raises(
            MotionError, match=r"10 µm is below the controller's smallest move, 15 µm"
        ):
            rail.move_to(10.0)
        assert b"G1" not in bytes(sim.received[mark:])  # nothing moved
        with pytest.raises(MotionError, match=r"step of 10 µm is below the smallest move"):
            check_plan_fits(ShotPlan.from_step(0.0, 1000.0, 10.0), rail)
        check_plan_fits(ShotPlan.from_step(0.0, 1000.0, 20.0), rail)
    with connected(
        sim, MarlinRail, "&backlash=10um"
    ) as tight:  # a 10 µm take-up move would vanish too
        tight.accept_position()
        tight.move_to(1000.0)
        with pytest.raises(MotionError, match="10 µm is below"):
            tight.move_to(500.0)
        assert tight.position == 1000.0


def test_marlin_1_1_steps_per_mm_come_from_the_settings_report() -> None:
    """Marlin 1.1's M92 without arguments prints nothing: the steps per mm stayed unknown,
    and a 50 µm step (four steps at 80 per mm) was merged into the next one in silence."""
    config = MarlinConfig(steps_per_mm=80.0, m92_reports=False)
    with MarlinSimulator(config, time_scale=10.0) as sim, connected(sim, MarlinRail) as rail:
        assert rail.steps_per_mm == 80.0 and rail.setup_warnings() == []
        rail.accept_position()
        with pytest.raises(MotionError, match=r"50 µm is below the controller's smallest move"):
            rail.move_to(50.0)


@pytest.mark.slow
def test_a_board_on_its_boot_screen_answers_each_m115_and_no_reply_is_taken_late() -> None:
    """A board with an LCD sits on its boot screen after ``start`` and then answers every
    ``M115`` the driver sent meanwhile, one a second, each 1 KB at 115200 baud. A reply still
    arriving was taken as the next command's, and every answer after it was one command
    behind: ``M92`` got ``M84``'s, and a move's ``M400`` another command's ``ok``."""
    config = MarlinConfig(bootscreen_s=3.5)
    with MarlinSimulator(config, time_scale=10.0) as sim, connected(sim, MarlinRail) as rail:
        assert bytes(sim.received).count(b"M115") >= 3  # sent during the boot screen
        assert rail.steps_per_mm == 400.0 and rail.position == 0.0
        rail.accept_position()
        for target in (1000.0, 250.0, 2000.0):
            rail.move_to(target)
            assert rail.position == pytest.approx(target)
            assert sim.logical_position[0] == pytest.approx(target / 1000.0, abs=0.003)


def test_stepper_count_catches_a_move_marlin_dropped(sim: MarlinSimulator) -> None:
    """Straight to the driver primitive, as a driver without the 6-step check would move."""
    with (
        connected(sim, MarlinRail) as rail,
        pytest.raises(MotionError, match=r"stepper count says 0 µm \(0 steps, 4 expected\)"),
    ):
        rail._move_absolute(10.0)


@pytest.mark.slow
def test_a_move_ends_when_the_carriage_arrives_not_when_marlin_has_planned_it(
    sim: MarlinSimulator,
) -> None:
    """``M114``'s ``Count`` is the planner's position (Marlin 2's M114.cpp): it shows the
    target as soon as the ``G1`` is queued, so it cannot tell when the carriage arrives."""
    with connected(sim, MarlinRail) as rail:
        rail.accept_position()
        rail.send("G1 X20 F600")  # 2 s simulated
        (report,) = rail.send("M114")
        assert "Count X:8000 " in report and sim.logical_position[0] < 19.0
        rail.send("M400")
        start = sim.position[0]
        rail.move_to(0.0)
        assert sim.position[0] == pytest.approx(start - 20.0, abs=0.01)
        assert rail.position == 0.0


@pytest.mark.slow
def test_simulator_without_emergency_parser_queues_m410_behind_m400(
    sim: MarlinSimulator,
) -> None:
    with connected(sim, MarlinRail) as rail:
        assert not rail.emergency_parser and "Cap:EMERGENCY_PARSER:0" in "".join(rail.send("M115"))
        rail.send("G1 X30 F600")  # 3 s simulated
        link = rail._link
        assert link is not None
        mark = len(sim.received)
        # Sent once the M400 is in: sent before it, the M410 would stop the move and its "ok"
        # would be taken as the M400's.
        sent = act_when(lambda: b"M400" in sim.received[mark:], lambda: link.send_line("M410"))
        rail.send("M400")  # M410 waits behind this until the move is over
        assert sent.wait(10.0)
        assert sim.logical_position[0] == pytest.approx(30.0)


@pytest.mark.slow
def test_stop_without_emergency_parser_still_halts_at_once(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail, "&feed=1mm/s") as rail:
        rail.accept_position()
        called: list[float] = []
        # Stopped once the move is under way (past 2 mm: M114 prints hundredths of a mm,
        # and the move back to 1 mm below must not be under Marlin's smallest move).
        act_when(
            lambda: sim.logical_position[0] >= 2.0,
            lambda: (called.append(time.monotonic()), rail.stop()),
        )
        with pytest.raises(MoveStoppedError, match="stopped at"):
            rail.move_to(150_000.0)  # 150 s simulated, 15 s real
        # At once: within a few polls of the stop, not when the move would have ended.
        assert time.monotonic() - called[0] < 5.0
        stopped = rail.position
        assert 0.0 < stopped < 50_000.0  # a third of the way takes 5 s real
        assert sim.logical_position[0] == pytest.approx(stopped / 1000.0, abs=0.01)
        assert b"M400" not in bytes(sim.received)  # the queue was kept free for M410
        rail.move_to(1_000.0)
        assert rail.position == 1_000.0


def test_a_signal_another_thread_takes_during_a_move_stops_the_wait(sim: MarlinSimulator) -> None:
    """Without the emergency parser the driver sleeps out the time a move takes at full speed
    (see ``_wait_motion``): 10 s for 100 mm at the default feed. A Ctrl-C that landed just
    before that sleep, or that the serial reader thread took, was handled only at its end:
    ``rig rail move`` ran on for the rest of the move. Here the main thread blocks the signal,
    so another thread takes it."""
    with connected(sim, MarlinRail, "&feed=1mm/s") as rail:
        rail.accept_position()
        ran_on = threading.Event()

        def give_up() -> None:  # ends a failing test: the driver would sleep 150 s
            ran_on.set()
            rail.stop()

        timer = threading.Timer(10.0, give_up)
        try:
            with taken_elsewhere() as send:
                act_when(lambda: sim.logical_position[0] >= 2.0, send)
                timer.start()
                with pytest.raises(Signalled):
                    rail.move_to(150_000.0)  # 150 s simulated, 15 s real
            assert not ran_on.is_set(), "the signal was handled only once the move was stopped"
        finally:
            timer.cancel()
            rail.stop()


def test_soft_endstops_read_from_the_m211_report_once_homed(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        caps = rail.capabilities
        assert (caps.min_position, caps.max_position) == (None, None)  # not homed: no clamping
        rail.home()
        caps = rail.capabilities
        assert (caps.min_position, caps.max_position) == (0.0, 200_000.0)


@pytest.mark.slow
def test_soft_endstops_clamp_only_after_homing_and_backlash_stays_inside(
    sim: MarlinSimulator,
) -> None:
    with connected(sim, MarlinRail, "&backlash=30um") as rail:
        rail.accept_position()
        rail.move_to(-2_000.0)  # not homed: Marlin does not clamp (the carriage booted at 10 mm)
        assert sim.logical_position[0] == pytest.approx(-2.0)
        rail.home()
        caps = rail.capabilities
        assert (caps.min_position, caps.max_position) == (0.0, 200_000.0)
        rail.move_to(500.0)
        rail.move_to(0.0)  # downwards: the 30 µm overshoot below 0 is kept at 0, no fault
        assert rail.position == 0.0 and sim.position[0] == pytest.approx(0.0)
        with pytest.raises(MotionError, match="outside the soft limits"):
            rail.move_to(250_000.0)
        with pytest.raises(MotionError, match="outside the soft limits"):
            check_plan_fits(ShotPlan.from_step(0.0, 250_000.0, 500.0), rail)


def test_marlin_1_1_clamps_before_homing_and_the_driver_knows_it() -> None:
    """Marlin 1.1 clamps every move to its soft endstops, homed or not
    (``clamp_to_software_endstops``): a board that restarted on open counts from 0 at the
    carriage, so the first frame's backlash approach from below ended at the wrong place
    ("ended at 0 µm"), and a jog below it returned without moving and without a word."""
    config = MarlinConfig(version="1.1.9", m92_reports=False)
    with (
        MarlinSimulator(config, time_scale=10.0) as sim,
        connected(sim, MarlinRail, "&backlash=30um") as rail,
    ):
        assert rail.firmware.startswith("Marlin 1.1.9")
        rail.accept_position()
        caps = rail.capabilities
        assert (caps.min_position, caps.max_position) == (0.0, 200_000.0)
        rail.move_to(0.0)  # the first frame where the carriage stands: the overshoot kept at 0
        rail.move_to(800.0)
        rail.move_to(0.0)
        assert rail.position == 0.0 and sim.logical_position[0] == pytest.approx(0.0)
        with pytest.raises(MotionError, match="outside the soft limits"):
            rail.jog(-500.0)
        with pytest.raises(MotionError, match="outside the soft limits"):
            check_plan_fits(ShotPlan.from_step(-1_000.0, 1_000.0, 500.0), rail)
        assert sim.logical_position[0] == pytest.approx(0.0)


@pytest.mark.slow
def test_motors_stay_powered_through_a_long_pause() -> None:
    """A stock board switches idle motors off after 120 s and the carriage falls to the
    nearest full step (0.04 mm here) while the board counts on; the driver keeps them on."""
    with MarlinSimulator(time_scale=200.0) as sim, connected(sim, MarlinRail) as rail:
        rail.accept_position()
        rail.move_to(1_020.0)  # half-way between two full steps
        time.sleep(150.0 / 200.0)
        assert sim.logical_position[0] == pytest.approx(1.02)
    with MarlinSimulator(time_scale=200.0) as sim, connected(sim, MarlinRail) as rail:
        sim.power_cycle()  # a power dip mid-session: the board forgot M84 S0 as well
        time.sleep(0.1)
        rail.accept_position(0.0)
        rail.move_to(1_020.0)
        time.sleep(150.0 / 200.0)
        assert sim.logical_position[0] == pytest.approx(1.02)
    with MarlinSimulator(time_scale=200.0, reset_on_open=False) as stock:
        stock.on_bytes(b"G1 X1.02 F600\n")
        time.sleep(150.0 / 200.0)
        assert stock.logical_position[0] != pytest.approx(1.02)  # fell to 1.00 or 1.04


def test_a_garbled_report_is_no_report_not_a_crash(
    sim: MarlinSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``M92`` and ``M114`` values are matched as runs of digits and dots, so line noise such as
    ``X400.0.0`` reached float() and the connection stopped on ValueError. A garbled M92 line
    leaves the steps per mm unknown, as none does; a garbled M114 line is no position."""
    write = sim.write
    noise = {"M92 X400.00": "M92 X400.0.0"}
    monkeypatch.setattr(sim, "write", lambda text: write(_replaced(text, noise)))
    with connected(sim, MarlinRail) as rail:
        assert rail.steps_per_mm == 0.0
    noise["X:0.00 Y"] = "X:0..0 Y"
    with pytest.raises(RigError, match=rf"on {sim.path} sent no position for M114"):
        connected(sim, MarlinRail).__enter__()


def _replaced(text: str, noise: dict[str, str]) -> str:
    for clean, garbled in noise.items():
        text = text.replace(clean, garbled)
    return text


def test_a_restart_whose_start_line_arrives_garbled_is_still_seen(sim: MarlinSimulator) -> None:
    """A power dip glitches the serial line as the board comes back: ``start`` arrived as
    ``\\ufffdstart``, was not recognised, and the rail moved on, counting from 0 wherever the
    carriage stood."""
    with connected(sim, MarlinRail) as rail:
        rail.home()
        rail.move_to(2000.0)
        sim.inject(b"\xff")
        sim.power_cycle()
        deadline = time.monotonic() + 5.0
        while rail.capabilities.unreferenced is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "restarted" in (rail.capabilities.unreferenced or "")
        with pytest.raises(MotionError, match="position unknown"):
            rail.move_to(2100.0)


def test_a_board_that_does_not_reset_power_cycled_while_unplugged_is_not_trusted() -> None:
    """A 32-bit board powered by USB does not restart when its port opens: unplugged, it
    lost power, and its ``start`` went to a closed port. After the reconnection it read 0
    where it had read 2 mm, and the next move went 2 mm too far."""
    with (
        MarlinSimulator(time_scale=10.0, reset_on_open=False) as sim,
        connected(sim, MarlinRail) as rail,
    ):
        rail.home()
        rail.move_to(2000.0)
        sim.disconnect(power_loss=True)
        sim.replug(power_cycle=True)
        rail.reconnect()
        problem = rail.capabilities.unreferenced
        assert problem is not None and "restarted while disconnected" in problem
        assert "where it read 2 mm" in problem
        with pytest.raises(MotionError, match="position unknown"):
            rail.move_to(2100.0)
        rail.accept_position(2000.0)
        rail.move_to(2100.0)


def test_a_lost_ok_is_given_up_on_while_the_board_reports_temperatures() -> None:
    """Any line used to extend a wait: with one ``ok`` lost to line noise and the board
    printing its temperature every second (M155, left on by another host), a wait for an
    answer never ended."""

    class LosesOneOk(MarlinSimulator):  # line noise, which the simulator has no model of
        lose_next_ok = False

        def write(self, text: str) -> None:
            if self.lose_next_ok and text == "ok\n":
                self.lose_next_ok = False
                return
            super().write(text)

    with LosesOneOk(time_scale=10.0) as sim, connected(sim, MarlinRail, "&timeout=1") as rail:
        stop = threading.Event()

        def report_temperatures() -> None:
            while not stop.wait(0.3):
                sim.write("T:21.30 /0.00 B:21.10 /0.00 @:0 B@:0\n")

        reporter = threading.Thread(target=report_temperatures, daemon=True)
        reporter.start()
        try:
            sim.lose_next_ok = True
            outcome: list[BaseException] = []

            def ask() -> None:
                try:
                    rail.send("M114")
                except RigError as exc:
                    outcome.append(exc)

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(5.0)  # a hang is the failure, not the test's own end
            assert not asking.is_alive(), "still waiting for the lost ok"
            assert outcome and "stopped answering" in str(outcome[0])
        finally:
            stop.set()
            reporter.join()


def test_a_raw_line_that_is_not_one_line_of_ascii_is_refused(sim: MarlinSimulator) -> None:
    """A non-ASCII character ended a raw send with a UnicodeEncodeError traceback."""
    with connected(sim, MarlinRail) as rail:
        for line in ("G1 X1 ; début", "G1 X1\nG1 X2"):
            with pytest.raises(RigError, match="is not one line of ASCII G-code; nothing sent"):
                rail.send(line)
        assert rail.send("M400") == []  # the link still answers in step
