"""The preview of a real hot-folder watch: rows and counts, and crops while the watch waits."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.io import encode_image, write_image
from stacker.metadata import Metadata, read_metadata
from stacker.preview import PreviewHub
from stacker.preview.watchfeed import WatchPreview
from stacker.watch import watch_and_stack


@pytest.fixture(scope="module")
def frames() -> list:
    return [f.image for f in SyntheticStack(SceneSpec(width=320, height=240, seed=4), 3)]


def test_a_watch_feeds_the_hub_and_crops_are_answered_while_it_waits(tmp_path, frames):
    hot = tmp_path / "hot"
    hot.mkdir()
    for i, img in enumerate(frames[:2]):
        write_image(hot / f"f{i}.png", img)
    hub = PreviewHub()
    feed = WatchPreview(hub)
    stop = threading.Event()
    box: list = []
    watcher = threading.Thread(
        target=lambda: box.append(
            watch_and_stack(
                hot,
                tmp_path / "out.tif",
                stop=stop,
                on_frame=feed.on_frame,
                on_status=feed.on_status,
            )
        )
    )
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while hub.progress.stacked < 2 and watcher.is_alive() and time.monotonic() < deadline:
            hub.wait(hub.version, timeout=0.5)
        assert hub.progress.stacked == 2
        time.sleep(0.2)  # the watch is now waiting for files: the stacker is lent out
        # No file lands before the crop is answered: one deferred to the next file times out.
        crop = hub.crops.request(0.5, 0.5, 64, timeout=5)
        assert (crop.frame_width, crop.frame_height) == (320, 240)

        write_image(hot / "f2.png", frames[2])  # a new frame after the crop
        while hub.progress.stacked < 3 and watcher.is_alive() and time.monotonic() < deadline:
            hub.wait(hub.version, timeout=0.5)
    finally:
        stop.set()
        watcher.join(30)
    snap = hub.snapshot()
    assert snap.progress.state == "finished" and snap.progress.title == "hot"
    assert [f["name"] for f in snap.frames] == ["f0.png", "f1.png", "f2.png"]
    assert all(f["merged"] for f in snap.frames)
    assert box and box[0].status.merged == 3


@pytest.mark.slow
def test_stacker_watch_preview_serves_the_page_and_prints_its_address(tmp_path, frames):
    hot = tmp_path / "hot"
    hot.mkdir()
    for i, img in enumerate(frames):
        write_image(hot / f"f{i}.png", img)
    cmd = [sys.executable, "-m", "stacker.cli", "watch", str(hot), "-o", str(tmp_path / "o.tif")]
    proc = subprocess.Popen([*cmd, "--preview", "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"Live preview: (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        url = match[1]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = httpx.get(url + "api/state", timeout=5).json()
            if state["progress"]["stacked"] == 3:
                break
            time.sleep(0.2)
        assert state["progress"]["merged"] == 3 and state["progress"]["title"] == "hot"
        assert httpx.get(url + "img/composite.jpg", timeout=5).content[:2] == b"\xff\xd8"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)


def test_the_page_says_the_watch_s_warnings_too(tmp_path):
    """Frames landing in a subfolder, a HEIC file, frames a stop left unstacked: said on the
    terminal only, while the page, how a photographer away from it follows the watch, kept an
    empty line."""
    from dataclasses import replace

    from stacker.preview import PreviewHub
    from stacker.preview.watchfeed import WatchPreview
    from stacker.watch import WatchStatus

    hub = PreviewHub(title="hot")
    feed = WatchPreview(hub)
    status = WatchStatus(folder=tmp_path)
    feed.on_status(status)
    assert hub.progress.message == ""
    feed.on_warning("IMG_0001.HEIC: HEIC\nis not read")
    assert hub.progress.message == "IMG_0001.HEIC: HEIC is not read"
    feed.on_status(replace(status, seen=1))  # a status without a new problem keeps it
    assert hub.progress.message == "IMG_0001.HEIC: HEIC is not read"
    feed.on_status(replace(status, seen=2, last_problem="f2.jpg: not merged"))
    assert hub.progress.message == "f2.jpg: not merged"
    WatchPreview(None).on_warning("no page: nothing to tell")


ADOBE_RGB = Path("/usr/share/color/icc/ghostscript/a98.icc")
"""An Adobe RGB (1998) profile (Ghostscript's), as a camera or a raw converter embeds one."""


def test_the_preview_of_adobe_rgb_frames_carries_their_profile(tmp_path, frames):
    """The page's JPEGs had no profile: a browser showed Adobe RGB (or ProPhoto) pixels as
    sRGB, an Adobe RGB red of (200, 50, 50) as (200, 50, 51) where Chromium shows the tagged
    one as (232, 46, 48), and ProPhoto greys a sixth darker."""
    icc = ADOBE_RGB.read_bytes() if ADOBE_RGB.is_file() else bytes(16) + b"RGB " + bytes(200)
    hot = tmp_path / "hot"
    hot.mkdir()
    for i, img in enumerate(frames):
        (hot / f"f{i}.png").write_bytes(encode_image(img, ".png", metadata=Metadata(icc=icc)))
    hub = PreviewHub()
    feed = WatchPreview(hub)
    watch_and_stack(hot, tmp_path / "out.tif", idle_timeout=1.0, settle=0.2,
                    on_frame=feed.on_frame, on_status=feed.on_status)  # fmt: skip
    assert hub.progress.merged == 3
    shown = [hub.image(name) for name in ("composite", "last")]
    crop = hub.crops.request(0.5, 0.5, 64, timeout=5)
    jpegs = [image[0] for image in shown if image is not None]
    assert len(jpegs) == 2
    for i, jpeg in enumerate([*jpegs, crop.composite_jpeg, crop.last_jpeg]):
        (tmp_path / f"shown{i}.jpg").write_bytes(jpeg)
        assert read_metadata(tmp_path / f"shown{i}.jpg").icc == icc
    assert read_metadata(tmp_path / "out.tif").icc == icc
