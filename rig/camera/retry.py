"""How hard to try before giving up on a busy or vanished camera.

Cameras say "busy" (PTP 0x2019, libgphoto2 -110) while writing to the card or focusing, and USB
links drop when a cable is knocked or the body sleeps. Both are normal during a long stack, so a
session retries with exponential back-off and reconnects, within bounds that keep a dead camera
from hanging the rig.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rig.errors import RigError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one camera operation.

    Attributes
    ----------
    attempts
        Retries after the first try for busy or transient errors.
    first_delay_s, max_delay_s
        Back-off: the first wait, doubling up to this cap.
    reconnects
        Reconnections allowed within one operation after the USB link broke.
    reconnect_timeout_s
        How long to wait for a vanished camera to reappear.
    event_timeout_s
        How long to wait, after a capture, for more files of the same shot (RAW+JPEG).
    """

    attempts: int = 6
    first_delay_s: float = 0.1
    max_delay_s: float = 2.0
    reconnects: int = 1
    reconnect_timeout_s: float = 10.0
    event_timeout_s: float = 0.3

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.reconnects < 0:
            raise RigError("retry attempts and reconnects must not be negative")
        if min(self.first_delay_s, self.max_delay_s, self.reconnect_timeout_s) < 0:
            raise RigError("retry delays and timeouts must not be negative")

    def delays(self) -> Iterator[float]:
        """The waits before each retry: ``attempts`` values, doubling up to ``max_delay_s``."""
        delay = self.first_delay_s
        for _ in range(self.attempts):
            yield min(delay, self.max_delay_s)
            delay *= 2
