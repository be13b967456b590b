"""A small Marlin 2 responder on a pseudo-terminal, for trying and testing ``marlin://`` rails.

Far less detailed than the GRBL simulator, but it speaks the parts of Marlin a focus rail uses,
with Marlin's habits (sources: MarlinFirmware/Marlin 2.1, files named beside each behaviour):

* a ``start`` banner and ``echo:`` chatter at boot; the board restarts when its port is opened
  (an Arduino's DTR reset) and then calls wherever the carriage stands 0 (``current_position``
  starts zeroed, nothing is homed); a command under way when it restarts is never answered;
* ``ok`` for each line; ``G0``/``G1`` with ``G90``/``G91``, ``G20``/``G21`` that take real time
  (trapezoid per move, sequential); ``M400`` answers when motion is done and sends
  ``echo:busy: processing`` while waiting (host keepalive); ``G92`` sets the position;
* **moves under 6 motor steps are dropped** (``planner.cpp``: ``if (block->step_event_count <
  MIN_STEPS_PER_SEGMENT) return false;`` and the planner's own position is then not updated), so
  the short move's distance is added to the next one, while ``M114`` still reports the
  commanded position; only its ``Count X:`` (the planner's position in steps) shows it;
* ``M114`` (``X:.. Y:.. Z:.. E:.. Count X:.. Y:.. Z:..``), whose count is **the planned
  position, not the live one**: it reaches a move's target as the move is queued (``M114 R``
  reports the live position), ``M115``
  with its ``Cap:`` lines (``gcode/host/M115.cpp``), ``M92`` (steps per mm), ``M211`` (soft
  endstop report), ``G28`` homing to the minimum end, ``echo:Unknown command:`` for the rest;
* replies at the serial line's pace (``TX_BUFFER_SIZE 0``: about 85 ms for ``M115``'s 1 KB of
  ``Cap:`` lines at 115200 baud), and optionally an LCD's boot screen after ``start``
  (``BOOTSCREEN_TIMEOUT``), during which lines wait and are then answered together;
* soft endstops clamp targets to ``[0, travel]`` **only once the axis was homed**
  (``module/motion.cpp``, ``apply_motion_limits``: ``if (axis_was_homed(X_AXIS))``), and on a
  1.x board always (``clamp_to_software_endstops``, ``Marlin_main.cpp``);
* **motors switched off after 120 s without motion** (``DEFAULT_STEPPER_TIMEOUT_SEC`` with
  ``DISABLE_IDLE_X``, ``Configuration_adv.h``): the carriage falls to the nearest full step while
  the board counts on; ``M18``/``M84 S<seconds>`` sets the timeout (``S0``: never);
* **no emergency parser by default** (``EMERGENCY_PARSER`` is off in the stock
  ``Configuration_adv.h``): ``M410`` and ``M112`` wait in the command queue behind an ``M400``
  like any other line; with ``emergency_parser=True`` they act the moment they arrive
  (``feature/e_parser.h``) and ``M115`` says ``Cap:EMERGENCY_PARSER:1``.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass

from rig.sim.motion import Trapezoid
from rig.sim.ptyserial import FirmwareDevice

AXES = "XYZ"
M115_CAPS = (
    "SERIAL_XON_XOFF", "BINARY_FILE_TRANSFER", "EEPROM", "VOLUMETRIC", "AUTOREPORT_POS",
    "AUTOREPORT_TEMP", "PROGRESS", "PRINT_JOB", "AUTOLEVEL", "RUNOUT", "Z_PROBE",
    "LEVELING_DATA", "BUILD_PERCENT", "SOFTWARE_POWER", "TOGGLE_LIGHTS", "CASE_LIGHT_BRIGHTNESS",
    "SPINDLE", "LASER", "EMERGENCY_PARSER", "HOST_ACTION_COMMANDS", "PROMPT_SUPPORT", "SDCARD",
    "REPEAT", "SD_WRITE", "AUTOREPORT_SD_STATUS", "LONG_FILENAME", "LFN_WRITE",
    "CUSTOM_FIRMWARE_UPLOAD", "EXTENDED_M20", "THERMAL_PROTECTION", "MOTION_MODES", "ARCS",
    "BABYSTEPPING", "EP_BABYSTEP", "CHAMBER_TEMPERATURE", "COOLER_TEMPERATURE", "MEATPACK",
    "CONFIG_EXPORT",
)  # fmt: skip
"""The ``Cap:`` lines ``M115`` prints (``gcode/host/M115.cpp``, ``cap_line``), in its order."""
MIN_STEPS_PER_SEGMENT = 6  # Marlin's Configuration_adv.h default
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


@dataclass(frozen=True)
class MarlinConfig:
    """The board's build configuration (Marlin 2.1's ``Configuration.h`` and
    ``Configuration_adv.h``), one value for every axis: a focus rail drives one."""

    travel_mm: float = 200.0
    """Soft endstops: once homed, targets are clamped to ``[0, travel_mm]`` (``X_MAX_POS``)."""
    max_feed_mm_s: float = 10.0
    """The fastest a move may go (``DEFAULT_MAX_FEEDRATE``)."""
    accel_mm_s2: float = 100.0
    """``DEFAULT_MAX_ACCELERATION``."""
    homing_feed_mm_min: float = 1200.0
    """``HOMING_FEEDRATE_MM_M``."""
    steps_per_mm: float = 400.0
    """``DEFAULT_AXIS_STEPS_PER_UNIT``, what ``M92`` reports."""
    busy_interval: float = 2.0
    """Simulated seconds between ``echo:busy: processing`` lines during long waits
    (``HOST_KEEPALIVE_FEATURE``, ``DEFAULT_KEEPALIVE_INTERVAL``)."""
    stepper_timeout_s: float = 120.0
    """Idle seconds after which the motors are switched off (``DEFAULT_STEPPER_TIMEOUT_SEC``
    with ``DISABLE_IDLE_X``; ``M18``/``M84 S<seconds>`` changes it, ``S0`` never)."""
    microsteps: int = 16
    """Microsteps per full step: a motor switched off falls to the nearest full step."""
    emergency_parser: bool = False
    """``EMERGENCY_PARSER`` (off in the stock ``Configuration_adv.h``): ``M410``/``M112`` act
    as they arrive instead of waiting in the command queue."""
    baud: int = 115200
    """``BAUDRATE`` (``Configuration.h``). Replies go out at the line's pace, in wall-clock
    time whatever the time scale: with ``TX_BUFFER_SIZE 0`` (``Configuration_adv.h``) each
    write waits for the UART, so the 1 KB ``M115`` reply takes 85 ms."""
    bootscreen_s: float = 0.0
    """Wall-clock seconds ``setup()`` spends on an LCD's boot screen after ``start``
    (``ui.show_bootscreen()``, ``BOOTSCREEN_TIMEOUT`` 3000 ms in ``Configuration_adv.h``);
    lines sent meanwhile wait in the receive buffer and are answered together after it. The
    stock ``Configuration.h`` has no LCD (0); printer boards with one, a common rail
    controller, show it at every restart."""
    version: str = "2.1.2.1"
    """What ``M115`` and the boot banner say. A ``1.x`` board clamps every move to its soft
    endstops, homed or not (1.1's ``clamp_to_software_endstops`` in ``Marlin_main.cpp`` tests
    only ``soft_endstops_enabled``; 2.0 added the homing test)."""
    m92_reports: bool = True
    """``M92`` without arguments prints the steps per mm, as Marlin 2 does; Marlin 1.1's
    ``gcode_M92`` (``Marlin_main.cpp``) only sets what it is given and prints nothing, so
    only ``M503`` tells (the stock firmware of many Ender and CR-10 boards)."""


class MarlinSimulator(FirmwareDevice):
    """A Marlin 2.1 board driving a rail, served on a pseudo-terminal.

    Parameters
    ----------
    config
        How the firmware was built (:class:`MarlinConfig`; the defaults without one).
    time_scale
        Simulated seconds per wall-clock second.
    reset_on_open
        Restart when a program opens the port (Arduino DTR), forgetting the position.
    start_position
        Physical carriage position (mm from the minimum endstop) at power-up.
    """

    runner_name = "marlin-sim"
    url_scheme = "marlin"
    url_query = "?wakeup=0"

    def __init__(
        self,
        config: MarlinConfig | None = None,
        *,
        time_scale: float = 1.0,
        reset_on_open: bool = True,
        start_position: Vec = (10.0, 0.0, 0.0),
    ) -> None:
        super().__init__("ttyMARLIN", reset_on_open=reset_on_open, time_scale=time_scale)
        self.config = config or MarlinConfig()
        self._ready_at = 0.0  # the end of the boot screen (MarlinConfig.bootscreen_s)
        self._phys: Vec = start_position
        self._offset: Vec = start_position  # logical = physical - offset
        self._commanded: Vec = (0.0, 0.0, 0.0)  # current_position: what M114 prints
        self._steps: tuple[int, int, int] = (0, 0, 0)  # the planner's position, in steps
        self._homed = [False, False, False]
        self._moves: deque[_Move] = deque()
        self._lines: deque[str] = deque()
        self._partial = bytearray()
        self._absolute = True
        self._inches = False
        self._feed = 1500.0
        self._halted = False
        self._boots = 0
        self._stepper_timeout = self.config.stepper_timeout_s
        self._idle_since = 0.0  # simulated time the planner last ran empty (Marlin.cpp idle())
        self._motors_on = True
        self.motion_log: list[tuple[Vec, Vec]] = []
        """``(start, end)`` of every completed or interrupted move (mm)."""

    @property
    def position(self) -> Vec:
        """Live carriage position (mm from the minimum endstop), whatever the board believes."""
        with self._lock:
            self._advance()
            return self._live()

    @property
    def logical_position(self) -> Vec:
        """Live position in the board's own coordinates (what ``M114 R`` reports)."""
        with self._lock:
            self._advance()
            live = self._live()
            return (live[0] - self._offset[0], live[1] - self._offset[1], live[2] - self._offset[2])

    # -- time and motion ----------------------------------------------------------------------

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
                self._idle_since, self._motors_on = now, True
                return
            self._moves.popleft()
            self._phys = head.target
            self._idle_since = head.t0 + head.profile.duration
            self.motion_log.append((head.start, head.target))
            if self._moves:
                self._moves[0].t0 = head.t0 + head.profile.duration
        if self._motors_on and 0 < self._stepper_timeout <= now - self._idle_since:
            self._switch_motors_off()

    def _switch_motors_off(self) -> None:
        """The idle timeout (Marlin.cpp ``idle()``, ``stepper.disable_axis``): unpowered, the
        rotor falls to the nearest full step, and the board still counts the old position."""
        full_step = self.config.microsteps / self.config.steps_per_mm
        x, y, z = (round(p / full_step) * full_step for p in self._phys)
        self._phys = (x, y, z)
        self._motors_on = False

    def _quick_stop(self) -> None:
        """M410: stop now, drop queued moves, position = where the carriage is."""
        self._advance()
        if self._moves:
            here = self._live()
            self.motion_log.append((self._moves[0].start, here))
            self._phys = here
        self._moves.clear()
        self._sync_from_carriage()

    def _kill(self) -> None:
        """M112: stop now and halt until a reset, dropping every queued line (Marlin's kill())."""
        self._quick_stop()
        self._halted = True
        self._lines.clear()
        self.write("echo:Emergency stop (M112)\nError:Printer halted. kill() called!\n")

    def _sync_from_carriage(self) -> None:
        """Planner and reported position from where the carriage is (after a stop or G92)."""
        logical = [self._phys[i] - self._offset[i] for i in range(3)]
        self._commanded = (logical[0], logical[1], logical[2])
        self._steps = (
            round(logical[0] * self.config.steps_per_mm),
            round(logical[1] * self.config.steps_per_mm),
            round(logical[2] * self.config.steps_per_mm),
        )

    def _counts(self, *, live: bool) -> str:
        """``Count X:.. Y:.. Z:..`` in steps: the planner's position, reached as soon as a move
        is queued (``M114``: ``report_current_position_projected`` prints ``planner.position``,
        ``gcode/host/M114.cpp``, ``module/motion.cpp``), or where the steppers are (``M114 R``,
        ``report_real_position``)."""
        if not live:
            return " ".join(f"{a}:{self._steps[i]}" for i, a in enumerate(AXES))
        here = self._live()
        return " ".join(
            f"{a}:{round((here[i] - self._offset[i]) * self.config.steps_per_mm)}"
            for i, a in enumerate(AXES)
        )

    # -- power --------------------------------------------------------------------------------

    def on_power_up(self) -> None:
        with self._lock:
            self._quick_stop()
            self._lines.clear()
            self._partial.clear()
            self._halted = False
            self._stepper_timeout, self._idle_since = self.config.stepper_timeout_s, self._now()
            self._boots += 1  # a command under way when the board restarted is never answered
            self._absolute, self._inches = True, False
            # Marlin boots with current_position zeroed and no axis homed: 0 is wherever the
            # carriage stands (Marlin.cpp setup(); motion.cpp current_position).
            self._offset = self._phys
            self._homed = [False, False, False]
            self._sync_from_carriage()
            self._ready_at = time.monotonic() + self.config.bootscreen_s
            for line in (
                "start",
                f"echo:Marlin {self.config.version}",
                "echo: Last Updated: 2023-07-13 | Author: (stackrig simulator)",
                "echo:Compiled: Jul 13 2023",
                "echo: Free Memory: 3405  PlannerBufferBytes: 1232",
            ):
                self.write(line + "\n")
            self._wake.notify_all()

    def write(self, text: str) -> None:
        """Send at the serial line's pace (see :attr:`MarlinConfig.baud`; 10 bits a byte)."""
        time.sleep(len(text) * 10 / self.config.baud)
        super().write(text)

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
                    # Without the emergency parser M410/M112 wait in the queue like any line.
                    urgent = line.split()[0].upper() if self.config.emergency_parser else ""
                    if urgent == "M410":  # emergency parser: act before the queue
                        self._quick_stop()
                    elif urgent == "M112":
                        self._kill()
                        continue
                    if not self._halted:
                        self._lines.append(line)
                else:
                    self._partial.append(byte)
            self._wake.notify_all()

    def _run(self) -> None:
        while not self._quit.is_set():
            with self._lock:
                while not self._lines and not self._quit.is_set():
                    self._wake.wait(0.05)
                if self._quit.is_set():
                    return
                line = self._lines.popleft()
                ready_at = self._ready_at
            while time.monotonic() < ready_at and not self._quit.is_set():  # the boot screen
                time.sleep(0.01)
            self._execute(line)

    def _wait_moves(self) -> bool:
        """Block until motion is done (``echo:busy`` meanwhile); False if halted."""
        next_busy = self._now() + self.config.busy_interval
        while not self._quit.is_set():
            with self._lock:
                self._advance()
                if self._halted:
                    return False
                if not self._moves:
                    return True
                if self._now() >= next_busy:
                    self.write("echo:busy: processing\n")
                    next_busy += self.config.busy_interval
                head = self._moves[0]
                left = head.t0 + head.profile.duration - self._now()
                self._wake.wait(max(0.0005, min(0.05, left / self.time_scale)))
        return False

    # -- commands -----------------------------------------------------------------------------

    def _execute(self, raw: str) -> None:
        with self._lock:
            boots = self._boots
        line = re.sub(r";.*$", "", raw).strip().upper()
        line = re.sub(r"^N\d+\s*", "", line)
        line = re.sub(r"\*\d+$", "", line).strip()
        words = dict(re.findall(r"([A-Z])\s*([-+]?[0-9.]*)", line))
        code = re.match(r"[A-Z]\d+(\.\d+)?", line)
        # A line that is no G, M or T code ("$G", a stray "?") is an unknown command too
        # (gcode/parser.cpp, then GcodeSuite::process_parsed_command's unknown_command_warning).
        command = code.group(0) if code else "?" if line else ""
        if command in ("G0", "G1"):
            self._queue_move(words)
        elif command in ("G4", "M400"):
            if not self._wait_moves():
                return
        elif command in ("G90", "G91"):
            self._absolute = command == "G90"
        elif command in ("G20", "G21"):
            self._inches = command == "G20"
        elif command == "G28":
            if not self._wait_moves() or not self._home(words):
                return
        elif command == "G92":
            self._set_position(words)
        elif command in ("M114", "M115", "M92", "M211", "M503"):
            self._report(command, words)
        elif command == "M410" and not self.config.emergency_parser:
            with self._lock:  # reached in the queue: only now does it stop (M410.cpp)
                self._quick_stop()
        elif command == "M112" and not self.config.emergency_parser:
            with self._lock:
                self._kill()
        elif command in ("M18", "M84") and words.get("S"):
            with self._lock:  # M17_M18_M84.cpp: S sets the idle timeout, and nothing else
                self._stepper_timeout = float(words["S"])
                self._idle_since = self._now()
        elif command in ("M17", "M18", "M84", "M108", "M410", ""):
            pass
        else:
            self.write(f'echo:Unknown command: "{raw.strip()}"\n')
        with self._lock:
            if not self._halted and self._boots == boots:
                self.write("ok\n")

    def _report(self, command: str, words: dict[str, str]) -> None:
        spm = self.config.steps_per_mm
        if command == "M114":
            with self._lock:
                self._advance()
                live = self._live()
                pos = (
                    tuple(live[i] - self._offset[i] for i in range(3))
                    if "R" in words
                    else self._commanded
                )
                counts = self._counts(live="R" in words)
            self.write(f"X:{pos[0]:.2f} Y:{pos[1]:.2f} Z:{pos[2]:.2f} E:0.00 Count {counts}\n")
        elif command == "M115":
            caps = {name: 0 for name in M115_CAPS}  # a board without a hot end
            caps.update(EEPROM=1, EMERGENCY_PARSER=int(self.config.emergency_parser))
            self.write(
                f"FIRMWARE_NAME:Marlin {self.config.version} (stackrig simulator) SOURCE_CODE_URL:"
                "github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Rail "
                "EXTRUDER_COUNT:0 UUID:00000000-0000-0000-0000-000000000000\n"
                + "".join(f"Cap:{name}:{value}\n" for name, value in caps.items())
            )
        elif command == "M92":
            if self.config.m92_reports:
                self.write(f"echo: M92 X{spm:.2f} Y{spm:.2f} Z{spm:.2f}\n")
        elif command == "M503":  # the settings report, steps per unit first (M503.cpp)
            self.write(f"echo:; Steps per unit:\necho: M92 X{spm:.2f} Y{spm:.2f} Z{spm:.2f}\n")
        elif self.config.version.startswith("1."):  # 1.1's gcode_M211, on one line
            t = self.config.travel_mm
            self.write(
                f"echo:Soft endstops: ON  Min:  X0.00 Y0.00 Z0.00  Max:  X{t:.2f} Y{t:.2f} "
                f"Z{t:.2f}\n"
            )
        else:  # M211 (gcode/config/M211.cpp, M211_report since 2.0.9.2): the state as a
            # replayable line, then the limits in logical coordinates (no "echo:": forReplay)
            t = self.config.travel_mm
            self.write(
                f"  M211 S1 ; ON\n  Min:  X0.00 Y0.00 Z0.00   Max:  X{t:.2f} Y{t:.2f} Z{t:.2f}\n"
            )

    def _set_position(self, words: dict[str, str]) -> None:
        """G92: the carriage is now called the given position (nothing moves)."""
        factor = 25.4 if self._inches else 1.0
        self._wait_moves()
        with self._lock:
            offset = list(self._offset)
            for i, axis in enumerate(AXES):
                if words.get(axis):
                    offset[i] = self._phys[i] - float(words[axis]) * factor
            self._offset = (offset[0], offset[1], offset[2])
            self._sync_from_carriage()

    def _queue_move(self, words: dict[str, str]) -> None:
        factor = 25.4 if self._inches else 1.0
        with self._lock:
            if words.get("F"):
                self._feed = float(words["F"]) * factor
            target = list(self._commanded)
            for i, axis in enumerate(AXES):
                if words.get(axis):
                    value = float(words[axis]) * factor
                    target[i] = value if self._absolute else target[i] + value
                    # motion.cpp apply_motion_limits: homed axes only; 1.x: every axis
                    if self._homed[i] or self.config.version.startswith("1."):
                        target[i] = min(max(target[i], 0.0), self.config.travel_mm)
            self._commanded = (target[0], target[1], target[2])
            steps = tuple(round(v * self.config.steps_per_mm) for v in target)
            if max(abs(a - b) for a, b in zip(steps, self._steps, strict=True)) < (
                MIN_STEPS_PER_SEGMENT
            ):
                return  # planner.cpp: dropped, and the planner position stays behind
            start = self._planned()
            self._steps = (steps[0], steps[1], steps[2])
            goal: Vec = (
                steps[0] / self.config.steps_per_mm + self._offset[0],
                steps[1] / self.config.steps_per_mm + self._offset[1],
                steps[2] / self.config.steps_per_mm + self._offset[2],
            )
        self._enqueue(start, goal, min(self._feed / 60.0, self.config.max_feed_mm_s))

    def _enqueue(self, start: Vec, goal: Vec, speed: float) -> None:
        distance = math.dist(start, goal)
        if distance == 0:
            return
        while len(self._moves) >= 16 and not self._quit.is_set():  # planner full: ok waits
            with self._lock:
                self._advance()
                self._wake.wait(0.01)
        with self._lock:
            self._moves.append(
                _Move(start, goal, Trapezoid(distance, speed, self.config.accel_mm_s2))
            )
            self._advance()

    def _home(self, words: dict[str, str]) -> bool:
        """G28: to the minimum endstop (physical 0), which becomes logical 0; homed."""
        with self._lock:
            start = self._planned()
        axes = [i for i, a in enumerate(AXES) if a in words] or [0, 1, 2]
        goal = list(start)
        for i in axes:
            goal[i] = 0.0
        self._enqueue(start, (goal[0], goal[1], goal[2]), self.config.homing_feed_mm_min / 60.0)
        if not self._wait_moves():
            return False
        with self._lock:
            offset = list(self._offset)
            for i in axes:
                offset[i] = 0.0
                self._homed[i] = True
            self._offset = (offset[0], offset[1], offset[2])
            self._sync_from_carriage()
        return True
