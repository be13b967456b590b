"""``marlin://``: a focus rail driven by a Marlin 2 board (3D-printer electronics) over serial.

The protocol is plain G-code, one line at a time, each answered by ``ok``:

* ``G90`` + ``G1 X.. F..`` moves (``G91`` for relative jogs); ``ok`` only means *queued*, so
  ``M400`` follows, answered when the planner is empty; ``M114`` then reads back the position.
* Marlin talks while it works: ``echo:busy: processing`` every couple of seconds during long
  waits (each one proves the board alive and extends the wait), other ``echo:`` lines, and
  ``start`` after a reset. All are tolerated.
* Stop: ``M410`` (quick stop, keeps the position); Marlin's emergency parser acts on it as it
  arrives, even while an ``M400`` is pending. :meth:`MarlinRail.emergency_stop` sends ``M112``,
  after which the board must be reset.
* Homing: ``G28 X``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from typing import Any

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.rails.base import ConnectionLostError, MoveStoppedError, Rail, RailOptions
from rig.rails.serialport import SerialLink
from rig.rails.url import DeviceURL, URLError, rail_options
from rig.units import format_length, parse_duration, parse_speed

log = logging.getLogger(__name__)

_POSITION = re.compile(r"^X:\s*([-+]?[\d.]+)\s+Y:\s*([-+]?[\d.]+)\s+Z:\s*([-+]?[\d.]+)")
_REPORT_UM = 10.0  # M114 prints two decimals of a millimetre


class MarlinRail(Rail):
    """A Marlin rail; see the module docstring.

    Parameters
    ----------
    port
        Device path or pyserial URL.
    options
        Shared rail behaviour (backlash, settle, soft limits).
    baud, axis, feed_mm_min
        Serial speed, the rail's axis letter, move speed (mm/min).
    wakeup_s
        Wait after opening the port (the board resets and boots).
    timeout_s
        Silence allowed before the board counts as unresponsive; ``busy:`` lines reset it.
    """

    def __init__(
        self,
        port: str,
        options: RailOptions | None = None,
        *,
        baud: int = 115200,
        axis: str = "X",
        feed_mm_min: float = 600.0,
        wakeup_s: float = 2.0,
        timeout_s: float = 5.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"marlin://{port}", options or RailOptions())
        axis = axis.upper()
        if axis not in ("X", "Y", "Z"):
            raise URLError(f"axis={axis!r} for {port}: use X, Y or Z")
        self.port = port
        self.baud = baud
        self.axis = axis
        self.feed_mm_min = feed_mm_min
        self.wakeup_s = wakeup_s
        self.timeout_s = timeout_s
        self.firmware = ""
        self._cond = threading.Condition()
        self._cmd_lock = threading.Lock()
        self._responses: deque[str] = deque()
        self._info: list[str] = []
        self._errors: list[str] = []
        self._awaiting = False
        self._activity = 0
        self._halted = False
        self._needs_sync = False
        self._homed = False
        self._position_um: float | None = None
        self._link: SerialLink | None = None
        self._connect()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MarlinRail:
        """``marlin:///dev/ttyACM0?axis=X&feed=10mm/s&backlash=30um&settle=0.3``."""
        parsed = DeviceURL.parse(url)
        if not parsed.path:
            raise URLError(f"{url!r} names no port: write e.g. marlin:///dev/ttyACM0")
        options = rail_options(parsed, **kwargs)
        feed = parsed.take("feed")
        settings: dict[str, Any] = {
            "baud": int(parsed.take_float("baud", 115200)),
            "axis": parsed.take("axis") or "X",
            "feed_mm_min": parse_speed(feed) if feed else 600.0,
            "wakeup_s": parse_duration(parsed.take("wakeup") or "2"),
            "timeout_s": parse_duration(parsed.take("timeout") or "5"),
        }
        parsed.finish()
        settings.update({k: v for k, v in kwargs.items() if k in settings})
        return cls(parsed.path, options, name=url, **settings)

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        self._link = SerialLink(self.port, self.baud, self._on_line, self._on_lost)
        try:
            time.sleep(self.wakeup_s)
            self._sync(deadline=time.monotonic() + max(self.timeout_s, 1.0))
            self._command("G21")
            self._position_um = None
        except Exception:
            self._link.close()
            self._link = None
            raise

    def _sync(self, deadline: float) -> None:
        """Send ``M115`` until its ``FIRMWARE_NAME`` reply; everything before it is stale."""
        while True:
            try:
                info = self._command("M115", timeout=1.0, sync=True)
                names = [line for line in info if line.startswith("FIRMWARE_NAME:")]
                if names:
                    self.firmware = names[0][len("FIRMWARE_NAME:") :].split(" SOURCE")[0]
                    break
            except _Timeout:
                pass
            if time.monotonic() > deadline:
                raise DeviceNotFoundError(
                    f"no Marlin board answers on {self.port} at {self.baud} baud; check the baud "
                    "rate and the cable"
                )
        time.sleep(0.05)  # a late answer to an earlier M115 is dropped, not taken as ours
        with self._cond:
            self._responses.clear()
        self._needs_sync = False

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
        self._connect()

    # -- lines --------------------------------------------------------------------------------

    def _on_line(self, line: str) -> None:
        with self._cond:
            self._activity += 1
            if line == "ok" or line.startswith("ok "):
                if self._awaiting:
                    self._responses.append("ok")
            elif line.startswith("Error:"):
                if "halted" in line or "kill" in line:
                    self._halted = True
                self._errors.append(line[6:])
            elif line.startswith("echo:busy") or line.startswith("busy:"):
                pass  # keepalive: counted as activity above
            elif line == "start":
                self._homed = False
                self._position_um = None
            elif self._awaiting:
                self._info.append(line)
            self._cond.notify_all()

    def _on_lost(self, error: ConnectionLostError) -> None:
        with self._cond:
            self._cond.notify_all()

    def _require_link(self) -> SerialLink:
        if self._link is None:
            raise ConnectionLostError(f"{self.port} is not connected; call reconnect()")
        if self._link.lost is not None:
            raise self._link.lost
        if self._halted:
            raise RigError(
                f"the Marlin board on {self.port} is halted (M112 or a fault); reset it "
                "(power cycle or reconnect) and home the rail"
            )
        return self._link

    def _command(self, line: str, *, timeout: float | None = None, sync: bool = False) -> list[str]:
        """Send a line and wait for ``ok``; ``busy``/``echo`` traffic keeps the wait alive."""
        link = self._require_link()
        if self._needs_sync and not sync:
            self._sync(deadline=time.monotonic() + self.timeout_s)
        silence = self.timeout_s if timeout is None else timeout
        with self._cmd_lock:
            with self._cond:
                self._responses.clear()
                self._info, self._errors = [], []
                self._awaiting = True
            try:
                link.send_line(line)
                with self._cond:
                    deadline = time.monotonic() + silence
                    seen = self._activity
                    while not self._responses:
                        if link.lost is not None:
                            raise link.lost
                        if self._halted:
                            raise RigError(
                                f"the Marlin board on {self.port} halted during {line!r}: "
                                f"{'; '.join(self._errors) or 'kill() called'}"
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
                        self._cond.wait(remaining)
                    self._responses.popleft()
                    info, errors = list(self._info), list(self._errors)
            finally:
                with self._cond:
                    self._awaiting = False
        if errors:
            raise MotionError(f"{self.port}: {line!r} failed: {'; '.join(errors)}")
        return info

    def send(self, line: str) -> list[str]:
        """Send a raw G-code line and return what Marlin printed before ``ok``."""
        return self._command(line)

    # -- Rail primitives ----------------------------------------------------------------------

    @property
    def _can_home(self) -> bool:
        return True

    @property
    def _absolute(self) -> bool:
        return self._homed

    @property
    def _resolution_um(self) -> float:
        return _REPORT_UM if self._position_um is None else 0.0

    def _report_position(self) -> float:
        for line in self._command("M114"):
            match = _POSITION.match(line)
            if match:
                return float(match.group("XYZ".index(self.axis) + 1)) * 1000.0
        raise RigError(f"the Marlin board on {self.port} sent no position for M114")

    def _read_position(self) -> float:
        if self._position_um is None:
            return self._report_position()
        return self._position_um

    def _move_absolute(self, target_um: float) -> None:
        self._require_link()
        if self._motion.stopped.is_set():
            raise MoveStoppedError(f"{self.name}: stopped before moving")
        self._position_um = None
        self._command("G90")
        self._command(f"G1 {self.axis}{target_um / 1000.0:.4f} F{self.feed_mm_min:.1f}")
        self._command("M400")
        reported = self._report_position()
        if self._motion.stopped.is_set():
            raise MoveStoppedError(f"{self.name}: stopped at {format_length(reported)}")
        if abs(reported - target_um) > _REPORT_UM / 2 + 1.0:
            raise MotionError(
                f"{self.name}: move to {format_length(target_um)} ended at "
                f"{format_length(reported)} (Marlin's soft endstops clamp moves: check the "
                "travel limits)"
            )
        self._position_um = target_um

    def jog(self, delta_um: float) -> None:
        """Relative move with ``G91`` (no backlash handling), then wait with ``M400``."""
        self._check_limits(self._read_position() + delta_um)
        self._motion.stopped.clear()
        self._motion.last_direction = 0
        self._position_um = None
        self._command("G91")
        try:
            self._command(f"G1 {self.axis}{delta_um / 1000.0:.4f} F{self.feed_mm_min:.1f}")
        finally:
            self._command("G90")
        self._command("M400")

    def _home(self) -> None:
        self._position_um = None
        self._command(f"G28 {self.axis}")
        self._homed = True

    def _halt(self) -> None:
        link = self._link
        if link is None or link.lost is not None:
            return
        try:
            link.send_line("M410")  # acted on at once by Marlin's emergency parser
        except ConnectionLostError:
            return
        self._position_um = None
        self._needs_sync = True

    def emergency_stop(self) -> None:
        """``M112``: Marlin kills all motion and halts until it is reset."""
        link = self._require_link()
        link.send_line("M112")
        self._motion.stopped.set()
        self._homed = False

    def _close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None


class _Timeout(Exception):
    """Internal: no answer during synchronisation."""
