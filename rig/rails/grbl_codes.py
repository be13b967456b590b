"""GRBL 1.1 error and alarm codes as the sentences GRBL's own documentation gives them.

GRBL answers ``error:15`` or ``ALARM:2`` to save flash; a user needs the words. Texts follow
GRBL 1.1's ``doc/csv/error_codes_en_US.csv`` and ``alarm_codes_en_US.csv`` (ALARM:10 is the
dual-axis homing failure of later 1.1 builds). grblHAL and FluidNC keep codes 1 to 9 and go on
with codes of their own, which differ: ALARM:10 is grblHAL's emergency stop and FluidNC's
spindle fault. Their texts follow grblHAL's ``alarms.c`` and ``errors.c`` and FluidNC's
``Protocol.cpp`` (``AlarmNames``) and ``Error.cpp``; :class:`Dialect` holds each firmware's.
"""

from __future__ import annotations

from dataclasses import dataclass

ERRORS: dict[int, str] = {
    1: "Expected command letter: G-code words consist of a letter and a value; letter not found",
    2: "Bad number format: missing the expected G-code word value or invalid number format",
    3: "Invalid statement: Grbl '$' system command was not recognized or supported",
    4: "Value < 0: negative value received for an expected positive value",
    5: "Setting disabled: homing cycle is not enabled via settings ($22)",
    6: "Value < 3 usec: minimum step pulse time must be greater than 3 microseconds",
    7: "EEPROM read fail: using defaults; affected EEPROM restored to default values",
    8: "Not idle: Grbl '$' command cannot be used unless Grbl is IDLE",
    9: "G-code lock: G-code commands are locked out during alarm or jog state",
    10: "Homing not enabled: soft limits cannot be enabled without homing also enabled",
    11: "Line overflow: max characters per line exceeded; line was not executed",
    12: "Step rate > 30kHz: a '$' setting value makes the step rate exceed the maximum",
    13: "Check Door: safety door detected as opened and door state initiated",
    14: "Line length exceeded: build info or startup line exceeded EEPROM line length limit",
    15: "Travel exceeded: jog target exceeds machine travel; jog command has been ignored",
    16: "Invalid jog command: jog command has no '=' or contains prohibited g-code",
    17: "Setting disabled: laser mode requires PWM output",
    20: "Unsupported command: unsupported or invalid g-code command found in block",
    21: "Modal group violation: more than one g-code command from the same modal group",
    22: "Undefined feed rate: feed rate has not yet been set or is undefined",
    23: "G-code command in block requires an integer value",
    24: "More than one g-code command that requires axis words found in block",
    25: "Repeated g-code word found in block",
    26: "No axis words found in block for g-code command or current modal state which needs them",
    27: "Line number value is invalid",
    28: "G-code command is missing a required value word",
    29: "G59.x work coordinate systems are not supported",
    30: "G53 only allowed with G0 and G1 motion modes",
    31: "Axis words found in block when no command or current modal state uses them",
    32: "G2 and G3 arcs require at least one in-plane axis word",
    33: "Motion command target is invalid",
    34: "Arc radius value is invalid",
    35: "G2 and G3 arcs require at least one in-plane offset word",
    36: "Unused value words found in block",
    37: "G43.1 dynamic tool length offset is not assigned to configured tool length axis",
    38: "Tool number greater than max supported value",
}

ALARMS: dict[int, str] = {
    1: "Hard limit triggered. Machine position is likely lost due to sudden and immediate halt. "
    "Re-homing is highly recommended",
    2: "G-code motion target exceeds machine travel. Machine position safely retained. "
    "Alarm may be unlocked",
    3: "Reset while in motion. Grbl cannot guarantee position. Lost steps are likely. "
    "Re-homing is highly recommended",
    4: "Probe fail. The probe is not in the expected initial state before starting probe cycle",
    5: "Probe fail. Probe did not contact the workpiece within the programmed travel",
    6: "Homing fail. Reset during active homing cycle",
    7: "Homing fail. Safety door was opened during active homing cycle",
    8: "Homing fail. Cycle failed to clear limit switch when pulling off. "
    "Try increasing pull-off setting or check wiring",
    9: "Homing fail. Could not find limit switch within search distance. "
    "Check the switch wiring and $130-$132 max travel",
    10: "Homing fail. On dual axis machines, could not find the second limit switch "
    "for self-squaring",
}

POSITION_LOST_ALARMS = frozenset({1, 3, 6, 7, 8, 9, 10})
"""Alarms after which GRBL's idea of the position can no longer be trusted: home again."""


@dataclass(frozen=True)
class Dialect:
    """What one GRBL-family firmware's numbers mean."""

    name: str
    alarms: dict[int, str]
    errors: dict[int, str]
    position_lost: frozenset[int]
    """Alarms after which the position can no longer be trusted: home again."""
    critical: frozenset[int]
    """Alarms after which the board reads no line until a soft reset (Ctrl-X)."""
    homing_required: int | None = None
    """The numbered alarm a board boots into when it must be homed (GRBL's has no number)."""
    unlock_refused: int | None = None
    """The error ``$X`` gets where only homing unlocks."""

    def error_text(self, code: int) -> str:
        """``error:N`` in words."""
        return f"error:{code} ({self.errors.get(code, 'unknown error code')})"

    def alarm_text(self, code: int | None) -> str:
        """``ALARM:N`` in words; ``None`` is the alarm a board boots into when homing is
        required (GRBL prints no number for it)."""
        if code is None:
            return "ALARM (homing required at power-up, or an earlier alarm not yet cleared)"
        return f"ALARM:{code} ({self.alarms.get(code, 'unknown alarm code')})"


GRBL = Dialect("Grbl", ALARMS, ERRORS, POSITION_LOST_ALARMS, frozenset({1, 2}))

GRBLHAL = Dialect(
    "grblHAL",
    {
        **{code: text for code, text in ALARMS.items() if code < 10},
        10: "EStop asserted. Clear and reset",
        11: "Homing required. Execute homing command ($H) to continue.",
        12: "Limit switch engaged. Clear before continuing.",
        13: "Probe protection triggered. Clear before continuing.",
        14: "Spindle at speed timeout. Clear before continuing.",
        15: "Homing fail. Could not find second limit switch for auto squared axis within "
        "search distances.",
        16: "Power on selftest (POS) failed.",
        17: "Motor fault.",
        18: "Homing fail. Bad configuration.",
        19: "Modbus exception. Timeout or message error.",
        20: "I/O expander communication failed.",
        21: "Non Volatile Storage (EEPROM) failure.",
        22: "Buffer overflow.",
    },
    {
        **ERRORS,
        39: "Value out of range.",
        45: "Only homing is allowed when a limit switch is engaged.",
        46: "Home machine to continue.",
        49: "Power on self test failed. A hard reset is required.",
        50: "Emergency stop active.",
        51: "Motor fault.",
        52: "Setting value is out of range.",
        53: "Setting is not available, possibly due to limited driver support.",
        56: "Coordinate system is locked.",
    },
    frozenset({1, 3, 6, 7, 8, 9, 10, 15, 17, 18}),
    frozenset({1, 2, 10, 17, 20}),  # alarms.h, alarm_is_critical
    homing_required=11,
    unlock_refused=46,
)

FLUIDNC = Dialect(
    "FluidNC",
    {
        **{code: text for code, text in ALARMS.items() if code < 10},
        10: "Spindle Control",
        11: "Input Pin Initially On",
        12: "Ambiguous Switch",
        13: "Hard Stop",
        14: "Unhomed",
        15: "Init",
        16: "Expander Reset",
        17: "GCode Error",
        18: "Probe Hard Limit",
    },
    {
        **ERRORS,
        38: "Gcode max value exceeded",
        39: "P param max exceeded",
        40: "Check startup pins",
        80: "Number out of range for setting",
        81: "Invalid value for setting",
        130: "Jog Cancelled",
        152: "Configuration is invalid. Check boot messages for ERR's.",
    },
    frozenset({1, 3, 6, 7, 8, 9, 12, 13}),
    frozenset({1, 2}),
    homing_required=14,
)


def dialect_of(banner: str) -> Dialect:
    """The dialect of the firmware whose start-up line is ``banner``: FluidNC announces itself
    as ``Grbl 3.x [FluidNC v3.x ...]`` (Report.cpp, ``report_init_message``)."""
    if banner.startswith("GrblHAL"):
        return GRBLHAL
    return FLUIDNC if "[FluidNC" in banner else GRBL


def dialect_of_build_info(lines: list[str]) -> Dialect | None:
    """The dialect ``$I`` tells, for a board whose banner was not seen (one that does not
    restart when its port opens: grblHAL's 32-bit boards on native USB, an ESP32 on USB-CDC):
    grblHAL adds ``[FIRMWARE:grblHAL]`` (report.c, ``report_build_info``), FluidNC names
    itself in ``[VER:3.x FluidNC v3.x ...]`` (Report.cpp); None when no ``[VER:`` came."""
    if "[FIRMWARE:grblHAL]" in lines:
        return GRBLHAL
    versions = [line for line in lines if line.startswith("[VER:")]
    if not versions:
        return None
    return FLUIDNC if "FluidNC" in versions[0] else GRBL
