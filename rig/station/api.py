"""The station's HTTP side: the preview page plus a token-guarded control and download API.

Access
------
:mod:`stacker.preview.access` guards everything but the page shell and ``POST /api/login``
with the token :mod:`rig.station.auth` keeps. The page reads the token from the address the
station prints (``http://pi:8000/#token=...``; a fragment never reaches the server or its logs)
and logs in once. Control requests are ``POST`` with a
JSON body, which a foreign page cannot send without the browser asking first.

Control API (JSON in, JSON out; a user error, a field not named here among them, is
``{"error": "..."}`` with 400, busy is 409)
---------------------------------------------
``GET  /api/station``                      rail position, running session, session list
``POST /api/plan``                         ``{from, to, step | frames | magnification+f_number
                                           | na, settle, direction, exposure_delay,
                                           flash_recycle, return_to_start}`` → frames, step,
                                           duration (the fields of a plan file, or a
                                           session's request with its ``plan``)
``POST /api/jog``                          ``{by: "100um"}`` or ``{to: "2mm"}`` → position
``POST /api/home``                         run the rail's homing cycle → position
``POST /api/unlock``                       clear the controller's alarm (GRBL ``$X``)
``POST /api/rail/stop``                    halt a jog or homing cycle in progress now
``POST /api/test-shot``                    shoot where the rail stands; shown as the last frame
``POST /api/sessions``                     ``{plan: {...}, name, method, align, reference,
                                           interpolation, format}``: start
``POST /api/sessions/{id}/stop``           stop after the frame in flight
``POST /api/sessions/{id}/resume``         continue at the first missing frame;
                                           ``{rail_where_left: true}`` when a 409 asks
``GET  /api/sessions/{id}/composite``      downloads: ``composite``, ``depth``,
``GET  /api/sessions/{id}/frames.zip``     ``depth-preview``, ``frames.zip``,
``GET  /api/sessions/{id}/frames/{name}``  or one frame

Live view, camera settings and past sessions: :mod:`rig.station.liveview`,
:mod:`rig.station.camera_settings`, :mod:`rig.station.history`. The README lists the routes a
script calls, with a curl example (``tests/integration/test_station_readme.py`` keeps both
true).
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from email.utils import formatdate
from functools import partial
from io import BufferedReader
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from rig.station.errors import DownloadCut, NotFoundError, ReferenceChanged, StationBusyError
from rig.station.files import ZIP_CHUNK, SessionFiles
from rig.station.service import Station, describe_plan, plan_from_request
from stacker.errors import UserError
from stacker.options import StackOptions
from stacker.preview.access import (
    LOGIN_SCRIPT,
    error_response,
    is_json,
    loads_json,
    login_routes,
    token_middleware,
)
from stacker.preview.server import NO_STORE, PING_S, PageExtension, create_app

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")

T = TypeVar("T")
STACK_FIELDS = ("method", "align", "reference", "interpolation")
"""The stacking options a session request may set besides ``format``."""
SESSION_FIELDS = ("plan", "name", "format", *STACK_FIELDS)
"""The fields of ``POST /api/sessions``."""


async def _json_body(request: Request, fields: tuple[str, ...] | None = ()) -> dict[str, Any]:
    """The request's JSON object, whose keys must be among ``fields`` (``None``: the caller's
    parser checks them): a misspelt or unsupported field (``"formt"``, ``"crop"``) was ignored
    without a word, and the session shot with settings other than those asked for."""
    if not is_json(request):
        raise _HttpError(415, "send the request body as JSON (Content-Type: application/json)")
    raw = await request.body()  # at most MAX_BODY_BYTES: the server's RequestGuard counts
    if not raw.strip():
        return {}
    try:
        data = loads_json(raw)
    except ValueError:
        raise _HttpError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _HttpError(400, "the request body must be a JSON object")
    if fields is not None:
        _only(data, fields)
    return data


def _only(data: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Refuse a field of ``data`` not among ``fields``."""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        wanted = ", ".join(fields) or "no fields ({} or an empty body)"
        raise _HttpError(400, f"unknown field(s) {', '.join(map(repr, unknown))}: send {wanted}")


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _handle(
    fn: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Turn station errors into JSON answers: 404 unknown, 409 busy, 400 other user errors."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except _HttpError as exc:
            return error_response(exc.status, str(exc))
        except NotFoundError as exc:
            return error_response(404, str(exc))
        except StationBusyError as exc:
            return error_response(409, str(exc))
        except UserError as exc:
            return error_response(400, str(exc))

    return wrapped


async def _blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a call that moves or shoots off the event loop."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))


def _disposition(name: str, disposition: str = "attachment") -> str:
    """A ``Content-Disposition`` that saves the download as ``name`` (RFC 6266); ``inline``
    shows it in the browser, the name kept for saving it from there."""
    quoted = quote(name)
    if quoted == name:
        return f'{disposition}; filename="{name}"'
    return f"{disposition}; filename*=utf-8''{quoted}"


def _chunks(src: BufferedReader, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    with src:
        src.seek(start)
        left = length
        while left is None or left > 0:
            chunk = src.read(ZIP_CHUNK if left is None else min(ZIP_CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")  # no number int() refuses


def _byte_range(request: Request, size: int, validators: tuple[str, str]) -> tuple[int, int] | None:
    """The one range of bytes ``request`` asks for (first, last), or None for the whole file:
    no ``Range``, more than one range (allowed to be answered whole), or an ``If-Range`` that
    names another version of the file. A range that starts past the end raises 416."""
    asked = request.headers.get("range", "").strip()
    match = _RANGE.fullmatch(asked.replace(" ", ""))
    if match is None or not any(match.groups()):
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() not in validators:
        return None
    first, last = match.groups()
    if first and last and int(last) < int(first):
        return None  # not a range at all (RFC 9110): the whole file
    if not first:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise _HttpError(416, f"bytes {asked[6:]} are not in a file of {size} bytes")
    return start, end


class _Download(StreamingResponse):
    """A download read from ``chunks`` on worker threads and closed when the answer ends,
    however it ends.

    Starlette drops an unfinished iterator when the client goes away (a phone that sleeps,
    a cancelled download), and a generator dropped mid-file closes its file, or finishes its
    zip, only when the garbage collector gets round to it: until then the station holds the
    frame open (its space stays taken after a deletion) and prints a traceback from the zip
    writer that was cut off.
    """

    def __init__(self, chunks: Iterator[bytes], **kwargs: Any) -> None:
        self._chunks = chunks
        super().__init__(iterate_in_threadpool(chunks), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except DownloadCut as cut:
            # The answer has begun: returning before its end makes the server close the
            # connection, and the client's download fails (a traceback would say no more).
            log.warning("%s", cut)
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()  # no thread reads it now: the file is closed here, at once


async def _download(
    request: Request, files: SessionFiles, path: Path, name: str, disposition: str = "attachment"
) -> Response:
    """The file ``path`` as an attachment saved as ``name``, sent from a handle opened through
    no link (:meth:`SessionFiles.open`): opening it again by name once the checks have passed
    would follow a link swapped in meanwhile out of the session folder.

    A download cut off (a phone's Wi-Fi over a composite of hundreds of MB) is resumed where
    it stopped: a ``Range`` of bytes is answered 206, and the ``ETag`` and ``Last-Modified``
    let the browser's ``If-Range`` make sure the file is still the one it began. A ``HEAD``
    reads nothing."""
    src = await _blocking(files.open, path)
    st = os.fstat(src.fileno())
    etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
    modified = formatdate(st.st_mtime, usegmt=True)
    headers = {
        **NO_STORE,
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": modified,
        "Content-Disposition": _disposition(name, disposition),
    }
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    try:
        part = _byte_range(request, st.st_size, (etag, modified))
    except _HttpError as exc:
        src.close()
        refused = error_response(exc.status, str(exc))
        refused.headers["Content-Range"] = f"bytes */{st.st_size}"
        return refused
    start, end = part if part is not None else (0, st.st_size - 1)
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if part is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{st.st_size}"
    if request.method == "HEAD":
        src.close()
        return Response(status_code=status, media_type=media_type, headers=headers)
    return _Download(
        _chunks(src, start, end - start + 1),
        status_code=status,
        media_type=media_type,
        headers=headers,
    )


def _rail_routes(station: Station) -> list[BaseRoute]:
    """Jog, home and unlock the rail (each answered with where it stands), and stop it."""

    def answer(position: float) -> Response:
        return JSONResponse({"position": position, "units": station.units}, headers=NO_STORE)

    async def jog(request: Request) -> Response:
        body = await _json_body(request, ("by", "to"))
        return answer(await _blocking(station.jog, by=body.get("by"), to=body.get("to")))

    async def home(request: Request) -> Response:
        await _json_body(request)
        return answer(await _blocking(station.home))

    async def unlock(request: Request) -> Response:
        await _json_body(request)
        return answer(await _blocking(station.unlock))

    async def rail_stop(request: Request) -> Response:
        await _json_body(request)
        stopped = await _blocking(station.stop_rail)
        return JSONResponse({"stopped": stopped}, headers=NO_STORE)

    return [
        Route("/api/jog", _handle(jog), methods=["POST"]),
        Route("/api/home", _handle(home), methods=["POST"]),
        Route("/api/unlock", _handle(unlock), methods=["POST"]),
        Route("/api/rail/stop", _handle(rail_stop), methods=["POST"]),
    ]


def station_routes(station: Station, token: str) -> list[BaseRoute]:
    """The control, session and download routes of ``station``."""

    async def status(request: Request) -> Response:
        return JSONResponse(await _blocking(station.status), headers=NO_STORE)

    async def plan(request: Request) -> Response:
        body = await _json_body(request, None)  # PlanSpec names unknown plan fields
        if isinstance(body, dict) and isinstance(body.get("plan"), dict):
            # A session's request as it stands ({"plan": {...}, "name": ...}): its plan, the
            # way POST /api/sessions reads it, rather than "unknown plan field 'plan'".
            _only(body, SESSION_FIELDS)
            body = body["plan"]
        shot_plan = plan_from_request(body, units=station.units)
        station.check_within_travel(shot_plan)
        return JSONResponse(describe_plan(shot_plan), headers=NO_STORE)

    async def test_shot(request: Request) -> Response:
        await _json_body(request)
        return JSONResponse(await _blocking(station.test_shot), headers=NO_STORE)

    async def sessions(request: Request) -> Response:
        if request.method != "POST":  # GET, and the HEAD routed with it: a safe method lists
            return JSONResponse(await _blocking(station.sessions), headers=NO_STORE)
        body = await _json_body(request, SESSION_FIELDS)
        shot_plan = plan_from_request(body.get("plan"), units=station.units)
        fields = {k: body.get(k) for k in STACK_FIELDS}
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise _HttpError(400, f"'name' must be text (the session's name), not {name!r}")
        sid = await _blocking(
            station.start,
            shot_plan,
            name=(name.strip() or None) if name else None,
            stack=StackOptions.parse({**fields, "output_format": body.get("format")}),
        )
        return JSONResponse(
            {"id": sid, "plan": describe_plan(shot_plan)}, status_code=201, headers=NO_STORE
        )

    async def stop(request: Request) -> Response:
        await _json_body(request)
        sid = request.path_params["sid"]
        if not await _blocking(station.stop, sid):
            raise NotFoundError(f"no session is running (asked to stop {sid!r})")
        return JSONResponse({"id": sid, "stopping": True}, status_code=202, headers=NO_STORE)

    async def resume(request: Request) -> Response:
        body = await _json_body(request, ("rail_where_left",))
        where_left = body.get("rail_where_left", False)
        if not isinstance(where_left, bool):
            raise _HttpError(400, "'rail_where_left' must be true or false")
        sid = request.path_params["sid"]
        try:
            await _blocking(station.resume, sid, rail_where_left=where_left)
        except ReferenceChanged as exc:  # the page asks, then sends rail_where_left
            return error_response(409, str(exc), ask="rail_where_left")
        return JSONResponse({"id": sid}, status_code=202, headers=NO_STORE)

    async def result(request: Request) -> Response:
        sid, kind = request.path_params["sid"], request.path_params["kind"]
        path = await _blocking(station.files.result_file, sid, kind)
        # The colour depth map with its key is a picture to look at on the phone, in a tab; the
        # composite (TIFF, DNG) and the 16-bit depth PNG are files for other programs.
        shown = "inline" if kind == "depth-preview" else "attachment"
        return await _download(request, station.files, path, f"{sid}-{path.name}", shown)

    async def frames_zip(request: Request) -> Response:
        sid = request.path_params["sid"]
        chunks = await _blocking(station.files.frames_zip, sid)
        return _Download(
            chunks,
            media_type="application/zip",
            headers={**NO_STORE, "Content-Disposition": _disposition(f"{sid}-frames.zip")},
        )

    async def frame(request: Request) -> Response:
        sid, name = request.path_params["sid"], request.path_params["name"]
        path = await _blocking(station.files.frame_file, sid, name)
        return await _download(request, station.files, path, path.name)

    return [
        *login_routes(token),
        Route("/api/station", _handle(status)),
        Route("/api/plan", _handle(plan), methods=["POST"]),
        *_rail_routes(station),
        Route("/api/test-shot", _handle(test_shot), methods=["POST"]),
        Route("/api/sessions", _handle(sessions), methods=["GET", "POST"]),
        Route("/api/sessions/{sid}/stop", _handle(stop), methods=["POST"]),
        Route("/api/sessions/{sid}/resume", _handle(resume), methods=["POST"]),
        Route("/api/sessions/{sid}/frames.zip", _handle(frames_zip)),
        Route("/api/sessions/{sid}/frames/{name}", _handle(frame)),
        Route("/api/sessions/{sid}/{kind}", _handle(result)),
    ]


def station_app(station: Station, token: str, *, ping_s: float = PING_S) -> Starlette:
    """The preview page and API of ``station.hub`` plus the station's routes, behind the token;
    a quiet event stream is pinged every ``ping_s`` seconds."""
    from rig.station.camera_settings import camera_routes
    from rig.station.history import history_routes
    from rig.station.liveview import liveview_routes

    remote = [*liveview_routes(station), *camera_routes(station), *history_routes(station)]
    extension = PageExtension(
        routes=[*remote, *station_routes(station, token)],  # before the catch-all result route
        middleware=[token_middleware(token)],
        static_dir=STATIC_DIR,
        stylesheets=["station.css", "remote.css"],
        scripts=[LOGIN_SCRIPT, "station.js", "remote.js"],
    )
    return create_app(station.hub, extension, ping_s=ping_s)
