"""The options that ``stacker`` and ``rig`` both take, declared once: the same name, help and
choices in ``stacker stack --help`` as in ``rig shoot --help``: stacking, and where a live
preview page is served.

The choices come from the engine, which :mod:`stacker.options` checks them against, never
from a copy, and are shown as the option's placeholder, ``--align <similarity|translation|...>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer

from stacker.align import MODELS
from stacker.stack import INTERPOLATIONS, METHODS


def choices(values: Iterable[str]) -> str:
    """The placeholder of an option that takes one of ``values``: ``<linear|cubic>``."""
    return "<" + "|".join(values) + ">"


Method = Annotated[
    str,
    typer.Option(
        "--method",
        help="Merge method: pyramid (detail) or depthmap (smooth colour).",
        metavar=choices(METHODS),
    ),
]
Align = Annotated[
    str,
    typer.Option(
        "--align",
        help="How frames are aligned: a similarity copes with focus breathing.",
        metavar=choices(MODELS),
    ),
]
Reference = Annotated[
    str,
    typer.Option(
        "--reference",
        help="Result geometry: first, middle, last or a frame number (1 = the first).",
    ),
]
Interpolation = Annotated[
    str,
    typer.Option(
        "--interpolation",
        help="Resampling: linear, or cubic (keeps more pixel-level detail, slower).",
        metavar=choices(INTERPOLATIONS),
    ),
]
Host = Annotated[
    str, typer.Option("--host", help="Preview address; 0.0.0.0 lets other machines in.")
]
Port = Annotated[
    int, typer.Option("--port", min=0, max=65535, help="Preview port (0: any free one).")
]
