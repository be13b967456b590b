"""RAW frames all the way: synthetic Bayer DNGs stacked in linear light into a linear DNG.

The frames are real DNG files read by LibRaw (rawpy); the results are checked against the
synthetic scene's truth in linear light, and the DNG's tags with tifffile and exiftool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile

from evaluation.scoring import coverage_mask, psnr, to_reference
from rig.sim.bayer import WB_MULTIPLIERS, linear_truth, write_raw_stack
from rig.sim.scene import SceneSpec, SyntheticStack, write_stack
from stacker.io import read_image
from stacker.raw import read_raw_linear
from stacker.watch import watch_and_stack
from tests.commands import one_line_error, stacker

W, H, N = 320, 240, 6
SPEC = SceneSpec(width=W, height=H, seed=7, bit_depth=16)
LINEAR_PSNR_BAR = 31.0  # dB, linear light; measured 32.8 (reference last) and 34.7 (first)


@pytest.fixture(scope="module")
def raw_frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_raw_stack(folder, SPEC, N, layout="GRBG")
    return folder


@pytest.fixture(scope="module")
def truth(raw_frames: Path) -> tuple[np.ndarray, np.ndarray]:
    stack = SyntheticStack.from_folder(raw_frames)
    return linear_truth(stack) / 65535.0, coverage_mask(stack.transforms(), (W, H), inset_px=6)


def linear_psnr(image: np.ndarray, truth: tuple[np.ndarray, np.ndarray]) -> float:
    return psnr(image.astype(np.float32) / 65535.0, truth[0].astype(np.float32), truth[1])


def exiftool(path: Path) -> dict[str, object]:
    out = subprocess.run(["exiftool", "-j", "-G1", "-n", str(path)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)[0]


@pytest.mark.slow
def test_stack_of_nefs_style_raws_gives_a_linear_dng_close_to_the_truth(
    raw_frames: Path, truth, tmp_path: Path
) -> None:
    out, depth = tmp_path / "stacked.dng", tmp_path / "depth.png"
    proc = stacker("stack", *sorted(raw_frames.glob("*.dng")), "-o", out, "--depth-map", depth,
                   "--no-crop", "--reference", "last")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"stacked {N} of {N} frames" in proc.stdout and depth.exists()
    composite = read_raw_linear(out)  # LibRaw reads it back, in linear light
    assert composite.shape == (H, W, 3)
    # --reference last: the composite has the last frame's geometry
    stack = SyntheticStack.from_folder(raw_frames)
    to_last = np.linalg.inv(stack.transforms()[-1])
    truth_last = (
        to_reference(truth[0], to_last, (W, H)),
        coverage_mask([t @ to_last for t in stack.transforms()], (W, H), inset_px=8),
    )
    single = read_raw_linear(raw_frames / f"frame_{N:04d}.dng")
    ours, one = linear_psnr(composite, truth_last), linear_psnr(single, truth_last)
    assert ours >= LINEAR_PSNR_BAR and ours > one + 5.0, (ours, one)

    with tifffile.TiffFile(out) as tif:
        tags = {t.name: t.value for t in tif.pages[0].tags.values()}  # type: ignore[union-attr]
    assert tags["PhotometricInterpretation"] == 34892 and tags["BitsPerSample"] == (16, 16, 16)
    assert "ColorMatrix1" in tags and "AsShotNeutral" in tags

    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl (.ci/run does)")
    info = exiftool(out)
    assert info["IFD0:PhotometricInterpretation"] == 34892
    assert info["IFD0:Make"] == "stackrig" and info["IFD0:Model"] == "Synthetic Bayer"
    assert info["IFD0:UniqueCameraModel"] == "stackrig Synthetic Bayer"
    assert info["IFD0:DNGVersion"] == "1 4 0 0" and info["IFD0:Orientation"] == 1
    assert info["IFD0:BlackLevel"] == "0 0 0" and info["IFD0:WhiteLevel"] == "65535 65535 65535"
    neutral = [float(v) for v in str(info["IFD0:AsShotNeutral"]).split()]
    assert neutral == pytest.approx([1 / m for m in WB_MULTIPLIERS], rel=1e-5)
    assert len(str(info["IFD0:ColorMatrix1"]).split()) == 9
    assert info["IFD0:CalibrationIlluminant1"] == 21
    # the reference frame's EXIF: --reference last is frame 6, shot at 12:00:05
    assert info["ExifIFD:DateTimeOriginal"] == "2026:01:01 12:00:05"
    assert info["ExifIFD:ISO"] == 100 and info["ExifIFD:FNumber"] == 8
    assert info["ExifIFD:LensModel"] == "Synthetic Macro 100mm"
    check = subprocess.run(["exiftool", "-validate", "-warning", "-a", str(out)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert "Validate                        : OK" in check.stdout, check.stdout


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".tif", ".png", ".jpg"])
def test_rendered_outputs_from_raw_frames(raw_frames: Path, truth, tmp_path: Path, ext) -> None:
    out = tmp_path / f"stacked{ext}"
    proc = stacker("stack", raw_frames, "-o", out, "--no-crop")
    assert proc.returncode == 0, proc.stderr
    shown = read_image(out).astype(np.float64) / (255.0 if ext == ".jpg" else 65535.0)
    # the synthetic camera renders back to the scene: sRGB curve of the linear truth
    scene = np.clip(truth[0] * np.array(WB_MULTIPLIERS[::-1]), 0, 1)
    expected = np.where(scene <= 0.0031308, 12.92 * scene, 1.055 * scene ** (1 / 2.4) - 0.055)
    assert psnr(shown, expected, truth[1]) > 30.0
    # the reference RAW's camera and exposure go with the rendering (they were left behind)
    frame, result = exiftool(raw_frames / "frame_0001.dng"), exiftool(out)
    for key in ("Make", "Model", "ExposureTime", "FNumber", "ISO"):
        theirs = [v for k, v in frame.items() if k.endswith(":" + key)]
        ours = [v for k, v in result.items() if k.endswith(":" + key)]
        assert theirs and ours and ours[0] == theirs[0], (key, theirs, ours)
    # as EXIF 2.32 wants it: the version, sRGB, the result's own size (exiftool -validate
    # named six missing tags of the JPEG's Exif IFD, three of the TIFF's)
    assert result["ExifIFD:ExifVersion"] == "0232" and result["ExifIFD:ColorSpace"] == 1
    if ext != ".tif":
        size = read_image(out).shape[1::-1]
        assert (result["ExifIFD:ExifImageWidth"], result["ExifIFD:ExifImageHeight"]) == size
    check = subprocess.run(["exiftool", "-validate", "-warning", "-a", str(out)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    warnings = [line for line in check.stdout.splitlines() if line.startswith("Warning")]
    deflate = "Invalid value for IFD0 tag 0x0103 Compression"  # EXIF lists no Deflate; TIFF does
    assert all(deflate in line for line in warnings), check.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tag", "value"),
    [(50721, (1, 1) * 9), (50721, (0, 1) * 9), (50728, (0, 1, 1, 1, 1, 1))],
    ids=["singular-colour-matrix", "zero-colour-matrix", "zero-in-as-shot-neutral"],
)
def test_a_reference_frame_with_an_unusable_colour_profile_still_gives_results(
    raw_frames: Path, tmp_path: Path, tag: int, value: tuple[int, ...]
) -> None:
    """A singular ColorMatrix1 was a LinAlgError traceback once every frame was stacked, and
    a zero in AsShotNeutral gave a black JPEG (and a refused DNG): the colour matrix falls back
    to treating camera RGB as sRGB, as for a camera LibRaw has no matrix for, and the neutral
    to no white balance."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for frame in sorted(raw_frames.glob("*.dng"))[:3]:
        shutil.copy(frame, frames)
    with tifffile.TiffFile(frames / "frame_0001.dng", mode="r+b") as tif:
        tif.pages[0].tags[tag].overwrite(value)
    for ext in (".jpg", ".dng"):
        proc = stacker("stack", frames, "-o", tmp_path / f"o{ext}")
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert read_image(tmp_path / "o.jpg").mean() > 20


@pytest.mark.slow
def test_a_raw_plus_jpeg_folder_stacks_one_file_of_each_shot(
    raw_frames: Path, tmp_path: Path
) -> None:
    """A folder shot RAW+JPEG stopped with "8-bit differs from the stack's 16-bit frames; do not
    mix bit depths": every shot's two files were both stacked. One of each is taken now, as a
    watch takes it: the RAW for a DNG composite (or with --prefer raw), else the JPEG; a RAW
    left alone among JPEGs is left out, saying so, and so many of them that they are what was
    shot are refused before any work, saying how to stack them."""
    pairs = tmp_path / "pairs"
    shutil.copytree(raw_frames, pairs)
    write_stack(tmp_path / "jpegs", SceneSpec(width=W, height=H, seed=7), 2)
    for jpeg in (tmp_path / "jpegs").glob("*.jpg"):
        shutil.copy(jpeg, pairs / jpeg.name.upper())  # FRAME_0001.JPG beside frame_0001.dng...

    proc = stacker("stack", pairs, "-o", tmp_path / "out.dng")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"{pairs}: 2 RAW+JPEG pairs: stacking the RAW file of each (--prefer jpeg and a .tif, "
        ".png or .jpg output for the other)"  # --prefer jpeg alone is refused with a .dng
    ) in proc.stderr
    assert f"{N} frames" in proc.stdout + proc.stderr or (tmp_path / "out.dng").exists()
    proc = stacker("stack", pairs, "--prefer", "raw", "-o", tmp_path / "raw.tif")
    assert proc.returncode == 0 and read_image(tmp_path / "raw.tif").dtype == np.uint16

    proc = stacker("stack", pairs, "-o", tmp_path / "out.tif")  # the JPEGs, and four RAWs alone
    assert proc.returncode == 2 and one_line_error(proc) == (
        f"stacker: error: {pairs}: 4 RAW files have no JPEG partner and 2 JPEG files are to be "
        "stacked: a stack is of one kind; for the RAW files, --prefer raw"
    ), proc.stderr
    (pairs / "FRAME_0002.JPG").unlink()  # a RAW+JPEG stack whose one JPEG did not arrive
    write_stack(tmp_path / "more", SceneSpec(width=W, height=H, seed=7), 6)
    for name in ("frame_0003", "frame_0004", "frame_0005", "frame_0006"):
        shutil.copy(tmp_path / "more" / f"{name}.jpg", pairs / f"{name.upper()}.JPG")
    proc = stacker("stack", pairs, "-o", tmp_path / "out.tif")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"{pairs}: left out, RAW files whose shot has no JPEG file (a stack is of one kind): "
        "frame_0002.dng"
    ) in proc.stderr


def test_dng_from_rendered_frames_is_a_one_line_error(tmp_path: Path) -> None:
    frames = tmp_path / "jpegs"
    write_stack(frames, SceneSpec(width=160, height=120, seed=1), 3)
    proc = stacker("stack", frames, "-o", tmp_path / "out.dng")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("stacker: error: ")]
    assert len(errors) == 1 and "needs RAW frames" in errors[0], proc.stderr
    assert not (tmp_path / "out.dng").exists()


@pytest.mark.slow
def test_mixing_raw_and_rendered_frames_is_refused(raw_frames: Path, tmp_path: Path) -> None:
    tif = tmp_path / "tif"
    write_stack(tif, SPEC, 2)
    files = [raw_frames / "frame_0001.dng", tif / "frame_0002.tif"]
    proc = stacker("stack", *files, "-o", tmp_path / "out.tif")
    assert proc.returncode != 0 and "stack RAW and JPEG/TIFF frames separately" in proc.stderr


def test_watch_stacks_raw_frames_into_a_dng(raw_frames: Path, truth, tmp_path: Path) -> None:
    hot = tmp_path / "hot"
    shutil.copytree(raw_frames, hot)
    # Frames already there a while: a lone RAW written moments ago is held for its JPEG
    # partner (pair wait 2 s), longer than this watch's idle timeout.
    past = time.time() - 60
    for frame in hot.iterdir():
        os.utime(frame, (past, past))
    out = tmp_path / "live.dng"
    summary = watch_and_stack(hot, out, idle_timeout=1.0, settle=0.2, crop=False)
    assert summary.status.merged == N
    assert linear_psnr(read_raw_linear(out), truth) >= LINEAR_PSNR_BAR


@pytest.mark.slow
def test_a_dng_watch_stacks_the_raw_of_each_pair_and_keeps_rendered_frames_out(
    raw_frames: Path, tmp_path: Path
) -> None:
    """A watch into a DNG took the JPEG of every RAW+JPEG pair (the default) and failed at its
    first write; a lone JPEG, merged first, did the same."""
    hot = tmp_path / "hot"
    shutil.copytree(raw_frames, hot)
    write_stack(tmp_path / "jpegs", SceneSpec(width=W, height=H, seed=7), N)
    for jpeg in (tmp_path / "jpegs").glob("*.jpg"):
        shutil.copy(jpeg, hot / jpeg.name)  # frame_0001.jpg beside frame_0001.dng...
    shutil.copy(hot / "frame_0001.jpg", hot / "a_lone.jpg")  # sorts first
    warnings: list[str] = []
    out = tmp_path / "live.dng"
    summary = watch_and_stack(
        hot, out, idle_timeout=1.0, settle=0.2, crop=False, on_warning=warnings.append
    )
    assert (summary.status.merged, summary.status.skipped) == (N, N)
    assert summary.status.rejected == 1
    assert [w for w in warnings if "a_lone.jpg: not a RAW frame" in w], warnings
    assert read_raw_linear(out).shape[:2] == (H, W)


def test_a_dng_watch_told_to_prefer_jpeg_is_refused_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "hot").mkdir()
    proc = stacker("watch", tmp_path / "hot", "-o", tmp_path / "o.dng", "--prefer", "jpeg")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--prefer jpeg with o.dng: a DNG composite is made from RAW frames" in proc.stderr


def _shown_like_the_rendering(shown: np.ndarray, linear: np.ndarray, first: Path) -> None:
    """``shown`` (a live preview, 8-bit) is the rendering of the composite ``linear`` with the
    first frame's profile, at the preview's size: not linear camera RGB, dark and green."""
    from stacker.raw import read_profile, render

    rendered = render(linear, read_profile(first))
    small = cv2.resize(rendered, shown.shape[1::-1], interpolation=cv2.INTER_AREA) / 257.0
    assert np.abs(shown.reshape(-1, 3).mean(0) - small.reshape(-1, 3).mean(0)).max() < 3.0
    b, g, r = shown.reshape(-1, 3).mean(0)
    assert g - (b + r) / 2 < 15, (b, g, r)  # linear camera RGB: (62, 112, 54)


def test_the_live_preview_of_a_raw_session_is_rendered(raw_frames: Path) -> None:
    """The session's page showed a RAW stack as linear camera RGB, dark and green: no white
    balance, no colour matrix, no sRGB curve."""
    from rig.session.worker import StackJob, StackWorker
    from stacker.stack import Stacker

    shown: list[Any] = []
    stacker_ = Stacker()
    worker = StackWorker(stacker_, on_merged=lambda j, r, p: shown.append(p.composite))
    worker.start()
    frames = sorted(raw_frames.glob("*.dng"))
    for i, path in enumerate(frames, 1):
        worker.submit(StackJob(i, path))
    assert worker.finish(timeout=120) and worker.error is None
    _shown_like_the_rendering(shown[-1], stacker_.result(crop=False), frames[0])
    composite, _ = stacker_.crop(0, 0, W, H)  # the 100 % crops too
    _shown_like_the_rendering(composite, stacker_.result(crop=False), frames[0])


def test_the_live_preview_of_a_raw_watch_is_rendered(raw_frames: Path, tmp_path: Path) -> None:
    hot = Path(shutil.copytree(raw_frames, tmp_path / "hot"))
    seen: list[Any] = []
    watch_and_stack(hot, tmp_path / "live.dng", idle_timeout=1.0, settle=0.2,
                    on_frame=lambda f: seen.append(f.stacker))  # fmt: skip
    stacker_ = seen[-1]
    preview = stacker_.preview()
    assert preview is not None
    _shown_like_the_rendering(preview, stacker_.result(crop=False), hot / "frame_0001.dng")


@pytest.mark.slow
def test_a_watch_begun_with_a_raw_whose_jpeg_came_late_stacks_the_raw_of_every_shot(
    raw_frames: Path, tmp_path: Path
) -> None:
    """A RAW that lands more than the pair wait before its JPEG (a busy camera, a slow link,
    Syncthing's random order) is stacked alone and begins a RAW stack; every later shot's JPEG,
    taken as the pair rule says for a .tif, was refused as a rendered frame in it: one frame
    of four stacked."""
    hot = tmp_path / "hot"
    hot.mkdir()
    write_stack(tmp_path / "jpegs", SceneSpec(width=W, height=H, seed=7), 4)

    def camera() -> None:
        time.sleep(0.5)
        shutil.copy(raw_frames / "frame_0001.dng", hot / "IMG_0001.DNG")
        time.sleep(3.0)  # past the pair wait: the RAW is stacked alone
        shutil.copy(tmp_path / "jpegs" / "frame_0001.jpg", hot / "IMG_0001.JPG")
        for i in (2, 3, 4):
            time.sleep(0.8)
            shutil.copy(raw_frames / f"frame_{i:04d}.dng", hot / f"IMG_{i:04d}.DNG")
            time.sleep(0.2)
            shutil.copy(tmp_path / "jpegs" / f"frame_{i:04d}.jpg", hot / f"IMG_{i:04d}.JPG")

    warnings: list[str] = []
    shooter = threading.Thread(target=camera)
    shooter.start()
    summary = watch_and_stack(
        hot, tmp_path / "live.tif", idle_timeout=4.0, settle=0.2, on_warning=warnings.append
    )
    shooter.join()
    assert summary.status.merged == 4, warnings
    given_way = [w for w in warnings if "the RAW file of its shot is stacked instead" in w]
    assert len(given_way) == 3, warnings
    assert not [w for w in warnings if "written again" in w], warnings


def test_a_raw_frame_zero_filled_past_where_its_copy_reached_is_left_out(
    raw_frames: Path, tmp_path: Path
) -> None:
    """A copy set to its full size before its content arrived (Samba does so) ends in zeros,
    which LibRaw decodes without a word: the frame was merged with a wrong alignment and the
    good frames after it rejected against it. The hot folder already refused such a file; the
    stack of a folder now does too."""
    from stacker.offline import collect_inputs, stack_files

    folder = tmp_path / "copied"
    shutil.copytree(raw_frames, folder)
    damaged = folder / "frame_0002.dng"
    data = bytearray(damaged.read_bytes())
    cut = len(data) // 2
    data[cut:] = bytes(len(data) - cut)
    damaged.write_bytes(bytes(data))
    run = stack_files(collect_inputs([folder]), tmp_path / "out.tif")
    assert run.skipped == [
        (damaged, f"{damaged}: RAW file ends in zero bytes (still being copied?)")
    ]
    assert run.stacker.frames_merged == N - 1
