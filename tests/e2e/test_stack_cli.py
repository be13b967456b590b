"""`stacker stack` end to end, as a user runs it: real files, a real process, exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, write_stack
from stacker.io import read_image
from stacker.metadata import read_metadata, result_exif
from stacker.offline import collect_inputs
from tests.commands import one_line_error, stacker

SPEC = SceneSpec(width=320, height=240, seed=11, jpeg_quality=92)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    write_stack(folder, SPEC, 6)
    return folder


def test_stack_folder_writes_composite_and_depth_map(frames: Path, tmp_path: Path) -> None:
    out, depth = tmp_path / "stacked.tif", tmp_path / "depth.png"
    proc = stacker("stack", frames, "-o", out, "--depth-map", depth, "--interpolation", "cubic")
    assert proc.returncode == 0, proc.stderr
    assert "stacked 6 of 6 frames" in proc.stdout
    img = read_image(out)
    assert img.dtype == np.uint8 and img.shape[0] > 200
    d = cv2.imread(str(depth), cv2.IMREAD_UNCHANGED)
    assert d.dtype == np.uint16 and d.shape == img.shape[:2]
    assert d.max() <= 5  # frame indices: no positions known offline
    assert (tmp_path / "depth-preview.jpg").exists() and (tmp_path / "depth.json").exists()


def test_what_a_killed_stack_left_beside_its_outputs_is_removed(frames: Path, tmp_path) -> None:
    """A stack killed while writing (kill -9, a power cut) leaves a hidden temporary as large as
    its output, one more per interruption; the next stack to the same outputs removes those
    untouched for a minute (another program may be writing a fresh one: it stays)."""
    out, depth = tmp_path / "stacked.tif", tmp_path / "depth.png"
    old = [tmp_path / ".stacked.tif.pltjlo_i.tmp", tmp_path / ".depth-preview.jpg.x1y2z3.tmp"]
    fresh = tmp_path / ".stacked.tif.a8b7c6.tmp"
    other = tmp_path / ".holiday.tif.q9w8e7.tmp"  # not an output of this stack
    for p in (*old, fresh, other):
        p.write_bytes(b"II*\0")
    for p in (*old, other):
        os.utime(p, (p.stat().st_atime - 120, p.stat().st_mtime - 120))
    proc = stacker("stack", frames, "-o", out, "--depth-map", depth)
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in old)
    assert fresh.exists() and other.exists()


def test_jpeg_output_carries_reference_exif(
    frames: Path, tmp_path: Path, shared_data: Path
) -> None:
    # give the reference frame EXIF by copying the metadata of a real camera JPEG
    src = shared_data / "pcb-stack" / "pcb_001.jpg"
    from stacker.io import write_image

    work = tmp_path / "in"
    work.mkdir()
    for i, f in enumerate(sorted(frames.glob("*.jpg"))):
        write_image(work / f.name, read_image(f), metadata_from=src if i == 0 else None)
    out = tmp_path / "stacked.jpg"
    proc = stacker("stack", work, "-o", out, "--jpeg-quality", "90")
    assert proc.returncode == 0, proc.stderr
    meta = read_metadata(out)
    assert meta.exif and meta.exif[:2] in (b"II", b"MM")
    reference = read_metadata(work / sorted(p.name for p in work.iterdir())[0]).exif
    assert reference is not None
    h, w = read_image(out).shape[:2]  # the camera's, with the result's own pixel size
    assert meta.exif == result_exif(reference, (w, h))


SHIFT = r"[+-]\d+\.\d,[+-]\d+\.\d"


@pytest.mark.parametrize(
    ("align", "scale", "shift"),
    [("similarity", r"0\.9\d+", SHIFT), ("translation", "1.0000", SHIFT),
     ("none", "1.0000", r"\+0\.0,\+0\.0")],
)  # fmt: skip
def test_align_chooses_the_transform(frames: Path, tmp_path: Path, align, scale, shift) -> None:
    """The README's ``--align`` (similarity, the default for focus breathing; translation;
    none), which no test gave on the command line: each frame's row shows its transform."""
    proc = stacker("stack", frames, "-o", tmp_path / "o.png", "--align", align)
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split("│")[4:6] for ln in proc.stderr.splitlines() if ln.startswith("│ ")][1:]
    assert len(rows) == 5
    assert all(re.fullmatch(scale, s.strip()) and re.fullmatch(shift, d.strip()) for s, d in rows)


def test_corrupt_frame_is_skipped_with_warning_or_fatal_when_strict(frames, tmp_path) -> None:
    work = tmp_path / "in"
    work.mkdir()
    for f in frames.glob("*.jpg"):
        (work / f.name).write_bytes(f.read_bytes())
    (work / "frame_0004.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    proc = stacker("stack", work, "-o", tmp_path / "out.png")
    assert proc.returncode == 0, proc.stderr
    assert "frame_0004.jpg" in proc.stderr and "not a readable image" in proc.stderr
    assert "stacked 5 of 6 frames" in proc.stdout
    line = one_line_error(stacker("stack", work, "-o", tmp_path / "out2.png", "--strict"))
    assert "frame_0004.jpg" in line and "--strict" in line
    assert not (tmp_path / "out2.png").exists()


def test_frames_of_different_sizes(frames, tmp_path) -> None:
    odd = tmp_path / "odd.jpg"
    cv2.imwrite(str(odd), np.zeros((100, 120, 3), np.uint8))
    line = one_line_error(stacker("stack", frames, odd, "-o", tmp_path / "o.png"))
    assert "odd.jpg: 120x100 differs" in line


def test_fewer_than_two_frames(frames, tmp_path) -> None:
    first = sorted(frames.glob("*.jpg"))[0]
    assert "a stack needs at least two" in one_line_error(
        stacker("stack", first, "-o", tmp_path / "o.png")
    )
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    line = one_line_error(stacker("stack", first, bad, "-o", tmp_path / "o.png"))
    assert "only 1 usable frame" in line


def test_unwritable_output_is_refused_before_any_work(frames, tmp_path) -> None:
    line = one_line_error(stacker("stack", frames, "-o", tmp_path / "missing" / "o.tif"))
    assert "does not exist" in line
    line = one_line_error(stacker("stack", frames, "-o", tmp_path / "o.gif"))
    assert "unknown output format" in line
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert "not writable" in one_line_error(stacker("stack", frames, "-o", ro / "o.tif"))


def test_bad_values_name_themselves(frames, tmp_path) -> None:
    assert "method 'pmax'" in one_line_error(
        stacker("stack", frames, "-o", tmp_path / "o.png", "--method", "pmax")
    )
    assert "no such file or folder" in one_line_error(
        stacker("stack", tmp_path / "nothing-here", "-o", tmp_path / "o.png")
    )
    os.mkfifo(tmp_path / "pipe.jpg")  # was "no such file or folder", though it is there
    assert "pipe.jpg: not an image file (a pipe or a device)" in one_line_error(
        stacker("stack", frames, tmp_path / "pipe.jpg", "-o", tmp_path / "o.png")
    )
    assert "interpolation 'lanczos'" in one_line_error(
        stacker("stack", frames, "-o", tmp_path / "o.png", "--interpolation", "lanczos")
    )
    assert "JPEG quality 0" in one_line_error(
        stacker("stack", frames, "-o", tmp_path / "o.jpg", "--jpeg-quality", "0")
    )
    assert "--order 'backwards'" in one_line_error(
        stacker("stack", frames, "-o", tmp_path / "o.png", "--order", "backwards")
    )


def test_a_folder_name_that_is_not_utf8_is_stacked_and_printed(frames, tmp_path) -> None:
    """Where stdout is strict UTF-8 (a UTF-8 locale: PYTHONIOENCODING stands in for it here), the
    summary naming the outputs was a UnicodeEncodeError after they were written."""
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    odd.mkdir()
    for frame in sorted(frames.glob("*.jpg"))[:3]:
        (odd / frame.name).write_bytes(frame.read_bytes())
    proc = stacker("stack", odd, "-o", odd / "stacked.tif", PYTHONIOENCODING="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert "caf\\udce9/stacked.tif" in proc.stdout


def test_inputs_in_natural_order(tmp_path) -> None:
    for n in (10, 2, 1):
        (tmp_path / f"frame_{n}.jpg").write_bytes(b"")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in collect_inputs([tmp_path])] == [
        "frame_1.jpg", "frame_2.jpg", "frame_10.jpg",
    ]  # fmt: skip


def test_what_is_named_as_a_frame_but_is_no_file_is_named(tmp_path: Path) -> None:
    """A link whose frame stayed behind (a copy from a share), a folder or a pipe named like a
    frame was passed over without a word: a stack one frame short, and nothing said why."""
    for n in (1, 2):
        (tmp_path / f"frame_{n}.jpg").write_bytes(b"")
    (tmp_path / "frame_3.jpg").symlink_to(tmp_path / "gone" / "frame_3.jpg")
    (tmp_path / "frame_4.jpg").mkdir()
    os.mkfifo(tmp_path / "frame_5.jpg")
    notes: list[str] = []
    files = collect_inputs([tmp_path], on_note=notes.append)
    assert [p.name for p in files] == ["frame_1.jpg", "frame_2.jpg"]
    assert len(notes) == 1 and notes[0].startswith(f"{tmp_path}: left out, not image files: ")
    for said in ("frame_3.jpg (a link to nothing)", "frame_4.jpg (a folder)",
                 "frame_5.jpg (a pipe or a device)"):  # fmt: skip
        assert said in notes[0]


def test_a_frame_named_twice_is_stacked_once(frames: Path, tmp_path: Path) -> None:
    first = sorted(frames.glob("*.jpg"))[0]
    (tmp_path / "link.jpg").symlink_to(first)
    notes: list[str] = []
    files = collect_inputs([first, frames, tmp_path / "link.jpg"], on_note=notes.append)
    assert files == sorted(frames.glob("*.jpg"), key=lambda p: p.name)  # where each first came
    link = tmp_path / "link.jpg"
    assert notes == [f"2 files named twice, stacked once: {first}, {link} (stacked as {first})"]
    # the whole command: the folder given twice is six frames, not twelve
    proc = stacker("stack", frames, frames, "-o", tmp_path / "o.tif")
    assert proc.returncode == 0, proc.stderr
    assert "stacked 6 of 6 frames" in proc.stdout
    note = proc.stderr.splitlines()[0]
    assert note.startswith("6 files named twice, stacked once: ") and note.endswith(", ..."), note


def test_stack_with_its_console_on_a_full_disk_writes_its_outputs(
    frames: Path, tmp_path: Path
) -> None:
    """The files are the job: a summary line that cannot be printed (a log on a full disk)
    ended the command in a traceback and exit 1 after writing them."""
    out = tmp_path / "stacked.tif"
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "stacker.cli", "stack", str(frames), "-o", str(out)],
            stdout=full, stderr=full, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0
    assert read_image(out).shape[0] > 200
