"""Synthetic RAW files: Bayer-mosaic DNGs of the synthetic scene, from a camera known exactly.

No camera is needed to test the RAW path: every frame of a synthetic stack
(:class:`~rig.sim.scene.SyntheticStack`, rendered at 16 bits, taken as linear scene light
in linear sRGB primaries) is seen through a simple, exactly known camera and written as a CFA DNG
that LibRaw (and so rawpy) reads like a camera's own RAW file:

* **White balance**: camera RGB is scene light divided by the as-shot multipliers
  (:data:`WB_MULTIPLIERS`), so the raw data has the green cast of a real sensor and the DNG's
  AsShotNeutral is ``1 / multipliers``.
* **Colour matrix**: XYZ to camera RGB is the XYZ-to-linear-sRGB matrix (IEC 61966-2-1) followed
  by that division, so rendering with the DNG's ColorMatrix1 (D65) and AsShotNeutral gives the
  scene back.
* **Levels**: a 14-bit sensor, black at :data:`BLACK_LEVEL`, white at :data:`WHITE_LEVEL`.
* **Mosaic**: one colour per pixel in the chosen CFA layout (``RGGB``, ``BGGR``, ``GRBG`` or
  ``GBRG``), written with the DNG CFA tags (CFARepeatPatternDim, CFAPattern, CFAPlaneColor).
* **EXIF**: shutter, aperture, ISO, focal length and a capture time per frame, so carry-over of
  the reference frame's EXIF can be checked.

In linear light, what a correct RAW stack of these files gives back is the scene truth divided by
the multipliers: :func:`linear_truth`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rig.sim.scene import RenderedFrame, SceneSpec, SyntheticStack, write_stack
from stacker.dng import CFA, ColourProfile, ExtraTag, encode_dng, profile_tags
from stacker.errors import StackerError

XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
)
"""CIE XYZ (D65) to linear sRGB, IEC 61966-2-1."""

WB_MULTIPLIERS = (2.0, 1.0, 1.6)
"""As-shot white-balance multipliers (R, G, B) of the synthetic camera."""

CAMERA_SOFTWARE = "stackrig synthetic Bayer camera"
"""The frames' Software tag: not stackrig's own, so they are never taken for its results."""

BLACK_LEVEL = 512
WHITE_LEVEL = 16383
CFA_LAYOUTS = {
    "RGGB": (0, 1, 1, 2),
    "BGGR": (2, 1, 1, 0),
    "GRBG": (1, 0, 2, 1),
    "GBRG": (1, 2, 0, 1),
}
"""2x2 CFA layouts as DNG CFAPattern values (0 red, 1 green, 2 blue), row by row."""


def synthetic_profile() -> ColourProfile:
    """The colour profile of the synthetic camera (see the module docstring)."""
    wb = np.asarray(WB_MULTIPLIERS)
    matrix = np.diag(1.0 / wb) @ XYZ_TO_SRGB
    return ColourProfile(
        make="stackrig",
        model="Synthetic Bayer",
        color_matrix1=matrix,
        as_shot_neutral=(1.0 / wb[0], 1.0 / wb[1], 1.0 / wb[2]),
        exif=(
            (33434, 5, (1, 100)),  # ExposureTime 1/100 s
            (33437, 5, (8, 1)),  # FNumber f/8
            (34855, 3, 100),  # ISOSpeedRatings
            (37386, 5, (100, 1)),  # FocalLength 100 mm
            (42036, 2, "Synthetic Macro 100mm"),  # LensModel
        ),
    )


def mosaic(frame: np.ndarray, layout: str = "RGGB") -> np.ndarray:
    """The raw CFA plane a sensor would record for a 16-bit BGR ``frame`` of scene light."""
    if layout not in CFA_LAYOUTS:
        raise StackerError(f"CFA layout '{layout}' is not known: use {', '.join(CFA_LAYOUTS)}")
    if frame.dtype != np.uint16 or frame.ndim != 3:
        raise StackerError("synthetic RAW: frames must be 16-bit colour (SceneSpec bit_depth=16)")
    h, w = frame.shape[:2]
    plane = np.empty((h, w), np.float32)
    scale = (WHITE_LEVEL - BLACK_LEVEL) / 65535.0
    pattern = CFA_LAYOUTS[layout]
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        channel = frame[dy::2, dx::2, 2 - colour].astype(np.float32)
        plane[dy::2, dx::2] = channel * np.float32(scale / WB_MULTIPLIERS[colour])
    plane += BLACK_LEVEL + 0.5
    return np.clip(plane, 0, WHITE_LEVEL).astype(np.uint16)


def encode_bayer_dng(
    frame: np.ndarray, layout: str = "RGGB", *, capture_time: str = "2026:01:01 12:00:00"
) -> bytes:
    """A CFA DNG of the synthetic camera seeing the 16-bit BGR ``frame``."""
    plane = mosaic(frame, layout)
    cfa_tags: list[ExtraTag] = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, CFA_LAYOUTS[layout], True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
    ]
    profile = synthetic_profile()
    return encode_dng(
        plane,
        profile_tags(profile) + cfa_tags,
        photometric=CFA,
        software=CAMERA_SOFTWARE,
        black=(BLACK_LEVEL,),
        white=(WHITE_LEVEL,),
        exif=(*profile.exif, (36867, 2, capture_time)),  # DateTimeOriginal
    )


def write_raw_stack(
    folder: str | os.PathLike[str],
    spec: SceneSpec,
    n_frames: int,
    *,
    layout: str = "RGGB",
    near_um: float = 0.0,
    far_um: float | None = None,
) -> list[Path]:
    """Render a stack into ``folder`` as Bayer DNGs ``frame_0001.dng``... plus the truth sidecar."""
    if spec.bit_depth != 16:
        raise StackerError("synthetic RAW stacks need a 16-bit scene: SceneSpec(bit_depth=16)")
    if layout not in CFA_LAYOUTS:
        raise StackerError(f"CFA layout '{layout}' is not known: use {', '.join(CFA_LAYOUTS)}")

    def encode(frame: RenderedFrame) -> bytes:
        second = frame.index % 60
        return encode_bayer_dng(frame.image, layout, capture_time=f"2026:01:01 12:00:{second:02d}")

    return write_stack(folder, spec, n_frames, ext=".dng", near_um=near_um, far_um=far_um,
                       encode=encode)  # fmt: skip


def linear_truth(stack: SyntheticStack) -> np.ndarray:
    """The all-in-focus truth as linear camera RGB (BGR order, float32, 65535 = white level)."""
    truth = stack.truth().astype(np.float32)
    wb_bgr = np.array(WB_MULTIPLIERS[::-1], dtype=np.float32)
    return truth / wb_bgr
