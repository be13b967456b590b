"""The WeMacro rail controller's serial protocol: 12-byte command frames with a CRC.

Source: the INDIGO astronomy framework's open driver, ``indigo_drivers/focuser_wemacro/
indigo_focuser_wemacro.c`` (version 2.0, CloudMakers), the only public description of the
protocol. What it pins down, and all this module uses:

* the port runs at 9600 baud, 8N1 (``indigo_open_serial``'s default);
* a command frame is ``A5 5A cmd a b c d3 d2 d1 d0 crc-low crc-high``: a 32-bit big-endian
  argument ``d`` and a CRC-16/MODBUS (initial 0xFFFF, reflected polynomial 0xA001) over the
  first ten bytes, low byte first (``wemacro_write``);
* commands: ``0x40`` move forward by ``d``, ``0x41`` move back by ``d`` (micrometres while the
  configuration's ``a`` byte is 0), ``0x20`` stop, ``0x04`` fire the shutter, ``0x80`` set the
  configuration (flags 0x02 beep, 0x08 return when done), ``0x10`` run a batch;
* the controller answers in 3-byte messages whose third byte is a state: ``0xF0`` ready (sent
  when the port is opened), ``0xF5`` / ``0xF6`` a move finished, ``0xF7`` a batch step done
  (``wemacro_read``, ``wemacro_reader``);
* when no ``0xF0`` arrives, the driver wakes the controller with ``0x40 0``, ``0x20``,
  ``0x40 0`` and expects ``0xF5``.

INDIGO's serial simulator of the controller, written by its authors against a real one
(``indigo_drivers/focuser_wemacro/focuser_wemacro_simulator/focuser_wemacro_simulator.c``,
commit 188fd4c), adds:

* nothing is sent when the port opens (the wake-up sequence is the normal path, and each
  ``0x40 0`` of it is answered ``0xF5``);
* an answer starts with the two header bytes of a command frame swapped, ``5A A5``
  (:data:`ANSWER_HEADERS` takes either order);
* a frame that completes within 30 ms of a configuration frame is ignored
  (:data:`CONFIG_SETTLE_S`);
* the shutter command answers ``0xF7`` when its 0.3 s pulse ends, and a move sent meanwhile
  waits for it;
* a stopped move answers its direction about 10 ms later; a backward move ends with ``0xF6``;
* the configuration's ``a`` byte is the speed: 0 slow (1.289 mm/s, measured), 0xFF fast.

Not pinned down, so not relied on: what the controller answers to a frame with a bad CRC
(nothing is assumed: a move that gets no ``0xF5`` in time is an error), whether it reports a
stop from its own buttons, and any position read-back (there is none: the position is
counted by the host).
"""

from __future__ import annotations

from enum import IntEnum

BAUD = 9600
SYNC = b"\xa5\x5a"
FRAME_SIZE = 12
ANSWER_SIZE = 3
ANSWER_HEADERS = (b"\x5a\xa5", b"\xa5\x5a")
"""How an answer starts: swapped (INDIGO's simulator of the controller), or as a command frame."""
CONFIG_SETTLE_S = 0.03
"""A frame completing this soon after a configuration frame is ignored."""
SHUTTER_PULSE_S = 0.3
"""The shutter pulse, answered ``0xF7`` when it ends."""


class Command(IntEnum):
    MOVE_FORWARD = 0x40
    MOVE_BACK = 0x41
    STOP = 0x20
    SHUTTER = 0x04
    CONFIG = 0x80


class State(IntEnum):
    READY = 0xF0
    MOVED = 0xF5
    RETURNED = 0xF6
    STEP_DONE = 0xF7


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (as ``wemacro_write`` computes it)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(command: int, argument: int = 0, a: int = 0, b: int = 0, c: int = 0) -> bytes:
    """The 12 bytes of one command."""
    if not 0 <= argument <= 0xFFFFFFFF:
        raise ValueError(f"argument {argument} does not fit 32 bits")
    body = SYNC + bytes([command, a, b, c]) + argument.to_bytes(4, "big")
    crc = crc16_modbus(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def parse_frame(data: bytes) -> tuple[int, int, int, int, int] | None:
    """``(command, a, b, c, argument)`` of a 12-byte frame, or None when its CRC is wrong."""
    if len(data) != FRAME_SIZE or data[:2] != SYNC:
        return None
    if crc16_modbus(data[:10]) != data[10] | (data[11] << 8):
        return None
    return data[2], data[3], data[4], data[5], int.from_bytes(data[6:10], "big")
