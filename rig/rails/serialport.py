"""A line-oriented serial link with a reader thread, shared by the G-code rail drivers.

Ports are opened with :func:`serial.serial_for_url`, so a device path, ``spy:///dev/ttyUSB0``
(a traffic dump on stderr), ``loop://`` or a simulator's pseudo-terminal all take the same code
path. Every received line goes to a callback on the reader thread; controllers speak
asynchronously (GRBL reports ``ALARM:1`` whenever a limit switch trips), so reading cannot wait
for a command to ask. A broken link (cable pulled, board gone) is reported once, as a
:class:`~rig.rails.base.ConnectionLostError` naming the port, and every later write raises it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Callable

import serial

from rig.errors import DeviceBusyError, DeviceNotFoundError, RigError
from rig.rails.base import ConnectionLostError

log = logging.getLogger(__name__)

try:  # pyserial lets termios.error (not an OSError) escape from flush() on a vanished tty
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (
        serial.SerialException,
        OSError,
        termios.error,
    )
except ImportError:  # pragma: no cover - Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

# TypeError/AttributeError: pyserial's fd vanishes under a concurrent close().
_READ_ERRORS: tuple[type[BaseException], ...] = (*_PORT_ERRORS, TypeError, AttributeError)
_WRITE_ERRORS: tuple[type[BaseException], ...] = (*_PORT_ERRORS, TypeError)

PORT_HELP = (
    "check the cable, `ls /dev/serial/by-id`, the udev rules (udev/README.md) "
    "and that you are in group dialout"
)


def open_serial(port: str, baud: int, *, timeout: float = 0.05) -> serial.SerialBase:
    """Open ``port`` through :func:`serial.serial_for_url`, turning failures into one line."""
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        code = getattr(exc, "errno", None)
        text = str(exc)
        if code == errno.ENOENT or "No such file" in text:
            raise DeviceNotFoundError(f"no serial port {port}: {PORT_HELP}") from None
        if code == errno.EACCES or "Permission denied" in text:
            raise DeviceNotFoundError(
                f"permission denied on {port}: add yourself to group dialout "
                "(sudo usermod -aG dialout $USER, then log in again) or install the udev rules"
            ) from None
        if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text:
            raise DeviceBusyError(
                f"{port} is in use by another program (a slicer, ModemManager, another rig); "
                "close it or install the udev rules that tell ModemManager to keep off"
            ) from None
        raise RigError(f"cannot open {port}: {text}; {PORT_HELP}") from None


class PortLink:
    """An open port whose first failure is kept in :attr:`lost` and raised by every later write.

    The base of the line link below and of :class:`~rig.rails.binarylink.BinaryLink`.
    """

    def __init__(self, port: str, serial_port: serial.SerialBase) -> None:
        self.port = port
        self._serial = serial_port
        self._write_lock = threading.Lock()
        self.lost: ConnectionLostError | None = None

    def _lose(self, exc: BaseException) -> ConnectionLostError:
        """Record ``exc`` as the loss of the link (the first one counts) and return the error."""
        if self.lost is None:
            self.lost = ConnectionLostError(
                f"lost the connection to {self.port} ({exc}); check the cable and power, "
                "then reconnect"
            )
        return self.lost

    def write(self, data: bytes) -> None:
        """Send ``data`` whole (a frame, a line or a real-time command)."""
        if self.lost is not None:
            raise self.lost
        try:
            with self._write_lock:
                self._serial.write(data)
                self._serial.flush()
        except _WRITE_ERRORS as exc:
            raise self._lose(exc) from None


class SerialLink(PortLink):
    """Open ``port`` and feed every received line to ``on_line`` from a reader thread.

    Parameters
    ----------
    port
        A pyserial URL or device path.
    on_line
        Called with each non-empty line (without line ending), on the reader thread.
    on_lost
        Called once with the :class:`ConnectionLostError` when the link breaks.
    """

    def __init__(
        self,
        port: str,
        baud: int,
        on_line: Callable[[str], None],
        on_lost: Callable[[ConnectionLostError], None],
    ) -> None:
        super().__init__(port, open_serial(port, baud))
        self._on_line = on_line
        self._on_lost = on_lost
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name=f"serial {port}", daemon=True)
        self._thread.start()

    def send_line(self, text: str) -> None:
        """Send one command line terminated by ``\\n``."""
        log.debug("%s <- %s", self.port, text)
        if not text.isascii() or "\n" in text or "\r" in text:
            # G-code is ASCII, one line: anything else the controller would misread
            raise RigError(f"{self.port}: {text!r} is not one line of ASCII G-code; nothing sent")
        self.write(text.encode("ascii") + b"\n")

    def close(self) -> None:
        """Stop the reader and close the port; safe to call twice."""
        self._closing.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        with contextlib.suppress(serial.SerialException, OSError):  # gone with the cable
            self._serial.close()

    def _lose(self, exc: BaseException) -> ConnectionLostError:
        """As :meth:`PortLink._lose`; the first loss is also logged and given to ``on_lost``.

        A failure while the link is being closed is no loss of the link.
        """
        if self.lost is not None or self._closing.is_set():
            return self.lost or ConnectionLostError(f"{self.port} was closed")
        lost = super()._lose(exc)
        log.warning("%s", lost)
        self._on_lost(lost)
        return lost

    def _read_loop(self) -> None:
        pending = b""
        while not self._closing.is_set():
            try:
                chunk = self._serial.read(self._serial.in_waiting or 1)
            except _READ_ERRORS as exc:
                if not self._closing.is_set():
                    self._lose(exc)
                return
            if not chunk:
                continue
            pending += chunk
            *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                text = raw.decode("ascii", errors="replace").strip()
                if text:
                    log.debug("%s -> %s", self.port, text)
                    try:
                        self._on_line(text)
                    except Exception:  # a parser bug must not kill the link
                        log.exception("%s: failed to handle line %r", self.port, text)


def require_link(link: SerialLink | None, port: str) -> SerialLink:
    """``link`` when it is open and whole; else the error saying why there is none."""
    if link is None:
        raise ConnectionLostError(f"{port} is not connected; call reconnect()")
    if link.lost is not None:
        raise link.lost
    return link
