"""Yardsticks for stacks whose truth is known, and the textbook baseline stacker.

* :func:`psnr` — peak signal-to-noise ratio, optionally over a mask.
* :func:`flat_mask` / :func:`edge_band_mask` — where in the truth a stacker that picks noise,
  or one that makes halos, loses points (score PSNR over them separately).
* :func:`fitted_psnr` / :func:`central_mask` — PSNR after a least-squares gain fit (exposure
  differences between tools do not count), over the central part of the frame.
* :func:`perfect_choice` — the best composite that takes each pixel from one frame, knowing the
  truth: the yardstick a merge is measured against.
* :func:`corner_rms_error` — how far apart two transforms put the frame's corners (pixels).
* :func:`to_reference` / :func:`coverage_mask` — bring frame-geometry images into the reference
  geometry and find the area every frame covers.
* :func:`fit_to_reference` — register an output (possibly cropped) to the truth, so outputs of
  other tools can be compared in the truth's geometry.
* :func:`baseline_stack` — the textbook recipe any serious stacker must clearly beat: feature
  matching (ORB or SIFT) with RANSAC to the first frame, then per pixel the frame with the largest
  absolute Laplacian of lightly blurred luma, with no smoothing.

Transforms are 3x3 (or 2x3) matrices mapping reference pixel coordinates to frame pixel
coordinates (``x_frame = T @ x_ref``), the convention of :mod:`rig.sim.scene`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stacker.cvtyping import cv
from stacker.errors import StackerError


def as_3x3(transform: np.ndarray) -> np.ndarray:
    """A 2x3 affine or 3x3 matrix as a float64 3x3 matrix."""
    t = np.asarray(transform, dtype=np.float64)
    if t.shape == (2, 3):
        return np.vstack([t, [0.0, 0.0, 1.0]])
    if t.shape != (3, 3):
        raise ValueError(f"expected a 2x3 or 3x3 transform, got shape {t.shape}")
    return t


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio of ``a`` against ``b`` in dB (``inf`` when identical).

    The peak is 255 for ``uint8`` and 65535 for ``uint16`` inputs (1.0 for floats). ``mask``
    (HxW, non-zero = used) restricts the comparison; all channels count.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    peak = _peak(a.dtype) if a.dtype in (np.uint8, np.uint16) else 1.0
    diff = a.astype(np.float64) - b.astype(np.float64)
    sq = diff * diff
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if m.shape != a.shape[:2]:
            raise ValueError(f"psnr: mask shape {m.shape} does not match image {a.shape[:2]}")
        if not m.any():
            raise ValueError("psnr: the mask selects no pixel")
        sq = sq[m]
    mse = float(sq.mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _peak(dtype: np.dtype) -> float:
    return 65535.0 if dtype == np.uint16 else 255.0


def flat_mask(truth: np.ndarray, *, radius: int = 3, tolerance: float = 0.5) -> np.ndarray:
    """Pixels whose whole (2r+1)-square neighbourhood in ``truth`` is flat.

    Flat means every channel varies by at most ``tolerance`` 8-bit levels there. In a stack such
    areas hold nothing but sensor noise: a stacker that picks the "sharpest" noise shows up as a
    low PSNR over this mask.
    """
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    spread = cv2.dilate(truth, kernel).astype(np.float32) - cv2.erode(truth, kernel)
    limit = tolerance * _peak(truth.dtype) / 255.0
    return np.all(spread.reshape(*truth.shape[:2], -1) <= limit, axis=2)


def edge_band_mask(truth: np.ndarray, *, threshold: float = 60.0, width: int = 8) -> np.ndarray:
    """Pixels within ``width`` px of a strong edge in ``truth`` (where halos show).

    A strong edge is a luma step of at least ``threshold`` 8-bit levels across a 3x3 window.
    """
    luma = _luma_float(truth) * np.float32(255.0)
    k3 = np.ones((3, 3), np.uint8)
    edges = (cv2.dilate(luma, k3) - cv2.erode(luma, k3)) >= threshold
    band = cv2.dilate(edges.astype(np.uint8), np.ones((2 * width + 1, 2 * width + 1), np.uint8))
    return band > 0


def central_mask(height: int, width: int, fraction: float = 0.8) -> np.ndarray:
    """Boolean mask of the central ``fraction`` of the frame in each direction."""
    mask = np.zeros((height, width), bool)
    my, mx = round(height * (1 - fraction) / 2), round(width * (1 - fraction) / 2)
    mask[my : height - my, mx : width - mx] = True
    return mask


def as_luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of a BGR image (or the image itself if grey), float64 in 8-bit levels."""
    scale = 255.0 / 65535.0 if image.dtype == np.uint16 else 1.0
    f = image.astype(np.float64) * scale
    return f @ np.array([0.114, 0.587, 0.299]) if f.ndim == 3 else f


def fitted_psnr(
    image: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray,
    *,
    fit_mask: np.ndarray | None = None,
    luma: bool = True,
) -> float:
    """PSNR (8-bit peak) of ``image`` against ``truth`` over ``mask`` after a least-squares gain.

    The gain (one for luma; one per channel with ``luma=False``) is fitted over ``fit_mask``
    (default ``mask``), so a tool whose output is a little brighter or darker than the first
    frame loses nothing for it. 16-bit inputs are scaled to 8-bit levels.
    """
    if image.shape != truth.shape:
        raise ValueError(f"fitted_psnr: shapes differ: {image.shape} vs {truth.shape}")
    fit = mask if fit_mask is None else fit_mask
    if luma:
        a, b = as_luma(image)[..., None], as_luma(truth)[..., None]
    else:
        scale = 255.0 / 65535.0 if image.dtype == np.uint16 else 1.0
        a, b = image.astype(np.float64) * scale, truth.astype(np.float64) * scale
    gain = (a[fit] * b[fit]).sum(axis=0) / np.maximum((a[fit] ** 2).sum(axis=0), 1e-9)
    mse = float(((a[mask] * gain - b[mask]) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def perfect_choice(
    frames: Iterable[np.ndarray],
    truth: np.ndarray,
    *,
    guides: Iterable[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best composite that takes every pixel from one frame, knowing the truth.

    Returns (image, frame index per pixel). ``frames`` must already be in the truth's geometry
    and exposure. Per pixel, the frame whose colour error against the truth (summed over the
    channels) is smallest. Judged on the frames themselves, the choice also picks the luckiest
    sensor noise and JPEG error of 16 draws, which no stacker can know; with ``guides`` (the
    same frames rendered without noise or JPEG) the choice is made on them and applied to
    ``frames``: the best choice of frame per pixel that knows the scene, not the noise.
    """
    target = truth.astype(np.float32)
    best_err: np.ndarray | None = None
    out = truth.copy()
    index = np.zeros(truth.shape[:2], np.int32)
    guide_iter = iter(guides) if guides is not None else None
    for i, frame in enumerate(frames):
        judged = next(guide_iter) if guide_iter is not None else frame
        diff = judged.astype(np.float32) - target
        err = (diff * diff).sum(axis=2)
        if best_err is None:
            best_err, out[...] = err, frame
            continue
        better = err < best_err
        best_err[better] = err[better]
        out[better] = frame[better]
        index[better] = i
    if best_err is None:
        raise StackerError("perfect_choice: no frames")
    return out, index


def _corners(width: int, height: int) -> np.ndarray:
    return np.array(
        [
            [0.0, 0.0, 1.0],
            [width - 1.0, 0.0, 1.0],
            [width - 1.0, height - 1.0, 1.0],
            [0.0, height - 1.0, 1.0],
        ]
    ).T


def corner_rms_error(estimated: np.ndarray, true: np.ndarray, width: int, height: int) -> float:
    """RMS distance in pixels between where two transforms map the four frame corners."""
    c = _corners(width, height)
    e = as_3x3(estimated) @ c
    t = as_3x3(true) @ c
    e = e[:2] / e[2]
    t = t[:2] / t[2]
    return float(np.sqrt(np.mean(np.sum((e - t) ** 2, axis=0))))


def to_reference(
    image: np.ndarray,
    transform: np.ndarray,
    size: tuple[int, int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample a frame-geometry ``image`` into reference geometry of ``size`` = (w, h).

    ``transform`` maps reference to frame coordinates, so each reference pixel samples the
    frame at ``T @ x_ref``. Pixels outside the frame become 0.
    """
    t = as_3x3(transform)
    flags = interpolation | cv2.WARP_INVERSE_MAP
    if np.allclose(t[2], [0.0, 0.0, 1.0]):
        return cv2.warpAffine(image, t[:2], size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    return cv2.warpPerspective(image, t, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)


def coverage_mask(
    transforms: Iterable[np.ndarray],
    frame_size: tuple[int, int],
    reference_size: tuple[int, int] | None = None,
    *,
    inset_px: int = 2,
) -> np.ndarray:
    """Boolean mask (reference geometry) of the pixels that every frame sees.

    ``frame_size`` and ``reference_size`` are (w, h); ``inset_px`` shrinks the area a little so
    interpolation at frame borders does not count as coverage.
    """
    ref_size = reference_size or frame_size
    fw, fh = frame_size
    ones = np.zeros((fh, fw), np.uint8)
    ones[inset_px : fh - inset_px, inset_px : fw - inset_px] = 1
    mask = np.ones((ref_size[1], ref_size[0]), bool)
    for t in transforms:
        seen = to_reference(ones, t, ref_size, interpolation=cv2.INTER_NEAREST)
        mask &= seen > 0
    return mask


def _luma_float(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    scale = 1.0 / 65535.0 if gray.dtype == np.uint16 else 1.0 / 255.0
    return gray.astype(np.float32) * np.float32(scale)


@dataclass
class Fit:
    """Where an image sits in a reference: transform (reference to image) and its score."""

    transform: np.ndarray
    correlation: float


def fit_to_reference(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    work_px: int = 1200,
    mask: np.ndarray | None = None,
) -> Fit:
    """Find the affine transform mapping ``reference`` pixels to ``image`` pixels.

    For comparing outputs of different tools with the truth: an output may be cropped
    (smaller than the reference) or shifted by a few pixels. A coarse position comes from
    template matching of the centre of ``image``, then ECC (Evangelidis & Psarakis 2008) refines
    an affine model on a downscaled luma, and finally at full resolution on a central window.

    ``mask`` (reference geometry) limits the ECC fit to the pixels an output can be judged on:
    an uncropped composite made in another frame's geometry has replicated borders beyond what
    that frame saw, and fitting them too shifts the whole fit by a fraction of a pixel.
    """
    ref = _luma_float(reference)
    img = _luma_float(image)
    rh, rw = ref.shape
    scale = min(1.0, work_px / max(rw, rh))
    ref_s = cv2.resize(ref, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    img_s = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # Coarse translation: where does the centre of the image sit in the reference?
    sh, sw = img_s.shape
    cy0, cx0 = sh // 4, sw // 4
    templ = img_s[cy0 : sh - cy0, cx0 : sw - cx0]
    res = cv2.matchTemplate(ref_s, templ, cv2.TM_CCOEFF_NORMED)
    _, _, _, loc = cv2.minMaxLoc(res)
    dx = (loc[0] - cx0) / scale
    dy = (loc[1] - cy0) / scale
    # ECC below uses the image as template: its warp maps image coords to reference coords.
    warp = np.array([[1.0, 0.0, dx * scale], [0.0, 1.0, dy * scale]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    mask_s = mask_full = None
    if mask is not None:
        mask_full = mask.astype(np.uint8)
        mask_s = cv2.resize(
            mask_full, (ref_s.shape[1], ref_s.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    corr = 0.0
    with contextlib.suppress(cv2.error):  # no convergence: keep the template-match estimate
        corr, warp = cv.findTransformECC(img_s, ref_s, warp, cv2.MOTION_AFFINE, criteria, mask_s, 5)
    warp = warp.copy()
    warp[:, 2] /= scale
    if scale < 1.0:
        with contextlib.suppress(cv2.error):
            corr, warp = cv.findTransformECC(
                img, ref, warp, cv2.MOTION_AFFINE, (criteria[0], 20, 1e-6), mask_full, 3
            )
    return Fit(transform=np.linalg.inv(as_3x3(warp)), correlation=float(corr))


@dataclass
class BaselineResult:
    """What :func:`baseline_stack` produced."""

    image: np.ndarray
    """The merged image in the geometry of the first frame."""
    index_map: np.ndarray
    """Per pixel, the index of the frame it came from (int32)."""
    transforms: list[np.ndarray] = field(default_factory=list)
    """Per frame, the estimated reference-to-frame 3x3 transform (identity for frame 0)."""
    failed: list[int] = field(default_factory=list)
    """Frames that could not be registered (left out of the merge)."""


def _features(kind: str) -> tuple[Any, int]:
    if kind == "orb":
        return cv.ORB_create(nfeatures=5000), cv2.NORM_HAMMING
    if kind == "sift":
        return cv.SIFT_create(nfeatures=5000), cv2.NORM_L2
    raise StackerError(f"baseline: unknown feature detector '{kind}': use 'orb' or 'sift'")


def baseline_stack(
    images: Iterable[np.ndarray],
    *,
    features: str = "sift",
    model: str = "similarity",
    work_px: int = 2000,
    ratio: float = 0.75,
    ransac_px: float = 2.0,
    blur_sigma: float = 1.0,
) -> BaselineResult:
    """The textbook focus stacker: align every frame to the first, keep the sharpest pixel.

    Each frame is registered to the first by ``features`` ("sift" or "orb") detected on luma
    resized to at most ``work_px`` on its long side, Lowe's ratio test, and RANSAC fitting a
    ``model`` ("homography" or "similarity") from reference to frame. It is resampled into the
    first frame's geometry, and every pixel takes the colour of the frame whose absolute
    Laplacian of Gaussian-blurred (``blur_sigma``) luma is largest, with no smoothing. Frames
    are processed as they come (memory does not grow with their number). A frame whose
    registration fails (too few inliers) is reported in ``failed`` and left out.

    The defaults (SIFT, similarity) are the strongest textbook choice on focus stacks: on the
    synthetic stacks ORB or a homography misregister defocused frames by several pixels.
    """
    if model not in ("homography", "similarity"):
        raise StackerError(f"baseline: unknown model '{model}': use 'homography' or 'similarity'")
    detector, norm = _features(features)
    matcher = cv2.BFMatcher(norm)
    it = iter(images)
    try:
        first = next(it)
    except StopIteration:
        raise StackerError("baseline: no images to stack") from None
    h, w = first.shape[:2]
    scale = min(1.0, work_px / max(w, h))

    def detect(img: np.ndarray) -> tuple[list[cv2.KeyPoint], np.ndarray | None]:
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if gray.dtype != np.uint8:
            gray = cv2.convertScaleAbs(gray, alpha=255.0 / 65535.0)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        kps, desc = detector.detectAndCompute(gray, None)
        return list(kps), desc

    def sharpness(img: np.ndarray) -> np.ndarray:
        luma = _luma_float(img)
        luma = cv2.GaussianBlur(luma, (0, 0), blur_sigma)
        return np.abs(cv2.Laplacian(luma, cv2.CV_32F, ksize=3))

    ref_kp, ref_desc = detect(first)
    result = first.copy()
    best = sharpness(first)
    index_map = np.zeros((h, w), np.int32)
    transforms = [np.eye(3)]
    failed: list[int] = []
    s_mat = np.diag([scale, scale, 1.0])
    for i, img in enumerate(it, start=1):
        if img.shape != first.shape:
            raise StackerError(
                f"baseline: frame {i} is {img.shape}, the first frame is {first.shape}"
            )
        kp, desc = detect(img)
        t = _match(ref_kp, ref_desc, kp, desc, matcher, model, ratio, ransac_px)
        if t is None:
            failed.append(i)
            transforms.append(np.full((3, 3), np.nan))
            continue
        t_full = np.linalg.inv(s_mat) @ t @ s_mat
        transforms.append(t_full)
        warped = to_reference(img, t_full, (w, h))
        valid = to_reference(np.ones((h, w), np.uint8), t_full, (w, h), interpolation=0) > 0
        score = sharpness(warped)
        better = (score > best) & valid
        best[better] = score[better]
        result[better] = warped[better]
        index_map[better] = i
    return BaselineResult(image=result, index_map=index_map, transforms=transforms, failed=failed)


def _match(
    ref_kp: list[cv2.KeyPoint],
    ref_desc: np.ndarray | None,
    kp: list[cv2.KeyPoint],
    desc: np.ndarray | None,
    matcher: cv2.DescriptorMatcher,
    model: str,
    ratio: float,
    ransac_px: float,
) -> np.ndarray | None:
    """Reference-to-frame 3x3 transform from feature matches, or None if it cannot be found."""
    if ref_desc is None or desc is None or len(ref_kp) < 8 or len(kp) < 8:
        return None
    pairs = matcher.knnMatch(ref_desc, desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 8:
        return None
    src = np.array([ref_kp[m.queryIdx].pt for m in good], np.float32)
    dst = np.array([kp[m.trainIdx].pt for m in good], np.float32)
    if model == "homography":
        t, inliers = cv2.findHomography(src, dst, cv2.RANSAC, ransac_px)
    else:
        t, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=ransac_px
        )
    if t is None or inliers is None or int(inliers.sum()) < 8:
        return None
    return as_3x3(t)
