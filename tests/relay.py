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
    cuts what a phone's network would), and the end of one is passed on; every socket is closed
    at the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    opened: list[socket.socket] = []

    def copy(src: socket.socket, dst: socket.socket, answers: bool) -> None:
        pump(src, dst, answers)
        # The end that closed is passed on, as a network passes on a FIN: a browser must not
        # send its next request on a kept-alive connection the server has already closed.
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", port))
                opened.extend((client, upstream))
                for args in ((client, upstream, False), (upstream, client, True)):
                    threading.Thread(target=copy, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()
        for s in opened:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@contextlib.contextmanager
def sleeping_relay(
    port: int, *, every_connection: bool = False
) -> Iterator[tuple[str, Callable[[], None]]]:
    """A relay to the preview or station on ``port``: (its address, ``sleep``). After
    ``sleep()``, what the server sends on the event streams open then is dropped and their
    connections are left open, as a phone's Wi-Fi asleep loses them without a word to either
    end; a stream asked for afterwards, on any connection, is whole. With ``every_connection``,
    every connection open at ``sleep()`` is dead both ways and its end is never heard of, as
    when a router restarts and forgets them; connections opened afterwards are whole."""
    streams: set[int] = set()  # upstream sockets whose last request asked for events
    lost: set[int] = set()
    opened: set[int] = set()  # every upstream socket
    dead: set[int] = set()
    done = threading.Event()

    def pump(src: socket.socket, dst: socket.socket, answers: bool) -> None:
        upstream = id(src if answers else dst)
        opened.add(upstream)
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if upstream in dead:
                    continue
                if not answers:
                    lost.discard(upstream)
                    (streams.add if b"GET /api/events" in data else streams.discard)(upstream)
                if answers and upstream in lost:
                    continue  # lost on the air
                dst.sendall(data)
        if upstream in dead:
            done.wait()  # nor does its end reach the other side

    def sleep() -> None:
        lost.update(streams)
        if every_connection:
            dead.update(opened)

    with relay(port, pump) as url:
        try:
            yield url, sleep
        finally:
            done.set()
