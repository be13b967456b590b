"""Terminal summaries of a stack: one row per frame."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table
from rich.text import Text

from stacker.cliutil import one_line
from stacker.stack import Stacker


def summary_table(
    stacker: Stacker, numbers: Mapping[int, int] | None = None, total: int | None = None
) -> Table:
    """A table of every frame (numbered from 1, or by ``numbers``, each record's frame number
    as the user counts files): alignment score, scale, shift, gain, result; the title counts
    ``total`` frames given (else those added). Names and reasons are shown as they are: a
    frame named ``a[red]1.jpg`` was listed as ``a1.jpg``, one holding an escape sequence
    cleared the terminal (frames in a hot folder come from other devices)."""
    given = stacker.frames_added if total is None else total
    table = Table(title=f"{stacker.frames_merged} of {given} frames merged")
    for col in ("#", "frame", "score", "scale", "shift px", "gain", "result"):
        table.add_column(col, justify="right" if col != "result" and col != "frame" else "left")
    for r in stacker.records:
        m = r.matrix
        scale = (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) ** 0.5
        table.add_row(
            str((numbers or {}).get(r.index, r.index + 1)),
            Text(one_line(r.name)),
            f"{r.score:.3f}",
            f"{scale:.4f}",
            f"{m[0, 2]:+.1f},{m[1, 2]:+.1f}",
            "/".join(f"{g:.2f}" for g in r.gain),
            "merged"
            if r.merged
            else Text.assemble(("rejected", "red"), f": {one_line(r.reason or '')}"),
        )
    return table
