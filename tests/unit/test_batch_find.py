"""Finding stack folders for `stacker batch`, deciding what is up to date, writing the report."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stacker.batch import (
    SETTINGS_FILE,
    ReportWriter,
    StackJob,
    StackReport,
    check_outputs_ours,
    find_stacks,
    record_settings,
    remove_stale_temporaries,
    run_batch,
    with_settings,
)
from stacker.errors import StackerError
from stacker.io import atomic_write_bytes, encode_image
from stacker.output import OUTPUT_SOFTWARE


def frames(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(f"frame {n}".encode())  # each its own: copies are stacked once


def test_session_folders_and_plain_folders_are_stacks(tmp_path: Path) -> None:
    root = tmp_path / "day1"
    frames(root / "tray1" / "beetle" / "frames", "frame_0001.jpg", "frame_0002.jpg")
    (root / "tray1" / "beetle" / "composite.tif").write_bytes(b"old result")
    frames(root / "tray1" / "moth", "IMG_10.NEF", "IMG_10.JPG", "IMG_2.NEF", "IMG_2.JPG", "x.txt")
    frames(root / "tray2" / "lonely", "a.jpg")  # one frame is not a stack
    frames(root / ".hidden", "a.jpg", "b.jpg")
    out = root / "out"
    frames(out, "x.jpg", "y.jpg")  # the output folder inside a root is never a stack
    jobs = find_stacks([root], out, ext=".dng", pattern="*.nef")
    assert [j.name for j in jobs] == ["tray1-moth"]
    (moth,) = jobs
    assert [f.name for f in moth.frames] == ["IMG_2.NEF", "IMG_10.NEF"]  # natural order
    assert moth.output == out / "tray1-moth.dng"
    jobs = find_stacks([root], out)
    assert [j.name for j in jobs] == ["tray1-beetle", "tray1-moth"]
    assert [f.name for f in jobs[0].frames] == ["frame_0001.jpg", "frame_0002.jpg"]
    assert [o.name for o in jobs[0].outputs()] == [
        "tray1-beetle.tif", "tray1-beetle-depth.png", "tray1-beetle-depth-preview.jpg",
        "tray1-beetle-depth.json",
    ]  # fmt: skip
    # a root that is itself a stack is named after itself
    (only,) = find_stacks([root / "tray1" / "moth"], out, depth_maps=False)
    assert only.name == "moth" and only.outputs() == [out / "moth.tif"]


def test_frames_in_a_subfolder_of_a_stack_are_named_as_left_out(tmp_path: Path) -> None:
    """A stack's folder is not searched further, so a retake shot into ``beetle/retake`` was
    left out without a word; the stack itself is unchanged."""
    root = tmp_path / "tray"
    frames(root / "beetle", "1.jpg", "2.jpg")
    frames(root / "beetle" / "retake", "3.jpg", "4.jpg")
    frames(root / "beetle" / "notes", "todo.txt")  # no frames: nothing to say
    notes: list[str] = []
    jobs = find_stacks([root], tmp_path / "out", on_note=notes.append)
    assert [(j.name, [f.name for f in j.frames]) for j in jobs] == [("beetle", ["1.jpg", "2.jpg"])]
    assert notes == [
        f"{root / 'beetle' / 'retake'}: 2 frame(s) left out, in a subfolder of the stack "
        f"{root / 'beetle'}; give it as a root of its own to stack it"
    ]


def test_a_subfolder_stacked_after_all_is_not_named_as_left_out(tmp_path: Path) -> None:
    """The note came as each stack folder was found: a subfolder given as a root of its own (as
    the note says), a link back to the stack folder itself or to another stack was named as
    left out though stacked. A capture session there, its frames in ``frames/``, was not named."""
    root = tmp_path / "tray"
    frames(root / "beetle", "1.jpg", "2.jpg")
    frames(root / "beetle" / "retake", "3.jpg", "4.jpg")
    frames(root / "beetle" / "session" / "frames", "5.jpg", "6.jpg")
    frames(root / "moth", "1.jpg", "2.jpg")
    (root / "beetle" / "self").symlink_to(".")
    (root / "beetle" / "moth").symlink_to("../moth")
    notes: list[str] = []
    jobs = find_stacks([root, root / "beetle" / "retake"], tmp_path / "out", on_note=notes.append)
    assert [j.name for j in jobs] == ["beetle", "moth", "retake"]
    assert notes == [
        f"{root / 'beetle' / 'session'}: 2 frame(s) left out, in a subfolder of the stack "
        f"{root / 'beetle'}; give it as a root of its own to stack it"
    ]


def test_bad_roots_and_name_clashes_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StackerError, match="nowhere: no such folder"):
        find_stacks([tmp_path / "nowhere"], tmp_path / "out")
    frames(tmp_path / "loose", "a.jpg")
    with pytest.raises(StackerError, match=r"a\.jpg: not a folder; give folders"):
        find_stacks([tmp_path / "loose" / "a.jpg"], tmp_path / "out")
    frames(tmp_path / "empty" / "sub", "a.jpg")
    with pytest.raises(StackerError, match=r"no stacks under .*two or more frames"):
        find_stacks([tmp_path / "empty"], tmp_path / "out")
    frames(tmp_path / "a" / "s1", "1.jpg", "2.jpg")
    frames(tmp_path / "b" / "s1", "1.jpg", "2.jpg")
    with pytest.raises(StackerError, match="both be written as 's1'"):
        find_stacks([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    # a root that is the output folder was passed over: "no folder holds two or more frames"
    for out in (tmp_path / "a", tmp_path / "a" / "s1" / ".."):
        with pytest.raises(StackerError, match=r"a: is also the output folder; .*a-stacked"):
            find_stacks([tmp_path / "a"], out)
    # the only stack under the root is the output folder: said so, not "no folder holds..."
    with pytest.raises(StackerError, match=r"no stacks under .* but .*s1, the output folder, "):
        find_stacks([tmp_path / "a"], tmp_path / "a" / "s1")
    with pytest.raises(StackerError, match="no folder holds two or more frames"):
        find_stacks([tmp_path / "empty"], tmp_path / "a" / "s1")  # frames, but not under the root


def test_up_to_date_means_every_output_newer_than_every_frame(tmp_path: Path) -> None:
    frames(tmp_path / "s", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (job,) = find_stacks([tmp_path / "s"], out)
    assert not job.up_to_date()
    for p in job.outputs():
        p.write_bytes(b"result")
    past = job.frames[0].stat().st_mtime - 100
    for f in job.frames:
        os.utime(f, (past, past))
    assert job.up_to_date()
    job.depth_map.unlink()  # type: ignore[union-attr]  # an interrupted run: composite only
    assert not job.up_to_date()
    job.depth_map.write_bytes(b"depth")  # type: ignore[union-attr]
    os.utime(job.frames[1], (past + 1000, past + 1000))  # a frame replaced after the run
    assert not job.up_to_date()
    # hidden temporaries of our outputs go; anything else stays
    (out / ".s.tif.abc123.tmp").write_bytes(b"torn")
    (out / ".other.tif.x.tmp").write_bytes(b"not ours")
    (out / ".s.tif.keepme.tmp").mkdir()  # a folder named so: left alone, not a traceback
    remove_stale_temporaries([job])
    assert sorted(p.name for p in out.glob(".*")) == [".other.tif.x.tmp", ".s.tif.keepme.tmp"]


def test_a_damaged_settings_record_counts_as_no_record(tmp_path: Path) -> None:
    """A line of the output folder's settings record nested a few thousand arrays deep
    stopped the batch on RecursionError; like any unreadable line it records nothing."""
    frames(tmp_path / "s", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (job,) = find_stacks([tmp_path / "s"], out)
    lines = ["[" * 100_000, '{"output": 1}', json.dumps({"output": "s.tif", "settings": "x"})]
    (out / SETTINGS_FILE).write_text("\n".join(lines) + "\n")
    (checked,) = with_settings([job], {"method": "pyramid"})
    assert checked.made_with == "x"


@pytest.mark.parametrize("name", ["report.jsonl", "report.csv"])
def test_report_rows(tmp_path: Path, name: str) -> None:
    writer = ReportWriter(tmp_path / name)
    outputs = ["/o/moth wing.tif", "/o/moth wing-depth.png"]  # a CSV cell they can be read from
    writer.write(StackReport(name="a", folder="/d/a", status="done", frames=5, merged=4,
                             rejected=1, unreadable=0, seconds=1.5, peak_memory_mb=300.0,
                             outputs=outputs, worker="tcp://1.2.3.4:1"))  # fmt: skip
    writer.write(StackReport(name="b", folder="/d/b", status="failed", frames=3,
                             error="b/1.jpg: not a readable image"))  # fmt: skip
    writer.close()
    text = (tmp_path / name).read_text()
    if name.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert rows[0]["outputs"].splitlines() == outputs and rows[0]["merged"] == "4"
        assert rows[1]["status"] == "failed" and rows[1]["merged"] == ""
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        assert rows[0]["outputs"] == outputs and rows[0]["rejected"] == 1
        assert rows[1]["error"] == "b/1.jpg: not a readable image"


def test_a_report_that_would_empty_a_frame_or_cannot_be_written_is_refused(
    tmp_path: Path,
) -> None:
    """The report is opened (emptied) before any stack runs: a frame named as the report, or
    linked to under a report's name, would be lost, and a bad path was a traceback."""
    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg")
    (tmp_path / "out").mkdir()  # as stacker batch makes it
    jobs = find_stacks([tmp_path / "root"], tmp_path / "out")
    frame = tmp_path / "root" / "s1" / "1.jpg"
    (tmp_path / "link.csv").symlink_to(frame)
    os.link(frame, tmp_path / "hard.jsonl")
    bad = {
        frame: r"1.jpg: name the report .jsonl \(JSON Lines\) or .csv",
        tmp_path / "out" / "s1.tif": r"s1.tif: name the report .jsonl \(JSON Lines\) or .csv",
        tmp_path / "link.csv": "is one of the input frames",
        tmp_path / "hard.jsonl": "is one of the input frames",
        tmp_path / "nowhere" / "r.csv": r"nowhere/r.csv: cannot write the report \(No such file",
        tmp_path / "root": "name the report",
    }
    bad[tmp_path / "out" / SETTINGS_FILE] = "record of how each output was made"
    os.mkfifo(tmp_path / "pipe.csv")
    bad[tmp_path / "pipe.csv"] = r"cannot write the report \(not a regular file"
    for report, message in bad.items():
        with pytest.raises(StackerError, match=message):
            run_batch(jobs, {}, report)
    assert frame.read_bytes() == f"frame {frame.name}".encode()


def test_the_report_and_the_settings_record_replace_a_link_never_write_through_it(
    tmp_path: Path,
) -> None:
    """A link planted in the output folder under the report's name had its target emptied
    and filled with report rows; one under the settings record's name had lines appended."""
    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    victims = [tmp_path / "victim1.txt", tmp_path / "victim2.txt"]
    for victim, name in zip(victims, ("batch-report.jsonl", SETTINGS_FILE), strict=True):
        victim.write_text("precious\n")
        (out / name).symlink_to(victim)
    (job,) = with_settings(find_stacks([tmp_path / "root"], out), {"method": "pyramid"})
    writer = ReportWriter(out / "batch-report.jsonl")
    done = StackReport(name="s1", folder="root/s1", status="done")
    writer.write(done)
    writer.close()
    record_settings(job, done)
    assert [victim.read_text() for victim in victims] == ["precious\n", "precious\n"]
    assert not (out / "batch-report.jsonl").is_symlink()
    assert json.loads((out / "batch-report.jsonl").read_text())["name"] == "s1"


def result_of_ours(path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    atomic_write_bytes(path, encode_image(image, path.suffix, software=OUTPUT_SOFTWARE))


def test_results_of_ours_in_a_stack_folder_are_not_frames(tmp_path: Path) -> None:
    """A composite ``stacker stack`` wrote beside the frames, or a batch whose OUTDIR is a
    session's frames folder, was taken as a frame: the stack then failed on its size, and every
    rerun failed the same way."""
    root = tmp_path / "root"
    frames(root / "s1", "1.jpg", "2.jpg")
    result_of_ours(root / "s1" / "stacked.jpg")
    frames(root / "s2", "1.jpg")
    result_of_ours(root / "s2" / "stacked.tif")  # one frame and a result: not a stack
    session = root / "session"
    frames(session / "frames", "frame_0001.jpg", "frame_0002.jpg")
    for name in ("session.tif", "session-depth.png", "session-depth-preview.jpg"):
        result_of_ours(session / "frames" / name)
    jobs = find_stacks([root], session / "frames")
    assert {job.name: [f.name for f in job.frames] for job in jobs} == {
        "s1": ["1.jpg", "2.jpg"],
        "session": ["frame_0001.jpg", "frame_0002.jpg"],
    }


def test_a_folder_reached_again_through_a_link_is_one_stack(tmp_path: Path) -> None:
    """A link to a parent folder made a loop: the stack below it was found once per turn
    (a-loop-b, a-loop-a-loop-b...) until the names grew too long for the file system."""
    root = tmp_path / "root"
    frames(root / "b", "1.jpg", "2.jpg")
    (root / "a").mkdir()
    (root / "a" / "loop").symlink_to("..")
    frames(tmp_path / "elsewhere" / "s", "1.jpg", "2.jpg")
    (root / "c").symlink_to(tmp_path / "elsewhere")  # a link to other stacks is followed
    jobs = find_stacks([root], tmp_path / "out")
    assert [job.name for job in jobs] == ["b", "c-s"]


def test_a_link_to_a_folder_above_the_root_is_left_out(tmp_path: Path) -> None:
    """A link to the root's parent stacked every folder beside the root, with no word."""
    root = tmp_path / "root"
    frames(root / "a", "1.jpg", "2.jpg")
    (root / "up").symlink_to("..")
    frames(tmp_path / "beside", "1.jpg", "2.jpg")
    notes: list[str] = []
    jobs = find_stacks([root], tmp_path / "out", on_note=notes.append)
    assert [job.name for job in jobs] == ["a"]
    assert any("up: left out, a link to" in note and "which holds" in note for note in notes)


def test_a_folder_given_twice_or_inside_another_given_is_one_stack(tmp_path: Path) -> None:
    """Both were refused as 'two stacks would both be written as 's1'', naming one folder."""
    root = tmp_path / "root"
    frames(root / "s1", "1.jpg", "2.jpg")
    for roots in ([root, root], [root, root / "s1"], [root / "s1", root]):
        assert [job.name for job in find_stacks(roots, tmp_path / "out")] == ["s1"]


def test_a_second_batch_into_the_same_output_folder_is_refused(tmp_path: Path) -> None:
    """Two batches into one folder both stacked every stack, and the second emptied the
    first one's report while it was being written."""
    import fcntl

    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    jobs = find_stacks([tmp_path / "root"], out)
    report = out / "batch-report.jsonl"
    report.write_text('{"name": "s1", "status": "done"}\n')  # the first batch's, so far
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held as the first batch holds it
        with pytest.raises(StackerError, match="out: another stacker batch is writing into"):
            run_batch(jobs, {}, report)
    finally:
        os.close(fd)
    assert report.read_text() == '{"name": "s1", "status": "done"}\n'


def test_two_stacks_whose_outputs_share_a_name_are_refused(tmp_path: Path) -> None:
    """Stack ``a``'s depth map and stack ``a-depth``'s composite were both ``a-depth.png``:
    one replaced the other, and every rerun found both up to date."""
    frames(tmp_path / "root" / "a", "1.jpg", "2.jpg")
    frames(tmp_path / "root" / "a-depth", "1.jpg", "2.jpg")
    with pytest.raises(StackerError, match=r"stacks 'a' .* and 'a-depth' .* would both write "):
        find_stacks([tmp_path / "root"], tmp_path / "out", ext=".png")
    assert len(find_stacks([tmp_path / "root"], tmp_path / "out")) == 2  # .tif: apart


def test_a_frame_named_twice_is_stacked_once_and_said_so(tmp_path: Path) -> None:
    frames(tmp_path / "s", "1.jpg", "2.jpg", "3.jpg")
    os.link(tmp_path / "s" / "1.jpg", tmp_path / "s" / "9-copy.jpg")
    (tmp_path / "s" / "8-link.jpg").symlink_to("2.jpg")
    notes: list[str] = []
    (job,) = find_stacks([tmp_path / "s"], tmp_path / "out", on_note=notes.append)
    assert [f.name for f in job.frames] == ["1.jpg", "2.jpg", "3.jpg"]
    assert len(notes) == 1 and notes[0].startswith("2 files named twice, stacked once: ")


def test_a_card_imported_twice_is_stacked_once_and_said_so(tmp_path: Path) -> None:
    """A copy under another name (``IMG_0002 (1).jpg``, a card imported twice) was stacked as
    a frame of its own: the same exposure twice, and the depth map told of two planes."""
    from stacker.offline import collect_inputs

    frames(tmp_path / "s", "IMG_0001.jpg", "IMG_0002.jpg", "IMG_0003.jpg")
    shutil.copyfile(tmp_path / "s" / "IMG_0002.jpg", tmp_path / "s" / "IMG_0002 (1).jpg")
    shutil.copyfile(tmp_path / "s" / "IMG_0003.jpg", tmp_path / "s" / "IMG_0004.jpg")
    notes: list[str] = []
    files = collect_inputs([tmp_path / "s"], on_note=notes.append)
    # The first of each in the frames' order stands for it ("IMG_0002 (1)" sorts first).
    assert [f.name for f in files] == ["IMG_0001.jpg", "IMG_0002 (1).jpg", "IMG_0003.jpg"]
    assert notes == [
        f"2 files are copies of others, stacked once: {tmp_path / 's' / 'IMG_0002.jpg'} "
        f"(stacked as IMG_0002 (1).jpg), {tmp_path / 's' / 'IMG_0004.jpg'} (stacked as "
        "IMG_0003.jpg)"
    ]


def test_frames_of_one_size_that_differ_anywhere_are_all_stacked(tmp_path: Path) -> None:
    """Uncompressed frames all have one size and one header: each is its own frame, however
    little tells it from the others (here, one byte past the samples compared first)."""
    from stacker.paths import SAMPLE, copies

    body = bytearray(20 * SAMPLE)
    paths = []
    for i in range(3):
        body[5 * SAMPLE] = i  # neither at the start, the middle nor the end
        paths.append(tmp_path / f"{i}.tif")
        paths[-1].write_bytes(bytes(body))
    (tmp_path / "3.tif").write_bytes(bytes(body))
    assert copies([*paths, tmp_path / "3.tif"]) == {tmp_path / "3.tif": paths[2]}


def test_a_frame_left_out_for_a_link_that_came_first_names_the_link(tmp_path: Path) -> None:
    """With ``link_001.jpg`` linking to ``pcb_001.jpg``, the link comes first: the frames'
    table lists ``link_001.jpg`` while the note named ``pcb_001.jpg`` alone, as if that frame
    were the one missing from the stack."""
    from stacker.offline import collect_inputs

    frames(tmp_path / "s", "pcb_001.jpg", "pcb_002.jpg", "pcb_003.jpg")
    (tmp_path / "s" / "link_001.jpg").symlink_to("pcb_001.jpg")
    notes: list[str] = []
    files = collect_inputs([tmp_path / "s"], on_note=notes.append)
    assert [f.name for f in files] == ["link_001.jpg", "pcb_002.jpg", "pcb_003.jpg"]
    left_out = tmp_path / "s" / "pcb_001.jpg"
    assert notes == [f"a file named twice, stacked once: {left_out} (stacked as link_001.jpg)"]
    notes.clear()
    (job,) = find_stacks([tmp_path / "s"], tmp_path / "out", on_note=notes.append)
    assert list(job.frames) == files
    assert notes == [f"a file named twice, stacked once: {left_out} (stacked as link_001.jpg)"]


def test_stacks_in_an_output_folder_under_a_root_are_named_as_left_out(tmp_path: Path) -> None:
    """``stacker batch spec -o spec/tray1`` stacked spec's other folders and said nothing of
    the stacks in tray1, which it never looks into."""
    frames(tmp_path / "spec" / "moth", "1.jpg", "2.jpg")
    frames(tmp_path / "spec" / "tray1" / "ant", "1.jpg", "2.jpg")
    notes: list[str] = []
    jobs = find_stacks([tmp_path / "spec"], tmp_path / "spec" / "tray1", on_note=notes.append)
    assert [j.name for j in jobs] == ["moth"]
    assert notes == [
        f"left out {tmp_path / 'spec' / 'tray1' / 'ant'}: in {tmp_path / 'spec' / 'tray1'}, "
        "the output folder, which is never stacked"
    ]


def test_a_folder_that_cannot_be_read_is_left_out_with_a_note(tmp_path: Path) -> None:
    """``lost+found`` at a drive's root, or a folder of another user's: the whole batch ended
    in a PermissionError traceback. Run without the capability that lets root read anything."""
    frames(tmp_path / "drive" / "ok", "1.jpg", "2.jpg")
    frames(tmp_path / "drive" / "private", "1.jpg", "2.jpg")
    (tmp_path / "drive" / "private").chmod(0)
    code = (
        "import sys; from pathlib import Path; from stacker.batch import find_stacks\n"
        "jobs = find_stacks([Path(sys.argv[1])], Path(sys.argv[2]), on_note=print)\n"
        "print([j.name for j in jobs])\n"
    )
    command = [sys.executable, "-c", code, str(tmp_path / "drive"), str(tmp_path / "out")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: every folder is readable")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        (tmp_path / "drive" / "private").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{tmp_path / 'drive' / 'private'}: left out, cannot be read (Permission denied)",
        "['ok']",
    ]


def test_a_stack_whose_frames_were_taken_out_is_stacked_again(tmp_path: Path) -> None:
    """Frames removed from a stack leave every time as it was: the rerun called the
    composite made with them up to date."""
    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg", "3.jpg")
    out = tmp_path / "out"
    out.mkdir()

    def job() -> StackJob:
        (found,) = with_settings(find_stacks([tmp_path / "root"], out, depth_maps=False), {})
        return found

    made = job()
    result_of_ours(made.output)
    future = made.output.stat().st_mtime + 100
    os.utime(made.output, (future, future))
    record_settings(made, StackReport(name="s1", folder="root/s1", status="done", merged=3))
    assert job().up_to_date()
    (tmp_path / "root" / "s1" / "3.jpg").unlink()
    assert not job().up_to_date()


def test_an_output_name_holding_a_file_of_other_work_is_refused(tmp_path: Path) -> None:
    """A rerun into a folder of other work replaced such a file without a word."""
    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "s1.tif").write_bytes(b"thesis")
    jobs = find_stacks([tmp_path / "root"], out)
    with pytest.raises(StackerError, match=r"s1.tif: exists and was not written by stackrig"):
        run_batch(jobs, {}, out / "batch-report.jsonl")
    assert (out / "s1.tif").read_bytes() == b"thesis"
    assert not (out / "batch-report.jsonl").exists()


@pytest.mark.parametrize(("ext", "kept"), [(".tif", ".JPG"), (".dng", ".CR2")])
def test_a_session_shot_raw_plus_jpeg_is_stacked_from_one_file_of_each_shot(
    tmp_path: Path, ext: str, kept: str
) -> None:
    """A RAW+JPEG session's frames (both files of every shot) were all given to the stack: the
    same exposure twice, and RAW mixed with rendered, which fails. A shot in JPEG alone is
    stacked with the JPEGs, and left out of the RAW files' stack, which it ended."""
    root = tmp_path / "day"
    names = [f"frame_{i:04d}{e}" for i in (1, 2, 3) for e in (".CR2", ".JPG")]
    frames(root / "beetle" / "frames", *names, "frame_0004.JPG")  # a shot in JPEG alone
    notes: list[str] = []
    (job,) = find_stacks([root], tmp_path / "out", ext=ext, on_note=notes.append)
    alone = [] if ext == ".dng" else ["frame_0004.JPG"]
    assert [f.name for f in job.frames] == [*(f"frame_{i:04d}{kept}" for i in (1, 2, 3)), *alone]
    took, other = (
        ("RAW", "for a DNG output") if ext == ".dng" else ("JPEG", "a .dng output stacks the RAW")
    )
    lone = (
        [f"{root / 'beetle'}: left out, JPEG files whose shot has no RAW file (a stack is of one "
         "kind): frame_0004.JPG"] if ext == ".dng" else []
    )  # fmt: skip
    assert notes == [
        *lone,
        f"{root / 'beetle'}: 3 RAW+JPEG pairs: stacking the {took} file of each ({other})",
    ]


def test_a_folder_shot_in_raw_among_a_few_pairs_is_left_out_of_a_jpeg_batch(tmp_path: Path) -> None:
    """Its RAW files, alone, would have been stacked with the JPEGs of its two pairs, and the
    stack failed on them; the other stacks of the batch go on."""
    root = tmp_path / "day"
    frames(root / "raw", "a1.CR2", "a1.JPG", "a2.CR2", "a2.JPG", "a3.CR2", "a4.CR2", "a5.CR2")
    frames(root / "jpeg", "b1.JPG", "b2.JPG")
    notes: list[str] = []
    (job,) = find_stacks([root], tmp_path / "out", ext=".tif", on_note=notes.append)
    assert job.folder == root / "jpeg"
    assert notes == [
        f"{root / 'raw'}: 3 RAW files have no JPEG partner and 2 JPEG files are to be stacked: "
        "a stack is of one kind; for the RAW files, --prefer raw; not stacked"
    ]


@pytest.mark.parametrize(("ext", "kept"), [(".tif", ".jpg"), (".dng", ".cr3")])
def test_a_folder_gphoto2_tethered_raw_plus_jpeg_gives_one_file_of_each_shot(
    tmp_path: Path, ext: str, kept: str
) -> None:
    """gphoto2 --capture-tethered numbers each file, so a RAW+JPEG shot is capt0001.cr3 and
    capt0002.jpg: stacker watch pairs them, but stacker stack and batch paired stems only and
    gave both files of every shot to the stack ("capt0002.jpg: a rendered frame in a stack of
    RAW (linear) frames")."""
    root = tmp_path / "tether"
    names = [f"capt{n:04d}{'.cr3' if n % 2 else '.jpg'}" for n in range(1, 7)]
    frames(root, *names, "capt0007.jpg")  # a shot in JPEG alone
    notes: list[str] = []
    (job,) = find_stacks([root], tmp_path / "out", ext=ext, on_note=notes.append)
    alone = [] if ext == ".dng" else ["capt0007.jpg"]  # a RAW stack leaves the JPEG alone out
    assert [f.name for f in job.frames] == [n for n in names if n.endswith(kept)] + alone
    assert len(notes) == 1 + (ext == ".dng") and "3 RAW+JPEG pairs" in notes[-1]


def test_a_root_named_with_a_leading_dot_is_searched(tmp_path: Path) -> None:
    """Hidden folders below a root are passed over; a root the user named is not, and
    ``stacker batch ..`` (or a root called ``.photos``) said there were no stacks."""
    frames(tmp_path / ".photos" / "s1", "1.jpg", "2.jpg")
    frames(tmp_path / ".photos" / ".trash", "1.jpg", "2.jpg")
    (tmp_path / ".photos" / "s1" / "sub").mkdir()
    out = tmp_path / "out"
    assert [j.name for j in find_stacks([tmp_path / ".photos"], out)] == ["s1"]
    parent = tmp_path / ".photos" / "s1" / "sub" / ".."
    assert [j.folder for j in find_stacks([parent], out)] == [parent]


def test_frames_dated_ahead_of_the_clock_are_not_stacked_again_and_again(tmp_path: Path) -> None:
    """A camera whose clock runs ahead dates its frames in the future: judged by time alone,
    every rerun restacked them. The settings record names the frames' sizes and times, so a
    stack it says was made from them is up to date."""
    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    ahead = os.stat(tmp_path / "root" / "s1" / "1.jpg").st_mtime + 3 * 3600
    for f in (tmp_path / "root" / "s1").iterdir():
        os.utime(f, (ahead, ahead))

    def job() -> StackJob:
        (found,) = with_settings(find_stacks([tmp_path / "root"], out, depth_maps=False), {})
        return found

    made = job()
    result_of_ours(made.output)
    assert not made.up_to_date()  # no record: judged by time, and the frames are newer
    record_settings(made, StackReport(name="s1", folder="root/s1", status="done", merged=2))
    assert job().up_to_date()
    made.output.unlink()
    assert not job().up_to_date()


def test_a_rerun_reports_what_became_of_the_frames_of_stacks_it_finds_up_to_date(
    tmp_path: Path,
) -> None:
    """After a Ctrl-C the advice is to run the same command again: the rerun's report had the
    stacks made before as "skipped" with no count, so which of them had lost frames to
    unreadable files was recorded nowhere any more."""
    frames(tmp_path / "root" / "s1", "1.jpg", "2.jpg", "3.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (made,) = with_settings(find_stacks([tmp_path / "root"], out, depth_maps=False), {})
    result_of_ours(made.output)
    record_settings(
        made,
        StackReport(name="s1", folder="root/s1", status="done", merged=2, rejected=0, unreadable=1),
    )
    jobs = with_settings(find_stacks([tmp_path / "root"], out, depth_maps=False), {})
    summary = run_batch(jobs, {}, out / "batch-report.jsonl")
    (row,) = [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]
    assert summary.count("skipped") == 1
    assert (row["status"], row["merged"], row["rejected"], row["unreadable"]) == (
        "skipped",
        2,
        0,
        1,
    )


def test_a_stack_of_another_folder_with_the_same_name_is_not_written_over(tmp_path: Path) -> None:
    """Day 2's ``tray1/s1`` batched into day 1's output folder replaced day 1's composite of
    its own ``tray1/s1`` without a word: each run checks names only within itself."""
    for day in ("day1", "day2"):
        frames(tmp_path / day / "tray1" / "s1", "1.jpg", "2.jpg")
    (tmp_path / "day2" / "tray1" / "s1" / "3.jpg").write_bytes(b"frame3")
    out = tmp_path / "out"
    out.mkdir()
    (day1,) = with_settings(find_stacks([tmp_path / "day1"], out, depth_maps=False), {})
    result_of_ours(day1.output)
    record_settings(day1, StackReport(name="tray1-s1", folder="day1/tray1/s1", status="done"))
    (day2,) = with_settings(find_stacks([tmp_path / "day2"], out, depth_maps=False), {})
    with pytest.raises(StackerError) as err:
        check_outputs_ours([day2])
    assert str(err.value) == (
        f"{out / 'tray1-s1.tif'}: was stacked from {(tmp_path / 'day1' / 'tray1' / 's1')} by an "
        f"earlier batch, and {tmp_path / 'day2' / 'tray1' / 's1'} would replace it; give "
        "--output another folder, or move the earlier result away (if it is that folder moved, "
        "and frames were added since, delete the result to stack it again)"
    )
    (again,) = with_settings(find_stacks([tmp_path / "day1"], out, depth_maps=False), {})
    check_outputs_ours([again])  # the same folder again: up to date, or restacked in place
    day1.output.unlink()
    check_outputs_ours([day2])  # nothing left to replace


def test_an_output_name_too_long_for_the_file_system_fails_that_stack_alone(
    tmp_path: Path,
) -> None:
    """A stack nested three folders of 100 characters deep is named by all three: checking
    whether its composite's name held a file of other work raised ENAMETOOLONG, and the whole
    batch ended in a traceback before it began."""
    deep = tmp_path / "root" / ("a" * 100) / ("b" * 100) / ("c" * 100)
    frames(deep, "1.jpg", "2.jpg")
    frames(tmp_path / "root" / "short", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    jobs = with_settings(find_stacks([tmp_path / "root"], out), {})
    check_outputs_ours(jobs)
    assert not jobs[0].up_to_date()


def test_stacks_named_with_characters_fat_and_windows_refuse_get_names_they_take(
    tmp_path: Path,
) -> None:
    """A folder named by its time on a Linux disk, batched onto a FAT or exFAT USB stick,
    failed at its write ("Operation not permitted", "No such file or directory"), after the
    rest of the batch had run."""
    frames(tmp_path / "root" / "2026-12-06T10:30" / "beetle?", "1.jpg", "2.jpg")
    frames(tmp_path / "root" / 'moth "big" <1|2>', "1.jpg", "2.jpg")
    out = tmp_path / "out"
    jobs = find_stacks([tmp_path / "root"], out)
    assert [j.output.name for j in jobs] == ["2026-12-06T10_30-beetle_.tif", "moth _big_ _1_2_.tif"]
    frames(tmp_path / "root" / "2026-12-06T10*30" / "beetle?", "1.jpg", "2.jpg")
    with pytest.raises(StackerError, match=r"both be written as '2026-12-06T10_30-beetle_'"):
        find_stacks([tmp_path / "root"], out)


def test_a_report_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """A full disk ended the batch in a traceback from the report's flush, and another from
    closing it."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    writer = ReportWriter(tmp_path / "r.jsonl")
    writer._fh.close()  # the report's file, on a disk that is full: /dev/full
    writer._fh = open("/dev/full", "w")  # noqa: SIM115 - the writer closes it
    with pytest.raises(
        StackerError, match=r"^--report .*r\.jsonl: cannot write the report \(No space"
    ):
        writer.write(StackReport(name="s1", folder="s1", status="done"))
    writer.close()


def test_a_stack_moved_is_recorded_where_it_is_now_and_a_frame_added_later_restacks_it(
    tmp_path: Path,
) -> None:
    """A disk mounted under another name, a folder renamed: the rerun found the stacks up to
    date, and once a frame was added the whole batch was refused as "stacked from ... by an
    earlier batch", naming a folder that no longer exists."""
    frames(tmp_path / "specimens" / "s1", "1.jpg", "2.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (made,) = with_settings(find_stacks([tmp_path / "specimens"], out, depth_maps=False), {})
    result_of_ours(made.output)
    record_settings(made, StackReport(name="s1", folder="specimens/s1", status="done", merged=2))
    (tmp_path / "specimens").rename(tmp_path / "specimens-2026-12")
    moved = tmp_path / "specimens-2026-12"
    jobs = with_settings(find_stacks([moved], out, depth_maps=False), {})
    assert run_batch(jobs, {}, out / "batch-report.jsonl").count("skipped") == 1
    (moved / "s1" / "3.jpg").write_bytes(b"frame3")
    (again,) = with_settings(find_stacks([moved], out, depth_maps=False), {})
    assert not again.up_to_date() and again.made_from == str((moved / "s1").resolve())
    check_outputs_ours([again])


def test_one_raw_plus_jpeg_shot_is_no_stack_and_the_stacks_below_it_are_found(
    tmp_path: Path,
) -> None:
    """A tray's overview taken RAW+JPEG beside its specimens' folders: two files, one shot,
    were taken for the tray's stack (which failed on every run), and the specimens below were
    left out."""
    tray = tmp_path / "tray1"
    frames(tray, "overview.CR3", "overview.JPG")
    frames(tray / "s1", "1.jpg", "2.jpg")
    frames(tray / "s2", "1.jpg", "2.jpg")
    assert [j.name for j in find_stacks([tmp_path], tmp_path / "out")] == ["tray1-s1", "tray1-s2"]


def test_a_retake_beside_a_capture_session_s_frames_is_named_as_left_out(tmp_path: Path) -> None:
    """Below a plain stack a retake was named as left out; below a capture session's folder
    (its frames in ``frames/``) it was left out without a word."""
    frames(tmp_path / "beetle" / "frames", "frame_0001.jpg", "frame_0002.jpg")
    frames(tmp_path / "beetle" / "retake", "1.jpg", "2.jpg", "3.jpg")
    notes: list[str] = []
    (job,) = find_stacks([tmp_path], tmp_path / "out", on_note=notes.append)
    assert [f.name for f in job.frames] == ["frame_0001.jpg", "frame_0002.jpg"]
    assert notes == [
        f"{tmp_path / 'beetle' / 'retake'}: 3 frame(s) left out, in a subfolder of the stack "
        f"{tmp_path / 'beetle'}; give it as a root of its own to stack it"
    ]


def test_a_stack_named_with_a_newline_is_reported_on_one_line() -> None:
    """A folder name holding a newline split the batch's "failed:" line in two; ``stacker
    stack`` and ``watch`` keep such names on one line."""
    from stacker.batchcli import _report_line

    failed = StackReport(name="bad\nname", folder="root/bad\nname", status="failed", error="x")
    assert _report_line(failed) == "failed: bad\\nname: x"
