"""What the ``stacker`` and ``rig`` command lines share: running a Typer app so that user errors
are one line on stderr, never a traceback, and option groups declared once (:func:`takes`)."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import io
import logging
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from types import FrameType, SimpleNamespace
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, get_type_hints

import typer
from typer.core import TyperCommand, TyperGroup

from stacker.errors import (
    STORAGE_REMEDIES,
    TOO_MANY_FILES,
    Interrupted,
    UserError,
    resource_shortage,
)
from stacker.launch import caused_by_interrupt, wind_down
from stacker.quantities import TIME_UNITS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn


def run_app(app: typer.Typer, prog_name: str, units: Collection[str] = TIME_UNITS) -> None:
    """Run ``app``; a :class:`UserError` prints ``prog: error: message`` and exits non-zero.

    The standard streams are made safe first (:func:`guard_std_streams`): a console that went
    away or filled never ends the command. A number and one of ``units`` typed as two words
    (see :func:`split_unit_hint`), an option left without its value
    (:func:`option_as_value_hint`) and the like are refused with the fix.
    """
    guard_std_streams(prog_name)
    _drop_empty_terminal_size()
    try:
        writable_temporary_folder()
        hint = (
            empty_argument_hint(sys.argv[1:])
            or unexpanded_home_hint(sys.argv[1:])
            or split_unit_hint(sys.argv[1:], units)
            or option_as_value_hint(typer.main.get_command(app), sys.argv[1:])
        )
        if hint:
            print(f"{prog_name}: error: {hint}", file=sys.stderr)
            sys.exit(2)
        _quiet_decoders()  # loads OpenCV: a second on a Raspberry Pi, Ctrl-C may come meanwhile
        try:
            app(prog_name=prog_name, standalone_mode=True)
        except SystemExit as exc:
            if exc.code in (None, 0):
                _refuse_lost_output(prog_name)
            if _typer_interrupted(exc):
                raise KeyboardInterrupt from None
            raise
    except Interrupted as exc:
        wind_down()
        print(f"{prog_name}: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except UserError as exc:
        print(f"{prog_name}: error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno in TOO_MANY_FILES:  # anywhere: a module loaded late, a frame, a socket
            print(f"{prog_name}: error: {exc.strerror}; {TOO_MANY_FILES[exc.errno]}",
                  file=sys.stderr)  # fmt: skip
            sys.exit(1)
        if exc.errno in STORAGE_REMEDIES:  # a disk full where no command expected a write
            where = os.fsdecode(exc.filename) if exc.filename is not None else "a file"
            print(f"{prog_name}: error: {one_line(where)}: {exc.strerror}; "
                  f"{STORAGE_REMEDIES[exc.errno]}", file=sys.stderr)  # fmt: skip
            sys.exit(6)
        if exc.errno not in _PATH_ERRORS:
            raise
        print(f"{prog_name}: error: {_path_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Exception) as exc:
        short = resource_shortage(exc)  # memory or threads ran out where nothing expected it
        if short is not None:
            print(f"{prog_name}: error: {one_line(short)}", file=sys.stderr)
            sys.exit(2)
        # A Ctrl-C, or an error it caused: Python 3.11 wraps one raised while a module that a
        # command loads late defines a dataclass.
        if not caused_by_interrupt(exc):
            raise
        wind_down()
        print(f"{prog_name}: interrupted", file=sys.stderr)
        sys.exit(130)


def writable_temporary_folder() -> str:
    """The folder temporary files go to: Python's choice (``TMPDIR``, ``/tmp``...), or where
    none of those is writable (a read-only root: ``docker --read-only``, systemd's
    ``ProtectSystem=strict`` without ``PrivateTmp``), the user's runtime folder or
    ``/dev/shm``, set as ``TMPDIR`` for the processes started too. Without one, every frame a
    watch pinned was "cannot read", and a batch, a demo or a simulator ended in a traceback."""
    try:
        chosen = tempfile.gettempdir()
    except FileNotFoundError:
        chosen = None
    # Python's last resort is the current folder: temporaries (a watch's folder of links)
    # would land among the user's files, the hot folder itself perhaps.
    if chosen is not None and os.path.realpath(chosen) != os.path.realpath(os.getcwd()):
        return chosen
    for candidate in (os.environ.get("XDG_RUNTIME_DIR", ""), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            tempfile.tempdir = os.environ["TMPDIR"] = candidate
            return candidate
    if chosen is not None:
        return chosen
    raise UserError(
        "no writable folder for temporary files (TMPDIR, /tmp, /var/tmp, /dev/shm); set "
        "TMPDIR to one, e.g. TMPDIR=$XDG_RUNTIME_DIR, or give the service PrivateTmp=yes"
    )


def _drop_empty_terminal_size() -> None:
    """Forget ``COLUMNS=0`` or ``LINES=0`` (some container and CI wrappers export them): rich
    takes them as a console no character fits on, and every table, plan and message printed
    nothing, exit 0. Without them it asks the terminal, or takes 80 columns. Done when this
    module is loaded too: a command module's console, made as it loads, reads them then."""
    for name in ("COLUMNS", "LINES"):
        if os.environ.get(name, "").strip() == "0":
            del os.environ[name]


_drop_empty_terminal_size()


_PATH_ERRORS = {errno.ENAMETOOLONG: "too long a name", errno.ELOOP: "a loop of symbolic links"}
"""What a path typed on the command line can be that any check of it raises (``Path.exists``
and ``is_dir`` of Python 3.10 to 3.12 pass these on), wherever the command looks at it first."""


def _path_error(exc: OSError) -> str:
    """One line for an :data:`_PATH_ERRORS` error, naming the path."""
    what = _PATH_ERRORS.get(exc.errno or 0, "an unusable name")
    name = os.fsdecode(exc.filename) if exc.filename is not None else "a path given"
    if len(name) > 80:
        name = f"{name[:60]}...{name[-16:]}"
    return f"{name}: {what} for the file system; give another path"


def _typer_interrupted(exc: SystemExit) -> bool:
    """True when Typer ended the command with status 130 for a Ctrl-C (or SIGTERM) that came
    before the command's own handling (parsing, opening a device): it says nothing, and the
    command looked as if it had ended by itself."""
    ended_by = exc.__context__
    return exc.code == 130 and isinstance(getattr(ended_by, "__cause__", None), KeyboardInterrupt)


_PRINTS_ITS_RESULT: list[bool] = []


def prints_its_result() -> None:
    """Say that the running command's job is what it prints (a plan, a list, a status), not
    files it writes or devices it moves: output it could not write then fails it, see
    :func:`_refuse_lost_output`."""
    _PRINTS_ITS_RESULT.append(True)


def _refuse_lost_output(prog_name: str) -> None:
    """Exit 1 when a command whose job is its printout could not write it: ``rig plan >
    plan.txt`` on a full disk left an empty file and exit status 0. A reader that stopped
    reading (``| head``) is no failure: what it read went where it was asked to. A command
    whose job is its files (a stack, a session) keeps its status; its console is a report."""
    if not _PRINTS_ITS_RESULT:
        return
    sys.stdout.flush()  # a redirected stdout is block-buffered: its last write happens here
    lost = getattr(sys.stdout, "failed", None)
    if lost is not None:
        print(
            f"{prog_name}: error: {lost}; the output is incomplete (a full disk?)",
            file=sys.stderr,
        )
        sys.exit(1)


def guard_std_streams(prog_name: str) -> None:
    """Make the standard streams safe for a command whose console may go away or fill.

    A session started from an ssh login outlives it (the terminal hangs up: every write fails
    with EIO), runs under ``nohup`` with its output on an SD card that fills (ENOSPC), or has
    its output piped into ``head`` (EPIPE). Its frames, journal and ``session.log`` are the
    record, so a write to stdout or stderr that fails must not end it: the stream goes quiet
    for the rest of the run (see :class:`ConsoleStream`). A standard descriptor closed at start
    (``>&-``) is opened on ``/dev/null`` first, or the session's first file would take its
    number and receive whatever is printed. A character the stream's encoding cannot write
    (``PYTHONIOENCODING=ascii``, a folder named ``séance``) prints backslash-escaped, as a file
    name that is not UTF-8 (its bytes kept as surrogates) does.
    """
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd (those below are open)
        if getattr(sys, name) is None:  # Python gives None for a descriptor closed at start
            mode = "r" if fd == 0 else "w"
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
        if not isinstance(stream, ConsoleStream):
            log = logging.getLogger(f"{prog_name}.console")
            setattr(sys, name, ConsoleStream(stream, name, log))


class ConsoleStream:
    """``sys.stdout`` or ``sys.stderr`` of a command: the first write or flush that fails
    (EPIPE, ENOSPC, EIO, a closed file) makes it quiet for the rest of the run instead of
    raising, since rich, ``print`` and logging would otherwise end the command in a traceback
    (rich even exits 1 on a broken pipe) in the middle of a session.

    Its descriptor is then pointed at ``/dev/null``, so what the stream still holds, what C
    libraries and child processes write there and the interpreter's last flush go nowhere
    rather than failing again. The loss is logged once, as a warning on ``logger``
    (``rig.console``), as soon as that logger has somewhere to write: a session's
    ``session.log``; a loss before the session started is told at the first write after it
    did. Everything else is the wrapped stream's own.
    """

    def __init__(self, stream: TextIO, name: str, logger: logging.Logger) -> None:
        self._stream = stream
        self._name = name
        self._log = logger
        self._lost: str | None = None
        self._errno: int | None = None
        self._told = False
        self._lock = threading.RLock()  # a log handler may write here while the loss is told

    def write(self, text: str) -> int:
        """Write ``text``, or drop it once the stream is lost; its length either way."""
        if self._lost is None:
            try:
                return self._stream.write(text)
            except (OSError, ValueError) as exc:  # ValueError: the file was closed
                self._lose(exc)
        self._tell()
        return len(text)

    def flush(self) -> None:
        """Flush, unless the stream is lost (a failing flush loses it)."""
        if self._lost is None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)
                self._tell()

    @property
    def lost(self) -> str | None:
        """Why the stream is lost (``stdout: No space left on device``), or ``None``."""
        return self._lost

    @property
    def failed(self) -> str | None:
        """Why the stream is lost, unless its reader closed it (EPIPE: ``| head`` read what
        it wanted): output that never reached its file or terminal."""
        return None if self._errno == errno.EPIPE else self._lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _lose(self, exc: Exception) -> None:
        with self._lock:
            if self._lost is not None:
                return
            self._lost = f"{self._name}: {getattr(exc, 'strerror', None) or exc}"
            self._errno = getattr(exc, "errno", None)
            with contextlib.suppress(OSError, ValueError):
                fd = self._stream.fileno()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
                self._stream.flush()  # what it still held: to /dev/null now

    def _tell(self) -> None:
        with self._lock:
            if self._told or self._lost is None or not self._log.hasHandlers():
                return
            self._told = True
            self._log.warning(
                "console output lost (%s); the session goes on, recorded here and in its folder",
                self._lost,
            )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(message: str) -> str:
    """``message`` with its control characters escaped as Python writes them (``\\n``): a file
    name holding a newline or a carriage return keeps a warning or an error on one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def empty_argument_hint(args: Sequence[str]) -> str | None:
    """What is wrong when one of ``args`` is empty: most often a shell variable that was never
    set (``stacker stack "$FRAMES" -o out.tif``). The parser takes an empty path for the
    current folder, so the command ran on whatever folder the shell stood in."""
    for i, arg in enumerate(args):
        if arg == "":
            after = f"after {args[i - 1]} " if i and args[i - 1].startswith("-") else ""
            return f"an empty argument {after}(a shell variable that is not set?); give a value"
    return None


def unexpanded_home_hint(args: Sequence[str]) -> str | None:
    """What to type instead when an option's value after ``=`` starts with ``~``: the shell
    expands ``~`` only at the start of a word, so ``--out=~/stacks`` made a folder named ``~``
    in the current one (and ``rm -rf ~``, tidying it up, would delete the home folder)."""
    for arg in args:
        option, equals, value = arg.partition("=")
        if option.startswith("--") and equals and (value == "~" or value.startswith("~/")):
            return (
                f"'{arg}': the shell does not expand ~ after '='; write {option} {value} "
                f"(with a space) or {option}=$HOME{value[1:]}"
            )
    return None


def option_as_value_hint(command: Any, args: Sequence[str]) -> str | None:
    """What is wrong when an option that takes a value is followed by another of the command's
    options: the parser takes the second for the first's value, so ``rig shoot --out --dry-run``
    shot for real into a folder named ``--dry-run``, and ``-o --preview`` wrote there.

    ``command`` is the app's Click command (Typer's own copy of Click from 0.22 on, so looked
    at by its attributes)."""
    names = {"--help"}
    valued: set[str] = set()

    def learn(command: Any) -> None:
        for param in command.params:
            if param.param_type_name == "option":
                names.update(param.opts, param.secondary_opts)
                if not (param.is_flag or param.count):
                    valued.update(param.opts)

    learn(command)
    taking: str | None = None  # the option whose value ``arg`` is
    for arg in args:
        if arg == "--":
            break
        if taking is not None and arg.partition("=")[0] in names:
            return (
                f"'{taking} {arg}': {taking} takes a value and {arg} is an option; "
                f"give {taking} its value"
            )
        if taking is None and arg in getattr(command, "commands", {}):
            command = command.commands[arg]
            learn(command)
            continue
        taking = arg if taking is None and arg in valued else None
    return None


def split_unit_hint(args: Sequence[str], units: Collection[str]) -> str | None:
    """What to type instead, when ``args`` hold a number followed by a unit as its own word.

    The shell splits ``--step 384 um`` into ``384`` and ``um``; the option reads a bare 384
    and the parser then meets ``um`` as an unexpected extra argument, a message that names
    neither the option nor the fix. No command takes a word such as ``um`` or ``s`` as an
    argument of its own, so the pair can only be one quantity.
    """
    names = {unit.lower() for unit in units}
    for i in range(1, len(args)):
        number, unit = args[i - 1], args[i]
        if unit.lower() in names and _NUMBER.fullmatch(number):
            option = f"{args[i - 2]} " if i >= 2 and args[i - 2].startswith("-") else ""
            return (
                f"'{option}{number} {unit}': write the number and its unit as one word, "
                f"{option}{number}{unit}"
            )
    return None


@contextlib.contextmanager
def terminal_progress(console: Console, *columns: ProgressColumn) -> Iterator[Progress]:
    """A transient progress bar where ``console`` is a terminal that draws one (not
    ``TERM=dumb``); elsewhere one that is never started, so never drawn: rich before 14.3
    ended even a disabled bar with an empty line, which then opened the output or came before
    a one-line error."""
    from rich.progress import Progress

    progress = Progress(
        *columns, console=console, transient=True, disable=not console.is_interactive
    )
    if progress.disable:
        yield progress
    else:
        with progress:
            yield progress


def _quiet_decoders() -> None:
    """Keep the decoders' own log lines off the terminal: a damaged frame is reported once, in
    one line naming the file, and libtiff's ``[ERROR:0@0.3] ... TIFF_Error MissingRequired`` or
    tifffile's ``<TiffTag.fromfile> raised TiffFileError`` around it only confuse."""
    import cv2

    log_api = getattr(cv2.utils, "logging", None)  # OpenCV 4.13 on; before it, cv2.setLogLevel
    if log_api is not None:
        log_api.setLogLevel(log_api.LOG_LEVEL_SILENT)
    else:
        cv2.setLogLevel(0)  # type: ignore[attr-defined]  # LOG_LEVEL_SILENT
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C; SIGTERM (``kill``, systemd stopping the command); SIGHUP, the terminal closed: the
ssh connection to a headless Pi dropped, or its window was closed. A hangup's default is to end
the process where it stands, a capture session without its composite."""


DOUBLE_TAP_S = 0.25
"""A Ctrl-C this soon after another is the same press (see :func:`signals_handled`)."""


@contextlib.contextmanager
def signals_handled(
    handler: Callable[[int], object],
    signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    *,
    ctrl_c_again_interrupts: bool = False,
) -> Iterator[None]:
    """Hand ``signals`` (:data:`STOP_SIGNALS`) to ``handler`` while in the block, one after
    another on a thread of its own; afterwards, as :func:`_routed` says.

    Never in the signal's own context: a signal lands between any two steps of the main thread,
    which may be holding the very lock the handler needs. ``rig station`` hung past systemd's
    stop timeout that way, its handler setting the event its main loop was entering
    ``Event.wait`` on. What runs in the signal's context is a put on a
    :class:`queue.SimpleQueue`, which is reentrant. The block's end lets the handler finish
    the signals already received.

    With ``ctrl_c_again_interrupts``, a Ctrl-C after the first signal raises
    :class:`KeyboardInterrupt` in the main thread at once, for a stop that may take a while;
    not one within :data:`DOUBLE_TAP_S` of a Ctrl-C before it, which is the same press of a
    hand that taps twice (``stacker watch`` stopped so while writing its composite, and left
    none). For SIGHUP, see :func:`_routed`.
    """
    pending: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    received: list[int] = []
    pressed: list[float] = []  # when Ctrl-C came

    def route(signum: int) -> None:
        if ctrl_c_again_interrupts and signum == signal.SIGINT:
            now = time.monotonic()
            if pressed and now - pressed[-1] < DOUBLE_TAP_S:
                return
            pressed.append(now)
            if received:
                raise KeyboardInterrupt
        received.append(signum)
        pending.put(signum)

    def dispatch() -> None:
        while (signum := pending.get()) is not None:
            try:
                handler(signum)
            except Exception:  # the next signal must still be handled
                logging.getLogger(__name__).exception("handling %s failed", signum)

    thread = threading.Thread(target=dispatch, name="signal handler", daemon=True)
    thread.start()
    try:
        with _routed(route, signals):
            yield
    finally:
        pending.put(None)
        thread.join(SIGNAL_HANDLER_GRACE_S)


SIGNAL_HANDLER_GRACE_S = 10.0
"""How long the end of a :func:`signals_handled` block waits for its handler to finish."""


@contextlib.contextmanager
def signals_as_ctrl_c(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Make SIGTERM (``kill``, a service manager stopping the command) and SIGHUP (the terminal
    closed) do in the block what Ctrl-C does: raise :class:`KeyboardInterrupt` in the main
    thread, which takes no lock. By default they end the process without a word.

    The first does; the process then winds down (:func:`~stacker.launch.wind_down`): a hang-up
    is ignored, and a second Ctrl-C or SIGTERM ends it at once with status 130. Raised again,
    the second fell in the middle of the stop the first began (the rail's stop, the cluster's
    close): Ctrl-C then SIGTERM during a Marlin move ended in a traceback from ``threading``.
    """

    def route(_signum: int) -> None:
        wind_down()
        raise KeyboardInterrupt

    with _routed(route, signals):
        yield


@contextlib.contextmanager
def _routed(route: Callable[[int], None], signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """Route ``signals`` to ``route``, which runs in the signal's context, while in the block.

    A signal that is ignored on entry stays ignored: ``nohup`` asks for exactly that of SIGHUP
    (a command that runs on after its terminal is gone), and a shell without job control of
    SIGINT for every command a script starts with ``&`` (a Ctrl-C meant for the script's
    foreground job is not the background one's; Python itself leaves it ignored). Taken once
    the command routed it, a ``kill -INT`` stopped such a command a second after it started,
    and one sent while it loaded was lost. Once any of ``signals`` came, the block
    leaves the process in :func:`~stacker.launch.wind_down` rather than restoring the handlers
    before it: a second signal landing after the block, while the stop the first began winds
    up, ended the process with the default action (SIGTERM, SIGHUP) or in a traceback
    (Ctrl-C). So does a :class:`KeyboardInterrupt` leaving the block: a stop that code in it
    heard in its own way (``stacker batch`` notes those that come while its cluster starts).
    """
    routed = [s for s in signals if signal.getsignal(s) != signal.SIG_IGN]
    came: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        came.append(signum)
        route(signum)

    previous = {s: signal.signal(s, on_signal) for s in routed}
    try:
        yield
    except KeyboardInterrupt:
        came.append(signal.SIGINT)
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if came:
            wind_down()


class _HelpIsAPrintout:
    """Help text is what ``--help`` is run for: written to a full disk it fails the command
    (see :func:`prints_its_result`), as ``rig plan`` does; ``stacker stack --help >
    options.txt`` left an empty file and exit status 0."""

    def get_help(self, ctx: Any) -> str:
        prints_its_result()
        return super().get_help(ctx)  # type: ignore[misc]


class _Command(_HelpIsAPrintout, TyperCommand):
    """A command as every stackrig command has it (see :class:`_App`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse ``args``; a required option or argument left out is refused.

        Typer 0.16 under Click 8.2 or later, which pip installs beside it, passed ``None``
        for it instead: ``rig rail status`` with no URL, or ``stacker stack a.jpg`` with no
        ``-o``, ended in a ``TypeError`` traceback from deep inside the command.
        """
        rest: list[str] = super().parse_args(ctx, args)
        if not ctx.resilient_parsing:
            for param in self.get_params(ctx):
                if param.required and param.name and ctx.params.get(param.name, "") is None:
                    raise _click_errors().MissingParameter(ctx=ctx, param=param)
        return rest

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line's pieces, its arguments as Click writes them (``INPUTS...``,
        ``FOLDER``) where Typer 0.2x writes ``{inputs}...``, which the help's sentences do
        not name."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if _is_argument(param):
                pieces.append(argument_metavar(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """The help's Arguments and Options, an argument named as in the usage line (Typer 0.2x
        lists ``inputs... <list[Path]>``)."""
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if _is_argument(param):
                arguments.append((argument_metavar(param), record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


class CommandLineError(UserError):
    """A command line the parser refused (an unknown option, a value of the wrong kind, a
    missing argument), told in one line with where to look: ``--frames 'abc' is not a whole
    number (see rig plan --help)``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _click_errors() -> Any:
    """The module of the exceptions Typer's parser raises: Click's own before Typer 0.2x,
    Typer's copy of Click (``typer._click``) since."""
    return sys.modules[typer.BadParameter.__module__]


class _App(typer.Typer):
    """A Typer app whose commands are :class:`_Command` unless one says otherwise."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["cls"] = kwargs.get("cls") or _Command
        return super().command(*args, **kwargs)


@contextlib.contextmanager
def _parser_errors_told_in_one_line() -> Iterator[None]:
    """Raise what the parser refused as a :class:`CommandLineError`: Typer prints it as
    Click's block of usage, hint and boxed or ``Error:`` line, whatever the Typer version.
    The help of a group called bare is left to Click, which prints it (Click 8.2 and later
    raise it as an error; Click 8.1, which Typer 0.16 runs on too, has no such error, and
    naming it there ended every command line but a correct one, ``--help`` included, in an
    ``AttributeError`` traceback)."""
    errors = _click_errors()
    try:
        yield
    except getattr(errors, "NoArgsIsHelpError", ()):
        raise
    except errors.ClickException as exc:
        raise CommandLineError(parser_error_line(exc), exc.exit_code) from exc


def parser_error_line(exc: Any) -> str:
    """What the parser's ``exc`` (a Click exception) says, in one line: Click's message where
    it names the option and the value, the value and what it should be where Typer's words do
    not (``Input should be a valid integer``), then the command's help to see."""
    errors = _click_errors()
    message = exc.format_message()
    param = getattr(exc, "param", None)
    if isinstance(exc, errors.MissingParameter) and param is not None and _is_argument(param):
        message = f"Missing argument '{argument_metavar(param)}'."
    elif isinstance(exc, errors.BadParameter) and param is not None:
        message = _bad_value(exc, param) or message
    elif isinstance(exc, errors.NoSuchOption) and exc.possibilities:
        *others, last = sorted(exc.possibilities)
        options = f"{', '.join(others)} or {last}" if others else last
        message = f"{exc.message.removesuffix('.')}; did you mean {options}?"
    message = message.strip().removesuffix(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, errors.UsageError) and ctx is not None:
        names = ctx.help_option_names or ["--help"]
        message = f"{message} (see {ctx.command_path} {names[0]})"
    return one_line(message)


_NOT_A_NUMBER = {"integer": "a whole number", "float": "a number"}
_PYDANTIC_NOT_A_NUMBER = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_type": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
}


def _bad_value(exc: Any, param: Any) -> str | None:
    """``--frames 'abc' is not a whole number``, or ``Invalid value for '--port': 99999
    should be less than or equal to 65535``: the option, the value and what it should be;
    ``None`` where Click's message says so already."""
    name = _param_name(param)
    said = re.fullmatch(r"(.+) is not a valid (integer|float)(?: range)?\.", exc.message)
    if said:  # Click's own parser: "'abc' is not a valid integer." ("integer range" with min=)
        return f"{name} {said[1]} is not {_NOT_A_NUMBER[said[2]]}"
    # Typer 0.2x checks values with pydantic, whose messages omit the value
    cause = exc.__cause__
    problems = cause.errors() if hasattr(cause, "errors") else None
    if not problems:
        return None
    problem, value = problems[0], problems[0].get("input")
    shown = value if isinstance(value, str) and _NUMBER.fullmatch(value) else repr(value)
    if problem.get("type") in _PYDANTIC_NOT_A_NUMBER:
        return f"{name} {value!r} is not {_PYDANTIC_NOT_A_NUMBER[problem['type']]}"
    text = str(problem.get("msg", ""))
    if text.startswith("Input should ") and value is not None:
        return f"Invalid value for '{name}': {shown} {text.removeprefix('Input ')}"
    return None


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", None) == "argument"


def _param_name(param: Any) -> str:
    """An option by its long name (``--frames``), an argument by its metavar (``FOLDER``)."""
    if _is_argument(param):
        return argument_metavar(param)
    opts = list(getattr(param, "opts", None) or [param.name])
    return next((opt for opt in opts if opt.startswith("--")), opts[0])


def argument_metavar(param: Any) -> str:
    """An argument as Click writes it in usage and help: ``INPUTS...``, ``FOLDER``,
    ``[KEY]``."""
    if param.metavar:
        return str(param.metavar)
    name = str(param.name).upper()
    if not param.required:
        name = f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


class _Group(_HelpIsAPrintout, TyperGroup):
    """A command group whose command lines the parser refuses end in one line
    (:func:`_parser_errors_told_in_one_line`): its own options, and through :meth:`invoke`
    those of its commands."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        with _parser_errors_told_in_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _parser_errors_told_in_one_line():
            return super().invoke(ctx)


def make_app(
    name: str, help: str, *, versions: Callable[[], list[str]] | None = None
) -> typer.Typer:
    """A Typer app (or sub-app) as every stackrig command has it: help when called bare, no
    shell-completion commands, no rich tracebacks (a user error is one line, see
    :func:`run_app`), a command line the parser refuses told in one line as well (see
    :func:`parser_error_line`), and plain help text.

    A top-level command passes ``versions``: it then takes ``--version``, which prints
    stackrig's version and the libraries' that ``versions`` lists, the first lines of a bug
    report.
    """
    app = _App(
        name=name,
        help=help,
        cls=_Group,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help: flags without a <bool> placeholder, choices listed
    )
    if versions is not None:
        app.callback()(_version_option(name, versions))
    return app


def library_versions() -> list[str]:
    """Python's, OpenCV's and numpy's versions, as ``name version``."""
    import platform

    import cv2
    import numpy

    return [
        f"Python {platform.python_version()} ({platform.system()} {platform.machine()})",
        f"OpenCV {cv2.__version__}",
        f"numpy {numpy.__version__}",
    ]


def _version_option(name: str, versions: Callable[[], list[str]]) -> Callable[..., None]:
    """The callback of a top-level app: its ``--version`` option, eager, printing and exiting."""

    def show(value: bool) -> None:
        if not value:
            return
        from stacker import __version__

        prints_its_result()
        print(f"{name} (stackrig) {__version__}")
        for line in versions():
            print(f"  {line}")
        raise typer.Exit()

    def callback(
        version: bool = typer.Option(
            False, "--version", is_eager=True, callback=show,
            help="Print the version of stackrig and of the libraries it uses, then exit.",
        ),
    ) -> None:  # fmt: skip
        return  # --version acts in its own eager callback (show); the commands run as before

    return callback


Command = TypeVar("Command", bound=Callable[..., Any])


def takes(group: Callable[..., Any], name: str) -> Callable[[Command], Command]:
    """Give a command the options of ``group`` in place of its parameter ``name``.

    ``group`` is a function whose parameters are the options (as typer reads them) and whose
    result is what they specify; the command's parameter ``name`` receives that result. So an
    option group is declared once, with its defaults, and parsed by one call.
    """
    fields = _parameters(group)

    def decorate(command: Command) -> Command:
        params: list[inspect.Parameter] = []
        for param in _parameters(command, but=name):
            params.extend(fields if param.name == name else [param])
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            given = {field.name: values.pop(field.name) for field in fields}
            return command(**values, **{name: group(**given)})

        signature = inspect.signature(command).replace(parameters=params)
        run.__signature__ = signature  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run  # type: ignore[return-value]

    return decorate


def _parameters(function: Callable[..., Any], but: str = "") -> list[inspect.Parameter]:
    """The parameters of ``function``, their annotations evaluated as typer reads them.

    The result type and the parameter ``but`` (the one an option group fills) stay as written:
    they may name a type imported for type checking alone, so that a command line builds its
    help without importing the engine behind it.
    """
    options = {
        key: annotation
        for key, annotation in inspect.get_annotations(function).items()
        if key not in ("return", but)
    }
    hints = get_type_hints(
        SimpleNamespace(__annotations__=options),
        globalns=getattr(inspect.unwrap(function), "__globals__", None),
        include_extras=True,
    )
    return [
        param.replace(annotation=hints.get(param.name, param.annotation))
        for param in inspect.signature(function).parameters.values()
    ]
