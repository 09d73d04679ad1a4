"""On-disk result cache: npz arrays + JSON metadata, written atomically, verified on load.

Layout: ``<root>/<key>/<item>.npz`` holds the arrays of one item (a chunk of trained models,
an audit) and ``<root>/<key>/<item>.json`` its metadata, including the sha256 and size of
the npz file and a sha256 of the JSON's own content. The JSON is written last and is the
commit mark: an item exists only when its JSON verifies. ``key`` is the sha256 of the
normalised configuration, the dataset checksum and :data:`CACHE_FORMAT`.

A truncated, modified or unreadable item is reported with a :class:`CacheWarning` naming the
file, removed, and reported missing so that the caller recomputes it; it is never used. No
pickle anywhere: arrays are loaded with ``allow_pickle=False`` and object arrays are refused
on save.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._core import validate as V
from .._core.exceptions import CacheCorruptedError, CacheWriteError
from .._core.io import STALE_SECONDS, atomic_write, remove_stale_temporaries
from .config import canonical, digest

__all__ = [
    "CACHE_FORMAT",
    "Cache",
    "CacheEntry",
    "CacheItem",
    "CacheWarning",
    "CalibrationMemo",
    "CacheWriteError",
    "default_cache_dir",
]

#: Bump when the layout or the meaning of cached arrays changes; old entries are then ignored.
#: 2: DP-SGD-S/F epsilon accounted jointly (sigma_eff), noise stream keyed by the data and
#: settings, un-noised telemetry only with train.diagnostics (docs/privacy.md).
#: 3: the noise stream's key reads floats at 10 significant digits (a calibrated sigma that
#: moves in its last bits draws the same noise); the CNN engine's sums in another order.
CACHE_FORMAT = 3
_KEY = re.compile(r"^[0-9a-f]{64}$")
_ITEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
ENTRY_ITEM = "entry"


class CacheWarning(UserWarning):
    """A cached file failed verification and is being recomputed."""


def default_cache_dir() -> Path:
    """``$FAIRPRIV_LAB_CACHE`` if set, else ``~/.cache/fairpriv-lab/results``."""
    env = os.environ.get("FAIRPRIV_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fairpriv-lab" / "results"


@dataclass(frozen=True)
class CacheItem:
    """One verified cached item: its arrays (read-only) and its metadata dict."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    #: the checksum of the item's JSON record (which holds the npz's sha256): names this
    #: exact content, so an entry or an audit can record which chunks it was made from
    digest: str = ""


@dataclass(frozen=True)
class CacheEntry:
    """Summary of one cache entry (one configuration) as listed by :meth:`Cache.list`."""

    key: str
    path: Path
    label: str
    created: float
    items: tuple[str, ...]
    size_bytes: int


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a cache file with :func:`atomic_write`, naming the folder when the disk is full.

    A folder where the file belongs is removed first; a full disk (or quota) raises
    :class:`CacheWriteError` with the bytes needed and free (the temporary file is removed).
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    try:
        atomic_write(path, data)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:  # pragma: no cover
            free = -1
        raise CacheWriteError(
            f"The disk holding {path.parent} is full: writing {path.name} needs "
            f"{len(data):,} bytes and {max(free, 0):,} are free. Free some space (e.g. "
            "`fairpriv-lab cache clear`) or set FAIRPRIV_LAB_CACHE to another disk.",
            path=path, needed=len(data), free=free) from err


class Cache:
    """A folder of cached results keyed by configuration hash.

    Parameters
    ----------
    root : path, optional
        The cache folder; :func:`default_cache_dir` when None. Created on first write.
    on_corrupt : {'warn', 'raise'}
        ``'warn'`` (default): a corrupted item is reported with a :class:`CacheWarning`,
        deleted and treated as missing (so it is recomputed). ``'raise'``: raise
        :class:`~fairpriv_lab._core.exceptions.CacheCorruptedError` instead.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> cache = Cache(tempfile.mkdtemp())
    >>> key = cache.key({"a": 1}, dataset_checksum="abc")
    >>> _ = cache.save(key, "chunk-00000", {"x": np.arange(3)}, {"rows": [0, 2]})
    >>> item = cache.load(key, "chunk-00000")
    >>> item.arrays["x"].tolist(), item.meta["rows"]
    ([0, 1, 2], [0, 2])
    """

    def __init__(self, root: str | os.PathLike | None = None, *,
                 on_corrupt: Literal["warn", "raise"] = "warn") -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.on_corrupt = V.choice("on_corrupt", on_corrupt, ("warn", "raise"))

    def __repr__(self) -> str:
        return f"Cache(root={str(self.root)!r})"

    # ------------------------------------------------------------------ keys and paths
    @staticmethod
    def key(payload: Mapping[str, Any], *, dataset_checksum: str) -> str:
        """sha256 of ``{"format": CACHE_FORMAT, "dataset": checksum, "config": payload}``."""
        return digest({"format": CACHE_FORMAT, "dataset": dataset_checksum, "config": payload})

    def _paths(self, key: str, item: str) -> tuple[Path, Path]:
        if not isinstance(key, str) or not _KEY.match(key):
            raise V.fail("key", key, "to be a 64-character sha256 hex digest")
        if not isinstance(item, str) or not _ITEM.match(item):
            raise V.fail("item", item, "to be a simple file name (letters, digits, '_', '.', '-')")
        folder = self.root / key
        return folder / f"{item}.npz", folder / f"{item}.json"

    def has(self, key: str, item: str) -> bool:
        """Return True when the item's metadata file exists (unverified; :meth:`load` verifies)."""
        return self._paths(key, item)[1].exists()

    # ------------------------------------------------------------------ save / load
    def save(self, key: str, item: str, arrays: Mapping[str, np.ndarray] | None,
             meta: Mapping[str, Any]) -> Path:
        """Write arrays (npz) and meta (JSON) atomically; return the JSON path.

        Object arrays are refused (they would need pickle). The npz is written first, the
        JSON (holding the npz's sha256) last, each through a temporary file and os.replace.
        """
        npz_path, json_path = self._paths(key, item)
        folder = npz_path.parent
        if folder.exists() and not folder.is_dir():
            warnings.warn(f"Cache entry {folder} is a file, not a folder; it was removed and the "
                          "entry is written again.", CacheWarning, stacklevel=2)
            folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"format": CACHE_FORMAT, "key": key, "item": item,
                                  "written": time.time(), "meta": canonical(dict(meta))}
        if arrays is not None:
            clean = {}
            for name, arr in arrays.items():
                a = np.asarray(arr)
                if a.dtype.hasobject:
                    raise V.fail(f"arrays[{name!r}]", f"array of dtype {a.dtype}",
                                 "to have a numeric, bool or fixed-width string dtype (no pickle)")
                clean[name] = a
            buf = io.BytesIO()
            np.savez(buf, **clean)
            data = buf.getvalue()
            _atomic_write(npz_path, data)
            record["npz"] = {"file": npz_path.name, "sha256": _sha256_bytes(data),
                             "bytes": len(data), "arrays": sorted(clean)}
        else:
            npz_path.unlink(missing_ok=True)
            record["npz"] = None
        record["checksum"] = digest({k: v for k, v in record.items()})
        text = json.dumps(record, sort_keys=True, indent=1, allow_nan=False)
        _atomic_write(json_path, text.encode())
        return json_path

    def load(self, key: str, item: str) -> CacheItem | None:
        """Return the verified item, or None when it is missing or failed verification.

        Verification: the JSON parses and its own checksum matches, names the same key and
        item and cache format; the npz has the recorded size and sha256 and loads with
        ``allow_pickle=False`` holding the recorded arrays. On failure the item is reported
        (CacheWarning naming the file and the reason, or CacheCorruptedError with
        ``on_corrupt='raise'``), deleted, and None is returned so the caller recomputes.
        """
        npz_path, json_path = self._paths(key, item)
        if not json_path.exists() and not json_path.is_symlink():
            return None
        try:
            return self._verified(key, item, npz_path, json_path)
        except _Corrupt as err:
            self._report(npz_path, json_path, err.path, err.reason, stacklevel=3)
            return None

    def reject(self, key: str, item: str, reason: str) -> None:
        """Report and remove an item that verified but cannot be used, like a corrupted one.

        For example an array the reader needs is missing; the caller recomputes the item.
        """
        npz_path, json_path = self._paths(key, item)
        self._report(npz_path, json_path, json_path, reason, stacklevel=3)

    def _report(self, npz_path: Path, json_path: Path, path: Path, reason: str, *, stacklevel: int) -> None:
        self._discard(npz_path, json_path)
        msg = f"Cached file {path} failed verification ({reason}); it was removed and will be recomputed."
        if self.on_corrupt == "raise":
            raise CacheCorruptedError(msg) from None
        warnings.warn(msg, CacheWarning, stacklevel=stacklevel + 1)

    def remove_stale_temporaries(self, max_age: float = STALE_SECONDS) -> int:
        """Remove ``.*.tmp`` files older than max_age left in the entries by killed writers."""
        return remove_stale_temporaries(self.root, "*/.*.tmp", max_age=max_age)

    def item_digest(self, key: str, item: str) -> str | None:
        """Return the checksum recorded in an item's JSON (not verified; :meth:`load` verifies)."""
        try:
            return str(json.loads(self._paths(key, item)[1].read_text())["checksum"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def _verified(self, key: str, item: str, npz_path: Path, json_path: Path) -> CacheItem:
        try:
            return self._verified_unchecked(key, item, npz_path, json_path)
        except _Corrupt:
            raise
        except RecursionError:
            raise _Corrupt(json_path, "nested too deeply") from None
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as err:
            raise _Corrupt(json_path, f"malformed content: {type(err).__name__}: {err}") from None

    def _verified_unchecked(self, key: str, item: str, npz_path: Path, json_path: Path) -> CacheItem:
        if not json_path.is_file():
            raise _Corrupt(json_path, "not a regular file")
        try:
            record = json.loads(json_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Corrupt(json_path, f"unreadable JSON: {err}") from None
        if not isinstance(record, dict) or "checksum" not in record:
            raise _Corrupt(json_path, "no checksum field")
        claimed = record.pop("checksum")
        try:
            actual = digest(record)
        except (TypeError, ValueError) as err:
            raise _Corrupt(json_path, f"malformed content: {err}") from None
        if claimed != actual:
            raise _Corrupt(json_path, "its content does not match its checksum")
        if record.get("format") != CACHE_FORMAT or record.get("key") != key or record.get("item") != item:
            raise _Corrupt(json_path, "it belongs to another key, item or cache format")
        arrays: dict[str, np.ndarray] = {}
        info = record.get("npz")
        if info is not None:
            if not npz_path.exists():
                raise _Corrupt(npz_path, "the array file is missing")
            if not npz_path.is_file():
                raise _Corrupt(npz_path, "not a regular file")
            size = npz_path.stat().st_size
            if size != info["bytes"]:
                raise _Corrupt(npz_path, f"truncated or extended: {size} bytes, expected {info['bytes']}")
            data = npz_path.read_bytes()
            if _sha256_bytes(data) != info["sha256"]:
                raise _Corrupt(npz_path, "sha256 mismatch")
            try:
                with np.load(io.BytesIO(data), allow_pickle=False) as z:
                    arrays = {name: z[name] for name in z.files}
            except (ValueError, OSError, EOFError) as err:  # pragma: no cover - sha256 guards this
                raise _Corrupt(npz_path, f"unreadable npz: {err}") from None
            if sorted(arrays) != info["arrays"]:
                raise _Corrupt(npz_path, "it holds other arrays than recorded")
            for a in arrays.values():
                a.setflags(write=False)
        if not isinstance(record.get("meta"), dict):
            raise _Corrupt(json_path, "no metadata mapping")
        return CacheItem(arrays=arrays, meta=record["meta"], digest=claimed)

    @staticmethod
    def _discard(*paths: Path) -> None:
        for p in paths:
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            except OSError:  # pragma: no cover - read-only cache folder
                pass

    def items(self, key: str) -> list[str]:
        """Names of the items present under key (committed, i.e. with a JSON file)."""
        folder = self.root / key
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json"))

    def delete(self, key: str, item: str) -> None:
        """Remove one item (both files) if present."""
        self._discard(*self._paths(key, item))

    # ------------------------------------------------------------------ housekeeping
    def _entry_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _KEY.match(p.name))

    def list(self) -> list[CacheEntry]:
        """Every entry, newest first, with its label, items and size on disk."""
        out = []
        for folder in self._entry_dirs():
            label, created = "", folder.stat().st_mtime
            meta_path = folder / f"{ENTRY_ITEM}.json"
            try:
                rec = json.loads(meta_path.read_text())
                label = str(rec.get("meta", {}).get("label", ""))
                created = float(rec.get("written", created))
            except (OSError, ValueError, TypeError, AttributeError, RecursionError):
                label = "(no entry metadata)"
            files = [p for p in folder.iterdir() if p.is_file()]
            out.append(CacheEntry(
                key=folder.name, path=folder, label=label, created=created,
                items=tuple(sorted(p.stem for p in files if p.suffix == ".json" and p.stem != ENTRY_ITEM)),
                size_bytes=sum(p.stat().st_size for p in files),
            ))
        return sorted(out, key=lambda e: -e.created)

    def size_bytes(self) -> int:
        """Total size of the cached entries in bytes."""
        return sum(e.size_bytes for e in self.list())

    def clear(self, key: str | None = None) -> int:
        """Remove one entry (by key or unique key prefix) or all entries; return bytes freed.

        Only folders named by a sha256 key are removed, never other files under the root.
        """
        dirs = self._entry_dirs()
        if key is not None:
            if not isinstance(key, str) or not key or not re.match(r"^[0-9a-f]+$", key):
                raise V.fail("key", key, "to be a hex key or key prefix as shown by Cache.list()")
            dirs = [d for d in dirs if d.name.startswith(key)]
            if len(dirs) != 1:
                raise V.fail("key", key, f"to match exactly one cache entry (it matches {len(dirs)})")
        freed = 0
        for d in dirs:
            freed += sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
            shutil.rmtree(d)
        return freed


class _Corrupt(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


class CalibrationMemo:
    """Noise calibrations remembered on disk across sessions: question -> σ (one small JSON each).

    Registered with :func:`fairpriv_lab.engine.privacy.set_calibration_store` by the
    experiment layer, so a calibration answered once (by ``make notebooks-refresh``, or in
    an earlier session) costs a file read. Files live in ``<cache folder>/calibration/``
    (``$FAIRPRIV_LAB_CACHE`` read at each call) and are named by the sha256 of the question;
    a file that does not hold the same question, or not a positive finite σ, is ignored.

    Examples
    --------
    >>> import tempfile
    >>> memo = CalibrationMemo(tempfile.mkdtemp())
    >>> q = {"target_epsilon": 8.0, "steps": 100}
    >>> memo.get(q) is None
    True
    >>> memo.put(q, 1.25); memo.get(q)
    1.25
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self._root = None if root is None else Path(root)

    def _path(self, question: Mapping[str, Any]) -> Path:
        root = self._root if self._root is not None else default_cache_dir()
        return root / "calibration" / f"{digest({'format': CACHE_FORMAT, 'question': question})}.json"

    def get(self, question: Mapping[str, Any]) -> float | None:
        """Return the stored σ of the question, or None."""
        try:
            data = json.loads(self._path(question).read_text())
        except (OSError, ValueError):
            return None
        sigma = data.get("sigma") if isinstance(data, dict) else None
        if data.get("question") != canonical(question) or not isinstance(sigma, int | float):
            return None
        return float(sigma) if math.isfinite(sigma) and sigma > 0 else None

    def put(self, question: Mapping[str, Any], sigma: float) -> None:
        """Store σ for the question (atomically; a read-only cache folder is skipped)."""
        path = self._path(question)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"question": canonical(question), "sigma": float(sigma)}).encode())
        except OSError:
            return
