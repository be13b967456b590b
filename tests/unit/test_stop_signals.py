"""The signals that stop a command: Ctrl-C, SIGTERM, and SIGHUP when its terminal closes.

A session on a headless Pi outlives the ssh login it was started from; when that drops, the
session gets SIGHUP, whose default ended it where it stood (see
:data:`stacker.cliutil.STOP_SIGNALS`).
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from stacker.cliutil import signals_as_ctrl_c, signals_handled
from tests.paths import ROOT


def test_a_hangup_is_routed_like_sigterm() -> None:
    """SIGHUP (the terminal closed, the ssh connection dropped) stops a command as SIGTERM does:
    its default ended a session where it stood, without composite or a word."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with signals_handled(seen.append):
            assert signal.getsignal(signal.SIGHUP) is signal.getsignal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # restored: no signal came
        with signals_handled(seen.append):
            signal.raise_signal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen == [signal.SIGHUP]


def test_after_a_hangup_a_second_one_is_ignored() -> None:
    """One dropped ssh connection may send SIGHUP twice; the second, landing once the stop the
    first began was over, ended the process in its last lines with the default action (exit
    -1 in a loaded test run)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with signals_handled(lambda _signum: None):
            signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        signal.raise_signal(signal.SIGHUP)  # the default would end this test run
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_hangup_while_a_stop_winds_up_is_ignored() -> None:
    """``kill`` then a closed terminal: the hangup, landing after the block while the stop the
    first signal began winds up, ended ``rig rail simulate`` with the default action
    (``benchmarks/stop_signals.py``)."""
    with signals_handled(lambda _signum: None):
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


_SECOND_SIGNAL = """
import signal, sys, time
from stacker.cliutil import signals_handled
with signals_handled(lambda _signum: None):
    signal.raise_signal(signal.SIGTERM)
print("stopping", flush=True)
signal.raise_signal(signal.SIG{name})
time.sleep(5)
print("not ended", flush=True)
"""


@pytest.mark.parametrize("name", ["INT", "TERM"])
def test_a_second_signal_while_a_stop_winds_up_ends_at_once(name: str) -> None:
    """Ctrl-C or ``kill`` again after the stop's block: at once, status 130, no traceback.
    Before, SIGTERM killed the process by its default action and Ctrl-C raised in whatever
    the way out was doing."""
    done = subprocess.run(
        [sys.executable, "-c", _SECOND_SIGNAL.replace("{name}", name)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (130, "stopping\n", "")


def test_a_hangup_ignored_from_the_start_stays_ignored() -> None:
    """Under ``nohup`` the command is asked to run on after its terminal is gone."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_handled(seen.append):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen == []


def test_a_ctrl_c_ignored_from_the_start_stays_ignored() -> None:
    """A shell without job control starts every command of a script's ``&`` with SIGINT
    ignored: a Ctrl-C meant for the script's foreground job is not the background one's. The
    command took SIGINT once it routed it, so a ``kill -INT`` stopped it a second after it
    started, and one sent while it loaded was lost; now neither does."""
    from stacker.launch import wind_down

    seen: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_handled(seen.append, ctrl_c_again_interrupts=True):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
        wind_down()  # the way out, after a stop: its handlers leave it ignored too
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert seen == []


def test_a_handler_may_take_a_lock_the_main_thread_holds() -> None:
    """A signal lands between any two steps of the main thread. ``rig station`` hung past
    systemd's stop timeout when SIGTERM came as its main loop entered ``Event.wait`` on the
    event the handler set: run in the signal's context, the handler waited for a lock its own
    thread held."""
    lock = threading.Lock()
    took: list[bool] = []

    def handler(_signum: int) -> None:
        took.append(lock.acquire(timeout=2))
        if took[-1]:
            lock.release()

    with signals_handled(handler), lock:
        signal.raise_signal(signal.SIGTERM)
    assert took == [True]


def test_a_failing_handler_still_hears_the_next_signal() -> None:
    seen: list[int] = []

    def handler(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise RuntimeError("the console went away")

    with signals_handled(handler):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGTERM, signal.SIGINT]


def test_ctrl_c_after_a_stop_can_interrupt_at_once() -> None:
    """``stacker watch``: the first signal asks for a clean stop, a Ctrl-C after it does not
    wait for one."""
    seen: list[int] = []
    with (
        pytest.raises(KeyboardInterrupt),
        signals_handled(seen.append, ctrl_c_again_interrupts=True),
    ):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # not Ctrl-C: one more stop request
        signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGTERM, signal.SIGTERM]
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # the process winds down


def test_a_double_tap_of_ctrl_c_is_one_press() -> None:
    """``stacker watch``: a hand that taps Ctrl-C twice (0.01-0.06 s apart) interrupted the
    write of the composite the first asked for, and left none. The second tap of a double tap
    is the same press; a Ctrl-C after it still interrupts at once."""
    import time

    from stacker.cliutil import DOUBLE_TAP_S

    seen: list[int] = []
    with (
        pytest.raises(KeyboardInterrupt),
        signals_handled(seen.append, ctrl_c_again_interrupts=True),
    ):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # the same press
        time.sleep(DOUBLE_TAP_S + 0.1)
        assert seen == [signal.SIGINT]
        signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGINT]


def test_sigterm_can_stop_a_block_as_ctrl_c_does() -> None:
    with pytest.raises(KeyboardInterrupt), signals_as_ctrl_c():
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # the process winds down


_TWO_SIGNALS_AS_CTRL_C = """
import signal
from stacker.cliutil import signals_as_ctrl_c
try:
    with signals_as_ctrl_c():
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            print("stopping", flush=True)
            signal.raise_signal(signal.SIG{name})  # while the stop the first began runs
            print("stopped", flush=True)
            raise
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize(
    ("name", "status", "printed"),
    [("INT", 130, "stopping\n"), ("TERM", 130, "stopping\n"), ("HUP", 0, "stopping\nstopped\n")],
)
def test_a_second_signal_in_a_ctrl_c_block_does_not_raise_again(
    name: str, status: int, printed: str
) -> None:
    """``rig rail move``, ``stacker stack``: a second Ctrl-C or SIGTERM while the first one's
    KeyboardInterrupt unwound raised another one in the middle of that (the rail's stop, a
    ``Condition.wait`` being left: a RuntimeError traceback, status 1). It ends the process at
    once now, with 130; a hang-up is ignored."""
    done = subprocess.run(
        [sys.executable, "-c", _TWO_SIGNALS_AS_CTRL_C.replace("{name}", name)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    end = "" if status == 130 else "interrupted\n"
    assert (done.returncode, done.stdout, done.stderr) == (status, printed + end, "")


class StartingCluster:
    """A local Dask cluster's stand-in that receives ``signum`` while it starts."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.closed = False

    def __call__(self, **_options: object) -> StartingCluster:
        signal.raise_signal(self.signum)
        return self

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_while_a_batch_cluster_starts_is_held_then_acted_on(
    signum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stacker batch`` ignored Ctrl-C while its local cluster started (so that the worker
    processes would inherit an ignored SIGINT): one pressed in those seconds was dropped and
    the batch ran to its end. SIGTERM or SIGHUP raised in the middle of the start, and Dask's
    exit handler failed to close the half-started cluster, with a traceback. Both are held
    until the cluster has started, which is then closed, and the batch stops."""
    import dask.distributed

    from stacker import batch

    starting = StartingCluster(signum)
    monkeypatch.setattr(dask.distributed, "LocalCluster", starting)
    with pytest.raises(KeyboardInterrupt), signals_as_ctrl_c():
        batch._connect(None, 1, 1)
    assert starting.closed
    # Stopping, the process winds down as after a stop the block heard itself: the block left
    # SIGTERM and SIGHUP at their defaults, and a second one as the batch ended killed it (143).
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


_TWO_STOPS_WHILE_A_CLUSTER_STARTS = """
import signal
import dask.distributed
from stacker import batch
from stacker.cliutil import signals_as_ctrl_c

class Starting:
    def __init__(self, **_options):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIG{name})  # a stop pressed again: the start takes a while
        print("started", flush=True)
    def close(self):
        print("closed", flush=True)

dask.distributed.LocalCluster = Starting
try:
    with signals_as_ctrl_c():
        batch._connect(None, 1, 1)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize(
    ("name", "status", "printed"),
    [("TERM", 130, ""), ("HUP", 0, "started\nclosed\ninterrupted\n")],
)
def test_a_second_stop_while_a_batch_cluster_starts_ends_at_once(
    name: str, status: int, printed: str
) -> None:
    """A stop while ``stacker batch``'s local cluster starts waits for the start to end (see
    above); a second Ctrl-C or SIGTERM was held with it, and the batch ended only once the
    cluster had started (seconds on a Pi, up to its start's timeout when a worker cannot start),
    where the README says a second one ends a stopping command at once with 130. A hang-up is
    then ignored."""
    done = subprocess.run(
        [sys.executable, "-c", _TWO_STOPS_WHILE_A_CLUSTER_STARTS.replace("{name}", name)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (status, printed, "")


class StackingOnAndOn:
    """A session runner's stand-in whose run outlasts an abort, as a slow machine's stacking of
    a large frame does (a C call that cannot be interrupted)."""

    def __init__(self, root: Path) -> None:
        self.folder = SimpleNamespace(root=root)
        self.released = threading.Event()

    def run(self) -> None:
        self.released.wait(30)

    def request_stop(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def close_journal(self) -> None:
        pass


def test_an_abort_that_cannot_wait_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Ctrl-Cs while a slow machine stacked a large frame ended the process after the grace
    time with 'SIGINT: aborting' alone: no word that the frames were kept, nor how to go on."""
    from rig.cli import session as cli

    def hard_exit(_runner: object, code: int) -> None:  # os._exit, as far as the caller sees
        runner.released.set()
        raise SystemExit(code)

    monkeypatch.setattr(cli, "ABORT_GRACE_S", 0.1)
    monkeypatch.setattr(cli, "_hard_exit", hard_exit)
    runner = StackingOnAndOn(tmp_path / "beetle")
    out = io.StringIO()
    console = Console(file=out, width=200)
    threading.Timer(0.2, signal.raise_signal, (signal.SIGINT,)).start()
    threading.Timer(0.5, signal.raise_signal, (signal.SIGINT,)).start()
    with pytest.raises(SystemExit) as ended:
        cli.run_interruptible(runner, console)  # type: ignore[arg-type]
    text = out.getvalue()
    assert ended.value.code == 130, text
    assert "SIGINT: aborting" in text
    assert "session aborted: every frame on disk is kept" in text
    assert f"continue with: rig resume {tmp_path / 'beetle'}" in text


def test_a_ctrl_c_before_a_command_handles_it_is_told(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typer turns a KeyboardInterrupt that reaches it (a Ctrl-C while a command parses its
    options or opens a device, before its own handling) into status 130 without a word; the
    command looked as if it had ended by itself. A command's own ``typer.Exit(130)``, which
    has said what it stopped, is left as it is."""
    import typer

    from stacker.cliutil import run_app
    from tests.apps import app_raising, raising

    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(SystemExit) as ended:
        run_app(app_raising(raising(KeyboardInterrupt())), "prog")
    assert ended.value.code == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
    with pytest.raises(SystemExit) as ended:
        run_app(app_raising(raising(typer.Exit(130))), "prog")
    assert ended.value.code == 130
    assert capsys.readouterr().err == ""


def test_an_error_a_ctrl_c_caused_is_told_as_an_interrupt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11 wraps a KeyboardInterrupt raised in a ``__set_name__`` (a Ctrl-C while a
    module a command loads late defines a dataclass) in a RuntimeError: it is an interrupt, told
    in one line. An error of another cause still reaches the caller."""
    from stacker.cliutil import run_app
    from tests.apps import app_raising

    monkeypatch.setattr(sys, "argv", ["prog"])

    def wrapped(cause: BaseException) -> Callable[[], None]:
        def raise_it() -> None:
            raise RuntimeError("Error calling __set_name__") from cause

        return raise_it

    with pytest.raises(SystemExit) as ended:
        run_app(app_raising(wrapped(KeyboardInterrupt())), "prog")
    assert ended.value.code == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
    with pytest.raises(RuntimeError):
        run_app(app_raising(wrapped(ValueError("no"))), "prog")


class FinishesAtOnce:
    """A session runner's stand-in whose run has completed."""

    def __init__(self, root: Path) -> None:
        self.folder = SimpleNamespace(root=root)

    def run(self) -> str:
        return "completed"


def test_a_signal_once_the_session_is_over_lets_the_command_end_as_the_session_did(
    tmp_path: Path,
) -> None:
    """A hangup or SIGTERM while the report printed and the camera closed, after the session
    had completed, ended the command as interrupted (status 130), the camera's settings not put
    back; a script took the completed session for a failed one."""
    from rig.cli import session as cli
    from stacker.launch import as_ctrl_c

    for s in (signal.SIGTERM, signal.SIGHUP):  # as the command's launch leaves them
        signal.signal(s, as_ctrl_c)
    result = cli.run_interruptible(
        FinishesAtOnce(tmp_path / "beetle"),  # type: ignore[arg-type]
        Console(file=io.StringIO()),
    )
    signal.raise_signal(signal.SIGHUP)
    signal.raise_signal(signal.SIGTERM)  # the first let pass; a second would end it at once
    assert result == "completed"


def test_a_stop_before_the_run_takes_the_signals_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hangup just as the session's folder was made (before the run handles signals) ended
    the command with 'rig: interrupted' alone: not a word of the session made, nor how to go
    on. (The signal is stood in for by a KeyboardInterrupt where it landed.)"""
    import typer

    from rig.cli import session as cli
    from rig.session.display import SessionDisplay

    def landed(_self: object, _runner: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SessionDisplay, "attach", landed)
    out = io.StringIO()
    folder = SimpleNamespace(root=tmp_path / "beetle")
    with pytest.raises(typer.Exit) as ended:
        cli._run_and_exit(
            SimpleNamespace(), folder, Console(file=out, width=200), referenced_by="--home"
        )  # type: ignore[arg-type]
    assert ended.value.exit_code == 130
    assert out.getvalue().splitlines() == [
        f"session {tmp_path / 'beetle'}: interrupted before its first frame",
        f"continue with: rig resume {tmp_path / 'beetle'} --home",
    ]
