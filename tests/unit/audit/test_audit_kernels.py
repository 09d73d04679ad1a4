"""The one-sort audit kernels (issue 15) against the implementation they replaced and slow loops.

``tests/reference`` keeps the old functions that issue 15 replaced (record_risk,
empirical_epsilon, pair_bootstrap at commit daecb77, and outcome fairness through fairlearn's
MetricFrame); the new ones must give the same numbers for the same seed, exactly. PA-GA/GBA's
histogram kernel equals the row-sorting kernel it bypasses (``_global_chunk``, checked against
brute-force loops in ``test_audit.py``) exactly, and a brute-force threshold fit here.
"""

import math

import numpy as np
import pandas as pd
import pytest

from fairpriv_lab.audit.attacks import global_risk, record_risk
from fairpriv_lab.audit.empirical import empirical_epsilon
from fairpriv_lab.audit.kernels import _global_chunk, _global_chunk_hist
from fairpriv_lab.audit.risk import _replicate_ipr, outcome_fairness, pair_bootstrap
from fairpriv_lab.games import aloo_game, half_split_game, loo_game
from tests.reference import old_audit, old_empirical, old_risk


def _losses(rng, game, tied, dtype):
    L = rng.exponential(size=game.membership.shape) - 0.4 * game.membership
    L = np.abs(np.round(L, 1) if tied else L)
    return L.astype(dtype)


GAMES = {
    "half": lambda rng: half_split_game(120, n_models=16, seed=1),
    "aloo": lambda rng: aloo_game(rng.integers(0, 3, 150), n_models=12, m=40, seed=2),
    "one_pair": lambda rng: half_split_game(50, n_models=2, seed=3),
    "odd_pairs": lambda rng: half_split_game(60, n_models=10, seed=4),
}


def _same_rr(a, b):
    for f in ("records", "groups", "accuracy", "ipr", "floor", "n_pairs"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert (a.auditor, a.estimator) == (b.auditor, b.estimator)


@pytest.mark.parametrize("game_name", list(GAMES))
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_record_risk_and_empirical_equal_old(game_name, tied, dtype):
    rng = np.random.default_rng(5)
    game = GAMES[game_name](rng)
    L = _losses(rng, game, tied, dtype)
    groups = rng.integers(0, 3, game.n_samples)
    kw = dict(records=game.audit_idx, groups=groups, seed=7)
    estimators = ["in_sample"] + (["cross_fit"] if game.n_pairs >= 2 else [])
    for est in estimators:
        _same_rr(record_risk(L, game.membership, estimator=est, **kw),
                 old_audit.record_risk(L, game.membership, estimator=est, **kw))
    if game.n_pairs >= 2:
        new = empirical_epsilon(L, game.membership, delta=1e-5, **kw)
        old = old_empirical.empirical_epsilon(L, game.membership, delta=1e-5, **kw)
        for f in ("fp", "fn", "per_record", "mu", "fpr_upper", "fnr_upper"):
            np.testing.assert_array_equal(getattr(new, f), getattr(old, f), err_msg=f)
        pd.testing.assert_frame_equal(new.per_group[old.per_group.columns], old.per_group)
        assert new.max_certifiable == old.max_certifiable


def test_record_risk_loo_and_confidence_signal_equal_old():
    rng = np.random.default_rng(11)
    game = loo_game(80, targets=np.arange(0, 80, 7), n_pairs=6, seed=1)
    L = _losses(rng, game, False, np.float32)
    kw = dict(records=game.audit_idx, groups=rng.integers(0, 2, 80), seed=3)
    for est in ("in_sample", "cross_fit"):
        _same_rr(record_risk(L, game.membership, estimator=est, **kw),
                 old_audit.record_risk(L, game.membership, estimator=est, **kw))
    half = half_split_game(90, n_models=8, seed=2)
    L = _losses(rng, half, True, np.float32) + 0.01
    _same_rr(record_risk(L, half.membership, signal="confidence", seed=1),
             old_audit.record_risk(L, half.membership, signal="confidence", seed=1))


@pytest.mark.parametrize("n_models", [4, 12])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_bootstrap_equals_old(n_models, tied, dtype):
    """Reweighting one sort per record gives exactly the replicates of re-running record_risk."""
    rng = np.random.default_rng(3 + tied)
    game = half_split_game(150, n_models=n_models, seed=1)
    L = _losses(rng, game, tied, dtype)
    g = rng.integers(0, 3, 150)
    kw = dict(records=game.audit_idx, groups=g, n_groups=4, estimator="cross_fit", n_boot=25, seed=9)
    np.testing.assert_array_equal(pair_bootstrap(L, game.membership, **kw),
                                  old_risk.pair_bootstrap(L, game.membership, **kw))


def _loop_acc(s_in, s_out, pick_a, pick_b):
    """Slow reference: the drawn pairs' scores (copies included), plain loops over thresholds."""
    def best_tau(s, lab):
        u = np.unique(s).astype(np.float64)
        cands = [-np.inf] + [u[i] / 2 + u[i + 1] / 2 for i in range(len(u) - 1)] + [np.inf]
        accs = [np.sum((s >= t) == lab) for t in cands]
        return cands[int(np.argmax(accs))]

    parts = [(np.r_[s_in[p], s_out[p]], np.r_[np.ones(p.size, bool), np.zeros(p.size, bool)]) for p in (pick_a, pick_b)]
    (sa, la), (sb, lb) = parts
    correct = np.sum((sb >= best_tau(sa, la)) == lb) + np.sum((sa >= best_tau(sb, lb)) == la)
    return correct / (2 * (pick_a.size + pick_b.size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_replicate_ipr_matches_loop_over_thresholds(dtype):
    """One pair-bootstrap replicate against the drawn pairs' scores and a loop over thresholds."""
    rng = np.random.default_rng(1)
    rows, K = 30, 6
    s_in = rng.integers(0, 4, (rows, K)).astype(dtype) * 0.5 + 0.1
    s_out = rng.integers(0, 4, (rows, K)).astype(dtype) * 0.5
    s_in[0, 0], s_out[0, 0] = -0.0, 0.0  # signed zeros are one tie
    for _ in range(6):
        pick = rng.integers(0, K, K)
        fold = (rng.permutation(K) < K // 2)[pick]
        if fold.all() or not fold.any():
            continue
        got = _replicate_ipr(s_in, s_out, pick[fold], pick[~fold])
        want = [2 * _loop_acc(s_in[r], s_out[r], pick[fold], pick[~fold]) - 1 for r in range(rows)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def _same_outcome(got, ref):
    pd.testing.assert_frame_equal(got.by_group, ref.by_group, check_dtype=False, check_exact=True)
    for k in ("accuracy_difference", "demographic_parity_difference", "equal_opportunity_difference",
              "equalized_odds_difference", "multiclass"):
        a, b = getattr(got, k), getattr(ref, k)
        assert a == b or (math.isnan(a) and math.isnan(b)), k


def test_outcome_fairness_equals_fairlearn():
    rng = np.random.default_rng(0)
    y, p, g = rng.integers(0, 2, 600), rng.integers(0, 2, 600), rng.integers(0, 3, 600)
    y[g == 2] = 0  # a group without positives: TPR undefined, reported as 0
    names = ["a", "b", "c", "empty"]  # an empty group is left out of the table
    cases = [
        (y, p, g),
        (rng.integers(0, 3, 600), rng.integers(0, 3, 600), g),  # multiclass
        (np.ones(600, int), p, g),  # single true class
        (y, np.zeros(600, int), g),  # single predicted class
        (np.ones(600, int), np.ones(600, int), g),  # one label overall
        (y.astype(bool), p.astype(bool), g),
        (y, p, np.zeros(600, int)),  # one group
    ]
    for yy, pp, gg in cases:
        _same_outcome(outcome_fairness(yy, pp, gg, names), old_risk.outcome_fairness(yy, pp, gg, names))


def test_outcome_fairness_pooled_ensemble_equals_fairlearn():
    """The experiment layer's case: many models' predictions of one test set, pooled."""
    rng = np.random.default_rng(4)
    n_models, n_test = 20, 300
    y, g = rng.integers(0, 2, n_test), rng.integers(0, 2, n_test)
    pred = np.where(rng.random((n_models, n_test)) < 0.8, y, 1 - y)
    args = (np.tile(y, n_models), pred.reshape(-1), np.tile(g, n_models), ["f", "m"])
    _same_outcome(outcome_fairness(*args), old_risk.outcome_fairness(*args))


def _scores(rng, kind, shape):
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "tied":  # few levels: many equally good cuts, the lowest must win
        return rng.integers(0, 5, size=shape) / 4
    if kind == "lognormal":
        return -np.exp(rng.normal(-1.5, 1.5, size=shape))
    # one far outlier per model: most entries fall into a few buckets of the histogram
    out = -np.exp(rng.normal(0, 1, shape))
    k = min(3, shape[1])
    out[:, :k] = np.array([-1e-30, -0.0, 0.0])[:k]
    return out


@pytest.mark.parametrize("kind", ["normal", "tied", "lognormal", "outlier"])
@pytest.mark.parametrize("cells", ["one", "groups", "halves"])
@pytest.mark.parametrize("balanced", [False, True])
def test_global_histogram_kernel_equals_sort(kind, cells, balanced):
    """PA-GA/GBA's counting kernel picks exactly the sorting kernel's cuts, thresholds and counts."""
    rng = np.random.default_rng([["normal", "tied", "lognormal", "outlier"].index(kind),
                                 ["one", "groups", "halves"].index(cells), balanced])
    for _ in range(12):
        nm, m = int(rng.integers(1, 5)), int(rng.integers(1, 2500))
        labels = rng.random((nm, m)) < rng.random()
        s = (_scores(rng, kind, (nm, m)) + 0.3 * labels * rng.random()).astype(np.float32)
        floor_labels = rng.random((nm, m)) < 0.5
        grp = rng.integers(0, 3, m) if cells != "one" else np.zeros(m, np.int64)
        cell, partner = grp, grp
        if cells == "halves":
            cell = 2 * grp + (rng.random(m) < 0.5)
            partner = cell ^ 1
        want = _global_chunk(s, labels, floor_labels, np.ones((nm, m), bool), cell, partner, balanced)
        got = _global_chunk_hist(s, labels, floor_labels, cell, partner, balanced)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("equal_count", [False, True])
def test_histogram_buckets_are_monotone_and_crowded_scores_spread(equal_count):
    """Buckets keep the key order (equal keys share one); with equal-count buckets scores crowded
    into a small part of their range (a trained model's losses) spread over many buckets, and
    the kernel stays exactly the sorting kernel's."""
    from fairpriv_lab.audit.kernels import _hist_buckets, _keys

    rng = np.random.default_rng(8)
    nm, m = 3, 3000
    s = rng.normal(0.0, 1e-3, (nm, m)).astype(np.float32)  # crowded ...
    s[:, :5] = rng.normal(0.0, 100.0, (nm, 5))  # ... but for a few far outliers
    s[:, 5:40] = s[:, 40:75]  # ties
    u = _keys(s)
    b, B = _hist_buckets(u, equal_count)
    assert b.shape == u.shape and b.max() < B
    for r in range(nm):
        order = np.argsort(u[r], kind="stable")
        assert np.all(np.diff(b[r][order].astype(np.int64)) >= 0)  # monotone in the key
        _, inv = np.unique(u[r], return_inverse=True)
        assert all(np.unique(b[r][inv == k]).size == 1 for k in np.unique(inv)[:50])  # ties share
    largest = max(np.bincount(b[r]).max() for r in range(nm))
    spans, _ = _hist_buckets(u, False)
    if equal_count:  # far fewer entries in the fullest bucket than with equal spans
        assert largest * 4 < max(np.bincount(spans[r]).max() for r in range(nm))
    else:
        assert largest > m // 4  # equal spans: the crowd falls into a few buckets
    labels = rng.random((nm, m)) < 0.5
    floor_labels = rng.random((nm, m)) < 0.5
    cell = rng.integers(0, 2, m)
    for balanced in (False, True):
        want = _global_chunk(s, labels, floor_labels, np.ones((nm, m), bool), cell, cell, balanced)
        got = _global_chunk_hist(s, labels, floor_labels, cell, cell, balanced, buckets=(b, B))
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("estimator", ["in_sample", "cross_fit"])
@pytest.mark.parametrize("by_group", [False, True])
def test_global_risk_histogram_path_matches_brute_force(estimator, by_group):
    """global_risk at m >= 256 (the histogram path) against test_audit.py's brute force."""
    from fairpriv_lab.audit.kernels import _HIST_MIN_RECORDS
    from tests.unit.audit.test_audit import ref_global_public

    rng = np.random.default_rng(3 + by_group)
    n = 400
    groups = rng.integers(0, 2, n)
    game = half_split_game(n, n_models=4, seed=1)
    losses = rng.integers(0, 12, size=(4, n)) / 8.0 - 0.2 * game.membership + 0.5
    rec = game.audit_idx
    assert rec.size >= _HIST_MIN_RECORDS
    got = global_risk(losses, game.membership, records=rec, groups=groups, by_group=by_group,
                      estimator=estimator, seed=5)
    want = ref_global_public(losses, game.membership, rec, groups, by_group, estimator, 5)
    np.testing.assert_allclose(got.accuracy, want)


@pytest.mark.parametrize("tied", [False, True])
def test_in_sample_step_lookup_equals_label_path(tied):
    """The in-sample estimator's lookup of +-1 steps from the key's low byte, for every plane."""
    from fairpriv_lab.audit.kernels import SortedRows, _in_sample_acc, _record_estimates

    rng = np.random.default_rng(8 + tied)
    rows, K = 200, 9
    s_in, s_out = (rng.normal(size=(rows, K)).astype(np.float32) for _ in range(2))
    if tied:
        s_in, s_out = np.round(s_in), np.round(s_out)
    planes = tuple(rng.random((rows, K)) < 0.5 for _ in range(9))
    sr = SortedRows(s_in, s_out, planes)
    assert sr.packed
    for p in range(9):  # planes 0-6 take the lookup, 7 and 8 the label path
        acc, floor = _record_estimates(sr, p)
        ties = sr.ties()
        np.testing.assert_array_equal(acc, _in_sample_acc(sr, sr.lab, ties))
        np.testing.assert_array_equal(floor, _in_sample_acc(sr, sr.lab ^ sr.plane(p), ties))


@pytest.mark.parametrize("scores", ["normal", "crowded", "tied", "signed_zero"])
@pytest.mark.parametrize("n_planes", [0, 1, 2])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("K", [64, 100, 150])
def test_narrow_sort_of_long_rows_equals_the_uint64_sort(scores, n_planes, flip, K):
    """Rows of 128 entries or more are sorted as two uint32 keys (numpy's sorting networks);
    values, payload and both estimators equal the uint64 sort's, also where distinct scores
    share a truncated key (those rows take the uint64 sort) and at ties and signed zeros."""
    from fairpriv_lab.audit.kernels import SortedRows, _keys, _record_estimates

    rng = np.random.default_rng(11 + n_planes + 3 * flip)
    rows = 60  # 2K = 128, 200 (the cross-fit's folds at 400 models), 300 entries per row
    if scores == "crowded":  # scores a few ulps apart: their keys differ in the low bits only
        s_in, s_out = (np.float32(1) + rng.integers(0, 16, (rows, K)).astype(np.float32) * np.float32(2**-23)
                       for _ in range(2))
        s_in[: rows // 2] = rng.normal(size=(rows // 2, K)).astype(np.float32)  # half the rows clash-free
        s_out[: rows // 2] = rng.normal(size=(rows // 2, K)).astype(np.float32)
    else:
        s_in, s_out = (rng.normal(size=(rows, K)).astype(np.float32) for _ in range(2))
    if scores == "tied":
        s_in, s_out = np.round(s_in), np.round(s_out)
    if scores == "signed_zero":
        s_in[:, ::3], s_out[:, 1::3] = np.float32(-0.0), np.float32(0.0)
    planes = tuple(rng.random((rows, K)) < 0.5 for _ in range(n_planes))
    f = rng.random((rows, K)) < 0.5 if flip else None
    narrow = SortedRows(s_in, s_out, planes, flip=f)
    wide = SortedRows(s_in, s_out, planes, flip=f, narrow=False)
    assert narrow.key is None and wide.key is not None  # the two paths were taken
    np.testing.assert_array_equal(narrow.v, wide.v)
    np.testing.assert_array_equal(narrow.low, wide.low)
    np.testing.assert_array_equal(narrow.ties(), wide.ties())
    for p in range(n_planes):
        for got, want in zip(_record_estimates(narrow, p), _record_estimates(wide, p), strict=True):
            np.testing.assert_array_equal(got, want)
    if scores == "crowded":  # the fallback was exercised on every crowded row, not on every row
        k = np.sort(np.concatenate([_keys(s_in), _keys(s_out)], axis=1), axis=1)
        x = k[:, 1:] ^ k[:, :-1]
        clash = ((x != 0) & (x < (1 << (1 + n_planes)))).any(axis=1)
        assert clash[rows // 2:].all() and not clash.all()


@pytest.mark.parametrize("kind", ["normal", "tied", "lognormal", "outlier"])
def test_shared_histogram_of_ga_and_gba_equals_sort(kind):
    """PA-GA and PA-GBA in-sample sharing one bincount (same floor labels) give exactly the
    sorting kernel's counts for each: one cell, and each group's own threshold."""
    from fairpriv_lab.audit.kernels import _global_chunk_hist_shared, _hist_buckets, _keys

    rng = np.random.default_rng(["normal", "tied", "lognormal", "outlier"].index(kind) + 20)
    for _ in range(12):
        nm, m = int(rng.integers(1, 5)), int(rng.integers(2, 2500))
        labels = rng.random((nm, m)) < rng.random()
        s = (_scores(rng, kind, (nm, m)) + 0.3 * labels * rng.random()).astype(np.float32)
        floor_labels = rng.random((nm, m)) < 0.5
        C = int(rng.integers(2, 4))
        grp = rng.integers(0, C, m)
        grp[0] = C - 1
        zero = np.zeros(m, np.int64)
        trial = np.ones((nm, m), bool)
        ga, gba = _global_chunk_hist_shared(s, labels, floor_labels, grp, C, _hist_buckets(_keys(s)))
        np.testing.assert_array_equal(ga, _global_chunk(s, labels, floor_labels, trial, zero, zero))
        np.testing.assert_array_equal(gba, _global_chunk(s, labels, floor_labels, trial, grp, grp))


def test_global_runs_share_counts_only_where_the_floors_agree():
    """global_runs pairs PA-GA with PA-GBA in-sample only when they share the floor's swaps;
    with other swaps each run is counted alone, and both ways equal one run at a time."""
    from fairpriv_lab.audit.kernels import _shared_runs, global_runs

    rng = np.random.default_rng(5)
    n_models, m = 6, 600
    labels = rng.random((n_models, m)) < 0.5
    s = (rng.normal(size=(n_models, m)) + 0.5 * labels).astype(np.float32)
    grp = rng.integers(0, 2, m)
    zero = np.zeros(m, np.int64)
    trial = np.ones((n_models, m), bool)
    swap = rng.random((n_models, m)) < 0.5
    other = rng.random((n_models, m)) < 0.5
    for swaps, shared in (((swap, swap.copy()), {0: 1}), ((swap, other), {})):
        runs = [(swaps[0], zero, zero, False), (swaps[1], grp, grp, False)]
        assert _shared_runs(runs) == shared
        got = global_runs(s, labels, trial, runs)
        for run, (acc, acc_floor) in zip(runs, got, strict=True):
            (want, want_floor), = global_runs(s, labels, trial, [run])
            np.testing.assert_array_equal(acc, want)
            np.testing.assert_array_equal(acc_floor, want_floor)


def test_fold_gain_from_shared_counts_and_batched_thresholds_equal_their_direct_forms():
    """d(k) from the rows' cached in-counts equals its own cumulative sum (ties masked alike),
    and thresholds computed in one batch equal one call per rows."""
    from fairpriv_lab.audit.kernels import SortedRows, _cut_gain, _fold_gain, _thresholds

    rng = np.random.default_rng(9)
    for K in (1, 7, 100):
        s_in = np.round(rng.normal(size=(50, K)), 1).astype(np.float32)  # ties
        s_out = np.round(rng.normal(size=(50, K)), 1).astype(np.float32)
        for packed in (True, False):
            rows = SortedRows(s_in, s_out, packed=packed)
            ties = rows.ties()
            want = _cut_gain(rows.lab.copy(), ties)  # not the rows' own labels: the cumulative sum
            np.testing.assert_array_equal(_fold_gain(rows, rows.lab, ties), want)
            other = SortedRows(s_out, s_in, packed=packed)
            items = [(rows, rng.integers(0, 2 * K + 1, 50)), (other, rng.integers(0, 2 * K + 1, 50)),
                     (rows, np.r_[0, 2 * K, rng.integers(0, 2 * K + 1, 48)])]
            for got, (r, k) in zip(_thresholds(items), items, strict=True):
                np.testing.assert_array_equal(got, r.thresholds(k))
