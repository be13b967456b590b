"""A bad first frame (a flash that did not fire, a blown or a stray shot) is left out like a bad
frame anywhere else, rather than failing the stack with every good frame rejected against it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack, write_stack
from stacker.errors import StackerError
from stacker.io import read_image
from stacker.offline import collect_inputs, stack_files
from stacker.options import StackOptions

SPEC = SceneSpec(width=320, height=240, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("frames")
    write_stack(out, SPEC, 5)
    return out


def _bad_first(folder: Path, tmp_path: Path, kind: str) -> list[Path]:
    """The stack's files with a bad frame shot before them, named to come first."""
    first = cv2.imread(str(folder / "frame_0001.jpg"))
    if kind == "dark":  # the flash did not fire
        bad = (first * 0.05).astype(np.uint8)
    elif kind == "blown":
        bad = np.full_like(first, 255)
    elif kind == "brighter":  # a flash that fired twice: the composite took its exposure
        bad = np.clip(first * 1.6, 0, 255).astype(np.uint8)
    elif kind == "grey":  # a greyscale file, which the colour frames after it are kept out of
        bad = cv2.cvtColor(first, cv2.COLOR_BGR2GRAY)
    else:  # another subject
        bad = SyntheticStack(SceneSpec(width=320, height=240, seed=9, layout="shapes"), 1)
        bad = bad.frame(0).image
    path = tmp_path / "frame_0000.jpg"
    cv2.imwrite(str(path), bad)
    return [path, *collect_inputs([folder])]


@pytest.mark.parametrize("kind", ["dark", "blown", "other", "grey", "brighter"])
def test_a_bad_first_frame_is_left_out(folder: Path, tmp_path: Path, kind: str) -> None:
    files = _bad_first(folder, tmp_path, kind)
    restarts: list[tuple[Path, int]] = []
    run = stack_files(files, tmp_path / "out.png",
                      on_restart=lambda p, why, left: restarts.append((p, left)))  # fmt: skip
    assert run.stacker.frames_merged == len(files) - 1
    assert restarts == [(files[0], len(files) - 1)]
    assert [p for p, _ in run.skipped] == [files[0]]
    # The same as stacking the good frames alone.
    alone = stack_files(files[1:], tmp_path / "alone.png")
    assert alone.stacker.frames_merged == len(files) - 1
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"),
                                  read_image(tmp_path / "alone.png"))  # fmt: skip


def test_a_numbered_reference_after_a_bad_first_frame(folder: Path, tmp_path: Path) -> None:
    files = _bad_first(folder, tmp_path, "dark")
    run = stack_files(files, tmp_path / "out.png", stack=StackOptions.parse({"reference": "3"}))
    assert run.stacker.frames_merged == len(files) - 1
    assert run.stacker.reference_record().name == files[2].name
    with pytest.raises(StackerError, match="only 1 usable frame"):
        stack_files(files, tmp_path / "out.png", stack=StackOptions.parse({"reference": "1"}))


def test_the_summary_numbers_frames_as_files_after_a_bad_first_frame(
    folder: Path, tmp_path: Path
) -> None:
    """Stacked again without its first frame, the summary numbered the second file #1, so its
    "#3" was the fourth file while --reference 3 meant the third, and the title said 4 of 4."""
    from rich.console import Console

    from stacker.report import summary_table

    files = _bad_first(folder, tmp_path, "dark")
    run = stack_files(files, tmp_path / "out.png", stack=StackOptions.parse({"reference": "3"}))
    console = Console(width=200)
    with console.capture() as captured:
        console.print(summary_table(run.stacker, run.file_numbers, len(files)))
    table = captured.get()
    assert f"{len(files) - 1} of {len(files)} frames merged" in table
    rows = {line.split("│")[2].strip(): line.split("│")[1].strip()
            for line in table.splitlines() if line.count("│") > 3}  # fmt: skip
    assert rows == {f.name: str(i) for i, f in enumerate(files, start=1) if i > 1}
    assert run.stacker.reference_record().name == files[2].name  # the "3" the table shows


def test_the_summary_shows_frame_names_as_they_are(folder: Path, tmp_path: Path) -> None:
    """A frame named ``a[red]1.jpg`` was listed as ``a1.jpg`` (rich took the brackets for
    markup), and one holding an escape sequence cleared the terminal."""
    from rich.console import Console

    from stacker.report import summary_table

    odd = []
    for name, source in zip(
        ("a[red]1.jpg", "x\x1b[2Jy.jpg"), sorted(folder.iterdir()), strict=False
    ):
        odd.append(tmp_path / name)
        odd[-1].write_bytes(source.read_bytes())
    run = stack_files(odd, tmp_path / "out.png")
    console = Console(width=200, force_terminal=False)
    with console.capture() as captured:
        console.print(summary_table(run.stacker, run.file_numbers, len(odd)))
    table = captured.get()
    assert "a[red]1.jpg" in table and "x\\x1b[2Jy.jpg" in table and "\x1b" not in table


def test_watch_status_lines_show_names_as_they_are() -> None:
    """The watch's status line escaped the last frame's name but not the folder or the
    problem, which names the frame too: an escape sequence in a name reached the terminal."""
    from rich.console import Console

    from stacker.watch import WatchStatus, render_status

    odd = "x\x1b[2Jy.jpg"
    status = WatchStatus(Path("hot\x1b[31m"), last_name=odd, last_problem=f"{odd}: unreadable")
    console = Console(width=200, force_terminal=False)
    with console.capture() as captured:
        console.print(render_status(status))
    shown = captured.get()
    assert "\x1b" not in shown and "hot\\x1b[31m" in shown and "x\\x1b[2Jy.jpg: unreadable" in shown


def test_frames_that_align_with_nothing_still_fail(tmp_path: Path) -> None:
    files = []
    for seed in range(5):
        frame = SyntheticStack(SceneSpec(width=320, height=240, seed=20 + seed), 1).frame(0)
        files.append(tmp_path / f"f{seed}.jpg")
        cv2.imwrite(str(files[-1]), frame.image)
    with pytest.raises(StackerError, match="only 1 usable frame"):
        stack_files(files, tmp_path / "out.png")


def test_frames_that_cannot_be_read_do_not_leave_a_good_first_frame_out(
    folder: Path, tmp_path: Path
) -> None:
    """Files after the first frame that cannot be read were blamed on it: "none of the 3 frames
    after it aligns with it ... stacking again without it", every frame read again, and the
    stack failed saying 0 usable frames where 1 was."""
    files = [folder / "frame_0001.jpg"]
    for i in range(3):
        files.append(tmp_path / f"frame_{i + 2:04d}.jpg")
        files[-1].write_bytes(b"\xff\xd8 not a JPEG")
    restarts: list[Path] = []
    with pytest.raises(StackerError, match="only 1 usable frame"):
        stack_files(files, tmp_path / "out.png", on_restart=lambda p, w, n: restarts.append(p))
    assert restarts == []


def test_a_batch_reports_a_first_frame_left_out_as_rejected(folder: Path, tmp_path: Path) -> None:
    """stacker batch's report counted a dark first frame, read and left out, as unreadable
    (rejected 0, unreadable 1): the file was fine, and the report sent the user to look for a
    damaged one."""
    from stacker.batch import StackJob, stack_one

    files = _bad_first(folder, tmp_path, "dark")
    job = StackJob("s", folder, tuple(files), tmp_path / "s.png", None)
    report = stack_one(job, {})
    assert report.status == "done", report.error
    assert (report.merged, report.rejected, report.unreadable) == (len(files) - 1, 1, 0)


def test_a_batch_stack_of_frames_that_cannot_be_read_names_one_of_them(tmp_path: Path) -> None:
    """A batch stack whose files could not be read failed as "only 0 usable frame(s) of 3: a
    stack needs at least two that align": the warnings naming each file are printed only by
    ``stacker stack``, so the report's one line sent the user to look for frames that did not
    align, in a folder of damaged files."""
    from stacker.batch import StackJob, stack_one

    files = []
    for i in range(3):
        files.append(tmp_path / f"frame_{i + 1:04d}.jpg")
        files[-1].write_bytes(b"\xff\xd8 not a JPEG")
    job = StackJob("s", tmp_path, tuple(files), tmp_path / "s.png", None)
    report = stack_one(job, {})
    assert report.status == "failed" and report.error is not None
    assert "only 0 usable frame(s) of 3" in report.error
    assert f"{files[0]}: not a readable image" in report.error and "2 more" in report.error
    assert "\n" not in report.error


def test_frames_after_a_bad_first_one_are_told_apart_from_stray_ones(folder: Path) -> None:
    """A live stack starts again without its first frame only when the frames kept out
    against it align with each other: two good frames do; two unrelated ones, or a good frame
    and a blown one, or a single frame, do not."""
    from stacker.lonefirst import align_with_each_other

    good = [read_image(folder / f"frame_000{i}.jpg") for i in (2, 3)]
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, good[0].shape, dtype=np.uint8)
    assert align_with_each_other(good, align="similarity", linear=False)
    assert not align_with_each_other([good[0], noise], align="similarity", linear=False)
    assert not align_with_each_other(
        [good[0], np.full_like(good[0], 255)], align="similarity", linear=False
    )
    assert not align_with_each_other(good[:1], align="similarity", linear=False)
    assert not align_with_each_other([], align="similarity", linear=False)


def test_a_stack_given_up_lets_go_of_its_buffers_and_takes_no_more_frames(folder: Path) -> None:
    """A live stack that starts again keeps its old stacker referenced for a while (the page
    serving its crops): released, it holds no full-size buffer, and says so if fed."""
    from stacker.stack import Stacker

    stacker = Stacker(overlap=True)
    for i in (1, 2):
        stacker.add(read_image(folder / f"frame_000{i}.jpg"))
    stacker.release()
    assert stacker.preview() is None and stacker.last_frame_preview() is None
    held = [v for v in vars(stacker).values() if isinstance(v, np.ndarray) and v.size > 320 * 240]
    assert held == []
    with pytest.raises(StackerError, match="given up, to start again without its first frame"):
        stacker.add(read_image(folder / "frame_0003.jpg"))


@pytest.mark.parametrize("at", [0, 2])
def test_a_specular_sheen_does_not_set_the_exposure_of_the_other_frames(
    folder: Path, at: int
) -> None:
    """Blown pixels say nothing of exposure: a sheen over 8 % of the first frame brightened
    every other frame 1.2 times to match it (the composite's whites clipped), and one over a
    middle frame darkened that frame by 15 %."""
    from stacker.stack import Stacker

    def gains(sheen: bool) -> np.ndarray:
        stacker = Stacker(align="similarity")
        for i, path in enumerate(collect_inputs([folder])):
            frame = read_image(path)
            if sheen and i == at:
                frame = frame.copy()
                cv2.circle(frame, (160, 120), 50, (255, 255, 255), -1)  # 8 % of 320x240
            assert stacker.add(frame, name=path.name).merged
        return np.array([r.gain for r in stacker.records])

    difference = np.abs(gains(True) - gains(False))
    assert np.all(difference < 0.02), difference


def test_the_depth_key_numbers_frames_as_the_files_are_after_a_bad_first_frame(
    folder: Path, tmp_path: Path
) -> None:
    """The key under the depth preview counted the frames stacked: with a stray first frame
    left out, its "frame 1" was the second file, which the frames' table calls #2."""
    files = _bad_first(folder, tmp_path, "other")
    run = stack_files(files, tmp_path / "out.png")
    _count, _positions, numbers = run.stacker._legend()
    assert numbers == list(range(2, len(files) + 1))
    assert run.stacker._legend()[2] == [run.file_numbers[i] for i in range(len(files) - 1)]
