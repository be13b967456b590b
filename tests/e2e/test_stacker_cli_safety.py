"""`stacker stack` and `stacker watch` under careless input: outputs never replace inputs,
results are never taken for frames, every refusal is one line before any work."""

from __future__ import annotations

import os
import signal
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from rig.sim.scene import SceneSpec, write_stack
from stacker.errors import StackerError
from stacker.io import read_image
from stacker.metadata import exif_orientation, read_metadata
from stacker.watch import watch_and_stack
from tests.commands import one_line_error, stack_started, stacker
from tests.exif import tag_jpeg

SPEC = SceneSpec(width=320, height=240, seed=5, jpeg_quality=92)


@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    write_stack(folder, SPEC, 5)
    (folder / "synthetic_truth.json").unlink()
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_output_that_is_an_input_is_refused_and_the_frame_kept(frames: Path) -> None:
    before = snapshot(frames)
    line = one_line_error(stacker("stack", frames, "-o", frames / "frame_0003.jpg"))
    assert "frame_0003.jpg: is one of the input frames" in line
    # the same file through a symlink and through a hard link
    (frames.parent / "link.jpg").symlink_to(frames / "frame_0002.jpg")
    os.link(frames / "frame_0004.jpg", frames.parent / "hard.jpg")
    assert "input frames" in one_line_error(
        stacker("stack", frames, "-o", frames.parent / "link.jpg")
    )
    assert "input frames" in one_line_error(
        stacker("stack", frames, "-o", frames.parent / "hard.jpg")
    )
    assert snapshot(frames) == before


@pytest.mark.parametrize(
    ("output", "depth"),
    [("x.png", "x.png"), ("d-preview.jpg", "d.png")],  # a depth.jpg: see the test below
)
def test_outputs_that_collide_are_refused_before_any_work(
    frames: Path, tmp_path: Path, output: str, depth: str
) -> None:
    line = one_line_error(
        stacker("stack", frames, "-o", tmp_path / output, "--depth-map", tmp_path / depth)
    )
    assert "written twice by this run" in line
    assert not (tmp_path / output).exists()


def test_rerun_into_the_frames_folder_leaves_earlier_results_out(frames: Path) -> None:
    for _ in range(2):
        proc = stacker(
            "stack", frames, "-o", frames / "stacked.jpg", "--depth-map", frames / "depth.png"
        )
        assert proc.returncode == 0, proc.stderr
        assert "stacked 5 of 5 frames" in proc.stdout
    assert "left out results of an earlier run: depth-preview.jpg, depth.png, stacked.jpg" in (
        proc.stderr
    )
    # a composite in TIFF is recognised too, and an explicitly named result is taken as given
    proc = stacker("stack", frames, "-o", frames / "again.tif")
    assert proc.returncode == 0 and "stacked 5 of 5 frames" in proc.stdout, proc.stderr
    proc = stacker("stack", frames, "-o", frames.parent / "o.tif")
    assert "again.tif" in proc.stderr and "stacked 5 of 5" in proc.stdout
    # a folder of results alone was "no images in this folder", though it holds images
    results = frames.parent / "results"
    results.mkdir()
    for name in ("stacked.jpg", "again.tif"):
        (results / name).write_bytes((frames / name).read_bytes())
    line = one_line_error(stacker("stack", results, "-o", frames.parent / "sos.tif"))
    assert "results: holds only results of earlier runs; to stack them, name the files" in line
    # a capture session's folder: its results beside its frames/, which are stacked (this
    # error sent the photographer to stack the old composite and depth map)
    (results / "frames").symlink_to(frames, target_is_directory=True)  # not followed
    line = one_line_error(stacker("stack", results, "-o", frames.parent / "sos.tif"))
    assert "holds only results of earlier runs" in line
    (results / "frames").unlink()
    (results / "frames").mkdir()
    for f in sorted(frames.glob("frame*")):
        (results / "frames" / f.name).write_bytes(f.read_bytes())
    proc = stacker("stack", results, "-o", frames.parent / "session.tif")
    assert proc.returncode == 0 and "stacked 5 of 5 frames" in proc.stdout, proc.stderr
    assert f"results: a capture session: stacking its frames, in {results / 'frames'}" in (
        proc.stderr
    )


def test_watch_never_takes_results_of_ours_as_frames(frames: Path, tmp_path: Path) -> None:
    proc = stacker("stack", frames, "-o", frames / "old.jpg", "--depth-map", frames / "old.png")
    assert proc.returncode == 0, proc.stderr
    summary = watch_and_stack(
        frames, frames / "new.jpg", depth_map=frames / "depth.png", idle_timeout=1.0, settle=0.1
    )
    assert summary.status.merged == summary.status.seen == 5
    assert summary.status.rejected == 0
    assert [r.name for r in summary.records] == [f"frame_000{i}.jpg" for i in range(1, 6)]


def test_watch_refuses_an_output_that_would_replace_a_frame(frames: Path) -> None:
    proc = stacker("watch", frames, "-o", frames / "frame_0002.jpg", "--idle-timeout", "1")
    assert "frame in the watched folder" in one_line_error(proc)
    assert read_image(frames / "frame_0002.jpg").shape == (240, 320, 3)


def test_reference_counts_from_one_and_is_checked_up_front(frames: Path, tmp_path: Path) -> None:
    line = one_line_error(stacker("stack", frames, "-o", tmp_path / "o.png", "--reference", "99"))
    assert "--reference 99: there are only 5 frames; give a number from 1 to 5" in line
    assert "count from 1" in one_line_error(
        stacker("stack", frames, "-o", tmp_path / "o.png", "--reference", "0")
    )
    assert not (tmp_path / "o.png").exists()
    last = stacker("stack", frames, "-o", tmp_path / "last.png", "--reference", "last", "--no-crop")
    five = stacker("stack", frames, "-o", tmp_path / "five.png", "--reference", "5", "--no-crop")
    assert last.returncode == five.returncode == 0, last.stderr + five.stderr
    assert np.array_equal(read_image(tmp_path / "last.png"), read_image(tmp_path / "five.png"))
    assert "│ 1 │ frame_0001.jpg" in five.stderr  # the summary table counts from 1 too


def test_reference_frame_that_cannot_be_read_stops_at_once(frames: Path, tmp_path: Path) -> None:
    (frames / "frame_0002.jpg").write_bytes(b"\xff\xd8 broken")
    line = one_line_error(stacker("stack", frames, "-o", tmp_path / "o.png", "--reference", "2"))
    assert "frame_0002.jpg" in line and "--reference" in line
    # an unreadable frame before the reference does not shift which file it names
    proc = stacker("stack", frames, "-o", tmp_path / "o.png", "--reference", "4", "--no-crop")
    assert proc.returncode == 0, proc.stderr
    ref = read_image(frames / "frame_0004.jpg").astype(float)
    out = read_image(tmp_path / "o.png").astype(float)
    other = read_image(frames / "frame_0003.jpg").astype(float)
    assert np.abs(out - ref).mean() < np.abs(out - other).mean()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("folder/", "is a folder; give a file name such as"),
        ("newname", "no file extension"),
        ("/proc/x.tif", "cannot write in /proc"),
        ("/sys/x.tif", "cannot write in /sys"),
    ],
)
def test_unusable_outputs_are_refused_before_any_work(
    frames: Path, tmp_path: Path, target: str, expected: str
) -> None:
    (tmp_path / "folder").mkdir()
    output = target if target.startswith("/") else str(tmp_path / target)
    # The last frame is broken: reading it (work) would warn before the error.
    (frames / "frame_0005.jpg").write_bytes(b"\xff\xd8 broken")
    proc = stacker("stack", frames, "-o", output)
    line = one_line_error(proc)
    assert expected in line and "unknown output format ''" not in line
    assert "not a readable image" not in proc.stderr


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        ("depth.jpg", "depth.jpg: the depth map is a 16-bit PNG; name it depth.png"),
        # The preview's name (d...d-preview.jpg) is longer than the file system takes: it
        # failed once the stack was done, leaving a composite and half a depth map.
        ("d" * 246 + ".png", "bytes, and"),
    ],
)
def test_unusable_depth_map_names_are_refused_before_any_work(
    frames: Path, tmp_path: Path, depth: str, expected: str
) -> None:
    (frames / "frame_0005.jpg").write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "out.tif"
    proc = stacker("stack", frames, "-o", out, "--depth-map", tmp_path / depth)
    assert expected in one_line_error(proc) and "not a readable image" not in proc.stderr
    assert not out.exists()
    with pytest.raises(StackerError, match=expected):
        watch_and_stack(frames, out, depth_map=tmp_path / depth, idle_timeout=0.1)


def test_damaged_tiff_and_raw_frames_are_one_line_each(frames: Path, tmp_path: Path) -> None:
    """libtiff's and tifffile's own log lines came around the warning, and LibRaw's reason
    printed as bytes (b'Input/output error')."""
    tiff = tmp_path / "x_damaged.tif"
    frame = read_image(sorted(frames.glob("*.jpg"))[-1])
    tifffile.imwrite(tiff, frame[..., ::-1], photometric="rgb", software="x" * 40)
    data = bytearray(tiff.read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    for pos in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        if struct.unpack_from("<H", data, pos)[0] == 305:  # Software: its text beyond the end
            struct.pack_into("<I", data, pos + 8, 10**8)
    tiff.write_bytes(bytes(data))
    raw = tmp_path / "y_empty.dng"
    raw.write_bytes(b"")
    proc = stacker("stack", frames, tiff, raw, "-o", tmp_path / "out.tif")
    assert proc.returncode == 0, proc.stderr
    for noise in ("TIFF_Error", "TIFF_Warning", "[ERROR", "[ WARN", "raised TiffFileError", "b'"):
        assert noise not in proc.stderr, proc.stderr
    assert f"{raw}: " in proc.stderr


FRAMES = 400


@pytest.mark.slow
def test_ctrl_c_says_what_was_not_written(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    # Enough frames that Ctrl-C a second into the stack lands mid-stack on a fast machine too (the
    # pipelined stacker merges a 2 MP frame in well under a tenth of a second): 40 rendered
    # frames, each under ten names with a comment of its own, stand in for a stack of 400
    # (not links, nor copies: the same file, or the same bytes, under two names is stacked once).
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    write_stack(rendered, SceneSpec(width=1600, height=1200, seed=2), 40)
    for k in range(FRAMES):
        data = (rendered / f"frame_{k % 40 + 1:04d}.jpg").read_bytes()
        comment = b"copy %d" % k
        marked = data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]
        (big / f"frame_{k + 1:04d}.jpg").write_bytes(marked)
    out, log = tmp_path / "out.tif", tmp_path / "stderr.txt"
    proc = stack_started(big, out, log)
    time.sleep(1.0)  # into the stack
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    err = log.read_text()
    assert proc.returncode == 130, err
    assert not err.startswith("\n") and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("stacker: interrupted after ")
    assert f"of {FRAMES + 1} frames; nothing written ({out} not created)" in err  # + the broken
    assert not out.exists()


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )  # fmt: skip


def test_huge_and_tiny_frames_are_reported_not_tracebacks(frames: Path, tmp_path: Path) -> None:
    (frames / "frame_0002.png").write_bytes(png_header(60000, 60000))
    proc = stacker("stack", frames, "-o", tmp_path / "o.png")
    assert proc.returncode == 0, proc.stderr
    assert "frame_0002.png: declares 60000x60000 pixels" in proc.stderr
    for w, h in [(1, 1), (2, 2), (3, 3), (1, 600), (2, 600), (600, 2)]:
        tiny = tmp_path / f"tiny{w}x{h}"
        tiny.mkdir()
        for i in range(3):
            cv2.imwrite(str(tiny / f"t{i}.png"), np.full((h, w, 3), 40 * i, np.uint8))
        line = one_line_error(stacker("stack", tiny, "-o", tmp_path / "t.png"))
        assert f"{w}x{h} pixels is too small to stack" in line


def test_watch_keeps_watching_after_huge_and_tiny_files(frames: Path, tmp_path: Path) -> None:
    hot = tmp_path / "hot"
    hot.mkdir()
    names = sorted(p.name for p in frames.iterdir())
    (hot / "a0.png").write_bytes(png_header(60000, 60000))
    cv2.imwrite(str(hot / "a1.png"), np.zeros((2, 600, 3), np.uint8))
    for name in names:
        (hot / f"b{name}").write_bytes((frames / name).read_bytes())
    warnings: list[str] = []
    summary = watch_and_stack(
        hot, tmp_path / "o.jpg", idle_timeout=1.0, settle=0.1, on_warning=warnings.append
    )
    assert summary.status.merged == 5
    assert any("declares 60000x60000" in w for w in warnings)
    assert any("too small to stack" in w for w in warnings)


def test_frames_whose_exif_orientation_flipped_still_stack(frames: Path, tmp_path: Path) -> None:
    """A camera pointing down tags some frames as turned although their pixels are not."""
    plain = stacker("stack", frames, "-o", tmp_path / "plain.png")
    assert plain.returncode == 0, plain.stderr
    for name in ("frame_0002.jpg", "frame_0004.jpg"):
        (frames / name).write_bytes(tag_jpeg((frames / name).read_bytes(), 6))
    proc = stacker("stack", frames, "-o", tmp_path / "tagged.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("differs from the first frame's 1") == 2
    assert np.array_equal(read_image(tmp_path / "plain.png"), read_image(tmp_path / "tagged.png"))
    # the first frame says "turned": the result is turned like it, and says "upright"
    first = frames / "frame_0001.jpg"
    first.write_bytes(tag_jpeg(first.read_bytes(), 8))
    proc = stacker("stack", frames, "-o", tmp_path / "turned.jpg")
    assert proc.returncode == 0, proc.stderr
    out = read_image(tmp_path / "turned.jpg")
    assert out.shape[:2] == read_image(tmp_path / "plain.png").shape[:2][::-1]
    assert exif_orientation(read_metadata(tmp_path / "turned.jpg").exif) == 1
