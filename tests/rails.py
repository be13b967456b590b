"""Rail drivers opened on simulated controllers as a user opens them, by the device's URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from rig.rails import open_focuser
from rig.rails.base import Rail
from rig.sim.carriage import CarriageController
from rig.sim.ptyserial import PtyDevice

RailT = TypeVar("RailT", bound=Rail)


def connect(sim: PtyDevice, kind: type[RailT], options: str = "") -> RailT:
    """Open the driver for ``sim``'s URL with ``options`` added (``&feed=5mm/s``...)."""
    rail = open_focuser(sim.url + options)
    assert isinstance(rail, kind)
    return rail


@contextmanager
def connected(sim: PtyDevice, kind: type[RailT], options: str = "") -> Iterator[RailT]:
    """:func:`connect`, and close the rail when the block ends, even when a check in it fails."""
    rail = connect(sim, kind, options)
    try:
        yield rail
    finally:
        rail.close()


def lines_sent(sim: PtyDevice, since: int, drop: bytes = b"") -> list[bytes]:
    """The lines ``sim`` received after its first ``since`` bytes, without the bytes in ``drop``.

    The last item is what follows the last newline (``b""`` when the last line is complete).
    """
    return bytes(sim.received[since:]).translate(None, drop).split(b"\n")


@contextmanager
def accepted(sim: PtyDevice, kind: type[RailT], options: str = "") -> Iterator[RailT]:
    """:func:`connected`, then the carriage's place taken as the reference (``--accept-position``).

    A GRBL board with homing on restarts as its port opens and boots locked; accepting the
    position is how a user who placed the carriage by hand unlocks it (the driver sends ``$X``).
    """
    with connected(sim, kind, options) as rail:
        rail.accept_position()
        yield rail


def act_when(condition: Callable[[], bool], action: Callable[[], object]) -> threading.Event:
    """Run ``action`` on a daemon thread once ``condition`` holds (checked every millisecond,
    for at most 10 s); the event returned is set when it has run.

    A stop, a fault or a pulled cable acts on a state, not after a delay: one that comes
    before the move has started is ignored or cleared by the move itself, and on a loaded
    machine a fixed delay can come too early or too late.
    """
    acted = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + 10.0
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
        action()
        acted.set()

    threading.Thread(target=run, name="act_when", daemon=True).start()
    return acted


def move_cut_short(
    rail: Rail,
    sim: CarriageController,
    target: float,
    action: Callable[[], object],
    error: type[Exception],
    match: str | None = None,
) -> None:
    """Move ``rail`` to ``target``, far enough for ``action`` (a stop, a pulled cable) to come
    while ``sim``'s carriage moves: the move must end in ``error`` (its message matching
    ``match``), and ``action`` must have run."""
    acted = act_when(lambda: sim.carriage.moving, action)
    with pytest.raises(error, match=match):
        rail.move_to(target)
    assert acted.wait(10.0)


class _Chatter(PtyDevice):
    """A device that is no rail: it sends ``said`` whenever its port is opened."""

    def __init__(self, said: bytes) -> None:
        super().__init__("ttyOther")
        self.said = said

    def on_power_up(self) -> None:
        self.write_bytes(self.said)


@contextmanager
def chatter_on_open(said: bytes) -> Iterator[str]:
    """The path of a port whose device sends ``said`` when opened, and nothing else."""
    with _Chatter(said) as device:
        yield device.path
