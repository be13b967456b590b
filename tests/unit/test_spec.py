"""Plans, stacking options and rigs are each read by one parser, whatever the front end."""

from __future__ import annotations

import pytest

from rig.plan import PlanError
from rig.spec import (
    FrameCount,
    OpticsSpacing,
    PlanSpec,
    RigSpec,
    StepSpacing,
    json_name,
    option_name,
)
from stacker.errors import StackerError
from stacker.options import StackOptions


@pytest.mark.parametrize("settle", [0.5, "0.5", "0.5s", "500ms"])
def test_half_a_second_is_written_every_way(settle: object) -> None:
    spec = PlanSpec.parse({"from": "0mm", "to": "1mm", "frames": 3, "settle": settle})
    assert spec.settle_s == pytest.approx(0.5)


def test_each_spacing_has_its_own_type() -> None:
    base = {"from": "0mm", "to": "1mm"}
    assert PlanSpec.parse({**base, "step": "250um"}).spacing == StepSpacing(250.0)
    assert PlanSpec.parse({**base, "frames": "5"}).spacing == FrameCount(5)
    optics = PlanSpec.parse({**base, "magnification": 2, "f_number": 8}).spacing
    assert isinstance(optics, OpticsSpacing) and optics.f_number == 8
    assert PlanSpec.parse({**base, "na": 0.25}).plan().optics is not None
    assert PlanSpec.parse({**base, "step": "250um"}).plan().frames == 5


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"from": "0mm", "to": "1mm"}, "space the frames one way"),
        ({"from": "0mm", "to": "1mm", "step": "50um", "frames": 3}, "one way"),
        ({"from": "0", "to": "1mm", "frames": 3}, "has no unit"),
        ({"from": "0mm", "to": "1mm", "frames": 3, "settle": "soon"}, "settle"),
        ({"from": "0mm", "to": "1mm", "frames": 2.5}, "whole number"),
        ({"from": "0mm", "to": "1mm", "step": "2steps"}, "same units"),
        ({"from": "0mm", "to": "1mm", "frames": 3, "\n": 0}, "unknown plan field(s) '\\n'"),
        # silently ignored before: read only on the depth-of-field path, or bool("false")
        ({"from": "0mm", "to": "1mm", "step": "100um", "coc": 0.5}, "has no use with"),
        ({"from": "0mm", "to": "1mm", "frames": 5, "overlap": 5}, "has no use with"),
        ({"from": "0mm", "to": "1mm", "na": 0.25, "coc": 0.9}, "has no use with"),
        (
            {"from": "0mm", "to": "1mm", "frames": 3, "return_to_start": "false"},
            "give true or false",
        ),
        # was "plan settle_s is 3660 s": the field's name, not the option typed
        ({"from": "0mm", "to": "1mm", "frames": 3, "settle": "61min"}, "settle"),
        ({"from": "0mm", "to": "1mm", "frames": 3, "flash_recycle": "1e308"}, "an hour"),
        # a station request's 400-digit number stopped the parse on OverflowError
        ({"from": "0mm", "to": "1mm", "frames": 10**400}, "far too large a number"),
        ({"from": "0mm", "to": "1mm", "na": 10**400}, "far too large a number"),
    ],
)
def test_errors_are_one_line_and_name_the_field_as_each_front_end_does(
    data: dict, needle: str
) -> None:
    for name, shown in ((option_name, "--"), (json_name, "'")):
        with pytest.raises(PlanError) as info:
            PlanSpec.parse(data, name=name)
        message = str(info.value)
        assert needle in message and "\n" not in message
        if needle == "settle":
            assert f"{shown}settle" in message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # each said what was wrong without the field: "step 0 um", "0 frames", "overlap 1",
        # "needs the magnification and the f-number", and "--from and --to" in JSON too
        ({"from": "0mm", "to": "1mm", "step": "0um"}, "step"),
        ({"from": "0mm", "to": "1mm", "frames": 0}, "frames"),
        ({"from": "0mm", "to": "1mm", "magnification": 1, "overlap": 1}, "f_number"),
        ({"from": "0mm", "to": "1mm", "magnification": 1, "f_number": 8, "overlap": 1}, "overlap"),
        ({"from": "1mm", "to": "1mm", "step": "50um"}, "from"),
        # the plan's own words, "magnification 0.0" and "circle of confusion (mm) 5.0"
        ({"from": "0mm", "to": "1mm", "magnification": 0, "f_number": 8}, "magnification"),
        ({"from": "0mm", "to": "1mm", "magnification": 1, "f_number": "999"}, "f_number"),
        ({"from": "0mm", "to": "1mm", "na": "5"}, "na"),
        ({"from": "0mm", "to": "1mm", "magnification": 1, "f_number": 8, "coc": 5}, "coc"),
    ],
)
def test_a_value_out_of_range_is_named_as_the_front_end_calls_it(data: dict, field: str) -> None:
    for name in (option_name, json_name):
        with pytest.raises(PlanError) as info:
            PlanSpec.parse(data, name=name).plan()
        assert name(field) in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        {"frames": "\uff15"},
        {"magnification": "\uff15", "f_number": 8},
        {"na": "0.\u0662"},  # Arabic-Indic 2
        {"magnification": 1, "f_number": 8, "coc": "\uff10.015"},
    ],
)
def test_a_number_in_another_script_s_digits_is_refused_as_every_quantity_is(data: dict) -> None:
    """``"frames": "５"`` (a full-width 5, as a Japanese input method types it) shot 5 frames
    and ``-m ５`` planned at 5:1, where ``--settle ５`` and every length are refused."""
    key = next(k for k, v in data.items() if isinstance(v, str))
    for name in (option_name, json_name):
        with pytest.raises(PlanError) as info:
            PlanSpec.parse({"from": "0mm", "to": "1mm", **data}, name=name)
        assert str(info.value) == f"{name(key)} must be a number, not {data[key]!r}"


def test_a_misspelt_plan_field_is_refused_with_the_fields_a_plan_has() -> None:
    """A station request's plan with ``"form"`` for ``"from"`` got "unknown plan field(s)
    'form'", which left the sender to guess the right name."""
    with pytest.raises(PlanError) as info:
        PlanSpec.parse({"form": "0mm", "to": "1mm", "frames": 3})
    assert str(info.value) == (
        "unknown plan field(s) 'form': use from, to, step, frames, magnification, f_number, na, "
        "coc, overlap, direction, settle, exposure_delay, flash_recycle, return_to_start"
    )


def test_a_focuser_in_other_units_is_refused() -> None:
    with pytest.raises(PlanError, match="lens steps"):
        PlanSpec.parse({"from": "0mm", "to": "1mm", "frames": 3}, units="steps")


def test_stack_options_come_from_the_engine_and_round_trip() -> None:
    options = StackOptions.parse(
        {
            "method": "depthmap",
            "reference": "last",
            "interpolation": "cubic",
            "output_format": "jpg",
        }
    )
    assert options.suffix == ".jpg" and options.stacker_kwargs()["interpolation"] == "cubic"
    assert StackOptions.parse(options.to_dict()) == options
    with pytest.raises(StackerError, match="--method 'magic'"):
        StackOptions.parse({"method": "magic"}, name=option_name)
    with pytest.raises(StackerError, match="'reference'"):
        StackOptions.parse({"reference": "sideways"})
    assert StackOptions.parse({}).stacker_kwargs()["far_first"] is False
    assert StackOptions.parse({"order": "Far-to-near"}).stacker_kwargs()["far_first"] is True
    with pytest.raises(StackerError, match="--order 'backwards': use near-to-far, far-to-near"):
        StackOptions.parse({"order": "backwards"}, name=option_name)


def test_rig_spec_reads_options_and_session_blocks_alike() -> None:
    rig = RigSpec.parse({"rail": "grbl:///dev/ttyUSB0"}, name=option_name)
    assert RigSpec.parse(rig.to_dict()) == rig
    assert RigSpec.parse({"rail": "camera://?size=2"}).focus == "camera"
    with pytest.raises(PlanError, match="--rail URL"):
        RigSpec.parse({"focus": "rail"}, name=option_name)
    sim = RigSpec.parse({"kind": "simulated", "width": 320})
    assert sim.to_dict() == {"kind": "simulated", "width": 320}


def test_blank_return_to_start_keeps_the_default_and_booleans_are_taken() -> None:
    base = {"from": "0mm", "to": "1mm", "frames": 3}
    assert PlanSpec.parse({**base, "return_to_start": None}).return_to_start is True
    assert PlanSpec.parse({**base, "return_to_start": False}).return_to_start is False
    na = {"from": "0mm", "to": "1mm", "na": 0.25, "overlap": 0.3}
    assert PlanSpec.parse(na).plan().optics is not None


def test_lens_focus_with_a_rail_url_is_refused_in_one_place() -> None:
    """Each error's advice led to the other: 'the plan is in steps: give um', then
    '--focus camera moves the lens in steps'."""
    with pytest.raises(PlanError, match=r"--focus camera drives the lens, and --rail grbl"):
        RigSpec.parse({"focus": "camera", "rail": "grbl:///dev/null"}, name=option_name)
    assert RigSpec.parse({"focus": "camera", "rail": "camera://?size=2"}).focus == "camera"
