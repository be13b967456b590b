"""A plan never goes past its ends: the exact cases that used to overshoot, and a property test.

The property test drives ``rig plan`` in-process (Typer's runner) with random ranges and
spacings and reads back every position the command prints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rig.cli import app
from rig.errors import MotionError
from rig.plan import PlanError, ShotPlan
from rig.session.folder import SessionConfig, SessionFolder
from rig.units import parse_length

_ROW = re.compile(r"frame_(\d{4})\s*│\s*([-\d.]+ (?:mm|µm|steps))")


def printed_plan(*args: str) -> tuple[str, list[tuple[int, float]]]:
    result = CliRunner().invoke(app, ["plan", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = [(int(m.group(1)), parse_length(m.group(2))[0]) for m in _ROW.finditer(result.output)]
    assert rows, result.output
    return result.output, rows


def test_optics_plan_ends_exactly_at_to_with_the_step_shrunk_to_fit() -> None:
    # 1:1 at f/8: 384 µm asked; 4 mm / 384 µm = 10.4 steps -> 11 steps of 363.6 µm, 12 frames.
    out, rows = printed_plan("--from", "0mm", "--to", "4mm", "-m", "1", "-N", "8")
    assert "12 frames, step 363.64 µm, 0 µm → 4 mm" in out
    assert rows[0] == (1, 0.0) and rows[-1] == (12, 4000.0)
    assert all(0.0 <= p <= 4000.0 for _, p in rows)


def test_descending_range_stays_inside_and_says_which_way_it_goes() -> None:
    out, rows = printed_plan("--from", "4mm", "--to", "0mm", "--step", "384um")
    assert rows[0] == (1, 4000.0) and rows[-1] == (12, 0.0)
    assert all(0.0 <= p <= 4000.0 for _, p in rows)
    assert "4 mm → 0 µm (near-to-far, positions down)" in out
    far_first = ShotPlan.from_step(4000.0, 0.0, 384.0, direction="far-to-near")
    assert far_first.describe().endswith("0 µm → 4 mm (far-to-near, positions up)")


def test_a_saved_plan_that_runs_past_its_range_is_refused_by_name() -> None:
    text = '{"near": 0, "far": 4000, "step": 384, "frames": 12}'
    with pytest.raises(PlanError, match=r"^old\.json: 12 frames every 384 µm span 4\.224 mm"):
        ShotPlan.from_json(text, source="old.json")


def test_a_session_shot_with_an_overshooting_plan_still_resumes_at_its_positions(
    tmp_path: Path,
) -> None:
    """Sessions started before plans stopped at their ends keep the positions they were shot at."""
    old = {"format": 1, "near": 4000, "far": 0, "step": 384, "frames": 12, "settle_s": 0.5}
    plan = ShotPlan.from_dict(old, shot_before=True)
    assert [p.position for p in plan.positions()] == [4000 - 384 * i for i in range(12)]
    folder = tmp_path / "old-session"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(old))
    assert SessionFolder(folder).load_plan() == plan


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(-50_000, 50_000),
    end=st.integers(-50_000, 50_000),
    spacing=st.one_of(
        st.tuples(st.just("--step"), st.integers(1, 20_000).map(lambda v: f"{v / 10:g}um")),
        st.tuples(st.just("--frames"), st.integers(2, 60).map(str)),
        st.tuples(st.just("-m"), st.sampled_from(["0.5", "1", "2.5", "5"])),
    ),
    reverse=st.booleans(),
)
def test_rig_plan_never_prints_a_position_outside_from_to(
    start: int, end: int, spacing: tuple[str, str], reverse: bool
) -> None:
    if start == end or (
        spacing[0] == "--step" and abs(end - start) / float(spacing[1][:-2]) > 9000
    ):
        return
    extra = ["-N", "8"] if spacing[0] == "-m" else []
    direction = "far-to-near" if reverse else "near-to-far"
    out, rows = printed_plan(
        "--from", f"{start}um", "--to", f"{end}um", *spacing, *extra, "--direction", direction
    )
    # The table prints millimetres; reading "32.425 mm" back as µm costs a float ulp or two.
    low, high = min(start, end) - 1e-6, max(start, end) + 1e-6
    assert all(low <= p <= high for _, p in rows), out
    first, last = (end, start) if reverse else (start, end)
    assert rows[0][1] == pytest.approx(first, abs=1e-6), out
    assert rows[-1][1] == pytest.approx(last, abs=1e-6), out


def test_dry_run_checks_the_soft_limits_the_rail_url_declares() -> None:
    """``--dry-run`` opens no port (that would reset an Arduino) but reads ``min``/``max``."""
    args = ["shoot", "--from", "0mm", "--to", "4mm", "--frames", "5", "--dry-run", "--rail"]
    refused = CliRunner().invoke(app, [*args, "grbl:///dev/nonexistent?min=0mm&max=3mm"])
    assert isinstance(refused.exception, MotionError), refused.output
    assert "the plan spans 0 µm to 4 mm, outside the soft limits" in str(refused.exception)
    fits = CliRunner().invoke(app, [*args, "grbl:///dev/nonexistent?max=4mm"])
    assert fits.exit_code == 0, fits.output
    assert "dry run: nothing moved" in fits.output


def test_shoot_and_resume_check_the_url_s_soft_limits_before_opening_anything(
    tmp_path: Path,
) -> None:
    """A plan beyond the URL's ``max`` is refused before the camera or the rail's port (which
    restarts an Arduino) is opened, and before the rail homes, on resume too (the rail may be
    given anew there)."""
    url = "grbl:///dev/stackrig-no-such-port"
    shoot = ["shoot", "--from", "0mm", "--to", "4mm", "--frames", "5", "--home", "--rail"]
    refused = CliRunner().invoke(app, [*shoot, f"{url}?max=3mm", "--out", str(tmp_path / "n")])
    assert isinstance(refused.exception, MotionError), refused.output
    assert "outside the soft limits" in str(refused.exception)
    assert not (tmp_path / "n").exists()
    root = tmp_path / "s"
    rig = {"kind": "hardware", "focus": "rail", "rail": url}
    SessionFolder.create(root, ShotPlan.from_frames(0.0, 4000.0, 5), SessionConfig(rig)).unlock()
    resume = ["resume", str(root), "--home", "--rail", f"{url}?max=3mm"]
    refused = CliRunner().invoke(app, resume)
    assert isinstance(refused.exception, MotionError), refused.output
    assert "the plan spans 0 µm to 4 mm, outside the soft limits" in str(refused.exception)


def test_the_frame_count_s_bounds_are_taken_as_said() -> None:
    """ "1 to 10000 frames": the top is a plan, one more is refused."""
    assert ShotPlan.from_frames(0.0, 9999.0, 10_000).frames == 10_000
    with pytest.raises(PlanError, match="a plan takes 1 to 10000 frames"):
        ShotPlan.from_frames(0.0, 10_000.0, 10_001)


def test_a_saved_plan_of_several_frames_at_one_place_is_refused() -> None:
    """A hand-edited plan.json with near == far, step 0 and several frames shot them all at
    one spot."""
    with pytest.raises(PlanError, match=r"step 0 um must be positive"):
        ShotPlan(near=500.0, far=500.0, step=0.0, frames=3)
    assert ShotPlan(near=500.0, far=500.0, step=0.0, frames=1).frames == 1


def test_a_step_that_divides_the_range_gives_no_extra_frame_for_rounding() -> None:
    """2.1 µm / 0.3 µm is 7.000000000000001 in binary floating point: a microscope's
    sub-micrometre step must give 8 frames, not 9."""
    plan = ShotPlan.from_step(0.0, 2.1, 0.3)
    assert plan.frames == 8
    assert plan.step == pytest.approx(0.3)
