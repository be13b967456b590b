"""Glow scenes: saturated shapes and glyphs over a background at another depth, and their scores.

Where a saturated object sits on a differently focused background, every frame focused on the
background spreads the object's colour into the surround. A merge that takes its coarse bands
or its base from those frames (or from the mean of all frames) keeps a haze of that colour
around the object: *glow*. The circuit-board scene of :mod:`rig.sim.scene` seldom provokes
it (its colours are muted and its depth steps small), so this family is built to:

* strongly saturated shapes (discs, boxes, triangles, rings) and thick glyphs, all within a
  thin slab near the front of the scene (0 to 12 % of ``depth_um``);
* behind them, from 80 to 100 % of ``depth_um``, either a colourful multi-octave texture
  (``background="textured"``) or plain black (``background="black"``, where any haze shows);
* large defocus: Gaussian sigma up to ``max_blur_px`` (12 px by default: a lens's defocus disc
  of radius 18 px has a sigma of 9 px);
* either defocus model (``defocus``): ``"scatter"``, each scene point spreading its own light (a
  real lens; a defocused object's colour spills over the sharp background behind it), or
  ``"gather"``, each pixel blurred by its own depth's sigma (cheap renderers; the object's edge
  stays put and only its inside mixes with the background);
* the breathing, jitter, exposure and white-balance drift, noise and JPEG of
  :class:`rig.sim.scene.SceneSpec` (OpenCV's JPEG encoder subsamples chroma 4:2:0, as
  cameras do).

The scene's *glow band* (:meth:`GlowScene.glow_band`: the ring of background pixels around the
saturated objects where haze lands) is scored on its own by ``benchmarks/bench_glow.py`` and the
tests, with :func:`evaluation.scoring.fitted_psnr`; :func:`evaluation.scoring.perfect_choice` is
the best that choosing one frame per pixel can do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rig.sim.scene import (
    TRUTH_SIDECAR,
    SceneSpec,
    SyntheticScene,
    SyntheticStack,
    _blur,
    _smooth_noise,
    _to_dtype,
    frame_name,
)
from stacker.errors import StackerError
from stacker.io import atomic_write_bytes

BACKGROUNDS = ("textured", "black")
DEFOCUS_MODELS = ("scatter", "gather")
FRONT = (0.0, 0.12)  # depth range of the objects, as a share of depth_um
BACK = (0.8, 1.0)  # depth range of the background


@dataclass(frozen=True)
class GlowSpec(SceneSpec):
    """A :class:`rig.sim.scene.SceneSpec` for the glow family (see the module docstring).

    ``n_components`` is the number of saturated shapes and glyphs. Unless ``blur_px_per_um``
    is given, the defocus sigma grows linearly to ``max_blur_px`` at a focus error of
    ``depth_um``.
    """

    width: int = 1500
    height: int = 1000
    depth_um: float = 2000.0
    max_blur_px: float | None = 12.0
    jpeg_quality: int | None = 92
    n_components: int = 22
    background: str = "textured"
    defocus: str = "scatter"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.background not in BACKGROUNDS:
            raise StackerError(
                f"glow scene: background {self.background!r}: use one of {', '.join(BACKGROUNDS)}"
            )
        if self.defocus not in DEFOCUS_MODELS:
            raise StackerError(
                f"glow scene: defocus {self.defocus!r}: use one of {', '.join(DEFOCUS_MODELS)}"
            )

    @property
    def blur_per_um(self) -> float:
        """Defocus sigma per micrometre: ``max_blur_px`` reached at a focus error of depth_um."""
        if self.blur_px_per_um is not None:
            return float(self.blur_px_per_um)
        cap = 12.0 if self.max_blur_px is None else float(self.max_blur_px)
        return cap / self.depth_um


class GlowScene(SyntheticScene):
    """The scene of a :class:`GlowSpec`; renders like :class:`rig.sim.scene.SyntheticScene`
    (same geometry, sensor and truth conventions) with the glow layout and either defocus
    model."""

    spec: GlowSpec

    def __init__(self, spec: GlowSpec, *, reference_focus_um: float = 0.0) -> None:
        super().__init__(spec, reference_focus_um=reference_focus_um)

    def _layout(
        self, rng: np.random.Generator, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The objects over the background; both layers are kept for the glow's haze."""
        spec = self.spec
        layers = _build_glow_scene(rng, width, height, spec)
        top = 255.0 if spec.bit_depth == 8 else 65535.0
        back, front, alpha = layers.back, layers.front, layers.alpha[..., None]
        self._layers = layers
        self._back_light = back * np.float32(top)
        self._front_light = np.concatenate([front * alpha, alpha], axis=2) * np.float32(top)
        self._objects = np.where(layers.alpha >= 0.5, 255, 0).astype(np.uint8)
        texture = back * (np.float32(1.0) - alpha) + front * alpha
        return texture, np.where(layers.alpha > 0, layers.front_depth, layers.back_depth)

    def objects(self) -> np.ndarray:
        """Boolean mask (reference geometry) of the saturated shapes and glyphs."""
        return self._reference_view(self._objects).copy() > 0

    def glow_band(self, *, inner_px: int = 2, outer_px: int | None = None) -> np.ndarray:
        """Boolean mask of the background ring around the objects where their haze lands.

        Pixels outside every object, farther than ``inner_px`` from one (the edge itself is
        about sharpness, not glow) and at most ``outer_px`` away (default twice the largest
        defocus sigma, where a Gaussian spill has fallen to about 2 %).
        """
        outer = outer_px if outer_px is not None else math.ceil(2 * self.spec.blur_cap)
        objects = self._reference_view(self._objects)
        outside = cv2.distanceTransform(
            np.where(objects > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 5
        )
        return (outside > inner_px) & (outside <= outer)

    def _defocus(self, focus_um: float) -> np.ndarray:
        """The canvas seen focused at ``focus_um``, by the spec's defocus model.

        ``scatter``: each layer's points spread their own light (Gaussian of their own sigma),
        and the front layer, blurred with its coverage, occludes the back one (the two-layer
        thin-lens model; Asada, Fujiwara & Matsuyama, "Seeing behind the scene", 1998). The
        object in focus is exact; a defocused one spreads its colour over the background and
        half hides it. ``gather``: each pixel of the composited scene is blurred by its own
        depth's sigma.
        """
        if self.spec.defocus == "gather":
            out = np.zeros_like(self._light)
            for sigma, share in self._shares(self._depth, focus_um):
                out += _blur(self._light, sigma) * share[..., None]
            return _to_dtype(out, self.spec.dtype)
        back = self._scatter(self._back_light, self._layers.back_depth, focus_um)
        front = self._scatter(self._front_light, self._layers.front_depth, focus_um)
        top = np.float32(255.0 if self.spec.bit_depth == 8 else 65535.0)
        cover = np.minimum(front[..., 3:], top) / top
        return _to_dtype(back * (np.float32(1.0) - cover) + front[..., :3], self.spec.dtype)

    def _scatter(self, light: np.ndarray, depth: np.ndarray, focus_um: float) -> np.ndarray:
        out = np.zeros_like(light)
        for sigma, share in self._shares(depth, focus_um):
            out += _blur(light * share[..., None], sigma)
        return out

    def _shares(self, depth: np.ndarray, focus_um: float) -> Iterator[tuple[float, np.ndarray]]:
        """(sigma, per-pixel share) of every ladder level used at this focus: each pixel's
        total blur (defocus and the lens's own) split between the two nearest ladder sigmas."""
        spec = self.spec
        defocus = np.abs(depth - np.float32(focus_um)) * np.float32(spec.blur_per_um)
        np.minimum(defocus, np.float32(spec.blur_cap), out=defocus)
        total = np.sqrt(defocus * defocus + np.float32(spec.optics_blur_px**2))
        lut_size = len(self._lut_level)
        q = np.minimum(total * np.float32((lut_size - 1) / self._sigmas[-1]), lut_size - 1)
        index = q.astype(np.uint16)
        level, upper = self._lut_level[index], self._lut_weight[index]
        for j, sigma in enumerate(self._sigmas):
            share = np.where(level == j, np.float32(1.0) - upper, np.float32(0.0))
            if j > 0:
                share += np.where(level == j - 1, upper, np.float32(0.0))
            if share.any():
                yield sigma, share


class GlowStack(SyntheticStack):
    """A focus stack through a :class:`GlowScene`, near to far (see
    :class:`rig.sim.scene.SyntheticStack`)."""

    scene: GlowScene

    def __init__(self, spec: GlowSpec, n_frames: int) -> None:
        if n_frames < 2:
            raise StackerError(f"glow stack: n_frames {n_frames} must be at least 2")
        self.spec = spec
        self.n_frames = int(n_frames)
        self.positions_um = np.linspace(0.0, spec.depth_um, self.n_frames)
        self.scene = GlowScene(spec, reference_focus_um=0.0)

    def objects(self) -> np.ndarray:
        """See :meth:`GlowScene.objects`."""
        return self.scene.objects()

    def glow_band(self, **kw: int) -> np.ndarray:
        """See :meth:`GlowScene.glow_band`."""
        return self.scene.glow_band(**kw)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> GlowStack:
        """Rebuild the stack written by :func:`write_glow_stack` (its truth included)."""
        path = Path(folder) / TRUTH_SIDECAR
        try:
            data = json.loads(path.read_text())
            return cls(GlowSpec(**data["spec"]), int(data["n_frames"]))
        except FileNotFoundError:
            raise StackerError(f"{path}: no sidecar here; run write_glow_stack") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise StackerError(f"{path}: not a valid glow-stack sidecar ({exc})") from None


def write_glow_stack(folder: str | os.PathLike[str], stack: GlowStack) -> list[Path]:
    """Write ``stack`` into ``folder`` as ``frame_0001.jpg``... (the rendered JPEG bytes) and
    a truth sidecar in the format of :func:`rig.sim.scene.write_stack`."""
    if stack.spec.jpeg_quality is None:
        raise StackerError("write_glow_stack: the spec needs a jpeg_quality")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths, meta = [], []
    for frame in stack:
        assert frame.encoded is not None  # the spec asks for JPEG
        path = out / frame_name(frame.index)
        atomic_write_bytes(path, frame.encoded)
        paths.append(path)
        meta.append(
            {
                "file": path.name,
                "focus_um": frame.focus_um,
                "transform": frame.transform.tolist(),
                "gains_bgr": frame.gains.tolist(),
            }
        )
    sidecar = {
        "spec": stack.spec.to_json(),
        "n_frames": stack.n_frames,
        "frames": meta,
        "transform_convention": "x_frame = T @ x_reference (pixel centres, 3x3)",
    }
    atomic_write_bytes(out / TRUTH_SIDECAR, (json.dumps(sidecar, indent=1) + "\n").encode())
    return paths


# ----------------------------------------------------------------------------- the layout
_PALETTE = np.array(
    [  # B, G, R in 0..1: strongly saturated, kept below clipping (exposure drift is +-3 %)
        (0.06, 0.06, 0.92),
        (0.05, 0.85, 0.10),
        (0.92, 0.25, 0.04),
        (0.05, 0.82, 0.92),
        (0.88, 0.05, 0.88),
        (0.90, 0.85, 0.05),
        (0.04, 0.45, 0.95),
        (0.60, 0.05, 0.40),
        (0.95, 0.92, 0.92),
    ],
    np.float32,
)
_GLYPHS = list("ABEGKMRSWZ23589&#@")


def _background(rng: np.random.Generator, w: int, h: int, spec: GlowSpec) -> np.ndarray:
    """Colourful multi-octave texture (0..1 BGR), or black."""
    if spec.background == "black":
        return np.full((h, w, 3), 0.02, np.float32)
    size = float(min(spec.width, spec.height))
    base = _smooth_noise(rng, w, h, size / 4, channels=3) * np.float32(0.14) + np.float32(0.45)
    detail = np.zeros((h, w), np.float32)
    for cell, amp in ((1.5, 0.5), (3.0, 0.5), (6.0, 0.45), (12.0, 0.4), (size / 20, 0.4)):
        detail += _smooth_noise(rng, w, h, cell) * np.float32(amp)
    colour = _smooth_noise(rng, w, h, 5.0, channels=3) * np.float32(0.05)
    return base + detail[..., None] * np.float32(0.08) + colour


def _draw_object(rng: np.random.Generator, w: int, h: int, size: float) -> np.ndarray:
    """Anti-aliased coverage (uint8) of one random shape or glyph group."""
    cov = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
    r = rng.uniform(0.03, 0.09) * size
    kind = int(rng.integers(0, 5))
    centre = (int(cx), int(cy))
    if kind == 0:
        cv2.circle(cov, centre, int(r), 255, -1, cv2.LINE_AA)
    elif kind == 1:
        box = cv2.boxPoints(((cx, cy), (2 * r, r * rng.uniform(0.6, 1.6)), rng.uniform(0, 90)))
        cv2.fillPoly(cov, [np.round(box).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == 2:
        ang = rng.uniform(0, 2 * math.pi) + np.array([0.0, 2.1, 4.2])
        pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], axis=1)
        cv2.fillPoly(cov, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == 3:
        cv2.circle(cov, centre, int(r), 255, max(2, int(r / 3)), cv2.LINE_AA)
    else:
        text = "".join(rng.choice(_GLYPHS, int(rng.integers(1, 4))))
        scale = r / 14.0
        thick = max(2, int(r / 7))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
        org = (int(cx - tw / 2), int(cy + th / 2))
        cv2.putText(cov, text, org, cv2.FONT_HERSHEY_DUPLEX, scale, 255, thick, cv2.LINE_AA)
    return cov


@dataclass
class _Layers:
    """The two layers of a glow scene on the canvas (colours 0..1 BGR, depths in µm)."""

    back: np.ndarray
    back_depth: np.ndarray
    front: np.ndarray
    front_depth: np.ndarray
    alpha: np.ndarray  # coverage of the front layer, 0..1


def _build_glow_scene(rng: np.random.Generator, w: int, h: int, spec: GlowSpec) -> _Layers:
    """Background texture and depth, and the front layer of saturated objects."""
    size = float(min(spec.width, spec.height))
    back = np.clip(_background(rng, w, h, spec), 0.0, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tilt = (xx / w - 0.5) * np.float32(rng.uniform(-1, 1)) + (yy / h - 0.5) * np.float32(
        rng.uniform(-1, 1)
    )
    far = tilt + _smooth_noise(rng, w, h, size / 2) * np.float32(0.3)
    far -= far.min()
    far /= max(float(far.max()), 1e-6)
    back_depth = (BACK[0] + (BACK[1] - BACK[0]) * far) * np.float32(spec.depth_um)
    front = np.zeros((h, w, 3), np.float32)
    front_depth = np.zeros((h, w), np.float32)
    alpha = np.zeros((h, w), np.float32)
    matte = _smooth_noise(rng, w, h, 3.0) * np.float32(0.03)
    for _ in range(spec.n_components):
        cov = _draw_object(rng, w, h, size).astype(np.float32) / np.float32(255.0)
        colour = _PALETTE[int(rng.integers(0, len(_PALETTE)))]
        body = np.clip(colour + matte[..., None], 0.0, 1.0)  # a faint matte texture to focus on
        # "over" compositing within the front layer: the new object on top
        new_alpha = cov + alpha * (np.float32(1.0) - cov)
        premult = body * cov[..., None] + front * (alpha * (np.float32(1.0) - cov))[..., None]
        front = premult / np.maximum(new_alpha, np.float32(1e-6))[..., None]
        alpha = new_alpha
        front_depth[cov > 0] = np.float32(rng.uniform(*FRONT) * spec.depth_um)
    return _Layers(back, back_depth.astype(np.float32), front, front_depth, alpha)
