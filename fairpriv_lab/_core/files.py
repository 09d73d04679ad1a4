"""Small file-system helpers shared by the cache, the downloads and the sweeps."""

from __future__ import annotations

import time
from pathlib import Path

#: Temporary files older than this (seconds) were left by a killed writer and are removed.
STALE_SECONDS = 3600.0


def remove_stale_temporaries(folder: Path, pattern: str = ".*.tmp", *,
                             max_age: float = STALE_SECONDS) -> int:
    """Remove files matching pattern (a glob under folder) older than max_age; return how many.

    Atomic writes go through ``.NAME.XXXX.tmp`` (or ``.part``) files renamed into place; a
    process killed mid-write (``kill -9``) leaves one behind forever. A file younger than
    ``max_age`` may belong to a write in progress and is kept.
    """
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for p in folder.glob(pattern):
        try:
            if p.is_file() and now - p.stat().st_mtime > max_age:
                p.unlink()
                removed += 1
        except OSError:  # pragma: no cover - removed concurrently or read-only
            pass
    return removed
