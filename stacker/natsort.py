"""Natural ("human") ordering of file names: ``frame_2`` before ``frame_10``.

Cameras and tethering programs number frames without zero padding often enough that plain string
order would stack ``frame_10`` between ``frame_1`` and ``frame_2`` and chain alignment across a jump
in focus. ``stacker stack`` and ``stacker batch`` (a folder's frames) and ``stacker watch`` (files
already in the folder) order frames with :func:`frame_order`: natural order, unless the camera's
file counter wrapped within the set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePath

_DIGITS = re.compile(r"(\d+)")

NaturalKey = tuple[tuple[tuple[str | int, ...], ...], str]


def _part_key(part: str) -> tuple[str | int, ...]:
    # re.split with a capturing group alternates text, number, text, ... starting with text
    # (possibly empty), so position i always holds the same type and tuples compare cleanly.
    pieces = _DIGITS.split(part.casefold())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(pieces))


def natural_key(path_or_name: str | os.PathLike[str]) -> NaturalKey:
    """Sort key ordering paths or names naturally, case-insensitively, folder by folder.

    Runs of digits compare as numbers (``img2`` < ``img10``), letters ignore case, and each path
    component is compared on its own so a folder's files stay together. Ties (``f01`` and
    ``f1``, ``A.jpg`` and ``a.jpg``) fall back to the plain string, so the order is total and
    repeatable.

    Examples
    --------
    >>> sorted(["frame_10.jpg", "frame_2.jpg", "Frame_1.jpg"], key=natural_key)
    ['Frame_1.jpg', 'frame_2.jpg', 'frame_10.jpg']
    """
    text = os.fspath(path_or_name)
    return tuple(_part_key(part) for part in PurePath(text).parts), text


#: A counter's file name: ``IMG_0001.JPG``, ``DSC_0001.NEF``, ``capt0001.jpg``: a fixed prefix and
#: a zero-padded number (DCF cameras count 0001 to 9999, then start again at 0001).
_COUNTED = re.compile(r"(.*?)(\d{4,})(\.[^.]*)?")


def frame_order(paths: Iterable[Path]) -> list[Path]:
    """``paths`` in the order they were shot: natural order, from the first frame after a wrap.

    A camera's file counter goes from ``IMG_9999`` back to ``IMG_0001``, so by name the frames
    shot after the wrap come first, and the stack is aligned and merged from the middle of its
    focus range. It is taken for a wrap when the names and the times agree: the names are one
    counter's (one prefix, numbers of one width), their widest gap is not round the counter's end
    (from the highest number back to the lowest) but within, and every file above the gap is no
    newer than any below it (ties allowed: a memory card's FAT keeps times to 2 s). Then the files
    above the gap go first. Times alone would say too much: a copy sets them in whatever order it
    wrote the files.
    """
    ordered = sorted(paths, key=natural_key)
    counted = [m for p in ordered if (m := _COUNTED.fullmatch(p.name)) is not None]
    if len(ordered) < 2 or len(counted) < len(ordered):
        return ordered
    counters = {(m.group(1).casefold(), len(m.group(2))) for m in counted}
    if len(counters) != 1:
        return ordered
    ((_, width),) = counters
    numbers = [int(m.group(2)) for m in counted]
    # A DCF counter has four digits: Sony's DSC00001.JPG is the name "DSC0" and the counter
    # 0001, which wraps from 9999 as IMG_9999 does. A leading zero on every number of a wider
    # run is such a fixed digit, not one of the counter's.
    while width > 4 and numbers[-1] < 10 ** (width - 1):
        width -= 1
    gap, start = max((numbers[i] - numbers[i - 1], i) for i in range(1, len(numbers)))
    if gap <= 10**width - numbers[-1] + numbers[0]:
        return ordered
    try:
        times = [os.stat(p).st_mtime_ns for p in ordered]
    except OSError:
        return ordered
    if max(times[start:]) <= min(times[:start]):
        return ordered[start:] + ordered[:start]
    return ordered
