"""A TCP relay between a browser and a station, for tests that play a phone's network."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Pump = Callable[[socket.socket, socket.socket, bool], None]
"""``pump(src, dst, answers)`` copies one direction of a relayed connection until it ends;
``answers`` is true for the station's direction."""


@contextlib.contextmanager
def relay(port: int, pump: Pump) -> Iterator[str]:
    """A relay on loopback to the station on ``port``: yields its address. Each connection's two
    directions are copied by ``pump`` on threads of their own (the test's pump drops, holds or
    cuts what a phone's network would); every socket is closed at the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    opened: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", port))
                opened.extend((client, upstream))
                for args in ((client, upstream, False), (upstream, client, True)):
                    threading.Thread(target=pump, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()
        for s in opened:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
