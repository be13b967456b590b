"""`stacker batch` on real Dask clusters: a LocalCluster of two worker processes, and a
`dask scheduler` with a `dask worker` started as separate processes on 127.0.0.1.

Each test runs the command as a user does (a subprocess) on a handful of small synthetic stacks.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rig.sim.bayer import write_raw_stack
from rig.sim.scene import SceneSpec, write_stack
from stacker.io import read_image
from tests.processes import free_port, interrupt

pytestmark = pytest.mark.slow  # clusters of worker processes on a shared machine
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def specimens(tmp_path_factory) -> Path:
    """tray1: three JPEG stacks; tray2: a RAW (DNG) stack and a stack of corrupt files."""
    root = tmp_path_factory.mktemp("specimens")
    for i in range(3):
        write_stack(root / "tray1" / f"s{i}", SceneSpec(width=200, height=150, seed=i), 4)
    write_raw_stack(root / "tray2" / "raw0", SceneSpec(width=200, height=150, seed=9,
                                                       bit_depth=16), 3)  # fmt: skip
    broken = root / "tray2" / "broken"
    broken.mkdir()
    for k in range(3):
        (broken / f"f{k}.jpg").write_bytes(b"\xff\xd8 not a jpeg %d" % k)  # not copies
    return root


def batch(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stacker.cli", "batch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def rows(path: Path) -> dict[str, dict]:
    return {r["name"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_local_cluster_of_two_workers_stacks_reports_and_resumes(
    specimens: Path, tmp_path: Path
) -> None:
    # A copy of its own: this test moves a frame's time ahead and removes a stack, which made
    # a later test in the same process find a stack out of date.
    specimens = Path(shutil.copytree(specimens, tmp_path / "specimens"))
    out = tmp_path / "out"
    proc = batch(specimens, "-o", out, "--workers", "2")
    assert proc.returncode == 1, proc.stderr  # one stack failed, the others went on
    assert "failed: tray2-broken: only 0 usable frame(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "batch: 4 stacked, 1 failed, 0 up to date" in proc.stdout
    report = rows(out / "batch-report.jsonl")
    assert set(report) == {"tray1-s0", "tray1-s1", "tray1-s2", "tray2-raw0", "tray2-broken"}
    assert len({r["worker"] for r in report.values()}) == 2  # both workers took stacks
    for name in ("tray1-s0", "tray1-s1", "tray1-s2", "tray2-raw0"):
        r = report[name]
        assert r["status"] == "done" and r["merged"] == r["frames"] and r["rejected"] == 0
        assert r["seconds"] > 0 and 20 < r["peak_memory_mb"] < 2000
        assert [Path(p).name for p in r["outputs"]] == [f"{name}.tif", f"{name}-depth.png",
                                                       f"{name}-depth-preview.jpg",
                                                       f"{name}-depth.json"]  # fmt: skip
        assert read_image(out / f"{name}.tif").shape[2] == 3
    assert report["tray2-broken"]["status"] == "failed" and not report["tray2-broken"]["outputs"]
    assert not list(out.glob(".*"))  # no temporaries

    # a rerun skips what is complete, and restacks what changed since
    later = time.time() + 5
    os.utime(specimens / "tray1" / "s1" / "frame_0002.jpg", (later, later))
    shutil.rmtree(specimens / "tray2" / "broken")
    proc = batch(specimens, "-o", out, "--workers", "2", "--report", out / "again.csv")
    assert proc.returncode == 0, proc.stderr
    assert "batch: 1 stacked, 0 failed, 3 up to date" in proc.stdout
    assert (out / "again.csv").read_text().startswith("name,status,frames,merged")
    with (out / "again.csv").open(newline="") as fh:
        again = list(csv.DictReader(fh))
    assert sorted((r["name"], r["status"]) == ("tray1-s1", "done") for r in again) == [
        False, False, False, True,
    ]  # fmt: skip


def test_a_rerun_with_other_options_restacks(specimens: Path, tmp_path: Path) -> None:
    """The README's two batch lines, one after the other: the second (--method depthmap) found
    every stack up to date and wrote nothing."""
    out = tmp_path / "out"
    first = batch(specimens / "tray1", "-o", out, "--workers", "1")
    assert "batch: 3 stacked, 0 failed, 0 up to date" in first.stdout, first.stderr
    other = batch(specimens / "tray1", "-o", out, "--workers", "1", "--method", "depthmap")
    assert "batch: 3 stacked, 0 failed, 0 up to date" in other.stdout, other.stderr
    again = batch(specimens / "tray1", "-o", out, "--workers", "1", "--method", "depthmap")
    assert "batch: 0 stacked, 0 failed, 3 up to date" in again.stdout, again.stderr
    assert "3 stacks, 3 up to date; nothing to do" in again.stderr  # no cluster was started
    assert " workers;" not in again.stdout
    (out / "batch-settings.jsonl").unlink()  # outputs of an older stackrig, with no record
    older = batch(specimens / "tray1", "-o", out, "--workers", "1")
    assert "batch: 0 stacked, 0 failed, 3 up to date" in older.stdout, older.stderr


def test_a_batch_killed_before_recording_a_restack_restacks_it_again(
    specimens: Path, tmp_path: Path
) -> None:
    """kill -9 (or a power cut) after a worker replaced a stack's outputs but before the batch
    recorded how they were made: a rerun with the options of the earlier record found the new
    outputs up to date, and kept a depthmap composite as the pyramid one."""
    out = tmp_path / "out"
    first = batch(specimens / "tray1" / "s0", "-o", out, "--workers", "1")
    assert "batch: 1 stacked" in first.stdout, first.stderr
    pyramid = read_image(out / "s0.tif")
    # The depthmap run dies at the moment it would record the stack it has just written.
    dies = (
        "import os, signal, sys; import stacker.batch as b; from stacker.cli import main; "
        "b.record_settings = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
        "sys.argv[0] = 'stacker'; main()"
    )
    killed = subprocess.run([sys.executable, "-c", dies, "batch", str(specimens / "tray1" / "s0"),
                             "-o", str(out), "--workers", "1", "--method", "depthmap"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    depthmap = read_image(out / "s0.tif")
    assert not np.array_equal(depthmap, pyramid)  # the outputs were replaced
    again = batch(specimens / "tray1" / "s0", "-o", out, "--workers", "1")
    assert "batch: 1 stacked, 0 failed, 0 up to date" in again.stdout, again.stderr
    assert np.array_equal(read_image(out / "s0.tif"), pyramid)


def test_pattern_chooses_which_frames_make_a_stack(specimens: Path, tmp_path: Path) -> None:
    """The README's ``--pattern '*.NEF'``: only the frames it matches, in either case, make a
    stack, and folders with none are no stacks (no test ran the option before)."""
    out = tmp_path / "out"
    proc = batch(specimens, "-o", out, "--pattern", "*.DNG", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "batch: 1 stacked, 0 failed, 0 up to date" in proc.stdout
    assert set(rows(out / "batch-report.jsonl")) == {"tray2-raw0"}


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the dask process exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_separate_dask_scheduler_and_worker_processes(specimens: Path, tmp_path: Path) -> None:
    """The batch starts before any worker has joined: it says so, waits, and stacks on the
    worker once it comes (it waited in silence, its bar at "starting the cluster")."""
    port, worker_port = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask.log"
    with open(logs, "w") as log:
        command = [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port)]
        scheduler = subprocess.Popen([*command, "--no-dashboard"], stdout=log, stderr=log)
        worker = proc = None
        try:
            wait_listening(port, scheduler)
            out = tmp_path / "out"
            proc = subprocess.Popen(
                [sys.executable, "-m", "stacker.cli", "batch", str(specimens / "tray1"), "-o",
                 str(out), "--scheduler", address, "--no-depth-maps", "--format", "png"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            errors = _drained(proc.stderr)
            said = _wait_for_line(errors, "no worker has joined", timeout=120)
            assert said == (f"no worker has joined {address} yet: the stacks wait for one; "
                            f"start it with 'dask worker {address}'")  # fmt: skip
            worker = subprocess.Popen([BIN / "dask", "worker", address, "--host", "127.0.0.1",
                                       "--worker-port", str(worker_port), "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard"],
                                      stdout=log, stderr=log)  # fmt: skip
            stdout = proc.stdout.read()
            assert proc.wait(timeout=300) == 0, "".join(errors) + logs.read_text()[-2000:]
            assert "batch: 3 stacked, 0 failed" in stdout
            report = rows(out / "batch-report.jsonl")
            assert {r["worker"] for r in report.values()} == {f"tcp://127.0.0.1:{worker_port}"}
            assert sorted(p.name for p in out.glob("*.png")) == ["s0.png", "s1.png", "s2.png"]
            # With --workers the batch waits for them, saying so, and goes on once they are there.
            again = batch(specimens / "tray1", "-o", tmp_path / "again", "--scheduler", address,
                          "--workers", "1", "--no-depth-maps", "--format", "png")  # fmt: skip
            assert again.returncode == 0, again.stderr
            assert f"waiting up to 2 minutes for 1 worker(s) to join {address}" in again.stderr
            assert "no worker has joined" not in again.stderr
            assert "batch: 3 stacked, 0 failed" in again.stdout
            assert worker.poll() is None and scheduler.poll() is None  # the cluster lives on
        finally:
            interrupt((proc, worker, scheduler))
            if proc is not None:
                proc.stdout.close()
                proc.stderr.close()


def _drained(stream) -> list[str]:
    """The lines of ``stream`` as they come, read on a thread so that a silent process fails
    the test instead of hanging it."""
    import threading

    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(stream), daemon=True).start()
    return lines


def _wait_for_line(lines: list[str], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if text in line:
                return line.strip()
        time.sleep(0.2)
    raise AssertionError(f"no line with {text!r} in {timeout} s: {lines}")


def test_no_scheduler_there_is_a_one_line_error(specimens: Path, tmp_path: Path) -> None:
    proc = batch(specimens / "tray1", "-o", tmp_path / "out", "--scheduler",
                 f"tcp://127.0.0.1:{free_port()}", timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("stacker: error: ")]
    assert "no Dask scheduler answers there" in line
    assert "\n\n" not in proc.stderr, proc.stderr  # the progress bar's end: a blank line, once
    for address in ("localhost", "http://127.0.0.1:8786"):  # were ValueError tracebacks
        proc = batch(specimens / "tray1", "-o", tmp_path / "out", "--scheduler", address)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"--scheduler {address}: not a scheduler address (" in proc.stderr


def test_options_no_stack_can_meet_are_refused_before_a_cluster_starts(
    specimens: Path, tmp_path: Path
) -> None:
    """--format dng over JPEG stacks failed every stack on its worker, each with advice to
    "write .tif"; --jpeg-quality 0 did not name the option."""
    proc = batch(specimens / "tray1", "-o", tmp_path / "out", "--format", "dng", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--format dng: the stack in " in proc.stderr and "give --format tif" in proc.stderr
    assert "local cluster" not in proc.stderr + proc.stdout
    proc = batch(specimens / "tray1", "-o", tmp_path / "out", "--jpeg-quality", "0")
    assert proc.returncode == 2 and "--jpeg-quality 0: use 1 to 100" in proc.stderr


def test_a_stack_made_without_an_unreadable_frame_says_so(tmp_path: Path) -> None:
    """Only the report's 'unreadable' column told that a frame was left out."""
    write_stack(tmp_path / "root" / "s", SceneSpec(width=200, height=150, seed=3), 3)
    (tmp_path / "root" / "s" / "zz_truncated.jpg").write_bytes(b"\xff\xd8 cut short")
    proc = batch(tmp_path / "root", "-o", tmp_path / "out", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "note: s: stacked without 1 unreadable and 0 rejected frame(s) of 4" in proc.stderr


def serve_on_loopback(reply: bytes | None) -> tuple[str, socket.socket]:
    """A server that takes every connection and sends ``reply`` at once (a web server's refusal
    of a request it cannot read), or nothing at all (``None``); its address and socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed by the test
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                if reply is not None:
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{listener.getsockname()[1]}", listener


def test_a_scheduler_address_where_another_server_answers_is_a_one_line_error(
    specimens: Path, tmp_path: Path
) -> None:
    """Another server on the port (a typo, a proxy, a web page): Dask read "HTTP/1.1" as a
    frame length and ended in a traceback trying to allocate 3 EiB; a server that took the
    connection and said nothing held the batch for ever (Dask waits for the handshake without
    a limit)."""
    web, web_socket = serve_on_loopback(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    silent, silent_socket = serve_on_loopback(None)
    try:
        command = [sys.executable, "-m", "stacker.cli", "batch", str(specimens / "tray1")]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        runs = {  # side by side, each into a folder of its own
            a: subprocess.Popen([*command, "-o", tmp_path / out, "--scheduler", a], **pipes)
            for a, out in ((web, "web"), (silent, "silent"))
        }
        ended = {address: proc.communicate(timeout=120) for address, proc in runs.items()}
    finally:
        web_socket.close()
        silent_socket.close()
    said = {
        web: "what answers there is not a Dask scheduler (",
        silent: "a server took the connection but no Dask scheduler answered within 30 s",
    }
    for address, (_, stderr) in ended.items():
        assert runs[address].returncode == 2 and "Traceback" not in stderr, stderr
        (line,) = [ln for ln in stderr.splitlines() if ln.startswith("stacker: error: ")]
        assert line.startswith(f"stacker: error: {address}: {said[address]}"), line


def test_without_dask_a_batch_is_one_line_and_touches_nothing(
    specimens: Path, tmp_path: Path
) -> None:
    """The README's first install has no Dask: the batch listed its stacks, then ended in a
    ModuleNotFoundError traceback with an empty report. Dask is hidden from this process."""
    script = "import sys; sys.modules['dask'] = None; from stacker.cli import main; main()"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", script, "batch", str(specimens / "tray1"), "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == (
        "stacker: error: stacker batch needs Dask: pip install 'stackrig[cluster]'"
    )
    assert not out.exists()


STACKS = 10


def _batch_with_a_stack_done(root: Path, out: Path, stacks: int) -> subprocess.Popen[str]:
    """``stacker batch`` of ``stacks`` synthetic stacks under ``root`` into ``out`` on one
    worker, once the first stack is reported: enough stacks, each long enough, that a Ctrl-C
    then lands while most still wait, however fast the machine."""
    for i in range(stacks):
        write_stack(root / f"s{i}", SceneSpec(width=640, height=480, seed=20 + i), 5)
    proc = subprocess.Popen([sys.executable, "-m", "stacker.cli", "batch", str(root), "-o",
                             str(out), "--workers", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    report = out / "batch-report.jsonl"
    deadline = time.monotonic() + 240
    while not (report.exists() and report.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no stack finished in time"
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_cancels_cleanly_and_a_rerun_finishes(tmp_path: Path, signum: int) -> None:
    """So does SIGTERM (a service manager stopping the batch): it ended the process with exit
    143, a leaked-semaphore warning and no report rows for the stacks it left."""
    root, out = tmp_path / "many", tmp_path / "out"
    report = out / "batch-report.jsonl"
    proc = _batch_with_a_stack_done(root, out, STACKS)
    # What a worker stopped in the middle of writing the last stack's composite leaves (seen
    # when the worker was busy writing as the signal came)
    (out / f".s{STACKS - 1}.tif.k9x2b7qd.tmp").write_bytes(b"II*\0")
    proc.send_signal(signum)  # SIGINT: what Ctrl-C sends to the command
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stacker: interrupted:" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr
    first = rows(report)
    done = {n for n, r in first.items() if r["status"] == "done"}
    assert done and len(done) < STACKS
    assert {r["status"] for n, r in first.items() if n not in done} == {"cancelled"}
    assert not list(out.glob(".*"))  # no torn output under a final name or as a temporary
    again = batch(root, "-o", out, "--workers", "1")
    assert again.returncode == 0, again.stderr
    second = rows(report)
    skipped = {n for n, r in second.items() if r["status"] == "skipped"}
    # a stack in flight at Ctrl-C, written whole before its worker stopped, is reported done
    assert done == skipped
    assert {n for n, r in second.items() if r["status"] == "done"} == set(first) - skipped


def test_a_second_ctrl_c_ends_the_batch_at_once_in_no_more_lines(tmp_path: Path) -> None:
    """A second Ctrl-C ends the batch at once (status 130); multiprocessing's resource tracker
    then freed the cluster's semaphores and warned of "leaked semaphore objects" in three lines
    of Python's warning format."""
    proc = _batch_with_a_stack_done(tmp_path / "many", tmp_path / "out", 6)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr


def test_folder_names_that_are_not_utf8_are_stacked_and_reported(tmp_path: Path) -> None:
    """Old archives and network shares hold names in Latin-1: Python keeps such bytes as
    surrogates, which Dask's messages could not carry (the task was lost with the connection to
    the scheduler) and the CSV report could not encode (a traceback mid-batch)."""
    root = tmp_path / "archive"
    name = os.fsdecode(b"caf\xe9 [1]")
    write_stack(root / name, SceneSpec(width=200, height=150, seed=3), 3)
    out = tmp_path / "out"
    proc = batch(root, "-o", out, "--workers", "1", "--report", out / "r.csv")
    assert proc.returncode == 0, proc.stderr
    assert "batch: 1 stacked, 0 failed" in proc.stdout
    assert read_image(out / f"{name}.tif").shape[2] == 3
    with (out / "r.csv").open(encoding="utf-8", newline="") as fh:
        (row,) = csv.DictReader(fh)
    assert (row["name"], row["status"], row["frames"]) == ("caf\\udce9 [1]", "done", "3")


def test_a_local_cluster_is_bounded_by_the_cores_and_the_stacks(
    specimens: Path, tmp_path: Path
) -> None:
    """``--workers 10000`` started ten thousand processes, each holding a stack in memory; and
    a local cluster never needs more processes than there are stacks to do."""
    out = tmp_path / "out"
    proc = batch(specimens / "tray1", "-o", out, "--workers", "10000")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("stacker: error: ")]
    assert f"--workers 10000: a local cluster on this machine's {os.cpu_count()} cores" in line
    assert "--scheduler" in line and not out.exists()
    two_cores = str(2 * (os.cpu_count() or 1))  # within the bound, more than the one stack
    proc = batch(specimens / "tray1" / "s0", "-o", out, "--workers", two_cores)
    assert proc.returncode == 0, proc.stderr
    assert "s on 1 workers" in proc.stdout
