"""The station's errors: each becomes a JSON answer with its own HTTP status in the API."""

from __future__ import annotations

from rig.errors import RigError


class StationError(RigError):
    """A station request that cannot be carried out as asked (bad plan, unknown session)."""


class ReferenceChanged(StationError):
    """A session to resume counts from another 0 than the rail does now (see
    :meth:`rig.station.service.Station.resume`): resumed only if the photographer says the rail
    stands where the session left it."""


class StationBusyError(StationError):
    """The rig is already moving or shooting for another request."""

    exit_code = 4


class NotFoundError(StationError):
    """No such session or file among the station's own."""


class DownloadCut(StationError):
    """A download whose answer had begun cannot be finished as listed (a frame deleted or
    moved meanwhile): the connection is closed before the answer's end, so the client sees a
    failed download rather than keeping a whole-looking file with frames missing."""
