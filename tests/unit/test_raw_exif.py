"""Make, model, artist and EXIF of CR3 and RAF files, which tifffile cannot read and rawpy does
not give, read from their containers and written into a stacked DNG.

The frames are synthetic containers (:mod:`tests.raw_containers`) holding only metadata: LibRaw
cannot decode them, so the reader is checked directly, and the DNG test lets a decodable
synthetic DNG stand in for the pixels while the metadata comes from the container.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rig.sim.bayer import encode_bayer_dng
from stacker.raw_exif import container_tags
from tests.raw_containers import box, cr3, raf, rational, short, text, tiff

CANON_IFD0 = [
    text(271, "Canon"),
    text(272, "Canon EOS R5"),
    text(306, "2026:03:04 05:06:07"),
    text(315, "Ada Lovelace"),
    text(33432, "(c) 2026 Ada Lovelace"),
]
CANON_EXIF = [
    rational(33434, 1, 125),
    rational(33437, 8, 1),
    short(34855, 200),
    text(36867, "2026:03:04 05:06:07"),
    rational(37386, 100, 1),
    text(42036, "RF100mm F2.8 L MACRO IS USM"),
]


def test_a_cr3_gives_ifd0_from_cmt1_and_the_exif_ifd_from_cmt2(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.CR3"
    path.write_bytes(cr3(CANON_IFD0, CANON_EXIF))
    ifd0, exif = container_tags(path)
    assert ifd0[271] == "Canon" and ifd0[272] == "Canon EOS R5"
    assert ifd0[315] == "Ada Lovelace" and ifd0[33432] == "(c) 2026 Ada Lovelace"
    assert exif[33434] == (1, 125) and exif[33437] == (8, 1) and exif[34855] == 200
    assert exif[36867] == "2026:03:04 05:06:07" and exif[42036] == "RF100mm F2.8 L MACRO IS USM"


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_raf_gives_the_exif_of_its_embedded_jpeg(tmp_path: Path, order: str) -> None:
    path = tmp_path / "DSCF0001.RAF"
    exif = tiff([text(271, "FUJIFILM"), text(272, "X-T5")],
                [rational(33434, 1, 60, order), short(34855, 400, order)], order)  # fmt: skip
    path.write_bytes(raf("X-T5", exif))
    ifd0, exif_ifd = container_tags(path)
    assert (ifd0[271], ifd0[272]) == ("FUJIFILM", "X-T5")
    assert exif_ifd == {33434: (1, 60), 34855: 400}


def test_a_raf_without_exif_is_named_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "DSCF0002.RAF"
    path.write_bytes(raf("GFX100S", None))
    assert container_tags(path) == ({271: "FUJIFILM", 272: "GFX100S"}, {})


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x00\x18ftypisom",  # an MP4, not a CR3
        cr3(CANON_IFD0, CANON_EXIF)[:200],  # cut short inside moov
        box(b"ftyp", b"crx \0\0\0\1") + box(b"moov", box(b"uuid", bytes(16))),  # no Canon box
        raf("X-T5", None)[:60],  # cut short inside the header
        # a box whose 64-bit size runs far past the file's end (a seek beyond any offset)
        box(b"ftyp", b"crx \0\0\0\1") + struct.pack(">I4sQ", 1, b"free", 1 << 63),
    ],
)
def test_other_or_damaged_files_give_nothing(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "frame.raw"
    path.write_bytes(data)
    assert container_tags(path) == ({}, {})


@pytest.mark.parametrize("name", ["IMG_0001.CR3", "DSCF0001.RAF"])
def test_a_stack_of_cr3_or_raf_frames_names_the_camera_in_its_dng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Stacked CR3 and RAF frames gave a DNG whose Make, Model and UniqueCameraModel said
    "stackrig", so RAW editors found no profile for it. LibRaw cannot decode these synthetic
    containers: it decodes a synthetic DNG in their place (pixels, colour matrix, white
    balance), while tifffile and the container reader see the CR3 or RAF, where the camera
    metadata comes from."""
    import rawpy

    from stacker.raw import read_raw_linear, write_raw_result

    stand_in = tmp_path / "stand_in.dng"
    stand_in.write_bytes(encode_bayer_dng(np.full((32, 32, 3), 20000, np.uint16)))
    frame = tmp_path / name
    if name.endswith(".CR3"):
        frame.write_bytes(cr3(CANON_IFD0, CANON_EXIF))
    else:  # the same camera data, as a RAF's embedded JPEG would hold it
        frame.write_bytes(raf("EOS R5", tiff(CANON_IFD0, CANON_EXIF)))
    real_imread = rawpy.imread
    monkeypatch.setattr(rawpy, "imread", lambda _: real_imread(str(stand_in)))
    out = write_raw_result(tmp_path / "stacked.dng", read_raw_linear(stand_in), frame,
                           software="stackrig")  # fmt: skip
    with tifffile.TiffFile(out) as tif:
        tags = {t.name: t.value for t in tif.pages[0].tags.values()}  # type: ignore[union-attr]
    assert (tags["Make"], tags["Model"]) == ("Canon", "Canon EOS R5")
    assert tags["UniqueCameraModel"] == "Canon EOS R5"  # the make said once, as Adobe names it
    assert tags["Artist"] == "Ada Lovelace"
    exif = tags["ExifTag"]
    assert exif["ExposureTime"] == (1, 125) and exif["ISOSpeedRatings"] == 200  # type: ignore[index]
    assert exif["LensModel"] == "RF100mm F2.8 L MACRO IS USM"  # type: ignore[index]
