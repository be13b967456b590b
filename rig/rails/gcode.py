"""What the two G-code rail drivers share: a controller that reads text lines on a serial port.

GRBL (:mod:`rig.rails.grbl`) and Marlin (:mod:`rig.rails.marlin`) both take one G-code line at a
time and answer each with ``ok``, both sit behind an Arduino-style port that may reset the board
when it is opened, and both drive one axis of several. :class:`GcodeRail` holds what follows from
that once: the connection settings and how a URL spells them, and the state that the port's
reader thread and the thread sending a command share.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from rig.rails.base import Rail, RailOptions
from rig.rails.serialport import SerialLink, require_link
from rig.rails.url import DeviceURL, URLError, open_port_rail
from rig.units import parse_speed

MIN_POLL_S = 0.01
"""Shortest interval between position or status queries while waiting for motion."""
MAX_POLL_S = 2.0
"""Longest: a slower poll would notice the end of a move late."""
_FIRMWARE_SIGNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "grbl": ("a GRBL controller", ("Grbl ", "GrblHAL ", "[MSG:", "ALARM:", "error:")),
    "marlin": ("a Marlin board", ("start", "echo:", "FIRMWARE_NAME:")),
}
"""How each firmware's own lines begin (its banner, its messages, its error replies)."""
MAX_BAUD = 4_000_000
"""Fastest serial speed accepted: the USB-serial chips of rail controllers top out at 2 to 3
Mbaud (CH340, FT232R)."""

if TYPE_CHECKING:
    from typing_extensions import Self


class GcodeSettings(TypedDict, total=False):
    """The keyword settings every G-code rail takes (documented on :class:`GcodeRail`)."""

    baud: int
    axis: str
    feed_mm_min: float | None
    wakeup_s: float
    timeout_s: float
    poll_s: float
    name: str | None


class GcodeRail(Rail):
    """Base of the G-code rail drivers; see the module docstring.

    Parameters
    ----------
    port
        Device path or pyserial URL (``/dev/ttyUSB0``, ``spy:///dev/ttyUSB0``).
    options
        Shared rail behaviour (backlash, settle, soft limits).
    baud
        Serial speed: 115200 for GRBL 1.1 and a stock Marlin build.
    axis
        The rail's axis letter, one of the driver's :attr:`axes`.
    feed_mm_min
        Move speed; ``None`` for the driver's :attr:`default_feed_mm_min`.
    wakeup_s
        Wait after opening the port (an Arduino resets on DTR and runs its bootloader).
    timeout_s
        How long the controller may stay silent before it counts as unresponsive.
    poll_s
        Interval between position or status queries while waiting for motion to end.
    name
        How messages name the rail; ``scheme://port`` by default (``from_url`` gives the URL).
    """

    scheme: ClassVar[str]
    """The URL scheme, also the start of the default :attr:`name`."""
    example_url: ClassVar[str]
    """A URL with a port, shown when a URL names none."""
    axes: ClassVar[str]
    """The axis letters the firmware drives."""
    default_feed_mm_min: ClassVar[float | None] = None

    def __init__(
        self,
        port: str,
        options: RailOptions | None = None,
        *,
        baud: int = 115200,
        axis: str = "X",
        feed_mm_min: float | None = None,
        wakeup_s: float = 2.0,
        timeout_s: float = 5.0,
        poll_s: float = 0.05,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"{self.scheme}://{port}", options or RailOptions())
        axis = axis.upper()
        if len(axis) != 1 or axis not in self.axes:
            raise URLError(f"axis={axis!r} for {port}: use one of {', '.join(self.axes)}")
        # A poll of 0 would send status queries back to back and fill the board's serial
        # buffer; a timeout of 0 would fail every command.
        if not MIN_POLL_S <= poll_s <= MAX_POLL_S:
            raise URLError(
                f"poll={poll_s:g}s for {port}: poll the board every {MIN_POLL_S:g} to "
                f"{MAX_POLL_S:g} s (default 0.05)"
            )
        if not timeout_s > 0:
            raise URLError(f"timeout={timeout_s:g}s for {port}: give a positive duration")
        if not 0 < baud <= MAX_BAUD:
            raise URLError(f"baud={baud} for {port}: give the board's serial speed, e.g. 115200")
        self.port = port
        self.baud = baud
        self.axis = axis
        self.feed_mm_min = self.default_feed_mm_min if feed_mm_min is None else feed_mm_min
        self.wakeup_s = wakeup_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.firmware = ""
        """The firmware's name, as the board announced it."""
        self._cond = threading.Condition()
        """Guards the state below; notified on every line the reader thread hands over."""
        self._cmd_lock = threading.Lock()
        """Held by the thread whose command is in flight: one at a time."""
        self._responses: deque[str] = deque()
        """Answers (``ok``...) to the command in flight."""
        self._info: list[str] = []
        """Other lines printed before the answer to the command in flight."""
        self._awaiting = False
        """A command is in flight: answers arriving now are its own, not stale."""
        self._homed = False
        self._link: SerialLink | None = None
        self._foreign: deque[str] = deque(maxlen=32)
        """Recent lines this driver's protocol has no use for, to name the firmware answering."""

    def _other_firmware_hint(self) -> str:
        """``; it answers like a Marlin board: use marlin://PORT`` when lines heard say so."""
        for scheme, (board, signs) in _FIRMWARE_SIGNS.items():
            if scheme != self.scheme and any(line.startswith(signs) for line in self._foreign):
                return f"; it answers like {board}: use {scheme}://{self.port}"
        return ""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Open the rail ``url`` names; keyword arguments override the URL's options."""
        return open_port_rail(cls, url, cls.example_url, cls._url_settings, kwargs)

    @classmethod
    def _url_settings(cls, parsed: DeviceURL) -> dict[str, Any]:
        """Read the driver's own options from the URL; a driver with more adds them here.

        ``baud``, ``axis``, ``feed`` (a speed), ``wakeup``, ``timeout`` and ``poll``
        (durations).
        """
        feed = parsed.take("feed")
        return {
            "baud": parsed.take_int("baud", 115200),
            "axis": parsed.take("axis") or "X",
            "feed_mm_min": parse_speed(feed) if feed else None,
            "wakeup_s": parsed.take_duration("wakeup", "2"),
            "timeout_s": parsed.take_duration("timeout", "5"),
            "poll_s": parsed.take_duration("poll", "0.05"),
        }

    def _require_link(self) -> SerialLink:
        return require_link(self._link, self.port)

    @property
    def link_lost(self) -> bool:
        """Whether the port is gone (a cable pulled, a USB hiccup, a reconnect that failed):
        nothing reaches the board until :meth:`reconnect`."""
        link = self._link
        return link is None or link.lost is not None

    def _close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
