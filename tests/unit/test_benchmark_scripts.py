"""The benchmark scripts stay runnable from a fresh clone as benchmarks/README.md shows them:
each one loads and parses its options, the seed lists written there parse, and every raw result
the README cites is in the tree. (The scripts' figures are measured by hand, never here.)"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.commands import env

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "common.py")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_loads_and_takes_its_options(script: str) -> None:
    """A module it imports renamed, or an option declared twice, would end it before it ran."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True, text=True, env=env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower() or done.stdout.strip(), done.stdout


@pytest.fixture(scope="module")
def common() -> Iterator[ModuleType]:
    """``benchmarks/common.py``, imported as the scripts import it."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import common as module

        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("2026,7", [2026, 7]),
        ("5", [5]),
        ("1,2,...,6", [1, 2, 3, 4, 5, 6]),
        ("1,...,4", [1, 2, 3, 4]),
        ("1,3,...,9", [1, 3, 5, 7, 9]),
        ("2,4,...,9", [2, 4, 6, 8, 9]),
        ("1,2,...,4,10,12,...,16", [1, 2, 3, 4, 10, 12, 14, 16]),
    ],
)
def test_seed_lists_as_the_readme_writes_them(
    common: ModuleType, text: str, seeds: list[int]
) -> None:
    """``--seeds 1,2,...,48`` copied from the README stacked two seeds and then failed on
    ``int('...')``."""
    assert common.seed_list(text) == seeds


@pytest.mark.parametrize("text", ["...,5", "1,...", "3,...,1", "1,...,...,4", "a,b"])
def test_a_seed_list_that_cannot_be_read_is_refused(common: ModuleType, text: str) -> None:
    with pytest.raises((argparse.ArgumentTypeError, ValueError)):
        common.seed_list(text)


def test_every_seed_list_in_the_readme_reads(common: ModuleType) -> None:
    written = re.findall(r"--seeds ([0-9][0-9,.]*[0-9])", (BENCHMARKS / "README.md").read_text())
    assert len(written) > 10
    for text in written:
        assert common.seed_list(text), text


def test_every_raw_result_the_readme_cites_is_in_the_tree() -> None:
    text = (BENCHMARKS / "README.md").read_text()
    cited = set(re.findall(r"results/([\w.+-]+\.(?:json|png|jpg))", text))
    assert len(cited) > 50
    missing = sorted(name for name in cited if not (BENCHMARKS / "results" / name).is_file())
    assert not missing, missing
