"""A request/response serial link for controllers that speak fixed binary frames.

StackShot and WeMacro controllers do not speak lines of text: every command is a frame of bytes
and every answer a frame of known length. :class:`BinaryLink` opens the port through
:func:`~rig.rails.serialport.open_serial` (so pseudo-terminals, ``spy://`` dumps and real
adapters take one code path), serialises requests with a lock so a stop from another thread
never interleaves with a half-written frame, and reads exact byte counts against a deadline.
A vanished port becomes one :class:`~rig.rails.base.ConnectionLostError` naming it.

:class:`BinaryLinkRail` is what the two drivers share: no limit switches (they never home),
relative moves, an optional swap of forward and back, and a link that is closed again when the
controller does not answer.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import abstractmethod

import serial

from rig.errors import MotionError
from rig.rails.base import Rail, RailOptions
from rig.rails.serialport import PortLink, open_serial

_PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, TypeError)


class BinaryLink(PortLink):
    """An open serial port with exact-length reads; see the module docstring."""

    def __init__(self, port: str, baud: int) -> None:
        super().__init__(port, open_serial(port, baud, timeout=0.02))
        self.lock = threading.RLock()
        """Held for a whole request/response exchange."""

    def read_exact(self, count: int, timeout: float) -> bytes:
        """Read ``count`` bytes, or fewer if ``timeout`` seconds pass first."""
        if self.lost is not None:
            raise self.lost
        data = bytearray()
        deadline = time.monotonic() + timeout
        while len(data) < count and time.monotonic() < deadline:
            try:
                chunk = self._serial.read(count - len(data))
            except _PORT_ERRORS as exc:
                raise self._lose(exc) from None
            data.extend(chunk)
        return bytes(data)

    def read_until_byte(self, wanted: int, timeout: float) -> bool:
        """Discard input until the byte ``wanted``; True when found before ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            byte = self.read_exact(1, max(0.0, deadline - time.monotonic()))
            if byte and byte[0] == wanted:
                return True
        return False

    def discard_input(self) -> None:
        """Drop whatever the controller sent that nobody asked for.

        Read and thrown away rather than flushed with ``reset_input_buffer``: a flush is what
        the pseudo-terminal simulators take as the port being opened (a board reset).
        """
        if self.lost is not None:
            raise self.lost
        try:
            while self._serial.in_waiting:
                self._serial.read(self._serial.in_waiting)
        except _PORT_ERRORS as exc:
            raise self._lose(exc) from None

    def close(self) -> None:
        """Close the port; safe to call twice."""
        with contextlib.suppress(*_PORT_ERRORS):
            self._serial.close()


class BinaryLinkRail(Rail):
    """A rail without limit switches on a :class:`BinaryLink` (StackShot, WeMacro).

    A subclass's ``__init__`` calls this one, sets its own attributes, then :meth:`_open`.
    """

    def __init__(
        self,
        scheme: str,
        port: str,
        options: RailOptions | None,
        *,
        reverse: bool,
        name: str | None,
    ) -> None:
        super().__init__(name or f"{scheme}://{port}", options or RailOptions())
        self.port = port
        self.reverse = reverse

    def _open(self, baud: int) -> None:
        """Open the port and :meth:`_greet` the controller; close the port again if it fails."""
        self._link = BinaryLink(self.port, baud)
        try:
            self._greet()
        except Exception:
            self._link.close()
            raise

    @abstractmethod
    def _greet(self) -> None:
        """Make sure the controller answers on the open link; raise if it does not."""

    _can_home = False
    _absolute = False

    def _home(self) -> None:  # pragma: no cover - _can_home is False, Rail.home refuses first
        raise MotionError(f"{self.name} has no limit switches and cannot home")

    def _close(self) -> None:
        self._link.close()
