"""Files written whole or not at all, and JSON with one convention for non-finite numbers.

- :func:`atomic_write`: the data goes to a temporary file in the target's folder, is flushed
  to disk, and replaces the target with :func:`os.replace` (atomic on one file system), so a
  reader sees the old file or the new one, never half of one.
- :func:`json_float` / :func:`float_from_json`: strict JSON has no NaN or infinity; every JSON
  the package writes stores NaN as ``null`` and ±inf as the strings ``"inf"`` / ``"-inf"``,
  and reads them back with :func:`float_from_json`.
- :func:`to_jsonable` and :func:`write_json`: numpy scalars and arrays, tuples, sets and
  timestamps made JSON-ready with that convention, then written atomically.
- :func:`remove_stale_temporaries`: the temporary files a writer killed mid-write (``kill
  -9``) leaves behind, removed once they are older than any write in progress can be.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "json_float", "float_from_json", "to_jsonable", "write_json",
           "remove_stale_temporaries", "STALE_SECONDS"]

#: Temporary files older than this (seconds) were left by a killed writer and are removed.
STALE_SECONDS = 3600.0


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file and ``os.replace``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(p, "hello").read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_float(x: Any) -> float | str | None:
    """Return a float as strict JSON: NaN -> None, ±inf -> "inf" / "-inf", None stays None.

    Examples
    --------
    >>> json_float(float("nan")), json_float(float("inf")), json_float(2)
    (None, 'inf', 2.0)
    """
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def float_from_json(x: Any) -> float:
    """Inverse of :func:`json_float` (also reads the strings "nan", "inf", "-inf")."""
    return math.nan if x is None else float(x)


def to_jsonable(obj: Any) -> Any:
    """A JSON-ready copy: mappings and sequences recursively, floats by :func:`json_float`.

    numpy scalars become Python numbers, arrays, tuples and sets lists, timestamps ISO text;
    anything else unknown becomes its ``str``.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return json_float(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def write_json(path: str | os.PathLike[str], obj: Any, **dumps: Any) -> Path:
    """Write ``obj`` as strict JSON (:func:`to_jsonable`) with :func:`atomic_write`."""
    return atomic_write(path, json.dumps(to_jsonable(obj), allow_nan=False, **dumps))


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
