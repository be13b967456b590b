"""The GRBL rail driver against the GRBL simulator over a real pseudo-terminal."""

from __future__ import annotations

import os
import signal
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pytest import MonkeyPatch

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.rails import open_focuser, serialport
from rig.rails.base import ConnectionLostError, MoveStoppedError
from rig.rails.grbl import GrblRail, parse_status
from rig.sim.grbl import GrblSimulator
from tests.rails import accepted, act_when, connected
from tests.signalled import Signalled, taken_elsewhere

STEP_UM = 1000.0 / 800.0  # the simulator's default 800 steps/mm
QUICK_HOMING = {24: 200.0, 25: 2000.0}  # homing feeds (mm/min) raised to keep tests short


@pytest.fixture
def sim() -> Iterator[GrblSimulator]:
    with GrblSimulator(time_scale=10.0, settings=QUICK_HOMING) as simulator:
        yield simulator


def sent(sim: GrblSimulator, since: int = 0) -> bytes:
    """What the controller received after byte ``since``, without the `?` status polls."""
    return bytes(sim.received[since:]).replace(b"?", b"")


def moving(sim: GrblSimulator, state: str = "Run", past_mm: float = 0.1) -> Callable[[], bool]:
    """Whether ``sim`` is in ``state`` (``Run``, ``Jog``) with X past ``past_mm`` (machine)."""
    return lambda: sim.state == state and sim.machine_position[0] >= past_mm


SLOW = "&feed=1mm/s"
"""A feed for moves that must still be under way when a helper thread acts on them: 10 mm take
10 s simulated, 1 s real at 10x. Those moves are interrupted early, so the tests stay short."""


@pytest.mark.slow
def test_moves_reach_the_commanded_position_within_a_step(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail) as rail:
        start = sim.machine_position[0]
        for target in [1234.5, 3000.0, -2222.2, 17.0]:
            rail.move_to(target)
            assert abs(rail.position - target) <= STEP_UM
            assert abs((sim.machine_position[0] - start) * 1000.0 - target) <= STEP_UM
            assert sim.state == "Idle"


def test_backlash_every_target_approached_from_below(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail, "&backlash=50um") as rail:
        targets = [2000.0, 1000.0, 1500.0, 500.0, 500.0]
        for target in targets:
            before = len(sim.axis_moves("X"))
            rail.move_to(target)
            moves = sim.axis_moves("X")[before:]
            if moves:
                start, end = moves[-1]
                assert end > start, f"{target}: final approach {start} -> {end} is not upwards"
            for start, end in moves[:-1]:
                assert end == pytest.approx(target / 1000.0 - 0.05, abs=0.002)
                assert end < start


def test_plans_finer_than_a_motor_step_or_without_room_to_take_up_backlash_are_refused(
    sim: GrblSimulator,
) -> None:
    """A 0.5 um step on a rail of 1.25 um motor steps ran "completed, 7/7" with its frames at
    3 places; a far-to-near plan ending on the soft limit had its backlash overshoot cut there,
    and its last frame was reached from above. Neither was said."""
    from rig.plan import ShotPlan
    from rig.session.runner import check_plan_fits

    with accepted(sim, GrblRail, "&backlash=50um&min=0mm") as rail:
        assert rail.capabilities.motor_step == pytest.approx(STEP_UM)
        mark = len(sim.received)
        with pytest.raises(MotionError, match=r"step of 0\.5 µm is finer than one motor step"):
            check_plan_fits(ShotPlan.from_step(0.0, 3.0, 0.5), rail)
        check_plan_fits(ShotPlan.from_step(100.0, 110.0, 1.25), rail)
        # A 50x/0.55 objective's 1.43 um (depth of field 1.82 um) landed frames 1.25 or
        # 2.5 um apart: bands never in focus, and the plan said "completed".
        with pytest.raises(MotionError, match=r"up to 2\.5 µm apart .*use --step 1\.25um"):
            check_plan_fits(ShotPlan.from_frames(100.0, 120.0, 15), rail)
        check_plan_fits(ShotPlan.from_frames(100.0, 300.0, 11), rail)  # 20 um: 16 motor steps
        with pytest.raises(MotionError, match=r"nearer the soft limit 0 µm than the backlash"):
            check_plan_fits(ShotPlan.from_frames(400.0, 0.0, 3), rail)
        check_plan_fits(ShotPlan.from_frames(450.0, 50.0, 3), rail)
        assert b"G" not in sent(sim, mark)  # nothing moved


def test_soft_limit_refusal_sends_no_motion(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail, "&max=5mm&min=0mm") as rail:
        mark = len(sim.received)
        with pytest.raises(MotionError, match="outside the soft limits"):
            rail.move_to(6000.0)
        with pytest.raises(MotionError, match="outside the soft limits"):
            rail.jog(-1.0)
        assert b"G1" not in sent(sim, mark) and b"$J" not in sent(sim, mark)
        assert sim.motion_log == []


def test_a_refused_move_is_said_in_words_not_g_code(
    sim: GrblSimulator, monkeypatch: MonkeyPatch
) -> None:
    """The error named the G-code line ('G21 G90 G1 X2.0000 F600.0' refused)."""
    read = sim.on_bytes

    def refuse_moves(data: bytes) -> None:
        if b"G1 " in data:
            sim.write("error:20\r\n")  # unsupported or invalid g-code command
            return
        read(data)

    with accepted(sim, GrblRail) as rail:
        monkeypatch.setattr(sim, "on_bytes", refuse_moves)
        with pytest.raises(MotionError) as info:
            rail.move_to(2_000.0)
        message = str(info.value)
        assert "the move to 2 mm was refused: error:20 (" in message
        assert "G1" not in message and "G21" not in message


def test_hard_limit_alarm_stops_a_sequence(sim: GrblSimulator) -> None:
    sim.close()
    with (
        GrblSimulator(time_scale=10.0, start_position=(-3.0, -50.0, -50.0)) as near_end,
        accepted(near_end, GrblRail) as rail,
    ):
        rail.move_to(1000.0)
        with pytest.raises(MotionError) as info:
            for target in [5000.0, 6000.0]:  # the switch sits 3 mm above the start
                rail.move_to(target)
        message = str(info.value)
        assert "ALARM:1 (Hard limit triggered" in message and "\n" not in message
        moves = len(near_end.motion_log)
        with pytest.raises(MotionError, match="ALARM"):
            rail.move_to(100.0)
        assert len(near_end.motion_log) == moves  # nothing moved after the alarm
        assert near_end.alarms == [1]


@pytest.mark.slow
def test_injected_alarm_during_a_move(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail, SLOW) as rail:
        alarm = act_when(moving(sim), lambda: sim.trigger_alarm(1))
        with pytest.raises(MotionError, match="ALARM:1"):
            rail.move_to(30_000.0)  # 30 s at 10x: interrupted long before
        assert alarm.wait(10.0)
        assert rail.capabilities.absolute is False
        # The alarm is not cleared behind the user's back: homing is the way out.
        assert b"$X" not in sent(sim, bytes(sim.received).index(b"$X") + 2)
        rail.home()
        rail.move_to(-2000.0)
        assert abs(rail.position + 2000.0) <= STEP_UM


def hold_once_moving(sim: GrblSimulator, monkeypatch: MonkeyPatch) -> None:
    """Fire ``sim``'s Hold input as its next motion block starts (once), under the board's lock:
    the move is under way and cannot be over, however late the host is."""
    queue = sim._queue
    armed = [True]

    def queue_then_hold(*args: Any) -> None:
        queue(*args)
        if armed[0]:
            armed[0] = False
            sim.on_bytes(b"!")  # the lock is re-entrant: this thread holds it

    monkeypatch.setattr(sim, "_queue", queue_then_hold)


@pytest.mark.slow
def test_a_feed_hold_from_the_board_is_named_not_taken_for_silence(
    monkeypatch: MonkeyPatch,
) -> None:
    """The Hold input (a button, or noise on its wire) pauses motion until Cycle Start.

    GRBL's pin interrupt and the ``!`` byte set the same feed-hold flag (system.c, serial.c),
    so the simulator is given ``!`` as its Hold input.
    """
    with (
        GrblSimulator(time_scale=10.0, reset_on_open=False) as sim,
        connected(sim, GrblRail) as rail,
    ):
        rail.unlock()  # the power-up lock; the board keeps power, so once is enough
        hold_once_moving(sim, monkeypatch)
        default_timeout, rail.timeout_s = rail.timeout_s, 1.0  # the held G4 gives up in ~2 s
        with pytest.raises(MotionError, match=r"paused \(Hold\).*did not finish.*Cycle Start"):
            rail.move_to(5_000.0)
        rail.timeout_s = default_timeout
        with pytest.raises(MotionError, match=r"paused \(Hold\).*nothing moved"):
            rail.move_to(100.0)
        sim.on_bytes(b"~")  # Cycle Start: the held move carries on
        rail.move_to(100.0)
        assert abs(rail.position - 100.0) <= STEP_UM


@pytest.mark.slow
def test_grbl_soft_limits_jog_error_15_and_g1_alarm_2() -> None:
    """Homed, the driver knows GRBL's machine travel and refuses a target past it before
    sending anything; with the position only accepted, the controller's own refusals (jog
    ``error:15``, ``ALARM:2`` for a G1) are reported in words."""
    with (
        GrblSimulator(time_scale=10.0, settings={20: 1, **QUICK_HOMING}) as sim,
        connected(sim, GrblRail) as rail,
    ):
        rail.home()  # machine space is [-100 mm, 0]; homing leaves X at -1 mm
        assert rail.position == pytest.approx(-1000.0)
        # The home switch's end is kept clear by the pull-off ($27 = 1 mm), where homing left it.
        assert rail.capabilities.min_position == -100_000.0
        assert rail.capabilities.max_position == -1000.0
        mark = len(sent(sim))
        for refused in (lambda: rail.jog(5000.0), lambda: rail.move_to(2000.0)):
            with pytest.raises(MotionError, match=r"soft limits -100 mm \.\. -1 mm; nothing moved"):
                refused()
        assert b"$J=" not in sent(sim)[mark:] and b"G1" not in sent(sim)[mark:]
        rail.move_to(-3000.0)
        assert abs(rail.position + 3000.0) <= STEP_UM
        # Told the carriage stands at 10 mm (G92, a work offset of -13 mm): the same travel in
        # work coordinates, -87 mm .. 12 mm.
        rail.accept_position(10_000.0)
        limits = (rail.capabilities.min_position, rail.capabilities.max_position)
        assert limits == pytest.approx((-87_000.0, 12_000.0), abs=STEP_UM)
        with pytest.raises(MotionError, match=r"soft limits -87 mm \.\. 12 mm; nothing moved"):
            rail.move_to(12_500.0)
        rail.move_to(11_000.0)
        assert abs(rail.position - 11_000.0) <= STEP_UM
    with (
        GrblSimulator(time_scale=10.0, settings={23: 1, **QUICK_HOMING}) as sim,
        connected(sim, GrblRail) as rail,
    ):
        rail.home()  # $23 bit set: homed to the negative end, switch at -100 mm
        assert rail.position == pytest.approx(-99_000.0)
        limits = (rail.capabilities.min_position, rail.capabilities.max_position)
        assert limits == (-99_000.0, 0.0)
    with (
        GrblSimulator(time_scale=10.0, settings={20: 1, **QUICK_HOMING}) as sim,
        connected(sim, GrblRail) as rail,
    ):
        rail.accept_position()  # $X: machine position 0, unknown to the driver as travel
        with pytest.raises(MotionError, match="beyond the machine travel; nothing moved"):
            rail.jog(5000.0)
        assert sim.state == "Idle"
        with pytest.raises(MotionError, match=r"ALARM:2 \(G-code motion target exceeds"):
            rail.move_to(2000.0)
        rail.unlock()  # position is retained after a soft-limit alarm
        rail.move_to(-3000.0)
        assert abs(rail.position + 3000.0) <= STEP_UM


def test_boot_alarm_is_reported_and_only_unlocked_on_request(sim: GrblSimulator) -> None:
    with connected(sim, GrblRail) as rail:
        with pytest.raises(MotionError, match=r"ALARM since power-up.*--home.*--accept-position"):
            rail.move_to(100.0)
        assert b"$X" not in sent(sim)
        rail.unlock()
        rail.move_to(100.0)
        assert abs(rail.position - 100.0) <= STEP_UM


@pytest.mark.slow
def test_stop_during_a_long_move_halts_it_keeping_position(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail, SLOW) as rail:
        mark = len(sim.received)
        stop = act_when(moving(sim, past_mm=0.5), rail.stop)
        with pytest.raises(MoveStoppedError, match="stopped"):
            rail.move_to(40_000.0)  # 40 s of simulated travel at 10x: ~4 s
        assert stop.wait(10.0)
        stopped = rail.position
        assert 500.0 - STEP_UM <= stopped < 40_000.0  # where it was when stopped, short of 40 mm
        time.sleep(0.1)  # 1 s simulated: 1 mm at the move's feed
        assert rail.position == stopped
        assert sim.alarms == []  # feed hold before the reset: no "reset while in motion"
        received = sent(sim, mark)
        assert received.index(b"!") < received.index(b"\x18")
        rail.move_to(0.0)  # usable at once, no unlock needed
        assert abs(rail.position) <= STEP_UM


def test_stop_cancels_a_jog_with_0x85(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail) as rail:
        mark = len(sim.received)
        stop = act_when(moving(sim, "Jog"), rail.stop)
        with pytest.raises(MoveStoppedError):
            rail.jog(40_000.0, feed_mm_min=60.0)  # 40 s at 10x: ~4 s
        assert stop.wait(10.0)
        assert b"\x85" in sent(sim, mark) and b"\x18" not in sent(sim, mark)
        assert any(m.interrupted == "jog cancel" for m in sim.motion_log)
        assert sim.state == "Idle"


def restart_on_receiving(sim: GrblSimulator, command: bytes, monkeypatch: MonkeyPatch) -> None:
    """Make ``sim`` restart the moment ``command`` next reaches it, before it reads it (once)."""
    read = sim.on_bytes
    armed = [True]

    def on_bytes(data: bytes) -> None:
        if armed[0] and command in data:
            armed[0] = False
            sim.power_cycle()
        read(data)

    monkeypatch.setattr(sim, "on_bytes", on_bytes)


def test_board_reset_between_a_moves_commands_is_blamed_on_the_reset(
    sim: GrblSimulator, monkeypatch: MonkeyPatch
) -> None:
    """The board restarts after accepting the move's ``G1`` and before reading its ``G4``: the
    banner reaches the driver ahead of the ``error:9`` the locked board gives the ``G4``."""
    with accepted(sim, GrblRail) as rail:
        restart_on_receiving(sim, b"G4", monkeypatch)
        with pytest.raises(ConnectionLostError, match=r"reset during.*home the rail"):
            rail.move_to(2_000.0)
        with pytest.raises(MotionError, match="position unknown"):
            rail.move_to(0.0)


def hold_back_refusals(sim: GrblSimulator, monkeypatch: MonkeyPatch) -> threading.Event:
    """Make ``sim``'s next ``error:`` reply reach the host only after the host's next line has
    reached the board: a slow link (USB latency, a radio bridge) delivers it late. The event
    returned is set once the board has given that reply (it is on its way)."""
    write, on_bytes = sim.write, sim.on_bytes
    held: list[str] = []
    given = threading.Event()

    def late_write(text: str) -> None:
        if text.startswith("error:") and not held:
            held.append(text)
            given.set()
            return
        write(text)

    def releasing_on_bytes(data: bytes) -> None:
        if held and held[-1] and b"\n" in data:
            write(held[-1])
            held.append("")  # once only
        on_bytes(data)

    monkeypatch.setattr(sim, "write", late_write)
    monkeypatch.setattr(sim, "on_bytes", releasing_on_bytes)
    return given


def test_a_late_reply_to_a_command_abandoned_at_a_reset_is_not_taken_for_the_next(
    sim: GrblSimulator, monkeypatch: MonkeyPatch
) -> None:
    """The ``error:9`` the restarted board gives the ``G4`` arrives after the driver gave up on
    it and sent ``$X``: taken for ``$X``'s answer it refused the unlock, and every later
    command read the answer of the one before."""
    with accepted(sim, GrblRail) as rail:
        restart_on_receiving(sim, b"G4", monkeypatch)
        refused = hold_back_refusals(sim, monkeypatch)
        with pytest.raises(ConnectionLostError, match=r"reset during"):
            rail.move_to(2_000.0)
        # The restarted board has refused the G4 (a loaded machine may take a moment to get
        # there): the refusal is on its way when the driver sends its next line.
        assert refused.wait(10.0)
        rail.accept_position(0.0)
        rail.move_to(1_000.0)
        assert abs(rail.position - 1_000.0) <= STEP_UM
        assert sim.state == "Idle"


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["unplugged", "reset"])
def test_a_cable_pulled_or_a_board_reset_mid_move_loses_the_position_clearly(
    sim: GrblSimulator, fault: str
) -> None:
    with accepted(sim, GrblRail, SLOW) as rail:
        acted = act_when(moving(sim), sim.disconnect if fault == "unplugged" else sim.power_cycle)
        with pytest.raises(ConnectionLostError) as info:
            rail.move_to(40_000.0)  # 40 s at 10x: ~4 s
        assert acted.wait(10.0)
        message = str(info.value)
        assert sim.path in message and "\n" not in message
        if fault == "unplugged":
            with pytest.raises(ConnectionLostError):
                rail.position  # noqa: B018 - every call reports the lost link
            sim.replug()
            rail.reconnect()
        else:
            assert "reset" in message and "home" in message  # the link itself still works
        with pytest.raises(MotionError, match=r"position unknown.*home"):
            rail.move_to(1000.0)  # the position must be re-established
        rail.home()
        rail.move_to(-5000.0)
        assert abs(rail.position + 5000.0) <= STEP_UM
        assert rail.capabilities.absolute


@pytest.mark.slow
def test_a_restart_after_homing_drops_the_travel_learnt_there(sim: GrblSimulator) -> None:
    """The board restarts (machine 0 is then wherever the carriage stood) and the position is
    accepted: the travel learnt by homing would now refuse the wrong targets."""
    with connected(sim, GrblRail) as rail:
        rail.home()
        rail.move_to(-50_000.0)
        assert rail.capabilities.max_position == -1000.0
        sim.disconnect()  # the cable pulled, the board restarted, then plugged back
        sim.power_cycle()
        sim.replug()
        rail.reconnect()
        assert rail.capabilities.unreferenced is not None
        rail.accept_position(-50_000.0)
        caps = rail.capabilities
        assert (caps.min_position, caps.max_position) == (None, None)
        rail.move_to(-20_000.0)  # beside what the old span, shifted by the restart, allowed
        assert abs(rail.position + 20_000.0) <= STEP_UM


@contextmanager
def _at_2mm_on_a_board_that_does_not_reset() -> Iterator[tuple[GrblSimulator, GrblRail]]:
    """A board that does not restart on open (grblHAL, native USB), its rail moved to 2 mm."""
    with (
        GrblSimulator(time_scale=10.0, reset_on_open=False) as sim,
        connected(sim, GrblRail) as rail,
    ):
        rail.unlock()  # the power-up lock; the board keeps power, so once is enough
        rail.move_to(2000.0)
        yield sim, rail


def test_reconnect_keeps_the_position_when_the_board_kept_power() -> None:
    with _at_2mm_on_a_board_that_does_not_reset() as (sim, rail):
        sim.disconnect(power_loss=False)
        with pytest.raises(ConnectionLostError, match=sim.path):
            rail.move_to(3000.0)
        sim.replug(power_cycle=False)
        rail.reconnect()
        assert abs(rail.position - 2000.0) <= STEP_UM
        rail.move_to(3000.0)  # no homing demanded: nothing was lost
        assert abs(rail.position - 3000.0) <= STEP_UM


def test_reconnect_notices_a_silent_restart() -> None:
    # No reset on open and the banner went out before the port was reopened: the driver
    # notices that the machine position changed while it was away.
    with _at_2mm_on_a_board_that_does_not_reset() as (sim, rail):
        sim.disconnect()
        sim.replug()
        rail.reconnect()
        with pytest.raises(MotionError, match="position unknown"):
            rail.move_to(3000.0)


def test_spy_urls_dump_the_traffic(sim: GrblSimulator, capfd: pytest.CaptureFixture[str]) -> None:
    rail = open_focuser(f"grbl://spy://{sim.path}?wakeup=0")
    rail.accept_position()  # the board restarted as the port opened: locked until then
    rail.move_to(100.0)
    rail.close()
    dump = capfd.readouterr().err  # pyserial's hex dump, text in the right-hand column
    assert "TX   0000  47 32 31 20 47 39 30 20  47 31 20 58 30 2E 31 30  G21 G90 G1 X0.10" in dump


def test_garbled_and_unexpected_lines_do_not_crash_the_driver(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail) as rail:
        junk = (
            b"\xff\xfe\x00garbage\r\n<Idle|MPos:1.0,abc>\r\n<Run|\r\nHello there\r\n[MSG:odd]\r\n"
        )

        def spray() -> None:
            for _ in range(5):
                sim.inject(junk)
                time.sleep(0.01)

        threading.Timer(0.02, spray).start()
        rail.move_to(3000.0)
        sim.inject(junk)
        rail.move_to(1000.0)
        assert abs(rail.position - 1000.0) <= STEP_UM


@pytest.mark.slow
def test_a_silent_controller_is_a_clear_error(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail) as rail:
        rail.timeout_s = 0.3  # only now: setting up on a loaded machine may take longer
        sim.stall()
        with pytest.raises(RigError, match=f"{sim.path}.*(stopped answering|does not answer)"):
            rail.move_to(1000.0)
        sim.stall(False)


def test_work_coordinates_wpos_and_wco(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail) as rail:
        rail.move_to(2000.0)
        rail.send("G10 L20 P1 X0")  # call the current position zero
        assert rail.position == pytest.approx(0.0, abs=STEP_UM)
        rail.move_to(500.0)
        assert sim.work_position[0] == pytest.approx(0.5, abs=0.002)
        assert sim.machine_position[0] == pytest.approx(2.5, abs=0.002)
        sim.settings[10] = 0  # controller now reports WPos instead of MPos + WCO
        assert rail.position == pytest.approx(500.0, abs=STEP_UM)


@pytest.mark.slow
@pytest.mark.parametrize(("single_axis", "expected"), [(False, b"$H\n"), (True, b"$HX\n")])
def test_homing_sends_single_axis_only_to_a_build_that_lists_it(
    single_axis: bool, expected: bytes
) -> None:
    """$I's options list H when the build has HOMING_SINGLE_AXIS_COMMANDS (report.c)."""
    with GrblSimulator(
        time_scale=20.0, settings=QUICK_HOMING, single_axis_homing=single_axis
    ) as sim:
        with connected(sim, GrblRail) as rail:
            mark = len(sim.received)
            rail.home()
            assert sent(sim, mark) == b"$I\n" + expected
            mark = len(sim.received)
            rail.home()  # asked once per connection
            assert sent(sim, mark) == expected
        with connected(sim, GrblRail, "&homing=all") as rail:
            mark = len(sim.received)
            rail.home()
            assert sent(sim, mark) == b"$H\n"


@pytest.mark.parametrize("unlocked", [True, False], ids=["idle", "boot-locked"])
def test_single_axis_homing_refused_by_a_stock_build_is_one_line_and_leaves_it_usable(
    sim: GrblSimulator, unlocked: bool
) -> None:
    """Stock GRBL answers $HX with error:3 after setting its state to Home (system.c), and
    stays there; the driver resets it out, puts it back as it was and names homing=all."""
    with connected(sim, GrblRail, "&homing=axis") as rail:
        if unlocked:
            rail.accept_position()
        with pytest.raises(MotionError) as info:
            rail.home()
        message = str(info.value)
        assert "homing=all" in message and "$HX" in message and "\n" not in message
        assert sim.state == ("Idle" if unlocked else "Alarm")  # not stuck in Home
        assert sim.motion_log == []
        if unlocked:
            rail.move_to(1000.0)  # nothing was lost
            assert sim.machine_position[0] == pytest.approx(1.0, abs=0.002)
        else:
            rail.accept_position()
            assert sim.state == "Idle"


@pytest.mark.slow
def test_stop_during_homing_resets_at_once() -> None:
    """GRBL answers no ? while homing (limits.c): stop() must not wait for one before Ctrl-X."""
    slow_seek = {24: 200.0, 25: 300.0}  # 50 mm at 300 mm/min: 10 s, 1 s real
    with (
        GrblSimulator(time_scale=10.0, settings=slow_seek) as sim,
        connected(sim, GrblRail, "&homing=all") as rail,
    ):
        timing: dict[str, float] = {}

        def stop() -> None:
            start = time.monotonic()
            rail.stop()
            timing["stop"] = time.monotonic() - start

        stopped = act_when(lambda: sim.state == "Home", stop)
        with pytest.raises(MoveStoppedError, match="homing stopped"):
            rail.home()
        assert stopped.wait(10.0)
        assert timing["stop"] < 0.5
        assert sim.alarms == [6]  # reset during homing
        assert sim.motion_log[-1].interrupted == "reset"
        assert rail.capabilities.absolute is False


def test_a_signal_another_thread_takes_during_homing_stops_the_wait() -> None:
    """GRBL says nothing while it homes, so the driver waits for its ``ok`` the whole cycle
    (minutes on a long rail). A Ctrl-C that landed just before that wait began, or that the
    serial reader thread took, was handled only once homing ended: ``rig rail home`` ran on
    to the switch. Here the main thread blocks the signal, so another thread takes it."""
    slow_seek = {24: 200.0, 25: 12.0}  # 50 mm at 12 mm/min: 250 s, 25 s real

    with (
        GrblSimulator(time_scale=10.0, settings=slow_seek) as sim,
        connected(sim, GrblRail, "&homing=all") as rail,
    ):
        ran_on = threading.Event()

        def give_up() -> None:  # ends a failing test
            ran_on.set()
            rail.stop()

        timer = threading.Timer(10.0, give_up)
        try:
            with taken_elsewhere() as send:
                act_when(lambda: sim.state == "Home", send)
                timer.start()
                with pytest.raises(Signalled):
                    rail.home()
            assert not ran_on.is_set(), "the signal was handled only once homing was stopped"
        finally:
            timer.cancel()
            rail.stop()


def test_a_jog_into_a_switch_is_the_hard_limit_in_words_at_once() -> None:
    """After ALARM:1 GRBL answers no ? until Ctrl-X (protocol.c): the driver resets it and
    names the alarm instead of blaming the cable after a status timeout."""
    with (
        GrblSimulator(time_scale=10.0, start_position=(-3.0, -50.0, -50.0)) as sim,
        accepted(sim, GrblRail) as rail,
    ):
        start = time.monotonic()
        with pytest.raises(MotionError) as info:
            rail.jog(5000.0)  # the switch sits 3 mm above the start
        assert time.monotonic() - start < 2.0
        message = str(info.value)
        assert "ALARM:1 (Hard limit triggered" in message and "\n" not in message
        assert "home the rail" in message
        assert sim.state == "Alarm" and rail.status().state == "Alarm"  # answers again
        start = time.monotonic()
        with pytest.raises(MotionError, match="ALARM:1"):
            rail.move_to(100.0)
        assert time.monotonic() - start < 1.0
        assert sim.alarms == [1]


def test_a_board_held_in_a_hard_limit_alarm_is_reset_when_connecting() -> None:
    """A board that kept its power in ALARM:1 answers nothing, not even ?: the handshake sends
    Ctrl-X and waits for the banner; the position is then not trusted."""
    with GrblSimulator(time_scale=10.0, reset_on_open=False) as sim:
        sim.trigger_alarm(1)
        with connected(sim, GrblRail, "&timeout=3") as rail:
            assert rail.status().state == "Alarm"
            with pytest.raises(MotionError, match=r"ALARM.*home the rail"):
                rail.move_to(1000.0)
            assert sim.motion_log == []


def test_homing_disabled_is_refused_clearly() -> None:
    with GrblSimulator(time_scale=10.0, settings={22: 0}) as sim, connected(sim, GrblRail) as rail:
        assert not rail.capabilities.can_home
        with pytest.raises(MotionError, match="cannot home"):
            rail.home()


def test_missing_port_is_one_line_naming_it() -> None:
    with pytest.raises(DeviceNotFoundError) as info:
        open_focuser("grbl:///dev/ttyNOPE-stackrig?wakeup=0")
    message = str(info.value)
    assert "/dev/ttyNOPE-stackrig" in message and "/dev/serial/by-id" in message
    assert "dialout" in message and "\n" not in message


@pytest.mark.slow
def test_a_port_with_no_grbl_is_named(tmp_path: object) -> None:
    # A pty nobody answers on: the handshake gives up with a one-line error.

    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        with pytest.raises(DeviceNotFoundError, match=f"no GRBL controller answers on {path}"):
            GrblRail(path, wakeup_s=0.0, timeout_s=0.5)
    finally:
        os.close(slave)
        os.close(master)


@pytest.mark.parametrize(
    ("line", "state", "sub", "mpos", "wpos"),
    [
        ("<Idle|MPos:1.000,2.000,3.000|FS:0,0>", "Idle", None, (1.0, 2.0, 3.0), None),
        ("<Hold:0|WPos:-1.5,0,0|FS:0,0|Pn:X>", "Hold", 0, None, (-1.5, 0.0, 0.0)),
        ("<Jog|MPos:0.000,0.000,0.000|Bf:15,128|FS:500,0|WCO:1.000,0.000,0.000>", "Jog", None,
         (0.0, 0.0, 0.0), None),
        # grblHAL's bare |AR (report.c, auto-reporting on): the whole report was dropped
        ("<Idle|MPos:1.000,2.000,3.000|FS:0,0|AR>", "Idle", None, (1.0, 2.0, 3.0), None),
    ],
)  # fmt: skip
def test_status_reports_parse(
    line: str, state: str, sub: int | None, mpos: tuple | None, wpos: tuple | None
) -> None:
    status = parse_status(line)
    assert status is not None
    assert (status.state, status.substate, status.mpos, status.wpos) == (state, sub, mpos, wpos)


@pytest.mark.parametrize(
    "line",
    [
        "<Idle|MPos:1.0,abc>", "<Idle>", "<Run|MPos>", "Idle|MPos:1,2,3", "<1dle|MPos:1>",
        "<Idle|MPos:nan,0,0>", "<Idle|WPos:0,inf,0>", "<Idle|MPos:0,0,0|WCO:-inf,0,0>",
    ],
)  # fmt: skip
def test_malformed_status_reports_are_rejected(line: str) -> None:
    assert parse_status(line) is None


def test_wco_is_applied_to_mpos() -> None:
    status = parse_status("<Idle|MPos:3.000,0.000,0.000|FS:0,0>")
    assert status is not None
    assert status.work_position((1.0, 0.0, 0.0)) == (2.0, 0.0, 0.0)


def test_answers_are_not_kept_once_their_command_is_done(sim: GrblSimulator) -> None:
    """A station keeps its rail connected for days: the ``ok`` of every command it sends must
    not pile up in the driver. Lines the link decoded and something still holds are counted
    with :mod:`tracemalloc`, after 10 commands and after 200 more."""

    def lines_held() -> int:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, serialport.__file__)]
        )
        return sum(stat.count for stat in snapshot.statistics("filename"))

    with accepted(sim, GrblRail) as rail:
        tracemalloc.start()
        try:
            for _ in range(10):
                rail.send("G4 P0")
            before = lines_held()
            for _ in range(200):
                rail.send("G4 P0")
            after = lines_held()
        finally:
            tracemalloc.stop()
    assert after - before < 20, f"{after - before} more blocks held after 200 commands"


def test_an_interrupt_while_a_session_homes_stops_the_homing_cycle() -> None:
    """``rig shoot --home``: a Ctrl-C while the rail homed, before the session began, closed
    the port and left homing running (GRBL on a board whose port does not reset it, Marlin's
    G28) to its switch after the command had ended. The cycle is stopped first."""
    from rig.devices import establish_reference

    slow_seek = {24: 200.0, 25: 12.0}  # 50 mm at 12 mm/min: 250 s, 25 s real

    def raise_signalled(_signum: int, _frame: object) -> None:
        raise Signalled

    with (
        GrblSimulator(time_scale=10.0, settings=slow_seek) as sim,
        connected(sim, GrblRail, "&homing=all") as rail,
    ):
        before = signal.signal(signal.SIGUSR1, raise_signalled)
        try:
            act_when(lambda: sim.state == "Home", lambda: os.kill(os.getpid(), signal.SIGUSR1))
            with pytest.raises(Signalled):
                establish_reference(rail, home=True, accept=False, left=None, units="um")
            assert sim.state != "Home", "homing ran on after the interrupt"
            assert sim.alarms == [6]  # reset during homing
        finally:
            signal.signal(signal.SIGUSR1, before)
            rail.stop()


def test_a_second_signal_as_homing_is_stopped_does_not_leave_it_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One ssh drop often sends SIGHUP twice: the second, landing as the first one's stop
    began, cut the stop short, and the carriage homed on after the command had ended."""
    from rig.devices import establish_reference

    slow_seek = {24: 200.0, 25: 12.0}

    def raise_signalled(_signum: int, _frame: object) -> None:
        raise Signalled

    def second_signal() -> None:
        raise Signalled

    with (
        GrblSimulator(time_scale=10.0, settings=slow_seek) as sim,
        connected(sim, GrblRail, "&homing=all") as rail,
    ):
        before = signal.signal(signal.SIGUSR1, raise_signalled)
        try:
            act_when(lambda: sim.state == "Home", lambda: os.kill(os.getpid(), signal.SIGUSR1))
            with monkeypatch.context() as m, pytest.raises(Signalled):
                m.setattr(rail, "stop", second_signal)
                establish_reference(rail, home=True, accept=False, left=None, units="um")
            assert sim.state != "Home", "homing ran on after the command ended"
            assert sim.alarms == [6]
        finally:
            signal.signal(signal.SIGUSR1, before)
            rail.stop()
