"""The StackShot driver against the StackShot simulator on a real pseudo-terminal, byte by byte."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
import serial

from rig.errors import DeviceNotFoundError, MotionError
from rig.rails import stackshot_protocol as proto
from rig.rails.base import MoveStoppedError
from rig.rails.stackshot import StackShotError, StackShotRail
from rig.sim.stackshot import StackShotSimulator
from rig.sim.wemacro import WeMacroSimulator
from tests.rails import move_cut_short


@pytest.fixture
def sim() -> Iterator[StackShotSimulator]:
    with StackShotSimulator(time_scale=20.0) as simulator:
        yield simulator


def test_request_frames_are_the_documented_bytes() -> None:
    move = proto.request(
        proto.Command.RAIL_MOVE, proto.Action.WRITE, proto.move_data(proto.Direction.BACK, 0.25)
    )
    assert move == bytes([0x55, 0x10, 0x00, 0x01, 0x07, 0x01, 0x01, 0x00]) + struct.pack(
        "<f", 0.25
    ) + bytes([0x00])
    status = proto.request(proto.Command.RAIL_STATUS, proto.Action.READ)
    assert status == bytes([0x55, 0x10, 0x05, 0x00, 0x00, 0x00])


def test_identifies_and_counts_from_power_up_not_from_the_carriage(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    assert rail.firmware.startswith("StackShot")
    assert sim.carriage.position_mm == pytest.approx(37.2)
    assert rail.position == pytest.approx(0.0, abs=0.01)
    assert not rail.capabilities.absolute and not rail.capabilities.can_home
    # `rig rail home` and --home said only "cannot home (no homing cycle configured)"
    refusal = r"cannot home \(.*\): take where it stands as the reference with --accept-position"
    with pytest.raises(MotionError, match=refusal):
        rail.home()


def test_moves_are_relative_frames_that_land_on_the_target(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    rail.move_to(1500.0)
    assert rail.position == pytest.approx(1500.0, abs=0.5)
    assert sim.carriage.position_mm == pytest.approx(37.2 + 1.5, abs=1e-3)
    moves = [proto.parse_move(d) for c, _, d in sim.requests if c == proto.Command.RAIL_MOVE]
    assert moves[-1][:3] == (proto.Direction.FORWARD, proto.Units.METRIC, False)
    assert moves[-1][3] == pytest.approx(1.5)
    rail.move_to(1000.0)
    backward = [proto.parse_move(d) for c, _, d in sim.requests if c == proto.Command.RAIL_MOVE]
    assert backward[-1][0] == proto.Direction.BACK
    assert rail.position == pytest.approx(1000.0, abs=0.5)


def test_a_sub_micrometre_step_is_sent(sim: StackShotSimulator, rail: StackShotRail) -> None:
    """At high magnification a step can be under a micrometre: it is sent as a move, not
    dropped as nothing."""
    rail.move_to(1000.0)
    rail.move_to(1000.5)
    moves = [proto.parse_move(d) for c, _, d in sim.requests if c == proto.Command.RAIL_MOVE]
    assert moves[-1][0] == proto.Direction.FORWARD
    assert moves[-1][3] == pytest.approx(0.0005, abs=1e-6)
    assert rail.position == pytest.approx(1000.5, abs=0.1)


def test_a_controller_that_restarted_between_moves_is_not_moved_from_its_new_zero(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    """The controller's own supply dipped while its USB chip kept the port: its counter read
    0 again, and the next move of 0.1 mm went 1.1 mm, from where the carriage stood."""
    rail.accept_position()
    rail.move_to(1000.0)
    rail.move_to(-500.0)  # a keypad jog, or a move, that moves the counter is no restart
    rail.move_to(1000.0)
    carriage = sim.carriage.position_mm
    sim.power_cycle()
    with pytest.raises(MotionError, match=r"counter reads 0 where the last move left it at 1 mm"):
        rail.move_to(1100.0)
    assert sim.carriage.position_mm == pytest.approx(carriage)
    assert rail.capabilities.unreferenced is not None
    rail.accept_position(1000.0)  # as `rig resume --accept-position` does
    rail.move_to(1100.0)
    assert sim.carriage.position_mm == pytest.approx(carriage + 0.1, abs=1e-3)


def test_backlash_approach_is_done_by_the_host(sim: StackShotSimulator) -> None:
    rail = StackShotRail.from_url(sim.url + "?backlash=100um")
    rail.move_to(2000.0)
    rail.move_to(1000.0)
    ends = [round(end - 37.2, 3) for _, end in sim.carriage.log]
    assert ends[-2:] == [0.9, 1.0]  # past the target, then up onto it
    rail.close()


@pytest.mark.slow
def test_busy_answers_are_retried_then_reported(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    sim.busy_next(3)
    rail.move_to(500.0)
    assert rail.position == pytest.approx(500.0, abs=0.5)
    rail.busy_s = 0.3
    sim.busy_next(10_000)
    with pytest.raises(StackShotError, match="refused \\(BUSY\\)"):
        rail.move_to(800.0)


def test_a_stop_on_the_keypad_is_an_error_not_a_short_move(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    move_cut_short(  # 50 s simulated, 2.5 s real: time to press while it moves
        rail, sim, 100_000.0, sim.press_stop_button, MotionError, "stopped on the controller itself"
    )
    assert sim.carriage.position_mm < 37.2 + 100.0
    # The keypad's stop bit stays set until the next move: a pulse fired after it is no stop.
    sim.on_shutter = None
    rail.fire_shutter()
    assert sim.shutter_pulses == 1


def test_stop_from_another_thread_halts_the_carriage(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    move_cut_short(rail, sim, 100_000.0, rail.stop, MoveStoppedError)  # 50 s simulated, 2.5 s real
    here = sim.carriage.position_mm
    assert here < 37.2 + 100.0
    time.sleep(0.1)
    assert sim.carriage.position_mm == here
    assert any(c == proto.Command.RAIL_STOP for c, _, _ in sim.requests)


def test_shutter_cable_fires_once_and_waits_for_the_pulse(
    sim: StackShotSimulator, rail: StackShotRail
) -> None:
    fired: list[float] = []
    sim.on_shutter = lambda: fired.append(time.monotonic())
    rail.fire_shutter()
    assert sim.shutter_pulses == 1 and len(fired) == 1
    count, pulse, pause = proto.parse_shutter(
        next(d for c, _, d in sim.requests if c == proto.Command.RAIL_SHUTTER_FIRE)
    )
    assert (count, pause) == (1, 0.0) and pulse == pytest.approx(0.2)


def test_zero_makes_here_position_zero(sim: StackShotSimulator, rail: StackShotRail) -> None:
    assert isinstance(rail, StackShotRail)  # what open_focuser makes of stackshot://
    rail.move_to(700.0)
    rail.zero()
    assert rail.position == pytest.approx(0.0, abs=0.01)


def test_simulator_skips_noise_before_a_request_and_refuses_unknown_commands(
    sim: StackShotSimulator,
) -> None:
    port = serial.serial_for_url(sim.path, baudrate=proto.BAUD, timeout=1.0)
    port.write(b"\x13\x37" + proto.request(proto.Command.RAIL_STATUS, proto.Action.READ))
    assert port.read(10) == proto.answer(proto.Command.RAIL_STATUS, proto.Action.RSP_OK, bytes(4))
    port.write(proto.request(0x1234, proto.Action.READ))
    assert port.read(6) == proto.answer(0x1234, proto.Action.UNSUPPORTED_CMD)
    port.close()


@pytest.mark.slow
def test_another_device_on_the_port_is_a_one_line_error() -> None:
    with WeMacroSimulator() as other, pytest.raises(DeviceNotFoundError, match="no StackShot"):
        StackShotRail(other.path, timeout_s=0.3)


def test_a_stop_just_before_the_move_is_sent_is_not_lost(sim: StackShotSimulator) -> None:
    """A stop that came after the move's own check but before its frame was sent went to an
    idle controller, and its flag was then cleared: the whole move ran."""
    rail = StackShotRail(sim.path)
    try:
        read = rail._read_position
        reads: list[int] = []

        def read_then_stop() -> float:
            here = read()
            reads.append(1)
            if len(reads) == 2:  # move_to's own read, then the move's: the stop lands now
                rail.stop()
            return here

        rail._read_position = read_then_stop  # type: ignore[method-assign]
        with pytest.raises(MoveStoppedError, match="stopped before moving"):
            rail.move_to(20_000.0)
        assert not any(c == proto.Command.RAIL_MOVE for c, _, _ in sim.requests)
        assert sim.carriage.position_mm == pytest.approx(37.2)
    finally:
        rail.close()


def test_a_move_answered_busy_is_worked_out_again_from_where_the_carriage_then_is(
    sim: StackShotSimulator,
) -> None:
    """Someone jogging from the keypad (or a move whose answer was lost): the retried frame
    carried the first distance, and the carriage overshot by the jog."""
    rail = StackShotRail(sim.path)
    try:
        rail.accept_position(0.0)
        start = sim.carriage.position_mm
        with sim._lock:
            sim.carriage.move_by(4.0)  # a 4 mm jog under way
        rail.move_to(1000.0)
        assert sim.carriage.position_mm - start == pytest.approx(1.0, abs=0.001)
        assert rail.position == pytest.approx(1000.0, abs=1.0)
    finally:
        rail.close()


def test_a_move_waits_for_a_running_carriage_before_taking_its_distance() -> None:
    """A position read while a keypad jog still ran gave a distance the jog then overran: the
    move went out once the jog had ended, and the carriage overshot by what it ran after the
    read (seen under load, where the answer and the next request are late)."""

    class LateAnswers(StackShotSimulator):
        reads = 0

        def _position(self, command: int, action: int, data: bytes) -> None:
            units = proto.Units(data[0])
            mm = self.carriage.position_mm - self._zero_mm  # where it is when asked...
            self.reads += 1
            while self.reads >= 2 and self.carriage.moving:  # ...answered once the jog is over
                time.sleep(0.005)
            self._reply(
                command, proto.Action.RSP_OK, proto.position_data(units, mm * self._per_mm(units))
            )

        _HANDLERS: ClassVar = {
            **StackShotSimulator._HANDLERS,
            proto.Command.RAIL_POSITION_CURRENT: _position,
        }

    with LateAnswers(time_scale=20.0) as sim:
        rail = StackShotRail(sim.path)
        try:
            rail.accept_position(0.0)
            start = sim.carriage.position_mm
            sim.reads = 0  # from the move's first read: at once, then late
            with sim._lock:
                sim.carriage.move_by(4.0)  # a 4 mm jog under way
            rail.move_to(1000.0)
            assert sim.carriage.position_mm - start == pytest.approx(1.0, abs=0.001)
        finally:
            rail.close()


def test_a_3x_answers_with_its_axis_in_the_high_nibble(monkeypatch: pytest.MonkeyPatch) -> None:
    """InteractiveGraphicsLab/StackShot3X_API_for_Python masks ``res[3] & 0x0F``: a 3X whose
    rail is on Y answers RSP_OK as 0x12."""

    class ThreeXOnY(StackShotSimulator):
        def _reply(self, command: int, action: int, data: bytes = b"") -> None:
            self.write_bytes(proto.answer(command, action | (1 << 4), data))

    with ThreeXOnY(time_scale=20.0) as sim:
        rail = StackShotRail(sim.path, timeout_s=0.5, busy_s=0.5)
        try:
            assert rail.firmware.startswith("StackShot")
            rail.accept_position(0.0)
            rail.move_to(500.0)
            assert rail.position == pytest.approx(500.0, abs=1.0)
        finally:
            rail.close()


def test_a_session_needs_a_reference_and_a_resume_can_give_the_last_frame_s_place(
    sim: StackShotSimulator,
) -> None:
    """The counter restarts at power-on, wherever the carriage stands, and there is no switch:
    a resume without --accept-position shot the next frame where the counter said, not where
    the last one was."""
    rail = StackShotRail(sim.path)
    try:
        problem = rail.capabilities.unreferenced
        assert problem is not None and "switched on or zeroed" in problem
        rail.accept_position(1500.0)  # rig resume --accept-position: the last frame's place
        assert rail.capabilities.unreferenced is None
        assert rail.position == pytest.approx(1500.0, abs=1.0)
        start = sim.carriage.position_mm
        rail.move_to(2000.0)
        assert sim.carriage.position_mm - start == pytest.approx(0.5, abs=0.001)
        rail.zero()
        assert rail.position == pytest.approx(0.0, abs=1.0)
    finally:
        rail.close()


@pytest.mark.parametrize(
    ("command", "data", "needle"),
    [
        (proto.Command.RAIL_POSITION_CURRENT, b"\x01", "1 of 5 position bytes"),
        (proto.Command.RAIL_POSITION_CURRENT, b"\x01" + struct.pack("<f", float("nan")), "nan"),
        (proto.Command.RAIL_STATUS, b"", "no status bytes"),
    ],
)
def test_a_well_framed_answer_with_garbled_data_is_the_drivers_error(
    sim: StackShotSimulator,
    rail: StackShotRail,
    monkeypatch: pytest.MonkeyPatch,
    command: proto.Command,
    data: bytes,
    needle: str,
) -> None:
    """A position answer short of its float, or an empty status answer, stopped the driver on
    the protocol's ValueError; a NaN position would have been moved from."""
    reply = sim._reply

    def garbled(answered: int, action: int, payload: bytes = b"") -> None:
        reply(answered, action, data if answered == command else payload)

    monkeypatch.setattr(sim, "_reply", garbled)
    with pytest.raises(StackShotError, match=rf"garbled answer to {command.name} \(.*{needle}"):
        rail.move_to(1000.0)
        rail.status_word()


def test_a_reversed_rail_moves_its_carriage_the_other_way_and_lands(
    sim: StackShotSimulator,
) -> None:
    """``?reverse=true`` (a rail mounted the other way round): positions grow as the carriage
    moves back, and a move still lands on its target."""
    rail = StackShotRail.from_url(sim.url + ("&" if "?" in sim.url else "?") + "reverse=true")
    try:
        rail.accept_position()
        start = sim.carriage.position_mm
        rail.move_to(1500.0)
        assert rail.position == pytest.approx(1500.0, abs=1.0)
        assert (sim.carriage.position_mm - start) * 1000 == pytest.approx(-1500.0, abs=1.0)
    finally:
        rail.close()
