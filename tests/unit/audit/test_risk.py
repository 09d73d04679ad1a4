import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from fairpriv_lab._core.exceptions import ConfigError, SmallGroupWarning
from fairpriv_lab.audit.attacks import RecordRisk
from fairpriv_lab.audit.risk import GroupRisk, _bootstrap_means, outcome_fairness


def _rr(ipr, groups, floor=None):
    ipr = np.asarray(ipr, float)
    floor = np.zeros_like(ipr) if floor is None else np.asarray(floor, float)
    return RecordRisk(np.arange(ipr.size), np.asarray(groups), (ipr + 1) / 2, ipr, floor, "PA-ALOOA", "cross_fit")


def test_by_group_values_and_api():
    rng = np.random.default_rng(0)
    g = np.repeat([0, 1, 2], [200, 50, 100])
    ipr = rng.normal(0.05, 0.1, g.size) + 0.03 * (g == 1)
    floor = rng.normal(0.0, 0.05, g.size)
    gr = GroupRisk(_rr(ipr, g, floor), ["a", "b", "c"], n_boot=500, seed=1)
    bg = gr.by_group
    assert bg.columns.tolist() == ["group", "n", "gpr", "ci_low", "ci_high", "floor", "gpr_minus_floor", "small"]
    want = [100 * ipr[g == k].mean() for k in range(3)]
    np.testing.assert_allclose(bg["gpr"], want)
    np.testing.assert_allclose(bg["floor"], [100 * floor[g == k].mean() for k in range(3)])
    np.testing.assert_allclose(bg["gpr_minus_floor"], bg["gpr"] - bg["floor"])
    assert bg["n"].tolist() == [200, 50, 100] and not bg["small"].any()
    assert np.all(bg["ci_low"] < bg["gpr"]) and np.all(bg["gpr"] < bg["ci_high"])
    assert gr.overall == pytest.approx(100 * ipr.mean())
    assert gr.group_max() == pytest.approx(max(want)) and gr.group_min() == pytest.approx(min(want))
    assert gr.difference() == pytest.approx(max(want) - min(want))
    assert gr.ratio() == pytest.approx(min(want) / max(want))
    lo, hi = gr.difference_ci()
    assert lo < gr.difference() < hi
    assert gr.boot.shape == (500, 3)
    assert gr.difference_floor() >= 0
    with pytest.raises(ConfigError, match="exactly two groups"):
        gr.minority_minus_majority()
    assert "GPRP" in repr(gr) and set(gr.summary()) >= {"gprp", "gprp_ci_low", "overall"}


def test_ci_width_matches_standard_error():
    rng = np.random.default_rng(2)
    for n in (100, 3000):  # many distinct values (index resampling) and few (multinomial)
        vals = rng.normal(size=n) if n == 100 else rng.integers(0, 5, n) / 4
        boot = _bootstrap_means(vals, 4000, np.random.default_rng(0))
        se = vals.std() / np.sqrt(n)
        assert boot.std() == pytest.approx(se, rel=0.08)
        assert boot.mean() == pytest.approx(vals.mean(), abs=0.1 * se)


def test_bootstrap_seeded():
    g = np.repeat([0, 1], 40)
    ipr = np.random.default_rng(0).normal(0, 0.1, 80)
    a = GroupRisk(_rr(ipr, g), ["x", "y"], n_boot=100, seed=3)
    b = GroupRisk(_rr(ipr, g), ["x", "y"], n_boot=100, seed=3)
    c = GroupRisk(_rr(ipr, g), ["x", "y"], n_boot=100, seed=4)
    pd.testing.assert_frame_equal(a.by_group, b.by_group)
    assert not np.array_equal(a.boot, c.boot)


def test_minority_minus_majority_two_groups():
    g = np.repeat([0, 1], [100, 40])
    ipr = np.r_[np.full(100, 0.02), np.full(40, 0.07)] + np.random.default_rng(1).normal(0, 0.01, 140)
    gr = GroupRisk(_rr(ipr, g), ["majority", "minority"], n_boot=300, seed=0)
    assert gr.minority == "minority"
    d = gr.minority_minus_majority()
    assert d == pytest.approx(100 * (ipr[g == 1].mean() - ipr[g == 0].mean()))
    lo, hi = gr.minority_minus_majority_ci()
    assert lo < d < hi and lo > 0


def test_small_and_empty_groups_warn():
    g = np.repeat([0, 2], [40, 5])
    ipr = np.linspace(0, 0.1, 45)
    with pytest.warns(SmallGroupWarning) as rec:
        gr = GroupRisk(_rr(ipr, g), ["a", "empty", "tiny"], n_boot=50, seed=0)
    msgs = " ".join(str(w.message) for w in rec)
    assert "['empty'] have no audited records" in msgs and "tiny (n=5)" in msgs
    assert "fewer than min_group_size=30 audited records" in msgs
    row = gr.by_group.set_index("group").loc["empty"]
    assert row["n"] == 0 and np.isnan(row["gpr"]) and np.isnan(row["ci_low"])
    assert gr.by_group.set_index("group").loc["tiny", "small"]
    # the empty group is left out of the differences; two present groups remain
    assert np.isfinite(gr.difference()) and np.isfinite(gr.minority_minus_majority())
    assert gr.minority == "tiny"


def test_single_group_and_no_boot():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gr = GroupRisk(_rr([0.1, 0.2, 0.3], [0, 0, 0]), ["all"], n_boot=0, min_group_size=1)
    assert gr.difference() == 0.0 and gr.ratio() == 1.0
    assert np.isnan(gr.by_group["ci_low"][0]) and all(np.isnan(gr.difference_ci()))


def test_negative_gpr_ratio_nan():
    gr = GroupRisk(_rr([-0.1, -0.2], [0, 1]), ["a", "b"], n_boot=10, min_group_size=0)
    assert np.isnan(gr.ratio())


def test_group_risk_bad_input():
    rr = _rr([0.1, 0.2], [0, 1])
    with pytest.raises(ConfigError, match="to name every group id up to 1"):
        GroupRisk(rr, ["a"])
    with pytest.raises(ConfigError, match="Expected ci=1.5 in"):
        GroupRisk(rr, ["a", "b"], ci=1.5)
    with pytest.raises(ConfigError, match=re.escape("Expected record_risk='ndarray' to be a RecordRisk (from record_risk or global_risk)")):
        GroupRisk(np.zeros(3), ["a", "b"])
    with pytest.raises(ConfigError, match=re.escape("Expected group_names='ab' to be a sequence of group names")):
        GroupRisk(rr, "ab")


def test_outcome_fairness_binary_matches_manual():
    rng = np.random.default_rng(0)
    n = 400
    g = rng.integers(0, 2, n)
    y = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.8 - 0.2 * g, y, 1 - y)
    of = outcome_fairness(y, p, g, ["a", "b"])
    bg = of.by_group
    assert bg["group"].tolist() == ["a", "b"] and bg["n"].tolist() == [int((g == 0).sum()), int((g == 1).sum())]
    acc = [np.mean(y[g == k] == p[g == k]) for k in (0, 1)]
    np.testing.assert_allclose(bg["accuracy"], acc)
    sr = [p[g == k].mean() for k in (0, 1)]
    tpr = [p[(g == k) & (y == 1)].mean() for k in (0, 1)]
    fpr = [p[(g == k) & (y == 0)].mean() for k in (0, 1)]
    assert of.accuracy_difference == pytest.approx(abs(acc[0] - acc[1]))
    assert of.demographic_parity_difference == pytest.approx(abs(sr[0] - sr[1]))
    assert of.equal_opportunity_difference == pytest.approx(abs(tpr[0] - tpr[1]))
    assert of.equalized_odds_difference == pytest.approx(max(abs(tpr[0] - tpr[1]), abs(fpr[0] - fpr[1])))
    assert not of.multiclass and of.to_frame().shape == (4, 2)


def test_outcome_fairness_multiclass_and_errors():
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 1, 1, 2, 1, 2])
    of = outcome_fairness(y, p, np.array([0, 0, 0, 1, 1, 1]), ["a", "b"])
    assert of.multiclass and np.isnan(of.demographic_parity_difference)
    assert of.by_group["accuracy"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert of.by_group["selection_rate"].isna().all()
    with pytest.raises(ConfigError, match=re.escape("Expected y_pred='array of shape (3,)' to have the shape of y_true (6,)")):
        outcome_fairness(y, p[:3], np.zeros(6, int), ["a"])
    with pytest.raises(ConfigError, match=re.escape("Expected groups='ids up to 3' to be < n_groups=2")):
        outcome_fairness(y, p, np.full(6, 3), ["a", "b"])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_outcome_fairness_weights_equal_repeated_rows(n_classes):
    """weights=w gives what repeating each row w times gives (zeros drop the row)."""
    rng = np.random.default_rng(n_classes)
    n = 300
    y, p, g = rng.integers(0, n_classes, n), rng.integers(0, n_classes, n), rng.integers(0, 3, n)
    w = rng.integers(0, 4, n)
    got = outcome_fairness(y, p, g, ["a", "b", "c"], weights=w)
    want = outcome_fairness(np.repeat(y, w), np.repeat(p, w), np.repeat(g, w), ["a", "b", "c"])
    pd.testing.assert_frame_equal(got.by_group, want.by_group)
    for f in ("accuracy_difference", "demographic_parity_difference", "equal_opportunity_difference",
              "equalized_odds_difference", "multiclass"):
        assert getattr(got, f) == pytest.approx(getattr(want, f), nan_ok=True)
    for bad, why in ((np.full(n, -1), "non-negative"), (np.ones(n) * 0.5, "non-negative"),
                     (np.ones(3, int), "non-negative"), (np.zeros(n, int), "at least one row")):
        with pytest.raises(ConfigError, match=why):
            outcome_fairness(y, p, g, ["a", "b", "c"], weights=bad)


@pytest.mark.parametrize("n_classes", [2, 10])
def test_runner_outcome_pools_models_as_the_tiled_rows(n_classes):
    """fl.run's outcome fairness: per-record prediction counts equal the tiled pooled rows."""
    from types import SimpleNamespace

    from fairpriv_lab.experiment.runner import _outcome

    rng = np.random.default_rng(n_classes)
    n_models, n_test = 300, 200  # over 255 models: the vote counts outgrow a byte
    test = SimpleNamespace(y=rng.integers(0, n_classes, n_test), g=rng.integers(0, 2, n_test))
    preds = np.where(rng.random((n_models, n_test)) < 0.7, test.y, rng.integers(0, n_classes, (n_models, n_test)))
    preds = preds.astype(np.int32)
    got = _outcome(test, preds, ("a", "b"))
    want = outcome_fairness(np.tile(test.y, n_models), preds.reshape(-1), np.tile(test.g, n_models), ["a", "b"])
    pd.testing.assert_frame_equal(got.by_group, want.by_group)
    assert got.equalized_odds_difference == pytest.approx(want.equalized_odds_difference, nan_ok=True)


def test_pair_bootstrap_null_and_group_risk_replicates():
    from fairpriv_lab.audit.attacks import record_risk
    from fairpriv_lab.audit.risk import pair_bootstrap
    from fairpriv_lab.games import half_split_game, loo_game

    rng = np.random.default_rng(0)
    n, M = 400, 40
    game = half_split_game(n, n_models=M, seed=0)
    groups = np.arange(n) % 2
    # model-level noise shared by all records of a model: only the pair bootstrap sees it
    losses = rng.exponential(size=(M, n)) + rng.normal(0, 0.5, (M, 1))
    reps = pair_bootstrap(losses, game.membership, records=game.audit_idx, groups=groups, n_groups=2, n_boot=40, seed=1)
    assert reps.shape == (40, 2) and np.all(np.isfinite(reps))
    assert abs(reps.mean()) < 1.5  # cross-fit stays unbiased under pair resampling
    again = pair_bootstrap(losses, game.membership, records=game.audit_idx, groups=groups, n_groups=2, n_boot=40, seed=1)
    np.testing.assert_array_equal(reps, again)
    rr = record_risk(losses, game.membership, groups=groups, seed=0)
    gr = GroupRisk(rr, ["a", "b"], replicates=reps, min_group_size=0)
    assert gr.n_boot == 40 and gr.bootstrap == "supplied"
    np.testing.assert_allclose(gr.by_group["ci_low"], np.quantile(reps, 0.025, axis=0))
    with pytest.raises(ConfigError, match=r"to have shape \(n_rep, 2\)"):
        GroupRisk(rr, ["a", "b"], replicates=reps[:, :1])
    loo = loo_game(10, [1, 2], n_pairs=3, seed=0)
    L = rng.exponential(size=(loo.n_models, 10))
    with pytest.raises(ConfigError, match="to let every pair"):
        pair_bootstrap(L, loo.membership, records=loo.audit_idx, groups=np.zeros(10, int), n_groups=1)
    # in_sample on resampled pairs is biased upwards (it fits the duplicates): refused. (This
    # replaces an assertion that the in-sample pair bootstrap returned replicates.)
    with pytest.raises(ConfigError, match="Expected estimator='in_sample' to be 'cross_fit'"):
        pair_bootstrap(L, loo.membership, records=loo.audit_idx, groups=np.zeros(10, int), n_groups=1,
                       estimator="in_sample", n_boot=5, seed=0)


def test_pair_bootstrap_in_sample_is_refused_and_cross_fit_covers_the_null():
    from fairpriv_lab.audit.risk import pair_bootstrap
    from fairpriv_lab.experiment.config import AuditConfig, ExperimentConfig
    from fairpriv_lab.games import half_split_game

    game = half_split_game(200, n_models=16, seed=0)
    groups = np.arange(200) % 2
    kw = dict(records=game.audit_idx, groups=groups, n_groups=2)
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="estimator='in_sample' to be 'cross_fit'"):
        pair_bootstrap(rng.exponential(size=(16, 200)), game.membership, estimator="in_sample", **kw)
    with pytest.raises(ConfigError, match="audit.bootstrap='pairs' to be 'records' with audit.estimator='in_sample'"):
        AuditConfig(bootstrap="pairs", estimator="in_sample")
    with pytest.raises(ConfigError, match="audit.bootstrap='pairs' to be 'records' with game.kind='loo'"):
        ExperimentConfig(game={"kind": "loo", "targets": (1,), "n_models": 8, "m": None},
                         audit={"bootstrap": "pairs", "auditors": ("PA-LOOA",)})
    # Coverage: with no leakage the cross-fit GPR is 0 in expectation; the 95 % pair-bootstrap
    # interval (models and records resampled) must cover 0 in most null runs.
    covered = 0
    runs = 40
    for r in range(runs):
        losses = rng.exponential(size=(16, 200)) + rng.normal(0, 0.3, (16, 1))
        reps = pair_bootstrap(losses, game.membership, n_boot=60, seed=r, **kw)
        lo, hi = np.quantile(reps[:, 0], [0.025, 0.975])
        covered += lo <= 0.0 <= hi
    assert covered >= 0.85 * runs


def test_gprp_reported_with_null_references_signed_difference_covers_zero():
    from fairpriv_lab.audit import RecordRisk

    rng = np.random.default_rng(0)
    runs, cover_signed, cover_gprp = 60, 0, 0
    for r in range(runs):
        # no leakage: per-record cross-fit IPRs are noise around 0 in both groups
        groups = np.repeat([0, 1], [120, 60])
        ipr = rng.normal(0, 0.1, groups.size)
        floor = rng.normal(0, 0.1, groups.size)
        rr = RecordRisk(np.arange(groups.size), groups, (ipr + 1) / 2, ipr, floor, "PA-ALOOA", "cross_fit")
        gr = GroupRisk(rr, ["a", "b"], n_boot=200, seed=r, min_group_size=0)
        diff, lo, hi = gr.signed_difference()
        assert diff == pytest.approx(gr.minority_minus_majority())
        cover_signed += lo <= 0 <= hi
        glo, ghi = gr.difference_ci()
        cover_gprp += glo <= 0 <= ghi
        s = gr.summary()
        assert s["gprp_floor"] == pytest.approx(gr.difference_floor()) and s["gprp_floor"] >= 0
        assert s["minority_minus_majority"] == pytest.approx(diff)
    assert cover_signed >= 0.85 * runs  # the signed interval is honest under the null
    assert cover_gprp <= 0.1 * runs  # the max - min interval is not: hence the floor beside it
    three = GroupRisk(RecordRisk(np.arange(90), np.repeat([0, 1, 2], 30), np.full(90, 0.5),
                                 np.zeros(90), np.zeros(90), "PA-ALOOA", "cross_fit"),
                      ["a", "b", "c"], n_boot=20, seed=0)
    assert all(math.isnan(v) for v in three.signed_difference())
    assert "floor GPRP" in repr(three)


def test_outcome_fairness_counts_equals_fairlearn():
    from fairpriv_lab.audit.risk import outcome_fairness_counts
    from tests.reference.old_risk import outcome_fairness  # fairlearn's MetricFrame

    rng = np.random.default_rng(0)
    y, p, g = rng.integers(0, 2, 600), rng.integers(0, 2, 600), rng.integers(0, 3, 600)
    y[g == 2] = 0  # a group without positives: TPR undefined, reported as 0
    names = ["a", "b", "c", "empty"]
    for yy, pp in ((y, p), (rng.integers(0, 3, 600), rng.integers(0, 3, 600))):
        ref, got = outcome_fairness(yy, pp, g, names), outcome_fairness_counts(yy, pp, g, names)
        pd.testing.assert_frame_equal(got.by_group, ref.by_group, check_dtype=False)
        for k in ("accuracy_difference", "demographic_parity_difference", "equal_opportunity_difference",
                  "equalized_odds_difference", "multiclass"):
            a, b = getattr(got, k), getattr(ref, k)
            assert (a == pytest.approx(b)) or (math.isnan(a) and math.isnan(b)), k


# ---------------------------------------------------------------- floor-corrected GPR and signed changes
def _rr_floor(ipr, floor, groups):
    from fairpriv_lab.audit import RecordRisk

    ipr, floor = np.asarray(ipr, float), np.asarray(floor, float)
    return RecordRisk(np.arange(ipr.size), np.asarray(groups), (1 + ipr) / 2, ipr, floor, "PA-ALOOA", "cross_fit")


def test_floor_corrected_is_the_mean_of_ipr_minus_floor_per_group():
    from fairpriv_lab.audit.risk import GroupRisk, floor_corrected

    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], [200, 300])
    ipr = rng.normal(0.05, 0.1, 500)
    floor = rng.normal(0.0, 0.1, 500)
    fc = floor_corrected(GroupRisk(_rr_floor(ipr, floor, groups), ["a", "b"], n_boot=300, seed=0), seed=1)
    for g in (0, 1):
        sel = groups == g
        row = fc.by_group.iloc[g]
        assert row["gpr"] == pytest.approx(100 * (ipr[sel] - floor[sel]).mean())
        assert row["floor"] == 0 and row["ci_low"] < row["gpr"] < row["ci_high"]


def test_floor_corrected_of_pure_noise_is_zero_within_its_interval():
    """IPR is 0 ± noise where nothing leaks: negative readings are expected, the CI covers 0."""
    from fairpriv_lab.audit.risk import GroupRisk, floor_corrected

    rng = np.random.default_rng(3)
    groups = np.repeat([0, 1], 400)
    ipr, floor = rng.normal(0, 0.1, 800), rng.normal(0, 0.1, 800)
    assert (ipr < 0).mean() == pytest.approx(0.5, abs=0.06)
    fc = floor_corrected(GroupRisk(_rr_floor(ipr, floor, groups), ["a", "b"], n_boot=500, seed=0), seed=0)
    assert ((fc.by_group["ci_low"] < 0) & (fc.by_group["ci_high"] > 0)).all()


def test_gpr_change_matches_the_replicates_and_detects_a_drop():
    from fairpriv_lab.audit.risk import GroupRisk, gpr_change

    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1], [150, 350])
    before = GroupRisk(_rr_floor(rng.normal(0.06, 0.1, 500), np.zeros(500), groups), ["a", "b"], n_boot=400, seed=0)
    after = GroupRisk(_rr_floor(rng.normal(0.0, 0.1, 500), np.zeros(500), groups), ["a", "b"], n_boot=400, seed=1)
    ch = gpr_change(before, after).set_index("group")
    for g, name in enumerate(["a", "b"]):
        d = after.boot[:, g] - before.boot[:, g]
        assert ch.loc[name, "change"] == pytest.approx(after.by_group["gpr"][g] - before.by_group["gpr"][g])
        assert ch.loc[name, "ci_low"] == pytest.approx(np.quantile(d, 0.025))
        assert ch.loc[name, "ci_high"] == pytest.approx(np.quantile(d, 0.975))
    assert ch["lower"].all() and not ch["higher"].any()   # a 6 pp drop with ~1 pp noise
    assert ch.loc["all records", "change"] == pytest.approx(100 * (after.record_risk.ipr.mean() - before.record_risk.ipr.mean()))
    same = gpr_change(before, GroupRisk(before.record_risk, ["a", "b"], n_boot=400, seed=5)).set_index("group")
    assert not same["lower"].any() and not same["higher"].any()


def test_gpr_change_messages():
    from fairpriv_lab.audit.risk import GroupRisk, gpr_change

    rr = _rr_floor(np.zeros(60), np.zeros(60), np.repeat([0, 1], 30))
    a = GroupRisk(rr, ["a", "b"], n_boot=100, seed=0)
    with pytest.raises(ConfigError, match="to have the groups of before"):
        gpr_change(a, GroupRisk(rr, ["x", "y"], n_boot=100, seed=0))
    with pytest.raises(ConfigError, match="to be a GroupRisk"):
        gpr_change(a, "b")
