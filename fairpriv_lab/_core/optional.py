"""Optional compiled speed-ups: import them, or go on without them after one warning.

The audit's kernels (``audit._compiled``) and the engine's tanh kernels (``engine._fused``)
are numba code with an exact torch / numpy counterpart: a broken or partial numba installation
must slow a run down, not end it (a long training run must not die at its audit).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


def optional_module(name: str, package: str, what: str, instead: str) -> ModuleType | None:
    """Import module ``name`` (relative to ``package``), or return None after a ``RuntimeWarning``.

    The warning reads ``"{what} are unavailable (<error>); {instead}"`` and points at the
    caller's caller (the public call that needed the speed-up).
    """
    try:
        return importlib.import_module(name, package)
    except Exception as err:  # noqa: BLE001 -- ImportError, or llvmlite failing to load
        warnings.warn(f"{what} are unavailable ({type(err).__name__}: {err}); {instead}",
                      RuntimeWarning, stacklevel=3)
        return None
