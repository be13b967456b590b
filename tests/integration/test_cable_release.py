"""A camera fired through the StackShot's shutter cable, its files arriving in a folder."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.camera.cable import CableReleaseCamera
from rig.camera.errors import CameraError, ShotCutShortError
from rig.rails.stackshot import StackShotRail
from rig.session.engine import retryable
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


@pytest.mark.slow
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


class RawPlusJpegProgram:
    """Writes a RAW and a JPEG for every shutter pulse, in the given order and in slow chunks,
    as a camera's Wi-Fi or FTP upload lands them (neither renamed in: closed when written)."""

    def __init__(self, folder: Path, *, raw_first: bool) -> None:
        self.folder, self.raw_first = folder, raw_first
        self.raw = os.urandom(600_000)
        self.shots = 0

    def on_shutter(self) -> None:
        self.shots += 1
        files = [(f"DSC_{self.shots:04d}.NEF", self.raw), (f"DSC_{self.shots:04d}.JPG", jpeg(90))]
        if not self.raw_first:
            files.reverse()

        def write() -> None:
            for name, data in files:
                with (self.folder / name).open("wb") as fh:
                    for start in range(0, len(data), 100_000):
                        fh.write(data[start : start + 100_000])
                        fh.flush()
                        time.sleep(0.05)

        threading.Timer(0.1, write).start()


@pytest.mark.parametrize("raw_first", [False, True])
def test_a_raw_plus_jpeg_shot_keeps_its_raw_whole_with_its_frame(
    rail: tuple[StackShotSimulator, StackShotRail], tmp_path: Path, raw_first: bool
) -> None:
    """The RAW landing after its JPEG was copied as far as it had been written (the first
    frame's cut short, the second's missing); each frame now gets both files, whole."""
    sim, focuser = rail
    incoming, frames = tmp_path / "incoming", tmp_path / "frames"
    incoming.mkdir()
    frames.mkdir()
    program = RawPlusJpegProgram(incoming, raw_first=raw_first)
    sim.on_shutter = program.on_shutter
    with CableReleaseCamera(focuser, incoming, timeout_s=10.0, pair_wait=1.0) as camera:
        shots = [camera.capture(frames, f"frame_{i:04d}") for i in (1, 2)]
    assert [[(p.name, p.stat().st_size) for p in shot] for shot in shots] == [
        [(f"frame_{i:04d}.jpg", len(jpeg(90))), (f"frame_{i:04d}.nef", len(program.raw))]
        for i in (1, 2)
    ]
    assert all(shot[1].read_bytes() == program.raw for shot in shots)


@pytest.mark.slow
def test_a_shot_that_stays_cut_short_is_shot_again_not_kept(
    rail: tuple[StackShotSimulator, StackShotRail], tmp_path: Path
) -> None:
    """On a polled share, an upload that stalls for longer than the hot folder waits for a
    file without its end was copied into the session half written, and said nothing: the
    shot is now a transient error, which a session answers by shooting the frame again."""
    sim, focuser = rail
    incoming, frames = tmp_path / "incoming", tmp_path / "frames"
    incoming.mkdir()
    frames.mkdir()
    data = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 256, (240, 320, 3), np.uint8))[
        1
    ].tobytes()
    done = threading.Event()

    def upload() -> None:
        with (incoming / "DSC_0001.JPG").open("wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            done.wait(10)  # the Wi-Fi link stalls until the shot is given up
            fh.write(data[len(data) // 2 :])

    sim.on_shutter = lambda: threading.Thread(target=upload).start()
    with (
        CableReleaseCamera(
            focuser, incoming, timeout_s=10.0, polling=True, pair_wait=0.5
        ) as camera,
        pytest.raises(ShotCutShortError, match=r"DSC_0001.JPG: truncated JPEG .* shot again"),
    ):
        try:
            camera.capture(frames, "frame_0001")
        finally:
            done.set()
    assert retryable(ShotCutShortError("x")) and list(frames.iterdir()) == []


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
