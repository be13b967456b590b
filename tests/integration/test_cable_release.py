"""A camera fired through the StackShot's shutter cable, its files arriving in a folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.camera.cable import CableReleaseCamera
from rig.camera.errors import CameraError
from rig.rails.stackshot import StackShotRail
from rig.sim.stackshot import StackShotSimulator


@pytest.fixture
def rail() -> Iterator[tuple[StackShotSimulator, StackShotRail]]:
    with StackShotSimulator(time_scale=20.0) as sim:
        focuser = StackShotRail.from_url(sim.url)
        yield sim, focuser
        focuser.close()


def jpeg(value: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((24, 32, 3), value, np.uint8))
    assert ok
    return data.tobytes()


class TetheringProgram:
    """Writes a frame for every shutter pulse, as tethering software does (temporary name,
    then rename), a moment after the shutter fired."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.shots = 0

    def on_shutter(self) -> None:
        self.shots += 1
        name, value = f"DSC_{self.shots:04d}.JPG", 20 * self.shots

        def write() -> None:
            tmp = self.folder / (name + ".part")
            tmp.write_bytes(jpeg(value))
            os.replace(tmp, self.folder / name)

        threading.Timer(0.1, write).start()


def test_fire_wait_and_copy_under_the_frame_stem(
    rail: tuple[StackShotSimulator, StackShotRail], tmp_path: Path
) -> None:
    sim, focuser = rail
    incoming, frames = tmp_path / "incoming", tmp_path / "frames"
    incoming.mkdir()
    frames.mkdir()
    program = TetheringProgram(incoming)
    sim.on_shutter = program.on_shutter
    with CableReleaseCamera(focuser, incoming, timeout_s=5.0) as camera:
        first = camera.capture(frames, "frame_0001")
        second = camera.capture(frames, "frame_0002")
    assert [p.name for p in first + second] == ["frame_0001.jpg", "frame_0002.jpg"]
    assert first[0].read_bytes() == (incoming / "DSC_0001.JPG").read_bytes()
    assert sim.shutter_pulses == 2 and program.shots == 2
    assert (incoming / "DSC_0002.JPG").exists()  # the original stays with its owner


@pytest.mark.slow
def test_no_file_is_a_one_line_camera_error(
    rail: tuple[StackShotSimulator, StackShotRail], tmp_path: Path
) -> None:
    _, focuser = rail
    with (
        CableReleaseCamera(focuser, tmp_path, timeout_s=0.5) as camera,
        pytest.raises(CameraError, match=r"no file arrived .* shutter cable"),
    ):
        camera.capture(tmp_path / "frames", "frame_0001")


def test_incoming_must_be_a_folder(
    rail: tuple[StackShotSimulator, StackShotRail], tmp_path: Path
) -> None:
    _, focuser = rail
    with pytest.raises(CameraError, match="is not a folder"):
        CableReleaseCamera(focuser, tmp_path / "missing")
