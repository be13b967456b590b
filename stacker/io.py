"""Reading and writing frames: 8/16-bit JPEG, PNG and TIFF, RAW through rawpy (optional extra).

Images are numpy arrays in OpenCV's BGR channel order, ``uint8`` or ``uint16``, always three
channels. Writes are atomic (temporary file, fsync, rename) so a crash never leaves half a frame
behind under its final name. Metadata (EXIF and the ICC profile) is carried from a source file to
the output where the output format can hold it; see :mod:`stacker.metadata`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from stacker.errors import StackerError, UnreadableImageError
from stacker.metadata import Metadata, embed_metadata, read_metadata

RAW_EXTENSIONS = frozenset(
    {".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".dng", ".pef", ".srw"}
)
RASTER_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
IMAGE_EXTENSIONS = RASTER_EXTENSIONS | RAW_EXTENSIONS
WRITE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})


def is_image_path(path: Path) -> bool:
    """True for a file name stackrig can read (by extension; hidden files never count)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a frame as a 3-channel BGR ``uint8`` or ``uint16`` array.

    Raises :class:`UnreadableImageError` naming the file when it cannot be decoded.
    """
    p = Path(path)
    if p.suffix.lower() in RAW_EXTENSIONS:
        return _read_raw(p)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise UnreadableImageError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UnreadableImageError(f"{p}: not a readable image (corrupt, truncated or unsupported)")
    if img.dtype not in (np.uint8, np.uint16):
        img = _to_uint16(img)
    return img


def _to_uint16(img: np.ndarray) -> np.ndarray:
    if np.issubdtype(img.dtype, np.floating):
        top = float(img.max()) if img.size else 1.0
        scale = 65535.0 / top if top > 1.0 else 65535.0
        return np.clip(img * scale, 0, 65535).astype(np.uint16)
    return np.clip(img, 0, 65535).astype(np.uint16)


def _read_raw(path: Path) -> np.ndarray:
    try:
        import rawpy
    except ImportError:
        raise UnreadableImageError(
            f"{path}: RAW files need the 'raw' extra: pip install 'stackrig[raw]'"
        ) from None
    try:
        with rawpy.imread(str(path)) as raw:
            rgb = raw.postprocess(output_bps=16, use_camera_wb=True, no_auto_bright=True)
    except Exception as exc:
        raise UnreadableImageError(f"{path}: not a readable RAW file ({exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def encode_image(
    img: np.ndarray,
    ext: str,
    *,
    jpeg_quality: int = 95,
    metadata: Metadata | None = None,
) -> bytes:
    """Encode ``img`` for the format named by ``ext`` (``.jpg``, ``.png``, ``.tif``).

    JPEG is 8-bit: 16-bit input is rounded down to 8 bits. PNG and TIFF keep 16 bits.
    """
    ext = ext.lower()
    if ext not in WRITE_EXTENSIONS:
        raise StackerError(
            f"cannot write '{ext}' files: use one of {', '.join(sorted(WRITE_EXTENSIONS))}"
        )
    if ext in (".jpg", ".jpeg"):
        if not 1 <= jpeg_quality <= 100:
            raise StackerError(f"JPEG quality {jpeg_quality} is out of range: use 1 to 100")
        if img.dtype == np.uint16:
            img = cv2.convertScaleAbs(img, alpha=255.0 / 65535.0)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        data = buf.tobytes()
    elif ext in (".tif", ".tiff"):
        data = _encode_tiff(img, metadata)
        return data
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        data = buf.tobytes()
    if not ok:
        raise StackerError(f"could not encode a {img.shape} {img.dtype} image as {ext}")
    return embed_metadata(data, ext, metadata) if metadata else data


def _encode_tiff(img: np.ndarray, metadata: Metadata | None) -> bytes:
    import io

    import tifffile

    rgb = img[:, :, ::-1] if img.ndim == 3 else img
    extratags = []
    if metadata is not None and metadata.icc:
        extratags.append((34675, "B", len(metadata.icc), metadata.icc, True))
    out = io.BytesIO()
    tifffile.imwrite(
        out,
        np.ascontiguousarray(rgb),
        photometric="rgb" if img.ndim == 3 else "minisblack",
        compression="zlib",
        extratags=extratags,
        metadata=None,
    )
    return out.getvalue()


def write_image(
    path: str | os.PathLike[str],
    img: np.ndarray,
    *,
    jpeg_quality: int = 95,
    metadata_from: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``img`` atomically, format from the extension, metadata from ``metadata_from``."""
    p = Path(path)
    meta = read_metadata(Path(metadata_from)) if metadata_from is not None else None
    atomic_write_bytes(p, encode_image(img, p.suffix, jpeg_quality=jpeg_quality, metadata=meta))
    return p


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that the file is either absent, old, or complete.

    The bytes go to a hidden temporary file in the same folder, are fsynced, renamed over the
    final name, and the folder entry is fsynced too: a power cut cannot leave a torn frame.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), _FILE_MODE)  # mkstemp creates 0600; results are shared files
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)
    return p


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def check_writable_output(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, if ``path`` cannot be written or has an unknown extension."""
    p = Path(path)
    if p.suffix.lower() not in WRITE_EXTENSIONS:
        raise StackerError(f"{p}: unknown output format '{p.suffix}': use .tif, .png or .jpg")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise StackerError(f"{p}: the folder {folder} does not exist; create it first")
    if p.is_dir():
        raise StackerError(f"{p}: is a folder; give a file name such as {p / 'stacked.tif'}")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise StackerError(f"{p}: not writable; choose another output path")
    return p
