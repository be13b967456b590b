"""EXIF for tests: frames that say how a viewer should turn them."""

from __future__ import annotations

import struct


def exif(value: int) -> bytes:
    """Little-endian TIFF header and one IFD with Orientation (0x0112) = ``value``."""
    return (
        b"II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00"
        + value.to_bytes(2, "little") + b"\x00\x00\x00\x00\x00\x00"
    )  # fmt: skip


def tag_jpeg(data: bytes, value: int) -> bytes:
    """``data`` with an EXIF segment saying ``value``; the pixels are not touched."""
    payload = b"Exif\x00\x00" + exif(value)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def camera_exif(
    order: str = "<",
    *,
    sensor: tuple[int, int] | None = None,
    gps: bool = False,
    adobe_rgb: bool = False,
    software: str | None = None,
) -> bytes:
    """An EXIF block as a camera writes one, in byte order ``order`` (``<`` as Canon and Sony
    write, ``>`` as Nikon does): IFD0 with make, model, date and orientation 1, and an Exif
    IFD with exposure time 1/125, f/8, ISO 200, 65 mm, the time taken, a lens model and a maker
    note. Values longer than four bytes follow each IFD, as the TIFF layout wants. With
    ``sensor`` (width, height), also the pixel dimensions (0xA002 as LONG, 0xA003 as SHORT)
    and an IFD1 (a thumbnail's) after IFD0. With ``gps``, a GPS IFD after the Exif IFD:
    version 2.3, 52°31'12.5" N, 13°24'18" E, 34 m. With ``adobe_rgb``, the colour space as a
    camera set to Adobe RGB says it: ColorSpace "uncalibrated" and an interoperability IFD
    (after the others) with index "R03". With ``software``, IFD0's Software (the firmware, as
    cameras name it there)."""

    def ifd(entries: list[tuple[int, int, int, bytes]], at: int, pointer_to: int | None,
            gps_to: int = 0, interop_to: int = 0) -> bytes:  # fmt: skip
        head = struct.pack(order + "H", len(entries))
        table, data = b"", b""
        data_at = at + 2 + 12 * len(entries) + 4
        for tag, kind, count, value in entries:
            if tag == 0x8769:
                value = struct.pack(order + "I", pointer_to or 0)
            if tag == 0x8825:
                value = struct.pack(order + "I", gps_to)
            if tag == 0xA005:
                value = struct.pack(order + "I", interop_to)
            if len(value) <= 4:
                table += struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\0")
            else:
                table += struct.pack(order + "HHII", tag, kind, count, data_at + len(data))
                data += value + b"\0" * (len(value) % 2)
        return head + table + b"\0\0\0\0" + data

    def text(s: str) -> tuple[int, bytes]:
        raw = s.encode() + b"\0"
        return len(raw), raw

    def rational(n: int, d: int) -> bytes:
        return struct.pack(order + "II", n, d)

    ifd0 = [
        (0x010F, 2, *text("Canon")),
        (0x0110, 2, *text("Canon EOS 80D")),
        (0x0112, 3, 1, struct.pack(order + "H", 1)),
        *([(0x0131, 2, *text(software))] if software else []),
        (0x0132, 2, *text("2026:11:30 10:00:00")),
        (0x8769, 4, 1, b""),
    ]
    exif_ifd = [
        (0x829A, 5, 1, rational(1, 125)),
        (0x829D, 5, 1, rational(8, 1)),
        (0x8827, 3, 1, struct.pack(order + "H", 200)),
        (0x9003, 2, *text("2026:11:30 10:00:00")),
        (0x920A, 5, 1, rational(65, 1)),
        (0x927C, 7, 24, b"maker's own, with offsets"[:24]),
        (0xA434, 2, *text("EF100mm f/2.8L Macro IS USM")),
    ]
    if sensor is not None:
        exif_ifd += [
            (0xA002, 4, 1, struct.pack(order + "I", sensor[0])),
            (0xA003, 3, 1, struct.pack(order + "H", sensor[1])),
        ]
    gps_ifd = [
        (0x0000, 1, 4, bytes([2, 3, 0, 0])),
        (0x0001, 2, 2, b"N\0"),
        (0x0002, 5, 3, rational(52, 1) + rational(31, 1) + rational(125, 10)),
        (0x0003, 2, 2, b"E\0"),
        (0x0004, 5, 3, rational(13, 1) + rational(24, 1) + rational(18, 1)),
        (0x0006, 5, 1, rational(34, 1)),
    ]
    interop_ifd = [(0x0001, 2, 4, b"R03\0"), (0x0002, 7, 4, b"0100")]
    if adobe_rgb:
        exif_ifd += [(0xA001, 3, 1, struct.pack(order + "H", 0xFFFF)), (0xA005, 4, 1, b"")]
    if gps:
        ifd0.append((0x8825, 4, 1, b""))
    first = ifd(ifd0, 8, pointer_to=None)
    exif_at = 8 + len(first)
    gps_at = exif_at + len(ifd(exif_ifd, exif_at, None))
    interop_at = gps_at + (len(ifd(gps_ifd, gps_at, None)) if gps else 0)
    first = ifd(ifd0, 8, pointer_to=exif_at, gps_to=gps_at)
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    block = magic + struct.pack(order + "I", 8) + first
    block += ifd(exif_ifd, exif_at, None, interop_to=interop_at)
    if gps:
        block += ifd(gps_ifd, gps_at, None)
    if adobe_rgb:
        block += ifd(interop_ifd, interop_at, None)
    if sensor is None:
        return block
    ifd1 = ifd([(0x0103, 3, 1, struct.pack(order + "H", 6))], len(block), None)  # JPEG thumb
    next_at = 8 + 2 + 12 * len(ifd0)
    return block[:next_at] + struct.pack(order + "I", len(block)) + block[next_at + 4 :] + ifd1


def webp_with(simple: bytes, *, exif: bytes | None = None, icc: bytes | None = None) -> bytes:
    """A simple WebP file (``cv2.imencode``'s) made extended, with an ``ICCP`` chunk before the
    image and an ``EXIF`` chunk after it, as the WebP container specification lays them out."""
    width, height = _webp_size(simple)
    flags = (0x20 if icc else 0) | (0x08 if exif else 0)
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    body = _chunk(b"VP8X", vp8x) + (_chunk(b"ICCP", icc) if icc else b"") + simple[12:]
    body += _chunk(b"EXIF", exif) if exif else b""
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)


def _webp_size(simple: bytes) -> tuple[int, int]:
    """(width, height) of a simple lossy (``VP8 ``) or lossless (``VP8L``) WebP."""
    if simple[12:16] == b"VP8L":
        bits = int.from_bytes(simple[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    w, h = struct.unpack_from("<HH", simple, 26)
    return w & 0x3FFF, h & 0x3FFF
