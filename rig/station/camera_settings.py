"""Camera settings from the station's page: ISO, shutter speed, aperture, image format, target.

Makers name the same setting differently in libgphoto2's config tree (``aperture`` on Canon,
``f-number`` on Nikon, Sony and generic PTP bodies; ``imageformat`` on Canon, ``imagequality``
on Nikon and Sony; ``shutterspeed2`` on some Nikons: libgphoto2 ``camlibs/ptp2/config.c``), so
each setting the page shows is the first of its names the camera has, with the camera's own
choices. The values in force when a session starts are recorded in its ``session.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rig.camera.errors import CameraError
from rig.station.errors import StationError
from stacker.preview.server import NO_STORE

if TYPE_CHECKING:  # the station records these settings, so it imports this module
    from rig.station.service import Station

SETTINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("iso", "ISO", ("iso", "isospeed")),
    ("shutter", "Shutter speed", ("shutterspeed", "shutterspeed2")),
    ("aperture", "Aperture", ("aperture", "f-number")),
    ("format", "Image format", ("imageformat", "imagequality")),
    ("target", "Capture target", ("capturetarget",)),
)
"""(name on the page, label, the camera's key for it, in the order they are tried)."""


class CameraSettings:
    """The photographer's settings of ``camera``, read and written through its config tree."""

    def __init__(self, camera: Any) -> None:
        self.camera = camera

    def _items(self) -> dict[str, Any]:
        if not hasattr(self.camera, "config_items"):
            return {}
        return {item.key: item for item in self.camera.config_items()}

    def read(self) -> list[dict[str, Any]]:
        """Each setting with the camera's key, value and choices (``key`` None: not offered)."""
        items = self._items()
        out = []
        for name, label, keys in SETTINGS:
            key = next((k for k in keys if k in items), None)
            entry: dict[str, Any] = {"name": name, "label": label, "key": key}
            if key is not None:
                item = items[key]
                entry.update(
                    value=item.display_value(),
                    choices=list(item.choices),
                    readonly=item.readonly,
                )
            out.append(entry)
        return out

    def set(self, name: str, value: object) -> dict[str, Any]:
        """Set the page's setting ``name`` to ``value``; the setting as the camera reports it."""
        keys = next((k for n, _, k in SETTINGS if n == name), None)
        if keys is None:
            known = ", ".join(n for n, _, _ in SETTINGS)
            raise StationError(f"camera setting {name!r}: use one of {known}")
        items = self._items()
        key = next((k for k in keys if k in items), None)
        if key is None:
            raise StationError(f"this camera has no {name} setting (looked for {', '.join(keys)})")
        item = self.camera.set_config(key, value)
        return {"name": name, "key": key, "value": item.display_value()}

    def snapshot(self) -> dict[str, str]:
        """``{camera key: value}`` of the settings the camera has, for a session's record."""
        try:
            return {s["key"]: s["value"] for s in self.read() if s["key"] is not None}
        except CameraError:
            return {}  # a body that cannot report its settings still shoots


def _set_exclusively(
    station: Station, settings: CameraSettings, name: str, value: object
) -> dict[str, Any]:
    """Change a setting while the rig is held, so a session cannot start halfway through."""
    with station.exclusive(f"change {name!r}"):
        return settings.set(name, value)


def camera_routes(station: Station) -> list[BaseRoute]:
    """``GET /api/camera/settings``; ``POST`` ``{name, value}`` sets one (not while shooting)."""
    from rig.station.api import _blocking, _handle, _json_body

    settings = CameraSettings(station.camera)

    async def camera_settings(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request, ("name", "value"))
            name, value = body.get("name"), body.get("value")
            if not isinstance(name, str) or value is None:
                raise StationError('send {name, value}, e.g. {"name": "iso", "value": "200"}')
            changed = await _blocking(_set_exclusively, station, settings, name, value)
            return JSONResponse(changed, headers=NO_STORE)
        return JSONResponse({"settings": await _blocking(settings.read)}, headers=NO_STORE)

    return [Route("/api/camera/settings", _handle(camera_settings), methods=["GET", "POST"])]
