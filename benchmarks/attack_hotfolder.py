"""The hot folder under the writes real software makes, and a hostile local user's files.

Runs the real ``stacker watch`` as a subprocess on a temporary folder, natively (inotify) and
with ``--poll`` in turn, ``--align none`` so that the composite does not depend on the order the
frames came in. While it watches, writer threads drop small textured frames of one synthetic
scene (JPEG, PNG, TIFF) in ways picked at random from the scenario kinds below, a dozen at once:

- plain slow writes, a chunk at a time; writes that stall mid-file (longer than ``--settle``
  natively; shorter when polled, where a stall longer than the settle window is a finished file
  by definition); write, close, then append the rest; a burst of frames at once;
- a temporary name then a rename (``.part``, ``.tmp``, ``~``, a hidden file, rsync's
  ``.name.XXXXXX``); a rename over a frame already there; a move in from a sibling folder; a
  hard link in; a card copy keeping an old mtime (``shutil.copy2``); a file set to its final
  size first and filled in place; one zero-filled, closed, then written;
- a frame deleted or truncated just after it appears, a frame rewritten in place with another
  image; RAW+JPEG pairs (a fake RAW never to be read) in either order, up to 1 s apart;
- hostile: links out of the folder to a marker image, a 2 GiB sparse file, ``/dev/zero`` and a
  FIFO (which nobody must open: the campaign checks by opening it for writing, which only
  succeeds while a reader has it open); a frame swapped for a link out after it appeared; a FIFO
  and a directory named like frames; names with a newline or bytes that are not UTF-8; a
  subfolder with frames; a frame written under the watch's output name, a temporary of it and a
  copy of the watch's own composite dropped in as a frame; a 2 GiB sparse "frame".

Every foreign image (link targets, the subfolder's frames, fake outputs) carries a marker: a
high-contrast checkerboard that a stack taking it would show. The watch ends by its idle timeout
or by SIGINT after the writers are done. A run is a *fault* if the watch hangs (60 s after the
writers), prints a traceback or any line that is not its own, exits other than 0 (2 with its
one-line refusal where an image was written under its output's name, which must stay as
written), takes more than 700 MB, if a FIFO outside was opened, if the frames merged are
fewer than the whole frames delivered or more than those plus the ones that may or may not
count (deleted or truncated early, renamed over while polled), if more files are unreadable
than the scenarios allow, if RAW partners are not skipped, or if the composite differs from
one made in-process with :class:`stacker.stack.Stacker` from exactly the whole frames (a
partial frame or a marker stacked). Prints a table per scenario kind and every fault with the
command that re-runs it.

With ``--preview`` the watch also serves its live preview (``--preview --port 0``; the address
is its first line, ``Live preview: URL``), and from then until it has exited it has company
(:class:`PreviewClients`). Well-behaved: three event-stream readers reconnecting with
``Last-Event-ID`` as a browser does, two clients fetching the composite, last and depth
images, the state, the page and 100 % crops over and over, and every ``--browser-every``-th run
the page in headless Chromium. Hostile or broken: event streams and a pipelined flood of image
requests that are never read (a tiny receive buffer), an event stream half-closed by its
client, a dozen slowloris connections (headers a byte every 0.5 s), a few hundred connections
opened and dropped (at once, reset, after half a request, half an image or one event,
half-closed after a whole request), and a round of odd requests again and again: paths that
climb out of ``/static/`` and ``/img/`` towards a marked file and a marker image beside the
folder, a frame in it, the server's source and ``/etc/passwd`` (plain, ``%2e%2e``, ``%2f``,
``%5c``, double-encoded, absolute), paths of 8 to 70 KB, with NUL and non-UTF-8 bytes, every
method on every route, huge and folded headers, foreign and odd ``Host`` names, ``Range``
requests. Also a fault, then: an answer 5xx (503 "not now" aside), none within 10 s, a
foreign file's bytes in any answer, a 2xx to a foreign ``Host``, a 206 that is not those bytes,
an image that is not a whole JPEG of its announced length, a slowloris connection open past
15 s, a well-behaved client failing while the preview is up, an event stream or the page
whose last state is not the watch's final merged count and ``finished``, and an exit more
than 5 s after SIGINT or after the event streams ended.

    python benchmarks/attack_hotfolder.py --runs 30 --seed 1
    python benchmarks/attack_hotfolder.py --runs 1 --first 7 --seed 1      # re-run run 7
    python benchmarks/attack_hotfolder.py --runs 4 --only hardlink,pause   # some kinds alone
    python benchmarks/attack_hotfolder.py --runs 12 --seed 5 --preview     # with its preview

Last result (``--runs 30 --first 100 --seed 3``, about 7 minutes, after the first two fixes
below; the third landed part-way): 30 runs (15 inotify, 15 polled; 7 ended by SIGINT), 343
scenarios, peak memory 97 MB, no hang,
traceback or foreign line, no marker or partial frame in any composite; one fault: run 103
(polled) took a fake RAW alone although its JPEG came 0.9 s later, within the pair wait (the
RAW read and reported unreadable). Not reproduced with pairs alone (33 polled pairs, runs
300-302); the run also flipped a name between a frame and a FIFO every few tens of ms. Cause,
found since and fixed: the JPEG got the inode number of a frame taken and just renamed over
(``rename_over``), and the poll reported it as that frame renamed, so it was never taken.

Last result with the preview (``--runs 12 --seed 5 --preview``, 2026-12-02, 2-core x86-64
shared with other work, 3 minutes): 12 runs (6 polled, 3 ended by SIGINT), 143 scenarios, peak
memory 116 MB (97 MB without the preview), at most 339 files open, exit at most 1.4 s after the
preview's stop (median 1.2 s), slowloris connections closed after at most 11 s; 2564 images,
543 crops and 635 states fetched and whole, 2267 events read by 36 streams, 9311 odd requests
(2912 traversals: never a foreign byte), 4757 connections dropped and 24 bursts of 300 (past the
server's 256: 107 well-behaved requests answered 503), no traceback, no composite changed; one
fault not understood: in run 8 the Chromium page was not "live" within 30 s (its event-stream
readers agreed with the watch; not again in 8 re-runs of run 8, once more in an earlier
re-run, at the read of ``#merged`` after the exit).
Found by ``--preview`` and fixed: the stop left a client that read nothing to uvicorn's graceful
timeout, whose end cancelled its request with a traceback (every run, exits of 2.2 s); event
streams ended without the state the watch stopped at (pages left saying "running", every run
ended by the idle timeout); a frame named by non-UTF-8 bytes made every ``/api/state`` a 500
with a traceback (4 of 12 runs).

Faults found and fixed earlier: a 2 GiB file named ``.jpg`` was read whole into memory at each
look (2.1 GB); a FIFO put in place of a frame just after it was found complete blocked the
watch for good (the check for a result of ours opened it); a frame hard-linked in was dropped
when the idle timeout was shorter than the close grace.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks import common  # noqa: E402
from benchmarks.fuzz_station import parse_response  # noqa: E402
from rig.sim.scene import SceneSpec, SyntheticStack  # noqa: E402
from stacker.io import read_image  # noqa: E402
from stacker.stack import Stacker  # noqa: E402

SETTLE = 0.3
PAIR_WAIT = 2.0  # the watch's default
MARK = (slice(90, 150), slice(130, 190))  # where marker images carry their checkerboard
MEMORY_LIMIT_MB = 700


# -- frames -------------------------------------------------------------------------------------


def render_pool(n: int = 8) -> list[np.ndarray]:
    spec = SceneSpec(width=320, height=240, seed=7, depth_um=600.0, noise_sigma=1.0)
    return [np.ascontiguousarray(f.image) for f in SyntheticStack(spec, n)]


def marked(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    ys, xs = np.indices((60, 60))
    out[MARK] = (((ys // 3 + xs // 3) % 2) * 255)[..., None].astype(out.dtype)
    return out


def encode(image: np.ndarray, ext: str, quality: int = 95) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, image, params)
    assert ok
    return buf.tobytes()


@dataclass
class Ledger:
    """What a run's writers delivered: frames that must be stacked once, ones that may be,
    how many unreadable reports and skipped RAW partners to allow or expect."""

    required: list[bytes] = field(default_factory=list)
    optional: int = 0
    unreadable_allowed: int = 0
    pairs: int = 0
    fifos: list[Path] = field(default_factory=list)
    squatted: bytes | None = None  # an image another program wrote under the output's name
    lock: threading.Lock = field(default_factory=threading.Lock)

    def must(self, data: bytes) -> None:
        with self.lock:
            self.required.append(data)

    def may(self, count: int = 1, unreadable: int = 0) -> None:
        with self.lock:
            self.optional += count
            self.unreadable_allowed += unreadable


@dataclass
class Ctx:
    folder: Path
    outside: Path  # a sibling of the folder on the same file system
    output: Path
    polling: bool
    rng: random.Random
    pool: list[np.ndarray]
    ledger: Ledger
    names: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def name(self, stem: str, ext: str) -> str:
        with self.lock:
            self.names[stem] += 1
            return f"{stem}_{self.names[stem]:03d}{ext}"

    def frame(self, rng: random.Random, ext: str | None = None) -> tuple[bytes, str]:
        ext = ext or rng.choice([".jpg", ".jpg", ".png", ".tif"])
        return encode(self.pool[rng.randrange(len(self.pool))], ext, rng.choice([85, 92, 95])), ext

    def marker(self, ext: str = ".jpg") -> bytes:
        return encode(marked(self.pool[0]), ext)


def write_chunks(path: Path, data: bytes, rng: random.Random, *, pause: float = 0.0) -> None:
    """Write ``data`` a chunk at a time (FTP/SMB), optionally stalling ``pause`` s once."""
    chunk = rng.choice([1024, 4096, 16384])
    stall_at = rng.randrange(1, max(2, len(data) // chunk))
    with path.open("wb") as fh:
        for i, start in enumerate(range(0, len(data), chunk)):
            fh.write(data[start : start + chunk])
            fh.flush()
            time.sleep(rng.uniform(0.0, 0.02))
            if pause and i == stall_at:
                time.sleep(pause)


# -- scenarios ----------------------------------------------------------------------------------


def s_slow(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    write_chunks(c.folder / c.name("slow", ext), data, r)
    c.ledger.must(data)


def s_pause(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    pause = r.uniform(0.1, 0.8) * SETTLE if c.polling else r.uniform(SETTLE + 0.1, 2.5)
    write_chunks(c.folder / c.name("pause", ext), data, r, pause=pause)
    c.ledger.must(data)


def s_append(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    path = c.folder / c.name("append", ext)
    cut = int(len(data) * r.uniform(0.3, 0.8))
    path.write_bytes(data[:cut])
    time.sleep(r.uniform(0.0, 0.4) * (SETTLE if c.polling else 1.0))
    with path.open("ab") as fh:
        fh.write(data[cut:])
    c.ledger.must(data)


def s_temp_rename(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    final = c.name("tmpren", ext)
    temp = r.choice(
        [final + ".part", final + ".tmp", final + "~", "." + final, final + ".crdownload",
         f".{final}.{r.randrange(16**6):06x}", "~$" + final]
    )  # fmt: skip
    write_chunks(c.folder / temp, data, r)
    os.rename(c.folder / temp, c.folder / final)
    c.ledger.must(data)


def s_rename_over(c: Ctx, r: random.Random) -> None:
    """A re-export: a frame replaced by an atomic rename (stacked once, natively)."""
    data, ext = c.frame(r, ".jpg")
    final = c.folder / c.name("over", ext)
    write_chunks(final, data, r)
    time.sleep(r.uniform(0.0, 1.5))
    again = encode(read_image_bytes(data), ".jpg", 80)
    (c.folder / ("." + final.name + ".new")).write_bytes(again)
    os.rename(c.folder / ("." + final.name + ".new"), final)
    c.ledger.must(data)  # the composite is compared with the first; the second is near-identical
    if c.polling:
        c.ledger.may()  # a poll cannot tell this from delete-then-new (documented)


def s_move_in(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    name = c.name("movein", ext)
    write_chunks(c.outside / name, data, r)
    os.rename(c.outside / name, c.folder / name)
    c.ledger.must(data)


def s_hardlink(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    name = c.name("hlink", ext)
    (c.outside / name).write_bytes(data)
    os.link(c.outside / name, c.folder / name)
    c.ledger.must(data)
    if r.random() < 0.5:  # and a second name of it in the folder: stacked once
        time.sleep(r.uniform(0.0, 1.0))
        os.link(c.folder / name, c.folder / c.name("hlink2", ext))


def s_card_copy(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    name = c.name("card", ext)
    src = c.outside / ("card_" + name)
    src.write_bytes(data)
    past = time.time() - r.uniform(3600, 86400 * 400)
    os.utime(src, (past, past))
    shutil.copy2(src, c.folder / name)
    c.ledger.must(data)


def s_prealloc(c: Ctx, r: random.Random) -> None:
    """Set to the final size at once, then filled in place (Samba, download managers)."""
    data, ext = c.frame(r)
    path = c.folder / c.name("prealloc", ext)
    gap = 0.6 * SETTLE if c.polling else 0.15
    with path.open("wb") as fh:
        if r.random() < 0.5:
            os.posix_fallocate(fh.fileno(), 0, len(data))
        else:
            fh.truncate(len(data))
        fh.flush()
        chunk = max(4096, len(data) // 6)
        for start in range(0, len(data), chunk):
            fh.write(data[start : start + chunk])
            fh.flush()
            time.sleep(r.uniform(0.0, gap))
    c.ledger.must(data)


def s_zero_then_write(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    path = c.folder / c.name("zeroed", ext)
    path.write_bytes(bytes(len(data)))
    time.sleep(r.uniform(0.0, 0.8))
    with path.open("r+b") as fh:
        fh.write(data)
    c.ledger.must(data)


def s_delete_soon(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    path = c.folder / c.name("deleted", ext)
    path.write_bytes(data)
    time.sleep(r.uniform(0.0, 0.6))
    path.unlink()
    c.ledger.may(1, unreadable=1)


def s_truncate_after(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r)
    path = c.folder / c.name("truncated", ext)
    path.write_bytes(data)
    time.sleep(r.uniform(0.0, 0.6))
    os.truncate(path, len(data) // 2)
    c.ledger.may(1, unreadable=1)


def s_rewrite(c: Ctx, r: random.Random) -> None:
    """Rewritten in place with another image (re-encoded): the name is stacked once."""
    data, ext = c.frame(r, ".jpg")
    path = c.folder / c.name("rewrite", ext)
    path.write_bytes(data)
    time.sleep(r.uniform(0.0, 1.5))
    path.write_bytes(encode(read_image_bytes(data), ".jpg", 75))
    c.ledger.must(data)


def s_pair(c: Ctx, r: random.Random) -> None:
    data, _ = c.frame(r, ".jpg")
    stem = c.name("IMG", "")
    raw = c.folder / f"{stem}.CR2"
    jpg = c.folder / f"{stem}.JPG"
    fake_raw = bytes(r.getrandbits(8) for _ in range(64)) * 512
    first, second = [(raw, fake_raw), (jpg, data)][:: r.choice([1, -1])]
    write_chunks(first[0], first[1], r)
    time.sleep(r.uniform(0.0, 1.0))
    write_chunks(second[0], second[1], r)
    c.ledger.must(data)
    with c.ledger.lock:
        c.ledger.pairs += 1


def s_burst(c: Ctx, r: random.Random) -> None:
    frames = [c.frame(r) for _ in range(r.randint(4, 9))]
    threads = [
        threading.Thread(target=Path.write_bytes, args=(c.folder / c.name("burst", ext), data))
        for data, ext in frames
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for data, _ in frames:
        c.ledger.must(data)


def s_link_out(c: Ctx, r: random.Random) -> None:
    kind = r.choice(["marker", "sparse", "zero", "fifo"])
    target = c.outside / c.name(f"target_{kind}", ".jpg")
    if kind == "marker":
        target.write_bytes(c.marker())
    elif kind == "sparse":
        with target.open("wb") as fh:
            fh.truncate(2 << 30)
    elif kind == "fifo":
        os.mkfifo(target)
        c.ledger.fifos.append(target)
    link = c.folder / c.name(f"linkout_{kind}", ".jpg")
    link.symlink_to("/dev/zero" if kind == "zero" else target)


def s_swap_link(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r, ".jpg")
    path = c.folder / c.name("swapped", ext)
    target = c.outside / c.name("swap_target", ".jpg")
    target.write_bytes(c.marker())
    path.write_bytes(data)
    time.sleep(r.uniform(0.0, 0.8))
    tmp = c.folder / ("." + path.name + ".lnk")
    tmp.symlink_to(target)
    os.rename(tmp, path)  # the frame replaced by a link out in one step
    c.ledger.may(1, unreadable=1)


def s_fifo_in(c: Ctx, r: random.Random) -> None:
    os.mkfifo(c.folder / c.name("fifo", ".jpg"))


def s_fifo_swap(c: Ctx, r: random.Random) -> None:
    """A name that flips between a frame and a FIFO, renamed in each time, for two seconds."""
    data, ext = c.frame(r, ".jpg")
    path = c.folder / c.name("flip", ext)
    tmp, fifo = c.folder / f".{path.name}.tmp", c.folder / f".{path.name}.fifo"  # one a flip
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        tmp.write_bytes(data)
        os.rename(tmp, path)
        time.sleep(r.uniform(0.0, 0.05))
        os.mkfifo(fifo)
        os.rename(fifo, path)
        time.sleep(r.uniform(0.0, 0.05))
    # Renamed over, a frame is stacked once; polled, each file renamed in may be a new one.
    c.ledger.may(40 if c.polling else 1, unreadable=1)


def s_dir_named(c: Ctx, r: random.Random) -> None:
    d = c.folder / c.name("dirframe", ".jpg")
    d.mkdir()
    (d / "inside.jpg").write_bytes(c.marker())


def s_odd_names(c: Ctx, r: random.Random) -> None:
    data, ext = c.frame(r, ".jpg")
    stem = c.name("odd", "")
    raw_name = r.choice([f"{stem}\nline", f"{stem}\xe9", f"{stem} \t"]).encode()
    if r.random() < 0.5:
        raw_name = stem.encode() + b"\xff\xfe"
    path = os.path.join(os.fsencode(c.folder), raw_name + ext.encode())
    with open(path, "wb") as fh:
        fh.write(data)
    c.ledger.must(data)


def s_subfolder(c: Ctx, r: random.Random) -> None:
    sub = c.folder / c.name("session", "")
    sub.mkdir()
    for i in range(r.randint(1, 3)):
        write_chunks(sub / f"sub_{i}.jpg", c.marker(), r)


def s_output_name(c: Ctx, r: random.Random) -> None:
    """Someone else writes under the watch's output name (or a temporary of it), then a frame
    comes, so the watch writes its composite after them."""
    if c.output.parent == c.folder:
        name = r.choice([c.output.name, f".{c.output.name}.{r.randrange(16**8):08x}.tmp"])
        data = encode(marked(c.pool[0]), c.output.suffix)
        (c.folder / name).write_bytes(data)
        if name == c.output.name:  # a frame to keep: the watch refuses to write over it
            with c.ledger.lock:
                c.ledger.squatted = data
        time.sleep(0.5)
    s_slow(c, r)


def s_our_output(c: Ctx, r: random.Random) -> None:
    """The watch's own composite, copied in as if it were a frame: never stacked."""
    deadline = time.monotonic() + 10
    while not c.output.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        shutil.copy(c.output, c.folder / c.name("result_copy", c.output.suffix))


def s_huge(c: Ctx, r: random.Random) -> None:
    with (c.folder / c.name("huge", ".jpg")).open("wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(2 << 30)
    c.ledger.may(0, unreadable=1)


SCENARIOS: dict[str, Callable[[Ctx, random.Random], None]] = {
    "slow": s_slow, "pause": s_pause, "append": s_append, "temp_rename": s_temp_rename,
    "rename_over": s_rename_over, "move_in": s_move_in, "hardlink": s_hardlink,
    "card_copy": s_card_copy, "prealloc": s_prealloc, "zero_then_write": s_zero_then_write,
    "delete_soon": s_delete_soon, "truncate_after": s_truncate_after, "rewrite": s_rewrite,
    "pair": s_pair, "burst": s_burst, "link_out": s_link_out, "swap_link": s_swap_link,
    "fifo_in": s_fifo_in, "fifo_swap": s_fifo_swap, "dir_named": s_dir_named,
    "odd_names": s_odd_names,
    "subfolder": s_subfolder, "output_name": s_output_name, "our_output": s_our_output,
    "huge": s_huge,
}  # fmt: skip


def read_image_bytes(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


# -- the live preview and its clients (--preview) -----------------------------------------------

STATIC_DIR = ROOT / "stacker" / "preview" / "static"
PROMPT_EXIT_S = 5.0
"""The watch must be gone this long after its preview began to stop (or after SIGINT)."""
HEADER_LIMIT_S = 15.0
"""A connection dribbling its headers must be closed by then (the server allows 10 s)."""
ANSWER_S = 10.0
"""A probe neither answered nor closed within this is a hang."""
SSE_READERS = 3


def raw_request(target: bytes, method: bytes = b"GET", host: bytes = b"127.0.0.1",
                extra: bytes = b"") -> bytes:  # fmt: skip
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (
        method, target, host, extra)  # fmt: skip


def exchange(port: int, raw: bytes) -> bytes | None:
    """Send ``raw`` on a connection of its own and read until the server closes it (a HEAD's
    answer: until its headers end); None if it neither answered nor closed within ANSWER_S."""
    head = raw.startswith(b"HEAD ")
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S) as s:
        try:
            s.sendall(raw)
            while chunk := s.recv(65536):
                data += chunk
                if head and b"\r\n\r\n" in data:
                    break
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused mid-request (a header too large): what came before counts
    return data


def foreign_files(ctx: Ctx) -> dict[str, Path]:
    """Files no route may serve: a marked text file and a marker image beside the folder, a
    frame in the folder, the server's own source and /etc/passwd."""
    (ctx.outside / "foreign.txt").write_bytes(b"stackrig foreign " + os.urandom(16).hex().encode())
    (ctx.outside / "foreign.jpg").write_bytes(ctx.marker())
    return {
        "foreign.txt": ctx.outside / "foreign.txt",
        "foreign.jpg": ctx.outside / "foreign.jpg",
        "a frame": ctx.folder / "existing_001.jpg",
        "server.py": STATIC_DIR.parent / "server.py",
        "/etc/passwd": Path("/etc/passwd"),
    }


def traversal_targets(files: dict[str, Path]) -> list[bytes]:
    """Every way of naming each of ``files`` from the page's routes we thought of."""
    out: list[bytes] = []
    for path in files.values():
        rel = os.path.relpath(path, STATIC_DIR).encode()
        absolute = str(path).encode()
        out += [
            b"/static/" + rel,
            b"/static/" + rel.replace(b"..", b"%2e%2e"),
            b"/static/" + rel.replace(b"/", b"%2f"),
            b"/static/" + rel.replace(b"/", b"%5c"),
            b"/static/" + rel.replace(b"..", b"%252e%252e"),
            b"/static/" + rel.replace(b"../", b"..;/"),
            b"/static/" + rel.replace(b"../", b"....//"),
            b"/static/" + absolute,
            b"/static/" + absolute.replace(b"/", b"%2f"),
            b"/static/app.js/../" + rel,
            b"/img/" + rel,
            b"/img/" + rel.replace(b"/", b"%2f"),
            b"/" + b"../" * 12 + absolute.lstrip(b"/"),
            b"/%2e%2e" * 12 + absolute,
        ]
    return out


def probe_requests(files: dict[str, Path]) -> list[tuple[str, bytes]]:
    """A broken or hostile client's requests, each (kind, raw bytes)."""
    out = [("traversal", raw_request(t)) for t in traversal_targets(files)]
    odd = [b"/" + b"a" * 8000, b"/static/" + b"a" * 15000, b"/" + b"a" * 70000,
           b"/static/app.js\x00.png", b"/%00", b"/static/app.js%00", b"/img/composite\x00.jpg",
           b"/static/\xff\xfe.js", b"/img/\xff.jpg", b"/static/%ff%fe", b"/api/state?since=\xff",
           b"/api/state?since=%ff", b"*", b"http://evil.example/", b"//", b"/static",
           b"/static/", b"/static/../static/app.js", b"/api/state?since=" + b"9" * 40,
           b"/api/crop?x=nan&y=0.5", b"/api/crop?x=1e999&y=0.5", b"/api/crop?x=0.5&y=0.5&size="
           + b"9" * 30, b"/api/events?since=-1", b"/img/.jpg", b"/img/composite.jpg/",
           b"/img/composite.jpg?" + b"x" * 5000, b"/api/%ff", b"/api/state/../state"]  # fmt: skip
    out += [("odd path", raw_request(t)) for t in odd]
    for route in [b"/", b"/api/state", b"/api/events", b"/img/composite.jpg", b"/static/app.js",
                  b"/api/crop?x=0.5&y=0.5"]:  # fmt: skip
        for method in [b"HEAD", b"OPTIONS", b"POST", b"PUT", b"DELETE", b"PATCH", b"TRACE",
                       b"BREW"]:  # fmt: skip
            out.append(("method", raw_request(route, method, extra=b"Content-Length: 0\r\n")))
    out += [("method", raw_request(b"/api/state", b"POST", extra=b"Content-Length: 9000000\r\n")),
            ("method", raw_request(b"/img/last.jpg", b"POST", extra=b"Transfer-Encoding: "
                                   b"chunked\r\n") + b"ffff\r\n" + b"x" * 65535)]  # fmt: skip
    big = [b"X-Big: " + b"a" * 15000 + b"\r\n", b"X-Big: " + b"a" * 17000 + b"\r\n",
           b"X-Big: " + b"a" * 100000 + b"\r\n", b"".join(b"X-%d: v\r\n" % i for i in range(600)),
           b"X-Fold: a\r\n b\r\n", b"X-Nul: a\x00b\r\n",
           b"Cookie: " + b"c=1; " * 3000 + b"\r\n"]  # fmt: skip
    out += [("header", raw_request(b"/img/composite.jpg", extra=h)) for h in big]
    foreign = [b"evil.example", b"evil.example:80", b"127.0.0.1.evil.example", b"localhost.evil",
               b"", b"0x7f.1"]  # fmt: skip
    odd_hosts = [b"localhost:evil", b"[::1", b"127.0.0.1:99999", b"LOCALHOST."]  # loopback names
    for route in [b"/", b"/api/state", b"/img/composite.jpg", b"/static/app.js"]:
        out += [("host", raw_request(route, host=h)) for h in foreign]
        out += [("header", raw_request(route, host=h)) for h in odd_hosts]
    out.append(("host", b"GET /api/state HTTP/1.0\r\n\r\n"))
    ranges = [b"bytes=0-99", b"bytes=100-50", b"bytes=-10", b"bytes=99999999-", b"bytes=0-",
              b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(300)), b"bytes=a-b",
              b"items=0-5", b"bytes=0-99,50-150"]  # fmt: skip
    for route in [b"/static/app.js", b"/img/composite.jpg", b"/api/state"]:
        out += [("range", raw_request(route, extra=b"Range: " + r + b"\r\n")) for r in ranges]
    return out


def probe_fault(
    kind: str, raw: bytes, data: bytes | None, forbidden: dict[str, bytes]
) -> str | None:
    """What is wrong with ``data``, the answer to probe ``raw``; None if nothing."""
    if data is None:
        return f"no answer and not closed within {ANSWER_S:.0f} s"
    for name, snippet in forbidden.items():
        if snippet in data:
            return f"served bytes of {name}"
    if not data:
        return None  # closed without a word: refused at the HTTP layer
    status, headers, body = parse_response(data)
    target = raw.split(b" ", 2)[1] if raw.count(b" ") >= 2 else b""
    if status == -1:
        return f"not an HTTP answer: {data[:80]!r}"
    if status >= 500 and status != 503:
        return f"answered {status}: {body[:160]!r}"
    if kind == "host" and 200 <= status < 300:
        return f"answered {status} to a Host that is not this machine"
    if (
        status == 206
        and target == b"/static/app.js"
        and "multipart" not in headers.get("content-type", "")
    ):
        first, last = map(int, headers["content-range"].split()[1].split("/")[0].split("-"))
        if body != (STATIC_DIR / "app.js").read_bytes()[first : last + 1]:
            return f"206 of {headers['content-range']} is not those bytes of app.js"
    if status == 200 and target.startswith(b"/img/") and not raw.startswith(b"HEAD"):
        return jpeg_fault(body, headers)
    return None


def jpeg_fault(body: bytes, headers: Any) -> str | None:
    """Why ``body`` is not a whole JPEG of its announced length; None if it is one."""
    length = headers.get("content-length")
    if length is not None and int(length) != len(body):
        return f"image of {len(body)} bytes, announced {length}"
    if not (body.startswith(b"\xff\xd8") and body.rstrip(b"\x00").endswith(b"\xff\xd9")):
        return f"image of {len(body)} bytes is not a whole JPEG"
    if cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) is None:
        return f"image of {len(body)} bytes does not decode"
    return None


def hold_open(port: int, raw: bytes, rcvbuf: int | None = None) -> socket.socket:
    """A connection that sent ``raw`` (what the server takes of it) and will read nothing."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        s.send(raw)
    return s


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class PreviewClients:
    """Everyone at the preview while the watch runs, from when it is up until it has gone.

    Well-behaved: ``SSE_READERS`` event-stream readers (reconnecting with ``Last-Event-ID`` as
    a browser does), two clients fetching the images, state and 100 % crops, a page in headless
    Chromium (``browser``). Hostile or broken: event streams and a pipelined flood of image
    requests that are never read, slowloris connections, hundreds of connections opened and
    dropped (reset, half a request, half an image, half-closed), and :func:`probe_requests`.
    """

    def __init__(self, url: str, files: dict[str, Path], seed: str, browser: bool) -> None:
        self.url, self.port = url, int(url.rsplit(":", 1)[1].strip("/"))
        self.files, self.rng, self.browser = files, random.Random(seed), browser
        self.forbidden = {
            name: data[len(data) // 2 : len(data) // 2 + 48]
            for name, p in files.items()
            if len(data := p.read_bytes()) >= 48
        }
        self.done = threading.Event()  # the watch has exited
        self.lock = threading.Lock()
        self.faults: list[str] = []
        self.errors: list[tuple[float, str]] = []  # a well-behaved client's failures, when
        self.stats: collections.Counter[str] = collections.Counter()
        self.last_state: list[dict | None] = [None] * SSE_READERS
        self.stream_end = 0.0  # when a well-behaved event stream last ended
        self.page_merged: str | None = None
        self.header_hold = 0.0  # the longest a slowloris connection was kept
        self.threads = [threading.Thread(target=self._sse, args=(i,)) for i in range(SSE_READERS)]
        self.threads += [threading.Thread(target=self._fetch, args=(i,)) for i in range(2)]
        hostile = (self._hold, self._slowloris, self._churn, self._probe)
        self.threads += [threading.Thread(target=f) for f in hostile]
        if browser:
            self.threads.append(threading.Thread(target=self._page))

    def start(self) -> None:
        for t in self.threads:
            t.daemon = True
            t.start()

    def finish(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(60)
            if t.is_alive():
                self.fault(f"client {t.name} still running 60 s after the watch exited")

    def fault(self, text: str) -> None:
        with self.lock:
            if len(self.faults) < 12 and text not in self.faults:
                self.faults.append(text)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.stats[what] += n

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append((time.monotonic(), text))

    # -- well-behaved --

    def _sse(self, i: int) -> None:
        """Follow the event stream as the page does, reconnecting with ``Last-Event-ID`` until
        the server is gone; keep the last state heard."""
        import httpx

        last_id = ""
        with httpx.Client(timeout=httpx.Timeout(40.0, connect=5.0)) as c:
            while not self.done.is_set():
                try:
                    headers = {"Last-Event-ID": last_id} if last_id else {}
                    with c.stream("GET", self.url + "api/events", headers=headers) as r:
                        self.count(f"event stream {r.status_code}")
                        message: dict[str, str] = {}
                        for line in r.iter_lines():
                            if line:
                                key, _, value = line.partition(": ")
                                message[key] = value
                                continue
                            if message.get("event") == "state":
                                self.last_state[i] = json.loads(message["data"])
                                last_id = message.get("id", last_id)
                                self.count("events read")
                            message = {}
                except httpx.ConnectError:
                    break  # the server is gone
                except httpx.TransportError as exc:
                    self.error(f"event stream: {type(exc).__name__}: {exc}")
                with self.lock:
                    self.stream_end = max(self.stream_end, time.monotonic())
                time.sleep(0.2)

    def _fetch(self, seed: float) -> None:
        """Fetch the images, the state, the page and 100 % crops over and over, checking each."""
        import httpx

        r = random.Random(seed)
        paths = ["img/composite.jpg", "img/composite.jpg", "img/last.jpg", "img/depth.jpg",
                 "api/state", "api/crop", ""]  # fmt: skip
        with httpx.Client(base_url=self.url, timeout=20.0) as c:
            while not self.done.is_set():
                path = r.choice(paths)
                params = {"x": f"{r.random():.3f}", "y": f"{r.random():.3f}",
                          "size": str(r.choice([16, 64, 256, 2048]))}  # fmt: skip
                try:
                    resp = c.get("/" + path, params=params if path == "api/crop" else None)
                except httpx.TransportError as exc:
                    self.error(f"GET /{path}: {type(exc).__name__}")
                    time.sleep(0.2)
                    continue
                self.count(f"GET /{path} {resp.status_code}")
                if problem := answer_fault(path, resp):
                    self.fault(f"GET /{path}: {problem}")
                time.sleep(r.uniform(0.0, 0.1))

    def _page(self) -> None:
        """The page in headless Chromium, from the start to after the watch has exited."""
        from tests.browser import chromium, phone_page

        seen: list[str] = []  # what went wrong for the page's own requests, in order

        def answered(response: Any) -> None:
            if response.status >= 400:
                seen.append(f"{response.status} {response.url}")

        try:
            with chromium() as browser:
                page, errors = phone_page(browser)
                page.on("response", answered)
                page.on("requestfailed", lambda r: seen.append(f"failed {r.url}: {r.failure}"))
                main = page.main_frame
                page.on("framenavigated", lambda f: f == main and seen.append(f"to {f.url}"))
                page.goto(self.url)
                page.wait_for_selector("#link[data-live='true']", timeout=30_000)
                self.count("browser pages")
                self.done.wait()
                self.page_merged = page.text_content("#merged", timeout=10_000)
                if errors:
                    self.fault(f"the page's script failed: {errors[:3]}")
        except Exception as exc:  # Playwright's own errors, whatever their class
            told = "; ".join(seen[:8]) or "no request failed"
            self.fault(f"browser page: {type(exc).__name__}: {str(exc).splitlines()[0]} ({told})")

    # -- hostile or broken --

    def _hold(self) -> None:
        """Event streams and a pipelined flood of image requests that are never read, and an
        event stream whose client half-closed the connection, open until the watch exits."""
        flood = raw_request(b"/img/composite.jpg").replace(b"Connection: close\r\n", b"") * 400
        socks = [hold_open(self.port, raw_request(b"/api/events"), 1024) for _ in range(4)]
        socks.append(hold_open(self.port, flood, 1024))
        half = hold_open(self.port, raw_request(b"/api/events"))
        half.shutdown(socket.SHUT_WR)
        socks.append(half)
        self.done.wait()
        for s in socks:
            s.close()

    def _slowloris(self) -> None:
        """A dozen connections sending a request's headers a byte every half second; each must be
        closed by the server within HEADER_LIMIT_S, then another takes its place."""
        request = raw_request(b"/img/composite.jpg", extra=b"X-Slow: " + b"s" * 200 + b"\r\n")
        conns: dict[socket.socket, list[float]] = {}  # opened at, bytes sent
        while not self.done.is_set():
            with contextlib.suppress(OSError):  # the server has gone
                while len(conns) < 12:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                    s.setblocking(False)
                    conns[s] = [time.monotonic(), 0]
            for s, (opened, sent) in list(conns.items()):
                held, gone = time.monotonic() - opened, closed_by_peer(s)
                if not gone:
                    try:
                        conns[s][1] += s.send(request[int(sent) : int(sent) + 1])
                    except BlockingIOError:
                        pass  # its send buffer is full: the byte goes next round
                    except OSError:
                        gone = True
                if gone or held > HEADER_LIMIT_S:
                    if gone:
                        self.header_hold = max(self.header_hold, held)
                        self.count("slowloris closed by the server")
                    elif not self.done.is_set():
                        self.fault(
                            f"a connection dribbling its headers still open after {held:.0f} s"
                        )
                    s.close()
                    del conns[s]
            time.sleep(0.5)
        for s in conns:
            s.close()

    def _churn(self) -> None:
        """Connections opened and dropped, a few hundred a run, in six ways."""
        r = random.Random(self.rng.random())
        ways = ["close", "reset", "half request", "half image", "half-closed", "one event"]
        while not self.done.is_set() and self.stats["churn"] < 400:
            if self.stats["churn"] % 200 == 100:
                self._burst(300)
            way = r.choice(ways)
            try:
                self._drop(way, r)
            except OSError as exc:
                self.count(f"churn {way}: {type(exc).__name__}")
            self.count("churn")
            time.sleep(r.uniform(0.0, 0.03))

    def _burst(self, n: int) -> None:
        """``n`` connections at once, past the server's limit, half of them asking for an event
        stream; all reset a second later."""
        socks = []
        with contextlib.suppress(OSError):
            for i in range(n):
                socks.append(hold_open(self.port, raw_request(b"/api/events") if i % 2 else b""))
        time.sleep(1.0)
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.count("burst connections", len(socks))

    def _drop(self, way: str, r: random.Random) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_S) as s:
            if way == "half-closed":  # the whole request, then "no more from me"
                s.sendall(raw_request(b"/api/state"))
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                self.count(f"half-closed answered {parse_response(data)[0]}")
                return
            if way in ("half image", "one event", "half request"):
                route = {"half image": b"/img/composite.jpg", "one event": b"/api/events"}
                raw = raw_request(route.get(way, b"/api/state"))
                s.sendall(raw if way != "half request" else raw[: r.randrange(1, len(raw))])
                if way != "half request":
                    s.recv(r.choice([1, 100, 4096]))
            if way != "close":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _probe(self) -> None:
        """Every probe once, in a random order, and again, until the watch exits."""
        probes = probe_requests(self.files)
        r = random.Random(self.rng.random())
        while not self.done.is_set():
            r.shuffle(probes)
            for kind, raw in probes:
                if self.done.is_set():
                    break
                try:
                    data = exchange(self.port, raw)
                except OSError:
                    time.sleep(0.2)  # the server has gone
                    continue
                status = parse_response(data)[0] if data else "closed" if data == b"" else "hang"
                self.count(f"probe {kind} {status}")
                if problem := probe_fault(kind, raw, data, self.forbidden):
                    self.fault(f"{kind} probe {raw[:120]!r}: {problem}")
                time.sleep(0.01)  # load, not a flood: the flood is the churn's

    def check(self, merged: int | None, stop_began: float) -> list[str]:
        """The faults seen, and what the well-behaved clients last saw against ``merged``."""
        faults = list(self.faults)
        early = [e for t, e in self.errors if t < stop_began - 0.5]
        if early:
            faults.append(f"{len(early)} failures of well-behaved clients while the preview "
                          f"was up: {early[:3]}")  # fmt: skip
        for i, state in enumerate(self.last_state):
            progress = {} if state is None else state["progress"]
            said = (progress.get("merged"), progress.get("state"))
            if said != (merged, "finished"):
                faults.append(f"event stream {i} last said (merged, state) {said}, the watch "
                              f"merged {merged}")  # fmt: skip
        if self.browser and self.page_merged is not None and self.page_merged != str(merged):
            faults.append(f"the page last showed {self.page_merged} merged, the watch {merged}")
        return faults


def answer_fault(path: str, resp: Any) -> str | None:
    """What is wrong with a well-behaved client's answer; None if nothing."""
    if resp.status_code == 503:
        return None  # busy, or no crop to be had now: the server's "not now"
    if resp.status_code >= 500:
        return f"answered {resp.status_code}: {resp.text[:160]!r}"
    if resp.status_code == 404 and path.startswith("img/"):
        return None  # not made yet (no depth map is asked for)
    if resp.status_code != 200:
        return f"answered {resp.status_code}: {resp.text[:160]!r}"
    if path.startswith("img/"):
        return jpeg_fault(resp.content, resp.headers)
    if path == "api/crop":
        for key in ("composite", "last"):
            jpeg = base64.b64decode(resp.json()[key].split(",", 1)[1])
            if problem := jpeg_fault(jpeg, {}):
                return f"{key} crop: {problem}"
    return None


# -- one run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    index: int
    polling: bool
    kinds: list[str]
    end: str
    faults: list[str]
    merged: int | None
    required: int
    optional: int
    seconds: float
    peak_mb: float
    exit_s: float | None = None
    """With the preview: seconds from its stop (or SIGINT) to the watch's exit."""
    stats: collections.Counter[str] = field(default_factory=collections.Counter)
    """With the preview: what its clients did and were answered."""


def start_watch(
    folder: Path, output: Path, polling: bool, idle: float | None, preview: bool = False
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stacker.cli", "watch", str(folder), "-o", str(output),
           "--settle", f"{SETTLE}s", "--align", "none"]  # fmt: skip
    if idle is not None:
        cmd += ["--idle-timeout", f"{idle}s"]
    if polling:
        cmd.append("--poll")
    if preview:
        cmd += ["--preview", "--port", "0"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def started(proc: subprocess.Popen, preview: bool) -> tuple[str, str | None]:
    """The watch's first lines of stderr, read until it watches, and the preview's address
    (``Live preview: URL``, printed first) when it serves one."""
    assert proc.stderr is not None
    lines = [proc.stderr.readline().decode(errors="replace")]
    while preview and lines[-1] and not lines[-1].startswith("watching ") and len(lines) < 5:
        lines.append(proc.stderr.readline().decode(errors="replace"))
    url = re.search(r"^Live preview: (http://\S+/)$", lines[0], re.M) if preview else None
    return "".join(lines), url[1] if url else None


class Drain(threading.Thread):
    """Reads one of the watch's pipes as it comes: left unread until the watch ends, a pipe
    fills at 64 KiB and blocks the watch's next write there (a flood of log lines stalled it)."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe, self.data = pipe, b""
        self.start()

    def run(self) -> None:
        self.data = self.pipe.read()

    def rest(self) -> bytes:
        """All it read, once the pipe is closed (the watch has exited)."""
        self.join(30)
        return self.data


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Watcher(threading.Thread):
    """Samples the watch's memory and whether anyone opened the FIFOs outside for reading."""

    def __init__(self, proc: subprocess.Popen, fifos: list[Path]) -> None:
        super().__init__(daemon=True)
        self.proc, self.fifos = proc, fifos
        self.peak = 0.0
        self.fds = 0  # the most file descriptors the watch had open at once
        self.fifo_opened: set[Path] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and self.proc.poll() is None:
            self.peak = max(self.peak, rss_mb(self.proc.pid))
            with contextlib.suppress(OSError):
                self.fds = max(self.fds, len(os.listdir(f"/proc/{self.proc.pid}/fd")))
            for fifo in list(self.fifos):
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno not in (errno.ENXIO, errno.ENOENT):
                        raise
                    continue
                os.close(fd)
                self.fifo_opened.add(fifo)
            time.sleep(0.05)


def reference_composite(frames: list[bytes], tmp: Path) -> np.ndarray:
    stacker = Stacker(method="pyramid", align="none")
    for i, data in enumerate(frames):
        p = tmp / f"ref_{i}.{image_kind(data)}"
        p.write_bytes(data)
        stacker.add(read_image(p), name=p.name)
        p.unlink()
    return stacker.result(crop=True)


def image_kind(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    return "jpg" if data.startswith(b"\xff\xd8") else "tif"


SUMMARY = re.compile(
    r"stacked (\d+) of (\d+) frames .*\((\d+) rejected, (\d+) unreadable, (\d+) RAW\+JPEG"
)
OWN_LINE = re.compile(r"^(watching |warning: |stacker: |Live preview: |preview: )")


def one_run(index: int, seed: int, polling: bool, only: list[str] | None, pool,
            preview: bool = False, browser: bool = False) -> RunResult:  # fmt: skip
    rng = random.Random(f"{seed}:{index}")
    kinds = [rng.choice(only or list(SCENARIOS)) for _ in range(rng.randint(8, 14))]
    if "slow" not in kinds:
        kinds.append("slow")  # at least one frame, so the watch has something to write
    base = Path(tempfile.mkdtemp(prefix="attack-hot-"))
    folder, outside = base / "hot", base / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    ext = rng.choice([".tif", ".png"])
    output = (folder if rng.random() < 0.5 else base) / f"stacked{ext}"
    ledger = Ledger()
    ctx = Ctx(folder, outside, output, polling, rng, pool, ledger)
    # Already there at start: every focus slice once (so that a frame that may or may not be
    # stacked, a copy of one of them, barely changes the composite), then a few more.
    for i in range(len(pool) + rng.randint(0, 3)):
        data, fext = ctx.frame(rng) if i >= len(pool) else (encode(pool[i], ".jpg"), ".jpg")
        p = folder / ctx.name("existing", fext)
        p.write_bytes(data)
        past = time.time() - 120
        os.utime(p, (past, past))
        ledger.must(data)
    end = rng.choice(["idle", "idle", "sigint"])
    idle = round(rng.uniform(3.0, 6.0), 1) if end == "idle" else None
    t0 = time.monotonic()
    proc = start_watch(folder, output, polling, idle, preview)
    first, url = started(proc, preview)
    pipes = [Drain(proc.stdout), Drain(proc.stderr)]
    clients = None
    if url is not None:
        clients = PreviewClients(url, foreign_files(ctx), f"{seed}:{index}", browser)
        clients.start()
    watcher = Watcher(proc, ledger.fifos)
    watcher.start()
    faults = run_writers(ctx, kinds, rng)
    sigint_at = None
    if end == "sigint":
        time.sleep(8.0)  # past the close grace of a hard link, the pair wait and retries
        sigint_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        proc.wait(timeout=30)
        faults.append("hang: still running 60 s after the writers were done")
    exit_at = time.monotonic()
    out, err = (pipe.rest() for pipe in pipes)
    watcher.done.set()
    watcher.join()
    stdout, stderr = out.decode(errors="replace"), first + err.decode(errors="replace")
    faults += check(proc.returncode, stdout, stderr, ledger, watcher, output, base)
    merged = int(m.group(1)) if (m := SUMMARY.search(stdout)) else None
    result = RunResult(index, polling, kinds, end, faults, merged, len(ledger.required),
                       ledger.optional, time.monotonic() - t0, watcher.peak)  # fmt: skip
    if clients is not None:
        result.exit_s, result.stats = check_preview(clients, merged, sigint_at, exit_at, faults)
        result.stats["peak_fds"] = watcher.fds
    keep_if_faulty(base, result, stdout, stderr)
    return result


def run_writers(ctx: Ctx, kinds: list[str], rng: random.Random) -> list[str]:
    """Run each scenario of ``kinds`` on a thread of its own after a random delay; return
    when they are done, with the failures of the writers themselves (the campaign's faults:
    a writer that died has not told the ledger what it delivered)."""
    writers, failed = [], []
    for kind in kinds:
        r = random.Random(rng.random())
        delay = rng.uniform(0.0, 4.0)

        def go(kind=kind, r=r, delay=delay) -> None:
            time.sleep(delay)
            try:
                SCENARIOS[kind](ctx, r)
            except Exception as exc:
                failed.append(f"campaign: the {kind} writer failed: {type(exc).__name__}: {exc}")

        writers.append(threading.Thread(target=go, daemon=True))
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    return failed


def check_preview(
    clients: PreviewClients,
    merged: int | None,
    sigint_at: float | None,
    exit_at: float,
    faults: list[str],
) -> tuple[float, collections.Counter[str]]:
    """Stop the clients and add their faults, and a slow exit, to ``faults``; the seconds
    from the preview's stop (SIGINT, or its event streams ending) to the exit, and the
    clients' counts."""
    clients.finish()
    began = sigint_at or clients.stream_end or exit_at
    exit_s = exit_at - began
    if exit_s > PROMPT_EXIT_S:
        faults.append(f"slow exit: {exit_s:.1f} s after the preview began to stop")
    faults += clients.check(merged, began)
    if clients.header_hold > HEADER_LIMIT_S:
        faults.append(f"a slowloris connection was held {clients.header_hold:.0f} s")
    return exit_s, collections.Counter(clients.stats, header_hold_s=round(clients.header_hold))


def keep_if_faulty(base: Path, result: RunResult, stdout: str, stderr: str) -> None:
    """Keep a faulty run's folders (without its sparse giants), with the watch's output;
    remove a good run's."""
    if result.faults:
        keep = base.with_name(base.name + "-fault")
        shutil.rmtree(keep, ignore_errors=True)
        (base / "stderr.txt").write_text(stderr)
        (base / "stdout.txt").write_text(stdout)
        remove_sparse(base)
        base.rename(keep)
        result.faults.append(f"folder kept: {keep}")
    else:
        shutil.rmtree(base, ignore_errors=True)


def remove_sparse(base: Path) -> None:
    for p in base.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink() and p.stat().st_size > 1 << 30:
                p.unlink()


SQUATTED = "a frame was written under this name; it is kept"
"""The watch's refusal to write its composite over an image another program put there."""


def check(code, stdout, stderr, ledger, watcher, output, base) -> list[str]:
    faults = []
    if "Traceback" in stderr or "Fatal Python" in stderr:
        faults.append("traceback:\n" + indent(stderr[-3000:]))
    stray = [ln for ln in stderr.splitlines() if ln.strip() and not OWN_LINE.match(ln)]
    if stray and "Traceback" not in stderr:
        faults.append("lines not the watch's own: " + repr(stray[:5]))
    last = stderr.strip().splitlines()[-1:]
    if code != 0 and ledger.squatted is None:
        faults.append(f"exit {code}: {last}")
    if watcher.peak > MEMORY_LIMIT_MB:
        faults.append(f"memory: {watcher.peak:.0f} MB")
    for fifo in watcher.fifo_opened:
        faults.append(f"a FIFO outside the folder was opened: {fifo.name}")
    if ledger.squatted is not None:  # kept, and the final write refused in one line
        if code != 2 or not any(SQUATTED in line for line in last):
            faults.append(f"exit {code} with {last}, not 2 with {SQUATTED!r}")
        if not output.is_file() or output.read_bytes() != ledger.squatted:
            faults.append(f"the image another program wrote at {output.name} was not kept")
        return faults  # the error is the last word: no summary, no composite to compare
    m = SUMMARY.search(stdout)
    if m is None:
        return [*faults, f"no summary line in stdout: {stdout.strip()[-300:]!r}"]
    merged, _seen, rejected, unreadable, skipped = map(int, m.groups())
    need, extra = len(ledger.required), ledger.optional
    if not need <= merged <= need + extra:
        upto = f" to {need + extra}" if extra else ""
        faults.append(f"merged {merged}, expected {need}{upto}")
    if rejected:
        faults.append(f"{rejected} rejected")
    if unreadable > ledger.unreadable_allowed:
        bad = [ln for ln in stderr.splitlines() if ln.startswith("warning: skipped")]
        faults.append(f"{unreadable} unreadable (allowed {ledger.unreadable_allowed}): {bad[:4]}")
    if skipped < ledger.pairs:
        faults.append(f"{skipped} RAW partners skipped of {ledger.pairs} pairs")
    if output.is_file() and not faults and ledger.squatted is None:
        faults += compare(output, ledger.required, base)
    return faults


def compare(output: Path, frames: list[bytes], base: Path) -> list[str]:
    got = read_image(output).astype(np.float32)
    want = reference_composite(frames, base).astype(np.float32)
    if got.shape != want.shape:
        return [f"composite {got.shape}, a stack of the whole frames {want.shape}"]
    diff = np.abs(got - want).max(axis=2)
    mark = float(diff[MARK].mean())
    blocks = diff[: 240 // 16 * 16, : 320 // 16 * 16].reshape(15, 16, 20, 16).mean(axis=(1, 3))
    worst = float(blocks.max())
    band = float(diff[:240].reshape(60, 4, 320).mean(axis=(1, 2)).max())  # a cut-off frame's edge
    faults = []
    if mark > 12:
        faults.append(f"marker region differs by {mark:.1f}: a foreign image was stacked")
    if worst > 22 or band > 6:
        faults.append(f"composite differs by {worst:.1f} in a 16x16 block, {band:.1f} along a "
                      "row: a partial frame?")  # fmt: skip
    return faults


def indent(text: str) -> str:
    return "\n".join("      " + ln for ln in text.splitlines())


# -- campaign -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--first", type=int, default=0, help="index of the first run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="comma-separated scenario kinds")
    ap.add_argument("--mode", choices=["both", "inotify", "poll"], default="both")
    ap.add_argument("--preview", action="store_true", help="serve the preview, with its clients")
    ap.add_argument("--browser-every", type=int, default=4, metavar="N",
                    help="with --preview, a Chromium page in every Nth run (0: never)")  # fmt: skip
    args = ap.parse_args()
    if args.preview and args.browser_every > 0 and (missing := common.chromium_missing()):
        print(f"{missing}: the preview's clients run without the page in Chromium")
        args.browser_every = 0
    only = args.only.split(",") if args.only else None
    pool = render_pool()
    results: list[RunResult] = []
    for index in range(args.first, args.first + args.runs):
        polling = {"inotify": False, "poll": True}.get(args.mode, index % 2 == 1)
        browser = args.preview and args.browser_every > 0 and index % args.browser_every == 0
        res = one_run(index, args.seed, polling, only, pool, args.preview, browser)
        results.append(res)
        flag = "FAULT" if res.faults else "ok"
        shown = "" if res.exit_s is None else f" exit {res.exit_s:.1f}s"
        print(f"run {index:3d} {'poll' if polling else 'inotify':7s} {res.end:6s} "
              f"{len(res.kinds):2d} scenarios merged {res.merged} need {res.required}"
              f"(+{res.optional}) {res.seconds:5.1f}s {res.peak_mb:4.0f}MB{shown} {flag}",
              flush=True)  # fmt: skip
    report(results, args)
    return 1 if any(r.faults for r in results) else 0


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    per_kind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for res in results:
        for kind in res.kinds:
            per_kind[kind][0] += 1
            per_kind[kind][1] += bool(res.faults)
    print(f"\n{'scenario':18s} {'count':>6s} {'in faulty runs':>15s}")
    for kind in sorted(per_kind):
        total, bad = per_kind[kind]
        print(f"{kind:18s} {total:6d} {bad:15d}")
    scenarios = sum(len(r.kinds) for r in results)
    faulty = [r for r in results if r.faults]
    print(f"\n{len(results)} runs, {scenarios} scenarios, {len(faulty)} runs with faults, "
          f"peak memory {max((r.peak_mb for r in results), default=0):.0f} MB")  # fmt: skip
    if args.preview:
        report_preview(results)
    for res in faulty:
        mode = "poll" if res.polling else "inotify"
        print(f"\nFAULT run {res.index} ({mode}, ended by {res.end}; kinds {res.kinds}):")
        for f in res.faults:
            print(f"  - {f}")
        only = f" --only {args.only}" if args.only else ""
        print(f"  re-run: .venv/bin/python benchmarks/attack_hotfolder.py --runs 1 "
              f"--first {res.index} --seed {args.seed} --mode {mode}{only}"
              f"{' --preview' if args.preview else ''}")  # fmt: skip


PER_RUN = ("header_hold_s", "peak_fds")  # maxima, not counts


def report_preview(results: list[RunResult]) -> None:
    """What the preview's clients did and were answered, over all runs."""
    total: collections.Counter[str] = collections.Counter()
    for res in results:
        total.update({k: v for k, v in res.stats.items() if k not in PER_RUN})
    exits = [r.exit_s for r in results if r.exit_s is not None]
    holds = [r.stats["header_hold_s"] for r in results]
    print(f"preview: exit after its stop at most {max(exits, default=0):.1f} s (median "
          f"{sorted(exits)[len(exits) // 2] if exits else 0:.1f} s); slowloris connections "
          f"closed after at most {max(holds, default=0)} s; at most "
          f"{max((r.stats['peak_fds'] for r in results), default=0)} files open")  # fmt: skip
    for key, n in sorted(total.items()):
        print(f"  {key:60.60s} {n:7d}")


if __name__ == "__main__":
    sys.exit(main())
