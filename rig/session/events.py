"""What a running session tells its subscribers: small frozen events, one subscriber interface.

A subscriber is any callable taking a :data:`SessionEvent`; it picks the events it cares
about by type (``match`` or ``isinstance``). :class:`StatusChanged` comes after every state
change, move, capture and merge; :class:`FrameCaptured` once a frame is on disk and journaled
(capture thread); :class:`FrameMerged` from the stacking thread; :class:`SessionWarning` for a
retry, an adopted frame or a frame kept out of the stack; :class:`SessionFinished` last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rig.session.journal import FrameEntry
from rig.session.state import SessionResult, SessionStatus
from rig.session.worker import StackJob, StackPreviews
from stacker.subscribers import SubscriberList

log = logging.getLogger("rig.session")


@dataclass(frozen=True)
class StatusChanged:
    status: SessionStatus
    """The session now: state, counts, position, estimate, last warnings."""


@dataclass(frozen=True)
class FrameCaptured:
    entry: FrameEntry
    """The frame's journal record: index, position and the files of the shot."""


@dataclass(frozen=True)
class FrameMerged:
    job: StackJob
    """The frame handed to the stacker (``replay`` for a frame shot before a resume)."""
    record: Any
    """The stacker's :class:`~stacker.stack.FrameRecord` (merged or kept out, score, timing)."""
    previews: StackPreviews
    """Small images of the composite, depth map and last frame, when previews are on."""


@dataclass(frozen=True)
class SessionWarning:
    message: str
    """One line for the photographer, e.g. ``frame 3: ...; retrying (1/3)``."""


@dataclass(frozen=True)
class SessionFinished:
    result: SessionResult
    """Why the run ended, its last status, the error behind a fault and the files written."""


SessionEvent = StatusChanged | FrameCaptured | FrameMerged | SessionWarning | SessionFinished


class Subscriber(Protocol):
    """Receives every event of a session; ignores the types it does not handle."""

    def __call__(self, event: SessionEvent) -> None: ...


class SessionListener:
    """A subscriber that hands each event's contents to a method of its own.

    Subclasses override the methods of the events they show (a terminal, a preview page); the
    others do nothing. An instance is itself the subscriber: ``runner.subscribe(listener)``.
    """

    def __call__(self, event: SessionEvent) -> None:
        match event:
            case StatusChanged(status):
                self.on_status(status)
            case FrameCaptured(entry):
                self.on_frame_captured(entry)
            case FrameMerged(job, record, previews):
                self.on_frame_merged(job, record, previews)
            case SessionWarning(message):
                self.on_warning(message)
            case SessionFinished(result):
                self.on_finished(result)

    def on_status(self, status: SessionStatus) -> None:
        """After every state change, move, capture and merge."""

    def on_frame_captured(self, entry: FrameEntry) -> None:
        """A frame is on disk and journaled (capture thread)."""

    def on_frame_merged(self, job: StackJob, record: Any, previews: StackPreviews) -> None:
        """The stacker merged or kept out a frame (stacking thread)."""

    def on_warning(self, message: str) -> None:
        """A retry, an adopted frame, a frame kept out of the stack."""

    def on_finished(self, result: SessionResult) -> None:
        """The run ended; nothing follows."""


class EventBus:
    """The subscribers of one session; safe to subscribe from any thread.

    A failing subscriber of :class:`StatusChanged` (a display) is logged and skipped so that
    progress reports never stop a session; other events reach subscribers as they are, so a
    subscriber may, for instance, stop the session from a :class:`FrameCaptured`.
    """

    def __init__(self) -> None:
        self._subscribers = SubscriberList[Subscriber]()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns the call that removes it."""
        return self._subscribers.add(subscriber)

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def publish(self, event: SessionEvent) -> None:
        for subscriber in self._subscribers.snapshot():
            if isinstance(event, StatusChanged):
                try:
                    subscriber(event)
                except Exception:
                    log.exception("status subscriber failed")
            else:
                subscriber(event)
