"""Stacking an existing set of frames (``stacker stack``): the same engine as live capture.

Inputs are files or folders (images inside, in natural order). Problems with single frames are
warnings (fatal with ``strict``); problems with the stack as a whole — mismatched sizes, fewer
than two usable frames, an unwritable output — are errors, and the output is checked before any
work starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stacker.errors import StackerError, UnreadableImageError
from stacker.io import check_writable_output, is_image_path, read_image
from stacker.natsort import natural_key
from stacker.output import depth_paths, save_outputs
from stacker.stack import FrameRecord, Stacker


def collect_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into a list of image files (folders in natural order)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted((f for f in p.iterdir() if f.is_file() and is_image_path(f)),
                           key=natural_key)  # fmt: skip
            if not found:
                raise StackerError(
                    f"{p}: no images in this folder (looked for JPEG, PNG, TIFF, RAW)"
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise StackerError(f"{p}: no such file or folder")
    if len(files) < 2:
        raise StackerError(
            f"{len(files)} input frame{'s' if len(files) != 1 else ''}: a stack needs at least two"
        )
    return files


@dataclass
class StackRun:
    """What an offline stacking run did."""

    stacker: Stacker
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def stack_files(
    files: list[Path],
    output: Path,
    *,
    depth_map: Path | None = None,
    method: str = "pyramid",
    align: str = "similarity",
    reference: str = "first",
    crop: bool = True,
    strict: bool = False,
    jpeg_quality: int = 95,
    interpolation: str = "linear",
    on_frame: Callable[[Path, FrameRecord | None, str | None], None] | None = None,
) -> StackRun:
    """Stack ``files`` into ``output``; ``on_frame(path, record, warning)`` reports progress."""
    check_writable_output(output)
    if depth_map is not None:
        check_writable_output(depth_paths(depth_map)[0])
    if not 1 <= jpeg_quality <= 100:
        raise StackerError(f"JPEG quality {jpeg_quality} is out of range: use 1 to 100")
    t0 = time.perf_counter()
    stacker = Stacker(
        method=method, align=align, reference=reference, expected_frames=len(files),
        interpolation=interpolation,
    )  # fmt: skip
    run = StackRun(stacker, files)
    added: dict[int, Path] = {}
    for path in files:
        try:
            image = read_image(path)
        except UnreadableImageError as exc:
            if strict:
                raise StackerError(f"{exc} (--strict stops at unreadable frames)") from None
            run.skipped.append((path, str(exc)))
            if on_frame:
                on_frame(path, None, f"skipped {exc}")
            continue
        record = stacker.add(image, name=path.name)
        added[record.index] = path
        warning = None
        if not record.merged:
            warning = f"{path}: not merged: {record.reason}"
            if strict:
                raise StackerError(f"{warning} (--strict stops at rejected frames)")
        if on_frame:
            on_frame(path, record, warning)
    if stacker.frames_merged < 2:
        raise StackerError(
            f"only {stacker.frames_merged} usable frame(s) of {len(files)}: "
            "a stack needs at least two that align"
        )
    ref_path = added[stacker.reference_record().index]
    run.written = save_outputs(
        stacker, output, depth_map, jpeg_quality=jpeg_quality, metadata_from=ref_path, crop=crop
    )
    run.seconds = time.perf_counter() - t0
    return run
