"""stackrig's image-processing half: read, align, merge and preview focus stacks.

Usable on its own (no hardware imports): frames go into a :class:`Stacker` one at a time and a
running all-in-focus composite, a frame-index/depth map and per-frame records come out.

Importing the package itself loads nothing heavy (the readers and writers below are loaded on
first use): the ``stacker`` and ``rig`` commands start through :mod:`stacker.launch`, which must
be in place before OpenCV and the rest load, so that a Ctrl-C meanwhile ends them in one line.
"""

TYPE_CHECKING = False  # not typing's: importing it is half of this package's import time
if TYPE_CHECKING:
    from stacker.errors import StackerError
    from stacker.io import atomic_write_bytes, read_image, write_image

__all__ = ["StackerError", "atomic_write_bytes", "read_image", "write_image"]
__version__ = "0.1.0"

_FROM_IO = ("atomic_write_bytes", "read_image", "write_image")


def __getattr__(name: str) -> object:
    """The names above, each loaded when first asked for: until :mod:`stacker.launch` runs, a
    Ctrl-C ends the command in a traceback, so the console scripts' way to it stays short."""
    if name == "StackerError":
        from stacker.errors import StackerError

        return StackerError
    if name in _FROM_IO:
        from stacker import io

        return getattr(io, name)
    raise AttributeError(f"module 'stacker' has no attribute {name!r}")
