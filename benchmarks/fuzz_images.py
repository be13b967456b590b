"""``stacker stack`` (and briefly ``stacker watch``) on odd, damaged and hostile input frames.

Builds, from one seed, stacks of small textured frames that each hold something unusual, and
runs the real command on each as its own process (``python -m stacker.cli``), at most
``--jobs`` at once, each with its address space capped (``--memory-gb``, so that a blow-up is
reported, not a machine brought down):

- **valid but odd images**, a whole stack of each: grayscale 8/16-bit PNG and TIFF, RGBA and
  gray+alpha PNG, palette and 1-bit PNG, bilevel TIFF, CMYK JPEG and TIFF, float32/float16
  TIFF, multi-page, 2-channel and planar TIFF, TIFF compressed with JPEG, LZW, deflate and
  zstd, BigTIFF, progressive, arithmetic-coded (``jpegtran -arithmetic``, when installed),
  12-bit and lossless JPEG, huge aspect ratios and tiny frames, mixed sizes, mixed bit depths
  and mixed EXIF orientations;
- **damaged files** among good frames, each run twice (without and with ``--strict``): cut at
  random offsets, random bytes flipped in the header or in the data, empty, text named .jpg, a
  folder named frame.jpg, a symbolic link loop, a file without read permission (not enforced
  when run as root);
- **decompression bombs**: small PNG, TIFF, BigTIFF and JPEG files whose headers claim
  60000x60000 or 200000x10 pixels, and a legal but large frame of zeros;
- **paths**: non-ASCII and non-UTF-8 names, names with a newline, names starting with ``-``,
  the output equal to an input, the output in a missing folder, in a file, in ``/proc``, in a
  read-only folder (not enforced when run as root);
- ``stacker watch --idle-timeout`` on a folder filled beforehand with good and bad frames.

A run is a *fault* when the process dies by a signal, runs past ``--timeout``, prints a
traceback, exits with a status other than 0, 2 or 130, prints an error on more than one line or
any other line than stackrig's own (the decoder libraries' own complaints, which libpng and
libjpeg print to stderr themselves, are let through), fails (or skips a frame) without naming
the file concerned, goes past ``--rss-mb`` of peak RSS, leaves a partial output or temporary
file after failing, writes an output that cannot be read back, stops a run without ``--strict``
on a damaged frame (documented stack-wide errors excepted: mismatched sizes and bit depths, a
frame too small, an input named on the command line that is missing or not a file, refused
before any work, and a damaged frame that still decodes into pixels nothing aligns with), or
goes on after a damaged frame with ``--strict``.

Prints a table of the cases and their outcomes, then every fault with the command line that
reproduces it (the case folders are kept under ``--workdir``). Exits 1 if a fault was found.

    python benchmarks/fuzz_images.py                       # seed 1, 24 mutants
    python benchmarks/fuzz_images.py --seed 7 --mutants 60 --workdir /tmp/fuzz-images
    python benchmarks/fuzz_images.py --only bomb,trunc     # cases whose name holds a word

Seed 1 with 40 mutants: 188 runs in about 4 minutes on two cores, no faults. Outside what it
counts as faults: 16-bit float and zstd TIFF and 12-bit JPEG frames are refused as unreadable
(OpenCV cannot decode them); the read-only folder cannot be checked as root. A folder, link
loop, dangling link or pipe named like a frame among a folder's files is left out with a note
naming it.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from stacker.metadata import Metadata, embed_metadata  # noqa: E402
from tests.exif import exif  # noqa: E402

W, H = 96, 72  # the good frames' size
GOOD = 3  # good frames around each damaged one


@dataclass
class Case:
    """One stack to run: its files, the odd ones among them (``culprits``, named by a token
    each holds) and what the promise expects of it."""

    name: str
    kind: str  # valid, damaged, bomb, path, watch
    files: list[Path]
    culprits: list[str] = field(default_factory=list)
    output: Path | None = None
    args: list[str] = field(default_factory=list)
    strict: bool = False
    must_fail: bool = False  # a run that cannot succeed (path errors, bombs)
    command: str = "stack"
    timeout: float | None = None


@dataclass
class Result:
    case: Case
    argv: list[str]
    code: int | None
    signal: int | None
    seconds: float
    rss_mb: float
    stdout: str
    stderr: str
    outcome: str = ""
    faults: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ image builders
def scene(w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    """A textured BGR uint8 frame that aligns with itself."""
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    if min(w, h) >= 3:
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
    return img


def encode(img: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok, ext
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(
    rows: list[bytes], w: int, h: int, depth: int, colour: int, extra: bytes = b""
) -> bytes:
    """A PNG of filter-0 ``rows`` (already packed), colour type ``colour``, ``depth`` bits."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + r for r in rows))
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra
        + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )  # fmt: skip


def png_gray_alpha(img: np.ndarray) -> bytes:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    la = np.dstack([gray, np.full_like(gray, 200)])
    return png_raw([r.tobytes() for r in la], la.shape[1], la.shape[0], 8, 4)


def png_palette(img: np.ndarray) -> bytes:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    index = (gray // 16).astype(np.uint8)
    plte = bytes(v for i in range(16) for v in (i * 17, 255 - i * 17, (i * 40) % 256))
    return png_raw([r.tobytes() for r in index], gray.shape[1], gray.shape[0], 8, 3,
                   _png_chunk(b"PLTE", plte))  # fmt: skip


def png_bilevel(img: np.ndarray) -> bytes:
    bits = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) > 127
    rows = [np.packbits(r).tobytes() for r in bits]
    return png_raw(rows, bits.shape[1], bits.shape[0], 1, 0)


def tiff(data: np.ndarray, **kw: object) -> bytes:
    path = Path(tempfile.mkstemp(suffix=".tif")[1])
    try:
        tifffile.imwrite(path, data, **kw)  # type: ignore[arg-type]
        return path.read_bytes()
    finally:
        path.unlink()


def tiff_pages(pages: list[np.ndarray], **kw: object) -> bytes:
    path = Path(tempfile.mkstemp(suffix=".tif")[1])
    try:
        with tifffile.TiffWriter(path) as tw:
            for page in pages:
                tw.write(page, **kw)  # type: ignore[arg-type]
        return path.read_bytes()
    finally:
        path.unlink()


def jpeg_codec(data: np.ndarray, **kw: object) -> bytes | None:
    """imagecodecs' JPEG encoder (CMYK, 12-bit, lossless); None where it cannot."""
    try:
        import imagecodecs

        return bytes(imagecodecs.jpeg8_encode(data, **kw))  # type: ignore[arg-type]
    except Exception:
        return None


def jpeg_arithmetic(jpeg: bytes) -> bytes | None:
    tool = shutil.which("jpegtran")
    if tool is None:
        return None
    done = subprocess.run([tool, "-arithmetic"], input=jpeg, capture_output=True, check=False)
    return done.stdout if done.returncode == 0 and done.stdout else None


def oriented_jpeg(img: np.ndarray, orientation: int) -> bytes:
    return embed_metadata(encode(img, ".jpg"), ".jpg", Metadata(exif=exif(orientation)))


def rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[:, :, ::-1])


def gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def cmyk(img: np.ndarray) -> np.ndarray:
    c = 255 - rgb(img)
    k = c.min(axis=2, keepdims=True)
    return np.concatenate([c - k, k], axis=2).astype(np.uint8)


# ------------------------------------------------------------------------------ valid odd frames
def valid_formats() -> dict[str, tuple[str, Callable[[np.ndarray], bytes | None]]]:
    """Name: (extension, encoder of a BGR frame), one whole stack of each."""
    u16 = lambda img: img.astype(np.uint16) * 257  # noqa: E731
    return {
        "png-gray8": (".png", lambda i: encode(gray(i), ".png")),
        "png-gray16": (".png", lambda i: encode(u16(gray(i)), ".png")),
        "png-rgb16": (".png", lambda i: encode(u16(i), ".png")),
        "png-rgba": (
            ".png",
            lambda i: encode(np.dstack([i, np.full(i.shape[:2], 128, np.uint8)]), ".png"),
        ),
        "png-gray-alpha": (".png", png_gray_alpha),
        "png-palette": (".png", png_palette),
        "png-1bit": (".png", png_bilevel),
        "tif-gray8": (".tif", lambda i: tiff(gray(i))),
        "tif-gray16": (".tif", lambda i: tiff(u16(gray(i)))),
        "tif-rgb16": (".tif", lambda i: tiff(u16(rgb(i)), photometric="rgb")),
        "tif-rgba": (
            ".tif",
            lambda i: tiff(
                np.dstack([rgb(i), np.full(i.shape[:2], 99, np.uint8)]),
                photometric="rgb",
                extrasamples=[2],
            ),
        ),
        "tif-bilevel": (".tif", lambda i: tiff(gray(i) > 127, photometric="minisblack")),
        "tif-cmyk": (".tif", lambda i: tiff(cmyk(i), photometric="separated")),
        "tif-float32": (".tif", lambda i: tiff(rgb(i).astype(np.float32) / 255, photometric="rgb")),
        "tif-float16": (".tif", lambda i: tiff(rgb(i).astype(np.float16) / 255, photometric="rgb")),
        "tif-float32-hdr": (
            ".tif",
            lambda i: tiff(rgb(i).astype(np.float32) * 40, photometric="rgb"),
        ),
        "tif-multipage": (
            ".tif",
            lambda i: tiff_pages([rgb(i), rgb(i)[::2, ::2], gray(i)], photometric=None),
        ),
        "tif-2channel": (
            ".tif",
            lambda i: tiff(rgb(i)[:, :, :2], photometric="minisblack", planarconfig="contig"),
        ),
        "tif-planar": (
            ".tif",
            lambda i: tiff(np.moveaxis(rgb(i), 2, 0), photometric="rgb", planarconfig="separate"),
        ),
        "tif-jpeg": (".tif", lambda i: tiff(rgb(i), photometric="rgb", compression="jpeg")),
        "tif-lzw": (".tif", lambda i: tiff(rgb(i), photometric="rgb", compression="lzw")),
        "tif-deflate16": (
            ".tif",
            lambda i: tiff(u16(rgb(i)), photometric="rgb", compression="zlib", predictor=True),
        ),
        "tif-zstd": (".tif", lambda i: tiff(rgb(i), photometric="rgb", compression="zstd")),
        "tif-tiled": (".tif", lambda i: tiff(rgb(i), photometric="rgb", tile=(32, 32))),
        "tif-bigtiff": (".tif", lambda i: tiff(rgb(i), photometric="rgb", bigtiff=True)),
        "tif-bigendian": (".tif", lambda i: tiff(u16(rgb(i)), photometric="rgb", byteorder=">")),
        "jpg-progressive": (".jpg", lambda i: encode(i, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])),
        "jpg-arithmetic": (".jpg", lambda i: jpeg_arithmetic(encode(i, ".jpg"))),
        "jpg-gray": (".jpg", lambda i: encode(gray(i), ".jpg")),
        "jpg-cmyk": (
            ".jpg",
            lambda i: jpeg_codec(cmyk(i), colorspace="CMYK", outcolorspace="CMYK"),
        ),
        "jpg-12bit": (".jpg", lambda i: jpeg_codec(u16(rgb(i)) >> 4, bitspersample=12)),
        "jpg-lossless": (".jpg", lambda i: jpeg_codec(rgb(i), lossless=True)),
        "webp": (".webp", lambda i: encode(i, ".webp")),
        "bmp": (".bmp", lambda i: encode(i, ".bmp")),
    }


def build_valid(root: Path) -> list[Case]:
    cases = []
    for name, (ext, make) in valid_formats().items():
        folder = root / name
        folder.mkdir()
        files = []
        for n in range(3):
            data = make(scene(seed=0))
            if data is None:
                break
            files.append(folder / f"frame{n}{ext}")
            files[-1].write_bytes(data)
        if files:
            cases.append(Case(name, "valid", files, culprits=["frame"]))
    cases += _odd_sizes(root)
    return cases


def _odd_sizes(root: Path) -> list[Case]:
    cases = []
    for name, (w, h) in {
        "size-1x5000": (1, 5000), "size-5000x1": (5000, 1), "size-16x5000": (16, 5000),
        "size-1x1": (1, 1), "size-2x2": (2, 2), "size-7x5": (7, 5),
    }.items():  # fmt: skip
        folder = root / name
        folder.mkdir()
        files = [folder / f"frame{n}.png" for n in range(3)]
        for f in files:
            f.write_bytes(encode(scene(w, h), ".png"))
        cases.append(Case(name, "valid", files, culprits=["frame"]))
    mixes: dict[str, list[bytes]] = {
        "mixed-sizes": [encode(scene(), ".png"), encode(scene(W + 8, H), ".png"),
                        encode(scene(), ".png")],
        "mixed-depths": [encode(scene(), ".png"), encode(scene().astype(np.uint16) * 257, ".png"),
                         encode(scene(), ".png")],
        "mixed-orientation": [oriented_jpeg(scene(), o) for o in (1, 6, 3, 8, 1)],
        "mixed-orientation-first6": [oriented_jpeg(scene(), o) for o in (6, 1, 8)],
        "mixed-formats": [encode(scene(), ".jpg"), tiff(rgb(scene()), photometric="rgb"),
                          encode(scene(), ".png")],
    }  # fmt: skip
    for name, datas in mixes.items():
        folder = root / name
        folder.mkdir()
        files = []
        for n, data in enumerate(datas):
            ext = {b"\xff\xd8": ".jpg", b"\x89P": ".png"}.get(data[:2], ".tif")
            files.append(folder / f"frame{n}{ext}")
            files[-1].write_bytes(data)
        cases.append(Case(name, "valid", files, culprits=[f"frame{n}" for n in range(1, 5)]))
    return cases


# ------------------------------------------------------------------------------ damaged frames
def _good_frames(folder: Path, ext: str = ".png") -> list[Path]:
    files = []
    for n in range(GOOD):
        files.append(folder / f"good{n}{ext}")
        files[-1].write_bytes(encode(scene(), ext) if ext != ".tif" else tiff(rgb(scene())))
    return files


def _damaged_case(root: Path, name: str, bad_name: str, make: Callable[[Path], None],
                  position: int) -> list[Case]:  # fmt: skip
    """The same stack twice, without and with --strict: good frames and one bad, ``position``
    among them."""
    out = []
    for strict in (False, True):
        folder = root / (name + ("-strict" if strict else ""))
        folder.mkdir()
        bad = folder / bad_name
        make(bad)
        files = _good_frames(folder)
        files.insert(position, bad)
        out.append(Case(name, "damaged", files, culprits=["zq"], strict=strict))
    return out


def _writer(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _sources() -> dict[str, bytes]:
    img = scene()
    return {
        "jpg": encode(img, ".jpg"),
        "jpgprog": encode(img, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "png": encode(img, ".png"),
        "png16": encode(img.astype(np.uint16) * 257, ".png"),
        "tif": tiff(rgb(img), photometric="rgb"),
        "tiflzw": tiff(rgb(img), photometric="rgb", compression="lzw"),
        "tifjpeg": tiff(rgb(img), photometric="rgb", compression="jpeg"),
        "tifzstd": tiff(rgb(img), photometric="rgb", compression="zstd", tile=(32, 32)),
        "bigtiff": tiff(rgb(img), photometric="rgb", bigtiff=True),
        "webp": encode(img, ".webp"),
    }


def mutate(data: bytes, rng: random.Random, where: str) -> bytes:
    """``data`` cut short, or with a few bytes flipped in its header or its data."""
    buf = bytearray(data)
    if where == "trunc":
        return bytes(buf[: rng.randrange(1, len(buf))])
    for _ in range(rng.choice((1, 2, 4, 8))):
        if where == "header":
            pos = rng.randrange(0, min(len(buf), 200))
        else:
            pos = rng.randrange(min(len(buf) - 1, 200), len(buf))
        buf[pos] = rng.choice((0, 0xFF, rng.randrange(256), buf[pos] ^ (1 << rng.randrange(8))))
    return bytes(buf)


def build_damaged(root: Path, rng: random.Random, mutants: int) -> list[Case]:
    sources = _sources()
    fixed: dict[str, tuple[str, Callable[[Path], None]]] = {
        "zero-length": ("zq.jpg", _writer(b"")),
        "text-as-jpg": ("zq.jpg", _writer(b"this is not an image\n" * 20)),
        "zeros-as-tif": ("zq.tif", _writer(b"\0" * 4096)),
        "jpeg-soi-only": ("zq.jpg", _writer(b"\xff\xd8\xff\xd9")),
        "png-sig-only": ("zq.png", _writer(b"\x89PNG\r\n\x1a\n")),
        "tiff-header-only": ("zq.tif", _writer(b"II*\x00\x08\x00\x00\x00")),
        "tiff-ifd-loop": ("zq.tif", _writer(b"II*\x00\x08\x00\x00\x00\x00\x00\x08\x00\x00\x00")),
        "dir-named-jpg": ("zq.jpg", lambda p: p.mkdir()),
        "symlink-loop": ("zq.jpg", lambda p: p.symlink_to(p.name)),
        "dangling-link": ("zq.jpg", lambda p: p.symlink_to("missing-target.jpg")),
        "unreadable": ("zq.jpg", lambda p: (p.write_bytes(sources["jpg"]), p.chmod(0))),
        "fifo": ("zq.jpg", lambda p: os.mkfifo(p)),
        "png-as-jpg": ("zq.jpg", _writer(sources["png"])),
        "jpg-no-eoi": ("zq.jpg", _writer(sources["jpg"][:-2])),
    }
    cases = []
    for n, (name, (bad_name, make)) in enumerate(fixed.items()):
        cases += _damaged_case(root, name, bad_name, make, position=(n % 2) + 1)
    kinds = list(sources)
    for n in range(mutants):
        kind = kinds[n % len(kinds)]
        where = ("trunc", "header", "data")[n % 3]
        data = mutate(sources[kind], rng, where)
        ext = {"jpg": ".jpg", "jpgprog": ".jpg", "png": ".png", "png16": ".png",
               "webp": ".webp"}.get(kind, ".tif")  # fmt: skip
        position = rng.choice((0, 1, GOOD))
        cases += _damaged_case(root, f"{where}-{kind}-{n}", f"zq{n}{ext}", _writer(data), position)
    return cases


# ------------------------------------------------------------------------------ bombs
def _png_claiming(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compressobj(9).compress(b"\0" * 65536)  # a stream that never ends
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def _tiff_claiming(w: int, h: int, big: bool = False) -> bytes:
    data = bytearray(tiff(rgb(scene()), photometric="rgb", bigtiff=big))
    order, fmt, ifd_at, count, entry, _value = (
        ("<", "Q", 8, "Q", 20, 12) if big else ("<", "I", 4, "H", 12, 8)
    )
    (ifd,) = struct.unpack_from(order + fmt, data, ifd_at)
    (entries,) = struct.unpack_from(order + count, data, ifd)
    start = ifd + struct.calcsize(count)
    for pos in range(start, start + entries * entry, entry):
        tag, kind = struct.unpack_from("<HH", data, pos)
        if tag in (256, 257):
            size = w if tag == 256 else h
            struct.pack_into("<H" + {3: "H", 4: "I", 16: "Q"}[kind], data, pos + 2, kind, size)
    return bytes(data)


def _jpeg_claiming(w: int, h: int, padding: int = 0) -> bytes:
    data = bytearray(encode(scene(), ".jpg"))
    sof = next(i for i in range(2, len(data)) if data[i] == 0xFF and data[i + 1] == 0xC0)
    struct.pack_into(">HH", data, sof + 5, h, w)
    if padding:
        app = b"\xff\xeb" + struct.pack(">H", 65535) + b"\0" * 65533
        data[2:2] = app * padding
    return bytes(data)


def _zeros_png(w: int, h: int) -> bytes:
    row = b"\0" * (w + 1)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))  # fmt: skip


def build_bombs(root: Path, large: bool) -> list[Case]:
    bombs = {
        "bomb-png-60000": ("zq.png", _png_claiming(60000, 60000)),
        "bomb-png-200000x10": ("zq.png", _png_claiming(200000, 10)),
        "bomb-tif-60000": ("zq.tif", _tiff_claiming(60000, 60000)),
        "bomb-tif-200000x10": ("zq.tif", _tiff_claiming(200000, 10)),
        "bomb-bigtiff-60000": ("zq.tif", _tiff_claiming(60000, 60000, big=True)),
        "bomb-jpg-60000": ("zq.jpg", _jpeg_claiming(60000, 60000)),
        "bomb-jpg-60000-late-sof": ("zq.jpg", _jpeg_claiming(60000, 60000, padding=2)),
        "bomb-jpg-65500x10": ("zq.jpg", _jpeg_claiming(65500, 10)),
        "bomb-tif-compressed-zeros": (
            "zq.tif",
            tiff(np.zeros((15000, 15000), np.uint8), compression="zlib", tile=(512, 512)),
        ),
    }
    cases = []
    for name, (bad_name, data) in bombs.items():
        cases += _damaged_case(root, name, bad_name, _writer(data), position=1)
        for c in cases[-2:]:
            c.kind = "bomb"
    if large:  # two legal 144-megapixel frames of zeros, 150 KB each
        folder = root / "bomb-large-legal"
        folder.mkdir()
        files = [folder / f"zq{n}.png" for n in range(2)]
        data = _zeros_png(12000, 12000)
        for f in files:
            f.write_bytes(data)
        cases.append(Case("bomb-large-legal", "bomb", files, culprits=["zq"], timeout=300))
    return cases


# ------------------------------------------------------------------------------ paths
def build_paths(root: Path) -> list[Case]:
    cases = []

    def stack(name: str, names: list[str | bytes], **kw: object) -> Case:
        folder = root / name
        folder.mkdir()
        files = []
        for n in names:
            p = Path(
                os.fsdecode(
                    os.fsencode(folder) + b"/" + (n if isinstance(n, bytes) else n.encode())
                )
            )
            p.write_bytes(encode(scene(), p.suffix or ".png"))
            files.append(p)
        case = Case(name, "path", files, culprits=["zq"], **kw)  # type: ignore[arg-type]
        cases.append(case)
        return case

    stack("name-non-ascii", ["zq-früh-冬.jpg", "zq-Ærø.png", "zq-😀.jpg"])
    stack("name-non-utf8", [b"zq-\xff\xfe.jpg", b"zq-\xe9t\xe9.png", b"good.jpg"])
    stack("name-newline", ["zq\nframe1.jpg", "zq\rframe2.png", "good.jpg"])
    stack("name-dash", ["-zq.jpg", "--zq.png", "-o.jpg"], args=["--"])
    c = stack("name-dash-folder", ["-zq.jpg", "--help.png", "-o.jpg"])
    c.files = [c.files[0].parent]
    newline_bad = stack("name-newline-damaged", ["good0.jpg", "good1.jpg", "good2.jpg"])
    bad = newline_bad.files[0].parent / "zq\nbad.jpg"
    bad.write_bytes(b"not a jpeg")
    newline_bad.files.insert(1, bad)
    c = stack("output-is-input", ["zq0.jpg", "zq1.jpg"], must_fail=True)
    c.output = c.files[1]
    c = stack("output-missing-folder", ["a.jpg", "b.jpg"], must_fail=True)
    c.output, c.culprits = c.files[0].parent / "zq-missing" / "out.tif", ["zq-missing"]
    c = stack("output-in-a-file", ["a.jpg", "b.jpg"], must_fail=True)
    c.output, c.culprits = c.files[0] / "zq.tif", ["zq"]
    c = stack("output-in-proc", ["a.jpg", "b.jpg"], must_fail=True)
    c.output, c.culprits = Path("/proc/zq-stackrig.tif"), ["zq"]
    c = stack("output-readonly-folder", ["a.jpg", "b.jpg"], must_fail=os.geteuid() != 0)
    ro = c.files[0].parent / "zq-ro"
    ro.mkdir()
    ro.chmod(0o555)
    c.output, c.culprits = ro / "out.tif", ["zq-ro"]
    c = stack("output-is-folder", ["a.jpg", "b.jpg"], must_fail=True)
    c.output, c.culprits = c.files[0].parent / "zq.tif", ["zq"]
    c.output.mkdir()
    c = stack("output-newline-name", ["a.jpg", "b.jpg"])
    c.output, c.culprits = c.files[0].parent / "zq\nout.tif", []
    c = stack("output-unknown-ext", ["a.jpg", "b.jpg"], must_fail=True)
    c.output, c.culprits = c.files[0].parent / "zq.gif", ["zq"]
    return cases


def build_watch(root: Path) -> list[Case]:
    folder = root / "watch-prefilled"
    folder.mkdir()
    _good_frames(folder, ".jpg")
    for name, data in {"zq-empty.jpg": b"", "zq-text.jpg": b"not an image",
                       "zq-cut.jpg": encode(scene(), ".jpg")[:900],
                       "zq-bomb.png": _png_claiming(60000, 60000),
                       "zq-small.png": encode(scene(7, 5), ".png")}.items():  # fmt: skip
        (folder / name).write_bytes(data)
    out = root / "watch-out" / "out.tif"
    out.parent.mkdir()
    strict_out = root / "watch-out-strict" / "out.tif"
    strict_out.parent.mkdir()
    args = ["--idle-timeout", "3s", "--settle", "0.2s"]
    return [
        Case("watch-prefilled", "watch", [folder], culprits=["zq"], output=out,
             command="watch", args=args),
        Case("watch-prefilled", "watch", [folder], culprits=["zq"], output=strict_out,
             command="watch", args=args, strict=True),
    ]  # fmt: skip


# ------------------------------------------------------------------------------ running
def _limits(memory_gb: float) -> Callable[[], None]:
    def apply() -> None:
        cap = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()

    return apply


def argv_of(case: Case) -> list[str]:
    output = case.output
    assert output is not None
    argv = [sys.executable, "-m", "stacker.cli", case.command]
    argv += ["-o", os.fsdecode(output), *(["--strict"] if case.strict else [])]
    argv += [a for a in case.args if a != "--"]
    if "--" in case.args:
        argv.append("--")
    return argv + [os.fsdecode(f) for f in case.files]


def run_case(case: Case, memory_gb: float, timeout: float) -> Result:
    argv = argv_of(case)
    folder = Path(tempfile.mkdtemp(prefix="fuzz-run-"))
    out_f, err_f = (folder / "stdout").open("wb"), (folder / "stderr").open("wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL, env=env,
        cwd=case.files[0].parent, preexec_fn=_limits(memory_gb),
    )  # fmt: skip
    limit = case.timeout or timeout
    status, usage, timed_out = 0, None, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > limit:
            timed_out = True
            os.killpg(proc.pid, 9)
        time.sleep(0.02)
    proc.returncode = 0  # reaped here, with its resource usage
    out_f.close()
    err_f.close()
    result = Result(
        case, argv,
        code=None if timed_out else (os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None),  # noqa: E501
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) and not timed_out else None,
        seconds=time.monotonic() - t0,
        rss_mb=usage.ru_maxrss / 1024 if usage else 0.0,
        stdout=(folder / "stdout").read_bytes().decode("utf-8", "backslashreplace"),
        stderr=(folder / "stderr").read_bytes().decode("utf-8", "backslashreplace"),
    )  # fmt: skip
    shutil.rmtree(folder)
    if timed_out:
        result.faults.append(f"timed out after {limit:.0f} s")
    return result


_ALLOWED = re.compile(
    r"^(warning: |stacker: error: |stacker: interrupted|watching |[┏┃┡│└]|\s*$"
    r"|\s*(\S.* )?\d+ of \d+ frames merged\s*$|.* left out results of an earlier run"
    r"|.*: left out, not image files: "
    # libpng and libjpeg print these to descriptor 2 themselves, beside stackrig's own line
    # naming the frame; keeping them off would mean pointing the whole process's stderr
    # elsewhere during every decode, other threads' messages with it.
    r"|libpng (error|warning): |Corrupt JPEG data|Premature end of JPEG file"
    r"|Invalid SOS parameters|Warning: unknown JFIF|Inconsistent progression sequence"
    r"|Unknown Adobe color transform|Application transferred too many scanlines)"
)
_STACK_WIDE = (
    "differs from the stack's",  # sizes and bit depths: documented stack-wide errors
    "is too small to stack",
    "no such file or folder",  # inputs named on the command line are checked before any work
    "not an image file (a pipe or a device)",
    "no images in this folder",
    "usable frame(s) of",  # a damaged frame that still decodes, first: nothing aligns to it
)


def judge(r: Result, rss_limit_mb: float) -> None:
    """Fill ``r.outcome`` and ``r.faults``."""
    c, err = r.case, r.stderr
    lines = err.splitlines()
    errors = [ln for ln in lines if ln.startswith("stacker: error: ")]
    stray = [ln for ln in lines if not _ALLOWED.match(ln)]
    named = " ".join(ln for ln in lines if ln.startswith(("warning: ", "stacker: error: ")))
    if r.signal is not None:
        r.faults.append(f"killed by signal {r.signal}")
    if "Traceback" in err:
        r.faults.append("traceback: " + (lines[-1] if lines else ""))
    if r.code not in (None, 0, 2, 130) and r.signal is None:
        r.faults.append(f"exit status {r.code}")
    if r.code not in (None, 0) and len(errors) != 1 and "Traceback" not in err:
        r.faults.append(f"{len(errors)} error lines")
    if stray and "Traceback" not in err:
        r.faults.append(f"{len(stray)} stray stderr line(s): {stray[0][:100]!r}")
    if r.rss_mb > rss_limit_mb:
        r.faults.append(f"peak RSS {r.rss_mb:.0f} MB")
    merged = re.search(r"stacked (\d+) of (\d+) frames", r.stdout)
    all_merged = bool(merged and merged.group(1) == merged.group(2))
    if (
        r.code == 0
        and c.command == "stack"
        and not all_merged
        and not any(t in named for t in c.culprits)
    ):
        r.faults.append("frames left out without naming them")
    stack_wide = any(m in named for m in ("a stack needs", "not merged: alignment score"))
    unnamed = not any(t in named for t in c.culprits)
    if r.code not in (None, 0) and c.culprits and not stack_wide and unnamed:
        r.faults.append("error does not name the file")
    _judge_expectations(r, errors, all_merged)
    _judge_outputs(r)
    if r.code == 0:
        r.outcome = "ok" if all_merged or c.command == "watch" else "ok, frames skipped"
    elif r.code == 2:
        r.outcome = "one-line error" if len(errors) == 1 else "error"
    else:
        r.outcome = "signal" if r.signal else "timeout" if r.code is None else f"exit {r.code}"


def _judge_expectations(r: Result, errors: list[str], all_merged: bool) -> None:
    c = r.case
    error = errors[0] if errors else ""
    if c.must_fail and r.code == 0:
        r.faults.append("succeeded where it must fail")
    if c.kind in ("damaged", "bomb") and c.command == "stack" and len(c.files) > 2:
        if not c.strict and r.code == 2 and not any(m in error for m in _STACK_WIDE):
            r.faults.append("stopped without --strict on a bad frame: " + error[:120])
        if c.strict and r.code == 0 and not all_merged:
            r.faults.append("--strict went on past a bad frame")


def _judge_outputs(r: Result) -> None:
    out = r.case.output
    assert out is not None
    folder = out.parent
    if folder.is_dir() and folder != Path("/proc"):
        temps = [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".probe"))]
        if temps:
            r.faults.append(f"temporary files left: {temps}")
    if r.case.name in ("output-is-input", "output-is-folder"):
        return
    exists = out.is_file()
    if r.code not in (0, None) and exists and r.case.command == "stack":
        r.faults.append(f"failed run left an output file {out.name!r}")
    if r.code == 0 and r.case.command == "stack":
        if not exists:
            r.faults.append("succeeded without an output file")
        elif cv2.imdecode(np.frombuffer(out.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED) is None:
            r.faults.append("output cannot be read back")


# ------------------------------------------------------------------------------ main
def build_all(root: Path, seed: int, mutants: int, large: bool) -> list[Case]:
    rng = random.Random(seed)
    cases = build_valid(root) + build_damaged(root, rng, mutants) + build_bombs(root, large)
    cases += build_paths(root) + build_watch(root)
    for case in cases:
        if case.output is None:
            folder = root / "_out" / (case.name + ("-strict" if case.strict else ""))
            folder.mkdir(parents=True)
            case.output = folder / "stacked.tif"
    return cases


def report(results: list[Result]) -> int:
    print(f"{'case':34} {'kind':8} {'strict':6} {'exit':>5} {'s':>5} {'RSS MB':>7}  outcome")
    for r in results:
        c = r.case
        code = "sig" + str(r.signal) if r.signal else ("-" if r.code is None else str(r.code))
        flag = "  FAULT" if r.faults else ""
        print(f"{c.name[:34]:34} {c.kind:8} {'yes' if c.strict else '':6} {code:>5} "
              f"{r.seconds:5.1f} {r.rss_mb:7.0f}  {r.outcome}{flag}")  # fmt: skip
    print()
    by_kind = Counter((r.case.kind, r.outcome) for r in results)
    for (kind, outcome), n in sorted(by_kind.items()):
        print(f"  {kind:8} {outcome:22} {n}")
    faults = [r for r in results if r.faults]
    print(f"\n{len(results)} runs, {len(faults)} with faults, peak RSS "
          f"{max(r.rss_mb for r in results):.0f} MB")  # fmt: skip
    for r in faults:
        print(f"\nFAULT {r.case.name}{' --strict' if r.case.strict else ''}: "
              + "; ".join(r.faults))  # fmt: skip
        print(f"  reproduce: cd {shlex.quote(str(r.case.files[0].parent))} && "
              f"PYTHONPATH={shlex.quote(str(ROOT))} {shlex.join(r.argv)}")  # fmt: skip
        tail = r.stderr.strip().splitlines()[-6:]
        for line in tail:
            print(f"  | {line[:160]}")
    return 1 if faults else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutants", type=int, default=24, help="randomly damaged frames")
    ap.add_argument("--jobs", type=int, default=2, help="commands run at once")
    ap.add_argument("--memory-gb", type=float, default=4.0, help="address space of each run")
    ap.add_argument("--rss-mb", type=float, default=1500, help="peak RSS counted as a fault")
    ap.add_argument("--timeout", type=float, default=90, help="seconds a run may take")
    ap.add_argument("--no-large", action="store_true", help="leave out the 144 MP frames")
    ap.add_argument("--only", default="", help="comma-separated words case names must hold")
    ap.add_argument("--workdir", type=Path, help="where cases are built (default: a temp dir)")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="fuzz-images-"))
    if root.exists():
        subprocess.run(["chmod", "-R", "u+rwx", str(root)], check=False)
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cases = build_all(root, args.seed, args.mutants, not args.no_large)
    if args.only:
        words = args.only.split(",")
        cases = [c for c in cases if any(w in c.name for w in words)]
    print(f"{len(cases)} runs in {root} (seed {args.seed})", flush=True)

    def one(case: Case) -> Result:
        result = run_case(case, args.memory_gb, args.timeout)
        judge(result, args.rss_mb)
        return result

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, cases))
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
