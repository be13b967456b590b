"""Shared test setup: the virtual camera's folder, the tiers, and the project's shared data."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tests.paths import ROOT, shared_dir

if TYPE_CHECKING:
    from rig.sim.vcamera import VirtualCameraFolder

# python-gphoto2 chooses between libgphoto2's USB drivers and its virtual camera when it is first
# imported, so the virtual camera must be chosen before any test imports gphoto2. Camera tests
# then point VCAMERADIR at their own folder (rig.sim.vcamera.use_virtual_camera).
if "VCAMERADIR" not in os.environ:
    os.environ["VCAMERADIR"] = tempfile.mkdtemp(prefix="stackrig-vcamera-")
    atexit.register(shutil.rmtree, os.environ["VCAMERADIR"], True)

# libgphoto2 keeps some settings (the capture target among them) in a file of the user's, read
# once by each process and rewritten whole at every change; a process that read it while another
# was rewriting it reads it again at every look, and deletes a half-written one as malformed.
# Test processes side by side (`pytest -n 4`) then saw each other's capture targets, and every
# run rewrote the user's own file. The file is ~/.gphoto/settings up to libgphoto2 2.5.33 (the
# lowest python-gphoto2 bundles 2.5.31); from 2.5.34 $XDG_CONFIG_HOME/gphoto/settings, or
# ~/.gphoto/settings where that exists and the first does not (gphoto2-setting.c,
# gp_settings_path). So each test process gets a home of its own, with its config folder inside;
# not inherited from a parent, as pytest-xdist's workers would share one.


def _own_home(prefix: str, parent: str | None = None) -> tuple[str, str]:
    """A new empty home folder and the config folder in it."""
    home = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.mkdir(config := os.path.join(home, ".config"))
    return home, config


_OWN = _own_home("stackrig-home-")
os.environ["HOME"], os.environ["XDG_CONFIG_HOME"] = _OWN
atexit.register(shutil.rmtree, _OWN[0], True)
# A command an earlier test started, still ending, could otherwise put its capture target into
# this process's: the commands tests start share a home of their own.
_COMMANDS = _own_home("commands-", _OWN[0])
_popen_init = subprocess.Popen.__init__


def _commands_settings(self: subprocess.Popen, args: Any, *rest: Any, **kw: Any) -> None:
    env = os.environ if kw.get("env") is None else kw["env"]
    names = ("HOME", "XDG_CONFIG_HOME")
    ours = {k: c for k, o, c in zip(names, _OWN, _COMMANDS, strict=True) if env.get(k) == o}
    if ours:
        kw["env"] = {**env, **ours}
    _popen_init(self, args, *rest, **kw)


subprocess.Popen.__init__ = _commands_settings  # type: ignore[method-assign]

# Tests interrupt the commands they start with SIGINT, as Ctrl-C does. A test run started in the
# background of a script (`pytest &`, nohup) has SIGINT ignored, and every process it starts
# would inherit that and never stop: take Python's own handler, which children start without.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Likewise SIGHUP, which tests send as a closing terminal does: under nohup every command
# started would ignore it. A handler of our own (which does nothing) keeps this run alive
# through a hangup, as nohup asked, while its children start with the default.
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda *_: None)

# Property tests draw the same examples on every run, so a red run is one anybody can repeat
# and CI does not turn red on a search's luck; `pytest --hypothesis-profile=explore` draws new
# ones (run it after changing a parser).
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("repeatable")

E2E = ROOT / "tests" / "e2e"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.fixture(autouse=True)
def _stop_handlers_restored() -> Iterator[None]:
    """A command run in this process (a CLI runner, a session's ``run_interruptible``) may
    leave it winding down (``stacker.launch.wind_down``): SIGHUP ignored, Ctrl-C ending the
    process. The next test's commands would inherit an ignored SIGHUP, and its own stops
    misbehave: every test starts with the handlers the run began with."""
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is slow: ``pytest -m "not slow"`` is the lane for editing."""
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def card_slot_bytes() -> int:
    """Bytes per image slot of the virtual camera's card (a module may override it)."""
    return 32_000


@pytest.fixture
def card(tmp_path: Path, card_slot_bytes: int) -> VirtualCameraFolder:
    """libgphoto2's virtual camera, active, with its own card folder under ``tmp_path``."""
    from rig.sim.vcamera import VirtualCameraFolder

    folder = VirtualCameraFolder(tmp_path / "card", slot_bytes=card_slot_bytes)
    folder.activate()
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real camera frames. Skipped where absent, but never in CI (``$CI``),
    which has ``../shared`` beside the clone: there its absence is a failure."""
    shared = shared_dir()
    if shared is None or not (shared / "data").is_dir():
        message = "../shared/data is absent (set STACKRIG_SHARED to the shared folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return shared / "data"
