"""Running a Typer app so that user errors are one line on stderr, never a traceback."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import typer

from stacker.errors import Interrupted, UserError


def run_app(app: typer.Typer, prog_name: str) -> None:
    """Run ``app``; a :class:`UserError` prints ``prog: error: message`` and exits non-zero."""
    try:
        app(prog_name=prog_name, standalone_mode=True)
    except Interrupted as exc:
        print(f"{prog_name}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except UserError as exc:
        print(f"{prog_name}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def signals_handled(
    handler: Callable[[int, FrameType | None], Any],
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Route ``signals`` (Ctrl-C and SIGTERM) to ``handler`` while in the block, then restore
    the handlers that were there before."""
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def make_app(name: str, help: str) -> typer.Typer:
    """A Typer app (or sub-app) as every stackrig command has it: help when called bare, no
    shell-completion commands, no rich tracebacks (a user error is one line, see
    :func:`run_app`), and plain help text."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help: flags without a <bool> placeholder, choices listed
    )
