"""User-facing errors: each carries one line that names the culprit and what to do.

The command lines print a :class:`UserError` as that single line on stderr and exit with its
``exit_code``; any other exception is a bug and keeps its traceback.
"""

import errno
import re
import sys


class UserError(Exception):
    """Base of every error caused by input, configuration or hardware rather than a bug."""

    exit_code = 2


class StackerError(UserError):
    """An image-processing error: bad frames, mismatched sizes, unwritable output."""


class ResultWriteError(StackerError):
    """A result the disk refused: ``where``, the system's ``reason``, and ``remedy`` (what to
    do about the disk, or empty). A capture session says it without "another output path",
    which it cannot choose."""

    def __init__(self, where: object, reason: str, remedy: str) -> None:
        what_to_do = or_another_output(remedy)
        super().__init__(f"{where}: cannot write the result ({reason}); {what_to_do}")
        self.where, self.reason, self.remedy = where, reason, remedy


class RawFramesNeededError(StackerError):
    """A DNG composite asked of frames that are not RAW: no run on the same frames can write
    it, so what to do is another output format, not trying again."""


def or_another_output(remedy: str) -> str:
    """What to do about an output the disk refused: ``remedy`` (for the disk), or another path."""
    return f"{remedy} or choose another output path" if remedy else "choose another output path"


class OutputBusyError(StackerError):
    """An output another process of ours is writing now (a second ``stacker watch`` with the
    same ``-o``): busy, as a camera or a session held elsewhere is (exit 4)."""

    exit_code = 4


class FrameMismatchError(StackerError):
    """A frame of another size or bit depth than the stack's: it cannot be merged into it."""


class UnreadableImageError(StackerError):
    """A file that is not a decodable image (corrupt, truncated, unsupported format)."""


class ShortOfFilesError(UnreadableImageError):
    """A frame that could not be opened for want of file descriptors: the process's want, not
    the frame's (a watch tries it again)."""


class Interrupted(UserError):
    """Stopped by the user (Ctrl-C); the message says what was and was not written."""

    exit_code = 130


STORAGE_REMEDIES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space",
    errno.EROFS: "the disk is read-only: check it and mount it again (or restart)",
    # A FUSE mount whose program ended: an exFAT or NTFS USB disk pulled out, sshfs cut off.
    errno.ENOTCONN: "its disk or share is gone (unplugged, or the program mounting it ended): "
    "mount it again",
}
"""What to do about a write the disk refused, by the error (see ``stacker.io.storage_remedy``)."""

TOO_MANY_FILES = {
    errno.EMFILE: "raise the limit of open files (ulimit -n 4096)",
    errno.ENFILE: "the system has too many files open: close other programs",
}
"""What to do when a file cannot be opened for want of descriptors: the error names the file
being opened, often a module Python was loading, not the culprit."""


MEMORY_REMEDY = "free some memory (close other programs), or stack smaller frames"
"""What to do when memory runs out: fewer frames do not help, the stack's memory is that of a
few frames, whatever their number."""


class OutOfMemoryError(StackerError):
    """Memory ran out: not the fault of the frame being read or merged, so it is never left
    out as unreadable (a stack was written without it, exit 0)."""


def resource_shortage(exc: BaseException) -> str | None:
    """One line for an error that says the machine ran short (memory, threads), or None.

    OpenCV reports a failed allocation as ``cv2.error`` with code ``StsNoMem`` (-4), Python as
    MemoryError, and a thread that cannot start as RuntimeError; each ended in a traceback.
    """
    if isinstance(exc, OutOfMemoryError):
        return str(exc)
    if isinstance(exc, MemoryError) or (getattr(exc, "code", None) == -4 and _is_cv2_error(exc)):
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        size = f": {int(asked.group(1)) / 1e6:.0f} MB more could not be had" if asked else ""
        return f"not enough memory{size}; {MEMORY_REMEDY}"
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return (
            "cannot start a thread (too little memory left for its stack, or the limit on this "
            "user's threads and processes reached: ulimit -u, systemd's TasksMax); free some "
            "memory or raise the limit"
        )
    return None


def _is_cv2_error(exc: BaseException) -> bool:
    cv2 = sys.modules.get("cv2")
    return cv2 is not None and isinstance(exc, cv2.error)
