"""A live stack held by its first frame: said once, while the photographer can still act.

Each frame is aligned with the last merged one, so a bad first frame (a flash that did not
fire, a blown or a stray shot) keeps every later frame out, where the same frame anywhere else
is only left out. ``stacker stack`` stacks such a folder again without it; a live stack (a
watch, a capture session) cannot go back, so it says so as soon as two frames in a row after
the first were kept out, and nothing else was merged.
"""

from __future__ import annotations


class LoneFirstFrame:
    """Feed :meth:`after` every frame's outcome; it answers once with the warning to give."""

    def __init__(self) -> None:
        self._first: str | None = None
        self._kept_out = 0
        self._done = False

    def after(self, name: str, merged: bool) -> str | None:
        """The warning, the first time two frames after a lone first merged frame were kept
        out; ``None`` otherwise (and for good once a second frame merged)."""
        if self._done:
            return None
        if merged:
            self._done = self._first is not None  # a second frame merged: the first is fine
            self._first = self._first or name
            return None
        if self._first is None:
            return None
        self._kept_out += 1
        if self._kept_out < 2:
            return None
        self._done = True
        return (
            f"{self._first}: every frame since was kept out against it; if it is bad (a flash "
            "that did not fire, a stray shot), "
        )
