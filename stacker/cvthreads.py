"""OpenCV's worker threads told to sleep, not spin, while they wait for work.

stackrig runs threads of its own beside OpenCV's pool: the reader decodes the next frame, the
caller aligns it and the merge folds the one before (:mod:`stacker.pipeline`,
:class:`stacker.stack.Stacker`). By default OpenCV's pthreads pool busy-waits before sleeping
(up to 2,000 pause loops in a worker and 10,000 in the calling thread, after every parallel
loop), and with three busy threads on two cores that spinning is taken from the merge, the
stage every other waits for: on two cores a 24 MP stack took 4 % more CPU and 5 % more time
with it (``benchmarks/README.md``). Pinned to one core, OpenCV runs no pool and nothing
changes.

OpenCV reads these settings once, when its library loads, so this module is imported before
``cv2`` (by ``stacker/__init__.py``); a value already in the environment is kept.
"""

from __future__ import annotations

import os

SETTINGS = {
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_PAUSE_LIMIT": "0",
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "0",
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "0",
}

for _name, _value in SETTINGS.items():
    os.environ.setdefault(_name, _value)
