"""Auditing on arrays (NumPy only): per-record attacks, empirical ε, group risk.

``attacks`` holds the games' attacks and IPR estimators (the API), ``kernels`` the sort and
cumulative-count machinery under them, ``empirical`` the empirical ε lower
bounds, ``risk`` ``GroupRisk`` (GPR with CIs, GPRP) and outcome fairness; ``whole`` runs the
attacks and empirical ε of one ensemble in one pass (what an experiment reports).
"""

from .attacks import Agreement, RecordRisk, agreement, attack_scores, global_risk, record_risk
from .empirical import EmpiricalEpsilon, advantage_bound, empirical_epsilon, gdp_epsilon
from .risk import (
    GroupRisk,
    OutcomeFairness,
    floor_corrected,
    gpr_change,
    outcome_fairness,
    outcome_fairness_counts,
    pair_bootstrap,
)
from .whole import WholeAudit, whole_audit

__all__ = [
    "Agreement",
    "EmpiricalEpsilon",
    "GroupRisk",
    "OutcomeFairness",
    "RecordRisk",
    "WholeAudit",
    "advantage_bound",
    "agreement",
    "attack_scores",
    "empirical_epsilon",
    "floor_corrected",
    "gdp_epsilon",
    "global_risk",
    "gpr_change",
    "outcome_fairness",
    "outcome_fairness_counts",
    "pair_bootstrap",
    "record_risk",
    "whole_audit",
]
