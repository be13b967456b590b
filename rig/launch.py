"""The ``rig`` console script: :func:`stacker.launch.launch` of :mod:`rig.cli`."""

from __future__ import annotations

from stacker.launch import launch


def main() -> None:
    """The ``rig`` console script."""
    launch("rig.cli", "rig")
