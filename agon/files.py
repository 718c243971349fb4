"""Small files that several processes share: written atomically, read forgivingly."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_pid", "write_atomically"]


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or None when it is missing or unreadable."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None
