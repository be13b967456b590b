"""A stack's outputs (composite, depth map, its preview and sidecar) replace the old ones as one
set: new or old as a whole, never a mix, and no temporary left behind."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import stacker.io
import stacker.output
from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.errors import ResultWriteError
from stacker.io import all_or_none, atomic_write_bytes, in_this_context
from stacker.output import save_outputs
from stacker.stack import Stacker


def _stacked(first: int) -> Stacker:
    frames = SyntheticStack(SceneSpec(width=240, height=160, seed=2), 5)
    stacker = Stacker()
    for i in range(first, first + 3):
        stacker.add(frames.frame(i).image, name=f"frame {i}")
    return stacker


def _on_disk(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_write_refused_midway_leaves_the_old_set_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that filled up after the composite was written left the new composite beside the
    old depth map: each file was atomic, the set was not. Here the depth map's preview is
    refused as a full disk refuses it; a real full disk cannot be made to refuse exactly that
    one of the files written side by side."""
    out, depth = tmp_path / "stack.tif", tmp_path / "depth.png"
    save_outputs(_stacked(0), out, depth)
    before = _on_disk(tmp_path)
    assert sorted(before) == ["depth-preview.jpg", "depth.json", "depth.png", "stack.tif"]
    real = stacker.output.atomic_write_bytes

    def full_disk(path: str | Path, data: bytes, **kwargs: object) -> Path:
        if Path(path).name == "depth-preview.jpg":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stacker.output, "atomic_write_bytes", full_disk)
    with pytest.raises(ResultWriteError, match="No space left on device"):
        save_outputs(_stacked(2), out, depth)
    assert _on_disk(tmp_path) == before  # no new composite beside the old depth map, no .tmp

    monkeypatch.undo()
    save_outputs(_stacked(2), out, depth)
    after = _on_disk(tmp_path)
    assert sorted(after) == sorted(before)
    assert after["stack.tif"] != before["stack.tif"] and after["depth.png"] != before["depth.png"]


def test_out_of_file_descriptors_names_the_output_and_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session run out of file descriptors logged "composite not written: .../numpy/ma/
    extras.py: cannot write the result": the file being opened was a module loading late. The
    error is injected where the composite is written (a real limit fails wherever it lands)."""
    out = tmp_path / "stack.tif"

    def no_descriptors(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files", "/venv/numpy/ma/extras.py")

    monkeypatch.setattr(stacker.output, "_write_composite", no_descriptors)
    with pytest.raises(ResultWriteError) as refused:
        save_outputs(_stacked(0), out, None)
    said = str(refused.value)
    assert said.startswith(f"{out}: cannot write the result (Too many open files); ")
    assert "ulimit -n" in said and "numpy" not in said


def test_a_write_that_ends_after_its_set_was_given_up_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    """A second Ctrl-C stops the wait for the writer threads: the set is given up while one
    still writes, and that one's file, complete under its temporary name, was added to a set
    nobody would rename or remove (a hidden file as large as the composite)."""
    go = threading.Event()

    def late() -> None:
        go.wait(5.0)
        atomic_write_bytes(tmp_path / "stack.tif", b"new")

    with pytest.raises(KeyboardInterrupt), all_or_none():
        writer = threading.Thread(target=in_this_context(late))
        writer.start()
        raise KeyboardInterrupt  # the wait for the writer interrupted
    go.set()
    writer.join()
    assert _on_disk(tmp_path) == {}


def test_ctrl_c_while_the_set_is_renamed_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between two renames of the set: the files not renamed yet stayed behind under
    their temporary names, which only a disk error removed."""
    real = os.replace
    calls: list[object] = []

    def interrupted(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(stacker.io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), all_or_none():
        for name in ("stack.tif", "depth.png", "depth.json"):
            atomic_write_bytes(tmp_path / name, name.encode())
    assert sorted(_on_disk(tmp_path)) == ["stack.tif"]  # renamed before the interruption
