"""Opening the devices a :class:`~rig.spec.RigSpec` names: the camera, then its focuser, with a
position reference that means what the plan's positions do."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from rig.errors import DeviceNotFoundError, MotionError, RigError
from rig.plan import format_position
from rig.session.journal import RailLeft
from rig.spec import RigSpec
from stacker.errors import UserError

log = logging.getLogger("rig.session")


def with_hint(exc: UserError, hint: str) -> UserError:
    """``exc`` with ``; hint`` appended, keeping its type (and so its exit code)."""
    try:
        return type(exc)(f"{exc}; {hint}")
    except TypeError:
        plain = RigError(f"{exc}; {hint}")
        plain.exit_code = exc.exit_code
        return plain


def establish_reference(
    focuser: Any,
    *,
    home: bool,
    accept: bool,
    left: RailLeft | None,
    units: str,
    later: Callable[[str], None] | None = None,
) -> None:
    """Make sure the focuser's positions mean what the plan's do before anything moves.

    A controller that restarted when its port was opened (an Arduino resets on DTR) counts from
    0 wherever the carriage stands, and a lens counts from where focus stood; shooting on
    regardless would shift the whole stack, possibly into a hard stop. So: ``home`` runs the
    homing cycle; ``accept`` takes the current position as the reference (for a resume, the
    focuser is told it stands where the session ``left`` it, as its journal says); otherwise an
    unreferenced focuser is refused with a one-line error saying what to do, or, with ``later``
    (a station, whose page homes and unlocks), told to ``later`` and left to be settled there.
    """
    if home:
        try:
            focuser.home()
        except BaseException:
            # Closing the port does not stop a homing cycle (GRBL on a board whose port does
            # not reset it, Marlin's G28): a Ctrl-C while a session sets up left the carriage
            # running to its switch after the command had ended.
            with contextlib.suppress(Exception):
                focuser.stop()
            raise
        return
    problem = focuser.capabilities.unreferenced
    if problem is None:
        return
    can_home = focuser.capabilities.can_home
    if left is not None and left.position is None and not later:
        home_it = "home it (--home) if the session was shot after homing" if can_home else ""
        raise MotionError(
            f"{focuser.name}: {problem}, and this session's journal does not say where its "
            "last run left the rail (stopped mid-move where its place could not be read, or "
            "shot by an older stackrig that did not record its moves); "
            f"{home_it or 'shoot the stack as a new session'}"
        )
    if accept:
        focuser.accept_position(None if left is None else left.position)
        return
    if later is not None:
        later(f"{focuser.name}: {problem}; press Home, or Unlock to take where it stands as 0")
        return
    if left is None:
        home_it = "home it first (--home), or " if can_home else ""
        raise MotionError(
            f"{focuser.name}: {problem}; {home_it}take the current position as the reference "
            "with --accept-position"
        )
    assert left.position is not None
    where = format_position(left.position, units)
    since = (
        f"frame {left.frame} was shot at {where}"
        if left.frame is not None
        else f"the session left it at {where}"
    )
    home_it = "home it (--home) if the session was shot after homing, or, " if can_home else ""
    raise MotionError(
        f"{focuser.name}: {problem}, so this session's positions would shift; {home_it}if "
        f"nothing has moved since {since}, resume with --accept-position"
    )


def _warn_if_elsewhere(
    focuser: Any, left: RailLeft, units: str, warn: Callable[[str], None]
) -> None:
    """Warn when a referenced focuser reads elsewhere than the session left it.

    Moved by hand or jogged since, nothing is wrong: positions still mean what they did. But
    a controller that does not restart on open, power-cycled and then unlocked, looks just
    the same and counts from 0 where it powered up: every frame shot now would land off.
    """
    if left.position is None:
        return
    try:
        here = float(focuser.position)
    except RigError:
        return
    step = focuser.capabilities.min_step or 0.0
    if abs(here - left.position) <= max(2.0 * step, 5.0):
        return
    warn(
        f"{focuser.name} stands at {format_position(here, units)}, but this session left it at "
        f"{format_position(left.position, units)}; if its controller was restarted since, its "
        "positions have shifted and the frames shot now will not line up: stop (Ctrl-C) and "
        "resume with --home, or with --accept-position if the carriage has not moved"
    )


@contextlib.contextmanager
def hardware_rig(
    rig: RigSpec,
    *,
    rail_hint: str | None = None,
    home: bool = False,
    accept_position: bool = False,
    left: RailLeft | None = None,
    units: str = "um",
    warn: Callable[[str], None] | None = None,
    say: Callable[[str], Any] = log.info,
    reference_later: bool = False,
    simulated: str = "rig demo",
    camera_hint: str | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Open the focuser and camera of a hardware ``rig``; closes both when the block ends.

    ``home``, ``accept_position`` and ``left`` (where a resumed session left the rail) go to
    :func:`establish_reference`, so positions mean the same after a power cut or a controller
    reset; a new lens-motor session counts from where focus stands: that is its reference.
    ``rail_hint`` is added to an error opening the rail (a resumed session's rail may sit on
    another port now); ``warn`` hears what the focuser found while setting up, ``say`` what the
    camera set up (the anti-vibration setting, if asked for). With ``reference_later`` an
    unreferenced focuser is only warned about (a station homes or unlocks it from its page).
    With ``rig.incoming`` the camera is fired through the rail controller's shutter cable and
    its files are taken from that folder (:class:`~rig.camera.cable.CableReleaseCamera`).
    ``simulated`` is the command a "no camera" error offers instead (the same job on the
    simulated rig); ``camera_hint``, where given, is offered in its place (a resumed session's
    camera may sit on another port now: a body switched off and on, plugged in again).
    """
    with contextlib.ExitStack() as stack:
        if rig.incoming is None:
            hint = camera_hint or f"no camera? `{simulated}` runs the simulated rig"
            camera = stack.enter_context(_usb_camera(rig, hint))
            if rig.focus != "camera":  # a rail moves focus: no release may refocus the lens
                camera.hold_focus()
            focuser = _open_focuser(rig, camera, rail_hint)
            stack.callback(focuser.close)
            if rig.anti_vibration:
                done = camera.reduce_vibration()
                say(f"anti-vibration: {done or 'this body offers none; settle time only'}")
        else:  # a body fired through the rail's shutter cable, its files arriving in a folder
            focuser = _open_focuser(rig, None, rail_hint)
            stack.callback(focuser.close)
            camera = stack.enter_context(_cable_camera(focuser, rig.incoming))
        new_lens_session = rig.focus == "camera" and left is None
        establish_reference(
            focuser,
            home=home,
            accept=accept_position or new_lens_session,
            left=left,
            units=units,
            later=warn if reference_later else None,
        )
        if warn is not None and left is not None and not (home or accept_position):
            _warn_if_elsewhere(focuser, left, units, warn)
        for text in getattr(focuser, "setup_warnings", list)():
            if warn is not None:
                warn(text)
        yield focuser, camera


@contextlib.contextmanager
def _usb_camera(rig: RigSpec, hint: str) -> Iterator[Any]:
    """The rig's camera through libgphoto2, with its capture target set; ``hint`` is added to
    a "not found" error."""
    from rig.camera import Camera
    from rig.camera.shot import parse_capture_target

    try:
        camera_cm = Camera.open(
            model=rig.camera_model,
            port=rig.camera_port,
            capture_target=parse_capture_target(rig.capture_target),
        )
        camera = camera_cm.__enter__()
    except DeviceNotFoundError as exc:
        raise with_hint(exc, hint) from None
    try:
        yield camera
    finally:
        camera_cm.__exit__(None, None, None)


def _open_focuser(rig: RigSpec, camera: Any, rail_hint: str | None) -> Any:
    from rig.rails import open_focuser

    try:
        if rig.focus == "camera":  # the lens motor of the camera just opened
            return open_focuser(rig.rail or "camera://", camera=camera)
        return open_focuser(str(rig.rail))
    except UserError as exc:
        if rail_hint is None:
            raise
        raise with_hint(exc, rail_hint) from None


def _cable_camera(focuser: Any, incoming: str) -> Any:
    from rig.camera.cable import CableReleaseCamera

    if not callable(getattr(focuser, "fire_shutter", None)):
        raise RigError(
            f"{focuser.name} has no shutter cable: --incoming needs a rail that fires the "
            "camera (StackShot, WeMacro); with a USB camera leave --incoming out"
        )
    return CableReleaseCamera(focuser, incoming)
