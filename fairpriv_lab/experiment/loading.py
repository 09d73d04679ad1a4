"""Load the records of one experiment: the dataset, its train/held-out split, the scaler.

Shared by :mod:`.runner` (which trains on it) and :mod:`.plan` (which sizes a dataset of
unknown shape before anything trains), so that neither imports the other.
"""

from __future__ import annotations

import functools
from typing import Any

from .config import DataConfig

__all__ = ["load_experiment_data"]


@functools.lru_cache(maxsize=4)
def _load_split(name: str, group: str, n: int | None, seed: int, test_size: float,
                options: tuple[tuple[str, Any], ...]):
    import inspect

    from ..data import list_datasets, load_dataset

    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options}
    # Loaders that can return raw numeric columns do; the scaler is then fitted on the held-out
    # split only, so no training record (audited ones included) moves the features of any
    # other record (docs/privacy.md). Other loaders' z-scores are refitted the same way.
    loader = {d.name: d.loader for d in list_datasets()}[name]
    if "standardize" in inspect.signature(loader).parameters:
        kwargs.setdefault("standardize", False)
    ds = load_dataset(name, group=group, n=n, seed=seed, **kwargs)
    train, test = ds.train_test_split(test_size=test_size, seed=seed)
    return ds.checksum, train.restandardized(test), test.restandardized(test)


def load_experiment_data(data: DataConfig):
    """Return ``(checksum, train, test)`` for a DataConfig (memoised in the process).

    ``checksum`` identifies the loaded records (before the split) in cache keys; ``train``
    holds the records the games draw from, ``test`` the held-out records for accuracy.
    """
    return _load_split(data.name, data.resolved_group, data.n, data.seed, data.test_size, data.options)
