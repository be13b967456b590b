"""The Marlin rail driver against the Marlin responder on a real pseudo-terminal.

These tests use a board built with Marlin's emergency parser (moves wait with M400); the stock
build without it, short-move merging and soft endstops are in test_marlin_quirks.py. The board
boots at 0 wherever the carriage stands (10 mm from its minimum end).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest import MonkeyPatch

from rig.errors import MotionError, RigError
from rig.rails.base import ConnectionLostError, MoveStoppedError
from rig.rails.marlin import MarlinRail
from rig.sim.marlin import MarlinConfig, MarlinSimulator
from tests.rails import act_when, connected, lines_sent


@pytest.fixture
def sim() -> Iterator[MarlinSimulator]:
    with MarlinSimulator(
        MarlinConfig(busy_interval=0.5, emergency_parser=True), time_scale=10.0
    ) as simulator:
        yield simulator


def test_connects_through_the_boot_chatter(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        assert rail.firmware.startswith("Marlin 2.1.2.1")
        assert rail.position == 0.0 and rail.steps_per_mm == 400.0 and rail.emergency_parser
        assert bytes(sim.received).endswith(b"M115\nG21\nM84 S0\nM92\nM211\nM114\nM114\n")
        assert "restarted when its port was opened" in (rail.capabilities.unreferenced or "")


@pytest.mark.slow
def test_move_bytes_and_arrival(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail, "&feed=5mm/s") as rail:
        mark = len(sim.received)
        rail.move_to(12_500.0)
        # M114 first: the rail reads where it starts (backlash needs the direction of travel).
        assert lines_sent(sim, mark) == [
            b"M114",
            b"G90",
            b"G1 X12.5000 F300.0",
            b"M400",
            b"M114",
            b"",
        ]
        assert rail.position == 12_500.0
        assert sim.logical_position[0] == pytest.approx(12.5)


@pytest.mark.slow
def test_backlash_and_busy_lines_during_a_long_wait(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail, "&backlash=30um&feed=20mm/min") as rail:
        rail.timeout_s = 1.5  # once connected: a stall while connecting is not what is tested
        # 12 mm at 1/3 mm/s is 36 s simulated (3.6 s real), longer than the 1.5 s of silence
        # allowed: it completes only because "busy:" lines (every 50 ms real) keep it alive.
        began = time.monotonic()
        rail.move_to(12_000.0)
        assert time.monotonic() - began > rail.timeout_s  # the move outlasted the silence
        rail.move_to(9_000.0)  # 3 mm, downwards: overshoot 30 um below, then up
        assert sim.motion_log[-2][1][0] == pytest.approx(10 + 8.97)  # physical: booted at 10 mm
        assert sim.motion_log[-1][1][0] == pytest.approx(10 + 9.0)
        assert sim.motion_log[-1][1][0] > sim.motion_log[-1][0][0]


@pytest.mark.slow
def test_without_busy_lines_a_long_silence_is_an_error() -> None:
    with (
        MarlinSimulator(
            MarlinConfig(busy_interval=100.0, emergency_parser=True), time_scale=10.0
        ) as quiet,
        connected(quiet, MarlinRail, "&feed=30mm/min") as rail,
        pytest.raises(RigError, match="stopped answering"),
    ):
        rail.timeout_s = 1.0  # once connected: less than the 2.4 s real the move takes
        rail.move_to(12_000.0)


def test_jog_uses_relative_mode_and_restores_absolute(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        mark = len(sim.received)
        rail.jog(-500.0)
        assert lines_sent(sim, mark)[:5] == [
            b"M114",
            b"G91",
            b"G1 X-0.5000 F600.0",
            b"G90",
            b"M400",
        ]
        assert rail.position == pytest.approx(-500.0)


def test_home_with_g28(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        assert not rail.capabilities.absolute
        mark = len(sim.received)
        rail.home()
        assert lines_sent(sim, mark)[0] == b"G28 X"
        assert rail.position == 0.0 and rail.capabilities.absolute


def test_stop_is_m410_and_keeps_the_position(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail, "&feed=2mm/s") as rail:
        # Stopped while the driver waits for the move's M400, once past 2 mm (M114 prints
        # hundredths of a mm, and the move back to 1 mm below must not be under Marlin's
        # smallest move).
        mark = len(sim.received)
        halted = act_when(
            lambda: b"M400" in sim.received[mark:] and sim.logical_position[0] >= 2.0, rail.stop
        )
        with pytest.raises(MoveStoppedError, match="stopped at"):
            rail.move_to(150_000.0)  # 75 s simulated, 7.5 s real
        assert halted.wait(10.0)
        stopped = rail.position
        assert 0.0 < stopped < 150_000.0
        assert b"M410\n" in bytes(sim.received)
        assert sim.logical_position[0] == pytest.approx(stopped / 1000.0, abs=0.01)
        rail.move_to(1_000.0)
        assert rail.position == 1_000.0


@pytest.mark.slow
def test_soft_endstop_clamping_is_reported() -> None:
    with (
        MarlinSimulator(MarlinConfig(travel_mm=12.0), time_scale=10.0) as short,
        connected(short, MarlinRail) as rail,
    ):
        rail.home()
        # The host does not know these limits (no M211 answer read): the clamp shows on arrival.
        rail._soft_endstops = None
        with pytest.raises(MotionError, match=r"ended at 12 mm.*soft endstops"):
            rail.move_to(15_000.0)


def test_unknown_and_echo_lines_are_tolerated(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        assert rail.send("M999") == ['echo:Unknown command: "M999"']
        assert rail.send("$G") == [
            'echo:Unknown command: "$G"'
        ]  # a GRBL command, as Marlin sees it
        sim.inject(b"echo:SD card ok\n\xfe\xffnoise\nbusy: processing\n")
        rail.move_to(11_000.0)
        assert rail.position == 11_000.0


@pytest.mark.slow
def test_m112_halts_until_reset(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail) as rail:
        rail.emergency_stop()
        # Whether or not the driver has read the board's "Printer halted" yet, the move is
        # refused and the message says to reset the board...
        with pytest.raises(RigError, match=r"halted.*reset"):
            rail.move_to(11_000.0)
        # ...and from then on it knows, and refuses before sending anything.
        with pytest.raises(RigError, match=r"is halted.*reset"):
            rail.move_to(11_000.0)
        rail.reconnect()  # reopening resets the board
        rail.home()
        rail.move_to(1_000.0)
        assert rail.position == 1_000.0


@pytest.mark.slow
def test_disconnect_mid_move_then_reconnect(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail, "&feed=2mm/s") as rail:
        mark = len(sim.received)
        cut = act_when(lambda: b"M400" in sim.received[mark:], sim.disconnect)  # mid-move
        with pytest.raises(ConnectionLostError) as info:
            rail.move_to(100_000.0)  # 50 s simulated, 5 s real
        assert cut.wait(10.0)
        assert sim.path in str(info.value)
        sim.replug()
        rail.reconnect()
        assert not rail.capabilities.absolute  # a reset board must be homed again
        rail.home()
        rail.move_to(2_000.0)
        assert rail.position == 2_000.0


def test_a_restart_during_the_session_stops_the_next_move(sim: MarlinSimulator) -> None:
    """A power dip or watchdog reset: Marlin prints ``start`` and counts from 0 where it is."""
    with connected(sim, MarlinRail) as rail:
        rail.accept_position()
        rail.move_to(5_000.0)
        sim.power_cycle()
        deadline = time.monotonic() + 30.0  # only bounds a hang
        while rail.capabilities.unreferenced is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "restarted" in (rail.capabilities.unreferenced or "")
        with pytest.raises(MotionError, match=r"position unknown \(the board restarted"):
            rail.move_to(6_000.0)
        with pytest.raises(MotionError, match="position unknown"):
            rail.jog(1_000.0)
        assert sim.position[0] == pytest.approx(15.0)  # nothing moved: 10 mm + 5 mm
        rail.accept_position(5_000.0)  # nothing moved since: it stands at 5 mm
        rail.move_to(6_000.0)
        assert sim.position[0] == pytest.approx(16.0)


def test_a_restart_while_a_move_is_awaited_is_said_at_once(sim: MarlinSimulator) -> None:
    with connected(sim, MarlinRail, "&timeout=30&feed=2mm/s") as rail:
        rail.accept_position()
        mark = len(sim.received)
        cycled: list[float] = []
        act_when(  # once the move's M400 is awaited
            lambda: b"M400" in sim.received[mark:],
            lambda: (cycled.append(time.monotonic()), sim.power_cycle()),
        )
        with pytest.raises(MotionError, match="restarted"):
            rail.move_to(100_000.0)  # 50 s simulated, 5 s real
        assert time.monotonic() - cycled[0] < 10.0  # not the 30 s of silence allowed


def test_a_restart_the_moment_the_line_is_out_is_said_as_a_restart(
    sim: MarlinSimulator, monkeypatch: MonkeyPatch
) -> None:
    """The board takes the move's ``M400`` and restarts, and the driver's reader counts the
    boot, all before the sending thread runs again (a loaded machine; seen once in CI): the
    fresh board never answers the lost ``M400``, and the wait still says "restarted" at
    once, not "stopped answering" after the silence allowed."""
    with connected(sim, MarlinRail, "&timeout=5&feed=2mm/s") as rail:
        rail.accept_position()
        link = rail._require_link()
        send_line = link.send_line
        mark = len(sim.received)

        def restart_once_taken(line: str) -> None:
            send_line(line)
            if line != "M400":
                return
            deadline = time.monotonic() + 30.0  # only bounds a hang
            while b"M400" not in sim.received[mark:] and time.monotonic() < deadline:
                time.sleep(0.001)
            sim.power_cycle()
            while rail.capabilities.unreferenced is None and time.monotonic() < deadline:
                time.sleep(0.005)  # until the driver has read the board's ``start``

        monkeypatch.setattr(link, "send_line", restart_once_taken)
        started = time.monotonic()
        with pytest.raises(MotionError, match="restarted"):
            rail.move_to(100_000.0)  # 50 s simulated, 5 s real
        assert time.monotonic() - started < 4.0  # not the 5 s of silence allowed


def test_a_restart_between_a_moves_commands_is_said_as_a_restart(
    sim: MarlinSimulator, monkeypatch: MonkeyPatch
) -> None:
    """The board restarts after the move's ``G1`` and before its ``M400`` is sent: the fresh
    board answers the ``M400`` and reports 0, as if the move had simply ended there."""
    with connected(sim, MarlinRail) as rail:
        rail.accept_position()
        send = rail._command

        def restart_before_the_wait(line: str, **options: Any) -> list[str]:
            if line == "M400":
                sim.power_cycle()
                deadline = time.monotonic() + 30.0  # only bounds a hang
                while rail.capabilities.unreferenced is None and time.monotonic() < deadline:
                    time.sleep(0.005)  # until the driver has read the board's ``start``
            return send(line, **options)

        monkeypatch.setattr(rail, "_command", restart_before_the_wait)
        with pytest.raises(MotionError, match=r"restarted during the move to 2 mm.*home the rail"):
            rail.move_to(2_000.0)
        monkeypatch.undo()
        with pytest.raises(MotionError, match="position unknown"):
            rail.move_to(0.0)
