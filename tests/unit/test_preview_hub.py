"""The preview hub: versions, partial snapshots, waiting, and crops answered on the owner thread."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from stacker.preview import hub as hub_module
from stacker.preview.hub import CropResult, CropUnavailableError, PreviewHub
from tests.crops import crop_owner


def _crop_on(owner: list[threading.Thread]):
    """A crop provider that records which thread ran it."""

    def provider(fx: float, fy: float, size: int) -> CropResult:
        owner.append(threading.current_thread())
        x, y = int(fx * 1000), int(fy * 800)
        return CropResult(b"c", b"l", x, y, size, size, 1000, 800)

    return provider


def test_every_update_bumps_the_version_and_rows_changed_since_are_returned():
    hub = PreviewHub(title="beetle")
    assert hub.snapshot().to_dict()["progress"]["title"] == "beetle"
    v1 = hub.update_frame(0, name="f0", position_um=0.0)
    v2 = hub.update_frame(1, name="f1", position_um=50.0)
    v3 = hub.update_frame(0, merged=True, score=0.97)
    assert v1 < v2 < v3 == hub.version

    full = hub.snapshot()
    assert [f["index"] for f in full.frames] == [0, 1]
    assert full.frames[0] == {
        "index": 0,
        "name": "f0",
        "position_um": 0.0,
        "merged": True,
        "score": 0.97,
    }
    # Only frame 0 changed after v2: a reader that saw v2 gets just that row.
    assert [f["index"] for f in hub.snapshot(since=v2).frames] == [0]
    assert hub.snapshot(since=v3).frames == []
    assert hub.snapshot(since=v3).frames_count == 2


def test_images_keep_their_own_version_and_none_keeps_the_old_one():
    hub = PreviewHub()
    assert hub.image("composite") is None
    v1 = hub.set_images(composite=(b"A", 10, 8), last=(b"L", 10, 8))
    v2 = hub.set_images(composite=(b"B", 10, 8))
    assert hub.image("composite") == (b"B", v2)
    assert hub.image("last") == (b"L", v1)
    images = hub.snapshot().images
    assert images["composite"] == {"version": v2, "width": 10, "height": 8}
    assert "depth" not in images


def test_progress_updates_are_partial_and_unknown_fields_are_refused():
    hub = PreviewHub()
    hub.update_progress(state="running", total=10, captured=2)
    hub.update_progress(stacked=3)  # the stacker cannot be ahead of the camera
    p = hub.progress
    assert (p.state, p.total, p.captured, p.stacked) == ("running", 10, 3, 3)
    with pytest.raises(TypeError):
        hub.update_progress(frames=3)


def test_eta_is_estimated_from_the_capture_interval(monkeypatch: pytest.MonkeyPatch):
    clock = [1000.0]  # the hub's clock, moved by hand: a loaded machine's pauses don't count
    monkeypatch.setattr(hub_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    hub = PreviewHub()
    hub.update_progress(state="running", total=11, captured=1)
    assert hub.snapshot().progress.eta_s is None  # one frame says nothing about pace
    clock[0] += 2.0
    hub.update_progress(captured=2)
    assert hub.snapshot().progress.eta_s == pytest.approx(9 * 2.0)
    clock[0] += 0.5  # half a frame's interval since the last frame
    assert hub.snapshot().progress.eta_s == pytest.approx(9 * 2.0 - 0.5)
    hub.update_progress(eta_s=12.5)  # a producer that knows better wins
    assert hub.snapshot().progress.eta_s == 12.5


def test_a_batch_notifies_subscribers_once():
    hub = PreviewHub()
    seen: list[int] = []
    unsubscribe = hub.subscribe(seen.append)
    with hub.batch():
        hub.set_images(composite=(b"x", 1, 1))
        hub.update_progress(stacked=1)
        hub.update_frame(0, merged=True)
    assert seen == [hub.version]
    unsubscribe()
    hub.update_progress(stacked=2)
    assert seen == [hub.version - 1]
    assert hub.subscriber_count == 0


def test_wait_returns_when_another_thread_updates():
    hub = PreviewHub()
    start = hub.version
    threading.Timer(0.05, lambda: hub.update_progress(captured=1)).start()
    assert hub.wait(start, timeout=5) > start
    assert hub.wait(hub.version, timeout=0.01) == hub.version  # times out, no change


def test_reset_starts_a_new_epoch_and_forgets_the_old_stack():
    hub = PreviewHub()
    hub.update_frame(0, merged=True)
    hub.set_images(composite=(b"x", 1, 1))
    epoch = hub.snapshot().epoch
    hub.reset(title="second stack")
    snap = hub.snapshot()
    assert snap.epoch == epoch + 1
    assert snap.frames == [] and snap.images == {} and snap.progress.title == "second stack"


def test_crop_requests_are_answered_on_the_owner_thread():
    hub = PreviewHub()
    with pytest.raises(CropUnavailableError, match="no stack"):
        hub.crops.request(0.5, 0.5, 64, timeout=0.1)

    ran_on: list[threading.Thread] = []
    with crop_owner(hub, _crop_on(ran_on)) as owner:  # stands for the stacking worker
        result = hub.crops.request(0.25, 0.5, 64, timeout=5)
    assert (result.x, result.y, result.width) == (250, 400, 64)
    assert ran_on == [owner]


def test_a_busy_owner_makes_the_request_time_out_with_a_clear_error():
    hub = PreviewHub()
    hub.crops.set_provider(_crop_on([]))  # set, but no thread ever serves
    with pytest.raises(CropUnavailableError, match=r"did not answer within 0\.05 s"):
        hub.crops.request(0.5, 0.5, 64, timeout=0.05)
    # The abandoned request is dropped, not answered later into the void.
    assert hub.crops.serve() == 0


def test_after_release_the_requesting_thread_crops_directly():
    hub = PreviewHub()
    ran_on: list[threading.Thread] = []
    hub.crops.set_provider(_crop_on(ran_on))
    hub.crops.release()
    result = hub.crops.request(0.1, 0.1, 32, timeout=0.05)
    assert result.x == 100 and ran_on == [threading.current_thread()]


def test_a_request_waiting_when_the_owner_releases_is_answered():
    hub = PreviewHub()
    ran_on: list[threading.Thread] = []
    hub.crops.set_provider(_crop_on(ran_on))
    threading.Timer(0.05, hub.crops.release).start()
    assert hub.crops.request(0.5, 0.5, 16, timeout=5).x == 500
    assert len(ran_on) == 1
