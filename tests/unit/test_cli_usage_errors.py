"""What the ``rig`` and ``stacker`` parsers refuse, and how it is told."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from rig.cli import app as rig_app
from stacker.cli import app as stacker_app


def _command(app: typer.Typer, *path: str) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize(
    ("app", "path", "args", "missing"),
    [
        (rig_app, ("rail", "status"), [], "url"),
        (rig_app, ("rail", "move"), [], "url"),
        (rig_app, ("resume",), [], "session"),
        (stacker_app, ("stack",), ["a.jpg"], "output"),
        (stacker_app, ("stack",), ["-o", "b.tif"], "inputs"),
        (stacker_app, ("watch",), ["-o", "b.tif"], "folder"),
    ],
)
def test_a_required_option_or_argument_left_out_is_refused_by_the_parser(
    app: typer.Typer, path: tuple[str, ...], args: list[str], missing: str
) -> None:
    """Typer 0.16 under Click 8.2 or later (which pip installs beside it) passed ``None`` for
    it: ``rig rail status`` without a URL ended in a ``TypeError`` traceback."""
    with pytest.raises(typer.BadParameter) as refused:
        _command(app, *path).make_context(path[-1], list(args))
    assert type(refused.value).__name__ == "MissingParameter"
    assert refused.value.param is not None and refused.value.param.name == missing
