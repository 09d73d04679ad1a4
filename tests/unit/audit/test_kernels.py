"""The audit kernels (``fairpriv_lab.audit.kernels``) against slow, obvious loops.

The public attacks built on them (``record_risk``, ``global_risk``) are tested in
``test_audit.py``; the one-sort kernels against the implementation they replaced in
``test_audit_kernels.py``.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairpriv_lab.audit.kernels import (
    _global_acc,
    _record_block_packed,
    _record_block_sorted,
    global_block,
    record_block,
)
from fairpriv_lab.games import aloo_game
from tests.reference.slow_audit import ref_best_acc, ref_cross_fit, ref_global


def _random_scores(rng, shape, tied, dtype=np.float64):
    if tied:
        return rng.integers(-2, 2, size=shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


# ----------------------------------------------------------------- kernels vs references
@pytest.mark.parametrize("kernel", [_record_block_sorted, _record_block_packed])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("K", [2, 3, 8])
def test_record_kernel_matches_reference(kernel, tied, K):
    rng = np.random.default_rng(K + 10 * tied)
    mb = 40
    dtype = np.float32 if kernel is _record_block_packed else np.float64
    s_in, s_out = _random_scores(rng, (mb, K), tied, dtype), _random_scores(rng, (mb, K), tied, dtype)
    if tied:
        s_in[0, 0], s_out[0, 0] = -0.0, 0.0  # signed zeros are one tie
    swap = rng.random((mb, K)) < 0.5
    fold = rng.permutation(K) < K // 2
    acc, floor = kernel(s_in, s_out, None, swap)
    acc_cf, floor_cf = kernel(s_in, s_out, fold, swap)
    f_in, f_out = np.where(swap, s_out, s_in), np.where(swap, s_in, s_out)
    for r in range(mb):
        lab = np.r_[np.ones(K, bool), np.zeros(K, bool)]
        assert acc[r] == pytest.approx(ref_best_acc(np.r_[s_in[r], s_out[r]], lab))
        assert floor[r] == pytest.approx(ref_best_acc(np.r_[f_in[r], f_out[r]], lab))
        assert acc_cf[r] == pytest.approx(ref_cross_fit(s_in[r], s_out[r], fold))
        assert floor_cf[r] == pytest.approx(ref_cross_fit(f_in[r], f_out[r], fold))


@settings(max_examples=40, deadline=None)
@given(
    K=st.integers(2, 6),
    mb=st.integers(1, 4),
    levels=st.integers(1, 5),
    seed=st.integers(0, 2**31),
)
def test_record_kernel_hypothesis(K, mb, levels, seed):
    rng = np.random.default_rng(seed)
    s_in = (rng.integers(0, levels, size=(mb, K)) * 0.37 - 0.5).astype(np.float32)
    s_out = (rng.integers(0, levels, size=(mb, K)) * 0.37 - 0.5).astype(np.float32)
    swap = rng.random((mb, K)) < 0.5
    fold = rng.permutation(K) < K // 2
    lab = np.r_[np.ones(K, bool), np.zeros(K, bool)]
    for x_in, x_out in ((s_in, s_out), (s_in.astype(np.float64), s_out.astype(np.float64))):
        acc, _ = record_block(x_in, x_out, None, swap)
        acc_cf, _ = record_block(x_in, x_out, fold, swap)
        for r in range(mb):
            assert acc[r] == pytest.approx(ref_best_acc(np.r_[s_in[r], s_out[r]], lab))
            assert acc_cf[r] == pytest.approx(ref_cross_fit(s_in[r], s_out[r], fold))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("by_group", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_global_kernel_matches_reference(dtype, tied, by_group, cross):
    rng = np.random.default_rng(1 + tied + 2 * by_group + 4 * cross)
    game = aloo_game(rng.integers(0, 3, 30), n_models=6, m=24, seed=2)
    m = game.m
    scores = _random_scores(rng, (6, m), tied, dtype)
    labels = game.membership[:, game.audit_idx]
    trial = np.ones((6, m), bool)
    if tied:
        trial[:, :3] = rng.random((6, 3)) < 0.5  # some (model, record) pairs are no trial
        trial[0, :3] = True
    swap = rng.random((6, m)) < 0.5
    grp = rng.integers(0, 3, m)
    cell = grp if by_group else np.zeros(m, np.int64)
    if cross:
        half = rng.random(m) < 0.5
        cell, partner = 2 * cell + half, (2 * cell + half) ^ 1
    else:
        partner = cell
    got = _global_acc(scores, labels, trial, cell, partner)
    want = ref_global(scores, labels, trial, cell, partner)
    np.testing.assert_allclose(got, want)
    acc, floor = global_block(scores, labels, swap, trial, cell, partner)
    np.testing.assert_allclose(acc, want)
    np.testing.assert_allclose(floor, ref_global(scores, labels ^ swap, trial, cell, partner))


# ----------------------------------------------------------------- shared sorts (issue 15)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("K", [2, 5, 8])
def test_shared_sorts_of_first_and_second_models_match_reference(dtype, tied, K):
    """Pairs given as (first model, second model, second is in): the label flip rides in the key."""
    from fairpriv_lab.audit.kernels import SharedSorts, _record_estimates, pair_split

    rng = np.random.default_rng(K + 3 * tied)
    mb = 30
    first, second = _random_scores(rng, (mb, K), tied, dtype), _random_scores(rng, (mb, K), tied, dtype)
    second_in = rng.random((mb, K)) < 0.5
    swap = rng.random((mb, K)) < 0.5
    fold = pair_split(rng, K)
    s_in, s_out = np.where(second_in, second, first), np.where(second_in, first, second)
    f_in, f_out = np.where(swap, s_out, s_in), np.where(swap, s_in, s_out)
    shared = SharedSorts(first, second, [swap], second_in)
    acc, floor = _record_estimates(shared.all(), 0)
    a, b = shared.folds(fold, swap)
    acc_cf, floor_cf = _record_estimates(a, 0, b)
    lab = np.r_[np.ones(K, bool), np.zeros(K, bool)]
    for r in range(mb):
        assert acc[r] == pytest.approx(ref_best_acc(np.r_[s_in[r], s_out[r]], lab))
        assert floor[r] == pytest.approx(ref_best_acc(np.r_[f_in[r], f_out[r]], lab))
        assert acc_cf[r] == pytest.approx(ref_cross_fit(s_in[r], s_out[r], fold))
        assert floor_cf[r] == pytest.approx(ref_cross_fit(f_in[r], f_out[r], fold))


def test_shared_sorts_build_each_fold_sort_once():
    """The cross-fit (with its floor's swap) and a task without planes read one sort of each fold."""
    from fairpriv_lab.audit.kernels import SharedSorts

    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
    fold, swap = np.arange(6) < 3, rng.random((4, 6)) < 0.5
    shared = SharedSorts(s_in, s_out, [])
    a, b = shared.folds(fold)  # no planes yet: a caller needing the swap gets a sort with it
    a2, b2 = shared.folds(fold, swap)
    assert a2 is not a and a2.n_planes == 1
    assert shared.folds(fold)[0] is a2 and shared.folds(fold, swap)[0] is a2
    other = ~swap  # another floor's swap: its own sort, the shared one stays
    assert shared.folds(fold, other)[0] is not a2 and shared.folds(fold)[0] is a2
    np.testing.assert_array_equal(a.lab, a2.lab)
    np.testing.assert_array_equal(b.v, b2.v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cut_of_counts_entries_below_the_threshold(dtype):
    from fairpriv_lab.audit.kernels import SortedRows

    s_in = np.array([[0.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [2.0, 3.0, 5.0]], dtype)
    s_out = np.array([[1.0, 2.0, 3.0], [-1.0, -1.0, -1.0], [0.5, 0.5, 4.0]], dtype)
    rows = SortedRows(s_in, s_out)
    n = 6
    for cut in [np.array([0, 0, 0]), np.array([n, n, n]), np.array([1, 0, 2]), np.array([3, 6, 5])]:
        tau = rows.thresholds(cut)
        want = [(np.sort(np.r_[s_in[r], s_out[r]]) < (-np.inf if c == 0 else np.inf if c == n else
                 np.sort(np.r_[s_in[r], s_out[r]]).astype(np.float64)[c - 1:c + 1].mean())).sum()
                for r, c in enumerate(cut)]
        got = rows.cut_of(tau)
        # a threshold at a cut between distinct values reproduces that cut; the all-tied row
        # has only the two end cuts
        np.testing.assert_array_equal(got, want)
    empty = SortedRows(np.zeros((2, 0), dtype), np.zeros((2, 0), dtype))
    np.testing.assert_array_equal(empty.cut_of(np.zeros(2, np.float64 if dtype == np.float64 else np.uint32)), [0, 0])


@pytest.mark.parametrize("n_groups", [1, 3, 7])
@pytest.mark.parametrize("cross", [False, True])
def test_global_histogram_path_with_many_cells_matches_reference(n_groups, cross):
    """The histogram kernel (m >= 256) with 1 to 14 cells: masked per-cell compares and, above 8
    cells, the gathered thresholds; more than 255 models per block count in uint16."""
    from fairpriv_lab.audit import kernels

    rng = np.random.default_rng(n_groups + 10 * cross)
    n_models, m = 4, 300
    scores = rng.normal(size=(n_models, m)).astype(np.float32)
    scores[:, :40] = np.round(scores[:, :40], 1)  # ties
    labels = rng.random((n_models, m)) < 0.5
    trial = np.ones((n_models, m), bool)
    swap = rng.random((n_models, m)) < 0.5
    cell = rng.integers(0, n_groups, m)
    if cross:
        half = rng.random(m) < 0.5
        cell, partner = 2 * cell + half, (2 * cell + half) ^ 1
    else:
        partner = cell
    acc, floor = global_block(scores, labels, swap, trial, cell, partner)
    np.testing.assert_allclose(acc, ref_global(scores, labels, trial, cell, partner))
    np.testing.assert_allclose(floor, ref_global(scores, labels ^ swap, trial, cell, partner))
    flags = rng.random((300, 5)) < 0.5
    np.testing.assert_array_equal(kernels.column_counts(flags), flags.sum(axis=0))
    np.testing.assert_array_equal(kernels.column_counts(np.ones((255, 3), bool)), [255] * 3)


def test_negated_block_keys_order_and_decode_as_the_negated_scores():
    """~key(x) sorts and ties exactly as key(-x) (signed zeros one tie) and decodes to -x."""
    from fairpriv_lab.audit.kernels import _block_keys, _f32, _u32

    x = np.array([3.5, -0.0, 0.0, 1e-30, -1e-30, -2.0, 2.0, 7e37, -7e37, 1.0, 1.0], np.float32)
    neg = _block_keys(x.copy(), True)
    want = _u32(-x)
    np.testing.assert_array_equal(np.argsort(neg, kind="stable"), np.argsort(want, kind="stable"))
    np.testing.assert_array_equal(neg[:, None] == neg[None, :], want[:, None] == want[None, :])
    np.testing.assert_array_equal(_f32(neg), -x)
    np.testing.assert_array_equal(_block_keys(x, False), _u32(x))
    np.testing.assert_array_equal(_block_keys(_u32(x), True), ~_u32(x))
    np.testing.assert_array_equal(neg, ~_u32(x))  # one pass: the complement of the plain key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_audit_of_losses_negated_by_blocks_equals_scores(dtype):
    """whole_audit negates float32 losses a block at a time; the results are those of -losses."""
    from fairpriv_lab.audit import kernels
    from fairpriv_lab.audit.attacks import global_blocks, global_draws, informative_pairs
    from fairpriv_lab.games import half_split_game

    rng = np.random.default_rng(1)
    game = half_split_game(600, n_models=8, seed=2)
    L = np.abs(np.round(rng.exponential(size=game.membership.shape) - 0.2 * game.membership, 2)).astype(dtype)
    L[:, :5] = 0.0  # signed zeros after negation
    mem, rec = game.membership, game.audit_idx
    inf = informative_pairs(mem, rec)
    grp = rng.integers(0, 2, 600)
    runs = [global_draws(np.random.default_rng(3), inf, grp, by, est)
            for by in (False, True) for est in ("in_sample", "cross_fit")]
    got = global_blocks(L, mem, inf, runs, negated=True)
    want = global_blocks(-L, mem, inf, runs)
    for (a, b), (c, d) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for est in ("in_sample", "cross_fit"):
        tasks = [kernels.EstimatorTask(est, np.random.default_rng(4), 600) for _ in range(2)]
        kernels.record_pass(L, mem, inf, [tasks[0]], negated=True)
        kernels.record_pass(-L, mem, inf, [tasks[1]])
        np.testing.assert_array_equal(tasks[0].acc, tasks[1].acc)
        np.testing.assert_array_equal(tasks[0].acc_floor, tasks[1].acc_floor)
