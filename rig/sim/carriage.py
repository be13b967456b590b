"""One simulated carriage on a lead screw: relative moves that take real time and can be stopped.

The StackShot and WeMacro simulators both drive a single axis by relative moves; this is that
axis. A move follows :class:`~rig.sim.motion.Trapezoid` (so it lasts as long as a real one,
scaled by ``time_scale``), :meth:`Carriage.stop` ends it where the carriage is, and every
completed or interrupted move is recorded in :attr:`Carriage.log` as ``(start, end)`` in mm.

:class:`CarriageController` is what the two controllers share around it: a pseudo-terminal
whose input collects in a buffer until a whole frame has arrived, one lock over the controller's
state, and a shutter cable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rig.sim.motion import Trapezoid
from rig.sim.ptyserial import PtyDevice


class Carriage:
    """A single axis in millimetres; thread-safe."""

    def __init__(
        self,
        *,
        position_mm: float = 0.0,
        speed_mm_s: float = 2.0,
        accel_mm_s2: float = 20.0,
        time_scale: float = 1.0,
    ) -> None:
        self.speed_mm_s = speed_mm_s
        self.accel_mm_s2 = accel_mm_s2
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._rest_mm = position_mm
        self._move: tuple[float, float, Trapezoid, float] | None = None  # start, sign, profile, t0
        self.log: list[tuple[float, float]] = []

    def _now(self) -> float:
        return time.monotonic() * self.time_scale

    def _settle(self) -> None:
        """Finish a move whose time is up (lock held)."""
        if self._move is None:
            return
        start, sign, profile, t0 = self._move
        if self._now() - t0 >= profile.duration:
            self._rest_mm = start + sign * profile.distance
            self.log.append((start, self._rest_mm))
            self._move = None

    @property
    def position_mm(self) -> float:
        """Where the carriage is now."""
        with self._lock:
            self._settle()
            if self._move is None:
                return self._rest_mm
            start, sign, profile, t0 = self._move
            return start + sign * profile.distance_at(self._now() - t0)

    @property
    def moving(self) -> bool:
        with self._lock:
            self._settle()
            return self._move is not None

    def move_by(self, delta_mm: float) -> None:
        """Start a relative move (the caller checks :attr:`moving` first)."""
        with self._lock:
            self._settle()
            start = self._rest_mm
            profile = Trapezoid(abs(delta_mm), self.speed_mm_s, self.accel_mm_s2)
            self._move = (start, 1.0 if delta_mm >= 0 else -1.0, profile, self._now())

    def seconds_left(self) -> float:
        """Wall-clock seconds until the current move ends (0 when at rest)."""
        with self._lock:
            self._settle()
            if self._move is None:
                return 0.0
            _, _, profile, t0 = self._move
            return max(0.0, (t0 + profile.duration - self._now()) / self.time_scale)

    def stop(self) -> bool:
        """End the current move where the carriage is; True if it was moving."""
        here = self.position_mm
        with self._lock:
            if self._move is None:
                return False
            self.log.append((self._move[0], here))
            self._rest_mm = here
            self._move = None
            return True


class CarriageController(PtyDevice):
    """A rail controller on a pseudo-terminal driving one :class:`Carriage` and a shutter cable.

    Parameters
    ----------
    name
        File name of the port's stable symlink.
    start_mm, speed_mm_s
        Where the carriage stands at power-up, and how fast it travels.
    time_scale
        How much faster than real time the carriage runs.
    reset_on_open
        Restart when a program opens the port.
    """

    def __init__(
        self,
        name: str,
        *,
        start_mm: float,
        speed_mm_s: float,
        time_scale: float,
        reset_on_open: bool,
    ) -> None:
        super().__init__(name, reset_on_open=reset_on_open)
        self.carriage = Carriage(position_mm=start_mm, speed_mm_s=speed_mm_s, time_scale=time_scale)
        self._buffer = bytearray()
        """Bytes received and not yet taken as a frame."""
        self._lock = threading.Lock()
        self.shutter_pulses = 0
        """Shutter pulses fired so far."""
        self.on_shutter: Callable[[], None] | None = None
        """Called (on the I/O thread) for every shutter pulse: a camera on the cable."""

    def _fire_shutter(self, count: int = 1) -> None:
        """Pulse the shutter cable ``count`` times."""
        self.shutter_pulses += count
        if self.on_shutter is not None:
            for _ in range(count):
                self.on_shutter()
