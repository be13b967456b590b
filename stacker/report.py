"""Terminal summaries of a stack: one row per frame."""

from __future__ import annotations

from rich.table import Table

from stacker.stack import Stacker


def summary_table(stacker: Stacker) -> Table:
    """A table of every frame (numbered from 1): alignment score, scale, shift, gain, result."""
    table = Table(title=f"{stacker.frames_merged} of {stacker.frames_added} frames merged")
    for col in ("#", "frame", "score", "scale", "shift px", "gain", "result"):
        table.add_column(col, justify="right" if col != "result" and col != "frame" else "left")
    for r in stacker.records:
        m = r.matrix
        scale = (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) ** 0.5
        table.add_row(
            str(r.index + 1),
            r.name,
            f"{r.score:.3f}",
            f"{scale:.4f}",
            f"{m[0, 2]:+.1f},{m[1, 2]:+.1f}",
            "/".join(f"{g:.2f}" for g in r.gain),
            "merged" if r.merged else f"[red]rejected[/]: {r.reason}",
        )
    return table
