"""The exact bytes the GRBL driver sends for each call, read from the pty's master side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rig.rails import open_focuser
from rig.rails.base import MoveStoppedError
from rig.rails.grbl import GrblRail
from rig.sim.grbl import GrblSimulator
from tests.rails import accepted, act_when, lines_sent

POLLS = b"?"
"""Status polls: real-time bytes between the command lines."""


@pytest.fixture
def sim() -> Iterator[GrblSimulator]:
    with GrblSimulator(time_scale=20.0, settings={24: 200.0, 25: 2000.0}) as simulator:
        yield simulator


@pytest.fixture
def rail(sim: GrblSimulator) -> Iterator[GrblRail]:
    """The rail, its position accepted: the board restarted as the port opened, locked."""
    with accepted(sim, GrblRail, "&feed=5mm/s") as focuser:
        yield focuser


def test_connection_handshake_bytes(sim: GrblSimulator) -> None:
    rail = open_focuser(sim.url + "&feed=5mm/s")
    assert isinstance(rail, GrblRail)
    try:
        received = bytes(sim.received)
        # Wake-up, $G to synchronise (its [GC:] reply marks the end of stale output), then $$.
        assert received.startswith(b"\r\n\r\n$G\n")
        assert received.replace(b"?", b"").endswith(b"$G\n$$\n")
        assert b"$X" not in received and b"\x18" not in received  # the lock is left alone
        assert rail.settings[110] == 600.0 and rail.version == "1.1h"
        mark = len(sim.received)
        rail.accept_position()  # the user vouches for the position: that is $X
        assert lines_sent(sim, mark, drop=POLLS) == [b"$X", b""]
        assert sim.state == "Idle"
    finally:
        rail.close()


def test_move_to_sends_absolute_g1_then_dwell_sync(sim: GrblSimulator, rail: GrblRail) -> None:
    mark = len(sim.received)
    rail.move_to(1500.0)
    assert lines_sent(sim, mark, drop=POLLS) == [b"G21 G90 G1 X1.5000 F300.0", b"G4 P0.01", b""]
    assert b"?" in bytes(sim.received[mark:])  # motion end confirmed by status polling


def test_move_down_with_backlash_overshoots_then_returns(sim: GrblSimulator) -> None:
    with accepted(sim, GrblRail, "&backlash=50um&axis=Z&feed=300mm/min") as rail:
        rail.move_to(1000.0)
        mark = len(sim.received)
        rail.move_to(500.0)
        assert lines_sent(sim, mark, drop=POLLS) == [
            b"G21 G90 G1 Z0.4500 F300.0",
            b"G4 P0.01",
            b"G21 G90 G1 Z0.5000 F300.0",
            b"G4 P0.01",
            b"",
        ]


@pytest.mark.slow
def test_jog_home_and_unlock_bytes(sim: GrblSimulator, rail: GrblRail) -> None:
    mark = len(sim.received)
    rail.jog(-250.0)
    assert lines_sent(sim, mark, drop=POLLS) == [b"$J=G21 G91 X-0.2500 F300.0", b""]
    mark = len(sim.received)
    rail.home()
    # $I first: a stock build lists no single-axis homing (no H in OPT), so $H, not $HX.
    assert lines_sent(sim, mark, drop=POLLS) == [b"$I", b"$H", b""]
    mark = len(sim.received)
    rail.unlock()
    assert lines_sent(sim, mark, drop=POLLS) == [b"$X", b""]


@pytest.mark.parametrize(
    ("motion", "last_line", "state", "expected"),
    [
        # feed hold, then reset
        ("move_to", b"G4 P0.01\n", "Run", b"G21 G90 G1 X40.0000 F30.0\nG4 P0.01\n!\x18"),
        ("jog", b"$J=", "Jog", b"$J=G21 G91 X40.0000 F30.0\n\x85"),  # a jog: only jog cancel
    ],
    ids=["move_to", "jog"],
)
def test_stop_bytes(
    sim: GrblSimulator, motion: str, last_line: bytes, state: str, expected: bytes
) -> None:
    """The stop lands once the motion's last line was sent and the board moves: the move lasts
    80 s simulated (4 s real at 20x), so the stop lands long before its end."""
    with accepted(sim, GrblRail, "&feed=30mm/min") as rail:
        mark = len(sim.received)
        stopped = act_when(
            lambda: last_line in sim.received[mark:] and sim.state == state, rail.stop
        )
        with pytest.raises(MoveStoppedError):
            getattr(rail, motion)(40_000.0)
        assert stopped.wait(10.0)
        tail = bytes(sim.received[mark:]).replace(b"?", b"")
        assert tail == expected
