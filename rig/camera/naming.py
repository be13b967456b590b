"""Names for downloaded frames: one stem per shot, never reused, sorting in shot order.

A shot may give several files (RAW + JPEG). They share one stem (``frame_0007.cr2``,
``frame_0007.jpg``) so a stack can pair them, and a stem is only used if no file in the folder
already starts with it: nothing captured earlier is ever overwritten (a used stem gets ``_2``,
``_3``...). Without a caller's stem the
next ``frame_NNNN`` after the highest one in the folder is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from rig.errors import RigError
from stacker.io import name_max, storage_remedy, write_refused

DEFAULT_PREFIX = "frame_"
DIGITS = 4


def check_stem(stem: str) -> str:
    """``stem`` when it names files in the destination folder itself; else a one-line error.

    A separator or ``..`` would put the frames in another folder, or in none that exists.
    """
    if stem in ("", ".", "..") or any(c in stem for c in "/\\\0"):
        raise RigError(
            f"file name stem {stem!r}: give a plain name without a folder, such as test_01"
        )
    return stem


ROOM_AFTER_STEM = 16
"""Bytes a file name may add to its stem: ``_99`` for a stem in use, ``-2`` for a second file
of one kind, the extension."""


def check_destination(folder: Path, stem: str | None) -> None:
    """Refuse, before the shutter, a folder the shot's files cannot be written to, or a stem
    too long for its file names there; a one-line error either way."""
    if stem is not None:  # the automatic frame_NNNN stems are short
        existing = next(p for p in (folder, *folder.absolute().parents) if p.is_dir())
        longest = name_max(existing) - ROOM_AFTER_STEM
        if len(os.fsencode(stem)) > longest:
            raise RigError(
                f"file name stem of {len(os.fsencode(stem))} bytes: {folder} takes names of at "
                f"most {longest + ROOM_AFTER_STEM}, so give a stem of at most {longest}"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RigError(f"cannot keep frames in {folder}: {exc.strerror or exc}") from None
    refused = write_refused(folder)
    if refused is not None:
        raise RigError(
            f"cannot keep frames in {folder}: {refused.strerror or refused}; "
            f"{storage_remedy(refused, 'fix its permissions')}"
        )


def stem_taken(folder: Path, stem: str) -> bool:
    """True when a file named ``stem`` or ``stem.<anything>`` exists in ``folder``."""
    if not folder.is_dir():
        return False
    return any(p.name == stem or p.name.startswith(stem + ".") for p in folder.iterdir())


def next_auto_stem(folder: Path, prefix: str = DEFAULT_PREFIX) -> str:
    """``frame_NNNN`` one above the highest such number in ``folder`` (``frame_0001`` if none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)(?:[_-]\d+)?(?:\.|$)")
    highest = 0
    if folder.is_dir():
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m:
                highest = max(highest, int(m.group(1)))
    return f"{prefix}{highest + 1:0{DIGITS}d}"


def free_stem(folder: Path, stem: str, camera_names: list[str] | None = None) -> str:
    """``stem`` if unused in ``folder``, else ``stem_2``, ``stem_3``...

    ``_`` sorts after ``.``, so ``frame_0007_2.jpg`` lands after ``frame_0007.jpg`` and before
    ``frame_0008.jpg``. With ``camera_names``, every name :func:`shot_file_names` would give
    must be free too.
    """

    def free(candidate: str) -> bool:
        if stem_taken(folder, candidate):
            return False
        names = shot_file_names(candidate, camera_names or [])
        return not any((folder / name).exists() for name in names)

    if free(stem):
        return stem
    n = 2
    while not free(f"{stem}_{n}"):
        n += 1
    return f"{stem}_{n}"


def shot_file_names(stem: str, camera_names: list[str]) -> list[str]:
    """Local names for the files of one shot: the stem plus each file's lower-case extension.

    Two files with the same extension (rare: some bodies send two JPEG sizes) get ``-2``,
    ``-3``... so no name repeats.
    """
    names: list[str] = []
    for camera_name in camera_names:
        ext = PurePosixPath(camera_name).suffix.lower()
        name = f"{stem}{ext}"
        n = 2
        while name in names:
            name = f"{stem}-{n}{ext}"
            n += 1
        names.append(name)
    return names
