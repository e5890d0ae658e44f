"""A small temporary filesystem for tests of full disks and read-only folders, where the machine
lets the tests mount one (root on Linux); otherwise the tests fall back to a simulated failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path


@contextlib.contextmanager
def mounted(path: Path, size: str = "256k", read_only: bool = False):
    """Mount a tmpfs of `size` at `path` for the block; yield True, or False where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    can = os.name == "posix" and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount")
    ok = bool(can) and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                      capture_output=True, timeout=30).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
