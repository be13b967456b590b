"""Natural ("human") ordering of file names: ``frame_2`` before ``frame_10``.

Cameras and tethering programs number frames without zero padding often enough that plain string
order would stack ``frame_10`` between ``frame_1`` and ``frame_2`` and chain alignment across a jump
in focus. Both ``stacker stack`` (its inputs) and ``stacker watch`` (files already in the folder)
sort with :func:`natural_key`.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

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
