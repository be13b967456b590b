"""One file of each RAW+JPEG shot.

A camera set to RAW+JPEG writes two files of every exposure, which share a stem
(``IMG_0001.CR2`` and ``IMG_0001.JPG``, whatever the case), or which ``gphoto2
--capture-tethered`` numbers one after the other (:class:`ShotKeys`). A stack takes one of them: the
same exposure twice would count double in the merge, and a stack cannot mix linear (RAW) and
rendered frames. The JPEG is the default (fast, the camera's rendering); a DNG composite is
made from RAW frames. The hot folder (:mod:`stacker.hotfolder`) pairs files as they arrive;
:func:`one_of_each_shot` pairs a folder already shot, for ``stacker stack`` and ``batch``.
"""

from __future__ import annotations

import re
from collections import defaultdict
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


#: libgphoto2's names for a camera's RAM captures (Canon EOS, Nikon SDRAM, Sony), which
#: ``gphoto2 --capture-tethered`` keeps: ``capt%04d`` with a counter bumped per *file*
#: (camlibs/ptp2/library.c, ``camera_wait_for_event``), so a RAW+JPEG shot is capt0006.cr3 and
#: capt0007.jpg.
_CAPT = re.compile(r"capt(\d{4,})")


class ShotKeys:
    """What the files of one shot share, for the files of one folder given in the order they
    came (as they land, or a folder's in natural order): the stem (:func:`stem_key`). A
    ``capt%04d`` file (:data:`_CAPT`) joins the one numbered just before it, when that one is
    of the other kind (RAW or not) and still alone."""

    def __init__(self) -> None:
        self.capt_numbers: dict[int, Path] = {}
        """The ``capt%04d`` files given, by number."""
        self._capt_keys: dict[Path, str] = {}  # their keys

    def key(self, path: Path) -> str:
        """The key of ``path``'s shot (the same for a path given again)."""
        if (known := self._capt_keys.get(path)) is not None:
            return known
        key = stem_key(path)
        match = _CAPT.fullmatch(key)
        if match is None:
            return key
        number = int(match.group(1))
        before = self.capt_numbers.get(number - 1)
        if before is not None and is_raw_path(before) != is_raw_path(path):
            before_key = self._capt_keys[before]
            if list(self._capt_keys.values()).count(before_key) == 1:
                key = before_key
        self.capt_numbers[number] = path
        self._capt_keys[path] = key
        return key

    def forget(self, path: Path) -> None:
        """``path`` is gone (deleted, renamed away): a file given later under its name is
        another shot. gphoto2 numbers from ``capt0000`` again each run: after a RAW+JPEG run
        and a cleared folder, a JPEG-only run's ``capt0001.jpg`` kept the key of the old
        ``capt0000.cr3``, and was passed over as the partner of the new ``capt0000.jpg``."""
        if self._capt_keys.pop(path, None) is None:
            return
        number = int(_CAPT.fullmatch(stem_key(path)).group(1))  # type: ignore[union-attr]
        if self.capt_numbers.get(number) == path:
            del self.capt_numbers[number]


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


def one_of_each_shot(
    files: Iterable[Path], prefer: Prefer
) -> tuple[list[Path], list[Path], list[Path]]:
    """(the files to stack, the partners left out, the files left out alone): of the files of
    one shot (:class:`ShotKeys`, ``files`` in the order they were shot), RAW and rendered, the
    ``prefer`` kind's; everything else as it was, in its order. In a folder of pairs, a file of
    the other kind alone (a shot whose RAW or JPEG did not arrive) is left out as well: stacked,
    it ended the whole stack with "a rendered frame in a stack of RAW frames"."""
    files = list(files)
    keys: defaultdict[Path, ShotKeys] = defaultdict(ShotKeys)  # by folder
    shot = {f: (f.parent, keys[f.parent].key(f)) for f in files}
    kinds: dict[tuple[Path, str], set[bool]] = {}
    for f in files:
        kinds.setdefault(shot[f], set()).add(is_raw_path(f))
    paired_folders = {folder for (folder, _), both in kinds.items() if len(both) == 2}
    want_raw = prefer == "raw"
    kept: list[Path] = []
    left: list[Path] = []
    lone: list[Path] = []
    for f in files:
        if is_raw_path(f) == want_raw:
            kept.append(f)
        elif len(kinds[shot[f]]) == 2:
            left.append(f)
        elif f.parent in paired_folders:
            lone.append(f)
        else:
            kept.append(f)
    if lone and len(lone) >= len(kept):  # not a partner or two missing: shot in the other kind
        want, other = _kinds(prefer)
        how = "--prefer jpeg and a .tif, .png or .jpg output" if want_raw else "--prefer raw"
        raise StackerError(
            f"{lone[0].parent}: {len(lone)} {other} files have no {want} partner and {len(kept)} "
            f"{want} files are to be stacked: a stack is of one kind; for the {other} files, "
            f"{how}"
        )
    return kept, left, lone


def lone_note(folder: Path, lone: list[Path], prefer: Prefer) -> str:
    """What ``stacker stack`` and ``batch`` say of the files :func:`one_of_each_shot` left out
    alone."""
    want, other = _kinds(prefer)
    names = ", ".join(f.name for f in lone)
    return (
        f"{folder}: left out, {other} files whose shot has no {want} file (a stack is of one "
        f"kind): {names}"
    )


def _kinds(prefer: Prefer) -> tuple[str, str]:
    """(the kind stacked, the other), as messages name them."""
    return ("RAW", "JPEG") if prefer == "raw" else ("JPEG", "RAW")


def partners_note(folder: Path, left: list[Path], prefer: Prefer, other: str) -> str:
    """What ``stacker stack`` and ``batch`` say of the partners :func:`one_of_each_shot` left;
    ``other`` says how to stack the other kind."""
    took, _ = _kinds(prefer)
    return f"{folder}: {len(left)} RAW+JPEG pairs: stacking the {took} file of each ({other})"
