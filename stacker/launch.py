"""The console scripts' first step: load a command, and end in one line if Ctrl-C comes first.

Loading the ``stacker`` or ``rig`` command (OpenCV, numpy, typer, the preview server) takes a
second or more on a Raspberry Pi; a Ctrl-C in that time, the moment a typo is seen, used to end
in a ``KeyboardInterrupt`` traceback from whichever import it fell in (and a SIGTERM or SIGHUP
without a word). The commands' own
handling (:func:`stacker.cliutil.run_app`) takes over once they are loaded, and SIGTERM and
SIGHUP go on raising as Ctrl-C does where a command does not route them itself. Once the command
has ended, a Ctrl-C while the interpreter shuts down (flushing logs, joining threads) no longer
ends in a traceback from whichever exit handler it fell in.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import sys
import warnings
from types import FrameType
from typing import Any


def launch(module: str, prog: str) -> None:
    """Import ``module`` and run its ``main``; ``prog: interrupted`` and exit status 130 when
    interrupted while it loads (Ctrl-C, SIGTERM, or SIGHUP unless ``nohup`` ignores it). The
    latter two raise :class:`KeyboardInterrupt` as Ctrl-C does from then on, for ``main`` to
    handle (:func:`stacker.cliutil.run_app`), where a command does not route them itself."""
    atexit.register(_ignore_stop_signals)
    # A Ctrl-C that lands in a callback the import machinery runs (a module lock's weakref
    # callback) cannot propagate: Python printed "Exception ignored in ..." with a traceback,
    # and the command ran on. Such an interrupt is noted and acted on once loading ends.
    unraisable_before = sys.unraisablehook
    ignored: list[BaseException | None] = []

    def note_interrupt(info: Any) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            ignored.append(info.exc_value)
        else:
            unraisable_before(info)

    # A compiled module whose import of numpy's C API a Ctrl-C cut short prints the interrupt
    # itself (``PyErr_Print``, through ``sys.excepthook``) and raises an ImportError ("numpy.core.
    # multiarray failed to import", numpy 1.x): two tracebacks where one line was due.
    excepthook_before = sys.excepthook

    def note_printed(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            ignored.append(exc)
        else:
            excepthook_before(kind, exc, tb)

    # The warnings loading gives are told once it has ended, and not after an interrupt, which
    # is their cause: a compiled (Cython) module whose set-up it cut short warned "Cython module
    # failed to patch module with custom type" above the one line. A load that failed otherwise
    # tells them above its traceback: "numpy.dtype size changed" is what explains it.
    said: list[tuple[Any, ...]] = []
    show_before = warnings.showwarning
    try:
        # Inside the ``try``: a Ctrl-C just as SIGTERM's handler was set (while SIGHUP's was)
        # ended in a traceback from the standard library's ``signal.signal``.
        for s in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) is not signal.SIG_IGN:
                signal.signal(s, as_ctrl_c)
        sys.unraisablehook = note_interrupt
        sys.excepthook = note_printed
        warnings.showwarning = lambda *warning, **_: said.append(warning)  # filters stay as set
        try:
            main = importlib.import_module(module).main
        except Exception as failed:
            if not ignored and not caused_by_interrupt(failed):
                missing = _missing_dependency(failed)
                if missing is None:
                    raise
                said.clear()
                print(f"{prog}: {missing}", file=sys.stderr)
                sys.exit(1)
            raise KeyboardInterrupt from None  # the load failed because it was interrupted
        if ignored:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        said.clear()
        wind_down()
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        sys.unraisablehook = unraisable_before
        sys.excepthook = excepthook_before
        warnings.showwarning = show_before
        for warning in said:
            warnings.showwarning(*warning)
    # SIGTERM and SIGHUP go on doing what Ctrl-C does until a command hands them to its own
    # handling: parsing options, finding a camera or homing a rail before that, they ended it
    # by their default action, without a word (status 143, 129).
    try:
        main()
    finally:
        # The command's work and last line are done: a first Ctrl-C or SIGTERM is let pass (the
        # shutdown ends soon, with the command's own status), a second ends it at once (a
        # shutdown stuck joining a thread).
        wind_down(passes=1)


DEPENDENCIES = {
    "cv2": "opencv-python-headless",
    "numpy": "numpy",
    "typer": "typer",
    "rich": "rich",
    "serial": "pyserial",
    "tifffile": "tifffile",
    "imagecodecs": "imagecodecs",
    "watchdog": "watchdog",
    "starlette": "starlette",
    "uvicorn": "uvicorn",
}
"""Modules of the packages the commands need, and the package that holds each."""


def _missing_dependency(error: BaseException) -> str | None:
    """One line for a command that could not load because a package it needs is gone, or
    None. The usual cause is another OpenCV: ``opencv-python`` (the GUI build) installed beside
    or after this one writes the same ``cv2`` folder, and uninstalling either removes it for
    both, while pip says nothing is broken; the command then ended in a traceback."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    package = DEPENDENCIES.get(error.name.split(".")[0])
    if package is None:
        return None
    line = f"{error} (a package it needs is missing): pip install --force-reinstall {package}"
    if package == "opencv-python-headless":
        line += (
            "; another OpenCV in the same environment (opencv-python, opencv-contrib-python) "
            "shares its files: uninstall it first"
        )
    return line


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of ``error``: Python 3.11 wraps what a
    ``__set_name__`` raises in a RuntimeError, and a Ctrl-C landing while a dataclass was defined
    ended in two tracebacks (``Error calling __set_name__ on 'Field' instance``)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def as_ctrl_c(_signum: int, _frame: FrameType | None) -> None:
    """A signal handler that makes SIGTERM (``kill``, a service manager stopping the command)
    and SIGHUP (the terminal closed) do what Ctrl-C does, from the moment a command starts to
    load; the commands route them their own way where they matter
    (:func:`stacker.cliutil.signals_handled`). By default they killed it without a word."""
    raise KeyboardInterrupt


WAKE_S = 0.25
"""Longest a wait on the main thread goes without running Python code. A stop signal (Ctrl-C,
SIGTERM, SIGHUP) is handled on the main thread between two steps of Python code; one that lands
just before the main thread blocks, or that another thread takes, does not wake it. Waits with
no end, or a long one, left commands deaf to it: ``stacker watch`` on a folder where no frame
came, ``rig rail home`` waiting for GRBL's ``ok`` through a homing cycle in which GRBL says
nothing, ``rig rail move`` on Marlin sleeping out the rest of a move."""


def wind_down(passes: int = 0) -> None:
    """Signals for a command on its way out: a stop already came, or its work is done.

    SIGHUP is ignored from now on (one dropped connection may send it twice, and its default
    would end the process in its last lines). After ``passes`` more of them, Ctrl-C or SIGTERM
    ends the process at once with status 130 (``os._exit``): what a stop saves is saved or
    abandoned by then, and a KeyboardInterrupt raised in the middle of the way out ended in a
    traceback or in death by the signal (``benchmarks/stop_signals.py``). The handler takes no
    lock. Only the main thread sets handlers; elsewhere this does nothing.
    """
    seen: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if len(seen) >= passes:
            os._exit(130)
        seen.append(signum)

    with contextlib.suppress(ValueError):
        for s in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(s) != signal.SIG_IGN:  # ignored from the start: stays so
                signal.signal(s, on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _ignore_stop_signals() -> None:
    """The last exit handler (registered first). The interpreter's own last steps, after it
    has joined its threads and run its exit handlers, put back the default action of every
    signal with a handler, and a signal in those milliseconds ended a finished command by that
    action (status 143 after "simulator stopped"); an ignored signal stays ignored."""
    with contextlib.suppress(ValueError):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)


def main() -> None:
    """The ``stacker`` console script."""
    launch("stacker.cli", "stacker")
