"""The precision planner against the bootstrap, and signed changes between two audits."""

from __future__ import annotations

import numpy as np
import pytest

from fairpriv_lab import ConfigError
from fairpriv_lab.audit.attacks import RecordRisk, record_risk
from fairpriv_lab.audit.kernels import CHUNK_ELEMENTS
from fairpriv_lab.audit.risk import GroupRisk
from fairpriv_lab.experiment import ExperimentConfig, load_experiment_data, run
from fairpriv_lab.experiment.precision import group_change, noise_variance, precision
from fairpriv_lab.games import half_split_game

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _half_widths(risk: GroupRisk) -> np.ndarray:
    bg = risk.by_group
    return ((bg["ci_high"] - bg["ci_low"]) / 2).to_numpy()


def _cfg(n_models: int, **train) -> ExperimentConfig:
    return ExperimentConfig(
        data={"name": "synthetic"},
        train={"model": "lr", "epochs": 4, "lr": 0.3, **train},
        game={"kind": "half", "n_models": n_models, "m": None},
        audit={"auditors": ("PA-ALOOA",), "n_boot": 2000},
        device="cpu", chunk_models=16,
    )


def test_noise_variance_is_the_null_variance_of_the_estimator():
    # slow, obvious reference: many null records through record_risk, a different seed
    k = 16
    game = half_split_game(3000, n_models=2 * k, seed=7)
    losses = np.random.default_rng(8).exponential(size=game.membership.shape)
    rr = record_risk(losses, game.membership, seed=9)
    assert noise_variance(k) == pytest.approx(np.var(rr.ipr, ddof=1), rel=0.1)
    # more pairs, less noise: about 1 / (2K) up to the estimator's constant
    assert noise_variance(64) < noise_variance(16) < noise_variance(4)
    assert 0.5 < noise_variance(64) * 128 < 1.0
    assert noise_variance(16, "in_sample") != noise_variance(16)


def test_planner_matches_the_bootstrap_under_the_null():
    cfg = _cfg(64)
    _, train, _ = load_experiment_data(cfg.data)
    game = half_split_game(train.n_samples, n_models=64, seed=3)
    losses = np.random.default_rng(4).standard_normal(game.membership.shape)
    rr = record_risk(losses, game.membership, groups=train.g, seed=5)
    boot = _half_widths(GroupRisk(rr, train.group_names, n_boot=2000, seed=6))
    plan = precision(cfg)
    assert plan.lower_bound and plan.n_pairs == 32
    assert plan.by_group["n"].tolist() == np.bincount(train.g).tolist()
    np.testing.assert_allclose(plan.by_group["half_width"], boot, rtol=0.25)


def test_planner_with_a_pilot_predicts_the_bootstrap_of_a_larger_run_within_25_percent(tmp_path):
    pilot = run(_cfg(16), cache=tmp_path)
    big = run(_cfg(64), cache=tmp_path)
    plan = precision(_cfg(64), pilot=pilot)
    assert not plan.lower_bound
    boot = _half_widths(big.group_risk["PA-ALOOA"])
    np.testing.assert_allclose(plan.by_group["half_width"], boot, rtol=0.25)
    # at the pilot's own size the plan is the pilot's own spread
    own = precision(_cfg(16), pilot=pilot).by_group["half_width"]
    np.testing.assert_allclose(own, _half_widths(pilot.group_risk["PA-ALOOA"]), rtol=0.1)


def test_pilot_halves_on_two_threads_give_the_sequential_numbers(tmp_path, monkeypatch):
    # a small pilot's two half-audits run on threads of their own: the same numbers as one
    # after another (FAIRPRIV_LAB_THREADS=1 runs them in turn), and as the halves by hand
    from fairpriv_lab.experiment import precision as prec

    pilot = run(_cfg(16), cache=tmp_path)
    names = list(pilot.group_names)
    assert pilot.losses.size <= 2 * CHUNK_ELEMENTS  # the path that runs the halves on threads
    monkeypatch.setenv("FAIRPRIV_LAB_THREADS", "2")
    var2, het2 = prec._pilot_variances(pilot, names, "PA-ALOOA", "cross_fit", 32)
    monkeypatch.setenv("FAIRPRIV_LAB_THREADS", "1")
    var1, het1 = prec._pilot_variances(pilot, names, "PA-ALOOA", "cross_fit", 32)
    np.testing.assert_array_equal(var1, var2)
    np.testing.assert_array_equal(het1, het2)
    rr = pilot.record_risk["PA-ALOOA"]
    first = np.repeat(np.arange(8) < 4, 2)
    halves = [record_risk(pilot.losses[rows], pilot.game.membership[rows], records=rr.records,
                          estimator="cross_fit", signal=rr.signal, seed=s).ipr
              for s, rows in enumerate((first, ~first))]
    for k in range(len(names)):
        sel = rr.groups == k
        want = min(float(np.var(rr.ipr[sel], ddof=1)), max(0.0, float(np.cov(halves[0][sel], halves[1][sel])[0, 1])))
        assert het1[k] == want


def test_planner_counts_aloo_records_and_detectable_differences():
    cfg = _cfg(32).replace(**{"game.kind": "aloo", "game.m": 200})
    plan = precision(cfg)
    assert plan.by_group["n"].sum() == 200
    se = plan.by_group["se"].to_numpy()
    assert plan.min_detectable_difference == pytest.approx((1.959964 + 0.841621) * np.hypot(*se), rel=1e-4)
    assert "detect differences between groups" in plan.text() and "at least" in plan.text()
    with pytest.raises(ConfigError, match=r"^Expected power=1.5"):
        precision(cfg, power=1.5)


def _risk(ipr: np.ndarray, records: np.ndarray | None = None) -> GroupRisk:
    n = ipr.size
    rec = np.arange(n) if records is None else records
    rr = RecordRisk(rec, np.repeat([0, 1], [n // 2, n - n // 2]), (ipr + 1) / 2, ipr, np.zeros(n),
                    "PA-ALOOA", "cross_fit")
    return GroupRisk(rr, ["a", "b"], n_boot=0, min_group_size=1)


def test_group_change_paired_against_a_loop():
    rng = np.random.default_rng(0)
    base = rng.normal(0.05, 0.1, 400)
    after = base + rng.normal(0.0, 0.01, 400) - np.r_[np.zeros(200), np.full(200, 0.01)]
    df = group_change(_risk(base), _risk(after), n_boot=4000, seed=1)
    assert df["paired"].all()
    # obvious reference: a loop of bootstrap means of per-record differences
    r = np.random.default_rng(2)
    d = 100 * (after[200:] - base[200:])
    reps = [d[r.integers(0, 200, 200)].mean() for _ in range(2000)]
    lo, hi = np.quantile(reps, [0.025, 0.975])
    row = df.iloc[1]
    assert row["change"] == pytest.approx(d.mean())
    assert row["ci_low"] == pytest.approx(lo, abs=0.03) and row["ci_high"] == pytest.approx(hi, abs=0.03)
    assert bool(row["excludes_zero"]) and not bool(df.iloc[0]["excludes_zero"])
    # pairing matters: the unpaired interval of the same change is much wider
    shuffled = group_change(_risk(base), _risk(after, records=np.arange(400) + 1000), n_boot=2000, seed=1)
    assert not shuffled["paired"].any()
    assert (shuffled["ci_high"] - shuffled["ci_low"]).iloc[1] > 5 * (row["ci_high"] - row["ci_low"])


def test_group_change_matches_groups_by_name_and_validates():
    a = _risk(np.full(10, 0.1))
    rr = RecordRisk(np.arange(5), np.zeros(5, dtype=np.int64), np.full(5, 0.55), np.full(5, 0.1),
                    np.zeros(5), "PA-ALOOA", "cross_fit")
    b = GroupRisk(rr, ["b"], n_boot=0, min_group_size=1)
    df = group_change(a, b, seed=0)
    assert df["group"].tolist() == ["b"] and df["change"].iloc[0] == pytest.approx(0.0)
    with pytest.raises(ConfigError, match=r"^Expected n_boot=0"):
        group_change(a, b, n_boot=0)
