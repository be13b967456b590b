"""The shape the codebase keeps: the image engine never reaches into the rig, knows nothing of
the station's web API, and no function grows past a screenful and a half."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import ROOT

PACKAGES = ("stacker", "rig")
LONGEST = 100


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_no_function_is_longer_than_a_hundred_lines() -> None:
    long = []
    for package in PACKAGES:
        for path in _modules(package):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > LONGEST:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert not long, "split these into functions with names: " + ", ".join(long)


def test_the_stacker_never_imports_the_rig() -> None:
    imports = []
    for path in _modules("stacker"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            imports += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "rig"]
    assert not imports, imports


def test_the_stacker_knows_nothing_of_the_stations_api() -> None:
    routes = ("api/jog", "test-shot", "api/sessions")
    found = [
        f"{path.relative_to(ROOT)}: {route}"
        for path in (ROOT / "stacker").rglob("*")
        if path.is_file() and path.suffix in (".py", ".js", ".html", ".css")
        for route in routes
        if route in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not found, found
