"""Every ``rig`` and ``stacker`` command line the README shows is one the commands accept.

Most of them need a camera, a rail or a folder of frames, so they are not run: each is parsed
by the real command tree (Click, as Typer builds it), options, arguments and values converted
as on the command line, and only the command's own work is left out. A renamed option or
command, a value its type refuses, or a missing argument then fails here rather than in a
reader's terminal.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.paths import ROOT

README = (ROOT / "README.md").read_text()
COMMAND = re.compile(r"(?:\.venv/bin/)?(rig|stacker) ")


def _command_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if COMMAND.match(line.strip()):
                lines.append(line.strip())
    return lines


def _app(prog: str) -> typer.Typer:
    if prog == "rig":
        from rig.cli import app
    else:
        from stacker.cli import app
    return app


def _without_work(command: Any, ran: list[str]) -> None:
    """Replace the callback of every leaf command below ``command`` with one that records its
    name: groups keep theirs (``--version``), leaves do nothing. (Newer Typer releases carry
    a Click of their own, so its classes are not ``click``'s: a group is what has commands.)"""
    if getattr(command, "commands", None):
        for sub in command.commands.values():
            _without_work(sub, ran)
    else:
        name = command.name or ""

        def record(*_args: Any, **_kwargs: Any) -> None:
            ran.append(name)

        command.callback = record


def test_the_readme_shows_commands_of_both_programs() -> None:
    progs = {COMMAND.match(line)[1] for line in _command_lines()}  # type: ignore[index]
    assert progs == {"rig", "stacker"} and len(_command_lines()) >= 30


@pytest.mark.parametrize("line", _command_lines())
def test_a_readme_command_line_is_accepted(
    line: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # were a command to run after all, its files go here
    words = shlex.split(line, comments=True)
    prog = COMMAND.match(line)[1]  # type: ignore[index]
    command = typer.main.get_command(_app(prog))  # a tree of its own, built for this test
    ran: list[str] = []
    _without_work(command, ran)
    with pytest.raises(SystemExit) as done:  # as on the command line: usage errors exit 2
        command.main(words[1:], prog_name=prog)
    error = capsys.readouterr().err
    assert done.value.code in (0, None) and len(ran) == 1, f"{line}\n{error}"
