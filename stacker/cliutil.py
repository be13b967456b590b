"""Running a Typer app so that user errors are one line on stderr, never a traceback."""

from __future__ import annotations

import sys

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
