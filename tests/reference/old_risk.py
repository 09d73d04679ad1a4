"""risk.py's pair_bootstrap and fairlearn-based outcome_fairness before issue 15, kept as references.

``outcome_fairness`` here is the MetricFrame implementation; the library now computes the
same numbers from per-group counts, and the tests check equality.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from fairpriv_lab.audit.risk import OutcomeFairness

from ._compat import SeedLike, V, as_generator
from .old_audit import (
    _ESTIMATORS,
    Estimator,
    Signal,
    _as_f32,
    _informative,
    _inputs,
    _pair_blocks,
    _record_block,
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

    Cost: one :func:`~fairpriv_lab.audit.record_risk` per replicate (a loop over
    replicates; each is vectorised): about 10 ms at 2,000 records x 64 models, about 1 s at
    45,222 x 400. Meant for notebook-sized audits.

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
    estimator : {"cross_fit", "in_sample"}
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
    n_boot = V.integer("n_boot", n_boot, low=1)
    n_groups = V.integer("n_groups", n_groups, low=1)
    scores, mem, rec, grp = _inputs(losses, membership, records, groups, signal, confidences)
    if grp.size and grp.max() >= n_groups:
        raise V.fail("n_groups", n_groups, f"to exceed every group id (found {int(grp.max())})")
    inf = _informative(mem, rec)
    n_pairs = inf.shape[0]
    if estimator == "cross_fit" and (n_pairs < 2 or not inf.all()):
        raise V.fail(
            "estimator", estimator,
            "to be 'in_sample' unless every pair (>= 2) audits every record (ALOOA, half-split)",
        )
    scores = _as_f32(scores)
    rng = as_generator(seed)
    out = np.full((n_boot, n_groups), np.nan)
    members = [np.flatnonzero(grp == g) for g in range(n_groups)]
    for b in range(n_boot):  # loop over replicates; each replicate is vectorised
        pick = rng.integers(0, n_pairs, n_pairs)
        fold = None
        if estimator == "cross_fit":
            orig_fold = rng.permutation(n_pairs) < n_pairs // 2
            while orig_fold[pick].all() or not orig_fold[pick].any():  # both folds non-empty
                pick = rng.integers(0, n_pairs, n_pairs)
            fold = orig_fold[pick]  # copies of one pair share its fold
        models = np.stack([2 * pick, 2 * pick + 1], axis=1).ravel()
        s_b, m_b, inf_b = scores[models], mem[models], inf[pick]
        ipr = np.full(rec.size, np.nan)
        for cols, k, chunks in _pair_blocks(s_b, m_b, inf_b):
            if k == 0:  # LOO targets none of whose pairs were drawn
                continue
            swap = np.zeros((cols.size, k), dtype=bool)
            for r, s_in, s_out in chunks:
                acc, _ = _record_block(s_in, s_out, fold, swap[r])
                ipr[cols[r]] = 2 * acc - 1
        for g, idx in enumerate(members):
            vals = ipr[idx]
            vals = vals[np.isfinite(vals)]
            if vals.size:
                out[b, g] = 100 * vals[rng.integers(0, vals.size, vals.size)].mean()
    return out


def outcome_fairness(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, group_names: list[str]
) -> OutcomeFairness:
    """Accuracy parity, demographic parity, equal opportunity and equalized odds via fairlearn.

    Binary labels (0/1, 1 = positive): fairlearn's ``MetricFrame`` gives per-group accuracy,
    selection rate ``P(y_pred = 1 | g)``, TPR and FPR; ``demographic_parity_difference``,
    ``equal_opportunity_difference`` (TPR gap) and ``equalized_odds_difference``
    (max of the TPR and FPR gaps) come from ``fairlearn.metrics``. Multiclass labels: only
    accuracy by group and its difference (the binary criteria have no single multiclass
    definition; use one-vs-rest labels yourself if you need them).

    Parameters
    ----------
    y_true, y_pred : array of int, shape (n,)
        True and predicted class labels.
    groups : array of int, shape (n,)
        Group id of every record (0..len(group_names)-1).
    group_names : sequence of str
        Names of the groups; groups absent from ``groups`` are left out of the table.

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
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equal_opportunity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.ndim != 1 or yp.shape != yt.shape:
        raise V.fail("y_pred", f"array of shape {yp.shape}", f"to have the shape of y_true {yt.shape}")
    if yt.size == 0:
        raise V.fail("y_true", "an empty array", "to hold at least one label")
    names = tuple(str(g) for g in group_names)
    grp = V.group_ids("groups", groups, n=yt.size, n_groups=len(names))
    sens = np.asarray(names, dtype=object)[grp]
    labels = np.union1d(yt, yp)
    multiclass = labels.size > 2 or not np.all(np.isin(labels, [0, 1]))
    metrics = {"accuracy": accuracy_score}
    if not multiclass:
        metrics |= {
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        }
    with warnings.catch_warnings():
        # fairlearn warns when a group has no positives (TPR undefined); we report NaN-free 0s
        # as fairlearn does and let the caller read n.
        warnings.simplefilter("ignore", UserWarning)
        mf = MetricFrame(metrics=metrics, y_true=yt, y_pred=yp, sensitive_features=sens)
        by = mf.by_group.reset_index(drop=False)
        by.columns = ["group", *by.columns[1:]]
        order = {name: i for i, name in enumerate(names)}
        by = by.sort_values("group", key=lambda s: s.map(order)).reset_index(drop=True)
        counts = pd.Series(sens).value_counts()
        by.insert(1, "n", by["group"].map(counts).astype(np.int64))
        for col in ("selection_rate", "true_positive_rate", "false_positive_rate"):
            if col not in by:
                by[col] = np.nan
        acc_diff = float(mf.difference()["accuracy"])
        if multiclass:
            dp = eo = eodds = math.nan
        else:
            dp = float(demographic_parity_difference(yt, yp, sensitive_features=sens))
            eo = float(equal_opportunity_difference(yt, yp, sensitive_features=sens))
            eodds = float(equalized_odds_difference(yt, yp, sensitive_features=sens))
    return OutcomeFairness(by, acc_diff, dp, eo, eodds, bool(multiclass))
