"""EXIF/TIFF orientation: frames read as viewers show them, and all frames of a stack alike."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from stacker.io import OrientedReader, apply_orientation, decode_image, read_image
from stacker.metadata import file_orientation
from tests.exif import tag_jpeg


def tiff(img: np.ndarray, value: int) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(
        out, img[:, :, ::-1], photometric="rgb", extratags=[(274, "H", 1, value, True)]
    )
    return out.getvalue()


@pytest.fixture()
def pixels() -> np.ndarray:
    img = np.zeros((24, 40, 3), np.uint8)
    img[:6, :10] = (255, 0, 0)  # a blue corner, top left
    img[-4:, -8:] = (0, 0, 255)  # a red one, bottom right
    return img


@pytest.mark.parametrize("value", range(1, 9))
def test_apply_orientation_turns_as_opencv_and_viewers_do(
    tmp_path: Path, pixels: np.ndarray, value: int
) -> None:
    png = cv2.imencode(".png", pixels)[1].tobytes()
    raw_jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    for name, data in (("f.jpg", tag_jpeg(raw_jpeg, value)), ("f.tif", tiff(pixels, value))):
        path = tmp_path / name
        path.write_bytes(data)
        assert file_orientation(path) == value
        stored = read_image(path, orientation=1)
        shown = read_image(path)
        assert np.array_equal(apply_orientation(stored, value), shown), (name, value)
        by_opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(by_opencv, shown), (name, value)
        # From the bytes alone, as the station decodes a file it opened through no link: the
        # name is never opened (here it does not even exist).
        assert np.array_equal(decode_image(data, tmp_path / "gone" / name), shown), (name, value)
        assert shown.shape[:2] == (pixels.shape[:2][::-1] if value >= 5 else pixels.shape[:2])
    (tmp_path / "p.png").write_bytes(png)
    assert file_orientation(tmp_path / "p.png") == 1


def test_reader_keeps_the_first_frames_orientation(tmp_path: Path, pixels: np.ndarray) -> None:
    raw = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    (tmp_path / "1.jpg").write_bytes(tag_jpeg(raw, 6))
    (tmp_path / "2.jpg").write_bytes(tag_jpeg(raw, 1))  # the sensor flipped its mind
    (tmp_path / "3.jpg").write_bytes(raw)  # no EXIF at all
    reader = OrientedReader()
    first, note = reader.read(tmp_path / "1.jpg")
    assert note is None and first.shape[:2] == (40, 24)
    for name in ("2.jpg", "3.jpg"):
        image, note = reader.read(tmp_path / name)
        assert np.array_equal(image, first)
        assert note is not None and "orientation 1 differs from the first frame's 6" in note
    # upside down (1 and 3, 6 and 8): the same size either way, and it aligned with nothing
    for first_tag, flipped in ((1, 3), (6, 8), (3, 1)):
        (tmp_path / "a.jpg").write_bytes(tag_jpeg(raw, first_tag))
        (tmp_path / "b.jpg").write_bytes(tag_jpeg(raw, flipped))
        reader = OrientedReader()
        first, _ = reader.read(tmp_path / "a.jpg")
        image, note = reader.read(tmp_path / "b.jpg")
        assert np.array_equal(image, first), (first_tag, flipped)
        assert note is not None and f"orientation {flipped} differs" in note
    # a frame whose pixels really are turned, with the tag that undoes it, is fine as it is
    turned = cv2.imencode(".jpg", np.rot90(pixels, 1), [cv2.IMWRITE_JPEG_QUALITY, 100])[1]
    (tmp_path / "4.jpg").write_bytes(tag_jpeg(turned.tobytes(), 6))
    reader = OrientedReader()
    reader.read(tmp_path / "3.jpg")
    image, note = reader.read(tmp_path / "4.jpg")
    assert note is None and image.shape == pixels.shape


@pytest.mark.parametrize(("first", "other"), [(6, 1), (1, 3), (8, 6)])
def test_reader_keeps_the_first_raw_frames_orientation(
    tmp_path: Path, first: int, other: int
) -> None:
    """RAW frames were read each in its own orientation: a camera pointing straight down that
    flipped the tag of one frame stopped the stack (a quarter turn: sizes differ) or had the
    frame rejected (upside down, it aligned with nothing), where a JPEG's was read like the
    first frame's."""
    rawpy = pytest.importorskip("rawpy")
    from rig.sim.bayer import encode_bayer_dng
    from stacker.raw import read_raw_linear

    scene = np.zeros((32, 48, 3), np.uint16)
    scene[:8, :12] = (60000, 20000, 20000)  # a blue corner, top left
    scene[-6:, -10:] = (20000, 20000, 60000)  # a red one, bottom right
    paths = []
    for name, value in (("1.dng", first), ("2.dng", other)):
        path = tmp_path / name
        path.write_bytes(encode_bayer_dng(scene))
        with tifffile.TiffFile(path, mode="r+b") as tif:
            tif.pages[0].tags[274].overwrite(value)
        paths.append(path)
    with rawpy.imread(str(paths[1])) as raw:
        assert raw.sizes.flip != {1: 0, 3: 3, 6: 6, 8: 5}[first]  # LibRaw sees the tag
    reader = OrientedReader()
    image, note = reader.read(paths[0])
    assert note is None
    turned, note = reader.read(paths[1])
    assert np.array_equal(turned, image)  # the same stored pixels, read the same way
    assert note is not None and f"EXIF orientation {other} differs" in note
    assert f"first frame's {first}" in note
    again, note = reader.read(paths[0])
    assert note is None and np.array_equal(again, read_raw_linear(paths[0]))


def test_a_frame_turned_to_the_first_frame_s_orientation_and_kept_out_says_so(
    tmp_path: Path,
) -> None:
    """A frame whose EXIF says upside down, after an upright first frame, is read like the
    first frame and then does not align: its rejection said only "alignment score -0.99",
    the orientation note that explains it was overwritten."""
    from stacker.offline import stack_files

    rng = np.random.default_rng(5)
    img = (cv2.GaussianBlur(rng.random((120, 160, 3)), (0, 0), 2) * 255).astype(np.uint8)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    upright = tag_jpeg(
        cv2.imencode(".jpg", img[::-1, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), 3
    )
    files = []
    for name, content in (("f1.jpg", data), ("f2.jpg", upright), ("f3.jpg", data)):
        (tmp_path / name).write_bytes(content)
        files.append(tmp_path / name)
    warnings: list[str] = []
    stack_files(files, tmp_path / "out.tif", on_frame=lambda p, r, w: w and warnings.append(w))
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{files[1]}: not merged: ")
    assert "; EXIF orientation 3 differs from the first frame's 1" in warnings[0]
