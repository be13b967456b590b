"""The capture session: move, settle, shoot, download, journal, stack — and never lose a frame.

For each planned position still to shoot, :class:`SessionRunner` moves the focuser, waits the
settle and exposure delays (and the flash recycle time since the last shot), captures (the
camera writes every file of the shot atomically into ``frames/``), appends a fsynced ``frame``
record to the journal, and hands the frame's path to the :class:`~rig.session.worker.StackWorker`,
which stacks beside capture. The runner is an explicit state machine
(:class:`~rig.session.state.RunState`); it ends with a
:class:`~rig.session.state.FinishReason` and subscribers get callbacks:

* ``on_status(SessionStatus)`` — after every state change, move, capture and merge;
* ``on_frame_captured(FrameEntry)`` — a frame is on disk and journaled;
* ``on_frame_merged(StackJob, FrameRecord, StackPreviews)`` — from the stacking thread;
* ``on_warning(str)`` — a retry, an adopted frame, a frame kept out of the stack;
* ``on_finished(SessionResult)``.

Stopping: :meth:`SessionRunner.request_stop` (first Ctrl-C, SIGTERM; any thread) stops the
rail at once, lets the frame being downloaded finish, then drains the stacking queue and writes
the composite and journal. :meth:`SessionRunner.abort` (second Ctrl-C) drops the stacking queue
and returns as soon as possible; the journal stays consistent because every record is one
fsynced line. Resuming is the same :meth:`SessionRunner.run` on an existing folder: frames on
disk are replayed into a fresh stacker in index order (see :mod:`rig.session.folder` for the
adoption rule) and only missing positions are shot.

Overlap: a camera that can report the end of the exposure before its files are downloaded
(:meth:`rig.camera.Camera.release`) lets the rail move to the next position and settle while
the last frame's files travel over USB (a 50 MB RAW takes about 2 s over USB 2). The frame is
journaled once its download completes, before the next shot; a download that fails is shot again
at its own position. ``RunnerOptions.move_during_download=False`` turns this off.

Faults: a camera that reports busy or a transient I/O error is retried (``capture_retries``,
with a growing delay); re-shooting a position is safe because its files are simply replaced. A
rail alarm, a lost serial link or a vanished camera stop the session cleanly (``FAULT``) with
everything written, ready for ``rig resume``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rig.errors import DeviceBusyError, DeviceNotFoundError, MotionError, RigError
from rig.focuser import Focuser, FocuserCapabilities
from rig.plan import ShotPlan, format_position, frame_stem
from rig.session.folder import (
    Reconciliation,
    SessionConfig,
    SessionFolder,
    reconcile,
    stack_file,
)
from rig.session.journal import FrameEntry, Journal, read_journal, relative_files
from rig.session.state import (
    FinishReason,
    RunState,
    SessionStatus,
    can_transition,
    exit_code,
)
from rig.session.worker import StackerLike, StackJob, StackPreviews, StackWorker
from stacker.errors import UserError

log = logging.getLogger("rig.session")


ABORT_JOIN_S = 5.0
"""How long an abort waits for the frame being stacked before giving up on the thread."""


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
    """Internal: a stop or abort was requested while waiting or moving."""


class StackingFailed(Exception):
    """Internal: the stacking thread hit an unexpected error (a bug); capture stops."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"stacking failed: {error}")
        self.error = error


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
class SessionResult:
    """How a run ended: the reason, the error behind a fault, and the files written."""

    reason: FinishReason
    status: SessionStatus
    error: BaseException | None = None
    outputs: tuple[Path, ...] = ()

    @property
    def exit_code(self) -> int:
        return exit_code(self.reason, self.error)


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
    positions = [p.position for p in plan.positions()]
    low, high = min(positions), max(positions)
    if (caps.min_position is not None and low < caps.min_position) or (
        caps.max_position is not None and high > caps.max_position
    ):
        raise MotionError(
            f"{name}: the plan spans {format_position(low, plan.units)} to "
            f"{format_position(high, plan.units)}, outside the soft limits "
            f"{caps.min_position if caps.min_position is not None else '-inf'} .. "
            f"{caps.max_position if caps.max_position is not None else '+inf'} {plan.units}; "
            "nothing moved"
        )


def make_stacker(config: SessionConfig, expected_frames: int) -> StackerLike:
    """The Stacker for a session, from its stacking options."""
    from stacker.stack import Stacker

    stacker: StackerLike = Stacker(
        method=config.method, align=config.align, expected_frames=expected_frames
    )
    return stacker


_T = TypeVar("_T")


@dataclass
class _Frame:
    """A frame being shot: where, when its move ended and began, how many attempts so far."""

    index: int
    position: float
    moved_at: float
    started: float
    attempts: int = 0


class _InFlight:
    """A frame whose files download on a thread while the rail moves on."""

    def __init__(self, frame: _Frame, shot: PendingShotLike) -> None:
        self.frame = frame
        self._files: list[Path] = []
        self._error: Exception | None = None
        self._thread = threading.Thread(
            target=self._download, args=(shot,), name=f"download-{frame.index}", daemon=True
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
    """Runs (or resumes) the session in ``folder`` with ``focuser`` and ``camera``."""

    def __init__(
        self,
        folder: SessionFolder,
        *,
        focuser: Focuser,
        camera: CaptureDevice,
        plan: ShotPlan | None = None,
        config: SessionConfig | None = None,
        stacker_factory: Callable[[SessionConfig, int], StackerLike] = make_stacker,
        options: RunnerOptions | None = None,
    ) -> None:
        self.folder = folder
        self.plan = plan or folder.load_plan()
        self.config = config or folder.load_config()
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
        self.on_status: list[Callable[[SessionStatus], None]] = []
        self.on_frame_captured: list[Callable[[FrameEntry], None]] = []
        self.on_frame_merged: list[Callable[[StackJob, Any, StackPreviews], None]] = []
        self.on_finished: list[Callable[[SessionResult], None]] = []
        self.on_warning: list[Callable[[str], None]] = []
        self._next_feed = 1
        self._waiting: dict[int, StackJob] = {}
        self._vanished: set[int] = set()
        self._finish_reason: FinishReason | None = None

    # ---------------------------------------------------------------- control
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

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

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
        """Shoot every missing position, stack, write the outputs; never raises for faults."""
        self._started = time.monotonic()
        handler = self._attach_log()
        reason = FinishReason.COMPLETED
        error: BaseException | None = None
        outputs: tuple[Path, ...] = ()
        try:
            self._set_state(RunState.PREPARING)
            recon = self._prepare()
            self._set_state(RunState.RUNNING, only_from=(RunState.PREPARING,))
            try:
                self._shoot(recon)
            except StackingFailed as exc:  # a bug in stacking: stop shooting, keep what is merged
                reason, error = FinishReason.ERROR, exc.error
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
                where = exc.filename or self.folder.root
                reason = FinishReason.FAULT
                error = RigError(f"{where}: {exc.strerror or exc}; fix it and resume the session")
                self._warn(f"session stopped: {error}")
            if reason is FinishReason.COMPLETED and self._worker and self._worker.error:
                reason, error = FinishReason.ERROR, self._worker.error
            self._set_state(RunState.FINISHING)
            outputs = self._finish(reason)
            if self._abort.is_set() and reason is not FinishReason.COMPLETED:
                reason = FinishReason.ABORTED  # aborted while draining or writing
            if reason is FinishReason.COMPLETED and self._worker and self._worker.error:
                reason, error = FinishReason.ERROR, self._worker.error
        except UserError as exc:  # could not even start (journal unreadable, stacker refused)
            reason, error = FinishReason.FAULT, exc
            self._warn(str(exc))
            self._set_state(RunState.FINISHING)
        except BaseException as exc:
            reason, error = FinishReason.ERROR, exc
            log.exception("session failed")
            self._set_state(RunState.FINISHING)
        finally:
            if self._worker is not None and self._worker.alive:
                self._worker.abort()  # only after an unexpected error: do not leave it running
            self._finish_reason = reason
            self._journal_finish(reason, error)
            if self._journal is not None:
                self._journal.close()
            self._set_state(RunState.FINISHED)
            log.info("session finished: %s", reason.value)
            self._detach_log(handler)
        result = SessionResult(reason, self.status(), error, outputs)
        for cb in self.on_finished:
            cb(result)
        return result

    # ---------------------------------------------------------------- phases
    def _prepare(self) -> Reconciliation:
        folder = self.folder
        folder.frames_dir.mkdir(parents=True, exist_ok=True)
        contents = read_journal(folder.journal_path)
        if contents.torn_tail:
            self._warn("journal: ignored a torn last line (the previous run was cut short)")
        for tmp in folder.remove_temporaries():
            log.info("removed half-written %s", tmp.name)
        recon = reconcile(self.plan, contents, folder.frames_on_disk())
        self._journal = Journal.open(folder.journal_path)
        resuming = bool(contents.records) or bool(recon.done)
        self._journal.append(
            "resume" if resuming else "start",
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
        self._vanished = set(recon.vanished) | set(recon.damaged)
        for index in recon.vanished:
            self._warn(f"frame {index}: journaled but its files are gone; shooting it again")
        for index, damage in recon.damaged.items():
            why = "; ".join(f"{p.name} is {reason}" for p, reason in damage)
            aside = self._set_aside([p for p, _ in damage], "damaged")
            self._warn(f"frame {index}: {why}; moved to {aside.name}/, shooting it again")
        for p in recon.stray:
            self._warn(f"{p.name}: not part of this plan; left alone")
        self._counters.captured = len(recon.done)

        self.stacker = self._stacker_factory(self.config, self.plan.frames)
        self._worker = StackWorker(
            self.stacker,
            max_queue=self.options.queue_size,
            on_merged=self._merged,
            on_failed=self._stack_failed,
            checkpoint=self._checkpoint if self.options.write_outputs else None,
            checkpoint_every=self.config.checkpoint_every,
            previews=self.options.previews,
        )
        self._next_feed = 1
        self._waiting = {}
        replay: list[StackJob] = []
        for index in sorted(recon.done):
            entry = recon.done[index]
            self._waiting[index] = self._job(entry, replay=True)
        while self._next_feed in self._waiting:
            replay.append(self._waiting.pop(self._next_feed))
            self._next_feed += 1
        self._worker.start(replay)
        return recon

    def _shoot(self, recon: Reconciliation) -> None:
        unreferenced = self.focuser.capabilities.unreferenced
        if unreferenced is not None and recon.missing:
            # Shooting on would shift every plane (see rig.focuser.FocuserCapabilities).
            raise MotionError(
                f"{self.focuser.name}: {unreferenced}; home it or accept its position first"
            )
        last_shutter: float | None = None
        in_flight: _InFlight | None = None
        try:
            for index in recon.missing:
                self._check_stop()
                position = self.plan.position_of(index)
                c = self._counters
                c.current_index, c.message = index, "moving"
                t0 = time.monotonic()
                self._emit()
                self.focuser.move_to(position)  # the previous frame may still be downloading
                c.position = position
                moved_at = time.time()
                c.message = "settling"
                self._emit()
                self._wait(self.plan.settle_s + self.plan.exposure_delay_s)
                if last_shutter is not None and self.plan.flash_recycle_s > 0:
                    self._wait(self.plan.flash_recycle_s - (time.monotonic() - last_shutter))
                if in_flight is not None:
                    done, in_flight = in_flight, None
                    self._land(done)
                self._check_stop()
                c.message = "capturing"
                self._emit()
                last_shutter = time.monotonic()
                frame = _Frame(index, position, moved_at, t0)
                if self._overlapping():
                    in_flight = self._release(frame)
                else:
                    files, frame.attempts = self._capture(index)
                    self._record(frame, files)
        finally:
            # The frame in flight is finished and journaled, unless aborting: then its files
            # stay on the camera and the position is shot again on resume.
            if in_flight is not None and not self._abort.is_set():
                self._land(in_flight, reshoot=False)
        if self.plan.return_to_start and recon.missing and not self._stop.is_set():
            self._counters.message = "returning to start"
            self._emit()
            try:
                self.focuser.move_to(self.plan.start)
            except UserError as exc:
                self._warn(f"could not return to start: {exc}")

    def _overlapping(self) -> bool:
        return self.options.move_during_download and hasattr(self.camera, "release")

    def _record(self, frame: _Frame, files: list[Path]) -> None:
        """Journal a shot frame, count it, and hand it to the stacker."""
        index, position = frame.index, frame.position
        assert self._journal is not None
        self._journal.append(
            "frame",
            index=index,
            position=position,
            units=self.plan.units,
            files=relative_files(self.folder.root, files),
            sizes=[f.stat().st_size for f in files],
            moved_at=round(frame.moved_at, 3),
            captured_at=round(time.time(), 3),
            attempts=frame.attempts,
            **({"reshot": True} if index in self._vanished else {}),
        )
        c = self._counters
        c.captured += 1
        c.shot_times.append(time.monotonic() - frame.started)
        c.message = None
        log.info(
            "frame %d at %s: %s",
            index,
            format_position(position, self.plan.units),
            ", ".join(f.name for f in files),
        )
        entry = FrameEntry(index, position, files)
        for cb in self.on_frame_captured:
            cb(entry)
        self._feed(entry)
        self._emit()
        if self._worker is not None and self._worker.error is not None:
            raise StackingFailed(self._worker.error)

    def _release(self, frame: _Frame) -> _InFlight:
        """Expose frame ``frame.index`` and start its download on a thread."""
        camera: ReleasingDevice = self.camera  # type: ignore[assignment]
        shot, frame.attempts = self._retrying(
            frame.index, lambda: camera.release(self.folder.frames_dir, frame_stem(frame.index))
        )
        return _InFlight(frame, shot)

    def _land(self, flight: _InFlight, *, reshoot: bool = True) -> None:
        """Wait for an in-flight download and record its frame; reshoot it if it failed.

        A failed download leaves its files on the camera (or its partial files set aside);
        the frame is shot again at its own position, with the usual retries, when the
        failure is retryable. Without ``reshoot`` (the session is ending) the error stands.
        """
        files, error = flight.wait()
        frame = flight.frame
        if error is None:
            if not files:
                raise RigError(f"frame {frame.index}: the camera returned no file")
            self._record(frame, files)
            return
        self._set_aside_partial(frame.index, frame.attempts)
        if not reshoot or self._stop.is_set() or not _retryable(error):
            raise error
        self._warn(f"frame {frame.index}: {error}; shooting it again")
        self.focuser.move_to(frame.position)
        self._wait(self.plan.settle_s + self.plan.exposure_delay_s)
        files, attempts = self._capture(frame.index)
        frame.attempts += attempts
        self._record(frame, files)

    def _capture(self, index: int) -> tuple[list[Path], int]:
        """Shoot frame ``index``, retrying transient camera errors; (files, attempts)."""
        files, attempts = self._retrying(
            index, lambda: self.camera.capture(self.folder.frames_dir, frame_stem(index))
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
                self._set_aside_partial(index, attempts)
                if (
                    self._stop.is_set()
                    or not _retryable(exc)
                    or attempts > self.options.capture_retries
                ):
                    raise
                self._warn(
                    f"frame {index}: {exc}; retrying ({attempts}/{self.options.capture_retries})"
                )
                self._wait(self.options.retry_delay_s * attempts)

    def _set_aside_partial(self, index: int, attempt: int) -> None:
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
            aside = self._set_aside(partial, f"attempt{attempt}")
            self._warn(
                f"frame {index}: moved {len(partial)} file(s) of the failed shot to {aside.name}/"
            )

    def _set_aside(self, files: list[Path], tag: str) -> Path:
        """Rename ``files`` (links themselves, never their targets) into ``failed-attempts/``.

        A name already taken there gets a number: nothing set aside is ever replaced.
        """
        aside = self.folder.root / "failed-attempts"
        aside.mkdir(exist_ok=True)
        for p in files:
            target = aside / f"{p.stem}.{tag}{p.suffix}"
            n = 1
            while target.exists() or target.is_symlink():
                n += 1
                target = aside / f"{p.stem}.{tag}-{n}{p.suffix}"
            p.replace(target)
        return aside

    def _feed(self, entry: FrameEntry) -> None:
        """Hand frames to the stacker in index order (a gap waits until it is shot)."""
        self._waiting[entry.index] = self._job(entry, replay=False)
        assert self._worker is not None
        while self._next_feed in self._waiting:
            job = self._waiting.pop(self._next_feed)
            while True:  # block while the queue is full, but wake up for an abort
                if self._abort.is_set():
                    return
                try:
                    self._worker.submit(job, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._next_feed += 1

    def _job(self, entry: FrameEntry, *, replay: bool) -> StackJob:
        position_um = entry.position if self.plan.units == "um" else None
        raw = self.config.output_format == "dng"
        return StackJob(entry.index, stack_file(entry.files, raw=raw), position_um, replay)

    def _finish(self, reason: FinishReason) -> tuple[Path, ...]:
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
            raise RigError(
                f"{exc}; every frame is kept: fix that, then `rig resume {self.folder.root}` "
                "writes the composite"
            ) from None
        self._counters.message = None
        return outputs

    # ---------------------------------------------------------------- stacking side
    def _merged(self, job: StackJob, record: Any, previews: StackPreviews) -> None:
        c = self._counters
        merged = bool(getattr(record, "merged", True))
        if merged:
            c.merged += 1
        else:
            c.rejected += 1
            self._warn(f"frame {job.index} kept out of the stack: {getattr(record, 'reason', '?')}")
        score = getattr(record, "score", None)
        if score is not None:
            c.last_score = float(score)
        if self._journal is not None:
            data = record.to_dict() if hasattr(record, "to_dict") else {}
            data.pop("index", None)
            self._journal.append("merge", index=job.index, replay=job.replay, **data)
        for cb in self.on_frame_merged:
            cb(job, record, previews)
        self._emit()

    def _stack_failed(self, job: StackJob, exc: UserError) -> None:
        self._counters.rejected += 1
        self._warn(f"frame {job.index} could not be stacked: {exc}")
        if self._journal is not None:
            self._journal.append("merge", index=job.index, merged=False, reason=str(exc))
        self._emit()

    def _checkpoint(self) -> None:
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
        from stacker.output import save_outputs

        folder = self.folder
        written = save_outputs(
            stacker,  # type: ignore[arg-type]
            folder.composite_path(self.config.output_format),
            folder.depth_path if depth else None,
            metadata_from=self._first_frame(),
            crop=self.config.crop,
        )
        return tuple(Path(p) for p in written)

    def _first_frame(self) -> Path | None:
        on_disk = self.folder.frames_on_disk()
        raw = self.config.output_format == "dng"
        return stack_file(on_disk[min(on_disk)], raw=raw) if on_disk else None

    # ---------------------------------------------------------------- helpers
    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise SessionStopped()

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._stop.wait(seconds):
            raise SessionStopped()

    def _warn(self, message: str) -> None:
        log.warning(message)
        self._counters.warnings.append(message)
        for cb in self.on_warning:
            cb(message)
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
        if not self.on_status:
            return
        status = self.status()
        for cb in self.on_status:
            try:
                cb(status)
            except Exception:
                log.exception("status subscriber failed")

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
            )
        except UserError as exc:
            log.error("%s", exc)

    def _attach_log(self) -> tuple[logging.Handler, int] | None:
        """Log the session, and the camera's and rail's retries and warnings, to session.log."""
        try:
            self.folder.root.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(self.folder.log_path, encoding="utf-8")
        except OSError:
            return None
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


def _retryable(exc: BaseException) -> bool:
    """Camera errors worth another try: busy, or marked transient by the camera driver."""
    if isinstance(exc, DeviceNotFoundError):
        return False
    if isinstance(exc, DeviceBusyError):
        return True
    return bool(getattr(exc, "transient", False) or getattr(exc, "retryable", False))
