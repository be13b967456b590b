"""``marlin://``: a focus rail driven by a Marlin 2 board (3D-printer electronics) over serial.

The protocol is plain G-code, one line at a time, each answered by ``ok``:

* ``G90`` + ``G1 X.. F..`` moves (``G91`` for relative jogs); ``ok`` only means *queued*.
  ``M114`` reads back the position: ``X:`` is the *commanded* position, ``Count X:`` the
  planner's position in steps, which is where the motor goes (a move the planner dropped does
  not count).
* **Short moves vanish.** Marlin's planner drops a move under ``MIN_STEPS_PER_SEGMENT`` (6)
  motor steps and adds it to the next one, while ``X:`` already shows the target. At connection
  ``M92`` gives the steps per mm; a move (or a plan step) under six steps is refused before
  anything moves, and after every move the stepper count is compared with the target.
* Marlin talks while it works: ``echo:busy: processing`` every couple of seconds during long
  waits (each one proves the board alive and extends the wait), other ``echo:`` lines, and
  ``start`` after a reset. All are tolerated. A ``start`` while connecting means the board
  restarted as the port opened (an Arduino resets on DTR): it now counts from 0 wherever the
  carriage stands, and ``capabilities.unreferenced`` says so until it is homed or accepted. A
  ``start`` later on (a power dip, the watchdog, the reset button) ends the command awaited
  and refuses every move until the rail is homed or its position accepted.
* **Stop.** ``M410`` (quick stop, keeps the position) acts at once only in builds with
  ``EMERGENCY_PARSER``, which ``M115`` announces as ``Cap:EMERGENCY_PARSER:1``; without it
  (the stock configuration) ``M410`` and ``M112`` wait in the command queue like any line, so a
  pending ``M400`` would hold them until the move is over. So: with the emergency parser, a
  move waits with ``M400``; without it, the queue is kept free for as long as the move takes
  at full speed, and only its last part (the acceleration ramps) waits with ``M400``.
  :meth:`MarlinRail.emergency_stop` sends ``M112``, after which the board must be reset.
* Motors stay powered while connected (``M84 S0``): a stock build switches them off after two
  idle minutes, and an unpowered carriage slips to a full step, or falls on a vertical rail.
* Homing: ``G28 X``. Once an axis is homed Marlin clamps targets to its soft endstops (read
  with ``M211``), and Marlin 1.x always; the host keeps its backlash overshoot inside them, so
  approaching 0 from below does not end at the wrong place, and refuses a target beyond them.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.rails.base import ConnectionLostError, MoveStoppedError, RailOptions
from rig.rails.gcode import GcodeRail, GcodeSettings
from rig.rails.serialport import SerialLink
from rig.units import format_length
from stacker.launch import WAKE_S

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

_POSITION = re.compile(r"^X:\s*([-+]?[\d.]+)\s+Y:\s*([-+]?[\d.]+)\s+Z:\s*([-+]?[\d.]+)")
_COUNT = re.compile(r"Count\s+X:\s*([-+]?\d+)\s+Y:\s*([-+]?\d+)\s+Z:\s*([-+]?\d+)")
_CAP = re.compile(r"^Cap:([A-Z0-9_]+):(\d+)")
_M92 = re.compile(r"M92\s+X([-+\d.]+)\s+Y([-+\d.]+)\s+Z([-+\d.]+)")
# M211's report: "  M211 S1 ; ON" then "  Min:  X0.00 Y0.00 Z0.00   Max:  X200.00 ..." since
# Marlin 2.0.9.2 (gcode/config/M211.cpp, M211_report); "echo:Soft endstops: ON  Min: ..." on one
# line before. STR_ON / STR_OFF are "ON" / "OFF" (core/language.h).
_M211_STATE = re.compile(r"M211\s+S([01])\b|Soft endstops:\s*(ON|OFF)\b", re.IGNORECASE)
_M211_LIMITS = re.compile(r"Min:(.*?)Max:(.*)")
_REPORT_UM = 10.0  # M114 prints two decimals of a millimetre
MIN_STEPS_PER_SEGMENT = 6  # Marlin's Configuration_adv.h default (planner.cpp drops shorter)
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
DRAIN_QUIET_S = 0.5
"""After the ``M115`` that answered, how long the line may stay quiet before the replies still
owed to earlier ones are given up for lost."""


def _report_text(report: tuple[float, int | None] | None) -> str:
    if report is None:
        return "nothing"
    position, count = report
    return format_length(position) + ("" if count is None else f" (count {count})")


def _printable(line: str) -> str:
    """``line`` without the bytes line noise adds (a glitch as the board powers up)."""
    return _NOT_PRINTABLE.sub("", line).strip()


def _major_version(firmware: str) -> int | None:
    """The major version in ``M115``'s firmware name (``Marlin 1.1.9``, ``Marlin
    bugfix-2.0.x``), or ``None``."""
    match = re.search(r"Marlin\s+(?:bugfix-)?(\d+)\.", firmware)
    return int(match.group(1)) if match else None


def parse_soft_endstops(lines: list[str], axis: str) -> tuple[float, float] | None:
    """The soft endstops of ``axis`` (µm) from ``M211``'s report; ``None`` when they are off.

    Takes the report as every Marlin 2 prints it (see ``_M211_STATE``); ``None`` also when the
    report names no limits for ``axis``.
    """
    text = " ".join(lines)
    state = _M211_STATE.search(text)
    limits = _M211_LIMITS.search(text)
    if (
        state is None
        or limits is None
        or (state.group(1) or state.group(2)).upper() in ("0", "OFF")
    ):
        return None
    word = re.compile(rf"\b{axis}\s*([-+]?[\d.]+)")
    low, high = word.search(limits.group(1)), word.search(limits.group(2))
    if low is None or high is None:
        return None
    try:
        return float(low.group(1)) * 1000.0, float(high.group(1)) * 1000.0
    except ValueError:
        return None


class MarlinRail(GcodeRail):
    """A Marlin rail; see the module docstring.

    Takes the settings of every G-code rail (:class:`~rig.rails.gcode.GcodeRail`); the move
    speed is 600 mm/min unless ``feed_mm_min`` says otherwise, ``timeout_s`` is reset by every
    ``busy:`` line. As a URL:
    ``marlin:///dev/ttyACM0?axis=X&feed=10mm/s&backlash=30um&settle=0.3``.
    """

    scheme = "marlin"
    example_url = "marlin:///dev/ttyACM0"
    axes = "XYZ"
    default_feed_mm_min = 600.0
    feed_mm_min: float

    def __init__(
        self, port: str, options: RailOptions | None = None, **settings: Unpack[GcodeSettings]
    ) -> None:
        super().__init__(port, options, **settings)
        self.capabilities_reported: dict[str, int] = {}
        """``M115``'s ``Cap:NAME:value`` lines."""
        self.steps_per_mm = 0.0
        """The axis's steps per mm (``M92``); 0 when the board did not say."""
        self._soft_endstops: tuple[float, float] | None = None
        self._count_shift = 0
        self._boots = 0
        self._errors: list[str] = []
        self._activity = 0
        self._lines = 0
        """Lines received, of any kind."""
        self._halted = False
        self._needs_sync = False
        self._position_um: float | None = None
        self._last_report: tuple[float, int | None] | None = None
        """The last ``M114``: where a reconnection must find the board again."""
        self._connected = False
        """Connection is complete: a ``start`` from now on is a restart during the session."""
        self._position_lost: str | None = None
        self._connect()

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        self._connected = False
        boots = self._boots
        self._link = SerialLink(self.port, self.baud, self._on_line, self._on_lost)
        try:
            time.sleep(self.wakeup_s)
            self._sync(deadline=time.monotonic() + max(self.timeout_s, 1.0))
            self._command("G21")
            self._keep_motors_on()
            self._read_configuration()
            self._position_um = None
            self._calibrate_count()
        except Exception:
            self._link.close()
            self._link = None
            raise
        self._connected = True
        if self._boots != boots:
            self._unreferenced = (
                "the board restarted when its port was opened (an Arduino resets on DTR), so it "
                "counts from 0 wherever the carriage stands"
            )

    @property
    def emergency_parser(self) -> bool:
        """Whether ``M410`` acts at once (``Cap:EMERGENCY_PARSER:1`` in ``M115``)."""
        return bool(self.capabilities_reported.get("EMERGENCY_PARSER"))

    def _read_configuration(self) -> None:
        """Steps per mm (``M92``, else ``M503``) and the soft endstops (``M211``).

        Marlin 1.1's ``M92`` without arguments prints nothing (``gcode_M92`` in
        ``Marlin_main.cpp``); its settings report, ``M503``, has the ``M92`` line.
        """
        self.steps_per_mm = self._steps_per_mm("M92") or self._steps_per_mm("M503")
        self._soft_endstops = parse_soft_endstops(self._command("M211"), self.axis)

    def _steps_per_mm(self, command: str) -> float:
        index = "XYZ".index(self.axis)
        for line in self._command(command):
            match = _M92.search(line)
            if match:
                try:
                    return float(match.group(index + 1))
                except ValueError:  # "400.00.00": line noise, as unknown as no M92 line
                    log.warning("%s: ignoring malformed M92 line %r", self.port, line)
        return 0.0

    def setup_warnings(self) -> list[str]:
        """The steps per mm unknown: short moves cannot be told from lost ones."""
        if self.steps_per_mm:
            return []
        return [
            f"{self.port}: the board reports no steps per mm (neither M92 nor M503 says), so "
            f"a move under {MIN_STEPS_PER_SEGMENT} motor steps, which Marlin drops, cannot be "
            "refused or caught; keep every step of the plan well above that"
        ]

    def _sync(self, deadline: float) -> None:
        """Send ``M115`` until its ``FIRMWARE_NAME`` reply; everything before it is stale.

        A board with an LCD sits on its boot screen after ``start`` (``BOOTSCREEN_TIMEOUT``,
        ``MarlinCore.cpp`` ``setup()``) and then answers every ``M115`` sent meanwhile, each
        reply about 1 KB that takes 85 ms at 115200 baud. The replies still owed are waited
        for (:meth:`_drain`): one taken late as the next command's answer left every answer
        after it one command behind, ``M400`` reporting a move done while it ran."""
        sent = 0
        while True:
            sent += 1
            try:
                info = self._command("M115", timeout=1.0, sync=True)
                names = [line for line in info if line.startswith("FIRMWARE_NAME:")]
                if names:
                    self.firmware = names[0][len("FIRMWARE_NAME:") :].split(" SOURCE")[0]
                    caps = (_CAP.match(line) for line in info)
                    self.capabilities_reported = {m.group(1): int(m.group(2)) for m in caps if m}
                    break
            except _Timeout:
                pass
            if time.monotonic() > deadline:
                raise DeviceNotFoundError(
                    f"no Marlin board answers on {self.port} at {self.baud} baud; check the baud "
                    "rate and the cable" + self._other_firmware_hint()
                )
        self._drain(sent - 1)
        time.sleep(0.05)  # a late answer to an earlier M115 is dropped, not taken as ours
        with self._cond:
            self._responses.clear()
        self._needs_sync = False

    def _drain(self, owed: int) -> None:
        """Wait for ``owed`` more ``ok`` lines, as long as lines keep coming (a line sent while
        the board restarted is never answered: a quiet :data:`DRAIN_QUIET_S` ends the wait)."""
        if owed <= 0:
            return
        with self._cond:
            self._responses.clear()
            self._awaiting = True
            try:
                lines = self._lines
                deadline = time.monotonic() + DRAIN_QUIET_S
                while len(self._responses) < owed:
                    if self._lines != lines:
                        lines, deadline = self._lines, time.monotonic() + DRAIN_QUIET_S
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(min(remaining, WAKE_S))
                self._responses.clear()
                self._info = []
            finally:
                self._awaiting = False

    def reconnect(self) -> None:
        """Reopen the port after a lost connection; the position must be re-established.

        Opening the port resets the board, which then believes it is at 0: moves are refused
        until :meth:`home`.
        """
        if self._link is not None:
            self._link.close()
        self._link = None
        self._halted = False
        self._homed = False
        before = self._last_report
        self._connect()
        if self._unreferenced is None and before is not None and self._last_report != before:
            # No `start` seen, yet the board reads elsewhere: one that does not restart on
            # open lost power while unplugged (its `start` went to a closed port).
            self._position_lost = (
                f"the board restarted while disconnected: it reads "
                f"{_report_text(self._last_report)} where it read {_report_text(before)}"
            )

    # -- lines --------------------------------------------------------------------------------

    def _on_line(self, line: str) -> None:
        with self._cond:
            self._lines += 1
            if line == "ok" or line.startswith("ok "):
                if self._awaiting:
                    self._responses.append("ok")
            elif line.startswith("Error:"):
                if "halted" in line or "kill" in line:
                    self._halted = True
                self._errors.append(line[6:])
            elif line.startswith("echo:busy") or line.startswith("busy:"):
                # Only a keepalive extends a wait: a board that also prints on its own (M155
                # temperature reports) kept a wait whose "ok" was lost going for ever.
                self._activity += 1
            elif _printable(line) == "start":  # a power dip may garble the byte before it
                self._homed = False
                self._position_um = None
                self._boots += 1
                if self._connected:
                    self._position_lost = (
                        "the board restarted (a power dip, its watchdog or its reset button), "
                        "so it counts from 0 wherever the carriage stands"
                    )
            else:
                self._foreign.append(line)
                if self._awaiting:
                    self._info.append(line)
            self._cond.notify_all()

    def _on_lost(self, error: ConnectionLostError) -> None:
        with self._cond:
            self._cond.notify_all()

    def _require_link(self) -> SerialLink:
        link = super()._require_link()
        if self._halted:
            raise RigError(
                f"the Marlin board on {self.port} is halted (M112 or a fault); reset it "
                "(power cycle or reconnect) and home the rail"
            )
        return link

    def _command(self, line: str, *, timeout: float | None = None, sync: bool = False) -> list[str]:
        """Send a line and wait for ``ok``; ``busy`` keepalives extend the wait."""
        link = self._require_link()
        if self._needs_sync and not sync:
            self._sync(deadline=time.monotonic() + self.timeout_s)
        silence = self.timeout_s if timeout is None else timeout
        with self._cmd_lock:
            with self._cond:
                self._responses.clear()
                self._info, self._errors = [], []
                self._awaiting = True
                # Counted before the line goes out: a board that restarts as soon as it has the
                # line (before this thread runs again) is a restart, not the silence allowed.
                seen, boots = self._activity, self._boots
            try:
                link.send_line(line)
                with self._cond:
                    deadline = time.monotonic() + silence
                    while not self._responses:
                        if link.lost is not None:
                            raise link.lost
                        if self._connected and self._boots != boots:
                            raise self._restarted(repr(line))
                        if self._halted:
                            raise RigError(
                                f"the Marlin board on {self.port} halted during {line!r} "
                                f"({'; '.join(self._errors) or 'kill() called'}); reset it "
                                "(power cycle or reconnect) and home the rail"
                            )
                        if self._activity != seen:
                            seen, deadline = self._activity, time.monotonic() + silence
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            if sync:
                                raise _Timeout(line)
                            raise RigError(
                                f"the Marlin board on {self.port} stopped answering ({line!r} "
                                f"got no reply in {silence:.0f} s); check power and cable"
                            )
                        self._cond.wait(min(remaining, WAKE_S))  # awake for a stop signal
                    self._responses.popleft()
                    info, errors = list(self._info), list(self._errors)
            finally:
                with self._cond:
                    self._awaiting = False
        if errors:
            raise MotionError(f"{self.port}: {line!r} failed: {'; '.join(errors)}")
        return info

    def _restarted(self, what: str) -> MotionError:
        return MotionError(
            f"the Marlin board on {self.port} restarted during {what}; its position is lost: "
            "home the rail or accept its position before moving"
        )

    def _check_no_restart(self, boots: int, what: str) -> None:
        """A restart between a move's commands: the fresh board answers the rest (``M400``,
        ``M114``) as if nothing had happened, so the count of boots is what tells."""
        with self._cond:
            if self._boots != boots:
                raise self._restarted(what)

    def _ready_check(self) -> None:
        if self._position_lost is not None:
            raise MotionError(
                f"{self.name}: position unknown ({self._position_lost}); home the rail "
                "(`rig rail home`) or accept its position, then move"
            )

    def _reference_problem(self) -> str | None:
        return self._position_lost or self._unreferenced

    def _keep_motors_on(self) -> None:
        """Stock builds switch idle motors off after 120 s (``DEFAULT_STEPPER_TIMEOUT_SEC``,
        ``DISABLE_IDLE_X``): the carriage then falls to a full step, or under its own weight on
        a vertical rail, while the board counts on. ``S0``: never (``M17_M18_M84.cpp``), until
        the board restarts; so again wherever a restart is got over (homing, accepting)."""
        self._command("M84 S0")

    def accept_position(self, position: float | None = None) -> None:
        """Trust the board's position again after a restart (see :meth:`Rail.accept_position`)."""
        self._keep_motors_on()
        self._position_lost = None
        super().accept_position(position)

    def send(self, line: str) -> list[str]:
        """Send a raw G-code line and return what Marlin printed before ``ok``."""
        return self._command(line)

    # -- Rail primitives ----------------------------------------------------------------------

    _can_home = True

    @property
    def _absolute(self) -> bool:
        return self._homed

    @property
    def _resolution_um(self) -> float:
        return _REPORT_UM if self._position_um is None else 0.0

    @property
    def _min_move_um(self) -> float:
        return MIN_STEPS_PER_SEGMENT * self._motor_step_um

    @property
    def _motor_step_um(self) -> float:
        return 1000.0 / self.steps_per_mm if self.steps_per_mm else 0.0

    def _travel_limits(self) -> tuple[float | None, float | None]:
        # motion.cpp apply_motion_limits: Marlin 2 clamps to its soft endstops once homed;
        # 1.1's clamp_to_software_endstops (Marlin_main.cpp) always, where a board that
        # restarted on open counts from 0 at the carriage: nothing below it can be reached.
        if (self._homed or _major_version(self.firmware) == 1) and self._soft_endstops:
            return self._soft_endstops
        return None, None

    def _report(self) -> tuple[float, int | None]:
        """``M114``: the commanded position (µm) and the stepper count (steps), if printed."""
        index = "XYZ".index(self.axis)
        for line in self._command("M114"):
            match = _POSITION.match(line)
            if match:
                try:
                    position_um = float(match.group(index + 1)) * 1000.0
                except ValueError:  # "1..00": line noise, no position (the error below)
                    continue
                count = _COUNT.search(line)
                steps = int(count.group(index + 1)) if count else None
                self._last_report = (position_um, steps)
                return position_um, steps
        raise RigError(f"the Marlin board on {self.port} sent no position for M114")

    def _report_position(self) -> float:
        return self._report()[0]

    def _calibrate_count(self) -> None:
        """Remember how the stepper count relates to positions (G92 may shift them)."""
        position, count = self._report()
        if count is not None and self.steps_per_mm:
            self._count_shift = count - round(position / 1000.0 * self.steps_per_mm)

    def _expected_count(self, target_um: float) -> int:
        return round(target_um / 1000.0 * self.steps_per_mm) + self._count_shift

    def _read_position(self) -> float:
        if self._position_um is None:
            return self._report_position()
        return self._position_um

    def _set_position(self, position_um: float) -> None:
        self._command(f"G92 {self.axis}{position_um / 1000.0:.4f}")
        self._position_um = None
        self._calibrate_count()

    def _wait_motion(self, distance_um: float) -> None:
        """Wait for the move to end: ``M400`` with the emergency parser; without it, first for
        the time the move takes at full speed, then ``M400`` for the rest.

        Without the emergency parser the queue must stay free for ``M410`` (see the module
        docstring). Nothing Marlin reports shows the move's progress without a build option:
        ``M114``'s ``Count`` is the *planned* position (``report_current_position_projected``,
        ``gcode/host/M114.cpp``; the live one needs ``M114_REALTIME``), reached as soon as the
        ``G1`` is queued. So a stop waits at most for the acceleration ramps, behind ``M400``.
        """
        if not self.emergency_parser:
            cruise_s = abs(distance_um) / 1000.0 / (self.feed_mm_min / 60.0)
            if self._stopped_within(cruise_s):
                return
        self._command("M400")

    def _move_absolute(self, target_um: float) -> None:
        self._require_link()
        self._raise_if_stopped_before_moving()
        # Only the wait without the emergency parser needs the distance (for its first part).
        start = target_um if self.emergency_parser else self._read_position()
        self._position_um = None
        boots = self._boots
        self._command("G90")
        self._command(f"G1 {self.axis}{target_um / 1000.0:.4f} F{self.feed_mm_min:.1f}")
        self._wait_motion(target_um - start)
        reported, count = self._report()
        self._check_no_restart(boots, f"the move to {format_length(target_um)}")
        if self._motion.stopped.is_set():
            raise MoveStoppedError(f"{self.name}: stopped at {format_length(reported)}")
        if abs(reported - target_um) > _REPORT_UM / 2 + 1.0:
            raise MotionError(
                f"{self.name}: move to {format_length(target_um)} ended at "
                f"{format_length(reported)} (Marlin's soft endstops clamp moves: check the "
                "travel limits)"
            )
        self._check_count(target_um, count)
        self._position_um = target_um

    def _check_count(self, target_um: float, count: int | None) -> None:
        """The motor must be where ``M114`` says: a dropped short move shows only here."""
        if count is None or not self.steps_per_mm:
            return
        expected = self._expected_count(target_um)
        if abs(count - expected) > 1:
            done = (count - self._count_shift) / self.steps_per_mm * 1000.0
            self._calibrate_count()
            raise MotionError(
                f"{self.name}: Marlin reports {format_length(target_um)} but its stepper count "
                f"says {format_length(done)} ({count} steps, {expected} expected): a move was "
                "dropped or merged; home the rail or accept its position"
            )

    def jog(self, delta_um: float) -> None:
        """Relative move with ``G91`` (no backlash handling), then wait for it."""
        self._ready_check()
        start = self._read_position()
        self._check_limits(start + delta_um)
        self._check_min_move(start, [start + delta_um])
        self._motion.stopped.clear()
        self._motion.last_direction = 0
        self._position_um = None
        boots = self._boots
        self._command("G91")
        try:
            self._command(f"G1 {self.axis}{delta_um / 1000.0:.4f} F{self.feed_mm_min:.1f}")
        finally:
            self._command("G90")
        self._wait_motion(delta_um)
        self._check_no_restart(boots, f"the jog of {format_length(delta_um)}")

    def _home(self) -> None:
        self._position_um = None
        self._command(f"G28 {self.axis}")
        self._keep_motors_on()
        self._homed = True
        self._position_lost = None
        self._calibrate_count()

    def _halt(self) -> None:
        link = self._link
        if link is None or link.lost is not None:
            return
        # Before sending: M410's own ``ok`` must not be taken for the answer to a command sent
        # meanwhile (a position query), so the next command re-synchronises first.
        self._position_um = None
        self._needs_sync = True
        try:
            link.send_line("M410")  # acted on at once by Marlin's emergency parser
        except ConnectionLostError:
            return

    def emergency_stop(self) -> None:
        """``M112``: Marlin kills all motion and halts until it is reset."""
        link = self._require_link()
        link.send_line("M112")
        self._motion.stopped.set()
        self._homed = False


class _Timeout(Exception):
    """Internal: no answer during synchronisation."""
