"""Terminal summaries of a stack: one row per frame."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from stacker.stack import Stacker


def summary_table(
    stacker: Stacker, numbers: Mapping[int, int] | None = None, total: int | None = None
) -> Table:
    """A table of every frame (numbered from 1, or by ``numbers``, each record's frame number
    as the user counts files): alignment score, scale, shift, gain, result; the title counts
    ``total`` frames given (else those added)."""
    given = stacker.frames_added if total is None else total
    table = Table(title=f"{stacker.frames_merged} of {given} frames merged")
    for col in ("#", "frame", "score", "scale", "shift px", "gain", "result"):
        table.add_column(col, justify="right" if col != "result" and col != "frame" else "left")
    for r in stacker.records:
        m = r.matrix
        scale = (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) ** 0.5
        table.add_row(
            str((numbers or {}).get(r.index, r.index + 1)),
            r.name,
            f"{r.score:.3f}",
            f"{scale:.4f}",
            f"{m[0, 2]:+.1f},{m[1, 2]:+.1f}",
            "/".join(f"{g:.2f}" for g in r.gain),
            "merged" if r.merged else f"[red]rejected[/]: {r.reason}",
        )
    return table
