"""OpenCV, typed loosely where its stubs are stricter than its bindings.

OpenCV's type stubs reject scalar operands (``cv2.multiply(img, (g, g, g, 0))``,
``cv2.absdiff(band, 0)``) that the bindings accept and that save a full-size temporary per call
on the hot path. Call those through :data:`cv` so the rest of the code stays type-checked.
"""

from typing import Any

import cv2

cv: Any = cv2
