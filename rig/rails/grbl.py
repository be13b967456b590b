"""``grbl://``: a focus rail driven by a GRBL 1.1 (or grblHAL) controller over serial.

Protocol, as GRBL 1.1 documents it, and the traps a rail driver must avoid:

* **Wake-up.** Opening the port resets an Arduino (DTR). Send ``\\r\\n\\r\\n``, wait for the
  bootloader (``wakeup``, 2 s by default; a simulator needs none), discard what arrived, then
  synchronise with ``$G``: everything before its ``[GC:...]`` reply is stale. A controller that
  stays silent is sent one soft reset (Ctrl-X): a critical alarm (below) answers nothing else,
  not even ``?``, and a board found that way may have lost its position, so it must be homed.
* **Fresh boot.** A banner (``Grbl 1.1h ['$' for help]``, or grblHAL's ``GrblHAL 1.1f [...]``)
  that arrives while connecting means the board restarted as the port opened: GRBL clears its
  machine position at power-up (``main.c``: ``memset(sys_position, 0, ...)``), so the position
  is 0 wherever the carriage stands and ``capabilities.unreferenced`` says so until the rail is
  homed or the position accepted. A board that does not reset (its own USB chip, DTR cut) keeps
  its position and is trusted, unless it is found in ALARM: it was powered up since with homing
  enabled, counting from 0 wherever the carriage stood, or an alarm stopped it (GRBL does not
  say which), so it is unreferenced as a restarted one is. A soft reset (Ctrl-X) keeps the
  position (the same file). With homing enabled a stock build also boots locked in ALARM
  (``HOMING_INIT_LOCK``), so a board that resets on open is locked on every connection:
  :meth:`GrblRail.home` or :meth:`GrblRail.accept_position` (``$X``) lifts it; a restart under
  a move asks for homing.
* **Flow control.** One line at a time; each gets ``ok`` or ``error:N`` (texts in
  :mod:`rig.rails.grbl_codes`).
* **Motion complete.** ``ok`` for a ``G1`` only means *planned*. ``G4 P0.01`` is answered once
  the planner is empty, then ``?`` is polled until the state is ``Idle``.
* **Jogging.** ``$J=`` jogs are cancelled with the real-time byte ``0x85``; no G-code may be
  sent while jogging (``error:9``), so completion is detected by polling ``?`` only; with soft
  limits on, a jog beyond travel is refused with ``error:15``.
* **Alarms** (``ALARM:N``) stop the current move with a :class:`~rig.errors.MotionError` in
  words; they are never cleared behind the user's back: :meth:`GrblRail.unlock` (``$X``) or
  :meth:`GrblRail.home` (``$H``) must be asked for. After a hard or soft limit (``ALARM:1``,
  ``ALARM:2``, then ``[MSG:Reset to continue]``) GRBL reads nothing and answers no ``?`` until
  a soft reset (``protocol.c``, ``protocol_exec_rt_system``), so the driver sends Ctrl-X before
  its next status query: the board restarts still in ALARM, and the alarm is reported in words.
* **Stop.** Feed hold ``!``, wait for the carriage to decelerate (``Hold:0``), then soft reset
  Ctrl-X, which flushes the planner and keeps the position because nothing is moving. A jog is
  cancelled with ``0x85`` instead. Homing answers no ``?`` until it ends (``limits.c``,
  ``limits_go_home``) and only a reset stops it, so a stop while homing is Ctrl-X at once; so is
  a stop that gets no status answer.
* **Homing.** ``$HX`` (one axis) exists only in builds with ``HOMING_SINGLE_AXIS_COMMANDS``
  (``config.h``; off in stock builds, which then list no ``H`` in ``$I``'s options). A stock
  build answers it ``error:3`` *after* setting its state to Home (``system.c``), where it stays,
  running nothing, until a soft reset. So by default (``homing=auto``) the driver asks ``$I``
  and sends ``$H<axis>`` only to a build that lists ``H``, else ``$H``, which runs the build's
  homing cycle (stock: Z, then X and Y; a one-axis rail wants a build whose cycle is its axis).
  ``homing=axis`` always sends ``$H<axis>``, ``homing=all`` always ``$H``. A refused
  ``$H<axis>`` is undone with a soft reset and said in one line.
* **Backlash.** GRBL has no compensation; :class:`~rig.rails.base.Rail` approaches every target
  from one side.

Positions are the work position (``WPos``, or ``MPos - WCO``) of one ``axis``, in micrometres;
with ``$13=1`` the controller reports inches, which are converted (commands always say ``G21``).
``$1`` below 255 switches the motors off between moves, so a microstepped carriage can slip to
the nearest full step between frames: :meth:`GrblRail.setup_warnings` says so and
:meth:`GrblRail.keep_motors_on` sets ``$1=255``. grblHAL announces itself as ``GrblHAL 1.1f``
and speaks the same protocol.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.rails.base import ConnectionLostError, MoveStoppedError, RailOptions
from rig.rails.gcode import GcodeRail, GcodeSettings
from rig.rails.grbl_codes import GRBL, GRBLHAL, Dialect, dialect_of, dialect_of_build_info
from rig.rails.serialport import SerialLink
from rig.rails.url import DeviceURL, URLError
from rig.units import format_length
from stacker.launch import WAKE_S

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

JOG_CANCEL = b"\x85"
SOFT_RESET = b"\x18"
FEED_HOLD = b"!"
CYCLE_START = b"~"
STATUS_QUERY = b"?"

# GRBL 1.1 report.c report_init_message: "Grbl 1.1h ['$' for help]"; grblHAL report.c prints
# "GrblHAL 1.1f ['$' or '$HELP' for help]" (COMPATIBILITY_LEVEL 0; older builds said '$$').
_BANNER = re.compile(r"^(Grbl|GrblHAL)\s+(\S+)\s*\[")
_AXES = "XYZABC"
_HELD_STATES = ("Hold", "Door")
"""States in which GRBL keeps planned motion paused until Cycle Start (``~``) or a reset."""
_HOMING_MODES = ("auto", "axis", "all")
"""Hard and soft limit: GRBL then reads nothing, ``?`` included, until a soft reset."""
_WCO_REFRESH_BUSY_COUNT = 30
"""GRBL's ``config.h``: the most status reports between two that carry ``WCO``."""


class GrblCommandError(RigError):
    """GRBL refused a command with ``error:N``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class GrblStatus:
    """One parsed real-time status report, e.g. ``<Idle|MPos:1.000,0.000,0.000|FS:0,0>``."""

    state: str
    """``Idle``, ``Run``, ``Hold``, ``Jog``, ``Alarm``, ``Door``, ``Check``, ``Home``, ``Sleep``."""
    substate: int | None
    mpos: tuple[float, ...] | None
    wpos: tuple[float, ...] | None
    wco: tuple[float, ...] | None
    feed: float | None
    pins: str
    raw: str

    def work_position(self, wco: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """WPos, computed from MPos and the latest known WCO when only MPos is reported."""
        if self.wpos is not None:
            return self.wpos
        if self.mpos is None:
            return None
        offset = self.wco or wco or (0.0,) * len(self.mpos)
        return tuple(m - o for m, o in zip(self.mpos, offset, strict=False))


_FOUND_LOCKED = (
    "the controller was in ALARM when its port was opened: GRBL starts so after power-up "
    "with homing enabled ($22=1), counting from 0 wherever the carriage stood, or an alarm "
    "stopped it since, so its position is not known"
)


def _floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers; ValueError for any that is not a finite one: GRBL prints only
    digits, so "nan" or "inf" is line noise, and a position made of it would be moved from."""
    values = tuple(float(v) for v in text.split(","))
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"not finite: {text!r}")
    return values


def parse_status(line: str) -> GrblStatus | None:
    """Parse a ``<...>`` status report; ``None`` for anything malformed (never raises)."""
    if not (line.startswith("<") and line.endswith(">")):
        return None
    fields = line[1:-1].split("|")
    state, _, sub = fields[0].partition(":")
    if not state.isalpha():
        return None
    values: dict[str, str] = {}
    for item in fields[1:]:
        key, sep, value = item.partition(":")
        if sep:  # grblHAL prints a bare |AR in some reports (report.c, report_realtime_status)
            values[key] = value
    try:
        mpos = _floats(values["MPos"]) if "MPos" in values else None
        wpos = _floats(values["WPos"]) if "WPos" in values else None
        wco = _floats(values["WCO"]) if "WCO" in values else None
        fs = values.get("FS") or values.get("F")
        feed = float(fs.split(",")[0]) if fs else None
        substate = int(sub) if sub else None
    except ValueError:
        return None
    if mpos is None and wpos is None:
        return None
    return GrblStatus(state, substate, mpos, wpos, wco, feed, values.get("Pn", ""), line)


class GrblRail(GcodeRail):
    """A GRBL 1.1 rail; see the module docstring for the protocol details.

    Parameters
    ----------
    port, options, baud, axis, wakeup_s, timeout_s, poll_s, name
        As for every G-code rail (:class:`~rig.rails.gcode.GcodeRail`); ``poll_s`` paces the
        ``?`` status queries.
    feed_mm_min
        Move speed; ``None`` uses the controller's maximum rate for the axis (``$110``...).
    homing
        ``auto`` (``$H<axis>`` when ``$I`` lists single-axis homing, else ``$H``), ``axis``
        (always ``$H<axis>``) or ``all`` (always ``$H``, the build's homing cycle).
    """

    scheme = "grbl"
    example_url = "grbl:///dev/ttyUSB0"
    axes = _AXES

    def __init__(
        self,
        port: str,
        options: RailOptions | None = None,
        *,
        homing: str = "auto",
        **settings: Unpack[GcodeSettings],
    ) -> None:
        super().__init__(port, options, **settings)
        self._axis_index = _AXES.index(self.axis)
        if homing not in _HOMING_MODES:
            raise ValueError(f"homing={homing!r}: use one of {', '.join(_HOMING_MODES)}")
        self.homing = homing
        self._single_axis_homing: bool | None = None
        """Whether ``$I`` lists ``H`` (``HOMING_SINGLE_AXIS_COMMANDS``); None until asked."""
        self._homing_now = False
        self.settings: dict[int, float] = {}
        """The controller's ``$$`` settings, read at connection."""
        self.version = ""
        self.firmware = "Grbl"
        self.dialect: Dialect = GRBL  # what its codes mean: told by its banner
        """``Grbl`` or ``GrblHAL``, from the last banner seen."""
        self._transcript: list[str] | None = None
        """The lines answering ``$G`` while :meth:`_sync_once` waits for them, else ``None``:
        kept for every command, they would pile up for as long as the rail stays connected."""
        self._status: GrblStatus | None = None
        self._status_seq = 0
        self._wco: tuple[float, ...] | None = None
        self._machine_span: tuple[float, float] | None = None  # mm, learnt by homing
        self._alarm_seq = 0
        self._alarm_code: int | None = None
        self._critical = False
        self._on_switch = False
        """GRBL said ``Check Limits`` when it last started: a limit switch was pressed."""
        self._reset_seq = 0
        self._unsynced = False
        """A line was given up unanswered: its answer may still come (see :meth:`_resync`)."""
        self._halting = False
        self._position_lost: str | None = None
        self._moving = False
        self._connect(initial=True)

    @classmethod
    def _url_settings(cls, parsed: DeviceURL) -> dict[str, Any]:
        """``grbl:///dev/ttyUSB0?baud=115200&axis=X&backlash=50um&settle=0.5&feed=5mm/s``.

        Besides the G-code rails' options: ``homing`` (``auto``, ``axis`` or ``all``).
        """
        homing = (parsed.take("homing") or "auto").lower()
        if homing not in _HOMING_MODES:
            raise URLError(
                f"homing={homing!r} in {parsed.text!r}: use homing=auto (the default), "
                "homing=axis ($HX) or homing=all ($H)"
            )
        return {**super()._url_settings(parsed), "homing": homing}

    # -- connection ---------------------------------------------------------------------------

    def _connect(self, *, initial: bool) -> None:
        with self._cond:
            self._responses.clear()
            self._awaiting = False
            self._unsynced = False  # the handshake finds the first answer that is ours
            last = self._status
            self._status = None
            self._wco = None  # the offset may have changed while the port was closed
            self._single_axis_homing = None  # another board may be on the port now
            resets_before = self._reset_seq
        self._link = SerialLink(self.port, self.baud, self._on_line, self._on_lost)
        try:
            reset_by_us = self._handshake()
            status = self._query_status()
            if self._reset_seq == resets_before:  # no banner this time: ask what it runs
                self._identify()
            if self._reset_seq != resets_before and not reset_by_us:
                self._unreferenced = (
                    "the controller restarted when its port was opened (an Arduino resets on "
                    "DTR), so it counts from 0 wherever the carriage stands"
                )
            elif initial and status.state == "Alarm" and self._position_lost is None:
                self._unreferenced = _FOUND_LOCKED
            if not initial and (
                (self._reset_seq != resets_before and not reset_by_us)
                or not self._same_place(last, status)
            ):
                self._position_lost = "the controller restarted while disconnected"
            if status.state in ("Run", "Jog", "Home"):
                status = self._wait_idle("the motion under way when connecting")
            self._learn_work_offset(status)
            self._read_settings()
        except _Timeout:
            self._link.close()
            self._link = None
            raise RigError(f"the GRBL controller on {self.port} stopped answering") from None
        except Exception:
            self._link.close()
            self._link = None
            raise
        if status.state != "Alarm":
            self._alarm_code = None
            self._critical = False

    def _learn_work_offset(self, status: GrblStatus) -> None:
        """Query the status until a report carries ``WCO``, when positions come as ``MPos``.

        GRBL adds ``WCO`` to a report after a restart or an offset change, and otherwise to one
        report in 10 while idle (``report.c``, ``REPORT_WCO_REFRESH_IDLE_COUNT``; grblHAL does
        the same). A board that kept its power since the last connection can be anywhere in
        that cycle, and until the offset arrives the work position would read as the machine
        position: off by any ``G10``/``G92`` offset set before.
        """
        for _ in range(_WCO_REFRESH_BUSY_COUNT):
            if status.wpos is not None or self._wco is not None:
                return
            status = self._query_status()
        log.warning(
            "%s: the controller reports no work offset (WCO); positions are taken as machine "
            "positions",
            self.port,
        )

    def _same_place(self, before: GrblStatus | None, now: GrblStatus) -> bool:
        """Whether the controller still reports the machine position it had before."""
        if before is None:
            return True
        old, new = (before.mpos, now.mpos) if before.mpos and now.mpos else (before.wpos, now.wpos)
        if old is None or new is None:
            return False
        return all(abs(a - b) < 0.0015 for a, b in zip(old, new, strict=False))

    def _handshake(self) -> bool:
        """Wake the controller and find the first response that answers us (see module doc).

        Returns whether the handshake itself had to soft-reset the controller.
        """
        link = self._require_link()
        link.write(b"\r\n\r\n")
        time.sleep(self.wakeup_s)
        deadline = time.monotonic() + max(self.timeout_s, 1.0)
        reset_sent = False
        banners = self._reset_seq
        while True:
            if self._sync_once(timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise DeviceNotFoundError(
                    f"no GRBL controller answers on {self.port} at {self.baud} baud; check the "
                    "baud rate, that the board runs GRBL 1.1, and the cable"
                    + self._other_firmware_hint()
                )
            if not reset_sent and self._reset_seq == banners:  # not a board that just booted
                # Not reading lines: a critical alarm (ALARM:1/2) waits for a reset, and GRBL
                # answers not even `?` until then (protocol.c). The banner it prints ends the
                # wait: the next $G is answered.
                silent = not self._answers_status()
                link.write(SOFT_RESET)
                reset_sent = True
                if silent and self._position_lost is None:
                    self._position_lost = (
                        "the controller answered nothing, not even a status query, until a "
                        "soft reset: a hard- or soft-limit ALARM holds it so, or it was still "
                        "starting (an ESP32 board such as FluidNC's can take longer than the "
                        "rail URL's wakeup, 2 s by default: raise it, e.g. ?wakeup=5)"
                    )
        time.sleep(0.05)  # let any straggling answer to an earlier $G arrive and be dropped
        with self._cond:
            self._responses.clear()
        return reset_sent

    def _sync_once(self, timeout: float) -> bool:
        with self._cmd_lock:
            return self._sync_holding_lock(timeout)

    def _sync_holding_lock(self, timeout: float) -> bool:
        """Send ``$G`` and wait for its ``[GC:...]`` then ``ok``; earlier ``ok``s are stale."""
        link = self._require_link()
        with self._cond:
            self._transcript = []
            self._awaiting = True
        try:
            link.send_line("$G")

            def synced() -> bool:
                lines = self._transcript or []
                marks = [i for i, line in enumerate(lines) if line.startswith("[GC:")]
                return bool(marks) and "ok" in lines[marks[-1] :]

            with self._cond:
                return self._wait_for(link, synced, time.monotonic() + timeout)
        finally:
            with self._cond:
                self._awaiting = False
                self._transcript = None
                self._responses.clear()

    def _resync(self, line: str) -> None:
        """Find which reply answers what again, after a command was given up unanswered.

        GRBL answers every line in order, without naming it. A line given up at a reset, an
        alarm or a timeout may still be answered later (the board read it as it restarted,
        or the link is slow), and that answer would be taken for the next line's: ``$X``
        refused with the ``error:9`` of a ``G4``, and every later reply one line late.
        """
        deadline = time.monotonic() + max(self.timeout_s, 1.0)
        tries = 0
        while not self._sync_holding_lock(timeout=0.5):
            tries += 1
            if time.monotonic() > deadline:
                raise _Timeout(line)
        if tries:  # an answer to an earlier $G may still be on its way: let it be dropped
            time.sleep(0.05)
            with self._cond:
                self._responses.clear()
        self._unsynced = False

    def _answers_status(self) -> bool:
        try:
            self._query_status(timeout=0.3)
        except (_Timeout, MotionError):
            return False
        return True

    def _read_settings(self) -> None:
        self.settings = {}
        for line in self._command("$$"):
            match = re.match(r"^\$(\d+)=([-+0-9.]+)", line)
            if match:
                try:
                    self.settings[int(match.group(1))] = float(match.group(2))
                except ValueError:  # "1.2.3", "-": line noise, as unknown as a line not matched
                    log.warning("%s: ignoring malformed setting %r", self.port, line)

    def reconnect(self) -> None:
        """Close and reopen the port, e.g. after the cable was unplugged and plugged back.

        If the controller reset meanwhile (an Arduino resets when the port opens or when it
        loses USB power), its position is unknown: moves are refused until :meth:`home` (or,
        on a rail without homing, :meth:`accept_position`).
        """
        if self._link is not None:
            self._link.close()
        self._link = None
        self._connect(initial=False)

    def accept_position(self, position: float | None = None) -> None:
        """Trust the controller's position again after a reset (a rail without homing switch).

        With ``position`` (µm) the controller is first told that the carriage stands there
        (``G92``, nothing moves).
        """
        if self._on_switch and self.in_alarm:
            raise self._alarm_error("at power-up")
        if (self._boot_locked() or self._relocked()) and self.in_alarm:
            # The user vouches for the position, which is what $X means; without it the first
            # move (or the G92 below) would meet the lock.
            self._unlock_command()
        if self._reference_problem() is not None:
            # A restart (or an alarm) moved machine 0 from the home switch to wherever the
            # carriage was: the travel learnt by homing no longer holds until homing again.
            self._machine_span = None
        self._position_lost = None
        super().accept_position(position)

    def _boot_locked(self) -> bool:
        """Whether an alarm now is GRBL's power-up lock on a board that restarted as it opened.

        With homing enabled (``$22=1``) GRBL boots into ALARM, printing no ``ALARM:N``
        (``HOMING_INIT_LOCK``, on in GRBL 1.1's stock ``config.h``; ``main.c``). A board that
        restarts whenever its port is opened is therefore locked again on every connection, so
        only something done on this one (homing, or accepting the position) unlocks it. One
        that does not restart, found locked when its port opened, is taken for one powered up
        since (:data:`_FOUND_LOCKED`): accepting its position unlocks it too.
        """
        return self._unreferenced is not None and self._alarm_code is None and not self._critical

    def _relocked(self) -> bool:
        """Whether an alarm now is only the power-up lock of a board that restarted under us.

        The restart lost the position, which is what the user must hear about: homing cures
        both, and so does accepting the position where that is right.
        """
        return self._position_lost is not None and self._alarm_code is None

    def _set_position(self, position_um: float) -> None:
        self._checked_command(f"G21 G92 {self.axis}{position_um / 1000.0:.4f}")
        # The work offset changed: until a report brings the new one, the travel learnt by
        # homing would be placed by the old (a move straight after was judged against limits
        # off by the offset, and sent past the machine's travel).
        with self._cond:
            self._wco = None
        self._learn_work_offset(self._query_status())

    def _reference_problem(self) -> str | None:
        return self._position_lost or self._unreferenced

    # -- line handling (reader thread) --------------------------------------------------------

    def _on_line(self, line: str) -> None:
        with self._cond:
            if line.startswith("<"):
                status = parse_status(line)
                if status is None:
                    log.warning("%s: ignoring malformed status report %r", self.port, line)
                    return
                if status.wco is not None:
                    self._wco = status.wco
                self._status = status
                self._status_seq += 1
            elif line == "ok" or line.startswith("error:"):
                if self._awaiting:
                    self._responses.append(line)
                    if self._transcript is not None:
                        self._transcript.append(line)
                else:
                    log.debug("%s: dropping stale %r", self.port, line)
            elif line.startswith("ALARM:"):
                code = line[6:].strip()
                number = int(code) if code.isdigit() else None
                log.warning("%s: %s", self.port, self.dialect.alarm_text(number))
                # grblHAL's and FluidNC's numbered "homing required" is the lock GRBL boots
                # into without a number (grblHAL protocol.c, protocol_main_loop; FluidNC
                # Protocol.cpp, protocol_do_start): accepting the position unlocks it.
                lock = number is not None and number == self.dialect.homing_required
                self._alarm_code = None if lock else number
                self._alarm_seq += 1
                if self._alarm_code in self.dialect.position_lost:
                    self._position_lost = self.dialect.alarm_text(self._alarm_code)
            elif _BANNER.match(line):
                banner = _BANNER.match(line)
                assert banner is not None
                self.firmware, self.version = banner.group(1), banner.group(2)
                self.dialect = dialect_of(line)
                self._reset_seq += 1
                self._critical = False
                self._on_switch = False
            elif line.startswith("[MSG:") and "check limits" in line.casefold():
                self._on_switch = True
            elif line.startswith("[MSG:") and "reset to continue" in line.casefold():
                # GRBL's "Reset to continue", FluidNC's "ERR: Reset to continue", grblHAL's
                # "Emergency stop - clear, then reset to continue"
                self._critical = True
            elif line.startswith("[") or line.startswith("$"):
                if self._awaiting:
                    self._info.append(line)
                    if self._transcript is not None:
                        self._transcript.append(line)
            else:
                self._foreign.append(line)
                log.warning("%s: ignoring unexpected line %r", self.port, line)
            self._cond.notify_all()

    def _on_lost(self, error: ConnectionLostError) -> None:
        with self._cond:
            if self._moving:
                self._position_lost = "the connection was lost during a move"
            self._cond.notify_all()

    # -- commands -----------------------------------------------------------------------------

    def _command(self, line: str, *, timeout: float | None = None) -> list[str]:
        """Send one line and wait for its ``ok``; return the informational lines before it.

        An ``ALARM`` or a controller reset while waiting raises at once.
        """
        link = self._require_link()
        limit = self.timeout_s if timeout is None else timeout
        with self._cmd_lock:
            if self._unsynced:
                self._resync(line)
            with self._cond:
                self._responses.clear()
                self._info = []
                self._awaiting = True
                self._unsynced = True  # until this line's answer is taken
                alarms, resets = self._alarm_seq, self._reset_seq
            try:
                link.send_line(line)

                def interrupted() -> None:
                    if self._alarm_seq != alarms:
                        raise self._alarm_error(f"while running {line!r}")
                    if self._reset_seq != resets:
                        raise self._reset_error(line)

                deadline = time.monotonic() + limit
                with self._cond:
                    answered = self._wait_for(
                        link, lambda: bool(self._responses), deadline, interrupted
                    )
                    if not answered:
                        raise _Timeout(line)
                    response = self._responses.popleft()
                    info = list(self._info)
                    self._unsynced = False
            finally:
                with self._cond:
                    self._awaiting = False
        if response.startswith("error:"):
            code = int(response[6:]) if response[6:].isdigit() else -1
            raise GrblCommandError(
                f"{self.port}: {line!r} refused: {self.dialect.error_text(code)}", code
            )
        return info

    def _wait_for(
        self,
        link: SerialLink,
        done: Callable[[], bool],
        deadline: float,
        interrupted: Callable[[], None] | None = None,
    ) -> bool:
        """Wait (holding ``_cond``) until ``done()``; False once ``deadline`` has passed.

        A lost link raises at once; so does ``interrupted`` when it sees a reason to give up (an
        alarm, a reset). The wait wakes every :data:`~stacker.launch.WAKE_S` for a stop signal.
        """
        while not done():
            if link.lost is not None:
                raise link.lost
            if interrupted is not None:
                interrupted()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._cond.wait(min(remaining, WAKE_S))
        return True

    def _checked_command(self, line: str, *, timeout: float | None = None) -> list[str]:
        try:
            return self._command(line, timeout=timeout)
        except _Timeout:
            raise RigError(
                f"the GRBL controller on {self.port} stopped answering ({line!r} got no reply "
                f"within {timeout or self.timeout_s:.0f} s); check power and cable, then reconnect"
            ) from None

    def _alarm_error(self, context: str) -> MotionError:
        alarm = self.dialect.alarm_text(self._alarm_code)
        if self._on_switch and self._alarm_code in self.dialect.critical:  # reset, on the switch
            return MotionError(
                f"{self.port}: {alarm} {context}; the carriage stands on the limit switch, so "
                "the first move off it would trip it again: home the rail (--home, or `rig rail "
                "home`), which moves off the switch"
            )
        if self._on_switch:
            return MotionError(
                f"{self.port}: ALARM since the controller started on a pressed limit switch "
                "(GRBL: 'Check Limits'; the carriage was left on the switch): the first move "
                "off it would trip the hard limit, so its position cannot simply be accepted; "
                "home the rail (--home, or `rig rail home`), which moves off the switch"
            )
        if self._boot_locked() and self._unreferenced == _FOUND_LOCKED:
            return MotionError(
                f"{self.port}: {_FOUND_LOCKED}; home the rail, or take where it stands as the "
                "reference (--home or --accept-position, or `rig rail home` / `rig rail unlock`)"
            )
        if self._boot_locked():
            return MotionError(
                f"{self.port}: ALARM since power-up: homing is enabled ($22=1) and the board "
                "restarted when its port was opened, so every connection starts locked; home "
                "the rail or take its position as the reference in the same command (--home or "
                "--accept-position on `rig shoot`, `rig rail move` and `rig rail jog`), or move "
                "it from `rig station`, which keeps the port open; `rig rail unlock` lasts only "
                "until the port is opened again"
            )
        return MotionError(
            f"{self.port}: {alarm} {context}; nothing more will move until you home the rail or "
            "unlock it (`rig rail home` / `rig rail unlock`)"
        )

    def _held_error(self, state: str, what: str) -> MotionError:
        """The controller sits in a feed hold (``Hold``) or at an open safety door (``Door``)."""
        cause = "its safety-door input is open" if state == "Door" else "its Hold input fired"
        return MotionError(
            f"{self.port}: the controller is paused ({state}): {cause} (a button, or noise "
            f"on a long or loose wire); {what}. Press its Cycle Start, or stop the rail "
            "(`rig rail stop`), then try again"
        )

    def _refused(self, exc: GrblCommandError, resets: int, what: str) -> RigError:
        """A command of a motion refused: blamed on a reset when the board restarted since.

        A board that restarts between two commands of one move (``G1``, then ``G4``) prints its
        banner before refusing the next one (``error:9``, locked after a reset with homing on);
        the refusal is the reset's symptom, not its own cause.
        """
        if self._reset_seq != resets:
            return self._reset_error(what)
        return MotionError(
            f"{self.port}: the {what} was refused: {self.dialect.error_text(exc.code)}"
        )

    def _reset_error(self, line: str) -> RigError:
        if self._halting:
            return MoveStoppedError(f"{self.name}: stopped")
        self._position_lost = "the controller reset unexpectedly"
        return ConnectionLostError(
            f"the GRBL controller on {self.port} reset during {line!r} (power dip or board "
            "reset); its position is lost: home the rail before moving"
        )

    def send(self, line: str, *, timeout: float | None = None) -> list[str]:
        """Send a raw command line (e.g. ``$$`` or ``G92 X0``) and return the lines it printed."""
        return self._checked_command(line, timeout=timeout)

    def _query_status(
        self, timeout: float | None = None, *, critical: Callable[[], None] | None = None
    ) -> GrblStatus:
        """``?`` and its report; ``critical`` is called (and may raise) if a critical alarm
        is announced meanwhile, as GRBL then answers no ``?`` (see the module docstring)."""
        link = self._require_link()
        with self._cond:
            seq = self._status_seq
        link.write(STATUS_QUERY)
        deadline = time.monotonic() + (self.timeout_s if timeout is None else timeout)

        def announced() -> None:
            if critical is not None and self._critical:
                critical()

        with self._cond:
            if not self._wait_for(link, lambda: self._status_seq != seq, deadline, announced):
                raise _Timeout("?")
            assert self._status is not None
            return self._status

    def status(self) -> GrblStatus:
        """A fresh status report.

        In a critical alarm (hard or soft limit: ``[MSG:Reset to continue]``) GRBL answers no
        ``?`` until a soft reset, so one is sent first. It restarts in ALARM, the alarm kept:
        moves stay refused, in words, until the rail is homed or unlocked.
        """

        def stop_waiting() -> None:
            raise _CriticalAlarm

        try:
            if self._critical:
                self._leave_critical_alarm()
            try:
                return self._query_status(critical=stop_waiting)
            except _CriticalAlarm:
                self._leave_critical_alarm()
                return self._query_status()
        except _Timeout:
            raise RigError(
                f"the GRBL controller on {self.port} does not answer status queries; "
                "check power and cable"
            ) from None

    # -- Rail primitives ----------------------------------------------------------------------

    @property
    def _can_home(self) -> bool:
        return bool(self.settings.get(22, 0))

    @property
    def _absolute(self) -> bool:
        return self._homed and self._position_lost is None

    @property
    def _resolution_um(self) -> float:
        # Reports are rounded to 3 decimals of a mm, or 4 of an inch with $13=1 (print.c).
        return self._motor_step_um + (1.27 if self._report_inches else 0.5)

    @property
    def _motor_step_um(self) -> float:
        steps_per_mm = self.settings.get(100 + self._axis_index, 0.0)  # $100, $101, $102
        return 1000.0 / steps_per_mm if steps_per_mm > 0 else 0.0

    @property
    def _report_inches(self) -> bool:
        """``$13=1``: the controller reports positions in inches (moves are still sent in mm)."""
        return bool(self.settings.get(13, 0))

    def setup_warnings(self) -> list[str]:
        """Settings that spoil a focus stack, each with what to do about it."""
        idle = self.settings.get(1)
        if idle is None or idle == 255:
            return []
        return [
            f"{self.port}: $1 (step idle delay) is {idle:g} ms, so the motors switch off between "
            "frames and can slip to the nearest full step; keep them powered with "
            f"`rig rail keep-motors-on {shlex.quote(self.name)}` ($1=255)"
        ]

    def keep_motors_on(self) -> None:
        """Set ``$1=255`` (GRBL keeps the stepper drivers enabled when idle) and re-read."""
        self._checked_command("$1=255")
        self._read_settings()

    @property
    def feed(self) -> float:
        """Feed rate used for moves, mm/min."""
        if self.feed_mm_min:
            return self.feed_mm_min
        return self.settings.get(110 + self._axis_index) or 500.0

    def _axis_um(self, status: GrblStatus) -> float:
        position = status.work_position(self._wco)
        assert position is not None
        if self._axis_index >= len(position):
            raise RigError(f"{self.port}: the controller reports no {self.axis} axis")
        return position[self._axis_index] * (25400.0 if self._report_inches else 1000.0)

    def _read_position(self) -> float:
        return self._axis_um(self.status())

    @property
    def in_alarm(self) -> bool:
        """True when the controller is in an alarm state."""
        return self.status().state == "Alarm"

    def _ready_check(self) -> None:
        self._require_link()
        state = self.status().state
        if self._critical or (state == "Alarm" and not self._relocked()):
            raise self._alarm_error("is active")
        if state in _HELD_STATES:
            raise self._held_error(state, "nothing moved")
        if self._position_lost is not None:
            raise MotionError(
                f"{self.name}: position unknown ({self._position_lost}); home the rail first "
                "(`rig rail home`)"
                + ("" if self._can_home else " or accept the controller's position")
            )

    def _motion_timeout(self, distance_mm: float, feed: float) -> float:
        accel = self.settings.get(120 + self._axis_index) or 10.0
        return abs(distance_mm) / (feed / 60.0) + 2 * (feed / 60.0) / accel + self.timeout_s

    def _move_absolute(self, target_um: float) -> None:
        self._ready_check()
        self._halting = False
        start = self._read_position()
        mm = target_um / 1000.0
        feed = self.feed
        self._raise_if_stopped_before_moving()
        self._moving = True
        resets = self._reset_seq
        try:
            self._checked_command(f"G21 G90 G1 {self.axis}{mm:.4f} F{feed:.1f}")
            self._wait_planned(target_um, self._motion_timeout(mm - start / 1000.0, feed))
            self._wait_idle(f"move to {format_length(target_um)}", resets=resets)
        except GrblCommandError as exc:
            raise self._refused(exc, resets, f"move to {format_length(target_um)}") from None
        finally:
            self._moving = False

    def _wait_planned(self, target_um: float, timeout: float) -> None:
        """``G4 P0.01``: answered once the planned motion is done (see the module docstring).

        A feed hold pauses that motion for as long as it lasts, so a G4 that times out is
        blamed on the hold when the controller reports one, and on the link otherwise.
        """
        try:
            self._command("G4 P0.01", timeout=timeout)
        except _Timeout:
            try:
                state = self._query_status(timeout=1.0).state
            except _Timeout:
                state = ""
            if state in _HELD_STATES:
                raise self._held_error(
                    state, f"the move to {format_length(target_um)} did not finish"
                ) from None
            raise RigError(
                f"the GRBL controller on {self.port} stopped answering (the move to "
                f"{format_length(target_um)} did not end within {timeout:.0f} s); check power "
                "and cable, then reconnect"
            ) from None

    def _wait_idle(
        self, what: str, timeout: float | None = None, *, resets: int | None = None
    ) -> GrblStatus:
        """Poll ``?`` until Idle; an alarm, a stop or a controller reset raises.

        ``resets`` is the reset count from before the motion's first command: a board that
        restarts between the command's ``ok`` and this wait reports Idle at zero, which must
        not pass for the end of the move."""
        alarms = self._alarm_seq
        resets = self._reset_seq if resets is None else resets
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout_s)
        while True:
            status = self.status()
            if self._alarm_seq != alarms and self._alarm_code in self.dialect.critical:
                raise self._alarm_error(f"during {what}")  # the reset after it was ours
            if self._reset_seq != resets:
                raise self._reset_error(what)
            if self._alarm_seq != alarms or status.state == "Alarm":
                raise self._alarm_error(f"during {what}")
            if self._motion.stopped.is_set() and status.state in ("Idle", "Hold"):
                raise MoveStoppedError(
                    f"{self.name}: {what} stopped at {format_length(self._axis_um(status))}"
                )
            if status.state == "Idle":
                return status
            if time.monotonic() > deadline:
                raise MotionError(
                    f"{self.port}: {what} did not finish (state {status.state}); "
                    "check the rail for a jam"
                )
            time.sleep(self.poll_s)

    def jog(self, delta_um: float, feed_mm_min: float | None = None) -> None:
        """Jog by ``delta_um`` with ``$J=`` and wait for it to finish (no backlash handling).

        A jog can be cancelled from another thread with :meth:`stop`; with GRBL soft limits on,
        a jog beyond the machine travel is refused (``error:15``) without moving.
        """
        self._ready_check()
        self._check_limits(self._read_position() + delta_um)
        feed = feed_mm_min or self.feed
        mm = delta_um / 1000.0
        self._halting = False
        self._motion.stopped.clear()
        self._motion.last_direction = 0
        self._moving = True
        resets = self._reset_seq
        try:
            self._checked_command(f"$J=G21 G91 {self.axis}{mm:.4f} F{feed:.1f}")
            self._wait_idle(
                f"jog of {format_length(delta_um)}", self._motion_timeout(mm, feed), resets=resets
            )
        except GrblCommandError as exc:
            if exc.code == 15:
                raise MotionError(
                    f"{self.port}: jog of {format_length(delta_um)} goes beyond the machine "
                    "travel; nothing moved"
                ) from None
            raise self._refused(exc, resets, f"jog of {format_length(delta_um)}") from None
        finally:
            self._moving = False

    def _home(self) -> None:
        self._require_link()
        if self._needs_reset():
            self._soft_reset()
        self._halting = False
        command = self._homing_command()
        state = self.status().state if command != "$H" else ""
        travel = self.settings.get(130 + self._axis_index, 200.0)
        seek = self.settings.get(25) or 500.0
        feed = self.settings.get(24) or 25.0
        timeout = 1.5 * travel / (seek / 60.0) + 5 * 10 / (feed / 60.0) + self.timeout_s
        alarms = self._alarm_seq
        self._moving = self._homing_now = True
        try:
            self._command(command, timeout=timeout)
        except GrblCommandError as exc:
            if exc.code == 3 and command != "$H":
                self._undo_single_axis_homing(state)
                raise MotionError(
                    f"{self.port}: this GRBL build has no single-axis homing ({command} refused; "
                    "HOMING_SINGLE_AXIS_COMMANDS is off in stock GRBL), nothing moved: add "
                    "homing=all to the rail's URL to run the build's homing cycle ($H), if it "
                    f"homes the {self.axis} axis"
                ) from None
            raise MotionError(
                f"{self.port}: homing was refused: {self.dialect.error_text(exc.code)}"
            ) from None
        except _Timeout:
            raise MotionError(
                f"{self.port}: homing did not finish within {timeout:.0f} s"
            ) from None
        except MotionError:
            if self._halting:  # stop() reset the board: GRBL cannot stop homing otherwise
                raise MoveStoppedError(
                    f"{self.name}: homing stopped; the position is unknown until the rail is homed"
                ) from None
            raise
        except BaseException:
            # A Ctrl-C or hangup while the board homes: only a reset stops the cycle, and it is
            # sent here, at once. The caller's stop came after this cycle was over for the
            # driver, so it asked for a status that homing GRBL never answers and reset a
            # second later, or never, when a second signal (one ssh drop often sends two) cut
            # that wait short: the carriage ran on to its switch after the command had ended.
            self._halting = True
            with contextlib.suppress(Exception):
                self._soft_reset()
            raise
        finally:
            self._moving = self._homing_now = False
        if self._alarm_seq != alarms:
            raise self._alarm_error("during homing")
        self._position_lost = None
        self._alarm_code = None
        self._on_switch = False
        if command != "$H" and self.dialect.homing_required and self.status().state == "Alarm":
            raise MotionError(
                f"{self.port}: the {self.axis} axis is homed, but {self.dialect.name} stays "
                "locked until every axis of its homing cycle is: put only the rail's axis in "
                "the cycle (grblHAL: $44 to its axis, $45 and $46 to 0), or add homing=all to "
                "the rail's URL to run the whole cycle ($H)"
            )
        self._wait_idle("homing")
        self._homed = True
        self._machine_span = self._span_after_homing()

    def _homing_command(self) -> str:
        """``$H<axis>`` or ``$H``, by the ``homing`` option (see the module docstring)."""
        if self.homing == "all":
            return "$H"
        if self.homing == "auto" and self._single_axis_homing is None:
            self._single_axis_homing = self._lists_single_axis_homing()
        if self.homing == "axis" or self._single_axis_homing is not False:
            return f"$H{self.axis}"
        return "$H"

    def _identify(self) -> None:
        """The dialect of a board whose banner was not seen, from ``$I`` (see
        :func:`~rig.rails.grbl_codes.dialect_of_build_info`); a grblHAL board on native USB
        does not restart when its port opens, and its codes were read as GRBL's."""
        try:
            lines = self._command("$I")
        except GrblCommandError:  # busy (error:8 while moving): the banner's dialect stays
            return
        dialect = dialect_of_build_info(lines)
        if dialect is not None:
            self.dialect = dialect
            self.firmware = "GrblHAL" if dialect is GRBLHAL else "Grbl"

    def _lists_single_axis_homing(self) -> bool | None:
        """Whether ``$I`` lists ``H`` among the build options (``report.c``,
        ``report_build_info``: ``HOMING_SINGLE_AXIS_COMMANDS``); None when it lists none."""
        try:
            lines = self._command("$I")
        except GrblCommandError:
            return None
        for line in lines:
            match = re.match(r"^\[OPT:([^,\]]*)", line)
            if match:
                return "H" in match.group(1)
        return None

    def _undo_single_axis_homing(self, state: str) -> None:
        """Get a board out of the Home state a refused ``$H<axis>`` leaves it in.

        A build without single-axis homing sets its state to Home before it finds the command
        unknown (``system.c``), and stays there: no move starts, ``$H`` and jogs are refused.
        Only a soft reset gets out, reporting ``ALARM:6`` (a reset during homing) though
        nothing moved, and the board restarts locked. The position is intact, so the alarm is
        forgotten, and a board that was unlocked is unlocked again.
        """
        lost, code = self._position_lost, self._alarm_code
        self._soft_reset()
        self._position_lost, self._alarm_code = lost, code
        if state != "Alarm":
            self._checked_command("$X")

    def _span_after_homing(self) -> tuple[float, float] | None:
        """The axis's machine travel (mm) once homed, clear of the home switch; ``None`` when
        GRBL does not say.

        GRBL's machine space runs from ``-$130`` to 0 (``system_check_travel_limits``), with
        the home switch at one end: homing pulls off it by ``$27`` and sets the position there
        to ``-$27``, or to ``-$130 + $27`` when ``$23`` homes the axis to its negative end
        (``limits.c``, ``limits_go_home``). The switch end is kept ``$27`` short, where the
        carriage stood after homing: a hard-limit switch closes around it. A build with
        ``HOMING_FORCE_SET_ORIGIN`` sets 0 where homing left the carriage instead, so travel
        that homes negative runs from 0 to ``$130``: told apart by that position.
        """
        index = self._axis_index
        travel = self.settings.get(130 + index, 0.0)
        status = self.status()
        position = status.mpos
        if position is None and status.wpos is not None and self._wco is not None:
            position = tuple(w + o for w, o in zip(status.wpos, self._wco, strict=False))
        if travel <= 0 or position is None or index >= len(position):
            return None
        homes_negative = (int(self.settings.get(23, 0)) >> index) & 1
        pull_off = max(0.0, self.settings.get(27, 0.0))
        here = position[index] * (25.4 if self._report_inches else 1.0)
        if not homes_negative:
            return -travel, 0.0 if abs(here) < pull_off / 2 else -pull_off  # forced origin: 0
        if here > -travel / 2:  # forced origin at the negative end
            return 0.0, travel
        return -travel + pull_off, 0.0

    def _travel_limits(self) -> tuple[float | None, float | None]:
        """Once homed, the machine's travel in work coordinates (µm): a target past the home
        switch trips it (``ALARM:1``, hard limits) and one past the far end meets the rail's
        end, so both are refused before anything moves."""
        span = self._machine_span
        if span is None or not self._absolute:
            return None, None
        index = self._axis_index
        offset = self._wco[index] if self._wco is not None and index < len(self._wco) else 0.0
        offset_mm = offset * (25.4 if self._report_inches else 1.0)
        return (span[0] - offset_mm) * 1000.0, (span[1] - offset_mm) * 1000.0

    def unlock(self) -> None:
        """Clear an alarm with ``$X`` (after a soft reset if GRBL demands one).

        Only call this when the position is known to be right (e.g. a soft-limit alarm, which
        keeps the position); after a hard limit or a reset in motion, home instead.
        """
        self._require_link()
        if self._needs_reset():
            self._soft_reset()
        self._unlock_command()
        self._alarm_code = None
        if self._unreferenced == _FOUND_LOCKED:  # unlocking vouches for where it stands
            self._unreferenced = None

    def _unlock_command(self) -> None:
        """``$X``; a board that only homing unlocks says so in words (grblHAL's init lock)."""
        try:
            self._checked_command("$X")
        except GrblCommandError as exc:
            if exc.code != self.dialect.unlock_refused:
                raise
            raise MotionError(
                f"{self.port}: {self.dialect.name} will not unlock "
                f"({self.dialect.error_text(exc.code)}): its homing init lock ($22 flag 4) holds "
                "every move until the rail is homed, after each power-up and, without its "
                "override-locks flag ($22 flag 64), after every reset; home the rail (--home, "
                "or `rig rail home`), or clear flag 4 of $22 to take positions as they stand"
            ) from None

    def _needs_reset(self) -> bool:
        """After a critical alarm (GRBL's ALARM:1/2, grblHAL's emergency stop too) the board
        reads no line until Ctrl-X ("Reset to continue")."""
        return self._critical or self._alarm_code in self.dialect.critical

    def _leave_critical_alarm(self) -> None:
        """Ctrl-X, so that a board held in a critical alarm answers again; the alarm stays."""
        log.info(
            "%s: %s: soft reset, as GRBL answers nothing until then (the alarm stays)",
            self.port,
            self.dialect.alarm_text(self._alarm_code),
        )
        self._soft_reset()

    def _soft_reset(self) -> None:
        """Ctrl-X and wait for the banner; the planner and line buffer are flushed."""
        link = self._require_link()
        with self._cond:
            resets = self._reset_seq
        link.write(SOFT_RESET)
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            if not self._wait_for(link, lambda: self._reset_seq != resets, deadline):
                raise RigError(f"the GRBL controller on {self.port} did not restart on reset")
            self._critical = False

    def _halt(self) -> None:
        link = self._link
        if link is None or link.lost is not None:
            return
        self._halting = True
        try:
            if self._homing_now:
                # GRBL answers no `?` while homing (limits.c) and only a reset stops it; the
                # position is lost anyway.
                self._soft_reset()
                return
            if self._critical:
                return  # a hard or soft limit already stopped everything dead
            try:
                state = self._query_status(timeout=1.0).state
            except _Timeout:
                # A board that answers no `?` reads nothing else either: homing not started
                # here, or a critical alarm. Only a reset stops the former.
                log.warning("%s: no status answer: stopping with a soft reset", self.port)
                self._soft_reset()
                return
            if state == "Jog":
                link.write(JOG_CANCEL)
                return
            if state == "Home":
                self._soft_reset()  # nothing else interrupts homing; position is lost anyway
                return
            if state in ("Run", "Hold"):
                link.write(FEED_HOLD)
                deadline = time.monotonic() + self.timeout_s
                while time.monotonic() < deadline:
                    st = self._query_status(timeout=1.0)
                    if st.state == "Idle" or (st.state == "Hold" and st.substate == 0):
                        break
                    time.sleep(self.poll_s / 2)
                # Reset while held: GRBL flushes the remaining motion and keeps the position.
                self._soft_reset()
        except (_Timeout, ConnectionLostError, RigError) as exc:
            log.warning("%s: stop incomplete: %s", self.port, exc)


class _Timeout(Exception):
    """Internal: no answer within the time allowed (turned into a RigError by callers)."""


class _CriticalAlarm(Exception):
    """Internal: a critical alarm came while waiting for a status report that will not."""
