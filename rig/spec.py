"""Specifications as data: a shot plan as a user states it, and the rig a session runs on.

A :class:`PlanSpec` is what a photographer asks for (``from``/``to`` and *one* way of spacing
the frames: a :class:`StepSpacing`, a :class:`FrameCount` or an :class:`OpticsSpacing`), read
by :meth:`PlanSpec.parse` from a mapping: the ``rig plan/shoot`` options and the station's JSON
go through the same parser, with the same units (``"0.5s"``, ``"0.5"`` and ``0.5`` are all half
a second; lengths carry their unit) and the same one-line errors, naming each field the way its
front end does (``--settle`` or ``'settle'``). :meth:`PlanSpec.plan` expands it into the
:class:`~rig.plan.ShotPlan` a session saves as ``plan.json``.

A :class:`RigSpec` says which devices a session uses (camera, focuser URL, or the simulated
rig); it is the ``rig`` block of ``session.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rig.camera.shot import parse_capture_target
from rig.plan import (
    DEFAULT_COC_MM,
    MAX_DELAY_S,
    MAX_FRAMES,
    OPTICS_BOUNDS,
    SETTLE_MAX_S,
    PlanError,
    PlanTiming,
    PlanUnits,
    ShotPlan,
    check_range,
    default_settle_s,
    optics_step,
)
from rig.units import UnitError, parse_duration, parse_length
from stacker.options import Naming, json_name, option_name
from stacker.quantities import split_quantity

__all__ = [
    "FrameCount",
    "OpticsSpacing",
    "PlanSpec",
    "RigSpec",
    "StepSpacing",
    "json_name",
    "option_name",
    "parse_seconds",
    "parse_timing",
]

PLAN_KEYS = (
    "from", "to", "step", "frames", "magnification", "f_number", "na", "coc", "overlap",
    "direction", "settle", "exposure_delay", "flash_recycle", "return_to_start",
)  # fmt: skip


@dataclass(frozen=True)
class StepSpacing:
    """Frames every ``step`` (plan units), covering the far end."""

    step: float


@dataclass(frozen=True)
class FrameCount:
    """``frames`` positions evenly spaced, both ends included."""

    frames: int


@dataclass(frozen=True)
class OpticsSpacing:
    """The step from the depth of field: a macro lens (``magnification`` and ``f_number``) or a
    microscope objective (``na``)."""

    magnification: float | None = None
    f_number: float | None = None
    na: float | None = None
    coc_mm: float = DEFAULT_COC_MM
    overlap: float = 0.2


Spacing = StepSpacing | FrameCount | OpticsSpacing


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_seconds(value: Any, what: str) -> float:
    """Seconds from ``0.5``, ``"0.5"``, ``"0.5s"`` or ``"500ms"``; a one-line error naming
    ``what`` otherwise."""
    if isinstance(value, bool):
        raise PlanError(f"{what}: give a duration such as 0.5s, not {value!r}")
    try:
        return parse_duration(str(value))
    except UnitError as exc:
        raise PlanError(f"{what}: {exc}") from None


def _number(value: Any, what: str) -> float | None:
    """A plain number, as JSON or as text read the way every stackrig quantity is
    (:func:`~stacker.quantities.split_quantity`: ASCII digits, no unit). ``float()`` took
    ``'５'`` (a full-width 5) as 5, where ``--settle`` and every length refuse it."""
    if _blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PlanError(f"{what} must be a number, not {value!r}")
    if isinstance(value, str):
        if "," in value:  # 1,5 for 1.5, as much of Europe writes it
            fix = value.replace(",", ".")
            raise PlanError(f"{what} {value}: write decimals with a point, e.g. {fix}")
        try:
            number, unit = split_quantity(value)
        except ValueError:
            raise PlanError(f"{what} must be a number, not {value!r}") from None
        if unit:
            raise PlanError(f"{what} must be a number, not {value!r}")
        return number
    try:
        return float(value)
    except OverflowError:  # a whole number beyond a float's range: hundreds of digits
        raise PlanError(f"{what} is far too large a number; give a realistic value") from None


def _length(value: Any, what: str, example: str) -> tuple[float, PlanUnits]:
    if _blank(value):
        raise PlanError(f"{what} is required, e.g. {example}")
    try:
        return parse_length(str(value))
    except UnitError as exc:
        raise PlanError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class PlanSpec(PlanTiming):
    """A focus bracket as asked for: the range, how frames are spaced, and the timing."""

    near: float
    far: float
    spacing: Spacing
    units: PlanUnits = "um"

    @classmethod
    def parse(
        cls,
        data: Mapping[str, Any],
        *,
        name: Naming = json_name,
        units: PlanUnits | None = None,
    ) -> PlanSpec:
        """Read ``from``, ``to``, one spacing and the optional timing from ``data``.

        ``units`` (``"um"`` or ``"steps"``) is what the focuser moves in, when known: a range in
        the other units is refused. Blank or absent optional fields keep their defaults.
        """
        unknown = sorted(set(data) - set(PLAN_KEYS))
        if unknown:
            # Quoted: a field name is the sender's text, and may hold a line break.
            raise PlanError(
                f"unknown plan field(s) {', '.join(map(repr, unknown))}: use {', '.join(PLAN_KEYS)}"
            )
        if _blank(data.get("from")) and _blank(data.get("to")):
            raise PlanError(
                f"give the range with {name('from')} and {name('to')} (e.g. 0mm and 2mm)"
            )
        near, near_units = _length(data.get("from"), name("from"), "0mm")
        far, far_units = _length(data.get("to"), name("to"), "2mm")
        if near_units != far_units:
            raise PlanError(
                f"{name('from')} and {name('to')} must both be lengths (um, mm) or both lens steps"
            )
        if units is not None and near_units != units:
            want = "lens steps (e.g. 40steps)" if units == "steps" else "a length (um, mm)"
            raise PlanError(f"{name('from')} {data['from']!r}: this focuser moves in {want}")
        timing = parse_timing(data, name)
        spacing = _spacing(data, name, near_units)
        if near == far and spacing != FrameCount(1):  # a forgotten --to: no stack
            raise PlanError(
                f"{name('from')} and {name('to')} are both {data['from']}: give a range"
            )
        magnification = spacing.magnification if isinstance(spacing, OpticsSpacing) else None
        objective = isinstance(spacing, OpticsSpacing) and spacing.na is not None
        # A microscope objective magnifies 2x and more: it took the 1:1 settle of 0.5 s where
        # the same magnification given as a lens's waited 3 s.
        settle = SETTLE_MAX_S if objective else default_settle_s(magnification)
        # Vibration matters more as you magnify: 0.5 s up to 1:1, 2 s at 5x by default.
        defaults = {"direction": "near-to-far", "settle_s": settle, "return_to_start": True}
        return cls(near=near, far=far, spacing=spacing, units=near_units, **{**defaults, **timing})

    def plan(self) -> ShotPlan:
        """The expanded plan: positions, step and frame count."""
        timing = self.timing()
        s = self.spacing
        if isinstance(s, StepSpacing):
            return ShotPlan.from_step(self.near, self.far, s.step, units=self.units, **timing)
        if isinstance(s, FrameCount):
            return ShotPlan.from_frames(self.near, self.far, s.frames, units=self.units, **timing)
        optics = optics_step(
            magnification=s.magnification,
            f_number=s.f_number,
            numerical_aperture=s.na,
            coc_mm=s.coc_mm,
            overlap=s.overlap,
        )
        return ShotPlan.from_optics(self.near, self.far, optics, **timing)


TIMING_KEYS = ("direction", "settle", "exposure_delay", "flash_recycle", "return_to_start")
"""The plan fields that say when and in which order, not where: a plan file's are replaced by
those given beside it."""


def parse_timing(data: Mapping[str, Any], name: Naming = json_name) -> dict[str, Any]:
    """The :data:`TIMING_KEYS` given in ``data`` (blank or absent ones left out), as the
    :class:`~rig.plan.PlanTiming` fields they set (``settle`` gives ``settle_s``), checked
    with one-line errors naming each as its front end does: a new plan's and those given
    beside ``--plan FILE`` alike."""
    timing: dict[str, Any] = {}
    direction = data.get("direction")
    if not _blank(direction):
        if direction not in ("near-to-far", "far-to-near"):
            raise PlanError(f"{name('direction')} {direction!r}: use near-to-far or far-to-near")
        timing["direction"] = direction
    for key in ("settle", "exposure_delay", "flash_recycle"):
        if not _blank(data.get(key)):
            timing[f"{key}_s"] = _seconds(data[key], name(key))
    if not _blank(data.get("return_to_start")):
        timing["return_to_start"] = _flag(data["return_to_start"], name("return_to_start"), True)
    return timing


def _seconds(value: Any, what: str) -> float:
    """A plan's delay, 0 to an hour, or a one-line error naming it as ``what``."""
    seconds = parse_seconds(value, what)
    if not 0 <= seconds <= MAX_DELAY_S:
        raise PlanError(f"{what} {value!r}: give 0 s to {MAX_DELAY_S:g} s (an hour) between frames")
    return seconds + 0.0  # -0 reads 0


def _flag(value: Any, option: str, default: bool) -> bool:
    """A true/false field; blank keeps ``default``. Python's ``bool("false")`` is true."""
    if _blank(value):
        return default
    if isinstance(value, bool):
        return value
    raise PlanError(f"{option} is {value!r}: give true or false")


def _spacing(data: Mapping[str, Any], name: Naming, units: PlanUnits) -> Spacing:
    """The one way of spacing frames that ``data`` gives."""
    optics = [k for k in ("magnification", "f_number", "na") if not _blank(data.get(k))]
    given = [k for k in ("step", "frames") if not _blank(data.get(k))] + optics[:1]
    if len(given) != 1:
        raise PlanError(
            f"space the frames one way: {name('step')} 50um, {name('frames')} 40, or the optics "
            f"({name('magnification')} 1 {name('f_number')} 8, or {name('na')} 0.25)"
        )
    stray = [k for k in ("coc", "overlap") if not _blank(data.get(k))]
    if stray and given[0] in ("step", "frames"):  # it would be silently ignored
        raise PlanError(
            f"{name(stray[0])} sets the depth-of-field step: it has no use with "
            f"{name(given[0])}; leave it out"
        )
    if given == ["step"]:
        step, step_units = _length(data["step"], name("step"), "50um")
        if step_units != units:
            raise PlanError(
                f"{name('step')} {data['step']!r} is not in the same units as "
                f"{name('from')}/{name('to')}"
            )
        if not step > 0:
            raise PlanError(f"{name('step')} {data['step']}: give a positive step")
        return StepSpacing(step)
    if given == ["frames"]:
        frames = _number(data["frames"], name("frames"))
        if frames is None or not frames.is_integer():
            raise PlanError(f"{name('frames')} must be a whole number, not {data['frames']!r}")
        if not 1 <= frames <= MAX_FRAMES:
            raise PlanError(f"{name('frames')} {frames:.0f}: a plan takes 1 to {MAX_FRAMES} frames")
        return FrameCount(int(frames))
    if given == ["na"] and not _blank(data.get("coc")):  # the NA's depth of field has none
        raise PlanError(f"{name('coc')} has no use with {name('na')}; leave it out")
    if units != "um":
        raise PlanError(
            f"a depth-of-field step needs {name('from')}/{name('to')} as lengths (um, mm), "
            "not lens steps"
        )
    if "na" not in optics and len(optics) == 1:
        raise PlanError(
            f"a depth-of-field step needs {name('magnification')} and {name('f_number')}"
        )
    coc = _optic(data, "coc", name)
    overlap = _number(data.get("overlap"), name("overlap"))
    if overlap is not None and not 0.0 <= overlap < 1.0:
        raise PlanError(
            f"{name('overlap')} {overlap:g}: give a fraction from 0 to below 1 (e.g. 0.2)"
        )
    return OpticsSpacing(
        magnification=_optic(data, "magnification", name),
        f_number=_optic(data, "f_number", name),
        na=_optic(data, "na", name),
        coc_mm=DEFAULT_COC_MM if coc is None else coc,
        overlap=0.2 if overlap is None else overlap,
    )


def _optic(data: Mapping[str, Any], key: str, name: Naming) -> float | None:
    """An optics field within its bounds (:data:`~rig.plan.OPTICS_BOUNDS`), named as its
    front end does: the plan's own check said "circle of confusion (mm) 5.0" for ``--coc``."""
    value = _number(data.get(key), name(key))
    if value is not None:
        check_range(name(key), value, *OPTICS_BOUNDS[key])
    return value


# ----------------------------------------------------------------------------- the rig
RigKind = Literal["hardware", "simulated"]


@dataclass(frozen=True)
class RigSpec:
    """The devices of a session: a camera and a focuser, or the simulated rig.

    ``focus`` is ``"rail"`` (``rail`` is the rail's URL) or ``"camera"`` (the lens motor;
    ``rail`` may carry ``camera://`` options). A simulated rig keeps its scene and timing in
    ``sim`` (the :class:`~rig.sim.rig.SimRigSpec` fields).
    """

    kind: RigKind = "hardware"
    focus: Literal["rail", "camera"] = "rail"
    rail: str | None = None
    camera_model: str | None = None
    camera_port: str | None = None
    capture_target: str = "auto"
    """Where the camera stores shots: auto (the vendor's default), ram, card or both."""
    anti_vibration: bool = False
    """Mirror lock-up, exposure delay mode or the electronic shutter, where the body has one."""
    incoming: str | None = None
    """A folder: the camera is fired through the rail's shutter cable (no USB) and each frame
    is taken from there, where a tethering program, Wi-Fi upload or card reader puts it."""
    sim: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, name: Naming = json_name) -> RigSpec:
        """A rig from a ``rig`` block or from command-line options (one-line errors)."""
        check_rig_kinds(data, name)
        kind = data.get("kind", "hardware")
        if kind == "simulated":
            return cls(kind="simulated", sim={k: v for k, v in data.items() if k != "kind"})
        if kind != "hardware":
            raise PlanError(f"rig kind '{kind}': use hardware or simulated")
        focus = str(data.get("focus") or "rail")
        rail = data.get("rail") or None
        if focus not in ("rail", "camera"):
            raise PlanError(f"{name('focus')} {focus}: use rail or camera")
        if rail is not None and str(rail).startswith("camera://"):
            focus = "camera"  # --rail camera://?size=2 drives the lens with options
        elif focus == "camera" and rail is not None:
            raise PlanError(
                f"{name('focus')} camera drives the lens, and {name('rail')} {rail} is a rail: "
                f"give one of them (or {name('rail')} camera://?size=N for lens options)"
            )
        if focus == "rail" and rail is None:
            raise PlanError(
                f"give the rail with {name('rail')} URL (e.g. grbl:///dev/ttyUSB0), "
                f"or {name('focus')} camera"
            )
        target = parse_capture_target(
            str(data.get("capture_target") or "auto"), name("capture_target")
        )
        return cls(
            focus=focus,  # type: ignore[arg-type]
            rail=rail,
            camera_model=data.get("camera_model") or None,
            camera_port=data.get("camera_port") or None,
            capture_target=str(target),
            anti_vibration=bool(data.get("anti_vibration", False)),
            incoming=_incoming(data.get("incoming"), focus, name),
        )

    def check_units(self, plan: ShotPlan) -> None:
        """Refuse a plan in units this rig's focuser does not move in."""
        if self.kind != "hardware":
            return
        if self.focus == "camera" and plan.units != "steps":
            raise PlanError(
                "--focus camera moves the lens in steps: give --from/--to/--step in steps"
            )
        if self.focus == "rail" and plan.units != "um":
            raise PlanError("a rail moves in um/mm: give --from/--to/--step as lengths")

    def to_dict(self) -> dict[str, Any]:
        """The ``rig`` block of ``session.json``."""
        if self.kind == "simulated":
            return {"kind": "simulated", **self.sim}
        return {
            "kind": "hardware",
            "focus": self.focus,
            "rail": self.rail,
            "camera_model": self.camera_model,
            "camera_port": self.camera_port,
            "capture_target": self.capture_target,
            "anti_vibration": self.anti_vibration,
            "incoming": self.incoming,
        }


def check_rig_kinds(data: Mapping[str, Any], name: Naming = json_name) -> None:
    """Refuse a value of the wrong kind in a hardware ``rig`` block (a hand edit of
    ``session.json``): text where text goes, true or false for ``anti_vibration``."""
    if data.get("kind", "hardware") == "simulated":
        return  # the simulated rig's fields: SimRigSpec.from_dict
    for key in ("kind", "focus", "rail", "camera_model", "camera_port", "capture_target"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise PlanError(f"{name(key)} {value!r}: give text, or leave it out")
    incoming = data.get("incoming")  # a Path when given on the command line
    if incoming is not None and not isinstance(incoming, (str, os.PathLike)):
        raise PlanError(f"{name('incoming')} {incoming!r}: give a folder, or leave it out")
    if not isinstance(data.get("anti_vibration", False), bool):
        raise PlanError(f"{name('anti_vibration')} {data['anti_vibration']!r}: true or false")


def _incoming(value: Any, focus: str, name: Naming) -> str | None:
    """The folder of a cable-fired camera's files, checked; None for a USB camera."""
    if value is None or value == "":
        return None
    if focus != "rail":
        raise PlanError(f"{name('incoming')} fires the camera through a rail: not with the lens")
    folder = Path(str(value)).expanduser()
    if not folder.is_dir():
        raise PlanError(
            f"{name('incoming')} {value}: not a folder; give the folder your camera's files "
            "arrive in"
        )
    return str(folder.absolute())
