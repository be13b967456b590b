"""Frame I/O: bit depths, formats, atomic writes and metadata carry-over."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from rig.sim.scene import SceneSpec, write_stack
from stacker.errors import StackerError, UnreadableImageError
from stacker.io import (
    atomic_write_bytes,
    check_writable_output,
    decode_image,
    encode_image,
    header_size,
    read_image,
    truncation,
    write_image,
)
from stacker.metadata import Metadata, embed_metadata, read_metadata, upright_exif
from tests.exif import camera_exif, exif, webp_with

ICC = b"\x00\x00\x02\x0cfake\x02\x10\x00\x00mntrRGB XYZ " + b"fake-icc-profile" * 40
"""Stands in for an ICC profile: what is read of one is its header's colour space (RGB)."""


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_sixteen_bits_round_trip(tmp_path: Path, ext: str) -> None:
    img = (np.random.default_rng(0).random((30, 40, 3)) * 65535).astype(np.uint16)
    p = write_image(tmp_path / f"x{ext}", img)
    back = read_image(p)
    assert back.dtype == np.uint16 and np.array_equal(back, img)


def test_jpeg_is_eight_bit(tmp_path: Path) -> None:
    img = np.full((16, 16, 3), 40000, np.uint16)
    back = read_image(write_image(tmp_path / "x.jpg", img, jpeg_quality=100))
    assert back.dtype == np.uint8 and abs(int(back.mean()) - 156) <= 1


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_exif_and_icc_carried_and_orientation_reset(tmp_path: Path, ext: str) -> None:
    meta = Metadata(exif=exif(6), icc=ICC)
    src = tmp_path / f"src{ext}"
    img = np.zeros((8, 8, 3), np.uint8)
    from stacker.io import encode_image

    atomic_write_bytes(src, encode_image(img, ext, metadata=meta))
    got = read_metadata(src)
    assert got.icc == ICC
    assert got.exif == upright_exif(meta.exif)  # orientation now 1: pixels are already upright
    assert got.exif != meta.exif
    out = write_image(tmp_path / f"out{ext}", img, metadata_from=src)
    assert read_metadata(out) == got
    assert read_image(out).shape == (8, 8, 3)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_result_carries_no_thumbnail_and_its_own_pixel_size(
    tmp_path: Path, order: str, ext: str
) -> None:
    """The reference frame's thumbnail (in the frame's own orientation) and sensor size went
    with the result: thumbnail views showed it sideways, and it claimed 6000x4000 pixels."""
    from stacker.tiff_exif import _exif_entries

    src = tmp_path / "frame.jpg"  # as the camera wrote it
    image = np.zeros((30, 40, 3), np.uint8)
    payload = b"Exif\0\0" + camera_exif(order, sensor=(6000, 4000))
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    src.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
                    + jpeg[2:])  # fmt: skip
    before = read_metadata(src).exif
    assert before is not None and struct.unpack_from(order + "I", before, 8 + 2 + 12 * 5)[0]
    out = write_image(tmp_path / f"out{ext}", image, metadata_from=src)
    after = read_metadata(out).exif
    assert after is not None
    assert struct.unpack_from(order + "I", after, 8 + 2 + 12 * 5)[0] == 0  # no IFD1
    _, exif_ifd = _exif_entries(after)
    size = {tag: struct.unpack("<" + ("H" if kind == 3 else "I"), value)[0]
            for tag, kind, _, value in exif_ifd if tag in (0xA002, 0xA003)}  # fmt: skip
    assert size == {0xA002: 40, 0xA003: 30}
    assert b"Canon EOS 80D" in after and b"EF100mm f/2.8L Macro IS USM" in after


@pytest.mark.parametrize("ext", [".jpg", ".png"])
@pytest.mark.parametrize("firmware", ["Firmware Version 1.8.1", "V1.0"])
def test_a_result_does_not_name_the_camera_s_firmware_as_its_software(
    tmp_path: Path, ext: str, firmware: str
) -> None:
    """The frame's IFD0 Software (the camera's firmware) was carried into JPEG and PNG
    results, which then said they were made by it (a PNG said stackrig in its own chunk as
    well). It is replaced where stackrig's name fits, and blanked where it does not."""
    frame = tmp_path / "frame.jpg"
    data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    payload = b"Exif\x00\x00" + camera_exif(software=firmware)
    frame.write_bytes(
        data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    )
    assert firmware.encode() in (read_metadata(frame).exif or b"")
    out = write_image(tmp_path / f"out{ext}", np.zeros((8, 8, 3), np.uint8),
                      metadata_from=frame, software="stackrig")  # fmt: skip
    carried = read_metadata(out).exif or b""
    assert firmware.encode() not in carried and b"EOS 80D" in carried
    assert (b"stackrig\0" in carried) == (len(firmware) >= len("stackrig"))


def test_a_bad_or_oversized_icc_profile_is_not_carried(tmp_path: Path) -> None:
    """An iCCP chunk without its NUL, or a JPEG's ICC segment cut after its name, was a
    traceback when the frame was read; an iCCP that unpacks beyond what a JPEG can hold (a
    400 MB profile from a 0.5 MB PNG) was carried into a huge TIFF, or made the JPEG write
    fail."""
    from stacker.io import encode_image
    from stacker.metadata import MAX_ICC_BYTES, _png_chunk

    image = np.zeros((8, 8, 3), np.uint8)
    png = encode_image(image, ".png")
    ihdr_end = 8 + 12 + 13
    huge = b"ICC Profile\x00\x00" + zlib.compress(b"\0" * (MAX_ICC_BYTES + 1))
    jpeg = encode_image(image, ".jpg")
    cut = b"ICC_PROFILE\x00"  # an APP2 segment that ends before its number: an IndexError
    (tmp_path / "cut.jpg").write_bytes(jpeg[:2] + b"\xff\xe2\x00\x0e" + cut + jpeg[2:])
    for name, payload in [("nonul.png", b"abc"), ("huge.png", huge), ("cut.jpg", b"")]:
        frame = tmp_path / name
        if payload:
            frame.write_bytes(png[:ihdr_end] + _png_chunk(b"iCCP", payload) + png[ihdr_end:])
        assert read_metadata(frame).icc is None
        assert read_image(frame).shape == (8, 8, 3)
        for ext in (".jpg", ".tif"):
            out = write_image(tmp_path / f"{name}{ext}", image, metadata_from=frame)
            assert out.stat().st_size < 100_000 and read_metadata(out).icc is None


def test_tiff_keeps_icc(tmp_path: Path) -> None:
    src = tmp_path / "src.png"
    from stacker.io import encode_image

    atomic_write_bytes(src, encode_image(np.zeros((8, 8, 3), np.uint8), ".png",
                                         metadata=Metadata(icc=ICC)))  # fmt: skip
    out = write_image(tmp_path / "o.tif", np.zeros((8, 8, 3), np.uint16), metadata_from=src)
    assert read_metadata(out).icc == ICC
    with tifffile.TiffFile(out) as tif:  # of type UNDEFINED (7), as TIFF and exiftool want
        assert tif.pages[0].tags[34675].dtype == 7


@pytest.mark.parametrize("name", ["default_gray.icc", "default_cmyk.icc"])
def test_an_icc_profile_for_another_colour_space_is_not_given_to_an_rgb_result(
    tmp_path: Path, name: str
) -> None:
    """A grey or CMYK frame's profile was attached to the RGB result: libpng refused it with
    a warning, and other viewers misread the colours."""
    profile = Path("/usr/share/color/icc/ghostscript") / name
    icc = (
        profile.read_bytes()
        if profile.is_file()
        else b"\0" * 16 + (b"GRAY" if "gray" in name else b"CMYK") + b"\0" * 200
    )
    src = tmp_path / "src.tif"
    # the ICC tag (34675) itself: tifffile's iccprofile= is newer than its lowest version here
    tifffile.imwrite(src, np.zeros((8, 8), np.uint8), extratags=[(34675, 7, len(icc), icc, True)])
    assert read_metadata(src).icc is None
    out = write_image(tmp_path / "o.png", np.zeros((8, 8, 3), np.uint8), metadata_from=src)
    assert read_metadata(out).icc is None


def test_a_grey_stack_s_result_is_grey_and_keeps_its_frames_grey_profile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Grey frames (a mono camera's) were stacked into an RGB result three times their size,
    whose grey profile was then left out with a warning; the warning was also said as each
    frame's orientation was read, of frames the result's metadata did not come from. The
    result is grey now, and carries the grey profile; an RGB profile it cannot carry is left
    out with the warning, said once, of the frame the metadata came from."""
    from stacker.offline import stack_files

    shipped = Path("/usr/share/color/icc/ghostscript")
    gray = (shipped / "default_gray.icc").read_bytes() if shipped.is_dir() else b""
    rgb = (shipped / "default_rgb.icc").read_bytes() if shipped.is_dir() else b""
    gray = gray or bytes(16) + b"GRAY" + bytes(200)
    rgb = rgb or bytes(16) + b"RGB " + bytes(200)
    frames = write_stack(tmp_path / "f", SceneSpec(width=160, height=120, seed=3), 3)
    greys = [cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2GRAY) for frame in frames]
    for icc, said in ((gray, []), (rgb, [f"{frames[0]}: its ICC profile is for RGB, not GRAY; "
                                         "the result is written without it"])):  # fmt: skip
        for frame, grey in zip(frames, greys, strict=True):
            frame.write_bytes(encode_image(grey, ".jpg", metadata=Metadata(icc=icc)))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stacker.metadata"):
            stack_files(frames, tmp_path / "out.png")
        assert [r.getMessage() for r in caplog.records if "ICC profile" in r.getMessage()] == said
        assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).ndim == 2
        assert read_metadata(tmp_path / "out.png").icc is None
        assert read_metadata(tmp_path / "out.png", space=b"GRAY").icc == (None if said else gray)


def _rgb(seed: int = 3) -> np.ndarray:
    """A small random RGB picture, 0..1."""
    return np.random.default_rng(seed).random((24, 32, 3)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("half-float", {"dtype": np.float16}),
        ("zstd", {"compression": "zstd"}),
        (
            "webp-lossless",
            {"dtype": np.uint8, "compression": "webp", "compressionargs": {"lossless": True}},
        ),
        ("separate planes, zstd", {"planarconfig": "separate", "compression": "zstd"}),
    ],
)
def test_tiffs_opencv_cannot_decode_are_read_with_tifffile(
    tmp_path: Path, name: str, options: dict
) -> None:
    """OpenCV's libtiff refuses half floats and, up to 5.0, has neither Zstandard nor WebP (5.1
    reads the WebP one): such frames were skipped as 'not a readable image'."""
    rgb, options = _rgb(), dict(options)
    dtype = options.pop("dtype", np.uint16)
    top = 1.0 if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max
    stored = (rgb * top).astype(dtype) if top == 1.0 else np.rint(rgb * top).astype(dtype)
    if options.get("planarconfig") == "separate":
        stored = np.moveaxis(stored, -1, 0)  # one plane a colour
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, stored, photometric="rgb", **options)
    img = read_image(path)
    assert img.shape == (24, 32, 3) and img.dtype == (np.uint8 if top == 255 else np.uint16)
    want = rgb[:, :, ::-1] * (255 if top == 255 else 65535)
    tolerance = 65535 / 1024 if dtype == np.float16 else 0.5  # half floats: 11 bits
    assert np.abs(img.astype(np.float64) - want).max() <= tolerance, name


@pytest.mark.parametrize(
    ("name", "dtype", "options"),
    [
        ("16-bit separate planes", np.uint16, {"planarconfig": "separate"}),
        ("8-bit unassociated alpha", np.uint8, {"extrasamples": ["unassalpha"]}),
        ("32-bit unsigned", np.uint32, {}),
        ("16-bit signed", np.int16, {}),
    ],
)
def test_tiffs_opencv_decodes_wrongly_are_read_with_tifffile(
    tmp_path: Path, name: str, dtype: type, options: dict
) -> None:
    """OpenCV read these without an error, and wrongly: separate 16-bit planes as grey noise,
    colours multiplied by an unassociated alpha, wide and signed samples clipped."""
    rgb, options = _rgb(), dict(options)
    top = np.iinfo(dtype).max
    stored = np.rint(rgb * top).astype(dtype)
    if "extrasamples" in options:  # an alpha of 128: half transparent
        stored = np.dstack([stored, np.full(stored.shape[:2], 128, dtype)])
    if options.get("planarconfig") == "separate":
        stored = np.moveaxis(stored, -1, 0)
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, stored, photometric="rgb", **options)
    img = read_image(path)
    scale = 255 if dtype == np.uint8 else 65535
    assert img.shape == (24, 32, 3) and img.dtype == (np.uint8 if scale == 255 else np.uint16)
    want = rgb[:, :, ::-1] * scale
    tolerance = 0.5 if top in (255, 65535) else 65535 / top + 0.5
    assert np.abs(img.astype(np.float64) - want).max() <= tolerance, name


@pytest.mark.parametrize("compression", [None, "zstd"], ids=["opencv", "tifffile"])
def test_nan_and_infinite_pixels_do_not_blacken_a_float_frame(
    tmp_path: Path, compression: str | None
) -> None:
    """The brightest pixel set a float frame's scale: one infinite pixel made the whole frame
    black, a NaN one left the scale to chance, and either printed numpy's warnings."""
    rgb = _rgb() * 2  # brighter than 1: scaled to the brightest finite pixel
    rgb[0, 0], rgb[1, 1], rgb[2, 2] = np.nan, np.inf, -np.inf
    path = tmp_path / "hdr.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression=compression)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = read_image(path)
    assert (img[0, 0].tolist(), img[1, 1].tolist(), img[2, 2].tolist()) == (
        [0, 0, 0],
        [65535] * 3,
        [0, 0, 0],
    )
    finite = np.isfinite(rgb).all(axis=2)
    want = rgb[:, :, ::-1] * (65535 / rgb[finite].max())
    assert np.abs(img[finite].astype(np.float64) - want[finite]).max() < 1  # truncated


def test_float_frames_of_one_stack_share_the_first_frame_s_range(tmp_path: Path) -> None:
    """Float frames brighter than 1 were each scaled to their own brightest pixel: the same
    grey came out at 0.28 in a frame whose glint peaked at 1.5 and at 0.10 where it peaked at
    4, the stack refused as exposure jumps and its composite dimmed. The first frame sets the
    range; a brighter glint later clips, and the reader says so."""
    from stacker.io import OrientedReader

    scene = np.full((24, 32, 3), 0.42, np.float32)
    reader = OrientedReader()
    levels, notes = [], []
    for i, peak in enumerate((1.5, 3.0, 1.2, 4.0)):
        frame = scene.copy()
        frame[:2, :2] = peak  # a specular glint
        tifffile.imwrite(tmp_path / f"f{i}.tif", frame, photometric="rgb")
        img, note = reader.read(tmp_path / f"f{i}.tif")
        levels.append(int(img[10, 10, 0]))
        notes.append(note)
        assert abs(int(img[0, 0, 0]) - min(peak / 1.5, 1.0) * 65535) <= 1
    assert all(abs(level - 0.42 / 1.5 * 65535) <= 1 for level in levels), levels
    assert notes[0] is None and notes[2] is None
    assert "f1.tif" in (notes[1] or "") and "clipped" in (notes[3] or "")
    alone = read_image(tmp_path / "f3.tif")  # a frame read by itself: its own range
    assert abs(int(alone[10, 10, 0]) - 0.42 / 4.0 * 65535) <= 1


def test_a_one_bit_tiff_only_tifffile_decodes_is_black_and_white(tmp_path: Path) -> None:
    """It came out 0 and 1 of 65535: black."""
    bits = np.random.default_rng(1).random((24, 32)) > 0.5
    try:
        tifffile.imwrite(tmp_path / "bits.tif", bits, photometric="minisblack", compression="zstd")
    except NotImplementedError:
        pytest.skip("tifffile 2023.1 (the floor) cannot compress a one-bit image")
    img = read_image(tmp_path / "bits.tif")
    assert img.dtype == np.uint8 and np.array_equal(img[:, :, 1], bits * np.uint8(255))


def test_a_tiff_of_complex_samples_is_refused_in_one_line(tmp_path: Path) -> None:
    """It came out zero, with numpy's warning: complex samples are no photograph."""
    tifffile.imwrite(tmp_path / "waves.tif", _rgb().astype(np.complex64), photometric="rgb")
    with pytest.raises(UnreadableImageError, match=r"waves\.tif: not a readable image"):
        read_image(tmp_path / "waves.tif")


def test_a_tiff_read_with_tifffile_is_turned_as_its_orientation_says(tmp_path: Path) -> None:
    rgb = _rgb()
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, rgb.astype(np.float16), photometric="rgb",
                     extratags=[(274, "H", 1, 6, True)])  # fmt: skip
    upright = (rgb[:, :, ::-1] * 65535).transpose(1, 0, 2)[:, ::-1]  # 6: a quarter turn right
    img = read_image(path)
    assert img.shape == (32, 24, 3)
    assert np.abs(img.astype(np.float64) - upright).max() <= 65535 / 1024


def test_unreadable_files_name_themselves(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(UnreadableImageError, match=r"broken\.jpg: not a readable image"):
        read_image(bad)
    with pytest.raises(UnreadableImageError, match=r"missing\.png: cannot read file"):
        read_image(tmp_path / "missing.png")
    raw = tmp_path / "x.cr2"
    raw.write_bytes(b"junk")
    # without rawpy: how to get RAW support; with it: rawpy's refusal of the junk
    with pytest.raises(UnreadableImageError, match=r"x\.cr2: (RAW files need|not a readable RAW)"):
        read_image(raw)


def test_a_png_cut_short_in_its_header_names_itself(tmp_path: Path) -> None:
    """A PNG cut off before its IHDR chunk's width and height raised struct.error from the
    pixel-count check instead of the one-line refusal naming the file."""
    cut = tmp_path / "cut.png"
    cut.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert header_size(cut.read_bytes()) is None
    with pytest.raises(UnreadableImageError, match=r"cut\.png: not a readable image"):
        read_image(cut)
    with pytest.raises(UnreadableImageError, match=r"cut\.png: not a readable image"):
        decode_image(cut.read_bytes(), cut)


def test_bytes_decode_as_their_file_reads_and_never_open_the_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    deep = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    for ext in (".png", ".tif", ".jpg"):
        path = tmp_path / f"c{ext}"
        write_image(path, deep if ext != ".jpg" else (deep >> 8).astype(np.uint8))
        decoded = decode_image(path.read_bytes(), tmp_path / "gone" / path.name)
        assert np.array_equal(decoded, read_image(path)), ext
    with pytest.raises(UnreadableImageError, match=r"gone/broken\.jpg: not a readable image"):
        decode_image(b"\xff\xd8\xff\xe0 truncated", tmp_path / "gone" / "broken.jpg")
    bomb = tmp_path / "bomb.tif"
    tifffile.imwrite(bomb, np.zeros((16, 16, 3), np.uint8), compression="zlib")
    with tifffile.TiffFile(bomb, mode="r+b") as tif:
        for name in ("ImageWidth", "ImageLength"):
            tif.pages[0].tags[name].overwrite(20000)
    with pytest.raises(UnreadableImageError, match=r"bomb\.tif: declares 20000x20000 pixels"):
        decode_image(bomb.read_bytes(), bomb)


def test_a_raw_files_bytes_decode_as_the_file_does(tmp_path: Path) -> None:
    pytest.importorskip("rawpy", reason="RAW support is the [raw] extra")
    from rig.sim.bayer import encode_bayer_dng
    from stacker.raw import read_raw_linear

    frame = np.random.default_rng(4).integers(0, 65536, (32, 48, 3), dtype=np.uint16)
    path = tmp_path / "composite.dng"
    path.write_bytes(encode_bayer_dng(frame))
    decoded = decode_image(path.read_bytes(), tmp_path / "gone" / path.name)
    assert np.array_equal(decoded, read_raw_linear(path))


def test_a_raw_file_whose_name_is_not_utf8_is_read(tmp_path: Path) -> None:
    """A card or a share written on another system can name a folder in Latin-1 (``k\xe4fer``):
    its JPEGs were stacked, but every RAW file in it was "not a readable RAW file", as rawpy
    encodes a path as UTF-8, which such a name (its bytes kept as surrogates) cannot be."""
    pytest.importorskip("rawpy", reason="RAW support is the [raw] extra")
    from rig.sim.bayer import encode_bayer_dng
    from stacker.raw import raw_flip, read_profile, read_raw_linear

    frame = np.random.default_rng(4).integers(0, 65536, (32, 48, 3), dtype=np.uint16)
    plain = tmp_path / "plain.dng"
    plain.write_bytes(encode_bayer_dng(frame))
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/k\xe4fer.dng"))
    odd.write_bytes(plain.read_bytes())
    assert np.array_equal(read_image(odd), read_raw_linear(plain))
    assert raw_flip(odd) == raw_flip(plain)
    assert repr(read_profile(odd)) == repr(read_profile(plain))


@pytest.mark.parametrize("layout", [{"byteorder": "<"}, {"byteorder": ">"}, {"bigtiff": True}])
def test_a_tiff_declaring_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, layout: dict
) -> None:
    """A compressed TIFF of zeros is tiny on disk and gigabytes decoded (1.3 MB declaring
    20000x20000 took 2.4 GB and 15 s, then failed the stack): its size is read from its header
    first, as a PNG's or a JPEG's is."""
    bomb = tmp_path / "bomb.tif"
    tifffile.imwrite(bomb, np.zeros((16, 16, 3), np.uint8), compression="zlib", **layout)
    with tifffile.TiffFile(bomb, mode="r+b") as tif:
        for name in ("ImageWidth", "ImageLength"):
            tif.pages[0].tags[name].overwrite(20000)
    with pytest.raises(UnreadableImageError, match=r"bomb\.tif: declares 20000x20000 pixels"):
        read_image(bomb)


def test_a_tiff_size_stored_as_signed_integers_is_checked_too(tmp_path: Path) -> None:
    """libtiff reads a width and height stored as SLONG: a 389 KB TIFF so declaring 20000x20000
    was decoded whole (2.4 GB, 33 s) before the stack refused its size."""
    bomb = tmp_path / "bomb.tif"
    tifffile.imwrite(bomb, np.zeros((16, 16), np.uint8), compression="zlib")
    data = bytearray(bomb.read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for pos in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        tag, _ = struct.unpack_from("<HH", data, pos)
        if tag in (256, 257):
            struct.pack_into("<HHIi", data, pos, tag, 9, 1, 20000)  # SLONG
    bomb.write_bytes(bytes(data))
    with pytest.raises(UnreadableImageError, match=r"bomb\.tif: declares 20000x20000 pixels"):
        read_image(bomb)


def test_a_jpeg_size_after_junk_bytes_is_checked_too(tmp_path: Path) -> None:
    """libjpeg passes over stray bytes before a marker; the size check gave up on them, and a
    66 KB JPEG declaring 20000x20000 was decoded (1.3 GB), in the hot folder too."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 20000)
    data[sof:sof] = b"\x00\x00"
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    assert header_size(bytes(data)) == (20000, 20000)
    for junk in (b"\xff\x00", b"\xff\xd3", b"\xff\x01"):  # stuffed zero, RST3, TEM: no length
        at = sof + 2  # right before the frame header
        assert header_size(bytes(data[:at] + junk + data[at:])) == (20000, 20000), junk
    with pytest.raises(UnreadableImageError, match=r"bomb\.jpg: declares 20000x20000 pixels"):
        read_image(bomb)


@pytest.mark.parametrize("quality", [90, 101])  # lossy (VP8), lossless (VP8L)
def test_a_webp_declaring_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, quality: int
) -> None:
    """A 10 KB lossless WebP declaring 16383x16383 pixels was decoded whole (1.7 GB)."""
    image = np.random.default_rng(5).integers(0, 255, (37, 53, 3), np.uint8)
    data = bytearray(cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])[1])
    with_alpha = cv2.imencode(".webp", np.dstack([image, image[..., :1]]))[1].tobytes()
    for encoded in (bytes(data), with_alpha):  # VP8X: a canvas header, here for the alpha
        assert header_size(encoded) == (53, 37)
    if data[12:16] == b"VP8L":
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        data[21:25] = (bits | 16382 | 16382 << 14).to_bytes(4, "little")
    else:
        data[26:30] = (16383).to_bytes(2, "little") * 2
    bomb = tmp_path / "bomb.webp"
    bomb.write_bytes(bytes(data))
    with pytest.raises(UnreadableImageError, match=r"bomb\.webp: declares 16383x16383 pixels"):
        read_image(bomb)


def test_a_raw_file_set_to_its_size_before_its_content_is_not_whole(tmp_path: Path) -> None:
    """Samba sets an SMB client's copy to its full size first, then fills it (exfat-linux issue
    #31): until the copy ends the file's tail is zeros, which LibRaw decodes without a word."""
    from rig.sim.bayer import encode_bayer_dng

    frame = np.random.default_rng(6).integers(0, 65536, (240, 320, 3), dtype=np.uint16)
    data = encode_bayer_dng(frame)
    whole = tmp_path / "DSC_0001.dng"
    whole.write_bytes(data)
    assert truncation(whole) is None
    copying = tmp_path / "DSC_0002.NEF"
    copying.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    assert truncation(copying) == "RAW file ends in zero bytes (still being copied?)"
    copying.write_bytes(data[:-4096] + bytes(4096))  # padding, not a copy under way
    assert truncation(copying) is None


def test_a_jpeg_cut_short_is_refused_and_any_file_name_is_read(tmp_path: Path) -> None:
    """A half-written frame must not be merged with a grey bottom; a file name that is not
    UTF-8 still reads."""
    rng = np.random.default_rng(5)
    jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))[1].tobytes()
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(jpeg)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(UnreadableImageError, match=r"cut\.jpg: not a readable image"):
        read_image(cut)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg"))
    odd.write_bytes(jpeg)
    np.testing.assert_array_equal(read_image(odd), read_image(whole))
    np.testing.assert_array_equal(read_image(whole), cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1))


def test_a_jpeg_with_bytes_after_its_end_marker_is_whole(tmp_path: Path) -> None:
    """Cameras and phones add data after the primary image's end marker (a maker's trailer,
    zero padding to a card's block): such a frame is whole, not "cut short"."""
    rng = np.random.default_rng(8)
    jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))[1].tobytes()
    for tail in (b"SEFH" + bytes(range(256)) * 4, bytes(1024)):
        trailed = tmp_path / "trailed.jpg"
        trailed.write_bytes(jpeg + tail)
        assert truncation(trailed) is None
        np.testing.assert_array_equal(
            read_image(trailed), cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1)
        )


def test_atomic_write_leaves_no_temporary_and_honours_umask(tmp_path: Path) -> None:
    p = atomic_write_bytes(tmp_path / "f.bin", b"abc")
    assert p.read_bytes() == b"abc"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]
    assert (p.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("letter", ["a", "é"])
def test_a_name_near_the_length_limit_is_written(tmp_path: Path, letter: str) -> None:
    """A 244-byte name was refused: its temporary (dot, name, dot, random part, suffix) was
    longer than the 255 bytes a name may have."""
    stem = letter * (240 // len(letter.encode()))
    out = check_writable_output(tmp_path / f"{stem}.tif")
    write_image(out, np.zeros((8, 8, 3), np.uint8))
    assert read_image(out).shape == (8, 8, 3)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_output_checks(tmp_path: Path) -> None:
    assert check_writable_output(tmp_path / "a.tif") == tmp_path / "a.tif"
    with pytest.raises(StackerError, match=r"unknown output format '\.bmp'"):
        check_writable_output(tmp_path / "a.bmp")
    with pytest.raises(StackerError, match="is a folder"):
        (tmp_path / "d.png").mkdir()
        check_writable_output(tmp_path / "d.png")
    os.mkfifo(tmp_path / "p.tif")  # renamed over, a pipe (or a device) would be replaced
    with pytest.raises(StackerError, match=r"p\.tif: not a regular file"):
        check_writable_output(tmp_path / "p.tif")


def test_a_depth_map_named_as_a_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    """``--depth-map maps/`` wrote ``maps.png`` beside the folder without a word."""
    from stacker.offline import stack_files

    maps = tmp_path / "maps"
    maps.mkdir()
    frames = [tmp_path / "a.jpg", tmp_path / "b.jpg"]  # never read: the check comes first
    with pytest.raises(StackerError) as refused:
        stack_files(frames, tmp_path / "o.tif", depth_map=maps)
    assert (
        str(refused.value) == f"{maps}: is a folder; give a file name such as {maps / 'depth.png'}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


def test_a_depth_map_in_a_missing_folder_is_named_as_given(tmp_path: Path) -> None:
    """``--depth-map nodir/d.png`` was refused as ``nodir/d-preview.jpg``, a file the user
    never named."""
    from stacker.output import check_writable_depth

    wanted = tmp_path / "nodir" / "d.png"
    with pytest.raises(StackerError) as refused:
        check_writable_depth(wanted)
    assert str(refused.value).startswith(f"{wanted}: the folder {wanted.parent} does not exist")
    assert check_writable_depth(tmp_path / "d.png") == tmp_path / "d.png"


def test_metadata_is_read_from_regular_files_only(tmp_path: Path) -> None:
    """A named pipe in a frame's place hung the read of its metadata for ever."""
    import threading

    os.mkfifo(tmp_path / "frame_0000.jpg")
    got: list[Metadata] = []
    reader = threading.Thread(
        target=lambda: got.append(read_metadata(tmp_path / "frame_0000.jpg")), daemon=True
    )
    reader.start()
    reader.join(10)
    if reader.is_alive():
        with open(tmp_path / "frame_0000.jpg", "wb"):  # lets the hung read end
            pass
        pytest.fail("the read of a named pipe's metadata hung")
    assert got == [Metadata()]


def test_embed_ignores_formats_without_metadata_slots() -> None:
    assert embed_metadata(b"data", ".bmp", Metadata(icc=ICC)) == b"data"


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiff_result_carries_the_frames_exif_in_its_own_tags(tmp_path: Path, order: str) -> None:
    """The composite as TIFF kept the ICC profile and dropped the EXIF that JPEG and PNG
    results carry. Read back by tifffile, a parser of its own."""
    from stacker.io import encode_image

    src = tmp_path / "frame.jpg"
    image = np.zeros((8, 8, 3), np.uint8)
    atomic_write_bytes(src, encode_image(image, ".jpg", metadata=Metadata(exif=camera_exif(order))))
    out = write_image(tmp_path / "stacked.tif", image, metadata_from=src, software="stackrig")
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages[0].tags
        assert tags["Make"].value == "Canon" and tags["Model"].value == "Canon EOS 80D"
        assert tags["DateTime"].value == "2026:11:30 10:00:00"
        taken = tags["ExifTag"].value
    assert taken["ExposureTime"] == (1, 125) and taken["FNumber"] == (8, 1)
    assert taken["ISOSpeedRatings"] == 200 and taken["FocalLength"] == (65, 1)
    assert taken["DateTimeOriginal"] == "2026:11:30 10:00:00"
    assert taken["LensModel"] == "EF100mm f/2.8L Macro IS USM"
    assert "MakerNote" not in taken  # its inner offsets are the camera maker's own
    assert np.array_equal(read_image(out), image)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("result", [".jpg", ".png", ".tif"])
def test_a_tiff_frame_s_exif_reaches_the_result(tmp_path: Path, order: str, result: str) -> None:
    """TIFF frames (a raw converter's 16-bit exports) gave results without any EXIF: only a
    TIFF's ICC profile was read. Frames from tifffile in either byte order, and from stackrig."""
    from stacker.io import encode_image
    from stacker.tiff_exif import exif_values

    image = np.zeros((8, 8, 3), np.uint16)
    theirs = tmp_path / "theirs.tif"
    tifffile.imwrite(
        theirs, image, byteorder=order, photometric="rgb",
        extratags=[(271, "s", 0, "Nikon", True), (272, "s", 0, "Nikon D850", True)],
    )  # fmt: skip
    jpeg = tmp_path / "frame.jpg"
    atomic_write_bytes(jpeg, encode_image(image[..., 0].astype(np.uint8), ".jpg",
                                          metadata=Metadata(exif=camera_exif(order))))  # fmt: skip
    ours = write_image(tmp_path / "ours.tif", image, metadata_from=jpeg, software="stackrig")

    out = write_image(tmp_path / f"from_theirs{result}", image, metadata_from=theirs)
    ifd0, _ = exif_values(read_metadata(out).exif or b"")
    assert ifd0[271] == "Nikon" and ifd0[272] == "Nikon D850"

    out = write_image(tmp_path / f"from_ours{result}", image, metadata_from=ours)
    ifd0, taken = exif_values(read_metadata(out).exif or b"")
    assert ifd0[271] == "Canon" and ifd0[272] == "Canon EOS 80D"
    assert taken[33434] == (1, 125) and taken[33437] == (8, 1) and taken[34855] == 200
    assert taken[0xA434] == "EF100mm f/2.8L Macro IS USM"
    if result != ".tif":  # a TIFF's pixel size is in its own tags
        # A JPEG or PNG result says its own, as EXIF wants; it had none from TIFF frames
        # (theirs, their sensor's, is left out of what a TIFF frame gives).
        assert (taken.get(0xA002), taken.get(0xA003)) == (8, 8)


def test_a_tiff_frame_whose_exif_pointers_are_of_type_ifd_gives_its_exif(tmp_path: Path) -> None:
    """libtiff (GIMP, ImageMagick, GDAL) writes the ExifIFD and GPSInfo pointers with the TIFF
    type IFD (13), not LONG: such a frame's exposure and place were dropped, the entries of a
    type not known skipped before the pointers were looked for."""
    from stacker.io import encode_image
    from stacker.tiff_exif import exif_values

    image = np.zeros((8, 8, 3), np.uint16)
    jpeg = tmp_path / "frame.jpg"
    meta = Metadata(exif=camera_exif(gps=True))
    atomic_write_bytes(jpeg, encode_image(image[..., 0].astype(np.uint8), ".jpg", metadata=meta))
    data = bytearray(write_image(tmp_path / "frame.tif", image, metadata_from=jpeg).read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for pos in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, pos)[0] in (34665, 34853):
            struct.pack_into("<H", data, pos + 2, 13)  # as libtiff writes them
    theirs = tmp_path / "theirs.tif"
    theirs.write_bytes(bytes(data))
    with tifffile.TiffFile(theirs) as tif:  # a valid TIFF to another reader
        assert tif.pages[0].tags["ExifTag"].value["ExposureTime"] == (1, 125)
    out = write_image(tmp_path / "stacked.tif", image, metadata_from=theirs)
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages[0].tags
        assert tags["GPSTag"].value["GPSLatitudeRef"] == "N"
    _, taken = exif_values(read_metadata(out).exif or b"")
    assert taken[33434] == (1, 125) and taken[0xA434] == "EF100mm f/2.8L Macro IS USM"


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("frame", [".jpg", ".tif"])
def test_where_the_frame_was_taken_reaches_a_tiff_result(
    tmp_path: Path, order: str, frame: str
) -> None:
    """A TIFF result carried the Exif IFD and dropped the GPS IFD that JPEG and PNG results
    keep (a field photographer's insect, its place lost). Read back by tifffile."""
    from stacker.io import encode_image

    image = np.zeros((8, 8, 3), np.uint8)
    src = tmp_path / "frame.jpg"
    exif = camera_exif(order, gps=True)
    atomic_write_bytes(src, encode_image(image, ".jpg", metadata=Metadata(exif=exif)))
    if frame == ".tif":  # a TIFF frame that carries it, as a TIFF result now does
        src = write_image(tmp_path / "frame.tif", image, metadata_from=src)
    out = write_image(tmp_path / "stacked.tif", image, metadata_from=src)
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages[0].tags
        where = tags["GPSTag"].value
        taken = tags["ExifTag"].value
    assert where["GPSLatitudeRef"] == "N" and where["GPSLongitudeRef"] == "E"
    assert where["GPSLatitude"] == (52, 1, 31, 1, 125, 10)
    assert where["GPSLongitude"] == (13, 1, 24, 1, 18, 1)
    assert where["GPSAltitude"] == (34, 1)
    assert taken["ExposureTime"] == (1, 125)
    assert np.array_equal(read_image(out), image)


@pytest.mark.parametrize("name", ["frame_0003.jpg", "frame_0003.png", "DSC_0001.NEF"])
def test_a_file_whose_data_never_reached_the_disk_is_called_so(tmp_path: Path, name: str) -> None:
    """A power cut leaves a file its full size but zero-filled, or zero at its start: nothing
    decodes from it, and no image or RAW format starts with 512 zero bytes."""
    path = tmp_path / name
    path.write_bytes(bytes(262_144))
    assert truncation(path) == (
        "begins with zero bytes (written at full size but its data never reached the disk?)"
    )
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    path.write_bytes(bytes(4096) + jpeg.tobytes()[4096:] + jpeg.tobytes()[-2:])
    assert truncation(path) is not None
    path.write_bytes(b"")  # created, nothing written
    assert truncation(path) == "empty (0 bytes: its data never reached the disk?)"


@pytest.mark.parametrize(
    "ext", [".3fr", ".fff", ".IIQ", ".mos", ".erf", ".crw", ".rwl", ".mrw", ".sr2", ".srf",
            ".dcr", ".kdc", ".mef"],
)  # fmt: skip
def test_medium_format_and_older_raw_files_are_read_as_raw(tmp_path: Path, ext: str) -> None:
    """LibRaw reads Hasselblad (3FR, FFF), Phase One (IIQ), Leaf (MOS), Leica (RWL), Canon CRW,
    Minolta, Sony SRF/SR2, Kodak, Mamiya and Epson files: a folder of them is a stack in linear
    light, not a folder with no frames, and not frames refused as an unknown format."""
    pytest.importorskip("rawpy", reason="RAW support is the [raw] extra")
    from rig.sim.bayer import encode_bayer_dng
    from stacker.io import is_image_path, is_raw_path
    from stacker.raw import read_raw_linear

    frame = np.random.default_rng(7).integers(0, 65536, (32, 48, 3), dtype=np.uint16)
    path = tmp_path / f"frame{ext}"
    path.write_bytes(encode_bayer_dng(frame))  # LibRaw tells the format by content
    assert is_image_path(path) and is_raw_path(path)
    assert np.array_equal(read_image(path), read_raw_linear(path))


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiff_result_of_adobe_rgb_frames_still_says_adobe_rgb(tmp_path: Path, order: str) -> None:
    """A camera set to Adobe RGB embeds no ICC profile: its EXIF says "uncalibrated" and, in
    the interoperability IFD, "R03". A TIFF result dropped that IFD, so viewers took it for
    sRGB and showed its colours dulled. Read back by tifffile, and carried on from a TIFF
    frame to a JPEG result."""
    from tifffile.tifffile import read_tags

    from stacker.io import encode_image
    from stacker.tiff_exif import INTEROP_IFD_TAG, _ifds

    image = np.zeros((8, 8, 3), np.uint8)
    src = tmp_path / "frame.jpg"
    meta = Metadata(exif=camera_exif(order, gps=True, adobe_rgb=True))
    atomic_write_bytes(src, encode_image(image, ".jpg", metadata=meta))
    out = write_image(tmp_path / "stacked.tif", image, metadata_from=src)
    with tifffile.TiffFile(out) as tif:
        taken = tif.pages[0].tags["ExifTag"].value
        assert tif.pages[0].tags["GPSTag"].value["GPSLatitudeRef"] == "N"
        tif.filehandle.seek(taken["InteroperabilityTag"])
        (interop,) = read_tags(tif.filehandle, "<", 4, tifffile.TIFF.IOP_TAGS, maxifds=1)
    assert taken["ColorSpace"] == 0xFFFF and taken["FNumber"] == (8, 1)
    assert interop["InteroperabilityIndex"] == "R03"

    again = write_image(tmp_path / "again.jpg", image, metadata_from=out)
    _, subs = _ifds(read_metadata(again).exif or b"")
    assert (0x0001, 2, 4, b"R03\0") in subs[INTEROP_IFD_TAG]


def test_a_jpeg_wider_than_libjpeg_writes_is_refused_in_one_line() -> None:
    """``cv2.imencode`` fails past 65,500 pixels a side; its result was used all the same, an
    AttributeError after the whole stack was merged."""
    from stacker.io import encode_image

    with pytest.raises(StackerError, match=r"at most 65500 pixels a side.*70000x2: write \.tif"):
        encode_image(np.zeros((2, 70000, 3), np.uint8), ".jpg")
    assert encode_image(np.zeros((2, 70000, 3), np.uint8), ".png")[:4] == b"\x89PNG"


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("compression", [None, "jpeg"])
def test_a_tiled_tiff_is_turned_as_its_orientation_says(
    tmp_path: Path, orientation: int, compression: str | None
) -> None:
    """A camera JPEG shot on its side, converted to a tiled TIFF (``convert -define
    tiff:tile-geometry=...``, ``tiffcp -t``): OpenCV's 8-bit tile reader turned 2, 3, 6 and 7
    into scrambled bands, and a JPEG-compressed one could not be read at all."""
    rng = np.random.default_rng(orientation)
    rgb = cv2.GaussianBlur(rng.random((96, 128, 3)), (0, 0), 3)
    rgb = (rgb - rgb.min()) / np.ptp(rgb)
    stored = np.rint(rgb * 255).astype(np.uint8)
    tag = [(274, "H", 1, orientation, True)]
    tifffile.imwrite(tmp_path / "tiled.tif", stored, photometric="rgb", tile=(32, 32),
                     compression=compression, extratags=tag)  # fmt: skip
    stored = tifffile.imread(tmp_path / "tiled.tif")  # as the JPEG tiles decode
    tifffile.imwrite(tmp_path / "strips.tif", stored, photometric="rgb", extratags=tag)
    shown = read_image(tmp_path / "strips.tif")  # as viewers show it: see test_orientation
    img = read_image(tmp_path / "tiled.tif")
    assert img.shape == shown.shape
    assert np.abs(img.astype(np.int16) - shown).max() <= (1 if compression else 0)


def test_a_bigtiff_s_orientation_is_its_own(tmp_path: Path) -> None:
    """A BigTIFF's Orientation tag was taken for 1: a BigTIFF after a TIFF of the same pixels
    and tag was read upside down, and refused as not aligning."""
    from stacker.metadata import file_orientation

    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb", bigtiff=True,
                     extratags=[(274, "H", 1, 3, True)])  # fmt: skip
    assert file_orientation(path) == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_grey_tiff_with_alpha_is_read_as_grey(tmp_path: Path, dtype: type) -> None:
    """An export that kept transparency (ImageMagick ``-alpha set``) was "not a readable
    image"."""
    grey = np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) % np.iinfo(dtype).max
    path = tmp_path / "grey_alpha.tif"
    tifffile.imwrite(path, np.dstack([grey, np.full_like(grey, 7)]).astype(dtype),
                     photometric="minisblack", extrasamples=["unassalpha"])  # fmt: skip
    img = read_image(path)
    assert img.dtype == dtype and img.shape == (24, 32, 3)
    assert (img == grey.astype(dtype)[:, :, None]).all()


def test_colours_stored_with_an_associated_alpha_are_divided_by_it(tmp_path: Path) -> None:
    """Stored premultiplied, the half-transparent pixels came out half as bright."""
    rgb = np.full((24, 32, 3), 50000, np.uint16)
    alpha = np.full((24, 32, 1), 65535, np.uint16)
    alpha[8:16] = 32768
    stored = np.rint(rgb * (alpha / 65535)).astype(np.uint16)
    path = tmp_path / "premultiplied.tif"
    tifffile.imwrite(path, np.dstack([stored, alpha]), photometric="rgb",
                     extrasamples=["assocalpha"])  # fmt: skip
    assert np.abs(read_image(path).astype(np.int32) - 50000).max() <= 2


def test_jfif_and_jpe_frames_are_stacked_and_heic_ones_among_them_are_named(
    tmp_path: Path,
) -> None:
    """A ``.jfif`` (a JPEG as Windows' browsers save it), a ``.jpe`` and a camera's ``.HIF``
    among JPEGs: the first two were left out of the folder without a word, and the HEIF one
    was named only when a folder held nothing else."""
    from stacker.offline import collect_inputs

    for level, name in enumerate(["a_1.jpg", "a_2.jfif", "a_3.JPE", "a_4.HIF"]):
        data = cv2.imencode(".jpg", np.full((8, 8, 3), 99 + level, np.uint8))[1].tobytes()
        (tmp_path / name).write_bytes(data)
    (tmp_path / "a_2.jfif").write_bytes(data[: len(data) // 2])  # cut short: told by content
    notes: list[str] = []
    files = collect_inputs([tmp_path], on_note=notes.append)
    assert [f.name for f in files] == ["a_1.jpg", "a_2.jfif", "a_3.JPE"]
    assert truncation(tmp_path / "a_2.jfif") == "truncated JPEG (no end-of-image marker)"
    assert notes == [
        f"{tmp_path}: left out, .hif files are not read (export them as JPEG or TIFF): a_4.HIF"
    ]


def test_a_folder_of_heic_files_is_told_what_to_do(tmp_path: Path) -> None:
    """A phone's or a recent camera's HEIC frames gave "no images in this folder (looked for
    JPEG, PNG, TIFF, RAW)": nothing said they were seen, nor what to do, and the list left
    out BMP and WebP, which are read."""
    from stacker.offline import collect_inputs

    for i in range(3):
        (tmp_path / f"IMG_{i}.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.raises(StackerError) as err:
        collect_inputs([tmp_path])
    assert "BMP, WebP" in str(err.value) and ".heic files are not read" in str(err.value)
    assert "export them as JPEG or TIFF" in str(err.value)


def test_a_heic_file_named_on_its_own_is_told_what_to_do(tmp_path: Path) -> None:
    """Named on the command line, a HEIC frame was "not a readable image (corrupt, truncated
    or unsupported)", as a damaged file is."""
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    with pytest.raises(UnreadableImageError, match=r"IMG_0001.HEIC: HEIC is not read; export"):
        read_image(path)


def test_a_sixteen_bit_min_is_white_tiff_is_not_read_as_a_negative(tmp_path: Path) -> None:
    """OpenCV leaves 16-bit MinIsWhite samples as stored: the frame came out a negative."""
    grey = (_rgb()[:, :, 0] * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "white.tif", 65535 - grey, photometric="miniswhite")
    img = read_image(tmp_path / "white.tif")
    assert np.array_equal(img, np.repeat(grey[:, :, None], 3, axis=2))


def test_a_tiff_holding_a_whole_stack_is_refused_naming_what_to_do(tmp_path: Path) -> None:
    """A microscope's or ImageJ's stack in one TIFF: its first image was stacked alone, and the
    others were left out unsaid. A reduced-size image after the first (a preview) is no
    stack."""
    pages = (np.random.default_rng(0).random((4, 24, 32, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="rgb")
    with pytest.raises(UnreadableImageError, match=r"stack\.tif: a TIFF of 4 images.*Sequence"):
        read_image(tmp_path / "stack.tif")
    with tifffile.TiffWriter(tmp_path / "preview.tif") as tif:
        tif.write(pages[0], photometric="rgb")
        tif.write(pages[1, ::4, ::4], photometric="rgb", subfiletype=1)
    assert np.array_equal(read_image(tmp_path / "preview.tif"), pages[0, :, :, ::-1])


def test_webp_frames_carry_their_exif_and_profile_and_are_read_like_the_first() -> None:
    """A WebP frame's EXIF and ICC profile were not read: the result lost the camera's tags
    and an Adobe RGB profile, and a frame whose orientation tag differed from the first's
    (a camera pointing down) was read turned, as a viewer shows it, and aligned with nothing."""
    import tempfile

    from stacker.io import OrientedReader

    icc = bytes(16) + b"RGB " + bytes(108)  # an RGB profile's header, as far as it is looked at
    pixels = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    ok, simple = cv2.imencode(".webp", pixels, [cv2.IMWRITE_WEBP_QUALITY, 101])  # lossless
    assert ok
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, orientation in enumerate((6, 8)):
            paths.append(Path(folder) / f"f{i}.webp")
            paths[-1].write_bytes(webp_with(simple.tobytes(), exif=exif(orientation), icc=icc))
        meta = read_metadata(paths[0])
        assert meta.icc == icc and meta.exif == exif(6)
        reader = OrientedReader()
        first, _ = reader.read(paths[0])
        second, note = reader.read(paths[1])
    assert first.shape == (32, 24, 3) and np.array_equal(first, cv2.rotate(pixels, 0))
    assert np.array_equal(second, first) and "orientation 8" in (note or "")


def test_an_output_below_a_file_or_a_dangling_link_is_told_as_such(tmp_path: Path) -> None:
    """Both were "the folder ... does not exist; create it first", and it did exist."""
    from stacker.io import check_writable_output

    (tmp_path / "frame.jpg").write_bytes(b"x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(StackerError, match=r"frame\.jpg is a file, not a folder; give a folder"):
        check_writable_output(tmp_path / "frame.jpg" / "out.tif")
    with pytest.raises(StackerError, match=r"loop is a link to nothing \(or to itself\)"):
        check_writable_output(tmp_path / "loop" / "out.tif")


@pytest.mark.parametrize(
    ("given", "said"),
    [("99999999999999999999", "no stack has that many frames"), ("0", "frames count from 1")],
)
def test_a_reference_frame_number_out_of_reach_is_said_so(given: str, said: str) -> None:
    """A number of more than nine digits was "not valid: use ... a frame number from 1"."""
    from stacker.stack import parse_reference

    with pytest.raises(StackerError, match=said):
        parse_reference(given)
    assert parse_reference("0003") == 2


@pytest.mark.parametrize(("samples", "dtype"), [(8, np.uint16), (3, np.float16)])
def test_a_tiff_too_large_once_decoded_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples: int, dtype: type
) -> None:
    """A small file declaring a huge decoded image (eight 16-bit samples a pixel, or float16,
    which OpenCV leaves to tifffile) was decoded whole before it was refused: 2.4 GB for a
    2 MB file under the pixel limit. The limit is lowered here to keep the file small."""
    import tracemalloc

    import tifffile

    import stacker.io

    monkeypatch.setattr(stacker.io, "MAX_FRAME_BYTES", 4_000_000)
    path = tmp_path / "bomb.tif"
    photometric = "rgb" if samples == 3 else "minisblack"
    tifffile.imwrite(path, np.zeros((1000, 1000, samples), dtype), photometric=photometric,
                     planarconfig="contig", compression="zlib")  # fmt: skip
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableImageError, match=r"bomb\.tif"):
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak  # decoded, it is 6 to 16 MB


def test_a_temporary_left_with_a_time_ahead_of_the_clock_is_removed(tmp_path: Path) -> None:
    """A crash while the clock ran ahead (set back later by NTP) left a temporary as large as
    the output that no later run removed: it looked written a moment ago, for a day."""
    from stacker.io import remove_temporaries, temporary_prefix

    out = tmp_path / "stacked.tif"
    ahead, fresh, share = (tmp_path / f"{temporary_prefix(out.name)}{n}.tmp" for n in "abc")
    for path in (ahead, fresh, share):
        path.write_bytes(b"half a composite")
    day, minutes = time.time() + 86400, time.time() + 600
    os.utime(ahead, (day, day))
    os.utime(share, (minutes, minutes))  # a share's server, its clock ahead, writing it now
    assert remove_temporaries([out], idle_s=60.0) == [ahead]
    assert fresh.exists() and share.exists()


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process's umask for a test, put back after it."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize(("mask", "expected"), [(0o002, 0o664), (0o077, 0o600)])
def test_outputs_and_journals_are_created_as_the_umask_says(
    tmp_path: Path, umask, mask: int, expected: int
) -> None:
    """A group sharing a sessions folder (umask 002): the journal and the log were made 0644
    whatever the umask, so a member of the group could not resume ("cannot write the
    journal"). Outputs took the umask read once, when the module was first imported."""
    from rig.session.journal import Journal
    from stacker.io import atomic_write_bytes

    umask(mask)
    atomic_write_bytes(tmp_path / "out.png", b"x")
    Journal.open(tmp_path / "journal.jsonl").close()
    for name in ("out.png", "journal.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


def test_outputs_in_a_folder_with_a_default_acl_get_what_it_grants(tmp_path: Path, umask) -> None:
    """A folder whose default ACL lets the web server's or Samba's user read what is written
    there: the kernel applies it in place of the umask, and an output was then chmodded by the
    umask (077 in a hardened service), which masked the grant out."""
    from stacker.io import atomic_write_bytes

    shared = tmp_path / "shared"
    shared.mkdir()
    grant = subprocess.run(
        ["setfacl", "-d", "-m", "u::rwx,g::rx,o::---,u:65534:rx", str(shared)],
        capture_output=True,
    ) if shutil.which("setfacl") else None  # fmt: skip
    if grant is None or grant.returncode != 0:
        pytest.skip("no setfacl, or a file system without ACLs: no default ACL to follow")
    umask(0o077)
    atomic_write_bytes(shared / "stacked.tif", b"x")
    plain = os.open(shared / "plain", os.O_CREAT | os.O_WRONLY, 0o666)  # as touch makes it
    os.close(plain)

    def acl(name: str) -> list[str]:
        shown = subprocess.run(["getfacl", "-cp", str(shared / name)], capture_output=True)
        return shown.stdout.decode().splitlines()

    assert any(line.startswith("mask::r") for line in acl("plain")), acl("plain")
    assert acl("stacked.tif") == acl("plain")


def test_a_jpeg_is_checked_for_its_end_at_its_head_and_tail_as_when_read_whole(
    tmp_path: Path,
) -> None:
    """A resume checked each frame kept by reading it whole (12 GB for a thousand 24 MP frames
    on a Pi's SD card). Its head and its end tell the same as the whole file: a JPEG whose end
    marker is followed by more (another image, more than the tail looked at), one whose header
    is larger than the head read, and one cut short anywhere after its header."""
    from stacker.io import JPEG_HEAD, JPEG_TAIL, _jpeg_is_complete, truncation

    rng = np.random.default_rng(4)
    data = cv2.imencode(".jpg", rng.integers(0, 255, (400, 600, 3), np.uint8))[1].tobytes()
    cases = {
        "whole": data,
        "more after": data + b"\x00" * (2 * JPEG_TAIL),
        "cut": data[: len(data) // 2],
        "cut more after": data[: len(data) // 2] + b"\x01" * (2 * JPEG_TAIL),
        "large header": data[:2]  # APP9 segments past the head read first
        + b"".join(b"\xff\xe9\xff\xff" + bytes(0xFFFD) for _ in range(JPEG_HEAD // 0xFFFF + 1))
        + data[2:],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(content)
        expected = None if _jpeg_is_complete(content) else "truncated JPEG (no end-of-image marker)"
        assert truncation(path) == expected, name
    assert truncation(tmp_path / "whole.jpg") is None
    assert truncation(tmp_path / "cut.jpg") is not None
    assert truncation(tmp_path / "large header.jpg") is None


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="reads counted by Linux's /proc")
def test_a_whole_jpeg_is_checked_without_reading_it_whole(tmp_path: Path) -> None:
    """What a resume costs before its first shot: each frame kept was read whole to find its
    end marker."""
    from stacker.io import JPEG_HEAD, JPEG_TAIL, truncation

    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, (1500, 2000, 3), np.uint8)
    path = tmp_path / "frame_0001.jpg"
    path.write_bytes(cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    assert path.stat().st_size > 3 * (JPEG_HEAD + JPEG_TAIL)

    def read_so_far() -> int:
        counts = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        return int(counts["rchar"])

    before = read_so_far()
    assert truncation(path) is None
    assert read_so_far() - before < 2 * (JPEG_HEAD + JPEG_TAIL)
