"""Reading and writing frames: 8/16-bit JPEG, PNG and TIFF, RAW through rawpy (optional extra).

RAW frames are read as linear camera RGB (:mod:`stacker.raw`); their composites are written as
linear DNG or rendered (:func:`stacker.raw.write_raw_result`).

Images are numpy arrays in OpenCV's BGR channel order, ``uint8`` or ``uint16``, always three
channels. Writes are atomic (temporary file, fsync, rename) so a crash never leaves half a frame
behind under its final name. Metadata (EXIF and the ICC profile) is carried from a source file to
the output where the output format can hold it; see :mod:`stacker.metadata`.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import os
import secrets
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import cv2
import numpy as np

from stacker.errors import (
    MEMORY_REMEDY,
    STORAGE_REMEDIES,
    TOO_MANY_FILES,
    OutOfMemoryError,
    ShortOfFilesError,
    StackerError,
    UnreadableImageError,
    or_another_output,
    resource_shortage,
)
from stacker.framepool import FramePool
from stacker.metadata import (
    Metadata,
    embed_metadata,
    file_orientation,
    is_webp,
    jpeg_orientation,
    mark_software,
    read_metadata,
    webp_orientation,
)
from stacker.tiffread import decode_tiff, is_tiff, survey

RAW_EXTENSIONS = frozenset(
    {".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".dng", ".pef", ".srw",
     ".3fr", ".fff", ".iiq", ".mos", ".rwl", ".crw", ".mrw", ".srf", ".sr2", ".erf", ".dcr",
     ".kdc", ".mef"}
)  # fmt: skip
"""RAW files LibRaw decodes: the current bodies' formats, and medium format (Hasselblad 3FR and
FFF, Phase One IIQ, Leaf MOS, Mamiya MEF), Leica RWL and older bodies (Canon CRW, Minolta MRW,
Sony SRF/SR2, Kodak DCR/KDC, Epson ERF), which macro work still uses. Sigma X3F is left out:
LibRaw reads it only when built with its optional X3F decoder."""
RASTER_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".bmp", ".webp"}
)  # .jfif: a JPEG as Windows' browsers save one
IMAGE_EXTENSIONS = RASTER_EXTENSIONS | RAW_EXTENSIONS
UNREAD_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
"""Image files a phone or a recent camera writes that stackrig does not read in a folder: not
every OpenCV build decodes them, so they are said rather than stacked."""
READ_KINDS = "JPEG, PNG, TIFF, BMP, WebP or RAW"
"""The frames a folder is searched for, as messages name them."""
WRITE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
OUTPUT_EXTENSIONS = WRITE_EXTENSIONS | {".dng"}
"""Composite formats: the encodable ones, plus linear DNG for stacks of RAW frames."""


def is_image_path(path: Path) -> bool:
    """True for a file name stackrig can read (by extension; hidden files never count)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def is_raw_path(path: str | os.PathLike[str]) -> bool:
    """True for a RAW file name (by extension), whose frames are read in linear light."""
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def read_image(
    path: str | os.PathLike[str],
    *,
    orientation: int | None = None,
    pool: FramePool | None = None,
    floats: FloatRange | None = None,
) -> np.ndarray:
    """Read a frame as a 3-channel BGR ``uint8`` or ``uint16`` array, turned as viewers show it.

    The file's EXIF (JPEG, PNG) or TIFF orientation is applied, as every viewer does; with
    ``orientation`` (1 to 8) the file's own is ignored and that one applied instead (see
    :class:`OrientedReader`). RAW files give linear camera RGB, upright (see
    :func:`stacker.raw.read_raw_linear`). Raises :class:`UnreadableImageError` naming the file
    when it cannot be decoded. With ``pool``, a JPEG may be decoded into the array of a frame
    nothing holds any more (:class:`~stacker.framepool.FramePool`). A frame of floats is put in
    16 bits with the range of ``floats``, which the first such frame of a stack sets.
    """
    p = Path(path)
    if is_raw_path(p):
        return read_raw(p)
    try:
        data = _frame_bytes(p)
    except OSError as exc:
        raise UnreadableImageError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    return _decoded(p, data, orientation, by_name=True, pool=pool, floats=floats)


def _frame_bytes(path: Path) -> bytes:
    """The bytes of the frame file ``path``; one larger than any frame can be (a file that is no
    frame, or one dropped into a hot folder to exhaust its memory) is refused unread."""
    with path.open("rb") as fh:
        reason = _too_large(os.fstat(fh.fileno()).st_size)
        if reason is not None:
            raise UnreadableImageError(f"{path}: {reason}")
        return fh.read()


def _too_large(size: int) -> str | None:
    """Why a file of ``size`` bytes is not read as a frame, or None."""
    if size <= MAX_FRAME_BYTES:
        return None
    return (
        f"{size / 1e9:.1f} GB, larger than any frame can be ({MAX_FRAME_BYTES / 1e9:.1f} GB); "
        "not read"
    )


def read_raw(path: Path, *, flip: int | None = None) -> np.ndarray:
    """:func:`stacker.raw.read_raw_linear` of a RAW file not visibly cut short (see
    :func:`truncation`): LibRaw decodes a file zero-filled past where a copy has reached
    without a complaint, and such a frame, merged with a wrong alignment, had the good frames
    after it rejected against it."""
    from stacker.raw import read_raw_linear

    try:
        reason = truncation(path)
    except OSError as exc:
        raise UnreadableImageError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if reason is not None:
        raise UnreadableImageError(f"{path}: {reason}")
    return read_raw_linear(path, flip=flip)


def decode_image(data: bytes, path: str | os.PathLike[str]) -> np.ndarray:
    """:func:`read_image` of the bytes of file ``path``, read by the caller through a handle it
    trusts (opened with ``O_NOFOLLOW``, say): decoded from ``data`` alone and turned as the file
    says. ``path`` names the file in messages and tells a RAW file; it is never opened again, so
    a link swapped in for it since cannot put another file's pixels in its place."""
    p = Path(path)
    if is_raw_path(p):
        from stacker.raw import read_raw_linear

        return read_raw_linear(p, data=data)
    return _decoded(p, data, None, by_name=False)


def _decoded(
    p: Path,
    data: bytes,
    orientation: int | None,
    *,
    by_name: bool,
    pool: FramePool | None = None,
    floats: FloatRange | None = None,
) -> np.ndarray:
    """The pixels of ``data`` (file ``p``'s bytes), checked, in 8 or 16 bits, turned upright;
    float pixels in the stack's ``floats`` range."""
    try:
        size = header_size(data)
        _check_pixel_count(p, size)
        img, own = _decode(p, data, by_name=by_name, size=size, pool=pool) if data else (None, 1)
    except OSError as exc:
        failed = ShortOfFilesError if exc.errno in TOO_MANY_FILES else UnreadableImageError
        raise failed(f"{p}: cannot read file ({exc.strerror or exc})") from None
    except (cv2.error, MemoryError) as exc:  # OpenCV's own size limit, a decoder's assertion
        if resource_shortage(exc) is not None:  # not the frame's fault: it is not left out
            short = f"{p}: not enough memory to decode it; {MEMORY_REMEDY}"
            raise OutOfMemoryError(short) from None
        reason = str(exc).strip().splitlines()[-1]
        raise UnreadableImageError(f"{p}: not a readable image ({reason})") from None
    if img is None and p.suffix.lower() in UNREAD_EXTENSIONS:
        kind = p.suffix[1:].upper()
        raise UnreadableImageError(f"{p}: {kind} is not read; export it as JPEG or TIFF")
    if img is None:
        raise UnreadableImageError(f"{p}: not a readable image (corrupt, truncated or unsupported)")
    if img.dtype not in (np.uint8, np.uint16):
        img = to_uint16(img, floats)
    if own:  # stored pixels: turn them as the file (or the caller) says
        return apply_orientation(img, own if orientation is None else orientation)
    if orientation is not None:  # turned by the decoder as the file says
        own = file_orientation(p)
        if own != orientation:  # back to the stored pixels, then as asked
            img = apply_orientation(apply_orientation(img, _INVERSE[own]), orientation)
    return img


_IMREAD_INTO = int(cv2.__version__.split(".")[0]) >= 5
"""Whether ``cv2.imread`` takes an output array (``imread(name, None, flags)``, OpenCV 5 on).
That form decodes into the array it returns; the two-argument form, the only one before
OpenCV 5, costs a third more there (0.20 against 0.15 s a 24 MP JPEG, OpenCV 5.1, one core)."""


def _decode(
    path: Path,
    data: bytes,
    *,
    by_name: bool,
    size: tuple[int, int] | None = None,
    pool: FramePool | None = None,
) -> tuple[np.ndarray | None, int]:
    """Decode an image file (its bytes ``data`` already read); None if it is not one. With the
    pixels comes the orientation still to apply to them (0: the decoder applied the file's own).

    A JPEG is decoded with ``cv2.imread``, straight into the array it returns (``imdecode``
    returns a copy of its own result: 72 MB more at the moment of decoding at 24 MP, and a
    tenth of a second), as stored, and turned as its EXIF says: OpenCV 5.0's ``imread`` fails
    on files whose orientation transposes them. ``imread`` also returns a JPEG cut short (with a
    grey bottom), which ``imdecode`` refuses, so its end marker is checked in ``data`` first.
    Other formats, paths the file system encoding cannot carry to OpenCV, and any file when
    ``by_name`` is false (the name must not be opened again), are decoded from ``data``, turned
    by the decoder. ``pool`` lends the array a JPEG of ``size`` (its header's) is decoded into.
    """
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR
    name = os.fsencode(path).decode("utf-8", errors="replace")
    if by_name and data.startswith(b"\xff\xd8") and "\ufffd" not in name:
        if not _jpeg_is_complete(data):
            return None, 1
        as_stored = flags | cv2.IMREAD_IGNORE_ORIENTATION
        if not _IMREAD_INTO:
            return cv2.imread(name, as_stored), jpeg_orientation(data)
        into = pool.lend((size[1], size[0], 3)) if pool is not None and size else None
        return _imread_into(name, as_stored, into), jpeg_orientation(data)
    tiff = survey(data) if is_tiff(data) else None
    if tiff is not None and tiff.images > 1:
        raise UnreadableImageError(
            f"{path}: a TIFF of {tiff.images} images (a whole stack?), and stackrig reads one "
            "frame a file: save each image as a file of its own (ImageJ: File > Save As > "
            "Image Sequence)"
        )
    if tiff is not None and tiff.opencv_misreads:
        return decode_tiff(data, MAX_FRAME_BYTES) or (None, 1)
    if is_webp(data):  # as stored, and turned here: not every OpenCV turns a WebP
        as_stored = flags | cv2.IMREAD_IGNORE_ORIENTATION
        return cv2.imdecode(np.frombuffer(data, np.uint8), as_stored), webp_orientation(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if decoded is None and is_tiff(data):  # float16, Zstandard...: see stacker.tiffread
        return decode_tiff(data, MAX_FRAME_BYTES) or (None, 1)
    return decoded, 0


def _imread_into(name: str, flags: int, into: np.ndarray | None) -> np.ndarray | None:
    """``cv2.imread`` of ``name`` into ``into`` (lent by a :class:`FramePool`, or None).

    Given an array, OpenCV 5.1 returns it untouched when it cannot decode the file, and raises
    when the frame's size is not the one its header gave; either way, and for a frame whose last
    row is the pool's mark, the file is decoded again as without a pool, with its usual result.
    """
    if into is not None and _decoded_into(name, flags, into):
        return into
    return cv2.imread(name, None, flags)


def _decoded_into(name: str, flags: int, into: np.ndarray) -> bool:
    try:
        stored = cv2.imread(name, into, flags)
    except cv2.error:
        return False
    return stored is into and FramePool.written(into)


_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}  # a quarter turn undoes the other


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels as EXIF orientation ``orientation`` (1 to 8) tells a viewer to."""
    turned = {
        1: img,
        2: img[:, ::-1],  # mirrored left-right
        3: img[::-1, ::-1],  # upside down
        4: img[::-1],  # mirrored top-bottom
        5: img.swapaxes(0, 1),  # transposed
        6: np.rot90(img, -1),  # a quarter turn clockwise
        7: np.rot90(img, 2).swapaxes(0, 1),  # transverse
        8: np.rot90(img, 1),  # a quarter turn anticlockwise
    }.get(orientation, img)
    return np.ascontiguousarray(turned)


class OrientedReader:
    """Reads the frames of one stack so that they all keep the first frame's orientation.

    Frames are read as viewers show them (:func:`read_image`). A camera pointing straight down
    at a subject often changes its mind about which way is up between frames: the pixels are
    stored the same way but the EXIF orientation differs, so one frame comes out turned and no
    longer fits, or (a flip between 1 and 3, or 6 and 8) fits upside down and aligns with
    nothing. Such a frame (a different orientation tag, and the first frame's orientation gives
    it the stack's size) is read in the first frame's orientation instead, and :meth:`read` says
    so: the frames of a stack come from one fixed camera, so their stored pixels agree.
    """

    def __init__(self, pool: FramePool | None = None) -> None:
        self.pool = pool
        """Where JPEG frames are decoded (:class:`~stacker.framepool.FramePool`), if given."""
        self.shape: tuple[int, int] | None = None
        self.orientation = 1
        self.raw_flip: int | None = None  # LibRaw's orientation code of a RAW first frame
        self.floats = FloatRange()

    def read(self, path: str | os.PathLike[str]) -> tuple[np.ndarray, str | None]:
        """The frame at ``path``, and a note when it was turned to fit the stack or its
        highlights clipped to the first frame's range (else None)."""
        image, note = self._read(Path(path))
        if self.floats.clipped:
            self.floats.clipped = False
            top = f"{self.floats.top:.4g}"
            note = f"{path}: float pixels above the first frame's brightest ({top}) clipped"
        return image, note

    def _read(self, p: Path) -> tuple[np.ndarray, str | None]:
        if self.shape is None:
            image = read_image(p, pool=self.pool, floats=self.floats)
            self.shape = image.shape[:2]
            if is_raw_path(p):
                from stacker.raw import FLIP_TO_EXIF, raw_flip

                self.raw_flip = raw_flip(p)
                self.orientation = FLIP_TO_EXIF.get(self.raw_flip, 1)
            else:
                self.orientation = file_orientation(p)
            return image, None
        if is_raw_path(p):
            return self._read_raw(p)
        own = file_orientation(p)
        if own == self.orientation:
            return read_image(p, pool=self.pool, floats=self.floats), None
        turned = read_image(p, orientation=self.orientation, pool=self.pool, floats=self.floats)
        if turned.shape[:2] != self.shape:  # pixels really turned: as viewers show it
            return read_image(p, pool=self.pool, floats=self.floats), None
        return turned, self._note(p, own)

    def _read_raw(self, p: Path) -> tuple[np.ndarray, str | None]:
        """A RAW frame, turned by LibRaw: in the first frame's orientation when only its tag
        differs (a RAW file holds the sensor's pixels as they are, whatever the tag says)."""
        from stacker.raw import FLIP_TO_EXIF, raw_flip

        if self.raw_flip is None:  # a rendered first frame: the stack refuses this one
            return read_raw(p), None
        own = raw_flip(p)
        if own == self.raw_flip:
            return read_raw(p), None
        turned = read_raw(p, flip=self.raw_flip)
        if turned.shape[:2] != self.shape:  # not the stack's size either way: as it says
            return read_raw(p), None
        return turned, self._note(p, FLIP_TO_EXIF.get(own, 1))

    def _note(self, p: Path, own: int) -> str:
        return (
            f"{p}: EXIF orientation {own} differs from the first frame's {self.orientation} "
            "(a camera pointing straight down often flips it); read like the first frame"
        )


#: Largest frame read, in pixels: above any camera's pixel-shift output, and a header that
#: declares more (a 60000x60000 PNG, a 1 MB TIFF of 20000x20000 zeros) is refused before the
#: decoder allocates anything.
MAX_FRAME_PIXELS = 250_000_000
#: Largest frame file read: a frame of :data:`MAX_FRAME_PIXELS` in four uncompressed 16-bit
#: channels.
MAX_FRAME_BYTES = MAX_FRAME_PIXELS * 8


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) declared by a PNG, JPEG, BMP, WebP or TIFF header, without decoding;
    None if unknown.

    ``head`` is the file, or its start: a JPEG's frame header follows its metadata segments
    (give it the first 64 KiB), a TIFF's first page may be described anywhere in the file.
    """
    if is_tiff(head):
        return _tiff_size(head)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:2] == b"\xff\xd8":
        pos = 2
        while pos + 9 <= len(head):
            # libjpeg passes over bytes before a marker (next_marker: "extraneous bytes") and
            # fill bytes: a size after two junk bytes was decoded at 20000x20000, unchecked.
            if head[pos] != 0xFF or head[pos + 1] == 0xFF:
                pos += 1
                continue
            marker = head[pos + 1]
            if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
                pos += 2  # a stuffed FF 00 (junk to libjpeg), TEM or RSTn: no length follows
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", head[pos + 5 : pos + 9])
                return w, h
            if marker == 0xDA:
                return None
            pos += 2 + struct.unpack(">H", head[pos + 2 : pos + 4])[0]
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """The canvas size in a WebP's first chunk (the WebP container specification): ``VP8X``
    (24-bit width and height minus one), ``VP8L`` (14-bit, after the 0x2F signature) or
    ``VP8 `` (14-bit, after the key frame's start code 9D 01 2A)."""
    chunk = head[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        return w, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


# How a size may be stored: SHORT, LONG, LONG8 and the signed types libtiff reads as well
# (a width as SLONG slipped past the size check, and a 400 MP page was decoded).
_TIFF_INTEGERS = {3: "H", 4: "I", 16: "Q", 8: "h", 9: "i", 17: "q"}


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of a TIFF's (or BigTIFF's) first page, the one decoders read.

    Layout from the TIFF 6.0 specification (section 2: a 12-byte IFD entry with the value in its
    last 4 bytes when it fits) and the BigTIFF extension (20-byte entries, 8-byte offsets).
    """
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    offset, count, entry, value = ("Q", "Q", 20, 12) if big else ("I", "H", 12, 8)
    try:
        (ifd,) = struct.unpack_from(order + offset, data, 8 if big else 4)
        (entries,) = struct.unpack_from(order + count, data, ifd)
        start = ifd + struct.calcsize(count)
        found: dict[int, int] = {}
        for pos in range(start, start + entries * entry, entry):
            tag, kind = struct.unpack_from(order + "HH", data, pos)
            if tag in (256, 257) and kind in _TIFF_INTEGERS:
                (n,) = struct.unpack_from(order + _TIFF_INTEGERS[kind], data, pos + value)
                found[tag] = abs(n)
    except struct.error:  # cut short: the decoder will say so
        return None
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


def _check_pixel_count(path: Path, size: tuple[int, int] | None) -> None:
    if size is not None and size[0] * size[1] > MAX_FRAME_PIXELS:
        raise UnreadableImageError(
            f"{path}: declares {size[0]}x{size[1]} pixels, more than the "
            f"{MAX_FRAME_PIXELS // 1_000_000} megapixels a frame may have; not read"
        )


def _jpeg_is_complete(data: bytes) -> bool:
    """True when a JPEG's primary image has its end-of-image marker.

    Some decoders (OpenCV 4 among them) return a truncated JPEG with a grey bottom and only a
    warning, so a half-written frame would be merged. The header segments are walked by their
    lengths (an embedded EXIF thumbnail has its own end marker) up to the first start-of-scan;
    inside entropy-coded data every 0xFF byte is stuffed, so ``FF D9`` after that point can only be
    the end of the image.
    """
    if data[:2] != b"\xff\xd8":
        return True  # not JPEG content despite the name: the decoder will judge
    scan = _first_scan(data)
    if scan is None:
        return False
    return scan < 0 or data.rfind(b"\xff\xd9", scan) != -1


def _first_scan(data: bytes) -> int | None:
    """Where a JPEG's first start-of-scan is, its header segments walked by their lengths; -1
    for a header laid out unusually (the decoder judges), None where ``data`` ends first."""
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return pos
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


JPEG_HEAD = 256 * 1024
"""Bytes of a JPEG read for its header at first: a camera's segments, EXIF, maker notes and
thumbnail fit (a larger header is read whole)."""
JPEG_TAIL = 64 * 1024
"""Bytes at a JPEG's end looked at for its end marker before the whole file is."""


def _jpeg_file_is_complete(fh: BinaryIO, size: int) -> bool:
    """:func:`_jpeg_is_complete` for an open file of ``size`` bytes, read only at its head and
    its end where those tell (a resume checked every frame kept by reading it whole: 12 GB
    for a thousand 24 MP frames on a Pi's SD card)."""
    fh.seek(0)
    head = fh.read(JPEG_HEAD)
    scan = _first_scan(head)
    if scan is None and size > len(head):  # a header larger than that: read it all
        fh.seek(0)
        return _jpeg_is_complete(fh.read())
    if scan is None:
        return False
    if scan < 0:
        return True
    fh.seek(max(scan, size - JPEG_TAIL))
    if b"\xff\xd9" in fh.read():  # after the first scan: the end marker, or past it
        return True
    fh.seek(0)
    return _jpeg_is_complete(fh.read())  # more after the end marker (another image)


RAW_ZERO_TAIL = 64 * 1024
"""A RAW file ending in this many zero bytes is still being filled in (see :func:`truncation`)."""


#: Bytes at the start of a file that, all zero, show its data was never written: no image or
#: RAW format starts so, and a file set to its size before its blocks reach the disk (a power
#: cut, a copy that preallocates) reads as zeros.
ZERO_HEAD = 512


def truncation(path: Path) -> str | None:
    """Why ``path`` is visibly cut short or never written, or None.

    An empty file (created, its data never written: a power cut, or a copy that had only begun),
    a file whose first 512 bytes are all zero (set to its size, its data never written: a power
    cut), a JPEG without its end marker, a PNG without IEND, and a RAW file whose last 64 KiB
    are all zero bytes: a file set to its full size before its content is written (as Samba does
    for an SMB client's copy: an initial ``truncate()`` to the final size, exfat-linux issue
    #31) is zero-filled where the copy has not reached yet, and LibRaw decodes such a file
    without a complaint. A whole RAW file never ends so: its last bytes are compressed image
    data, or sensor data above the black level. A file larger than any frame is never read
    (:func:`_frame_bytes`).
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if (reason := _too_large(size)) is not None:
            return reason
        head = fh.read(ZERO_HEAD)
        if not head:
            return "empty (0 bytes: its data never reached the disk?)"
        if not head.strip(b"\0"):
            return (
                "begins with zero bytes (written at full size but its data never reached the disk?)"
            )
        # Told by content: ``.jfif``, ``.jpe``, a JPEG named .png.
        if head.startswith(b"\xff\xd8"):
            complete = _jpeg_file_is_complete(fh, size)
            return None if complete else "truncated JPEG (no end-of-image marker)"
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            fh.seek(max(0, size - 64))
            return None if b"IEND" in fh.read() else "truncated PNG (no IEND chunk)"
        if path.suffix.lower() in RAW_EXTENSIONS and size >= 2 * RAW_ZERO_TAIL:
            fh.seek(size - RAW_ZERO_TAIL)
            if not fh.read().strip(b"\0"):
                return "RAW file ends in zero bytes (still being copied?)"
    return None


class FloatRange:
    """The float value that becomes white in the frames of one stack (see :func:`to_uint16`).

    A float frame from an HDR or scientific tool may pass 1.0, and is then scaled to its
    brightest pixel; scaled each to its own, frames whose highlights differ came out at
    different levels (the same grey at 0.28 in one and 0.14 in the next) and were refused as
    exposure jumps, the composite dimmed. The first float frame sets the range for the rest,
    whose brighter pixels clip (:attr:`clipped` says so for the frame read last).
    """

    def __init__(self) -> None:
        self.top: float | None = None
        self.clipped = False

    def scale(self, top: float) -> float:
        """The factor to 16 bits for a frame whose brightest finite pixel is ``top``."""
        if self.top is None:
            self.top = max(top, 1.0)
        self.clipped = top > self.top
        return 65535.0 / self.top


def to_uint16(img: np.ndarray, floats: FloatRange | None = None) -> np.ndarray:
    """16 bits of a frame decoded as floats (0..1, or scaled to its brightest pixel where that
    is brighter, or to the range of the stack's ``floats``) or as wider or signed integers
    (scaled from the type's range, negative values black: a 32-bit frame was clipped to white,
    a signed 16-bit one came out half as bright).

    Float frames from HDR and scientific tools may hold NaN or infinite pixels (a division by
    zero in a flat-field correction): those become black or white, and only finite pixels set
    the scale, where one infinite pixel had made the whole frame black.
    """
    if np.issubdtype(img.dtype, np.floating):
        top = float(np.max(img, where=np.isfinite(img), initial=0.0))
        scale = (floats or FloatRange()).scale(top)
        scaled = np.multiply(img, scale, dtype=np.float32)
        np.nan_to_num(scaled, copy=False, nan=0.0, posinf=65535.0, neginf=0.0)
        return np.clip(scaled, 0, 65535, out=scaled).astype(np.uint16)
    top = np.iinfo(img.dtype).max
    scaled = np.multiply(img, 65535.0 / top, dtype=np.float64 if top > 65535 else np.float32)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, 0, 65535, out=scaled).astype(np.uint16)


def white_level(image: np.ndarray) -> int:
    """The value that is white in ``image`` (``uint8`` or ``uint16``): 255 for 8 bits; for 16
    bits the smallest ``2**k - 1`` (k from 8 to 16) at or above its brightest pixel.

    Mono, scientific and microscope cameras write their 10, 12 or 14 bits in 16 unscaled (white
    at 1023, 4095 or 16383), and shown or thresholded against 65535 such frames were nearly
    black and never blown out. The level decides only how a stack is shown (previews, 100 %
    crops, JPEGs) and where its highlights count as clipped; its pixels are kept as they are.
    A darker 16-bit frame may be taken for fewer bits: a stack's level only rises, with the
    first frame brighter than it (see :attr:`stacker.stack.Stacker.white`).
    """
    if image.dtype != np.uint16:
        return int(np.iinfo(image.dtype).max)
    peak = int(cv2.minMaxLoc(image.reshape(image.shape[0], -1))[1])
    return next(2**k - 1 for k in range(8, 17) if peak <= 2**k - 1)


def to_8bit(img: np.ndarray, white: float | None = None) -> np.ndarray:
    """``img`` in 8 bits for showing or a JPEG: a 16-bit one scaled from ``white`` (default:
    65535; a stack's :func:`white_level`), rounded and clipped."""
    if img.dtype != np.uint16:
        return img
    return cv2.convertScaleAbs(img, alpha=255.0 / (white or 65535.0))


JPEG_MAX_SIDE = 65500
"""The widest and tallest JPEG libjpeg writes (``JPEG_MAX_DIMENSION``)."""


def encode_image(
    img: np.ndarray,
    ext: str,
    *,
    jpeg_quality: int = 95,
    metadata: Metadata | None = None,
    software: str | None = None,
    fast: bool = False,
    white: float | None = None,
) -> bytes:
    """Encode ``img`` for the format named by ``ext`` (``.jpg``, ``.png``, ``.tif``).

    JPEG is 8-bit: 16-bit input is scaled to 8 bits from ``white`` (default 65535; a stack's
    :func:`white_level`). PNG and TIFF keep 16 bits, as they are.
    ``software`` is stamped into the file (see :func:`stacker.metadata.mark_software`): results
    carry it so that they are never taken for frames. ``fast`` PNG (zlib level 1, the Up filter
    on every row) encodes a smooth image such as a depth map about twice as fast, about as small.
    """
    ext = ext.lower()
    if ext not in WRITE_EXTENSIONS:
        raise StackerError(
            f"cannot write '{ext}' files: use one of {', '.join(sorted(WRITE_EXTENSIONS))}"
        )
    if ext in (".jpg", ".jpeg"):
        if not 1 <= jpeg_quality <= 100:
            raise StackerError(f"JPEG quality {jpeg_quality} is out of range: use 1 to 100")
        img = to_8bit(img, white)
        if max(img.shape[:2]) > JPEG_MAX_SIDE:
            h, w = img.shape[:2]
            raise StackerError(
                f"a JPEG is at most {JPEG_MAX_SIDE} pixels a side and this image is {w}x{h}: "
                "write .tif or .png"
            )
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    elif ext in (".tif", ".tiff"):
        return _encode_tiff(img, metadata, software)
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1 if fast else 3]
        if fast and hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV 4.12 on
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
        ok, buf = cv2.imencode(".png", img, params)
    if not ok:
        raise StackerError(f"could not encode a {img.shape} {img.dtype} image as {ext}")
    data = buf.tobytes()
    if metadata:
        data = embed_metadata(data, ext, metadata, (img.shape[1], img.shape[0]), software or "")
    return mark_software(data, ext, software) if software else data


def _encode_tiff(img: np.ndarray, metadata: Metadata | None, software: str | None) -> bytes:
    """Deflate-compressed TIFF, in strips compressed in parallel.

    Level 1 with horizontal differencing (TIFF predictor 2) gives smaller files from
    photographs than level 6 without it (19.7 against 21.8 MB for a 24 MP frame) in under half
    the time (1.1 against 2.6 s of CPU with Python's zlib; 0.6 s with imagecodecs, which
    tifffile uses when it is installed); strips of 64 rows let every core compress a share.
    """
    import io

    import tifffile

    from stacker import tiff_exif

    # OpenCV's channel swap: numpy's copy of a reversed-channel view takes 0.37 s at 24 MP.
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img  # 3 channels: BGR
    extratags: list[tuple[int, str | int, int, Any, bool]] = []
    if metadata is not None and metadata.icc:
        extratags.append(
            (34675, 7, len(metadata.icc), metadata.icc, True)
        )  # UNDEFINED, as TIFF 6 says
    exif = metadata.exif if metadata is not None else None
    if exif:
        extratags += tiff_exif.camera_tags(exif)
        extratags += tiff_exif.placeholders(exif)  # pointed at once the file's length is known
    out = io.BytesIO()
    tifffile.imwrite(
        out,
        rgb,
        photometric="rgb" if img.ndim == 3 else "minisblack",
        compression="zlib",
        compressionargs={"level": 1},
        predictor=True,
        rowsperstrip=64,
        maxworkers=os.cpu_count() or 1,
        extratags=extratags,
        metadata=None,
        software=software,
    )
    if exif:
        return tiff_exif.append_exif_ifd(out.getvalue(), exif)
    return out.getvalue()


def write_image(
    path: str | os.PathLike[str],
    img: np.ndarray,
    *,
    jpeg_quality: int = 95,
    metadata_from: str | os.PathLike[str] | None = None,
    software: str | None = None,
    white: float | None = None,
) -> Path:
    """Write ``img`` atomically, format from the extension, metadata from ``metadata_from``;
    a JPEG of 16-bit ``img`` scaled from ``white`` (see :func:`encode_image`)."""
    p = Path(path)
    space = b"GRAY" if img.ndim == 2 else b"RGB "  # a greyscale stack's result is grey
    meta = read_metadata(Path(metadata_from), space=space) if metadata_from is not None else None
    data = encode_image(
        img, p.suffix, jpeg_quality=jpeg_quality, metadata=meta, software=software, white=white
    )
    atomic_write_bytes(p, data)
    return p


def temporary_prefix(name: str) -> str:
    """The start of the hidden temporary file names :func:`atomic_write` uses for ``name``.

    The name is cut to 200 bytes: with the dots, the random part and the suffix, the temporary
    of a name near the file system's limit of 255 bytes was too long, and the write of a valid
    name failed.
    """
    return f".{os.fsdecode(os.fsencode(name)[:200])}."


FUTURE_S = 3600.0
"""A temporary dated this far ahead of the clock was left by a crash while the clock ran ahead
(a Pi's saved time, set back by NTP later); nearer, it may be one a network share's server,
its clock ahead of ours, is writing now."""


def remove_temporaries(outputs: Iterable[Path], *, idle_s: float = 0.0) -> list[Path]:
    """Delete the hidden temporaries :func:`atomic_write` left for ``outputs`` when it was cut
    short (kill -9, a power cut): each as large as its output, one more per interruption.

    Only those untouched for ``idle_s`` seconds, where another process might be writing one;
    a time more than :data:`FUTURE_S` ahead of the clock counts as long untouched.
    """
    removed = []
    now = time.time()
    for folder, names in _by_folder(outputs).items():
        prefixes = tuple(temporary_prefix(name) for name in names)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefixes) and name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                age = now - entry.stat(follow_symlinks=False).st_mtime
                if entry.is_file(follow_symlinks=False) and (
                    idle_s <= 0 or age > idle_s or age < -FUTURE_S
                ):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _by_folder(paths: Iterable[Path]) -> dict[Path, list[str]]:
    folders: dict[Path, list[str]] = {}
    for p in paths:
        folders.setdefault(p.parent, []).append(p.name)
    return folders


class _Staged:
    """Writes of :func:`atomic_write` held back by :func:`all_or_none`: each complete and
    fsynced under its temporary name, renamed over the final names together. Once renamed or
    given up, a write that ends later (a writer thread still running when a second Ctrl-C cut
    the wait for it short) is removed at once: nothing would rename or remove it any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: list[tuple[str, Path]] = []
        self._over = False

    def add(self, tmp: str, final: Path) -> None:
        with self._lock:
            if not self._over:
                self._writes.append((tmp, final))
                return
        Path(tmp).unlink(missing_ok=True)

    def _take(self) -> list[tuple[str, Path]]:
        with self._lock:
            writes, self._writes, self._over = self._writes, [], True
        return writes

    def commit(self) -> None:
        writes = self._take()
        try:
            for tmp, final in writes:
                os.replace(tmp, final)
        except BaseException as exc:  # a disk error, or Ctrl-C between two renames
            for tmp, _ in writes:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise OSError(exc.errno, exc.strerror, exc.filename2 or exc.filename) from None
            raise
        for folder in {final.parent for _, final in writes}:
            fsync_dir(folder)

    def discard(self) -> None:
        for tmp, _ in self._take():
            Path(tmp).unlink(missing_ok=True)


T = TypeVar("T")

_STAGED: contextvars.ContextVar[_Staged | None] = contextvars.ContextVar(
    "stackrig_staged_writes", default=None
)


@contextlib.contextmanager
def all_or_none() -> Iterator[None]:
    """Within the block, :func:`atomic_write` leaves each file complete under its temporary
    name; they replace the old files together when the block ends without an error, and are
    removed when it raises. A set of results (a composite and its depth map) is then new or
    old as a whole: a disk that filled up after the composite left it beside the old depth map.
    Work handed to other threads inside the block must run in a copy of this context
    (:func:`in_this_context`)."""
    staged = _Staged()
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        staged.discard()
        raise
    else:
        staged.commit()
    finally:
        _STAGED.reset(token)


def in_this_context(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` to run on another thread (a pool's) in a copy of the caller's context, so that an
    :func:`all_or_none` block reaches the writes it makes."""
    return functools.partial(contextvars.copy_context().run, fn)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, mode: int | None = None
) -> Path:
    """Write ``data`` to ``path`` so that the file is either absent, old, or complete."""
    return atomic_write(path, lambda fh: fh.write(data), mode=mode)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    mode: int | None = None,
) -> Path:
    """Have ``write(fh)`` fill ``path`` so that the file is either absent, old, or complete.

    The bytes go to a hidden temporary file in the same folder (opened read-write, so a writer
    may patch what it wrote), are fsynced, renamed over the final name, and the folder entry is
    fsynced too: a power cut cannot leave a torn frame. Large outputs stream this way without
    an encoded copy in memory. The file gets ``mode`` (by default what ``open`` would give a
    new file) before any byte is written; a link at ``path`` is replaced, not followed.
    An ``OSError`` (disk full...) names ``path``, not the temporary file.
    """
    p = Path(path)
    try:
        fd, tmp = _new_temporary(p, 0o666 if mode is None else mode)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(p)) from None
    try:
        os.close(fd)
        with open(tmp, "w+b") as fh:  # by name: writers such as tifffile want a named file
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        staged = _STAGED.get()
        if staged is not None:  # renamed with the rest of its set (all_or_none)
            staged.add(tmp, p)
            return p
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(p)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)
    return p


def _new_temporary(path: Path, mode: int) -> tuple[int, str]:
    """A new hidden temporary file beside ``path`` (see :func:`temporary_prefix`), created with
    ``mode`` as ``open`` creates a file: the umask, or the folder's default ACL where it has one,
    says what others may do with it. ``mkstemp`` made it 0600 and a later ``chmod`` by the umask
    overrode a default ACL that lets a web server or a Samba share read the results."""
    prefix = temporary_prefix(path.name)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(path.parent, f"{prefix}{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` takes (255 where unsaid)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_writable_output(path: str | os.PathLike[str], *, example: str = "stacked.tif") -> Path:
    """Fail early, before any work, if ``path`` cannot be written or has an unknown extension
    (a file is really written beside it: see :func:`write_refused`). ``example`` is the file
    name the error for a folder suggests in it."""
    p = Path(path)
    if os.path.isdir(p):  # False, not an error, for a name too long to look up
        raise StackerError(f"{p}: is a folder; give a file name such as {p / example}")
    if os.path.exists(p) and not os.path.islink(p) and not os.path.isfile(p):
        # Written by a rename over the name: a pipe or a device would be replaced.
        raise StackerError(f"{p}: not a regular file; give a file name such as {example}")
    if not p.suffix:
        raise StackerError(
            f"{p}: no file extension; name the file, e.g. {p}.tif, or {p / 'stacked.tif'} "
            "to write into a folder"
        )
    if p.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise StackerError(
            f"{p}: unknown output format '{p.suffix}': use .tif, .png, .jpg or (RAW frames) .dng"
        )

    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        if os.path.lexists(folder) and not os.path.exists(folder):
            raise StackerError(f"{p}: {folder} is a link to nothing (or to itself); give a folder")
        if folder.exists():
            raise StackerError(f"{p}: {folder} is a file, not a folder; give a folder")
        raise StackerError(f"{p}: the folder {folder} does not exist; create it first")
    length, limit = len(os.fsencode(p.name)), name_max(folder)
    if length > limit:
        raise StackerError(
            f"{p}: a name of {length} bytes, and {folder} takes at most {limit}; choose a "
            "shorter name"
        )
    refused = write_refused(folder, p.name)  # the real reason: full, read-only, permissions
    if refused is not None:
        raise StackerError(
            f"{p}: cannot write in {folder} ({refused.strerror or refused}); "
            f"{or_another_output(storage_remedy(refused, ''))}"
        )
    if p.exists() and not os.access(p, os.W_OK):
        raise StackerError(f"{p}: not writable; choose another output path")
    return p


def storage_remedy(exc: OSError, otherwise: str) -> str:
    """What to do about a write the disk refused: make room, check a disk the kernel made
    read-only (its answer to a card error), or ``otherwise`` (permissions, a folder gone)."""
    if exc.errno in STORAGE_REMEDIES:
        return STORAGE_REMEDIES[exc.errno]
    if exc.errno in TOO_MANY_FILES:
        return TOO_MANY_FILES[exc.errno]
    return otherwise


def write_refused(folder: Path, name: str = "") -> OSError | None:
    """The error a new file in ``folder`` meets, or ``None``.

    Permission bits do not tell everything (root passes them; ``/proc`` and ``/sys`` refuse new
    files, a read-only mount refuses everything), so a temporary file (named after ``name``) is
    really written there and removed again.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=temporary_prefix(name), suffix=".probe", dir=folder)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return exc
    return None
