"""Group privacy risk (GPR, GPRP) with bootstrap intervals, and outcome fairness (docs/design.md 4.5).

:class:`GroupRisk` is shaped like fairlearn's ``MetricFrame`` but for per-record risks, which
MetricFrame cannot hold (it needs ``y_true``/``y_pred``). Everything it reports is in
**percentage points**: ``GPR(g) = 100 * mean of IPR(x) over the audited records x of group g``
and ``GPRP = max_g GPR(g) - min_g GPR(g)``.

Uncertainty: groups of very different sizes give GPRs of very different precision, so every
number comes with a percentile bootstrap interval, records resampled within their group
(seeded). That bootstrap holds the trained models fixed; :func:`pair_bootstrap` also
resamples the model pairs (two-way bootstrap) and its replicates can be passed to GroupRisk.

Taught in notebook 3.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._core import validate as V
from .._core.exceptions import ConfigError, SmallGroupWarning
from .._core.rng import SeedLike, as_generator
from .._core.vocabulary import ESTIMATORS as _ESTIMATORS
from .attacks import Estimator, RecordRisk, Signal, audit_inputs
from .kernels import (
    CHUNK_ELEMENTS,
    SortedRows,
    as_keys,
    cross_fit_acc,
    informative_pairs,
    map_threads,
    pair_blocks,
)

__all__ = [
    "GroupRisk",
    "OutcomeFairness",
    "outcome_fairness",
    "pair_bootstrap",
    "floor_corrected",
    "gpr_change",
]


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of values (records resampled with replacement), shape (n_boot,).

    A mean of a resample depends only on how often each distinct value is drawn, so when the
    values take few distinct levels (IPRs are multiples of 1/R) the counts are drawn from one
    multinomial over the levels -- the same distribution as resampling records, much cheaper.
    """
    n = values.size
    levels, counts = np.unique(values, return_counts=True)
    if levels.size * 4 <= n:
        draws = rng.multinomial(n, counts / n, size=n_boot)
        return draws @ levels / n
    out = np.empty(n_boot)
    chunk = max(1, (1 << 22) // max(n, 1))
    for start in range(0, n_boot, chunk):  # chunks of resamples bound the memory
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


class GroupRisk:
    """GPR per group with bootstrap intervals, GPRP and friends, in percentage points.

    Parameters
    ----------
    record_risk : RecordRisk
        Per-record IPRs (fractions) of one auditor.
    group_names : sequence of str
        Name of every group id; ``group_names[k]`` names group k. Groups with no audited record
        get a NaN row and a :class:`~fairpriv_lab._core.exceptions.SmallGroupWarning`.
    n_boot : int
        Bootstrap resamples (records resampled within each group); 0 gives NaN intervals.
    ci : float
        Confidence level of the percentile intervals, in (0, 1).
    min_group_size : int
        Groups with fewer audited records are flagged ``small`` and warned about.
    seed : int, numpy Generator or None
        Randomness of the bootstrap.
    replicates : ndarray, shape (n_rep, n_groups), optional
        Bootstrap replicates of the group GPRs (percentage points) computed elsewhere, e.g.
        by :func:`pair_bootstrap` (models and records resampled); they replace the
        record-only bootstrap and ``n_boot`` becomes ``n_rep``.

    Attributes
    ----------
    by_group : pandas.DataFrame
        One row per group: ``group`` (name), ``n`` (audited records), ``gpr``, ``ci_low``,
        ``ci_high``, ``floor`` (mean zero-leakage floor), ``gpr_minus_floor`` and ``small``.
    overall : float
        Mean IPR over all audited records.
    boot : ndarray, shape (n_boot, n_groups)
        Bootstrap replicates of the group GPRs (NaN columns for empty groups).

    Notes
    -----
    ``difference()`` is a maximum minus a minimum of noisy means, so it is biased upwards: even
    with identical groups it is positive, and its percentile interval never contains 0 (it
    reads "significant" under the null). It is therefore always reported beside a reference:
    ``difference_floor()``, the same max - min on the permutation (zero-leakage) floor, i.e.
    the GPRP that noise alone produces; and, for two groups, the signed
    ``minority_minus_majority()`` with its interval, which does contain 0 under the null
    (:meth:`signed_difference` gives it as NaNs otherwise, for tables). By default
    the intervals resample records with the trained models held fixed; pass
    ``replicates=pair_bootstrap(...)`` to include the variation of the models too.

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.audit import RecordRisk
    >>> ipr = np.r_[np.full(30, 0.10), np.full(50, 0.04)]
    >>> rr = RecordRisk(np.arange(80), np.repeat([0, 1], [30, 50]), (ipr + 1) / 2, ipr,
    ...                 np.zeros(80), "PA-ALOOA", "cross_fit")
    >>> gr = GroupRisk(rr, ["women", "men"], n_boot=200, seed=0)
    >>> gr.by_group[["group", "n", "gpr"]].round(2).values.tolist()
    [['women', 30, 10.0], ['men', 50, 4.0]]
    >>> round(gr.difference(), 2), round(gr.minority_minus_majority(), 2)
    (6.0, 6.0)
    """

    def __init__(
        self,
        record_risk: RecordRisk,
        group_names: Sequence[str],
        *,
        n_boot: int = 1000,
        ci: float = 0.95,
        min_group_size: int = 30,
        seed: SeedLike = None,
        replicates: np.ndarray | None = None,
    ) -> None:
        if not isinstance(record_risk, RecordRisk):
            raise V.fail("record_risk", type(record_risk).__name__, "to be a RecordRisk (from record_risk or global_risk)")
        if isinstance(group_names, str) or not isinstance(group_names, Sequence | np.ndarray):
            raise V.fail("group_names", group_names, "to be a sequence of group names")
        names = tuple(str(g) for g in group_names)
        if not names:
            raise V.fail("group_names", group_names, "to name at least one group")
        G = len(names)
        grp = record_risk.groups
        if grp.size and grp.max() >= G:
            raise V.fail("group_names", names, f"to name every group id up to {int(grp.max())}")
        self.n_boot = V.integer("n_boot", n_boot, low=0)
        if replicates is not None:
            replicates = np.asarray(replicates, dtype=np.float64)
            if replicates.ndim != 2 or replicates.shape[1] != G:
                raise V.fail("replicates", f"array of shape {replicates.shape}", f"to have shape (n_rep, {G})")
            self.n_boot = replicates.shape[0]
        self.ci = V.number("ci", ci, 0.0, 1.0, low_open=True, high_open=True)
        self.min_group_size = V.integer("min_group_size", min_group_size, low=0)
        self.group_names = names
        self.record_risk = record_risk
        self.auditor = record_risk.auditor
        self.estimator = record_risk.estimator
        rng = as_generator(seed)

        ipr = 100.0 * record_risk.ipr
        floor = 100.0 * record_risk.floor
        n = np.bincount(grp, minlength=G)
        gpr = np.full(G, np.nan)
        fl = np.full(G, np.nan)
        boot = np.full((self.n_boot, G), np.nan)
        for g in np.flatnonzero(n):  # loop over groups; the resampling inside is vectorised
            sel = grp == g
            gpr[g] = ipr[sel].mean()
            fl[g] = floor[sel].mean()
            if self.n_boot and replicates is None:
                boot[:, g] = _bootstrap_means(ipr[sel], self.n_boot, rng)
        if replicates is not None:
            boot = np.where(n[None, :] > 0, replicates, np.nan)
        self.boot = boot
        self.bootstrap = "records" if replicates is None else "supplied"
        self._n = n
        self._gpr = gpr
        self._floor = fl
        lo, hi = self._interval(boot)
        small = n < self.min_group_size
        self.by_group = pd.DataFrame(
            {
                "group": list(names),
                "n": n.astype(np.int64),
                "gpr": gpr,
                "ci_low": lo,
                "ci_high": hi,
                "floor": fl,
                "gpr_minus_floor": gpr - fl,
                "small": small,
            }
        )
        self.overall = float(ipr.mean()) if ipr.size else math.nan
        self.overall_floor = float(floor.mean()) if floor.size else math.nan
        empty = [names[g] for g in np.flatnonzero(n == 0)]
        if empty:
            warnings.warn(
                f"Groups {empty} have no audited records; their GPR is NaN and they are left out "
                "of the differences. Raise m or use a stratified game (aloo_game).",
                SmallGroupWarning,
                stacklevel=2,
            )
        few = [f"{names[g]} (n={int(n[g])})" for g in np.flatnonzero((n > 0) & small)]
        if few:
            warnings.warn(
                f"Groups {few} have fewer than min_group_size={self.min_group_size} audited "
                "records; their GPR is imprecise, read the intervals.",
                SmallGroupWarning,
                stacklevel=2,
            )

    # ------------------------------------------------------------------ helpers
    def _interval(self, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = (1.0 - self.ci) / 2
        if reps.shape[0] == 0:
            nan = np.full(reps.shape[1:], np.nan)
            return nan, nan.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of empty groups
            q = np.nanquantile(reps, [a, 1 - a], axis=0) if np.isnan(reps).any() else np.quantile(reps, [a, 1 - a], axis=0)
        return q[0], q[1]

    @property
    def _present(self) -> np.ndarray:
        present = np.flatnonzero(self._n > 0)
        if present.size == 0:
            raise ConfigError("No group has audited records; there is no group risk to compare.")
        return present

    def _spread(self, values: np.ndarray) -> np.ndarray:
        p = self._present
        return values[..., p].max(axis=-1) - values[..., p].min(axis=-1)

    # ------------------------------------------------------------------ MetricFrame-like API
    @property
    def n(self) -> pd.Series:
        """Audited records per group, indexed by group name."""
        return pd.Series(self._n, index=list(self.group_names), name="n")

    def group_min(self) -> float:
        """Smallest GPR over the groups with audited records (percentage points)."""
        return float(self._gpr[self._present].min())

    def group_max(self) -> float:
        """Largest GPR over the groups with audited records (percentage points)."""
        return float(self._gpr[self._present].max())

    def difference(self) -> float:
        """GPRP = max_g GPR(g) - min_g GPR(g) (percentage points; 0 for a single group)."""
        return float(self._spread(self._gpr))

    def difference_ci(self) -> tuple[float, float]:
        """Percentile bootstrap interval of GPRP at level ``ci`` (NaN when ``n_boot=0``)."""
        if self.n_boot == 0:
            return (math.nan, math.nan)
        lo, hi = self._interval(self._spread(self.boot)[:, None])
        return (float(lo[0]), float(hi[0]))

    def difference_floor(self) -> float:
        """GPRP of the zero-leakage floor: what the estimator's noise alone puts in GPRP."""
        return float(self._spread(self._floor))

    def ratio(self) -> float:
        """``group_min() / group_max()`` like fairlearn's ratio; NaN when the max is <= 0."""
        mx = self.group_max()
        return float(self.group_min() / mx) if mx > 0 else math.nan

    def _minority_majority(self) -> tuple[int, int]:
        p = self._present
        if p.size != 2:
            raise ConfigError(
                f"minority_minus_majority needs exactly two groups with audited records, found "
                f"{p.size} ({[self.group_names[g] for g in p]}); use difference() for GPRP."
            )
        a, b = p
        # the minority is the group with fewer audited records (the later id on a tie)
        return (a, b) if self._n[a] < self._n[b] else (b, a)

    def minority_minus_majority(self) -> float:
        """Signed GPR(minority) - GPR(majority) for two groups (percentage points)."""
        mi, ma = self._minority_majority()
        return float(self._gpr[mi] - self._gpr[ma])

    def minority_minus_majority_ci(self) -> tuple[float, float]:
        """Percentile bootstrap interval of the signed minority - majority difference."""
        mi, ma = self._minority_majority()
        if self.n_boot == 0:
            return (math.nan, math.nan)
        lo, hi = self._interval((self.boot[:, mi] - self.boot[:, ma])[:, None])
        return (float(lo[0]), float(hi[0]))

    def signed_difference(self) -> tuple[float, float, float]:
        """``(GPR(minority) - GPR(majority), ci_low, ci_high)`` for two groups, else NaNs."""
        if self._present.size != 2:
            return (math.nan, math.nan, math.nan)
        lo, hi = self.minority_minus_majority_ci()
        return (self.minority_minus_majority(), lo, hi)

    @property
    def minority(self) -> str:
        """Name of the minority group (fewer audited records) when there are two groups."""
        return self.group_names[self._minority_majority()[0]]

    def summary(self) -> dict[str, float]:
        """Return the headline numbers as a flat dict (percentage points)."""
        lo, hi = self.difference_ci()
        diff, dlo, dhi = self.signed_difference()
        return {
            "overall": self.overall,
            "overall_floor": self.overall_floor,
            "gprp": self.difference(),
            "gprp_ci_low": lo,
            "gprp_ci_high": hi,
            "gprp_floor": self.difference_floor(),
            "minority_minus_majority": diff,
            "minority_minus_majority_ci_low": dlo,
            "minority_minus_majority_ci_high": dhi,
        }

    def __repr__(self) -> str:
        return (
            f"GroupRisk(auditor={self.auditor!r}, estimator={self.estimator!r}, "
            f"groups={len(self.group_names)}, GPRP={self.difference():.2f} pp, "
            f"floor GPRP={self.difference_floor():.2f} pp)"
        )


def pair_bootstrap(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    records: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    estimator: Estimator = "cross_fit",
    signal: Signal = "loss",
    confidences: np.ndarray | None = None,
    n_boot: int = 200,
    seed: SeedLike = None,
) -> np.ndarray:
    """Two-way bootstrap of GPR: resample model pairs, recompute IPR, resample records.

    Each replicate draws R model pairs with replacement, recomputes every record's IPR from
    the losses of those pairs (PA-ALOOA / PA-LOOA, the given estimator), then resamples the
    records within each group and takes group means. For ``"cross_fit"`` the fold split is
    drawn over the *original* pairs, so copies of one pair always land in the same fold
    (otherwise a model would both choose and test the threshold).

    Cost: the records' in/out scores are laid out once; a replicate gathers the drawn pairs'
    columns and sorts each fold (:func:`_replicate_ipr`; the same numbers as re-running
    ``record_risk`` on the drawn models, without its floor): about a third of a
    ``record_risk`` per replicate.

    Parameters
    ----------
    losses, membership : ndarray, shape (n_models, n_samples)
        As in :func:`~fairpriv_lab.audit.record_risk`.
    records : array of int, shape (m,)
        Audited records.
    groups : array of int, shape (n_samples,)
        Group id of every record.
    n_groups : int
        Number of groups (columns of the result).
    estimator : {"cross_fit"}
        ``"in_sample"`` is refused: on resampled pairs its threshold fits the duplicates, and
        the replicates sit above the estimate (a biased interval).
    signal : {"loss", "confidence"}
    confidences : ndarray of float, shape (n_models, n_samples), optional
        Logit-scaled confidences for ``signal="confidence"`` (computed from losses if absent),
        as in :func:`~fairpriv_lab.audit.record_risk`; pass the same array as there so the
        replicates resample the signal the point estimate used.
    n_boot : int
        Replicates, >= 1.
    seed : int, numpy Generator or None

    Returns
    -------
    ndarray, shape (n_boot, n_groups)
        GPR replicates in percentage points (NaN for groups without audited records); pass
        as ``GroupRisk(..., replicates=...)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.games import half_split_game
    >>> game = half_split_game(40, n_models=8, seed=0)
    >>> L = np.random.default_rng(0).exponential(size=(8, 40)) - 0.5 * game.membership
    >>> reps = pair_bootstrap(L, game.membership, records=game.audit_idx,
    ...                       groups=np.arange(40) % 2, n_groups=2, n_boot=5, seed=0)
    >>> reps.shape
    (5, 2)
    """
    V.choice("estimator", estimator, _ESTIMATORS)
    if estimator == "in_sample":
        raise V.fail(
            "estimator", estimator, "to be 'cross_fit' for the pair bootstrap",
            "The in-sample threshold fits the duplicated pairs of a resample, so its replicates "
            "sit several points above the estimate (+2.4 pp at 400 models, +5 pp at 64) and the "
            "interval can miss the estimate; use GroupRisk's record bootstrap for in_sample",
        )
    n_boot = V.integer("n_boot", n_boot, low=1)
    n_groups = V.integer("n_groups", n_groups, low=1)
    scores, mem, rec, grp = audit_inputs(losses, membership, records, groups, signal, confidences)
    if grp.size and grp.max() >= n_groups:
        raise V.fail("n_groups", n_groups, f"to exceed every group id (found {int(grp.max())})")
    inf = informative_pairs(mem, rec)
    n_pairs = inf.shape[0]
    if n_pairs < 2 or not inf.all():
        raise V.fail(
            "membership", "a game where some pair does not audit every record (or < 2 pairs)",
            "to let every pair (>= 2) audit every record (ALOOA, half-split) for the cross-fitted "
            "pair bootstrap; use GroupRisk's record bootstrap for LOO games",
        )
    scores = as_keys(scores)  # float32 scores become sort keys once, for every replicate
    rng = as_generator(seed)
    out = np.full((n_boot, n_groups), np.nan)
    members = [np.flatnonzero(grp == g) for g in range(n_groups)]
    s_in, s_out = _record_major(scores, mem, inf)  # (m, R) in/out scores of every record, once
    for b in range(n_boot):  # loop over replicates; each replicate is vectorised
        pick = rng.integers(0, n_pairs, n_pairs)
        orig_fold = rng.permutation(n_pairs) < n_pairs // 2
        while orig_fold[pick].all() or not orig_fold[pick].any():  # both folds non-empty
            pick = rng.integers(0, n_pairs, n_pairs)
        fold = orig_fold[pick]  # copies of one pair share its fold
        ipr = _replicate_ipr(s_in, s_out, pick[fold], pick[~fold])
        for g, idx in enumerate(members):
            vals = ipr[idx]
            vals = vals[np.isfinite(vals)]
            if vals.size:
                out[b, g] = 100 * vals[rng.integers(0, vals.size, vals.size)].mean()
    return out


def _record_major(scores, mem, inf) -> tuple[np.ndarray, np.ndarray]:
    """Every record's in-model and out-model score of each pair, shape (m, R) each."""
    m, R = inf.shape[1], inf.shape[0]
    s_in, s_out = np.empty((m, R), scores.dtype), np.empty((m, R), scores.dtype)
    for cols, _k, chunks in pair_blocks(scores, mem, inf):
        for r, a, b in chunks:
            s_in[cols[r]], s_out[cols[r]] = a, b
    return s_in, s_out


def _replicate_ipr(s_in, s_out, pick_a, pick_b) -> np.ndarray:
    """Cross-fitted IPR of every record on the drawn pairs (fold A = pick_a, B = pick_b).

    The same numbers as ``record_risk`` on the drawn models (copies included) with this fold
    split; the per-record layout is built once per bootstrap, the zero-leakage floor (unused
    by the replicates) is skipped, and each fold's scores are sorted apart (numpy sorts short
    rows with vectorised networks: re-sorting a replicate's folds measured faster than
    reweighting one stored sort of all 2R scores, which needs gathers and masked passes).
    """
    m = s_in.shape[0]
    K = pick_a.size + pick_b.size
    ipr = np.empty(m)
    step = max(1, CHUNK_ELEMENTS // (2 * K))

    def work(lo):
        r = slice(lo, lo + step)
        a = SortedRows(s_in[r][:, pick_a], s_out[r][:, pick_a])
        b = SortedRows(s_in[r][:, pick_b], s_out[r][:, pick_b])
        la, lb = a.lab, b.lab
        acc = cross_fit_acc(a, b, la, lb, a.ties(), b.ties(), K)
        return r, 2 * acc - 1

    for r, values in map_threads(work, range(0, m, step)):
        ipr[r] = values
    return ipr


# --------------------------------------------------------------------------- teaching helpers
def floor_corrected(risk: GroupRisk, *, seed: SeedLike = None) -> GroupRisk:
    """GPR minus the zero-leakage floor, per group, with a bootstrap CI of the difference.

    Each record's IPR is replaced by ``ipr - floor`` (its reading above what the same estimator
    reads with no leakage) and the records are resampled within groups as in
    :class:`GroupRisk`. A record's IPR is ``0 ± noise`` when it does not leak, so about half of
    the non-leaking records read below 0, and a group that leaks nothing reads ``0 ± noise``:
    a negative GPR, or one below its floor, is noise, not "safer than private". Taught in
    notebook 0.

    Parameters
    ----------
    risk : GroupRisk
        The audited group risk.
    seed : int or Generator, optional
        Bootstrap seed.

    Returns
    -------
    GroupRisk
        Same groups and settings; ``gpr`` is GPR - floor in percentage points and ``floor`` 0.
    """
    if not isinstance(risk, GroupRisk):
        raise V.fail("risk", type(risk).__name__, "to be a GroupRisk")
    rr = risk.record_risk
    corrected = RecordRisk(rr.records, rr.groups, (1 + rr.ipr - rr.floor) / 2, rr.ipr - rr.floor,
                           np.zeros_like(rr.floor), rr.auditor, rr.estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallGroupWarning)  # the original already warned
        return GroupRisk(corrected, risk.group_names, n_boot=max(risk.n_boot, 1), ci=risk.ci,
                         min_group_size=risk.min_group_size, seed=seed)


def gpr_change(before: GroupRisk, after: GroupRisk) -> pd.DataFrame:
    """Signed change of each group's GPR from one audit to another, with a bootstrap CI.

    ``change = GPR_after - GPR_before`` per group (percentage points), and for all records
    together (row ``"all records"``: record-weighted mean). The interval is the percentile
    interval of ``boot_after - boot_before``: the two audits' bootstrap replicates are
    independent, which holds for two trainings audited on their own records. "Lower" means
    the whole interval is below 0. Taught in notebooks 4 and 6.

    Parameters
    ----------
    before, after : GroupRisk
        Audits of the same groups (same ``group_names``), e.g. SGD then DP-SGD.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, before, after, change, ci_low, ci_high, lower, higher`` (``lower``:
        the interval lies below 0; ``higher``: above 0).
    """
    for name, r in (("before", before), ("after", after)):
        if not isinstance(r, GroupRisk):
            raise V.fail(name, type(r).__name__, "to be a GroupRisk")
    if before.group_names != after.group_names:
        raise V.fail("after", f"groups {list(after.group_names)}", f"to have the groups of before {list(before.group_names)}")
    if before.n_boot == 0 or after.n_boot == 0:
        raise V.fail("before", "a GroupRisk with n_boot=0", "to have bootstrap replicates (n_boot > 0)")
    k = min(before.n_boot, after.n_boot)
    diff = after.boot[:k] - before.boot[:k]
    est = after._gpr - before._gpr
    # all records: weights of each audit's own group sizes
    wa, wb = after._n / max(after._n.sum(), 1), before._n / max(before._n.sum(), 1)
    overall = (np.nansum(after.boot[:k] * wa, axis=1) - np.nansum(before.boot[:k] * wb, axis=1))[:, None]
    reps = np.hstack([diff, overall])
    lo, hi = after._interval(reps)
    rows = pd.DataFrame({
        "group": [*after.group_names, "all records"],
        "before": [*before._gpr, float(np.nansum(before._gpr * wb))],
        "after": [*after._gpr, float(np.nansum(after._gpr * wa))],
        "change": [*est, float(np.nansum(after._gpr * wa) - np.nansum(before._gpr * wb))],
        "ci_low": lo, "ci_high": hi,
    })
    return rows.assign(lower=rows["ci_high"] < 0, higher=rows["ci_low"] > 0)


# --------------------------------------------------------------------------- outcome fairness
@dataclass(frozen=True)
class OutcomeFairness:
    """Outcome fairness of a classifier's predictions (fairlearn's definitions).

    Parameters
    ----------
    by_group : pandas.DataFrame
        One row per group: ``group``, ``n``, ``accuracy``, and for binary labels
        ``selection_rate``, ``true_positive_rate``, ``false_positive_rate`` (NaN otherwise).
    accuracy_difference : float
        Largest minus smallest group accuracy (fraction).
    demographic_parity_difference, equal_opportunity_difference, equalized_odds_difference : float
        fairlearn's definitions (fractions); NaN for multiclass labels.
    multiclass : bool
        True when the labels have more than two classes (only accuracy parity is reported).
    """

    by_group: pd.DataFrame
    accuracy_difference: float
    demographic_parity_difference: float
    equal_opportunity_difference: float
    equalized_odds_difference: float
    multiclass: bool

    def __repr__(self) -> str:
        return (f"OutcomeFairness(groups={len(self.by_group)}, accuracy_difference="
                f"{self.accuracy_difference:.3f}, equalized_odds_difference="
                f"{self.equalized_odds_difference:.3f})")

    def to_frame(self) -> pd.DataFrame:
        """Return the summary differences as a one-row-per-metric DataFrame."""
        return pd.DataFrame(
            {
                "metric": [
                    "accuracy_difference",
                    "demographic_parity_difference",
                    "equal_opportunity_difference",
                    "equalized_odds_difference",
                ],
                "value": [
                    self.accuracy_difference,
                    self.demographic_parity_difference,
                    self.equal_opportunity_difference,
                    self.equalized_odds_difference,
                ],
            }
        )


def outcome_fairness(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, group_names: Sequence[str],
    *, weights: np.ndarray | None = None,
) -> OutcomeFairness:
    """Accuracy parity, demographic parity, equal opportunity and equalized odds by group.

    Binary labels (0/1, 1 = positive): per group, accuracy, selection rate
    ``P(y_pred = 1 | g)``, TPR ``= TP / (TP + FN)`` and FPR ``= FP / (FP + TN)`` (0 where the
    group has no positives or no negatives, as fairlearn reports); the differences are
    max - min over the groups present: ``demographic_parity_difference`` (selection rate),
    ``equal_opportunity_difference`` (TPR) and ``equalized_odds_difference`` (the larger of
    the TPR and FPR gaps). These are fairlearn's definitions (``MetricFrame`` and
    ``fairlearn.metrics``); they are computed here from per-group counts of
    (y_true, y_pred) -- one ``bincount`` -- because the experiment layer pools every model's
    test predictions (256 models x 1,000 test records is 256,000 rows) and MetricFrame took
    longer on that than training the models. A test checks equality with fairlearn.
    Multiclass labels: only accuracy by group and its difference (the binary criteria have no
    single multiclass definition; use one-vs-rest labels yourself if you need them).

    Parameters
    ----------
    y_true, y_pred : array of int, shape (n,)
        True and predicted class labels.
    groups : array of int, shape (n,)
        Group id of every record (0..len(group_names)-1).
    group_names : sequence of str
        Names of the groups; groups absent from ``groups`` are left out of the table.
    weights : array of int, shape (n,), optional
        How many times each row counts (e.g. how many models of an ensemble made this
        prediction of this record): the same result as repeating every row that many times,
        without the repeated arrays. Rows of weight 0 count for nothing.

    Returns
    -------
    OutcomeFairness

    Examples
    --------
    >>> import numpy as np
    >>> of = outcome_fairness(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]),
    ...                       np.array([0, 0, 1, 1]), ["a", "b"])
    >>> of.by_group["accuracy"].tolist(), of.equal_opportunity_difference
    ([1.0, 0.5], 1.0)
    """
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.ndim != 1 or yp.shape != yt.shape:
        raise V.fail("y_pred", f"array of shape {yp.shape}", f"to have the shape of y_true {yt.shape}")
    if yt.size == 0:
        raise V.fail("y_true", "an empty array", "to hold at least one label")
    names = tuple(str(g) for g in group_names)
    G = len(names)
    grp = V.group_ids("groups", groups, n=yt.size, n_groups=G)
    w = None
    if weights is not None:
        w = np.asarray(weights)
        if w.shape != yt.shape or w.dtype.kind not in "iu" or (w.size and w.min() < 0):
            raise V.fail("weights", f"array of shape {w.shape} and dtype {w.dtype}",
                         f"to be non-negative integers of the shape of y_true {yt.shape}")
        if not w.any():
            raise V.fail("weights", "all zeros", "to count at least one row")
        keep = w > 0
        yt, yp, grp, w = yt[keep], yp[keep], grp[keep], w[keep].astype(np.float64)
    labels = np.union1d(yt, yp)
    multiclass = labels.size > 2 or not np.all(np.isin(labels, [0, 1]))
    if multiclass:
        hit = yt == yp
        n = np.bincount(grp, weights=w, minlength=G).astype(np.int64)
        hits = np.bincount(grp[hit], weights=None if w is None else w[hit], minlength=G).astype(np.int64)
    else:
        # one pass: cell (g, y_true, y_pred) -> count; columns tn, fp, fn, tp
        cells = np.bincount(4 * grp + 2 * yt.astype(np.int64) + yp.astype(np.int64), weights=w,
                            minlength=4 * G).astype(np.int64)
        tn, fp, fn, tp = cells.reshape(G, 4).T
        n = tn + fp + fn + tp
        hits = tn + tp
    present = np.flatnonzero(n)
    m = n[present].astype(np.float64)
    by = pd.DataFrame({"group": [names[k] for k in present], "n": n[present].astype(np.int64),
                       "accuracy": hits[present] / m})
    if multiclass:
        for col in ("selection_rate", "true_positive_rate", "false_positive_rate"):
            by[col] = np.nan
        dp = eo = eodds = math.nan
    else:
        tn, fp, fn, tp = (c[present] for c in (tn, fp, fn, tp))
        pos, neg = tp + fn, tn + fp
        by["selection_rate"] = (fp + tp) / m
        by["true_positive_rate"] = np.where(pos > 0, tp / np.maximum(pos, 1), 0.0)
        by["false_positive_rate"] = np.where(neg > 0, fp / np.maximum(neg, 1), 0.0)

        def gap(col: str) -> float:
            return float(by[col].max() - by[col].min())

        dp, eo = gap("selection_rate"), gap("true_positive_rate")
        eodds = max(eo, gap("false_positive_rate"))
    acc_diff = float(by["accuracy"].max() - by["accuracy"].min())
    return OutcomeFairness(by, acc_diff, dp, eo, eodds, bool(multiclass))


#: The same function under the name the experiment layer used when fairlearn's MetricFrame
#: was the library's implementation (it is now the test reference, ``tests/reference``).
outcome_fairness_counts = outcome_fairness
