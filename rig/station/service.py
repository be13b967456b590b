"""The headless station: a rig run from a browser (a Raspberry Pi at the rig, a phone in hand).

:class:`Station` owns the focuser and the camera for its whole life and a folder of sessions.
From the page (:mod:`rig.station.api`) a photographer plans a stack, jogs the rail, takes a test
shot, starts, stops and resumes sessions, and downloads results. One thing moves the rig at a
time: a jog, a test shot or a session; anything else meanwhile is refused as busy.

Its files are served through :class:`~rig.station.files.SessionFiles`; who may ask is
:mod:`rig.station.auth`'s business.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2

from rig.camera.shot import check_saves_raw
from rig.focuser import Focuser
from rig.plan import PlanUnits, ShotPlan, format_position
from rig.preview import SessionPreview
from rig.session.folder import (
    SessionConfig,
    SessionFolder,
    check_reference,
    dated_folder,
    moved_away,
    stack_file,
)
from rig.session.journal import rail_left, read_journal
from rig.session.runner import (
    CaptureDevice,
    RunnerOptions,
    SessionResult,
    SessionRunner,
    check_plan_fits,
)
from rig.spec import PlanSpec
from rig.station.camera_settings import CameraSettings
from rig.station.errors import ReferenceChanged, StationBusyError, StationError
from rig.station.files import (
    SESSION_ID,
    SessionFiles,
    empty_trash,
    hold_session,
    own_empty_folder,
)
from rig.units import UnitError, format_length, parse_length
from stacker.io import read_image
from stacker.launch import WAKE_S
from stacker.locking import try_lock
from stacker.options import OUTPUT_FORMATS, StackOptions, json_name
from stacker.preview.hub import PreviewHub
from stacker.preview.publisher import encode_jpeg

TEST_SHOT_DIR = ".test-shot"
LOCK_FILE = ".station.lock"
CAMERA_WAIT_S = 5.0  # a live-view frame waits this long for a test shot or a launch
DEFAULT_TRAVEL = {"um": 300_000.0, "steps": 100_000.0}
"""How far from 0 a jog may go on a focuser without soft limits, unless the station is given its
travel: further than any macro rail (300 mm) or lens (100000 steps) reaches, yet finite."""


# ----------------------------------------------------------------------------- plans
def plan_from_request(spec: Any, *, units: PlanUnits) -> ShotPlan:
    """A shot plan from the page's JSON: ``from``/``to`` and one of ``step``, ``frames``,
    ``magnification`` + ``f_number``, or ``na``; optional ``settle`` and the other timing
    fields (:class:`~rig.spec.PlanSpec`, as ``rig plan`` reads its options)."""
    if not isinstance(spec, dict):
        raise StationError("'plan' is required: {from, to, step | frames | optics}")
    return PlanSpec.parse(spec, units=units).plan()


def describe_plan(plan: ShotPlan) -> dict[str, Any]:
    """What the page shows before a start: frames, step, range, duration."""
    return {
        "frames": plan.frames,
        "step": format_position(plan.step, plan.units),
        "from": format_position(plan.near, plan.units),
        "to": format_position(plan.far, plan.units),
        "units": plan.units,
        "describe": plan.describe(),
        "optics": plan.optics.describe() if plan.optics is not None else None,
        "duration_s": round(plan.estimate_duration(), 1),
    }


def _jog_limits(focuser: Focuser, travel: float | None) -> tuple[float, float]:
    """Where jogs may go: the focuser's soft limits, else ``±travel``, else the default travel."""
    caps = focuser.capabilities
    if caps.min_position is not None and caps.max_position is not None:
        return caps.min_position, caps.max_position
    if travel is not None and not (math.isfinite(travel) and travel > 0):
        raise StationError(f"travel {travel:g}: give a positive length, e.g. 150mm")
    reach = travel if travel is not None else DEFAULT_TRAVEL[caps.units]
    return -reach, reach


def _claim_folder(root: Path) -> int:
    """Lock the sessions folder ``root`` for one station; the descriptor that holds the lock.

    A second station on the same folder sees none of the first one's sessions as running, so
    it would resume one while the first shoots it (two runners, one journal, every frame shot
    twice) or delete it mid-shot. An ``flock`` on a file of the folder is held while the station
    lives and let go by the kernel however its process ends, so a crash leaves no stale lock.
    """
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StationError(f"{path}: cannot lock the sessions folder ({exc.strerror})") from None
    held = try_lock(fd)
    if held is False:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StationBusyError(  # exit 4, as a second `rig resume` of a running session
            f"{root}: another station (process {holder}) uses this sessions folder; "
            "stop it, or give this one another --sessions folder"
        )
    try:
        if held is None:
            raise OSError(errno.ENOLCK, "this file system cannot lock files")
        os.ftruncate(fd, 0)
    except OSError as exc:
        os.close(fd)
        raise StationError(f"{path}: cannot lock the sessions folder ({exc.strerror})") from None
    # Who holds the lock, for a second station's refusal. A full disk may have no room for it:
    # the lock holds all the same, and the station must start to let old sessions be deleted.
    with contextlib.suppress(OSError):
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# ----------------------------------------------------------------------------- the station
class Station:
    """The rig's devices, its sessions folder and the one session that may run at a time.

    Every public method is safe to call from any thread (the web server's worker threads).
    """

    def __init__(
        self,
        root: Path,
        *,
        focuser: Focuser,
        camera: CaptureDevice,
        rig: dict[str, Any],
        hub: PreviewHub | None = None,
        runner_options: RunnerOptions | None = None,
        travel: float | None = None,
        homed: bool = False,
        accepted: bool = False,
    ) -> None:
        """``homed``: the rail was homed as the station started (``rig station --home``);
        ``accepted``: a restarted rail's place was taken as its 0 (``--accept-position``)."""
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StationError(
                f"{self.root}: cannot create the sessions folder ({exc.strerror})"
            ) from None
        self.files = SessionFiles(self.root)
        self.focuser = focuser
        self.camera = camera
        self.rig = dict(rig)
        self.hub = hub if hub is not None else PreviewHub(title="stackrig station")
        self.runner_options = runner_options or RunnerOptions()
        self.units = focuser.capabilities.units
        self.limits = _jog_limits(focuser, travel)
        self._folder_lock: int | None = _claim_folder(self.root)
        opened = os.stat(self.root)
        self._root_identity = (opened.st_dev, opened.st_ino)  # see _check_sessions_folder
        empty_trash(self.root)  # ours alone now: no other station is deleting into it
        self._lock = threading.Lock()  # held while the rig moves or shoots for a request
        # Held while a request uses the camera and while a session is launched: what checks
        # that no session shoots, and then uses the camera, does both under it.
        self._camera_lock = threading.Lock()
        self._holders: dict[int, str] = {}  # per lock, what the request holding it does
        self._runner: SessionRunner | None = None
        self._thread: threading.Thread | None = None
        self._session_id: str | None = None
        self._run_over = True  # the runner of the last launch has returned
        self._last_result: SessionResult | None = None
        # The rail move a request makes now (a jog, Go to near/far, a homing cycle), which
        # stop_rail halts; set and read under its own lock, as the request holds the rig's.
        self._rail_move: str | None = None
        self._rail_move_lock = threading.Lock()
        # The rail's reference as a count of changes to it (not clock times: a Pi has no
        # clock of its own, and one set by NTP after boot made sessions shot before Unlock look
        # shot after it). Unlock (or --accept-position) takes where the carriage stands as the
        # rail's 0, Home (or --home) gives it the switch's; a session last run in an earlier
        # reference counts from another 0 (see _settle_reference).
        self._reference = 1 if (homed or accepted) else 0
        self._homed_in: int | None = self._reference if homed else None
        """The reference Home last set, ``None`` when it never did."""
        self._accepted_in: int | None = self._reference if accepted else None
        """The reference Unlock last set, ``None`` since a homing cycle, or when it never did."""
        self._ran_in: dict[str, int] = {}
        """The reference each session was last started or resumed in by this station."""
        self._publish_lock = threading.Lock()  # see _publish_controls
        # Counts the sessions deleted: every phone open on the station lists its sessions
        # again when it changes, as when a session starts or ends.
        self._deleted = 0
        self._publish_station()

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Rail, running session and the session list, as JSON for ``/api/station``."""
        return {
            "rail": {
                "name": self.focuser.name,
                "position": self._position(),
                "units": self.units,
            },
            "running": self.running,
            "sessions": self.sessions(),
            "formats": sorted(set(OUTPUT_FORMATS)),
        }

    @property
    def running(self) -> str | None:
        """The id of the session being shot, if any: none from the moment its runner returns,
        when its page is told so (its thread still has that to do)."""
        return None if self._run_over else self._session_id

    def _position(self) -> float | None:
        try:
            return round(float(self.focuser.position), 3)
        except Exception:  # a rail that lost its link still lets the page load
            return None

    def _publish_station(self) -> None:
        self._publish_controls()
        self.hub.update_progress(position_um=self._position(), units=self.units)

    def _publish_controls(self) -> None:
        """Tell every page what its controls follow: the session shooting, the units, the count
        of deleted sessions, and the rail move a request makes (``moving``: "jog", "home" or
        ``None``), so that Stop halts it from any phone, and from the one that asked even when
        its request was lost on the way back."""
        # One publish at a time, each reading the state as it goes out: one that read "no
        # move" could otherwise land after a jog's own "jog", and leave other phones' Stop off.
        with self._publish_lock:
            with self._rail_move_lock:
                moving = self._rail_move
            self.hub.set_extra(
                station={
                    "running": self.running,
                    "units": self.units,
                    "deleted": self._deleted,
                    "moving": moving,
                }
            )

    def _moved(self, fallback: float) -> float:
        """After a move: show the page where the rail stands and return that position
        (``fallback`` when the rail cannot say)."""
        self._publish_station()
        position = self._position()
        return fallback if position is None else position

    def _rail_link(self) -> None:
        """Open the rail's port again if its link broke since the rail was last used (a USB
        hiccup, a cable pulled and plugged back): a station runs for days, and every jog and
        session failed on the dead link until it was restarted. Called while the rig is held;
        nothing moves, and a board that restarted meanwhile refuses moves until it is homed,
        as at start-up."""
        reconnect = getattr(self.focuser, "reconnect", None)
        if reconnect is not None and getattr(self.focuser, "link_lost", False):
            reconnect()
            self._publish_station()

    # ------------------------------------------------------------------ rig control
    def exclusive(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Hold the rig (no session running, no other request moving or shooting) for the
        block; :class:`StationBusyError` naming ``what`` when it is taken. Every route that uses
        the rail, the camera or a session folder while no session may start goes through it."""

        def running(sid: str) -> str:
            return f"cannot {what}: session {sid} is running; stop it"

        return self._while_idle(self._lock, 0.1, what, "the rig", running)

    def session_idle(self, sid: str, what: str) -> contextlib.AbstractContextManager[None]:
        """Hold the station for the block while session ``sid`` is not the one running (another
        may shoot meanwhile): no session starts or resumes during the block. Deleting an old
        session frees space while a long one shoots."""

        def running(_: str) -> str:
            return f"cannot {what}: it is running; stop it first"

        return self._while_idle(self._lock, 0.1, what, "the station", running, only=sid)

    def camera_idle(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Use the camera for ``what`` (live view) while no session shoots, without holding
        the rig: the rail may jog meanwhile. Launching a session takes the camera lock too, so
        no session can start between the check and the use; :class:`StationBusyError` while
        one shoots."""

        def running(sid: str) -> str:
            return f"{what} pauses while session {sid} shoots"

        return self._while_idle(self._camera_lock, CAMERA_WAIT_S, what, "the camera", running)

    @contextlib.contextmanager
    def _while_idle(
        self,
        lock: threading.Lock,
        wait_s: float,
        what: str,
        part: str,
        running: Callable[[str], str],
        *,
        only: str | None = None,
    ) -> Iterator[None]:
        """Hold ``lock`` for the block, to do ``what``, while no session runs:
        :class:`StationBusyError` saying that ``part`` (the rig, the camera) is busy, and with
        what (a second phone's Start refused while the first's starts a session said only
        "another request"), when the lock stays taken ``wait_s``; ``running(session id)`` when a
        session runs. The lock is taken first and the running check made under it, so two
        simultaneous starts cannot both see an idle rig (a session's thread is alive before the
        lock is let go). With ``only``, just that session running is refused."""
        if not lock.acquire(timeout=wait_s):
            holder = self._holders.get(id(lock))
            doing = f" ({holder})" if holder else ""
            raise StationBusyError(f"cannot {what}: {part} is busy with another request{doing}")
        self._holders[id(lock)] = what
        try:
            session = self.running
            if session is not None and only in (None, session):
                raise StationBusyError(running(session))
            yield
        finally:
            self._holders.pop(id(lock), None)
            lock.release()

    def jog(self, *, by: str | None = None, to: str | None = None) -> float:
        """Move the rail ``by`` a distance or ``to`` a position (``"100um"``, ``"-1mm"``).

        The target must lie within :attr:`limits`; one outside is refused before anything moves.
        """
        if (by is None) == (to is None):
            raise StationError("jog: give either 'by' (e.g. 100um) or 'to' (e.g. 2mm)")
        key, text = ("by", by) if by is not None else ("to", to)
        try:
            value, units = parse_length(str(text))
        except UnitError as exc:
            raise StationError(f"jog '{key}': {exc}") from None
        if units != self.units:
            raise StationError(f"jog '{key}' {text!r}: this focuser moves in {self.units}")
        with self.exclusive("jog"):
            self._rail_link()
            target = value if to is not None else float(self.focuser.position) + value
            lo, hi = self.limits
            if not lo <= target <= hi:
                raise StationError(
                    f"jog '{key}' {text!r}: the target {format_length(target, self.units)} lies "
                    f"outside the travel {format_length(lo, self.units)} to "
                    f"{format_length(hi, self.units)}"
                )
            with self._moving("jog") as seen:
                self.focuser.move_to(target, **seen)
        return self._moved(target)

    def home(self) -> float:
        """Run the rail's homing cycle (after an alarm or a restart); returns the position."""
        if not self.focuser.capabilities.can_home:
            raise StationError(f"{self.focuser.name} cannot home (no homing cycle configured)")
        with self.exclusive("home"):
            self._rail_link()
            with self._moving("home") as seen:
                self.focuser.home(**seen)
            self._reference += 1
            self._homed_in, self._accepted_in = self._reference, None
        return self._moved(0.0)

    @contextlib.contextmanager
    def _moving(self, what: str) -> Iterator[dict[str, int]]:
        """Say, for the block, that a request moves the rail (``what``): :meth:`stop_rail`
        may halt it meanwhile. Gives the rail's stop count as it was then, as the move's
        ``stops_seen``: a Stop pressed before the rail read the count itself was taken for an
        older one, answered "jog", and the jog ran its whole way. (A driver of another package
        that counts no stops is moved as before.)"""
        with self._rail_move_lock:
            self._rail_move = what
            stops = getattr(self.focuser, "stops", None)
        self._publish_controls()  # the rail's position is not read: the move has its link
        try:
            yield {} if stops is None else {"stops_seen": stops}
        finally:
            with self._rail_move_lock:
                self._rail_move = None
            self._publish_controls()

    def stop_rail(self) -> str | None:
        """Halt at once the rail move a request is making (a jog, Go to near/far, a homing
        cycle, which GRBL leaves only by a reset: home again after), and return what it was;
        ``None`` when no request moves the rail. That request is answered with the stop.

        Takes not the rig's lock, which the moving request holds until its move ends: the
        session Stop waited for it, and then had no session to stop, so a jog typed 100 times
        too long, or a homing cycle with its switch unplugged, ran to the rail's end with
        nothing on the page to halt it. A session's moves are not stopped here (its move would
        end as a fault): its own Stop finishes the frame in flight."""
        with self._rail_move_lock:
            what = self._rail_move
            if what is not None:
                try:
                    self.focuser.stop()
                except Exception as exc:  # the rail's link gone: say so, as a session's stop logs
                    raise StationError(f"{self.focuser.name}: cannot stop ({exc})") from None
        return what

    def unlock(self) -> float:
        """Clear the rail controller's alarm (GRBL ``$X``), keeping its position; a rail whose
        controller restarted (its position unknown) takes where it stands as its reference, as
        ``--accept-position`` does."""
        unlock = getattr(self.focuser, "unlock", None)
        with self.exclusive("unlock the rail"):
            self._rail_link()
            if self.focuser.capabilities.unreferenced is not None:
                self.focuser.accept_position()
                self._new_accepted_reference()
            elif unlock is None:
                raise StationError(f"{self.focuser.name} has no alarm to clear")
            else:
                unlock()
        return self._moved(0.0)

    def _check_ready(self, plan: ShotPlan, output_suffix: str) -> None:
        """Refuse a session the rig cannot shoot, before its folder is made: a position
        unknown since a restart, a plan outside the soft limits, a DNG from JPEG frames."""
        problem = self.focuser.capabilities.unreferenced
        if problem is not None:
            raise StationError(
                f"{self.focuser.name}: {problem}; press Home, or Unlock to take where it "
                "stands as the reference, then start"
            )
        check_plan_fits(plan, self.focuser)
        self.check_within_travel(plan)
        if self.rig.get("kind") == "simulated":
            from rig.sim.rig import check_composite_format

            check_composite_format(output_suffix, json_name("format"))
        check_saves_raw(self.camera, output_suffix)

    def check_within_travel(self, plan: ShotPlan) -> None:
        """Refuse a plan that reaches past where the page may move the rail (:attr:`limits`:
        its soft limits, else the travel the station was given), as a jog there is refused.
        Only jogs were checked: a session to 400 mm on a station told its rail has 20 mm ran
        the carriage into its end and failed there, and offered to resume into it again."""
        lo, hi = self.limits
        positions = [p.position for p in plan.positions()]
        if min(positions) < lo - 1e-9 or max(positions) > hi + 1e-9:
            span = (format_length(v, self.units) for v in (min(positions), max(positions)))
            raise StationError(
                "the plan spans {} to {}, outside the travel {} to {} (--travel)".format(
                    *span, format_length(lo, self.units), format_length(hi, self.units)
                )
            )

    def _check_sessions_folder(self) -> None:
        """Refuse to write into :attr:`root` once it leads to another folder than the one the
        station locked: its USB disk unplugged or unmounted (a desktop unmounts a pulled disk,
        and may remove its mount point). A session started then was made, with the sessions
        folder, on the disk beneath (the Raspberry Pi's SD card), shot and reported complete,
        and hidden under the mount point once the disk was back."""
        why = moved_away(self.root, self._root_identity)
        if why is not None:
            raise StationError(
                f"{self.root}: the sessions folder is no longer there ({why}): its disk was "
                "unplugged or unmounted; nothing is written anywhere else: plug it back in, "
                "then start the station again"
            )

    def test_shot(self) -> dict[str, Any]:
        """Shoot one frame where the rail stands; it shows as the page's last frame."""
        with self.exclusive("take a test shot"):
            self._check_sessions_folder()
            folder = own_empty_folder(self.root / TEST_SHOT_DIR)
            with self._camera_lock:
                try:
                    files = self.camera.capture(folder, "test_shot")
                except OSError as exc:  # a full disk: the page says so, as for a session
                    where = exc.filename or folder
                    raise StationError(
                        f"{where}: cannot save the test shot ({exc.strerror or exc})"
                    ) from None
            if not files:
                raise StationError("the camera returned no file for the test shot")
            shown = stack_file(files)  # a RAW+JPEG pair shows its JPEG, as a session stacks it
            image = read_image(shown)  # before another test shot empties the folder
        h, w = image.shape[:2]
        scale = min(1.0, 1024 / max(h, w))
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        self.hub.set_images(last=encode_jpeg(small))
        self._publish_station()
        return {"name": shown.name, "width": w, "height": h, "files": len(files)}

    # ------------------------------------------------------------------ sessions
    def start(
        self,
        plan: ShotPlan,
        *,
        name: str | None = None,
        stack: StackOptions | None = None,
    ) -> str:
        """Create a session folder and shoot ``plan`` in the background; returns its id
        (``name``, or one made from the date and time)."""
        # A name ending in '.' is one Windows cannot open, and FAT and exFAT disks mounted by
        # Linux's own drivers drop the dot: the station then listed a session of another name.
        if name and (not SESSION_ID.match(name) or ".." in name or name.endswith(".")):
            raise StationError(
                f"session name {name!r}: use letters, digits, '-', '_' and '.' (no '..', and "
                "not '.' last)"
            )
        if plan.units != self.units:
            raise StationError(
                f"the plan is in {plan.units} but this focuser moves in {self.units}"
            )
        check_reference(plan, stack or StackOptions(), name=json_name)
        with self.exclusive("start a session"):
            # Read under the lock: a setting changed meanwhile would not be what is recorded.
            config = SessionConfig(
                rig=self.rig,
                stack=stack or StackOptions(),
                checkpoint_every=max(4, plan.frames // 4),
                camera=CameraSettings(self.camera).snapshot(),
            )
            self._check_sessions_folder()
            sid = name or dated_folder(self.root, "stack").name
            if os.path.lexists(self.root / sid):
                raise StationError(f"session {sid} exists already; resume it or choose a new name")
            self._rail_link()
            self._check_ready(plan, config.stack.suffix)
            folder = SessionFolder.create(self.root / sid, plan, config)
            with self._camera_lock:  # after a live-view frame in flight, before the next
                self._launch(sid, folder)
        return sid

    def resume(self, sid: str, *, rail_where_left: bool = False) -> None:
        """Continue session ``sid`` at its first missing frame.

        A session last run before Unlock took a restarted rail's place as 0 counts from
        another 0: resumed as it was, its missing frames were shot shifted by wherever it had
        left the rail, planes shot twice and others never. It is refused unless
        ``rail_where_left`` says nothing has moved since it stopped (the rail is then told it
        stands where the journal says the session left it, as ``rig resume
        --accept-position`` does), or the rail was homed since (a session shot after homing).
        """
        with self.exclusive("resume"):  # looked up under the lock: no delete of it meanwhile
            self._check_sessions_folder()
            folder = SessionFolder.find(self.files.session_dir(sid))
            plan = folder.plan
            if plan.units != self.units:
                raise StationError(
                    f"session {sid} moves in {plan.units}; this focuser in {self.units}"
                )
            self._rail_link()
            self._check_ready(plan, folder.config.stack.suffix)
            self._settle_reference(sid, folder, rail_where_left)
            # As a start holds the folder it creates: not one `rig resume` is shooting.
            hold_session(folder, f"resume session {sid}")
            try:
                with self._camera_lock:
                    self._launch(sid, folder)  # the runner takes the lock over and lets it go
            except BaseException:
                folder.unlock()
                raise

    def _settle_reference(self, sid: str, folder: SessionFolder, rail_where_left: bool) -> None:
        """See :meth:`resume`: refuse, or take the place the session left the rail as where
        it stands, when Unlock set the rail's 0 after the session's last run; refuse when
        Home did and the session's 0 was not the switch's."""
        if not folder.journal_path.exists():
            return  # no journal: nothing shot, no position to keep
        ran_in = self._ran_in.get(sid, 0)
        if self._homed_in is not None and ran_in < self._homed_in:
            self._check_homed_zero(sid, folder)
        if self._accepted_in is None or ran_in >= self._accepted_in:
            return
        if not rail_where_left:
            raise ReferenceChanged(
                f"session {sid} was shot before the rail restarted and Unlock took where it "
                "stood as 0: resumed so, its missing frames would be shifted. If the rail has "
                "not moved since the session stopped, resume it from where it left the rail; "
                "if the session was shot after homing, press Home first"
            )
        left = rail_left(read_journal(folder.journal_path))
        if left is None or left.position is None:
            raise StationError(
                f"session {sid}: its journal does not say where it left the rail; press Home "
                "if it was shot after homing, or shoot it again as a new session"
            )
        self.focuser.accept_position(left.position)
        self._new_accepted_reference()  # sessions run before now count from another 0

    def _new_accepted_reference(self) -> None:
        self._reference += 1
        self._accepted_in = self._reference

    @staticmethod
    def _check_homed_zero(sid: str, folder: SessionFolder) -> None:
        """Refuse to resume, on a rail homed since, a session whose positions counted from
        where the carriage stood (Unlock, ``--accept-position``) or whose journal, of an older
        stackrig, does not say: its missing frames would land far from the others."""
        started = read_journal(folder.journal_path).of_kind("start")
        accepted = started[0].get("accepted") if started else False
        if accepted is True:
            raise StationError(
                f"session {sid}: its positions count from where the carriage stood when it was "
                "shot (Unlock), not from the home switch; homed since, the rail cannot find "
                "them again: shoot it again as a new session"
            )
        if accepted is None:
            raise StationError(
                f"session {sid}: shot by an older stackrig, whose journal does not say whether "
                "its positions count from the home switch or from where the carriage stood; "
                "homed since, its missing frames could land far from the others: shoot it "
                "again as a new session"
            )

    def _launch(self, sid: str, folder: SessionFolder) -> None:
        runner = SessionRunner(
            folder, focuser=self.focuser, camera=self.camera, options=self.runner_options
        )
        SessionPreview(self.hub, title=sid).attach(runner)
        self._runner, self._session_id, self._last_result = runner, sid, None
        self._ran_in[sid] = self._reference
        self._run_over = False
        thread = threading.Thread(target=self._run, args=(runner,), name=f"session-{sid}")
        self._thread = thread
        thread.start()
        self._publish_station()

    def _run(self, runner: SessionRunner) -> None:
        try:
            self._last_result = runner.run()
        finally:
            # Over before the page hears it: a session list it asks for then must not still
            # show the session running (the page asks once, when "running" changes). Under
            # the lock a launch holds: a session started in between is not announced as over.
            with self._camera_lock:
                self._run_over = True
                self._publish_station()

    def stop(self, sid: str | None = None) -> bool:
        """Ask the running session (``sid``, if given, must be it) to stop after this frame.

        The runner and the running session's id are read under the lock a launch sets them
        under: read apart, a start in between paired the finished session's runner with the
        new session's id, and the stop went to the runner that had ended (the new session
        shot on though the answer said stopping)."""
        if not self._lock.acquire(timeout=CAMERA_WAIT_S):
            raise StationBusyError("cannot stop: the station is busy with another request")
        try:
            runner, running = self._runner, self.running
        finally:
            self._lock.release()
        if runner is None or running is None:
            return False
        if sid is not None and sid != running:
            raise StationError(f"session {sid!r} is not running (session {running} is)")
        runner.request_stop()
        return True

    def wait(self, timeout: float | None = None) -> SessionResult | None:
        """Wait for the running session to end; its result (``None`` on timeout).

        Awake every :data:`~stacker.launch.WAKE_S` for a stop signal: ``rig station`` on its
        way out waits here for the session's composite, and a second Ctrl-C or SIGTERM that
        landed as the wait began, or on another thread, waited for it too (up to 30 s).
        """
        thread = self._thread
        if thread is not None:
            deadline = math.inf if timeout is None else time.monotonic() + timeout
            while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                thread.join(min(left, WAKE_S))
            if thread.is_alive():
                return None
        return self._last_result

    def close(self, timeout: float = 30.0) -> None:
        """Stop a running session and wait for it (journal and composite written), then let
        go of the sessions folder."""
        try:
            stopping = self.stop()
        except StationBusyError:  # a request holds the rig (a long homing): nothing shoots
            stopping = False
        if stopping:
            self.wait(timeout)
        if self.running is not None:
            return  # still writing: the folder stays ours until the process ends
        fd, self._folder_lock = self._folder_lock, None
        if fd is not None:
            os.close(fd)

    # ------------------------------------------------------------------ files
    def session_deleted(self) -> None:
        """Tell the pages open on the station that a session is gone from its list. Called
        while the session is held idle (:meth:`session_idle`), so two deletions each count."""
        self._deleted += 1
        self._publish_station()

    def sessions(self) -> list[dict[str, Any]]:
        """The station's sessions, newest first, with what can be downloaded."""
        return self.files.sessions(running=self.running)
