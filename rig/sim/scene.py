"""A synthetic 3-D macro scene, rendered at any focus position, whose truth is known exactly.

Tests, benchmarks and the simulated camera of the demo rig all need focus stacks for which the
right answer is known: the all-in-focus image, the depth of every pixel, and the exact geometric
and photometric change of every frame. This module makes them.

The scene is a depth map (how far along the focus axis each pixel sits, in micrometres: smooth
hills plus sharp-edged raised "components", like a circuit board) and an all-in-focus texture with
detail at many scales: fine multi-octave noise, smooth colour gradients, high-contrast component
edges (where halos show), silkscreen-like text and traces, and flat patches that carry nothing but
sensor noise (a stacker that picks noise there is punished).

Rendering a frame at focus position ``f`` models, in order:

1. **Defocus.** Every scene point spreads its light into a Gaussian whose sigma combines the
   lens's own blur at best focus (``optics_blur_px``: diffraction at macro working apertures
   spreads a point over a few pixels) with ``blur_px_per_um * |depth - f|`` (capped at
   ``max_blur_px``). This is a *scatter* model, as in a real lens: each point's light stays
   centred on that point. (The cheaper *gather* model, blurring each output pixel by its own
   depth's sigma, moves features toward the more blurred side wherever blur varies across them,
   a false shift that accumulates along a focus stack.) Sigmas are quantised to a ladder; the
   texture, weighted by each ladder level's share of every pixel, is blurred at that level's
   sigma (large ones downsampled) and the layers summed.
2. **Focus breathing**: a scale about the image centre, linear in focus position
   (``breathing`` is the total relative scale change across ``depth_um``).
3. **Jitter**: a random shift and rotation per frame (vibration, a loose rail).
4. **Exposure and white-balance drift**: a per-channel gain.
5. **Sensor noise** (Gaussian) and optional **JPEG** encoding.

Geometry convention: the *reference* geometry is that of the first frame of a stack, which gets
the identity transform (no jitter, gain 1; its breathing scale is the reference). Every rendered
frame reports the 3x3 matrix that maps reference pixel coordinates to its own pixel coordinates,
``x_frame = T @ x_ref``. The scene is generated with a margin around the reference view, so
frames that see a little more than the reference (jitter, rotation) show real scene content.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stacker.cvtyping import cv
from stacker.errors import StackerError
from stacker.io import atomic_write_bytes, encode_image

TRUTH_SIDECAR = "synthetic_truth.json"
"""Name of the JSON file :func:`write_stack` writes beside the frames (the stacker ignores it)."""

_LADDER_FIRST_SIGMA = 0.5
_LADDER_RATIO = math.sqrt(2.0)
_LUT_SIZE = 4096


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a synthetic scene and its camera; the same spec renders the same."""

    width: int = 640
    """Frame width in pixels."""
    height: int = 480
    """Frame height in pixels."""
    seed: int = 0
    """Seeds the scene layout and every frame's jitter, drift and noise."""
    depth_um: float = 3000.0
    """Depth of the scene along the focus axis; depths run from 0 (near) to ``depth_um``."""
    blur_px_per_um: float | None = None
    """Gaussian defocus sigma in pixels per micrometre of focus error. ``None`` picks a value
    that makes the far end, seen from the near end, very blurred at any resolution:
    ``max(width / 160, 6) / depth_um``."""
    max_blur_px: float | None = None
    """Cap on the defocus sigma. ``None`` means the sigma reached at a focus error of
    ``depth_um``."""
    breathing: float = 0.06
    """Relative magnification change across the whole depth (0.06 means the far end is imaged
    6 % larger than the near end). Negative values shrink instead."""
    jitter_px: float = 3.0
    """Largest random shift, per axis, of a frame other than the first."""
    rotation_deg: float = 0.2
    """Largest random rotation of a frame other than the first."""
    exposure_drift: float = 0.03
    """Largest relative exposure change, the same on all channels."""
    wb_drift: float = 0.02
    """Largest relative white-balance change, per channel."""
    noise_sigma: float = 1.5
    """Standard deviation of Gaussian sensor noise, in 8-bit levels (scaled for 16 bits)."""
    jpeg_quality: int | None = None
    """If set, every rendered frame goes through JPEG at this quality (artefacts included)."""
    bit_depth: int = 8
    """8 or 16: the dtype (``uint8`` or ``uint16``) of the truth and of every frame."""
    n_components: int = 14
    """Number of sharp-edged raised components on the board."""
    optics_blur_px: float = 0.7
    """Gaussian sigma of the lens's blur at best focus. The all-in-focus truth is the scene at
    this blur: no focus stack can be sharper than its sharpest frame."""
    layout: str = "board"
    """``"board"`` (the circuit-board-like scene above) or ``"shapes"``: large flat saturated
    shapes and glyphs, each at one depth, over a colourful textured background on a
    tilted, gently curved surface (the scene where a depth map must fill textureless
    areas from their borders without taking the background's depth)."""

    def __post_init__(self) -> None:
        problems = []
        if self.width < 32 or self.height < 32:
            problems.append(f"size {self.width}x{self.height} is too small (at least 32x32)")
        if self.depth_um <= 0:
            problems.append(f"depth_um {self.depth_um} must be positive")
        if not -0.5 < self.breathing <= 0.5:
            problems.append(f"breathing {self.breathing} must be within (-0.5, 0.5]")
        for name in ("jitter_px", "rotation_deg", "noise_sigma", "optics_blur_px"):
            if getattr(self, name) < 0:
                problems.append(f"{name} {getattr(self, name)} must not be negative")
        for name in ("exposure_drift", "wb_drift"):
            if not 0 <= getattr(self, name) <= 0.5:
                problems.append(f"{name} {getattr(self, name)} must be within 0..0.5")
        if self.blur_px_per_um is not None and self.blur_px_per_um < 0:
            problems.append(f"blur_px_per_um {self.blur_px_per_um} must not be negative")
        if self.max_blur_px is not None and self.max_blur_px < 0:
            problems.append(f"max_blur_px {self.max_blur_px} must not be negative")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality {self.jpeg_quality} must be within 1..100")
        if self.bit_depth not in (8, 16):
            problems.append(f"bit_depth {self.bit_depth} must be 8 or 16")
        if self.layout not in _LAYOUTS:
            problems.append(f"layout {self.layout!r} must be one of {', '.join(_LAYOUTS)}")
        if problems:
            raise StackerError("synthetic scene: " + "; ".join(problems))

    @property
    def blur_per_um(self) -> float:
        """The defocus sigma per micrometre actually used (resolves the ``None`` default)."""
        if self.blur_px_per_um is not None:
            return float(self.blur_px_per_um)
        return max(self.width / 160.0, 6.0) / self.depth_um

    @property
    def blur_cap(self) -> float:
        """The largest defocus sigma actually used (resolves the ``None`` default)."""
        if self.max_blur_px is not None:
            return float(self.max_blur_px)
        return self.blur_per_um * self.depth_um

    @property
    def dtype(self) -> type[np.generic]:
        """``np.uint8`` or ``np.uint16``."""
        return np.uint8 if self.bit_depth == 8 else np.uint16

    def to_json(self) -> dict[str, object]:
        """The spec as plain JSON-able values (round-trips through :meth:`from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SceneSpec:
        """Rebuild a spec from :meth:`to_json` output."""
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FramePose:
    """The camera-side changes of one frame other than defocus and breathing."""

    shift_px: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Per-channel gain in B, G, R order (exposure times white balance)."""


@dataclass(frozen=True)
class RenderedFrame:
    """One rendered frame and the exact truth about it."""

    image: np.ndarray
    """BGR ``uint8``/``uint16`` image (decoded JPEG when the spec asks for JPEG)."""
    transform: np.ndarray
    """3x3 float64 matrix mapping reference pixel coordinates to this frame's pixel coordinates."""
    gains: np.ndarray
    """Per-channel gains (B, G, R) applied to the scene's light."""
    focus_um: float
    index: int = 0
    encoded: bytes | None = field(default=None, repr=False)
    """The JPEG bytes when the spec asks for JPEG, so writers need not encode again."""


class SyntheticScene:
    """The scene of a :class:`SceneSpec`, renderable at any focus position.

    Parameters
    ----------
    spec
        The scene and camera description.
    reference_focus_um
        Focus position whose breathing scale is the reference geometry (the first frame of a
        stack). Frames at other positions are scaled relative to it.
    """

    def __init__(self, spec: SceneSpec, *, reference_focus_um: float = 0.0) -> None:
        self.spec = spec
        self.reference_focus_um = float(reference_focus_um)
        self._margin_x, self._margin_y = _margins(spec, self.reference_focus_um)
        canvas_w = spec.width + 2 * self._margin_x
        canvas_h = spec.height + 2 * self._margin_y
        rng = np.random.default_rng([spec.seed, 0])
        texture, depth = self._layout(rng, canvas_w, canvas_h)
        top = 255.0 if spec.bit_depth == 8 else 65535.0
        self._texture = np.clip(texture * top + 0.5, 0, top).astype(spec.dtype)
        self._depth = depth
        self._light = self._texture.astype(np.float32)
        self._sigmas = _ladder_sigmas(spec.optics_blur_px, spec.blur_cap)
        self._lut_level, self._lut_weight = _ladder_lut(self._sigmas)
        self._sharp = _to_dtype(_blur(self._light, spec.optics_blur_px), spec.dtype)

    def _layout(
        self, rng: np.random.Generator, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The canvas's texture (float, 0..1) and per-pixel depth (µm) of the spec's layout."""
        return _LAYOUTS[self.spec.layout](rng, width, height, self.spec)

    # ----------------------------------------------------------------- truth
    def truth(self) -> np.ndarray:
        """The all-in-focus image in reference geometry (a fresh copy): the scene as the lens
        renders it at best focus everywhere."""
        return self._reference_view(self._sharp).copy()

    def height_um(self) -> np.ndarray:
        """Per reference pixel, the focus position (µm) at which it is sharp (float32 copy).

        0 is the near end of the scene (the tops of the raised components), ``depth_um`` the far
        end: the value is a depth along the focus axis, comparable with rail positions.
        """
        return self._reference_view(self._depth).copy()

    def magnification(self, focus_um: float) -> float:
        """Breathing scale of a frame at ``focus_um`` relative to the reference geometry."""
        spec = self.spec

        def m(f: float) -> float:
            return 1.0 + spec.breathing * f / spec.depth_um

        return m(focus_um) / m(self.reference_focus_um)

    def transform(self, focus_um: float, pose: FramePose | None = None) -> np.ndarray:
        """3x3 matrix mapping reference pixels to the pixels of a frame at ``focus_um``."""
        pose = pose or FramePose()
        cx = (self.spec.width - 1) / 2.0
        cy = (self.spec.height - 1) / 2.0
        s = self.magnification(focus_um)
        theta = math.radians(pose.rotation_deg)
        c, si = math.cos(theta) * s, math.sin(theta) * s
        lin = np.array([[c, -si], [si, c]])
        centre = np.array([cx, cy])
        out = np.eye(3)
        out[:2, :2] = lin
        out[:2, 2] = centre + np.asarray(pose.shift_px, dtype=float) - lin @ centre
        return out

    def random_pose(self, index: int) -> FramePose:
        """The jitter and drift of frame ``index`` (deterministic; frame 0 gets none)."""
        if index == 0:
            return FramePose()
        spec = self.spec
        rng = np.random.default_rng([spec.seed, 1, index])
        shift = rng.uniform(-1.0, 1.0, size=2) * spec.jitter_px
        rot = float(rng.uniform(-1.0, 1.0) * spec.rotation_deg)
        exposure = 1.0 + float(rng.uniform(-1.0, 1.0)) * spec.exposure_drift
        wb = 1.0 + rng.uniform(-1.0, 1.0, size=3) * spec.wb_drift
        gains = exposure * wb
        return FramePose(
            shift_px=(float(shift[0]), float(shift[1])),
            rotation_deg=rot,
            gains=(float(gains[0]), float(gains[1]), float(gains[2])),
        )

    # ---------------------------------------------------------------- render
    def render(
        self,
        focus_um: float,
        *,
        pose: FramePose | None = None,
        noise_seed: int = 0,
        index: int = 0,
    ) -> RenderedFrame:
        """Render the frame a camera focused at ``focus_um`` would take.

        ``pose`` adds jitter and gains (see :meth:`random_pose`); ``noise_seed`` makes the
        sensor noise reproducible. The returned transform is exactly the one applied.
        """
        spec = self.spec
        pose = pose or FramePose()
        blurred = self._defocus(float(focus_um))
        transform = self.transform(focus_um, pose)
        image = self._project(blurred, transform)
        gains = np.asarray(pose.gains, dtype=np.float64)
        image = self._sensor(image, gains, noise_seed)
        encoded = None
        if spec.jpeg_quality is not None:
            encoded = encode_image(image, ".jpg", jpeg_quality=spec.jpeg_quality)
            decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
            if decoded is None:  # pragma: no cover - OpenCV decodes what it just encoded
                raise StackerError("synthetic scene: could not decode its own JPEG")
            image = decoded if spec.bit_depth == 8 else decoded.astype(np.uint16) * 257
        return RenderedFrame(
            image=image,
            transform=transform,
            gains=gains,
            focus_um=float(focus_um),
            index=index,
            encoded=encoded,
        )

    def _reference_view(self, canvas: np.ndarray) -> np.ndarray:
        mx, my = self._margin_x, self._margin_y
        return canvas[my : my + self.spec.height, mx : mx + self.spec.width]

    def _defocus(self, focus_um: float) -> np.ndarray:
        """The canvas as seen focused at ``focus_um`` (before geometry and sensor)."""
        spec = self.spec
        top = self._sigmas[-1]
        if top <= 0:
            return self._texture
        defocus = np.abs(self._depth - np.float32(focus_um))
        defocus *= np.float32(spec.blur_per_um)
        np.minimum(defocus, np.float32(spec.blur_cap), out=defocus)
        total = np.sqrt(defocus * defocus + np.float32(spec.optics_blur_px**2))
        q = np.minimum(total * np.float32((_LUT_SIZE - 1) / top), _LUT_SIZE - 1).astype(np.uint16)
        level = self._lut_level[q]
        upper = self._lut_weight[q]
        lower = np.float32(1.0) - upper
        out = np.zeros_like(self._light)
        share = np.empty(level.shape, np.float32)
        for j, sigma in enumerate(self._sigmas):
            # this level's share of each pixel: as the lower neighbour, or as the upper one
            share[...] = 0.0
            np.copyto(share, lower, where=level == j)
            if j > 0:
                np.copyto(share, upper, where=level == j - 1)
            if not share.any():
                continue
            out += _blur(self._light * share[..., None], sigma)
        return _to_dtype(out, spec.dtype)

    def _project(self, canvas: np.ndarray, transform: np.ndarray) -> np.ndarray:
        """Warp the canvas into the frame's geometry (crop only when the transform is identity)."""
        if np.allclose(transform, np.eye(3), atol=1e-12):
            return self._reference_view(canvas).copy()
        offset = np.array([[1.0, 0, -self._margin_x], [0, 1.0, -self._margin_y], [0, 0, 1.0]])
        m = (transform @ offset)[:2]
        return cv2.warpAffine(
            canvas,
            m,
            (self.spec.width, self.spec.height),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT_101,
        )

    def _sensor(self, image: np.ndarray, gains: np.ndarray, noise_seed: int) -> np.ndarray:
        """Apply per-channel gains and Gaussian sensor noise, rounding back to the dtype."""
        spec = self.spec
        sigma = spec.noise_sigma * (1.0 if spec.bit_depth == 8 else 257.0)
        if sigma == 0 and np.allclose(gains, 1.0):
            return image
        g = (float(gains[0]), float(gains[1]), float(gains[2]), 0.0)
        light = cv.multiply(image, g, dtype=cv2.CV_32F)
        if sigma > 0:
            # OpenCV's generator is thread-local and several times faster than numpy's here;
            # seeding it from (seed, frame) keeps every frame's noise reproducible.
            noise = np.empty(light.shape, np.float32)
            seed = int(np.random.default_rng([spec.seed, 2, noise_seed]).integers(1, 2**31 - 1))
            cv2.setRNGSeed(seed)
            cv.randn(noise.reshape(light.shape[0], -1), 0.0, sigma)
            cv2.add(light, noise, light)
        if spec.bit_depth == 8:
            return cv.convertScaleAbs(cv.max(light, 0.0))  # rounds and saturates at 255
        light += np.float32(0.5)
        np.clip(light, 0, 65535, out=light)
        return light.astype(np.uint16)


class SyntheticStack:
    """A focus stack through a :class:`SyntheticScene`, from near to far.

    Frame 0 is focused at ``near_um`` and defines the reference geometry (identity transform,
    unit gains); the others are spread evenly to ``far_um`` with random jitter and drift.
    """

    def __init__(
        self,
        spec: SceneSpec,
        n_frames: int,
        *,
        near_um: float = 0.0,
        far_um: float | None = None,
    ) -> None:
        if n_frames < 1:
            raise StackerError(f"synthetic stack: n_frames {n_frames} must be at least 1")
        far = spec.depth_um if far_um is None else float(far_um)
        self.spec = spec
        self.n_frames = int(n_frames)
        self.positions_um = np.linspace(float(near_um), far, self.n_frames)
        self.scene = SyntheticScene(spec, reference_focus_um=float(self.positions_um[0]))

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[RenderedFrame]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def frame(self, i: int) -> RenderedFrame:
        """Render frame ``i`` (0-based) with its jitter, drift and noise."""
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} is outside 0..{self.n_frames - 1}")
        return self.scene.render(
            float(self.positions_um[i]),
            pose=self.scene.random_pose(i),
            noise_seed=i,
            index=i,
        )

    def truth(self) -> np.ndarray:
        """All-in-focus image in the geometry of frame 0."""
        return self.scene.truth()

    def height_um(self) -> np.ndarray:
        """Depth (µm) at which each reference pixel is sharp."""
        return self.scene.height_um()

    def true_index(self) -> np.ndarray:
        """Per reference pixel, the (fractional) frame index at which it is sharp (float32).

        The depth mapped through the focus positions: 2.5 lies half-way between the focus
        positions of frames 2 and 3. Depths beyond the stack's ends clamp to its first or last
        frame. A depth map's error in frames is its distance from this.
        """
        frames = np.arange(self.n_frames, dtype=np.float64)
        if self.n_frames == 1:
            return np.zeros(self.height_um().shape, np.float32)
        return np.interp(self.height_um(), self.positions_um, frames).astype(np.float32)

    def transforms(self) -> list[np.ndarray]:
        """The reference-to-frame 3x3 transform of every frame, without rendering."""
        return [
            self.scene.transform(float(p), self.scene.random_pose(i))
            for i, p in enumerate(self.positions_um)
        ]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> SyntheticStack:
        """Rebuild the stack (and so its truth) from the sidecar :func:`write_stack` wrote."""
        path = Path(folder) / TRUTH_SIDECAR
        try:
            data = json.loads(path.read_text())
            spec = SceneSpec.from_json(data["spec"])
            return cls(spec, int(data["n_frames"]), near_um=data["near_um"], far_um=data["far_um"])
        except FileNotFoundError:
            raise StackerError(
                f"{path}: no synthetic-stack sidecar here; run write_stack"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise StackerError(f"{path}: not a valid synthetic-stack sidecar ({exc})") from None


def frame_name(i: int, ext: str = ".jpg") -> str:
    """File name of 0-based frame ``i``: ``frame_0001.jpg`` for frame 0 (sorts naturally)."""
    return f"frame_{i + 1:04d}{ext}"


def write_stack(
    folder: str | os.PathLike[str],
    spec: SceneSpec,
    n_frames: int,
    *,
    ext: str | None = None,
    jpeg_quality: int = 95,
    near_um: float = 0.0,
    far_um: float | None = None,
    encode: Callable[[RenderedFrame], bytes] | None = None,
) -> list[Path]:
    """Render a stack into ``folder`` as ``frame_0001.jpg``... plus a JSON truth sidecar.

    ``ext`` defaults to ``.jpg`` for 8-bit specs and ``.tif`` for 16-bit ones. JPEG frames use
    the spec's own ``jpeg_quality`` when it has one (the rendered bytes are written as they
    are), else ``jpeg_quality``. ``encode`` turns a rendered frame into the file's bytes for
    formats :func:`stacker.io.encode_image` does not write (RAW files). The sidecar holds the
    spec, focus positions, transforms and gains; the truth image itself is never written (it is
    recomputed from the spec).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ext = ext or (".jpg" if spec.bit_depth == 8 else ".tif")
    stack = SyntheticStack(spec, n_frames, near_um=near_um, far_um=far_um)
    paths: list[Path] = []
    frames_meta = []
    for frame in stack:
        path = out / frame_name(frame.index, ext)
        if encode is not None:
            data = encode(frame)
        elif frame.encoded is not None and ext.lower() in (".jpg", ".jpeg"):
            data = frame.encoded
        else:
            data = encode_image(frame.image, ext, jpeg_quality=jpeg_quality)
        atomic_write_bytes(path, data)
        paths.append(path)
        frames_meta.append(
            {
                "file": path.name,
                "focus_um": frame.focus_um,
                "transform": frame.transform.tolist(),
                "gains_bgr": frame.gains.tolist(),
            }
        )
    sidecar = {
        "spec": spec.to_json(),
        "n_frames": n_frames,
        "near_um": float(stack.positions_um[0]),
        "far_um": float(stack.positions_um[-1]),
        "transform_convention": "x_frame = T @ x_reference (pixel centres, 3x3 homogeneous)",
        "frames": frames_meta,
    }
    atomic_write_bytes(out / TRUTH_SIDECAR, (json.dumps(sidecar, indent=1) + "\n").encode())
    return paths


# --------------------------------------------------------------------------- scene building
def _margins(spec: SceneSpec, reference_focus_um: float) -> tuple[int, int]:
    """Canvas margin so any frame within the depth range shows real scene, not a border."""
    m_ref = 1.0 + spec.breathing * reference_focus_um / spec.depth_um
    m_lo = min(1.0, 1.0 + spec.breathing) / m_ref
    s_min = min(m_lo, 1.0 / m_ref, 1.0)
    hw, hh = spec.width / 2.0, spec.height / 2.0
    theta = math.radians(spec.rotation_deg)
    reach_x = (hw * math.cos(theta) + hh * math.sin(theta) + spec.jitter_px) / s_min
    reach_y = (hh * math.cos(theta) + hw * math.sin(theta) + spec.jitter_px) / s_min
    pad = 4 + 3 * math.ceil(spec.blur_cap)  # so edge blur samples scene, not mirror
    return math.ceil(reach_x - hw) + pad, math.ceil(reach_y - hh) + pad


def _ladder_sigmas(floor: float, cap: float) -> list[float]:
    """Sigmas from the optical floor to the largest total blur, about sqrt(2) apart."""
    top = math.hypot(floor, cap)
    sigmas = [floor]
    s = max(_LADDER_FIRST_SIGMA, floor * _LADDER_RATIO)
    while s < top * 0.999:
        sigmas.append(s)
        s *= _LADDER_RATIO
    if top > floor:
        sigmas.append(top)
    if len(sigmas) == 1:
        sigmas.append(floor)
    return sigmas


def _blur(light: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of float32 ``light``; large sigmas are applied at a reduced size."""
    if sigma < 0.05:
        return light.copy()
    h, w = light.shape[:2]
    factor = max(1, int(sigma / 1.5))
    if factor == 1:
        return cv2.GaussianBlur(light, (0, 0), sigma)
    small = cv2.resize(light, (max(1, round(w / factor)), max(1, round(h / factor))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    # Area averaging already blurred by a box of width `factor` (variance (f^2-1)/12).
    rest = math.sqrt(max(sigma**2 - (factor**2 - 1) / 12.0, 0.01)) / factor
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), rest), (w, h), interpolation=cv2.INTER_LINEAR)


def _to_dtype(light: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    top = 255.0 if dtype == np.uint8 else 65535.0
    return np.clip(light + 0.5, 0, top).astype(dtype)


def _ladder_lut(sigmas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """For each quantised sigma in [0, cap]: the lower ladder level and the blend weight.

    The weight matches variances: blending blurs a and b with weight w gives about
    (1-w) a^2 + w b^2, so w = (s^2 - a^2) / (b^2 - a^2).
    """
    cap = sigmas[-1]
    s = np.linspace(0.0, cap, _LUT_SIZE)
    ladder = np.asarray(sigmas)
    j = np.clip(np.searchsorted(ladder, s, side="right") - 1, 0, len(ladder) - 2)
    a, b = ladder[j], ladder[j + 1]
    denom = np.where(b > a, b**2 - a**2, 1.0)
    w = np.clip((s**2 - a**2) / denom, 0.0, 1.0)
    return j.astype(np.uint8), w.astype(np.float32)


def _smooth_noise(
    rng: np.random.Generator, w: int, h: int, cell: float, channels: int = 1
) -> np.ndarray:
    """Band-limited noise with features about ``cell`` pixels wide, unit-ish variance."""
    gw = max(2, math.ceil(w / cell) + 1)
    gh = max(2, math.ceil(h / cell) + 1)
    grid = rng.standard_normal((gh, gw, channels) if channels > 1 else (gh, gw))
    up = cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return up


def _build_scene(
    rng: np.random.Generator, w: int, h: int, spec: SceneSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Return (texture float32 BGR in 0..1, depth float32 µm) on a ``w`` x ``h`` canvas."""
    size = float(min(spec.width, spec.height))  # feature scale follows the reference view
    # Smooth colour gradients: a coarse grid of colours, interpolated.
    base = _smooth_noise(rng, w, h, size / 2.5, channels=3) * 0.12 + 0.42
    # Multi-octave luminance texture (fine to coarse), locally modulated in strength.
    detail = np.zeros((h, w), np.float32)
    for cell, amp in ((1.5, 0.55), (3.0, 0.5), (6.0, 0.45), (12.0, 0.4), (24.0, 0.35)):
        detail += _smooth_noise(rng, w, h, cell) * np.float32(amp)
    for cell, amp in ((size / 16, 0.5), (size / 6, 0.6)):
        detail += _smooth_noise(rng, w, h, cell) * np.float32(amp)
    strength = np.clip(_smooth_noise(rng, w, h, size / 4) * 0.5 + 0.6, 0.1, 1.0)
    detail *= strength * np.float32(0.07)
    tint = _smooth_noise(rng, w, h, 8.0, channels=3) * np.float32(0.02)
    texture = base + detail[:, :, None] + tint

    # Depth: smooth hills (physical height, 0..0.7) ...
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    height = np.zeros((h, w), np.float32)
    height += (xx / w - 0.5) * np.float32(rng.uniform(-0.3, 0.3))
    height += (yy / h - 0.5) * np.float32(rng.uniform(-0.3, 0.3))
    for _ in range(7):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sg = rng.uniform(0.15, 0.45) * size
        amp = rng.uniform(-0.5, 1.0)
        height += np.float32(amp) * np.exp(
            -((xx - cx) ** 2 + (yy - cy) ** 2) / np.float32(2 * sg * sg)
        )
    del xx, yy
    height -= height.min()
    height *= np.float32(0.7 / max(float(height.max()), 1e-6))

    # ... flat patches (uniform colour: only sensor noise can live there) ...
    for _ in range(3):
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h))
        axes = (int(rng.uniform(0.08, 0.16) * size), int(rng.uniform(0.06, 0.12) * size))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        colour = rng.uniform(0.2, 0.75, size=3).astype(np.float32)
        texture[mask > 0] = colour

    # ... copper traces and pen-like strokes drawn on the surface ...
    thick = max(1, round(size / 300))
    for _ in range(10):
        pts = [(rng.uniform(0, w), rng.uniform(0, h))]
        for _ in range(int(rng.integers(2, 5))):
            x, y = pts[-1]
            step = rng.uniform(0.05, 0.25) * size
            if rng.random() < 0.5:
                pts.append((x + rng.choice([-1, 1]) * step, y))
            else:
                pts.append((x, y + rng.choice([-1, 1]) * step))
        poly = np.array(pts, np.int32).reshape(-1, 1, 2)
        ink_mask = np.zeros((h, w), np.uint8)
        cv2.polylines(ink_mask, [poly], False, 255, thick + 1, cv2.LINE_AA)
        _paint(texture, ink_mask, (0.25, 0.55, 0.85))

    # ... and sharp-edged raised components with silkscreen text.
    for _ in range(spec.n_components):
        mask = np.zeros((h, w), np.uint8)
        cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
        bw, bh = rng.uniform(0.05, 0.2) * size, rng.uniform(0.04, 0.14) * size
        if rng.random() < 0.25:
            cv2.circle(mask, (int(cx), int(cy)), int(bh), 255, -1, cv2.LINE_8)
        else:
            box = cv2.boxPoints(((cx, cy), (bw, bh), float(rng.uniform(-25, 25))))
            cv2.fillPoly(mask, [box.astype(np.int32)], 255)
        kind = rng.random()
        body: tuple[float, float, float]
        if kind < 0.35:
            body, ink = (0.06, 0.06, 0.07), (0.92, 0.92, 0.9)  # black IC, white text
        elif kind < 0.6:
            body, ink = (0.9, 0.9, 0.88), (0.08, 0.08, 0.1)  # white part, black text
        else:
            rgb = rng.uniform(0.1, 0.9, size=3)
            body, ink = (float(rgb[0]), float(rgb[1]), float(rgb[2])), (0.95, 0.95, 0.95)
        inside = mask > 0
        texture[inside] = np.asarray(body, np.float32)
        # A faint matte texture so the top has something to focus on.
        texture[inside] += (detail[inside] * np.float32(0.25))[:, None]
        label = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVXYZ0123456789"), 5))
        scale = max(0.25, bh / 60.0)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (int(cx - tw / 2), int(cy + th / 2))
        ink_mask = np.zeros((h, w), np.uint8)
        cv2.putText(ink_mask, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
        _paint(texture, ink_mask, ink)
        raise_by = rng.uniform(0.08, 0.3)
        top = min(1.0, float(height[int(min(cy, h - 1)), int(min(cx, w - 1))]) + raise_by)
        height[inside] = np.float32(top)

    np.clip(texture, 0.0, 1.0, out=texture)
    height -= height.min()
    height *= np.float32(1.0 / max(float(height.max()), 1e-6))
    depth = (np.float32(1.0) - height) * np.float32(spec.depth_um)
    return texture, depth.astype(np.float32)


def _build_shapes(
    rng: np.random.Generator, w: int, h: int, spec: SceneSpec
) -> tuple[np.ndarray, np.ndarray]:
    """The ``"shapes"`` layout: (texture float32 BGR in 0..1, depth float32 µm).

    A colourful multi-octave texture on a tilted, gently curved surface in the far 45-100 % of
    the depth, then large flat shapes (ellipses, rectangles, polygons; many carry no texture at
    all) and glyphs in saturated colours, each at a single depth in front of the surface it
    covers, drawn back to front so nearer ones occlude farther ones.
    """
    size = float(min(spec.width, spec.height))
    texture = _smooth_noise(rng, w, h, size / 3.0, channels=3) * 0.18 + 0.45
    for cell, amp in ((1.5, 0.10), (3.0, 0.10), (6.0, 0.08), (12.0, 0.06)):
        texture += _smooth_noise(rng, w, h, cell, channels=3) * np.float32(amp)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    surface = (xx / w) * np.float32(rng.uniform(-0.6, 0.6)) + (yy / h) * np.float32(
        rng.uniform(-0.6, 0.6)
    )
    cx, cy, sg = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 0.6) * size
    surface += np.float32(rng.uniform(-0.5, 0.5)) * np.exp(
        -((xx - cx) ** 2 + (yy - cy) ** 2) / np.float32(2 * sg * sg)
    )
    del xx, yy
    surface -= surface.min()
    surface *= np.float32(0.55 / max(float(surface.max()), 1e-6))
    depth = (np.float32(0.45) + surface) * np.float32(spec.depth_um)
    shapes: list[tuple[float, np.ndarray, np.ndarray, bool]] = []
    for k in range(max(spec.n_components, 1)):
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.uniform(0.05, 0.95) * w), int(rng.uniform(0.05, 0.95) * h))
        glyph = k % 4 == 3
        if glyph:
            text = "".join(rng.choice(list("AEKMRSWXZ3458"), 2))
            scale = float(rng.uniform(0.006, 0.012) * size)
            weight = max(2, round(scale * 3))
            cv2.putText(mask, text, centre, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, weight,
                        cv2.LINE_AA)  # fmt: skip
        elif k % 4 == 0:
            axes = (int(rng.uniform(0.08, 0.22) * size), int(rng.uniform(0.06, 0.18) * size))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1,
                        cv2.LINE_AA)  # fmt: skip
        else:
            n = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(0.08, 0.22, n) * size
            pts = np.stack([centre[0] + radii * np.cos(angles),
                            centre[1] + radii * np.sin(angles)], axis=1)  # fmt: skip
            cv2.fillPoly(mask, [pts.astype(np.int32)], 255, cv2.LINE_AA)
        hue = [rng.integers(0, 180), rng.integers(170, 256), rng.integers(150, 256)]
        hsv = np.array([[hue]], np.uint8)
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) / 255.0
        # In front of the surface it covers (an occluder is nearer than what it hides); the
        # painting order below keeps nearer shapes over farther ones.
        under = float(depth[mask >= 128].min()) / spec.depth_um if (mask >= 128).any() else 0.45
        level = float(rng.uniform(0.0, 1.0)) * max(under - 0.05, 0.0)
        shapes.append((level, mask, colour, bool(rng.random() < 0.4)))
    for level, mask, colour, textured in sorted(shapes, key=lambda s: -s[0]):
        alpha = mask.astype(np.float32)[:, :, None] / np.float32(255.0)
        fill = np.broadcast_to(colour, texture.shape).copy()
        if textured:
            fill += _smooth_noise(rng, w, h, 3.0, channels=1)[:, :, None] * np.float32(0.04)
        texture += (fill - texture) * alpha
        depth[mask >= 128] = np.float32(level * spec.depth_um)
    np.clip(texture, 0.0, 1.0, out=texture)
    return texture.astype(np.float32), depth.astype(np.float32)


_LAYOUTS = {"board": _build_scene, "shapes": _build_shapes}


def _paint(texture: np.ndarray, coverage: np.ndarray, colour: tuple[float, float, float]) -> None:
    """Blend ``colour`` into ``texture`` in place where the 8-bit ``coverage`` mask is set."""
    x, y, bw, bh = cv2.boundingRect(coverage)
    if bw == 0 or bh == 0:
        return
    alpha = coverage[y : y + bh, x : x + bw].astype(np.float32)[:, :, None] / np.float32(255.0)
    roi = texture[y : y + bh, x : x + bw]
    roi += (np.asarray(colour, np.float32) - roi) * alpha
