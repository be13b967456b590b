"""The simulated rig's photographer for ``rig demo --tether``: turn focus, press the shutter;
or, before a body that brackets by itself, press once.

A tether session never releases the shutter itself; on the simulated rig this thread does, the
way a photographer turning a manual rail does: it stages the scene as seen at the next focus
position, presses the shutter through libgphoto2 (``gp_camera_trigger_capture``: the virtual
body's InitiateCapture, whose file comes back as an ObjectAdded event), and waits until the
session has that frame on disk before turning focus again — the virtual body reads the staged
file when it is downloaded, not when it is shot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from rig.session.events import FrameCaptured, SessionEvent, StatusChanged
from stacker.runstate import RunState

log = logging.getLogger(__name__)

FRAME_TIMEOUT_S = 30.0
_ENDING = (RunState.STOPPING, RunState.FINISHING, RunState.FINISHED, RunState.STOPPED)


class SimulatedShutter:
    """Presses the simulated rig's shutter once per frame in ``positions`` (index -> µm)."""

    def __init__(self, rig: Any, tether: Any, positions: Mapping[int, float]) -> None:
        self.rig = rig
        self.tether = tether
        self.positions = dict(positions)
        self.presses = 0
        self._captured = threading.Semaphore(0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-shutter", daemon=True)

    def __call__(self, event: SessionEvent) -> None:
        """Session subscriber: a frame on disk lets the photographer turn focus again; a
        stopping session makes them stop pressing."""
        if isinstance(event, FrameCaptured):
            self._captured.release()
        elif isinstance(event, StatusChanged) and event.status.state in _ENDING:
            self.halt()

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """Press no more (safe from any thread, a session subscriber included)."""
        self._stop.set()
        self._captured.release()

    def stop(self) -> None:
        """Press no more and wait for the thread to end."""
        self.halt()
        if self._thread.is_alive():
            self._thread.join(FRAME_TIMEOUT_S)

    def _run(self) -> None:
        for index in sorted(self.positions):
            if self._stop.is_set():
                return
            try:
                self.rig.stage(self.positions[index])
                self.tether.trigger()
            except Exception as exc:  # the session reports the camera; the demo stops pressing
                log.warning("demo shutter: frame %d not shot: %s", index, exc)
                return
            self.presses += 1
            if not self._captured.acquire(timeout=FRAME_TIMEOUT_S) or self._stop.is_set():
                return


class BracketPress:
    """The photographer of a body that brackets by itself (:mod:`rig.sim.bracketing`): one
    press, and the body shoots the whole burst, stepping focus on its own."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.presses = 0

    def __call__(self, event: SessionEvent) -> None:
        """Session subscriber: a burst, once pressed, is the body's own business."""

    def start(self) -> None:
        self.body.press()
        self.presses = 1

    def stop(self) -> None:
        """The session is over: the body is switched off. (A real one would shoot on; this
        one renders its frames with OpenCV, and a C++ thread pool busy while the interpreter
        exits ends the process in ``std::terminate``.)"""
        self.body.halt()
