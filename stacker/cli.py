"""The ``stacker`` command: stack a folder of frames, or watch a hot folder."""

from __future__ import annotations

import typer

from stacker.cliutil import run_app

app = typer.Typer(
    name="stacker",
    help="Align and merge focus stacks into one all-in-focus image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point."""
    run_app(app, "stacker")


if __name__ == "__main__":
    main()
