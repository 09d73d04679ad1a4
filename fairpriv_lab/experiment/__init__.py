"""Experiments: frozen configurations, ``run(config) -> AuditResult``, the on-disk cache, result tables."""

from .cache import Cache, CacheWarning, default_cache_dir
from .config import AuditConfig, DataConfig, ExperimentConfig, GameConfig, TrainConfig
from .plan import Plan, PlanWarning, plan
from .result import AuditResult, compare, format_comparison, gpr_table, gprp_table, run_info
from .runner import load_experiment_data, run

__all__ = [
    "AuditConfig",
    "AuditResult",
    "Cache",
    "CacheWarning",
    "DataConfig",
    "ExperimentConfig",
    "GameConfig",
    "Plan",
    "PlanWarning",
    "TrainConfig",
    "compare",
    "default_cache_dir",
    "format_comparison",
    "gpr_table",
    "gprp_table",
    "load_experiment_data",
    "plan",
    "run",
    "run_info",
]
