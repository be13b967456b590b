"""Shot plans: step/frame-count/optics construction, positions, JSON round trip, errors."""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.cli import app
from rig.cli.options import plan_from_options
from rig.plan import PlanError, ShotPlan, optics_step, parse_plan_length

EXAMPLE_PLAN = str(Path(__file__).parents[2] / "examples/plan-1to1-macro.json")


def test_step_plan_covers_the_range_both_ends_included() -> None:
    plan = ShotPlan.from_step(0.0, 1000.0, 100.0)
    pos = [p.position for p in plan.positions()]
    assert plan.frames == 11
    assert pos[0] == 0.0 and pos[-1] == 1000.0
    assert [p.index for p in plan.positions()] == list(range(1, 12))


def test_step_that_does_not_divide_the_range_shrinks_to_end_exactly_at_far() -> None:
    plan = ShotPlan.from_step(0.0, 1000.0, 300.0)
    pos = [p.position for p in plan.positions()]
    assert plan.step == pytest.approx(250.0)
    assert pos == [0.0, 250.0, 500.0, 750.0, 1000.0]


def test_frame_count_plan_spaces_evenly() -> None:
    plan = ShotPlan.from_frames(200.0, -200.0, 5)
    assert plan.step == pytest.approx(100.0)
    assert [p.position for p in plan.positions()] == [200.0, 100.0, 0.0, -100.0, -200.0]


def test_far_to_near_reverses_the_order_but_keeps_indexes_in_shooting_order() -> None:
    plan = ShotPlan.from_frames(0.0, 300.0, 4, direction="far-to-near")
    assert [p.position for p in plan.positions()] == [300.0, 200.0, 100.0, 0.0]
    assert [p.index for p in plan.positions()] == [1, 2, 3, 4]
    assert plan.start == 300.0


def test_dof_step_formula_for_a_macro_lens() -> None:
    # 1:1 at f/8, c = 0.015 mm: DOF = 2*0.015*8*(1+1)/1 = 0.48 mm; 20 % overlap -> 384 µm.
    optics = optics_step(magnification=1.0, f_number=8.0)
    assert optics.depth_of_field_um == pytest.approx(480.0)
    plan = ShotPlan.from_optics(0.0, 3840.0, optics)  # overlap 0.2 by default
    assert plan.step == pytest.approx(384.0)
    assert plan.frames == 11
    # 5:1 at f/4: 2*0.015*4*6/25 = 0.0288 mm.
    assert optics_step(magnification=5, f_number=4).depth_of_field_um == pytest.approx(28.8)


@pytest.mark.parametrize(
    ("m", "n", "wave_um"), [(1.0, 4.0, 140.8), (2.0, 2.8, 38.8), (1.0, 2.8, 69.0)]
)
def test_a_wide_aperture_steps_by_diffraction_s_depth_of_field(m, n, wave_um) -> None:
    """At wide apertures the circle of confusion's depth of field is the larger (1:1 at f/4:
    240 um, a 192 um step), and frames that far apart left bands out of focus. Diffraction's,
    lambda / NA^2 at the object-side NA m / (2 N (m + 1)) (Zerene Systems' DOF calculator),
    is the smaller there and sets the step; the plan says so."""
    optics = optics_step(magnification=m, f_number=n)
    assert optics.depth_of_field_um == pytest.approx(wave_um, rel=0.002)
    assert optics.diffraction
    assert "diffraction's" in optics.describe()
    classic = optics_step(magnification=1.0, f_number=16.0)  # 960 um against diffraction's 2253
    assert classic.depth_of_field_um == pytest.approx(960.0) and not classic.diffraction


def test_dof_step_formula_for_a_microscope_objective() -> None:
    # NA 0.25: 0.00055 / 0.0625 mm = 8.8 µm.
    optics = optics_step(numerical_aperture=0.25, overlap=0.0)
    assert optics.depth_of_field_um == pytest.approx(8.8)
    assert "NA 0.25" in optics.describe()


def test_duration_estimate_adds_moves_delays_and_capture() -> None:
    plan = ShotPlan.from_frames(0.0, 1000.0, 11, settle_s=0.5, exposure_delay_s=0.25)
    est = plan.estimate_duration(speed_per_s=1000.0, capture_s=1.0)
    # 11 x (0.1 move + 0.5 + 0.25 + 1.0) + 1.0 return
    assert est == pytest.approx(11 * 1.85 + 1.0)
    # The flash recharges while the rail moves and settles (the session counts its wait from
    # the last shutter): a frame takes the longer of the two, not their sum.
    recycled = ShotPlan.from_frames(0.0, 1000.0, 11, settle_s=0.0, flash_recycle_s=3.0)
    assert recycled.estimate_duration(speed_per_s=1000.0, capture_s=1.0) == pytest.approx(34.0)
    quick = ShotPlan.from_frames(0.0, 1000.0, 11, settle_s=0.5, exposure_delay_s=0.25,
                                 flash_recycle_s=1.0)  # fmt: skip
    assert quick.estimate_duration(speed_per_s=1000.0, capture_s=1.0) == pytest.approx(est)
    assert plan.estimate_duration(remaining=0) == 0.0


def test_json_round_trip_keeps_every_field() -> None:
    optics = optics_step(magnification=2.0, f_number=5.6)
    plan = ShotPlan.from_optics(0.0, 2000.0, optics, settle_s=1.5, return_to_start=False)
    again = ShotPlan.from_json(plan.to_json())
    assert again == plan
    assert again.positions() == plan.positions()
    lens = ShotPlan.from_step(0, 40, 4, units="steps", direction="far-to-near")
    assert ShotPlan.from_json(lens.to_json()) == lens


def test_a_plan_file_an_editor_saved_with_a_byte_order_mark_is_read() -> None:
    """Notepad and PowerShell start UTF-8 with a byte-order mark: refused with Python's own
    advice ("decode using utf-8-sig"). The session's session.json got "restore it from a
    backup" for the same three bytes."""
    from rig.session.folder import SessionConfig, SessionFolder

    plan = ShotPlan.from_frames(0.0, 1000.0, 5)
    assert ShotPlan.from_json("\ufeff" + plan.to_json()) == plan
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "s"
        SessionFolder.create(root, plan, SessionConfig(rig={"kind": "hardware"})).unlock()
        config = root / "session.json"
        config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
        assert SessionFolder(root).load_config().rig == {"kind": "hardware"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"near": 0, "far": 1, "step": 1}', "incomplete"),
        ('{"near": 0, "far": 1, "step": 1, "frames": 2, "speed": 3}', "unknown plan field"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
        ('{"near": 0, "far": 1, "step": -1, "frames": 2}', "must be positive"),
        # "no" is true to Python: the rail went back to the start though asked not to
        ('{"near": 0, "far": 1, "step": 1, "frames": 2, "return_to_start": "no"}', "true or false"),
    ],
)
def test_bad_plan_files_give_one_line_errors(text: str, needle: str) -> None:
    with pytest.raises(PlanError) as info:
        ShotPlan.from_json(text, source="my.json")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_a_plan_file_with_a_wrong_field_names_the_fields_a_plan_file_has() -> None:
    """A plan file written with the station's field names (``from``, ``settle``) got "unknown
    plan field(s)" and nothing about what a plan file holds."""
    with pytest.raises(PlanError) as info:
        ShotPlan.from_json('{"from": "0mm", "to": "2mm", "step": "250um"}', source="my.json")
    assert str(info.value) == (
        "my.json: unknown plan field(s) 'from', 'to': a plan file has near, far, step, frames, "
        "and may have direction, settle_s, exposure_delay_s, flash_recycle_s, return_to_start, "
        "units, optics and format (`rig plan --save` writes one)"
    )


def test_a_step_over_an_empty_range_is_refused_as_frames_are() -> None:
    """``--from 2mm --to 2mm --step 50um`` (a forgotten --to) made a one-frame plan, printed as
    "1 frames", which no stack can come of; ``--frames 3`` over it was already refused."""
    with pytest.raises(PlanError, match="both 2 mm: give a range"):
        ShotPlan.from_step(2000, 2000, 50)
    with pytest.raises(PlanError, match="both 0 µm: give a range"):
        ShotPlan.from_optics(0, 0, optics_step(magnification=1, f_number=8))


def test_bad_values_are_refused() -> None:
    with pytest.raises(PlanError, match="positive step"):
        ShotPlan.from_step(0, 100, 0)
    with pytest.raises(PlanError, match="give a range"):
        ShotPlan.from_frames(5, 5, 3)
    with pytest.raises(PlanError, match="more than"):
        ShotPlan.from_step(0, 1e9, 1)
    with pytest.raises(PlanError, match="overlap"):
        optics_step(magnification=1, f_number=8, overlap=1.0)
    with pytest.raises(PlanError, match="magnification and the f-number"):
        optics_step(magnification=1)
    with pytest.raises(PlanError, match="cannot be negative"):
        ShotPlan.from_frames(0, 100, 3, settle_s=-1)
    with pytest.raises(PlanError, match="finite"):
        ShotPlan.from_frames(0, math.inf, 3)


def test_a_lens_plan_is_in_whole_steps_or_says_how_to_make_it_so() -> None:
    """A step that did not divide the range shrank to 6.667 lens steps: the plan passed, and
    the lens refused the second frame, mid-session."""
    with pytest.raises(PlanError) as info:
        ShotPlan.from_step(0, 60, 7, units="steps")
    assert str(info.value) == (
        "the lens moves in whole steps, and 10 frames from 0 to 60 steps would be 6.667 steps "
        "apart: use --step 6steps (11 frames), or --to 63steps --step 7steps (10 frames)"
    )
    for fixed in (
        ShotPlan.from_step(0, 60, 6, units="steps"),
        ShotPlan.from_step(0, 63, 7, units="steps"),
    ):
        assert all(p.position == round(p.position) for p in fixed.positions())
    # Both ways out work as given, whichever way the frames were spaced (the advice was once
    # "--to 70steps to keep 10 steps", which --frames 7 then refused again).
    # (a step under one lens step gets the first way only: the second multiplied the range)
    with pytest.raises(PlanError) as advice:
        ShotPlan.from_step(0, 10, 0.5, units="steps")
    assert str(advice.value).endswith("apart: use --step 1steps (11 frames)")
    for near, far, frames in ((0, 61, 7), (0, 60, 25), (100, 37, 9), (0, 10, 5)):
        with pytest.raises(PlanError) as advice:
            ShotPlan.from_frames(near, far, frames, units="steps")
        m = re.search(r"--step (\d+)steps \((\d+) frames\), or --to (-?\d+)steps --step "
                      r"(\d+)steps \((\d+) frames\)", str(advice.value))  # fmt: skip
        assert m is not None, advice.value
        fit, fit_frames, end, kept, kept_frames = map(int, m.groups())
        assert ShotPlan.from_step(near, far, fit, units="steps").frames == fit_frames
        assert ShotPlan.from_step(near, end, kept, units="steps").frames == kept_frames == frames
    with pytest.raises(PlanError, match=r"6\.667 steps apart"):
        ShotPlan.from_json(
            '{"near": 0, "far": 60, "step": 6.666666667, "frames": 10, "units": "steps"}'
        )
    with pytest.raises(PlanError, match="whole steps: give --from and --to in whole steps"):
        ShotPlan.from_frames(0.5, 60.5, 11, units="steps")
    assert ShotPlan.from_frames(0, 1000.5, 3).step == 500.25  # micrometres may be fractional


def test_lengths_need_units() -> None:
    assert parse_plan_length("1.2mm", what="--from") == (1200.0, "um")
    assert parse_plan_length("50um", what="--step") == (50.0, "um")
    assert parse_plan_length("12steps", what="--step") == (12.0, "steps")
    with pytest.raises(PlanError, match="--step"):
        parse_plan_length("50", what="--step")


def test_a_plan_file_refuses_a_range_beside_it_and_takes_the_timing() -> None:
    """``--plan FILE --from 12mm --to 16mm`` used to shoot the file's 0-3.84 mm, silently."""
    example = EXAMPLE_PLAN
    refused = CliRunner().invoke(app, ["plan", "--plan", example, "--from", "12mm", "--to", "16mm"])
    assert isinstance(refused.exception, PlanError)
    assert str(refused.exception) == (
        f"--plan {example} gives the range and the spacing: leave out --from, --to, "
        "or leave out --plan"
    )
    for shape in (["--step", "50um"], ["--frames", "9"], ["-m", "2", "-N", "4"], ["--coc", "0.03"]):
        result = CliRunner().invoke(app, ["plan", "--plan", example, *shape])
        assert isinstance(result.exception, PlanError), shape
    args = ["--direction", "far-to-near", "--exposure-delay", "2s", "--no-return"]
    saved = ShotPlan.from_json(Path(example).read_text())
    plan = plan_from_options(
        Path(example), direction="far-to-near", exposure_delay="2s", return_to_start=False
    )
    assert CliRunner().invoke(app, ["plan", "--plan", example, *args]).exit_code == 0
    assert (plan.direction, plan.exposure_delay_s, plan.return_to_start) == (
        "far-to-near", 2.0, False
    )  # fmt: skip
    assert (plan.near, plan.far, plan.step, plan.frames, plan.settle_s, plan.flash_recycle_s) == (
        saved.near, saved.far, saved.step, saved.frames, saved.settle_s, saved.flash_recycle_s
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--settle", "2h"], "--settle: unknown time unit 'h' in '2h': use s, ms or min"),
        (["--settle", "1e30"], "--settle '1e30': give 0 s to 3600 s (an hour) between frames"),
        (["--flash-recycle", "61min"], "--flash-recycle '61min': give 0 s to 3600 s (an hour) "),
        (["--direction", "up"], "--direction 'up': use near-to-far or far-to-near"),
    ],
)
def test_timing_beside_a_plan_file_is_refused_as_without_it(args: list[str], said: str) -> None:
    """Beside ``--plan FILE``, ``--settle 1e30`` was refused as "plan settle_s is 1e+30 s" and
    ``--direction up`` as "direction 'up'", a plan file's fields the user never typed: without
    the file ``rig plan`` names the option."""
    for plan_file in ([], ["--plan", EXAMPLE_PLAN]):
        extra = [] if plan_file else ["--from", "0mm", "--to", "1mm", "--frames", "3"]
        result = CliRunner().invoke(app, ["plan", *plan_file, *extra, *args])
        assert isinstance(result.exception, PlanError), result.output
        assert str(result.exception).startswith(said), plan_file


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "p.json: incomplete plan: no near, far, step, frames (a saved plan.json has"),
        ({"near": 0, "far": 10, "step": 5, "frames": 3, "optics": 5},
         "p.json: optics must be an object with depth_of_field_um, overlap"),
        ({"near": 0, "far": 10, "step": 5, "frames": 3, "optics": {"overlap": 0.2, "x": 1}},
         "p.json: optics block: unknown field(s) 'x'; no depth_of_field_um"),
        # describe() then formatted None: a TypeError traceback
        ({"near": 0, "far": 10, "step": 5, "frames": 3,
          "optics": {"depth_of_field_um": 480, "overlap": 0.2}},
         "p.json: optics block: no magnification, f_number, coc_mm"),
        ({"near": 0, "far": 10, "step": 5, "frames": 3,
          "optics": {"depth_of_field_um": 480, "overlap": "x", "numerical_aperture": 0.25}},
         "p.json: optics block: overlap is 'x'; give a number"),
        # the command line's 10 m limit (a rail sent to its end) held for plan files too
        ({"near": 0, "far": 1e16, "step": 1e16 / 6, "frames": 7},
         "p.json: plan far is 10000000000000 mm: no focus axis moves that far (at most 10000 mm)"),
    ],
)  # fmt: skip
def test_a_plan_file_missing_fields_says_which_in_words(data: dict, message: str) -> None:
    """These leaked Python's own messages: "ShotPlan.__init__() missing 4 required positional
    arguments", "argument after ** must be a mapping, not int"."""
    with pytest.raises(PlanError) as info:
        ShotPlan.from_dict(data, source="p.json")
    assert str(info.value).startswith(message)
    assert "__init__" not in str(info.value) and "**" not in str(info.value)


def test_advice_for_plans_no_step_was_given_for_says_what_to_change() -> None:
    """'use a bigger step' for a depth-of-field plan (no --step given), and 'set frames to 1
    and step to range / (frames - 1)' for a one-frame plan file (dividing by zero)."""
    tiny = optics_step(magnification=100, f_number=0.5, coc_mm=0.0001)
    with pytest.raises(PlanError) as info:
        ShotPlan.from_optics(0, 1000, tiny)
    assert "use a bigger step" not in str(info.value)
    assert "shorten the range, lower the overlap, or check the optics" in str(info.value)
    with pytest.raises(PlanError) as info:
        ShotPlan.from_dict({"near": 0, "far": 2000, "step": 0, "frames": 1})
    assert "one frame covers no range" in str(info.value) and "(frames - 1)" not in str(info.value)


@pytest.mark.parametrize(
    "plan",
    [
        ShotPlan.from_step(0.0, 2000.0, 100.0, settle_s=1.5),
        ShotPlan.from_step(
            -300.0,
            1234.5,
            37.3,
            direction="far-to-near",
            exposure_delay_s=0.3,
            flash_recycle_s=2.0,
            return_to_start=False,
        ),
        ShotPlan.from_frames(0.0, 40.0, 41, units="steps"),
        ShotPlan.from_frames(5.0, 5.0, 1),
    ],
)
def test_a_plan_as_a_request_reads_back_as_the_same_plan(plan: ShotPlan) -> None:
    """The station offers a past session's plan again through the same parser as any plan the
    page sends: what it offers must read back as the very positions and timing."""
    from rig.spec import PlanSpec

    spec = plan.as_spec()
    assert spec is not None
    again = PlanSpec.parse(spec, units=plan.units).plan()
    assert again == plan
    assert [p.position for p in again.positions()] == [p.position for p in plan.positions()]


def test_a_tether_plan_is_no_request_to_shoot_again() -> None:
    """A tether session's plan counts the frames the camera shot by itself: offered again as
    a range it read "0.0um" to "23.0um", a rail plan that session never had."""
    tether = ShotPlan(near=1.0, far=24.0, step=1.0, frames=24, units="frames")
    assert tether.as_spec() is None


def test_a_plan_saved_onto_a_device_or_pipe_is_refused_not_renamed_over(tmp_path) -> None:
    """``rig plan --save /dev/null`` (as root) replaced the device with a file of the plan;
    a named pipe went the same way."""
    pipe = tmp_path / "plan.fifo"
    os.mkfifo(pipe)
    result = CliRunner().invoke(app, ["plan", "--from", "0mm", "--to", "1mm", "--frames", "3",
                                      "--save", str(pipe)])  # fmt: skip
    assert result.exit_code != 0
    assert (
        str(result.exception) == f"{pipe}: not a regular file; give a file name such as plan.json"
    )
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    saved = tmp_path / "plan.json"
    args = ["plan", "--from", "0mm", "--to", "1mm", "--frames", "3", "--save", str(saved)]
    assert CliRunner().invoke(app, args).exit_code == 0 and saved.is_file()


def test_a_plan_file_that_is_a_pipe_or_a_device_is_one_line(tmp_path) -> None:
    """``--plan`` on a named pipe waited for ever for a writer, and on ``/dev/zero`` read until
    memory ran out."""
    pipe = tmp_path / "plan.json"
    os.mkfifo(pipe)
    for given in (pipe, Path("/dev/zero")):
        result = CliRunner().invoke(app, ["plan", "--plan", str(given)])
        assert isinstance(result.exception, PlanError)
        assert str(result.exception) == f"{given}: cannot read the plan (not a regular file)"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 << 20))
    result = CliRunner().invoke(app, ["plan", "--plan", str(big)])
    assert "cannot read the plan (more than 1024 KiB, far too large)" in str(result.exception)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["-m", "1,5", "-N", "8"], "--magnification 1,5: write decimals with a point, e.g. 1.5"),
        (["-m", "1", "-N", "5,6"], "--f-number 5,6: write decimals with a point, e.g. 5.6"),
        (["-m", "x", "-N", "8"], "--magnification must be a number, not 'x'"),
    ],
)
def test_optics_numbers_typed_with_a_comma_are_named(args: list[str], said: str) -> None:
    """``-N 5,6`` (f/5.6, as much of Europe writes it) was the parser's usage block saying
    'Input should be a valid number', naming neither the value nor the fix."""
    result = CliRunner().invoke(app, ["plan", "--from", "0mm", "--to", "1mm", *args])
    assert isinstance(result.exception, PlanError) and str(result.exception) == said


def test_a_plan_saved_into_a_missing_folder_names_the_folder(tmp_path) -> None:
    """``rig plan --save shots/plan.json`` before ``shots`` existed said only "cannot write the
    plan (No such file or directory)", where ``stacker stack -o`` names the missing folder."""
    saved = tmp_path / "shots" / "plan.json"
    args = ["plan", "--from", "0mm", "--to", "1mm", "--frames", "3", "--save", str(saved)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, PlanError)  # `rig` prints it as one line, status 2
    assert str(result.exception) == (
        f"{saved}: the folder {saved.parent} does not exist; create it first"
    )


def test_a_plan_saved_over_a_file_that_holds_no_plan_is_refused(tmp_path) -> None:
    """``rig plan --save`` replaced whatever was there: notes, or a frame (``--save
    frame_0001.jpg``, a slip of the tab key). A plan saved before is replaced, as it should."""
    notes = tmp_path / "notes.txt"
    notes.write_text("where the specimen came from")
    args = ["plan", "--from", "0mm", "--to", "1mm", "--frames", "3", "--save"]
    result = CliRunner().invoke(app, [*args, str(notes)])
    assert isinstance(result.exception, PlanError)
    assert str(result.exception) == (
        f"{notes}: exists and holds no plan; give another file name, or delete it first"
    )
    assert notes.read_text() == "where the specimen came from"
    saved = tmp_path / "plan.json"
    assert CliRunner().invoke(app, [*args, str(saved)]).exit_code == 0
    args[args.index("3")] = "5"
    assert CliRunner().invoke(app, [*args, str(saved)]).exit_code == 0
    assert ShotPlan.from_json(saved.read_text()).frames == 5
