"""What one shot produces, and where bodies put it: vendors, capture targets, files per shot.

libgphoto2 reports only the first file of a shot from ``gp_camera_capture``; a RAW+JPEG body
announces the second one by a later event, sometimes a second or more later on a busy body
(``camera_canon_eos_capture`` in ``camlibs/ptp2/library.c`` returns the first image "and lets
wait_for_event get the rest"). Knowing from the image-format setting how many files a shot makes
lets the camera wait for exactly those, within a bound, instead of guessing from a quiet window.

The capture target decides where the camlib puts a shot. With RAM (libgphoto2's default) Canon
EOS and Sony bodies report it in folder ``/``, already transferred into libgphoto2's cache, and
Nikon deletes it on the body after the transfer; with the card, the file is announced once
written and downloaded afterwards (in pieces, with progress, where the body can), and it stays
on the card if the USB link drops. :func:`default_capture_target` gives each vendor's default.
"""

from __future__ import annotations

from typing import Literal, cast

from rig.errors import RigError

CaptureTarget = Literal["ram", "card", "both"]
TargetChoice = Literal["auto", "ram", "card", "both"]
CAPTURE_TARGET_CHOICES: tuple[TargetChoice, ...] = ("auto", "ram", "card", "both")
"""What users may ask for; ``auto`` is the vendor's default."""

Vendor = Literal["canon", "nikon", "sony", "fuji", "olympus", "panasonic", "other"]
_VENDOR_WORDS: tuple[tuple[str, Vendor], ...] = (
    ("canon", "canon"),
    ("nikon", "nikon"),
    ("sony", "sony"),
    ("fuji", "fuji"),
    ("olympus", "olympus"),
    ("om digital", "olympus"),
    ("om system", "olympus"),
    ("panasonic", "panasonic"),
    ("lumix", "panasonic"),
)

DEFAULT_TARGETS: dict[Vendor, CaptureTarget | None] = {
    "canon": "card",
    "nikon": "card",
    "panasonic": "card",
    "sony": "ram",
    "fuji": None,
    "olympus": None,
    "other": None,
}
"""Card where the body can (files survive a USB drop, download overlaps the next move, and are
deleted after download); RAM on Sony, whose captures always travel through ``/`` and whose
card copy would stay on the card; ``None`` leaves bodies without a libgphoto2 capture-target
setting alone."""

FORMAT_KEYS = ("imageformat", "imagequality")
"""libgphoto2's image-format settings: Canon and Olympus/Fuji/Panasonic ``imageformat``, Nikon and
Sony ``imagequality`` (``config.c``)."""

_RAW_WORDS = ("raw", "nef", "nrw", "arw", "cr2", "cr3", "orf", "raf", "rw2", "dng", "pef")


def vendor_of(*names: str) -> Vendor:
    """The vendor named in the first of ``names`` (manufacturer, then model) that names one."""
    for name in names:
        folded = name.casefold()
        for word, vendor in _VENDOR_WORDS:
            if word in folded:
                return vendor
    return "other"


def parse_capture_target(text: str | None, option: str = "--capture-target") -> TargetChoice | None:
    """A user's capture target, checked; ``None`` stays ``None`` (leave the camera alone)."""
    if text is None:
        return None
    if text not in CAPTURE_TARGET_CHOICES:
        raise RigError(
            f"{option} {text!r}: use one of {', '.join(CAPTURE_TARGET_CHOICES)} "
            "(auto: card on Canon, Nikon and Panasonic, RAM on Sony)"
        )
    return cast(TargetChoice, text)


def default_capture_target(vendor: Vendor) -> CaptureTarget | None:
    """The capture target a session uses on ``vendor``'s bodies unless the user chooses."""
    return DEFAULT_TARGETS[vendor]


def is_coded_format(image_format: str) -> bool:
    """Whether the image-format setting reads as a bare number, which says nothing of what a
    shot saves: libgphoto2 shows a Panasonic's formats so (``_get_Panasonic_ImageFormat`` in
    ``camlibs/ptp2/config.c`` writes the property's raw value, ``"3"``)."""
    return image_format.strip().isdigit()


def check_saves_raw(camera: object, output_suffix: str) -> None:
    """Refuse, before anything moves, a DNG composite from a camera set to save no RAW file:
    every frame would be shot, and the composite fail at the end (a resume too). A format
    that reads as a number says nothing, and is let through."""
    if output_suffix != ".dng":
        return
    read = getattr(camera, "image_format", None)
    image_format = read() if callable(read) else ""
    folded = image_format.casefold()
    if is_coded_format(image_format):
        return
    if image_format and not any(word in folded for word in _RAW_WORDS):
        raise RigError(
            f"--format dng stacks RAW files, and the camera saves {image_format!r}: set its "
            "image format to RAW or RAW + JPEG, or choose --format tif"
        )


def files_per_shot(image_format: str) -> int | None:
    """How many files a shot makes with this image-format setting (2 for RAW+JPEG, else 1);
    ``None`` when the setting is a number that does not say (:func:`is_coded_format`).

    RAW+JPEG is a RAW part joined by ``+`` to a part that is not RAW, whatever that part is
    called: ``RAW + Large Fine JPEG`` before libgphoto2 2.5.32 and ``RAW + L`` or
    ``cRAW + cM`` since (``canon_eos_single_ImageFormats`` in ``camlibs/ptp2/config.c`` names
    each half by its size alone), ``NEF+Fine`` on a Nikon, ``RAW+JPEG`` on a Sony.
    """
    if is_coded_format(image_format):
        return None
    parts = [part.strip() for part in image_format.casefold().split("+")]
    raw = [any(word in part for word in _RAW_WORDS) for part in parts if part]
    return 2 if len(raw) >= 2 and any(raw) and not all(raw) else 1
