"""The Cognisys StackShot controller's binary protocol: command codes and frames.

Sources (no protocol document ships with the controller's USB side; these are the public
implementations that agree with each other, cited so every byte can be traced):

* Cognisys' ``commdefs.h`` from the StackShot SDK sample ("StackShotCommands 1.2"), reproduced
  in several public projects: the command codes ``CC_RAIL_MOVE`` = 0x1000 ...
  ``CC_SOFTWARE_STRING`` = 0x1102, the actions (``COMM_ACTION_READ`` 0, ``WRITE`` 1,
  ``RSP_OK`` 2 ... ``BUSY`` 8), the status bits (``RAIL_STATUS_MOVING`` 0x01, ``SHUTTER``
  0x02, ``USER_ABORTED`` 0x04), units (``ENGLISH`` 0, ``METRIC`` 1, ``STEPS`` 2) and
  ``STACKSHOT_BAUD_RATE`` 38400.
* A Java helper for the original StackShot (``FTD2XXHelper.WRITEREAD``): the request frame
  ``0x55, cmd-high, cmd-low, action, length, data..., trailer`` and the answer
  ``0xAA, cmd-high, cmd-low, action, length, data..., trailer``; a write is answered with no
  data (6 bytes), ``CC_RAIL_STATUS`` with 4, ``CC_RAIL_POSITION_CURRENT`` (asked with one units
  byte) with the units byte and a 32-bit float; ``CC_RAIL_MOVE`` carries
  ``direction, units, backlash flag, float distance``; ``CC_RAIL_SHUTTER_FIRE`` a 16-bit
  little-endian count, the pulse time and the pause as floats.
* A Python (pyftdi) script for the StackShot 3X that packs the move distance and reads the
  status word little-endian.

Not pinned down by any of them, and therefore not relied on: the trailer byte (the Java helper
sends 0x00, the Python script 0x69; no source computes a checksum, so the controller evidently
ignores it, and the driver ignores the one it receives), the float byte order of the Java
helper (the Python script's little-endian is used), and the StackShot 3X's axis bits in the
action byte (only the single-axis layout, axis bits zero, is used).
"""

from __future__ import annotations

import struct
from enum import IntEnum

BAUD = 38400
SYNC_REQUEST = 0x55
SYNC_ANSWER = 0xAA
TRAILER = 0x00
HEADER_SIZE = 5  # sync, command (2), action, length


class Command(IntEnum):
    """Command codes from ``commdefs.h`` (the ones this driver uses)."""

    RAIL_MOVE = 0x1000
    RAIL_POSITION_CURRENT = 0x1002
    RAIL_POSITION_ZERO = 0x1003
    RAIL_SHUTTER_FIRE = 0x1004
    RAIL_STATUS = 0x1005
    RAIL_STOP = 0x1006
    SOFTWARE_STRING = 0x1102


class Action(IntEnum):
    """The action byte: what the host asks, or how the controller answered."""

    READ = 0
    WRITE = 1
    RSP_OK = 2
    BAD_PARAM = 3
    UNSUPPORTED_ACTION = 4
    UNSUPPORTED_CMD = 5
    FAILED = 6
    NOT_EMPTY = 7
    BUSY = 8


class Units(IntEnum):
    ENGLISH = 0
    METRIC = 1
    STEPS = 2


class Direction(IntEnum):
    FORWARD = 0
    BACK = 1


STATUS_MOVING = 0x01
STATUS_SHUTTER = 0x02
STATUS_USER_ABORTED = 0x04


def request(command: int, action: int, data: bytes = b"") -> bytes:
    """The bytes of one request frame."""
    if len(data) > 255:
        raise ValueError("a StackShot frame carries at most 255 data bytes")
    return (
        bytes([SYNC_REQUEST, command >> 8, command & 0xFF, action, len(data)])
        + data
        + bytes([TRAILER])
    )


def answer(command: int, action: int, data: bytes = b"") -> bytes:
    """The bytes of one answer frame (what the controller sends back)."""
    return (
        bytes([SYNC_ANSWER, command >> 8, command & 0xFF, action, len(data)])
        + data
        + bytes([TRAILER])
    )


def parse_header(header: bytes) -> tuple[int, int, int]:
    """``(command, action, data length)`` of a 5-byte header whose sync byte was checked."""
    return (header[1] << 8) | header[2], header[3], header[4]


def move_data(direction: Direction, distance_mm: float, *, backlash: bool = False) -> bytes:
    """Payload of ``CC_RAIL_MOVE``: direction, metric units, backlash flag, distance."""
    return bytes([direction, Units.METRIC, int(backlash)]) + struct.pack("<f", distance_mm)


def parse_move(data: bytes) -> tuple[Direction, Units, bool, float]:
    direction, units, backlash = data[0], data[1], data[2]
    (distance,) = struct.unpack("<f", data[3:7])
    return Direction(direction), Units(units), bool(backlash), distance


def shutter_data(count: int, pulse_s: float, pause_s: float) -> bytes:
    """Payload of ``CC_RAIL_SHUTTER_FIRE``: pulses, their on-time and the pause between them."""
    return struct.pack("<Hff", count, pulse_s, pause_s)


def parse_shutter(data: bytes) -> tuple[int, float, float]:
    count, pulse, pause = struct.unpack("<Hff", data[:10])
    return int(count), float(pulse), float(pause)


def position_data(units: Units, value: float) -> bytes:
    """Answer payload of ``CC_RAIL_POSITION_CURRENT``: the units byte and the value."""
    return bytes([units]) + struct.pack("<f", value)


def parse_position(data: bytes) -> float:
    if len(data) < 5:
        raise ValueError(f"position answer has {len(data)} bytes, expected 5")
    (value,) = struct.unpack("<f", data[1:5])
    return float(value)


def parse_status(data: bytes) -> int:
    if not data:
        raise ValueError("empty status answer")
    return int.from_bytes(data[:4].ljust(4, b"\0"), "little")
