"""What ``rig shoot/resume/demo`` print: folder names and device messages as they are.

Square brackets are common in both (``ant [macro]``, GRBL's ``[MSG:Reset to continue]``); the
console took them for rich markup, dropping them from the paths it printed or failing with a
traceback after the session (``x[/b]``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from rig.cli.session import _console, report, resume_hint
from rig.errors import RigError
from rig.plan import ShotPlan
from rig.session.display import SessionDisplay
from rig.session.folder import SessionConfig, SessionFolder, SessionFolderError, check_new
from rig.session.runner import RunnerOptions, SessionRunner
from rig.session.state import FinishReason
from tests.fakes import FakeCamera, FakeFocuser, FakeStacker

ALARM = "ALARM:1 [MSG:Reset to continue] [/b]"


def test_folder_names_and_device_messages_with_brackets_are_printed_as_they_are(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ant [macro]"
    plan = ShotPlan.from_frames(0.0, 200.0, 3, settle_s=0.0)
    folder = SessionFolder.create(root, plan, SessionConfig(rig={"kind": "hardware"}))
    camera = FakeCamera(fail=lambda stem, _: RigError(ALARM) if stem == "frame_0002" else None)
    runner = SessionRunner(
        folder,
        focuser=FakeFocuser(),
        camera=camera,
        stacker_factory=lambda config, frames: FakeStacker(),
        options=RunnerOptions(retry_delay_s=0.0, write_outputs=False, previews=False),
    )
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=200)
    with SessionDisplay(terminal, title=root.name) as display:
        display.attach(runner)
        result = runner.run()
    assert result.reason is FinishReason.FAULT
    assert root.name in out.getvalue()

    console = _console()
    with console.capture() as printed:
        report(result, folder, console)
    lines = printed.get().splitlines()
    assert f"fault: {ALARM}" in lines
    assert f"session folder: {root}" in lines
    assert f"continue with: rig resume '{root}'" in lines  # pasted into a shell as one word


def test_the_resume_hint_asks_again_for_the_reference_this_run_needed(tmp_path: Path) -> None:
    """A StackShot session (no position of its own) was told to continue with a plain
    ``rig resume``, which was then refused for want of --accept-position. Homing is safe to
    repeat; accepting the rail's place is the photographer's call, so it is named, not given."""
    root = tmp_path / "ss"
    assert resume_hint(root, None) == f"rig resume {root}"
    assert resume_hint(root, "--home") == f"rig resume {root} --home"
    accepted = resume_hint(root, "--accept-position")
    assert accepted.startswith(f"rig resume {root} (") and "if nothing has moved" in accepted


def test_every_resume_command_shown_can_be_pasted_into_a_shell(tmp_path: Path) -> None:
    """A session folder named with a leading dash was shown as ``rig resume -x``, which the
    command takes for an option; a folder name with a space was shown unquoted where a
    session's folder is refused as taken (``rig resume my beetle``)."""
    assert resume_hint(Path("-x"), None) == "rig resume ./-x"
    assert resume_hint(Path("-x y"), "--home") == "rig resume './-x y' --home"
    root = tmp_path / "my beetle"
    config = SessionConfig(rig={"kind": "hardware"})
    SessionFolder.create(root, ShotPlan.from_frames(0.0, 200.0, 3), config).unlock()
    with pytest.raises(
        SessionFolderError, match=re.escape(f"continue it with `rig resume '{root}'`")
    ):
        check_new(root)
