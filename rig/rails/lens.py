"""``camera://``: the camera's own lens focus motor as a :class:`~rig.focuser.Focuser`.

No rail needed: the lens steps its focus group through libgphoto2 (Canon EOS, Nikon, Sony,
Panasonic, Olympus, Fuji; see :mod:`rig.camera.focus`). Positions are lens steps counted from
where the session started, because lenses report no absolute scale; only Fuji bodies, which
expose an absolute focus position, are ``absolute``. Every opening counts from 0 again, so
``capabilities.unreferenced`` says so until :meth:`LensFocuser.accept_position`: a new
session accepts where focus stands, a resumed one must be told that nothing moved (or refuse).
A step's size in the subject depends on the lens and the focus distance, so plans with a lens
focuser are written in steps, not micrometres.

URL forms::

    camera://                          the only camera connected
    camera://usb:001,007               the camera on that port
    camera://?model=EOS%2080D&size=1&settle=0.3s

Options: ``model``, ``port``, ``size`` (step size where the body offers several: 1 is the
finest), ``settle`` (wait after each step; the body sends no "move finished" signal),
``approximate=1`` (accept a body that drives focus only at a speed, Sony: spacing is then
approximate and end stops go unseen).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from rig.camera import Camera, CameraDisconnectedError, CameraError, FocusEndStopError
from rig.camera.focus import FocusStrategy
from rig.errors import MotionError
from rig.focuser import FocuserCapabilities
from rig.rails.base import MoveStoppedError
from rig.rails.url import DeviceURL, URLError
from rig.units import parse_duration

log = logging.getLogger(__name__)

_UNREFERENCED = (
    "a lens has no absolute scale: its steps are counted from where focus stood when the "
    "camera was opened"
)


class LensFocuser:
    """A :class:`~rig.focuser.Focuser` stepping the lens of an open :class:`Camera`.

    Parameters
    ----------
    camera
        The camera session whose lens is driven.
    owns_camera
        Close the camera when this focuser closes (true when :meth:`from_url` opened it).
    size, settle_s
        Step size and settle time, see :meth:`Camera.configure_focus`.

    Raises
    ------
    CameraUnsupportedError
        The body cannot drive focus over USB; the message points at focus rails.
    """

    def __init__(
        self,
        camera: Camera,
        *,
        owns_camera: bool = False,
        size: int = 1,
        settle_s: float | None = None,
        approximate: bool = False,
    ) -> None:
        self.camera = camera
        self._owns_camera = owns_camera
        camera.configure_focus(size=size, settle_s=settle_s, approximate=approximate)
        self._strategy: FocusStrategy = camera.focus_strategy()
        start = self._strategy.position() if self._strategy.absolute else None
        self._position = float(start) if start is not None else 0.0
        self._referenced = self._strategy.absolute
        self._stops = 0
        self._releases = camera.releases
        """The camera's releases when this focuser last drove the lens."""

    @classmethod
    def from_url(cls, url: str, camera: Camera | None = None) -> LensFocuser:
        """Open the lens focuser a ``camera://`` URL names, on ``camera`` if one is given."""
        parsed = DeviceURL.parse(url)
        if parsed.scheme != "camera":
            raise URLError(f"{url!r} is not a camera:// URL")
        model = parsed.take("model")
        port = parsed.take("port") or parsed.path or None
        size_text = parsed.take("size", "1") or "1"
        if not size_text.isdigit() or int(size_text) < 1:
            raise URLError(f"option size={size_text!r} in {url!r} must be a whole number >= 1")
        settle_text = parsed.take("settle")
        settle_s = parse_duration(settle_text) if settle_text is not None else None
        approx_text = parsed.take("approximate", "0") or "0"
        if approx_text not in ("0", "1"):
            raise URLError(f"option approximate={approx_text!r} in {url!r} must be 0 or 1")
        options: dict[str, Any] = {
            "size": int(size_text),
            "settle_s": settle_s,
            "approximate": approx_text == "1",
        }
        parsed.finish()
        if camera is not None:
            wanted_model = model is None or model.lower() in camera.info.model.lower()
            if not wanted_model or (port is not None and port != camera.info.port):
                raise URLError(
                    f"{url!r} names another camera than the open one ({camera.description})"
                )
            return cls(camera, **options)
        opened = Camera.open(model=model, port=port)
        try:
            return cls(opened, owns_camera=True, **options)
        except BaseException:
            opened.close()
            raise

    @property
    def name(self) -> str:
        return f"lens of {self.camera.description}"

    @property
    def capabilities(self) -> FocuserCapabilities:
        low, high = self._strategy.limits()
        return FocuserCapabilities(
            absolute=self._strategy.absolute,
            units="steps",
            can_home=False,
            min_position=low,
            max_position=high,
            unreferenced=None if self._referenced else _UNREFERENCED,
        )

    def accept_position(self, position: float | None = None) -> None:
        """Take where focus stands as the reference; with ``position``, count from there.

        A new session calls this with nothing: its plan counts steps from the current focus.
        Resuming one, ``position`` is the last frame's, which is right only if nothing moved
        the focus since (the lens cannot tell).
        """
        if position is not None:
            self._position = float(position)
        self._referenced = True

    @property
    def position(self) -> float:
        """Steps from the session's start (the lens's own position on absolute bodies)."""
        return self._position

    @property
    def stops(self) -> int:
        """How many times :meth:`stop` has been called (see ``stops_seen``)."""
        return self._stops

    def move_by(self, delta: float) -> None:
        """Step the lens ``delta`` whole steps (positive: farther); returns once settled."""
        self._check_in_place()
        self._step(delta, self._stops)

    def _step(self, delta: float, asked: int) -> None:
        steps = round(delta)
        if not math.isfinite(delta) or abs(delta - steps) > 1e-9:
            raise MotionError(f"{self.name} moves in whole lens steps; cannot move by {delta:g}")
        if steps == 0:
            return
        self._strategy.stop_event.clear()  # before the count is compared: see Rail._begin
        if self._stops != asked:
            self._strategy.stop_event.set()
            raise MoveStoppedError(f"{self.name}: move stopped before it began")
        self._strategy.made = 0
        self._releases = self.camera.releases
        try:
            done = self.camera.focus_drive(steps)
        except FocusEndStopError as exc:
            self._position += exc.steps_done
            if not self._strategy.absolute:
                # The body says so only once the lens has run to its stop (a Nikon answers
                # MfDriveStepEnd after the drive, _put_Nikon_MFDrive): part of the refused
                # drive was made, how much is unknown, and the count no longer says where
                # focus stands; a return or a resume would start from the wrong place.
                self._referenced = False
            raise
        except BaseException as exc:
            # Cut short after some of its steps (a Canon refusing the 5th of 10, a link lost
            # for good): those steps were made, and a fault's journal and a resume with
            # --accept-position count from here. A step the camera answered (refused, busy)
            # was not taken; one cut off with the link, or interrupted, may have been.
            self._position += self._strategy.made
            answered = isinstance(exc, CameraError) and not isinstance(exc, CameraDisconnectedError)
            if not answered and not self._strategy.absolute:
                self._referenced = False
            raise
        self._position += done
        if done != steps:
            raise MotionError(
                f"{self.name}: stopped after {abs(done)} of {abs(steps)} steps "
                f"(position {self._position:g} steps)"
            )

    def _check_in_place(self) -> None:
        """On a lens that tells its position (Fuji), that focus is still where this focuser
        last put it; it takes where focus stands now as its position.

        Moved with no frame shot since, or before the last release (by hand, between a
        station's jogs and test shots), that is all. Moved at a release, the frames shot since
        were not where their plan positions say: the body refocused at the release (its focus
        mode selector not at M, which stackrig cannot set: ``camera_fuji_capture`` sends the
        focus action first) or the lens reset its focus as the body slept. Each move started
        from the body's position, so a stack went on to its end, every frame of it shot where
        AF put the lens and labelled with its plan position. That is raised."""
        if not self._strategy.absolute:
            return
        here = self._strategy.position()
        if here is None or abs(here - self._position) < 1:
            return
        was, self._position = self._position, float(here)
        before = self.camera.focus_at_release
        if self.camera.releases == self._releases or (
            before is not None and abs(here - before) < 1
        ):
            # Moved before the last release, if any (focused by hand, then a test shot or a
            # session's first frame shot where focus stood): that release was said to have
            # refocused, and a station's session stopped at its first move.
            log.info("%s: focus moved from %g to %g steps", self.name, was, here)
            return
        raise MotionError(
            f"{self.name}: focus moved by itself from {was:g} to {here:g} steps while frames "
            "were shot, so they were not shot where planned: the body refocused at the release "
            "(turn its focus mode selector to M) or reset focus as it slept; shoot the stack "
            "again"
        )

    def move_to(self, position: float, *, stops_seen: int | None = None) -> None:
        """Step to ``position`` (in steps from the start) by the difference from here, in whole
        steps: a lens with its own position (Fuji) may stand between two steps of ``size``
        units where it was focused by hand, and every plan position was then refused as a
        fractional move; it reaches the nearest step to ``position``, as close as it can. Not
        past an end of its travel that ``position`` lies within: the nearest step to the far
        end, from 20.4 steps, is 100.4, and a plan ending at 100 hit the end stop there.
        ``stops_seen``: see :class:`~rig.focuser.Focuser`."""
        asked = self._stops if stops_seen is None else stops_seen
        self._check_in_place()
        delta = position - self._position
        if not math.isfinite(delta):
            self._step(delta, asked)
            return
        steps = round(delta)
        low, high = self._strategy.limits()
        if high is not None and position <= high < self._position + steps:
            steps = math.floor(high - self._position + 1e-9)
        if low is not None and position >= low > self._position + steps:
            steps = math.ceil(low - self._position - 1e-9)
        self._step(steps, asked)

    def home(self, *, stops_seen: int | None = None) -> None:
        raise MotionError(
            f"{self.name} cannot home: a lens has no reference position; focus on the nearest "
            "point by eye and start the plan from there"
        )

    def stop(self) -> None:
        """Stop after the step in progress (a lens step cannot be interrupted)."""
        self._stops += 1  # before the event is set: see _step
        self._strategy.stop_event.set()

    def close(self) -> None:
        if self._owns_camera:
            self.camera.close()
