"""How to stack, as data: one :class:`StackOptions`, read in one place for every front end.

``stacker stack``, ``stacker watch``, ``rig shoot/demo``, the rig station's JSON API and a
session's ``session.json`` all describe a stack with the same fields, checked here with the
same one-line errors. The accepted values come from the engine itself (:data:`METHODS`,
:data:`MODELS`, :data:`INTERPOLATIONS`), never from a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from stacker.align import MODELS
from stacker.errors import StackerError
from stacker.stack import INTERPOLATIONS, METHODS, parse_reference

OUTPUT_FORMATS = {
    "tif": ".tif",
    "tiff": ".tif",
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpg",
    "dng": ".dng",  # linear DNG: a capture session stacks the RAW file of each shot
}
"""Composite formats by name, and the suffix each is written with."""
ORDERS = ("near-to-far", "far-to-near")
"""Which end of the subject the first frame is focused on."""

Naming = Callable[[str], str]
"""How a front end calls a field in its errors: ``--method`` on a command line, ``'method'``
in JSON."""


def option_name(key: str) -> str:
    """A field as a command-line option: ``output_format`` → ``--output-format``."""
    return "--" + key.replace("_", "-")


def json_name(key: str) -> str:
    """A field as a JSON key, quoted."""
    return f"'{key}'"


def choice(value: Any, choices: tuple[str, ...] | Mapping[str, Any], what: str) -> str:
    """``value`` if it is one of ``choices``, else a one-line error naming ``what``."""
    text = str(value).strip().lower()
    if text not in choices:
        raise StackerError(f"{what} {value!r}: use {', '.join(choices)}")  # quoted: may hold \n
    return text


@dataclass(frozen=True)
class StackOptions:
    """Merge method, alignment model, reference frame, resampling, crop, output format and the
    frames' order."""

    method: str = "pyramid"
    align: str = "similarity"
    reference: str | int = "first"
    """first, middle, last, or a frame number counted from 1, as the user gives it."""
    interpolation: str = "linear"
    crop: bool = True
    output_format: str = "tif"
    order: str = "near-to-far"
    """The frames' order through the subject (``near-to-far``: the first frame is the
    nearest). A capture session takes it from its plan's direction."""

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, name: Naming = json_name) -> StackOptions:
        """Read the fields present in ``data`` (absent or empty ones keep their defaults)."""
        given = {k: v for k, v in data.items() if v is not None and str(v).strip() != ""}
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise StackerError(f"unknown stacking option(s) {', '.join(unknown)}")
        base = cls()
        reference = given.get("reference", base.reference)
        try:
            parse_reference(reference)  # checked here; the Stacker turns it into an index
        except StackerError as exc:
            raise StackerError(f"{name('reference')}: {exc}") from None
        text = str(reference).strip().lower()
        reference = int(text) if text.lstrip("-").isdigit() else text
        crop = given.get("crop", base.crop)
        if not isinstance(crop, bool):
            raise StackerError(f"{name('crop')} must be true or false, not {crop!r}")
        return cls(
            method=choice(given.get("method", base.method), METHODS, name("method")),
            align=choice(given.get("align", base.align), MODELS, name("align")),
            reference=reference,
            interpolation=choice(
                given.get("interpolation", base.interpolation),
                INTERPOLATIONS,
                name("interpolation"),
            ),
            crop=crop,
            output_format=choice(
                given.get("output_format", base.output_format), OUTPUT_FORMATS, name("format")
            ),
            order=choice(given.get("order", base.order), ORDERS, name("order")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON types; :meth:`parse` reads them back."""
        return asdict(self)

    @property
    def suffix(self) -> str:
        """The composite's file suffix, ``.tif``, ``.png``, ``.jpg`` or ``.dng``."""
        return OUTPUT_FORMATS[self.output_format]

    def stacker_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~stacker.stack.Stacker` these options set."""
        return {
            "method": self.method,
            "align": self.align,
            "reference": self.reference,
            "interpolation": self.interpolation,
            "far_first": self.far_first,
        }

    @property
    def far_first(self) -> bool:
        """The first frame is focused on the far end (:class:`~stacker.stack.Stacker`'s
        ``far_first``)."""
        return self.order == "far-to-near"
