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
