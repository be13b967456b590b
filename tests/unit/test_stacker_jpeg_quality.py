"""``--jpeg-quality`` given for an output that is not a JPEG is said to change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stacker.cli import app

WARNING = "warning: --jpeg-quality 50 changes nothing: {} is not a JPEG"


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["stack", "{missing}", "-o", "{out}.tif"], "{out}.tif"),
        (["stack", "{missing}", "-o", "{out}.DNG"], "{out}.DNG"),
        (["watch", "{missing}", "-o", "{out}.png"], "{out}.png"),
        (["batch", "{missing}", "-o", "{out}", "--format", "tif"], "--format tif"),
    ],
)
def test_a_quality_for_another_format_is_one_warning(
    tmp_path: Path, args: list[str], shown: str
) -> None:
    """``stacker stack ... -o out.tif --jpeg-quality 50`` wrote the TIFF without a word: the
    quality asked for went nowhere."""
    names = {"missing": tmp_path / "missing", "out": tmp_path / "out"}
    args = [a.format(**names) for a in args]
    result = CliRunner().invoke(app, [*args, "--jpeg-quality", "50"])
    assert result.exception is not None  # no frames there: the warning came first
    lines = result.stderr.splitlines()
    assert lines[0].startswith(WARNING.format(shown.format(**names))), result.stderr
    assert sum("jpeg-quality" in line for line in lines) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "{out}.jpg", "--jpeg-quality", "50"],
        ["-o", "{out}.JPEG", "--jpeg-quality", "50"],
        ["-o", "{out}.tif"],
        ["-o", "{out}.tif", "--jpeg-quality", "0"],  # refused, by its own error
    ],
)
def test_no_warning_where_the_quality_is_used_or_not_given(tmp_path: Path, args: list[str]) -> None:
    args = [a.format(out=tmp_path / "out") for a in args]
    result = CliRunner().invoke(app, ["stack", str(tmp_path / "missing"), *args])
    assert result.exception is not None and "warning" not in result.stderr
