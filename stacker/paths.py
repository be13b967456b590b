"""Keeping a run's outputs apart from its inputs, and checking them before any work.

Every image a stack writes as a result (the composite, the depth map and its colour preview)
carries a mark: :data:`stacker.output.OUTPUT_SOFTWARE` in a PNG ``tEXt`` chunk, the TIFF
Software tag or a JPEG comment (see :func:`stacker.metadata.mark_software`). Outputs of ours
are never inputs: ``stacker stack FOLDER`` and ``stacker watch`` leave marked files out, so a
rerun into the frames' folder does not stack the previous ``stacked.jpg`` or
``depth-preview.jpg``. A file named on its own on the command line is taken as given (a stack
of stacks is a real workflow).

Before any work, :func:`check_distinct` compares each output with the inputs and with the other
outputs by resolved path and by ``samefile`` (links and hard links count, and on a disk that
ignores case, a name spelt otherwise), so a run can never replace a frame it reads or one of
its own results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stacker.errors import Interrupted, StackerError
from stacker.metadata import has_software_mark
from stacker.output import OUTPUT_SOFTWARE, depth_paths


def output_paths(
    output: str | os.PathLike[str], depth_map: str | os.PathLike[str] | None
) -> list[Path]:
    """Every file a write of the outputs creates (the depth map brings a preview and a sidecar)."""
    return [Path(output), *(depth_paths(depth_map) if depth_map is not None else ())]


def is_our_output(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an image stackrig wrote as a result (it carries our marker)."""
    return has_software_mark(Path(path), OUTPUT_SOFTWARE)


FileIdentity = tuple[int, int, int, int]


def file_identity(path: str | os.PathLike[str]) -> FileIdentity | None:
    """What makes two names one frame on disk: device, inode, size and modification time (a
    second name, a hard or symbolic link); ``None`` when the file cannot be looked at or its
    file system gives no inode numbers. Size and time are compared too, so that a file system
    that numbers inodes loosely (some network and FUSE mounts) never merges two frames."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not st.st_ino:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


FileStamp = tuple[int, int, int, int]


def stamps(paths: Iterable[Path]) -> dict[Path, FileStamp | None]:
    """Each path's device, inode, size and modification time, ``None`` where there is no
    file: :func:`rewritten` compares them later."""
    stamped: dict[Path, FileStamp | None] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamped[path] = None
        else:
            stamped[path] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return stamped


def rewritten(before: dict[Path, FileStamp | None]) -> list[Path]:
    """The paths of ``before`` (see :func:`stamps`) that hold another file now. An atomic
    write always makes a new file, so this holds whatever the clock says: compared with the
    time a run started, an output written while the clock ran ahead looked new, and one
    written after NTP set the clock back looked old."""
    now = stamps(before)
    return [path for path, stamp in now.items() if stamp is not None and stamp != before[path]]


def once_each(files: list[Path], on_note: Callable[[str], None] | None) -> list[Path]:
    """``files`` with every file on disk once (see :func:`file_identity`), and every content
    once (see :func:`copies`), in the order each first came.

    ``on_note`` hears of the names left out, each with the name it is stacked under, which
    the frames' table shows: ``f/pcb_001.jpg (stacked as link_001.jpg)`` for a link,
    ``link_001.jpg``, that came first.
    """
    seen: dict[FileIdentity, Path] = {}
    kept: list[Path] = []
    again: list[tuple[Path, Path]] = []
    for f in files:
        key = file_identity(f)  # None: gone since it was listed; reading it reports that
        if key is not None and key in seen:
            again.append((f, seen[key]))
            continue
        if key is not None:
            seen[key] = f
        kept.append(f)
    copied = copies(kept)
    if on_note is not None:
        told = (
            (again, "a file named twice", "{} files named twice"),
            (list(copied.items()), "a file is a copy of another", "{} files are copies of others"),
        )
        for pairs, one, many in told:
            if pairs:
                names = ", ".join(_named_again(f, first) for f, first in pairs[:3])
                more = ", ..." if len(pairs) > 3 else ""
                count = many.format(len(pairs)) if len(pairs) > 1 else one
                on_note(f"{count}, stacked once: {names}{more}")
    return [f for f in kept if f not in copied]


SAMPLE = 1 << 12
"""Bytes read at the start, middle and end of each file that :func:`copies` compares."""


def copies(files: list[Path]) -> dict[Path, Path]:
    """Each of ``files`` whose bytes are those of one before it, with that one: a card
    imported twice into one folder (``IMG_0005 (1).JPG``), the same frame stacked twice and
    the depth map told two planes. Only files of one size are looked at, by samples first
    (frames of one size, uncompressed ones, are told apart there), then whole."""
    by_size: dict[int, list[Path]] = {}
    for f in files:
        with contextlib.suppress(OSError):
            by_size.setdefault(os.stat(f).st_size, []).append(f)
    found: dict[Path, Path] = {}
    for size, same in by_size.items():
        if len(same) < 2 or size == 0:
            continue
        firsts: dict[bytes, list[Path]] = {}
        for f in same:
            sampled = _samples(f, size)
            if sampled is None:
                continue
            earlier = firsts.setdefault(sampled, [])
            original = next((e for e in earlier if _same_bytes(e, f)), None)
            if original is None:
                earlier.append(f)
            else:
                found[f] = original
    return found


def _samples(path: Path, size: int) -> bytes | None:
    try:
        with path.open("rb") as fh:
            parts = []
            for at in sorted({0, max(0, size // 2 - SAMPLE // 2), max(0, size - SAMPLE)}):
                fh.seek(at)
                parts.append(fh.read(SAMPLE))
            return hashlib.blake2b(b"".join(parts), digest_size=16).digest()
    except OSError:
        return None


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        with a.open("rb") as fa, b.open("rb") as fb:
            while True:
                block = fa.read(1 << 20)
                if block != fb.read(1 << 20):
                    return False
                if not block:
                    return True
    except OSError:
        return False


def _named_again(path: Path, first: Path) -> str:
    """``path``, left out as ``first`` names the same file: and ``first``, unless it is the
    same name; by its file name alone beside it in one folder, as the frames' table shows it."""
    if path == first:
        return str(path)
    shown = first.name if first.parent == path.parent else str(first)
    return f"{path} (stacked as {shown})"


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path, the same inode, or
    names in one folder that differ only in case where the folder's file system ignores it."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b) or _one_name_in_any_case(a, b)
    except OSError:  # one of them does not exist (yet): different files
        return False


def _one_name_in_any_case(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b``, both there, are one entry reached through names that differ
    only in case, in folders that ignore it (FAT, exFAT): a FAT or exFAT disk mounted through
    FUSE gives each spelling its own inode number, and ``-o FRAME_0001.JPG`` (or
    ``-o CARD/frame_0001.jpg`` for ``card/``) replaced the frame ``frame_0001.jpg`` it was
    stacking. Each folder's listing tells, at each name spelt otherwise: it holds the entry
    under one spelling only."""
    real_a, real_b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    if len(real_a.parts) != len(real_b.parts) or str(real_a).casefold() != str(real_b).casefold():
        return False
    folder = Path(real_a.anchor)
    for mine, other in zip(real_a.parts[1:], real_b.parts[1:], strict=True):
        if mine != other:
            names = set(os.listdir(folder))
            if mine in names and other in names:
                return False
        folder /= mine
    return True


def check_distinct(outputs: list[Path], inputs: Iterable[Path] = ()) -> None:
    """Raise a one-line :class:`StackerError` when an output is an input or another output."""
    for i, out in enumerate(outputs):
        for other in outputs[:i]:
            if same_file(out, other):
                raise StackerError(
                    f"{out}: written twice by this run (the composite, the depth map, its "
                    f"preview and its .json sidecar need four different names); rename one"
                )
    for path in inputs:
        for out in outputs:
            if same_file(out, path):
                raise StackerError(
                    f"{out}: is one of the input frames and would be overwritten; "
                    "write the result to another name"
                )


@contextmanager
def interrupted_stack(
    output: Path, depth_map: Path | None, total: int, done: Callable[[], float]
) -> Iterator[None]:
    """Turn Ctrl-C during a stack into :class:`Interrupted` saying what was (not) written.

    Outputs are written atomically, so each one is either complete and new, or as it was.
    """
    paths = output_paths(output, depth_map)
    before = stamps(paths)
    try:
        yield
    except KeyboardInterrupt:
        new = rewritten(before)
        if new:
            what = "wrote " + ", ".join(map(str, new))
            if len(new) < len(paths):
                what += "; not " + ", ".join(str(p) for p in paths if p not in new)
        else:
            state = "left as it was" if output.exists() else "not created"
            what = f"nothing written ({output} {state})"
        raise Interrupted(f"interrupted after {int(done())} of {total} frames; {what}") from None
