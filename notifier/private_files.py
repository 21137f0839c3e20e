"""Files only the service's own user may read: the ledger, the unsubscribe key, the mail drop.

The ledger holds every message and address, `var/unsubscribe.key` signs unsubscribe links
(whoever reads it can unsubscribe anyone), and the mail drop holds the messages themselves.
They are created 0600 in directories created 0700, whatever the umask. Files that exist
already keep their mode (an operator may have opened one to a backup group on purpose); a
start warns about each that group or others can read.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# Permission bits for group and others: none of them on a private file or directory.
_OPEN_BITS = 0o077


def private_dir(path: Path) -> None:
    """Create `path` and any missing parents 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # made meanwhile by another instance
        # mkdir's mode is filtered by the umask, which may take bits away but never add
        # them; chmod states it exactly.
        os.chmod(directory, PRIVATE_DIR)


def create_private(path: Path, data: bytes = b"") -> bool:
    """Create `path` 0600 holding `data`, atomically; False (nothing changed) if it exists.

    Written beside it first and linked into place: another instance starting at the same
    moment finds either no file or the whole of it, never an empty key.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        try:
            os.fchmod(fd, PRIVATE_FILE)  # exactly 0600, even under a umask that took a bit
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:
        # A filesystem without hard links (some network mounts): create it in place.
        return _create_in_place(path, data)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _create_in_place(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def warn_if_open(path: Path, what: str) -> bool:
    """Log a warning if group or others may read or enter `path`; True if they may."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return False
    if not mode & _OPEN_BITS:
        return False
    wanted = PRIVATE_DIR if path.is_dir() else PRIVATE_FILE
    path = path.absolute()  # the log says which file, wherever the service was started
    log.warning(
        f"{path} ({what}) is readable by other users (mode {mode:04o}); "
        f"`chmod {wanted:o} {path}` unless that is intended (文件权限过宽)",
        extra={"action": "file_mode_open", "path": str(path), "mode": f"{mode:04o}"},
    )
    return True
