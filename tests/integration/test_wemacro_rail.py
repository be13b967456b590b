"""The WeMacro driver against the WeMacro simulator on a real pseudo-terminal, byte by byte."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import serial

from rig.errors import DeviceNotFoundError, MotionError
from rig.rails import wemacro_protocol as proto
from rig.rails.base import ConnectionLostError, MoveStoppedError
from rig.rails.wemacro import WeMacroRail
from rig.session.journal import RailLeft
from rig.sim.stackshot import StackShotSimulator
from rig.sim.wemacro import CONFIG_SETTLE_S, WeMacroSimulator
from tests.polling import eventually
from tests.rails import move_cut_short


@pytest.fixture
def sim() -> Iterator[WeMacroSimulator]:
    with WeMacroSimulator(time_scale=20.0) as simulator:
        yield simulator


def test_frames_carry_a_modbus_crc() -> None:
    assert proto.crc16_modbus(b"123456789") == 0x4B37  # the CRC-16/MODBUS check value
    frame = proto.frame(proto.Command.MOVE_BACK, 1500)
    assert frame[:10] == bytes([0xA5, 0x5A, 0x41, 0, 0, 0, 0x00, 0x00, 0x05, 0xDC])
    assert proto.parse_frame(frame) == (0x41, 0, 0, 0, 1500)
    damaged = bytearray(frame)
    damaged[9] ^= 1
    assert proto.parse_frame(bytes(damaged)) is None


def test_connects_on_a_ready_message_and_sets_micrometres() -> None:
    with WeMacroSimulator(time_scale=20.0, ready_on_open=True) as sim:
        rail = WeMacroRail(sim.path, wakeup_s=2.0)
        assert eventually(lambda: bool(sim.frames))
        assert sim.frames[0] == (proto.Command.CONFIG, 0, 0, 0, 0)
        assert rail.position == 0.0
        assert not rail.capabilities.absolute and not rail.capabilities.can_home
        rail.close()


def test_wakes_the_controller_and_a_first_move_really_moves(
    sim: WeMacroSimulator, rail: WeMacroRail
) -> None:
    """The controller says nothing when the port opens (INDIGO's simulator of it): the wake-up
    is the normal path, and each of its two 0x40 0 is answered. The second answer was taken for
    the first move's end, and that move, sent within 30 ms of the configuration, was ignored:
    'moved' to 2 mm with the carriage still."""
    assert [c for c, *_ in sim.frames[:4]] == [0x40, 0x20, 0x40, proto.Command.CONFIG]
    rail.move_to(2000.0)
    assert sim.ignored_frames == 0
    assert sim.carriage.position_mm == pytest.approx(14.0)
    rail.move_to(500.0)  # a move back ends with 0xF6
    assert sim.carriage.position_mm == pytest.approx(12.5) and rail.position == 500.0


def _host(sim: WeMacroSimulator) -> serial.Serial:
    """A host of our own on the simulator's port, to send frames when we choose."""
    return serial.Serial(sim.path, 9600, timeout=1.0)


def test_a_move_sent_with_the_configuration_is_ignored() -> None:
    """The controller's awkward rule, which the driver's pause after configuring must meet:
    a frame that completes within 30 ms of a configuration frame does nothing."""
    with WeMacroSimulator(time_scale=1.0) as sim, _host(sim) as host:
        for _ in range(20):  # a read the simulator was late for tells nothing: send again
            assert eventually(lambda: not sim.carriage.moving)
            before, ignored = len(sim.frames), sim.ignored_frames
            host.write(proto.frame(proto.Command.CONFIG) + proto.frame(0x40, 500))
            assert eventually(lambda n=before: len(sim.frames) > n)
            empty_at, read_at = sim.arrival
            if read_at - empty_at < CONFIG_SETTLE_S:
                break
        else:
            pytest.fail("the simulator fell behind on every read")
        assert sim.ignored_frames == ignored + 1
        assert sim.frames[-1][0] == proto.Command.CONFIG and not sim.carriage.moving


def test_the_driver_pauses_after_configuring_on_a_controller_at_its_own_speed() -> None:
    """At the controller's own time (not sped up), a driver that sent its first move at once
    after configuring would see it ignored."""
    with WeMacroSimulator(time_scale=1.0, speed_mm_s=20.0) as sim:
        rail = WeMacroRail.from_url(sim.url)
        try:
            rail.move_to(200.0)
            assert sim.ignored_frames == 0
            assert sim.carriage.position_mm == pytest.approx(12.2)
        finally:
            rail.close()


def test_a_simulator_that_falls_behind_does_not_ignore_a_move_sent_after_the_pause() -> None:
    """On a loaded machine the simulator read the configuration and a move sent 70 ms later
    together and ignored the move, so a test's jog never ended: frames are timed by when they
    can have arrived, not by when the simulator got round to them."""
    with WeMacroSimulator(time_scale=20.0) as sim, _host(sim) as host:
        host.write(b"\x00")  # past the reset that opening the port causes
        assert eventually(lambda: bytes(sim.received).endswith(b"\x00"))
        with sim._lock:  # the simulator busy with bytes it read before the configuration
            host.write(b"\x01")
            assert eventually(lambda: bytes(sim.received).endswith(b"\x01"))
            host.write(proto.frame(proto.Command.CONFIG))
            time.sleep(proto.CONFIG_SETTLE_S + 0.04)
            host.write(proto.frame(proto.Command.MOVE_FORWARD, 500))
            time.sleep(0.05)
        assert eventually(lambda: sim.carriage.moving or sim.ignored_frames > 0)
        assert sim.ignored_frames == 0
        assert eventually(lambda: sim.carriage.position_mm == pytest.approx(12.5))


def test_answers_split_across_reads_are_still_answers() -> None:
    """INDIGO's simulator sends an answer's first byte 10 ms before the rest: read 3 bytes at
    a time within a 0.1 s poll, such an answer was dropped and 3 of 30 moves failed."""
    with WeMacroSimulator(time_scale=20.0, split_answers=True) as sim:
        rail = WeMacroRail.from_url(sim.url)
        try:
            for k in range(1, 11):
                rail.move_to(30.0 * k)
            assert rail.position == 300.0
            assert sim.carriage.position_mm == pytest.approx(12.3)
        finally:
            rail.close()


def test_a_move_right_after_the_shutter_is_not_taken_for_done_by_its_answer(
    sim: WeMacroSimulator, rail: WeMacroRail
) -> None:
    """The shutter answers 0xF7 when its 0.3 s pulse ends: read as the next move's answer, it
    stopped that move and lost the position."""
    rail.fire_shutter()
    rail.move_to(1000.0)
    assert sim.shutter_pulses == 1 and rail.position == 1000.0
    assert sim.carriage.position_mm == pytest.approx(13.0)


def test_moves_are_counted_in_whole_micrometres(sim: WeMacroSimulator, rail: WeMacroRail) -> None:
    assert isinstance(rail, WeMacroRail)  # what open_focuser makes of wemacro://
    rail.move_to(1500.0)
    rail.move_to(900.0)
    moves = [(c, d) for c, _, _, _, d in sim.frames if c in (0x40, 0x41)]
    assert moves == [(0x40, 0), (0x40, 0), (0x40, 1500), (0x41, 600)]  # after the wake-up
    assert rail.position == 900.0
    assert sim.carriage.position_mm == pytest.approx(12.9)


def test_reverse_swaps_the_commands(sim: WeMacroSimulator) -> None:
    rail = WeMacroRail.from_url(sim.url + "&reverse=true")
    rail.move_to(400.0)
    assert sim.frames[-1][0] == 0x41
    assert sim.carriage.position_mm == pytest.approx(11.6)
    rail.close()


@pytest.mark.slow
def test_a_frame_lost_to_noise_is_an_error_and_the_position_must_be_set_again(
    sim: WeMacroSimulator, rail: WeMacroRail
) -> None:
    usual_timeout, rail.timeout_s = rail.timeout_s, 0.3  # set once connected
    assert eventually(lambda: bool(sim.frames))  # the configuration frame is through
    sim.corrupt_next()
    with pytest.raises(MotionError, match="did not report the end of the move"):
        rail.move_to(300.0)
    assert sim.bad_frames == 1
    with pytest.raises(MotionError, match="rig rail zero"):
        _ = rail.position
    rail.timeout_s = usual_timeout  # the short wait was for the lost frame only
    rail.zero()
    rail.move_to(200.0)
    assert rail.position == 200.0


def test_stop_halts_and_forgets_the_position(sim: WeMacroSimulator, rail: WeMacroRail) -> None:
    move_cut_short(rail, sim, 300_000.0, rail.stop, MoveStoppedError)  # 200 s simulated, 10 s real
    # The stop frame is written; the controller reads it in a moment.
    assert eventually(lambda: not sim.carriage.moving)
    assert sim.carriage.position_mm < 12.0 + 300.0  # halted, not at the end of the move
    assert sim.frames[-1][0] == proto.Command.STOP
    with pytest.raises(MotionError, match="lost"):
        _ = rail.position


def test_a_link_lost_mid_move_forgets_the_position(
    sim: WeMacroSimulator, rail: WeMacroRail
) -> None:
    # 200 s simulated, 10 s real
    move_cut_short(rail, sim, 300_000.0, sim.disconnect, ConnectionLostError)
    with pytest.raises(MotionError, match="lost when a move was stopped or cut off"):
        _ = rail.position  # not the 0 it started from: the carriage went part of the way


@pytest.mark.slow
def test_bytes_of_another_device_are_not_taken_for_the_controller(tmp_path) -> None:
    """A port whose device sends FE F8 F0 when opened (a banner at another baud rate) passed
    for a WeMacro: only an answer's third byte was looked at."""
    from tests.rails import chatter_on_open

    with (
        chatter_on_open(b"\xfe\xf8\xf0") as port,
        pytest.raises(DeviceNotFoundError, match="no WeMacro"),
    ):
        WeMacroRail(port, wakeup_s=0.3, timeout_s=0.3)


def test_shutter_cable(sim: WeMacroSimulator, rail: WeMacroRail) -> None:
    fired = threading.Event()
    sim.on_shutter = fired.set
    rail.fire_shutter()
    assert fired.wait(30.0) and sim.shutter_pulses == 1


@pytest.mark.slow
def test_another_device_on_the_port_is_a_one_line_error() -> None:
    with StackShotSimulator() as other, pytest.raises(DeviceNotFoundError, match="no WeMacro"):
        WeMacroRail(other.path, wakeup_s=0.2, timeout_s=0.3)


def test_a_fresh_count_is_no_reference_until_accepted_or_zeroed(rail: WeMacroRail) -> None:
    """Counted from 0 at every opening: sessions need the user's word (--accept-position)."""
    assert "counted from where the rail stood" in (rail.capabilities.unreferenced or "")
    rail.accept_position(1500.0)  # resuming: "it still stands where frame N was shot"
    assert rail.position == 1500.0 and rail.capabilities.unreferenced is None
    rail.zero()
    assert rail.position == 0.0


def test_a_rail_that_cannot_home_is_not_told_to(rail: WeMacroRail) -> None:
    """`rig shoot` on a WeMacro said 'home it first (--home)', and --home then failed with
    'cannot home (no homing cycle configured)'."""
    from rig.devices import establish_reference

    with pytest.raises(MotionError) as info:
        establish_reference(rail, home=False, accept=False, left=None, units="um")
    assert "--home" not in str(info.value)
    assert "take the current position as the reference with --accept-position" in str(info.value)
    with pytest.raises(MotionError) as info:
        establish_reference(rail, home=False, accept=False, left=RailLeft(800.0, 3), units="um")
    assert "--home" not in str(info.value) and "resume with --accept-position" in str(info.value)


@pytest.mark.slow
def test_a_move_that_overruns_its_time_is_stopped_not_left_running() -> None:
    """A carriage slower than ``min_speed`` went on to the old target after the driver gave up
    on it, and its end-of-move reply was then taken for the next move's."""
    with WeMacroSimulator(time_scale=1.0, speed_mm_s=1.5) as sim:
        rail = WeMacroRail(sim.path, wakeup_s=0.5, timeout_s=0.3, min_speed_mm_s=3.0)
        try:
            with pytest.raises(MotionError, match="so it was stopped; the position is unknown"):
                rail.move_to(3000.0)  # 2 s at 1.5 mm/s; 1.3 s allowed
            deadline = time.monotonic() + 2.0
            while sim.carriage.moving and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not sim.carriage.moving
        finally:
            rail.close()
