"""One file of each RAW+JPEG shot.

A camera set to RAW+JPEG writes two files of every exposure, which share a stem
(``IMG_0001.CR2`` and ``IMG_0001.JPG``, whatever the case). A stack takes one of them: the
same exposure twice would count double in the merge, and a stack cannot mix linear (RAW) and
rendered frames. The JPEG is the default (fast, the camera's rendering); a DNG composite is
made from RAW frames. The hot folder (:mod:`stacker.hotfolder`) pairs files as they arrive;
:func:`one_of_each_shot` pairs a folder already shot, for ``stacker stack`` and ``batch``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from stacker.errors import StackerError
from stacker.io import is_raw_path
from stacker.raw import has_rawpy

Prefer = Literal["jpeg", "raw"]


def stem_key(path: Path) -> str:
    """What the two files of one shot share: the stem, whatever the case of either."""
    return path.stem.casefold()


def check_prefer(prefer: str) -> Prefer:
    """``prefer`` as given to ``--prefer``, or a one-line error naming it."""
    if prefer not in ("jpeg", "raw"):
        raise StackerError(f"--prefer {prefer!r} is not known: use jpeg or raw")
    if prefer == "raw" and not has_rawpy():
        raise StackerError(
            "--prefer raw needs the 'raw' extra: pip install 'stackrig[raw]' (or use --prefer jpeg)"
        )
    return prefer  # type: ignore[return-value]


def pair_choice(prefer: str | None, output: Path) -> Prefer:
    """Which file of a RAW+JPEG pair a stack writing ``output`` takes: a DNG composite is made
    from RAW frames, so it takes the RAW unless told otherwise (and then refuses)."""
    if output.suffix.lower() != ".dng":
        return check_prefer(prefer or "jpeg")
    if prefer == "jpeg":
        raise StackerError(
            f"--prefer jpeg with {output.name}: a DNG composite is made from RAW frames; leave "
            "--prefer out, or write .tif, .png or .jpg"
        )
    if not has_rawpy():
        raise StackerError(
            f"{output.name}: a DNG composite needs the 'raw' extra to read RAW frames: pip "
            "install 'stackrig[raw]' (or write .tif, .png or .jpg)"
        )
    return check_prefer(prefer or "raw")


def one_of_each_shot(files: Iterable[Path], prefer: Prefer) -> tuple[list[Path], list[Path]]:
    """(the files to stack, the partners left out): of files of one folder that share a stem,
    RAW and rendered, the ``prefer`` kind's; everything else as it was, in its order."""
    files = list(files)
    kinds: dict[tuple[Path, str], set[bool]] = {}
    for f in files:
        kinds.setdefault((f.parent, stem_key(f)), set()).add(is_raw_path(f))
    want_raw = prefer == "raw"
    kept: list[Path] = []
    left: list[Path] = []
    for f in files:
        paired = len(kinds[(f.parent, stem_key(f))]) == 2
        (left if paired and is_raw_path(f) != want_raw else kept).append(f)
    return kept, left


def partners_note(folder: Path, left: list[Path], prefer: Prefer, other: str) -> str:
    """What ``stacker stack`` and ``batch`` say of the partners :func:`one_of_each_shot` left;
    ``other`` says how to stack the other kind."""
    took = "RAW" if prefer == "raw" else "JPEG"
    return f"{folder}: {len(left)} RAW+JPEG pairs: stacking the {took} file of each ({other})"
