"""EXIF and ICC profile carry-over from a reference frame to a stacked result.

JPEG keeps them in APP1 (``Exif``) and APP2 (``ICC_PROFILE``) segments, PNG in ``eXIf`` and
``iCCP`` chunks, TIFF in tag 34675 (ICC) and in tags of its own for the EXIF (written by
:mod:`stacker.tiff_exif`, which also reads a TIFF frame's back into a block). Frames are
read with their EXIF orientation already applied, so the copied EXIF's orientation tag is reset
to 1 (upright) to avoid a double rotation.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from stacker import tiff_exif
from stacker.pinned import open_regular
from stacker.tiffread import is_tiff

log = logging.getLogger(__name__)

_ICC_SIG = b"ICC_PROFILE\x00"
_EXIF_SIG = b"Exif\x00\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_ICC_STEP = 0xFFFF - 2 - len(_ICC_SIG) - 2  # profile bytes in one JPEG APP2 segment

#: The largest ICC profile carried over: what a JPEG's at most 255 APP2 segments hold (16 MB),
#: far above any real profile. A PNG's compressed iCCP chunk could otherwise unpack to gigabytes.
MAX_ICC_BYTES = 255 * _ICC_STEP


@dataclass(frozen=True)
class Metadata:
    """Raw EXIF (TIFF-structured, without the ``Exif\\0\\0`` prefix) and ICC profile bytes."""

    exif: bytes | None = None
    icc: bytes | None = None

    def __bool__(self) -> bool:
        return bool(self.exif or self.icc)


def read_metadata(path: Path, *, for_result: bool = True, space: bytes = b"RGB ") -> Metadata:
    """Metadata of an image file; empty where the file has none or is not parseable.

    Results are RGB, or grey (``space`` ``b"GRAY"``) when every frame was: an ICC profile for
    another colour space (a grey or CMYK frame's in an RGB result, an RGB one in a grey result)
    is left out, with a warning ``for_result`` (the metadata a result is written with).
    Attached to a result of another colour space, viewers and libpng refused or misread it.
    Read for anything else (a frame's orientation, a preview's profile), the warning was said
    of every frame, each said to be the one the result was written without the profile of."""
    try:  # a regular file only: a named pipe put in a frame's place would hang the read
        with os.fdopen(open_regular(path), "rb") as fh:
            head = fh.read()
    except OSError:
        return Metadata()
    if head[:2] == b"\xff\xd8":
        meta = _jpeg_metadata(head)
    elif head[:8] == _PNG_SIG:
        meta = _png_metadata(head)
    elif head[:4] in (b"II*\x00", b"MM\x00*"):
        meta = replace(_tiff_metadata(path), exif=tiff_exif.exif_of_tiff(head))
    elif is_webp(head):
        meta = _webp_metadata(head)
    else:
        return Metadata()
    profile = meta.icc[16:20] if meta.icc else space
    if profile != space:
        if for_result:
            log.warning(
                "%s: its ICC profile is for %s, not %s; the result is written without it",
                path,
                profile.decode("latin-1").strip() or "an unknown colour space",
                space.decode("latin-1").strip(),
            )
        return replace(meta, icc=None)
    return meta


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def webp_orientation(data: bytes) -> int:
    """The EXIF orientation (1 to 8) of a WebP file's bytes; 1 when it has none."""
    return exif_orientation(_webp_metadata(data).exif)


def _webp_metadata(data: bytes) -> Metadata:
    """The ``EXIF`` and ``ICCP`` chunks of a WebP file (RIFF; the extended format, ``VP8X``,
    carries them). Without them its frames lost the camera's EXIF and an Adobe RGB profile in
    the result, and a frame whose orientation differed from the first's was not read like it."""
    exif = icc = None
    i = 12
    while i + 8 <= len(data):
        kind, (n,) = data[i : i + 4], struct.unpack_from("<I", data, i + 4)
        body = data[i + 8 : i + 8 + n]
        if kind == b"EXIF":  # some writers keep JPEG's prefix
            exif = body[6:] if body.startswith(b"Exif\0\0") else body
        elif kind == b"ICCP":
            icc = body
        i += 8 + n + (n & 1)
    return Metadata(exif=exif or None, icc=icc or None)


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1 to 8) of a JPEG file's bytes; 1 when it has none."""
    return exif_orientation(_jpeg_metadata(data).exif)


def jpeg_exif(data: bytes) -> bytes | None:
    """The EXIF block (TIFF-structured, after ``Exif\\0\\0``) of a JPEG file's bytes; None when it
    has none. Only the segments before the image data are read: its head is enough."""
    return _jpeg_metadata(data).exif if data[:2] == b"\xff\xd8" else None


def _jpeg_segments(data: bytes):
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            return
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        yield i, marker, data[i + 4 : i + 2 + length]
        i += 2 + length


def _jpeg_metadata(data: bytes) -> Metadata:
    exif = None
    icc_parts: dict[int, bytes] = {}
    for _, marker, payload in _jpeg_segments(data):
        if marker == 0xE1 and payload.startswith(_EXIF_SIG) and exif is None:
            exif = payload[len(_EXIF_SIG) :]
        elif marker == 0xE2 and payload.startswith(_ICC_SIG) and len(payload) > len(_ICC_SIG) + 2:
            icc_parts[payload[len(_ICC_SIG)]] = payload[len(_ICC_SIG) + 2 :]  # after number, count
    icc = b"".join(icc_parts[k] for k in sorted(icc_parts)) if icc_parts else None
    return Metadata(exif=exif, icc=icc)


def _png_chunks(data: bytes):
    i = 8
    while i + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[i : i + 8])
        yield i, ctype, data[i + 8 : i + 8 + length]
        i += 12 + length


def _png_metadata(data: bytes) -> Metadata:
    exif = icc = None
    for _, ctype, payload in _png_chunks(data):
        if ctype == b"eXIf":
            exif = payload
        elif ctype == b"iCCP":
            icc = _inflate_icc(payload)
    return Metadata(exif=exif, icc=icc)


def _inflate_icc(payload: bytes) -> bytes | None:
    """The profile in a PNG ``iCCP`` chunk (name, NUL, method byte, zlib stream); None when the
    chunk is malformed or the profile is larger than :data:`MAX_ICC_BYTES`."""
    name_end = payload.find(b"\x00")
    if name_end < 0:
        return None
    inflate = zlib.decompressobj()
    try:
        icc = inflate.decompress(payload[name_end + 2 :], MAX_ICC_BYTES)
    except zlib.error:
        return None
    return icc if inflate.eof and icc else None


def _tiff_metadata(path: Path) -> Metadata:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(34675)
            icc = bytes(tag.value) if tag is not None else None
    except Exception:
        icc = None
    return Metadata(icc=icc if icc is not None and len(icc) <= MAX_ICC_BYTES else None)


def file_orientation(path: Path) -> int:
    """The EXIF/TIFF orientation (1 to 8) a viewer applies to the image at ``path``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return 1
    if is_tiff(head):  # BigTIFF too: its orientation was taken for 1
        try:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(274)
                value = int(tag.value) if tag is not None else 1
        except Exception:  # not a TIFF tifffile can parse: the decoder will say
            return 1
        return value if 1 <= value <= 8 else 1
    return exif_orientation(read_metadata(path, for_result=False).exif)


def _orientation_entry(exif: bytes) -> tuple[str, int] | None:
    """(struct byte order, offset) of IFD0's orientation entry (tag 0x0112) in raw EXIF; its
    value is 8 bytes in. ``None`` when the header is not TIFF's or IFD0 has no such entry."""
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return None
    end = "<" if exif[:2] == b"II" else ">"
    try:
        ifd = struct.unpack(end + "I", exif[4:8])[0]
        count = struct.unpack(end + "H", exif[ifd : ifd + 2])[0]
        for k in range(count):
            entry = ifd + 2 + 12 * k
            if struct.unpack(end + "H", exif[entry : entry + 2])[0] == 0x0112:
                return end, entry
    except struct.error:
        return None
    return None


def exif_orientation(exif: bytes | None) -> int:
    """IFD0's orientation tag (0x0112) of raw EXIF: 1 (upright) to 8; 1 when absent or odd."""
    found = _orientation_entry(exif) if exif else None
    if exif is None or found is None:
        return 1
    end, entry = found
    try:
        value = struct.unpack(end + "H", exif[entry + 8 : entry + 10])[0]
    except struct.error:
        return 1
    return value if 1 <= value <= 8 else 1


def upright_exif(exif: bytes) -> bytes:
    """Return ``exif`` with IFD0's orientation tag (0x0112) set to 1, if present."""
    found = _orientation_entry(exif)
    if found is None:
        return exif
    end, entry = found
    buf = bytearray(exif)
    buf[entry + 8 : entry + 10] = struct.pack(end + "H", 1)
    return bytes(buf)


def result_exif(exif: bytes, size: tuple[int, int] | None = None, software: str = "") -> bytes:
    """The reference frame's EXIF as a result's: upright (orientation 1), without the frame's
    thumbnail (IFD1: in the frame's own orientation, it showed the result sideways in
    thumbnail views), with the result's ``size`` (width, height) as its pixel dimensions
    (0xA002, 0xA003), where the frame's full sensor size was left, and with ``software`` as
    its Software (0x0131) where the camera's firmware was named: where it does not fit in the
    camera's text's place (the block is edited in place, the maker note's offsets kept), that
    text is blanked, and the result's own mark names stackrig (:func:`mark_software`)."""
    buf = bytearray(upright_exif(exif))
    if len(buf) < 8 or buf[:2] not in (b"II", b"MM"):
        return bytes(buf)
    end = "<" if buf[:2] == b"II" else ">"
    try:
        ifd0 = struct.unpack_from(end + "I", buf, 4)[0]
        count = struct.unpack_from(end + "H", buf, ifd0)[0]
        struct.pack_into(end + "I", buf, ifd0 + 2 + 12 * count, 0)  # no IFD1 (thumbnail)
        _replace_software(buf, end, ifd0, software)
        exif_ifd = next(
            (struct.unpack_from(end + "I", buf, e + 8)[0] for e in _entries(buf, end, ifd0)
             if struct.unpack_from(end + "H", buf, e)[0] == 0x8769),
            None,
        )  # fmt: skip
        if size is not None and exif_ifd is not None:
            for e in _entries(buf, end, exif_ifd):
                tag, kind, n = struct.unpack_from(end + "HHI", buf, e)
                if tag in (0xA002, 0xA003) and n == 1 and kind in (3, 4):
                    value = size[0] if tag == 0xA002 else size[1]
                    buf[e + 8 : e + 12] = b"\0\0\0\0"
                    struct.pack_into(end + ("H" if kind == 3 else "I"), buf, e + 8, value)
    except struct.error:  # a damaged block: as upright as it could be made
        return upright_exif(exif)
    return bytes(buf)


def _replace_software(buf: bytearray, end: str, ifd0: int, software: str) -> None:
    """IFD0's Software text replaced by ``software`` in its own place, or blanked where that
    does not fit (see :func:`result_exif`)."""
    for e in _entries(buf, end, ifd0):
        tag, kind, n = struct.unpack_from(end + "HHI", buf, e)
        if tag != 0x0131 or kind != 2:
            continue
        at = e + 8 if n <= 4 else struct.unpack_from(end + "I", buf, e + 8)[0]
        if at + n > len(buf):
            return
        text = software.encode("ascii", "replace")
        buf[at : at + n] = (text if len(text) < n else b"").ljust(n, b"\0")


def _entries(buf: bytearray, end: str, ifd: int) -> list[int]:
    """Offsets of the 12-byte entries of the IFD at ``ifd``."""
    count = struct.unpack_from(end + "H", buf, ifd)[0]
    return [ifd + 2 + 12 * k for k in range(count)]


def embed_metadata(
    data: bytes,
    ext: str,
    meta: Metadata,
    size: tuple[int, int] | None = None,
    software: str = "",
) -> bytes:
    """Insert ``meta`` into an encoded JPEG or PNG of ``size`` (width, height), made by
    ``software``; other formats are returned unchanged."""
    ext = ext.lower()
    if meta.exif:
        meta = replace(meta, exif=result_exif(meta.exif, size, software))
    if ext in (".jpg", ".jpeg"):
        return _embed_jpeg(data, meta)
    if ext == ".png":
        return _embed_png(data, meta)
    return data


def _embed_jpeg(data: bytes, meta: Metadata) -> bytes:
    segments = []
    if meta.exif and len(meta.exif) + len(_EXIF_SIG) + 2 <= 0xFFFF:
        payload = _EXIF_SIG + upright_exif(meta.exif)
        segments.append(b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    if meta.icc and len(meta.icc) <= MAX_ICC_BYTES:
        step = _ICC_STEP
        parts = [meta.icc[i : i + step] for i in range(0, len(meta.icc), step)]
        for n, part in enumerate(parts, 1):
            payload = _ICC_SIG + bytes([n, len(parts)]) + part
            segments.append(b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload)
    # after SOI and a leading JFIF APP0, as readers expect
    pos = 2
    for start, marker, payload in _jpeg_segments(data):
        if marker == 0xE0:
            pos = start + 4 + len(payload)
        break
    return data[:pos] + b"".join(segments) + data[pos:]


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _embed_png(data: bytes, meta: Metadata) -> bytes:
    chunks = []
    if meta.icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.exif:
        chunks.append(_png_chunk(b"eXIf", upright_exif(meta.exif)))
    ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    return data[:ihdr_end] + b"".join(chunks) + data[ihdr_end:]


_COM_PREFIX = b"Software: "
_MARK_HEAD_BYTES = 1 << 18  # the marker sits right after the header: 256 KiB is plenty


def mark_software(data: bytes, ext: str, software: str) -> bytes:
    """Stamp ``software`` into an encoded JPEG (a comment) or PNG (a ``tEXt`` chunk).

    The mark goes first, right after JPEG's JFIF segment or PNG's header chunk, so
    :func:`has_software_mark` finds it by reading the start of the file. TIFF carries it in the
    Software tag instead (see :func:`stacker.io.encode_image`).
    """
    ext = ext.lower()
    if ext in (".jpg", ".jpeg"):
        payload = _COM_PREFIX + software.encode()
        segment = b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload
        pos = 2
        for start, marker, body in _jpeg_segments(data):
            if marker == 0xE0:
                pos = start + 4 + len(body)
            break
        return data[:pos] + segment + data[pos:]
    if ext == ".png":
        ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
        chunk = _png_chunk(b"tEXt", b"Software\x00" + software.encode())
        return data[:ihdr_end] + chunk + data[ihdr_end:]
    return data


def has_software_mark(path: Path, software: str) -> bool:
    """True when the image at ``path`` was stamped by :func:`mark_software` (or as TIFF).

    Only a regular file is read (:func:`~stacker.pinned.open_regular`), through the one handle
    opened.
    """
    try:
        fd = open_regular(path)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        head = fh.read(_MARK_HEAD_BYTES)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            fh.seek(0)
            return _tiff_software(fh, path.name) == software
    name = software.encode()
    if head[:2] == b"\xff\xd8":
        return any(
            marker == 0xFE and body == _COM_PREFIX + name
            for _, marker, body in _jpeg_segments(head)
        )
    if head[:8] == _PNG_SIG:
        for _, ctype, body in _png_chunks(head):
            if ctype == b"IDAT":
                return False
            if ctype == b"tEXt" and body == b"Software\x00" + name:
                return True
        return False
    return False


def _tiff_software(fh: BinaryIO, name: str) -> str | None:
    try:
        import tifffile

        with tifffile.TiffFile(fh, name=name) as tif:
            tag = tif.pages[0].tags.get(305)
            return str(tag.value) if tag is not None else None
    except Exception:  # not a TIFF tifffile can parse: no mark
        return None
