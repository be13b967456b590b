"""stackrig's image-processing half: read, align, merge and preview focus stacks.

Usable on its own (no hardware imports): frames go into a :class:`Stacker` one at a time and a
running all-in-focus composite, a frame-index/depth map and per-frame records come out.

Importing the package itself loads nothing heavy (the readers and writers below are loaded on
first use): the ``stacker`` and ``rig`` commands start through :mod:`stacker.launch`, which must
be in place before OpenCV and the rest load, so that a Ctrl-C meanwhile ends them in one line.
"""

from typing import TYPE_CHECKING

from stacker.errors import StackerError

if TYPE_CHECKING:
    from stacker.io import atomic_write_bytes, read_image, write_image

__all__ = ["StackerError", "atomic_write_bytes", "read_image", "write_image"]
__version__ = "0.1.0"

_FROM_IO = ("atomic_write_bytes", "read_image", "write_image")


def __getattr__(name: str) -> object:
    if name in _FROM_IO:
        from stacker import io

        return getattr(io, name)
    raise AttributeError(f"module 'stacker' has no attribute {name!r}")
