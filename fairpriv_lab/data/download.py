"""Fetch dataset files into a local cache, verified by sha256 and written atomically.

Cache layout: ``<data home>/<dataset>/<filename>``. The data home is, in order of precedence,
the ``data_home=`` argument, the environment variable ``FAIRPRIV_LAB_DATA``, or
``~/.cache/fairpriv-lab``.

Guarantees:

- A download streams into a temporary file inside the dataset's cache folder, is checked
  (length announced by the server, sha256) and only then renamed into place with
  :func:`os.replace` (atomic on one file system). A failed, truncated or corrupted download
  leaves nothing in the cache.
- A file already in the cache is verified again on every use; one that fails is removed
  (with a :class:`~fairpriv_lab._core.exceptions.DataWarning`) and fetched again.
- When every URL fails (offline, HTTP error) a
  :class:`~fairpriv_lab._core.exceptions.DownloadError` names each URL tried and the exact path
  where the file can be placed by hand, with the sha256 it must have.
- Files whose sha256 could not be pinned when this package was written (``sha256=None``)
  are trusted on first use: the sha256 of the first download is recorded in
  ``<dataset>/SHA256SUMS`` beside the file (with a warning that says so) and checked on
  every later use. Before it is trusted, an archive (``.zip``, ``.gz``) is read to its end,
  so a truncated body is refused.
- Every download has an overall deadline (``deadline`` seconds, besides the per-operation
  ``timeout``: a server trickling one byte a second is cut off) and a size cap per file
  (:attr:`RemoteFile.max_bytes`); reads are streamed in blocks of at most 1 MiB.
- Temporary ``.*.part`` files older than twice the deadline (left by a killed process)
  are removed on the next fetch into their folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .._core import validate as V
from .._core.exceptions import DataWarning, DownloadError

__all__ = [
    "ENV_VAR",
    "RemoteFile",
    "get_data_home",
    "dataset_dir",
    "fetch_file",
    "sha256_of",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BYTES",
]

#: Environment variable that overrides the default cache folder.
ENV_VAR = "FAIRPRIV_LAB_DATA"
_DEFAULT_HOME = Path("~") / ".cache" / "fairpriv-lab"
_SUMS = "SHA256SUMS"
_CHUNK = 1 << 20
#: Overall seconds a single download may take (``fetch_file(deadline=)``).
DEFAULT_DEADLINE = 3600.0
#: Size cap of a file whose RemoteFile gives none (bytes).
DEFAULT_MAX_BYTES = 256 << 20
_USER_AGENT = "fairpriv-lab (https://pypi.org/project/fairpriv-lab)"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where to fetch it and the sha256 it must have.

    Parameters
    ----------
    filename : str
        Name of the file in the dataset's cache folder (no path separators).
    urls : tuple of str
        Where to fetch the file, tried in order: the official URL, or a dependable mirror
        first where the original host refuses scripted downloads (MNIST); the first one is
        the one named in the "place the file by hand" advice.
    sha256 : str or None
        Expected hex digest; None when it could not be pinned (trust on first use).
    note : str
        Where the checksum comes from, or why there is none.
    max_bytes : int or None
        A download larger than this is refused (:data:`DEFAULT_MAX_BYTES` when None); set a
        few times the real size, it bounds what an unpinned URL can push onto the disk.

    Examples
    --------
    >>> RemoteFile("a.csv", ("https://example.org/a.csv",), None).filename
    'a.csv'
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    note: str = ""
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes is not None:
            V.integer("max_bytes", self.max_bytes, 1)
        name = self.filename
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise V.fail("filename", name, "to be a plain file name (no folders, not hidden)")
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        if not urls or not all(isinstance(u, str) and "://" in u for u in urls):
            raise V.fail("urls", self.urls, "to be one or more absolute URLs")
        object.__setattr__(self, "urls", urls)
        if self.sha256 is not None:
            digest = str(self.sha256).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise V.fail("sha256", self.sha256, "to be 64 hex digits or None")
            object.__setattr__(self, "sha256", digest)


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache folder: ``data_home``, else ``$FAIRPRIV_LAB_DATA``, else ``~/.cache/fairpriv-lab``.

    The folder is not created here (a download creates it).

    Examples
    --------
    >>> str(get_data_home("/tmp/fpl-data"))
    '/tmp/fpl-data'
    """
    if data_home is not None:
        if not isinstance(data_home, str | os.PathLike):
            raise V.fail("data_home", data_home, "to be a path (str or os.PathLike) or None")
        return Path(data_home).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return _DEFAULT_HOME.expanduser()


def dataset_dir(dataset: str, data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return ``<data home>/<dataset>``, the cache folder of one dataset."""
    if not isinstance(dataset, str) or not dataset or "/" in dataset or dataset.startswith("."):
        raise V.fail("dataset", dataset, "to be a plain dataset name")
    return get_data_home(data_home) / dataset


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch_file(
    remote: RemoteFile,
    *,
    dataset: str,
    data_home: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    deadline: float = DEFAULT_DEADLINE,
) -> Path:
    """Return the path of a verified local copy of ``remote``, downloading it if needed.

    Parameters
    ----------
    remote : RemoteFile
    dataset : str
        Cache sub-folder (the dataset's name).
    data_home : path, optional
        Overrides ``$FAIRPRIV_LAB_DATA`` and the default ``~/.cache/fairpriv-lab``.
    timeout : float
        Seconds to wait for the server on each network operation.
    deadline : float
        Seconds one download may take in all (per URL tried).

    Raises
    ------
    DownloadError
        Every URL failed (the message lists each URL with its error, and says where to put
        the file by hand and which sha256 it must have), or the downloaded bytes do not
        match the expected sha256. Nothing is left in the cache in either case.
    """
    if not isinstance(remote, RemoteFile):
        raise V.fail("remote", type(remote).__name__, "to be a RemoteFile")
    timeout = V.positive("timeout", timeout)
    deadline = V.positive("deadline", deadline)
    folder = dataset_dir(dataset, data_home)
    from .._core.io import remove_stale_temporaries

    remove_stale_temporaries(folder, ".*.part", max_age=max(2 * deadline, 3600.0))
    target = folder / remote.filename
    expected = remote.sha256 or _recorded_sha256(folder, remote.filename)
    if target.is_file():
        actual = sha256_of(target)
        if expected is None:
            # Placed by hand before any download recorded a checksum: record it now.
            _record_sha256(folder, remote.filename, actual)
            _warn_unpinned(remote, target, actual)
            return target
        if actual == expected:
            return target
        warnings.warn(
            f"Cached file {target} has sha256 {actual}, expected {expected}; it was removed "
            "and will be downloaded again.",
            DataWarning,
            stacklevel=2,
        )
        target.unlink()
    errors: list[str] = []
    for url in remote.urls:
        try:
            actual = _download(url, target, expected, timeout, deadline=deadline,
                               max_bytes=remote.max_bytes or DEFAULT_MAX_BYTES)
        except _ChecksumMismatch as exc:
            raise DownloadError(
                f"Downloaded {url} but its sha256 is {exc.actual}, expected {exc.expected}; "
                f"nothing was cached. The file may have changed upstream or been corrupted in "
                f"transit. {_manual_hint(remote, target, expected)}"
            ) from None
        except _FetchFailed as exc:
            errors.append(f"{url}: {exc}")
            continue
        if expected is None:
            _record_sha256(folder, remote.filename, actual)
            _warn_unpinned(remote, target, actual)
        return target
    tried = "; ".join(errors)
    raise DownloadError(
        f"Could not download {remote.filename} for dataset {dataset!r} (tried {tried}). "
        f"If this machine is offline: {_manual_hint(remote, target, expected)}"
    )


# --------------------------------------------------------------------------- internals
class _FetchFailed(Exception):
    """Network or HTTP failure of one URL (the next mirror may still work)."""


class _ChecksumMismatch(Exception):
    def __init__(self, actual: str, expected: str):
        super().__init__(actual)
        self.actual = actual
        self.expected = expected


def _open_url(url: str, timeout: float):
    """Open url for reading (one place, so tests can check that no real host is contacted)."""
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def _download(url: str, target: Path, expected: str | None, timeout: float, *,
              deadline: float = DEFAULT_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Stream url into a temporary file beside target, verify, rename; return the sha256."""
    import http.client
    import urllib.error

    if not url.lower().startswith(("http://", "https://")):
        raise _FetchFailed("only http(s) URLs are fetched")
    folder = target.parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    end = time.monotonic() + deadline
    try:
        h = hashlib.sha256()
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, _open_url(url, min(timeout, deadline)) as response:
                announced = response.headers.get("Content-Length")
                if announced is not None and announced.isdigit() and int(announced) > max_bytes:
                    raise _FetchFailed(f"the server announces {int(announced):,} bytes, more than the "
                                       f"{max_bytes:,} allowed for this file")
                # read1: at most one read from the socket, so a trickle cannot hold one call
                read = getattr(response, "read1", response.read)
                while True:
                    if time.monotonic() > end:
                        raise _FetchFailed(f"the download took longer than its deadline of {deadline:g} s "
                                           f"({received:,} bytes received)")
                    block = read(_CHUNK)
                    if not block:
                        break
                    received += len(block)
                    if received > max_bytes:
                        raise _FetchFailed(f"the body is larger than the {max_bytes:,} bytes allowed "
                                           "for this file")
                    out.write(block)
                    h.update(block)
        except urllib.error.HTTPError as exc:
            raise _FetchFailed(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise _FetchFailed(f"{exc.reason}") from None
        except http.client.IncompleteRead as exc:
            raise _FetchFailed(
                f"truncated download ({len(exc.partial) + received} bytes received"
                + (f", {exc.expected} more expected)" if exc.expected is not None else ")")
            ) from None
        except (http.client.HTTPException, OSError) as exc:
            raise _FetchFailed(f"{type(exc).__name__}: {exc}") from None
        if announced is not None and announced.isdigit() and int(announced) != received:
            raise _FetchFailed(f"truncated download ({received} of {int(announced)} bytes received)")
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise _ChecksumMismatch(actual, expected)
        if expected is None:
            _check_complete(tmp, target.name)  # trusted on first use: refuse a truncated archive
        os.replace(tmp, target)
        return actual
    except BaseException:
        tmp.unlink(missing_ok=True)
        if created:
            _remove_if_empty(folder)
        raise


def _check_complete(path: Path, name: str) -> None:
    """Read a .zip (every member's CRC) or .gz file to its end; raise _FetchFailed if cut short."""
    import gzip
    import zipfile
    import zlib

    lower = name.lower()
    try:
        if lower.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise _FetchFailed(f"member {bad} of the zip archive is corrupted")
        elif lower.endswith((".gz", ".tgz")):
            with gzip.open(path, "rb") as fh:
                while fh.read(_CHUNK):
                    pass
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise _FetchFailed(f"the body is not a complete {Path(lower).suffix} file "
                           f"(truncated or corrupted: {exc})") from None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _manual_hint(remote: RemoteFile, target: Path, expected: str | None) -> str:
    if expected is not None:
        check = f"with sha256 {expected}"
    else:
        check = "(no sha256 is pinned for it: its sha256 will be recorded on first use)"
    return (
        f"Place the file by hand at {target} {check}; download it from {remote.urls[0]} on a "
        f"machine with internet access. Set {ENV_VAR} or data_home= to use another cache folder."
    )


def _recorded_sha256(folder: Path, filename: str) -> str | None:
    sums = folder / _SUMS
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if name == filename:
            return digest
    return None


def _record_sha256(folder: Path, filename: str, digest: str) -> None:
    sums = folder / _SUMS
    lines = sums.read_text().splitlines() if sums.is_file() else []
    lines = [ln for ln in lines if ln.partition("  ")[2] != filename]
    lines.append(f"{digest}  {filename}")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{_SUMS}.", suffix=".part")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, sums)


def _warn_unpinned(remote: RemoteFile, target: Path, digest: str) -> None:
    warnings.warn(
        f"No sha256 is pinned for {remote.filename} in fairpriv-lab; recorded the sha256 of "
        f"this copy ({digest}) in {target.parent / _SUMS} and will check later uses against it "
        "(trust on first use).",
        DataWarning,
        stacklevel=3,
    )
