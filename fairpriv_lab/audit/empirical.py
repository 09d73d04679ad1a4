"""Empirical epsilon: statistically valid lower bounds on privacy loss (docs/design.md 4.7).

The model pairs that audit a record are split at random into two folds (one split of the pair
positions for all records with the same pairs: the pairs are exchangeable). On each fold the attack "member iff score >= tau" gets the threshold that maximises the GDP
lower bound on that fold; it is then applied to the *other* fold, so every (model, record)
trial is scored by a threshold chosen without it (no post-selection). With FP false positives
among the K "out" trials and FN false negatives among the K "in" trials:

* Clopper-Pearson upper bounds FPR+ and FNR+, each at level ``alpha / 2`` (so that both hold
  together with probability >= 1 - alpha);
* ``mu = Phi^-1(1 - FPR+) - Phi^-1(FNR+)`` (0 if negative): the smallest mu-GDP consistent with
  the observed test (a mu-GDP mechanism allows no test with FNR < Phi(Phi^-1(1 - FPR) - mu));
* ``eps`` at ``delta`` of mu-GDP: the root of
  ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) = delta`` (Dong, Roth & Su 2022, Cor. 2.13).

Two bounds are reported. The GDP-shaped conversion above (``epsilon``) is exact only when the
mechanism's trade-off curve is Gaussian, i.e. at sampling rate q = 1; a Poisson-subsampled
mechanism's curve is not GDP-shaped, so ``epsilon`` is a **heuristic** lower bound (tighter,
and the conventional one in auditing papers). The **rigorous** one (``epsilon_dp``) uses only
the definition of (eps, delta)-DP: every test has ``FPR + e^eps FNR >= 1 - delta`` and
``FNR + e^eps FPR >= 1 - delta``, so with the same Clopper-Pearson bounds
``eps >= max(log((1 - delta - FPR+) / FNR+), log((1 - delta - FNR+) / FPR+), 0)``
(Kairouz et al. 2015; Jagielski et al. 2020), valid for any mechanism at level 1 - alpha.

Per group, the group's trials are pooled (the threshold stays per record): the bound is then
for the "group game" in which the challenger picks a record of the group at random. Trials of
different records share models and are not independent, so the pooled interval is
approximate; per-record bounds are exact.

**What can be certified is capped by the number of trials.** Even a perfect attack (FP = FN = 0)
only shows ``FPR+ = FNR+ = 1 - (alpha/2)^(1/K)``, so with K pairs the largest certifiable
``mu`` is ``2 Phi^-1((alpha/2)^(1/K))`` and eps cannot exceed the matching value reported as
``max_certifiable`` (mu about 4.18 and eps about 25.9 at K = 200, delta = 1e-5, alpha = 0.05).
A reading at the cap means "at least this much", not "this much".

**Which neighbouring relation.** In an ALOOA or half-split game the "in" and "out" models of a
pair differ by *swapping* x for another record, so the bound is on substitution privacy:
add/remove ``(eps_1, delta_1)`` gives substitution ``(2 eps_1, (1 + e^eps_1) delta_1)``, and the
budget at delta is :func:`fairpriv_lab.engine.privacy.substitution_epsilon` (above ``2 eps``). Only the
exact leave-one-out game (``loo_game``), whose pairs differ by x alone, compares with the
accounted add/remove eps itself (docs/privacy.md).

Taught in notebook 4.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .._core import validate as V
from .._core.dp import advantage_bound
from .._core.rng import SeedLike, as_generator
from .attacks import Signal, audit_inputs, negated_later
from .kernels import (
    SortedRows,
    column_counts,
    informative_pairs,
    mask_ties,
    pair_split,
    record_pass,
)

__all__ = [
    "EmpiricalEpsilon",
    "empirical_epsilon",
    "gdp_epsilon",
    "dp_epsilon",
    "clopper_pearson_upper",
    "advantage_bound",
]


def clopper_pearson_upper(k: np.ndarray, n: np.ndarray, level: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a binomial rate.

    ``P(p <= ub) >= 1 - level`` for k successes in n trials:
    ``ub = Beta^-1(1 - level; k + 1, n - k)`` for k < n, and 1 for k = n.

    Examples
    --------
    >>> round(float(clopper_pearson_upper(0, 200, 0.025)), 5)
    0.01828
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    # the beta quantile as scipy.special computes it (scipy.stats.beta.ppf gives the same bits,
    # tests/unit/audit/test_empirical.py; importing scipy.stats costs a classroom run 0.7 s)
    with np.errstate(invalid="ignore", divide="ignore"):
        ub = special.betaincinv(k + 1, np.maximum(n - k, 1e-300), 1.0 - level)
    return np.where(k >= n, 1.0, ub)


def gdp_epsilon(mu: np.ndarray, delta: float) -> np.ndarray:
    """Epsilon at delta of mu-GDP, vectorised.

    Solves ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) = delta`` for eps >= 0 (0 when
    the left side at eps = 0 is already <= delta, and for mu = 0) by bisection in float64 on
    all entries at once (agrees with ``scipy.optimize.brentq`` to 1e-9). The bisection runs
    until every entry has converged, so an entry's result depends on its value and on the
    set of distinct values given: it runs once per distinct value (the same numbers).

    Examples
    --------
    >>> round(float(gdp_epsilon(1.0, 1e-5)), 4)
    4.3772
    """
    V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    mu = np.asarray(mu, dtype=np.float64)
    if np.any(np.isnan(mu)) or np.any(mu < 0):
        raise V.fail("mu", "an array with negative or NaN entries", "to be >= 0")
    if mu.size > 64:
        levels, inv = np.unique(mu, return_inverse=True)
        if levels.size < mu.size:
            return _gdp_epsilon(levels, delta)[inv.reshape(mu.shape)]
    return _gdp_epsilon(mu, delta)


def _gdp_epsilon(mu: np.ndarray, delta: float) -> np.ndarray:
    """Return :func:`gdp_epsilon` of checked ``mu`` (the bisection over all entries at once)."""
    m = np.where(mu > 0, mu, 1.0)

    def excess(eps: np.ndarray) -> np.ndarray:
        first = special.ndtr(-eps / m + m / 2)
        second = np.exp(eps + special.log_ndtr(-eps / m - m / 2))
        return first - second - delta

    lo = np.zeros_like(m)
    hi = m * m / 2 + m * math.sqrt(2 * math.log(1 / delta)) + 1.0
    for _ in range(60):  # widen until the root is bracketed (rarely more than once)
        bad = excess(hi) > 0
        if not bad.any():
            break
        hi = np.where(bad, 2 * hi, hi)
    for _ in range(200):
        mid = (lo + hi) / 2
        pos = excess(mid) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
        if np.all(hi - lo <= 1e-12 * np.maximum(1.0, hi)):
            break
    eps = (lo + hi) / 2
    return np.where((mu > 0) & (excess(np.zeros_like(m)) > 0), eps, 0.0)


def dp_epsilon(fpr_upper: np.ndarray, fnr_upper: np.ndarray, delta: float) -> np.ndarray:
    """Rigorous eps lower bound at delta from upper bounds on a test's FPR and FNR.

    An (eps, delta)-DP mechanism allows no test with ``FPR + e^eps FNR < 1 - delta`` (nor with
    the roles swapped), so ``eps >= max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) /
    FPR), 0)``; with upper bounds on FPR and FNR the result is a lower bound on eps.

    Examples
    --------
    >>> round(float(dp_epsilon(0.05, 0.05, 1e-5)), 3)
    2.944
    """
    V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    fpr = np.asarray(fpr_upper, dtype=np.float64)
    fnr = np.asarray(fnr_upper, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1.0 - delta - fpr, 0.0)) - np.log(fnr)
        b = np.log(np.maximum(1.0 - delta - fnr, 0.0)) - np.log(fpr)
    out = np.fmax(np.fmax(a, b), 0.0)
    return np.where(np.isnan(out), 0.0, out)


def _cp_upper(k, n, level):
    """Return :func:`clopper_pearson_upper`, computed once per distinct integer (k, n).

    The same numbers (it is elementwise); the per-record bounds repeat few counts (about 200
    distinct ones among 14,000 distinct (K, fp, fn) of 45,222 records).
    """
    k, n = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    if (k.size <= 64 or k.dtype.kind not in "iu" or n.dtype.kind not in "iu"
            or k.min() < 0 or n.min() < 0):
        return clopper_pearson_upper(k, n, level)
    base = int(k.max()) + 1
    code, inv = np.unique(n.astype(np.int64) * base + k, return_inverse=True)
    return clopper_pearson_upper(code % base, code // base, level)[inv.reshape(k.shape)]


def _mu(fp, fn, n_out, n_in, level):
    fpr = _cp_upper(fp, n_out, level)
    fnr = _cp_upper(fn, n_in, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = special.ndtri(1 - fpr) - special.ndtri(fnr)
    mu = np.where(np.isnan(mu), 0.0, mu)
    return np.maximum(mu, 0.0), fpr, fnr


@dataclass(frozen=True, eq=False)
class EmpiricalEpsilon:
    """Empirical (epsilon, delta) lower bounds per record and per group.

    Parameters
    ----------
    records, groups : ndarray of int64, shape (m,)
        Audited records and their groups.
    per_record : ndarray, shape (m,)
        eps lower bound of each record through mu-GDP (heuristic: exact only at q = 1; valid
        at level 1 - alpha each; do not take the maximum over records and call it a 1 - alpha
        bound).
    mu : ndarray, shape (m,)
        GDP mu lower bound of each record.
    fp, fn : ndarray of int64, shape (m,)
        False positives (of the out trials) and false negatives (of the in trials).
    n_pairs : ndarray of int64, shape (m,)
        Trials per class (K).
    fpr_upper, fnr_upper : ndarray, shape (m,)
        Clopper-Pearson upper bounds at level alpha / 2 each (alpha is split between the
        FPR and FNR bounds, so both hold together with probability >= 1 - alpha).
    per_group : pandas.DataFrame
        ``group``, ``n_records``, ``n_trials`` (per class), ``fp``, ``fn``, ``fpr_upper``,
        ``fnr_upper``, ``mu``, ``epsilon`` (heuristic, GDP-shaped), ``epsilon_dp``
        (rigorous (eps, delta) bound), ``max_certifiable``, ``at_cap``.
    max_certifiable : float
        The largest eps the per-record trial count can certify (FP = FN = 0 observed), for the
        smallest K among the records.
    delta, alpha : float
    per_record_dp : ndarray, shape (m,)
        Rigorous (eps, delta) lower bound of each record (:func:`dp_epsilon`).
    """

    records: np.ndarray
    groups: np.ndarray
    per_record: np.ndarray
    mu: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    n_pairs: np.ndarray
    fpr_upper: np.ndarray
    fnr_upper: np.ndarray
    per_group: pd.DataFrame
    max_certifiable: float
    delta: float
    alpha: float
    per_record_dp: np.ndarray | None = None

    def __repr__(self) -> str:
        groups = ", ".join(f"{g} {e:.2f}" for g, e in zip(self.per_group["group"], self.per_group["epsilon"]))
        return (f"EmpiricalEpsilon(m={self.records.size}, delta={self.delta:.2g}, alpha={self.alpha:g}, "
                f"per group: {groups}; largest per-record bound {np.max(self.per_record, initial=0.0):.2f}, "
                f"cap per record {self.max_certifiable:.2f})")

    @property
    def at_cap(self) -> np.ndarray:
        """Records whose bound sits at the certifiable maximum (attack made no error)."""
        return (self.fp == 0) & (self.fn == 0)


@functools.lru_cache(maxsize=16)
def _z_tables(k: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``Phi^-1(1 - FPR+(fp))`` and ``Phi^-1(FNR+(fn))`` for every count 0..k of a k-pair fold."""
    counts = np.arange(k + 1)
    return (special.ndtri(1 - clopper_pearson_upper(counts, k, level)),
            special.ndtri(clopper_pearson_upper(counts, k, level)))


@functools.lru_cache(maxsize=16)
def _mu_table(k: int, level: float) -> np.ndarray:
    """Mu of every (fp, fn) count pair of a fold with k pairs, flat, -inf where undefined.

    ``table[fp * (k + 1) + fn] = Phi^-1(1 - FPR+(fp)) - Phi^-1(FNR+(fn))``: one gather per cut
    instead of two lookups and a subtraction (used up to 2,000 pairs per fold).
    """
    z_fp, z_fn = _z_tables(k, level)
    with np.errstate(invalid="ignore"):
        mu = z_fp[:, None] - z_fn[None, :]
    mu = np.where(np.isnan(mu), -np.inf, mu).ravel()
    mu.setflags(write=False)
    return mu


@functools.lru_cache(maxsize=16)
def _mu_rank_table(k: int, level: float) -> tuple[np.ndarray, int]:
    """:func:`_mu_table` as int32 ranks (equal mu, equal rank), and the rank a tied cut gets.

    argmax over ranks picks exactly the cut argmax over the mu values picks (the order and
    every equality are kept, the -inf of undefined entries included), from a table half the
    size and with integer compares (int32: numpy's argmax along rows of int16 is not
    vectorised, 4x slower). A tied cut is -inf in the float version: it gets the rank of
    -inf when the table holds -inf, else one below every rank.
    """
    mu = _mu_table(k, level)
    levels, ranks = np.unique(mu, return_inverse=True)
    ranks = ranks.astype(np.int32)
    ranks.setflags(write=False)
    return ranks, (0 if levels.size and levels[0] == -np.inf else -1)


@functools.lru_cache(maxsize=16)
def _compiled_table(k: int, level: float) -> tuple[np.ndarray, float]:
    """Return the table and tied-cut value :func:`_select_threshold` reads for a k-pair fold, as float64.

    For the compiled threshold search (``audit._compiled.heldout``): the int32 ranks where
    :func:`_select_threshold` uses them (exact in float64), else the mu table with -inf for
    a tied cut; the same comparisons, so the same cut. (Writable copies: numba compiles a
    function again for read-only arrays.)
    """
    if (k + 1) * (k + 2) < 2**15:
        ranks, tie_rank = _mu_rank_table(k, level)
        return ranks.astype(np.float64), float(tie_rank)
    return _mu_table(k, level).copy(), -np.inf


_TABLE_MAX_K = 2000  # folds of more pairs: two lookups instead of the (k + 1)^2 table


def _cum_in(lab: np.ndarray) -> np.ndarray:
    """In-entries among the j lowest of each sorted row, j = 0..n, shape (rows, n + 1)."""
    mb, n = lab.shape
    k = n // 2
    it = np.int32 if (k + 1) ** 2 < 2**31 else np.int64
    cum_in = np.zeros((mb, n + 1), dtype=it)
    np.cumsum(lab.view(np.int8) if lab.dtype == bool else lab, axis=1, dtype=it, out=cum_in[:, 1:])  # bytes: no bool cast
    return cum_in


def _select_threshold(rows, lab, ties, level, cum_in=None):
    """Per sorted row, the threshold maximising the fold's own GDP lower bound (midpoint rule).

    ``rows`` holds one fold's k in-scores and k out-scores of each record, sorted
    (:class:`fairpriv_lab.audit.kernels.SortedRows`). At the cut below sorted position j the
    in-trials below are false negatives and the out-trials at or above false positives.
    ``cum_in``: :func:`_cum_in` of ``lab`` if already computed.
    """
    mb, n = lab.shape
    k = n // 2
    if cum_in is None:
        cum_in = _cum_in(lab)
    it = cum_in.dtype
    if (k + 1) * (k + 2) < 2**15:  # the index fits 16 bits: integer ranks, the same cut, faster
        # fp = k - (cut - cum_in); index = fp * (k + 1) + fn with fn = cum_in
        ranks, tie_rank = _mu_rank_table(k, level)
        idx = cum_in.astype(np.int16)
        idx *= np.int16(k + 2)
        idx += ((k - np.arange(n + 1)) * (k + 1)).astype(np.int16)
        r = np.take(ranks, idx)
        mask_ties(r, ties, tie_rank, rows.tie_rows(ties))
        return rows.thresholds(np.argmax(r, axis=1))
    if k <= _TABLE_MAX_K:
        idx = cum_in * (k + 2)
        idx += (k - np.arange(n + 1, dtype=it)) * (k + 1)
        mu = _mu_table(k, level)[idx]
    else:  # the (k + 1)^2 table would be large: two lookups
        z_fp, z_fn = _z_tables(k, level)
        with np.errstate(invalid="ignore"):
            mu = z_fp[k - np.arange(n + 1) + cum_in] - z_fn[cum_in]
        mu[np.isnan(mu)] = -np.inf
    mask_ties(mu, ties, -np.inf)
    return rows.thresholds(np.argmax(mu, axis=1))


def _heldout_counts(s_in, s_out, fold, level):
    """FP and FN per row when each fold is scored by the threshold selected on the other.

    ``s_in``, ``s_out`` (rows, K) scores; ``fold`` (rows, K) bool, ``K // 2`` True per row
    (a split of its own for each row; :class:`EmpiricalTask` uses one split for all rows).
    """
    rows = SortedRows(s_in, s_out, top=fold)
    b, a = rows.split(2 * (rows.K - rows.K // 2))  # fold B sorts below fold A
    return _heldout(a, b, level)


def _heldout(a, b, level):
    """FP and FN of each row: fold a's sorted rows scored by fold b's threshold and vice versa.

    Each fold's cumulative in-counts serve both its threshold search and, at the cut the
    other fold's threshold makes in it, its counts: FN = in-entries below the cut, FP =
    out-entries at or above it (no pass comparing labels after the threshold is known).
    """
    cums = [x.cum_in() for x in (a, b)]  # shared with the cross-fit's d(k) of the same folds
    fp = np.zeros(a.lab.shape[0], np.int64)
    fn = np.zeros(a.lab.shape[0], np.int64)
    for (fit, c_fit), (test, c_test) in (((a, cums[0]), (b, cums[1])), ((b, cums[1]), (a, cums[0]))):
        cut = test.cut_of(_select_threshold(fit, fit.lab, fit.ties(), level, c_fit))
        below_in = np.take_along_axis(c_test, cut[:, None], axis=1)[:, 0]
        fn += below_in
        fp += test.K - (cut - below_in)
    return fp, fn


def empirical_epsilon(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    records: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    group_names: tuple[str, ...] | list[str] | None = None,
    delta: float,
    alpha: float = 0.05,
    signal: Signal = "loss",
    confidences: np.ndarray | None = None,
    seed: SeedLike = None,
) -> EmpiricalEpsilon:
    """Empirical eps lower bounds per record and per group (thresholds from held-out pairs).

    Parameters
    ----------
    losses, membership : ndarray, shape (n_models, n_samples)
        As in :func:`fairpriv_lab.audit.record_risk` (lower loss = member).
    records : array of int, shape (m,), optional
        The audited records (``game.audit_idx``); each needs >= 2 auditing pairs.
    groups : array of int, shape (n_samples,), optional
        Group id of every record; zeros by default.
    group_names : sequence of str, optional
        Names for the ``per_group`` table (ids as strings by default).
    delta : float
        The delta of the reported (eps, delta), in (0, 1).
    alpha : float
        1 - confidence level, in (0, 1); split equally between the FPR and FNR bounds.
    signal, confidences
        As in :func:`fairpriv_lab.audit.record_risk`.
    seed : int, numpy Generator or None
        Randomness of the folds.

    Returns
    -------
    EmpiricalEpsilon

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.games import half_split_game
    >>> game = half_split_game(2, n_models=400, seed=0)
    >>> losses = np.where(game.membership, 0.0, 1.0)  # perfect attack: capped bound
    >>> ee = empirical_epsilon(losses, game.membership, delta=1e-5, seed=0)
    >>> bool(np.allclose(ee.per_record, ee.max_certifiable)), round(ee.max_certifiable, 2)
    (True, 25.89)
    """
    V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    V.number("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    scores, mem, rec, grp = audit_inputs(losses, membership, records, groups, signal, confidences,
                                         negate_later=True)
    inf = informative_pairs(mem, rec)
    delta, alpha, K = check_empirical(delta, alpha, inf)
    check_group_names(grp, group_names)  # before the work, not after it
    task = EmpiricalTask(as_generator(seed), rec.size, alpha / 2)
    record_pass(scores, mem, inf, [task], negated=negated_later(losses, signal, confidences))
    return task.result(rec, grp, K, group_names, delta, alpha)


class EmpiricalTask:
    """Held-out FP / FN counts of every record, fed by :func:`~fairpriv_lab.audit.kernels.record_pass`.

    The pairs are split at random into two folds (``K // 2`` pairs in fold A), one split of
    the pair positions for all records of a block (the pairs are exchangeable: independent
    trainings), drawn block by block before any work, so the counts do not depend on the
    threads or on which other analyses share the pass (each analysis has its own generator).
    The split is drawn as the cross-fitted estimator draws its own
    (:func:`~fairpriv_lab.audit.kernels.pair_split`), so with the same seed the two share
    it and the sorts of its folds.
    """

    def __init__(self, rng: np.random.Generator, m: int, level: float):
        self.rng, self.level = rng, level
        self.fp = np.zeros(m, np.int64)
        self.fn = np.zeros(m, np.int64)

    def prepare(self, blocks) -> None:
        self.folds = [pair_split(self.rng, k) for _cols, k, _ in blocks]

    def planes(self, bi: int, r: slice) -> tuple:
        return ()

    def compute(self, bi: int, r: slice, shared, first: int):
        a, b = shared.folds(self.folds[bi])
        if shared.compiled is not None and a.packed and b.packed and max(a.K, b.K) <= _TABLE_MAX_K:
            out = shared.compiled.heldout(a.v, a.low, b.v, b.low, *_compiled_table(a.K, self.level),
                                          *_compiled_table(b.K, self.level))
            return out[0], out[1]
        return _heldout(a, b, self.level)

    def store(self, idx: np.ndarray, out) -> None:
        self.fp[idx], self.fn[idx] = out

    def result(self, rec, grp, K, group_names, delta: float, alpha: float) -> EmpiricalEpsilon:
        """Per-record and per-group bounds from the stored counts."""
        return _bounds(rec, grp, K, self.fp, self.fn, group_names, delta, alpha)


def check_empirical(delta, alpha, inf) -> tuple[float, float, np.ndarray]:
    """Return the checked ``delta``, ``alpha`` and pairs per record (each needs >= 2)."""
    delta = V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    alpha = V.number("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    K = column_counts(inf)
    if np.any(K < 2):
        raise V.fail(
            "membership", f"a game with {int(K.min())} pair(s) for some record",
            "to audit every record with >= 2 model pairs (one fold chooses the threshold, the other tests it)",
        )
    return delta, alpha, K


def check_group_names(grp, group_names) -> list[str]:
    """Return the per-group table's names (ids as strings by default); every group id needs one."""
    n_groups = int(grp.max()) + 1 if group_names is None else len(group_names)
    names = [str(g) for g in range(n_groups)] if group_names is None else [str(g) for g in group_names]
    if grp.max() >= len(names):
        raise V.fail("group_names", tuple(names), f"to name every group id up to {int(grp.max())}")
    return names


def _bounds(rec, grp, K, fp, fn, group_names, delta, alpha) -> EmpiricalEpsilon:
    level = alpha / 2
    # The bounds depend on (fp, fn, K) alone, which take few distinct values (at most
    # (K + 1)^2): each is computed once. Elementwise functions of the same set of values, so the
    # numbers are those of computing every record (gdp_epsilon's iterations depend on the set).
    base = int(K.max()) + 1  # fp, fn <= K: one integer code per (K, fp, fn)
    code, inv = np.unique((K * base + fp) * base + fn, return_inverse=True)
    inv = inv.reshape(-1)
    u_k, u_fp, u_fn = code // (base * base), code // base % base, code % base
    mu, fpr, fnr = _mu(u_fp, u_fn, u_k, u_k, level)
    eps = gdp_epsilon(mu, delta)[inv]
    eps_dp = dp_epsilon(fpr, fnr, delta)[inv]
    mu, fpr, fnr = mu[inv], fpr[inv], fnr[inv]
    cap_mu, _, _ = _mu(np.zeros(1), np.zeros(1), K.min(keepdims=True), K.min(keepdims=True), level)
    max_cert = float(gdp_epsilon(cap_mu, delta)[0])

    names = check_group_names(grp, group_names)
    n_rec = np.bincount(grp, minlength=len(names))
    n_tr = np.bincount(grp, weights=K, minlength=len(names)).astype(np.int64)
    gfp = np.bincount(grp, weights=fp, minlength=len(names)).astype(np.int64)
    gfn = np.bincount(grp, weights=fn, minlength=len(names)).astype(np.int64)
    present = n_rec > 0
    gmu = np.full(len(names), np.nan)
    gfpr = np.full(len(names), np.nan)
    gfnr = np.full(len(names), np.nan)
    geps = np.full(len(names), np.nan)
    geps_dp = np.full(len(names), np.nan)
    gcap = np.full(len(names), np.nan)
    if present.any():
        gmu[present], gfpr[present], gfnr[present] = _mu(gfp[present], gfn[present], n_tr[present], n_tr[present], level)
        geps[present] = gdp_epsilon(gmu[present], delta)
        geps_dp[present] = dp_epsilon(gfpr[present], gfnr[present], delta)
        z = np.zeros(int(present.sum()))
        gcap[present] = gdp_epsilon(_mu(z, z, n_tr[present], n_tr[present], level)[0], delta)
    per_group = pd.DataFrame(
        {
            "group": names,
            "n_records": n_rec,
            "n_trials": n_tr,
            "fp": gfp,
            "fn": gfn,
            "fpr_upper": gfpr,
            "fnr_upper": gfnr,
            "mu": gmu,
            "epsilon": geps,
            "epsilon_dp": geps_dp,
            "max_certifiable": gcap,
            "at_cap": present & (gfp == 0) & (gfn == 0),
        }
    )
    return EmpiricalEpsilon(rec, grp, eps, mu, fp, fn, K, fpr, fnr, per_group, max_cert, delta, alpha,
                            eps_dp)
