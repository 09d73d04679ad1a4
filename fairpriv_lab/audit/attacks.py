"""Per-record membership-inference attacks and individual privacy risk (docs/design.md 4.2-4.4).

Convention, written once here: the inputs are per-model per-record cross-entropy **losses**
(lower loss means member); :func:`attack_scores` converts them to a **score where higher
means member** (``score = -loss``, or the logit-scaled confidence ``log p - log(1 - p)`` with
``p = exp(-loss)``). Every attack below predicts "member" when ``score >= tau``.

For a record x audited by R model pairs (x in one model of each pair, out of the other), the
attack accuracy is ``acc(x)`` and the individual privacy risk is ``IPR(x) = 2 acc(x) - 1``
(a fraction in [-1, 1]). Estimators of acc(x):

``"in_sample"`` (the paper's)
    tau maximises the accuracy over the same 2R scores it is scored on; acc >= 0.5 always and
    the estimate is biased upwards (about +6 percentage points of IPR at 2R = 400 when there is
    no leakage at all).
``"cross_fit"`` (default)
    the pairs are split at random into two folds; tau is chosen on one fold and scored on the
    other, both ways; acc = (correct on fold A + correct on fold B) / 2R. With no leakage its
    expectation is exactly 0.5 (tau never sees the trials it is scored on): it is unbiased
    **under the null only**. With leakage it under-reads, because a threshold chosen on R
    trials is worse than the best one (in planted tests about 83 % of the true IPR at
    2R = 64 and 93 % at 2R = 400; ``tests/unit/audit/test_audit.py::
    test_cross_fit_is_unbiased_under_the_null_only_and_attenuates_a_planted_effect``).

Thresholds are taken between distinct observed scores (the midpoint), so equal scores always
fall on the same side of a cut; among equally good cuts the lowest threshold is used. The
sort and cumulative-count machinery is :mod:`fairpriv_lab.audit.kernels`. The
zero-leakage **floor** is the same estimator on labels permuted within each record (which model
of each pair is "in" is re-drawn at random), computed from the same sort.

Taught in notebooks 1-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._core import validate as V
from .._core.rng import SeedLike, as_generator
from .._core.vocabulary import AUDITORS as _AUDITORS
from .._core.vocabulary import ESTIMATORS as _ESTIMATORS
from .._core.vocabulary import SIGNALS as _SIGNALS
from .._core.vocabulary import Estimator, Signal
from .kernels import (
    EstimatorTask,
    all_distinct,
    as_f32,
    coins,
    column_counts,
    global_runs,
    informative_pairs,
    record_pass,
)

__all__ = [
    "RecordRisk",
    "Agreement",
    "attack_scores",
    "record_risk",
    "global_risk",
    "agreement",
]



@dataclass(frozen=True, eq=False)
class RecordRisk:
    """Per-record attack accuracy and individual privacy risk (IPR) of one auditor.

    Parameters
    ----------
    records : ndarray of int64, shape (m,)
        Dataset indices of the audited records.
    groups : ndarray of int64, shape (m,)
        Group id of each audited record.
    accuracy : ndarray of float, shape (m,)
        Attack accuracy in [0, 1] (fraction).
    ipr : ndarray of float, shape (m,)
        ``2 * accuracy - 1`` (fraction).
    floor : ndarray of float, shape (m,)
        IPR of the same estimator on membership labels permuted within each record (what the
        estimator reads when there is no leakage; fraction).
    auditor : {"PA-ALOOA", "PA-LOOA", "PA-GA", "PA-GBA"}
    estimator : {"cross_fit", "in_sample"}
    n_pairs : ndarray of int64, shape (m,), optional
        Model pairs that audit each record (R). Defaults to zeros when unknown.
    signal : {"loss", "confidence"}
        Which per-model signal was attacked.

    Examples
    --------
    >>> import numpy as np
    >>> rr = RecordRisk(np.array([0, 1]), np.array([0, 1]), np.array([0.5, 0.75]),
    ...                 np.array([0.0, 0.5]), np.zeros(2), "PA-ALOOA", "cross_fit")
    >>> rr.m, rr.to_frame().columns.tolist()
    (2, ['record', 'group', 'accuracy', 'ipr', 'floor', 'n_pairs'])
    """

    records: np.ndarray
    groups: np.ndarray
    accuracy: np.ndarray
    ipr: np.ndarray
    floor: np.ndarray
    auditor: str
    estimator: str
    n_pairs: np.ndarray | None = None
    signal: str = "loss"

    def __post_init__(self) -> None:
        V.choice("auditor", self.auditor, _AUDITORS)
        V.choice("estimator", self.estimator, _ESTIMATORS)
        V.choice("signal", self.signal, _SIGNALS)
        rec = np.asarray(self.records).astype(np.int64)
        if rec.ndim != 1:
            raise V.fail("records", f"array of shape {rec.shape}", "to be 1-D")
        m = rec.shape[0]
        grp = V.group_ids("groups", self.groups, n=m)
        arrays = {"records": rec, "groups": grp}
        if not all_distinct(rec):
            raise V.fail("records", "an array with repeated records", "to hold each audited record once")
        # fractions: an IPR lies in [-1, 1]; a floor-corrected one (IPR - floor, as built by
        # floor_corrected) in [-2, 2], with accuracy (1 + IPR) / 2 in [-0.5, 1.5]
        for name, (lo, hi) in (("accuracy", (-0.5, 1.5)), ("ipr", (-2.0, 2.0)), ("floor", (-2.0, 2.0))):
            arr = V.float_array(name, getattr(self, name), 1, finite=False)
            if arr.shape != (m,):
                raise V.fail(name, f"array of shape {arr.shape}", f"to have shape ({m},)")
            if m and not (np.all(np.isfinite(arr)) and arr.min() >= lo - 1e-9 and arr.max() <= hi + 1e-9):
                raise V.fail(name, "an array with NaN, infinite or out-of-range entries",
                             f"to hold fractions in [{lo:g}, {hi:g}]",
                             "RecordRisk values are fractions (an IPR lies in [-1, 1], a floor-corrected "
                             "one in [-2, 2]), not percent (GroupRisk reports percent)")
            arrays[name] = arr
        n_pairs = np.zeros(m, np.int64) if self.n_pairs is None else np.asarray(self.n_pairs).astype(np.int64)
        if n_pairs.shape != (m,):
            raise V.fail("n_pairs", f"array of shape {n_pairs.shape}", f"to have shape ({m},)")
        arrays["n_pairs"] = n_pairs
        for name, arr in arrays.items():
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def m(self) -> int:
        """Number of audited records."""
        return int(self.records.shape[0])

    def __repr__(self) -> str:
        mean = f"{100 * float(np.mean(self.ipr)):.2f}" if self.m else "nan"
        floor = f"{100 * float(np.mean(self.floor)):.2f}" if self.m else "nan"
        return (f"RecordRisk(auditor={self.auditor!r}, estimator={self.estimator!r}, m={self.m}, "
                f"mean IPR={mean} pp, mean floor={floor} pp)")

    def to_frame(self) -> pd.DataFrame:
        """Return a tidy DataFrame, one row per audited record (fractions, not percent)."""
        return pd.DataFrame(
            {
                "record": self.records,
                "group": self.groups,
                "accuracy": self.accuracy,
                "ipr": self.ipr,
                "floor": self.floor,
                "n_pairs": self.n_pairs,
            }
        )


# --------------------------------------------------------------------------- signals
def attack_scores(
    losses: np.ndarray, *, signal: Signal = "loss", confidences: np.ndarray | None = None,
    _negate: bool = True,
) -> np.ndarray:
    """Convert losses (lower = member) to attack scores (higher = member), in one place.

    ``signal="loss"``: ``score = -loss``. ``signal="confidence"``: the logit-scaled true-class
    confidence ``log p - log(1 - p)`` (LiRA), either passed in as ``confidences`` or computed
    from the cross-entropy loss as ``p = exp(-loss)``, i.e. ``-loss - log(1 - exp(-loss))``
    (a zero loss is treated as the smallest positive float so that the score stays finite).

    Parameters
    ----------
    losses : ndarray of float, shape (n_models, n_samples)
        Cross-entropy losses, finite and >= 0 (for the confidence computed from them).
    signal : {"loss", "confidence"}
    confidences : ndarray of float, shape (n_models, n_samples), optional
        Precomputed logit-scaled confidences; only with ``signal="confidence"``.

    Returns
    -------
    ndarray, shape (n_models, n_samples)
        Scores; higher means "member". float32 losses give float32 scores for ``"loss"``.

    Examples
    --------
    >>> import numpy as np
    >>> attack_scores(np.array([[0.5, 2.0]])).tolist()
    [[-0.5, -2.0]]
    >>> np.round(attack_scores(np.array([[np.log(2.0)]]), signal="confidence"), 6).tolist()
    [[0.0]]
    """
    V.choice("signal", signal, _SIGNALS)
    if confidences is not None:
        if signal != "confidence":
            raise V.fail("confidences", "an array", "to be given only with signal='confidence'")
        conf = np.asarray(confidences)
        if conf.ndim != 2 or conf.dtype.kind != "f":
            raise V.fail("confidences", f"array of shape {conf.shape}", "to be a 2-D float array")
        if not np.all(np.isfinite(conf)):
            raise V.fail("confidences", "an array with NaN or infinite entries", "to be finite")
        return conf
    arr = np.asarray(losses)
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise V.fail("losses", f"array of shape {arr.shape}", "to be a 2-D float array (n_models, n_samples)")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise V.fail("losses", "an array with NaN or infinite entries", "to be finite")
    if signal == "loss":
        return -arr if _negate else arr  # _negate=False: validation only (audit_inputs)
    if np.any(arr < 0):
        raise V.fail("losses", "an array with negative entries", "to be >= 0 (cross-entropy)")
    loss = np.maximum(arr.astype(np.float64), np.finfo(np.float64).tiny)
    return -loss - np.log(-np.expm1(-loss))


# --------------------------------------------------------------------------- validation
def negated_later(losses, signal, confidences) -> bool:
    """Tell whether :func:`audit_inputs` with ``negate_later`` returns losses in place of scores.

    With the loss signal and float32 losses the scores are ``-losses``: kernels that take
    ``negated=True`` negate a block at a time, and the matrix-sized ``-losses`` (58 MB at
    400 x 36,178) is never made.
    """
    return signal == "loss" and confidences is None and np.asarray(losses).dtype == np.float32


def audit_inputs(losses, membership, records, groups, signal, confidences, negate_later: bool = False):
    """Validate and return (scores (n_models, m), membership (n_models, m), records, groups_rec).

    ``negate_later`` and :func:`negated_later`: the first item is the (validated) losses, to be
    negated by the kernels.
    """
    lazy = negate_later and negated_later(losses, signal, confidences)
    scores = attack_scores(losses, signal=signal, confidences=confidences, _negate=not lazy)
    shape = np.shape(losses)
    if scores.shape != shape:
        raise V.fail("confidences", f"array of shape {scores.shape}", f"to have the shape of losses {shape}")
    n_models, n = scores.shape
    mem = V.bool_matrix("membership", membership, shape=(n_models, n))
    if n_models < 2 or n_models % 2:
        raise V.fail("n_models", n_models, "to be even and >= 2 (models come in complementary pairs)")
    if records is None:
        records = np.flatnonzero((mem[0::2] != mem[1::2]).any(axis=0))
        if records.size == 0:
            raise V.fail(
                "membership", "a matrix with no audited record",
                "to put some record in one model of a pair and out of the other",
            )
    rec = np.asarray(records)
    if rec.ndim != 1 or rec.dtype.kind not in "iu" or rec.size == 0:
        raise V.fail("records", f"array of shape {rec.shape} and dtype {rec.dtype}", "to be a non-empty 1-D integer array")
    rec = rec.astype(np.int64)
    if rec.min() < 0 or rec.max() >= n:
        raise V.fail("records", f"ids in [{rec.min()}, {rec.max()}]", f"to lie in [0, {n - 1}]")
    if not all_distinct(rec):
        raise V.fail("records", "an array with repeated records", "to list each audited record once")
    grp = np.zeros(n, dtype=np.int64) if groups is None else V.group_ids("groups", groups, n=n)
    if rec.size == n and np.array_equal(rec, np.arange(n)):
        return scores, mem, rec, grp  # every record audited (half-split game): no copies
    return scores[:, rec], mem[:, rec], rec, grp[rec]


def check_cross_fit(estimator: str, inf: np.ndarray) -> None:
    K = column_counts(inf)
    if estimator == "cross_fit" and np.any(K < 2):
        raise V.fail(
            "estimator", estimator,
            f"to be 'in_sample' when a record has fewer than 2 model pairs (found {int(K.min())})",
            "cross_fit needs one pair to choose the threshold and another to score it",
        )


# --------------------------------------------------------------------------- public API
def record_risk(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    records: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    estimator: Estimator = "cross_fit",
    signal: Signal = "loss",
    confidences: np.ndarray | None = None,
    seed: SeedLike = None,
) -> RecordRisk:
    """Per-record attack accuracy and IPR of PA-ALOOA / PA-LOOA, with the zero-leakage floor.

    For each record x, its trials are the model pairs in which x is in one model and out of the
    other (all pairs in ALOOA and half-split games, x's own pairs in a LOO game): K pairs,
    2K scores with in/out labels. The attack predicts "member" when ``score >= tau``;
    ``acc(x)`` is its accuracy and ``IPR(x) = 2 acc(x) - 1``.

    * ``"in_sample"``: ``acc = max_tau (1/2K) sum_j 1[(s_j >= tau) == in_j]`` (the paper's).
    * ``"cross_fit"``: the K pairs are split at random into folds A (``K // 2`` pairs) and B;
      ``acc = (correct_B(tau_A) + correct_A(tau_B)) / 2K`` where tau_F maximises the accuracy
      on fold F. Needs K >= 2. The pairs are exchangeable (independent trainings), so one
      seeded split of the pair positions is shared by all records of a call.

    Each record's 2K scores are sorted once; the accuracy at every cut comes from cumulative
    counts (no loop over records or thresholds). The floor re-draws which model of each pair
    is "in" (seeded) and applies the same estimator.

    Parameters
    ----------
    losses : ndarray of float, shape (n_models, n_samples)
        Per-model per-record losses (lower = member).
    membership : ndarray of bool, shape (n_models, n_samples)
        The game's membership matrix (complementary pairs ``(2p, 2p + 1)``).
    records : array of int, shape (m,), optional
        Records to audit (``game.audit_idx``); by default every record that some pair audits.
    groups : array of int, shape (n_samples,), optional
        Group id of every record of the dataset; zeros by default.
    estimator : {"cross_fit", "in_sample"}
    signal : {"loss", "confidence"}
        See :func:`attack_scores`.
    confidences : ndarray of float, shape (n_models, n_samples), optional
        Logit-scaled confidences for ``signal="confidence"`` (computed from losses if absent).
    seed : int, numpy Generator or None
        Randomness of the folds and of the floor's permutation.

    Returns
    -------
    RecordRisk
        ``auditor`` is "PA-ALOOA" when every record is audited by every pair, else "PA-LOOA".

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.games import half_split_game
    >>> game = half_split_game(3, n_models=8, seed=0)
    >>> losses = np.where(game.membership, 0.1, 1.0)  # a perfectly leaking signal
    >>> rr = record_risk(losses, game.membership, seed=0)
    >>> rr.ipr.tolist(), rr.auditor
    ([1.0, 1.0, 1.0], 'PA-ALOOA')
    """
    V.choice("estimator", estimator, _ESTIMATORS)
    scores, mem, rec, grp = audit_inputs(losses, membership, records, groups, signal, confidences,
                                         negate_later=True)
    inf = informative_pairs(mem, rec)
    check_cross_fit(estimator, inf)
    task = EstimatorTask(estimator, as_generator(seed), rec.size)
    record_pass(scores, mem, inf, [task], negated=negated_later(losses, signal, confidences))
    return record_result(rec, grp, inf, task, signal)


def record_result(rec, grp, inf, task: EstimatorTask, signal) -> RecordRisk:
    """Return the RecordRisk of an :class:`~fairpriv_lab.audit.kernels.EstimatorTask` after its pass."""
    auditor = "PA-ALOOA" if np.all(inf) else "PA-LOOA"
    K = column_counts(inf)
    acc = task.acc
    return RecordRisk(rec, grp, acc, 2 * acc - 1, 2 * task.acc_floor - 1, auditor, task.estimator, K, signal)


def global_risk(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    records: np.ndarray,
    groups: np.ndarray | None = None,
    by_group: bool = False,
    estimator: Estimator = "in_sample",
    signal: Signal = "loss",
    confidences: np.ndarray | None = None,
    seed: SeedLike = None,
) -> RecordRisk:
    """Average-case baselines PA-GA (one threshold per model) and PA-GBA (per model and group).

    PA-GA: for each model k, ``tau_k`` maximises the accuracy of ``score >= tau`` over the
    model's audit trials (the audited records that k's pair audits, labelled in/out). A record's
    accuracy is the fraction of its 2K models in which it is classified correctly:
    ``acc(x) = (1/2K) sum_k 1[(s_k(x) >= tau_k) == in_k(x)]``. PA-GBA (``by_group=True``) uses
    one threshold per (model, group), fitted on that group's records only.

    ``estimator="in_sample"`` is the paper's definition (thresholds fitted on all audit
    records, including the one being scored). ``"cross_fit"`` splits the records at random into
    two halves (within each group) and scores each half with the thresholds fitted on the other;
    a half with no records gives the threshold -inf (everything "member"). Cross-fitted
    thresholds maximise *balanced* accuracy, so that they cannot learn a fitting half's share of
    members, which is anti-correlated with the scoring half's (each model holds a fixed number
    of audited members): with plain accuracy a leak-free audit would read below zero.

    Tie-breaking rule: thresholds lie midway between distinct observed scores (equal scores
    fall on the same side); among thresholds with equal (balanced) accuracy the **lowest** is
    used. Which equally good threshold a model uses decides which records count as correctly
    classified, so the rule is part of the definition; it is checked against a brute-force
    loop over thresholds in exact integer arithmetic
    (``tests/unit/audit/test_audit.py::test_global_risk_lowest_threshold_rule_matches_brute_force``).

    Each model's scores are sorted once (no loop over records, models or thresholds; the
    thresholds loop over the few cells = groups x halves). The floor permutes labels within
    records as in :func:`record_risk`.

    Parameters
    ----------
    losses, membership : ndarray, shape (n_models, n_samples)
        As in :func:`record_risk`.
    records : array of int, shape (m,)
        The audited records (``game.audit_idx``).
    groups : array of int, shape (n_samples,), optional
        Group id of every record; needed for ``by_group=True``.
    by_group : bool
        False for PA-GA, True for PA-GBA.
    estimator : {"in_sample", "cross_fit"}
    signal : {"loss", "confidence"}
    confidences : ndarray, optional
        As in :func:`record_risk`.
    seed : int, numpy Generator or None
        Randomness of the floor's permutation and of the cross-fit halves.

    Returns
    -------
    RecordRisk
        ``auditor`` "PA-GA" or "PA-GBA".

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.games import half_split_game
    >>> game = half_split_game(4, n_models=4, seed=0)
    >>> losses = np.where(game.membership, 0.1, 1.0)
    >>> global_risk(losses, game.membership, records=game.audit_idx, seed=0).accuracy.tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    V.choice("estimator", estimator, _ESTIMATORS)
    if not isinstance(by_group, bool | np.bool_):
        raise V.fail("by_group", by_group, "to be True or False")
    if by_group and groups is None:
        raise V.fail("groups", None, "to give every record's group when by_group=True")
    scores, mem, rec, grp = audit_inputs(losses, membership, records, groups, signal, confidences,
                                         negate_later=True)
    inf = informative_pairs(mem, rec)
    run = global_draws(as_generator(seed), inf, grp, by_group, estimator)
    (acc, acc_floor), = global_blocks(as_f32(scores), mem, inf, [run],
                                      negated=negated_later(losses, signal, confidences))
    return global_result(rec, grp, inf, run, acc, acc_floor, signal)


def global_draws(rng: np.random.Generator, inf: np.ndarray, grp: np.ndarray, by_group: bool,
                 estimator: str) -> tuple:
    """Draw the randomness of one PA-GA / PA-GBA audit: the floor's swaps, then the cross-fit halves.

    Returns ``(by_group, estimator, swap (n_pairs, m), cell (m,), partner (m,))``: thresholds
    of cell c are fitted on the records of cell c, a record is scored by its partner cell's.
    """
    m = grp.size
    swap = coins(rng, inf.shape) & inf
    cell = grp.copy() if by_group else np.zeros(m, np.int64)
    if estimator == "cross_fit":
        half = np.zeros(m, dtype=bool)
        for g in np.unique(cell):  # loop over groups only
            idx = np.flatnonzero(cell == g)
            half[rng.permutation(idx)[: idx.size // 2]] = True
        cell = 2 * cell + half
        partner = cell ^ 1
    else:
        partner = cell
    return by_group, estimator, swap, cell, partner


def global_blocks(scores: np.ndarray, mem: np.ndarray, inf: np.ndarray, runs: list, negated: bool = False) -> list:
    """``(accuracy, floor accuracy)`` of each run of :func:`global_draws` on the same scores.

    ``negated``: ``scores`` are losses whose negatives are the scores (:func:`negated_later`).
    """
    # trials and swaps per pair (both models of a pair share them), expanded block by block
    return global_runs(scores, mem, inf, [(swap, cell, partner, estimator == "cross_fit")
                                          for _by_group, estimator, swap, cell, partner in runs],
                       per_pair=True, negated=negated)


def global_result(rec, grp, inf, run, acc, acc_floor, signal) -> RecordRisk:
    """Return the RecordRisk of one PA-GA / PA-GBA run."""
    by_group, estimator = run[0], run[1]
    auditor = "PA-GBA" if by_group else "PA-GA"
    K = column_counts(inf)
    return RecordRisk(rec, grp, acc, 2 * acc - 1, 2 * acc_floor - 1, auditor, estimator, K, signal)


# --------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """How closely two auditors agree on the records they both audit (e.g. ALOOA vs LOOA).

    Parameters
    ----------
    records : ndarray of int64, shape (k,)
        Records audited by both.
    mean_abs_diff : float
        ``mean |acc_a(x) - acc_b(x)|`` over the common records (fraction; the source paper
        reports about 0.024 for ALOOA vs LOOA at 2R = 400).
    correlation : float
        Pearson correlation of the two accuracies (NaN with fewer than 2 records or no spread).
    group_means : pandas.DataFrame
        Per group: n, mean IPR of a and of b, and their difference (fractions).
    """

    records: np.ndarray
    mean_abs_diff: float
    correlation: float
    group_means: pd.DataFrame


def agreement(a: RecordRisk, b: RecordRisk) -> Agreement:
    """Compare two RecordRisk results on their common records (the ALOOA-vs-LOOA check).

    Parameters
    ----------
    a, b : RecordRisk
        E.g. ``record_risk`` on an ALOOA game and on a LOO game whose targets are some of the
        ALOOA audit records (``loo_game(n, targets=aloo.audit_idx[:k], n_pairs=R)``).

    Returns
    -------
    Agreement

    Examples
    --------
    >>> import numpy as np
    >>> a = RecordRisk(np.array([1, 2]), np.array([0, 0]), np.array([0.5, 0.7]),
    ...                np.array([0.0, 0.4]), np.zeros(2), "PA-ALOOA", "cross_fit")
    >>> b = RecordRisk(np.array([2, 5]), np.array([0, 1]), np.array([0.6, 0.5]),
    ...                np.array([0.2, 0.0]), np.zeros(2), "PA-LOOA", "cross_fit")
    >>> round(agreement(a, b).mean_abs_diff, 3)
    0.1
    """
    common, ia, ib = np.intersect1d(a.records, b.records, return_indices=True)
    if common.size == 0:
        raise V.fail("b.records", "records disjoint from a.records", "to share records with a")
    da, db = a.accuracy[ia], b.accuracy[ib]
    if common.size > 1 and np.std(da) > 0 and np.std(db) > 0:
        corr = float(np.corrcoef(da, db)[0, 1])
    else:
        corr = float("nan")
    frame = pd.DataFrame({"group": a.groups[ia], "ipr_a": a.ipr[ia], "ipr_b": b.ipr[ib]})
    gm = frame.groupby("group").agg(n=("ipr_a", "size"), ipr_a=("ipr_a", "mean"), ipr_b=("ipr_b", "mean"))
    gm["difference"] = gm["ipr_a"] - gm["ipr_b"]
    return Agreement(common, float(np.mean(np.abs(da - db))), corr, gm.reset_index())
