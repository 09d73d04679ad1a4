"""empirical_epsilon before issue 15 (verbatim, from commit daecb77), kept as a test reference.

One change since: the folds are one split of the pair positions per block of records (drawn
as the cross-fitted estimator draws its own) instead of a split per record, the draw the
library makes since issue 15; the threshold search and the counts are the old code.

The bound arithmetic (Clopper-Pearson, GDP), unchanged, is imported from the library.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from fairpriv_lab.audit.empirical import EmpiricalEpsilon, _mu, clopper_pearson_upper, gdp_epsilon

from ._compat import SeedLike, V, as_generator
from .old_audit import Signal, _informative, _inputs, _pair_blocks


def _select_threshold(x_in, x_out, level):
    """Per row, the threshold maximising the fold's own GDP lower bound (midpoint rule)."""
    mb, k = x_in.shape
    X = np.concatenate([x_in, x_out], axis=1)
    order = np.argsort(X, axis=1)
    xs = np.take_along_axis(X, order, axis=1).astype(np.float64)
    lab = order < k
    n = 2 * k
    cum_in = np.zeros((mb, n + 1), dtype=np.int64)
    np.cumsum(lab, axis=1, out=cum_in[:, 1:])
    cuts = np.arange(n + 1)
    fn = cum_in  # in-trials below the cut are predicted "out"
    fp = k - (cuts[None, :] - cum_in)  # out-trials at or above the cut
    table = np.arange(k + 1)
    z_fp = special.ndtri(1 - clopper_pearson_upper(table, k, level))
    z_fn = special.ndtri(clopper_pearson_upper(table, k, level))
    with np.errstate(invalid="ignore"):
        mu = z_fp[fp] - z_fn[fn]
    mu = np.where(np.isnan(mu), -np.inf, mu)
    if n > 1:
        mu[:, 1:-1][xs[:, :-1] >= xs[:, 1:]] = -np.inf
    kstar = np.argmax(mu, axis=1)
    lo = np.take_along_axis(xs, np.clip(kstar - 1, 0, n - 1)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(xs, np.clip(kstar, 0, n - 1)[:, None], axis=1)[:, 0]
    mid = lo / 2 + hi / 2
    mid = np.where(mid <= lo, hi, mid)
    return np.where(kstar == 0, -np.inf, np.where(kstar == n, np.inf, mid))


def _heldout_counts(s_in, s_out, fold, level):
    """FP and FN per row when each fold is scored by the threshold selected on the other."""
    mb, k = s_in.shape
    ia = np.argsort(~fold, axis=1, kind="stable")  # fold A pairs first
    ka = int(fold[0].sum()) if mb else 0
    parts = [
        (np.take_along_axis(s_in, ia[:, sl], axis=1), np.take_along_axis(s_out, ia[:, sl], axis=1))
        for sl in (slice(0, ka), slice(ka, k))
    ]
    fp = np.zeros(mb, np.int64)
    fn = np.zeros(mb, np.int64)
    for (fit_in, fit_out), (test_in, test_out) in ((parts[0], parts[1]), (parts[1], parts[0])):
        tau = _select_threshold(fit_in, fit_out, level)[:, None]
        fp += (test_out >= tau).sum(axis=1)
        fn += (test_in < tau).sum(axis=1)
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
    delta = V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    alpha = V.number("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    scores, mem, rec, grp = _inputs(losses, membership, records, groups, signal, confidences)
    inf = _informative(mem, rec)
    K = inf.sum(axis=0).astype(np.int64)
    if np.any(K < 2):
        raise V.fail(
            "membership", f"a game with {int(K.min())} pair(s) for some record",
            "to audit every record with >= 2 model pairs (one fold chooses the threshold, the other tests it)",
        )
    level = alpha / 2
    rng = as_generator(seed)
    fp = np.zeros(rec.size, np.int64)
    fn = np.zeros(rec.size, np.int64)
    for cols, k, chunks in _pair_blocks(scores, mem, inf):
        # issue 15: one split of the pair positions for every record of the block, drawn as the
        # cross-fit draws its own (before: a split per record, ``rng.permuted``)
        split = np.zeros(k, dtype=bool)
        split[rng.permutation(k)[: k // 2]] = True
        fold = np.broadcast_to(split, (cols.size, k))
        for r, s_in, s_out in chunks:
            fp[cols[r]], fn[cols[r]] = _heldout_counts(s_in, s_out, fold[r], level)
    mu, fpr, fnr = _mu(fp, fn, K, K, level)
    eps = gdp_epsilon(mu, delta)
    cap_mu, _, _ = _mu(np.zeros(1), np.zeros(1), K.min(keepdims=True), K.min(keepdims=True), level)
    max_cert = float(gdp_epsilon(cap_mu, delta)[0])

    n_groups = int(grp.max()) + 1 if group_names is None else len(group_names)
    names = [str(g) for g in range(n_groups)] if group_names is None else [str(g) for g in group_names]
    if grp.max() >= len(names):
        raise V.fail("group_names", tuple(names), f"to name every group id up to {int(grp.max())}")
    n_rec = np.bincount(grp, minlength=len(names))
    n_tr = np.bincount(grp, weights=K, minlength=len(names)).astype(np.int64)
    gfp = np.bincount(grp, weights=fp, minlength=len(names)).astype(np.int64)
    gfn = np.bincount(grp, weights=fn, minlength=len(names)).astype(np.int64)
    present = n_rec > 0
    gmu = np.full(len(names), np.nan)
    gfpr = np.full(len(names), np.nan)
    gfnr = np.full(len(names), np.nan)
    geps = np.full(len(names), np.nan)
    gcap = np.full(len(names), np.nan)
    if present.any():
        gmu[present], gfpr[present], gfnr[present] = _mu(gfp[present], gfn[present], n_tr[present], n_tr[present], level)
        geps[present] = gdp_epsilon(gmu[present], delta)
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
            "max_certifiable": gcap,
            "at_cap": present & (gfp == 0) & (gfn == 0),
        }
    )
    return EmpiricalEpsilon(rec, grp, eps, mu, fp, fn, K, fpr, fnr, per_group, max_cert, delta, alpha)
