import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import beta, norm

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.audit.empirical import (
    _heldout_counts,
    clopper_pearson_upper,
    empirical_epsilon,
    gdp_epsilon,
)
from fairpriv_lab.games import half_split_game, loo_game


def ref_gdp_eps(mu, delta):
    f = lambda e: norm.cdf(-e / mu + mu / 2) - np.exp(e) * norm.cdf(-e / mu - mu / 2) - delta  # noqa: E731
    return 0.0 if mu == 0 or f(0) <= 0 else brentq(f, 0, 500, xtol=1e-12)


@pytest.mark.parametrize("delta", [1e-6, 1e-3, 0.2])
def test_gdp_epsilon_matches_brentq(delta):
    mus = np.array([0.0, 0.05, 0.3, 1.0, 2.5, 6.0, 12.0])
    got = gdp_epsilon(mus, delta)
    want = [ref_gdp_eps(m, delta) for m in mus]
    np.testing.assert_allclose(got, want, atol=1e-8, rtol=1e-9)


def test_gdp_epsilon_bad_input():
    with pytest.raises(ConfigError, match=r"Expected delta=0 in \(0, 1\)"):
        gdp_epsilon(1.0, 0)
    with pytest.raises(ConfigError, match="mu"):
        gdp_epsilon(-1.0, 1e-5)


def test_clopper_pearson_is_scipy_stats_beta_ppf_bit_for_bit():
    # clopper_pearson_upper calls scipy.special (scipy.stats costs a classroom run 0.7 s to
    # import); scipy.stats' beta quantile is the reference: the same bits on a grid of counts
    # and levels, and a normal quantile the same as norm.ppf
    from scipy.stats import norm

    from fairpriv_lab.experiment.precision import _z

    kk, nn = np.meshgrid(np.arange(0, 301), np.arange(1, 302))
    rng = np.random.default_rng(0)
    big_n = rng.integers(1, 50_000, 20_000)
    big_k = np.minimum(np.floor(rng.random(20_000) * (big_n + 1)), big_n)
    for k, n in ((kk.ravel(), nn.ravel()), (big_k, big_n)):
        real = k < n
        for level in (0.001, 0.025, 0.05, 0.5):
            want = beta.ppf(1 - level, k[real] + 1, n[real] - k[real])
            np.testing.assert_array_equal(clopper_pearson_upper(k, n, level)[real], want)
            assert (clopper_pearson_upper(k, n, level)[~real] == 1.0).all()
    for p in (0.5, 0.8, 0.975, 0.995, 1e-9):
        assert _z(p) == float(norm.ppf(p))


def test_clopper_pearson():
    n = np.array([10, 200, 200, 5])
    k = np.array([0, 0, 17, 5])
    got = clopper_pearson_upper(k, n, 0.025)
    assert got[0] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert got[1] == pytest.approx(1 - 0.025 ** (1 / 200))
    assert got[2] == pytest.approx(beta.ppf(0.975, 18, 183))
    assert got[3] == 1.0


def ref_select(x_in, x_out, level):
    """Slow loop over thresholds: maximise the fold's own mu lower bound."""
    k = x_in.size
    s = np.r_[x_in, x_out].astype(np.float64)
    u = np.unique(s)
    cands = [-np.inf] + [u[i] / 2 + u[i + 1] / 2 for i in range(len(u) - 1)] + [np.inf]
    best, tau = -np.inf, None
    for t in cands:
        fp, fn = np.sum(x_out >= t), np.sum(x_in < t)
        fpr = 1.0 if fp == k else beta.ppf(1 - level, fp + 1, k - fp)
        fnr = 1.0 if fn == k else beta.ppf(1 - level, fn + 1, k - fn)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = norm.ppf(1 - fpr) - norm.ppf(fnr)
        mu = -np.inf if np.isnan(mu) else mu
        if mu > best:
            best, tau = mu, t
    return tau


@pytest.mark.parametrize("tied", [False, True])
def test_heldout_counts_match_slow_reference(tied):
    rng = np.random.default_rng(7)
    mb, K = 25, 8
    draw = (lambda s: rng.integers(0, 3, s).astype(float)) if tied else (lambda s: rng.normal(size=s))
    s_in, s_out = draw((mb, K)) + 0.7, draw((mb, K))
    fold = rng.permuted(np.broadcast_to(np.arange(K) < K // 2, (mb, K)), axis=1)
    fp, fn = _heldout_counts(s_in, s_out, fold, 0.025)
    for r in range(mb):
        a, b = fold[r], ~fold[r]
        want_fp = want_fn = 0
        for fit, test in ((a, b), (b, a)):
            t = ref_select(s_in[r, fit], s_out[r, fit], 0.025)
            want_fp += np.sum(s_out[r, test] >= t)
            want_fn += np.sum(s_in[r, test] < t)
        assert (fp[r], fn[r]) == (want_fp, want_fn)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tied", [False, True])
def test_heldout_on_a_shared_split_matches_slow_reference(dtype, tied):
    """What EmpiricalTask computes: one split of the pair positions for all rows, each fold sorted
    apart, pairs given as (first, second) model with a label flip; counts from cumulative counts."""
    from fairpriv_lab.audit.empirical import _heldout
    from fairpriv_lab.audit.kernels import SharedSorts, pair_split

    rng = np.random.default_rng(17 + tied)
    mb, K = 30, 9
    draw = (lambda s: rng.integers(0, 3, s).astype(dtype)) if tied else (lambda s: rng.normal(size=s).astype(dtype))
    first, second = draw((mb, K)) + dtype(0.7), draw((mb, K))
    second_in = rng.random((mb, K)) < 0.3
    s_in, s_out = np.where(second_in, second, first), np.where(second_in, first, second)
    fold = pair_split(rng, K)
    assert fold.sum() == K // 2
    fp, fn = _heldout(*SharedSorts(first, second, [], second_in).folds(fold), 0.025)
    for r in range(mb):
        want_fp = want_fn = 0
        for fit, test in ((fold, ~fold), (~fold, fold)):
            t = ref_select(s_in[r, fit], s_out[r, fit], 0.025)
            want_fp += np.sum(s_out[r, test] >= t)
            want_fn += np.sum(s_in[r, test] < t)
        assert (fp[r], fn[r]) == (want_fp, want_fn)


def test_empirical_shares_the_cross_fit_split_and_its_fold_sorts(monkeypatch):
    """With one seed, empirical epsilon and the cross-fitted estimator draw the same split of the
    pair positions, and whole_audit sorts each fold once for both."""
    from fairpriv_lab.audit import kernels
    from fairpriv_lab.audit.whole import whole_audit

    game = half_split_game(120, n_models=20, seed=0)
    L = np.random.default_rng(1).exponential(size=game.membership.shape).astype(np.float32)
    calls = []
    real = kernels.fold_rows
    monkeypatch.setattr(kernels, "fold_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    whole_audit(L, game.membership, auditors=[("PA-ALOOA", "cross_fit")], delta=1e-5, seed=3)
    assert len(calls) == 1  # one block of records: one sort of each fold for both analyses
    calls.clear()
    whole_audit(L, game.membership, auditors=[("PA-ALOOA", "in_sample")], delta=1e-5, seed=3)
    assert len(calls) == 1


def _gaussian_game(d, m, R, seed):
    rng = np.random.default_rng(seed)
    game = half_split_game(m, n_models=2 * R, seed=seed)
    scores = rng.normal(size=(2 * R, m)) + d * game.membership  # exactly d-GDP scores
    return -scores, game


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_soundness_and_known_answer_gaussian(d):
    losses, game = _gaussian_game(d, 300, 200, seed=int(10 * d))
    delta, alpha = 1e-5, 0.05
    ee = empirical_epsilon(losses, game.membership, groups=np.arange(300) % 2, delta=delta, alpha=alpha, seed=0)
    true = ref_gdp_eps(d, delta)
    # per record: a valid 1 - alpha lower bound exceeds the truth for at most ~alpha of records
    assert np.mean(ee.per_record > true) <= alpha
    # per group (150 records pooled): below the truth, and not far below it
    g = ee.per_group
    assert np.all(g["epsilon"] <= true)
    assert np.all(g["epsilon"] >= 0.6 * true)
    assert np.all(g["mu"] <= d) and np.all(g["mu"] >= 0.6 * d)
    assert np.all(ee.per_record <= ee.max_certifiable + 1e-9)


def test_no_leakage_gives_small_bounds():
    rng = np.random.default_rng(0)
    game = half_split_game(200, n_models=100, seed=0)
    losses = rng.exponential(size=(100, 200))
    ee = empirical_epsilon(losses, game.membership, delta=1e-5, seed=1)
    assert np.mean(ee.per_record > 0) <= 0.05
    assert ee.per_group["epsilon"].iloc[0] == 0.0


def test_perfect_attack_hits_the_cap_and_cap_formula():
    game = half_split_game(3, n_models=40, seed=0)
    losses = np.where(game.membership, 0.0, 1.0)
    ee = empirical_epsilon(losses, game.membership, groups=np.array([0, 0, 1]),
                           group_names=["a", "b"], delta=1e-5, alpha=0.05, seed=0)
    K = 20
    mu_cap = 2 * norm.ppf(0.025 ** (1 / K))
    assert ee.max_certifiable == pytest.approx(ref_gdp_eps(mu_cap, 1e-5))
    np.testing.assert_allclose(ee.per_record, ee.max_certifiable)
    assert ee.at_cap.all()
    g = ee.per_group.set_index("group")
    assert g.loc["a", "n_trials"] == 40 and g.loc["b", "n_trials"] == 20
    assert g.loc["a", "max_certifiable"] > g.loc["b", "max_certifiable"] == pytest.approx(ee.max_certifiable)
    assert g["at_cap"].all()


def test_loo_game_and_errors():
    game = loo_game(5, [1, 3], n_pairs=4, seed=0)
    losses = np.where(game.membership, 0.2, 1.0)
    ee = empirical_epsilon(losses, game.membership, records=game.audit_idx, delta=1e-5, seed=0)
    assert ee.n_pairs.tolist() == [4, 4]
    one = half_split_game(3, n_models=2, seed=0)
    with pytest.raises(ConfigError, match=">= 2 model pairs"):
        empirical_epsilon(np.ones((2, 3)), one.membership, delta=1e-5)
    with pytest.raises(ConfigError, match=r"Expected alpha=1.0 in \(0, 1\)"):
        empirical_epsilon(losses, game.membership, records=game.audit_idx, delta=1e-5, alpha=1.0)
    with pytest.raises(ConfigError, match="group_names"):
        empirical_epsilon(losses, game.membership, records=game.audit_idx, groups=np.arange(5) % 3,
                          group_names=["a"], delta=1e-5)


def test_seeded():
    losses, game = _gaussian_game(1.0, 20, 10, seed=0)
    a = empirical_epsilon(losses, game.membership, delta=1e-5, seed=3)
    b = empirical_epsilon(losses, game.membership, delta=1e-5, seed=3)
    np.testing.assert_array_equal(a.per_record, b.per_record)


def test_gdp_conversion_is_heuristic_below_q_one_and_dp_bound_is_rigorous():
    # Exact error rates of threshold tests on ONE step of a Poisson-subsampled Gaussian
    # (q = 0.1, sigma = 0.5): the mu-GDP conversion of some of them exceeds the mechanism's
    # true epsilon (so it is not a valid lower bound below q = 1), while the (eps, delta)
    # bound from the definition never does, and is nearly tight at the best threshold.
    from scipy import optimize
    from scipy import stats as st

    from fairpriv_lab.audit.empirical import dp_epsilon

    q, mu, delta = 0.1, 2.0, 1e-5
    x = np.linspace(-14, 16, 300001)
    dx = x[1] - x[0]
    P = (1 - q) * st.norm.pdf(x) + q * st.norm.pdf(x - mu)
    Q = st.norm.pdf(x)

    def excess(e):
        return max(np.maximum(P - np.exp(e) * Q, 0).sum(), np.maximum(Q - np.exp(e) * P, 0).sum()) * dx - delta

    true = optimize.brentq(excess, 0, 50)
    t = np.linspace(-2, 8, 300)
    fpr = st.norm.sf(t)
    fnr = (1 - q) * st.norm.cdf(t) + q * st.norm.cdf(t - mu)
    heuristic = gdp_epsilon(np.maximum(st.norm.isf(fpr) - st.norm.ppf(fnr), 0), delta)
    rigorous = dp_epsilon(fpr, fnr, delta)
    assert heuristic.max() > 1.1 * true
    assert rigorous.max() <= true * (1 + 1e-3) and rigorous.max() > 0.95 * true


def test_both_empirical_bounds_are_reported():
    game = half_split_game(40, n_models=64, seed=0)
    rng = np.random.default_rng(0)
    losses = rng.exponential(size=(64, 40)) + 0.8 * ~game.membership
    ee = empirical_epsilon(losses, game.membership, delta=1e-5, seed=0)
    assert ee.per_record_dp.shape == ee.per_record.shape and np.all(ee.per_record_dp >= 0)
    assert {"epsilon", "epsilon_dp"} <= set(ee.per_group.columns)
    assert (ee.per_group["epsilon_dp"] > 0).all()


# ---------------------------------------------------------------- the DP bound on advantage
def _advantage_by_search(eps: float, delta: float) -> float:
    """Slow reference: max TPR - FPR over a fine FPR grid inside the (eps, delta)-DP region."""
    fpr = np.linspace(0.0, 1.0, 200_001)
    tpr = np.minimum.reduce([np.ones_like(fpr), np.exp(eps) * fpr + delta,
                             1.0 - (1.0 - fpr - delta) / np.exp(eps)])
    return float(np.max(tpr - fpr))


@pytest.mark.parametrize("eps,delta", [(0.1, 0.0), (0.5, 1e-5), (1.0, 0.0), (2.0, 1e-3), (8.0, 1e-5)])
def test_advantage_bound_matches_a_search_over_the_privacy_region(eps, delta):
    from fairpriv_lab.audit import advantage_bound

    assert advantage_bound(eps, delta) == pytest.approx(_advantage_by_search(eps, delta), abs=2e-5)


def test_advantage_bound_substitution_is_group_privacy_of_two():
    from fairpriv_lab.audit import advantage_bound

    eps, delta = 0.7, 1e-4
    expected = _advantage_by_search(2 * eps, (1 + np.exp(eps)) * delta)
    assert advantage_bound(eps, delta, neighbours="substitute") == pytest.approx(expected, abs=2e-5)
    assert advantage_bound(eps, delta, neighbours="substitute") > advantage_bound(eps, delta)


def test_advantage_bound_edges_and_messages():
    from fairpriv_lab import ConfigError
    from fairpriv_lab.audit import advantage_bound

    assert advantage_bound(float("inf")) == 1.0
    assert advantage_bound(1e-9) == pytest.approx(0.0, abs=1e-9)
    assert advantage_bound(50.0, 0.5) == 1.0          # capped
    with pytest.raises(ConfigError, match=r"Expected epsilon=0"):
        advantage_bound(0.0)
    with pytest.raises(ConfigError, match=r"Expected neighbours='swap' to be one of 'add_remove', 'substitute'"):
        advantage_bound(1.0, neighbours="swap")


@pytest.mark.parametrize("k", [1, 3, 100, 180])
def test_rank_table_selects_the_float_tables_cut(k):
    """The integer rank table picks exactly the cut the float mu table picks (ties, -inf plateaus)."""
    from fairpriv_lab.audit.empirical import _mu_table, _select_threshold
    from fairpriv_lab.audit.kernels import SortedRows

    rng = np.random.default_rng(k)
    rows = 300
    s_in = rng.integers(0, 6, (rows, k)).astype(np.float32) + rng.integers(0, 2, (rows, 1)) * 3
    s_out = rng.integers(0, 6, (rows, k)).astype(np.float32)
    s_in[:20] = 10.0  # perfect separation
    s_in[20:40], s_out[20:40] = 1.0, 1.0  # one tie run: only the end cuts are valid
    s_in[40:60], s_out[40:60] = 0.0, 5.0  # inverted: everything -inf but the ends
    sr = SortedRows(s_in, s_out)
    lab, ties = sr.lab, sr.ties()
    got = _select_threshold(sr, lab, ties, 0.025)
    # the float version, spelled out
    n = 2 * k
    cum_in = np.zeros((rows, n + 1), np.int64)
    np.cumsum(lab, axis=1, out=cum_in[:, 1:])
    mu = _mu_table(k, 0.025)[cum_in * (k + 2) + (k - np.arange(n + 1)) * (k + 1)]
    np.putmask(mu, ties, -np.inf)
    np.testing.assert_array_equal(got, sr.thresholds(np.argmax(mu, axis=1)))


def test_bounds_computed_once_per_distinct_value_are_the_same_numbers():
    """gdp_epsilon runs its bisection once per distinct mu and the Clopper-Pearson bounds once
    per distinct (k, n): exactly the numbers of computing every entry (bisection over the full
    array, CP bound entry by entry)."""
    from fairpriv_lab.audit.empirical import _cp_upper, _gdp_epsilon

    rng = np.random.default_rng(0)
    mu = np.concatenate([np.zeros(300), rng.choice(rng.gamma(2.0, 0.5, 40), 500), [0.0, 7.5]])
    got = gdp_epsilon(mu, 1e-5)
    np.testing.assert_array_equal(got, _gdp_epsilon(mu, 1e-5))  # the undeduplicated bisection
    assert got[0] == 0.0 and np.all(got[300:802][mu[300:802] > 0] > 0)
    k = rng.integers(0, 50, 2000)
    n = np.where(rng.random(2000) < 0.5, 50, 100)
    want = np.array([clopper_pearson_upper(int(a), int(b), 0.025) for a, b in zip(k[:200], n[:200], strict=True)])
    got_cp = _cp_upper(k, n, 0.025)
    np.testing.assert_array_equal(got_cp, clopper_pearson_upper(k, n, 0.025))
    np.testing.assert_array_equal(got_cp[:200], want)
