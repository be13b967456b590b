"""Minimal CR3 and RAF files for tests: the containers and their metadata, no image data.

Laid out as :mod:`stacker.raw_exif` describes (after lclevy's "Describing the CR3 format" and
the File Formats Wiki's "Fujifilm RAF"); LibRaw cannot decode them, exiftool reads their tags.
"""

from __future__ import annotations

import struct

from stacker.raw_exif import CANON_UUID, RAF_MAGIC

Tag = tuple[int, int, bytes]
"""(tag, TIFF type, value in the TIFF's byte order); the count follows from the type."""

_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 10: 8}


def text(tag: int, value: str) -> Tag:
    return tag, 2, value.encode() + b"\0"


def rational(tag: int, numerator: int, denominator: int, order: str = "<") -> Tag:
    return tag, 5, struct.pack(order + "II", numerator, denominator)


def short(tag: int, value: int, order: str = "<") -> Tag:
    return tag, 3, struct.pack(order + "H", value)


def tiff(ifd: list[Tag], exif_ifd: list[Tag] | None = None, order: str = "<") -> bytes:
    """A TIFF structure: one IFD holding ``ifd``, and with ``exif_ifd`` an Exif IFD after it
    that the first one points to (tag 34665). Offsets count from the structure's start."""

    def table(tags: list[Tag], at: int) -> bytes:
        out, heap = struct.pack(order + "H", len(tags)), b""
        heap_at = at + 2 + 12 * len(tags) + 4
        for tag, kind, value in sorted(tags):
            count = len(value) // _SIZES[kind]
            if len(value) <= 4:
                out += struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\0")
            else:
                out += struct.pack(order + "HHII", tag, kind, count, heap_at + len(heap))
                heap += value + b"\0" * (len(value) % 2)
        return out + b"\0\0\0\0" + heap

    magic = b"II*\0" if order == "<" else b"MM\0*"
    if exif_ifd is None:
        return magic + struct.pack(order + "I", 8) + table(ifd, 8)
    pointer = (34665, 4, struct.pack(order + "I", 0))
    at = 8 + len(table([*ifd, pointer], 8))
    pointer = (34665, 4, struct.pack(order + "I", at))
    return magic + struct.pack(order + "I", 8) + table([*ifd, pointer], 8) + table(exif_ifd, at)


def box(kind: bytes, body: bytes, *, large: bool = False) -> bytes:
    """An ISO base media box; ``large`` writes its size in the 64-bit form."""
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def cr3(ifd0: list[Tag], exif_ifd: list[Tag]) -> bytes:
    """A CR3 file: ``ftyp`` (brand ``crx ``), then ``moov`` holding Canon's ``uuid`` box with
    ``CMT1`` (a TIFF whose IFD is IFD0), ``CMT2`` (one whose IFD is the Exif IFD) and an empty
    ``CMT3``, and an ``mdat`` standing for the image data."""
    canon = CANON_UUID + b"".join([
        box(b"CNCV", b"CanonCR3_001/00.09.00/00.00.00"),
        box(b"CMT1", tiff(ifd0)),
        box(b"CMT2", tiff(exif_ifd)),
        box(b"CMT3", tiff([])),
    ])  # fmt: skip
    ftyp = box(b"ftyp", b"crx " + struct.pack(">I", 1) + b"crx isom")
    moov = box(b"moov", box(b"uuid", canon) + box(b"mvhd", bytes(100)))
    return ftyp + box(b"free", bytes(6), large=True) + moov + box(b"mdat", bytes(64))


def jpeg(exif: bytes | None) -> bytes:
    """A JPEG's head, with ``exif`` in an APP1 segment; image data left out."""
    app1 = b""
    if exif is not None:
        payload = b"Exif\0\0" + exif
        app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return b"\xff\xd8" + app1 + b"\xff\xd9"


def raf(model: str, exif: bytes | None) -> bytes:
    """A RAF file: its header naming ``model``, the offset directory, and the embedded JPEG
    (holding ``exif``) at offset 148, where cameras put it."""
    preview = jpeg(exif)
    head = RAF_MAGIC + b"0201" + b"FF129502" + model.encode().ljust(32, b"\0") + b"0100"
    head += bytes(20) + struct.pack(">II", 148, len(preview))
    head += struct.pack(">IIII", 148 + len(preview), 0, 148 + len(preview), 0)
    return head.ljust(148, b"\0") + preview + bytes(64)
