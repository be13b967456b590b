"""Numbers the ``rig`` commands take are checked where they are read, before any device opens.

``--port 70000`` served the preview on port 4464 (70000 modulo 65536), and ``rig shoot
--checkpoint-every -3`` wrote a session that ``rig resume`` then refused to read.
"""

from __future__ import annotations

import pytest
import typer

from rig.cli import app

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "args", "option"),
    [
        ("demo", ["--preview", "--port", "70000"], "--port"),
        ("station", ["--sim", "--port", "-1"], "--port"),
        ("shoot", ["--checkpoint-every", "-3"], "--checkpoint-every"),
        ("tether", ["--checkpoint-every", "-1"], "--checkpoint-every"),
    ],
)
def test_an_impossible_number_is_a_usage_error_naming_its_option(
    command: str, args: list[str], option: str
) -> None:
    """Only the command line is parsed (``make_context``): nothing runs, pass or fail."""
    with pytest.raises(typer.BadParameter) as refused:
        COMMANDS[command].make_context(command, list(args))
    assert refused.value.param is not None and option in refused.value.param.opts
    COMMANDS[command].make_context(command, [*args[:-1], "0"])  # the edge itself is taken
