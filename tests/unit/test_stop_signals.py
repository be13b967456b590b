"""The signals that stop a command: Ctrl-C, SIGTERM, and SIGHUP when its terminal closes.

A session on a headless Pi outlives the ssh login it was started from; when that drops, the
session gets SIGHUP, whose default ended it where it stood (see
:data:`stacker.cliutil.STOP_SIGNALS`).
"""

from __future__ import annotations

import signal

from stacker.cliutil import signals_handled


def test_a_hangup_is_routed_like_sigterm() -> None:
    """SIGHUP (the terminal closed, the ssh connection dropped) stops a command as SIGTERM does:
    its default ended a session where it stood, without composite or a word."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with signals_handled(lambda signum, _frame: seen.append(signum)):
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # restored after
        with signals_handled(lambda signum, _frame: seen.append(signum)):
            signal.raise_signal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen == [signal.SIGTERM, signal.SIGHUP]


def test_after_a_hangup_a_second_one_is_ignored() -> None:
    """One dropped ssh connection may send SIGHUP twice; the second, landing once the stop the
    first began was over, ended the process in its last lines with the default action (exit
    -1 in a loaded test run)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with signals_handled(lambda signum, _frame: None):
            signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        signal.raise_signal(signal.SIGHUP)  # the default would end this test run
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_hangup_ignored_from_the_start_stays_ignored() -> None:
    """Under ``nohup`` the command is asked to run on after its terminal is gone."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_handled(lambda signum, _frame: seen.append(signum)):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen == []
