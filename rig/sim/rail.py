"""``sim://``: an in-process focus rail that moves at a realistic speed.

No port, no controller: try a shot plan, the demo or the CLI without hardware. Moves follow a
trapezoidal profile (``speed``, ``accel``), take real time (scaled by ``time_scale``), can be
stopped from another thread, and every straight motion is recorded in :attr:`SimulatedRail.moves`
so the approach direction of each target can be checked.

URL options (besides the shared ``backlash``, ``approach``, ``settle``, ``min``, ``max``):
``speed`` (``2mm/s``), ``accel`` (``50mm/s2``), ``position`` (start, ``0mm``), ``home``
(where homing ends, ``0mm``), ``step`` (motor resolution, ``0um`` = continuous),
``time_scale`` (``1``; ``10`` runs ten times faster than real time).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from rig.rails.base import MoveStoppedError, Rail, RailOptions
from rig.rails.url import DeviceURL, URLError, rail_options
from rig.sim.motion import Trapezoid
from rig.units import format_length, parse_speed, parse_um


@dataclass(frozen=True)
class Motion:
    """One straight motion of a simulated carriage, in micrometres."""

    start: float
    end: float
    kind: str = "move"

    @property
    def direction(self) -> int:
        return (self.end > self.start) - (self.end < self.start)


def _parse_accel(text: str) -> float:
    """``50mm/s2`` (also ``/s^2``, ``/s²``) in mm/s²."""
    for suffix in ("/s2", "/s^2", "/s²"):
        if text.endswith(suffix):
            value = parse_um(text[: -len(suffix)]) / 1000.0
            if value > 0:
                return value
    raise URLError(f"cannot read accel={text!r}: write e.g. accel=50mm/s2")


class SimulatedRail(Rail):
    """A rail that exists only in memory but moves like a real one."""

    def __init__(
        self,
        options: RailOptions | None = None,
        *,
        speed_mm_s: float = 2.0,
        accel_mm_s2: float = 50.0,
        position_um: float = 0.0,
        home_um: float = 0.0,
        step_um: float = 0.0,
        time_scale: float = 1.0,
        name: str = "sim://",
    ) -> None:
        super().__init__(name, options or RailOptions())
        if speed_mm_s <= 0 or accel_mm_s2 <= 0 or time_scale <= 0:
            raise URLError(f"{name}: speed, accel and time_scale must be positive")
        self.speed_mm_s = speed_mm_s
        self.accel_mm_s2 = accel_mm_s2
        self.home_um = home_um
        self.step_um = step_um
        self.time_scale = time_scale
        self._pos = self._quantize(position_um)
        self._lock = threading.Lock()
        self._halt_event = threading.Event()
        self._homed = False
        self.moves: list[Motion] = []
        """Every straight motion made, oldest first."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SimulatedRail:
        """Build from ``sim://?speed=2mm/s&backlash=20um...``; kwargs override."""
        parsed = DeviceURL.parse(url)
        options = rail_options(parsed, **kwargs)
        speed = parsed.take("speed")
        accel = parsed.take("accel")
        settings: dict[str, Any] = {
            "speed_mm_s": parse_speed(speed) / 60.0 if speed else 2.0,
            "accel_mm_s2": _parse_accel(accel) if accel else 50.0,
            "position_um": parse_um(parsed.take("position") or "0um"),
            "home_um": parse_um(parsed.take("home") or "0um"),
            "step_um": parse_um(parsed.take("step") or "0um"),
            "time_scale": parsed.take_float("time_scale", 1.0),
        }
        parsed.finish()
        settings.update({k: v for k, v in kwargs.items() if k in settings})
        return cls(options, name=url, **settings)

    def _quantize(self, um: float) -> float:
        return round(um / self.step_um) * self.step_um if self.step_um > 0 else um

    # -- Rail primitives ----------------------------------------------------------------------

    def _read_position(self) -> float:
        with self._lock:
            return self._pos

    _can_home = True
    _absolute = True

    @property
    def _resolution_um(self) -> float:
        return self.step_um

    def _move_absolute(self, target_um: float) -> None:
        self._travel(self._quantize(target_um), "move")

    def _set_position(self, position_um: float) -> None:
        with self._lock:
            self._pos = self._quantize(position_um)

    def _home(self) -> None:
        self._travel(self._quantize(self.home_um), "home")
        self._homed = True

    def _halt(self) -> None:
        self._halt_event.set()

    def _close(self) -> None:
        self._halt_event.set()

    # -- motion -------------------------------------------------------------------------------

    def _travel(self, target: float, kind: str) -> None:
        self._halt_event.clear()
        self._raise_if_stopped_before_moving()
        start = self._read_position()
        sign = 1.0 if target >= start else -1.0
        profile = Trapezoid(abs(target - start) / 1000.0, self.speed_mm_s, self.accel_mm_s2)
        began = time.monotonic()
        elapsed = 0.0
        while elapsed < profile.duration:
            if self._halt_event.wait(min(0.01, (profile.duration - elapsed) / self.time_scale)):
                self._brake(start, sign, profile, (time.monotonic() - began) * self.time_scale)
                self.moves.append(Motion(start, self._read_position(), kind))
                raise MoveStoppedError(
                    f"{self.name}: stopped at {format_length(self._read_position())} on the way "
                    f"to {format_length(target)}"
                )
            elapsed = (time.monotonic() - began) * self.time_scale
            with self._lock:
                self._pos = start + sign * profile.distance_at(elapsed) * 1000.0
        with self._lock:
            self._pos = target
        if target != start:
            self.moves.append(Motion(start, target, kind))

    def _brake(self, start: float, sign: float, profile: Trapezoid, t: float) -> None:
        """Decelerate from the speed at time ``t`` to rest (a real carriage cannot stop dead)."""
        speed = profile.speed_at(t)
        here = profile.distance_at(t)
        brake = Trapezoid(
            min(Trapezoid.braking_distance(speed, self.accel_mm_s2), profile.distance - here),
            max(speed, 1e-9),
            self.accel_mm_s2,
            v0=speed,
        )
        time.sleep(brake.duration / self.time_scale)
        with self._lock:
            self._pos = self._quantize(start + sign * (here + brake.distance) * 1000.0)
