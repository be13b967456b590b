"""Bodies that bracket by themselves: a burst of frames announced as each camera family does.

In-camera focus bracketing (and a photographer holding the shutter) makes a burst of files that
libgphoto2 reports through ``gp_camera_wait_for_event`` — in a different way for each family, as
``camera_wait_for_event`` in libgphoto2's ``camlibs/ptp2/library.c`` (2.5.3x) shows:

* **Nikon** (GetEvent branch): a release on the body writes to the card and each file comes as
  PTP ObjectAdded under its camera name (``add_object_to_fs_and_path``); while the body writes a
  frame it answers other operations with PTP Device Busy (0x2019, libgphoto2 -110) — users see
  a D780 refuse work while a frame is being handled (gphoto/libgphoto2#1212).
* **Canon EOS** (``ptp_check_eos_events`` branch): with libgphoto2's default capture target (RAM)
  each file is an ObjectTransfer, which libgphoto2 downloads *inside* ``wait_for_event`` and
  names ``/capt%04d.cr3`` or ``.jpg`` with a counter bumped per file, so the RAW and JPEG of one
  shot have different numbers; PropertyChanged and CameraStatus chatter comes in between
  (GP_EVENT_UNKNOWN).
* **Sony** (SDIO branch): no usable ObjectAdded (libgphoto2 ignores ``PTP_EC_Sony_ObjectAdded``:
  "retrieving the image will crash the camera"); each call reads the ObjectInMemory property
  and, while it says files wait (above 0x8000), downloads *one* from handle 0xffffc001 inside
  the call, named ``/capt_<camera name>``, and synthesises CaptureComplete after the last one.
* **Fujifilm** (CurrentState branch): "the camera (currently) does not send us ObjectAdded
  events", so libgphoto2 lists the card's handles at every call and reports the first one not
  yet seen; a handle whose GetObjectInfo answers Device Busy (a file still being written) is
  skipped until a later call (the "just deleted entry" case of gphoto/gphoto2#456).
* **OM System / Olympus** (OM-D branch) and **Panasonic** (``handleregular``:
  ``PTP_EC_PANASONIC_ObjectAdded`` mapped to ObjectAdded): each file comes as an ObjectAdded
  under its card name.

:class:`BracketingBody` plays one such body over the real libgphoto2 handle of the virtual
camera (python-gphoto2's ``Camera``), or over the vendor quirk layer
(:mod:`rig.sim.camera_quirks`) for a body whose settings answer as the vendor's do: everything
it does not own goes to the layer below. Its frames'
bytes come from a ``frame_source`` (a rendered scene, test images) rather than the virtual
body, whose store fills after 26 captures while a bracket runs to 300; a RAW file holds the
same bytes as its JPEG under the RAW name (never decoded: stacking reads the JPEG). Transfer
time over the link is simulated with sleeps where libgphoto2 transfers (inside the event wait
for RAM files, at download for card files). ``hold_events`` keeps every announcement until the
burst ends, for bodies reported to do so; no libgphoto2 source pins down which do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from rig.camera.config import WIDGET_RADIO, WIDGET_TEXT
from rig.sim.camera_quirks import EOS_PRESSES, EOS_RELEASE_2_5_34, SimWidget
from rig.sim.handle import HandleLayer

GP_ERROR_CAMERA_BUSY = -110
GP_EVENT_UNKNOWN = 0
GP_EVENT_TIMEOUT = 1
GP_EVENT_FILE_ADDED = 2
GP_EVENT_CAPTURE_COMPLETE = 4

USB3_BYTES_PER_S = 120e6
"""Sustained PTP transfer over USB 3 (Nikon Z, Canon R, Sony, Fujifilm X and GFX bodies)."""

Naming = Literal["card", "capt-per-file", "capt-camera-name"]
Announce = Literal["event", "transfer-in-wait", "one-per-call", "listing"]


@dataclass(frozen=True)
class FamilyProfile:
    """How one family's bracketing burst reaches libgphoto2's ``wait_for_event``."""

    family: str
    model: str
    folder: str
    names: tuple[str, str]
    """(RAW, JPEG) camera names with one ``%d`` for the shot number."""
    naming: Naming
    announce: Announce
    busy_while_writing: bool = False
    chatter: bool = False
    source: str = ""


FAMILIES: dict[str, FamilyProfile] = {
    p.family: p
    for p in (
        FamilyProfile(
            "nikon",
            "Nikon Z 7II",
            "/store_00010001/DCIM/100NZ7_2",
            ("DSC_%04d.NEF", "DSC_%04d.JPG"),
            "card",
            "event",
            busy_while_writing=True,
            source="camera_wait_for_event: Nikon GetEvent, PTP_EC_ObjectAdded",
        ),
        FamilyProfile(
            "canon",
            "Canon EOS R5",
            "/",
            ("capt%04d.cr3", "capt%04d.jpg"),
            "capt-per-file",
            "transfer-in-wait",
            chatter=True,
            source="camera_wait_for_event: EOS PTP_EOSEvent_ObjectTransfer",
        ),
        FamilyProfile(
            "sony",
            "Sony Alpha 7R V",
            "/",
            ("DSC%05d.ARW", "DSC%05d.JPG"),
            "capt-camera-name",
            "one-per-call",
            source="camera_wait_for_event: Sony SDIO, PTP_DPC_SONY_ObjectInMemory",
        ),
        FamilyProfile(
            "fuji",
            "Fujifilm X-T5",
            "/store_10000001/DCIM/100_FUJI",
            ("DSCF%04d.RAF", "DSCF%04d.JPG"),
            "card",
            "listing",
            source="camera_wait_for_event: Fuji CurrentState, handles listed per call",
        ),
        FamilyProfile(
            "olympus",
            "OM System OM-1",
            "/store_00010001/DCIM/100OMSYS",
            ("P%07d.ORF", "P%07d.JPG"),
            "card",
            "event",
            source="camera_wait_for_event: OM-D, PTP_EC_Olympus_ObjectAdded",
        ),
        FamilyProfile(
            "panasonic",
            "Panasonic DC-S5M2",
            "/store_00010001/DCIM/100_PANA",
            ("P%07d.RW2", "P%07d.JPG"),
            "card",
            "event",
            source="handleregular: PTP_EC_PANASONIC_ObjectAdded -> PTP_EC_ObjectAdded",
        ),
    )
}


@dataclass
class _File:
    folder: str
    name: str
    data: bytes
    ready_at: float
    """When the body has written it (announced, listable, no longer busy)."""
    announced: bool = False


@dataclass
class _Path:
    """The ``CameraFilePath`` libgphoto2 hands out with an event."""

    folder: str
    name: str


@dataclass
class BurstLog:
    """What the simulated body did, for tests to compare with what was downloaded."""

    shots: int = 0
    files: list[str] = field(default_factory=list)
    busy_answers: int = 0
    transfers_s: float = 0.0
    discarded: list[str] = field(default_factory=list)
    """Files lost to a Canon trigger's discard of the events not yet returned."""


class BracketingBody:
    """A body of ``family`` that shoots bursts by itself; :meth:`wrap` layers it on libgphoto2.

    Parameters
    ----------
    family
        ``nikon``, ``canon``, ``sony``, ``fuji``, ``olympus`` or ``panasonic``.
    frame_source
        ``frame_source(n)`` gives the JPEG bytes of the burst's n-th frame (1-based).
    frames
        Frames per burst (the body's focus-bracketing count).
    fps
        Frames per second the body shoots (Nikon Z focus shift: up to about 10 at reduced size).
    raw_plus_jpeg
        Each frame makes a RAW file and a JPEG.
    nominal_file_bytes
        Size the transfer time is computed from (0: the frame's real size).
    link_bytes_per_s
        Transfer rate over USB (0: instant).
    hold_events
        Announce nothing until the burst is over.
    """

    def __init__(
        self,
        family: str,
        frame_source: Callable[[int], bytes],
        *,
        frames: int = 10,
        fps: float = 10.0,
        raw_plus_jpeg: bool = False,
        nominal_file_bytes: int = 0,
        link_bytes_per_s: float = USB3_BYTES_PER_S,
        write_s: float = 0.02,
        hold_events: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family {family!r}: use one of {', '.join(FAMILIES)}")
        self.profile = FAMILIES[family]
        self.frame_source = frame_source
        self.frames = frames
        self.fps = fps
        self.raw_plus_jpeg = raw_plus_jpeg
        self.nominal_file_bytes = nominal_file_bytes
        self.link_bytes_per_s = link_bytes_per_s
        self.write_s = write_s
        self.hold_events = hold_events
        self.sleep = sleep
        self.log = BurstLog()
        self.lock = threading.Lock()
        self.files: list[_File] = []
        self.extra_events: list[tuple[float, int, Any]] = []
        self._capcnt = 0
        self._shot_number = 0
        self._burst_end = 0.0
        self._bursts: list[threading.Thread] = []
        self._halted = threading.Event()

    def wrap(self, real: Any) -> BurstHandle:
        """The handle :class:`rig.camera.Camera` talks to instead of ``real``."""
        return BurstHandle(real, self)

    # ------------------------------------------------------------------ the burst
    def press(self) -> threading.Thread:
        """Press the shutter: the body shoots one burst on its own thread (returned)."""
        thread = threading.Thread(target=self._burst, name="bracketing-body", daemon=True)
        self._bursts.append(thread)
        thread.start()
        return thread

    def wait(self, timeout_s: float = 60.0) -> None:
        """Wait until every burst pressed so far has been shot."""
        for thread in self._bursts:
            thread.join(timeout_s)

    def halt(self, timeout_s: float = 10.0) -> None:
        """Switch the body off: a burst ends before its next frame, and this returns once it
        has (so that no frame is being rendered, in OpenCV, while the process exits)."""
        self._halted.set()
        self.wait(timeout_s)

    @property
    def shooting(self) -> bool:
        return time.monotonic() < self._burst_end or any(t.is_alive() for t in self._bursts)

    def _burst(self) -> None:
        start = time.monotonic()
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        with self.lock:
            self._burst_end = start + period * self.frames + self.write_s
        for n in range(1, self.frames + 1):
            due = start + (n - 1) * period
            now = time.monotonic()
            if due > now:
                self.sleep(due - now)
            if self._halted.is_set():
                return
            jpeg = self.frame_source(n)
            self._expose(jpeg, time.monotonic())
        if self.hold_events:
            with self.lock:
                end = time.monotonic()
                for f in self.files:
                    f.ready_at = max(f.ready_at, end)

    def _expose(self, jpeg: bytes, at: float) -> None:
        p = self.profile
        with self.lock:
            self._shot_number += 1
            self.log.shots += 1
            kinds = (0, 1) if self.raw_plus_jpeg else (1,)
            for kind in kinds:
                name = self._name(kind)
                self.files.append(_File(p.folder, name, jpeg, at + self.write_s))
                self.log.files.append(name)
                if p.chatter:  # EOS PropertyChanged / CameraStatus between the transfers
                    self.extra_events.append((at, GP_EVENT_UNKNOWN, "Camera Status 1"))

    def record_clip(self, data: bytes = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") -> str:
        """The photographer records a video clip: the body writes it to its card under the
        next number and announces it as it does a still (a file no stack can use)."""
        p = self.profile
        if p.naming != "card":
            raise ValueError(f"{p.family}: clips go to the card, and this body shoots to RAM")
        with self.lock:
            self._shot_number += 1
            name = str(PurePosixPath(p.names[1] % self._shot_number).with_suffix(".MOV"))
            self.files.append(_File(p.folder, name, data, time.monotonic() + self.write_s))
            self.log.files.append(name)
        return name

    def _name(self, kind: int) -> str:
        p = self.profile
        pattern = p.names[kind]
        if p.naming == "capt-per-file":
            self._capcnt += 1  # sprintf(path->name, "capt%04d.", params->capcnt++)
            return pattern % (self._capcnt - 1)
        name = pattern % self._shot_number
        return f"capt_{name}" if p.naming == "capt-camera-name" else name

    def transfer(self, data: bytes) -> None:
        size = max(len(data), self.nominal_file_bytes)
        if self.link_bytes_per_s > 0:
            seconds = size / self.link_bytes_per_s
            self.log.transfers_s += seconds
            self.sleep(seconds)

    def busy(self, now: float) -> bool:
        """Whether a Nikon-like body is writing a frame now (operations answer busy)."""
        if not self.profile.busy_while_writing:
            return False
        with self.lock:
            return any(f.ready_at - self.write_s <= now < f.ready_at for f in self.files)


class BurstHandle(HandleLayer):
    """python-gphoto2's ``Camera`` methods, answering for the burst's files as the family does."""

    def __init__(self, real: Any, body: BracketingBody) -> None:
        super().__init__(real)
        self._body = body

    def _busy(self) -> Exception:
        self._body.log.busy_answers += 1
        return self._error(GP_ERROR_CAMERA_BUSY)

    def trigger_capture(self) -> None:
        """A release from the computer starts the body's bracket, like its shutter button.

        On a Canon EOS, ``camera_trigger_canon_eos_capture`` first fetches the body's events and
        then frees every one not yet returned ("Discard all collected events before starting
        the next capture", ``library.c``): a file already announced by the body but not yet
        taken through ``wait_for_event`` is lost."""
        body = self._body
        if body.busy(time.monotonic()):
            raise self._busy()
        if body.profile.family == "canon":
            now = time.monotonic()
            with body.lock:
                for f in [f for f in body.files if not f.announced and f.ready_at <= now]:
                    body.files.remove(f)
                    body.log.discarded.append(f.name)
        body.press()

    def get_single_config(self, key: str) -> Any:
        profile = self._body.profile
        if key in ("manufacturer", "cameramodel"):  # the body says which family it is
            maker, _, _ = profile.model.partition(" ")
            value = profile.model if key == "cameramodel" else maker
            return SimWidget(key, WIDGET_TEXT, value, readonly=True)
        if key == "eosremoterelease" and profile.family == "canon":
            return SimWidget(key, WIDGET_RADIO, "None", choices=EOS_RELEASE_2_5_34)
        return self._real.get_single_config(key)

    def set_single_config(self, key: str, widget: Any) -> None:
        if key == "eosremoterelease" and self._body.profile.family == "canon":
            # _put_Canon_EOS_RemoteRelease: a press (remotereleaseon) releases; events stay.
            press, _ = EOS_PRESSES.get(str(widget.get_value()), (0, True))
            if press >= 2:
                if self._body.busy(time.monotonic()):
                    raise self._busy()
                self._body.press()
            return
        self._real.set_single_config(key, widget)

    # ----------------------------------------------------------------------------- events
    def wait_for_event(self, timeout_ms: int) -> tuple[int, Any]:
        body = self._body
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            now = time.monotonic()
            event = self._next_event(now)
            if event is not None:
                return event
            upcoming = self._next_ready()
            if upcoming is None or upcoming >= deadline:
                left = max(0, int((deadline - now) * 1000))
                if upcoming is None and body.shooting:
                    left = min(left, 20)  # the burst may add a file any moment
                kind, data = self._real.wait_for_event(left)
                if int(kind) != GP_EVENT_TIMEOUT or time.monotonic() >= deadline:
                    return int(kind), data
                continue
            body.sleep(max(0.0, upcoming - now))

    def _next_ready(self) -> float | None:
        with self._body.lock:
            times = [f.ready_at for f in self._body.files if not f.announced]
            times += [t for t, _, _ in self._body.extra_events]
        return min(times) if times else None

    def _next_event(self, now: float) -> tuple[int, Any] | None:
        body = self._body
        with body.lock:
            for i, (t, kind, data) in enumerate(body.extra_events):
                if t <= now:
                    body.extra_events.pop(i)
                    return kind, data
            due = [f for f in body.files if not f.announced and f.ready_at <= now]
            if not due:
                return None
            f = due[0]
            f.announced = True
            last = len(due) == 1 and not body.shooting
        announce = body.profile.announce
        if announce in ("transfer-in-wait", "one-per-call"):
            body.transfer(f.data)  # libgphoto2 fetches RAM files inside wait_for_event
        if announce == "one-per-call" and last:
            # ObjectInMemory read 0x8001: libgphoto2 queues a CaptureComplete after the file.
            with body.lock:
                body.extra_events.append((now, GP_EVENT_CAPTURE_COMPLETE, None))
        return GP_EVENT_FILE_ADDED, _Path(f.folder, f.name)

    # ------------------------------------------------------------------------------ files
    def _file(self, folder: str, name: str) -> _File | None:
        with self._body.lock:
            for f in self._body.files:
                if f.folder == folder and f.name == name:
                    return f
        return None

    def _held(self, folder: str, name: str) -> bytes | None:
        f = self._file(folder, name)
        if f is None:
            return None
        if self._body.busy(time.monotonic()):
            raise self._busy()
        return f.data

    def _download(self, folder: str, name: str) -> bytes | None:
        data = self._held(folder, name)
        if data is not None and self._body.profile.announce in ("event", "listing"):
            self._body.transfer(data)  # card files travel at download
        return data

    def file_read(self, folder: str, name: str, kind: int, offset: int, buf: Any) -> int:
        f = self._file(folder, name)
        if f is None:
            return int(self._real.file_read(folder, name, kind, offset, buf))
        raise self._error(-6)  # whole-file downloads only (-6: not supported)

    def file_delete(self, folder: str, name: str) -> None:
        f = self._file(folder, name)
        if f is None:
            self._real.file_delete(folder, name)
            return
        with self._body.lock:
            self._body.files.remove(f)
