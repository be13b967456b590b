"""Arbitrary numbers give a plan or a one-line error naming the field, never a traceback:
the plan constructors, a plan file, and ``rig plan`` (Typer's runner, in-process; the console
script's run_app prints a UserError as one line)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rig.cli import app
from rig.plan import MAX_FRAMES, PlanError, ShotPlan, optics_step
from stacker.errors import UserError

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-300, max_value=1e-300),
    st.sampled_from([0.0, -0.0, 1e-320, 1e-300, 1e300, 1e308, 5e-324]),
    st.integers(min_value=-(10**30), max_value=10**30),
)


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and str(exc).strip()


def _sane(plan: ShotPlan) -> None:
    assert 1 <= plan.frames <= MAX_FRAMES
    assert all(math.isfinite(v) for v in (plan.near, plan.far, plan.step, plan.settle_s))
    assert math.isfinite(plan.estimate_duration())


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(near=numbers, far=numbers, step=numbers, settle=numbers)
def test_any_step_plan_is_a_plan_or_a_plan_error(near, far, step, settle) -> None:
    try:
        plan = ShotPlan.from_step(near, far, step, settle_s=settle)
    except PlanError as exc:
        _one_line(exc)
    else:
        _sane(plan)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    magnification=st.one_of(st.none(), numbers),
    f_number=st.one_of(st.none(), numbers),
    na=st.one_of(st.none(), numbers),
    far=numbers,
)
def test_any_optics_plan_is_a_plan_or_a_plan_error(magnification, f_number, na, far) -> None:
    try:
        optics = optics_step(magnification=magnification, f_number=f_number, numerical_aperture=na)
        plan = ShotPlan.from_optics(0.0, far, optics)
    except PlanError as exc:
        _one_line(exc)
    else:
        _sane(plan)


json_values = st.one_of(
    st.none(), st.booleans(), numbers.filter(math.isfinite), st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(list(ShotPlan.__dataclass_fields__)), value=json_values)
def test_a_hand_edited_plan_file_is_a_plan_or_a_plan_error(field, value) -> None:
    data = ShotPlan.from_frames(0.0, 1000.0, 3).to_dict()
    data[field] = value
    try:
        plan = ShotPlan.from_json(json.dumps(data), source="plan.json")
    except PlanError as exc:
        _one_line(exc)
        assert str(exc).startswith("plan.json")
    else:
        _sane(plan)


@pytest.mark.parametrize("field", ["near", "step", "frames", "settle_s"])
def test_a_plan_file_number_of_hundreds_of_digits_names_the_field(field: str) -> None:
    """plan.json is read as JSON, where whole numbers have no size limit: a 400-digit one
    stopped the plan check (and the resume's far-end fix-up) on OverflowError, and one of
    5000 digits stopped the JSON parse on ValueError (Python's 4300-digit limit)."""
    data = ShotPlan.from_frames(0.0, 1000.0, 3).to_dict()
    data[field] = 10**400
    for shot_before in (False, True):
        with pytest.raises(PlanError, match=rf"^plan.json: .*{field}") as info:
            ShotPlan.from_json(json.dumps(data), source="plan.json", shot_before=shot_before)
        _one_line(info.value)
    text = json.dumps(data).replace("1" + "0" * 400, "1" + "0" * 5000)
    with pytest.raises(PlanError, match=r"^plan.json: not valid JSON \(a number with thousands"):
        ShotPlan.from_json(text, source="plan.json", shot_before=True)
    text = json.dumps(data).replace("1" + "0" * 400, "[" * 100_000)  # RecursionError before
    with pytest.raises(PlanError, match=r"^plan.json: not valid JSON \(arrays nested too deep"):
        ShotPlan.from_json(text, source="plan.json", shot_before=True)


def test_a_fractional_frame_count_in_a_plan_file_names_the_field() -> None:
    data = ShotPlan.from_frames(0.0, 1000.0, 3).to_dict()
    data["frames"] = 3.5
    with pytest.raises(PlanError, match=r"plan.json: plan frames is 3.5: give a whole number"):
        ShotPlan.from_json(json.dumps(data), source="plan.json")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--step", "1e-320um"], "bigger step"),
        (["-m", "1e-300", "-N", "8"], "magnification"),
        (["-m", "1e300", "-N", "8"], "magnification"),
        (["--na", "1e-300"], "--na"),
        (["--frames", "3", "--settle", "1e300"], "settle"),
    ],
)
def test_rig_plan_refuses_absurd_numbers_in_one_line(args: list[str], needle: str) -> None:
    """Issue 11 item 8: these used to end in a ZeroDivisionError or OverflowError traceback."""
    result = CliRunner().invoke(app, ["plan", "--from", "0mm", "--to", "1mm", *args])
    # run_app turns a UserError into "rig: error: <message>" and an exit status.
    assert isinstance(result.exception, UserError), repr(result.exception)
    _one_line(result.exception)
    assert needle in str(result.exception)
