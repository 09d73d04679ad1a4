"""The compiled audit kernels (``fairpriv_lab.audit._compiled``) give the numpy kernels' numbers, exactly.

``record_pass`` and PA-GA/GBA's histogram kernel switch to the compiled loops above
``kernels._COMPILED_MIN_ENTRIES`` (model, record) entries; here the threshold is lowered to 0
so that small games take the compiled path, and every RecordRisk, empirical epsilon count and
bound is compared with the numpy path's and with the slow references of ``tests/reference``.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairpriv_lab.audit import kernels
from fairpriv_lab.audit.attacks import global_risk, record_risk
from fairpriv_lab.audit.empirical import empirical_epsilon
from fairpriv_lab.audit.whole import whole_audit
from fairpriv_lab.games import aloo_game, half_split_game, loo_game
from tests.reference import old_audit, old_empirical
from tests.reference.slow_audit import ref_global, ref_record_in_sample

ROOT = Path(__file__).resolve().parents[3]
ALL = [("PA-ALOOA", "cross_fit"), ("PA-ALOOA", "in_sample"), ("PA-GA", "in_sample"),
       ("PA-GBA", "in_sample"), ("PA-GA", "cross_fit"), ("PA-GBA", "cross_fit")]


@pytest.fixture
def threshold(monkeypatch):
    """Set ``kernels._COMPILED_MIN_ENTRIES`` (0: every audit compiled; huge: numpy only)."""
    def set_to(value):
        monkeypatch.setattr(kernels, "_COMPILED_MIN_ENTRIES", value)
    return set_to


def _both(threshold, fn):
    threshold(1 << 62)
    want = fn()
    threshold(0)
    return fn(), want


def _same_rr(a, b):
    for f in ("records", "groups", "accuracy", "ipr", "floor", "n_pairs"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def _same_emp(a, b):
    for f in ("fp", "fn", "per_record", "per_record_dp", "mu", "fpr_upper", "fnr_upper"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    pd.testing.assert_frame_equal(a.per_group, b.per_group)


def _losses(kind, rng, mem):
    L = rng.exponential(size=mem.shape) - 0.4 * mem
    if kind == "ties":  # many equal scores within a record and across records
        return np.abs(np.round(L, 1)).astype(np.float32)
    if kind == "equal":  # every score equal: no cut but the ends
        return np.full(mem.shape, 0.25, np.float32)
    if kind == "extremes":  # zeros, subnormals, the largest float32, neighbours one ulp apart
        pick = np.array([0.0, 1e-45, 3e-45, 1.1754942e-38, 1.0, np.nextafter(np.float32(1), np.float32(2)),
                         3.4028235e38, np.nextafter(np.float32(3.4028235e38), np.float32(0))], np.float32)
        return pick[rng.integers(0, pick.size, mem.shape)]
    return np.abs(L).astype(np.float32)


GAMES = {
    "half": lambda rng: half_split_game(300, n_models=16, seed=1),  # histogram kernel (m >= 256)
    "half_wide": lambda rng: half_split_game(260, n_models=256, seed=2),  # 2K = 256: the narrow sorts
    "half_odd": lambda rng: half_split_game(270, n_models=146, seed=6),  # folds of 36 and 37 pairs
    "aloo": lambda rng: aloo_game(rng.integers(0, 3, 150), n_models=12, m=40, seed=2),
    "one_pair": lambda rng: half_split_game(50, n_models=2, seed=3),  # one model in, one out
}


@pytest.mark.parametrize("game_name", list(GAMES))
@pytest.mark.parametrize("kind", ["plain", "ties", "equal", "extremes"])
def test_compiled_whole_audit_equals_numpy(threshold, game_name, kind):
    rng = np.random.default_rng(3)
    game = GAMES[game_name](rng)
    L = _losses(kind, rng, game.membership)
    groups = rng.integers(0, 2, game.n_samples)
    groups[rng.integers(0, game.n_samples)] = 2  # a group of one record
    names = ["a", "b", "c"]
    auditors = ALL if game.n_pairs >= 2 else [a for a in ALL if a[1] == "in_sample"]
    delta = 1e-5 if game.n_pairs >= 2 else None
    got, want = _both(threshold, lambda: whole_audit(L, game.membership, records=game.audit_idx, groups=groups,
                                                     auditors=auditors, delta=delta, group_names=names, seed=5))
    for key in auditors:
        _same_rr(got.risk[key], want.risk[key])
    if delta is not None:
        _same_emp(got.empirical, want.empirical)


@pytest.mark.parametrize("n_groups", [1, 5, 300])
def test_compiled_global_kernels_with_many_cells(threshold, n_groups):
    """PA-GA/GBA with one, a few and more than 255 cells (the wide cell index) and cross-fit halves."""
    rng = np.random.default_rng(n_groups)
    game = half_split_game(900, n_models=12, seed=4)
    L = _losses("ties", rng, game.membership)
    groups = rng.integers(0, n_groups, 900)
    for by_group in (False, True):
        for est in ("in_sample", "cross_fit"):
            got, want = _both(threshold, lambda b=by_group, e=est: global_risk(
                L, game.membership, records=game.audit_idx, groups=groups, by_group=b, estimator=e, seed=2))
            _same_rr(got, want)


def test_compiled_loo_game_records_not_in_every_pair(threshold):
    """PA-LOOA: each target is audited by its own pairs only (blocks of fewer pairs, gathered)."""
    rng = np.random.default_rng(4)
    game = loo_game(400, targets=np.arange(0, 400, 3), n_pairs=70, seed=1)
    L = rng.exponential(size=game.membership.shape).astype(np.float32) + 0.01
    kw = dict(records=game.audit_idx, groups=rng.integers(0, 2, 400), seed=3)
    for est in ("in_sample", "cross_fit"):
        got, want = _both(threshold, lambda e=est: record_risk(L, game.membership, estimator=e, **kw))
        _same_rr(got, want)
    got, want = _both(threshold, lambda: empirical_epsilon(L, game.membership, delta=1e-5, **kw))
    _same_emp(got, want)
    got, want = _both(threshold, lambda: whole_audit(L, game.membership, auditors=[("PA-LOOA", "cross_fit")],
                                                     signal="confidence", **kw))
    _same_rr(got.risk["PA-LOOA", "cross_fit"], want.risk["PA-LOOA", "cross_fit"])


@pytest.mark.parametrize("tied", [False, True])
def test_compiled_path_equals_slow_references(threshold, tied):
    rng = np.random.default_rng(9)
    game = half_split_game(300, n_models=20, seed=7)
    L = _losses("ties" if tied else "plain", rng, game.membership)
    groups = rng.integers(0, 2, 300)
    kw = dict(records=game.audit_idx, groups=groups, seed=7)
    threshold(0)
    ins = record_risk(L, game.membership, estimator="in_sample", **kw)
    np.testing.assert_allclose(ins.accuracy, ref_record_in_sample(L, game.membership, game.audit_idx), rtol=0, atol=1e-12)
    for est in ("in_sample", "cross_fit"):
        _same_rr(record_risk(L, game.membership, estimator=est, **kw),
                 old_audit.record_risk(L, game.membership, estimator=est, **kw))
    new = empirical_epsilon(L, game.membership, delta=1e-5, **kw)
    old = old_empirical.empirical_epsilon(L, game.membership, delta=1e-5, **kw)
    for f in ("fp", "fn", "per_record", "mu"):
        np.testing.assert_array_equal(getattr(new, f), getattr(old, f), err_msg=f)
    trial = np.ones(game.membership.shape, bool)
    for by_group in (False, True):
        cell = groups if by_group else np.zeros(300, np.int64)
        got = global_risk(L, game.membership, by_group=by_group, **kw)
        np.testing.assert_allclose(got.accuracy, ref_global(-L.astype(np.float64), game.membership, trial, cell, cell),
                                   rtol=0, atol=1e-12)


def test_compiled_midpoints_equal_numpy():
    """The threshold between two sorted keys, bit for bit (signed zeros, subnormals, extremes, neighbours)."""
    from fairpriv_lab.audit import _compiled

    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38, 3.4028235e38, -3.4028235e38,
                        np.inf, -np.inf, 1.0, -1.0, 0.5, 3.0], np.float32)
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32),
                        (rng.standard_normal(5000) * 1e-40).astype(np.float32),
                        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32), special])
    keys = np.unique(kernels._u32(x[~np.isnan(x)]))
    lo, hi = keys[rng.integers(0, keys.size, 50000)], keys[rng.integers(0, keys.size, 50000)]
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    lo, hi = np.r_[lo, keys[:-1], np.repeat(keys[:50], 50)], np.r_[hi, keys[1:], np.tile(keys[:50], 50)]
    keep = lo < hi
    lo, hi = lo[keep], hi[keep]
    no = np.zeros(lo.size, bool)
    with np.errstate(all="ignore"):
        want = kernels._midpoint(lo, hi, no, no, packed=True)
    np.testing.assert_array_equal(_compiled.midpoints(lo, hi), want)


def test_compiled_kernels_only_above_the_threshold():
    assert kernels._compiled_kernels(kernels._COMPILED_MIN_ENTRIES - 1) is None
    assert kernels._compiled_kernels(kernels._COMPILED_MIN_ENTRIES).__name__ == "fairpriv_lab.audit._compiled"
    # a classroom-sized audit in a fresh interpreter never imports numba
    code = ("import sys, numpy as np, fairpriv_lab as fl\n"
            "from fairpriv_lab.audit.whole import whole_audit\n"
            "from fairpriv_lab.games import half_split_game\n"
            "g = half_split_game(500, n_models=64, seed=0)\n"
            "L = np.random.default_rng(0).exponential(size=g.membership.shape)\n"
            "whole_audit(L, g.membership, auditors=[('PA-ALOOA', 'cross_fit'), ('PA-GA', 'in_sample')], delta=1e-5, seed=0)\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n")
    subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, check=True, timeout=300)


@pytest.mark.slow
def test_compiled_kernels_run_from_a_read_only_install(read_only_install):
    """With the package directory read-only numba caches in the user's cache, without a warning."""
    code = ("import numpy as np\n"
            "from fairpriv_lab.audit import _compiled\n"
            f"assert _compiled.__file__.startswith({str(read_only_install.pkg)!r})\n"
            "from fairpriv_lab.audit.kernels import _f32, _u32\n"
            "k = _u32(np.array([1.0, 2.0], np.float32))\n"
            "print(_f32(_compiled.midpoints(k[:1], k[1:]))[0])\n")
    assert read_only_install.run_twice(code, "audit", cached="_compiled.midpoints") == [["1.5"], ["1.5"]]


def test_audit_goes_on_with_numpy_kernels_when_numba_is_missing(threshold, monkeypatch):
    # a broken installation: the compiled module cannot be imported; the audit warns once and
    # gives the numpy path's numbers
    g = half_split_game(40, n_models=8, seed=0)
    L = np.random.default_rng(0).exponential(size=g.membership.shape).astype(np.float32)
    threshold(1 << 62)
    want = whole_audit(L, g.membership, auditors=ALL, groups=np.arange(40) % 2, delta=1e-3, seed=0)
    threshold(0)
    import fairpriv_lab.audit

    monkeypatch.setitem(sys.modules, "fairpriv_lab.audit._compiled", None)  # import -> ImportError
    monkeypatch.delattr(fairpriv_lab.audit, "_compiled", raising=False)
    with pytest.warns(RuntimeWarning, match="numpy kernels"):
        got = whole_audit(L, g.membership, auditors=ALL, groups=np.arange(40) % 2, delta=1e-3, seed=0)
    for key in ALL:
        _same_rr(got.risk[key], want.risk[key])
    _same_emp(got.empirical, want.empirical)
