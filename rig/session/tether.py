"""Tether sessions: the camera decides when a frame is shot; the session downloads and stacks it.

A tether session is a capture session like ``rig shoot``'s — same folder layout (``frames/``,
``journal.jsonl``, composite, depth map), same journal, same stacking worker, same resume — but
nothing moves focus: the body brackets by itself (or the photographer turns a manual rail and
presses the shutter), and :class:`TetherEngine` takes the place of the per-frame
:class:`~rig.session.engine.FrameEngine`. Its :meth:`TetherEngine.approach` waits for the
camera's next shot (:class:`~rig.camera.tether.Tether`) and :meth:`TetherEngine.expose`
downloads it as ``frame_NNNN``.

Positions are unknown, so a frame's position is its number: the plan is in ``frames`` (see
:func:`tether_plan`) and the depth map in frame units. The session ends after the plan's
frames, after ``idle_timeout_s`` without a new file (:class:`~rig.session.engine.SourceEnded`,
a normal end), or on a stop. A stop first downloads the shots the camera already announced —
RAM captures live only in libgphoto2's cache and would be lost with the connection.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rig.camera.tether import CameraShot, Tether
from rig.errors import RigError
from rig.plan import MAX_FRAMES, PlanError, ShotPlan, frame_stem
from rig.session.engine import (
    Approach,
    EngineHooks,
    InFlight,
    RunnerOptions,
    SessionStopped,
    Shot,
    SourceEnded,
)
from rig.session.folder import SessionFolder
from rig.session.runner import SessionRunner
from rig.spec import parse_seconds

DRAIN_S = 1.0
"""After a stop: how long to take the shots the camera already announced (a body mid-burst
goes on shooting to its card; those files stay there)."""
TETHER_QUEUE = 1000
"""Frames that may wait for stacking (paths only: the frames themselves are on disk)."""
WAIT_SLICE_S = 0.25
"""Longest single wait, so stops, the idle timeout and triggers are seen promptly."""


@dataclass(frozen=True)
class TetherSettings:
    """When a tether session ends and whether it releases the shutter (the ``tether`` block)."""

    frames: int | None = None
    """Frames to take, or ``None``: until the camera stops shooting."""
    idle_timeout_s: float | None = None
    """End the session after this long without a new shot (``None``: wait until stopped)."""
    trigger_every_s: float | None = None
    """Release the shutter every this many seconds (``None``: never; the body shoots itself)."""

    @classmethod
    def parse(
        cls, frames: int | None, idle_timeout: Any, trigger_every: Any, *, source: str = ""
    ) -> TetherSettings:
        where = f"{source}: " if source else ""
        if frames is not None and not 1 <= frames <= MAX_FRAMES:
            raise PlanError(f"{where}--frames {frames}: give 1 to {MAX_FRAMES} frames")
        idle = None if idle_timeout is None else parse_seconds(idle_timeout, "--idle-timeout")
        every = None if trigger_every is None else parse_seconds(trigger_every, "--trigger-every")
        for name, value in (("--idle-timeout", idle), ("--trigger-every", every)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise PlanError(f"{where}{name} {value:g} s: give a positive duration")
        return cls(frames, idle, every)

    def to_dict(self) -> dict[str, Any]:
        return {
            "idle_timeout_s": self.idle_timeout_s,
            "trigger_every_s": self.trigger_every_s,
        }

    @classmethod
    def from_rig(cls, rig: Mapping[str, Any], plan: ShotPlan, *, source: str) -> TetherSettings:
        block = rig.get("tether")
        if not isinstance(block, dict):
            raise RigError(f"{source}: no 'tether' block in 'rig'; not a tether session")
        frames = None if plan.frames == MAX_FRAMES else plan.frames
        return cls.parse(
            frames, block.get("idle_timeout_s"), block.get("trigger_every_s"), source=source
        )


def tether_plan(frames: int | None) -> ShotPlan:
    """The plan of a tether session: ``frames`` numbered frames (open-ended when ``None``)."""
    count = MAX_FRAMES if frames is None else frames
    return ShotPlan(
        near=1.0,
        far=float(count),
        step=1.0,
        frames=count,
        units="frames",
        settle_s=0.0,
        return_to_start=False,
    )


class TetherEngine:
    """Takes the camera's shots one by one into ``folder``'s ``frames/``.

    Parameters
    ----------
    tether
        The camera side: waits for shots, downloads them, releases the shutter.
    settings
        When the session ends without a stop, and whether the shutter is released.
    hooks
        The runner's stop event and where phases go.
    """

    reshoots = False
    """The camera decides what it shoots: a frame lost from the folder stays lost, and a resumed
    session numbers its new frames after the last one it had."""

    def __init__(
        self,
        folder: SessionFolder,
        tether: Tether,
        settings: TetherSettings,
        *,
        hooks: EngineHooks,
    ) -> None:
        self.folder = folder
        self.tether = tether
        self.settings = settings
        self.hooks = hooks
        self._drained = False
        self._drain_until: float | None = None
        self._shot: CameraShot | None = None
        self._last_activity = time.monotonic()
        self._released_since_frame = False
        self._next_trigger = time.monotonic()

    def check_stop(self) -> None:
        """Raise :class:`SessionStopped` once stopped and every announced shot is taken."""
        if self.hooks.stop.is_set() and self._drained:
            raise SessionStopped()

    def approach(self, index: int) -> Approach:
        """Wait for the camera's next shot, which becomes frame ``index``."""
        started = time.monotonic()
        self._shot = self._next(index)
        return Approach(index, float(index), time.time(), started)

    def expose(self, at: Approach) -> Shot:
        """Download the shot :meth:`approach` waited for as frame ``at.index``."""
        shot, self._shot = self._shot, None
        if shot is None:
            raise RigError(f"frame {at.index}: no shot from the camera to download")
        self.hooks.on_phase("downloading", at.position)
        files = self.tether.download(shot, self.folder.shooting_into(), frame_stem(at.index))
        self._last_activity = time.monotonic()
        self._released_since_frame = False
        return Shot(at.index, at.position, files, at.moved_at, 1)

    def land(self, flight: InFlight, *, reshoot: bool = True) -> Shot:
        """Tether shots are downloaded whole by :meth:`expose`: none is ever in flight."""
        raise RigError(f"frame {flight.approach.index}: a tether shot is never in flight")

    def _next(self, index: int) -> CameraShot:
        if self.hooks.stop.is_set():
            return self._drain()
        self.hooks.on_phase(
            "releasing the shutter" if self.settings.trigger_every_s else "waiting for the camera",
            None,
        )
        while True:
            self._maybe_trigger()
            shot = self.tether.next_shot(self._slice(), self.hooks.stop)
            if shot is not None and not self._still(shot):
                continue
            if shot is not None:
                return shot
            if self.hooks.stop.is_set():
                return self._drain()
            idle, timeout = time.monotonic() - self._last_activity, self.settings.idle_timeout_s
            if timeout is not None and idle >= timeout and index == 1:
                raise RigError(  # a session that never got a frame did not complete
                    f"no frame came from the camera in {timeout:g} s: check that it shoots "
                    "(its own bracketing, the shutter, or --trigger-every) and stays in PC mode"
                )
            if timeout is not None and idle >= timeout:
                raise SourceEnded(f"no new frame for {timeout:g} s after frame {index - 1}")

    def _drain(self) -> CameraShot:
        if self._drain_until is None:
            self._drain_until = time.monotonic() + DRAIN_S
        while True:
            shot = self.tether.next_shot(max(0.0, self._drain_until - time.monotonic()))
            if shot is None:
                self._drained = True
                raise SessionStopped()
            if self._still(shot):
                return shot

    def _still(self, shot: CameraShot) -> bool:
        """Whether ``shot`` holds a still image; a video clip (or any other file the camera
        announces) is no frame: it stays on the camera and takes no number."""
        if any(f.kind != "other" for f in shot.files):
            return True
        self._last_activity = time.monotonic()
        names = ", ".join(f.name for f in shot.files)
        self.hooks.warn(f"{names}: not a still image (RAW, JPEG, TIFF, HEIF); left on the camera")
        return False

    def _slice(self) -> float:
        left = WAIT_SLICE_S
        if self.settings.trigger_every_s is not None:
            left = min(left, max(0.001, self._next_trigger - time.monotonic()))
        return left

    def _maybe_trigger(self) -> None:
        every = self.settings.trigger_every_s
        if every is None or time.monotonic() < self._next_trigger:
            return
        self._next_trigger = time.monotonic() + every
        self.tether.trigger()
        if not self._released_since_frame:
            # The idle time runs from the first release after a frame: counted from every
            # release, a body that took them but sent no file (movie mode, no card) was never
            # idle, and the session fired the shutter on and on.
            self._last_activity = time.monotonic()
            self._released_since_frame = True

    def return_to_start(self) -> None:
        """Nothing moved focus: nothing to return."""


def tether_runner(
    folder: SessionFolder,
    tether: Tether,
    settings: TetherSettings,
    *,
    options: RunnerOptions | None = None,
) -> SessionRunner:
    """A :class:`~rig.session.runner.SessionRunner` whose frames come from ``tether``.

    The stacking queue holds file paths only, so it is made long enough that a burst of
    frames is downloaded at the camera's pace even while stacking lags behind.
    """

    def engine(hooks: EngineHooks) -> TetherEngine:
        return TetherEngine(folder, tether, settings, hooks=hooks)

    return SessionRunner(
        folder,
        options=options or RunnerOptions(queue_size=TETHER_QUEUE),
        engine=engine,
    )
