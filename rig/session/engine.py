"""The per-frame engine of a session: move, settle, capture with retries, set aside partial shots.

:class:`FrameEngine` shoots one planned position at a time for the
:class:`~rig.session.runner.SessionRunner`, which owns the state machine, the journal and the
stacking. It knows the devices and the timing of the plan; it waits on the session's stop event,
so a stop or abort ends a wait at once (``SessionStopped``).

Faults: a camera that reports busy or a transient I/O error is retried (``capture_retries``,
with a growing delay); re-shooting a position is safe because its files are simply replaced,
and whatever a failed shot left behind is moved to ``failed-attempts/`` first.

Overlap: a camera that can report the end of the exposure before its files are downloaded
(:meth:`rig.camera.Camera.release`) lets the rail move to the next position and settle while
the last frame's files travel over USB (a 50 MB RAW takes about 2 s over USB 2). The runner
records that frame once its download completes, before the next shot; a download that fails is
shot again at its own position. ``RunnerOptions.move_during_download=False`` turns this off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rig.errors import DeviceBusyError, DeviceNotFoundError, RigError
from rig.focuser import Focuser
from rig.plan import frame_stem
from rig.session.folder import SessionFolder
from stacker.errors import UserError


class CaptureDevice(Protocol):
    """What the runner needs from a camera: shoot and write every file of the shot atomically."""

    def capture(
        self, dest_dir: Path, stem: str | None = None, *, on_progress: Any = None
    ) -> list[Path]: ...


class PendingShotLike(Protocol):
    """A shot whose exposure is over; :meth:`download` writes its files and returns them."""

    def download(self, on_progress: Any = None) -> list[Path]: ...


class ReleasingDevice(CaptureDevice, Protocol):
    """A camera that returns after the exposure and downloads separately (overlap)."""

    def release(self, dest_dir: Path, stem: str | None = None) -> PendingShotLike: ...


class SessionStopped(Exception):
    """A stop or abort was requested while waiting or moving."""


class SourceEnded(Exception):
    """The frames' source has no more to give (a tether's idle timeout): a normal end."""


class Engine(Protocol):
    """What the runner asks of whatever produces the frames (:class:`FrameEngine`, or
    :class:`~rig.session.tether.TetherEngine` for frames the camera shoots by itself)."""

    reshoots: bool
    """Whether a frame lost from the folder can be shot again at its place in the stack."""

    def check_stop(self) -> None: ...

    def approach(self, index: int) -> Approach: ...

    def expose(self, at: Approach) -> Shot | InFlight: ...

    def land(self, flight: InFlight, *, reshoot: bool = True) -> Shot: ...

    def return_to_start(self) -> None: ...


@dataclass(frozen=True)
class EngineHooks:
    """The runner's side of an engine: its stop event and where phases and warnings go."""

    stop: threading.Event
    on_phase: Callable[[str, float | None], None]
    warn: Callable[[str], None]
    on_move: Callable[[float, bool], None] = lambda position, arrived: None
    """Hears each move's target before the focuser is told (``arrived`` False) and once it
    is there (True): the runner journals where the rail was sent."""

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, ending early (with :class:`SessionStopped`) on a stop."""
        if seconds > 0 and self.stop.wait(seconds):
            raise SessionStopped()


@dataclass
class RunnerOptions:
    """Tuning of the capture loop (not part of the plan: the same plan runs on any machine)."""

    queue_size: int = 8
    capture_retries: int = 3
    retry_delay_s: float = 1.0
    write_outputs: bool = True
    previews: bool = True
    move_during_download: bool = True
    """Move to the next position while the last frame downloads (cameras with ``release``)."""


@dataclass(frozen=True)
class Shot:
    """One position shot: its files, when the move ended, and how many attempts it took."""

    index: int
    position: float
    files: list[Path]
    moved_at: float
    attempts: int
    moved_back: bool = False
    """Shot again at its own position after the rail had moved on (see :meth:`FrameEngine.land`):
    the rail no longer stands where the next frame was approached."""


_T = TypeVar("_T")


@dataclass
class Approach:
    """A position reached and settled: where, when the move ended, when the frame began."""

    index: int
    position: float
    moved_at: float
    started: float


class InFlight:
    """A frame whose files download on a thread while the rail moves on."""

    def __init__(self, approach: Approach, shot: PendingShotLike, attempts: int) -> None:
        self.approach = approach
        self.attempts = attempts
        self._files: list[Path] = []
        self._error: Exception | None = None
        self._thread = threading.Thread(
            target=self._download, args=(shot,), name=f"download-{approach.index}", daemon=True
        )
        self._thread.start()

    def _download(self, shot: PendingShotLike) -> None:
        try:
            self._files = list(shot.download())
        except Exception as exc:  # handed to the capture thread, which decides
            self._error = exc

    def wait(self) -> tuple[list[Path], Exception | None]:
        """The files written, or the error that stopped the download."""
        self._thread.join()
        return self._files, self._error


class FrameEngine:
    """Shoots the positions of ``folder``'s plan with ``focuser`` and ``camera`` into its frames.

    ``hooks.on_phase`` hears ``"moving"``, ``"settling"`` and ``"capturing"`` (the runner shows
    them); ``hooks.warn`` hears retries and set-aside files; ``hooks.stop`` ends every wait.
    """

    reshoots = True

    def __init__(
        self,
        folder: SessionFolder,
        *,
        focuser: Focuser,
        camera: CaptureDevice,
        options: RunnerOptions,
        hooks: EngineHooks,
    ) -> None:
        self.folder = folder
        self.plan = folder.plan
        self.focuser = focuser
        self.camera = camera
        self.options = options
        self.hooks = hooks
        self._last_shutter: float | None = None

    def check_stop(self) -> None:
        """Raise :class:`SessionStopped` once a stop was requested."""
        if self.hooks.stop.is_set():
            raise SessionStopped()

    def approach(self, index: int) -> Approach:
        """Move to frame ``index``'s position, settle, and wait for the flash to recharge."""
        started = time.monotonic()
        position = self.plan.position_of(index)
        self.hooks.on_phase("moving", None)
        self._move_to(position)  # the previous frame may still be downloading
        moved_at = time.time()
        self.hooks.on_phase("settling", position)
        self.hooks.wait(self.plan.settle_s + self.plan.exposure_delay_s)
        if self._last_shutter is not None and self.plan.flash_recycle_s > 0:
            self.hooks.wait(self.plan.flash_recycle_s - (time.monotonic() - self._last_shutter))
        return Approach(index, position, moved_at, started)

    def overlapping(self) -> bool:
        """Whether shots download on a thread while the rail moves on."""
        return self.options.move_during_download and hasattr(self.camera, "release")

    def expose(self, at: Approach) -> Shot | InFlight:
        """Capture at a reached position: the whole shot, or one still downloading."""
        self.check_stop()
        self.hooks.on_phase("capturing", at.position)
        self._last_shutter = time.monotonic()
        if self.overlapping():
            camera: ReleasingDevice = self.camera  # type: ignore[assignment]
            stem = frame_stem(at.index)
            pending, attempts = self._retrying(
                at.index, lambda: camera.release(self.folder.shooting_into(), stem)
            )
            return InFlight(at, pending, attempts)
        files, attempts = self.capture(at.index)
        return Shot(at.index, at.position, files, at.moved_at, attempts)

    def land(self, flight: InFlight, *, reshoot: bool = True) -> Shot:
        """Wait for an in-flight download; reshoot the frame if it failed.

        A failed download leaves its files on the camera (or its partial files set aside);
        the frame is shot again at its own position, with the usual retries, when the failure
        is retryable; the shot then says it ``moved_back``, and the next frame must be
        approached again. Without ``reshoot`` (the session is ending) the error stands.
        """
        files, error = flight.wait()
        at = flight.approach
        if error is None:
            if not files:
                raise RigError(f"frame {at.index}: the camera returned no file")
            return Shot(at.index, at.position, files, at.moved_at, flight.attempts)
        self.set_aside_partial(at.index, flight.attempts)
        if not reshoot or self.hooks.stop.is_set() or not retryable(error):
            raise error
        self.hooks.warn(f"frame {at.index}: {error}; shooting it again")
        self._move_to(at.position)
        self.hooks.wait(self.plan.settle_s + self.plan.exposure_delay_s)
        files, attempts = self.capture(at.index)
        return Shot(
            at.index, at.position, files, at.moved_at, flight.attempts + attempts, moved_back=True
        )

    def capture(self, index: int) -> tuple[list[Path], int]:
        """Shoot frame ``index``, retrying transient camera errors; (files, attempts)."""
        files, attempts = self._retrying(
            index, lambda: self.camera.capture(self.folder.shooting_into(), frame_stem(index))
        )
        if not files:
            raise RigError(f"frame {index}: the camera returned no file")
        return list(files), attempts

    def _retrying(self, index: int, shoot: Callable[[], _T]) -> tuple[_T, int]:
        """``shoot()`` with retries of transient camera errors; (its result, attempts)."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return shoot(), attempts
            except UserError as exc:
                self.set_aside_partial(index, attempts)
                if (
                    self.hooks.stop.is_set()
                    or not retryable(exc)
                    or attempts > self.options.capture_retries
                ):
                    raise
                self.hooks.warn(
                    f"frame {index}: {exc}; retrying ({attempts}/{self.options.capture_retries})"
                )
                self.hooks.wait(self.options.retry_delay_s * attempts)

    def set_aside_partial(self, index: int, attempt: int) -> None:
        """Move files a failed shot left (a RAW without its JPEG) out of ``frames/``.

        They are kept in ``failed-attempts/``, never deleted; ``frames/`` then holds only
        complete shots, so a retry or a resume shoots this position again cleanly.
        """
        stem = frame_stem(index)
        frames = self.folder.frames_dir
        partial = [
            p
            for p in (frames.iterdir() if frames.is_dir() else ())
            if p.name.startswith((stem + ".", stem + "-")) and (p.is_file() or p.is_symlink())
        ]
        if partial:
            aside = self.folder.set_aside(partial, f"attempt{attempt}")
            self.hooks.warn(
                f"frame {index}: moved {len(partial)} file(s) of the failed shot to {aside.name}/"
            )

    def return_to_start(self) -> None:
        """Move back to the first position; a failure is only a warning (the frames are shot)."""
        self.hooks.on_phase("returning to start", None)
        try:
            self._move_to(self.plan.start)
        except UserError as exc:
            self.hooks.warn(f"could not return to start: {exc}")

    def _move_to(self, position: float) -> None:
        self.hooks.on_move(position, False)
        self.focuser.move_to(position)
        self.hooks.on_move(position, True)


class NothingToShoot:
    """The engine of a session whose frames are all on disk: resuming it only stacks them and
    writes the outputs, so no rail or camera is opened (a rail's port restarts an Arduino)."""

    def __init__(self, *, reshoots: bool = True) -> None:
        self.reshoots = reshoots
        """False for a tether session: the frames it lost are left out, not waited for."""

    def check_stop(self) -> None:
        """Nothing runs that a stop could end."""

    def approach(self, index: int) -> Approach:
        raise RigError(f"frame {index}: this session was resumed without its rail and camera")

    def expose(self, at: Approach) -> Shot:
        raise RigError(f"frame {at.index}: this session was resumed without its rail and camera")

    def land(self, flight: InFlight, *, reshoot: bool = True) -> Shot:
        raise RigError("this session was resumed without its rail and camera")

    def return_to_start(self) -> None:
        """Nothing moved."""


def retryable(exc: BaseException) -> bool:
    """Camera errors worth another try: busy, or marked transient by the camera driver."""
    if isinstance(exc, DeviceNotFoundError):
        return False
    if isinstance(exc, DeviceBusyError):
        return True
    return bool(getattr(exc, "transient", False) or getattr(exc, "retryable", False))
