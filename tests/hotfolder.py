"""Files arriving in a hot folder for tests: written slowly like an upload, or long since."""

from __future__ import annotations

import os
import time
from pathlib import Path


def write_slowly(
    path: Path, data: bytes, *, chunk: int = 4096, gap: float = 0.02, pause_at: int | None = None
) -> None:
    """Write ``data`` in small chunks like a slow upload; optionally stall once for 0.8 s."""
    with path.open("wb") as fh:
        for i, start in enumerate(range(0, len(data), chunk)):
            fh.write(data[start : start + chunk])
            fh.flush()
            if pause_at is not None and i == pause_at:
                time.sleep(0.8)
            time.sleep(gap)


def write_old(path: Path, data: bytes) -> None:
    """A file that was already there a while ago (no settle wait)."""
    path.write_bytes(data)
    past = time.time() - 60
    os.utime(path, (past, past))
