"""Ctrl-C while a command is still loading: one line, exit status 130, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAUNCH = "import sys; from {module} import main; sys.argv[0] = '{prog}'; main()"


def _launch(folder: Path, module: str, prog: str) -> subprocess.CompletedProcess[str]:
    """Run :func:`stacker.launch.launch` of ``module``, a file in ``folder``, as ``prog``."""
    code = (
        f"import sys; sys.path.insert(0, {str(folder)!r}); "
        f"from stacker.launch import launch; launch({module!r}, {prog!r})"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_an_interrupt_during_loading_is_one_line(tmp_path: Path) -> None:
    """A command module interrupted while it imports (as a Ctrl-C in the second OpenCV takes to
    load is) ends in ``prog: interrupted``; the interpreter printed a traceback before."""
    (tmp_path / "slow_command.py").write_text("raise KeyboardInterrupt\n", encoding="utf-8")
    done = _launch(tmp_path, "slow_command", "rig")
    assert (done.returncode, done.stderr) == (130, "rig: interrupted\n")


CUT_IMPORT = """
import ctypes

# As a compiled module's import of numpy's C API does when a Ctrl-C cut it short (numpy 1.x):
# the interrupt printed by C (PyErr_Print, through sys.excepthook), then an ImportError raised.
ctypes.pythonapi.PyRun_SimpleString(b"raise KeyboardInterrupt")
raise ImportError("numpy.core.multiarray failed to import")
"""


def test_an_interrupt_a_compiled_import_printed_and_turned_into_an_import_error_is_one_line(
    tmp_path: Path,
) -> None:
    """Interrupted as numpy 1.x's C API loaded, a compiled module printed the KeyboardInterrupt
    itself and raised "numpy.core.multiarray failed to import": two tracebacks (the lowest
    versions' lane, once, at 0.45 s into ``rig plan``). It is an interrupt: one line."""
    (tmp_path / "cut_import.py").write_text(CUT_IMPORT, encoding="utf-8")
    done = _launch(tmp_path, "cut_import", "rig")
    assert (done.returncode, done.stderr) == (130, "rig: interrupted\n")


WRAPPED_INTERRUPT = """
class Interrupted:
    def __set_name__(self, owner, name):
        raise KeyboardInterrupt  # as a Ctrl-C landing in dataclasses' Field.__set_name__ does


class Shot:
    files = Interrupted()
"""


def test_an_interrupt_the_interpreter_wrapped_in_another_error_is_one_line(
    tmp_path: Path,
) -> None:
    """Python 3.11 wraps what a ``__set_name__`` raises in a RuntimeError, the interrupt as its
    cause: a Ctrl-C landing while a dataclass was defined (``rig plan``, 0.7 s in) ended in two
    tracebacks. An error an interrupt caused is an interrupt: one line."""
    (tmp_path / "wrapped_interrupt.py").write_text(WRAPPED_INTERRUPT, encoding="utf-8")
    done = _launch(tmp_path, "wrapped_interrupt", "rig")
    assert (done.returncode, done.stderr) == (130, "rig: interrupted\n")


def test_a_load_that_fails_without_an_interrupt_still_shows_why(tmp_path: Path) -> None:
    """Only an interrupt makes a failed load one line: a module that cannot be imported for
    another reason still ends in its traceback, which says what is wrong."""
    (tmp_path / "broken_command.py").write_text(
        'raise ImportError("numpy.core.multiarray failed to import")\n', encoding="utf-8"
    )
    done = _launch(tmp_path, "broken_command", "rig")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "numpy.core.multiarray" in done.stderr


def test_a_dependency_gone_is_one_line_that_says_how_to_put_it_back(tmp_path: Path) -> None:
    """``opencv-python`` (the GUI build) installed beside stackrig's headless OpenCV writes the
    same ``cv2`` folder, and uninstalling it removes that folder for both, while ``pip check``
    finds nothing broken: every command ended in a ModuleNotFoundError traceback."""
    (tmp_path / "needs_opencv.py").write_text(
        "import sys\nsys.modules['cv2'] = None  # as a removed package's import fails\n"
        "import cv2\n",
        encoding="utf-8",
    )
    done = _launch(tmp_path, "needs_opencv", "stacker")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("stacker: ")
    assert "pip install --force-reinstall opencv-python-headless" in done.stderr
    assert "opencv-python, opencv-contrib-python" in done.stderr


def test_an_interrupt_in_a_callback_the_import_runs_is_one_line(tmp_path: Path) -> None:
    """A Ctrl-C that landed in a module lock's weakref callback while the command loaded
    cannot propagate: Python printed 'Exception ignored in ...' with a traceback, and the
    command ran on as if no Ctrl-C had come."""
    (tmp_path / "slow_command.py").write_text(
        "import weakref\n"
        "class Lock: pass\n"
        "def cb(_ref):\n    raise KeyboardInterrupt\n"
        "lock = Lock()\nref = weakref.ref(lock, cb)\ndel lock\n"
        "def main():\n    print('ran')\n",
        encoding="utf-8",
    )
    done = _launch(tmp_path, "slow_command", "rig")
    assert (done.returncode, done.stderr, done.stdout) == (130, "rig: interrupted\n", "")


def test_an_interrupt_while_the_stop_signals_are_routed_is_one_line(tmp_path: Path) -> None:
    """A Ctrl-C that came just as SIGTERM's handler was set, while SIGHUP's was being set (the
    moment a test waiting for SIGTERM to be caught sends it), ended in a traceback from the
    standard library's ``signal.signal``: here that call raises, once, as the interrupt would."""
    (tmp_path / "command.py").write_text("def main():\n    print('ran')\n", encoding="utf-8")
    code = (
        f"import signal, sys; sys.path.insert(0, {str(tmp_path)!r}); set_ = signal.signal\n"
        "came = []\n"
        "def interrupted(s, h):\n"
        "    if s == signal.SIGHUP and not came:\n        came.append(s)\n"
        "        raise KeyboardInterrupt\n"
        "    return set_(s, h)\n"
        "signal.signal = interrupted\n"
        "from stacker.launch import launch; launch('command', 'rig')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (130, "rig: interrupted\n", "")


CUT_SHORT = """
import warnings, weakref
class Lock: pass
def cb(_ref):
    raise KeyboardInterrupt
lock = Lock()
ref = weakref.ref(lock, cb)
del lock
warnings.warn_explicit(
    "Cython module failed to patch module with custom type", RuntimeWarning,
    "<frozen importlib._bootstrap>", 241,
)
def main():
    warnings.warn("said by the command", UserWarning)
"""


@pytest.mark.parametrize("interrupted", [True, False])
def test_warnings_of_an_interrupted_load_are_not_told(tmp_path: Path, interrupted: bool) -> None:
    """A compiled (Cython) module whose set-up a Ctrl-C cut short warns that it failed to patch
    a module, and that went out above the one line; loading that ends is told its warnings."""
    source = CUT_SHORT if interrupted else CUT_SHORT.replace("del lock\n", "")
    (tmp_path / "compiled_command.py").write_text(source, encoding="utf-8")
    done = _launch(tmp_path, "compiled_command", "rig")
    if interrupted:
        assert (done.returncode, done.stderr) == (130, "rig: interrupted\n")
    else:
        assert done.returncode == 0
        assert "RuntimeWarning: Cython module failed to patch" in done.stderr
        assert "UserWarning: said by the command" in done.stderr


def test_warnings_of_a_load_that_failed_are_told(tmp_path: Path) -> None:
    """Warnings are held while the command loads; a load that failed (an install whose compiled
    numpy does not match: "numpy.dtype size changed, may indicate binary incompatibility", then
    the error) lost them, and with them the hint above its traceback."""
    (tmp_path / "broken_command.py").write_text(
        "import warnings\n"
        "warnings.warn('numpy.dtype size changed, may indicate binary incompatibility', "
        "RuntimeWarning)\n"
        "raise ImportError('broken install')\n",
        encoding="utf-8",
    )
    done = _launch(tmp_path, "broken_command", "rig")
    assert done.returncode == 1
    assert "RuntimeWarning: numpy.dtype size changed" in done.stderr
    assert done.stderr.rstrip().endswith("ImportError: broken install")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["term", "hup"])
def test_sigterm_or_a_hangup_during_loading_is_one_line(tmp_path: Path, stop: int) -> None:
    """A service manager's stop or a closed terminal in the second a command takes to load
    killed it without a word (exit -15, -1); it now ends as Ctrl-C does there."""
    name = signal.Signals(stop).name
    (tmp_path / "slow_command.py").write_text(
        f"import os, signal, time\nos.kill(os.getpid(), signal.{name})\ntime.sleep(5)\n",
        encoding="utf-8",
    )
    done = _launch(tmp_path, "slow_command", "stacker")
    assert (done.returncode, done.stderr) == (130, "stacker: interrupted\n")


BUSY_COMMAND = """
import os, signal, time
import typer
from stacker.cliutil import run_app

app = typer.Typer()

@app.command()
def go() -> None:
    print("opening the camera", flush=True)  # set-up, before any routing of its own
    os.kill(os.getpid(), signal.{name})
    time.sleep(5)

def main():
    run_app(app, "rig")
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["term", "hup"])
def test_sigterm_or_a_hangup_before_a_command_routes_them_is_one_line(
    tmp_path: Path, stop: int
) -> None:
    """Once loaded, a command setting up (finding a camera, homing a rail) before it routes
    stop signals itself was killed by SIGTERM or SIGHUP without a word (status 143, 129); they
    now end it as Ctrl-C does there."""
    name = signal.Signals(stop).name
    (tmp_path / "busy_command.py").write_text(BUSY_COMMAND.format(name=name), encoding="utf-8")
    done = _launch(tmp_path, "busy_command", "rig")
    assert (done.returncode, done.stdout, done.stderr) == (
        130,
        "opening the camera\n",
        "rig: interrupted\n",
    )


def _launched(pid: int, timeout: float = 30.0) -> None:
    """Wait until process ``pid`` has reached :func:`stacker.launch.launch`, which catches
    SIGTERM (``SigCgt`` in ``/proc/PID/status``; where there is no ``/proc``, at once). Before
    it, the interpreter and the first few milliseconds of imports run, where no program can
    answer a signal in words: on a loaded machine a fixed delay after the start landed there."""
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + timeout
    while status.exists() and time.monotonic() < deadline:
        caught = next(
            (int(line.split()[1], 16) for line in status.read_text().splitlines()
             if line.startswith("SigCgt:")),
            0,
        )  # fmt: skip
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)


@pytest.mark.parametrize(("module", "prog"), [("rig.launch", "rig"), ("stacker.launch", "stacker")])
def test_ctrl_c_just_after_starting_a_command_prints_no_traceback(module: str, prog: str) -> None:
    """The real commands, interrupted at several moments of their first second: whatever they
    were doing then (loading, parsing, printing), the answer is one line or none."""
    for delay in (0.0, 0.1, 0.25, 0.45, 0.7):
        args = (
            ["plan", "--from", "0mm", "--to", "1mm", "--step", "100um"]
            if prog == "rig"
            else ["--version"]
        )
        started = subprocess.Popen(
            [sys.executable, "-c", LAUNCH.format(module=module, prog=prog), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _launched(started.pid)
        time.sleep(delay)
        started.send_signal(signal.SIGINT)
        _, err = started.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err)
        assert len(err.splitlines()) <= 1, (delay, err)


SLOW_EXIT = """
import atexit, logging, sys, time

def main():
    logging.basicConfig()  # logging's own exit handler flushes it, as the commands' does
    atexit.register(time.sleep, 3)  # a shutdown that takes a while (a thread being joined)
    print("done", flush=True)
    sys.exit(0)
"""


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_while_a_finished_command_shuts_down_prints_no_traceback(
    tmp_path: Path, presses: int
) -> None:
    """The command had ended and said so; a Ctrl-C during the interpreter's shutdown ended in
    "Exception ignored in atexit callback" and a KeyboardInterrupt traceback. One press is let
    pass (the command's own status stands); a second ends the process at once."""
    (tmp_path / "slow_exit.py").write_text(SLOW_EXIT, encoding="utf-8")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
        "from stacker.launch import launch; launch('slow_exit', 'stacker')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "done\n"
    time.sleep(0.3)  # into the exit handlers
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    _, err = proc.communicate(timeout=30)
    assert err == ""
    assert proc.returncode == (0 if presses == 1 else 130)
