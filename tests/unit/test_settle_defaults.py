"""Settle defaults that grow with magnification, and the capture-target choices users type."""

from __future__ import annotations

import pytest

from rig.camera.shot import default_capture_target, parse_capture_target
from rig.cli.options import plan_from_options
from rig.errors import RigError
from rig.plan import default_settle_s


def test_settle_grows_with_magnification_within_bounds() -> None:
    assert default_settle_s(None) == 0.5
    assert default_settle_s(0.5) == 0.5
    assert default_settle_s(1.0) == 0.5
    assert default_settle_s(3.0) == pytest.approx(1.25)
    assert default_settle_s(5.0) == pytest.approx(2.0)
    assert default_settle_s(20.0) == 3.0


def test_a_plan_from_the_optics_uses_the_magnification_settle() -> None:
    common = dict(
        start="0mm",
        end="0.2mm",
        step=None,
        frames=None,
        na=None,
        coc=0.015,
        overlap=0.2,
        direction="near-to-far",
        exposure_delay="0s",
        flash_recycle="0s",
        return_to_start=True,
    )
    plan = plan_from_options(None, settle=None, magnification=5.0, f_number=4.0, **common)
    assert plan.settle_s == pytest.approx(2.0)
    plan = plan_from_options(None, settle="0.7s", magnification=5.0, f_number=4.0, **common)
    assert plan.settle_s == pytest.approx(0.7)
    # A microscope objective (2x and more) took the 1:1 settle of 0.5 s.
    objective = {**common, "na": 0.42, "coc": None}
    plan = plan_from_options(None, settle=None, magnification=None, f_number=None, **objective)
    assert plan.settle_s == pytest.approx(3.0)


def test_capture_target_choices_and_vendor_defaults() -> None:
    assert parse_capture_target(None) is None
    assert parse_capture_target("both") == "both"
    with pytest.raises(RigError, match=r"--capture-target 'sd': use one of auto, ram, card, both"):
        parse_capture_target("sd")
    assert default_capture_target("canon") == "card"
    assert default_capture_target("sony") == "ram"
    assert default_capture_target("fuji") is None
