"""RAW frames in linear light, their colour profile, and rendering them for display formats.

RAW files are decoded by LibRaw through rawpy (the ``raw`` extra) into **linear** 16-bit camera
RGB: no gamma, no automatic brightening, no white balance (unit multipliers) and no colour-space
conversion, with LibRaw's data-dependent white-point adjustment turned off, so every frame of a
stack maps ``(raw - black) / (white - black)`` to ``0..65535`` the same way. Stacks merge in
this linear light (registration works on a gamma-encoded luma copy, see
:class:`stacker.stack.Stacker`).

The composite then goes either into a linear DNG (:mod:`stacker.dng`) with the reference frame's
colour profile, so white balance and tone are decided once in the RAW editor, or through
:func:`render` (as-shot white balance, camera-to-sRGB matrix, sRGB curve) into a JPEG, PNG or
TIFF. Frames come out of LibRaw upright (its orientation applied), so the DNG says upright too.
"""

from __future__ import annotations

import functools
import io
import logging
import numbers
import os
from collections.abc import Callable
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stacker.dng import ILLUMINANTS, ColourProfile, ExifEntry, write_linear_dng
from stacker.errors import StackerError, UnreadableImageError
from stacker.raw_exif import container_tags

log = logging.getLogger(__name__)

XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
)
"""CIE XYZ (D65) to linear sRGB, IEC 61966-2-1."""

_EXIF_TYPES = {
    33434: 5,  # ExposureTime
    33437: 5,  # FNumber
    34850: 3,  # ExposureProgram
    34855: 3,  # ISOSpeedRatings
    36867: 2,  # DateTimeOriginal
    36868: 2,  # DateTimeDigitized
    37380: 10,  # ExposureBiasValue
    37383: 3,  # MeteringMode
    37385: 3,  # Flash
    37386: 5,  # FocalLength
    42033: 2,  # BodySerialNumber
    42035: 2,  # LensMake
    42036: 2,  # LensModel
}
"""The EXIF tags a stacked DNG carries over from its reference frame, with their TIFF types."""

_STRIP_ROWS = 256


def has_rawpy() -> bool:
    """Whether the 'raw' extra (rawpy) is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec("rawpy") is not None


def _rawpy() -> Any:
    try:
        import rawpy
    except ImportError:
        raise StackerError("RAW files need the 'raw' extra: pip install 'stackrig[raw]'") from None
    return rawpy


def read_raw_linear(
    path: str | os.PathLike[str], *, data: bytes | None = None, flip: int | None = None
) -> np.ndarray:
    """Decode a RAW file into linear camera RGB: BGR ``uint16``, 0 black, 65535 white level.

    With ``data`` (the file's bytes, already read) the file is not opened; ``path`` names it.
    The file's own orientation is applied, or with ``flip`` that one (LibRaw's code, as
    :func:`raw_flip` gives it) instead.
    """
    p = Path(path)
    try:
        rawpy = _rawpy()
    except StackerError as exc:
        raise UnreadableImageError(f"{p}: {exc}") from None
    try:
        with _imread(rawpy, p) if data is None else rawpy.imread(io.BytesIO(data)) as raw:
            rgb = raw.postprocess(
                gamma=(1, 1),
                no_auto_bright=True,
                output_bps=16,
                use_camera_wb=False,
                use_auto_wb=False,
                user_wb=[1.0, 1.0, 1.0, 1.0],
                output_color=rawpy.ColorSpace.raw,
                adjust_maximum_thr=0.0,
                user_flip=-1 if flip is None else flip,
            )
    except Exception as exc:
        raise UnreadableImageError(f"{p}: not a readable RAW file ({_reason(exc)})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb)  # in place: no second frame in memory


FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
"""LibRaw's orientation codes (dcraw's ``flip``) as EXIF orientations."""


def raw_flip(path: str | os.PathLike[str]) -> int:
    """The orientation LibRaw applies to the RAW file at ``path`` (its ``flip`` code; see
    :data:`FLIP_TO_EXIF`), read from the file's metadata without decoding it."""
    p = Path(path)
    try:
        with _imread(_rawpy(), p) as raw:
            return int(raw.sizes.flip)
    except StackerError as exc:
        raise UnreadableImageError(f"{p}: {exc}") from None
    except Exception as exc:
        raise UnreadableImageError(f"{p}: not a readable RAW file ({_reason(exc)})") from None


def _imread(rawpy: Any, path: Path) -> Any:
    """rawpy's reader of the RAW file at ``path``. rawpy encodes a path as UTF-8, which a name
    that is not UTF-8 (a card or a share written on another system; Python keeps its bytes as
    surrogates) cannot be, so such a file is handed over open instead (LibRaw then reads it
    whole, as it reads a frame given as bytes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        with path.open("rb") as fh:
            return rawpy.imread(fh)
    return rawpy.imread(str(path))


def _reason(exc: Exception) -> str:
    """LibRaw's reason, readable: rawpy's errors carry it as bytes (``b'Input/output error'``)."""
    args = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    return "; ".join(args) or type(exc).__name__


def read_profile(path: str | os.PathLike[str]) -> ColourProfile:
    """The colour profile and EXIF of a RAW file, for its stacked DNG or its rendering.

    DNG files give their own ColorMatrix1/2, illuminants, AsShotNeutral and BaselineExposure;
    other RAW files give LibRaw's matrix for the camera (D65) and the as-shot multipliers (and
    no BaselineExposure: Adobe keeps its own per camera, LibRaw has none). Make, model, artist,
    copyright and EXIF come from the TIFF structure where the format has one (NEF, CR2, ARW,
    DNG...), from the EXIF that CR3 and RAF files hold in their own containers
    (:mod:`stacker.raw_exif`), else from LibRaw.
    """
    p = Path(path)
    rawpy = _rawpy()
    try:
        with _imread(rawpy, p) as raw:
            wb = np.array(raw.camera_whitebalance[:3], dtype=np.float64)
            if not np.all(wb > 0):
                wb = np.array(raw.daylight_whitebalance[:3], dtype=np.float64)
            matrix = np.array(raw.rgb_xyz_matrix[:3], dtype=np.float64)
            libraw_exif = _libraw_exif(raw)
    except Exception as exc:
        raise StackerError(
            f"{p}: cannot read the RAW file's colour profile ({_reason(exc)})"
        ) from None
    tags, exif_ifd = _tiff_tags(p)
    if not tags:  # CR3, RAF: their own containers, which tifffile cannot read
        tags, exif_ifd = container_tags(p)
        exif_ifd = {k: v for k, v in exif_ifd.items() if k in _EXIF_TYPES}
    neutral = wb[1] / wb if np.all(wb > 0) else np.ones(3)
    kwargs: dict[str, Any] = {}
    if 50721 in tags:  # a DNG: its own matrices and neutral are the truth
        matrix = _matrix(tags[50721], p, 50721)
        kwargs["illuminant1"] = _whole(tags.get(50778, ILLUMINANTS["D65"]), p, 50778)
        if 50722 in tags and 50779 in tags:
            kwargs.update(color_matrix2=_matrix(tags[50722], p, 50722),
                          illuminant2=_whole(tags[50779], p, 50779))  # fmt: skip
        if 50728 in tags:
            neutral = np.array(_floats(tags[50728], p, 50728))
        exposure = _floats(tags.get(50730, ()), p, 50730)
        if len(exposure) == 1 and np.isfinite(exposure[0]):
            kwargs["baseline_exposure"] = exposure[0]
    if neutral.shape != (3,) or not np.all(np.isfinite(neutral) & (neutral > 0)):
        neutral = np.ones(3)  # an as-shot neutral with a zero is no white balance to apply
    if not _usable_matrix(matrix):  # none for this camera (LibRaw), or singular: RGB as sRGB
        matrix = np.linalg.inv(XYZ_TO_SRGB)
    exif = _exif_entries(exif_ifd | {k: v for k, v in tags.items() if k in _EXIF_TYPES})
    return ColourProfile(
        make=str(tags.get(271, "")).strip(),
        model=str(tags.get(272, "")).strip(),
        unique_model=str(tags.get(50708, "")).strip(),
        artist=_text(tags.get(315)),
        copyright=_text(tags.get(33432)),
        color_matrix1=matrix,
        as_shot_neutral=(float(neutral[0]), float(neutral[1]), float(neutral[2])),
        exif=exif or libraw_exif,
        **kwargs,
    )


def _tiff_tags(path: Path) -> tuple[dict[int, Any], dict[int, Any]]:
    """IFD0 tags by code, and the EXIF IFD's by code; empty for RAW formats that are not TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = {t.code: t.value for t in tif.pages[0].tags.values()}
    except Exception:
        return {}, {}
    names = {name: code for code, name in tifffile.TIFF.TAGS.items() if code in _EXIF_TYPES}
    exif = ifd0.pop(34665, None)
    if not isinstance(exif, dict):
        return ifd0, {}
    return ifd0, {names[k]: v for k, v in exif.items() if k in names}


def _text(value: Any) -> str:
    """An ASCII tag's value as text, without the NULs and blanks that pad it ("" for none)."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip("\0 ")


def _usable_matrix(matrix: np.ndarray) -> bool:
    """Whether :func:`camera_to_srgb` can invert colour matrix ``matrix``: finite, no row of
    camera-from-sRGB summing to zero (rows are scaled by their sums), and not singular."""
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        return False
    cam_from_srgb = matrix @ np.linalg.inv(XYZ_TO_SRGB)
    sums = cam_from_srgb.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums) < 1e-9):
        return False
    return bool(np.linalg.cond(cam_from_srgb / sums) < 1e12)


def _damaged(path: Path, code: int) -> StackerError:
    """The one-line error for a DNG colour tag that does not hold what its kind says."""
    return StackerError(
        f"{path}: DNG tag {code} is damaged (not the numbers it should hold); "
        "stack with another --reference frame"
    )


def _whole(value: Any, path: Path, code: int) -> int:
    """A single integer tag value (an illuminant) of the file at ``path``; a one-line error
    naming the file and tag for anything else (a damaged file gives several, or text)."""
    if not isinstance(value, numbers.Integral):
        raise _damaged(path, code)
    return int(value)


def _floats(value: Any, path: Path, code: int) -> list[float]:
    """A tifffile (S)RATIONAL array value, flat numerator/denominator pairs, as floats; a
    one-line error naming the file and tag when it holds no such pairs (a damaged file: an odd
    count, text, a single number)."""
    flat = list(value) if isinstance(value, (tuple, list, np.ndarray)) else [value]
    if len(flat) % 2 or not all(isinstance(v, numbers.Real) for v in flat):
        raise _damaged(path, code)
    return [flat[i] / flat[i + 1] if flat[i + 1] else 0.0 for i in range(0, len(flat), 2)]


def _matrix(value: Any, path: Path, code: int) -> np.ndarray:
    """A DNG colour matrix tag of the file at ``path`` as 3x3; a one-line error naming the file
    for any other size (a four-colour sensor's)."""
    values = _floats(value, path, code)
    if len(values) != 9:
        raise StackerError(
            f"{path}: colour matrix with {len(values)} values: only 3-colour RAWs are known"
        )
    return np.array(values).reshape(3, 3)


def _integers(values: list[Any]) -> bool:
    """Whether ``values`` are all integers: an EXIF tag of a damaged file (no value, text where
    a number belongs) is left out of the result rather than stopping it."""
    return all(isinstance(v, numbers.Integral) for v in values)


def _exif_entries(values: dict[int, Any]) -> tuple[ExifEntry, ...]:
    out: list[ExifEntry] = []
    for code, value in sorted(values.items()):
        kind = _EXIF_TYPES[code]
        if kind == 2:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if text.strip("\0 "):
                out.append((code, kind, text.strip("\0 ")))
        elif kind in (5, 10):
            flat = list(value) if isinstance(value, (tuple, list)) else [value, 1]
            if len(flat) >= 2 and _integers(flat[:2]):
                out.append((code, kind, (int(flat[0]), int(flat[1]))))
        else:
            first = value[0] if isinstance(value, (tuple, list)) and value else value
            if _integers([first]):
                out.append((code, kind, int(first)))
    return tuple(out)


def _libraw_exif(raw: Any) -> tuple[ExifEntry, ...]:
    """Exposure EXIF as LibRaw reports it, for RAW formats whose EXIF was not found (none
    before rawpy 0.27, which has no ``other`` nor ``lens``)."""
    other = getattr(raw, "other", None)
    if other is None:
        return ()
    out: list[ExifEntry] = []
    for code, number in ((33434, other.shutter_speed), (33437, other.aperture),
                         (37386, other.focal_length)):  # fmt: skip
        if number and number > 0:
            f = Fraction(float(number)).limit_denominator(100_000)
            out.append((code, 5, (f.numerator, f.denominator)))
    if other.iso_speed and other.iso_speed > 0:
        out.append((34855, 3, min(round(other.iso_speed), 65535)))
    stamp = other.timestamp
    if isinstance(stamp, datetime) and stamp.year > 1970:
        out.append((36867, 2, stamp.strftime("%Y:%m:%d %H:%M:%S")))
    if raw.lens.model:
        out.append((42036, 2, str(raw.lens.model)))
    return tuple(out)


_KELVIN = {
    1: 5500, 2: 4150, 3: 2850, 4: 5500, 9: 5500, 10: 6500, 11: 7500, 12: 6430, 13: 5000,
    14: 4150, 15: 3450, 16: 2940, 17: 2856, 18: 4874, 19: 6774, 20: 5503, 21: 6504, 22: 7504,
    23: 5003, 24: 3200,
}  # fmt: skip
"""Correlated colour temperature of the EXIF LightSource codes a CalibrationIlluminant holds."""


def _cct(xyz: np.ndarray) -> float:
    """Correlated colour temperature of CIE XYZ ``xyz`` (McCamy's approximation)."""
    x, y = xyz[0] / xyz.sum(), xyz[1] / xyz.sum()
    n = (x - 0.3320) / (0.1858 - y)
    return float(np.clip(449.0 * n**3 + 3525.0 * n**2 + 6823.3 * n + 5520.33, 1500.0, 50000.0))


def colour_matrix(profile: ColourProfile) -> np.ndarray:
    """The XYZ-to-camera matrix for the as-shot light.

    A camera's DNG usually holds two (Standard Light A and D65). The DNG specification (chapter
    6, "Mapping Camera Color Space to CIE XYZ Space") interpolates them linearly in inverse
    correlated colour temperature of the white balance, found by iteration since the white's
    XYZ depends on the matrix. With one matrix, or illuminants of unknown temperature, it is
    ColorMatrix1.
    """
    m1 = np.asarray(profile.color_matrix1, dtype=np.float64)
    t1, t2 = _KELVIN.get(profile.illuminant1), _KELVIN.get(profile.illuminant2 or 0)
    if profile.color_matrix2 is None or t1 is None or t2 is None or t1 == t2:
        return m1
    m2 = np.asarray(profile.color_matrix2, dtype=np.float64)
    if not _usable_matrix(m2):
        return m1
    neutral = np.asarray(profile.as_shot_neutral, dtype=np.float64)
    weight = 0.5  # of ColorMatrix1
    try:
        for _ in range(50):
            xyz = np.linalg.solve(weight * m1 + (1 - weight) * m2, neutral)
            if xyz.sum() <= 0 or not np.all(np.isfinite(xyz)):
                return m1
            new = (1 / _cct(xyz) - 1 / t2) / (1 / t1 - 1 / t2)
            new = float(np.clip(new, 0.0, 1.0))
            if abs(new - weight) < 1e-7:
                break
            weight = new
    except np.linalg.LinAlgError:
        return m1
    mixed = weight * m1 + (1 - weight) * m2
    return mixed if _usable_matrix(mixed) else m1


def camera_to_srgb(profile: ColourProfile) -> np.ndarray:
    """3x3 matrix from unbalanced camera RGB to linear sRGB, as-shot white balance included.

    The standard recipe (as in dcraw and LibRaw): camera-from-sRGB is the colour matrix (for
    the as-shot light, :func:`colour_matrix`) times sRGB-to-XYZ, with rows scaled to sum to one
    so that white maps to white once balanced; its inverse follows the white-balance
    multipliers (``1 / AsShotNeutral``).
    """
    cam_from_srgb = colour_matrix(profile) @ np.linalg.inv(XYZ_TO_SRGB)
    cam_from_srgb /= cam_from_srgb.sum(axis=1, keepdims=True)
    neutral = np.asarray(profile.as_shot_neutral, dtype=np.float64)
    return np.linalg.inv(cam_from_srgb) @ np.diag(1.0 / neutral)


def _srgb_curve() -> np.ndarray:
    x = np.arange(65536, dtype=np.float64) / 65535.0
    y = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(np.rint(y * 65535.0), 0, 65535).astype(np.uint16)


def render(linear: np.ndarray, profile: ColourProfile) -> np.ndarray:
    """Display-referred sRGB (BGR ``uint16``) of linear camera RGB ``linear`` (BGR ``uint16``).

    As-shot white balance (clipping), camera-to-sRGB matrix (clipping), sRGB curve; in strips
    of rows, so the extra memory is a small fraction of a frame.
    """
    # White balance first, saturating, then the colour matrix, as LibRaw does: a photosite
    # clipped in every channel is white once balanced, and the matrix keeps white white. In
    # one product, the balanced clipped pixel went past white in red and blue, and the
    # matrix made every blown highlight magenta.
    multipliers = 1.0 / np.asarray(profile.as_shot_neutral, dtype=np.float64)
    least = float(multipliers.min())  # the smallest is 1, the rest of the scale in the matrix
    flip = np.eye(3)[::-1]
    balance = np.diag(multipliers[::-1] / least)  # BGR
    m_bgr = flip @ (camera_to_srgb(profile) @ np.diag(1.0 / multipliers) * least) @ flip
    curve = _srgb_curve()
    out = np.empty_like(linear)
    for y0 in range(0, linear.shape[0], _STRIP_ROWS):
        rows = slice(y0, y0 + _STRIP_ROWS)
        balanced = cv2.transform(linear[rows], balance)  # uint16: saturates at 65535
        out[rows] = curve[cv2.transform(balanced, m_bgr)]
    return out


def display_of(path: str | os.PathLike[str]) -> Callable[[np.ndarray], np.ndarray] | None:
    """How a live preview shows a stack of RAW frames: :func:`render` with the colour profile
    of ``path`` (the stack's first RAW frame); ``None``, said in the log, where it has none."""
    try:
        profile = read_profile(path)
    except StackerError as exc:
        log.warning("%s; the live preview shows its stack unrendered", exc)
        return None
    return functools.partial(render, profile=profile)


def write_raw_result(
    path: str | os.PathLike[str],
    linear: np.ndarray,
    reference: str | os.PathLike[str],
    *,
    jpeg_quality: int = 95,
    software: str,
) -> Path:
    """Write a linear composite of RAW frames: a linear DNG, or rendered for other formats,
    stamped with ``software``. A greyscale one (a monochrome camera's RAW frames, which LibRaw
    decodes to three equal channels) is written as the frames were, in camera RGB."""
    from stacker.dng import exif_blob
    from stacker.io import atomic_write_bytes, encode_image
    from stacker.metadata import Metadata

    p = Path(path)
    if linear.ndim == 2:
        # The DNG and the rendering take camera RGB: the composite of a monochrome camera's
        # stack was refused as a DNG ("needs a colour image") and a traceback as a TIFF.
        linear = cv2.cvtColor(linear, cv2.COLOR_GRAY2BGR)
    profile = read_profile(reference)
    if p.suffix.lower() == ".dng":
        return write_linear_dng(p, linear, profile, software=software)
    # The reference RAW's camera, lens and exposure go with the rendering, as a frame's do.
    data = encode_image(render(linear, profile), p.suffix, jpeg_quality=jpeg_quality,
                        metadata=Metadata(exif=exif_blob(profile)), software=software)  # fmt: skip
    atomic_write_bytes(p, data)
    return p
