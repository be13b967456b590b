"""In-memory stand-ins for a focuser and a camera, for the session runner's logic only.

They are mocks in the sense of the project's standards: the runner's state machine, retries,
stop handling and journal are exercised quickly and deterministically here, while the real
parts (libgphoto2's virtual camera, GRBL and Marlin simulators on pseudo-terminals) are driven
by the integration tier (tests/integration/test_session_runner.py and the camera and rail tests).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from rig.camera.naming import free_stem
from rig.errors import RigError
from rig.focuser import FocuserCapabilities
from stacker.io import atomic_write_bytes


class FakeFocuser:
    """A focuser that moves instantly and remembers every move."""

    name = "fake focuser"

    def __init__(self, *, min_position: float | None = None, max_position: float | None = None):
        self.moves: list[float] = []
        self.stops = 0
        self._position = 0.0
        self._caps = FocuserCapabilities(
            absolute=True, min_position=min_position, max_position=max_position
        )

    @property
    def capabilities(self) -> FocuserCapabilities:
        return self._caps

    @property
    def position(self) -> float:
        return self._position

    def move_to(self, position: float, *, stops_seen: int | None = None) -> None:
        self.moves.append(position)
        self._position = position

    def move_by(self, delta: float) -> None:
        self.move_to(self._position + delta)

    def home(self, *, stops_seen: int | None = None) -> None:
        self.move_to(0.0)

    def stop(self) -> None:
        self.stops += 1

    def close(self) -> None:
        pass


class FakeCamera:
    """A camera that writes a small JPEG per shot; ``fail`` decides, per call, an error to raise.

    ``fail(stem, attempt)`` returns an exception (raised after ``partial`` files were written,
    as a camera that dies mid-download leaves them) or ``None`` for a good shot.
    """

    def __init__(
        self,
        *,
        fail: Callable[[str, int], BaseException | None] | None = None,
        partial: tuple[str, ...] = (),
        size: tuple[int, int] = (64, 48),
    ) -> None:
        self.fail = fail
        self.partial = partial
        self.size = size
        self.shots: list[str] = []

    def capture(self, dest_dir: Path, stem: str | None = None, *, on_progress: object = None):
        stem = stem or f"shot_{len(self.shots) + 1:04d}"
        attempt = self.shots.count(stem) + 1
        self.shots.append(stem)
        error = self.fail(stem, attempt) if self.fail is not None else None
        if error is not None:
            for suffix in self.partial:
                atomic_write_bytes(dest_dir / f"{stem}{suffix}", b"partial")
            raise error
        w, h = self.size
        rng = np.random.default_rng(len(self.shots))
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        ok, data = cv2.imencode(".jpg", image)
        if not ok:
            raise RigError("could not encode the fake frame")
        # As the real camera names its files: a stem already taken gets _2, _3...
        path = dest_dir / f"{free_stem(dest_dir, stem, ['capt.jpg'])}.jpg"
        atomic_write_bytes(path, data.tobytes())
        return [path]


class FakeRecord:
    """What the runner reads of a stacker's frame record."""

    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.merged, self.score, self.reason = True, 1.0, ""

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "name": self.name, "merged": True, "score": 1.0}


class FakeStacker:
    """Merges nothing, counts everything: the runner's stacking side without image work."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.display = None
        self.icc: bytes | None = None

    @property
    def frames_merged(self) -> int:
        return len(self.names)

    def add(self, image: np.ndarray, name: str = "", **ignored: object) -> FakeRecord:
        """Counts the frame by name; where it sits and whether it is linear change nothing here."""
        self.names.append(name)
        return FakeRecord(len(self.names) - 1, name)

    def preview(self) -> None:
        return None

    def preview_depth(self) -> None:
        return None

    def last_frame_preview(self) -> None:
        return None
