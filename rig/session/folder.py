"""A session folder on disk, and reconciling its journal with the frames actually there.

Layout::

    SESSION/
      plan.json            the shot plan (rig.plan.ShotPlan)
      session.json         how to rebuild the rig and the stacker on resume
      journal.jsonl        append-only record of every frame and merge
      frames/frame_0001.jpg ...
      composite.tif        (or .png/.jpg per --format), checkpointed while shooting
      depth.png            depth map (16-bit), depth-preview.jpg colourised, depth.json
      session.log          the session's log, with the camera's and the rail's warnings
      failed-attempts/     files a failed shot left behind, kept aside (never deleted)

Resume rule (see :func:`reconcile`): a position is *done* when a file of its frame is on disk.
Frames are written atomically by the camera (temporary name, fsync, rename), so any file under
its final name is complete. A frame on disk without a journal record — a crash between the
rename and the journal append — is *adopted*: it gets its journal record on resume and is not
shot again. A journal record whose files have gone (deleted by hand) does not count: that
position is shot again. Nor does a frame file that is a symbolic link, that is cut short or
that is not the size its record says (:func:`frame_file_problem`): it is moved aside to
``failed-attempts/`` and the position shot again. Either way every position ends with exactly
one frame.

One process at a time (see :meth:`SessionFolder.lock`): two runs of one session would each
find the same positions missing and shoot them twice into the same journal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import stat
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from rig.errors import RigError
from rig.plan import PlanError, ShotPlan, format_position, frame_stem
from rig.session.journal import JOURNAL_NAME, FrameEntry, JournalContents
from stacker.errors import StackerError
from stacker.io import (
    IMAGE_EXTENSIONS,
    RAW_EXTENSIONS,
    atomic_write_bytes,
    fsync_dir,
    storage_remedy,
    truncation,
)
from stacker.locking import lock_holder, try_lock
from stacker.options import OUTPUT_FORMATS, Naming, StackOptions, option_name
from stacker.pinned import read_small_text

log = logging.getLogger("rig.session")

CONFIG_FORMAT = 1
"""The version of ``session.json`` and of the journal beside it. Raise it when a newer stackrig
writes what an older one would misread; an older one then refuses the session in one line.
What the journal's records say changed within format 1 (moves journaled from 2026-12-03,
whether the zero was accepted from 2026-12-06) is told apart by the records themselves."""
_FRAME_NAME = re.compile(r"^frame_(\d{4,})(?:\.[A-Za-z0-9]+)+$")


class SessionFolderError(RigError):
    """A session folder that cannot be created or read."""


class SessionBusyError(SessionFolderError):
    """Another process is running the session in this folder."""

    exit_code = 4


@dataclass(frozen=True)
class SessionConfig:
    """Everything besides the plan that a resume needs: the rig and the stacking options.

    ``session.json`` keeps the stacking options flat beside ``rig`` (``method``, ``align``,
    ``reference``, ``interpolation``, ``crop``, ``output_format``), read by
    :meth:`StackOptions.parse <stacker.options.StackOptions.parse>` like every other front end.
    """

    rig: dict[str, Any]
    """``{"kind": "hardware", "focus": "rail"|"camera", "rail": URL, "camera_model": ...,
    "camera_port": ...}`` or ``{"kind": "simulated", "width": ..., "height": ..., ...}``."""
    stack: StackOptions = field(default_factory=StackOptions)
    checkpoint_every: int = 8
    camera: dict[str, Any] = field(default_factory=dict)
    """The camera's settings when the session started (``{"iso": "200", ...}``), as a record."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONFIG_FORMAT,
            "rig": self.rig,
            **self.stack.to_dict(),
            "checkpoint_every": self.checkpoint_every,
            "camera": self.camera,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> SessionConfig:
        if not isinstance(data, dict) or not isinstance(data.get("rig"), dict):
            raise SessionFolderError(f"{source}: not a session description (no 'rig' block)")
        fmt = data.get("format", CONFIG_FORMAT)
        if isinstance(fmt, bool) or not isinstance(fmt, int) or not 1 <= fmt <= CONFIG_FORMAT:
            raise SessionFolderError(
                f"{source}: session format {fmt!r} is not one this stackrig reads (1 to "
                f"{CONFIG_FORMAT}): a newer stackrig wrote it; resume it with that one"
            )
        stack_keys = set(StackOptions.__dataclass_fields__)
        try:
            stack = StackOptions.parse({k: v for k, v in data.items() if k in stack_keys})
        except StackerError as exc:
            raise SessionFolderError(f"{source}: {exc}") from None
        every = data.get("checkpoint_every", 8)
        if not isinstance(every, int) or every < 0:
            raise SessionFolderError(f"{source}: 'checkpoint_every' must be a whole number >= 0")
        camera = data.get("camera", {})
        if not isinstance(camera, dict):
            raise SessionFolderError(f"{source}: 'camera' must be an object of settings")
        return cls(rig=data["rig"], stack=stack, checkpoint_every=every, camera=camera)


@dataclass
class Reconciliation:
    """The state of a session folder: which positions are done, adopted, still to shoot."""

    done: dict[int, FrameEntry] = field(default_factory=dict)
    adopted: list[int] = field(default_factory=list)
    """Indexes whose files were on disk without a journal record."""
    vanished: list[int] = field(default_factory=list)
    """Indexes journaled but whose files are gone: shot again."""
    missing: list[int] = field(default_factory=list)
    """Indexes to shoot, in plan order."""
    stray: list[Path] = field(default_factory=list)
    """Frame files whose index is outside the plan (left alone)."""
    damaged: dict[int, list[tuple[Path, str]]] = field(default_factory=dict)
    """Indexes whose files are links, cut short or not the size journaled, and why: shot again
    once the files are moved aside."""

    def leave_out_lost(self) -> list[int]:
        """For a session whose camera cannot shoot a frame again (a tether session): leave out
        every missing frame up to the last one the session had (on disk, journaled, or
        damaged), that one included, so that only later numbers remain in :attr:`missing`.
        Returns the frames left out."""
        last = max([*self.done, *self.vanished, *self.damaged], default=0)
        left_out = [i for i in self.missing if i <= last]
        self.missing = [i for i in self.missing if i > last]
        return left_out


def dated_folder(parent: Path, prefix: str) -> Path:
    """``parent/<prefix>-<date>-<time>``, with ``-2``, ``-3``... while that is taken: a second
    session started without a name within the same second, or after the clock was set back (a
    Raspberry Pi has no clock of its own; summer time ends), was refused as one that exists
    already, under a name the photographer never chose."""
    stem = f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"
    name, count = stem, 1
    while os.path.lexists(parent / name):
        count += 1
        name = f"{stem}-{count}"
    return parent / name


def _claim(root: Path) -> Path:
    """Make the folder ``root``, a name :func:`dated_folder` chose, or the next one it would
    choose (``-2``, ``-3``...) where another run made it first."""
    root.parent.mkdir(parents=True, exist_ok=True)
    stem, _, count_text = root.name.rpartition("-")
    if not (count_text.isdigit() and len(count_text) < 6):  # -HHMMSS: no count yet
        stem, count_text = root.name, "1"
    name, count = root.name, int(count_text)
    while True:
        try:
            os.mkdir(root.parent / name)
            return root.parent / name
        except FileExistsError:
            count += 1
            name = f"{stem}-{count}"


def moved_away(folder: Path, identity: tuple[int, int]) -> str | None:
    """Why the path ``folder`` no longer leads to the folder that was ``identity`` (its
    device and inode when opened): a USB disk unplugged or unmounted under it, the folder
    renamed; ``None`` while it does."""
    try:
        st = os.stat(folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if (st.st_dev, st.st_ino) == identity else "another folder now"


def resume_command(root: Path) -> str:
    """``rig resume`` of the session in ``root`` as it can be pasted into a shell (see
    :func:`shell_path`)."""
    return f"rig resume {shell_path(root)}"


def shell_path(path: Path) -> str:
    """``path`` as a command shown can take it: quoted for a shell, and a path starting with a
    dash (``rig tether -o -x`` takes one) as ``./-x``, which no command takes for an option."""
    where = str(path)
    if where.startswith("-"):
        where = f".{os.sep}{where}"
    return shlex.quote(where)


def check_new(root: Path) -> None:
    """Refuse a folder a new session cannot be made in: one that holds a session, or other
    files. Frames in it would be adopted into the new session as its own, and a composite.tif
    or session.log of someone else's written over or into. Cheap: the commands check before
    opening any device (a rail's port restarts an Arduino), and :meth:`SessionFolder.create`
    again under its lock."""
    if root.exists() and not root.is_dir():
        raise SessionFolderError(f"{root}: exists and is not a folder; choose another --out")
    if (root / JOURNAL_NAME).exists() or (root / "plan.json").exists():
        raise SessionFolderError(
            f"{root}: already holds a session; continue it with `{resume_command(root)}` "
            "or choose another --out"
        )
    try:
        others = sorted(os.listdir(root)) if root.is_dir() else []
    except OSError as exc:
        raise SessionFolderError(f"{root}: cannot look into it ({exc.strerror or exc})") from None
    others = [name for name in others if not _left_by_create(root, name)]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise SessionFolderError(
            f"{root}: holds other files ({shown}); a new session needs a new or empty folder: "
            "choose another --out"
        )


_CREATE_TEMPORARY = re.compile(r"\.(plan|session)\.json\..+\.tmp")


def _left_by_create(root: Path, name: str) -> bool:
    """Whether ``name`` in ``root`` is what a :meth:`SessionFolder.create` cut short (killed
    before ``plan.json`` was in place) left: no frame yet, so the folder may be made anew."""
    if name == "session.json" or _CREATE_TEMPORARY.fullmatch(name):
        return True
    frames = root / "frames"
    return (
        name == "frames"
        and frames.is_dir()
        and not frames.is_symlink()
        and not any(frames.iterdir())
    )


def _cannot_create(root: Path, exc: OSError) -> SessionFolderError:
    """The refusal of a session folder the disk would not take, saying what to do (a full or
    read-only disk, as :func:`~stacker.io.storage_remedy` tells them)."""
    remedy = storage_remedy(exc, "")
    return SessionFolderError(
        f"{root}: cannot create the session folder ({exc.strerror or exc}); "
        + (f"{remedy}, or choose another folder" if remedy else "choose another folder")
    )


def check_reference(plan: ShotPlan, stack: StackOptions, *, name: Naming = option_name) -> None:
    """Refuse a numbered ``--reference`` beyond the plan's frames before anything is shot: the
    stacker finds it missing only at the end, and a resume cannot change it. ``name`` calls the
    field as the front end does (``'reference'`` for the station's JSON)."""
    reference = stack.reference
    if isinstance(reference, int) and reference > plan.frames:
        raise SessionFolderError(
            f"{name('reference')} {reference}: the plan shoots {plan.frames} frames; give 1 to "
            f"{plan.frames}, first, middle or last"
        )


class SessionFolder:
    """Paths of one session and the JSON files describing it.

    :attr:`plan` and :attr:`config` are what the folder holds: those it was created with, or
    read from ``plan.json`` and ``session.json`` on first use, or last saved.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._plan: ShotPlan | None = None
        self._config: SessionConfig | None = None
        self._lock: weakref.finalize | None = None
        self._identity: tuple[int, int] | None = None
        """The folder :meth:`lock` opened, as (device, inode): see :meth:`shooting_into`."""

    # paths ---------------------------------------------------------------
    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL_NAME

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def config_path(self) -> Path:
        return self.root / "session.json"

    @property
    def log_path(self) -> Path:
        return self.root / "session.log"

    def composite_path(self, output_format: str) -> Path:
        return self.root / f"composite{OUTPUT_FORMATS[output_format]}"

    @property
    def depth_path(self) -> Path:
        return self.root / "depth.png"

    @property
    def depth_preview_path(self) -> Path:
        return self.root / "depth-preview.jpg"

    @property
    def depth_json_path(self) -> Path:
        """What the depth PNG's values mean: the offset and µm per count, each frame's place."""
        return self.root / "depth.json"

    # one process at a time ----------------------------------------------
    def lock(self) -> None:
        """Hold this session for this object until :meth:`unlock` (or the process ends).

        An exclusive ``flock`` on the folder itself, so no lock file is left behind and a
        killed process (kill -9, power cut) holds nothing. Take it before reading what is done:
        the check and the shooting then happen under it. A file system without locks (some
        network mounts) is run unlocked, with a warning in the log.
        """
        if self._lock is not None:
            return
        try:
            fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise SessionFolderError(
                f"{self.root}: cannot open the session folder ({exc.strerror or exc})"
            ) from None
        opened = os.fstat(fd)
        self._identity = (opened.st_dev, opened.st_ino)
        held = try_lock(fd)
        if held is None:
            os.close(fd)
            log.warning("%s: this file system cannot lock the folder; running unlocked", self.root)
            return
        if not held:
            holder = lock_holder(fd)
            os.close(fd)
            process = "another process" if holder is None else f"process {holder}"
            raise SessionBusyError(
                f"{self.root}: {process} is running this session; let it finish or stop "
                "it (Ctrl-C), then resume"
            ) from None
        self._lock = weakref.finalize(self, os.close, fd)  # closed with this object at the latest

    def unlock(self) -> None:
        """Let another process run this session."""
        self._identity = None
        if self._lock is not None:
            self._lock()
            self._lock = None

    def shooting_into(self) -> Path:
        """``frames/``, once the folder at :attr:`root` is still the one :meth:`lock` opened.

        A disk unplugged or unmounted mid-session (a desktop unmounts a pulled USB disk, and
        may remove its mount point) left the path to another disk: the camera, which makes its
        destination's missing folders, made the session's folder there again, and the session
        shot on into the Raspberry Pi's SD card, its frames split between two disks and its
        journal on neither with them. So is a folder renamed or moved away while shooting.
        """
        if self._identity is not None:
            why = moved_away(self.root, self._identity)
            if why is not None:
                raise SessionFolderError(
                    f"{self.root}: the session folder is no longer there ({why}): its disk "
                    "was unplugged or unmounted, or the folder moved; no frame is written "
                    f"anywhere else: put it back, then `{resume_command(self.root)}`"
                )
        return self.frames_dir

    # create / load -------------------------------------------------------
    @classmethod
    def create(
        cls, root: Path, plan: ShotPlan, config: SessionConfig, *, named: bool = True
    ) -> SessionFolder:
        """Make a new session folder, locked (:meth:`lock`); refuses one that holds a session.

        ``named=False``: ``root`` is a name :func:`dated_folder` chose, and the next free one
        (``-2``...) is taken if another run made that folder since. Two sessions started in
        the same second both chose it, and the second was refused as holding the first's
        session, under a name its photographer never chose."""
        check_reference(plan, config.stack)
        if named:
            check_new(root)  # again under the lock below
        made_root = not named or not os.path.lexists(root)
        try:
            if named:
                root.mkdir(parents=True, exist_ok=True)
            else:
                root = _claim(root)
        except OSError as exc:
            raise _cannot_create(root, exc) from None
        folder = cls(root)
        if made_root:
            fsync_dir(root.parent)  # the session's name outlives a power cut, not only its files
        folder.lock()
        try:
            check_new(root)
            for left in root.iterdir():  # the temporaries of a create cut short
                if _CREATE_TEMPORARY.fullmatch(left.name):
                    left.unlink()
            folder.make_frames_dir()
            # session.json records the frames' order the plan gives them.
            folder.save_config(replace(config, stack=replace(config.stack, order=plan.direction)))
            atomic_write_bytes(folder.plan_path, plan.to_json().encode())
        except OSError as exc:
            folder.unlock()
            if made_root:  # a half-made folder would hold the name and pass for a session
                folder._remove_unfinished()
            raise _cannot_create(root, exc) from None
        except BaseException:
            folder.unlock()
            raise
        folder._plan = plan
        return folder

    @classmethod
    def find(cls, root: Path) -> SessionFolder:
        """An existing session folder, or a one-line error saying what is missing."""
        folder = cls(root)
        if not folder.root.is_dir():
            what = "not a folder" if os.path.lexists(root) else "no such session folder"
            raise SessionFolderError(f"{root}: {what}; give the folder `rig shoot` made")
        if not folder.plan_path.is_file():
            if folder._shot_before():  # plan.json lost or replaced, not a create cut short
                what = "not a file" if os.path.lexists(folder.plan_path) else "missing"
                raise SessionFolderError(
                    f"{folder.plan_path}: {what}; restore it from a backup to resume"
                    + folder._frames_kept()
                )
            if folder.config_path.is_file():
                raise SessionFolderError(
                    f"{root}: a session whose making was cut short (no plan.json, so nothing "
                    f"was shot); start it again with `{folder._maker()} --out` this folder"
                )
            inside = cls(folder.root.parent).plan_path.is_file()  # its frames/, say
            made = f"its session folder, {root.parent}" if inside else "the folder `rig shoot` made"
            raise SessionFolderError(f"{root}: not a session folder (no plan.json); give {made}")
        folder.check_frames_dir()
        return folder

    def _shot_before(self) -> bool:
        """Whether the session got past its making: a journal, or anything in ``frames/``
        (:meth:`create` writes ``plan.json`` before either)."""
        if os.path.lexists(self.journal_path):
            return True
        try:
            return self.frames_dir.is_dir() and any(self.frames_dir.iterdir())
        except OSError:
            return False

    def _maker(self) -> str:
        """The command that makes a session like this one, as ``session.json`` describes it."""
        try:
            rig = self.load_config().rig
        except SessionFolderError:
            return "rig shoot"
        demo = rig.get("kind") == "simulated"
        if "tether" in rig:
            return "rig demo --tether" if demo else "rig tether"
        return "rig demo" if demo else "rig shoot"

    def check_frames_dir(self) -> None:
        """Refuse a ``frames/`` that is a symbolic link or not a folder.

        Frames are read and written in the session's own folder only: through a link, every
        frame shot before would count as gone (frames on disk are never looked for through
        one) and the whole stack would be shot again into wherever the link points.
        """
        frames = self.frames_dir
        if frames.is_symlink():
            raise SessionFolderError(
                f"{frames}: a symbolic link; put the frames back in a real frames/ folder "
                "in the session (replace the link with its folder), then resume"
            )
        if frames.exists() and not frames.is_dir():
            raise SessionFolderError(f"{frames}: not a folder; move it aside, then resume")

    def _remove_unfinished(self) -> None:
        """Take back what :meth:`create` made in a folder it made, when it could not finish
        (a full disk): the files it wrote, then the folders if nothing else is in them."""
        for path in (self.plan_path, self.config_path):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        for folder in (self.frames_dir, self.root):
            with contextlib.suppress(OSError):
                folder.rmdir()

    def make_frames_dir(self) -> None:
        """``frames/``, made if missing (see :meth:`check_frames_dir`)."""
        self.check_frames_dir()
        self.frames_dir.mkdir(parents=True, exist_ok=True)

    @property
    def plan(self) -> ShotPlan:
        """The session's shot plan (``plan.json``, read once)."""
        if self._plan is None:
            self._plan = self.load_plan()
        return self._plan

    @property
    def config(self) -> SessionConfig:
        """The session's rig and stacking options (``session.json``, read once)."""
        if self._config is None:
            self._config = self.load_config()
        return self._config

    def load_plan(self) -> ShotPlan:
        try:
            text = read_small_text(self.plan_path)
        except OSError as exc:
            raise SessionFolderError(f"{self.plan_path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:  # a power cut on an SD card can leave any bytes
            raise SessionFolderError(
                f"{self.plan_path}: not text (damaged); restore it from a backup to resume"
                + self._frames_kept()
            ) from None
        try:
            data = json.loads(text.removeprefix("\ufeff"))  # an editor's byte-order mark
        except (ValueError, RecursionError):  # empty or cut short: a card's FAT after a power cut
            raise SessionFolderError(
                f"{self.plan_path}: not JSON (damaged); restore it from a backup to resume"
                + self._frames_kept()
            ) from None
        try:
            return ShotPlan.from_dict(data, source=str(self.plan_path), shot_before=True)
        except PlanError as exc:
            raise SessionFolderError(str(exc)) from None

    def load_config(self) -> SessionConfig:
        try:
            # A byte-order mark (an editor's) was refused: "restore it from a backup".
            data = json.loads(read_small_text(self.config_path).removeprefix("\ufeff"))
        except FileNotFoundError:
            raise SessionFolderError(
                f"{self.config_path}: missing; restore it from a backup to resume"
                + self._frames_kept()
            ) from None
        except (OSError, ValueError, RecursionError) as exc:  # recursion: "[" nested deeply
            raise SessionFolderError(
                f"{self.config_path}: unreadable ({exc}); restore it from a backup to resume"
                + self._frames_kept()
            ) from None
        return SessionConfig.from_dict(data, source=str(self.config_path))

    def _frames_kept(self) -> str:
        """What a session whose own files are damaged still offers: its frames, untouched."""
        return (
            f" (the frames are kept: `stacker stack {shell_path(self.frames_dir)} -o "
            "composite.tif` stacks them)"
        )

    def save_config(self, config: SessionConfig) -> None:
        """Write ``session.json``; :attr:`config` is then ``config``."""
        atomic_write_bytes(self.config_path, _json_bytes(config.to_dict()))
        self._config = config

    # frames --------------------------------------------------------------
    def frames_on_disk(self, *, links: bool = True) -> dict[int, list[Path]]:
        """Frame files per index (hidden temporaries are not frames).

        Symbolic links named like frames are listed too (never followed) unless ``links`` is
        false: :func:`reconcile` finds them wanting, and the runner moves them aside before
        shooting that frame again. Told apart by the folder's listing alone, without a look
        at each file (a station lists tens of thousands at each page load).
        """
        found: dict[int, list[Path]] = {}
        if not self.frames_dir.is_dir() or self.frames_dir.is_symlink():
            return found
        with os.scandir(self.frames_dir) as entries:
            kept = [
                e
                for e in entries
                if not e.name.startswith(".")
                and (e.is_file(follow_symlinks=False) or (links and e.is_symlink()))
            ]
        for e in sorted(kept, key=lambda e: e.name):
            m = _FRAME_NAME.match(e.name)
            if m and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                found.setdefault(int(m.group(1)), []).append(self.frames_dir / e.name)
        return found

    def in_the_way(self, indices: Iterable[int]) -> dict[int, list[Path]]:
        """What holds the names of frames still to shoot: anything in ``frames/`` named
        ``frame_NNNN`` or ``frame_NNNN.*`` for those ``indices`` (a sidecar a photo manager
        left, ``frame_0003.jpg.xmp``; a folder). The camera would write the frame as
        ``frame_NNNN_2``, which no later resume counts as that frame, and shoot it again each
        time."""
        stems = {frame_stem(i): i for i in indices}
        found: dict[int, list[Path]] = {}
        if not stems or not self.frames_dir.is_dir() or self.frames_dir.is_symlink():
            return found
        for p in sorted(self.frames_dir.iterdir()):
            index = stems.get(p.name.split(".", 1)[0])
            if index is not None:
                found.setdefault(index, []).append(p)
        return found

    def set_aside(self, files: list[Path], tag: str) -> Path:
        """Rename ``files`` (links themselves, never their targets) into ``failed-attempts/``.

        A name already taken there gets a number: nothing set aside is ever replaced. A
        ``failed-attempts`` that is a link or not a folder is refused: through a link the
        frames would leave the session for wherever it points.
        """
        aside = self.root / "failed-attempts"
        with contextlib.suppress(FileExistsError):
            aside.mkdir()
        if aside.is_symlink() or not aside.is_dir():
            kind = "a symbolic link" if aside.is_symlink() else "not a folder"
            raise SessionFolderError(
                f"{aside}: {kind}, where the session keeps the files of failed shots; move it "
                "out of the session folder, then resume"
            )
        for p in files:
            target = aside / f"{p.stem}.{tag}{p.suffix}"
            n = 1
            while target.exists() or target.is_symlink():
                n += 1
                target = aside / f"{p.stem}.{tag}-{n}{p.suffix}"
            p.replace(target)
        return aside

    def remove_temporaries(self) -> list[Path]:
        """Delete half-written hidden temporaries a crash left behind.

        Those of frames in ``frames/``, and those of the session's own files in the folder
        (``.composite.tif.XXXX.tmp``: a checkpoint cut short by a power cut is as large as
        the composite, and one more is left by every such interruption).
        """
        from stacker.io import remove_temporaries
        from stacker.output import depth_paths

        own = {self.composite_path(f) for f in OUTPUT_FORMATS}
        own |= {self.plan_path, self.config_path, *depth_paths(self.depth_path)}
        removed = remove_temporaries(own)
        if self.frames_dir.is_dir():
            for p in self.frames_dir.iterdir():
                if (
                    p.name.startswith(".")
                    and p.name.endswith(".tmp")
                    and (p.is_symlink() or p.is_file())  # a folder of that name is not ours
                ):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed


def check_plan_matches(
    plan: ShotPlan, journal: JournalContents, on_disk: dict[int, list[Path]], *, source: str
) -> None:
    """Refuse a plan that no longer puts the frames on disk where they were shot.

    ``plan.json`` edited by hand after shooting began (another direction, step or range)
    would have the missing frames shot at the new positions: some depths twice, others never,
    and the session would still call itself complete. Edits that keep every frame shot in its
    place (a longer range at the same step, other delays) pass.
    """
    planned = {shot.index: shot.position for shot in plan.positions()}
    for index, rec in sorted(journal.frames().items()):
        position, units = rec.get("position"), rec.get("units", plan.units)
        if index not in planned or index not in on_disk or position is None:
            continue  # outside the plan (stray), gone (shot again), or a tether frame
        if units != plan.units or abs(position - planned[index]) > 1e-6 * max(1.0, abs(position)):
            raise SessionFolderError(
                f"{source}: frame {index} was shot at {format_position(position, units)} "
                f"but this plan puts it at {format_position(planned[index], plan.units)}; "
                "the plan was changed after shooting began: put plan.json back, or shoot the "
                "new plan as a new session"
            )


def reconcile(
    plan: ShotPlan,
    journal: JournalContents,
    on_disk: dict[int, list[Path]],
    *,
    stacked: StackedKind | None = None,
) -> Reconciliation:
    """Decide, per planned index, whether its frame is done, adopted or still to shoot.

    ``stacked`` (:func:`stacked_kind`; None for a camera that cannot shoot a frame again): a
    shot on disk without its journal record that holds no file of that kind is not adopted
    but moved aside and shot again. A crash between the two downloads of a RAW+JPEG shot
    leaves one file of it, and a RAW alone in a stack of JPEGs is kept out (a stack cannot mix
    linear and rendered frames) — as the first frame, it would turn the whole stack linear and
    keep every JPEG out. So is a journaled shot missing a file its record lists that holds no
    file of that kind: a shot taken again, cut the same way, beside the record of the one before.
    """
    result = Reconciliation()
    journaled = journal.frames()
    for shot in plan.positions():
        files = on_disk.get(shot.index, [])
        rec = journaled.get(shot.index)
        damage = [(f, why) for f in files if (why := frame_file_problem(f, rec)) is not None]
        if not damage and files and stacked is not None and (rec is None or _lost_one(files, rec)):
            half = _half_shot(files, stacked)
            damage = [(f, half) for f in files] if half is not None else []
        if damage:
            # The whole shot goes aside: a RAW+JPEG partner left behind would hold the frame's
            # name, and the reshot pair land under another.
            others = [(f, "the other file of that shot") for f in files if f not in dict(damage)]
            result.damaged[shot.index] = damage + others
            result.missing.append(shot.index)
            continue
        if files:
            entry = FrameEntry(shot.index, shot.position, files, adopted=rec is None)
            if rec is not None:
                position = rec.get("position")  # null: a frame whose position is not known
                entry.position = shot.position if position is None else float(position)
                entry.extra = {k: rec[k] for k in ("captured_at",) if k in rec}
            else:
                result.adopted.append(shot.index)
            result.done[shot.index] = entry
        else:
            if rec is not None:
                result.vanished.append(shot.index)
            result.missing.append(shot.index)
    result.stray = [p for i, ps in on_disk.items() if not 1 <= i <= plan.frames for p in ps]
    return result


def frame_file_problem(path: Path, record: dict[str, Any] | None) -> str | None:
    """Why the frame file ``path`` cannot be kept, or None.

    A frame is a regular file of its own: never a link (it could point anywhere, and its target
    can change), the size its journal record says when it has one, and for JPEG and PNG
    complete to its end marker (a copy cut short, a disk that filled). A file grown since it was
    written and still complete was edited, not damaged (a photo manager writing a rating or
    keywords into it): kept, where it was moved aside and, for a tether session, lost from the
    stack for good. So is a JPEG or PNG saved again smaller, complete to its end marker.
    """
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link, not a frame file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    names, sizes = (record.get("files", []), record.get("sizes")) if record else ([], None)
    recorded = None
    if sizes is not None:  # same length as files: checked when the journal was read
        recorded = next(
            (n for f, n in zip(names, sizes, strict=True) if Path(f).name == path.name), None
        )
    try:
        cut = truncation(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if cut is not None:
        return cut
    if recorded is not None and st.st_size < recorded and not _ends_marked(path):
        return f"{st.st_size} bytes where {recorded} were written"  # cut past its end, at least
    return None


def _ends_marked(path: Path) -> bool:
    """Whether ``path`` is a JPEG or PNG, whose completeness :func:`truncation` told by its end
    marker: smaller than written and complete, it was saved again (an edit), not cut short;
    called damaged, it was moved aside and, for a tether session, lost from the stack."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith((b"\xff\xd8", b"\x89PNG\r\n\x1a\n"))


StackedKind = Literal["raw", "rendered"]


def stacked_kind(config: SessionConfig) -> StackedKind:
    """The kind of file a shot must hold for the session to stack it: its RAW file for a DNG
    composite (stacked in linear light), else a rendered one (JPEG, TIFF, PNG)."""
    return "raw" if config.stack.suffix == ".dng" else "rendered"


def _lost_one(files: list[Path], record: dict[str, Any]) -> bool:
    """Whether a file its journal ``record`` lists is missing from a shot's ``files``: a shot
    taken again (its files were gone or damaged) and cut between its two downloads, beside
    the record of the shot before, or a file removed by hand."""
    have = {f.name for f in files}
    listed = (Path(name).name for name in record.get("files", []))
    return any(name not in have and _is_frame_name(name) for name in listed)


def _is_frame_name(name: str) -> bool:
    """Whether :meth:`SessionFolder.frames_on_disk` lists a file of this name (a sidecar or a
    HEIF file of a shot is not, and is never missed)."""
    return bool(_FRAME_NAME.match(name)) and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _half_shot(files: list[Path], stacked: StackedKind) -> str | None:
    """Why ``files``, a shot without its journal record, are not a whole shot, or None."""
    raw = [f.suffix.lower() in RAW_EXTENSIONS for f in files]
    if (stacked == "raw") in raw:
        return None
    wanting = "RAW file" if stacked == "raw" else "JPEG (or TIFF, PNG)"
    return f"alone, without the {wanting} of its shot (a shot cut in two)"


def stack_file(files: list[Path], *, raw: bool = False) -> Path:
    """The file of a shot to stack: a rendered raster (JPEG/TIFF/PNG) before a RAW file, or
    with ``raw`` (a DNG composite, stacked in linear light) the RAW file first."""
    rasters = [f for f in files if f.suffix.lower() not in RAW_EXTENSIONS]
    raws = [f for f in files if f.suffix.lower() in RAW_EXTENSIONS]
    preferred, other = (raws, rasters) if raw else (rasters, raws)
    return (preferred or other)[0]


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()
