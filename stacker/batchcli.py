"""The terminal side of ``stacker batch``: checks, a live progress bar, the summary, exit codes.

Exit codes: 0 every stack done or up to date, 1 some stacks failed (see the report), 2 bad
input, 130 interrupted (what finished is kept; rerunning the command continues).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from stacker.batch import (
    StackJob,
    StackReport,
    check_outputs_ours,
    check_report,
    find_stacks,
    local_worker_limit,
    require_dask,
    run_batch,
    with_settings,
)
from stacker.cliutil import one_line, signals_as_ctrl_c, terminal_progress
from stacker.errors import StackerError
from stacker.io import OUTPUT_EXTENSIONS, is_raw_path


def _check(outdir: Path, output_format: str, options: dict[str, Any]) -> str:
    """Validate everything before a cluster starts; returns the output extension."""
    ext = "." + output_format.lower().lstrip(".")
    ext = ".tif" if ext == ".tiff" else ".jpg" if ext == ".jpeg" else ext
    if ext not in OUTPUT_EXTENSIONS:
        raise StackerError(f"--format {output_format}: use tif, png, jpg or dng")
    if not 1 <= options["jpeg_quality"] <= 100:
        raise StackerError(f"--jpeg-quality {options['jpeg_quality']}: use 1 to 100")
    if outdir.exists() and not outdir.is_dir():
        raise StackerError(f"{outdir}: is a file; give a folder for the batch's outputs")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackerError(f"{outdir}: cannot create the output folder ({exc.strerror})") from None
    return ext


def _check_dng_frames(jobs: list[StackJob], ext: str) -> None:
    """A DNG composite needs RAW frames: said once, before the cluster starts, rather than
    by every stack failing on its worker."""
    if ext != ".dng":
        return
    for job in jobs:
        if not is_raw_path(job.frames[0]):
            raise StackerError(
                f"--format dng: the stack in {job.folder} has {job.frames[0].suffix} frames, and "
                "a DNG composite needs RAW ones (NEF, CR2, ARW, DNG...); give --format tif, "
                "or choose the RAW frames with --pattern, e.g. '*.NEF'"
            )


def _report_line(rep: StackReport) -> str | None:
    """What the console says of a finished stack: a failure, or frames it was made without
    (only the report's columns told of those)."""
    if rep.status == "failed":
        return one_line(f"failed: {rep.name}: {rep.error}")
    if rep.unreadable or rep.rejected:
        return one_line(
            f"note: {rep.name}: stacked without {rep.unreadable or 0} unreadable and "
            f"{rep.rejected or 0} rejected frame(s) of {rep.frames}; see the report"
        )
    return None


def _first_state(scheduler: str | None, workers: int | None) -> str:
    """What the progress bar says before the first stack is handed out."""
    if scheduler is None:
        return "starting a local cluster"
    return f"waiting for {workers} worker(s)" if workers else f"connecting to {scheduler}"


def run_batch_command(
    roots: list[Path],
    outdir: Path,
    *,
    scheduler: str | None,
    workers: int | None,
    pattern: str | None,
    output_format: str,
    depth_maps: bool,
    report: Path | None,
    options: dict[str, Any],
) -> int:
    """Run ``stacker batch``; returns the exit code."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    require_dask()  # before any folder is made or searched
    if workers is not None and workers < 1:
        raise StackerError(f"--workers {workers}: give 1 or more")
    limit = local_worker_limit()
    if scheduler is None and workers is not None and workers > limit:
        raise StackerError(
            f"--workers {workers}: a local cluster on this machine's {os.cpu_count() or 1} cores "
            f"takes at most {limit} (each worker holds a whole stack in memory); "
            "give --scheduler to spread the batch over more machines"
        )
    ext = _check(outdir, output_format, options)
    console = Console(stderr=True)
    jobs = find_stacks(
        roots,
        outdir,
        ext=ext,
        pattern=pattern,
        depth_maps=depth_maps,
        on_note=lambda note: console.print(one_line(note), markup=False, soft_wrap=True),
    )
    _check_dng_frames(jobs, ext)
    jobs = with_settings(jobs, {**options, "format": ext, "depth_maps": depth_maps})
    report_path = report or outdir / "batch-report.jsonl"
    check_report(report_path, jobs)
    check_outputs_ours(jobs)
    todo = sum(not job.up_to_date() for job in jobs)
    where = f"stacking {todo} on {scheduler or 'a local cluster'}" if todo else "nothing to do"
    console.print(f"{len(jobs)} stacks, {len(jobs) - todo} up to date; {where}", markup=False)
    columns = (
        TextColumn("[bold]stacks"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
    )  # fmt: skip
    with terminal_progress(console, *columns) as progress:
        task = progress.add_task("batch", total=todo, state=_first_state(scheduler, workers))
        if scheduler is not None and workers:
            progress.console.print(f"waiting up to 2 minutes for {workers} worker(s) to join "
                                   f"{scheduler}", markup=False, soft_wrap=True)  # fmt: skip
        started = time.perf_counter()
        alone = [False]  # said once: the scheduler has no worker

        def on_progress(done: int, running: int, failed: int, skipped: int, n: int) -> None:
            minutes = max(time.perf_counter() - started, 1e-6) / 60.0
            state = f"{running} running, {failed} failed, {done / minutes:.1f} stacks/min"
            if n == 0 and scheduler is not None:
                state = "no worker yet"
                if not alone[0]:
                    alone[0] = True
                    progress.console.print(
                        f"no worker has joined {scheduler} yet: the stacks wait for one; start "
                        f"it with 'dask worker {scheduler}'",
                        markup=False, soft_wrap=True,
                    )  # fmt: skip
            progress.update(task, completed=done + failed, state=state)

        def on_report(rep: StackReport) -> None:
            if (said := _report_line(rep)) is not None:
                progress.console.print(said, markup=False, soft_wrap=True)

        with signals_as_ctrl_c():  # SIGTERM cancels as Ctrl-C does, with a report
            summary = run_batch(jobs, options, report_path, scheduler=scheduler,
                                workers=workers, on_progress=on_progress,
                                on_report=on_report)  # fmt: skip
    done, failed = summary.count("done"), summary.count("failed")
    line = (
        f"batch: {done} stacked, {failed} failed, {summary.count('skipped')} up to date in "
        f"{summary.seconds:.1f} s"
        + (f" on {summary.workers} workers" if todo else "")
        + f"; report {report_path}"
    )
    if summary.interrupted:
        cancelled = summary.count("cancelled")
        console.print(
            f"stacker: interrupted: {line}; {cancelled} cancelled, run the same command again "
            "to continue",
            markup=False,
            soft_wrap=True,
        )
        return 130
    print(line)
    return 1 if failed else 0
