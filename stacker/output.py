"""Writing a stack's results: the composite and the depth map, each atomically.

The depth map is a 16-bit PNG: micrometres when every merged frame came with a focus position
(the focus position less the smallest one, so values stay positive: ``offset_um`` in the JSON
sidecar; interpolated between frames, so finer than the step; a stack deeper than 65.5 mm
counts in steps of ``um_per_count`` micrometres, and one with steps under 10 µm in fractions
of a micrometre, also in the sidecar), otherwise the index of the frame in best focus. The
sidecar's ``order`` says which end is near (``near-to-far``: the first frame). A colourised
preview (near blue, far red, with a colour bar labelled in µm or frames) sits beside it.

Every result image is stamped with :data:`OUTPUT_SOFTWARE`, so that it is never taken for a frame
(see :mod:`stacker.paths`). A write that fails (disk full, folder gone) raises a one-line
:class:`~stacker.errors.StackerError`; what was on disk under the final names stays whole, and
stays one set: the outputs replace the old ones together or not at all.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from stacker.errors import TOO_MANY_FILES, RawFramesNeededError, ResultWriteError, StackerError
from stacker.io import (
    JPEG_MAX_SIDE,
    all_or_none,
    atomic_write_bytes,
    check_writable_output,
    encode_image,
    in_this_context,
    is_raw_path,
    storage_remedy,
    write_image,
)
from stacker.stack import Stacker

#: The software name stamped into every result image (composite, depth map, depth preview).
OUTPUT_SOFTWARE = "stackrig"


def depth_paths(depth_path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """(16-bit PNG, colourised JPEG preview, JSON sidecar) for a depth map path."""
    p = Path(depth_path)
    if p.suffix.lower() != ".png":
        p = p.with_suffix(".png")
    return p, p.with_name(p.stem + "-preview.jpg"), p.with_suffix(".json")


def check_writable_depth(depth_path: str | os.PathLike[str]) -> Path:
    """:func:`~stacker.io.check_writable_output` for a depth map's files, before any work; the
    PNG's path. The name must end in .png (the map is a 16-bit PNG): a ``depth.jpg`` became
    ``depth.png`` without a word. The preview's name is the longest of the three, and checked
    too: a name near the file system's limit failed only after the stack was done."""
    p = Path(depth_path)
    if os.path.isdir(p):
        return check_writable_output(p, example="depth.png")  # refused as a folder
    if p.suffix.lower() != ".png":
        raise StackerError(
            f"{p}: the depth map is a 16-bit PNG; name it {p.with_suffix('.png').name}"
        )
    png, preview, _ = depth_paths(p)
    check_writable_output(png, example="depth.png")  # first: errors name the file given
    check_writable_output(preview, example="depth.png")
    return png


def save_depth_map(
    stacker: Stacker,
    depth_path: str | os.PathLike[str],
    *,
    crop: bool = True,
    pool: Executor | None = None,
) -> list[Path]:
    """Write the depth map, its colourised preview and its sidecar; returns the paths.

    With ``pool``, the map is computed here and the two images are made full size, encoded and
    written on the pool's threads, side by side."""
    png, preview, sidecar = depth_paths(depth_path)
    merged = [r for r in stacker.records if r.merged]
    positions = [r.position_um for r in merged]
    info: dict[str, object] = {
        "frames": [{"index": r.index, "name": r.name, "position_um": r.position_um} for r in merged]
    }
    # Converted, rounded and coloured at the size the map is computed at, then upsampled: at
    # full size only one warp per image remains (a bilinear warp of integer µm is within a
    # micrometre of rounding the warped floats).
    small = stacker.depth_frames_small()
    um = stacker.frames_to_um(small)
    if um is not None:
        known = [float(p) for p in positions if p is not None]
        offset = min(known)
        um_per_count = _um_per_count(known)
        values = _round_u16((um - np.float32(offset)) / np.float32(um_per_count))
        info.update(units="micrometres", offset_um=offset, um_per_count=um_per_count)
    else:
        values = _nearest_of(small, [r.index for r in merged])
        info.update(units="frame index")
    info["order"] = "far-to-near" if stacker.far_first else "near-to-far"

    def write_png() -> Path:
        full = stacker.upsample_depth(values, crop)
        return atomic_write_bytes(
            png, encode_image(full, ".png", software=OUTPUT_SOFTWARE, fast=True)
        )

    def write_preview() -> Path:
        colour = stacker.depth_preview(crop=crop)
        if max(colour.shape[:2]) > JPEG_MAX_SIDE:  # a line scan's: shrunk to what JPEG holds
            s = JPEG_MAX_SIDE / max(colour.shape[:2])
            h, w = colour.shape[:2]
            size = (max(1, int(w * s)), max(1, int(h * s)))
            colour = cv2.resize(colour, size, interpolation=cv2.INTER_AREA)
        return atomic_write_bytes(preview, encode_image(colour, ".jpg", software=OUTPUT_SOFTWARE))

    if pool is None:
        written = [write_png(), write_preview()]
    else:
        jobs = [pool.submit(in_this_context(write)) for write in (write_png, write_preview)]
        written = [job.result() for job in jobs]
    atomic_write_bytes(sidecar, (json.dumps(info, indent=2) + "\n").encode())
    return [*written, sidecar]


def _um_per_count(positions: list[float]) -> float:
    """Micrometres per PNG count: 1, or for a stack deeper than a count holds (65535) coarser
    (2 um each up to 131 mm...) rather than clipped at its far end; for steps under 10 um the
    power of two at most a tenth of the smallest step (whole micrometres wrote a stack of
    0.2 um steps in 4 values, coarser than the step), as far as 65535 counts still hold it."""
    span = max(positions) - min(positions)
    coarse = max(1, math.ceil(span / 65535.0))
    # To the nanometre: 10 um steps from 0.1 um differ by 9.999999999999993, which halved
    # the scale of that one plan; and a frame shot again where another stood is no step.
    steps = np.round(np.diff(np.unique(np.round(positions, 3))), 3)
    smallest = float(steps.min()) if steps.size else 0.0
    if coarse > 1 or not steps.size or smallest >= 10.0:
        return coarse
    finest = 2.0 ** math.floor(math.log2(smallest / 10.0))
    fits = 2.0 ** math.ceil(math.log2(span / 65535.0))
    return min(1.0, max(finest, fits))


def _nearest_of(values: np.ndarray, indexes: list[int]) -> np.ndarray:
    """Sub-frame ``values`` as the nearest of the merged frames' ``indexes``, as uint16: rounded
    alone, a pixel between the frames either side of one kept out took that frame's index,
    which depth.json does not list (7 % of a stack with one shaken frame)."""
    if not indexes:
        return _round_u16(values)
    merged = np.asarray(sorted(indexes), np.float32)
    upper = np.clip(np.searchsorted(merged, values), 1, max(1, merged.size - 1))
    lower = upper - 1
    if merged.size == 1:
        return np.full(values.shape, int(merged[0]), np.uint16)
    nearer = np.where(values - merged[lower] <= merged[upper] - values, lower, upper)
    return merged[nearer].astype(np.uint16)


def _round_u16(values: np.ndarray) -> np.ndarray:
    """Float values rounded to the nearest integer and clipped to 0..65535, as uint16."""
    out = np.empty(values.shape, np.uint16)
    np.copyto(out, np.clip(values, 0.0, 65535.0) + np.float32(0.5), casting="unsafe")
    return out


def save_outputs(
    stacker: Stacker,
    out_path: str | os.PathLike[str],
    depth_path: str | os.PathLike[str] | None = None,
    *,
    jpeg_quality: int = 95,
    metadata_from: str | os.PathLike[str] | None = None,
    crop: bool = True,
) -> list[Path]:
    """Write the composite (format from the extension) and optionally the depth map.

    ``metadata_from`` names the frame whose EXIF and ICC profile the composite carries. When it
    is a RAW file, the composite is linear camera RGB: written as a linear DNG with that frame's
    colour profile, or rendered with it for the other formats. A write the system refuses
    (``ENOSPC``, ``EROFS``...) is a :class:`StackerError` naming the file.
    """
    raw = metadata_from is not None and is_raw_path(metadata_from)
    if Path(out_path).suffix.lower() == ".dng" and not raw:
        raise RawFramesNeededError(
            f"{out_path}: a DNG composite needs RAW frames (NEF, CR2, ARW, DNG...); "
            "write .tif, .png or .jpg instead"
        )
    try:
        image = stacker.result(crop=crop)
        # The composite is encoded and written while the depth map is made, and the depth
        # map's two images side by side: each is mostly OpenCV or zlib work, which releases the
        # GIL, and each alone would leave a core idle. What reads the merge state (the
        # composite above, the depth map) runs on this thread first. The files replace the
        # old ones together, or not at all.
        with all_or_none(), ThreadPoolExecutor(3, thread_name_prefix="write-result") as pool:
            composite = pool.submit(
                in_this_context(_write_composite), image, out_path, raw, jpeg_quality,
                metadata_from, stacker.white,
            )  # fmt: skip
            depth = (
                []
                if depth_path is None
                else save_depth_map(stacker, depth_path, crop=crop, pool=pool)
            )
            written = [composite.result(), *depth]
    except OSError as exc:  # disk full, folder removed or made read-only meanwhile
        where = out_path if exc.errno in TOO_MANY_FILES else exc.filename or out_path
        reason = str(exc.strerror or exc)
        raise ResultWriteError(where, reason, storage_remedy(exc, "")) from None
    return written


def _write_composite(
    image: np.ndarray,
    out_path: str | os.PathLike[str],
    raw: bool,
    jpeg_quality: int,
    metadata_from: str | os.PathLike[str] | None,
    white: float | None,
) -> Path:
    if raw:
        from stacker.raw import write_raw_result

        assert metadata_from is not None
        return write_raw_result(out_path, image, metadata_from, jpeg_quality=jpeg_quality,
                                software=OUTPUT_SOFTWARE)  # fmt: skip
    return write_image(out_path, image, jpeg_quality=jpeg_quality, metadata_from=metadata_from,
                       software=OUTPUT_SOFTWARE, white=white)  # fmt: skip
