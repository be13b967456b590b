"""The reference frame's EXIF in a TIFF result.

A JPEG or PNG carries EXIF as one opaque block; a TIFF holds the same tags in its own
structure (TIFF 6.0, section 2; EXIF 2.32, section 4.6): the camera's make, model and date
as tags of the image's IFD, the exposure (time, f-number, ISO, focal length, lens) in an Exif
IFD that the image's ``ExifIFD`` tag (34665) points to. So the block is taken apart: its
IFD0 text tags become TIFF tags (:func:`camera_tags`), and its Exif and GPS IFDs are
rewritten little-endian at the end of the file, every offset made absolute
(:func:`append_exif_ifd`), with the interoperability IFD the Exif IFD points to: a camera set
to Adobe RGB says so there alone (``InteroperabilityIndex`` "R03", EXIF 2.32, 4.6.7, beside
ColorSpace "uncalibrated") and embeds no ICC profile, so without it a viewer shows the result
as sRGB, its colours dulled. A TIFF frame's are read back into a block the same way
(:func:`exif_of_tiff`).
Left out: the maker note, whose inner offsets only the camera's maker knows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

EXIF_IFD_TAG = 34665
"""The ExifIFD pointer of a TIFF's IFD (and of an EXIF block's IFD0)."""

GPS_IFD_TAG = 34853
"""The GPSInfo pointer: where a camera with a GPS unit (or a phone) put where it was."""

_POINTERS = {EXIF_IFD_TAG: EXIF_IFD_TAG + 1, GPS_IFD_TAG: GPS_IFD_TAG + 1}
"""The sub-IFDs carried, each pointer with its placeholder: the tag one above it, written as a
LONG in its place by a TIFF writer that will not write an IFD pointer (tifffile); no tag sorts
between the two, so the placeholder's entry can become the pointer."""

CAMERA_TAGS = (271, 272, 306, 315, 33432)
"""IFD0 text tags carried over: Make, Model, DateTime, Artist, Copyright."""

INTEROP_IFD_TAG = 0xA005
"""The Exif IFD's pointer to the interoperability IFD (carried with it, see the module)."""

_ORIENTATION = 0x0112

_LEFT_OUT = frozenset({0x927C, INTEROP_IFD_TAG, 0xA002, 0xA003, 0x9101})
"""MakerNote, the Interoperability IFD pointer (written again where the IFD is), the frame's
pixel dimensions (its full sensor size, where the result has its own in ImageWidth and
ImageLength), and ComponentsConfiguration (a JPEG's YCbCr order, which EXIF 2.32 does not
allow in a TIFF)."""

#: Value types (TIFF 6.0, section 2, "Types", and IFD, 13, of TIFF Technical Note 1, which
#: libtiff gives the ExifIFD and GPSInfo pointers): the struct code of one element, or the
#: byte count for the types whose elements are bytes.
_ELEMENTS: dict[int, str] = {
    1: "B", 2: "B", 3: "H", 4: "I", 5: "II", 6: "b", 7: "B", 8: "h", 9: "i", 10: "ii",
    11: "f", 12: "d", 13: "I",
}  # fmt: skip

Entry = tuple[int, int, int, bytes]
"""(tag, type, count, value in little-endian byte order)."""


def _read_ifd(block: bytes, offset: int) -> list[Entry]:
    """The entries of the IFD at ``offset`` in an EXIF block, values converted to little
    endian; entries of unknown type, or whose value lies outside the block, are skipped."""
    order = "<" if block[:2] == b"II" else ">"
    (count,) = struct.unpack_from(order + "H", block, offset)
    entries = []
    for pos in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack_from(order + "HHI", block, pos)
        element = _ELEMENTS.get(kind)
        if element is None:
            continue
        size = struct.calcsize(order + element) * n
        if size <= 4:
            start = pos + 8
        else:
            (start,) = struct.unpack_from(order + "I", block, pos + 8)
        raw = block[start : start + size]
        if len(raw) != size:
            continue
        values = struct.unpack(order + element * n, raw)
        entries.append((tag, kind, n, struct.pack("<" + element * n, *values)))
    return entries


def _exif_entries(exif: bytes) -> tuple[list[Entry], list[Entry]]:
    """(IFD0's entries, the Exif IFD's entries) of an EXIF block; empty where unreadable."""
    ifd0, subs = _ifds(exif)
    return ifd0, subs.get(EXIF_IFD_TAG, [])


def _ifds(exif: bytes) -> tuple[list[Entry], dict[int, list[Entry]]]:
    """IFD0's entries of an EXIF block (or a TIFF file), and those of the sub-IFDs of
    :data:`_POINTERS` it points to, by pointer, with the interoperability IFD the Exif IFD
    points to under :data:`INTEROP_IFD_TAG`; empty where unreadable."""
    if len(exif) < 8 or exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return [], {}
    order = "<" if exif[:2] == b"II" else ">"
    try:
        ifd0 = _read_ifd(exif, struct.unpack_from(order + "I", exif, 4)[0])
    except struct.error:
        return [], {}
    subs = _pointed(exif, ifd0, _POINTERS)
    subs.update(_pointed(exif, subs.get(EXIF_IFD_TAG, []), (INTEROP_IFD_TAG,)))
    return ifd0, subs


def _pointed(exif: bytes, entries: list[Entry], pointers: Iterable[int]) -> dict[int, list[Entry]]:
    """The entries of the IFDs that ``entries`` point to with a tag of ``pointers``, by tag."""
    subs = {}
    for tag, kind, n, value in entries:
        if tag in pointers and kind in (4, 13) and n == 1:
            try:
                subs[tag] = _read_ifd(exif, struct.unpack("<I", value)[0])
            except struct.error:  # cut short or pointing outside: carry what was read
                continue
    return subs


def _carried(exif: bytes) -> tuple[list[Entry], dict[int, list[Entry]]]:
    """:func:`_ifds` without what a result must not carry (:data:`_LEFT_OUT`), and without the
    sub-IFDs left empty by it."""
    ifd0, subs = _ifds(exif)
    subs = {tag: [e for e in entries if e[0] not in _LEFT_OUT] for tag, entries in subs.items()}
    if not subs.get(EXIF_IFD_TAG):  # nothing left to point to it
        subs.pop(INTEROP_IFD_TAG, None)
    return ifd0, {tag: entries for tag, entries in subs.items() if entries}


def camera_tags(exif: bytes) -> list[tuple[int, str, int, bytes, bool]]:
    """IFD0's :data:`CAMERA_TAGS` of an EXIF block, as ``tifffile`` extra tags."""
    ifd0, _ = _ifds(exif)
    return [(tag, "s", n, value, True) for tag, kind, n, value in ifd0
            if tag in CAMERA_TAGS and kind == 2]  # fmt: skip


def placeholders(exif: bytes) -> list[tuple[int, str, int, int, bool]]:
    """The ``tifffile`` extra tags that keep the place of the sub-IFDs (Exif, GPS) the EXIF
    block has something in: :func:`append_exif_ifd` turns them into pointers."""
    _, subs = _carried(exif)
    return [(_POINTERS[tag], "I", 1, 0, True) for tag in subs if tag in _POINTERS]


def _ifd_bytes(entries: list[Entry], at: int) -> bytes:
    """A little-endian IFD placed at file offset ``at``, its long values after it."""
    entries = sorted(entries)
    head = struct.pack("<H", len(entries))
    table, data = b"", b""
    data_at = at + 2 + 12 * len(entries) + 4
    for tag, kind, n, value in entries:
        if len(value) <= 4:
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_at + len(data))
            data += value + b"\0" * (len(value) % 2)  # values start on a word boundary
        table += struct.pack("<HHI", tag, kind, n) + field
    return head + table + b"\0\0\0\0" + data


def append_exif_ifd(tiff: bytes, exif: bytes) -> bytes:
    """``tiff`` (little-endian, written with the :func:`placeholders` in its first IFD) with
    the EXIF block's Exif and GPS IFDs appended and each placeholder turned into the pointer
    to its IFD. Unchanged where there is no placeholder or nothing to carry."""
    _, subs = _carried(exif)
    if tiff[:4] != b"II*\x00" or not subs:
        return tiff
    return _appended(tiff, subs)


def _appended(tiff: bytes, subs: dict[int, list[Entry]]) -> bytes:
    """Little-endian ``tiff`` with the IFDs of ``subs`` after it, each pointed to from its
    placeholder in the first IFD (a sub-IFD without one is left out)."""
    (ifd,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, ifd)
    places = {struct.unpack_from("<H", tiff, pos)[0]: pos
              for pos in range(ifd + 2, ifd + 2 + 12 * count, 12)}  # fmt: skip
    out = bytearray(tiff)
    for tag, entries in subs.items():
        pos = places.get(_POINTERS.get(tag, -1))
        if pos is None:
            continue
        out += b"\0" * (len(out) % 2)
        out[pos : pos + 12] = struct.pack("<HHII", tag, 4, 1, len(out))
        inner = subs.get(INTEROP_IFD_TAG) if tag == EXIF_IFD_TAG else None
        out += _ifd_with_inner(entries, len(out), inner)
    return bytes(out)


def _ifd_with_inner(entries: list[Entry], at: int, inner: list[Entry] | None) -> bytes:
    """:func:`_ifd_bytes`, followed by the IFD ``inner`` (if any) that it points to with an
    :data:`INTEROP_IFD_TAG` entry (whose size does not depend on where ``inner`` lands)."""
    if not inner:
        return _ifd_bytes(entries, at)
    pointer = (INTEROP_IFD_TAG, 4, 1, bytes(4))
    size = len(_ifd_bytes([*entries, pointer], at))
    inner_at = at + size + size % 2
    pointer = (INTEROP_IFD_TAG, 4, 1, struct.pack("<I", inner_at))
    outer = _ifd_bytes([*entries, pointer], at)
    return outer + b"\0" * (size % 2) + _ifd_bytes(inner, inner_at)


def exif_of_tiff(tiff: bytes) -> bytes | None:
    """The EXIF block of a TIFF frame (a raw converter's export): its IFD0's camera tags and
    orientation, its Exif and GPS IFDs, as a JPEG would carry them; ``None`` when it has none.

    The inverse of :func:`camera_tags` and :func:`append_exif_ifd`, so that a TIFF frame's
    exposure reaches a result as a JPEG frame's does.
    """
    ifd0, subs = _carried(tiff)
    ifd0 = [e for e in ifd0 if (e[0] in CAMERA_TAGS and e[1] == 2) or e[0] == _ORIENTATION]
    if not ifd0 and not subs:
        return None
    if EXIF_IFD_TAG in subs:  # the pixel dimensions a JPEG's must have: the result's, filled
        # in by metadata.result_exif (the frame's were its sensor's, left out by _carried)
        subs[EXIF_IFD_TAG] += [(0xA002, 4, 1, bytes(4)), (0xA003, 4, 1, bytes(4))]
    marks = [(_POINTERS[tag], 4, 1, bytes(4)) for tag in subs if tag in _POINTERS]
    return _appended(b"II*\x00" + struct.pack("<I", 8) + _ifd_bytes([*ifd0, *marks], 8), subs)


def _value(kind: int, n: int, raw: bytes) -> object:
    """One little-endian entry value as tifffile gives a tag's: text as ``str`` (NULs and blanks
    stripped), a (S)RATIONAL as its flat numerator/denominator pairs, a single number as a
    number, several as a tuple, UNDEFINED as bytes."""
    if kind == 2:
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    if kind == 7:
        return raw
    values = struct.unpack("<" + _ELEMENTS[kind] * n, raw)
    return values if kind in (5, 10) or n != 1 else values[0]


def exif_values(exif: bytes) -> tuple[dict[int, Any], dict[int, Any]]:
    """(IFD0's values, the Exif IFD's values) of an EXIF block, by tag code, in the form
    tifffile gives a TIFF file's tags (see :func:`_value`); empty where unreadable. For a
    block whose first IFD is itself an Exif IFD (a CR3 file's ``CMT2``), the first dict."""
    ifd0, exif_ifd = _exif_entries(exif)
    return (
        {tag: _value(kind, n, value) for tag, kind, n, value in ifd0},
        {tag: _value(kind, n, value) for tag, kind, n, value in exif_ifd},
    )
