"""Sessions on a FAT32 USB stick (see :mod:`tests.removable`), and the stick pulled mid-session:
a one-line fault naming the folder, nothing written anywhere else, resumable once it is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.plan import ShotPlan
from rig.session.events import FrameCaptured, SessionEvent
from rig.session.folder import SessionConfig, SessionFolder
from rig.session.runner import SessionRunner
from rig.session.state import FinishReason
from rig.sim.rig import SimRigSpec, SimulatedRig
from rig.sim.scene import SceneSpec, write_stack
from rig.sim.vcamera import use_virtual_camera
from rig.station.auth import load_token
from rig.station.errors import StationError
from tests.commands import one_line_error, stacker
from tests.removable import Stick
from tests.stations import station_of

SPEC = SimRigSpec(width=320, height=240, time_scale=50.0)
FRAMES = 5


@pytest.fixture
def stick(tmp_path: Path) -> Iterator[Stick]:
    made = Stick.made(tmp_path)
    try:
        yield made
    finally:
        made.unplug()


@pytest.mark.parametrize("how", ["unmounted", "killed"])
def test_a_stick_pulled_mid_session_stops_it_and_nothing_is_shot_elsewhere(
    stick: Stick, tmp_path: Path, how: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Unmounted (as a desktop does when a USB disk goes), the camera made the session's
    folder again below the mount point and the session shot on onto the disk beneath,
    "completed" with its frames split between two disks. Killed, closing the journal raised
    ENOTCONN out of the run, a traceback instead of a fault."""
    use_virtual_camera(tmp_path / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, FRAMES, settle_s=0.0)
    root = stick.mount / "beetle"
    folder = SessionFolder.create(root, plan, SessionConfig(rig=SPEC.to_dict()))

    def pull_after_two(event: SessionEvent) -> None:
        if isinstance(event, FrameCaptured) and event.entry.index == 2:
            stick.pull(how)

    with SimulatedRig(SPEC) as sim:
        runner = SessionRunner(folder, focuser=sim.focuser, camera=sim.camera)
        runner.subscribe(pull_after_two)
        result = runner.run()
    assert result.reason is FinishReason.FAULT, result.error
    message = str(result.error)
    assert "\n" not in message and str(root) in message, message
    if how == "killed":  # ENOTCONN, "Transport endpoint is not connected", said in words
        assert "its disk or share is gone" in message and "mount it again" in message, message
    assert "Traceback" not in capfd.readouterr().err

    stick.unplug()
    assert list(stick.mount.iterdir()) == []  # nothing landed on the disk beneath
    stick.plug()
    assert sorted(folder.frames_on_disk()) == [1, 2]
    with SimulatedRig(SPEC) as sim:
        again = SessionRunner(SessionFolder(root), focuser=sim.focuser, camera=sim.camera).run()
    assert again.reason is FinishReason.COMPLETED, again.error
    assert sorted(SessionFolder(root).frames_on_disk()) == list(range(1, FRAMES + 1))
    assert SessionFolder(root).composite_path("tif").is_file()


def test_a_station_whose_stick_was_pulled_shoots_nothing_onto_the_disk_beneath(
    stick: Stick, tmp_path: Path
) -> None:
    """The station's sessions folder on a stick, unmounted as a desktop does when it goes: a
    session started from the page was made, with the sessions folder, below the mount point,
    shot and reported complete on the SD card, and hidden once the stick was mounted again;
    a test shot went there too."""
    use_virtual_camera(tmp_path / "vcam")
    plan = ShotPlan.from_frames(0.0, SPEC.depth_um, 3, settle_s=0.0)
    with SimulatedRig(SPEC) as sim:
        station = station_of(sim, stick.mount / "sessions")
        try:
            stick.pull("unmounted")
            for ask in (lambda: station.start(plan, name="beetle"), station.test_shot):
                with pytest.raises(StationError, match="sessions folder is no longer there") as e:
                    ask()
                assert str(stick.mount / "sessions") in str(e.value) and "\n" not in str(e.value)
        finally:
            station.close()
    stick.unplug()
    assert list(stick.mount.iterdir()) == []  # nothing landed on the disk beneath


def test_an_output_named_as_a_frame_in_another_case_is_refused_on_a_stick(
    stick: Stick, tmp_path: Path
) -> None:
    """FAT ignores case, and through FUSE each spelling of a name has its own inode number:
    ``stacker stack card/ -o card/FRAME_0001.JPG`` wrote the composite over the frame
    ``frame_0001.jpg`` it had stacked, and so did ``-o CARD/frame_0001.jpg``. On a disk that
    keeps case, the names are other files."""
    for folder in (stick.mount / "card", tmp_path / "card"):
        frame, *_ = write_stack(folder, SceneSpec(width=160, height=120, seed=3), 3)
        kept = frame.read_bytes()
        for output in (folder / frame.name.upper(), folder.with_name("CARD") / frame.name):
            output.parent.mkdir(exist_ok=True)  # on the stick, card/ is CARD/
            proc = stacker("stack", folder, "-o", output)
            if folder.is_relative_to(stick.mount):
                assert f"{output}: is one of the input frames" in one_line_error(proc)
            else:
                assert proc.returncode == 0, proc.stderr
            assert frame.read_bytes() == kept


def test_a_token_file_on_a_disk_without_permissions_is_refused_before_it_is_made(
    stick: Stick, tmp_path: Path
) -> None:
    """On a FAT stick through FUSE the token could not be made ("Function not implemented",
    chmod's ENOSYS); on exFAT, whose files all read 0777 and ignore chmod (bindfs stands in
    for it), it was made and the station served, then refused it at every later start as
    readable by others, asking for a chmod the disk ignores."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (apt-get install bindfs)")
    source, exfat_like = tmp_path / "src", tmp_path / "exfat"
    source.mkdir()
    exfat_like.mkdir()
    subprocess.run(
        ["bindfs", "--perms=a+rwx", "--chmod-ignore", str(source), str(exfat_like)], check=True
    )
    try:
        for folder in (stick.mount, exfat_like):
            token_file = folder / "stackrig" / "station-token"
            with pytest.raises(StationError, match="cannot keep the token private") as refused:
                load_token(None, token_file)
            assert str(token_file) in str(refused.value) and "--token" in str(refused.value)
            assert not token_file.exists()
    finally:
        subprocess.run(["fusermount", "-u", str(exfat_like)], check=False)


@pytest.mark.slow
def test_a_stick_that_mounts_too_late_is_not_left_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fusefat slower than the wait for it failed the test and went on running: it mounted
    the stick afterwards and kept it mounted past the test run, on the CI machine."""
    fusefat = shutil.which("fusefat")
    if fusefat is None:
        pytest.skip("fusefat is not installed (apt-get install fusefat)")
    slow = tmp_path / "bin" / "fusefat"
    slow.parent.mkdir()
    slow.write_text(f'#!/bin/sh\nsleep 2\nexec {fusefat} "$@"\n')
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow.parent}{os.pathsep}{os.environ['PATH']}")
    mount = tmp_path / "stick"
    try:
        with pytest.raises(pytest.fail.Exception, match="did not mount"):
            Stick.made(tmp_path, mounts_within_s=0.5)
        time.sleep(3)  # past the slow fusefat's own start
        assert not os.path.ismount(mount)
    finally:
        subprocess.run(["fusermount", "-u", "-z", str(mount)], capture_output=True)
