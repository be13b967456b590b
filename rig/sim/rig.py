"""The simulated rig: libgphoto2's virtual camera, the GRBL simulator and a synthetic 3-D scene.

Everything real that can run without hardware runs: frames come out of libgphoto2 (its virtual
PTP camera, through python-gphoto2 and :class:`rig.camera.Camera`), the rail is driven by the
GRBL driver over a real pseudo-terminal talking to :class:`rig.sim.grbl.GrblSimulator`, and
before each shot the synthetic scene (:mod:`rig.sim.scene`) is rendered at the rail's
*reported* position and staged as the JPEG the virtual camera returns next. A frame therefore
shows exactly what a camera would see at the place the rail really went.

The scene's jitter, exposure drift and sensor noise are seeded from the rail position, so the
same position always gives the same frame: an interrupted and resumed session gets the same
frames as an uninterrupted one. ``fault`` rehearses failures (``camera@K``: downloads fail from
frame K on; ``alarm@K``: the rail alarms on the move to frame K; ``disconnect@K``: the rail's
serial link drops before frame K).

libgphoto2 chooses the virtual camera when python-gphoto2 is first imported with ``VCAMERADIR``
set; :func:`enable_virtual_camera` does that and refuses if it is too late.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from rig.errors import RigError
from rig.focuser import Focuser

FAULT_KINDS = ("camera", "alarm", "disconnect")
SHOTS_PER_CONNECTION = 26
PREVIEW_WIDTH = 960
"""Live-view width of the simulated body (a Canon EOS live view is 960 x 640)."""
_STEM_INDEX = re.compile(r"(\d+)$")


class SimulatedRigError(RigError):
    """The simulated rig cannot be set up (gphoto2 already loaded without the virtual camera)."""


_Part = TypeVar("_Part")


def _running(part: _Part | None) -> _Part:
    """A part of the simulated rig, which exists only while the rig runs."""
    if part is None:
        raise SimulatedRigError("the simulated rig is not running (use it in a with block)")
    return part


@dataclass(frozen=True)
class Fault:
    """A rehearsed failure: ``kind`` (camera, busy, alarm, disconnect) at frame ``frame``."""

    kind: str
    frame: int


def parse_fault(text: str | None) -> Fault | None:
    """``camera@5`` → Fault("camera", 5); ``None`` stays ``None``."""
    if text is None:
        return None
    kind, sep, frame = text.partition("@")
    if sep and kind in FAULT_KINDS and re.fullmatch(r"[-+]?\d+", frame) and int(frame) < 1:
        raise SimulatedRigError(f"--fault {text}: frames count from 1, the first is {kind}@1")
    if not sep or kind not in FAULT_KINDS or not frame.isdigit() or int(frame) < 1:
        raise SimulatedRigError(
            f"--fault {text}: write KIND@FRAME with KIND one of {', '.join(FAULT_KINDS)}, "
            "e.g. alarm@5"
        )
    return Fault(kind, int(frame))


def check_composite_format(output_suffix: str, what: str) -> None:
    """Refuse a DNG composite (``what`` names the format as the front end does): the simulated
    camera shoots JPEG, no RAW frame to stack. Asked for, a session on the simulated rig
    stopped at its first frame with nothing stacked."""
    if output_suffix == ".dng":
        raise SimulatedRigError(
            f"{what} dng stacks RAW frames, and the simulated camera shoots JPEG: "
            "use tif, png or jpg"
        )


def parse_size(text: str) -> tuple[int, int]:
    """``1440x1080`` → (1440, 1080), with a one-line error for anything else."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise SimulatedRigError(f"--size {text}: write WIDTHxHEIGHT, e.g. 1440x1080")
    w, h = int(m.group(1)), int(m.group(2))
    if not (64 <= w <= 8000 and 64 <= h <= 8000):
        raise SimulatedRigError(f"--size {text}: each side must be 64 to 8000 pixels")
    return w, h


MAX_RAW_MB = 1000.0
"""The largest simulated file: ten times a 100 MP RAW (each costs its USB 2 transfer time)."""


@dataclass(frozen=True)
class SimRigSpec:
    """The simulated rig: frame size, scene, rail speed-up and an optional rehearsed fault."""

    width: int = 1440
    height: int = 1080
    seed: int = 7
    depth_um: float = 3000.0
    """Depth of the scene; a plan from 0 to ``depth_um`` covers it."""
    time_scale: float = 20.0
    """The GRBL simulator runs this much faster than a real rail."""
    jpeg_quality: int = 92
    camera: str = "virtual"
    """``virtual`` (libgphoto2's virtual body as it is), or ``canon``, ``nikon``, ``sony``,
    ``fuji``: the virtual body behind the vendor quirk layer (:mod:`rig.sim.camera_quirks`), and
    for a tether demo a body of that family bracketing by itself (:mod:`rig.sim.bracketing`)."""
    capture_target: str | None = None
    """``auto``, ``ram``, ``card``, ``both`` or ``None`` (leave the body's setting alone)."""
    raw_mb: float = 0.0
    """Nominal size of each file, for the simulated USB 2 transfer time (50: a big RAW, 2 s)."""
    raw_plus_jpeg: bool = False
    fault: Fault | None = None

    def __post_init__(self) -> None:
        from rig.sim.camera_quirks import PROFILES

        if self.camera != "virtual" and self.camera not in PROFILES:
            raise SimulatedRigError(f"--camera {self.camera}: use virtual or {', '.join(PROFILES)}")
        if not 0 <= self.raw_mb <= MAX_RAW_MB:
            raise SimulatedRigError(
                f"--raw-mb {self.raw_mb:g}: give a size from 0 to {MAX_RAW_MB:g} (MB)"
            )
        if not 1 <= self.time_scale < math.inf:
            raise SimulatedRigError(
                f"--time-scale {self.time_scale:g}: give 1 (a real rail's speed) or more; slower, "
                "its moves outlast the driver's timeouts and read as a stalled rail"
            )
        if not 0 <= self.seed < 2**63:
            raise SimulatedRigError(
                f"--seed {self.seed}: give a whole number from 0 to {2**63 - 1}"
            )
        if not 0 < self.depth_um < math.inf:
            raise SimulatedRigError(f"depth {self.depth_um:g} µm: give a positive depth")
        if not 1 <= self.jpeg_quality <= 100:
            raise SimulatedRigError(f"JPEG quality {self.jpeg_quality}: use 1 to 100")

    def to_dict(self) -> dict[str, Any]:
        """The session's ``rig`` block. The fault is left out: a resume runs a healthy rig."""
        data = asdict(self)
        data.pop("fault")
        return {"kind": "simulated", **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: object = "the rig block") -> SimRigSpec:
        """The spec a session saved (:meth:`to_dict`). A value of the wrong kind or size (a
        hand edit of ``source``, its ``session.json``) is a one-line error naming both."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "fault"}
        for key, value in values.items():
            want = _SAVED_KINDS[str(cls.__dataclass_fields__[key].type)]
            if not want[0](value):
                raise SimulatedRigError(f"{source}: '{key}' {value!r} is not {want[1]}")
        width, height = values.get("width", cls.width), values.get("height", cls.height)
        if not (64 <= width <= 8000 and 64 <= height <= 8000):
            raise SimulatedRigError(f"{source}: size {width}x{height}: each side 64 to 8000")
        try:
            return cls(**values)
        except SimulatedRigError as exc:
            raise SimulatedRigError(f"{source}: {exc}") from None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: What each kind of field of a saved :class:`SimRigSpec` must hold, and how to say so.
_SAVED_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_whole, "a whole number"),
    "float": (_real, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "text"),
    "str | None": (lambda v: v is None or isinstance(v, str), "text or null"),
}


def enable_virtual_camera(directory: str | os.PathLike[str] | None = None) -> Path:
    """Make libgphoto2 use its virtual camera; call before anything imports gphoto2.

    Returns the virtual camera's folder (``VCAMERADIR``), created if needed.
    """
    from rig.sim.vcamera import gphoto2_uses_virtual_camera

    current = os.environ.get("VCAMERADIR")
    if gphoto2_uses_virtual_camera() is False or ("gphoto2" in sys.modules and not current):
        raise SimulatedRigError(
            "gphoto2 was imported before the virtual camera was set up; run `rig demo` in a "
            "fresh process"
        )
    if current:
        path = Path(current)
    else:
        if directory:
            path = Path(directory)
        else:
            path = Path(tempfile.mkdtemp(prefix="stackrig-vcam-"))
            atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ["VCAMERADIR"] = str(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # VCAMERADIR names a file, or a place no folder can be made
        raise SimulatedRigError(
            f"VCAMERADIR={path}: cannot use it as the virtual camera's folder "
            f"({exc.strerror or exc}); point it at a folder, or unset it"
        ) from None
    return path


class SceneCamera:
    """The virtual camera, showing the synthetic scene as seen from the rail's position."""

    def __init__(self, rig: SimulatedRig) -> None:
        self._rig = rig

    def capture(
        self, dest_dir: Path, stem: str | None = None, *, on_progress: Any = None
    ) -> list[Path]:
        """Render the scene at the rail position, stage it, and shoot through libgphoto2."""
        return self.release(dest_dir, stem).download(on_progress)

    def release(self, dest_dir: Path, stem: str | None = None) -> Any:
        """Render and stage the scene, expose; the download is left to the returned shot."""
        rig = self._rig
        index = _index_of(stem)
        fault = rig.spec.fault
        if fault is not None and index == fault.frame and fault.kind == "camera":
            rig.fail_camera(fault.kind)
        rig.stage(rig.focuser.position)
        shot = rig.gphoto_camera.release(Path(dest_dir), stem)
        if fault is not None and index == fault.frame - 1:
            rig.arm_rail_fault(fault.kind)
        return shot

    def capture_preview(self) -> bytes:
        """A live-view frame: the scene at the rail's position, at a live-view size.

        libgphoto2's virtual camera has no live view (``capture_preview`` is an unsupported
        operation there), so the frame is rendered here instead. A real body's live view is a
        small JPEG taken from the sensor as it is focused now (libgphoto2
        ``camlibs/ptp2/library.c``, ``camera_capture_preview``: Canon EOS viewfinder images,
        Nikon ``GetLiveViewImage``), about 640 to 1024 pixels across; so is this one.
        """
        return self._rig.render_preview(self._rig.focuser.position)

    def config_items(self) -> list[Any]:
        """The virtual body's settings, from libgphoto2's config tree."""
        return list(self._rig.gphoto_camera.config_items())

    def get_config(self, key: str) -> Any:
        return self._rig.gphoto_camera.get_config(key)

    def set_config(self, key: str, value: object, *, restore: bool = False) -> Any:
        return self._rig.gphoto_camera.set_config(key, value, restore=restore)


def _layered(
    outer: Callable[[Any], Any], inner: Callable[[Any], Any] | None
) -> Callable[[Any], Any]:
    """A handle wrapper putting ``outer`` over ``inner`` (when there is one)."""
    return outer if inner is None else lambda real: outer(inner(real))


class SimulatedRig:
    """Starts the simulators and opens the rail and camera drivers on them (context manager)."""

    def __init__(
        self,
        spec: SimRigSpec | None = None,
        *,
        body: Callable[[SimulatedRig], Any] | None = None,
    ) -> None:
        """``body(rig)`` makes a :class:`~rig.sim.bracketing.BracketingBody` that renders its
        frames through this rig: it is layered over the camera (over its vendor quirk layer)
        and shoots bursts by itself (``rig demo --tether --camera``); the camera then retries
        as a tethered one does."""
        self.spec = spec or SimRigSpec()
        self._make_body = body
        self.body: Any = None
        self._grbl: Any = None
        self._focuser: Focuser | None = None
        self._camera: Any = None
        self._vcam: Any = None
        self._scene: Any = None
        self._camera_broken = False
        self._shots_on_connection = 0
        self._scene_camera: SceneCamera | None = None

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> SimulatedRig:
        from rig.sim.scene import SceneSpec, SyntheticScene

        enable_virtual_camera()
        spec = self.spec
        self._scene = SyntheticScene(
            SceneSpec(
                width=spec.width,
                height=spec.height,
                seed=spec.seed,
                depth_um=spec.depth_um,
                jpeg_quality=spec.jpeg_quality,
            ),
            reference_focus_um=0.0,
        )
        try:
            self._start_devices()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for part in (self._focuser, self._camera, self._grbl):
            if part is not None:
                # best effort: the simulators die with the process anyway
                with contextlib.suppress(Exception):
                    part.close()
        self._focuser = self._camera = self._vcam = self._grbl = None
        self._scene_camera = None

    def _start_devices(self) -> None:
        from rig.camera import Camera
        from rig.camera.shot import parse_capture_target
        from rig.rails import open_focuser
        from rig.sim.grbl import GrblSimulator
        from rig.sim.vcamera import VirtualCameraFolder

        spec = self.spec
        folder = Path(os.environ["VCAMERADIR"])
        # Every frame the camera delivers has the slot's size, fixed when the camera opens.
        slot = max(256 << 10, spec.width * spec.height * 3 // 4)
        self._vcam = VirtualCameraFolder(folder, slot_bytes=slot)
        self._vcam.stage(self.render_jpeg(0.0))
        self._grbl = GrblSimulator(time_scale=spec.time_scale).start()
        rail = open_focuser(f"{self._grbl.url}&settle=0")
        self._focuser = rail
        # The simulated board, like a stock GRBL with homing on, restarted as the port opened
        # and is locked. The carriage stands at the scene's near end, where a photographer
        # would have placed it, so the rig takes that place as its reference (as
        # --accept-position does; on GRBL that is $X) and makes it work zero: the plan's 0.
        rail.accept_position()
        rail.send("G10 L20 P1 X0")  # type: ignore[attr-defined]
        wrap: Callable[[Any], Any] | None = None
        if spec.camera != "virtual":
            from rig.sim.camera_quirks import CameraQuirks

            quirks = CameraQuirks(
                spec.camera,
                raw_plus_jpeg=spec.raw_plus_jpeg,
                nominal_file_bytes=int(spec.raw_mb * 1e6),
            )
            wrap = quirks.wrap
        retry = None
        if self._make_body is not None:
            from rig.camera.tether import TETHER_RETRY

            self.body = self._make_body(self)
            wrap, retry = _layered(self.body.wrap, wrap), TETHER_RETRY
        target = parse_capture_target(spec.capture_target)
        self._camera = Camera.open(capture_target=target, wrap_handle=wrap, retry=retry)
        self._shots_on_connection = 0
        self._scene_camera = SceneCamera(self)

    # ---------------------------------------------------------------- parts
    @property
    def focuser(self) -> Focuser:
        return _running(self._focuser)

    @property
    def camera(self) -> SceneCamera:
        """The camera a session uses: renders the scene, then shoots through libgphoto2."""
        return _running(self._scene_camera)

    @property
    def gphoto_camera(self) -> Any:
        """The :class:`rig.camera.Camera` connected to libgphoto2's virtual body."""
        return _running(self._camera)

    @property
    def rail_url(self) -> str:
        return str(getattr(self._grbl, "url", "?"))

    def _render(self, position_um: float) -> Any:
        """The scene's frame with focus at ``position_um`` (deterministic per position)."""
        from rig.sim.scene import FramePose

        key = _position_key(position_um)
        pose = self._scene.random_pose(key) if key else FramePose()
        return self._scene.render(position_um, pose=pose, noise_seed=key)

    def render_jpeg(self, position_um: float) -> bytes:
        """The JPEG a camera focused at ``position_um`` takes (deterministic per position)."""
        frame = self._render(position_um)
        assert frame.encoded is not None
        return bytes(frame.encoded)

    def render_preview(self, position_um: float, width: int = PREVIEW_WIDTH) -> bytes:
        """The live-view JPEG at ``position_um``: the frame a shot there takes, made smaller."""
        import cv2

        from stacker.preview.publisher import encode_jpeg

        image = self._render(position_um).image
        h, w = image.shape[:2]
        if w > width:
            size = (width, max(1, round(h * width / w)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return encode_jpeg(image, quality=80)[0]

    def stage(self, position_um: float) -> None:
        """Put the frame for ``position_um`` in the virtual camera's capture slot."""
        if self._camera_broken:
            # A rehearsed camera fault: a short file makes libgphoto2's download fail for real.
            self._vcam.slot_path.write_bytes(b"\xff\xd8")
            return
        if self._shots_on_connection >= SHOTS_PER_CONNECTION:
            # The virtual body's store fills after 26 shots; a reconnect empties it.
            self._camera.reconnect("virtual camera store full")
            self._shots_on_connection = 0
        self._vcam.stage(self.render_jpeg(position_um))
        self._shots_on_connection += 1

    def fail_camera(self, kind: str) -> None:
        """From now on the camera's downloads fail (a rehearsed ``camera`` fault)."""
        self._camera_broken = True

    def arm_rail_fault(self, kind: str) -> None:
        """Make the next move fail: GRBL alarm, or the serial link dropping."""
        if kind == "alarm":
            self._grbl.trigger_alarm(1)
        elif kind == "disconnect":
            self._grbl.disconnect()

    def replug_rail(self) -> None:
        """The rail's cable back in after a ``disconnect``: the board, powered by USB like an
        Arduino, starts afresh behind the same port."""
        self._grbl.replug()


def _index_of(stem: str | None) -> int | None:
    m = _STEM_INDEX.search(stem or "")
    return int(m.group(1)) if m else None


def _position_key(position_um: float) -> int:
    """A stable non-negative integer per rail position (0 for the reference position 0)."""
    q = round(position_um * 10.0)
    if q == 0:
        return 0
    return int.from_bytes(hashlib.sha1(str(q).encode()).digest()[:4], "little") | 1
