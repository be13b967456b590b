"""Hardware and sequencing errors, each a single line naming the device, port or value."""

from stacker.errors import UserError


class RigError(UserError):
    """A camera, rail or session problem the user can act on."""


class DeviceNotFoundError(RigError):
    """No camera or rail answers where one was expected."""

    exit_code = 3


class DeviceBusyError(RigError):
    """The device is held by another program or reports busy after retries."""

    exit_code = 4


class MotionError(RigError):
    """A move was refused (soft limit, alarm) or did not complete."""

    exit_code = 5
