"""A simulated serial device on a real pseudo-terminal, reached through a stable path.

The driver under test opens the pty's slave side exactly as it opens ``/dev/ttyUSB0``: pyserial,
termios, the kernel tty layer. The simulator owns the master side and behaves like a USB board:

* ``path`` is a symlink in a private temporary directory that always points at the current pty,
  the way udev keeps ``/dev/focusrail`` pointing at whatever ``ttyUSBn`` the rail got.
* :meth:`PtyDevice.disconnect` closes the master, so the driver's next read fails as it does
  when a cable is pulled; :meth:`PtyDevice.replug` creates a fresh pty behind the same path.
* Opening the port can reset the board (``reset_on_open``), as DTR does on an Arduino. A pty has
  no DTR line, so the master runs in packet mode (``TIOCPKT``) and takes the input flush that
  pyserial performs when it opens a port (``TIOCPKT_FLUSHREAD``) as the moment of opening.
* :meth:`PtyDevice.power_cycle` restarts the board with the cable in place;
  :meth:`PtyDevice.stall` makes the board go silent, :meth:`PtyDevice.inject` sends arbitrary
  bytes (garbled lines).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shutil
import struct
import tempfile
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

POLL_MS = 20
"""How long the I/O thread waits for input at a time: the input is seen empty at least this
often while the thread keeps up, which bounds :attr:`PtyDevice.arrival`'s span."""


class PtyDevice:
    """Base of the pty-backed simulators; subclasses implement the ``on_*`` hooks.

    Parameters
    ----------
    name
        File name of the stable symlink (``ttyGRBL``...).
    reset_on_open
        Call :meth:`on_power_up` each time a program opens the port (Arduino DTR reset).
    """

    url_scheme: ClassVar[str] = ""
    """The focuser URL scheme of the driver that speaks to this device (``grbl``...)."""
    url_query: ClassVar[str] = ""
    """What :attr:`url` adds after the path, e.g. ``?wakeup=0`` where no boot needs waiting for."""

    def __init__(self, name: str, *, reset_on_open: bool = True) -> None:
        self.reset_on_open = reset_on_open
        self._dir = tempfile.mkdtemp(prefix="stackrig-sim-")
        self.path = os.path.join(self._dir, name)
        """Stable device path (a symlink to the current pseudo-terminal)."""
        self._master: int | None = None
        self._pts = ""
        self._io_lock = threading.Lock()
        self._quit = threading.Event()
        self._stalled = False
        self._thread: threading.Thread | None = None
        self.received = bytearray()
        """Every byte the device received, for inspection."""
        self.arrival: tuple[float, float] = (0.0, 0.0)
        """When the bytes :meth:`on_bytes` is given arrived: no earlier than the first
        ``time.monotonic()`` value, no later than the second. A pty keeps no arrival times, so
        this is the last moment the input was seen empty and the moment it was read; the span is
        wide only when this simulator's I/O thread fell behind (a loaded machine)."""

    # -- hooks --------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        """Bytes arrived from the host (I/O thread)."""

    def on_power_up(self) -> None:
        """The board (re)starts: plugged in, or reset by the port being opened."""

    def on_power_down(self) -> None:
        """The board lost power (cable pulled)."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PtyDevice:
        """Create the pty and start serving; returns self."""
        self._open_pty()
        self.on_power_up()
        self._thread = threading.Thread(target=self._io_loop, name=f"sim {self.path}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the pty and remove the symlink."""
        self._quit.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._close_master()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PtyDevice:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """A focuser URL that opens this device with its driver, ready to use."""
        return f"{self.url_scheme}://{self.path}{self.url_query}"

    @property
    def pts(self) -> str:
        """The current ``/dev/pts/N`` behind :attr:`path`."""
        return self._pts

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw mode before anyone opens the slave: no echo, no newline translation, so the
        # first bytes are not mangled before pyserial configures the port.
        tty.setraw(slave)
        self._pts = os.ttyname(slave)
        os.close(slave)
        fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
        os.set_blocking(master, False)
        with self._io_lock:
            self._master = master
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self._pts, tmp)
        os.replace(tmp, self.path)

    def _close_master(self) -> None:
        with self._io_lock:
            master, self._master = self._master, None
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)

    # -- faults -------------------------------------------------------------------------------

    def disconnect(self, *, power_loss: bool = True) -> None:
        """Pull the cable: close the pty master.

        ``power_loss=False`` models a board with its own supply: it keeps running unseen.
        """
        self._close_master()
        if power_loss:
            self.on_power_down()

    def replug(self, *, power_cycle: bool = True) -> None:
        """Plug the cable back in: a new pty behind the same :attr:`path`.

        The board restarts (``power_cycle``), as a USB-powered Arduino does.
        """
        self._close_master()
        self._open_pty()
        if power_cycle:
            self.on_power_up()

    def power_cycle(self) -> None:
        """The board restarts with the cable in place (brown-out, watchdog, reset button)."""
        self.on_power_down()
        self.on_power_up()

    def stall(self, stalled: bool = True) -> None:
        """Freeze the board's serial side: input is dropped and nothing is answered."""
        self._stalled = stalled

    def inject(self, data: bytes | str) -> None:
        """Send raw bytes to the host, e.g. a garbled or unexpected line."""
        self._write(data.encode("latin-1") if isinstance(data, str) else data, force=True)

    # -- I/O ----------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Send text to the host (dropped while stalled or unplugged)."""
        self._write(text.encode("ascii", errors="replace"))

    def write_bytes(self, data: bytes) -> None:
        """Send raw bytes to the host (dropped while stalled or unplugged)."""
        self._write(data)

    def _write(self, data: bytes, *, force: bool = False) -> None:
        if self._stalled and not force:
            return
        with self._io_lock:
            if self._master is None:
                return
            try:
                os.write(self._master, data)
            except OSError as exc:  # nobody reading and the buffer is full: drop, like a UART
                if exc.errno not in (errno.EAGAIN, errno.EIO):
                    raise

    def _io_loop(self) -> None:
        poller_for: int | None = None
        poller = select.poll()
        empty_at = time.monotonic()  # the input was last seen empty then
        while not self._quit.is_set():
            master = self._master
            if master is None:
                time.sleep(0.02)
                continue
            if poller_for != master:
                poller = select.poll()
                poller.register(master, select.POLLIN | select.POLLPRI)
                poller_for = master
            try:
                events = poller.poll(POLL_MS)
            except (OSError, ValueError):
                continue
            revents = events[0][1] if events else 0
            if not revents & (select.POLLIN | select.POLLPRI):
                empty_at = time.monotonic()
            if revents & (select.POLLNVAL | select.POLLERR):
                time.sleep(0.02)
                continue
            if revents & (select.POLLIN | select.POLLPRI):
                try:
                    packet = os.read(master, 4097)
                except OSError:
                    packet = b""
                read_at = time.monotonic()
                self.arrival, empty_at = (empty_at, read_at), read_at
                if packet[:1] == b"\x00":  # packet mode: a data packet
                    data = packet[1:]
                    if data and not self._stalled:
                        self.received.extend(data)
                        self.on_bytes(data)
                elif packet and packet[0] & termios.TIOCPKT_FLUSHREAD and self.reset_on_open:
                    self.on_power_up()  # pyserial flushes input right after opening the port
            if revents & select.POLLHUP:
                time.sleep(0.02)


FirmwareT = TypeVar("FirmwareT", bound="FirmwareDevice")


class FirmwareDevice(PtyDevice, ABC):
    """A board whose firmware runs a main loop of its own beside the I/O thread (GRBL, Marlin).

    The loop (:meth:`_run`, on its own thread until :attr:`_quit` is set) keeps a clock
    ``time_scale`` times faster than the wall's (:meth:`_now`). One lock guards the board's state;
    :attr:`_wake`, a condition on it, wakes the loop when something arrives.
    """

    runner_name = "firmware"
    """Name of the main loop's thread."""

    def __init__(self, name: str, *, reset_on_open: bool, time_scale: float) -> None:
        super().__init__(name, reset_on_open=reset_on_open)
        self.time_scale = time_scale
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._clock0 = time.monotonic()
        self._runner: threading.Thread | None = None

    def _now(self) -> float:
        """Simulated seconds since the board was made."""
        return (time.monotonic() - self._clock0) * self.time_scale

    @abstractmethod
    def _run(self) -> None:
        """The firmware's main loop."""

    def start(self: FirmwareT) -> FirmwareT:
        with self._lock:
            super().start()
        self._runner = threading.Thread(target=self._run, name=self.runner_name, daemon=True)
        self._runner.start()
        return self

    def __enter__(self: FirmwareT) -> FirmwareT:
        return self.start() if self._runner is None else self

    def close(self) -> None:
        self._quit.set()
        with self._wake:
            self._wake.notify_all()
        if self._runner is not None:
            self._runner.join(timeout=2.0)
        super().close()
