"""A thread that owns a hub's crop provider and serves requests, as the stacking worker does."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from stacker.preview.hub import CropResult, PreviewHub


@contextlib.contextmanager
def crop_owner(
    hub: PreviewHub, provider: Callable[[float, float, int], CropResult]
) -> Iterator[threading.Thread]:
    """Set ``provider`` on a worker thread that serves crops until the block ends; the thread
    is yielded once the hub says crops are available."""
    stop = threading.Event()

    def worker() -> None:
        hub.crops.set_provider(provider)
        while not stop.is_set():
            hub.crops.serve(timeout=0.05)

    owner = threading.Thread(target=worker)
    owner.start()
    try:
        while not hub.crops.available:
            time.sleep(0.005)
        yield owner
    finally:
        stop.set()
        owner.join()
