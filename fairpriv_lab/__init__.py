"""fairpriv-lab: measure and mitigate unequal privacy protection across groups.

The pipeline (DESIGN.md section 3): ``data`` -> ``games`` -> ``training`` -> ``audit`` ->
``risk`` -> ``experiment`` -> ``viz`` / ``widgets`` / ``cli``. Torch-dependent parts load on
first use so that ``import fairpriv_lab`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._device import resolve_device
from .data import GroupedDataset, from_pandas, list_datasets, load_dataset
from .exceptions import (
    CacheCorruptedError,
    ConfigError,
    DatasetError,
    DataWarning,
    DownloadError,
    FairPrivError,
    PrivacyAccountingError,
    PrivacyWarning,
    SmallGroupWarning,
    TrainingDivergedError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

# Public names served lazily from their module (torch is imported only when needed).
_LAZY: dict[str, str] = {
    # games
    "Game": ".games", "aloo_game": ".games", "half_split_game": ".games", "loo_game": ".games",
    # training (imports torch)
    "train_ensemble": ".training", "EnsembleResult": ".training",
    "SGD": ".privacy", "DPSGD": ".privacy", "DPSGDS": ".privacy", "DPSGDF": ".privacy",
    "epsilon_of": ".privacy", "calibrate_noise": ".privacy", "as_method": ".privacy",
    "GroupDPOptimizer": ".opacus_compat",
    # audit
    "RecordRisk": ".audit", "record_risk": ".audit", "global_risk": ".audit",
    "attack_scores": ".audit", "agreement": ".audit",
    "EmpiricalEpsilon": ".empirical", "empirical_epsilon": ".empirical", "gdp_epsilon": ".empirical",
    "advantage_bound": ".empirical",
    # risk
    "GroupRisk": ".risk", "pair_bootstrap": ".risk", "outcome_fairness": ".risk",
    "OutcomeFairness": ".risk", "floor_corrected": ".risk", "gpr_change": ".risk",
    # experiments, cache, demo
    "ExperimentConfig": ".experiment", "DataConfig": ".experiment", "TrainConfig": ".experiment",
    "GameConfig": ".experiment", "AuditConfig": ".experiment", "AuditResult": ".experiment",
    "run": ".experiment", "compare": ".experiment", "format_comparison": ".experiment",
    "Cache": ".cache", "CacheWarning": ".cache", "default_cache_dir": ".cache",
    "demo_configs": ".demo", "run_demo": ".demo",
    # teaching layer (needs the ui extra)
    "AuditPanel": ".widgets", "build_panel": ".widgets", "PanelSettings": ".widgets",
    "write_report": ".report",
    # sweeps
    "Grid": ".sweep", "run_sweep": ".sweep", "run_notebooks": ".sweep", "SweepResult": ".sweep",
}

__all__ = [
    "__version__",
    "resolve_device",
    "GroupedDataset",
    "load_dataset",
    "list_datasets",
    "from_pandas",
    "FairPrivError",
    "ConfigError",
    "DatasetError",
    "DownloadError",
    "CacheCorruptedError",
    "PrivacyAccountingError",
    "TrainingDivergedError",
    "UnsupportedModelError",
    "DataWarning",
    "SmallGroupWarning",
    "PrivacyWarning",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'fairpriv_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
