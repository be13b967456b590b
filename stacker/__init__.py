"""stackrig's image-processing half: read, align, merge and preview focus stacks.

Usable on its own (no hardware imports): frames go into a :class:`Stacker` one at a time and a
running all-in-focus composite, a frame-index/depth map and per-frame records come out.
"""

from stacker.errors import StackerError
from stacker.io import atomic_write_bytes, read_image, write_image

__all__ = ["StackerError", "atomic_write_bytes", "read_image", "write_image"]
__version__ = "0.1.0"
