"""Past sessions on the station's page: a thumbnail of each composite, and deleting a session.

Sessions are found only through :class:`~rig.station.files.SessionFiles` (listed folders, no
links, nothing joined from a request), so a thumbnail or a deletion can only ever touch one of
the station's own session folders. A deletion first renames the folder out of the listing (one
atomic step, so a half-deleted session never shows up as a broken one), then removes it with
:func:`shutil.rmtree`, which on Linux works through directory handles and never follows a link
inside the folder (``shutil.rmtree.avoids_symlink_attacks``). A removal cut short (the station
stopped, the power cut) is finished when the station next starts
(:func:`~rig.station.files.empty_trash`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from typing import BinaryIO

import cv2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rig.station.errors import StationError
from rig.station.files import TRASH_PREFIX, unused_elsewhere
from rig.station.service import Station
from stacker.io import decode_image
from stacker.preview.publisher import encode_jpeg
from stacker.preview.server import NO_STORE

THUMB_PX = 240


class SessionHistory:
    """Thumbnails (cached per composite file version) and deletion of the station's sessions."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self._thumbs: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._lock = threading.Lock()
        self._decoding = threading.Lock()

    def thumbnail(self, sid: str) -> bytes:
        """A small JPEG of session ``sid``'s composite.

        One composite is decoded at a time: a 24 MP 16-bit one takes about 150 MB, and the
        page asks for every session's thumbnail at once.
        """
        path = self.station.files.result_file(sid, "composite")
        with self.station.files.open(path) as f:  # decoded from this handle: no link followed
            if (cached := self._cached(sid, f)) is not None:
                return cached
            with self._decoding:
                if (cached := self._cached(sid, f)) is not None:  # made while this one waited
                    return cached
                st = os.fstat(f.fileno())
                image = decode_image(f.read(), path)
                h, w = image.shape[:2]
                scale = min(1.0, THUMB_PX / max(h, w))
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                del image
        jpeg = encode_jpeg(small, quality=80)[0]
        with self._lock:
            self._thumbs[sid] = ((st.st_mtime_ns, st.st_size), jpeg)
            self._forget_gone()
        return jpeg

    def _forget_gone(self) -> None:
        """Drop the thumbnails of sessions whose folders are gone: one removed by hand (over
        ssh, not through the page) kept its thumbnail for as long as the station ran."""
        root = self.station.files.root
        for gone in [sid for sid in self._thumbs if not (root / sid).is_dir()]:
            del self._thumbs[gone]

    def _cached(self, sid: str, f: BinaryIO) -> bytes | None:
        """The thumbnail made from the composite open as ``f``, if that version has one."""
        st = os.fstat(f.fileno())
        with self._lock:
            cached = self._thumbs.get(sid)
        if cached is None or cached[0] != (st.st_mtime_ns, st.st_size):
            return None
        return cached[1]

    def delete(self, sid: str, confirm: object) -> None:
        """Delete session ``sid``; ``confirm`` must repeat its id (the page asks the user)."""
        if confirm != sid:
            raise StationError(f"to delete session {sid!r}, confirm with its name")
        with self.station.session_idle(sid, f"delete session {sid!r}"):  # nor resume it meanwhile
            folder = self.station.files.session_dir(sid)  # listed, a real folder, not a link
            trash = folder.with_name(f"{TRASH_PREFIX}{sid}-{secrets.token_hex(4)}")
            with unused_elsewhere(folder, f"delete session {sid!r}"):  # nor shot by rig shoot
                try:
                    os.rename(folder, trash)
                except OSError as exc:
                    raise StationError(f"session {sid}: cannot delete ({exc.strerror})") from None
            self.station.session_deleted()  # out of the listing now: other phones list again
        shutil.rmtree(trash, ignore_errors=True)
        with self._lock:
            self._thumbs.pop(sid, None)


def history_routes(station: Station) -> list[BaseRoute]:
    """``GET /api/sessions/{sid}/thumbnail``; ``POST /api/sessions/{sid}/delete {confirm}``."""
    from rig.station.api import _blocking, _handle, _json_body

    history = SessionHistory(station)

    async def thumbnail(request: Request) -> Response:
        jpeg = await _blocking(history.thumbnail, request.path_params["sid"])
        return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)

    async def delete(request: Request) -> Response:
        body = await _json_body(request, ("confirm",))
        sid = request.path_params["sid"]
        await _blocking(history.delete, sid, body.get("confirm"))
        return JSONResponse({"id": sid, "deleted": True}, headers=NO_STORE)

    return [
        Route("/api/sessions/{sid}/thumbnail", _handle(thumbnail)),
        Route("/api/sessions/{sid}/delete", _handle(delete), methods=["POST"]),
    ]
