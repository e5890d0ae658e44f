"""Files the course writes, written whole or not at all.

Introduced in lab 00 (tour). Every file the course writes (claims, ceilings, engines, timing caches,
reports) goes through :func:`write_atomic`: a temporary file in the same folder, flushed to disk, then
renamed over the target, so a reader sees the old file or the new one, never half of one, and a full
disk or an interrupt leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file beside it, fsync, ``os.replace``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))   # mkstemp's 0600 would hide the file from everyone else
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The permissions the file keeps (an existing one's), or a new file's under the process umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """:func:`write_atomic` for text, UTF-8."""
    write_atomic(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike[str]) -> tuple[Any, str | None]:
    """(data, "") for a readable JSON file; (None, None) when there is no file; (None, why) when it
    cannot be read or is not JSON (a torn or corrupt file): the reader decides how loudly to say so."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
