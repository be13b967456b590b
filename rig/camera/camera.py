"""One long-lived camera session through libgphoto2: capture, download, settings, lens focus.

:class:`Camera` owns a libgphoto2 camera handle for the whole session (the ``gphoto2`` command is
never spawned: each invocation would reopen the USB device, renegotiate PTP and reset live view).
Every libgphoto2 call goes through :meth:`Camera._call`, which

* retries with exponential back-off while the camera says "PTP Device Busy" (0x2019, libgphoto2
  -110) or a transfer times out,
* reconnects when the USB link breaks: the same port first, else the same model with the same
  serial number on a new port (re-plugging changes the port), then re-applies the session's
  settings and carries on,
* turns anything else into a one-line :class:`~rig.camera.errors.CameraError`.

Settings the session changes for its own needs (capture target, live view, focus mode) are
put back on :meth:`Camera.close`, but for libgphoto2's own Nikon autofocus-before-capture, which
is left off (see :func:`~rig.camera.focus.no_capture_autofocus`); settings the user sets with
:meth:`Camera.set_config` stay, as they would with the camera's own menus.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from rig.camera.backend import load_gphoto2
from rig.camera.config import (
    ConfigItem,
    Value,
    choices_of,
    coerce_value,
    find_widget,
    item_from_widget,
    iter_leaves,
    unknown_key,
    value_to_restore,
    walk_items,
)
from rig.camera.detect import CameraInfo, choose_camera, list_cameras
from rig.camera.errors import (
    BUSY_CODES,
    CLAIM_HINT,
    DISCONNECT_HINT,
    GP_ERROR_BAD_PARAMETERS,
    GP_ERROR_FILE_NOT_FOUND,
    GP_ERROR_NOT_SUPPORTED,
    CameraClaimError,
    CameraDisconnectedError,
    CameraError,
    CameraUnsupportedError,
    CaptureLostError,
    camera_error,
    classify,
)
from rig.camera.focus import (
    FocusStrategy,
    choose_strategy,
    manual_focus_mode,
    no_capture_autofocus,
)
from rig.camera.naming import (
    check_destination,
    check_stem,
    free_stem,
    next_auto_stem,
    shot_file_names,
)
from rig.camera.retry import RetryPolicy
from rig.camera.shot import (
    FORMAT_KEYS,
    CaptureTarget,
    TargetChoice,
    Vendor,
    default_capture_target,
    files_per_shot,
    vendor_of,
)
from rig.camera.summary import CameraSummary, StorageSummary
from rig.camera.tether import CameraFile, CameraShot, late_owner
from stacker.io import atomic_write_bytes

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``on_progress(file_name, bytes_done, bytes_total)`` while a file downloads."""

CHUNK_BYTES = 1 << 20
"""Download piece size where the camera supports partial reads (progress per piece)."""
MAX_DRAIN_EVENTS = 200
SHOT_EVENTS_LIMIT_S = 5.0
"""Upper bound on listening for unannounced extra files when the body has no format setting."""
SHOT_FILES_LIMIT_S = 10.0
"""Upper bound on waiting for the files a shot must produce (a busy body's late JPEG)."""
CLOSE_LATE_FILES_S = 3.0
"""How long closing the camera waits for late files that shots still owe."""
RELEASE_FILE_TIMEOUT_S = 40.0
"""Wait for the first file after a release without AF (libgphoto2 waits 35 s on Sony), beyond
the exposure and its dark frame (:func:`release_timeout_s`)."""
RECONNECT_POLL_S = 0.5
MIRROR_SETTLE_S = 2.0
"""With mirror lock-up, how long after the exposure time a Canon's file may take before the
press is taken for one that only raised the mirror; also the shake's settle before the next."""

# libgphoto2's capturetarget choices (_get_CaptureTarget: RAM, card; labels are translated by
# locale, so the index decides), and Sony's untranslated ones (_get_Sony_CaptureTarget).
_CAPTURE_TARGET_INDEX: dict[CaptureTarget, int] = {"ram": 0, "card": 1, "both": 1}
_CAPTURE_TARGET_LABELS: dict[CaptureTarget, str] = {
    "ram": "Internal RAM",
    "card": "Memory card",
    "both": "Memory card",
}
_SONY_TARGETS: dict[CaptureTarget, str] = {"ram": "sdram", "card": "card", "both": "card+sdram"}
VIBRATION_SETTINGS: dict[str, tuple[str, str, str]] = {
    "canon": ("mirrorlock", "1", "mirror lock-up"),
    "nikon": ("exposuredelaymode", "On", "exposure delay mode"),
    "sony": ("shuttertype", "Electronic", "electronic shutter (no flash sync)"),
}
"""Per vendor: libgphoto2 key, value and what it does against shutter shake (``config.c``:
EOS MirrorUpSetting, Nikon ExposureDelayMode, Sony ShutterType)."""
SONY_PC_SAVE_KEY = "pcsaveimgformat"
"""Sony's "RAW+J PC Save Image" (``sony_pc_save_image_format`` in config.c): at RAW+JPEG, which
files reach the computer (``RAW & JPEG``, ``JPEG Only``, ``RAW Only``...)."""
_EOS_RELEASE_CHOICES = {8: (4, 7), 12: (2, 4)}
"""Per length of ``eosremoterelease``'s choice list, the indices of a full press without AF and
of the release that ends it (``_get_Canon_EOS_RemoteRelease``, ``_put_...``): "Press Full MF"
and "Release" from libgphoto2 2.5.34 on; before, "Press Full" (``remotereleaseon(3, 1)``) and
"Release Full" (``remotereleaseoff(3)``), where index 7 was "Press 2", a press with AF. Indices,
as the labels are translated into the user's language."""


class Camera:
    """A connected camera; open with :meth:`Camera.open`, use as a context manager.

    Parameters
    ----------
    info
        Which camera (model and port), from :func:`~rig.camera.detect.list_cameras`.
    capture_target
        ``"ram"`` (files only travel over USB), ``"card"`` (written to the card, downloaded,
        then deleted there), ``"both"`` (a copy stays on the card: Sony's ``card+sdram``, else
        the card with ``keep_on_card``), ``"auto"`` (the vendor's default, see
        :func:`~rig.camera.shot.default_capture_target`) or ``None`` to leave the camera's
        setting alone. Restored on close.
    keep_on_card
        Keep captured files on the card after download (only meaningful with the card as
        target; files in the camera's RAM are released once downloaded).
    retry
        Bounds on retries and reconnection.
    wrap_handle
        Applied to each libgphoto2 handle as it is opened; the simulated rig layers vendor
        behaviour over the virtual camera with it (:mod:`rig.sim.camera_quirks`).
    """

    def __init__(
        self,
        info: CameraInfo,
        *,
        capture_target: CaptureTarget | None = None,
        keep_on_card: bool = False,
        retry: RetryPolicy | None = None,
        wrap_handle: Callable[[Any], Any] | None = None,
    ) -> None:
        self._gp = load_gphoto2()
        self._wrap = wrap_handle
        self.info = info
        self.keep_on_card = keep_on_card
        self.retry = retry or RetryPolicy()
        self._capture_target = capture_target
        self._lock = threading.RLock()
        self._cam: Any | None = None
        self._serial = ""
        self._manufacturer: str | None = None
        self._vendor: Vendor | None = None
        self._restore: dict[str, Value] = {}
        self._session: dict[str, str | int | float] = {}
        self._partial_reads: bool | None = None
        self._focus: FocusStrategy | None = None
        self._focus_size = 1
        self._focus_settle_s: float | None = None
        self._focus_approximate = False
        self._reconnecting = False
        self._link = 0
        """Reconnections so far: what libgphoto2 held for a shot goes with its connection."""
        self._eos_layout: tuple[int, int] | None = None
        self._eos_layout_read = False
        self._format_key: str | None = None
        self._format_known = False
        self._awaited: list[_OwedShot] = []
        self.releases = 0
        """Shutter releases so far: whether frames were shot since a lens was last driven."""
        self.focus_at_release: float | None = None
        """Where a lens that tells its position (Fuji) stood just before the last release, in
        focus steps; None where it was not read. Focus elsewhere after that release was moved
        at it (the body refocused), not before it (by hand, between jogs and test shots)."""
        self.sleep: Callable[[float], None] = time.sleep

    # ----------------------------------------------------------------- opening and closing
    @classmethod
    def open(
        cls,
        model: str | None = None,
        port: str | None = None,
        *,
        capture_target: TargetChoice | None = None,
        keep_on_card: bool = False,
        retry: RetryPolicy | None = None,
        wrap_handle: Callable[[Any], Any] | None = None,
    ) -> Camera:
        """Connect to the camera with this model and/or port, or the only one connected."""
        info = choose_camera(list_cameras(), model, port)
        camera = cls(info, keep_on_card=keep_on_card, retry=retry, wrap_handle=wrap_handle)
        camera._cam = camera._connect(info)
        camera._serial = camera._read_text("serialnumber")
        try:
            target = (
                default_capture_target(camera.vendor)
                if capture_target == "auto"
                else capture_target
            )
            if target is not None:
                camera.set_capture_target(target)
        except BaseException:
            camera.close()
            raise
        return camera

    @property
    def description(self) -> str:
        """``<model> on <port>``, how messages name this camera."""
        return str(self.info)

    @property
    def is_open(self) -> bool:
        return self._cam is not None

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Camera {self.description} ({state})>"

    def close(self) -> None:
        """Collect late files still due, put back the settings this session changed, then
        release the camera. Idempotent."""
        with self._lock:
            if self._cam is None:
                return
            self._collect_late_files()
            for key, value in reversed(list(self._restore.items())):
                if value is None:
                    continue
                try:
                    self._set_raw(key, value)
                except CameraError as exc:
                    log.warning(
                        "%s: could not restore %s=%r: %s", self.description, key, value, exc
                    )
            self._restore.clear()
            self._session.clear()
            self._disconnect()

    def _disconnect(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.exit()
            except self._gp.GPhoto2Error as exc:
                log.debug("%s: exit failed: %s", self.description, exc)

    def _connect(self, info: CameraInfo) -> Any:
        """A libgphoto2 camera initialised on ``info``'s model and port (busy is retried)."""
        gp = self._gp
        delays = self.retry.delays()
        while True:
            cam: Any = gp.Camera()
            try:
                abilities = gp.CameraAbilitiesList()
                abilities.load()
                cam.set_abilities(abilities.get_abilities(abilities.lookup_model(info.model)))
                ports = gp.PortInfoList()
                ports.load()
                cam.set_port_info(ports.get_info(ports.lookup_path(info.port)))
                cam.init()
                return self._wrap(cam) if self._wrap is not None else cam
            except gp.GPhoto2Error as exc:
                code, text = exc.code, exc.string
            # Drop every reference to the failed handle (no exception chain, no local) so
            # libgphoto2 frees it and its port now, not whenever a traceback is collected.
            cam = None
            delay = next(delays, None) if classify(code) == "retry" else None
            if delay is None:
                raise camera_error(code, text, what="open", camera=str(info))
            self.sleep(delay)

    def reconnect(self, reason: str = "reconnect requested") -> None:
        """Release the camera and connect again to the same body, keeping the session.

        The same port is tried first, then the same model on any port whose serial number
        matches. Session settings (capture target, live view...) are applied again.
        """
        with self._lock:
            self._disconnect()
            deadline = time.monotonic() + self.retry.reconnect_timeout_s
            while True:
                self._reconnecting = True
                try:
                    back = self._try_reconnect()
                finally:
                    self._reconnecting = False
                if back is True:
                    self._link += 1
                    log.info("%s: reconnected (%s)", self.description, reason)
                    return
                if time.monotonic() >= deadline:
                    raise self._not_back(reason, claimed=back)
                self.sleep(RECONNECT_POLL_S)

    def _not_back(self, reason: str, claimed: CameraClaimError | None) -> CameraDisconnectedError:
        """The end of a reconnection that timed out. A body found again but held by another
        program is said so: a desktop's gvfs takes a camera the moment it reappears on USB
        (libgphoto2's ``gp_libusb1_open`` then answers GP_ERROR_IO_USB_CLAIM), and "check the
        cable" sent the photographer after the wrong fault."""
        head = f"{self.description}: connection lost ({reason})"
        if claimed is not None:
            return CameraDisconnectedError(
                f"{head}; the camera came back, but {CLAIM_HINT}", claimed.code
            )
        return CameraDisconnectedError(
            f"{head} and the camera did not come back within "
            f"{self.retry.reconnect_timeout_s:g} s; {DISCONNECT_HINT}"
        )

    def _try_reconnect(self) -> Literal[True] | CameraClaimError | None:
        """``True`` once connected again; else the claim error of a body found but held by
        another program, or ``None``."""
        try:
            present = list_cameras()
        except CameraError:
            return None
        claimed: CameraClaimError | None = None
        same_port = [c for c in present if c == self.info]
        moved = [c for c in present if c.model == self.info.model and c.port != self.info.port]
        for candidate in same_port + moved:
            try:
                cam = self._connect(candidate)
            except CameraClaimError as exc:
                claimed = exc
                continue
            except CameraError:
                continue
            previous, self._cam = self.info, cam
            serial = self._read_text("serialnumber")
            if self._serial and serial and serial != self._serial:
                self._disconnect()
                continue
            self.info = candidate
            if candidate != previous:
                log.info("%s moved from %s", self.description, previous.port)
            if self._focus is not None:
                self._focus._prepared = False
            for key, value in self._session.items():
                try:
                    self._set_raw(key, value)
                except CameraError as exc:
                    log.warning("%s: could not set %s again: %s", self.description, key, exc)
            return True
        return claimed

    # ------------------------------------------------------------------ the one call path
    def _call(self, what: str, fn: Callable[[Any], Any], *, retry_busy: bool = True) -> Any:
        """Run ``fn(libgphoto2 camera)`` with retries, reconnection and error mapping; a busy
        answer is not retried when ``retry_busy`` is false (a call that may have been taken)."""
        with self._lock:
            delays = self.retry.delays()
            reconnects = self.retry.reconnects
            while True:
                if self._cam is None:
                    raise CameraError(f"{self.description} is closed; open it again")
                try:
                    return fn(self._cam)
                except self._gp.GPhoto2Error as exc:
                    code, text = exc.code, exc.string
                # Handled outside the except block: a chained GPhoto2Error would keep the
                # libgphoto2 handle alive through its traceback long after the session closed.
                remedy = classify(code)
                if remedy == "retry" and (retry_busy or code not in BUSY_CODES):
                    delay = next(delays, None)
                    if delay is not None:
                        log.info("%s: %s: %s; retry in %.2f s", self.description, what, text, delay)
                        self.sleep(delay)
                        continue
                elif remedy == "reconnect" and reconnects > 0 and not self._reconnecting:
                    reconnects -= 1
                    log.warning("%s: %s: %s [%d]; reconnecting", self.description, what, text, code)
                    self.reconnect(reason=f"{what}: {text}")
                    continue
                raise camera_error(code, text, what=what, camera=self.description)

    # ------------------------------------------------------------------------- settings
    def _fresh_widget(self, key: str) -> Any | None:
        """A new widget for ``key`` (single-key read, else the whole tree), ``None`` if absent."""
        try:
            return self._call(f"read {key!r}", lambda c: c.get_single_config(key))
        except CameraError as exc:
            if exc.code not in (GP_ERROR_BAD_PARAMETERS, GP_ERROR_NOT_SUPPORTED):
                raise
        root = self._call("read settings", lambda c: c.get_config())
        return find_widget(root, key)

    def _send(self, key: str, widget: Any, *, retry_busy: bool = True) -> None:
        """Send ``widget`` (already holding its new value) to the camera."""
        try:
            self._call(
                f"set {key!r}", lambda c: c.set_single_config(key, widget), retry_busy=retry_busy
            )
            return
        except CameraError as exc:
            if exc.code not in (GP_ERROR_BAD_PARAMETERS, GP_ERROR_NOT_SUPPORTED):
                raise
        root = self._call("read settings", lambda c: c.get_config())
        target = find_widget(root, key)
        if target is None:
            raise unknown_key(key, [], self.description)
        target.set_value(widget.get_value())
        target.set_changed(1)
        self._call(f"set {key!r}", lambda c: c.set_config(root))

    def _set_raw(self, key: str, value: str | int | float) -> None:
        widget = self._fresh_widget(key)
        if widget is None:
            raise unknown_key(key, [], self.description)
        widget.set_value(value)
        widget.set_changed(1)
        self._send(key, widget)

    def _read_text(self, key: str) -> str:
        """The value of ``key`` as text, ``""`` when the camera lacks it or cannot say."""
        try:
            widget = self._fresh_widget(key)
        except CameraError:
            return ""
        if widget is None:
            return ""
        try:
            return str(widget.get_value())
        except self._gp.GPhoto2Error:
            return ""

    def config_items(self) -> list[ConfigItem]:
        """Every setting of the camera with label, type, current value and choices."""
        root = self._call("read settings", lambda c: c.get_config())
        return walk_items(root)

    def get_config(self, key: str) -> ConfigItem:
        """The setting ``key``; :class:`~rig.camera.errors.ConfigKeyError` if there is none."""
        widget = self._fresh_widget(key)
        if widget is None:
            raise unknown_key(key, self._all_keys(), self.description)
        return item_from_widget(widget)

    def _all_keys(self) -> list[str]:
        try:
            root = self._call("read settings", lambda c: c.get_config())
        except CameraError:
            return []
        return [str(w.get_name()) for w, _ in iter_leaves(root)]

    def set_config(self, key: str, value: object, *, restore: bool = False) -> ConfigItem:
        """Validate ``value`` for ``key`` and send it; return the setting as the camera reports it.

        An unknown key or invalid value raises a :class:`~rig.camera.errors.ConfigKeyError` /
        :class:`~rig.camera.errors.ConfigValueError` naming the key and what it accepts, before
        anything reaches the camera. With ``restore=True`` the old value is put back on close.
        """
        with self._lock:
            widget = self._fresh_widget(key)
            if widget is None:
                raise unknown_key(key, self._all_keys(), self.description)
            item = item_from_widget(widget)
            new = coerce_value(item, value)
            if restore:
                self._restore.setdefault(key, value_to_restore(item))
                self._session[key] = new
            widget.set_value(new)
            widget.set_changed(1)
            self._send(key, widget)
            return self.get_config(key)

    def set_capture_target(self, target: CaptureTarget) -> None:
        """Send captures to the camera's RAM, its card, or both, for this session only."""
        widget = self._fresh_widget("capturetarget")
        if target == "both":
            self.keep_on_card = True
        if widget is None:
            log.info("%s has no capture target setting; shots stay where it puts them", self.info)
            return
        choices = choices_of(widget)
        if _SONY_TARGETS[target] in choices:
            choice = _SONY_TARGETS[target]
        else:
            label = _CAPTURE_TARGET_LABELS[target]
            choice = label if label in choices else choices[_CAPTURE_TARGET_INDEX[target]]
        self.set_config("capturetarget", choice, restore=True)
        self._capture_target = target

    @property
    def capture_target(self) -> CaptureTarget | None:
        """The target this session chose (``None``: the camera's own setting was left alone)."""
        return self._capture_target

    def reduce_vibration(self) -> str | None:
        """Switch on the body's shutter-shake remedy for this session (restored on close).

        Mirror lock-up on Canon EOS, exposure delay mode on Nikon, the electronic shutter on
        Sony (see ``VIBRATION_SETTINGS``). Returns what was set, or ``None`` when the body
        offers none of them through libgphoto2 (then only the settle time helps).
        """
        setting = VIBRATION_SETTINGS.get(self.vendor)
        if setting is None:
            return None
        key, value, what = setting
        if self._fresh_widget(key) is None:
            log.info("%s offers no %r setting; relying on the settle time", self.description, key)
            return None
        self.set_config(key, value, restore=True)
        return f"{what} ({key}={value})"

    def hold_focus(self) -> None:
        """Keep each release from refocusing, for a stack whose focus a rail moves.

        libgphoto2's capture lets a Sony or Fuji autofocus first unless its ``focusmode`` is
        Manual, and a Nikon when libgphoto2's own ``autofocus`` setting was ever set on: with
        the lens at AF, every frame was focused on the same plane, a stack with nothing to
        add. The focus mode is set for the session (put back on close), libgphoto2's setting
        Off for good; a Canon is already released without AF.
        """
        if self.vendor == "canon":  # its release has no AF: no mode to set, nothing to warn of
            return
        with self._lock:
            controls = _Controls(self)
            manual_focus_mode(controls)
            no_capture_autofocus(controls)

    def _files_stay_on_card(self) -> bool:
        if not self.keep_on_card:
            return False
        widget = self._fresh_widget("capturetarget")
        if widget is None:
            return True
        choices = choices_of(widget)
        value = str(widget.get_value())
        return value in choices and choices.index(value) >= _CAPTURE_TARGET_INDEX["card"]

    # -------------------------------------------------------------------------- summary
    def summary(self) -> CameraSummary:
        """Manufacturer, model, serial number, battery level and storage of the camera."""
        storage: list[StorageSummary] = []
        try:
            infos = self._call("read storage", lambda c: c.get_storageinfo())
        except CameraUnsupportedError:
            infos = []
        gp = self._gp
        for s in infos:
            fields = s.fields
            storage.append(
                StorageSummary(
                    description=s.description if fields & gp.GP_STORAGEINFO_DESCRIPTION else "",
                    label=s.label if fields & gp.GP_STORAGEINFO_LABEL else "",
                    capacity_bytes=s.capacitykbytes * 1024
                    if fields & gp.GP_STORAGEINFO_MAXCAPACITY
                    else None,
                    free_bytes=s.freekbytes * 1024
                    if fields & gp.GP_STORAGEINFO_FREESPACEKBYTES
                    else None,
                    free_images=s.freeimages
                    if fields & gp.GP_STORAGEINFO_FREESPACEIMAGES
                    else None,
                )
            )
        return CameraSummary(
            manufacturer=self.manufacturer,
            model=self._read_text("cameramodel") or self.info.model,
            serial=self._serial or self._read_text("serialnumber"),
            battery=self._read_text("batterylevel"),
            port=self.info.port,
            storage=tuple(storage),
        )

    @property
    def manufacturer(self) -> str:
        if self._manufacturer is None:
            self._manufacturer = self._read_text("manufacturer")
        return self._manufacturer or self.info.model.split()[0]

    @property
    def vendor(self) -> Vendor:
        """The body's maker (from its manufacturer setting, else the model name)."""
        if self._vendor is None:
            self._vendor = vendor_of(
                self.manufacturer, self._read_text("cameramodel"), self.info.model
            )
        return self._vendor

    # -------------------------------------------------------------------------- capture
    def capture(
        self,
        dest_dir: Path,
        stem: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[Path]:
        """Take one shot and download every file it made into ``dest_dir``.

        Files of one shot share a stem (``frame_0007.cr2`` + ``frame_0007.jpg``); ``stem`` is
        the caller's, else the next ``frame_NNNN`` in the folder. A stem already used in the
        folder gets ``_2``, ``_3``... so nothing is overwritten. Each file is written atomically.
        Files are removed from the camera after download unless ``keep_on_card`` is set and the
        card is the capture target.

        Returns the paths written, the camera's first file first.
        """
        return self.release(dest_dir, stem).download(on_progress)

    def release(self, dest_dir: Path, stem: str | None = None) -> PendingShot:
        """Release the shutter; return once the camera has announced the shot's first file.

        By then the exposure is over, so the focus may move while :meth:`PendingShot.download`
        fetches the files. Before the release, files that arrived since the last shot (the
        late JPEG of a RAW+JPEG pair) are downloaded into their shot's folder and removed from
        the camera. Canon EOS bodies are released without autofocus (see :meth:`_release`).
        """
        dest_dir = Path(dest_dir)
        if stem is not None:
            check_stem(stem)
        with self._lock:
            check_destination(dest_dir, stem)  # before the shutter: nothing shot is then lost
            self._collect_stragglers(dest_dir)
            expected = self.files_per_shot()  # as set for this shot
            first = self._release()
            return PendingShot(self, dest_dir, stem, first, expected, self._link)

    def files_per_shot(self) -> int | None:
        """Files each shot makes (2 for RAW+JPEG) from the body's image-format setting.

        The setting is read afresh each time: it may change while the camera stays open (a
        station's camera settings, the body's own dial), and a count kept from the first shot
        then lost the JPEG of every RAW+JPEG shot, or waited for a RAW that never came. Which
        of :data:`~rig.camera.shot.FORMAT_KEYS` the body has is looked up once.

        ``None`` when the body has no such setting; the camera then listens for a quiet window
        after each shot instead.
        """
        value = self.image_format()
        return files_per_shot(value) if value else None

    def image_format(self) -> str:
        """The body's image-format setting as it reads now (``RAW + Large Fine JPEG``); ``""``
        when the body has none or cannot say.

        At RAW+JPEG a Sony sends the computer only what its "RAW+J PC Save Image" setting
        says; when that is one kind only (``JPEG Only``), it is what is returned, marked with
        the setting's key.
        """
        if not self._format_known:
            self._format_known = True
            self._format_key = next((key for key in FORMAT_KEYS if self._read_text(key)), None)
        value = self._read_text(self._format_key) if self._format_key is not None else ""
        if value and self.vendor == "sony" and files_per_shot(value) == 2:
            only = self._read_text(SONY_PC_SAVE_KEY)
            if only.endswith(" Only"):
                return f"{only} ({SONY_PC_SAVE_KEY})"
        return value

    def _release(self) -> tuple[str, str]:
        """Take the picture; the camera's folder and name of its first file.

        libgphoto2's capture on a Canon EOS half-presses with autofocus first
        (``camera_trigger_canon_eos_capture``): with the lens switch at AF, as lens-motor
        stacking needs, the lens would refocus at every frame or the shot fail when AF cannot
        lock. So a Canon is released through ``eosremoterelease`` with AF off ("Press Full MF",
        then "Release", as ``_put_Canon_EOS_RemoteRelease`` documents), and the file is taken
        from the file-added event that follows.
        """
        gp = self._gp
        if self._focus is not None:
            # A lens stack's first frame is shot where focus stands, with no drive before it:
            # the body is set up for driving (manual focus, live view) before that release, or
            # a Sony or Fuji left in an AF mode refocused at it (camera_sony_capture half-presses
            # unless the focus mode is Manual; camera_fuji_capture sends its focus action).
            self._focus.ensure_prepared()
        self._count_release()
        presses = self._eos_presses()
        if presses is not None:
            self._remote_release(presses)
            if self._read_text("mirrorlock") not in ("", "0"):
                # Mirror lock-up: outside live view this press only raised the mirror
                # (every frame waited out the 40 s, then was shot again). No file in the
                # exposure and a settle after it: press again, the mirror now up.
                wait_s = _exposure_s(self._read_text("shutterspeed")) + MIRROR_SETTLE_S
                first = self._file_within(wait_s)
                if first is not None:
                    return first  # in live view the mirror was up: that press exposed
                self._remote_release(presses)
            return self._wait_for_file(
                RELEASE_FILE_TIMEOUT_S,
                longer=lambda: release_timeout_s(self._read_text("shutterspeed")),
            )
        first = self._call("capture", lambda c: c.capture(gp.GP_CAPTURE_IMAGE))
        if self._took_late_file(str(first.folder), str(first.name)):
            # libgphoto2 gave the first file announced after the release: an earlier shot's
            # late one. This shot's own comes as an event of its own.
            return self._wait_for_file(RELEASE_FILE_TIMEOUT_S)
        return str(first.folder), str(first.name)

    def trigger(self) -> None:
        """Release the shutter without waiting for its file, which comes as an event.

        A Canon is released through ``eosremoterelease`` with AF off, as :meth:`_release`
        does: libgphoto2's trigger on an EOS (``camera_trigger_canon_eos_capture``) focuses
        first and frees every event it has fetched but not yet returned, so the previous
        frame's file was lost whenever the body was slower than the trigger interval."""
        with self._lock:
            self._count_release()
            presses = self._eos_presses()
            if presses is not None:
                self._remote_release(presses)
            else:
                self._call("trigger", lambda c: c.trigger_capture())

    def _count_release(self) -> None:
        """Count a release about to be made, and note where a lens that tells its position
        stands before it (:attr:`focus_at_release`)."""
        self.releases += 1
        self.focus_at_release = None
        if self._focus is not None and self._focus.absolute:
            # Unread, a move since is taken as made at the release.
            with contextlib.suppress(CameraError):
                self.focus_at_release = self._focus.position()

    def _eos_presses(self) -> tuple[int, int] | None:
        """A Canon's ``eosremoterelease`` choice indices of a full press without AF and of its
        release (:data:`_EOS_RELEASE_CHOICES`); ``None`` on other bodies, or a list of an
        unknown layout, which is said: libgphoto2's own release then focuses first. Read once
        (the list is libgphoto2's, the same for the whole session), not at every frame."""
        if not self._eos_layout_read:
            self._eos_layout_read = True
            widget = self._fresh_widget("eosremoterelease") if self.vendor == "canon" else None
            count = 0 if widget is None else widget.count_choices()
            self._eos_layout = _EOS_RELEASE_CHOICES.get(count)
            if widget is not None and self._eos_layout is None:
                log.warning(
                    "%s: its 'eosremoterelease' has %d choices, a layout this version of "
                    "stackrig does not know; it is released through libgphoto2's capture, "
                    "which focuses first: set the lens to MF for a rail stack",
                    self.description,
                    count,
                )
        return self._eos_layout

    def _remote_release(self, presses: tuple[int, int]) -> None:
        """One full press without AF and its release (``eosremoterelease``), at the choice
        indices ``presses``."""
        press, release = presses
        try:
            self._press(self._fresh_widget("eosremoterelease"), press)
        finally:
            self._press(self._fresh_widget("eosremoterelease"), release)

    def _press(self, widget: Any, index: int) -> None:
        widget.set_value(widget.get_choice(index))
        widget.set_changed(1)
        self._send("eosremoterelease", widget)

    def _wait_for_file(
        self, timeout_s: float, longer: Callable[[], float] | None = None
    ) -> tuple[str, str]:
        """The shot's first file, within ``timeout_s``; ``longer``, asked only once that has
        passed without one, gives the whole wait a long exposure is allowed (the shutter speed
        is read then, not at every frame of a stack)."""
        first = self._file_within(timeout_s)
        if first is None and longer is not None:
            allowed = longer()
            first = self._file_within(allowed - timeout_s)
            timeout_s = max(timeout_s, allowed)
        if first is not None:
            return first
        raise CameraError(
            f"{self.description}: released, but no file arrived within {timeout_s:g} s "
            "(is the exposure longer, or is the body set to shoot without a card?)"
        )

    def _file_within(self, timeout_s: float) -> tuple[str, str] | None:
        """The next file announced for this shot within ``timeout_s``, else ``None``."""
        gp = self._gp
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            kind, data = self._wait_event(max(1, int(min(left, 1.0) * 1000)))
            if kind == gp.GP_EVENT_FILE_ADDED and not self._took_late_file(
                str(data.folder), str(data.name)
            ):
                return str(data.folder), str(data.name)
        return None

    def _lost_with_the_link(
        self, shot: PendingShot, folder: str, name: str, exc: CameraError
    ) -> CameraError:
        """``exc``, or what it means when the link dropped since ``shot`` was released: its
        RAM capture went with the old connection (-108 File not found)."""
        lost = exc.code == GP_ERROR_FILE_NOT_FOUND and shot.link != self._link
        if not lost or not CameraFile(folder, name).in_ram:
            return exc
        return CaptureLostError(
            f"{self.description}: {shot.stem or 'the shot'}: {folder.rstrip('/')}/{name} was "
            "held in the computer's memory of the USB link that dropped, and went with it; "
            "shoot this frame again",
            exc.code,
        )

    def _finish_shot(
        self,
        shot: PendingShot,
        on_progress: ProgressCallback | None,
    ) -> list[Path]:
        """Wait for the rest of ``shot``'s files, download and write them, free the camera."""
        with self._lock:
            files = [shot.first]
            expected = shot.expected
            more = self._shot_events() if expected is None else self._expected_files(expected - 1)
            files += [f for f in more if f not in files]
            camera_names = [name for _, name in files]
            dest = shot.dest_dir
            base = free_stem(dest, shot.stem or next_auto_stem(dest), camera_names)
            names = shot_file_names(base, camera_names)
            written: list[Path] = []
            for (folder, name), local in zip(files, names, strict=True):
                try:
                    data = self._download(folder, name, local, on_progress)
                except CameraError as exc:
                    raise self._lost_with_the_link(shot, folder, name, exc) from None
                written.append(atomic_write_bytes(dest / local, data))
            self._free(files)
            if expected is not None and len(files) < expected:
                owed = CameraShot(0, [CameraFile(*f) for f in files], expected=expected)
                self._awaited.append(_OwedShot(dest, base, owed))
                log.warning(
                    "%s: %s: %d of %d files arrived within %g s; the rest is collected later",
                    self.description,
                    base,
                    len(files),
                    expected,
                    SHOT_FILES_LIMIT_S,
                )
            return written

    def _free(self, files: list[tuple[str, str]]) -> None:
        """Delete downloaded files from the camera unless the card keeps them."""
        if self._files_stay_on_card():
            return
        for folder, name in files:
            try:
                self._delete(folder, name)
            except CameraError as exc:
                log.debug("%s: %s/%s not deleted: %s", self.description, folder, name, exc)

    def _delete(self, folder: str, name: str) -> None:
        self._call(f"delete {folder}/{name}", lambda c: c.file_delete(folder, name))

    def _wait_event(self, timeout_ms: int) -> tuple[int, Any]:
        kind, data = self._call("read events", lambda c: c.wait_for_event(timeout_ms))
        return int(kind), data

    def _collect_stragglers(self, dest_dir: Path) -> None:
        """Download and free files announced since the last shot (never leave them behind).

        A file that belongs to a shot still missing files is named after that shot
        (``frame_0007.jpg`` beside ``frame_0007.cr2``); any other goes into ``dest_dir`` under
        its camera name, prefixed ``camera_``, so it is never taken for the next shot.
        """
        gp = self._gp
        for _ in range(MAX_DRAIN_EVENTS):
            kind, data = self._wait_event(10)
            if kind == gp.GP_EVENT_TIMEOUT:
                return
            if kind != gp.GP_EVENT_FILE_ADDED:
                continue
            folder, name = str(data.folder), str(data.name)
            if not self._took_late_file(folder, name):
                stem = f"camera_{PurePosixPath(name).stem}"
                what = "appeared before this shot; downloaded so nothing stays on the camera"
                self._keep_file(folder, name, dest_dir, stem, what)

    def _took_late_file(self, folder: str, name: str) -> bool:
        """Whether an announced file is one an earlier shot still owes; if so, it is written
        beside that shot's files and freed.

        Every announced file is asked here before a shot counts it as its own: a late JPEG
        taken for the next shot's gave that shot the previous plane, and its own JPEG went
        to the previous shot. Card names pair by stem (``IMG_0002.CR2``, ``IMG_0002.JPG``);
        libgphoto2's invented RAM names (``capt0007.jpg``) by the kind the oldest shot lacks.
        """
        f = CameraFile(folder, name)
        owner = late_owner((owed.shot for owed in self._awaited), f)
        if owner is None:
            return False
        owed = next(owed for owed in self._awaited if owed.shot is owner)
        owner.files.append(f)
        if owner.complete:
            self._awaited.remove(owed)
        self._keep_file(folder, name, owed.dest, owed.base, f"late file of {owed.base}")
        return True

    def _keep_file(self, folder: str, name: str, where: Path, stem: str, what: str) -> None:
        """Download one file under ``stem`` in ``where`` (never over another), free it."""
        local = where / shot_file_names(stem, [name])[0]
        if local.exists():
            local = where / shot_file_names(free_stem(where, stem, [name]), [name])[0]
        log.warning("%s: %s/%s %s -> %s", self.description, folder, name, what, local.name)
        atomic_write_bytes(local, self._download(folder, name, local.name, None))
        self._free([(folder, name)])

    def _collect_late_files(self) -> None:
        """Before closing: wait (at most ``CLOSE_LATE_FILES_S``) for files shots still owe."""
        deadline = time.monotonic() + CLOSE_LATE_FILES_S
        try:
            while self._awaited and time.monotonic() < deadline:
                self._collect_stragglers(self._awaited[0].dest)
                if self._awaited:
                    self.sleep(0.1)
        except (CameraError, OSError) as exc:
            log.warning("%s: late files not collected: %s", self.description, exc)
        for owed in self._awaited:
            log.warning(
                "%s: %d late file(s) of %s never arrived; look for them on the camera",
                self.description,
                (owed.shot.expected or 0) - len(owed.shot.files),
                owed.base,
            )
        self._awaited.clear()

    def _expected_files(self, count: int) -> list[tuple[str, str]]:
        """The next ``count`` files announced, waiting at most ``SHOT_FILES_LIMIT_S``."""
        gp = self._gp
        found: list[tuple[str, str]] = []
        deadline = time.monotonic() + SHOT_FILES_LIMIT_S
        while len(found) < count and (left := deadline - time.monotonic()) > 0:
            kind, data = self._wait_event(max(1, int(left * 1000)))
            if kind == gp.GP_EVENT_FILE_ADDED and not self._took_late_file(
                str(data.folder), str(data.name)
            ):
                found.append((str(data.folder), str(data.name)))
        return found

    def _shot_events(self) -> list[tuple[str, str]]:
        """Further files of the shot just taken, on a body that does not say how many.

        Listens until ``event_timeout_s`` passes without a new file; property-change chatter
        (Canon sends plenty) does not extend the wait, and ``SHOT_EVENTS_LIMIT_S`` caps it.
        """
        gp = self._gp
        quiet_s = self.retry.event_timeout_s
        found: list[tuple[str, str]] = []
        start = last_file = time.monotonic()
        while True:
            now = time.monotonic()
            left = min(quiet_s - (now - last_file), SHOT_EVENTS_LIMIT_S - (now - start))
            if left <= 0:
                break
            kind, data = self._wait_event(max(1, int(left * 1000)))
            if kind == gp.GP_EVENT_TIMEOUT:
                break
            if kind == gp.GP_EVENT_FILE_ADDED and not self._took_late_file(
                str(data.folder), str(data.name)
            ):
                found.append((str(data.folder), str(data.name)))
                last_file = time.monotonic()
        return found

    def _download(
        self, folder: str, name: str, local: str, on_progress: ProgressCallback | None
    ) -> bytes:
        """The file's bytes, in pieces (with progress) where the camlib can read it so.

        Pieces need the file on the body with GetPartialObject; a file in folder ``/`` (Canon
        EOS RAM captures, every Sony capture) or one Nikon already deleted from its RAM lives
        only in libgphoto2's cache, where ``file_read`` fails (GP_ERROR, -1, or -2) and
        ``file_get`` works. Any failure of a piecewise read therefore falls back to one
        whole-file download; only a lost connection gives up, leaving the file on the camera.
        """
        gp = self._gp
        size = 0
        try:
            info = self._call("read file info", lambda c: c.file_get_info(folder, name))
            if info.file.fields & gp.GP_FILE_INFO_SIZE:
                size = int(info.file.size)
        except CameraError as exc:
            log.debug("%s: no size for %s/%s: %s", self.description, folder, name, exc)
        if on_progress:
            on_progress(local, 0, size)
        data: bytes | None = None
        if size > CHUNK_BYTES and self._partial_reads is not False and folder != "/":
            try:
                data = self._read_in_chunks(folder, name, local, size, on_progress)
            except CameraDisconnectedError:
                raise
            except CameraError as exc:
                log.info(
                    "%s: reading %s/%s in pieces failed (%s); downloading it whole",
                    self.description,
                    folder,
                    name,
                    exc,
                )
        if data is None:
            cf = self._call(
                f"download {folder}/{name}",
                lambda c: c.file_get(folder, name, gp.GP_FILE_TYPE_NORMAL),
            )
            data = bytes(memoryview(cf.get_data_and_size()))
        if on_progress:
            on_progress(local, len(data), max(size, len(data)))
        return data

    def _read_in_chunks(
        self, folder: str, name: str, local: str, size: int, on_progress: ProgressCallback | None
    ) -> bytes | None:
        out = bytearray()
        buf = bytearray(CHUNK_BYTES)
        while len(out) < size:
            try:
                n = self._read_piece(folder, name, len(out), buf)
            except CameraUnsupportedError:
                self._partial_reads = False
                return None
            if n <= 0:
                break
            out += buf[:n]
            self._partial_reads = True
            if on_progress and len(out) < size:
                on_progress(local, len(out), size)
        return bytes(out) if len(out) == size else None

    def _read_piece(self, folder: str, name: str, offset: int, buf: bytearray) -> int:
        gp = self._gp
        return int(
            self._call(
                f"download {folder}/{name}",
                lambda c: c.file_read(folder, name, gp.GP_FILE_TYPE_NORMAL, offset, buf),
            )
        )

    def capture_preview(self) -> bytes:
        """One live-view frame (usually a small JPEG); live view is switched off again on close."""
        with self._lock:
            if "viewfinder" not in self._restore:
                finder = self._fresh_widget("viewfinder")
                if finder is not None:
                    self._restore["viewfinder"] = value_to_restore(item_from_widget(finder))
            try:
                cf = self._call("live-view preview", lambda c: c.capture_preview())
            except CameraUnsupportedError:
                raise CameraUnsupportedError(
                    f"{self.description} cannot give a live-view preview frame: "
                    "not supported by this camera"
                ) from None
            return bytes(memoryview(cf.get_data_and_size()))

    # ---------------------------------------------------------------------------- focus
    def configure_focus(
        self, *, size: int = 1, settle_s: float | None = None, approximate: bool = False
    ) -> None:
        """Step size (1 = finest), settle time after each lens step, and whether a body that
        only drives focus at a speed (Sony) may be used with approximate spacing."""
        self._focus_size = size
        self._focus_settle_s = settle_s
        self._focus_approximate = approximate
        self._focus = None

    def focus_strategy(self) -> FocusStrategy:
        """The lens-drive strategy for this body (chosen once; raises if there is none).
        Choosing one changes nothing on the body: it is set up for driving (manual focus, live
        view) at the first drive, or the first release once a strategy is chosen."""
        with self._lock:
            if self._focus is None:
                self._focus = choose_strategy(
                    _Controls(self),
                    size=self._focus_size,
                    settle_s=self._focus_settle_s,
                    approximate=self._focus_approximate,
                )
            return self._focus

    def focus_drive(self, steps: int) -> int:
        """Step the lens focus ``steps`` (positive: farther); return the steps made.

        Raises :class:`~rig.camera.errors.FocusEndStopError` at the end of the lens's travel
        and :class:`~rig.camera.errors.CameraUnsupportedError` (pointing at focus rails) when
        the body cannot drive focus over USB.
        """
        with self._lock:
            strategy = self.focus_strategy()
            strategy.ensure_prepared()
            return strategy.drive(int(steps))


class _Controls:
    """The :class:`~rig.camera.focus.FocusControls` view of a :class:`Camera`."""

    def __init__(self, camera: Camera) -> None:
        self._camera = camera

    @property
    def description(self) -> str:
        return self._camera.description

    @property
    def manufacturer(self) -> str:
        return self._camera.manufacturer

    def widget(self, key: str) -> Any | None:
        return self._camera._fresh_widget(key)

    def send(self, key: str, widget: Any, *, retry_busy: bool = True) -> None:
        self._camera._send(key, widget, retry_busy=retry_busy)

    def ensure(self, key: str, value: str | int | float) -> None:
        self._camera.set_config(key, value, restore=True)

    def sleep(self, seconds: float) -> None:
        self._camera.sleep(seconds)


def release_timeout_s(shutter: str) -> float:
    """How long a Canon released without AF may take to announce its file, at this
    ``shutterspeed``: the exposure, as long again for the dark frame of long-exposure noise
    reduction, and :data:`RELEASE_FILE_TIMEOUT_S` for writing it. At 30 s that is 100 s, past
    libgphoto2's own 90 s for an EOS capture (``EOS_CAPTURE_TIMEOUT`` in ``library.c``: "the
    max shutterspeed is 30 seconds, there is also postprocessing of 30 seconds")."""
    return RELEASE_FILE_TIMEOUT_S + 2 * _exposure_s(shutter)


def _exposure_s(shutter: str) -> float:
    """A ``shutterspeed`` value (``1/125``, ``0.5``, ``30``) in seconds; 1 s when it says none
    (``bulb``, ``auto``, unreadable)."""
    text = shutter.strip().rstrip("s")
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            value = float(top) / float(bottom)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        return 1.0
    return value if math.isfinite(value) and 0 < value <= 3600 else 1.0


@dataclass
class _OwedShot:
    """A shot downloaded with files still to come: where they go, and what it has."""

    dest: Path
    base: str
    shot: CameraShot


@dataclass(eq=False)
class PendingShot:
    """A shot whose exposure is over and whose files are still on the camera.

    :meth:`download` fetches them (once), holding the camera for that time; a rail may move
    meanwhile, a lens drive through the same camera waits for the download.
    """

    camera: Camera
    dest_dir: Path
    """Where the files go (atomically, under ``stem``)."""
    stem: str | None
    """The files' name without extension; ``None``: the next free ``frame_NNNN`` there."""
    first: tuple[str, str]
    """Folder and name on the camera of the file the capture announced."""
    expected: int | None
    """Files the shot makes (RAW+JPEG: 2); ``None``: those the camera announces until quiet."""
    link: int = 0
    """Which connection to the body released it (:attr:`Camera._link` then)."""
    _paths: list[Path] | None = field(default=None, init=False, repr=False)

    def download(self, on_progress: ProgressCallback | None = None) -> list[Path]:
        """Wait for the shot's other files, download all of them; the paths written."""
        if self._paths is None:
            self._paths = self.camera._finish_shot(self, on_progress)
        return list(self._paths)
