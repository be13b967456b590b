"""Memory or threads that run out: one line that says so, and no frame left out for it.

A real shortage is reproduced by ``prlimit --as`` on 24 MP stacks (figures in the closing
note); here OpenCV's own error for a failed allocation (``cv2.error``, code ``StsNoMem``) is
raised where a decode or a command meets it, as no test here can starve the process safely.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stacker import io as stacker_io
from stacker.errors import OutOfMemoryError, resource_shortage


def no_memory() -> cv2.error:
    error = cv2.error(
        "OpenCV(5.1.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate "
        "72000000 bytes in function 'OutOfMemoryError'"
    )
    error.code = -4  # cv2.Error.StsNoMem
    return error


def test_a_shortage_is_told_in_one_line_and_other_errors_are_not() -> None:
    assert resource_shortage(no_memory()) == (
        "not enough memory: 72 MB more could not be had; free some memory (close other "
        "programs), or stack smaller frames"
    )
    assert "not enough memory" in (resource_shortage(MemoryError()) or "")
    thread = resource_shortage(RuntimeError("can't start new thread"))
    assert thread is not None and "cannot start a thread" in thread
    other = cv2.error("(-215:Assertion failed) in function 'resize'")
    other.code = -215
    assert resource_shortage(other) is None
    assert resource_shortage(ValueError("x")) is None


def test_a_frame_whose_decode_ran_out_of_memory_is_not_skipped_as_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory that ran out while a 16-bit TIFF decoded made it "not a readable image": the
    frame was skipped and the composite written without it, exit 0."""
    from stacker.offline import stack_files

    rng = np.random.default_rng(3)
    files = []
    for i in range(3):
        path = tmp_path / f"f{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        files.append(path)
    decode = stacker_io._decode

    def short_on_the_second(p: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if p.name == "f1.png":
            raise no_memory()
        return decode(p, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stacker_io, "_decode", short_on_the_second)
    with pytest.raises(OutOfMemoryError, match=r"f1\.png: not enough memory to decode it"):
        stack_files(files, tmp_path / "out.tif", pipelined=False)
    assert not (tmp_path / "out.tif").exists()


# The oldest Typer this project takes calls Click helpers Click 8.2 deprecates on the way
# an error leaves a command; the command line ignores the warning, as this test does.
@pytest.mark.filterwarnings("ignore:'click.utils.get_:DeprecationWarning")
def test_a_command_that_runs_out_of_memory_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV's failed allocation in the merge, or the TIFF writer's MemoryError, ended
    ``stacker stack`` in a traceback."""
    from stacker.cliutil import run_app
    from tests.apps import app_raising, raising

    monkeypatch.setattr(sys, "argv", ["prog"])
    for error in (no_memory(), MemoryError(), RuntimeError("can't start new thread")):
        with pytest.raises(SystemExit) as ended:
            run_app(app_raising(raising(error)), "prog")
        assert ended.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("prog: error: ") and err.count("\n") == 1, err
