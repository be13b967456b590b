"""The terminal view of a running session (rich).

On a terminal: a live panel with a progress bar (frames captured of planned), ETA, the focus
position, frames merged (and kept out), the last alignment score, and the latest warnings. When
the output is not a terminal (a log file, a CI job, a test): one plain line per captured frame,
per merged frame and per warning, so the log stays readable.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from rig.plan import format_position
from rig.session.events import SessionListener
from rig.session.journal import FrameEntry
from rig.session.state import SessionStatus
from rig.session.worker import StackJob, StackPreviews


def format_seconds(seconds: float | None) -> str:
    """``1:05`` style, or ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    s = round(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SessionDisplay(SessionListener):
    """Subscribe to a runner and show its progress; use as a context manager around ``run``."""

    def __init__(self, console: Console, *, title: str = "session") -> None:
        self.console = console
        self.title = title
        self._live: Live | None = None
        self._status: SessionStatus | None = None
        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),  # a folder name
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[merged]}"),
            console=console,
            expand=False,
        )
        self._task = self._progress.add_task(title, total=1, merged="")

    def attach(self, runner: Any) -> None:
        """Register this display's callbacks on ``runner`` (a SessionRunner)."""
        runner.subscribe(self)

    # ---------------------------------------------------------------- callbacks
    def on_status(self, status: SessionStatus) -> None:
        # Kept, not drawn: the live panel draws it at its next refresh. Drawn here, the capture
        # thread waited on the panel's lock, which its refresh holds while its write is held by
        # a terminal nobody reads (an ssh client asleep, Ctrl-S): the session stopped shooting.
        with self._lock:
            self._status = status

    def on_warning(self, message: str) -> None:
        if not self.console.is_interactive:
            self.console.print(f"warning: {message}", markup=False, highlight=False)

    def on_frame_captured(self, entry: FrameEntry) -> None:
        if not self.console.is_interactive:
            status = self._status
            total = status.counted.partition("/")[2] if status else "?"
            count = f"{entry.index}/{total}" if total else str(entry.index)
            units = status.units if status else "um"
            self.console.print(
                f"captured {count} at {format_position(entry.position, units)}: "
                + ", ".join(f.name for f in entry.files),
                markup=False,
                highlight=False,
            )

    def on_frame_merged(self, job: StackJob, record: Any, previews: StackPreviews) -> None:
        if not self.console.is_interactive and not job.replay:
            merged = getattr(record, "merged", True)
            score = getattr(record, "score", None)
            what = "merged" if merged else f"kept out ({getattr(record, 'reason', '')})"
            extra = f", alignment score {score:.3f}" if isinstance(score, float) else ""
            self.console.print(f"stacked {job.index}: {what}{extra}", markup=False, highlight=False)

    # ---------------------------------------------------------------- rendering
    def _current(self) -> Group | Text:
        """What the live panel shows now (on its refresh thread)."""
        with self._lock:
            status = self._status
        return Text(self.title) if status is None else self._render(status)

    def _render(self, status: SessionStatus) -> Group:
        merged = f"merged {status.merged}"
        if status.rejected:
            merged += f" (+{status.rejected} kept out)"
        if status.queued:
            merged += f", {status.queued} queued"
        self._progress.update(
            self._task, total=status.total, completed=status.captured, merged=merged
        )
        pos = format_position(status.position, status.units) if status.position is not None else "-"
        score = f"{status.last_score:.3f}" if status.last_score is not None else "-"
        line = Text.assemble(
            ("state ", "dim"),
            (status.state.value, "bold"),
            ("  frame ", "dim"),
            str(status.current_index or "-"),
            ("  position ", "dim"),
            pos,
            ("  align ", "dim"),
            score,
            ("  elapsed ", "dim"),
            format_seconds(status.elapsed_s),
            ("  ETA ", "dim"),
            format_seconds(status.eta_s),
        )
        parts: list[Any] = [self._progress, line]
        if status.message:
            parts.append(Text(status.message, style="cyan"))
        for w in status.warnings[-3:]:
            parts.append(Text(f"⚠ {w}", style="yellow"))
        return Group(*parts)

    # ---------------------------------------------------------------- context
    def __enter__(self) -> SessionDisplay:
        if self.console.is_interactive:
            self._live = Live(
                console=self.console,
                refresh_per_second=8,
                transient=False,
                get_renderable=self._current,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)  # drawn a last time, as it stands
            self._live = None
