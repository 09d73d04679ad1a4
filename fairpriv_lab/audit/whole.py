"""The whole audit of one ensemble in one pass over its losses (docs/design.md 4.2-4.7).

What an experiment reports about one trained ensemble -- per-record IPR (PA-ALOOA / PA-LOOA)
for one or both estimators with their zero-leakage floors, PA-GA and PA-GBA, and empirical
epsilon -- is computed here from one validation of the inputs, one conversion of the scores
to sortable keys and one gathering of every record's in/out scores, which all per-record
analyses share (:func:`~fairpriv_lab.audit.kernels.record_pass`); the in-sample estimator and
its floor share one sort of each record's scores. Every component equals the separate call
(:func:`~fairpriv_lab.audit.attacks.record_risk`, :func:`~fairpriv_lab.audit.attacks.global_risk`,
:func:`~fairpriv_lab.audit.empirical.empirical_epsilon`) with the same integer seed, exactly
(``tests/unit/audit/test_whole.py``): each component draws its randomness from its own
generator seeded alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._core import validate as V
from .._core.rng import SeedLike, as_generator
from .._core.vocabulary import AUDITORS as _AUDITORS
from .._core.vocabulary import ESTIMATORS as _ESTIMATORS
from .attacks import (
    RecordRisk,
    Signal,
    audit_inputs,
    check_cross_fit,
    global_blocks,
    global_draws,
    global_result,
    negated_later,
    record_result,
)
from .empirical import EmpiricalEpsilon, EmpiricalTask, check_empirical, check_group_names
from .kernels import EstimatorTask, as_f32, informative_pairs, record_pass

__all__ = ["WholeAudit", "whole_audit"]


@dataclass(frozen=True)
class WholeAudit:
    """Results of :func:`whole_audit`.

    Attributes
    ----------
    risk : dict of (auditor, estimator) to RecordRisk
        E.g. ``risk["PA-ALOOA", "cross_fit"]``, ``risk["PA-GA", "in_sample"]``.
    empirical : EmpiricalEpsilon or None
        None when no ``delta`` was given.
    """

    risk: dict[tuple[str, str], RecordRisk]
    empirical: EmpiricalEpsilon | None


def _seed_of(seed: SeedLike) -> int | None:
    if isinstance(seed, np.random.Generator):
        raise V.fail("seed", "a numpy Generator", "to be an int or None for whole_audit",
                     "each component draws from its own generator seeded with it")
    return seed


def whole_audit(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    records: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    auditors: Sequence[tuple[str, str]] = (("PA-ALOOA", "cross_fit"),),
    delta: float | None = None,
    alpha: float = 0.05,
    group_names: Sequence[str] | None = None,
    signal: Signal = "loss",
    confidences: np.ndarray | None = None,
    seed: int | None = None,
) -> WholeAudit:
    """Record and global attacks and empirical epsilon of one ensemble, sharing the work.

    Parameters
    ----------
    losses, membership : ndarray, shape (n_models, n_samples)
        As in :func:`~fairpriv_lab.audit.attacks.record_risk`.
    records, groups, signal, confidences
        As in :func:`~fairpriv_lab.audit.attacks.record_risk`.
    auditors : sequence of (auditor, estimator)
        Which audits: ``"PA-ALOOA"`` or ``"PA-LOOA"`` (the per-record attack; the game decides
        which of the two it is), ``"PA-GA"``, ``"PA-GBA"``, each with ``"cross_fit"`` or
        ``"in_sample"``.
    delta : float, optional
        Also compute empirical epsilon at this delta (with ``alpha`` and ``group_names``, as
        in :func:`~fairpriv_lab.audit.empirical.empirical_epsilon`).
    seed : int or None
        Every component draws from ``numpy.random.default_rng(seed)`` of its own, as the
        separate calls do.

    Returns
    -------
    WholeAudit

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.games import half_split_game
    >>> game = half_split_game(6, n_models=8, seed=0)
    >>> losses = np.where(game.membership, 0.1, 1.0)
    >>> out = whole_audit(losses, game.membership, auditors=[("PA-ALOOA", "in_sample"),
    ...                   ("PA-GA", "in_sample")], delta=1e-5, seed=0)
    >>> out.risk["PA-ALOOA", "in_sample"].ipr.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> sorted(out.risk)
    [('PA-ALOOA', 'in_sample'), ('PA-GA', 'in_sample')]
    """
    seed = _seed_of(seed)
    pairs = []
    for item in auditors:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise V.fail("auditors", item, "to hold (auditor, estimator) pairs")
        auditor, estimator = item
        V.choice("auditor", auditor, _AUDITORS)
        V.choice("estimator", estimator, _ESTIMATORS)
        pairs.append((str(auditor), str(estimator)))
    if len(set(pairs)) != len(pairs):
        raise V.fail("auditors", tuple(pairs), "to name each (auditor, estimator) once")
    if any(a == "PA-GBA" for a, _ in pairs) and groups is None:
        raise V.fail("groups", None, "to give every record's group for PA-GBA")
    # loss signal, float32: the kernels negate the losses a block at a time (no -losses matrix)
    negated = negated_later(losses, signal, confidences)
    scores, mem, rec, grp = audit_inputs(losses, membership, records, groups, signal, confidences,
                                         negate_later=True)
    inf = informative_pairs(mem, rec)
    record_kinds = [(a, e) for a, e in pairs if a in ("PA-ALOOA", "PA-LOOA")]
    game_gives = "PA-ALOOA" if np.all(inf) else "PA-LOOA"
    for a, e in record_kinds:
        if a != game_gives:
            raise V.fail("auditors", a, f"to match the game, which gives {game_gives!r} (every record "
                         "audited by every pair: PA-ALOOA; by its own pairs: PA-LOOA)")
        check_cross_fit(e, inf)
    tasks: list = [EstimatorTask(e, as_generator(seed), rec.size) for _a, e in record_kinds]
    emp = None
    if delta is not None:
        delta, alpha, K = check_empirical(delta, alpha, inf)
        check_group_names(grp, group_names)
        emp = EmpiricalTask(as_generator(seed), rec.size, alpha / 2)
        tasks.append(emp)
    scores = as_f32(scores)
    out: dict[tuple[str, str], RecordRisk] = {}
    if tasks:
        record_pass(scores, mem, inf, tasks, negated=negated)
        for (a, e), task in zip(record_kinds, tasks, strict=False):
            out[a, e] = record_result(rec, grp, inf, task, signal)
    global_kinds = [(a, e) for a, e in pairs if a in ("PA-GA", "PA-GBA")]
    runs = [global_draws(as_generator(seed), inf, grp, a == "PA-GBA", e) for a, e in global_kinds]
    for (a, e), run, (acc, acc_floor) in zip(global_kinds, runs,
                                             global_blocks(scores, mem, inf, runs, negated=negated), strict=True):
        out[a, e] = global_result(rec, grp, inf, run, acc, acc_floor, signal)
    result = None
    if emp is not None:
        result = emp.result(rec, grp, K, group_names, delta, alpha)
    return WholeAudit({p: out[p] for p in pairs}, result)
