"""The live preview: a page served by the rig that shows a stack growing, frame by frame.

:class:`PreviewHub` holds the shared state, :func:`attach_stacker` publishes a stacker into it
from the stacking worker thread, and :class:`PreviewServer` serves it over HTTP.
"""

from stacker.preview.hub import CropResult, CropUnavailableError, PreviewHub, Progress
from stacker.preview.publisher import StackerPublisher, attach_stacker
from stacker.preview.server import PreviewServer, PreviewServerError, create_app, serve_preview

__all__ = [
    "CropResult",
    "CropUnavailableError",
    "PreviewHub",
    "PreviewServer",
    "PreviewServerError",
    "Progress",
    "StackerPublisher",
    "attach_stacker",
    "create_app",
    "serve_preview",
]
