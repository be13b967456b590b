"""Camera metadata of the RAW formats that are not TIFF: Canon CR3 and Fujifilm RAF.

tifffile reads make, model and EXIF from the TIFF-based RAW formats (NEF, CR2, ARW, DNG...);
LibRaw decodes these two, but rawpy does not give their make and model, so a stack of them was
written as a camera named "stackrig" and RAW editors found no profile for it. Both formats keep
a plain EXIF structure in a known place, read here without decoding anything else:

* **CR3** is an ISO base media file (ISO/IEC 14496-12: boxes of a big-endian size and a
  four-letter type; size 1 means a 64-bit size follows, 0 "to the end") whose ``ftyp`` brand is
  ``crx ``. Its ``moov`` box holds a ``uuid`` box (UUID 85c0b687-820f-11e0-8111-f4ce462b6a48)
  whose children include ``CMT1``, a TIFF structure whose IFD is the EXIF IFD0 (make, model,
  date, artist, copyright), and ``CMT2``, one whose IFD is the Exif IFD (exposure, lens); each
  with its own header, offsets counted from it (L. Clévy, "Describing the CR3 format",
  github.com/lclevy/canon_cr3; exiftool's Canon CR3 tags). ``CMT3`` (maker notes) is left.
* **RAF** starts with ``FUJIFILMCCD-RAW `` and is big-endian: 4 bytes of format version, 8 of
  camera ID, then the model name in 32 zero-padded bytes (offset 28), a 4-byte directory version
  and 20 unknown bytes; at offset 84 the offset and length of an embedded JPEG whose APP1
  segment is the camera's EXIF (libopenraw's and the File Formats Wiki's "Fujifilm RAF").
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from stacker.metadata import jpeg_exif
from stacker.tiff_exif import exif_values

CANON_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
"""The UUID of the CR3 box holding Canon's metadata (``CMT1``...)."""

RAF_MAGIC = b"FUJIFILMCCD-RAW "

_MAX_MOOV = 16 << 20  # a CR3's moov is tens of kilobytes; a larger one is not read
_JPEG_HEAD = 256 << 10  # APP1 is at most 64 KiB, right after the JPEG's start

Values = dict[int, Any]


def container_tags(path: Path) -> tuple[Values, Values]:
    """(IFD0's values, the Exif IFD's values) of a CR3 or RAF file, by tag code and as tifffile
    gives a TIFF's tags; empty for other files and for ones cut short or malformed."""
    try:
        with path.open("rb") as fh:
            head = fh.read(92)
            if head[4:12] == b"ftypcrx ":
                return _cr3_tags(fh)
            if head.startswith(RAF_MAGIC) and len(head) == 92:
                return _raf_tags(fh, head)
    except (OSError, struct.error):  # unreadable or cut short: no tags, as for other files
        return {}, {}
    return {}, {}


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of the ISO base media boxes in ``data[start:end]``; stops
    at the first box that does not fit."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _moov(fh: BinaryIO) -> bytes:
    """The body of the file's top-level ``moov`` box; empty when there is none (or too big)."""
    pos, size_of_file = 0, os.fstat(fh.fileno()).st_size
    while pos + 8 <= size_of_file:  # a size past the end would seek beyond what can be
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return b""
        size, kind = struct.unpack_from(">I4s", head)
        skip = 8
        if size == 1 and len(head) == 16:
            (size,), skip = struct.unpack_from(">Q", head, 8), 16
        if size < skip:  # 0 ("to the end") or malformed: no further box
            return b""
        if kind == b"moov":
            if size - skip > _MAX_MOOV:
                return b""
            fh.seek(pos + skip)
            return fh.read(size - skip)
        pos += size
    return b""


def _cr3_tags(fh: BinaryIO) -> tuple[Values, Values]:
    moov = _moov(fh)
    cmt: dict[bytes, bytes] = {}
    for kind, start, end in _boxes(moov, 0, len(moov)):
        if kind == b"uuid" and moov[start : start + 16] == CANON_UUID:
            for child, body, stop in _boxes(moov, start + 16, end):
                if child in (b"CMT1", b"CMT2"):
                    cmt[child] = moov[body:stop]
            break
    ifd0 = exif_values(cmt[b"CMT1"])[0] if b"CMT1" in cmt else {}
    exif = exif_values(cmt[b"CMT2"])[0] if b"CMT2" in cmt else {}
    return ifd0, exif


def _raf_tags(fh: BinaryIO, head: bytes) -> tuple[Values, Values]:
    jpeg_at, jpeg_length = struct.unpack_from(">II", head, 84)
    fh.seek(jpeg_at)
    exif = jpeg_exif(fh.read(min(jpeg_length, _JPEG_HEAD)))
    ifd0, exif_ifd = exif_values(exif) if exif else ({}, {})
    model = head[28:60].split(b"\0", 1)[0].decode("ascii", "replace").strip()
    if model and not ifd0.get(272):  # no EXIF in the preview: the header still names the camera
        ifd0 |= {271: "FUJIFILM", 272: model}
    return ifd0, exif_ifd
