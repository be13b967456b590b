"""Vendor quirk layer: libgphoto2's virtual camera answering as a Canon EOS, Nikon, Sony or Fuji
body.

libgphoto2's virtual camera (:mod:`rig.sim.vcamera`) is a generic PTP body: it serves whole files
from its card, reports every capture in a ``/store_…`` folder, cannot read a file in pieces and
has no lens, no live view and no vendor settings. Real bodies differ in ways that break capture
sessions, and the virtual body cannot be turned into them. :class:`CameraQuirks` is a thin layer
over the real libgphoto2 handle (python-gphoto2's ``Camera``) that keeps the real parts real —
every shot is still taken and its bytes downloaded through libgphoto2's ptp2 driver and vusb I/O —
and answers the calls around them as libgphoto2's ptp2 camlib does for each vendor. Each quirk
names the libgphoto2 function it follows (``camlibs/ptp2/library.c`` and ``config.c``, and
``libgphoto2/gphoto2-filesys.c``, as of libgphoto2 2.5.3x):

* **Where a capture lands** (``capturetarget``, ``_put_CaptureTarget``/``_put_Sony_CaptureTarget``
  in config.c). RAM captures are downloaded by the camlib *inside* the capture call and kept in
  libgphoto2's file cache (``add_objectid_and_upload``, ``camera_canon_eos_capture``'s SDRAM
  branch, ``camera_sony_capture``), so their transfer time is spent in ``capture``; card captures
  are announced once written and transferred by ``file_get``/``file_read``.
* **Folder "/"**: Canon EOS RAM captures and *every* Sony capture are reported as ``/capt0000.*``
  (``camera_canon_eos_capture``, ``camera_sony_capture``, ``camera_wait_for_event``'s
  ObjectTransfer branch). ``file_get`` answers them from the cache, but ``file_read`` goes
  straight to ``read_file_func`` (``gp_filesystem_read_file`` bypasses the cache), whose
  ``find_storage_and_handle_from_path`` fails on ``/`` with GP_ERROR (-1).
* **Nikon deletes a RAM object once downloaded** (``camera_nikon_capture``: ``ptp_deleteobject``
  after ``add_objectid_and_upload``): the file is reported as ``/store_…/capt0000.*`` and is only
  in the cache; a piecewise read cannot find it (``find_child`` → GP_ERROR_BAD_PARAMETERS, -2).
  ``delete_file_func`` answers OK for any ``capt*`` name without touching the camera.
* **Piecewise reads** of card files work where the body has GetPartialObject (Canon, Nikon:
  ``read_file_func``), not on Sony's ``/`` files.
* **RAW+JPEG**: the capture returns the first file; the second is announced by a later event
  (``camera_canon_eos_capture``: "for RAW+JPG mode capture, we just return the first image for
  now, and let wait_for_event get the rest"; Nikon queues it in ``camera_nikon_capture``). Its
  delay here (``second_file_delay_s``) is longer than a short quiet window, as on busy bodies.
* **Canon AF on release**: ``gp_camera_capture`` half-presses with AF first
  (``camera_trigger_canon_eos_capture``: ``ptp_canon_eos_remotereleaseon(params, 1, 0)``); with
  the lens switch at AF — required to drive the lens — the lens refocuses, or AF fails and the
  capture returns GP_ERROR (-1, "Canon EOS Auto-Focus failed"). ``eosremoterelease`` ("Press Full
  MF" → "Release", ``_put_Canon_EOS_RemoteRelease``) releases without AF; the file then arrives as
  an event.
* **Nikon MF drive** (``_put_Nikon_MFDrive``): GP_ERROR_CAMERA_ERROR (-113) both at the end of
  the lens's travel (MfDriveStepEnd) and for a step below the lens's smallest
  (MfDriveStepInsufficiency); GP_ERROR (-1) when live view is not running (NotLiveView). After a
  capture in live view ``camera_nikon_capture`` restarts live view (``ptp_nikon_start_liveview``)
  without waiting, so a drive right after a shot fails with -1 until live view is up again
  (``live_view_restart_s``). The drive takes time (``lens_units_per_s``): libgphoto2 waits
  for the body about a second after sending it (``nikon_wait_busy(params, 20, 1000)``) and
  then answers GP_ERROR_CAMERA_BUSY (-110) though the drive was taken and the lens runs on; a
  drive sent, or a setting read that asks the body, while the lens still runs is answered -110
  (DeviceBusy) and not taken. Reading ``manualfocusdrive`` asks the body nothing
  (``_get_Nikon_MFDrive``), so it never tells that the lens still runs.
* **Sony manualfocus is a speed** (``_put_Sony_ManualFocus``: -7..7 sent as ManualFocusAdjust);
  how far the lens moves per call grows non-linearly with it and there is no end-stop signal.
* **Sony AF on release**: ``camera_sony_capture`` half-presses (ShutterHalfRelease) before the
  full press, and unless ``focusmode`` reads Manual (PTP FocusMode 1) holds it for the body to
  focus: the lens refocuses, and when AF cannot lock no file comes and the capture returns
  GP_ERROR (-1, "no object found during event polling. perhaps no focus..."). ``focusmode``
  starts in an AF mode (``Automatic``, Sony's AF-S), as a body out of the box does; its choices
  are ``_get_FocusMode``'s labels for Sony's values.
* **Sony sends the computer what "RAW+J PC Save Image" says** (``pcsaveimgformat``,
  PTP_DPC_SONY_PcSaveImageFormat, ``sony_pc_save_image_format`` in config.c; the body's own
  "RAW+J PC Save Img" menu): with the image quality at RAW+JPEG (``sony_300_compression``), only
  the JPEG or only the RAW reaches the computer when it reads ``JPEG Only`` or ``RAW Only``,
  and ``camera_wait_for_event`` never announces the other. It starts at ``RAW & JPEG``.
* **Fuji AF on release** (``camera_fuji_capture``): every capture first sends the focus action
  (0xd208 = 0x0200) and polls AFStatus; AF that cannot lock ends the capture with GP_ERROR (-1,
  "Fuji Capture failed: Perhaps no auto-focus?"). In Manual focus mode the body does not move
  the lens for it. The lens position is ``manualfocusdrive`` (PTP_DPC_FUJI_FocusPosition through
  ``_get_INT``/``_put_INT``: a text widget holding the number). Fuji has no ``capturetarget``:
  captures land on the card (``find_object_path``).
* **Vibration settings**: Canon ``mirrorlock`` (EOS MirrorUpSetting), Nikon ``exposuredelaymode``
  (ExposureDelayMode), Sony ``shuttertype`` (Auto/Mechanical/Electronic), as config.c's
  tables name them. With mirror lock-up on and live view off, a Canon's first remote press
  only raises the mirror and the next one exposes (libgphoto2 issue #287: "mirror got flipped
  up", then the second ``eosremoterelease`` takes the picture); in live view the mirror is
  already up and every press exposes.

What the layer does not do: anything on the USB wire (timing is simulated with sleeps: a file's
transfer time is ``nominal_file_bytes / usb_bytes_per_s``, charged where the camlib transfers);
widgets it owns appear in single-key reads and writes (``get_single_config``), not in the whole
configuration tree. A test double, therefore, but one that only ever answers as the cited
libgphoto2 code answers.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rig.camera.config import WIDGET_RADIO, WIDGET_RANGE, WIDGET_TEXT, WIDGET_TOGGLE
from rig.sim.handle import HandleLayer

GP_OK = 0
GP_ERROR = -1
GP_ERROR_BAD_PARAMETERS = -2
GP_ERROR_NOT_SUPPORTED = -6
GP_ERROR_CAMERA_BUSY = -110
GP_ERROR_CAMERA_ERROR = -113
NIKON_DRIVE_WAIT_S = 51 * 0.020
"""How long ``_put_Nikon_MFDrive`` waits for the body after a drive (``nikon_wait_busy``)."""
GP_EVENT_TIMEOUT = 1
GP_EVENT_FILE_ADDED = 2
NO_IO_WIDGETS = frozenset({"manualfocusdrive", "autofocus"})
"""Nikon widgets whose read asks the body nothing, so never answers busy while the lens runs:
``gp_camera_get_single_config`` -> ``_get_config`` (config.c) calls the getter of a function
widget (``propid`` 0) directly, ptp2 has no ``pre_func``, and ``_get_Nikon_MFDrive`` only builds
a -32767..32767 range widget; ``autofocus`` is libgphoto2's own setting (``gp_setting_get``)."""

USB2_BYTES_PER_S = 25e6
"""Sustained PTP transfer rate over USB 2 (about 25 MB/s): a 50 MB RAW takes about 2 s."""


class SimWidget:
    """A configuration widget with python-gphoto2's ``CameraWidget`` methods the rig calls."""

    def __init__(
        self,
        name: str,
        kind: int,
        value: Any,
        choices: tuple[str, ...] = (),
        rng: tuple[float, float, float] | None = None,
        readonly: bool = False,
        *,
        label: str = "",
    ) -> None:
        self.name, self.kind, self.value = name, kind, value
        self.choices, self.rng, self.readonly = choices, rng, readonly
        self.label = label or name
        self.changed = False

    def get_name(self) -> str:
        return self.name

    def get_label(self) -> str:
        return self.label

    def get_type(self) -> int:
        return self.kind

    def get_value(self) -> Any:
        return self.value

    def set_value(self, value: Any) -> None:
        if value != self.value:  # gp_widget_set_value marks a widget changed only on a new value
            self.changed = True
        self.value = value

    def set_changed(self, flag: int) -> None:
        self.changed = bool(flag)

    def get_changed(self) -> int:
        return int(self.changed)

    def count_choices(self) -> int:
        return len(self.choices)

    def get_choice(self, i: int) -> str:
        return self.choices[i]

    def get_range(self) -> tuple[float, float, float]:
        assert self.rng is not None
        return self.rng

    def get_readonly(self) -> int:
        return int(self.readonly)


@dataclass(frozen=True)
class QuirkProfile:
    """How one vendor's bodies answer through libgphoto2's ptp2 camlib."""

    vendor: str
    """The key in :data:`PROFILES` (``canon``, ``nikon``, ``sony``, ``fuji``)."""
    manufacturer: str
    """What the read-only ``manufacturer`` widget says."""
    model: str
    """What the read-only ``cameramodel`` widget says."""
    card_folder: str
    """Where card captures are filed (storage id and DCIM folder)."""
    card_names: tuple[str, str]
    """(RAW, JPEG) name patterns on the card, with one ``%d`` for the shot counter."""
    ram_folder: str
    """The folder a RAM capture is reported in (``/`` where the camlib says so)."""
    ram_names: tuple[str, str]
    """(RAW, JPEG) name patterns of RAM captures (``capt%04d.*``), as for the card."""
    target_choices: tuple[str, ...]
    """The ``capturetarget`` choices in libgphoto2's order; RAM first; empty: no such setting,
    captures go to the card."""
    format_key: str
    """The image-format widget's name (``imageformat``, ``imagequality``)."""
    formats: tuple[str, ...]
    """Image-format choices: RAW+JPEG first, then JPEG only, then RAW only."""
    always_root: bool = False
    """Sony: every capture is reported in ``/`` (``camera_sony_capture``)."""
    partial_reads: bool = True
    """The body has GetPartialObject, so card files can be read in pieces (not Sony's)."""
    lens: str = "none"
    """``canon-radio``, ``panasonic-radio``, ``nikon-range``, ``sony-speed``,
    ``fuji-position`` or ``none``."""
    viewfinder_unknown: bool = False
    """The ``viewfinder`` toggle always reads 2, whatever live view does
    (``_get_Panasonic_ViewFinder``: "always changed, unless we can find out the state")."""
    vibration_key: str = ""
    """The vibration setting's widget name; empty for none."""
    vibration_widget: tuple[int, str, tuple[str, ...]] = (WIDGET_TEXT, "0", ())
    """(widget type, initial value, choices) of the vibration setting."""
    focus_modes: tuple[str, ...] = ()
    """``focusmode`` choices, the first in use; empty for no such widget."""
    af_on_release: bool = False
    """The camlib's capture autofocuses first (Canon EOS always; others unless ``focusmode``
    is Manual)."""
    pc_save_formats: tuple[str, ...] = ()
    """Sony ``pcsaveimgformat`` choices, the first in use; empty for no such widget."""


CANON = QuirkProfile(
    vendor="canon",
    manufacturer="Canon Inc.",
    model="Canon EOS 80D",
    card_folder="/store_00020001/DCIM/100CANON",
    card_names=("IMG_%04d.CR2", "IMG_%04d.JPG"),
    ram_folder="/",
    ram_names=("capt%04d.cr2", "capt%04d.jpg"),
    target_choices=("Internal RAM", "Memory card"),
    format_key="imageformat",
    # libgphoto2 2.5.32 and later (the wheels bundle 2.5.34) name each half by its size alone:
    # ``canon_eos_single_ImageFormats`` in ``config.c``; before, "RAW + Large Fine JPEG".
    formats=("RAW + L", "L", "RAW"),
    lens="canon-radio",
    vibration_key="mirrorlock",
    vibration_widget=(WIDGET_TEXT, "0", ()),  # _get_INT on EOS MirrorUpSetting
    af_on_release=True,  # camera_trigger_canon_eos_capture
)
NIKON = QuirkProfile(
    vendor="nikon",
    manufacturer="Nikon Corporation",
    model="Nikon D850",
    card_folder="/store_00010001/DCIM/100ND850",
    card_names=("DSC_%04d.NEF", "DSC_%04d.JPG"),
    ram_folder="/store_00010001",
    ram_names=("capt%04d.nef", "capt%04d.jpg"),
    target_choices=("Internal RAM", "Memory card"),
    format_key="imagequality",
    formats=("NEF+Fine", "JPEG Fine", "NEF (Raw)"),
    lens="nikon-range",
    vibration_key="exposuredelaymode",
    vibration_widget=(WIDGET_RADIO, "Off", ("On", "Off")),  # _get_Nikon_OnOff_UINT8
)
SONY = QuirkProfile(
    vendor="sony",
    manufacturer="Sony Corporation",
    model="Sony Alpha-A7r V",
    card_folder="/store_00010001/DCIM/100MSDCF",
    card_names=("DSC%05d.ARW", "DSC%05d.JPG"),
    ram_folder="/",
    ram_names=("capt_DSC%05d.ARW", "capt_DSC%05d.JPG"),
    target_choices=("sdram", "card", "card+sdram"),
    format_key="imagequality",
    formats=("RAW+JPEG", "JPEG", "RAW"),  # sony_300_compression
    always_root=True,
    partial_reads=False,
    lens="sony-speed",
    vibration_key="shuttertype",
    vibration_widget=(WIDGET_RADIO, "Auto", ("Auto", "Mechanical", "Electronic")),
    # _get_FocusMode (focusmodes: Automatic 2, AF-C 0x8004, DMF 0x8006, Manual 1).
    focus_modes=("Automatic", "AF-C", "DMF", "Manual"),
    af_on_release=True,  # camera_sony_capture's half-press
    pc_save_formats=("RAW & JPEG", "JPEG Only", "RAW Only"),  # sony_pc_save_image_format
)
FUJI = QuirkProfile(
    vendor="fuji",
    manufacturer="FUJIFILM",
    model="X-T3",
    card_folder="/store_10000001/DCIM/100_FUJI",
    card_names=("DSCF%04d.RAF", "DSCF%04d.JPG"),
    ram_folder="/store_10000001/DCIM/100_FUJI",
    ram_names=("DSCF%04d.RAF", "DSCF%04d.JPG"),
    target_choices=(),
    format_key="imageformat",
    formats=("RAW + JPEG Fine", "JPEG Fine", "RAW"),  # fuji_imageformat
    lens="fuji-position",
    # _get_FocusMode (focusmodes: Single-Servo AF 0x8001, Continuous-Servo AF 0x8002, Manual 1).
    focus_modes=("Single-Servo AF", "Continuous-Servo AF", "Manual"),
    af_on_release=True,  # camera_fuji_capture's focus action
)
PROFILES = {p.vendor: p for p in (CANON, NIKON, SONY, FUJI)}

EOS_RELEASE_2_5_34 = (
    "None",
    "Press Half AF",
    "Press Full AF",
    "Press Half MF",
    "Press Full MF",
    "Release Half",
    "Release Full",
    "Release",
)
"""``eosremoterelease``'s choices from libgphoto2 2.5.34 on (``_get_Canon_EOS_RemoteRelease``)."""
EOS_RELEASE_BEFORE_2_5_34 = (
    "None",
    "Press Half",
    "Press Full",
    "Release Half",
    "Release Full",
    "Immediate",
    "Press 1",
    "Press 2",
    "Press 3",
    "Release 1",
    "Release 2",
    "Release 3",
)
"""The same before 2.5.34 (2.5.10 to 2.5.33 alike), as distributions still ship it."""
EOS_PRESSES = {
    "Press Half AF": (1, False),
    "Press Full AF": (3, False),
    "Press Half MF": (1, True),
    "Press Full MF": (3, True),
    "Press Half": (1, True),
    "Press Full": (3, True),
    "Immediate": (3, True),
    "Press 1": (1, False),
    "Press 2": (2, False),
    "Press 3": (3, False),
}
"""``_put_Canon_EOS_RemoteRelease`` of both versions: each press label's ``remotereleaseon``
arguments, (1 half, 2 full, 3 both; manual focus, not AF)."""

SONY_SPEED_STEPS = (0, 1, 3, 7, 15, 30, 60, 120)
"""Lens movement per ``manualfocus`` call at speed 0..7. Illustrative, not measured on a body:
only its shape (non-linear, growing with the speed) follows libgphoto2's speed semantics."""


@dataclass
class QuirkState:
    """What the simulated body remembers across reconnections (the lens does not move back)."""

    lens: float = 0.0
    """Lens focus position in drive units (0 = near end)."""
    lens_travel: float = 3000.0
    """The far end of the lens's travel, in drive units."""
    af_position: float = 1234.0
    """Where autofocus puts the lens (the subject's brightest edge)."""
    af_fails: bool = False
    """AF cannot lock (no contrast at this magnification): the release fails with -1."""
    focus_mode_locked: bool = False
    """The focus mode follows a switch (a Sony lens's AF/MF switch at AF): setting
    ``focusmode`` is answered as done and changes nothing, as ``_put_Sony_FocusMode`` does when
    the body has not taken the value within 3 s."""
    nikon_min_amount: int = 1
    """Smallest Nikon MF drive amount the lens accepts (MfDriveStepInsufficiency below)."""
    lens_units_per_s: float = 2000.0
    """How fast a Nikon lens drives; a drive over ``NIKON_DRIVE_WAIT_S`` outlasts libgphoto2's
    wait."""
    lens_moving_until: float = 0.0
    """``time.monotonic()`` until which the Nikon lens drive runs (the body answers busy)."""
    live_view: bool = False
    """Live view was switched on (``viewfinder``)."""
    mirror_up: bool = False
    """A Canon with mirror lock-up on raised its mirror at a press and waits for the next."""
    live_view_down_until: float = 0.0
    """``time.monotonic()`` until which live view restarts after a Nikon capture."""
    exposures: list[float] = field(default_factory=list)
    """The lens position at each exposure."""
    shots: int = 0
    """Exposures made; the counter in the files' names."""


@dataclass
class _Stored:
    data: bytes
    on_camera: bool
    """False for RAM captures: they left the body and live in libgphoto2's cache."""
    cached: bool
    """Already transferred into libgphoto2's cache (RAM captures)."""


@dataclass
class _FilePath:
    """The ``CameraFilePath`` a capture or event reports."""

    folder: str
    name: str


class CameraQuirks:
    """One simulated vendor body; :meth:`wrap` layers it over each libgphoto2 handle opened.

    Parameters
    ----------
    profile
        ``"canon"``, ``"nikon"``, ``"sony"``, ``"fuji"`` or a :class:`QuirkProfile`.
    raw_plus_jpeg
        The body shoots RAW+JPEG (its image-format setting says so; changeable through it).
    nominal_file_bytes
        Size the transfer time is computed from (50 MB: a high-resolution RAW).
    usb_bytes_per_s
        Transfer rate; USB 2 by default.
    second_file_delay_s
        When the second file of a RAW+JPEG shot is announced after the capture returns.
    live_view_restart_s
        How long a Nikon takes to restart live view after a capture.
    eos_release_choices
        A Canon's ``eosremoterelease`` choices: libgphoto2 2.5.34's, or those before
        (:data:`EOS_RELEASE_BEFORE_2_5_34`).
    sleep
        Clock used for the simulated delays.
    """

    def __init__(
        self,
        profile: str | QuirkProfile,
        *,
        raw_plus_jpeg: bool = False,
        nominal_file_bytes: int = 0,
        usb_bytes_per_s: float = USB2_BYTES_PER_S,
        second_file_delay_s: float = 0.8,
        live_view_restart_s: float = 0.6,
        eos_release_choices: tuple[str, ...] = EOS_RELEASE_2_5_34,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.eos_release_choices = eos_release_choices
        self.state = QuirkState()
        self.nominal_file_bytes = nominal_file_bytes
        self.usb_bytes_per_s = usb_bytes_per_s
        self.second_file_delay_s = second_file_delay_s
        self.live_view_restart_s = live_view_restart_s
        self.sleep = sleep
        self.store: dict[tuple[str, str], _Stored] = {}
        self.pending: list[tuple[float, _FilePath]] = []
        self.lock = threading.Lock()
        self._handles = 0
        p = self.profile
        self.widgets: dict[str, SimWidget] = {
            "manufacturer": SimWidget("manufacturer", WIDGET_TEXT, p.manufacturer, readonly=True),
            "cameramodel": SimWidget("cameramodel", WIDGET_TEXT, p.model, readonly=True),
            p.format_key: SimWidget(
                p.format_key,
                WIDGET_RADIO,
                p.formats[0 if raw_plus_jpeg else 1],
                choices=p.formats,
            ),
        }
        if p.target_choices:
            self.widgets["capturetarget"] = SimWidget(
                "capturetarget", WIDGET_RADIO, p.target_choices[0], choices=p.target_choices
            )
        if p.pc_save_formats:
            self.widgets["pcsaveimgformat"] = SimWidget(
                "pcsaveimgformat", WIDGET_RADIO, p.pc_save_formats[0], choices=p.pc_save_formats
            )
        if p.vibration_key:
            kind, initial, choices = p.vibration_widget
            self.widgets[p.vibration_key] = SimWidget(
                p.vibration_key, kind, initial, choices=choices
            )
        if p.focus_modes:
            self.widgets["focusmode"] = SimWidget(
                "focusmode", WIDGET_RADIO, p.focus_modes[0], choices=p.focus_modes
            )
        self._lens_widgets()

    def _lens_widgets(self) -> None:
        lens = self.profile.lens
        if lens == "canon-radio":
            # _get_Canon_EOS_MFDrive's fixed order.
            drive: tuple[str, ...] = (
                "Near 1",
                "Near 2",
                "Near 3",
                "None",
                "Far 1",
                "Far 2",
                "Far 3",
            )
            self.widgets["manualfocusdrive"] = SimWidget(
                "manualfocusdrive", WIDGET_RADIO, "None", choices=drive
            )
            self.widgets["eosremoterelease"] = SimWidget(
                "eosremoterelease", WIDGET_RADIO, "None", choices=self.eos_release_choices
            )
        elif lens == "panasonic-radio":  # _get_Panasonic_MFDrive's fixed order
            drive = ("Near 1", "Near 2", "None", "Far 1", "Far 2")
            self.widgets["manualfocusdrive"] = SimWidget(
                "manualfocusdrive", WIDGET_RADIO, "None", choices=drive
            )
        elif lens == "nikon-range":
            self.widgets["manualfocusdrive"] = SimWidget(
                "manualfocusdrive", WIDGET_RANGE, 0.0, rng=(-32767.0, 32767.0, 1.0)
            )
            self.widgets["autofocus"] = SimWidget(
                "autofocus", WIDGET_RADIO, "On", choices=("On", "Off")
            )
        elif lens == "sony-speed":
            self.widgets["manualfocus"] = SimWidget(
                "manualfocus", WIDGET_RANGE, 0.0, rng=(-7.0, 7.0, 1.0)
            )
        elif lens == "fuji-position":
            # _get_INT on FocusPosition: a radio where the body gives an enumeration, as real
            # bodies do (cameras/fuji-gfx100-ii.txt: these choices, current -30); _put_INT
            # parses any number written to it.
            self.widgets["manualfocusdrive"] = SimWidget(
                "manualfocusdrive",
                WIDGET_RADIO,
                "0",
                choices=("-40", "22177", "528", "528", "54", "3"),
            )
            return
        if lens != "none":
            self.widgets["viewfinder"] = SimWidget("viewfinder", WIDGET_TOGGLE, 0)

    def wrap(self, real: Any) -> QuirkyHandle:
        """The handle :class:`rig.camera.Camera` talks to instead of ``real``.

        A second one is a reconnection: what libgphoto2 held for the old connection went with
        it (``gp_camera_exit`` resets its file system, ``gphoto2-camera.c``), RAM captures not
        yet downloaded among them, and live view ended with the PTP session (ptp2's
        ``camera_exit`` ends it on Canon and Nikon; a dropped link ends the session). The body
        keeps its card files, its settings and its lens."""
        with self.lock:
            if self._handles:
                for key in [k for k, stored in self.store.items() if stored.cached]:
                    del self.store[key]
                self.state.live_view = False
            self._handles += 1
        return QuirkyHandle(real, self)

    # ------------------------------------------------------------------ helpers for the handle
    @property
    def target(self) -> str:
        """``ram``, ``card`` or ``both`` from the capturetarget widget."""
        if "capturetarget" not in self.widgets:
            return "card"
        index = self.profile.target_choices.index(self.widgets["capturetarget"].value)
        return ("ram", "card", "both")[index]

    @property
    def raw_plus_jpeg(self) -> bool:
        w = self.widgets[self.profile.format_key]
        return bool(w.value == self.profile.formats[0])

    def transfer_s(self, data: bytes) -> float:
        size = max(len(data), self.nominal_file_bytes)
        return size / self.usb_bytes_per_s if self.usb_bytes_per_s > 0 else 0.0

    def transfer(self, data: bytes) -> None:
        delay = self.transfer_s(data)
        if delay > 0:
            self.sleep(delay)


class QuirkyHandle(HandleLayer):
    """python-gphoto2's ``Camera`` methods, answered as the profile's camlib path answers."""

    def __init__(self, real: Any, quirks: CameraQuirks) -> None:
        super().__init__(real)
        self._q = quirks

    # ---------------------------------------------------------------------------- settings
    def get_single_config(self, key: str) -> Any:
        if key not in NO_IO_WIDGETS:
            self._lens_busy()
        widget = self._q.widgets.get(key)
        if widget is None:
            return self._real.get_single_config(key)
        if key == "manualfocusdrive" and self._q.profile.lens == "fuji-position":
            widget.value = str(round(self._q.state.lens))  # _get_INT: "%d" of FocusPosition
        if key == "viewfinder":
            # Nikon's LiveViewStatus reads 0 while live view restarts after a capture.
            up = self._q.state.live_view and time.monotonic() >= self._q.state.live_view_down_until
            widget.value = 2 if self._q.profile.viewfinder_unknown else int(up)
        fresh = copy.copy(widget)  # a read is a new widget, as libgphoto2's: set_value on it
        fresh.changed = False  # changes nothing on the body until it is sent
        return fresh

    def set_single_config(self, key: str, widget: Any) -> None:
        own = self._q.widgets.get(key)
        if own is None:
            self._real.set_single_config(key, widget)
            return
        if own.readonly:
            raise self._error(GP_ERROR_BAD_PARAMETERS)
        if key == "focusmode" and self._q.state.focus_mode_locked:
            return  # _put_Sony_FocusMode: no change within 3 s is logged, and GP_OK returned
        value = widget.get_value()
        if key == "manualfocusdrive":
            self._drive(value)
        elif key == "manualfocus":
            self._sony_focus(float(value))
        elif key == "eosremoterelease":
            self._remote_release(str(value))
        elif key == "viewfinder":
            self._q.state.live_view = bool(value)
            self._q.state.live_view_down_until = 0.0
        if key not in ("manualfocusdrive", "manualfocus", "eosremoterelease"):
            own.value = value

    # ------------------------------------------------------------------------------- lens
    def _lens_busy(self) -> None:
        """DeviceBusy while a Nikon lens drive runs: nothing is read or done."""
        if time.monotonic() < self._q.state.lens_moving_until:
            raise self._error(GP_ERROR_CAMERA_BUSY)

    def _drive(self, value: Any) -> None:
        state = self._q.state
        if self._q.profile.lens == "fuji-position":
            # _put_INT: the new FocusPosition; the lens goes there and stops at its ends.
            state.lens = min(max(float(int(str(value))), 0.0), state.lens_travel)
            return
        if self._q.profile.lens in ("canon-radio", "panasonic-radio"):
            # _put_Canon_EOS_MFDrive (and Panasonic's): Near/Far 1..3 are small, medium and large
            # steps (1, 10 and 100 units here: illustrative ratios); no signal at the end of
            # travel, it just stops.
            text = str(value)
            if text == "None":
                return
            step = {"1": 1.0, "2": 10.0, "3": 100.0}[text[-1]]
            move = -step if text.startswith("Near") else step
            state.lens = min(max(state.lens + move, 0.0), state.lens_travel)
            return
        # _put_Nikon_MFDrive
        self._lens_busy()
        if not state.live_view or time.monotonic() < state.live_view_down_until:
            raise self._error(GP_ERROR)  # PTP_RC_NIKON_NotLiveView -> GP_ERROR
        amount = abs(float(value)) or 1.0
        if amount < self._q.state.nikon_min_amount:
            raise self._error(GP_ERROR_CAMERA_ERROR)  # MfDriveStepInsufficiency
        target = state.lens + (-amount if float(value) < 0 else amount)
        if target < 0 or target > state.lens_travel:
            state.lens = min(max(target, 0.0), state.lens_travel)
            raise self._error(GP_ERROR_CAMERA_ERROR)  # MfDriveStepEnd
        state.lens = target
        running = amount / state.lens_units_per_s
        state.lens_moving_until = time.monotonic() + running
        self._q.sleep(min(running, NIKON_DRIVE_WAIT_S))
        if running > NIKON_DRIVE_WAIT_S:  # nikon_wait_busy gave up: the lens runs on
            raise self._error(GP_ERROR_CAMERA_BUSY)

    def _sony_focus(self, speed: float) -> None:
        # _put_Sony_ManualFocus: the value is a speed, rounded to -7..7; 0 means AF/MF hold.
        if speed == 0:
            return
        level = min(7, max(1, round(abs(speed))))
        moved = SONY_SPEED_STEPS[level] * (1 if speed > 0 else -1)
        state = self._q.state
        state.lens = min(max(state.lens + moved, 0.0), state.lens_travel)  # no end-stop signal

    def _autofocus(self) -> None:
        """The half-press with AF of ``camera_trigger_canon_eos_capture``,
        ``camera_sony_capture`` and ``camera_fuji_capture``."""
        if self._q.state.af_fails:
            # Canon: "Canon EOS Auto-Focus failed, could not capture."; Sony: "no object found
            # during event polling. perhaps no focus..."; Fuji: "Fuji Capture failed: Perhaps no
            # auto-focus?"
            raise self._error(GP_ERROR)
        self._q.state.lens = self._q.state.af_position

    def _remote_release(self, value: str) -> None:
        # _put_Canon_EOS_RemoteRelease: remotereleaseon(press, mf), press 1 half, 2 full, 3 both;
        # mf 0 focuses first. A release (remotereleaseoff) does nothing here.
        press, manual = EOS_PRESSES.get(value, (0, True))
        if not manual:
            self._autofocus()
        if press >= 2:
            lock = self._q.widgets.get("mirrorlock")
            state = self._q.state
            if lock is not None and str(lock.value) not in ("0", "") and not state.live_view:
                state.mirror_up = not state.mirror_up
                if state.mirror_up:
                    return  # this press only raised the mirror; the next one exposes
            path = self._expose()
            with self._q.lock:
                self._q.pending.insert(0, (time.monotonic(), path))

    # ---------------------------------------------------------------------------- capture
    def capture(self, kind: int) -> _FilePath:
        mode = self._q.widgets.get("focusmode")
        if self._q.profile.af_on_release and (mode is None or mode.value != "Manual"):
            self._autofocus()
        return self._expose()

    def _expose(self) -> _FilePath:
        """One real shot of the virtual body, filed as the profile's camlib files it."""
        q = self._q
        gp = self._gp
        real = self._real.capture(gp.GP_CAPTURE_IMAGE)
        cf = self._real.file_get(real.folder, real.name, gp.GP_FILE_TYPE_NORMAL)
        data = bytes(memoryview(cf.get_data_and_size()))
        self._real.file_delete(real.folder, real.name)
        state = q.state
        state.exposures.append(state.lens)
        state.shots += 1
        if state.live_view and q.profile.lens == "nikon-range":
            state.live_view_down_until = time.monotonic() + q.live_view_restart_s
        paths = [self._file(data, raw=raw) for raw in self._sent_files()]
        for late in paths[1:]:
            with q.lock:
                q.pending.append((time.monotonic() + q.second_file_delay_s, late))
        if q.store[(paths[0].folder, paths[0].name)].cached:
            q.transfer(data)  # the camlib downloads RAM captures inside the capture call
        return paths[0]

    def _sent_files(self) -> list[bool]:
        """The files of a shot the computer receives, first one first (True: the RAW)."""
        q = self._q
        if not q.raw_plus_jpeg:
            return [False]
        pc_save = q.widgets.get("pcsaveimgformat")
        only = pc_save.value if pc_save is not None else ""
        if only == "JPEG Only":
            return [False]
        if only == "RAW Only":
            return [True]
        return [True, False]

    def _file(self, data: bytes, *, raw: bool) -> _FilePath:
        q, p = self._q, self._q.profile
        ram = q.target != "card" or p.always_root
        folder = p.ram_folder if ram else p.card_folder
        names = p.ram_names if ram else p.card_names
        name = names[0 if raw else 1] % q.state.shots
        # RAM captures were transferred into libgphoto2's cache and left the body.
        q.store[(folder, name)] = _Stored(data, on_camera=not ram, cached=ram)
        if q.target == "both" and p.always_root:
            # Sony card+sdram: the card keeps its own copy as well.
            card_name = p.card_names[0 if raw else 1] % q.state.shots
            q.store[(p.card_folder, card_name)] = _Stored(data, on_camera=True, cached=False)
        return _FilePath(folder, name)

    # ----------------------------------------------------------------------------- events
    def wait_for_event(self, timeout_ms: int) -> tuple[int, Any]:
        q = self._q
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            with q.lock:
                due = min(q.pending, key=lambda e: e[0]) if q.pending else None
            now = time.monotonic()
            if due is not None and due[0] <= now:
                with q.lock:
                    q.pending.remove(due)
                stored = q.store.get((due[1].folder, due[1].name))
                if stored is not None and stored.cached:
                    q.transfer(stored.data)  # camera_wait_for_event downloads RAM objects
                return GP_EVENT_FILE_ADDED, due[1]
            if due is None or due[0] >= deadline:
                left = max(0, int((deadline - now) * 1000))
                kind, data = self._real.wait_for_event(left)
                if int(kind) == GP_EVENT_TIMEOUT and due is not None and due[0] <= deadline:
                    continue
                return int(kind), data
            self._q.sleep(max(0.0, due[0] - now))

    # ------------------------------------------------------------------------------ files
    def _stored(self, folder: str, name: str) -> _Stored | None:
        return self._q.store.get((folder, name))

    def _held(self, folder: str, name: str) -> bytes | None:
        stored = self._stored(folder, name)
        return None if stored is None else stored.data

    def _download(self, folder: str, name: str) -> bytes | None:
        stored = self._stored(folder, name)
        if stored is None:
            return None
        if not stored.cached:
            self._q.transfer(stored.data)  # RAM captures were transferred inside the capture
        return stored.data

    def file_read(self, folder: str, name: str, kind: int, offset: int, buf: Any) -> int:
        stored = self._stored(folder, name)
        if stored is None:
            return int(self._real.file_read(folder, name, kind, offset, buf))
        if folder == "/":
            raise self._error(GP_ERROR)  # find_storage_and_handle_from_path: not /store_…
        if not stored.on_camera:
            raise self._error(GP_ERROR_BAD_PARAMETERS)  # find_child: object deleted
        if not self._q.profile.partial_reads:
            raise self._error(GP_ERROR_NOT_SUPPORTED)
        piece = stored.data[offset : offset + len(buf)]
        buf[: len(piece)] = piece
        if piece:
            share = len(piece) / max(1, len(stored.data))
            self._q.sleep(self._q.transfer_s(stored.data) * share)
        return len(piece)

    def file_delete(self, folder: str, name: str) -> None:
        key = (folder, name)
        if key not in self._q.store:
            self._real.file_delete(folder, name)
            return
        # delete_file_func answers GP_OK for "capt*" (a virtual file of a RAM capture) without
        # asking the body; a card file is deleted on the body.
        del self._q.store[key]

    def files_on_body(self) -> list[tuple[str, str]]:
        """Every (folder, name) still on the simulated body's card."""
        return sorted(key for key, s in self._q.store.items() if s.on_camera)
