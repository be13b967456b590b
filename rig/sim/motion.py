"""Trapezoidal motion profiles: how far a carriage has gone ``t`` seconds into a move.

The simulators (the GRBL controller on a pseudo-terminal and the in-process ``sim://`` rail)
share this model so that simulated moves take as long as real ones: accelerate at ``accel`` from
``v0`` towards ``vmax``, cruise, decelerate to rest exactly at ``distance``. A move too short to
reach ``vmax`` becomes a triangle. Everything is one-dimensional (distance along the path);
callers map it onto axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Trapezoid:
    """A move of ``distance`` (>= 0) starting at speed ``v0``, ending at rest.

    Units are whatever the caller uses consistently (the GRBL simulator uses mm and seconds).
    ``v0`` above ``vmax`` is allowed (a feed hold starts at the current speed and only brakes).
    """

    distance: float
    vmax: float
    accel: float
    v0: float = 0.0

    def __post_init__(self) -> None:
        if self.distance < 0 or self.vmax <= 0 or self.accel <= 0 or self.v0 < 0:
            raise ValueError(f"invalid trapezoid {self}")

    @property
    def _peak(self) -> float:
        # Highest speed reached: limited by vmax and by the room to brake before the end.
        a, d, v0 = self.accel, self.distance, self.v0
        reachable = math.sqrt(max(0.0, (2 * a * d + v0 * v0) / 2))
        return max(min(self.vmax, reachable), min(v0, math.sqrt(2 * a * d)))

    @property
    def _phases(self) -> tuple[float, float, float, float]:
        """(peak speed, accel time, cruise time, decel time)."""
        a, v0 = self.accel, self.v0
        vp = self._peak
        t1 = max(0.0, (vp - v0) / a)
        d1 = (v0 + vp) / 2 * t1
        t3 = vp / a
        d3 = vp * t3 / 2
        t2 = max(0.0, (self.distance - d1 - d3) / vp) if vp > 0 else 0.0
        return vp, t1, t2, t3

    @property
    def duration(self) -> float:
        """Seconds from start to rest."""
        if self.distance == 0:
            return 0.0
        _, t1, t2, t3 = self._phases
        return t1 + t2 + t3

    def distance_at(self, t: float) -> float:
        """Distance covered ``t`` seconds after the start (clamped to the move)."""
        if self.distance == 0 or t <= 0:
            return 0.0
        a, v0 = self.accel, self.v0
        vp, t1, t2, t3 = self._phases
        if t < t1:
            return v0 * t + a * t * t / 2
        d1 = (v0 + vp) / 2 * t1
        if t < t1 + t2:
            return d1 + vp * (t - t1)
        tau = min(t - t1 - t2, t3)
        return min(self.distance, d1 + vp * t2 + vp * tau - a * tau * tau / 2)

    def speed_at(self, t: float) -> float:
        """Speed ``t`` seconds after the start."""
        if self.distance == 0 or t < 0:
            return 0.0
        a, v0 = self.accel, self.v0
        vp, t1, t2, _ = self._phases
        if t < t1:
            return v0 + a * t
        if t < t1 + t2:
            return vp
        return max(0.0, vp - a * (t - t1 - t2))

    def time_at_distance(self, s: float) -> float:
        """First time at which ``s`` has been covered (``inf`` if never); bisection."""
        if s <= 0:
            return 0.0
        if s > self.distance:
            return math.inf
        lo, hi = 0.0, self.duration
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.distance_at(mid) < s:
                lo = mid
            else:
                hi = mid
        return hi

    @staticmethod
    def braking_distance(speed: float, accel: float) -> float:
        """Distance needed to stop from ``speed`` at ``accel``."""
        return speed * speed / (2 * accel)
