"""The station's errors: each becomes a JSON answer with its own HTTP status in the API."""

from __future__ import annotations

from rig.errors import RigError


class StationError(RigError):
    """A station request that cannot be carried out as asked (bad plan, unknown session)."""


class StationBusyError(StationError):
    """The rig is already moving or shooting for another request."""

    exit_code = 4


class NotFoundError(StationError):
    """No such session or file among the station's own."""
