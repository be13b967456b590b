"""A file read through :func:`stacker.pinned.pinned` is the file its name led to on entry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stacker.pinned import OutsideFolder, pinned


def test_reads_go_to_the_file_held_even_after_its_name_is_swapped_for_a_link(
    tmp_path: Path,
) -> None:
    folder, private = tmp_path / "hot", tmp_path / "private"
    folder.mkdir()
    private.mkdir()
    (private / "secret.jpg").write_bytes(b"secret")
    frame = folder / "a.jpg"
    frame.write_bytes(b"frame")
    with pinned(frame, folder.resolve()) as held:
        frame.unlink()
        frame.symlink_to(private / "secret.jpg")
        if sys.platform == "linux":
            assert held.suffix == ".jpg"
            assert held.read_bytes() == b"frame"
    assert not held.exists() or held == frame  # the private link is gone


def test_a_link_out_of_the_folder_is_refused_with_its_target(tmp_path: Path) -> None:
    folder = tmp_path / "hot"
    folder.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    (folder / "a.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(OutsideFolder) as caught, pinned(folder / "a.jpg", folder.resolve()):
        pass
    assert caught.value.target == str((tmp_path / "secret.jpg").resolve())


def test_a_link_within_the_folder_and_a_fifo(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "hot"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"frame")
    (folder / "b.jpg").symlink_to("a.jpg")
    with pinned(folder / "b.jpg", folder.resolve()) as held:
        assert held.read_bytes() == b"frame"
    os.mkfifo(folder / "c.jpg")
    with pytest.raises(OSError), pinned(folder / "c.jpg", folder.resolve()):
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd: Linux")
def test_the_private_folder_is_made_again_when_something_removed_it(tmp_path: Path) -> None:
    """A temporary-file cleaner (or ``rm -rf /tmp/*`` to free space) removed the folder the
    links to held files go in, and every later frame of a watch was skipped as unreadable."""
    import shutil

    frame = tmp_path / "a.jpg"
    frame.write_bytes(b"frame")
    folder = tmp_path.resolve()
    with pinned(frame, folder) as alias:
        private = alias.parent
    shutil.rmtree(private)
    with pinned(frame, folder) as alias:
        assert alias.read_bytes() == b"frame"
