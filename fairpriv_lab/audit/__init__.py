"""Auditing on arrays (NumPy only): per-record attacks, empirical ε, group risk.

``attacks`` holds the games' attacks and IPR estimators, ``empirical`` the empirical ε lower
bounds, ``risk`` ``GroupRisk`` (GPR with CIs, GPRP) and outcome fairness.
"""

from .attacks import Agreement, RecordRisk, agreement, attack_scores, global_risk, record_risk
from .empirical import EmpiricalEpsilon, empirical_epsilon, gdp_epsilon
from .risk import (
    GroupRisk,
    OutcomeFairness,
    outcome_fairness,
    outcome_fairness_counts,
    pair_bootstrap,
)

__all__ = [
    "Agreement",
    "EmpiricalEpsilon",
    "GroupRisk",
    "OutcomeFairness",
    "RecordRisk",
    "agreement",
    "attack_scores",
    "empirical_epsilon",
    "gdp_epsilon",
    "global_risk",
    "outcome_fairness",
    "outcome_fairness_counts",
    "pair_bootstrap",
    "record_risk",
]
