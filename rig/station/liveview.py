"""Live view for the station's page, with focus peaking computed on the rig.

The page polls ``GET /api/liveview`` for one JPEG at a time and asks for the next as soon as one
has arrived. Polling rather than an endless MJPEG response, because: the rate then follows what
the camera, the rig's CPU and the phone's link allow, with never more than one frame in flight
(an MJPEG stream pushes frames into a slow link's buffers and the picture lags seconds behind
the rail); each frame is an ordinary request, so the station's token gate, Host and connection
limits apply to it unchanged; and pausing while a session shoots is one ``409`` answer instead
of a stream to tear down.

Frames come from the camera's live view (``capture_preview``). A body without one (or a rail rig
whose camera is not tethered for live view) gets the last test shot instead, with peaking too, so
the photographer still sees where the sharp slice lies.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rig.camera.errors import CameraUnsupportedError
from rig.station.errors import NotFoundError, StationError
from rig.station.service import Station
from stacker.peaking import paint_peaking, peaking_mask
from stacker.preview.publisher import encode_jpeg
from stacker.preview.server import NO_STORE

LIVE_JPEG_QUALITY = 80


class LiveView:
    """One live-view frame at a time from the station's camera, peaked on request."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self._no_live_view = not hasattr(station.camera, "capture_preview")

    def frame(self, *, peaking: bool) -> tuple[bytes, dict[str, str]]:
        """``(jpeg, headers)``: the current live-view frame; headers say its source and peaking."""
        with self.station.camera_idle("live view"):  # one frame at a time, never in a session
            jpeg, source = self._grab()
        headers = {"X-Live-Source": source}
        if peaking:
            jpeg, fraction = peaked_jpeg(jpeg)
            headers["X-Peaking-Fraction"] = f"{fraction:.4f}"
        return jpeg, headers

    def _grab(self) -> tuple[bytes, str]:
        if not self._no_live_view:
            try:
                return self.station.camera.capture_preview(), "camera"  # type: ignore[attr-defined]
            except CameraUnsupportedError:
                self._no_live_view = True  # the body says so once; stop asking it
        last = self.station.hub.image("last")
        if last is None:
            raise NotFoundError(
                "this camera has no live view: take a test shot and it stands in here"
            )
        return last[0], "test-shot"


def peaked_jpeg(jpeg: bytes) -> tuple[bytes, float]:
    """``jpeg`` with its in-focus areas marked, and the share of the frame they cover."""
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise StationError("the camera's live-view frame is not a readable JPEG")
    peaking = peaking_mask(frame)
    out, _, _ = encode_jpeg(paint_peaking(frame, peaking), quality=LIVE_JPEG_QUALITY)
    return out, peaking.fraction


def liveview_routes(station: Station) -> list[BaseRoute]:
    """``GET /api/liveview[?peaking=1]``: one JPEG, ``409`` while a session shoots."""
    from rig.station.api import _blocking, _handle

    live = LiveView(station)

    async def liveview(request: Request) -> Response:
        peaking = request.query_params.get("peaking", "0") not in ("0", "", "false", "off")
        jpeg, headers = await _blocking(live.frame, peaking=peaking)
        return Response(jpeg, media_type="image/jpeg", headers={**NO_STORE, **headers})

    routes: list[Any] = [Route("/api/liveview", _handle(liveview))]
    return routes
