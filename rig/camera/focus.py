"""Driving focus through the lens's own motor, one vendor strategy per class.

libgphoto2's ptp2 driver exposes lens focus differently on each brand:

* **Canon EOS** (and bodies that copy its widget): ``manualfocusdrive`` is a radio widget with
  seven choices, ``Near 1/2/3``, ``None``, ``Far 1/2/3`` (1 is the finest step). It works only in
  live view (``viewfinder=1``) and only with the lens switch at AF. Traps handled here: the
  labels are translated by locale ("Near 1" may read "Cerca 1"), so choices are picked by
  *index* in libgphoto2's fixed order; setting the same value twice on one widget sends it once
  (libgphoto2 sends only widgets marked changed), so every step calls ``set_changed(1)``; and
  there is no "move finished" signal, so each step is followed by a settle wait. A plain
  libgphoto2 capture would half-press with AF and refocus the lens, so
  :class:`~rig.camera.Camera` releases Canon bodies without AF (``eosremoterelease``).
* **Nikon** (and other range widgets): ``manualfocusdrive`` is a signed step count (negative is
  near), live view only. ``_put_Nikon_MFDrive`` answers libgphoto2 error -113 both at the end of
  the lens's travel and for a step smaller than the lens accepts (or a lens in AF-only mode), so
  a refusal is tested: if a step of this size moved the lens before, or the same step the other
  way is accepted, it is the end stop (:class:`~rig.camera.errors.FocusEndStopError`, not a
  fault); otherwise the step is too small, said as such. After a capture in live view
  libgphoto2 restarts live view without waiting for it, and a drive meanwhile fails with -1:
  the drive waits for live view and tries again. libgphoto2's own "autofocus before capture"
  setting is switched off, and left so (:func:`no_capture_autofocus`).
* **Sony**: ``manualfocus`` is a *speed* (-7..7, ``_put_Sony_ManualFocus``): how far the lens
  moves per call is non-linear and lens-dependent, there is no end-stop signal, and recent bodies
  in PC-remote mode lack it. It is used only when asked for (``approximate=True``), with a
  warning that the spacing is approximate. libgphoto2's capture half-presses a Sony and waits
  for it to focus unless its ``focusmode`` is Manual (``camera_sony_capture``), which would
  refocus the lens at every frame, so the body is set to Manual for the session.
* **Fuji**: the lens position is an absolute number; a move writes position + steps, so this
  strategy alone is absolute. libgphoto2's capture sends a Fuji its focus action first
  (``camera_fuji_capture``), so the body is set to Manual focus for the session as on Sony.
* **Panasonic, Olympus**: radio or range ``manualfocusdrive``, handled by the shapes above.

Positive steps move focus away from the camera (far), negative steps towards it (near).

The strategies talk to the camera only through :class:`FocusControls`, which
:class:`rig.camera.Camera` implements; tests drive them with a small fake widget tree because
no focus motor can run on libgphoto2's virtual camera.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from rig.camera.config import (
    WIDGET_MENU,
    WIDGET_RADIO,
    WIDGET_RANGE,
    WIDGET_TEXT,
    WIDGET_TOGGLE,
    choices_of,
)
from rig.camera.errors import (
    GP_ERROR,
    GP_ERROR_CAMERA_ERROR,
    CameraBusyError,
    CameraError,
    CameraUnsupportedError,
    FocusEndStopError,
)
from rig.errors import RigError

log = logging.getLogger(__name__)

RAIL_HINT = (
    "use a focus rail instead, e.g. --rail grbl:///dev/ttyUSB0 (or --rail sim:// to try without "
    "hardware)"
)

# libgphoto2's fixed order of the Canon EOS manualfocusdrive choices (_get_Canon_EOS_MFDrive).
# Index -> (direction, size); direction -1 is near, +1 far; None is the no-op choice.
SEVEN_STEP_LAYOUT: tuple[tuple[int, int] | None, ...] = (
    (-1, 1),
    (-1, 2),
    (-1, 3),
    None,
    (1, 1),
    (1, 2),
    (1, 3),
)
# Panasonic's (_get_Panasonic_MFDrive): Near 1, Near 2, None, Far 1, Far 2.
FIVE_STEP_LAYOUT: tuple[tuple[int, int] | None, ...] = ((-1, 1), (-1, 2), None, (1, 1), (1, 2))
INDEX_LAYOUTS = {7: SEVEN_STEP_LAYOUT, 5: FIVE_STEP_LAYOUT}
"""libgphoto2's radio layouts by their number of choices, read by index since labels are
translated (a German desktop sees "Nah 1", "Keine", "Weit 1")."""


MANUAL_FOCUS_MODE = "Manual"
"""libgphoto2's label of PTP FocusMode 1 (``focusmodes`` in config.c), the one mode in which its
capture does not let the body autofocus first."""

LIVE_VIEW_WAIT_S = 5.0
"""How long a Nikon drive waits for live view to come back after a capture."""
LIVE_VIEW_POLL_S = 0.1
LENS_RUN_WAIT_S = 30.0
"""How long a Nikon body may stay busy driving its lens after libgphoto2 stopped waiting."""
DRIVE_TAKEN_AFTER_S = 0.5
"""A busy answer to a Nikon drive that took this long came from libgphoto2's wait after the
drive (``nikon_wait_busy``: 51 polls 20 ms apart, about 1 s), so the drive was taken; a drive
the body refused as busy is answered within a USB round trip."""


class FocusControls(Protocol):
    """What a focus strategy needs from a camera session."""

    @property
    def description(self) -> str:
        """How to name the camera in messages (``Canon EOS 80D on usb:001,007``)."""
        ...

    @property
    def manufacturer(self) -> str: ...

    def widget(self, key: str) -> Any | None:
        """A fresh widget for setting ``key``, or ``None`` when the camera has no such key."""
        ...

    def send(self, key: str, widget: Any, *, retry_busy: bool = True) -> None:
        """Send ``widget``'s value to the camera; raises :class:`CameraError` (with ``code``).
        With ``retry_busy`` false a busy answer is raised (:class:`CameraBusyError`), not
        retried."""
        ...

    def ensure(self, key: str, value: str | int | float) -> None:
        """Set ``key`` for this session; the camera restores the old value when it closes."""
        ...

    def sleep(self, seconds: float) -> None: ...


class FocusStrategy(ABC):
    """One way of stepping a lens; ``drive`` returns the signed number of steps made."""

    name: ClassVar[str]
    absolute: ClassVar[bool] = False
    default_settle_s: ClassVar[float] = 0.2

    def __init__(
        self,
        controls: FocusControls,
        key: str,
        *,
        size: int = 1,
        settle_s: float | None = None,
    ) -> None:
        self.controls = controls
        self.key = key
        self.size = size
        self.settle_s = self.default_settle_s if settle_s is None else settle_s
        self.stop_event = threading.Event()
        self._prepared = False
        self.made = 0
        """Signed steps the drive in progress (or the last one) has made so far: what a drive
        cut short by an error had moved the lens, as its exception cannot say."""

    def ensure_prepared(self) -> None:
        """Run :meth:`prepare` once per session."""
        if not self._prepared:
            self.prepare()
            self._prepared = True

    def prepare(self) -> None:  # noqa: B027 - most strategies need no preparation
        """Put the body in the state driving needs (live view...)."""

    @abstractmethod
    def drive(self, steps: int) -> int:
        """Move ``steps`` (signed); return the steps actually made."""

    def position(self) -> float | None:
        """The lens position for absolute strategies, else ``None``."""
        return None

    def limits(self) -> tuple[float | None, float | None]:
        """Soft limits of an absolute strategy."""
        return (None, None)

    def _widget(self) -> Any:
        widget = self.controls.widget(self.key)
        if widget is None:
            raise CameraUnsupportedError(
                f"{self.controls.description} no longer offers {self.key!r}; {RAIL_HINT}"
            )
        return widget

    def _manual_focus_mode(self) -> None:
        manual_focus_mode(self.controls)

    def _live_view(self, required: bool) -> None:
        finder = self.controls.widget("viewfinder")
        if finder is not None and finder.get_type() == WIDGET_TOGGLE:
            self.controls.ensure("viewfinder", 1)
        elif required:
            raise CameraUnsupportedError(
                f"{self.controls.description}: lens focus drive needs live view and this body "
                f"offers no 'viewfinder' setting; {RAIL_HINT}"
            )


def manual_focus_mode(controls: FocusControls) -> None:
    """Set the body's ``focusmode`` to Manual for the session: in any AF mode the release
    autofocuses (Sony, Fuji) and the lens leaves the position it was driven to, or a rail
    stack is refocused at every frame. A body whose mode follows a switch on it (the setting
    read-only, or refused) is left as it is, with a warning: the photographer can turn the
    switch to M."""
    mode = controls.widget("focusmode")
    if mode is None or mode.get_type() not in (WIDGET_RADIO, WIDGET_MENU):
        return
    if mode.get_value() == MANUAL_FOCUS_MODE:
        return
    if MANUAL_FOCUS_MODE in choices_of(mode) and not mode.get_readonly():
        try:
            controls.ensure("focusmode", MANUAL_FOCUS_MODE)
        except RigError as exc:
            log.debug("focusmode %s refused: %s", MANUAL_FOCUS_MODE, exc)
        # A Sony whose lens switch says AF answers the set as done and keeps its mode
        # (_put_Sony_FocusMode gives up after 3 s without an error): read it back.
        mode = controls.widget("focusmode") or mode
        if mode.get_value() == MANUAL_FOCUS_MODE:
            return
    log.warning(
        "%s: focus mode is %r and cannot be set to %s from here; turn the focus switch "
        "on the body or lens to M (MF), or each shot may refocus",
        controls.description,
        mode.get_value(),
        MANUAL_FOCUS_MODE,
    )


def no_capture_autofocus(controls: FocusControls) -> None:
    """Switch off libgphoto2's own autofocus before a Nikon capture, and leave it off.

    ``camera_capture`` asks ``camera_nikon_capture`` to focus first when libgphoto2's
    ``autofocus`` setting (a file in ``~/.gphoto``, not the body's) was ever set on. The
    widget reads On when it was never set, which means off: so it is set Off and not put back
    (putting "On" back wrote the setting, and every later capture by any program focused).
    libgphoto2 lists On, Off.
    """
    af = controls.widget("autofocus")
    if af is not None and af.get_type() in (WIDGET_RADIO, WIDGET_MENU) and af.count_choices() == 2:
        af.set_value(af.get_choice(1))
        controls.send("autofocus", af)


class NudgeDrive(FocusStrategy):
    """One write of the same value per step, with a wait after each (Canon, Sony)."""

    def prepare(self) -> None:
        self._live_view(required=False)

    def drive(self, steps: int) -> int:
        if steps == 0:
            return 0
        direction = 1 if steps > 0 else -1
        widget = self._widget()
        value = self._nudge(widget, direction)
        done = self.made = 0
        for _ in range(abs(steps)):
            if self.stop_event.is_set():
                break
            widget.set_value(value)
            # Same value as last time would otherwise not be sent again.
            widget.set_changed(1)
            self._send_nudge(widget, done)
            done += 1
            self.made = direction * done
            self.controls.sleep(self.settle_s)
        return direction * done

    @abstractmethod
    def _nudge(self, widget: Any, direction: int) -> Any:
        """The value one step towards ``direction`` writes."""

    def _send_nudge(self, widget: Any, done: int) -> None:
        """Send one step; ``done`` steps were sent before it."""
        self.controls.send(self.key, widget)


class RadioStepDrive(NudgeDrive):
    """Canon EOS style: choose Near/Far n by index, once per step, wait after each."""

    name = "radio-step"

    def __init__(
        self,
        controls: FocusControls,
        key: str,
        layout: tuple[tuple[int, int] | None, ...],
        *,
        size: int = 1,
        settle_s: float | None = None,
    ) -> None:
        super().__init__(controls, key, size=size, settle_s=settle_s)
        self.layout = layout
        sizes = {entry[1] for entry in layout if entry is not None}
        if size not in sizes:
            raise CameraError(
                f"{controls.description}: focus step size {size} is not offered; "
                f"choose one of {', '.join(str(s) for s in sorted(sizes))}"
            )

    def index_for(self, direction: int) -> int:
        """Index in the choice list of one step of :attr:`size` towards ``direction``."""
        return self.layout.index((direction, self.size))

    def _nudge(self, widget: Any, direction: int) -> Any:
        return widget.get_choice(self.index_for(direction))

    def _send_nudge(self, widget: Any, done: int) -> None:
        try:
            self.controls.send(self.key, widget)
        except CameraError as exc:
            if type(exc) is not CameraError:  # busy, unplugged...: said as what it is
                raise
            # An EOS drives only a lens switched to AF; other radio bodies say no such thing.
            canon = "canon" in self.controls.manufacturer.lower()
            needs = "the lens switch at AF" if canon else "a lens the body can drive"
            raise CameraError(
                f"{self.controls.description} refused to drive the lens after {done} "
                f"steps ({exc}); it needs live view on and {needs}",
                exc.code,
            ) from None


class SignedRangeDrive(FocusStrategy):
    """Nikon style: a signed step count per call; error -113 is the end of travel."""

    name = "signed-range"

    def prepare(self) -> None:
        self._live_view(required=True)
        no_capture_autofocus(self.controls)

    def drive(self, steps: int) -> int:
        if steps == 0:
            return 0
        direction = 1 if steps > 0 else -1
        low, high, _ = self._widget().get_range()
        chunk_cap = int(max(1.0, min(abs(low), abs(high))))
        remaining = abs(steps) * self.size
        done = self.made = 0
        while remaining > 0 and not self.stop_event.is_set():
            amount = min(remaining, chunk_cap)
            try:
                self._move(direction * amount)
            except CameraError as exc:
                if exc.code != GP_ERROR_CAMERA_ERROR:
                    raise
                raise self._refusal(direction, amount, done // self.size, abs(steps)) from None
            done += amount
            remaining -= amount
            self.made = direction * (done // self.size)
            self.controls.sleep(self.settle_s)
        return direction * (done // self.size)

    _smallest_ok: float | None = None

    def _move(self, amount: float) -> None:
        """One MF drive; waits for live view to come back when it is restarting (-1)."""
        try:
            self._send(amount)
        except CameraError as exc:
            if exc.code != GP_ERROR or not self._live_view_back():
                raise
            self._send(amount)
        if self._smallest_ok is None or abs(amount) < self._smallest_ok:
            self._smallest_ok = abs(amount)

    def _live_view_back(self) -> bool:
        """True once live view runs again: after a capture the body restarts it, and one that
        ended it by itself (libgphoto2 expects that of a D7000 after many frames, and turns it
        back on for previews: ``camera_capture_preview``) is told to start it again."""
        if self._wait_live_view():
            return True
        finder = self.controls.widget("viewfinder")
        if finder is None or finder.get_type() != WIDGET_TOGGLE:
            return False
        log.warning("%s: live view had ended; switching it on again", self.controls.description)
        finder.set_value(1)
        finder.set_changed(1)
        self.controls.send("viewfinder", finder)
        return self._wait_live_view()

    def _send(self, amount: float) -> None:
        """One drive of ``amount``, taken once. libgphoto2 answers busy (-110) in two cases
        that need opposite handling (``_put_Nikon_MFDrive`` in config.c):

        * the drive was taken, and ``nikon_wait_busy(params, 20, 1000)`` gave up after about a
          second with the lens still running: sent again it would drive the lens as far again;
        * ``ptp_nikon_mfdrive`` itself was answered DeviceBusy because an earlier drive still
          runs: the drive was not taken, and counting it would lose its steps.

        Nothing else tells them apart (reading ``manualfocusdrive`` asks the body nothing:
        ``_get_Nikon_MFDrive``), so the time the answer took does: a refused drive is answered
        at once, a taken one only after libgphoto2's wait. A refused drive is sent again once
        the lens stops, for up to ``LENS_RUN_WAIT_S``."""
        deadline = time.monotonic() + LENS_RUN_WAIT_S
        while True:
            widget = self._widget()
            widget.set_value(float(amount))
            widget.set_changed(1)
            sent_at = time.monotonic()
            try:
                self.controls.send(self.key, widget, retry_busy=False)
                return
            except CameraBusyError:
                if time.monotonic() - sent_at >= DRIVE_TAKEN_AFTER_S:
                    log.info("%s: the lens still runs after its drive", self.controls.description)
                    return
                if time.monotonic() >= deadline:
                    raise
                self.controls.sleep(LIVE_VIEW_POLL_S)

    def _wait_live_view(self) -> bool:
        """True once live view is running again (within ``LIVE_VIEW_WAIT_S``)."""
        waited = 0.0
        while waited < LIVE_VIEW_WAIT_S:
            finder = self.controls.widget("viewfinder")
            if finder is None:
                return False
            if finder.get_value():
                return True
            self.controls.sleep(LIVE_VIEW_POLL_S)
            waited += LIVE_VIEW_POLL_S
        return False

    def _refusal(self, direction: int, amount: int, done: int, asked: int) -> CameraError:
        """-113 means the end stop or a step too small: tell them apart, say which."""
        name = self.controls.description
        end_stop = self._smallest_ok is not None and amount >= self._smallest_ok
        if not end_stop:
            try:  # the same step the other way: accepted means the size is fine
                self._send(-direction * amount)
            except CameraError as exc:
                if exc.code != GP_ERROR_CAMERA_ERROR:
                    raise
            else:
                end_stop = True
                try:
                    self._send(direction * amount)  # back to where the refusal happened
                except CameraError as exc:
                    if exc.code != GP_ERROR_CAMERA_ERROR:
                        raise
        if end_stop:
            end = "far" if direction > 0 else "near"
            return FocusEndStopError(
                f"{name}: the lens reached its {end} end stop after {done} of {asked} steps",
                steps_done=direction * done,
                code=GP_ERROR_CAMERA_ERROR,
            )
        return CameraError(
            f"{name}: the lens refused a focus step of {amount} drive units in either direction "
            f"(libgphoto2 -113: step too small for this lens, or the lens is in AF-only mode); "
            f"use a larger step size (camera://?size={max(2, 2 * self.size)}) or set the lens "
            "to M/A",
            GP_ERROR_CAMERA_ERROR,
        )


class SonyStepDrive(NudgeDrive):
    """Sony ``manualfocus``: one signed nudge at speed :attr:`size` (1..7) per step.

    Approximate: the distance of a nudge depends on the speed non-linearly, on the lens and on
    the focus distance, and the lens stops at its ends without saying so.
    """

    name = "sony-step"
    approximate: ClassVar[bool] = True

    def prepare(self) -> None:
        super().prepare()
        self._manual_focus_mode()

    def _nudge(self, widget: Any, direction: int) -> Any:
        low, high, _ = widget.get_range()
        return direction * max(1.0, min(float(self.size), abs(high if direction > 0 else low)))


class AbsolutePositionDrive(FocusStrategy):
    """Fuji: the lens position is a number; a move writes the new position."""

    name = "absolute-position"
    absolute = True

    def prepare(self) -> None:
        self._manual_focus_mode()

    def _read(self) -> tuple[Any, float]:
        widget = self._widget()
        try:
            return widget, float(widget.get_value())
        except (TypeError, ValueError):
            raise CameraUnsupportedError(
                f"{self.controls.description}: {self.key!r} does not read as a number; {RAIL_HINT}"
            ) from None

    def position(self) -> float | None:
        """The lens position in steps of :attr:`size` (what :meth:`drive` counts in): in lens
        units, a focuser at size 5 counted 2 steps for a move of 10 units, and its position and
        limits drifted apart from the lens's."""
        return self._read()[1] / self.size

    def limits(self) -> tuple[float | None, float | None]:
        """Soft limits in steps of :attr:`size`, as :meth:`position`."""
        low, high = self._unit_limits()
        return (
            None if low is None else low / self.size,
            None if high is None else high / self.size,
        )

    def _unit_limits(self) -> tuple[float | None, float | None]:
        widget = self._widget()
        if widget.get_type() == WIDGET_RANGE:
            low, high, _ = widget.get_range()
            return (float(low), float(high))
        return (None, None)

    def drive(self, steps: int) -> int:
        if steps == 0:
            return 0
        widget, current = self._read()
        low, high = self._unit_limits()
        target = current + steps * self.size
        clamped = target
        if low is not None:
            clamped = max(clamped, low)
        if high is not None:
            clamped = min(clamped, high)
        value: Any = clamped if widget.get_type() == WIDGET_RANGE else str(round(clamped))
        widget.set_value(value)
        widget.set_changed(1)
        self.controls.send(self.key, widget)
        self.controls.sleep(self.settle_s)
        done = round((clamped - current) / self.size)
        if clamped != target:
            end = "far" if steps > 0 else "near"
            raise FocusEndStopError(
                f"{self.controls.description}: the lens reached its {end} end stop at "
                f"position {clamped:g} after {abs(done)} of {abs(steps)} steps",
                steps_done=done,
            )
        return done


FUJI_POSITION_KEYS = ("focusposition", "manualfocusdrive")
FUJI_POSITION_TYPES = (WIDGET_RANGE, WIDGET_TEXT, WIDGET_RADIO, WIDGET_MENU)
"""``_get_INT`` on Fuji's FocusPosition: a radio of the body's enumeration (what real bodies
show, ``cameras/fuji-*.txt``), a range, or text; ``_put_INT`` takes any number as text."""


def _numeric(labels: tuple[str, ...]) -> bool:
    """Labels that are numbers (an enumerated property's values), not drive steps."""
    try:
        [float(label) for label in labels]
    except ValueError:
        return False
    return bool(labels)


def _english_layout(labels: tuple[str, ...]) -> tuple[tuple[int, int] | None, ...] | None:
    """A layout read from untranslated ``Near n``/``Far n``/``None`` labels, else ``None``."""
    layout: list[tuple[int, int] | None] = []
    for label in labels:
        words = label.split()
        if label == "None":
            layout.append(None)
        elif len(words) == 2 and words[0] in ("Near", "Far") and words[1].isdigit():
            layout.append((-1 if words[0] == "Near" else 1, int(words[1])))
        else:
            return None
    return tuple(layout) if any(layout) else None


def choose_strategy(
    controls: FocusControls,
    *,
    size: int = 1,
    settle_s: float | None = None,
    approximate: bool = False,
) -> FocusStrategy:
    """The strategy that fits this body, from its widgets, their types and choices.

    Raises :class:`CameraUnsupportedError` pointing at focus rails when none fits, and for
    Sony's speed-only ``manualfocus`` unless ``approximate`` accepts approximate spacing.
    """
    if "fuji" in controls.manufacturer.lower():
        for key in FUJI_POSITION_KEYS:
            widget = controls.widget(key)
            if widget is not None and widget.get_type() in FUJI_POSITION_TYPES:
                return AbsolutePositionDrive(controls, key, size=size, settle_s=settle_s)
    widget = controls.widget("manualfocusdrive")
    if widget is not None and not widget.get_readonly():
        kind = widget.get_type()
        if kind in (WIDGET_RADIO, WIDGET_MENU):
            labels = choices_of(widget)
            layout = None if _numeric(labels) else INDEX_LAYOUTS.get(len(labels))
            layout = layout or _english_layout(labels)
            if layout is not None:
                return RadioStepDrive(
                    controls, "manualfocusdrive", layout, size=size, settle_s=settle_s
                )
        elif kind == WIDGET_RANGE:
            return SignedRangeDrive(controls, "manualfocusdrive", size=size, settle_s=settle_s)
    widget = controls.widget("manualfocus")
    if widget is not None and widget.get_type() == WIDGET_RANGE and not widget.get_readonly():
        if not approximate:
            raise CameraUnsupportedError(
                f"{controls.description} drives its lens only at a speed (Sony 'manualfocus', "
                "-7..7), not in steps: the spacing would be uneven and the end of travel unseen; "
                f"{RAIL_HINT}, or accept approximate spacing with camera://?approximate=1"
            )
        log.warning(
            "%s: Sony lens focus moves at a speed, not in steps: frame spacing is approximate "
            "and the lens's end stops are not detected",
            controls.description,
        )
        return SonyStepDrive(controls, "manualfocus", size=size, settle_s=settle_s)
    raise CameraUnsupportedError(
        f"{controls.description} cannot drive its lens focus over USB (libgphoto2 offers no "
        f"usable manualfocusdrive or manualfocus setting for it); {RAIL_HINT}"
    )
