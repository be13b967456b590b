"""Where the tests find the repository and the project's shared data (``../shared``)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the folder holding ``README.md`` and ``pyproject.toml``)."""


def _main_checkout(root: Path) -> Path:
    """The main checkout of a git worktree (``.git`` is then a file naming its gitdir)."""
    git = root / ".git"
    if git.is_file():
        text = git.read_text().strip()
        if text.startswith("gitdir:"):
            # <main>/.git/worktrees/<name>
            return Path(text.split(":", 1)[1].strip()).resolve().parents[2]
    return root


def shared_dir() -> Path | None:
    """``../shared`` beside the clone (as in CI), ``$STACKRIG_SHARED``, or beside the main
    checkout of this worktree; ``None`` where none exists."""
    candidates = [os.environ.get("STACKRIG_SHARED"), ROOT.parent / "shared"]
    candidates.append(_main_checkout(ROOT).parent / "shared")
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
