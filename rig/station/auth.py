"""Where the station's access token comes from and where it is kept.

The token comes from ``--token`` (or ``$STACKRIG_STATION_TOKEN``), else from a token file that
the first start creates with a random token (mode 0600, written whole: a power cut leaves no
half a token), so a bookmarked address keeps working.
A token file other users may read, or another user's, is refused: whoever holds the token
controls the rig, and whoever wrote it holds it.
Checking it on every request is :mod:`stacker.preview.access`'s business, shared with the live
previews that listen beyond this machine.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from rig.station.errors import StationError
from stacker.io import atomic_write_bytes
from stacker.locking import folder_locked
from stacker.preview.access import new_token

TOKEN_ENV = "STACKRIG_STATION_TOKEN"
MIN_TOKEN_LENGTH = 12
TOKEN_FOLDER_WAIT_S = 10.0
"""How long to wait while another station, holding the folder locked, makes the token."""


def default_token_file() -> Path:
    """``$XDG_CONFIG_HOME/stackrig/station-token`` (``~/.config/...`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME")
    if not base:
        try:
            base = str(Path.home() / ".config")
        except RuntimeError:  # no HOME, and a user the system does not know (a container)
            raise StationError(
                "no home folder to keep the station's token in (HOME is not set): give "
                "--token-file, or set XDG_CONFIG_HOME"
            ) from None
    return Path(base) / "stackrig" / "station-token"


def load_token(token: str | None, token_file: Path | None = None) -> tuple[str, str]:
    """The station's access token and where it came from.

    ``token`` (``--token``, or the ``STACKRIG_STATION_TOKEN`` variable) wins; else the token file
    is read, or created with a new random token readable by its owner only.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN_LENGTH or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise StationError(
                f"--token: use at least {MIN_TOKEN_LENGTH} printable characters without spaces"
            )
        return token, "--token"
    path = token_file or default_token_file()
    # Two stations started at once (two units at boot) must not each make a token and keep the
    # one the other overwrote: the look and the creation happen under the folder's lock.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # a folder not there holds no token
        with folder_locked(path.parent, TOKEN_FOLDER_WAIT_S):
            text = _read_token_file(path)
            if text:
                return text, str(path)
            new = new_token()
            try:
                atomic_write_bytes(path, f"{new}\n".encode(), mode=0o600)
            except OSError as exc:
                if exc.errno in _NO_PERMISSIONS:  # FAT through FUSE: chmod is ENOSYS
                    raise StationError(_cannot_keep_private(path)) from None
                raise
            if path.stat().st_mode & 0o077:  # exFAT, NTFS without permissions: all may read
                path.unlink()
                raise StationError(_cannot_keep_private(path))
    except TimeoutError as exc:
        raise StationError(f"{exc}; give the token with --token") from None
    except OSError as exc:
        raise StationError(
            f"{path}: cannot save the new token ({exc.strerror}); give one with --token"
        ) from None
    return new, f"{path} (new)"


_NO_PERMISSIONS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def _cannot_keep_private(path: Path) -> str:
    """The refusal of a token file on a disk without permissions (a FAT or exFAT USB disk):
    every file there is readable by all, and a token kept there was made, then refused at the
    next start as readable by others, with a chmod that the disk ignores."""
    return (
        f"{path}: this disk cannot keep the token private (a FAT or exFAT disk has no "
        "permissions); give --token-file on another disk, or --token"
    )


def _read_token_file(path: Path) -> str:
    """The token kept in ``path``; empty when there is none yet."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a pipe would hang the start, a folder is no token
            raise StationError(
                f"{path}: not a regular file; remove it for a new token, or give --token"
            )
        if st.st_mode & 0o077:
            raise StationError(
                f"{path}: the token file can be read by other users (mode "
                f"{st.st_mode & 0o777:o}); make it private with chmod 600 {path}, or delete it "
                "for a new token"
            )
        if st.st_uid not in (os.geteuid(), 0):  # planted where others may write, as in /tmp
            raise StationError(
                f"{path}: the token file belongs to another user (uid {st.st_uid}), who could "
                "have chosen the token; use a token file of your own, or --token"
            )
        with path.open("rb") as kept:
            text = kept.read(4096).decode("ascii").strip()
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise StationError(
            f"{path}: not a token (a token is letters and digits); delete it for a new one"
        ) from None
    except OSError as exc:
        raise StationError(f"{path}: cannot read the token file ({exc.strerror})") from None
    if text and len(text) < MIN_TOKEN_LENGTH:
        raise StationError(f"{path}: the token is too short; delete the file for a new one")
    return text
