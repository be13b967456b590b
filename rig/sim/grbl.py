"""A GRBL 1.1 controller on a pseudo-terminal: try the rig, or test drivers, with no hardware.

``rig rail simulate`` runs one; in Python::

    with GrblSimulator(time_scale=10) as sim:
        rail = open_focuser(sim.url)      # grbl:///tmp/stackrig-sim-.../ttyGRBL?wakeup=0

What is simulated, following GRBL 1.1's documented behaviour:

* the line protocol (``ok`` / ``error:N``, 80-character lines), ``$$`` settings and ``$N=value``,
  ``$G``, ``$I``, ``$#``, ``$X``, ``$H`` (``$HX`` only as a build option, below), ``$J=`` jogs;
  a G-code subset (G0, G1, G4, G10 L2/L20, G17, G20/G21, G54, G90/G91, G92/G92.1, G94,
  M0/M2/M5/M9/M30, F, N);
* real-time commands ``?`` (status report with MPos or WPos, WCO, FS, Pn), ``!`` feed hold,
  ``~`` resume, Ctrl-X soft reset (``ALARM:3`` when reset in motion) and ``0x85`` jog cancel;
* motion time from feed rate and acceleration (a trapezoid per block, no junction blending),
  positions quantised to motor steps (``$100``-``$102``), a planner buffer of 15 blocks whose
  ``ok`` waits when full;
* soft limits (``$20``: ``ALARM:2`` for G-code, ``error:15`` for jogs), hard limit switches
  (``$21``: ``ALARM:1``) at both ends of a physical rail of ``$130``-``$132`` travel, homing
  (``$22``-``$27``; machine space is ``[-max travel, 0]`` as in GRBL), the power-up alarm lock
  (below);
* faults: :meth:`~rig.sim.ptyserial.PtyDevice.disconnect` / ``replug``, ``stall``, ``inject``
  (garbled lines) and :meth:`GrblSimulator.trigger_alarm`;
* by default, a restart each time the port is opened (an Arduino's DTR auto-reset): machine
  position 0 wherever the carriage stands, banner again (see ``on_power_up``);
* ``$13=1`` inch reports, GRBL's stock ``$1=25`` (motors off 25 ms after a move), and
  grblHAL's and FluidNC's banners and boot locks with ``firmware=``.

**The power-up lock.** Stock GRBL 1.1 is built with ``HOMING_INIT_LOCK`` (``config.h``), so
with homing enabled (``$22=1``) it boots into ALARM (``main.c``), prints
``[MSG:'$H'|'$X' to unlock]`` after its banner (``protocol.c``, ``protocol_main_loop``; texts in
``report.c``) and runs no startup line. Until ``$H`` (homing) or ``$X`` (``[MSG:Caution:
Unlocked]``) every G-code line gets ``error:9`` (``protocol.c``); ``$J=`` jogs get ``error:8``
(``system.c``: Idle or Jog only); ``$$``, ``$G``, ``$#``, ``$I``, ``$N``, ``$x=value``, ``?`` and
the other real-time commands still work (``system.c``, ``system_execute_line``). A soft reset
keeps the lock (``main.c`` carries the state over its reset loop). Combined with the restart on
every open, a board with homing enabled is locked again on every connection. The simulator does
all of this by default, because :data:`DEFAULT_SETTINGS` enable homing as a focus rail with a
home switch is configured; ``homing_init_lock=False`` is a board built without the option.

**A switch pressed at a reset.** Stock GRBL 1.1 is also built with ``CHECK_LIMITS_AT_INIT``
(``config.h``): with hard limits on (``$21=1``), a limit switch pressed at power-up or after a
reset (a carriage left on the switch by a hard-limit stop, then the board restarted) means
ALARM and ``[MSG:Check Limits]`` before the unlock message (``protocol.c``,
``protocol_main_loop``), whether homing is on or not. ``$X`` still unlocks, but the hard-limit
interrupt fires on any change of the switch pins (``limits.c``: ``HARD_LIMIT_FORCE_STATE_CHECK``
is off in stock builds), so the first move off the switch trips ``ALARM:1`` as it releases it.
Homing (hard limits off while it runs) is the way off.
(``$C`` check mode and ``$SLP`` are not simulated: ``error:3``.)

**Single-axis homing is a build option.** ``$HX``/``$HY``/``$HZ`` exist only in builds with
``HOMING_SINGLE_AXIS_COMMANDS`` (``config.h``, commented out in stock builds); ``$I`` then lists
``H`` among its options (``report.c``). In a stock build ``system.c`` (``case 'H'``) sets the
state to Home *before* it looks at the letter, then answers ``error:3``: nothing homes, and the
board stays in Home. There ``protocol.c`` starts no cycle (only from Idle), so planned moves
never run and a ``G4`` is never answered; ``$H``, ``$J=`` and settings get ``error:8``
(``system.c``: Idle or Alarm only). Only a soft reset gets out, and as it finds the state Home
it raises ``ALARM:6`` (``motion_control.c``, ``mc_reset``) and the board restarts locked. The
simulator does this by default; ``single_axis_homing=True`` is a build with the option (one
letter only: ``$HXY`` is ``error:3`` and the same dead end there too).

**Status reports GRBL does not send.** A ``?`` is only flagged by the serial interrupt; the main
program serves it. Two loops never do:

* the homing cycle: ``limits.c`` (``limits_go_home``: "No time to run
  protocol_execute_realtime() in this loop"). The report comes once the cycle is done
  (``motion_control.c``, ``mc_homing_cycle``, still in state Home), or never if it is reset;
* a critical alarm (``ALARM:1`` hard limit, ``ALARM:2`` soft limit): ``protocol.c``
  (``protocol_exec_rt_system``) loops until ``EXEC_RESET``, whatever its comment says, and the
  reset clears the flag (``main.c``). The board says ``[MSG:Reset to continue]`` and answers
  nothing, not even ``?``, until Ctrl-X.

Both are simulated; :attr:`GrblSimulator.unanswered_status_queries` counts the ``?`` left
unanswered.

Every straight motion is recorded in :attr:`GrblSimulator.motion_log` (machine coordinates, mm).
Time runs ``time_scale`` times faster than the wall clock.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rig.sim.motion import Trapezoid
from rig.sim.ptyserial import FirmwareDevice

VERSION = "1.1h"
BANNER = f"\r\nGrbl {VERSION} ['$' for help]\r\n"  # GRBL report.c, report_init_message
# grblHAL core report.c, report_init_message with COMPATIBILITY_LEVEL 0 (the default); its
# grbl.h says GRBL_VERSION "1.1f". Older grblHAL builds printed '$$' in place of '$HELP'.
GRBLHAL_VERSION = "1.1f"
GRBLHAL_BANNER = f"\r\nGrblHAL {GRBLHAL_VERSION} ['$' or '$HELP' for help]\r\n"
# FluidNC Report.cpp, report_init_message: its default start message "Grbl \V [FluidNC \B (\R)
# \H]" (the GRBL-compatible version, the release, the radio built in, the help hint).
FLUIDNC_BANNER = "\r\nGrbl 3.9 [FluidNC v3.9.5 (wifi) '$' for help]\r\n"
BANNERS = {"grbl": BANNER, "grblhal": GRBLHAL_BANNER, "fluidnc": FLUIDNC_BANNER}
# $I: GRBL's report.c (report_build_info); grblHAL's adds its name (report.c, "[FIRMWARE:"),
# FluidNC's names itself in its version line (Report.cpp, report_build_info).
BUILD_INFO = {
    "grbl": lambda opt: [f"[VER:{VERSION}.20190830:]", f"[OPT:{opt},15,128]"],
    "grblhal": lambda opt: [
        f"[VER:{GRBLHAL_VERSION}.20250101:]",
        f"[OPT:{opt},35,1024,3]",
        "[FIRMWARE:grblHAL]",
    ],
    "fluidnc": lambda opt: [  # its options: P, H (where $HX is), S
        "[VER:3.9 FluidNC v3.9.5 (esp32-wifi) :]",
        f"[OPT:P{'H' if 'H' in opt else ''}S]",
    ],
}
# grblHAL's $22 is a set of flags (settings.h, homing flags): these two decide its boot lock.
GRBLHAL_INIT_LOCK, GRBLHAL_OVERRIDE_LOCKS = 4, 64
INCH_PER_MM = 0.0393701  # GRBL nuts_bolts.h
AXES = "XYZ"
LINE_LIMIT = 80

DEFAULT_SETTINGS: dict[int, float] = {
    0: 10, 1: 25, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0,
    10: 1, 11: 0.010, 12: 0.002, 13: 0,
    20: 0, 21: 1, 22: 1, 23: 0, 24: 25.0, 25: 500.0, 26: 250, 27: 1.0,
    30: 1000, 31: 0, 32: 0,
    100: 800.0, 101: 800.0, 102: 800.0,
    110: 600.0, 111: 600.0, 112: 600.0,
    120: 50.0, 121: 50.0, 122: 50.0,
    130: 100.0, 131: 100.0, 132: 100.0,
}  # fmt: skip
"""GRBL 1.1 defaults adjusted to a small focus rail: 800 steps/mm (1.25 um per step),
600 mm/min, 50 mm/s², 100 mm travel, hard limits and homing enabled, soft limits off. Stock
``defaults.h`` leaves homing off (``DEFAULT_HOMING_ENABLE 0``), but a rail with a home switch is
set up with ``$22=1``, and that is the awkward case: with the stock ``HOMING_INIT_LOCK`` the
board boots locked (see the module docstring). As in stock GRBL (defaults.h,
DEFAULT_STEPPER_IDLE_LOCK_TIME 25), ``$1=25``: the drivers switch off 25 ms after each move, and
``$13=0`` (reports in mm; ``$13=1`` reports inches)."""

_INTEGER_SETTINGS = {0, 1, 2, 3, 4, 5, 6, 10, 13, 20, 21, 22, 23, 26, 30, 31, 32}
_REALTIME = {ord("?"), ord("!"), ord("~"), 0x18, 0x85}

Vec = tuple[float, float, float]


@dataclass(frozen=True)
class SimMotion:
    """One straight motion, in machine coordinates (mm)."""

    kind: str
    """``G0``, ``G1``, ``jog``, ``home``, ``brake`` (deceleration after a hold or cancel)."""
    start: Vec
    end: Vec
    interrupted: str = ""
    """Why it ended early (``hold``, ``jog cancel``, ``reset``, ``hard limit``, ``power``)."""


@dataclass
class _Block:
    kind: str
    target: Vec  # physical coordinates, mm
    feed: float  # mm/min


@dataclass
class _Segment:
    kind: str
    start: Vec
    target: Vec
    unit: Vec
    profile: Trapezoid
    t0: float
    limit_hit: tuple[float, str] | None = None  # (distance along path, axis letter)

    @property
    def end_time(self) -> float:
        if self.limit_hit is not None:
            return self.t0 + self.profile.time_at_distance(self.limit_hit[0])
        return self.t0 + self.profile.duration

    def position(self, t: float) -> Vec:
        s = self.profile.distance_at(t - self.t0)
        if self.limit_hit is not None:
            s = min(s, self.limit_hit[0])
        return _add(self.start, _scale(self.unit, s))

    def speed(self, t: float) -> float:
        return self.profile.speed_at(t - self.t0)


@dataclass
class _Modal:
    absolute: bool = True
    mm: bool = True
    motion: int = 0
    feed: float = 0.0
    g92: Vec = (0.0, 0.0, 0.0)


@dataclass
class _Pending:
    """A line whose ``ok`` waits for something (planner room, dwell, homing)."""

    ready: Callable[[float], bool]
    response: str = "ok"
    extra: list[str] = field(default_factory=list)
    wake_at: float | None = None
    """Simulated time at which ``ready`` may turn true without any other event."""


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _scale(a: Vec, k: float) -> Vec:
    return (a[0] * k, a[1] * k, a[2] * k)


def _distance_and_units(g: float, absolute: bool, mm: bool) -> tuple[bool, bool] | None:
    """``(absolute, mm)`` after the modal word G90, G91, G20 or G21; None for any other ``g``."""
    modes = {90.0: (True, mm), 91.0: (False, mm), 20.0: (absolute, False), 21.0: (absolute, True)}
    return modes.get(g)


def _fmt(values: Vec) -> str:
    return ",".join(f"{v:.3f}" for v in values)


def _fmt_inches(values: Vec) -> str:
    return ",".join(f"{v * INCH_PER_MM:.4f}" for v in values)


class _GcodeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class GrblSimulator(FirmwareDevice):
    """A GRBL 1.1 controller served on a pseudo-terminal from background threads.

    Parameters
    ----------
    time_scale
        Simulated seconds per wall-clock second (10 makes a 1 s move take 0.1 s).
    settings
        Overrides of :data:`DEFAULT_SETTINGS` (``{20: 1}`` turns soft limits on).
    start_position
        Physical carriage position at power-up, in the machine frame a homed GRBL uses
        (``[-max travel, 0]``); default: mid-travel on every axis.
    homing_init_lock
        Boot into ALARM when homing is enabled, as stock GRBL 1.1 does (its ``HOMING_INIT_LOCK``
        build option, on in ``config.h``); False is a board built without it.
    reset_on_open
        Opening the port restarts the board, as DTR does on an Arduino.
    boot_delay
        Seconds (wall clock) between a restart and the banner, during which input is dropped.
    planner_blocks
        Planner buffer size (15 on an ATmega328p).
    firmware
        ``grbl`` (GRBL 1.1h), ``grblhal`` or ``fluidnc``: the banner, and how each locks a board
        that must be homed. GRBL boots into ALARM without a number. grblHAL does only with
        the init-lock flag in ``$22`` (4, off in its defaults; ``homing_init_lock`` sets it),
        then prints ``ALARM:11`` and ``[MSG:Homing cycle required]`` (protocol.c,
        ``protocol_main_loop``), refuses ``$X`` with ``error:46`` after a power-up or without
        the override-locks flag (64; system.c, ``check_status``; machine_limits.c,
        ``limits_homing_required``), and stays locked, silently, after homing one axis of a
        cycle of three (system.c, ``home``); its emergency stop (``ALARM:10``) is critical as
        limits are, and in a critical alarm it still answers ``?`` (protocol.c). FluidNC boots
        into ``ALARM:14`` (Unhomed) whenever an axis has homing (Protocol.cpp,
        ``protocol_do_start``), which ``$X`` clears, and prefixes its messages with ``INFO:``.
    single_axis_homing
        A build with ``HOMING_SINGLE_AXIS_COMMANDS``: ``$HX`` homes X alone. Off, as in stock
        GRBL, ``$HX`` is ``error:3`` and leaves the board in Home until a soft reset (see the
        module docstring).
    """

    runner_name = "grbl-sim"
    url_scheme = "grbl"
    url_query = "?wakeup=0"

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        settings: dict[int, float] | None = None,
        start_position: Vec | None = None,
        homing_init_lock: bool = True,
        reset_on_open: bool = True,
        boot_delay: float = 0.0,
        planner_blocks: int = 15,
        firmware: str = "grbl",
        single_axis_homing: bool = False,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        super().__init__("ttyGRBL", reset_on_open=reset_on_open, time_scale=time_scale)
        if firmware not in BANNERS:
            raise ValueError(f"firmware must be one of {', '.join(BANNERS)}")
        self.firmware = firmware
        self.single_axis_homing = single_axis_homing
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update(settings or {})
        self.homing_init_lock = homing_init_lock
        if firmware == "grblhal" and homing_init_lock and self.settings[22]:
            self.settings[22] = int(self.settings[22]) | GRBLHAL_INIT_LOCK
        self._cold_start = True  # grblHAL: since power-up, with no homing yet
        self._homed_axes: set[int] = set()
        self.boot_delay = boot_delay
        self.planner_blocks = planner_blocks
        travel = self._travel()
        self._phys: Vec = start_position or (-travel[0] / 2, -travel[1] / 2, -travel[2] / 2)
        self._offset: Vec = self._phys  # machine = phys - offset
        self._wcs: Vec = (0.0, 0.0, 0.0)  # G54, kept across resets like GRBL's EEPROM
        self._modal = _Modal()
        self._state = "Idle"
        self._hold_done = False
        self._critical = False
        self._powered = False
        self._booting_until = 0.0
        self._planner: deque[_Block] = deque()
        self._segment: _Segment | None = None
        self._after_brake = ""
        self._homing: deque[tuple[int, float, float, str]] = deque()
        self._homing_axes: list[int] = []
        self._home_stuck = False  # state Home left by a refused $HX: no cycle runs
        self._report_after_homing = False  # a ? flagged during the homing cycle
        self.unanswered_status_queries = 0
        """How many ``?`` went unanswered (homing cycle, critical alarm; module docstring)."""
        self._t_free = 0.0
        self._lines: deque[str] = deque()
        self._partial = bytearray()
        self._pending: _Pending | None = None
        self._reports = 0
        self._wco_changed = True
        self._limits_at_init = False
        self.motion_log: list[SimMotion] = []
        """Every straight motion, oldest first (machine coordinates, mm)."""
        self.alarms: list[int] = []
        """Every alarm code raised, oldest first."""

    # -- public API ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The controller state as a status report would show it (``Idle``, ``Hold:0``...)."""
        with self._lock:
            self._advance(self._now())
            return self._state_text()

    @property
    def machine_position(self) -> Vec:
        """Current machine position (mm)."""
        with self._lock:
            self._advance(self._now())
            return _sub(self._position(self._now()), self._offset)

    @property
    def carriage(self) -> Vec:
        """Where the carriage physically is (mm, in the frame of a homed GRBL: ``[-travel, 0]``).

        Unlike :attr:`machine_position` it does not jump when the board restarts.
        """
        with self._lock:
            self._advance(self._now())
            return self._position(self._now())

    @property
    def work_position(self) -> Vec:
        """Current work position (mm): machine position minus G54 and G92 offsets."""
        with self._lock:
            return _sub(_sub(self.machine_position, self._wcs), self._modal.g92)

    def axis_moves(self, axis: str = "X") -> list[tuple[float, float]]:
        """``(start, end)`` machine positions (mm) of each motion of ``axis``, oldest first."""
        i = AXES.index(axis.upper())
        with self._lock:
            return [(m.start[i], m.end[i]) for m in self.motion_log if m.start[i] != m.end[i]]

    def trigger_alarm(self, code: int = 1) -> None:
        """Raise ``ALARM:code`` now, as a tripped switch or a fault would: motion stops dead.
        grblHAL's emergency stop (10) is critical as limits are (alarms.h, alarm_is_critical)."""
        with self._lock:
            estop = self.firmware == "grblhal" and code == 10
            self._alarm(code, self._now(), critical=code in (1, 2) or estop)

    # -- clock and state ----------------------------------------------------------------------

    def _travel(self) -> Vec:
        return (self.settings[130], self.settings[131], self.settings[132])

    def _steps(self, i: int) -> float:
        return self.settings[100 + i]

    def _quantize(self, v: Vec) -> Vec:
        return (
            round(v[0] * self._steps(0)) / self._steps(0),
            round(v[1] * self._steps(1)) / self._steps(1),
            round(v[2] * self._steps(2)) / self._steps(2),
        )

    def _position(self, t: float) -> Vec:
        if self._segment is not None:
            return self._segment.position(t)
        return self._phys

    def _state_text(self) -> str:
        if self._state == "Hold":
            return "Hold:0" if self._hold_done else "Hold:1"
        return self._state

    # -- power --------------------------------------------------------------------------------

    def on_power_up(self) -> None:
        # Power-up, or the DTR pulse of a port being opened (an Arduino's auto-reset): GRBL 1.1
        # main.c clears sys_position once before its reset loop, so a fresh board calls
        # wherever the carriage stands machine zero, then prints its banner (report.c,
        # report_init_message). A soft reset (Ctrl-X) goes round that loop only and keeps the
        # position: see _soft_reset.
        with self._lock:
            now = self._now()
            if self._segment is not None:
                self._interrupt(now, "power")
            self._powered = True
            self._offset = self._phys
            self._cold_start, self._homed_axes = True, set()
            self._restart(alarm=self._boot_locked())
            self._check_limits_at_init()
            self._booting_until = time.monotonic() + self.boot_delay
            if self.boot_delay <= 0:
                self._announce()
            self._wake.notify_all()

    def on_power_down(self) -> None:
        with self._lock:
            if self._segment is not None:
                self._interrupt(self._now(), "power")
            self._powered = False
            self._planner.clear()
            self._lines.clear()
            self._pending = None

    def _restart(self, *, alarm: bool) -> None:
        self._planner.clear()
        self._homing.clear()
        self._lines.clear()
        self._partial.clear()
        self._pending = None
        self._critical = False
        self._home_stuck = False
        self._report_after_homing = False  # main.c clears the real-time flags at a reset
        self._modal = _Modal()
        self._state = "Alarm" if alarm else "Idle"
        self._hold_done = False
        self._wco_changed = True

    def _boot_locked(self) -> bool:
        """Whether a board now starting must be homed before it moves (see ``firmware``)."""
        if self.firmware == "grblhal":
            return self._homing_required()
        if self.firmware == "fluidnc":  # any axis with homing: no option turns the lock off
            return bool(self.settings[22])
        return bool(self.homing_init_lock and self.settings[22])

    def _homing_required(self) -> bool:
        """grblHAL's ``limits_homing_required``: the init lock set, a cold start or locks not
        overridable, and not every axis of the homing cycle homed."""
        flags = int(self.settings[22])
        return bool(
            flags & 1
            and flags & GRBLHAL_INIT_LOCK
            and (self._cold_start or not flags & GRBLHAL_OVERRIDE_LOCKS)
            and not {0, 1, 2} <= self._homed_axes
        )

    def _check_limits_at_init(self) -> None:
        """``CHECK_LIMITS_AT_INIT``: with hard limits on, a pressed switch locks the board."""
        self._limits_at_init = bool(self.settings[21]) and any(
            self._switch_pressed(i) for i in range(3)
        )
        if self._limits_at_init:
            self._state = "Alarm"

    def _announce(self) -> None:
        self._booting_until = 0.0
        self.write(BANNERS[self.firmware])
        if self._limits_at_init:
            self.write("[MSG:Check Limits]\r\n")
        if self._state != "Alarm":
            return
        if self.firmware == "grblhal" and self._homing_required():
            self.write("ALARM:11\r\n[MSG:Homing cycle required]\r\n")
        elif self.firmware == "fluidnc":
            self.write("[MSG:INFO: ALARM: Unhomed]\r\nALARM:14\r\n")
        else:
            self.write("[MSG:'$H'|'$X' to unlock]\r\n")

    # -- input (I/O thread) -------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        with self._lock:
            if not self._powered or self._booting_until:
                return
            now = self._now()
            self._advance(now)
            for byte in data:
                if byte in _REALTIME:
                    self._realtime(byte, now)
                elif byte in (0x0A, 0x0D):
                    line = self._partial.decode("ascii", errors="replace")
                    self._partial.clear()
                    self._lines.append(line)
                elif byte >= 0x80:
                    continue  # other real-time overrides: not simulated
                else:
                    self._partial.extend(bytes([byte]))
            self._wake.notify_all()

    def _realtime(self, byte: int, now: float) -> None:
        if byte == ord("?"):
            # grblHAL serves status reports in a critical alarm (protocol.c, its blocking loop)
            silent = self._critical and self.firmware != "grblhal"
            if silent or self._homing_cycle():
                # Flagged, not served: see "Status reports GRBL does not send" above.
                self.unanswered_status_queries += 1
                self._report_after_homing = not self._critical
                return
            self._report_status(now)
        elif byte == 0x18:
            self._soft_reset(now)
        elif byte == ord("!"):
            if self._state == "Jog":
                self._brake(now, then="jog cancel")
            elif self._state == "Run":
                self._state, self._hold_done = "Hold", False
                self._brake(now, then="hold")
        elif byte == ord("~"):
            if self._state == "Hold" and self._hold_done:
                self._state = "Run"
                self._t_free = now
        elif byte == 0x85 and self._state == "Jog":
            self._brake(now, then="jog cancel")

    def _report_status(self, now: float) -> None:
        mpos = self._quantize(_sub(self._position(now), self._offset))
        parts = [self._state_text()]
        wco = _add(self._wcs, self._modal.g92)
        # $13=1 (report_inches): print.c printFloat_CoordValue converts with INCH_PER_MM and
        # prints 4 decimals; rates in inch/min.
        inches = bool(int(self.settings[13]))
        fmt = _fmt_inches if inches else _fmt
        if int(self.settings[10]) & 1:
            parts.append(f"MPos:{fmt(mpos)}")
        else:
            parts.append(f"WPos:{fmt(_sub(mpos, wco))}")
        if int(self.settings[10]) & 2:
            parts.append(f"Bf:{self.planner_blocks - len(self._planner)},128")
        speed = self._segment.speed(now) * 60.0 if self._segment is not None else 0.0
        parts.append(f"FS:{speed * (INCH_PER_MM if inches else 1.0):.0f},0")
        pins = "".join(AXES[i] for i in range(3) if self._switch_pressed(i))
        if pins:
            parts.append(f"Pn:{pins}")
        self._reports += 1
        if int(self.settings[10]) & 1 and (self._wco_changed or self._reports % 10 == 0):
            parts.append(f"WCO:{fmt(wco)}")
            self._wco_changed = False
        self.write("<" + "|".join(parts) + ">\r\n")

    # -- the firmware loop --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._quit.is_set():
            with self._wake:
                now = self._now()
                if self._booting_until and time.monotonic() >= self._booting_until:
                    self._announce()
                self._advance(now)
                if self._powered and not self._booting_until:
                    self._process_lines(now)
                self._wake.wait(self._sleep_time(now))

    def _sleep_time(self, now: float) -> float:
        horizon = 0.05
        if self._segment is not None:
            horizon = min(horizon, max(0.0, self._segment.end_time - now) / self.time_scale)
        if self._pending is not None and self._pending.wake_at is not None:
            horizon = min(horizon, max(0.0, self._pending.wake_at - now) / self.time_scale)
        return max(horizon, 0.0005)

    def _process_lines(self, now: float) -> None:
        while self._powered and not self._critical:
            if self._pending is not None:
                if not self._pending.ready(self._now()):
                    return
                for extra in self._pending.extra:
                    self.write(extra + "\r\n")
                self.write(self._pending.response + "\r\n")
                self._pending = None
                continue
            if not self._lines:
                return
            line = self._lines.popleft()
            try:
                self._pending = self._execute(line, self._now())
            except _GcodeError as exc:
                self.write(f"error:{exc.code}\r\n")

    # -- motion -------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Bring the motion state up to simulated time ``now``."""
        for _ in range(10000):
            seg = self._segment
            if seg is None:
                if not self._start_next(now):
                    return
                continue
            end = seg.end_time
            if end > now:
                return
            self._finish_segment(seg, end)

    def _start_next(self, now: float) -> bool:
        if self._home_stuck:
            return False  # protocol.c starts a cycle only from Idle (or a finished hold)
        t = max(self._t_free, 0.0)
        if self._state in ("Run", "Jog") and self._planner:
            block = self._planner[0]
            self._begin(block.kind, block.target, block.feed, t, hard_limits=True)
            return True
        if self._state == "Home" and self._homing:
            axis, target, feed, kind = self._homing.popleft()
            goal = list(self._phys)
            goal[axis] = target
            self._begin(kind, (goal[0], goal[1], goal[2]), feed, t, hard_limits=False)
            return True
        if self._state == "Home":
            self._finish_homing()
            return False
        if self._state in ("Run", "Jog"):
            self._state = "Idle"
        return False

    def _begin(self, kind: str, target: Vec, feed: float, t0: float, *, hard_limits: bool) -> None:
        start = self._phys
        delta = _sub(target, start)
        dist = math.sqrt(sum(d * d for d in delta))
        if dist == 0:
            self._phys = target
            self._segment = None
            if self._planner and kind == self._planner[0].kind:
                self._planner.popleft()
            self._t_free = t0
            return
        unit = _scale(delta, 1 / dist)
        rate, accel = feed / 60.0, math.inf
        for i in range(3):
            if unit[i]:
                rate = min(rate, self.settings[110 + i] / 60.0 / abs(unit[i]))
                accel = min(accel, self.settings[120 + i] / abs(unit[i]))
        seg = _Segment(kind, start, target, unit, Trapezoid(dist, rate, accel), t0)
        if hard_limits and self.settings[21]:
            seg.limit_hit = self._first_switch(start, unit, dist)
        self._segment = seg

    def _switch_bounds(self, i: int) -> tuple[float, float]:
        """Physical positions of the min and max limit switches of axis ``i``."""
        return -self._travel()[i], 0.0

    def _switch_pressed(self, i: int) -> bool:
        return self._pressed(self._phys[i], *self._switch_bounds(i))

    @staticmethod
    def _pressed(x: float, low: float, high: float) -> bool:
        return x >= high + 1e-9 or x <= low - 1e-9

    def _first_switch(self, start: Vec, unit: Vec, dist: float) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        for i in range(3):
            if not unit[i]:
                continue
            low, high = self._switch_bounds(i)
            behind = low if unit[i] > 0 else high
            if self._pressed(start[i], low, high) and (start[i] - behind) * unit[i] < 0:
                # Moving off a pressed switch: the pin changes as it releases (limits.c).
                s = (behind - start[i]) / unit[i]
            else:
                bound = high if unit[i] > 0 else low
                # A switch trips just past its position; one already pressed trips at once.
                s = max((bound - start[i]) / unit[i], 0.0) + 0.001
            if s < dist and (best is None or s < best[0]):
                best = (s, AXES[i])
        return best

    def _finish_segment(self, seg: _Segment, t: float) -> None:
        self._phys = seg.position(t) if seg.limit_hit else seg.target
        self._segment = None
        self._t_free = t
        interrupted = "hard limit" if seg.limit_hit else ""
        self._log(seg.kind, seg.start, self._phys, interrupted)
        if seg.limit_hit is not None:
            self._alarm(1, t, critical=True)
            return
        if seg.kind == "brake":
            if self._after_brake == "hold":
                self._hold_done = True
            elif self._after_brake == "jog cancel":
                self._planner.clear()
                self._state = "Idle"
            return
        if self._planner and self._state in ("Run", "Jog"):
            self._planner.popleft()

    def _log(self, kind: str, start: Vec, end: Vec, interrupted: str = "") -> None:
        if start != end:
            self.motion_log.append(
                SimMotion(
                    kind,
                    self._quantize(_sub(start, self._offset)),
                    self._quantize(_sub(end, self._offset)),
                    interrupted,
                )
            )

    def _interrupt(self, t: float, why: str) -> None:
        """Stop dead (no deceleration): reset, alarm or power loss."""
        seg = self._segment
        if seg is None:
            return
        self._phys = seg.position(t)
        self._segment = None
        self._t_free = t
        self._log(seg.kind, seg.start, self._phys, why)

    def _brake(self, t: float, *, then: str) -> None:
        """Decelerate along the current path to rest (feed hold, jog cancel)."""
        self._after_brake = then
        seg = self._segment
        if seg is None:
            if then == "hold":
                self._hold_done = True
            else:
                self._planner.clear()
                self._state = "Idle"
            return
        here, speed = seg.position(t), seg.speed(t)
        self._segment = None
        self._log(seg.kind, seg.start, here, then)
        self._phys = here
        remaining = seg.profile.distance - seg.profile.distance_at(t - seg.t0)
        distance = min(Trapezoid.braking_distance(speed, seg.profile.accel), remaining)
        target = _add(here, _scale(seg.unit, distance))
        brake = _Segment(
            "brake",
            here,
            target,
            seg.unit,
            Trapezoid(distance, max(speed, 1e-9), seg.profile.accel, v0=speed),
            t,
        )
        if self.settings[21]:
            brake.limit_hit = self._first_switch(here, seg.unit, distance)
        self._segment = brake

    def _alarm(self, code: int, t: float, *, critical: bool) -> None:
        self._interrupt(t, "alarm")
        self._planner.clear()
        self._homing.clear()
        self._pending = None
        self._lines.clear()
        self._state = "Alarm"
        self._critical = critical
        self._report_after_homing = False  # an alarm resets the board (mc_reset)
        self.alarms.append(code)
        self.write(f"ALARM:{code}\r\n")
        if critical and self.firmware == "grblhal" and code == 10:  # messages.c, Message_EStop
            self.write("[MSG:Emergency stop - clear, then reset to continue]\r\n")
        elif critical:
            self.write("[MSG:Reset to continue]\r\n")

    def _soft_reset(self, t: float) -> None:
        moving = self._state in ("Run", "Jog", "Home") or (
            self._state == "Hold" and not self._hold_done
        )
        homing = self._state == "Home"
        self._interrupt(t, "reset")
        self._cold_start = False
        if moving:
            self._homed_axes.clear()
        if moving:
            self.alarms.append(6 if homing else 3)
            self.write(f"ALARM:{6 if homing else 3}\r\n")
        alarm = moving or self._state == "Alarm"
        self._restart(alarm=alarm)
        self._check_limits_at_init()
        self._announce()

    # -- homing -------------------------------------------------------------------------------

    def _start_homing(self, axes: list[int]) -> None:
        seek, feed, pulloff = self.settings[25], self.settings[24], self.settings[27]
        self._homing.clear()
        self._homing_axes = axes
        for i in axes:
            low, high = self._switch_bounds(i)
            toward_min = bool(int(self.settings[23]) & (1 << i))
            switch = low if toward_min else high
            back = pulloff if toward_min else -pulloff
            search = 1.5 * self._travel()[i]
            if abs(switch - self._phys[i]) > search:
                raise _GcodeError(-9)  # switch out of reach: ALARM:9
            self._homing.extend(
                [
                    (i, switch, seek, "home"),
                    (i, switch + back, feed, "home"),
                    (i, switch, feed, "home"),
                    (i, switch + back, feed, "home"),
                ]
            )
        self._state = "Home"
        self._t_free = self._now()

    def _finish_homing(self) -> None:
        offset = list(self._offset)
        for i in self._homing_axes:
            toward_min = bool(int(self.settings[23]) & (1 << i))
            pulloff = self.settings[27]
            machine = -self._travel()[i] + pulloff if toward_min else -pulloff
            offset[i] = self._phys[i] - machine
        self._offset = (offset[0], offset[1], offset[2])
        self._wco_changed = True
        if self._report_after_homing:  # mc_homing_cycle: served before the state is Idle again
            self._report_after_homing = False
            self._report_status(self._now())
        self._homed_axes.update(self._homing_axes)
        # grblHAL keeps its lock, unsaid, until every axis of the cycle is homed (system.c)
        self._state = "Alarm" if self.firmware == "grblhal" and self._homing_required() else "Idle"

    def _homing_cycle(self) -> bool:
        """Whether a homing cycle is running (not the dead Home of a refused ``$HX``)."""
        return self._state == "Home" and not self._home_stuck

    # -- line execution -----------------------------------------------------------------------

    def _execute(self, raw: str, now: float) -> _Pending | None:
        """Run one line; return a pending wait, or None after writing the response."""
        line = re.sub(r"\(.*?\)|;.*$", "", raw).replace(" ", "").replace("\t", "").upper()
        if len(line) > LINE_LIMIT:
            raise _GcodeError(11)
        if not line:
            self.write("ok\r\n")
            return None
        if line.startswith("$"):
            return self._system(line, now)
        if self._state in ("Alarm", "Jog"):
            raise _GcodeError(9)
        return self._gcode(line, now)

    def _ok(self, *lines: str) -> None:
        for text in lines:
            self.write(text + "\r\n")
        self.write("ok\r\n")

    def _system(self, line: str, now: float) -> _Pending | None:
        idle_or_alarm = self._state in ("Idle", "Alarm")
        if line == "$":
            self._ok("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]")
        elif line == "$$":
            if self._state in ("Run", "Hold"):
                raise _GcodeError(8)
            self._ok(*(self._setting_text(k) for k in sorted(self.settings)))
        elif line == "$G":
            self._ok(
                f"[GC:G{self._modal.motion} G54 G17 {'G21' if self._modal.mm else 'G20'} "
                f"{'G90' if self._modal.absolute else 'G91'} G94 M5 M9 T0 "
                f"F{self._modal.feed:g} S0]"
            )
        elif line == "$I":
            if not idle_or_alarm:
                raise _GcodeError(8)
            options = "VH" if self.single_axis_homing else "V"  # report.c, report_build_info
            self._ok(*BUILD_INFO[self.firmware](options))
        elif line == "$#":
            if not idle_or_alarm:
                raise _GcodeError(8)
            self._ok(
                f"[G54:{_fmt(self._wcs)}]",
                *(f"[G{n}:0.000,0.000,0.000]" for n in range(55, 60)),
                "[G28:0.000,0.000,0.000]",
                "[G30:0.000,0.000,0.000]",
                f"[G92:{_fmt(self._modal.g92)}]",
                "[TLO:0.000]",
                "[PRB:0.000,0.000,0.000:0]",
            )
        elif line == "$N":
            if not idle_or_alarm:
                raise _GcodeError(8)
            self._ok("$N0=", "$N1=")
        elif line == "$X":  # any state; only ALARM is changed (system.c)
            if self._state == "Alarm" and self.firmware == "grblhal" and self._homing_required():
                raise _GcodeError(46)
            if self._state == "Alarm":
                self._state = "Idle"
                # FluidNC sends its feedback messages as log lines (Report.cpp, log_info)
                info = "INFO: " if self.firmware == "fluidnc" else ""
                self._ok(f"[MSG:{info}Caution: Unlocked]")
            else:
                self._ok()
        elif line.startswith("$H"):
            return self._home_command(line)
        elif line.startswith("$J="):
            self._jog(line[3:], now)
        elif m := re.fullmatch(r"\$(\d+)=(.*)", line):
            self._set(int(m.group(1)), m.group(2))
        else:
            raise _GcodeError(3)
        return None

    def _setting_text(self, key: int) -> str:
        value = self.settings[key]
        return f"${key}={int(value)}" if key in _INTEGER_SETTINGS else f"${key}={value:.3f}"

    def _set(self, key: int, text: str) -> None:
        if self._state not in ("Idle", "Alarm"):
            raise _GcodeError(8)
        if key not in self.settings:
            raise _GcodeError(3)
        try:
            value = float(text)
        except ValueError:
            raise _GcodeError(2) from None
        if value < 0:
            raise _GcodeError(4)
        if key == 20 and value and not self.settings[22]:
            raise _GcodeError(10)
        self.settings[key] = value
        self._ok()

    def _home_command(self, line: str) -> _Pending | None:
        # system.c: the Idle/Alarm check, then $22, then the state set to Home *before* the
        # letter is looked at; HOMING_SINGLE_AXIS_COMMANDS takes one of X, Y, Z.
        if self._state not in ("Idle", "Alarm"):
            raise _GcodeError(8)
        if not self.settings[22]:
            raise _GcodeError(5)
        letters = line[2:]
        if letters and not (self.single_axis_homing and len(letters) == 1 and letters in AXES):
            self._state = "Home"
            self._home_stuck = True
            raise _GcodeError(3)
        axes = [AXES.index(letters)] if letters else [2, 0, 1]
        try:
            self._start_homing(axes)
        except _GcodeError:
            self._alarm(9, self._now(), critical=False)
            return None
        return _Pending(ready=lambda _t: self._state != "Home")

    def _words(self, line: str) -> list[tuple[str, float, str]]:
        words: list[tuple[str, float, str]] = []
        pos = 0
        for m in re.finditer(r"([A-Z])([-+]?(?:\d+\.?\d*|\.\d+))?", line):
            if m.start() != pos:
                raise _GcodeError(1)
            pos = m.end()
            if m.group(2) is None:
                raise _GcodeError(2)
            words.append((m.group(1), float(m.group(2)), m.group(2)))
        if pos != len(line):
            raise _GcodeError(1)
        return words

    def _axis_words(
        self, words: list[tuple[str, float, str]], allowed: str
    ) -> tuple[dict[str, float], dict[str, float], list[float]]:
        """Split words into axis values, other letters, and G numbers (checking letters)."""
        axes: dict[str, float] = {}
        other: dict[str, float] = {}
        gcodes: list[float] = []
        for letter, value, _ in words:
            if letter == "G":
                gcodes.append(value)
            elif letter in AXES:
                if letter in axes:
                    raise _GcodeError(25)
                axes[letter] = value
            elif letter in allowed:
                if letter in other:
                    raise _GcodeError(25)
                other[letter] = value
            else:
                raise _GcodeError(20)
        return axes, other, gcodes

    def _machine_target(
        self, axes: dict[str, float], *, absolute: bool, mm: bool, base: Vec, machine: bool
    ) -> Vec:
        factor = 1.0 if mm else 25.4
        wco = (0.0, 0.0, 0.0) if machine else _add(self._wcs, self._modal.g92)
        target = list(base)
        for letter, value in axes.items():
            i = AXES.index(letter)
            target[i] = (value * factor + wco[i]) if absolute else (base[i] + value * factor)
        return self._quantize((target[0], target[1], target[2]))

    def _planned_machine(self) -> Vec:
        if self._planner:
            return _sub(self._planner[-1].target, self._offset)
        return self._quantize(_sub(self._position(self._now()), self._offset))

    def _soft_limit_violation(self, target: Vec) -> bool:
        if not self.settings[20]:
            return False
        travel = self._travel()
        return any(target[i] > 1e-9 or target[i] < -travel[i] - 1e-9 for i in range(3))

    def _jog(self, text: str, now: float) -> None:
        if self._state not in ("Idle", "Jog"):
            raise _GcodeError(8)
        words = self._words(text)
        axes, other, gcodes = self._axis_words(words, "F")
        absolute, mm, machine = self._modal.absolute, self._modal.mm, False
        for g in gcodes:
            modes = _distance_and_units(g, absolute, mm)
            if modes is not None:
                absolute, mm = modes
            elif g == 53:
                machine = True
            else:
                raise _GcodeError(16)
        if "F" not in other:
            raise _GcodeError(22)
        if not axes:
            raise _GcodeError(26)
        base = self._planned_machine()
        target = self._machine_target(axes, absolute=absolute, mm=mm, base=base, machine=machine)
        if self._soft_limit_violation(target):
            raise _GcodeError(15)
        if len(self._planner) >= self.planner_blocks:
            raise _GcodeError(8)
        feed = other["F"] * (1.0 if mm else 25.4)
        if target != base:
            self._queue(_Block("jog", _add(target, self._offset), feed), "Jog", now)
        self._ok()

    def _queue(self, block: _Block, state: str, now: float) -> None:
        if self._state == "Idle":
            self._state = state
            self._t_free = now
        self._planner.append(block)
        self._advance(now)

    def _gcode(self, line: str, now: float) -> _Pending | None:
        words = self._words(line)
        axes, other, gcodes = self._axis_words(words, "FPLNMST")
        modal = self._modal
        motion: int | None = None
        dwell = set_g92 = clear_g92 = machine = False
        g10 = False
        absolute, mm = modal.absolute, modal.mm
        for g in gcodes:
            modes = _distance_and_units(g, absolute, mm)
            if modes is not None:
                absolute, mm = modes
            elif g in (0, 1):
                if motion is not None:
                    raise _GcodeError(21)
                motion = int(g)
            elif g == 4:
                dwell = True
            elif g == 10:
                g10 = True
            elif g in (17, 54, 94):
                pass
            elif g == 92:
                set_g92 = True
            elif abs(g - 92.1) < 1e-6:
                clear_g92 = True
            elif g == 53:
                machine = True
            else:
                raise _GcodeError(20)
        if "M" in other and other["M"] not in (0, 2, 5, 9, 30):
            raise _GcodeError(20)
        modal.absolute, modal.mm = absolute, mm
        if "F" in other:
            modal.feed = other["F"] * (1.0 if mm else 25.4)
        if dwell:
            if "P" not in other:
                raise _GcodeError(28)
            seconds = other["P"]
            pending = _Pending(ready=lambda _t: False)

            def dwell_done(t: float) -> bool:
                if self._planner or self._segment is not None or self._state != "Idle":
                    return False
                if pending.wake_at is None:
                    pending.wake_at = t + seconds
                return t >= pending.wake_at

            pending.ready = dwell_done
            return pending
        if g10:
            self._g10(axes, other)
            return None
        current = self._planned_machine()
        if clear_g92:
            modal.g92 = (0.0, 0.0, 0.0)
            self._wco_changed = True
        if set_g92:
            if not axes:
                raise _GcodeError(26)
            g92 = list(modal.g92)
            factor = 1.0 if mm else 25.4
            for letter, value in axes.items():
                i = AXES.index(letter)
                g92[i] = current[i] - self._wcs[i] - value * factor
            modal.g92 = (g92[0], g92[1], g92[2])
            self._wco_changed = True
            self._ok()
            return None
        if motion is not None:
            modal.motion = motion
        if axes:
            return self._motion_block(axes, current, machine, now)
        self._ok()
        return None

    def _g10(self, axes: dict[str, float], other: dict[str, float]) -> None:
        level, slot = other.get("L"), other.get("P", 1)
        if level not in (2, 20) or slot not in (0, 1):
            raise _GcodeError(29 if slot not in (0, 1) else 20)
        factor = 1.0 if self._modal.mm else 25.4
        wcs = list(self._wcs)
        current = self._planned_machine()
        for letter, value in axes.items():
            i = AXES.index(letter)
            if level == 2:
                wcs[i] = value * factor
            else:
                wcs[i] = current[i] - self._modal.g92[i] - value * factor
        self._wcs = (wcs[0], wcs[1], wcs[2])
        self._wco_changed = True
        self._ok()

    def _motion_block(
        self, axes: dict[str, float], current: Vec, machine: bool, now: float
    ) -> _Pending | None:
        modal = self._modal
        if modal.motion == 1 and modal.feed <= 0:
            raise _GcodeError(22)
        target = self._machine_target(
            axes, absolute=modal.absolute, mm=modal.mm, base=current, machine=machine
        )
        if self._soft_limit_violation(target):
            self._alarm(2, now, critical=True)
            return None
        feed = modal.feed if modal.motion == 1 else self.settings[110]
        block = _Block(f"G{modal.motion}", _add(target, self._offset), feed)
        if target == current:
            self._ok()
            return None

        def queued(t: float) -> bool:
            if len(self._planner) >= self.planner_blocks:
                return False
            self._queue(block, "Run", t)
            return True

        if queued(now):
            self._ok()
            return None
        return _Pending(ready=queued)
