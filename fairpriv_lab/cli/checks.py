"""Checks the command line makes before any work: output paths, loader options, the device.

A run on a CPU can take minutes; an output folder that cannot be written, a loader option
that does not exist or a GPU that is not there must show in the first second, as one line
naming the option, the value and the reason, never as a traceback after the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core.exceptions import ConfigError

__all__ = ["os_error_line", "probe_file", "probe_folder", "check_data_options", "check_device"]


def os_error_line(err: OSError) -> str:
    """One line for an OSError: the path and the reason (no errno, no traceback)."""
    reason = err.strerror or str(err) or type(err).__name__
    path = err.filename if err.filename is not None else ""
    other = f" -> {err.filename2}" if getattr(err, "filename2", None) else ""
    return f"{path}{other}: {reason}" if path else f"{type(err).__name__}: {reason}"


_PROBE = ".fairpriv-lab-probe-"


def _unwritable(option: str, path: Path, err: OSError | str) -> ConfigError:
    reason = err if isinstance(err, str) else (err.strerror or str(err))
    name = str(err.filename) if isinstance(err, OSError) and err.filename else ""
    where = f" ({name})" if name and name != str(path) and _PROBE not in name else ""
    return ConfigError(f"Expected {option}={str(path)!r} to be a writable location: {reason}{where}")


def probe_folder(option: str, path: str | os.PathLike, *, shown: str | os.PathLike | None = None) -> Path:
    """Check that folder ``path`` can be created and written: write (then remove) a probe file.

    Folders created for the probe are removed again; the command creates them when it writes.

    Raises
    ------
    ConfigError
        Naming the option, the path and the reason (a file in the way, no permission, a
        read-only file system, a path under /proc ...).
    """
    folder = Path(path)
    named = Path(shown) if shown is not None else folder  # the path the user typed
    if folder.exists() and not folder.is_dir():
        raise _unwritable(option, named, "it is a file, not a folder" if named == folder
                          else f"{folder} is a file, not a folder")
    probe = folder / f"{_PROBE}{os.getpid()}"
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise _unwritable(option, named, err) from None
    finally:  # leave the disk as it was: the command creates its folders when it writes
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()
    return folder


def probe_file(option: str, path: str | os.PathLike, *, suffixes: tuple[str, ...] = ()) -> Path:
    """Check that file ``path`` can be written: its folder is writable and it is no folder."""
    file = Path(path)
    if suffixes and file.suffix.lower() not in suffixes:
        raise ConfigError(f"Expected {option}={str(file)!r} to end in {' or '.join(suffixes)}")
    if file.is_dir():
        raise _unwritable(option, file, "it is a folder, not a file")
    probe_folder(option, file.parent if str(file.parent) else Path("."), shown=file)
    if file.exists() and not os.access(file, os.W_OK):
        raise _unwritable(option, file, "the existing file is read-only")
    return file


def check_data_options(name: str, options: Mapping[str, Any]) -> None:
    """``--data-option`` keys against the loader's signature, values against its annotations."""
    from ..data.registry import check_loader_options

    check_loader_options(name, options, label="--data-option")


def check_device(device: str) -> None:
    """Resolve ``--device`` now (a missing GPU is an error before anything, cached or not)."""
    from ..engine.device import resolve_device

    resolve_device(device)
