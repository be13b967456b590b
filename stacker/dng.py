"""Writing linear DNG files: a demosaiced composite that RAW editors still treat as RAW.

A *linear* DNG (Adobe DNG Specification 1.4, PhotometricInterpretation ``LinearRaw`` = 34892)
holds three-channel camera-native RGB in linear light plus the tags an editor needs to render it
as it would the camera's own files: the camera's colour matrices (XYZ to camera) with their
calibration illuminants, the as-shot neutral (white balance, left undecided in the pixels), black
and white levels, orientation, make and model, and the reference frame's EXIF (shutter, aperture,
ISO, focal length, lens, capture time) in an EXIF IFD.

tifffile writes the file: it is already how stackrig writes TIFF, and its ``extratags`` take any
DNG tag with its exact TIFF type. The one thing it will not write is the ExifIFD pointer (tag
34665), so tifffile writes a placeholder entry, and :func:`_append_exif` appends the EXIF IFD and
turns the placeholder into the pointer. Pixels are stored uncompressed, the one DNG compression
every reader supports for 16-bit linear data.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from stacker.errors import StackerError

LINEAR_RAW = 34892
CFA = 32803
DNG_VERSION = (1, 4, 0, 0)
DNG_BACKWARD_VERSION = (1, 1, 0, 0)

ILLUMINANTS = {"A": 17, "D55": 20, "D65": 21, "D50": 23}
"""EXIF LightSource codes of the usual calibration illuminants (DNG CalibrationIlluminant)."""

ExtraTag = tuple[int, str | int, int, object, bool]
"""A tifffile ``extratags`` entry: (code, TIFF type, count, value, write once)."""

ExifEntry = tuple[int, int, object]
"""An EXIF IFD entry: (tag, TIFF type code, value). Types: 2 ASCII (str), 3 SHORT and 4 LONG
(int or tuple), 5 RATIONAL and 10 SRATIONAL ((numerator, denominator) or a tuple of pairs)."""

_EXIF_IFD = 34665
_STRIP_ROWS = 256
_EXIF_PLACEHOLDER = 34664  # an unused code that sorts where 34665 does; tifffile refuses 34665


@dataclass(frozen=True)
class ColourProfile:
    """What a RAW editor needs to render camera RGB: identity, matrices, neutral, levels.

    ``color_matrix1`` (and the optional ``color_matrix2``) map CIE XYZ to camera RGB under
    their calibration illuminants (EXIF LightSource codes, see :data:`ILLUMINANTS`).
    ``as_shot_neutral`` is the camera RGB of a neutral grey under the scene's light (green 1).
    ``exif`` holds the EXIF IFD entries to write (exposure, aperture, ISO, lens, capture time).
    ``baseline_exposure`` (EV) is a camera DNG's BaselineExposure: how far its editor moves the
    zero point, carried so that a stack of its frames opens as bright as they do.
    ``artist`` and ``copyright`` are the frame's IFD0 Artist (315) and Copyright (33432) tags
    (TIFF 6.0; EXIF 2.32, 4.6.4 A): a photographer's name and notice belong to the stack too.
    """

    make: str
    model: str
    color_matrix1: np.ndarray
    as_shot_neutral: tuple[float, float, float]
    illuminant1: int = ILLUMINANTS["D65"]
    color_matrix2: np.ndarray | None = None
    illuminant2: int | None = None
    unique_model: str = ""
    exif: tuple[ExifEntry, ...] = field(default=())
    baseline_exposure: float = 0.0
    artist: str = ""
    copyright: str = ""

    @property
    def camera_name(self) -> str:
        """UniqueCameraModel: the one given, else make and model, the make said once.

        Canon and Nikon models begin with the make's name ("Canon EOS R5", "NIKON D850"), and
        Adobe's names for them say it once ("Canon EOS R5"): so does this, where editors show it
        and look up presets by it. Other makes stand before the model ("SONY ILCE-7RM5").
        """
        if self.unique_model:
            return self.unique_model
        brand = self.make.split()[0] if self.make.split() else ""
        if brand and self.model.casefold().startswith(brand.casefold()):
            return self.model.strip()
        return f"{self.make} {self.model}".strip() or "stackrig"


def _rationals(values: Sequence[float] | np.ndarray, signed: bool) -> list[int]:
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(1_000_000)
        if not signed and f < 0:
            raise StackerError(f"DNG: negative value {v} in an unsigned rational tag")
        out += [f.numerator, f.denominator]
    return out


def _ascii(code: int, text: str) -> ExtraTag:
    return (code, "s", 0, text.encode("ascii", "replace").decode("ascii"), True)


def profile_tags(profile: ColourProfile) -> list[ExtraTag]:
    """The DNG colour and identity tags of ``profile`` (shared by linear and CFA DNGs)."""
    neutral = np.asarray(profile.as_shot_neutral, dtype=np.float64)
    if neutral.shape != (3,) or not np.all(neutral > 0):
        raise StackerError(f"DNG: as-shot neutral {neutral.tolist()} must be three positives")
    tags: list[ExtraTag] = [
        (50706, "B", 4, DNG_VERSION, True),
        (50707, "B", 4, DNG_BACKWARD_VERSION, True),
        _ascii(271, profile.make or "stackrig"),
        _ascii(272, profile.model or "stackrig"),
        _ascii(50708, profile.camera_name),
        (50721, "2i", 9, _rationals(np.ravel(profile.color_matrix1), True), True),
        (50778, "H", 1, profile.illuminant1, True),
        (50728, "2I", 3, _rationals(neutral, False), True),
    ]
    if profile.color_matrix2 is not None and profile.illuminant2 is not None:
        tags += [
            (50722, "2i", 9, _rationals(np.ravel(profile.color_matrix2), True), True),
            (50779, "H", 1, profile.illuminant2, True),
        ]
    tags += [_ascii(code, text) for code, text in _owner_tags(profile) if text]
    if profile.baseline_exposure:  # 0 is the default: left out
        tags.append((50730, "2i", 1, _rationals([profile.baseline_exposure], True), True))
    return tags


def _owner_tags(profile: ColourProfile) -> tuple[tuple[int, str], ...]:
    """IFD0's Artist and Copyright of ``profile``: IFD0 tags in TIFF and EXIF alike, not EXIF
    IFD ones (EXIF 2.32, 4.6.4 A), so readers look for them there."""
    return (315, profile.artist), (33432, profile.copyright)


def write_dng(
    fh: BinaryIO,
    image: np.ndarray,
    tags: list[ExtraTag],
    *,
    photometric: int,
    black: Sequence[int],
    white: Sequence[int],
    exif: Sequence[ExifEntry] = (),
    bgr: bool = False,
    software: str = "stackrig",
) -> None:
    """Write a 16-bit image (RGB for ``LINEAR_RAW``, one plane for ``CFA``) as a DNG to ``fh``.

    ``fh`` must be seekable and readable (the EXIF pointer is patched after the pixels).
    ``black`` and ``white`` hold one level per sample (or one for a CFA plane); orientation is
    always upright (stackrig's frames are read with their orientation applied). ``exif``
    entries go into an EXIF IFD; ``software`` is the Software tag (stackrig's results carry
    ``"stackrig"``, which is how a later run tells them from frames). With ``bgr`` the image is
    in OpenCV's channel order and is written strip by strip in RGB, never copied whole.
    """
    import tifffile

    if image.dtype != np.uint16:
        raise StackerError(f"DNG: pixels must be 16-bit, not {image.dtype}")
    level_tags: list[ExtraTag] = [
        (274, "H", 1, 1, True),  # Orientation: upright
        (50713, "H", 2, (1, 1), True),  # BlackLevelRepeatDim
        (50714, "I", len(black), tuple(int(b) for b in black), True),
        (50717, "I", len(white), tuple(int(w) for w in white), True),
    ]
    if exif:
        level_tags.append((_EXIF_PLACEHOLDER, "I", 1, 0, True))  # see _append_exif
    data: np.ndarray | Iterator[np.ndarray] = np.ascontiguousarray(image)
    if bgr:
        data = (
            cv2.cvtColor(image[y : y + _STRIP_ROWS], cv2.COLOR_BGR2RGB)
            for y in range(0, image.shape[0], _STRIP_ROWS)
        )
    start = fh.tell()
    tifffile.imwrite(
        fh, data, shape=image.shape, dtype=image.dtype, byteorder="<", photometric=photometric,
        planarconfig="contig" if image.ndim == 3 else None, rowsperstrip=_STRIP_ROWS,
        compression=None, software=software, metadata=None, extratags=level_tags + tags,
    )  # fmt: skip
    if exif:
        _append_exif(fh, start, exif)


def encode_dng(image: np.ndarray, tags: list[ExtraTag], **options: Any) -> bytes:
    """The bytes :func:`write_dng` would write (for small images: tests, synthetic frames)."""
    out = io.BytesIO()
    write_dng(out, image, tags, **options)
    return out.getvalue()


def _pack_value(kind: int, value: object) -> tuple[bytes, int]:
    """Little-endian bytes and TIFF count of one EXIF value."""
    if kind == 2:
        text = str(value).encode("ascii", "replace") + b"\0"
        return text, len(text)
    items = value if isinstance(value, (tuple, list)) else (value,)
    if kind in (5, 10):
        pairs = [items] if not isinstance(items[0], (tuple, list)) else list(items)
        flat = [int(x) for pair in pairs for x in pair]
        return struct.pack(f"<{len(flat)}{'I' if kind == 5 else 'i'}", *flat), len(pairs)
    fmt = {1: "B", 3: "H", 4: "I", 7: "B"}[kind]
    return struct.pack(f"<{len(items)}{fmt}", *(int(x) for x in items)), len(items)


def _ifd_bytes(entries: Sequence[ExifEntry], at: int, next_ifd: int = 0) -> bytes:
    """One little-endian IFD holding ``entries``, to be placed ``at`` that offset of its TIFF
    structure (values over four bytes follow the table)."""
    entries = sorted(entries, key=lambda e: e[0])
    data_at = at + 2 + 12 * len(entries) + 4
    table, heap = bytearray(struct.pack("<H", len(entries))), bytearray()
    for tag, kind, value in entries:
        payload, count = _pack_value(kind, value)
        if len(payload) <= 4:
            field_ = payload.ljust(4, b"\0")
        else:
            field_ = struct.pack("<I", data_at + len(heap))
            heap += payload + b"\0" * (len(payload) % 2)
        table += struct.pack("<HHI", tag, kind, count) + field_
    table += struct.pack("<I", next_ifd)
    return bytes(table + heap)


_RENDERED_EXIF: tuple[ExifEntry, ...] = (
    (0x9000, 7, tuple(b"0232")),  # ExifVersion
    (0x9101, 7, (1, 2, 3, 0)),  # ComponentsConfiguration: Y Cb Cr (a JPEG's; left out of TIFF)
    (0xA000, 7, tuple(b"0100")),  # FlashpixVersion
    (0xA001, 3, 1),  # ColorSpace: sRGB, as raw.render makes it
    (0xA002, 4, 0),  # PixelXDimension and
    (0xA003, 4, 0),  # PixelYDimension: the result's, filled in by metadata.result_exif
)
"""The Exif IFD entries EXIF 2.32 requires (4.6.3, table 4; exiftool -validate says when
they lack), which a composite rendered from RAW frames gets beside its frames' exposure."""

_RENDERED_IFD0: tuple[ExifEntry, ...] = (
    (0x011A, 5, (72, 1)),  # XResolution and
    (0x011B, 5, (72, 1)),  # YResolution: 72 per inch, EXIF's default
    (0x0128, 3, 2),  # ResolutionUnit: inches
    (0x0213, 3, 1),  # YCbCrPositioning: centred
)
"""The IFD0 entries EXIF 2.32 requires of a JPEG's (4.6.3, table 4); a TIFF result carries
only its text tags (:data:`stacker.tiff_exif.CAMERA_TAGS`), its writer sets its own."""


def exif_blob(profile: ColourProfile) -> bytes | None:
    """The camera's make and model, the artist and copyright, and the EXIF entries (with
    :data:`_RENDERED_EXIF`) as a TIFF-structured EXIF block (what a JPEG's APP1 holds after
    ``Exif\\0\\0``), for composites of RAW frames rendered to JPEG, TIFF or PNG; ``None`` when
    the RAW file said nothing."""
    names = ((271, profile.make), (272, profile.model), *_owner_tags(profile))
    ifd0: list[ExifEntry] = [(tag, 2, text) for tag, text in names if text]
    if not ifd0 and not profile.exif:
        return None
    ifd0 += [*_RENDERED_IFD0, (_EXIF_IFD, 4, 0)]  # the Exif IFD's offset: once IFD0's size is
    size = len(_ifd_bytes(ifd0, 8))
    ifd0[-1] = (_EXIF_IFD, 4, 8 + size + size % 2)
    blob = b"II*\0" + struct.pack("<I", 8) + _ifd_bytes(ifd0, 8)
    given = {entry[0] for entry in profile.exif}
    entries = [*profile.exif, *(e for e in _RENDERED_EXIF if e[0] not in given)]
    return blob + b"\0" * (len(blob) % 2) + _ifd_bytes(entries, len(blob) + len(blob) % 2)


def _append_exif(fh: BinaryIO, start: int, entries: Sequence[ExifEntry]) -> None:
    """Append an EXIF IFD holding ``entries`` to the DNG written to ``fh`` from ``start``, and
    turn IFD0's placeholder entry into its pointer (tag 34665)."""
    import tifffile

    fh.seek(start)
    with tifffile.TiffFile(fh) as tif:
        placeholder = tif.pages[0].tags[_EXIF_PLACEHOLDER]
        entry, pointer = placeholder.offset, placeholder.valueoffset
    end = fh.seek(0, io.SEEK_END)
    ifd = end + end % 2  # IFDs start on a word boundary
    fh.write(b"\0" * (ifd - end) + _ifd_bytes(entries, ifd - start))
    fh.seek(start + entry)
    fh.write(struct.pack("<H", _EXIF_IFD))
    fh.seek(start + pointer)
    fh.write(struct.pack("<I", ifd - start))
    fh.seek(0, io.SEEK_END)


def write_linear_dng(
    path: str | os.PathLike[str], bgr: np.ndarray, profile: ColourProfile, *, software: str
) -> Path:
    """Write camera RGB ``bgr`` (``uint16``, OpenCV channel order) as a linear DNG, atomically
    and strip by strip (no encoded copy of a 270 MB composite in memory)."""
    from stacker.io import atomic_write

    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise StackerError(f"DNG: a linear DNG needs a colour image, not shape {bgr.shape}")
    tags = profile_tags(profile)
    return atomic_write(
        path,
        lambda fh: write_dng(
            fh,
            bgr,
            tags,
            photometric=LINEAR_RAW,
            black=(0, 0, 0),
            white=(65535,) * 3,
            exif=profile.exif,
            bgr=True,
            software=software,
        ),
    )
