"""User-facing errors: each carries one line that names the culprit and what to do.

The command lines print a :class:`UserError` as that single line on stderr and exit with its
``exit_code``; any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Base of every error caused by input, configuration or hardware rather than a bug."""

    exit_code = 2


class StackerError(UserError):
    """An image-processing error: bad frames, mismatched sizes, unwritable output."""


class UnreadableImageError(StackerError):
    """A file that is not a decodable image (corrupt, truncated, unsupported format)."""


class Interrupted(UserError):
    """Stopped by the user (Ctrl-C); the message says what was and was not written."""

    exit_code = 130
