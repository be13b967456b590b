"""Tethering against libgphoto2's virtual camera: the shutter is pressed from another thread.

The presses go through libgphoto2 (``gp_camera_trigger_capture`` on the same camera), the files
are announced by the virtual body's ObjectAdded events and read by the real ptp2 driver.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rig.camera import Camera, RetryPolicy
from rig.camera.tether import Tether
from rig.sim.vcamera import VirtualCameraFolder

FAST = RetryPolicy(first_delay_s=0.001, max_delay_s=0.01, reconnect_timeout_s=1.0)


@pytest.mark.slow
def test_files_shot_by_the_camera_are_downloaded_once_each(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    staged = card.staged()
    dest = tmp_path / "frames"
    with Camera.open(retry=FAST) as camera:
        tether = Tether(camera, quiet_s=0.3)
        assert tether.next_shot(0.2) is None  # nothing shot: nothing downloaded

        def press() -> None:
            for _ in range(3):
                tether.trigger()

        presser = threading.Thread(target=press)
        presser.start()
        written = []
        for index in (1, 2, 3):
            shot = tether.next_shot(5.0)
            assert shot is not None, f"shot {index} never announced"
            written += tether.download(shot, dest, f"frame_{index:04d}")
        presser.join()
        assert tether.next_shot(0.5) is None  # no fourth frame, no duplicate
    assert [p.name for p in written] == ["frame_0001.jpg", "frame_0002.jpg", "frame_0003.jpg"]
    assert all(p.read_bytes() == staged for p in written)
    assert sorted(p.name for p in dest.iterdir()) == [p.name for p in written]


@pytest.mark.slow
def test_card_files_stay_on_the_card_and_ram_captures_are_freed(
    card: VirtualCameraFolder, tmp_path: Path
) -> None:
    """The photographer's card files are theirs; libgphoto2's RAM captures are freed."""
    from rig.camera.tether import CameraFile

    assert CameraFile("/", "capt0003.jpg").in_ram
    assert CameraFile("/", "capt_DSC00012.ARW").in_ram
    assert not CameraFile("/store_00010001/DCIM/100NZ7_2", "DSC_0042.NEF").in_ram
    with Camera.open(retry=FAST) as camera:
        tether = Tether(camera, quiet_s=0.2)
        tether.trigger()
        shot = tether.next_shot(5.0)
        assert shot is not None
        tether.download(shot, tmp_path / "frames", "frame_0001")
        (f,) = shot.files
        listing = camera._call("list", lambda c: c.folder_list_files(f.folder))
        assert f.name in [listing.get_name(i) for i in range(listing.count())]


def test_a_stop_ends_the_wait_at_once(card: VirtualCameraFolder) -> None:
    stop = threading.Event()
    stop.set()
    with Camera.open(retry=FAST) as camera:
        assert Tether(camera).next_shot(30.0, stop) is None
