"""Shot plans: where focus goes for each frame, and how long to wait around each shot.

A :class:`ShotPlan` is frozen data, saved with a session as ``plan.json``. Every position has a
1-based ``index`` that names its frame (``frame_0001``) and is the resume key: a session is done
when every index has exactly one frame on disk.

Positions are in the focuser's units: micrometres for a rail, ``steps`` for a camera's lens
motor (which has no absolute scale). The step can be given directly, derived from a frame
count, or computed from the optics:

* macro lens, total depth of field ``DOF = 2·c·N·(m+1)/m²`` (c: circle of confusion, default
  0.015 mm; N: f-number; m: magnification);
* microscope objective, ``DOF ≈ λ/NA²`` with λ = 0.55 µm;

and the step is ``DOF·(1 - overlap)`` so neighbouring frames share some sharp depth. Frames are
evenly spaced and never pass the range's ends: a step that does not divide the range shrinks
to fit, one frame being added (see :class:`ShotPlan`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, Field, asdict, dataclass, fields, replace
from typing import Any, Literal

from rig.errors import RigError
from rig.units import (
    MAX_LENGTH_UM,
    MAX_LENS_STEPS,
    UnitError,
    format_length,
    is_finite,
    parse_duration,
    parse_length,
)

Direction = Literal["near-to-far", "far-to-near"]
PlanUnits = Literal["um", "steps", "frames"]

PLAN_FORMAT = 1
DEFAULT_COC_MM = 0.015
WAVELENGTH_MM = 0.00055
MAX_FRAMES = 10_000
MAX_DELAY_S = 3600.0
"""The longest settle, exposure delay or flash recycle time a plan takes (an hour)."""
MAGNIFICATION_RANGE = (0.01, 100.0)
F_NUMBER_RANGE = (0.5, 256.0)
NA_RANGE = (0.001, 1.6)
COC_RANGE_MM = (0.0001, 1.0)
OPTICS_BOUNDS: dict[str, tuple[tuple[float, float], str]] = {
    "magnification": (MAGNIFICATION_RANGE, "a ratio such as 1 or 2.5"),
    "f_number": (F_NUMBER_RANGE, "an aperture such as 8"),
    "na": (NA_RANGE, "such as 0.25"),
    "coc": (COC_RANGE_MM, "a size such as 0.015"),
}
"""The values a depth-of-field step takes, by plan field, with an example of each."""


class PlanError(RigError):
    """A shot plan value that makes no sense (negative step, zero range, unknown unit)."""


@dataclass(frozen=True)
class ShotPosition:
    """One planned frame: its 1-based ``index`` (the resume key) and the focus ``position``."""

    index: int
    position: float

    @property
    def stem(self) -> str:
        """File stem of this frame, ``frame_0001`` for index 1."""
        return frame_stem(self.index)


SETTLE_AT_1X_S = 0.5
SETTLE_AT_5X_S = 2.0
SETTLE_MAX_S = 3.0


def default_settle_s(magnification: float | None) -> float:
    """Settle time after each move when none is given: vibration matters more as you magnify.

    0.5 s up to 1:1, rising in a straight line to 2 s at 5x (typical advice is 1-3 s there),
    capped at 3 s (reached at about 7.7x). Without a magnification, 0.5 s.
    """
    if magnification is None or magnification <= 1.0:
        return SETTLE_AT_1X_S
    slope = (SETTLE_AT_5X_S - SETTLE_AT_1X_S) / 4.0
    return min(SETTLE_MAX_S, SETTLE_AT_1X_S + slope * (magnification - 1.0))


def frame_stem(index: int) -> str:
    """The file stem used for frame ``index`` (1-based): ``frame_0001``."""
    return f"frame_{index:04d}"


@dataclass(frozen=True)
class OpticsStep:
    """How a depth-of-field step was derived, kept so the plan can explain itself."""

    depth_of_field_um: float
    overlap: float
    magnification: float | None = None
    f_number: float | None = None
    coc_mm: float | None = None
    numerical_aperture: float | None = None
    diffraction: bool = False
    """A lens's depth of field was diffraction's, smaller than its circle of confusion's."""

    def describe(self) -> str:
        """One line: the optics and the depth of field they give."""
        if self.numerical_aperture is not None:
            optics = f"objective NA {self.numerical_aperture:g}"
        else:
            optics = f"{self.magnification:g}:1 at f/{self.f_number:g}, CoC {self.coc_mm:g} mm"
        by = " (diffraction's, the smaller)" if self.diffraction else ""
        return (
            f"{optics}: depth of field {format_length(self.depth_of_field_um)}{by}, "
            f"{self.overlap:.0%} overlap"
        )


@dataclass(frozen=True, kw_only=True)
class PlanTiming:
    """Which end of a bracket is shot first and how long to wait around each shot.

    The same fields, with the same defaults, in a plan as asked for
    (:class:`~rig.spec.PlanSpec`) and as expanded (:class:`ShotPlan`); always given by keyword.
    """

    direction: Direction = "near-to-far"
    """``near-to-far`` shoots ``near`` (``--from``) first, ``far-to-near`` starts at ``far``."""
    settle_s: float = 0.5
    """Wait after each move before the shutter, for vibration to die down."""
    exposure_delay_s: float = 0.0
    """Extra wait between the settle and the shutter (mirror-up, anti-shock)."""
    flash_recycle_s: float = 0.0
    """Minimum time between two shutter releases, for the flash to recharge."""
    return_to_start: bool = True
    """Move focus back to the first position once the last frame is shot."""

    def timing(self) -> dict[str, Any]:
        """These fields by name, to build another plan with the same timing."""
        return {f.name: getattr(self, f.name) for f in fields(PlanTiming)}


@dataclass(frozen=True)
class ShotPlan(PlanTiming):
    """A focus bracket: positions from ``near`` to ``far`` every ``step``, plus timing.

    ``near``/``far`` are the two ends of the range in the focuser's ``units`` (``--from`` and
    ``--to``); ``direction`` says which end is shot first. ``frames`` is the number of
    positions, both ends included, and they are evenly spaced: ``step·(frames - 1)`` is the
    range, exactly. A plan never goes past its ends: past ``far`` the rail could hit its stop
    and the frames shot there are wasted. When a requested step does not divide the range,
    :meth:`from_step` adds one frame and *shrinks* the step to fit (4 mm at 384 µm gives 12
    frames 363.6 µm apart), so the depth-of-field overlap is never less than asked for and the
    last frame is exactly at ``far``.
    """

    near: float
    far: float
    step: float
    frames: int
    units: PlanUnits = "um"
    optics: OpticsStep | None = None

    def __post_init__(self) -> None:
        for name in ("near", "far", "step", "settle_s", "exposure_delay_s", "flash_recycle_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PlanError(f"plan {name} is {value!r}: give a number")
            if not is_finite(value):
                shown = value if isinstance(value, float) else "too large a number"
                raise PlanError(f"plan {name} is {shown}: give a finite number")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int):
            raise PlanError(f"plan frames is {self.frames!r}: give a whole number")
        if self.step <= 0 and self.frames > 1:
            raise PlanError(f"step {self.step:g} {self.units} must be positive")
        if not 1 <= self.frames <= MAX_FRAMES:
            raise PlanError(f"{_count(self.frames)} frames: a plan takes 1 to {MAX_FRAMES} frames")
        for name in ("settle_s", "exposure_delay_s", "flash_recycle_s"):
            delay = getattr(self, name)
            if delay < 0:
                raise PlanError(f"plan {name} is {delay:g} s: delays cannot be negative")
            if delay > MAX_DELAY_S:
                raise PlanError(f"plan {name} is {delay:g} s: at most {MAX_DELAY_S:g} s (an hour)")
        if self.units not in ("um", "steps", "frames"):
            raise PlanError(f"plan units {self.units!r}: use 'um', 'steps' or 'frames'")
        limit = {"um": MAX_LENGTH_UM, "steps": MAX_LENS_STEPS}.get(self.units, MAX_FRAMES)
        for name in ("near", "far", "step"):  # as on the command line (a plan file too)
            if abs(getattr(self, name)) > limit:
                raise PlanError(
                    f"plan {name} is {_fmt(getattr(self, name), self.units)}: no focus axis "
                    f"moves that far (at most {_fmt(limit, self.units)})"
                )
        if not isinstance(self.return_to_start, bool):  # "no" is true to Python
            raise PlanError(f"plan return_to_start is {self.return_to_start!r}: give true or false")
        if self.units == "steps":
            _check_whole_steps(self.near, self.far, self.step, self.frames)
        if self.direction not in ("near-to-far", "far-to-near"):
            raise PlanError(f"direction '{self.direction}': use near-to-far or far-to-near")
        span, covered = abs(self.far - self.near), self.step * (self.frames - 1)
        if not math.isfinite(span) or abs(covered - span) > 1e-6 * max(1.0, span):
            if self.frames == 1 or self.step <= 0:
                raise PlanError(
                    f"one frame covers no range, and this plan runs {_fmt(self.near, self.units)}"
                    f" → {_fmt(self.far, self.units)}: set far to near, or rebuild the plan with "
                    "`rig plan --save`"
                )
            ratio = span / self.step
            fit = math.ceil(ratio - 1e-9) + 1 if ratio < MAX_FRAMES else f"at most {MAX_FRAMES}"
            raise PlanError(
                f"{self.frames} frames every {_fmt(self.step, self.units)} span "
                f"{_fmt(covered, self.units)}, but the range {_fmt(self.near, self.units)} → "
                f"{_fmt(self.far, self.units)} is {_fmt(span, self.units)}: set frames to "
                f"{fit} and step to range / (frames - 1), or rebuild the plan with "
                "`rig plan --save`"
            )

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_step(
        cls, near: float, far: float, step: float, *, units: PlanUnits = "um", **timing: Any
    ) -> ShotPlan:
        """Positions from ``near`` to ``far`` at most ``step`` apart, both ends included.

        When ``step`` does not divide the range, one more frame is added and the step shrinks
        evenly to fit, so the last frame is exactly at ``far`` (never past it) and the spacing
        is never wider than asked.
        """
        if not step > 0:
            raise PlanError(f"step {_fmt(step, units)}: give a positive step")
        span = abs(far - near)
        if span == 0:  # as from_frames: a one-frame "stack" of a forgotten --to is no plan
            raise PlanError(f"--from and --to are both {_fmt(near, units)}: give a range")
        count = span / step
        if not (math.isfinite(span) and math.isfinite(step)) or count >= MAX_FRAMES:
            raise PlanError(
                f"a step of {_fmt(step, units)} over {_fmt(span, units)} gives more than "
                f"{MAX_FRAMES} frames; use a bigger step"
            )
        frames = math.ceil(count - 1e-9) + 1
        fitted = span / (frames - 1) if frames > 1 else step
        return cls(near=near, far=far, step=fitted, frames=frames, units=units, **timing)

    @classmethod
    def from_frames(
        cls, near: float, far: float, frames: int, *, units: PlanUnits = "um", **timing: Any
    ) -> ShotPlan:
        """``frames`` positions evenly spaced from ``near`` to ``far``, both ends included."""
        if not 1 <= frames <= MAX_FRAMES:
            raise PlanError(f"{_count(frames)} frames: a plan takes 1 to {MAX_FRAMES} frames")
        span = abs(far - near)
        if frames == 1:
            if span:
                raise PlanError("one frame cannot cover a range: give 2 frames or more")
            return cls(near=near, far=far, step=0.0, frames=1, units=units, **timing)
        if span == 0:
            raise PlanError(f"--from and --to are both {_fmt(near, units)}: give a range")
        return cls(
            near=near, far=far, step=span / (frames - 1), frames=frames, units=units, **timing
        )

    @classmethod
    def from_optics(cls, near: float, far: float, optics: OpticsStep, **timing: Any) -> ShotPlan:
        """The step from the optics' depth of field, ``DOF·(1 - overlap)`` (rails only, µm).

        ``optics`` comes from :func:`optics_step`, which checks the lens or objective.
        """
        step = optics.depth_of_field_um * (1.0 - optics.overlap)
        if step > 0 and abs(far - near) / step >= MAX_FRAMES:
            raise PlanError(  # no --step was given: "use a bigger step" would not help
                f"{optics.describe()} gives a step of {_fmt(step, 'um')}: over "
                f"{_fmt(abs(far - near), 'um')} more than {MAX_FRAMES} frames; shorten the "
                "range, lower the overlap, or check the optics"
            )
        plan = cls.from_step(near, far, step, units="um", **timing)
        return replace(plan, optics=optics)

    # ----------------------------------------------------------------- use
    @property
    def start(self) -> float:
        """The position shot first."""
        return self.near if self.direction == "near-to-far" else self.far

    @property
    def span(self) -> float:
        """Distance covered from the first to the last position."""
        return self.step * (self.frames - 1)

    def positions(self) -> tuple[ShotPosition, ...]:
        """Every planned frame in shooting order, indexed from 1; all within ``near``..``far``."""
        sign = 1.0 if self.far >= self.near else -1.0
        low, high = min(self.near, self.far), max(self.near, self.far)
        along = [self.near + sign * self.step * i for i in range(self.frames)]
        along[-1] = self.far  # no rounding drift at the far end
        along = [min(max(round(p, 6), low), high) for p in along]
        if self.direction == "far-to-near":
            along.reverse()
        return tuple(ShotPosition(index=i + 1, position=p) for i, p in enumerate(along))

    def position_of(self, index: int) -> float:
        """The focus position of frame ``index`` (1-based)."""
        if not 1 <= index <= self.frames:
            raise PlanError(f"frame {index} is outside this plan's 1..{self.frames}")
        return self.positions()[index - 1].position

    def estimate_duration(
        self,
        *,
        speed_per_s: float = 2000.0,
        capture_s: float = 1.5,
        remaining: int | None = None,
    ) -> float:
        """Seconds to shoot the plan (or its last ``remaining`` frames).

        ``speed_per_s`` is the focuser's speed in plan units per second and ``capture_s`` the
        time one shot takes from shutter to file on disk. The flash recharges from one shutter
        to the next while the rail moves and settles, as the session waits for it: a frame
        takes the longer of the two (it was added to them, and a plan with a 2 s recycle was
        estimated at 43 s where it took 23).
        """
        n = self.frames if remaining is None else max(0, min(remaining, self.frames))
        if n == 0:
            return 0.0
        per_frame_move = self.step / speed_per_s if speed_per_s > 0 else 0.0
        between = per_frame_move + self.settle_s + self.exposure_delay_s + capture_s
        total = n * max(between, self.flash_recycle_s)
        if self.return_to_start and speed_per_s > 0:
            total += self.span / speed_per_s
        return total

    def as_spec(self) -> dict[str, Any] | None:
        """The plan as a plan request (:class:`~rig.spec.PlanSpec`'s fields, as the station's
        page sends them) that reads back as the same positions and timing: its range and
        frame count, however its step was first derived. The page offers a past session's plan
        again with it. None for a tether session's plan, which counts frames the camera shot
        by itself and moves nothing."""
        if self.units == "frames":
            return None
        return {
            "from": f"{self.near!r}{self.units}",
            "to": f"{self.far!r}{self.units}",
            "frames": self.frames,
            "settle": self.settle_s,
            "exposure_delay": self.exposure_delay_s,
            "flash_recycle": self.flash_recycle_s,
            "direction": self.direction,
            "return_to_start": self.return_to_start,
        }

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` reads it back."""
        data = asdict(self)
        data["format"] = PLAN_FORMAT
        if self.optics is None:
            data.pop("optics")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "plan", shot_before: bool = False
    ) -> ShotPlan:
        """Read a plan dict, naming ``source`` in a one-line error when it is malformed.

        ``shot_before``: the plan of a session already under way. Plans saved before plans
        stopped at their ends may run past ``far`` (the step was kept and the last frame went
        up to a step beyond); such a session is read with ``far`` where its last frame really
        is, so resuming it shoots the very positions its first frames were planned with. A new
        plan that runs past its end is refused.
        """
        if not isinstance(data, Mapping):
            raise PlanError(f"{source}: a plan is a JSON object")
        fmt = data.get("format", PLAN_FORMAT)
        if fmt != PLAN_FORMAT:
            raise PlanError(
                f"{source}: plan format {fmt!r} is not supported (expected {PLAN_FORMAT})"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known - {"format"})
        if unknown:
            needed = [f.name for f in fields(cls) if _required(f)]
            rest = [f.name for f in fields(cls) if not _required(f)]
            raise PlanError(
                f"{source}: unknown plan field(s) {', '.join(map(repr, unknown))}: a plan file "
                f"has {', '.join(needed)}, and may have {', '.join(rest)} and format "
                "(`rig plan --save` writes one)"
            )
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("settle_s", "exposure_delay_s", "flash_recycle_s"):
            if isinstance(kwargs.get(key), str):  # "0.5s" means what 0.5 does
                try:
                    kwargs[key] = parse_duration(kwargs[key])
                except UnitError as exc:
                    raise PlanError(f"{source}: {key}: {exc}") from None
        if shot_before:
            kwargs = _far_where_it_was_shot(kwargs)
        if kwargs.get("optics") is not None:
            kwargs["optics"] = _optics_block(kwargs["optics"], source)
        missing = [f.name for f in fields(cls) if _required(f) and f.name not in data]
        if missing:
            raise PlanError(
                f"{source}: incomplete plan: no {', '.join(missing)} (a saved plan.json has "
                "them all; to write one, see `rig plan --save`)"
            )
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise PlanError(f"{source}: incomplete plan ({exc})") from None
        except PlanError as exc:
            raise PlanError(f"{source}: {exc}") from None

    @classmethod
    def from_json(
        cls, text: str, *, source: str = "plan.json", shot_before: bool = False
    ) -> ShotPlan:
        try:
            # A byte-order mark (Notepad, PowerShell's UTF-8) was refused with Python's advice.
            data = json.loads(text.removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise PlanError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except ValueError:  # Python's own limit: no integer of more than 4300 digits
            raise PlanError(
                f"{source}: not valid JSON (a number with thousands of digits)"
            ) from None
        except RecursionError:  # a few kilobytes of "[" exhaust the parser's recursion
            raise PlanError(f"{source}: not valid JSON (arrays nested too deeply)") from None
        return cls.from_dict(data, source=source, shot_before=shot_before)

    def describe(self) -> str:
        """One line: count, step and range, for logs and the plan table's title.

        ``near-to-far`` means ``--from`` (``near``) is shot first, whichever way the positions
        run, so the line also says whether they go up or down.
        """
        first, last = self.positions()[0].position, self.positions()[-1].position
        way = "" if first == last else ", positions up" if last > first else ", positions down"
        return (
            f"{self.frames} frames, step {_fmt(self.step, self.units)}, "
            f"{_fmt(first, self.units)} → {_fmt(last, self.units)} ({self.direction}{way})"
        )


def _check_whole_steps(near: float, far: float, step: float, frames: int) -> None:
    """A lens moves in whole steps: refuse ends or a spacing that are not, saying which step
    divides the range and which range the step divides (a fractional step passed the plan and
    failed at the second frame)."""

    def whole(value: float) -> bool:
        return abs(value - round(value)) <= 1e-6

    if not (whole(near) and whole(far)):
        raise PlanError("the lens moves in whole steps: give --from and --to in whole steps")
    if frames == 1 or whole(step):
        return
    span = round(abs(far - near))
    fits = max(d for d in range(1, max(1, math.floor(step)) + 1) if span % d == 0)
    advice = f"use --step {fits}steps ({span // fits + 1} frames)"
    if step > 1:  # or keep the frame count, each step rounded up (a --step 3 shrunk to 2.5)
        kept = math.ceil(step - 1e-9)
        end = round(near) + kept * (frames - 1) * (1 if far >= near else -1)
        advice += f", or --to {end}steps --step {kept}steps ({frames} frames)"
    raise PlanError(
        f"the lens moves in whole steps, and {frames} frames from {near:g} to {far:g} steps "
        f"would be {step:.4g} steps apart: {advice}"
    )


def _required(field: Field[Any]) -> bool:
    return field.default is MISSING and field.default_factory is MISSING


def _optics_block(block: Any, source: str) -> OpticsStep:
    """A plan file's ``optics`` object, or a one-line error naming what it lacks."""
    known = fields(OpticsStep)
    if not isinstance(block, Mapping):
        raise PlanError(
            f"{source}: optics must be an object with "
            f"{', '.join(f.name for f in known if _required(f))} (and the optics it came from)"
        )
    unknown = sorted(set(block) - {f.name for f in known})
    optics = ("numerical_aperture",) if block.get("numerical_aperture") is not None else (
        "magnification", "f_number", "coc_mm")  # fmt: skip
    needed = [f.name for f in known if _required(f)] + list(optics)
    missing = [name for name in needed if block.get(name) is None]
    if unknown or missing:
        what = f"unknown field(s) {', '.join(map(repr, unknown))}" if unknown else ""
        what += ("; " if what else "") + (f"no {', '.join(missing)}" if missing else "")
        raise PlanError(f"{source}: optics block: {what}")
    for name, value in block.items():
        if name == "diffraction":
            if not isinstance(value, bool):
                raise PlanError(
                    f"{source}: optics block: diffraction is {value!r}; give true or false"
                )
            continue
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise PlanError(f"{source}: optics block: {name} is {value!r}; give a number")
    return OpticsStep(**block)


def _far_where_it_was_shot(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``far`` moved to the last frame of an old plan that overshot it."""
    values = [fields.get(k) for k in ("near", "far", "step", "frames")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return fields  # malformed: the plan's own checks name the field
    if not all(is_finite(v) for v in values):  # type: ignore[arg-type]
        return fields  # inf, nan or hundreds of digits: so do they
    near, far, step = (float(v) for v in values[:3])  # type: ignore[arg-type]
    frames = values[3]
    if not isinstance(frames, int) or frames < 2 or not 0 < step < math.inf:
        return fields
    covered = step * (frames - 1)
    if not math.isfinite(near + far) or covered <= abs(far - near) + 1e-6 * max(1.0, covered):
        return fields
    return {**fields, "far": near + (covered if far >= near else -covered)}


def optics_step(
    *,
    magnification: float | None = None,
    f_number: float | None = None,
    numerical_aperture: float | None = None,
    coc_mm: float = DEFAULT_COC_MM,
    overlap: float = 0.2,
) -> OpticsStep:
    """Depth of field for a macro lens (``m`` and ``N``) or a microscope objective (``NA``)."""
    if not 0.0 <= overlap < 1.0:
        raise PlanError(f"overlap {overlap:g}: give a fraction from 0 to below 1 (e.g. 0.2)")
    if numerical_aperture is not None:
        if magnification is not None or f_number is not None:
            raise PlanError("give either an objective's NA or magnification and f-number, not both")
        check_range("NA", numerical_aperture, *OPTICS_BOUNDS["na"])
        dof_mm = WAVELENGTH_MM / numerical_aperture**2
        return OpticsStep(dof_mm * 1000.0, overlap, numerical_aperture=numerical_aperture)
    if magnification is None or f_number is None:
        raise PlanError("a depth-of-field step needs the magnification and the f-number")
    check_range("magnification", magnification, *OPTICS_BOUNDS["magnification"])
    check_range("f-number", f_number, *OPTICS_BOUNDS["f_number"])
    check_range("circle of confusion (mm)", coc_mm, *OPTICS_BOUNDS["coc"])
    dof_mm = 2.0 * coc_mm * f_number * (magnification + 1.0) / magnification**2
    # Diffraction's depth of field at the lens's object-side NA, m / (2 N (m + 1)): at wide
    # apertures it is the smaller (1:1 at f/4: 141 against 240 um), and a step from the
    # circle of confusion alone left bands out of focus (Zerene Systems' DOF calculator takes
    # lambda / NA^2 as the step that avoids them).
    wave_mm = WAVELENGTH_MM / (magnification / (2.0 * f_number * (magnification + 1.0))) ** 2
    return OpticsStep(
        min(dof_mm, wave_mm) * 1000.0,
        overlap,
        magnification=magnification,
        f_number=f_number,
        coc_mm=coc_mm,
        diffraction=wave_mm < dof_mm,
    )


def _count(frames: int) -> str:
    """A frame count for a message (an absurd one is not printed in full)."""
    return str(frames) if abs(frames) < 10**9 else f"more than {MAX_FRAMES}"


def check_range(what: str, value: float, bounds: tuple[float, float], example: str) -> None:
    """Refuse ``value`` outside ``bounds`` in one line naming it as ``what``."""
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise PlanError(f"{what} {value!r}: give {lo:g} to {hi:g}, {example}".rstrip(", "))


# ---------------------------------------------------------------------- units
def parse_plan_length(text: str, *, what: str) -> tuple[float, PlanUnits]:
    """Read ``50um``, ``1.2mm`` or ``12steps`` for plan value ``what`` (one-line error)."""
    try:
        return parse_length(text)
    except UnitError as exc:
        raise PlanError(f"{what}: {exc}") from None


def _fmt(value: float, units: str) -> str:
    if units == "frames":  # a tether session: the camera moved focus, by an unknown amount
        return f"frame {value:g}"
    return format_length(value, "steps" if units == "steps" else "um")


def format_position(value: float, units: str) -> str:
    """A position in its units, for tables and the live display."""
    return _fmt(value, units)
