"""fairpriv-lab: measure and mitigate unequal privacy protection across groups.

The layers follow the data flow (``docs/ARCHITECTURE.md``): ``data`` -> ``games`` ->
``engine`` (training, torch) -> ``audit`` -> ``experiment`` -> ``studies`` / ``viz`` ->
``ui`` / ``sweep`` / ``cli``. The top level holds the few names a user starts with; each
layer is served as a subpackage on first use (``fl.viz``, ``fl.ui``, ``fl.engine`` ...), so
that ``import fairpriv_lab`` stays fast and imports torch only when training is asked for.
"""

import importlib as _importlib

from ._core.exceptions import ConfigError, FairPrivError
from ._core.version import __version__
from .data import GroupedDataset, list_datasets, load_dataset

# Public names served lazily from their module (torch is imported only when needed).
_LAZY: dict[str, str] = {
    "aloo_game": ".games", "half_split_game": ".games", "loo_game": ".games",
    "train_ensemble": ".engine.training",
    "record_risk": ".audit.attacks", "empirical_epsilon": ".audit.empirical",
    "GroupRisk": ".audit.risk",
    "ExperimentConfig": ".experiment.config", "plan": ".experiment.plan",
    "run": ".experiment.runner", "precision": ".experiment.precision",
}

#: The layers, served as subpackages on first attribute access.
_SUBPACKAGES = ("data", "games", "engine", "audit", "experiment", "studies", "viz", "ui",
                "sweep")

__all__ = [
    "__version__",
    "GroupedDataset",
    "load_dataset",
    "list_datasets",
    "FairPrivError",
    "ConfigError",
    *_LAZY,
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBPACKAGES or name == "cli":
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fairpriv_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))
