"""Publishing a real Stacker into the hub: previews, counts, rows, crops that respect threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.io import encode_image
from stacker.metadata import Metadata, read_metadata
from stacker.preview import CropUnavailableError, PreviewHub, attach_stacker
from stacker.stack import Stacker


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    stack = SyntheticStack(SceneSpec(width=320, height=240, seed=3), 3)
    return [f.image for f in stack]


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_each_add_publishes_previews_counts_and_a_row(frames):
    hub = PreviewHub()
    publisher = attach_stacker(hub, Stacker(preview_size=160))
    publisher.add(frames[0], name="a.png", position_um=0.0)
    publisher.add(frames[1], name="b.png", position_um=100.0)
    noise = np.random.default_rng(0).integers(0, 255, frames[0].shape, dtype=np.uint8)
    publisher.add(noise, name="noise.png", position_um=200.0)  # nothing in common: rejected

    snap = hub.snapshot()
    p = snap.progress
    assert (p.state, p.captured, p.stacked, p.merged, p.rejected) == ("running", 3, 3, 2, 1)
    assert [(f["name"], f["merged"]) for f in snap.frames] == [
        ("a.png", True),
        ("b.png", True),
        ("noise.png", False),
    ]
    assert "alignment score" in snap.frames[2]["reason"]
    assert snap.frames[1]["position_um"] == 100.0 and 0.5 < snap.frames[1]["score"] <= 1.0
    composite = hub.image("composite")
    assert composite is not None
    assert _decode(composite[0]).shape == (120, 160, 3)
    assert snap.images["composite"] == {"version": composite[1], "width": 160, "height": 120}
    assert set(snap.images) == {"composite", "last", "depth"}
    assert snap.crop_available


def test_crops_wait_for_the_worker_and_run_directly_once_it_is_idle(frames):
    hub = PreviewHub()
    stacker = Stacker(preview_size=160)
    publisher = attach_stacker(hub, stacker)
    publisher.add(frames[0], name="a.png")
    # The worker is "busy" (has not released): a request with no serving worker times out.
    with pytest.raises(CropUnavailableError, match="did not answer"):
        hub.crops.request(0.5, 0.5, 64, timeout=0.05)

    publisher.idle()  # e.g. a hot folder waiting for the next file
    crop = hub.crops.request(0.5, 0.5, 64, timeout=1)
    assert (crop.x, crop.y, crop.width, crop.height) == (128, 88, 64, 64)
    assert (crop.frame_width, crop.frame_height) == (320, 240)
    composite = _decode(crop.composite_jpeg)
    # A 100 % crop is the full-resolution composite itself, not an upscaled preview.
    want = stacker.result(crop=False)[88:152, 128:192]
    assert np.abs(composite.astype(int) - want.astype(int)).mean() < 4


def test_busy_waits_for_a_crop_in_flight(frames):
    hub = PreviewHub()
    publisher = attach_stacker(hub, Stacker(preview_size=160))
    publisher.add(frames[0])
    started, release = threading.Event(), threading.Event()
    real = hub.crops._provider
    assert real is not None

    def slow_provider(fx: float, fy: float, size: int):
        started.set()
        release.wait(5)
        return real(fx, fy, size)

    hub.crops.set_provider(slow_provider)
    publisher.idle()
    asker = threading.Thread(target=hub.crops.request, args=(0.5, 0.5, 32, 5))
    asker.start()
    assert started.wait(5)
    reclaimed = threading.Event()
    worker = threading.Thread(target=lambda: (publisher.busy(), reclaimed.set()))
    worker.start()
    time.sleep(0.1)
    assert not reclaimed.is_set(), "the worker took the stacker back during a crop"
    release.set()
    assert reclaimed.wait(5)
    asker.join(5)
    worker.join(5)


def test_finish_hands_crops_to_the_hub_and_marks_the_stack_finished(frames):
    hub = PreviewHub()
    publisher = attach_stacker(hub, Stacker(preview_size=160))
    for f in frames:
        publisher.add(f)
    publisher.finish()
    assert hub.progress.state == "finished"
    assert hub.crops.request(0.0, 1.0, 48, timeout=1).y == 240 - 48


def test_a_session_s_previews_carry_its_frames_profile(tmp_path, frames):
    """A session of frames in Adobe RGB (a camera that embeds its profile) showed them on its
    page as sRGB: the previews carried no profile."""
    from rig.session.worker import StackJob, StackWorker

    adobe_rgb = Path("/usr/share/color/icc/ghostscript/a98.icc")  # as a camera embeds one
    icc = adobe_rgb.read_bytes() if adobe_rgb.is_file() else bytes(16) + b"RGB " + bytes(200)
    hub = PreviewHub()
    stacker = Stacker(preview_size=160)
    publisher = attach_stacker(hub, stacker)
    worker = StackWorker(stacker, on_merged=lambda job, record, previews: publisher.publish(
        record, previews=previews, index=job.index))  # fmt: skip
    worker.start()
    for i, img in enumerate(frames, 1):
        path = tmp_path / f"f{i}.jpg"
        path.write_bytes(encode_image(img, ".jpg", metadata=Metadata(icc=icc)))
        worker.submit(StackJob(i, path))
    assert worker.finish(timeout=60) and worker.error is None
    composite = hub.image("composite")
    assert composite is not None
    (tmp_path / "shown.jpg").write_bytes(composite[0])
    assert read_metadata(tmp_path / "shown.jpg").icc == icc
