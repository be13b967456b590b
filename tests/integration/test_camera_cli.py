"""``rig cameras`` and ``rig camera ...`` on libgphoto2's virtual camera, and with no camera."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.camera import ConfigValueError
from rig.cli import app
from rig.errors import RigError
from rig.sim.vcamera import VirtualCameraFolder
from stacker.errors import UserError

runner = CliRunner()
NO_CAMERA = "no camera found: connect a camera by USB, switch it on and set it to PC/PTP mode"


@pytest.fixture
def card_slot_bytes() -> int:
    return 8000


def test_cameras_table(card: VirtualCameraFolder, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["cameras"])
    assert result.exit_code == 0, result.output
    assert "Nikon DSC D750" in result.output and "usb:001,001" in result.output
    monkeypatch.setenv("COLUMNS", "24")  # a narrow terminal: the port, typed for --port, whole
    narrow = runner.invoke(app, ["cameras"])
    assert "usb:001,001" in narrow.output and "…" not in narrow.output, narrow.output


@pytest.mark.slow
def test_shoot_prints_the_files_written(card: VirtualCameraFolder, tmp_path: Path) -> None:
    staged = card.stage(b"\xff\xd8cli shot\xff\xd9")
    out = tmp_path / "shots"
    result = runner.invoke(app, ["camera", "shoot", "-o", str(out), "--model", "D750"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [str(out / "frame_0001.jpg")]
    assert (out / "frame_0001.jpg").read_bytes() == staged
    again = runner.invoke(app, ["camera", "shoot", "-o", str(out), "--stem", "test"])
    assert again.output.splitlines() == [str(out / "test.jpg")]


@pytest.mark.parametrize(
    ("where", "stem", "message"),
    [
        ("a file", None, r"cannot keep frames in .*a file: File exists"),
        ("shots", "../escape", r"stem '\.\./escape': give a plain name"),
        ("shots", "a/b", r"stem 'a/b': give a plain name"),
        ("shots", "b" * 250, r"stem of 250 bytes: .* takes names of at most 255, so give a stem"),
        ("/sys/kernel", None, r"cannot keep frames in /sys/kernel: .*; fix its permissions"),
        ("shot.jpg", None, r"shot\.jpg: the folder for the frames, not a file name; give -o "),
    ],
)
def test_an_unusable_folder_or_stem_is_refused_before_the_shutter(
    card: VirtualCameraFolder, tmp_path: Path, where: str, stem: str | None, message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a file").write_bytes(b"")
    card.stage(b"\xff\xd8cli shot\xff\xd9")
    args = ["camera", "shoot", "-o", str(out / where)] + (["--stem", stem] if stem else [])
    result = runner.invoke(app, args)
    assert isinstance(result.exception, RigError), result.exception
    assert re.search(message, str(result.exception))
    assert sorted(p.name for p in out.rglob("*")) == ["a file"]  # nothing written anywhere


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a folder", r"a folder: is a folder; give a file name such as .*live\.jpg"),
        ("live.png", r"live view comes as JPEG; give a \.jpg file, such as \S*/live\.jpg$"),
    ],
)
def test_a_preview_file_that_cannot_be_written_is_refused_first(
    card: VirtualCameraFolder, tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "a folder").mkdir()
    result = runner.invoke(app, ["camera", "preview", "-o", str(tmp_path / name)])
    assert isinstance(result.exception, UserError), result.exception
    assert re.search(message, str(result.exception))


def test_summary_and_config(card: VirtualCameraFolder) -> None:
    summary = runner.invoke(app, ["camera", "summary", "--port", "usb:001,001"])
    assert summary.exit_code == 0 and "GPVC Storage" in summary.output and "0.1" in summary.output
    listing = runner.invoke(app, ["camera", "config"])
    assert listing.exit_code == 0 and "capturetarget" in listing.output
    one = runner.invoke(app, ["camera", "config", "f-number"])
    assert "accepts: one of: f/2.8" in one.output
    changed = runner.invoke(app, ["camera", "config", "exposurecompensation", "0.5"])
    assert changed.output.strip() == "exposurecompensation = 0.5"
    below = runner.invoke(app, ["camera", "config", "exposurecompensation", "-1"])  # not an option
    assert below.output.strip() == "exposurecompensation = -1", below.output
    runner.invoke(app, ["camera", "config", "exposurecompensation", "0"])
    bad = runner.invoke(app, ["camera", "config", "f-number", "f/99"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigValueError)


def test_the_settings_listing_names_every_key_whole(
    card: VirtualCameraFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing is where a photographer finds the key to type: on 80 columns (a terminal,
    or a file or pipe) long keys such as ``exposurecompensation`` ended in an ellipsis, and so
    did values such as the PTP opcodes."""
    from rig.camera import Camera

    with Camera.open() as camera:
        items = camera.config_items()
    monkeypatch.setenv("COLUMNS", "80")
    listing = runner.invoke(app, ["camera", "config"])
    assert listing.exit_code == 0, listing.output
    assert "…" not in listing.output
    cells = {cell.strip() for line in listing.output.splitlines() for cell in line.split("│")}
    assert {item.key for item in items} <= cells
    assert any(len(item.key) > 16 for item in items)
    # Narrower than a table can be read (its other columns shrank to nothing): a line each,
    # the key and its value whole.
    monkeypatch.setenv("COLUMNS", "32")
    narrow = runner.invoke(app, ["camera", "config"])
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    for item in items:  # (a value such as the camera's clock moves between two reads)
        assert any(line.startswith(f"{item.key} = ") for line in lines), item.key
    assert any(line.startswith("f-number = f/") for line in lines), lines


def _rig(*args: str, tmp_path: Path, virtual: bool) -> subprocess.CompletedProcess[str]:
    """Run ``rig`` in a fresh process: the virtual camera is chosen at gphoto2's import."""
    env = {k: v for k, v in os.environ.items() if k not in ("VCAMERADIR", "IOLIBS", "CAMLIBS")}
    if virtual:
        env["VCAMERADIR"] = str(tmp_path / "card")
    return subprocess.run(
        [sys.executable, "-m", "rig.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_without_a_camera_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    result = _rig("cameras", tmp_path=tmp_path, virtual=False)
    assert result.returncode == 3
    assert result.stderr.splitlines() == [f"rig: error: {NO_CAMERA}"]


@pytest.mark.slow
def test_without_a_camera_every_command_fails_the_same_way(tmp_path: Path) -> None:
    # One fresh process (gphoto2 imported without the virtual camera) runs each command
    # through rig's real entry point and reports exit code and stderr.
    commands = [
        ["camera", "summary"],
        ["camera", "config", "iso"],
        ["camera", "shoot", "-o", str(tmp_path / "out")],
        ["camera", "preview", "-o", str(tmp_path / "p.jpg")],
    ]
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from rig.cli import main
        report = []
        for argv in {commands!r}:
            sys.argv = ["rig", *argv]
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code
            report.append([code, err.getvalue()])
        print(json.dumps(report))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VCAMERADIR", "IOLIBS", "CAMLIBS")}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for args, (code, stderr) in zip(commands, json.loads(out.stdout), strict=True):
        assert code == 3, args
        assert stderr.splitlines() == [f"rig: error: {NO_CAMERA}"], args
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_preview_refusal_is_one_line(tmp_path: Path) -> None:
    VirtualCameraFolder(tmp_path / "card", slot_bytes=8000)
    result = _rig(
        "camera", "preview", "-o", str(tmp_path / "p.jpg"), tmp_path=tmp_path, virtual=True
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "rig: error: Nikon DSC D750 on usb:001,001 cannot give a live-view preview frame: "
        "not supported by this camera"
    )


def test_a_date_the_camera_cannot_hold_is_refused_in_one_line(card: VirtualCameraFolder) -> None:
    """libgphoto2 keeps a date as a C int: 2200 overflowed inside python-gphoto2."""
    result = runner.invoke(app, ["camera", "config", "datetime", "2200-01-01 00:00:00"])
    assert isinstance(result.exception, ConfigValueError), result.exception
    assert "outside 1970-01-01 to 2038-01-19" in str(result.exception)


@pytest.mark.slow
def test_a_terminal_width_of_zero_still_shows_the_cameras(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``COLUMNS=0`` (some container and CI wrappers): the camera commands' console, made as
    their module loads, read it before the command line dropped it, and printed nothing."""
    VirtualCameraFolder(tmp_path / "card", slot_bytes=8000)
    monkeypatch.setenv("COLUMNS", "0")
    result = _rig("cameras", tmp_path=tmp_path, virtual=True)
    assert result.returncode == 0 and "usb:001,001" in result.stdout, result
