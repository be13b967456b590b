"""A command's standard streams when its console goes away.

A session on a headless Pi outlives the ssh login it was started from: its console may hang up,
fill (a log on a full SD card) or be a pipe whose reader has gone. None of that may end a
session where it stands (see :func:`stacker.cliutil.guard_std_streams`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from stacker.cliutil import ConsoleStream


class Kept(logging.Handler):
    """The messages logged, kept in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


LOG = logging.Logger("streams-test.console")  # in no hierarchy: no handler but the test's


@pytest.fixture
def closed_pipe() -> Iterator[ConsoleStream]:
    """A console on a pipe whose reader has gone (``| head`` after its lines)."""
    read, write = os.pipe()
    os.close(read)
    stream = open(write, "w", encoding="utf-8")  # noqa: SIM115
    try:
        yield ConsoleStream(stream, "stdout", LOG)
    finally:
        stream.close()


def test_a_console_whose_reader_went_goes_quiet_and_says_so_once(
    closed_pipe: ConsoleStream,
) -> None:
    """The first failing write (EPIPE here; ENOSPC, EIO alike) makes the stream quiet instead of
    raising; the loss is logged once, as soon as the log has a handler (a session's log)."""
    closed_pipe.write("the first line\n")
    closed_pipe.flush()  # EPIPE: lost
    assert closed_pipe.lost == "stdout: Broken pipe"
    kept = Kept()
    LOG.addHandler(kept)
    try:
        for _ in range(3):
            assert closed_pipe.write("more\n") == 5
            closed_pipe.flush()
    finally:
        LOG.removeHandler(kept)
    assert kept.messages == [
        "console output lost (stdout: Broken pipe); the session goes on, recorded here and in "
        "its folder"
    ]


def test_a_lost_console_points_its_descriptor_at_dev_null(closed_pipe: ConsoleStream) -> None:
    """What the stream still holds, C libraries and the interpreter's last flush then write to
    /dev/null rather than failing again (an "Exception ignored" at exit, or a child's EPIPE)."""
    closed_pipe.write("x" * 10)
    closed_pipe.flush()
    assert closed_pipe.lost is not None
    null = os.stat(os.devnull)
    assert os.fstat(closed_pipe.fileno()).st_rdev == null.st_rdev
    os.write(closed_pipe.fileno(), b"still fine")


def test_a_reader_that_went_is_no_failure_a_full_disk_is(closed_pipe: ConsoleStream) -> None:
    """``| head`` read what it wanted; a full disk lost what was printed (a command whose job
    is its printout then fails, see ``test_console_lost``)."""
    closed_pipe.write("a line\n")
    closed_pipe.flush()
    assert (closed_pipe.lost, closed_pipe.failed) == ("stdout: Broken pipe", None)
    with open("/dev/full", "w", encoding="utf-8") as full:
        stream = ConsoleStream(full, "stdout", LOG)
        stream.write("a line\n")
        stream.flush()
        assert stream.failed == stream.lost == "stdout: No space left on device"
