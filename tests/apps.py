"""A one-command Typer app, for the tests of what :func:`stacker.cliutil.run_app` makes of an
error that leaves a command."""

from __future__ import annotations

from collections.abc import Callable

import typer


def app_raising(raise_it: Callable[[], None]) -> typer.Typer:
    """An app whose one command calls ``raise_it`` (which raises what the test is about)."""
    app = typer.Typer()

    @app.command()
    def go() -> None:
        raise_it()

    return app


def raising(error: BaseException) -> Callable[[], None]:
    """A ``raise_it`` for :func:`app_raising` that raises ``error``."""

    def raise_it() -> None:
        raise error

    return raise_it
