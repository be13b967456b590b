"""A small Marlin 2 responder on a pseudo-terminal, for trying and testing ``marlin://`` rails.

Far less detailed than the GRBL simulator, but it speaks the parts of Marlin a focus rail uses,
with Marlin's habits: a ``start`` banner and ``echo:`` chatter at boot, ``ok`` for each line,
moves (``G0``/``G1`` with ``G90``/``G91``, ``G20``/``G21``) that take real time (trapezoid per
move, sequential), ``M400`` that answers when motion is done and sends ``echo:busy: processing``
while waiting (host keepalive), ``M114`` (planned position; ``M114 R`` the live one),
``G28`` homing to the minimum end, ``M115``, ``M92``, ``echo:Unknown command:`` for the rest,
soft endstops that clamp targets to ``[0, travel]``, and the emergency parser: ``M410`` (quick
stop) and ``M112`` (halt until reset) act the moment they arrive.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from rig.sim.motion import Trapezoid
from rig.sim.ptyserial import PtyDevice

AXES = "XYZ"
Vec = tuple[float, float, float]


@dataclass
class _Move:
    start: Vec
    target: Vec
    profile: Trapezoid
    t0: float = math.nan

    def position(self, t: float) -> Vec:
        if math.isnan(self.t0) or self.profile.distance == 0:
            return self.start if math.isnan(self.t0) else self.target
        s = self.profile.distance_at(t - self.t0) / self.profile.distance
        return (
            self.start[0] + (self.target[0] - self.start[0]) * s,
            self.start[1] + (self.target[1] - self.start[1]) * s,
            self.start[2] + (self.target[2] - self.start[2]) * s,
        )


class MarlinSimulator(PtyDevice):
    """A Marlin 2.1 board driving a rail, served on a pseudo-terminal.

    Parameters
    ----------
    time_scale
        Simulated seconds per wall-clock second.
    travel_mm
        Soft endstops: targets are clamped to ``[0, travel_mm]`` on every axis.
    max_feed_mm_s, accel_mm_s2, homing_feed_mm_min, steps_per_mm
        Motion parameters shared by all axes.
    busy_interval
        Simulated seconds between ``echo:busy: processing`` lines during long waits.
    """

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        travel_mm: float = 200.0,
        max_feed_mm_s: float = 10.0,
        accel_mm_s2: float = 100.0,
        homing_feed_mm_min: float = 1200.0,
        steps_per_mm: float = 400.0,
        busy_interval: float = 2.0,
        reset_on_open: bool = True,
        start_position: Vec = (10.0, 0.0, 0.0),
    ) -> None:
        super().__init__("ttyMARLIN", reset_on_open=reset_on_open)
        self.time_scale = time_scale
        self.travel_mm = travel_mm
        self.max_feed_mm_s = max_feed_mm_s
        self.accel_mm_s2 = accel_mm_s2
        self.homing_feed_mm_min = homing_feed_mm_min
        self.steps_per_mm = steps_per_mm
        self.busy_interval = busy_interval
        self._lock = threading.Condition(threading.RLock())
        self._clock0 = time.monotonic()
        self._phys: Vec = start_position
        self._moves: deque[_Move] = deque()
        self._lines: deque[str] = deque()
        self._partial = bytearray()
        self._absolute = True
        self._inches = False
        self._feed = 1500.0
        self._halted = False
        self._runner: threading.Thread | None = None
        self.motion_log: list[tuple[Vec, Vec]] = []
        """``(start, end)`` of every completed or interrupted move (mm)."""

    @property
    def url(self) -> str:
        """A ready ``marlin://`` URL (no bootloader wait)."""
        return f"marlin://{self.path}?wakeup=0"

    def start(self) -> MarlinSimulator:
        super().start()
        self._runner = threading.Thread(target=self._run, name="marlin-sim", daemon=True)
        self._runner.start()
        return self

    def __enter__(self) -> MarlinSimulator:
        return self.start() if self._runner is None else self

    def close(self) -> None:
        self._quit.set()
        with self._lock:
            self._lock.notify_all()
        if self._runner is not None:
            self._runner.join(timeout=2.0)
        super().close()

    @property
    def position(self) -> Vec:
        """Live carriage position (mm)."""
        with self._lock:
            self._advance()
            return self._live()

    # -- time and motion ----------------------------------------------------------------------

    def _now(self) -> float:
        return (time.monotonic() - self._clock0) * self.time_scale

    def _live(self) -> Vec:
        return self._moves[0].position(self._now()) if self._moves else self._phys

    def _planned(self) -> Vec:
        return self._moves[-1].target if self._moves else self._phys

    def _advance(self) -> None:
        now = self._now()
        while self._moves:
            head = self._moves[0]
            if math.isnan(head.t0):
                head.t0 = now
            if head.t0 + head.profile.duration > now:
                return
            self._moves.popleft()
            self._phys = head.target
            self.motion_log.append((head.start, head.target))
            if self._moves:
                self._moves[0].t0 = head.t0 + head.profile.duration

    def _quick_stop(self) -> None:
        """M410: stop now, drop queued moves, position = where the carriage is."""
        self._advance()
        if self._moves:
            here = self._live()
            self.motion_log.append((self._moves[0].start, here))
            self._phys = here
        self._moves.clear()

    # -- power --------------------------------------------------------------------------------

    def on_power_up(self) -> None:
        with self._lock:
            self._quick_stop()
            self._lines.clear()
            self._partial.clear()
            self._halted = False
            self._absolute, self._inches = True, False
            for line in (
                "start",
                "echo:Marlin 2.1.2.1",
                "echo: Last Updated: 2023-07-13 | Author: (stackrig simulator)",
                "echo:Compiled: Jul 13 2023",
                "echo: Free Memory: 3405  PlannerBufferBytes: 1232",
            ):
                self.write(line + "\n")
            self._lock.notify_all()

    def on_power_down(self) -> None:
        with self._lock:
            self._quick_stop()
            self._lines.clear()

    # -- input --------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        with self._lock:
            for byte in data:
                if byte in (0x0A, 0x0D):
                    line = self._partial.decode("ascii", errors="replace").strip()
                    self._partial.clear()
                    if not line:
                        continue
                    command = line.split()[0].upper()
                    if command == "M410":  # emergency parser: act before the queue
                        self._quick_stop()
                    elif command == "M112":
                        self._quick_stop()
                        self._halted = True
                        self._lines.clear()
                        self.write(
                            "echo:Emergency stop (M112)\nError:Printer halted. kill() called!\n"
                        )
                        continue
                    if not self._halted:
                        self._lines.append(line)
                else:
                    self._partial.append(byte)
            self._lock.notify_all()

    def _run(self) -> None:
        while not self._quit.is_set():
            with self._lock:
                while not self._lines and not self._quit.is_set():
                    self._lock.wait(0.05)
                if self._quit.is_set():
                    return
                line = self._lines.popleft()
            self._execute(line)

    def _wait_moves(self) -> bool:
        """Block until motion is done (``echo:busy`` meanwhile); False if halted."""
        next_busy = self._now() + self.busy_interval
        while not self._quit.is_set():
            with self._lock:
                self._advance()
                if self._halted:
                    return False
                if not self._moves:
                    return True
                if self._now() >= next_busy:
                    self.write("echo:busy: processing\n")
                    next_busy += self.busy_interval
                head = self._moves[0]
                left = head.t0 + head.profile.duration - self._now()
                self._lock.wait(max(0.0005, min(0.05, left / self.time_scale)))
        return False

    # -- commands -----------------------------------------------------------------------------

    def _execute(self, raw: str) -> None:
        line = re.sub(r";.*$", "", raw).strip().upper()
        line = re.sub(r"^N\d+\s*", "", line)
        line = re.sub(r"\*\d+$", "", line).strip()
        words = dict(re.findall(r"([A-Z])\s*([-+]?[0-9.]*)", line))
        command = line.split()[0] if line else ""
        command = re.match(r"[A-Z]\d+(\.\d+)?", command).group(0) if command else ""  # type: ignore[union-attr]
        if command in ("G0", "G1"):
            self._queue_move(words)
        elif command == "G4":
            self._wait_moves()
        elif command == "G90":
            self._absolute = True
        elif command == "G91":
            self._absolute = False
        elif command == "G20":
            self._inches = True
        elif command == "G21":
            self._inches = False
        elif command == "G28":
            if not self._wait_moves() or not self._home(words):
                return
        elif command == "M400":
            if not self._wait_moves():
                return
        elif command == "M114":
            with self._lock:
                self._advance()
                pos = self._live() if "R" in words else self._planned()
            counts = " ".join(
                f"{a}:{round(p * self.steps_per_mm)}" for a, p in zip(AXES, pos, strict=True)
            )
            self.write(f"X:{pos[0]:.2f} Y:{pos[1]:.2f} Z:{pos[2]:.2f} E:0.00 Count {counts}\n")
        elif command == "M115":
            self.write(
                "FIRMWARE_NAME:Marlin 2.1.2.1 (stackrig simulator) SOURCE_CODE_URL:"
                "github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Rail "
                "EXTRUDER_COUNT:0 UUID:00000000-0000-0000-0000-000000000000\n"
                "Cap:EMERGENCY_PARSER:1\n"
            )
        elif command == "M92":
            self.write(f"echo: M92 X{self.steps_per_mm:.2f} Y{self.steps_per_mm:.2f} "
                       f"Z{self.steps_per_mm:.2f}\n")  # fmt: skip
        elif command in ("M17", "M18", "M84", "M108", "M410", "G92", ""):
            pass
        else:
            self.write(f'echo:Unknown command: "{raw.strip()}"\n')
        with self._lock:
            if not self._halted:
                self.write("ok\n")

    def _queue_move(self, words: dict[str, str]) -> None:
        factor = 25.4 if self._inches else 1.0
        with self._lock:
            if words.get("F"):
                self._feed = float(words["F"]) * factor
            start = self._planned()
            target = list(start)
            for i, axis in enumerate(AXES):
                if words.get(axis):
                    value = float(words[axis]) * factor
                    target[i] = value if self._absolute else start[i] + value
                    target[i] = min(max(target[i], 0.0), self.travel_mm)  # soft endstops
                    target[i] = round(target[i] * self.steps_per_mm) / self.steps_per_mm
            goal: Vec = (target[0], target[1], target[2])
        self._enqueue(start, goal, min(self._feed / 60.0, self.max_feed_mm_s))

    def _enqueue(self, start: Vec, goal: Vec, speed: float) -> None:
        distance = math.dist(start, goal)
        if distance == 0:
            return
        while len(self._moves) >= 16 and not self._quit.is_set():  # planner full: ok waits
            with self._lock:
                self._advance()
                self._lock.wait(0.01)
        with self._lock:
            self._moves.append(_Move(start, goal, Trapezoid(distance, speed, self.accel_mm_s2)))
            self._advance()

    def _home(self, words: dict[str, str]) -> bool:
        with self._lock:
            start = self._planned()
        axes = [i for i, a in enumerate(AXES) if a in words] or [0, 1, 2]
        goal = list(start)
        for i in axes:
            goal[i] = 0.0
        self._enqueue(start, (goal[0], goal[1], goal[2]), self.homing_feed_mm_min / 60.0)
        return self._wait_moves()
