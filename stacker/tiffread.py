"""TIFF frames that OpenCV's own libtiff cannot decode, read with tifffile and imagecodecs.

Editors and converters write TIFFs that OpenCV refuses: 16-bit floating-point ("half")
samples, Zstandard or WebP compression, separate colour planes with those.
tifffile reads them all; its pixels are then turned into what the stacker takes from any other
decoder: 3-channel BGR, 8 or 16 bits or floating point (see :func:`stacker.io.read_image`), and
the orientation the file asks for, still to be applied.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np

TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, either byte order


def is_tiff(data: bytes) -> bool:
    return data[:4] in TIFF_MAGIC


class TiffSurvey(NamedTuple):
    """What a TIFF's first IFDs say before it is decoded (see :func:`survey`)."""

    opencv_misreads: bool
    """OpenCV would decode it wrongly without saying so, where tifffile is right."""
    images: int
    """Full-size images in its chain of IFDs: more than one is a whole stack in one file."""


def survey(data: bytes) -> TiffSurvey:
    """How TIFF ``data`` is to be read. OpenCV misreads:

    - separate colour planes of more than 8 bits: OpenCV's TIFF decoder interleaves them wrong
      (a grey image of noise; fixed upstream in 2026, still in the wheels);
    - extra samples (alpha): libtiff's RGBA path multiplies the colours by an unassociated
      alpha, so half-transparent pixels came out half as bright;
    - signed samples, or integers wider than 16 bits: read as other types and clipped;
    - MinIsWhite samples of more than 8 bits: left as stored, a negative;
    - tiles of an image with an Orientation other than 1: libtiff's RGBA tile reader (OpenCV's
      8-bit path) turns part of the way itself (opencv PR #14609), and OpenCV turns the rest
      as if it had not, so orientations 2, 3, 6 and 7 came out in scrambled bands (a camera
      JPEG shot upright converted by ``convert -define tiff:tile-geometry=...`` or ``tiffcp -t``).

    A file of several full-size images (ImageJ's or a microscope's stack) is counted: both
    decoders read the first image alone, and the rest of the stack was left out unsaid.
    """
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            separate = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
            bits = int(page.bitspersample)
            signed = page.sampleformat == tifffile.SAMPLEFORMAT.INT
            wide = page.sampleformat == tifffile.SAMPLEFORMAT.UINT and bits > 16
            white = page.photometric == tifffile.PHOTOMETRIC.MINISWHITE and bits > 8
            orientation = page.tags.get(274)
            turned = orientation is not None and orientation.value != 1
            tiles = page.is_tiled and turned
            misread = bool(
                (separate and bits > 8) or page.extrasamples or signed or wide or white or tiles
            )
            images = 1
            if len(tif.pages) > 1:
                second = tif.pages[1]
                if second.shape == page.shape and not (second.subfiletype & 1):
                    images = len(tif.pages)
            return TiffSurvey(misread, images)
    except Exception:  # tifffile's and its codecs' errors have no common base
        return TiffSurvey(False, 1)


def decode_tiff(data: bytes, max_bytes: int) -> tuple[np.ndarray, int] | None:
    """The first image of TIFF ``data`` as stored (BGR) and its orientation (1 to 8); None when
    tifffile cannot read it either, or it is no photograph (one sample per pixel with a palette,
    CMYK, more than four samples), or it would take more than ``max_bytes`` once decoded. An
    alpha channel is dropped (a grey one's too: an export with transparency kept), an
    associated one after the colour is divided by it (stored premultiplied, half-transparent
    pixels were half as bright).

    Both are told from the header, before anything is decoded: a 2 MB file declaring 144
    megapixels of eight 16-bit samples (under the pixel limit) took 2.4 GB to be refused, from
    the station's thumbnail of a composite or a hot folder fed over Wi-Fi."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            ycbcr = (  # JPEG-compressed: its decoder gives RGB (libtiff's "JPEGCOLORMODE")
                page.photometric == tifffile.PHOTOMETRIC.YCBCR
                and page.compression == tifffile.COMPRESSION.JPEG
            )
            if not ycbcr and page.photometric not in (
                tifffile.PHOTOMETRIC.MINISBLACK,
                tifffile.PHOTOMETRIC.MINISWHITE,
                tifffile.PHOTOMETRIC.RGB,
            ):
                return None
            if page.samplesperpixel not in (1, 2, 3, 4) or page.nbytes > max_bytes:
                return None
            pixels = page.asarray()
            if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
                pixels = _inverted(pixels)
            axes = page.axes
            premultiplied = tuple(page.extrasamples)[:1] == (tifffile.EXTRASAMPLE.ASSOCALPHA,)
            tag = page.tags.get(274)  # Orientation
            orientation = int(tag.value) if tag is not None else 1
    except Exception:  # tifffile's and its codecs' errors have no common base
        return None
    if "S" in axes and axes.index("S") < axes.index("Y"):  # separate planes: samples first
        pixels = np.moveaxis(pixels, axes.index("S"), -1)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if premultiplied and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = _unpremultiplied(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey and (unassociated) alpha
        pixels = pixels[:, :, :1]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or pixels.dtype.kind not in "buif":
        return None  # complex samples are no photograph
    if pixels.dtype == np.bool_:  # one bit a sample, as OpenCV reads it: 0 or 255
        pixels = pixels.view(np.uint8) * np.uint8(255)
    if pixels.dtype == np.float16:
        pixels = pixels.astype(np.float32)
    bgr = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, 2::-1]
    return np.ascontiguousarray(bgr), orientation if 1 <= orientation <= 8 else 1


def _unpremultiplied(pixels: np.ndarray) -> np.ndarray:
    """The colour samples, stored multiplied by the last sample (associated alpha), divided
    by it, without the alpha; where alpha is 0 there is no colour, and it stays 0."""
    top = 1.0 if pixels.dtype.kind == "f" else float(np.iinfo(pixels.dtype).max)
    alpha = pixels[:, :, -1:].astype(np.float32) / top
    colour = pixels[:, :, :-1] / np.where(alpha > 0, alpha, 1.0)
    if pixels.dtype.kind != "f":
        colour = np.clip(np.rint(colour), 0, top)
    return colour.astype(pixels.dtype)


def _inverted(pixels: np.ndarray) -> np.ndarray:
    """MinIsWhite samples as MinIsBlack ones: 0 is white there."""
    if pixels.dtype == np.bool_:
        return ~pixels
    if pixels.dtype.kind == "f":
        return 1.0 - pixels
    return np.iinfo(pixels.dtype).max - pixels
