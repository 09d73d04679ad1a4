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
