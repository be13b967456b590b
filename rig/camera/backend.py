"""Loading python-gphoto2 on first use, never at import of :mod:`rig`.

python-gphoto2 chooses libgphoto2's I/O library when it is first imported: the real USB/serial
drivers, or the virtual camera when ``VCAMERADIR`` is set (see :mod:`rig.sim.vcamera`). Importing
it lazily keeps ``rig --help`` fast, lets the stacker run where no wheel exists, and leaves the
choice of virtual camera open until a camera is actually needed.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from rig.camera.errors import CameraError


def load_gphoto2() -> Any:
    """The ``gphoto2`` module; a :class:`CameraError` with the install command if it is missing."""
    try:
        module: ModuleType = importlib.import_module("gphoto2")
    except ImportError as exc:
        raise CameraError(
            f"python-gphoto2 is not available ({exc}); install it with "
            "`pip install 'stackrig[camera]'` (it needs libgphoto2 on platforms without wheels)"
        ) from None
    return module
