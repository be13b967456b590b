"""The capture session: move, settle, shoot, download, journal, stack — and never lose a frame.

For each planned position still to shoot, :class:`SessionRunner` moves the focuser, waits the
settle and exposure delays (and the flash recycle time since the last shot), captures (the
camera writes every file of the shot atomically into ``frames/``), appends a fsynced ``frame``
record to the journal, and hands the frame's path to the :class:`~rig.session.worker.StackWorker`,
which stacks beside capture. The runner is an explicit state machine
(:class:`~rig.session.state.RunState`); it ends with a
:class:`~rig.session.state.FinishReason`, and :meth:`SessionRunner.subscribe` takes one callable
that receives every :mod:`~rig.session.events` event. Each position is shot by the per-frame
:class:`~rig.session.engine.FrameEngine` (move, settle, capture, retry); cancellation happens
at its event boundaries (between moves, waits and shots).

Stopping: :meth:`SessionRunner.request_stop` (first Ctrl-C, SIGTERM; any thread) stops the
rail at once, lets the frame being downloaded finish, then drains the stacking queue and writes
the composite and journal. :meth:`SessionRunner.abort` (second Ctrl-C) drops the stacking queue
and returns as soon as possible; the journal stays consistent because every record is one
fsynced line. Resuming is the same :meth:`SessionRunner.run` on an existing folder: frames on
disk are replayed into a fresh stacker in index order (see :mod:`rig.session.folder` for the
adoption rule) and only missing positions are shot.

Faults: transient camera errors are retried by the engine. A rail alarm, a lost serial link or
a vanished camera stop the session cleanly (``FAULT``) with everything written, ready for
``rig resume``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rig.errors import MotionError, RigError
from rig.focuser import Focuser, FocuserCapabilities
from rig.plan import ShotPlan, format_position
from rig.session.engine import (
    CaptureDevice,
    Engine,
    EngineHooks,
    FrameEngine,
    InFlight,
    RunnerOptions,
    SessionStopped,
    Shot,
    SourceEnded,
)
from rig.session.events import (
    EventBus,
    FrameCaptured,
    FrameMerged,
    SessionFinished,
    SessionWarning,
    StatusChanged,
    Subscriber,
)
from rig.session.folder import (
    Reconciliation,
    SessionConfig,
    SessionFolder,
    SessionFolderError,
    check_plan_matches,
    reconcile,
    resume_command,
    shell_path,
    stack_file,
    stacked_kind,
)
from rig.session.journal import (
    FrameEntry,
    Journal,
    open_own_file,
    read_journal,
    relative_files,
)
from rig.session.state import FinishReason, RunState, SessionResult, SessionStatus, can_transition
from rig.session.worker import FramesChangedError, StackJob, StackPreviews, StackWorker
from stacker.errors import RawFramesNeededError, ResultWriteError, UserError
from stacker.io import is_raw_path, storage_remedy
from stacker.preview.publisher import StackerLike

log = logging.getLogger("rig.session")


ABORT_JOIN_S = 5.0
"""How long an abort waits for the frame being stacked before giving up on the thread."""


__all__ = [
    "CaptureDevice",
    "RunnerOptions",
    "SessionResult",
    "SessionRunner",
    "check_plan_fits",
    "check_plan_within",
    "make_stacker",
]


class _OwnLogFile(logging.FileHandler):
    """``session.log``, appended to only as the session's own file (see :func:`open_own_file`).

    A line that cannot be written (the disk is full) is dropped without a word: the session
    reports the disk itself, once, and a traceback per log line would bury that.
    """

    def _open(self) -> Any:
        fd = open_own_file(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop the line: logging's default prints a traceback for each (see the class)."""

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            super().flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the buffer's last flush; the file is closed anyway
            super().close()


class CompositeFormatError(RigError):
    """The composite cannot be written from the session's frames in its format (a DNG of
    frames without a RAW file): a resume would fail the same, so none is offered."""


class StackingFailed(Exception):
    """Internal: the stacking thread failed (a bug, or its journal record refused); capture
    stops."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"stacking failed: {error}")
        self.error = error


def stacking_reason(error: BaseException) -> FinishReason:
    """How the stacking thread's ``error`` ends the session: a fault when the disk refused the
    merge record (full, read-only: a resume goes on once fixed), an error (a bug) otherwise."""
    return FinishReason.FAULT if isinstance(error, UserError) else FinishReason.ERROR


def _disk_fault(exc: OSError, root: Path) -> RigError:
    """The one-line fault an ``OSError`` of the session's own files ends a run with."""
    where = exc.filename or root
    remedy = storage_remedy(exc, "fix it")
    return RigError(f"{where}: {exc.strerror or exc}; {remedy} and resume the session")


def check_plan_fits(plan: ShotPlan, focuser: Focuser) -> None:
    """Refuse, before anything moves, a plan the focuser cannot do (units, soft limits)."""
    check_plan_within(plan, focuser.name, focuser.capabilities)


def check_plan_within(plan: ShotPlan, name: str, caps: FocuserCapabilities) -> None:
    """Refuse a plan outside ``caps`` (units, soft limits) of the focuser called ``name``.

    Also used by ``--dry-run``, with the limits a rail URL declares, before any port is opened.
    """
    if caps.units != plan.units:
        raise RigError(
            f"{name} moves in {caps.units} but the plan is in {plan.units}: "
            f"give --from/--to/--step in {caps.units}"
        )
    if caps.min_step is not None and plan.frames > 1 and plan.step < caps.min_step - 1e-9:
        raise MotionError(
            f"{name}: the plan's step of {format_position(plan.step, plan.units)} is below the "
            f"smallest move it makes, {format_position(caps.min_step, plan.units)} (shorter "
            "moves are merged into the next); use a bigger step or fewer frames; nothing moved"
        )
    if caps.motor_step is not None and plan.frames > 1 and plan.step < caps.motor_step - 1e-9:
        step, motor = (format_position(v, plan.units) for v in (plan.step, caps.motor_step))
        raise MotionError(
            f"{name}: the plan's step of {step} is finer than one motor step, {motor}: frames "
            f"would be shot at the same place; use a step of at least {motor}; nothing moved"
        )
    _check_whole_motor_steps(plan, name, caps)
    positions = [p.position for p in plan.positions()]
    low, high = min(positions), max(positions)
    if (caps.min_position is not None and low < caps.min_position) or (
        caps.max_position is not None and high > caps.max_position
    ):
        lowest, highest = (
            "no limit" if v is None else format_position(v, plan.units)
            for v in (caps.min_position, caps.max_position)
        )
        raise MotionError(
            f"{name}: the plan spans {format_position(low, plan.units)} to "
            f"{format_position(high, plan.units)}, outside the soft limits {lowest} .. "
            f"{highest}; nothing moved"
        )
    _check_take_up_room(plan, name, caps, low, high)


GAP_SLACK = 0.2
"""How much wider than the plan's step a gap between frames may come out of the rail's motor
steps (see :func:`_check_whole_motor_steps`): the default overlap of an optics plan's frames,
so the gap stays within the depth of field its step was made from."""


def _check_whole_motor_steps(plan: ShotPlan, name: str, caps: FocuserCapabilities) -> None:
    """Refuse a step that the rail's whole motor steps would widen by more than
    :data:`GAP_SLACK`.

    A controller takes each target to its nearest motor step (GRBL's planner:
    ``lround(target[idx] * settings.steps_per_mm[idx])`` in ``plan_buffer_line``, as the
    simulator's ``_quantize`` does), so frames a step of 1.43 µm
    apart on a rail of 1.25 µm motor steps land 1.25 or 2.5 µm apart: a 50x/0.55 objective's
    plan (depth of field 1.82 µm) left bands of depth never in focus, and a plan's promise of
    a spacing never wider than asked was broken without a word."""
    motor = caps.motor_step
    if motor is None or plan.frames < 2 or plan.step < motor - 1e-9:
        return
    steps = plan.step / motor
    widest = math.ceil(steps - 1e-6) * motor
    if widest <= plan.step * (1.0 + GAP_SLACK):
        return
    fine = max(1, math.floor(steps + 1e-6)) * motor
    step, motor_text, widest_text = (
        format_position(v, plan.units) for v in (plan.step, motor, widest)
    )
    option = f"{round(fine, 6):g}{'um' if plan.units == 'um' else ''}"  # as --step takes it
    raise MotionError(
        f"{name}: it moves in whole motor steps of {motor_text}, so the plan's step of {step} "
        f"lands frames up to {widest_text} apart ({widest / plan.step - 1:.0%} wider): some "
        f"depth would never be in focus; use --step {option}, a whole number of motor steps; "
        "nothing moved"
    )


def _check_take_up_room(
    plan: ShotPlan, name: str, caps: FocuserCapabilities, low: float, high: float
) -> None:
    """Refuse a plan whose end lies nearer a soft limit than the backlash take-up: the
    overshoot was cut at the limit, and that frame was reached from the wrong side, its slack
    not taken up, without a word."""
    below = caps.approach == "below"
    limit = caps.min_position if below else caps.max_position
    if caps.backlash <= 0 or limit is None:
        return
    end, away = (low, 1.0) if below else (high, -1.0)  # away: from the limit into the travel
    room = limit + away * caps.backlash
    if (end - room) * away >= -1e-9:
        return
    raise MotionError(
        f"{name}: the plan reaches {format_position(end, plan.units)}, nearer the soft limit "
        f"{format_position(limit, plan.units)} than the backlash take-up "
        f"({format_position(caps.backlash, plan.units)}): that frame could not be approached "
        f"from {caps.approach}; keep the plan at or {'above' if below else 'below'} "
        f"{format_position(room, plan.units)}; nothing moved"
    )


def make_stacker(config: SessionConfig, expected_frames: int) -> StackerLike:
    """The Stacker for a session, from its stacking options."""
    from stacker.stack import Stacker

    stacker: StackerLike = Stacker(**config.stack.stacker_kwargs(), expected_frames=expected_frames)
    return stacker


@dataclass
class _Counters:
    captured: int = 0
    merged: int = 0
    rejected: int = 0
    current_index: int | None = None
    position: float | None = None
    last_score: float | None = None
    shot_times: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str | None = None


class SessionRunner:
    """Runs (or resumes) the session in ``folder`` with ``focuser`` and ``camera``.

    ``engine`` replaces the per-frame :class:`FrameEngine` (which needs ``focuser`` and
    ``camera``) with another source of frames, built from the runner's :class:`EngineHooks`:
    a tether session takes what the camera shoots by itself and has no focuser.
    """

    def __init__(
        self,
        folder: SessionFolder,
        *,
        focuser: Focuser | None = None,
        camera: CaptureDevice | None = None,
        stacker_factory: Callable[[SessionConfig, int], StackerLike] = make_stacker,
        options: RunnerOptions | None = None,
        engine: Callable[[EngineHooks], Engine] | None = None,
    ) -> None:
        self.folder = folder
        self.plan = folder.plan
        self.config = folder.config
        self.focuser = focuser
        self.camera = camera
        self.options = options or RunnerOptions()
        self._stacker_factory = stacker_factory
        self._state = RunState.WAITING
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._counters = _Counters()
        self._started = 0.0
        self._worker: StackWorker | None = None
        self._journal: Journal | None = None
        self.stacker: StackerLike | None = None
        self._events = EventBus()
        self._rail: tuple[float, bool] | None = None  # the last move's target, and if reached
        hooks = EngineHooks(self._stop, self._phase, self._warn, self._moving)
        if engine is not None:
            self.engine: Engine = engine(hooks)
        elif focuser is None or camera is None:
            raise RigError("a session needs a focuser and a camera, or an engine of its own")
        else:
            self.engine = FrameEngine(
                folder,
                focuser=focuser,
                camera=camera,
                options=self.options,
                hooks=hooks,
            )
        self._next_feed = 1
        self._waiting: dict[int, StackJob] = {}
        self._left_out: set[int] = set()
        """Indexes that will never be shot (lost frames of a tether session)."""
        self._vanished: set[int] = set()
        self._finish_reason: FinishReason | None = None
        self._first_merged: Path | None = None
        self._unstacked: set[int] = set()  # frames this run shot that the stacker has not seen
        """The file of the first frame merged (:meth:`_first_frame`)."""

    # ---------------------------------------------------------------- control
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Send every session event to ``subscriber``; returns the call that stops it."""
        return self._events.subscribe(subscriber)

    @property
    def state(self) -> RunState:
        return self._state

    def request_stop(self) -> None:
        """Stop after the frame in flight; the rail halts now. Safe from any thread."""
        if self._stop.is_set():
            return
        self._stop.set()
        log.warning("stop requested: finishing the frame in flight")
        self._set_state(RunState.STOPPING, only_from=(RunState.PREPARING, RunState.RUNNING))
        if self.focuser is None:
            return
        try:
            self.focuser.stop()
        except Exception as exc:  # the rail may already be gone; stopping must not raise
            log.warning("rail stop failed: %s", exc)

    def abort(self) -> None:
        """Stop at once: stacking queue dropped, no composite written. Journal stays whole."""
        self._abort.set()
        self.request_stop()
        if self._worker is not None:
            self._worker.abort()

    @property
    def stacking(self) -> bool:
        """True while the stacking thread still runs (after an abort: stuck in a frame)."""
        return self._worker is not None and self._worker.alive

    def close_journal(self) -> None:
        """Close the journal between two whole lines (before a hard exit on abort)."""
        if self._journal is not None:
            self._journal.close()

    def status(self) -> SessionStatus:
        """A frozen snapshot of the session now."""
        c = self._counters
        total = self.plan.frames
        elapsed = time.monotonic() - self._started if self._started else 0.0
        remaining = total - c.captured
        if c.shot_times:
            recent = c.shot_times[-8:]
            eta: float | None = remaining * sum(recent) / len(recent)
        else:
            eta = self.plan.estimate_duration(remaining=remaining) if remaining else 0.0
        return SessionStatus(
            state=self._state,
            total=total,
            captured=c.captured,
            merged=c.merged,
            rejected=c.rejected,
            queued=self._worker.pending if self._worker is not None else 0,
            current_index=c.current_index,
            position=c.position,
            units=self.plan.units,
            last_score=c.last_score,
            elapsed_s=elapsed,
            eta_s=eta,
            finish_reason=self._finish_reason,
            message=c.message,
            warnings=tuple(c.warnings[-5:]),
        )

    # ---------------------------------------------------------------- run
    def run(self) -> SessionResult:
        """Shoot every missing position, stack, write the outputs; never raises for faults.
        A :class:`KeyboardInterrupt` (a program's own Ctrl-C) aborts the run, which is closed
        and journaled as aborted (resumable) before it is raised again.

        The folder is locked for the run (:meth:`SessionFolder.lock
        <rig.session.folder.SessionFolder.lock>`): a session another process is running is
        refused (a ``FAULT``, exit code 4) before anything is read, moved or written.
        """
        self._started = time.monotonic()
        try:
            self.folder.lock()
        except SessionFolderError as exc:
            return self._refused(exc)
        try:
            return self._run()
        finally:
            self.folder.unlock()

    def _refused(self, error: SessionFolderError) -> SessionResult:
        """End a run that could not start: its folder is busy or gone. Nothing is touched."""
        self._finish_reason = FinishReason.FAULT
        self._warn(str(error))
        self._set_state(RunState.FINISHED)
        result = SessionResult(FinishReason.FAULT, self.status(), error, ())
        self._events.publish(SessionFinished(result))
        return result

    def _run(self) -> SessionResult:
        handler = self._attach_log()
        reason = FinishReason.COMPLETED
        error: BaseException | None = None
        outputs: tuple[Path, ...] = ()
        interrupted = False
        self._journal_legs(True)
        try:
            self._set_state(RunState.PREPARING)
            recon = self._prepare()
            self._set_state(RunState.RUNNING, only_from=(RunState.PREPARING,))
            try:
                self._shoot(recon)
            except StackingFailed as exc:  # stop shooting, keep what is merged
                reason, error = stacking_reason(exc.error), exc.error
            except SourceEnded as exc:
                log.info("session ends: %s", exc)
            except SessionStopped:
                reason = FinishReason.ABORTED if self._abort.is_set() else FinishReason.INTERRUPTED
            except UserError as exc:
                if self._stop.is_set():  # e.g. the move stopped by request_stop
                    reason = (
                        FinishReason.ABORTED if self._abort.is_set() else FinishReason.INTERRUPTED
                    )
                else:
                    reason, error = FinishReason.FAULT, exc
                    self._warn(f"session stopped: {exc}")
            except OSError as exc:  # disk full, folder gone: what is on disk stays valid
                reason, error = FinishReason.FAULT, _disk_fault(exc, self.folder.root)
                self._warn(f"session stopped: {error}")
            if reason is FinishReason.COMPLETED and self._worker and self._worker.error:
                reason, error = stacking_reason(self._worker.error), self._worker.error
            if isinstance(error, FramesChangedError):
                self._set_aside_changed(error)
            self._set_state(RunState.FINISHING)
            outputs = self._finish(reason, stopped_by=error)
            if self._abort.is_set() and (reason is not FinishReason.COMPLETED or not outputs):
                # Aborted while draining or before writing: every frame may be shot, but the
                # composite is not made, and a resume makes it.
                reason = FinishReason.ABORTED
            if reason is FinishReason.COMPLETED and self._worker and self._worker.error:
                reason, error = stacking_reason(self._worker.error), self._worker.error
        except UserError as exc:  # could not even start (journal unreadable, stacker refused)
            reason, error = FinishReason.FAULT, exc
            self._warn(str(exc))
            self._set_state(RunState.FINISHING)
        except OSError as exc:  # preparing: a read-only or full disk, a folder not ours to write
            reason, error = FinishReason.FAULT, _disk_fault(exc, self.folder.root)
            self._warn(str(error))
            self._set_state(RunState.FINISHING)
        except KeyboardInterrupt:
            # A Ctrl-C in a program that runs the session itself (the commands turn it into
            # request_stop): as an abort, every frame on disk kept for a resume, and raised
            # again once the session is closed, so that the program stops too.
            reason, interrupted = FinishReason.ABORTED, True
            self.abort()
            self._set_state(RunState.FINISHING)
        except BaseException as exc:
            reason, error = FinishReason.ERROR, exc
            log.exception("session failed")
            self._set_state(RunState.FINISHING)
        finally:
            self._journal_legs(False)
            if self._worker is not None and self._worker.alive:
                self._worker.abort()  # only after an unexpected error: do not leave it running
                # The frame being stacked journals its merge: the journal closes after it.
                self._worker.finish(timeout=ABORT_JOIN_S)
            self._finish_reason = reason
            self._journal_finish(reason, error)
            if self._journal is not None:
                self._journal.close()
            self._set_state(RunState.FINISHED)
            log.info("session finished: %s", reason.value)
            self._detach_log(handler)
        result = SessionResult(reason, self.status(), error, outputs)
        self._events.publish(SessionFinished(result))
        self._let_go_of_stack()
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _let_go_of_stack(self) -> None:
        """Drop the stacker, and the stacking worker once its thread has ended, after the run.

        Their memory is the size of the stack (hundreds of MB for large frames), and the runner
        sits in reference cycles with its engine, worker and listeners: a station that keeps
        the runner, or drops it for the next session's, would hold each finished stack until
        the garbage collector happened to run, two or three at a time. A preview that still
        shows the stack for 100 % crops holds it through its own publisher.
        """
        self.stacker = None
        if self._worker is not None and not self._worker.alive:
            self._worker = None

    # ---------------------------------------------------------------- phases
    def _prepare(self) -> Reconciliation:
        folder = self.folder
        folder.make_frames_dir()
        contents = read_journal(folder.journal_path)
        if contents.torn_tail:
            self._warn("journal: ignored a torn last line (the previous run was cut short)")
        for tmp in folder.remove_temporaries():
            log.info("removed half-written %s", tmp.name)
        on_disk = folder.frames_on_disk()
        check_plan_matches(self.plan, contents, on_disk, source=str(folder.plan_path))
        stacked = stacked_kind(self.config) if self.engine.reshoots else None
        recon = reconcile(self.plan, contents, on_disk, stacked=stacked)
        self._counters.captured = len(recon.done)  # said even if the journal cannot be opened
        self._journal = Journal.open(folder.journal_path)
        resuming = bool(contents.records) or bool(recon.done)
        # Whether positions count from a place accepted (where the carriage stood) rather
        # than from the home switch: a resume must not home then (see rig resume --home).
        accepted = bool(getattr(self.focuser, "position_accepted", False))
        self._journal.append(
            "resume" if resuming else "start",
            accepted=accepted,
            frames=self.plan.frames,
            done=len(recon.done),
            missing=len(recon.missing),
            adopted=recon.adopted,
            vanished=recon.vanished,
            damaged=sorted(recon.damaged),
        )
        log.info("%s: %s", "resume" if resuming else "start", self.plan.describe())
        if resuming:
            log.info(
                "resuming: %d of %d frames on disk, %d to shoot",
                len(recon.done),
                self.plan.frames,
                len(recon.missing),
            )
        for index in recon.adopted:
            entry = recon.done[index]
            self._journal.append(
                "frame",
                index=index,
                position=entry.position,
                units=self.plan.units,
                files=relative_files(folder.root, entry.files),
                sizes=[f.stat().st_size for f in entry.files],
                adopted=True,
            )
            self._warn(f"frame {index}: on disk without a journal record; kept (not reshot)")
        for index, entry in sorted(recon.done.items()):
            self._check_raw(index, entry.files)
        self._vanished = set(recon.vanished) | set(recon.damaged)
        again = "shooting it again"
        if not self.engine.reshoots:
            self._left_out = set(recon.leave_out_lost())
            again = "left out (the camera cannot shoot it again)"
        for index in recon.vanished:
            self._warn(f"frame {index}: journaled but its files are gone; {again}")
        for index, damage in recon.damaged.items():
            why = "; ".join(f"{p.name} is {reason}" for p, reason in damage)
            aside = folder.set_aside([p for p, _ in damage], "damaged")
            self._warn(f"frame {index}: {why}; moved to {aside.name}/, {again}")
        for index, blocking in folder.in_the_way(recon.missing).items():
            aside = folder.set_aside(blocking, "in-the-way")
            names = ", ".join(p.name for p in blocking)
            self._warn(f"frame {index}: {names} held the frame's name; moved to {aside.name}/")
        for p in recon.stray:
            self._warn(f"{p.name}: not part of this plan; left alone")

        # The frames run in the plan's direction, whatever an older session.json says.
        stack = replace(self.config.stack, order=self.plan.direction)

        def fresh() -> StackerLike:
            return self._stacker_factory(replace(self.config, stack=stack), self.plan.frames)

        self.stacker = fresh()
        self._worker = StackWorker(
            self.stacker,
            max_queue=self.options.queue_size,
            on_merged=self._merged,
            on_failed=self._stack_failed,
            checkpoint=self._checkpoint if self.options.write_outputs else None,
            checkpoint_every=self.config.checkpoint_every,
            previews=self.options.previews,
            fresh=fresh,
            on_restart=self._restarted,
            on_stranded=self._stranded,
        )
        self._next_feed = 1
        self._waiting = {}
        self._first_merged = None
        replay: list[StackJob] = []
        for index in sorted(recon.done):
            entry = recon.done[index]
            self._waiting[index] = self._job(entry, replay=True)
        while (job := self._next_job()) is not None:
            replay.append(job)
        self._worker.start(replay)
        return recon

    def _shoot(self, recon: Reconciliation) -> None:
        focuser = self.focuser
        unreferenced = focuser.capabilities.unreferenced if focuser is not None else None
        if focuser is not None and unreferenced is not None and recon.missing:
            # Shooting on would shift every plane (see rig.focuser.FocuserCapabilities).
            raise MotionError(
                f"{focuser.name}: {unreferenced}; home it or accept its position first"
            )
        in_flight: InFlight | None = None
        try:
            for index in recon.missing:
                self.engine.check_stop()
                self._counters.current_index = index
                at = self.engine.approach(index)
                if in_flight is not None:
                    done, in_flight = in_flight, None
                    landed = self.engine.land(done)
                    self._record(landed, done.approach.started)
                    if landed.moved_back:  # its reshoot took the rail back from this frame
                        at = self.engine.approach(index)
                taken = self.engine.expose(at)
                if isinstance(taken, InFlight):
                    in_flight = taken
                else:
                    self._record(taken, at.started)
            if in_flight is not None:  # the last frame: shot again, as any, if its download failed
                done, in_flight = in_flight, None
                self._record(self.engine.land(done), done.approach.started)
        finally:
            # Ending early (a stop or a fault), the frame in flight is finished and journaled,
            # unless aborting: then its files stay on the camera and the position is shot
            # again on resume.
            if in_flight is not None and not self._abort.is_set():
                self._record(self.engine.land(in_flight, reshoot=False), in_flight.approach.started)
        if self.plan.return_to_start and recon.missing and not self._stop.is_set():
            self.engine.return_to_start()

    def _record(self, shot: Shot, started: float) -> None:
        """Journal a shot, count it, tell the subscribers and hand it to the stacker."""
        entry = FrameEntry(shot.index, shot.position, shot.files)
        assert self._journal is not None
        self._unstacked.add(shot.index)
        self._journal.append(
            "frame",
            index=shot.index,
            position=shot.position,
            units=self.plan.units,
            files=relative_files(self.folder.root, shot.files),
            sizes=[f.stat().st_size for f in shot.files],
            moved_at=round(shot.moved_at, 3),
            captured_at=round(time.time(), 3),
            attempts=shot.attempts,
            **({"reshot": True} if shot.index in self._vanished else {}),
        )
        c = self._counters
        c.captured += 1
        c.shot_times.append(time.monotonic() - started)
        c.message = None
        log.info(
            "frame %d at %s: %s",
            shot.index,
            format_position(shot.position, self.plan.units),
            ", ".join(f.name for f in shot.files),
        )
        self._events.publish(FrameCaptured(entry))
        self._check_raw(shot.index, shot.files)
        self._feed(entry)
        self._emit()
        if self._worker is not None and self._worker.error is not None:
            raise StackingFailed(self._worker.error)

    def _check_raw(self, index: int, files: Sequence[Path]) -> None:
        """A DNG composite needs RAW frames: a shot without a RAW file stops the session at
        once (it is journaled and kept), where the whole plan was shot and then no composite
        could be written; a resume of such a session stops before it shoots."""
        if self.config.stack.output_format != "dng" or any(is_raw_path(f) for f in files):
            return
        names = ", ".join(f.name for f in files) or "no file"
        frames = shell_path(self.folder.frames_dir)
        tif = shell_path(self.folder.root / "composite.tif")
        raise CompositeFormatError(
            f"frame {index}: a DNG composite needs RAW frames, and the camera saved {names}: "
            "set it to RAW (or RAW+JPEG) and shoot a new session, or shoot with --format tif; "
            f"the frames shot are kept: `stacker stack {frames} -o {tif}` stacks them"
        )

    def _phase(self, message: str, position: float | None) -> None:
        self._counters.message = message
        if position is not None:
            self._counters.position = position
        self._emit()

    def _feed(self, entry: FrameEntry) -> None:
        """Hand frames to the stacker in index order (a gap waits until it is shot)."""
        self._waiting[entry.index] = self._job(entry, replay=False)
        assert self._worker is not None
        while (job := self._next_job()) is not None:
            while True:  # block while the queue is full, but wake up for an abort
                if self._abort.is_set():
                    return
                try:
                    self._worker.submit(job, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _next_job(self) -> StackJob | None:
        """The frame the stacker takes next, once it is here (frames left out are passed)."""
        while self._next_feed in self._left_out:
            self._next_feed += 1
        job = self._waiting.pop(self._next_feed, None)
        if job is not None:
            self._next_feed += 1
        return job

    def _job(self, entry: FrameEntry, *, replay: bool) -> StackJob:
        position_um = entry.position if self.plan.units == "um" else None
        raw = self.config.stack.suffix == ".dng"
        return StackJob(entry.index, stack_file(entry.files, raw=raw), position_um, replay)

    def _finish(
        self, reason: FinishReason, stopped_by: BaseException | None = None
    ) -> tuple[Path, ...]:
        """Drain the stacker and write the outputs. A write that fails raises, unless a fault
        (``stopped_by``) already stopped the session: that one, most often the same full or
        read-only disk, stays the error to fix, and the frames still to shoot keep their say."""
        worker = self._worker
        if worker is None:
            return ()
        if not self._abort.is_set():
            self._counters.message = "stacking the last frames"
            self._emit()
            while not worker.finish(timeout=0.5):
                if self._abort.is_set():
                    break
        if self._abort.is_set():
            # The frame being stacked is finished (a C call cannot be interrupted), the rest
            # of the queue dropped; the frames stay on disk for a resume.
            worker.abort()
            worker.finish(timeout=ABORT_JOIN_S)
            return ()
        if not self.options.write_outputs:
            return ()
        self._counters.message = "writing the composite"
        self._emit()
        try:
            outputs = self._write_outputs()
        except UserError as exc:  # disk full, folder gone: the frames on disk are all there is
            if stopped_by is not None:  # said on the console too: the composite there is older
                what = f"{exc.where}: {exc.reason}" if isinstance(exc, ResultWriteError) else exc
                again = resume_command(self.folder.root)
                self._warn(f"composite not written ({what}); `{again}` writes it")
                return ()
            if isinstance(exc, RawFramesNeededError):  # every resume would fail the same
                frames = shell_path(self.folder.frames_dir)
                tif = shell_path(self.folder.root / "composite.tif")
                raise CompositeFormatError(
                    f"{exc}; every frame is kept: `stacker stack {frames} -o {tif}` stacks them"
                ) from None
            if isinstance(exc, ResultWriteError):  # the output is the session's: no other path
                problem = f"{exc.where}: cannot write the result ({exc.reason})"
                fix = exc.remedy or "fix that"
            else:
                problem, fix = str(exc), "fix that"
            raise RigError(
                f"{problem}; every frame is kept: {fix}, then `{resume_command(self.folder.root)}` "
                "writes the composite"
            ) from None
        self._counters.message = None
        return outputs

    # ---------------------------------------------------------------- stacking side
    def _merged(self, job: StackJob, record: Any, previews: StackPreviews) -> None:
        self._unstacked.discard(job.index)
        c = self._counters
        merged = bool(getattr(record, "merged", True))
        if merged and self._first_merged is None:
            self._first_merged = job.path  # frames are merged in index order
        if merged:
            c.merged += 1
        else:
            c.rejected += 1
            self._warn(f"frame {job.index} kept out of the stack: {getattr(record, 'reason', '?')}")
        score = getattr(record, "score", None)
        if score is not None:
            c.last_score = float(score)
        self._told(job, record, previews)

    def _told(self, job: StackJob, record: Any, previews: StackPreviews) -> None:
        """Journal the stacker's word on a frame and pass it on to the listeners."""
        if self._journal is not None:
            data = record.to_dict() if hasattr(record, "to_dict") else {}
            data.pop("index", None)
            self._journal.append("merge", index=job.index, replay=job.replay, **data)
        self._events.publish(FrameMerged(job, record, previews))
        self._emit()

    def _restarted(
        self, first: StackJob, record: Any, kept: list[StackJob], stacker: StackerLike
    ) -> None:
        """On the stacking thread: the first frame proved bad (the frames kept out against it
        align with each other), and the stack starts again from those without it."""
        c = self._counters
        self.stacker = stacker
        self._first_merged = None
        c.merged -= 1
        c.rejected += 1 - len(kept)  # the kept frames are stacked again, and counted then
        self._warn(f"frame {first.index}: {getattr(record, 'reason', '')}")
        self._told(first, record, StackPreviews(None, None, None))

    def _stranded(self, first: StackJob, stranded: str, advise: bool) -> None:
        """On the stacking thread: the first frame keeps the rest out, and they do not align
        with each other either (or the reference is numbered from the first frame), or they
        were flash misfires (``advise`` false: the stack goes on)."""
        if not advise:
            self._warn(stranded)
            return
        self._warn(
            stranded + "stop, check it, and stack the frames again with `stacker stack "
            f"{shell_path(first.path.parent)}`, which leaves such a first frame out"
        )

    def _set_aside_changed(self, error: FramesChangedError) -> None:
        """Move the files of the shot that did not fit, and of those this run shot after it
        that the stacker had not reached, to ``failed-attempts/``: a resume, with the camera
        set as it was, shoots those frames again (left in ``frames/``, each was kept out
        again at every resume)."""
        on_disk = self.folder.frames_on_disk()
        indices = sorted(i for i in self._unstacked | {error.job.index} if i in on_disk)
        files = [f for i in indices for f in on_disk[i]]
        if files:
            aside = self.folder.set_aside(files, "unlike-the-others")
            shown = ", ".join(str(i) for i in indices)
            self._warn(f"frame{'s' if len(indices) > 1 else ''} {shown}: set aside in {aside}")

    def _stack_failed(self, job: StackJob, exc: UserError) -> None:
        self._unstacked.discard(job.index)
        self._counters.rejected += 1
        self._warn(f"frame {job.index} could not be stacked: {exc}")
        if self._journal is not None:
            self._journal.append("merge", index=job.index, merged=False, reason=str(exc))
        self._emit()

    def _checkpoint(self) -> None:
        c = self._counters
        if c.merged + c.rejected >= self.plan.frames:
            # The plan's last frame: the final write follows at once, and a checkpoint before
            # it wrote the composite twice (on a slow card, the wait after the last frame
            # doubled).
            return
        try:
            self._write_outputs(depth=False)
            log.info("checkpoint: composite written after %d merged frames", self._counters.merged)
        except UserError as exc:
            self._warn(f"checkpoint failed: {exc}")

    def _write_outputs(self, *, depth: bool = True) -> tuple[Path, ...]:
        """Composite, and the depth map with its colour preview; no other thread stacks now."""
        stacker = self.stacker
        if stacker is None or stacker.frames_merged == 0:
            self._warn("no frame was stacked: no composite written")
            return ()
        from stacker.crop import NoCommonAreaError
        from stacker.output import save_outputs

        folder = self.folder

        def save(crop: bool) -> list[Path]:
            return save_outputs(
                stacker,  # type: ignore[arg-type]
                folder.composite_path(self.config.stack.output_format),
                folder.depth_path if depth else None,
                metadata_from=self._first_frame(),
                crop=crop,
            )

        try:
            written = save(self.config.stack.crop)
        except NoCommonAreaError:
            # A session has no --no-crop to offer: the composite is written uncropped
            # rather than none at all.
            self._warn(
                "the frames share no area that every one of them covers (the view moved across "
                "the whole frame): the composite is written uncropped"
            )
            written = save(False)
        return tuple(Path(p) for p in written)

    def _first_frame(self) -> Path | None:
        """The session's first frame, whose EXIF and ICC profile the composite carries: the
        first of its own frames the stacker merged.

        Not whatever ``frames/`` holds with the lowest number: a stray ``frame_0000.jpg``
        outside the plan (left alone, never checked) gave the composite another shot's EXIF,
        a DNG composite a JPEG to take its colour profile from (the write failed), and, a link
        to a named pipe, hung the session at its composite. Nor a frame handed to the stacker
        that it could not read (a download cut short): a DNG composite, whose colour profile
        is read from that file, could not be written, nor by any resume.
        """
        return self._first_merged

    # ---------------------------------------------------------------- helpers
    def _warn(self, message: str) -> None:
        log.warning(message)
        self._counters.warnings.append(message)
        self._events.publish(SessionWarning(message))
        self._emit()

    def _set_state(self, new: RunState, *, only_from: tuple[RunState, ...] | None = None) -> None:
        with self._state_lock:
            if only_from is not None and self._state not in only_from:
                return
            if new is self._state or not can_transition(self._state, new):
                if new is RunState.FINISHED and self._state is not RunState.FINISHED:
                    self._state = new  # always allowed to end
                else:
                    return
            else:
                self._state = new
        self._emit()

    def _emit(self) -> None:
        if self._events:
            self._events.publish(StatusChanged(self.status()))

    def _moving(self, position: float, arrived: bool) -> None:
        """Journal a move's target before the rail is told: a resume that accepts the rail's
        place (``--accept-position``) must know where the run left it, and the rail moves on
        to the next frame before the last one is journaled (or settles there when stopped)."""
        if not arrived:
            assert self._journal is not None
            self._journal.append("move", to=position, units=self.plan.units)
        self._rail = (position, arrived)

    def _journal_legs(self, on: bool) -> None:
        """While this run shoots, have a rail tell each leg of a move made in more than one
        (:attr:`Rail.on_leg <rig.rails.base.Rail.on_leg>`): killed during the backlash
        overshoot, the run left the carriage there, and a resume that accepts its place was
        told the target, every frame then shot off by the backlash."""
        if self.focuser is not None and hasattr(self.focuser, "on_leg"):
            self.focuser.on_leg = self._leg if on else None

    def _leg(self, position: float) -> None:
        if self._journal is not None:
            self._moving(position, False)

    def _rail_left(self) -> dict[str, float | None]:
        """``rail_at`` for the finish record: where the rail stands as the run ends; read from
        it when a stop or fault cut its last move short, None when it could not be read."""
        if self._rail is None:
            return {}
        target, arrived = self._rail
        if arrived:
            return {"rail_at": target}
        focuser = self.focuser
        try:
            if focuser is not None and focuser.capabilities.unreferenced is None:
                return {"rail_at": float(focuser.position)}
        except Exception as exc:  # the rail that faulted: its place stays unknown
            log.warning("could not read where the rail stopped: %s", exc)
        return {"rail_at": None}

    def _journal_finish(self, reason: FinishReason, error: BaseException | None) -> None:
        if self._journal is None:
            return
        try:
            self._journal.append(
                "finish",
                reason=reason.value,
                captured=self._counters.captured,
                merged=self._counters.merged,
                error=str(error) if error else None,
                **self._rail_left(),
            )
        except UserError as exc:
            log.error("%s", exc)

    def _attach_log(self) -> tuple[logging.Handler, int] | None:
        """Log the session, and the camera's and rail's retries and warnings, to session.log."""
        handler: logging.Handler
        try:
            self.folder.root.mkdir(parents=True, exist_ok=True)
            # A file name that is not UTF-8 shows escaped: with strict errors its line was lost.
            handler = _OwnLogFile(self.folder.log_path, encoding="utf-8", errors="backslashreplace")
        except OSError:  # unwritable, or a link (never followed): the session runs unlogged
            # Its lines dropped, not printed by logging's last resort behind the display,
            # which already shows every warning and fault: a read-only disk said it 3 times.
            handler = logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        parent = logging.getLogger("rig")
        previous = parent.level
        parent.addHandler(handler)
        if parent.getEffectiveLevel() > logging.INFO:
            parent.setLevel(logging.INFO)
        return handler, previous

    def _detach_log(self, attached: tuple[logging.Handler, int] | None) -> None:
        if attached is not None:
            handler, previous = attached
            parent = logging.getLogger("rig")
            parent.removeHandler(handler)
            parent.setLevel(previous)
            handler.close()
