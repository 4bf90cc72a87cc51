"""Local files of the service, private to its user: directories 0700, files 0600.

The data directory holds key hashes and the whole configuration (the last-known-good snapshot)
and user ids (the spool): nobody else on the host has any business reading them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) 0700, or tighten it to 0700 if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def open_private(path: Path, mode: str = "ab") -> IO[bytes]:
    """Open a file for writing, created 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a reader sees the old file or the new, never half:
    a temporary file beside it, fsynced, then renamed over it."""
    private_dir(path.parent)
    # Unique per writer: containers sharing a data volume can all be PID 1.
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with open_private(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
