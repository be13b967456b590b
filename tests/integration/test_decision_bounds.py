"""Decisions that a plausible bug could change without another test noticing.

Each test here was written against a mutation (a comparison flipped, a guard dropped, a line
deleted) that the rest of the suite let through: hotfolder links and retries, batch
up-to-date checks and reports, the journal's torn writes, session folders' set-asides, the
station's file listing and its rail references, depth-map outputs and natural order. The
comment after each test names the mutation it kills.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest


# ---------------------------------------------------------------- natsort
def test_natural_key_ignores_case_across_names() -> None:  # N6
    from stacker.natsort import natural_key

    assert sorted(["IMG_0002.jpg", "img_0001.jpg"], key=natural_key) == [
        "img_0001.jpg",
        "IMG_0002.jpg",
    ]


def test_frame_order_of_one_counted_frame(tmp_path: Path) -> None:  # N1
    from stacker.natsort import frame_order

    p = tmp_path / "IMG_0001.JPG"
    p.write_bytes(b"x")
    assert frame_order([p]) == [p]


def test_a_mixed_folder_is_never_rotated(tmp_path: Path) -> None:  # N1
    from stacker.natsort import frame_order

    names = ["IMG_0001.JPG", "IMG_9998.JPG", "IMG_9999.JPG", "zz.jpg"]
    for k, n in enumerate(["IMG_9998.JPG", "IMG_9999.JPG", "IMG_0001.JPG", "zz.jpg"]):
        (tmp_path / n).write_bytes(b"x")
        t = 900 if n == "zz.jpg" else 1000 + 10 * k  # the odd file is the oldest
        os.utime(tmp_path / n, (t, t))
    assert [p.name for p in frame_order(tmp_path / n for n in names)] == names


# ---------------------------------------------------------------- output
def _stack(far_first: bool):
    from rig.sim.scene import SceneSpec, SyntheticStack
    from stacker.stack import Stacker

    st = SyntheticStack(SceneSpec(width=240, height=160, seed=2), 5)
    frames = list(st)
    s = Stacker(far_first=far_first)
    for k, f in enumerate(reversed(frames) if far_first else frames):
        s.add(f.image, position_um=(400.0 - 100.0 * k) if far_first else 100.0 * k)
    return s


def test_a_far_first_depth_map_says_so_and_counts_from_the_nearest(tmp_path: Path) -> None:  # O1 O2
    from stacker.output import save_depth_map

    s = _stack(far_first=True)
    save_depth_map(s, tmp_path / "d.png", crop=False)
    info = json.loads((tmp_path / "d.json").read_text())
    assert info["order"] == "far-to-near"
    assert info["offset_um"] == 0.0


def test_um_per_count() -> None:  # O3 O8
    from stacker.output import _um_per_count

    assert _um_per_count([0.0, 40_000.0, 80_000.0]) == 2  # 80 mm: 1.22 counts per um -> 2
    assert _um_per_count([0.0, 0.2, 20_000.0]) == 0.5  # fine steps, but 20 mm must still fit
    # 10 um steps from 0.1 um differ by 9.999999999999993: the scale halved for that plan.
    assert _um_per_count([0.1 + 10.0 * i for i in range(10)]) == 1
    assert _um_per_count([0.3, 0.1 + 0.2, 250.0]) == 1  # one place twice: no step of 0
    assert _um_per_count([123.4 + 9.99 * i for i in range(10)]) == 0.5


def test_an_index_map_names_only_frames_that_were_merged() -> None:
    """Rounded alone, a pixel between the frames either side of one kept out took that frame's
    index, which depth.json does not list (7 % of a stack with one shaken frame)."""
    from stacker.output import _nearest_of

    values = np.array([0.0, 4.4, 4.6, 5.0, 5.4, 5.6, 6.0, 11.2, -1.0], np.float32)
    merged = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert _nearest_of(values, merged).tolist() == [0, 4, 4, 4, 6, 6, 6, 11, 0]
    assert _nearest_of(values, [3]).tolist() == [3] * 9


def test_round_u16_rounds() -> None:  # O4
    from stacker.output import _round_u16

    assert _round_u16(np.array([1.6, 2.4], np.float32)).tolist() == [2, 2]


def test_depth_paths_keeps_an_upper_case_png() -> None:  # O6
    from stacker.output import depth_paths

    assert depth_paths("out/d.PNG")[0] == Path("out/d.PNG")


def test_a_preview_name_too_long_is_refused_before_work(tmp_path: Path) -> None:  # O7
    from stacker.errors import StackerError
    from stacker.output import check_writable_depth

    name = "d" * (255 - len(".png")) + ".png"  # fits; its -preview.jpg does not
    with pytest.raises(StackerError):
        check_writable_depth(tmp_path / name)


# ---------------------------------------------------------------- batch
def _job(tmp_path: Path, **kw):
    from stacker.batch import StackJob

    folder = tmp_path / "s1"
    folder.mkdir(exist_ok=True)
    frames = []
    for n in ("a.jpg", "b.jpg"):
        (folder / n).write_bytes(b"x")
        frames.append(folder / n)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    job = StackJob(
        name="s1",
        folder=folder,
        frames=tuple(frames),
        output=out / "s1.tif",
        depth_map=out / "s1-depth.png",
        **kw,
    )
    return job


def test_without_a_record_every_output_must_be_newer_than_the_frames(tmp_path: Path) -> None:  # B2
    job = _job(tmp_path)
    for p in job.outputs():
        p.write_bytes(b"o")
    for f in job.frames:
        os.utime(f, (2000, 2000))
    os.utime(job.output, (3000, 3000))
    for p in job.outputs()[1:]:
        os.utime(p, (1000, 1000))  # the depth map from before the frame changed
    assert not job.up_to_date()


def test_an_output_as_old_as_a_frame_is_not_up_to_date(tmp_path: Path) -> None:  # B3
    job = _job(tmp_path)
    for p in [*job.outputs(), *job.frames]:
        p.touch()
        os.utime(p, (2000, 2000))  # a FAT/SMB clock: one 2-s tick for both
    assert not job.up_to_date()


def test_a_moved_root_is_up_to_date_not_another_stack(tmp_path: Path) -> None:  # B4
    from dataclasses import replace

    job = _job(tmp_path)
    for p in job.outputs():
        p.write_bytes(b"o")
    job = replace(job, settings="S", made_with="S", made_from="/mnt/old-mount/s1")
    assert job.up_to_date() and not job.replaces_another_stack()


def test_outputs_differing_only_in_case_are_refused(tmp_path: Path) -> None:  # B9
    from stacker.batch import StackJob, _check_outputs_apart
    from stacker.errors import StackerError

    out = tmp_path / "out"
    jobs = [
        StackJob(name=n, folder=tmp_path / n, frames=(), output=out / f"{n}.tif", depth_map=None)
        for n in ("Moth", "moth")
    ]
    with pytest.raises(StackerError):
        _check_outputs_apart(jobs)


def test_the_report_is_emptied_when_opened(tmp_path: Path) -> None:  # B10
    from stacker.batch import ReportWriter

    report = tmp_path / "r.jsonl"
    report.write_text("old row 1\nold row 2\nold row 3\n" * 20)
    ReportWriter(report).close()
    assert report.read_text() == ""


# ---------------------------------------------------------------- journal / folder
def test_a_short_write_on_a_full_disk_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch
) -> None:  # J6
    from rig.session import journal as j

    jr = j.Journal.open(tmp_path / "journal.jsonl")
    jr.append("start")
    size = (tmp_path / "journal.jsonl").stat().st_size
    real_write = os.write
    calls = []

    def short_then_full(fd, data):
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(j.os, "write", short_then_full)
    with pytest.raises(j.JournalError):
        jr.append("frame", index=1, position=0.0, files=[])
    monkeypatch.undo()
    assert (tmp_path / "journal.jsonl").stat().st_size == size
    jr.close()


def test_a_zero_byte_size_is_a_byte_count() -> None:  # J7
    from rig.session.journal import record_problem

    assert record_problem({"event": "frame", "index": 1, "files": ["a.jpg"], "sizes": [0]}) is None


def test_a_damaged_last_tether_frame_is_left_out_not_reused() -> None:  # F1
    from rig.session.folder import Reconciliation
    from rig.session.journal import FrameEntry

    r = Reconciliation(
        done={1: FrameEntry(1, 0.0, []), 2: FrameEntry(2, 0.0, [])},
        damaged={3: [(Path("frame_0003.jpg"), "cut")]},
        missing=[3, 4, 5],
    )
    assert r.leave_out_lost() == [3] and r.missing == [4, 5]


def test_set_aside_never_replaces_a_link_set_aside_before(tmp_path: Path) -> None:  # F6
    from rig.session.folder import SessionFolder

    f = SessionFolder(tmp_path)
    (tmp_path / "failed-attempts").mkdir()
    (tmp_path / "failed-attempts" / "frame_0003.damaged.jpg").symlink_to(tmp_path / "gone")
    (tmp_path / "frame_0003.jpg").write_bytes(b"x")
    f.set_aside([tmp_path / "frame_0003.jpg"], "damaged")
    assert (tmp_path / "failed-attempts" / "frame_0003.damaged.jpg").is_symlink()


def test_hidden_files_of_others_in_frames_are_kept(tmp_path: Path) -> None:  # F7
    from rig.session.folder import SessionFolder

    f = SessionFolder(tmp_path)
    f.frames_dir.mkdir()
    (f.frames_dir / ".DS_Store").write_bytes(b"x")
    (f.frames_dir / ".frame_0001.jpg.Ab12.tmp").write_bytes(b"x")
    f.remove_temporaries()
    assert sorted(p.name for p in f.frames_dir.iterdir()) == [".DS_Store"]


def test_a_plan_whose_units_changed_is_refused() -> None:  # F9
    from rig.plan import ShotPlan
    from rig.session.folder import SessionFolderError, check_plan_matches
    from rig.session.journal import JournalContents

    plan = ShotPlan.from_step(0.0, 40.0, 10.0, units="steps")
    rec = {
        "event": "frame",
        "index": 1,
        "position": 0.0,
        "units": "um",
        "files": ["frames/frame_0001.jpg"],
    }
    with pytest.raises(SessionFolderError):
        check_plan_matches(plan, JournalContents((rec,)), {1: [Path("frame_0001.jpg")]}, source="x")


# ---------------------------------------------------------------- station files
def _session(root: Path, name: str) -> Path:
    from rig.plan import ShotPlan

    s = root / name
    (s / "frames").mkdir(parents=True)
    (s / "plan.json").write_text(ShotPlan.from_frames(0.0, 100.0, 3).to_json())
    return s


def test_a_link_to_a_session_elsewhere_is_not_listed(tmp_path: Path) -> None:  # S1
    from rig.station.files import SessionFiles

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    _session(elsewhere, "other")
    (root / "linked").symlink_to(elsewhere / "other")
    assert SessionFiles(root).sessions() == []


def test_empty_trash_keeps_other_hidden_folders(tmp_path: Path) -> None:  # S2
    from rig.station.files import empty_trash

    (tmp_path / ".stfolder").mkdir()  # Syncthing's marker
    (tmp_path / ".deleting-x-1234").mkdir()
    empty_trash(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".stfolder"]


def test_sessions_are_newest_first(tmp_path: Path) -> None:  # S3
    from rig.station.files import SessionFiles

    a, b = _session(tmp_path, "a"), _session(tmp_path, "b")
    os.utime(a, (1000, 1000))
    os.utime(b, (2000, 2000))
    assert [s["id"] for s in SessionFiles(tmp_path).sessions()] == ["b", "a"]


def test_links_named_like_frames_are_not_counted(tmp_path: Path) -> None:  # S5 S6
    from rig.station.files import SessionFiles

    s = _session(tmp_path, "a")
    (s / "frames" / "frame_0001.jpg").write_bytes(b"x")
    (s / "frames" / "frame_0002.jpg").symlink_to(s / "frames" / "frame_0001.jpg")  # inside
    (s / "frames" / "frame_0003.jpg").symlink_to(tmp_path / "outside.jpg")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    [summary] = SessionFiles(tmp_path).sessions()
    assert summary["frames"] == 1


def test_own_empty_folder_unlinks_a_link_to_a_folder_inside(tmp_path: Path) -> None:  # S7
    from rig.station.files import own_empty_folder

    shot = tmp_path / ".test-shot"
    shot.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (shot / "planted").symlink_to(tmp_path / "elsewhere")
    own_empty_folder(shot)
    assert os.listdir(shot) == []


# ---------------------------------------------------------------- station service
def _sim_station(root: Path, **kw):
    from rig.session.runner import RunnerOptions
    from rig.station.service import Station
    from tests.stations import SPEC

    return Station(
        root,
        focuser=kw.pop("rig").focuser,
        camera=kw.pop("cam"),
        rig=SPEC.to_dict(),
        runner_options=RunnerOptions(retry_delay_s=0.1),
        **kw,
    )


def _shoot_some(station, name: str, lo: float = 0.0) -> str:
    from rig.plan import ShotPlan

    sid = station.start(ShotPlan.from_frames(lo, lo + 500.0, 12), name=name)
    frames = station.root / sid / "frames"
    deadline = time.monotonic() + 30
    while len(os.listdir(frames)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    station.stop(sid)
    station.wait(30)
    return sid


@pytest.mark.slow
def test_a_session_started_after_unlock_resumes_without_asking(tmp_path: Path) -> None:  # V3 V5
    from rig.sim.rig import SimulatedRig
    from tests.stations import SPEC

    with SimulatedRig(SPEC) as sim:
        st = _sim_station(tmp_path / "s", rig=sim, cam=sim.camera, accepted=True)
        try:
            sid = _shoot_some(st, "after-unlock")
            st.resume(sid)  # same reference: nothing to ask
            st.stop(sid)
            st.wait(30)
        finally:
            st.close()


@pytest.mark.slow
def test_home_after_unlock_clears_the_unlock(tmp_path: Path) -> None:  # V6
    from rig.sim.rig import SimulatedRig
    from tests.stations import SPEC

    with SimulatedRig(SPEC) as sim:
        st = _sim_station(tmp_path / "s", rig=sim, cam=sim.camera)
        try:
            st.home()
            sid = _shoot_some(st, "homed", lo=-3000.0)  # positions from the switch
            st._new_accepted_reference()  # Unlock after a controller restart
            st.home()  # then Home: the switch's 0 again
            st.resume(sid)  # shot after homing: resumes
            st.stop(sid)
            st.wait(30)
        finally:
            st.close()


def test_close_keeps_the_folder_while_a_session_writes(tmp_path: Path, monkeypatch) -> None:  # V8
    """The session's last write is held until the check is done: stopped before its first
    frame on a loaded machine, a session had ended (nothing to write) before close looked."""
    import threading

    from rig.plan import ShotPlan
    from rig.sim.rig import SimulatedRig
    from rig.station.errors import StationBusyError
    from stacker import output
    from tests.stations import SPEC

    writing, release = threading.Event(), threading.Event()
    save_outputs = output.save_outputs

    def held(*args, **kwargs):
        writing.set()
        release.wait(60)
        return save_outputs(*args, **kwargs)

    monkeypatch.setattr(output, "save_outputs", held)
    with SimulatedRig(SPEC) as sim:
        st = _sim_station(tmp_path / "s", rig=sim, cam=sim.camera)
        sid = st.start(ShotPlan.from_frames(0.0, 500.0, 40), name="long")
        frames = st.root / sid / "frames"
        deadline = time.monotonic() + 30
        while len(os.listdir(frames)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            st.close(timeout=0.0)  # a session still running: it writes its composite
            assert writing.wait(30) and st.running is not None
            with pytest.raises(StationBusyError):
                _sim_station(tmp_path / "s", rig=sim, cam=sim.camera)
        finally:
            release.set()
            st.wait(60)
            st.close()


def test_a_folder_that_cannot_be_locked_is_not_another_station(
    tmp_path: Path, monkeypatch
) -> None:  # V9
    from rig.station import service
    from rig.station.errors import StationBusyError, StationError

    monkeypatch.setattr(service, "try_lock", lambda fd: None)
    with pytest.raises(StationError) as exc:
        service._claim_folder(tmp_path)
    assert not isinstance(exc.value, StationBusyError)


def test_a_jog_to_the_end_of_travel_is_allowed(tmp_path: Path) -> None:  # V10
    from rig.sim.rig import SimulatedRig
    from tests.stations import SPEC

    with SimulatedRig(SPEC) as sim:
        st = _sim_station(tmp_path / "s", rig=sim, cam=sim.camera, travel=200.0)
        try:
            assert st.jog(to="200um") == pytest.approx(200.0, abs=1)
            st.jog(to="0um")
        finally:
            st.close()


# ---------------------------------------------------------------- hot folder
def test_a_link_into_a_sibling_folder_sharing_the_name_prefix_is_not_stacked(
    tmp_path: Path,
) -> None:  # H9
    import threading

    from stacker.hotfolder import HotFolder
    from tests.integration.test_watch_hotfolder import textured_jpeg

    hot_dir, private = tmp_path / "hot", tmp_path / "hot-private"
    hot_dir.mkdir()
    private.mkdir()
    (private / "secret.jpg").write_bytes(textured_jpeg(1))
    (hot_dir / "frame.jpg").symlink_to(private / "secret.jpg")
    stop = threading.Event()
    with HotFolder(hot_dir, settle=0.1) as hot:
        threading.Timer(1.5, stop.set).start()
        got = list(hot.paths(stop=stop))
    assert got == [] and any("outside the watched folder" in n for n in hot.notes)


def _flaky_reader(hot, failures: int, on_fail=None):
    from stacker.errors import UnreadableImageError

    real = hot._reader.read
    count = {"n": 0}

    def read(path):
        count["n"] += 1
        if count["n"] <= failures:
            if on_fail is not None:
                on_fail(count["n"])
            raise UnreadableImageError(f"{path}: not yet")
        return real(path)

    hot._reader.read = read
    return count


@pytest.mark.parametrize("opened_by", ["pinning", "decoder"])
@pytest.mark.slow
def test_a_frame_that_cannot_be_opened_for_want_of_descriptors_waits(
    tmp_path: Path, opened_by: str
) -> None:
    """Out of file descriptors (the live page's clients took them), each frame that landed was
    called unreadable after its retries and skipped for good: "stacked 36 of 60", exit 0. The
    want is the process's, not the frame's: it is said once and the frame tried until it opens."""
    import errno

    from stacker.errors import ShortOfFilesError
    from stacker.hotfolder import HotFolder
    from tests.integration.test_watch_hotfolder import textured_jpeg

    (tmp_path / "a.jpg").write_bytes(textured_jpeg(1))
    bad = []
    with HotFolder(tmp_path, settle=0.1, decode_retries=1, retry_interval=0.05) as hot:
        real = hot._reader.read
        count = {"n": 0}

        def read(path):
            count["n"] += 1
            if count["n"] <= 5:  # more than the retries
                if opened_by == "decoder":  # the decoder's own open (stacker.io)
                    raise ShortOfFilesError(f"{path}: cannot read file (Too many open files)")
                raise OSError(errno.EMFILE, "Too many open files")
            return real(path)

        hot._reader.read = read
        got = [f.path.name for f in hot.frames(idle_timeout=3.0, on_unreadable=bad.append)]
    assert got == ["a.jpg"] and bad == []
    assert [n for n in hot.notes if "Too many open files" in n] == [
        "a.jpg: cannot be opened now (Too many open files); tried again until it can: raise the "
        "limit of open files (ulimit -n 4096)"
    ]


def test_a_raw_waiting_for_its_jpeg_while_the_folder_cannot_be_searched_waits_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RAW file waits for its JPEG partner; the folder then cannot be searched (a chmod):
    the RAW, left out of the pairing for that look, was looked up among the pairs all the same
    (KeyError), and the watch ended in a traceback. Root ignores permissions: the look is
    refused by hand."""
    import time

    from stacker import hotfolder
    from stacker.hotfolder import HotFolder
    from tests.integration.test_watch_hotfolder import textured_jpeg

    with HotFolder(tmp_path, settle=0.1) as hot:
        raw = tmp_path / "IMG_0001.CR2"
        raw.write_bytes(textured_jpeg(1))
        deadline = time.monotonic() + 5.0
        while raw not in hot._entries and time.monotonic() < deadline:
            hot._drain(time.monotonic())
        assert raw in hot._entries
        monkeypatch.setattr(HotFolder, "_signature", staticmethod(lambda path: None))
        monkeypatch.setattr(hotfolder, "_cannot_look", lambda path: True)
        assert hot._select(time.monotonic()) is None  # waits, no KeyError
        assert raw in hot._entries


def test_decode_retries_means_that_many_retries(tmp_path: Path) -> None:  # H10
    from stacker.hotfolder import HotFolder
    from tests.integration.test_watch_hotfolder import textured_jpeg

    (tmp_path / "a.jpg").write_bytes(textured_jpeg(1))
    bad = []
    with HotFolder(tmp_path, settle=0.1, decode_retries=2, retry_interval=0.05) as hot:
        _flaky_reader(hot, failures=2)
        got = [f.path.name for f in hot.frames(idle_timeout=1.0, on_unreadable=bad.append)]
    assert got == ["a.jpg"] and bad == []


@pytest.mark.slow
def test_a_rewrite_gives_a_failing_frame_its_retries_again(tmp_path: Path) -> None:  # H3
    import threading

    from stacker.hotfolder import HotFolder
    from tests.integration.test_watch_hotfolder import textured_jpeg

    path = tmp_path / "a.jpg"
    path.write_bytes(textured_jpeg(1))
    bad = []

    def rewrite(n: int) -> None:
        if n == 1:
            threading.Timer(0.05, lambda: path.write_bytes(textured_jpeg(2))).start()

    with HotFolder(tmp_path, settle=0.1, decode_retries=1, retry_interval=0.5) as hot:
        _flaky_reader(hot, failures=2, on_fail=rewrite)
        got = [f.path.name for f in hot.frames(idle_timeout=2.0, on_unreadable=bad.append)]
    assert got == ["a.jpg"] and bad == []
