"""Tests of fairpriv_lab.studies: each study against a slow reference or a closed form."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fairpriv_lab import studies as S
from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.cli import paper_scale as ps_cli
from fairpriv_lab.studies import paper_scale as ps


# ---------------------------------------------------------------------------- references
def _in_sample_floor_reference(R: int) -> float:
    """Expected in-sample IPR with no leakage and 2R points, by enumerating label patterns.

    With i.i.d. scores the sorted label pattern is uniform over the C(2R, R) arrangements of R
    "in" and R "out"; the attack "member iff score >= tau" is scored at every cut by a plain
    loop (the obvious reference of the vectorised estimator).
    """
    n = 2 * R
    total = 0.0
    patterns = list(itertools.combinations(range(n), R))
    for ins in patterns:
        lab = np.zeros(n, bool)
        lab[list(ins)] = True
        best = 0
        for k in range(n + 1):  # the k lowest scores are called "out"
            correct = sum(1 for j in range(n) if (j >= k) == lab[j])
            best = max(best, correct)
        total += 2 * best / n - 1
    return 100.0 * total / len(patterns)


# ---------------------------------------------------------------------------- paper table
def test_paper_table2_holds_the_published_values():
    t = S.paper_table2()
    assert len(t) == 12
    got = t.set_index(["dataset", "method"])["gprp"]
    assert got[("mnist", "SGD")] == 4.92 and got[("mnist", "DP-SGD-S")] == 2.92
    assert got[("adult", "DP-SGD")] == 0.27 and got[("law", "DP-SGD-S")] == 0.43
    assert got[("utkface", "SGD")] == 1.75
    assert np.isinf(t[t.method == "SGD"].epsilon).all() and (t[t.method != "SGD"].epsilon == 10).all()


def test_method_label_and_bad_method():
    assert S.method_label("dpsgdf") == "DP-SGD-F"
    with pytest.raises(ConfigError, match=r"Expected method='adam' to be one of 'sgd'"):
        S.method_label("adam")


# ---------------------------------------------------------------------------- (a) floor
def test_null_game_is_seeded_and_has_complementary_pairs():
    a, b, c = (S.null_game(50, n_models=6, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.membership, b.membership)
    assert not np.array_equal(a.losses, c.losses)
    assert (a.membership[0::2] != a.membership[1::2]).all()
    assert a.groups.tolist().count(1) == 15


@pytest.mark.parametrize("R", [1, 2, 3])
def test_in_sample_floor_matches_enumeration(R):
    g = S.null_game(4000, n_models=2 * R, seed=R)
    df = S.floor_vs_models(g.losses, g.membership, n_models=[2 * R], estimators=["in_sample"], seed=0)
    row = df[df.group == -1].iloc[0]
    ref = _in_sample_floor_reference(R)
    assert abs(row.floor - ref) < 4 * row.floor_se, (row.floor, ref)
    assert abs(row.ipr - ref) < 4 * row.floor_se  # on null losses the IPR is a floor too


def test_cross_fit_floor_is_unbiased_and_in_sample_shrinks_with_models():
    g = S.null_game(3000, n_models=64, seed=3)
    df = S.floor_vs_models(g.losses, g.membership, groups=g.groups, n_models=[8, 64], seed=1,
                           source="simulated")
    allr = df[df.group == -1].set_index(["estimator", "n_models"])
    for k in (8, 64):
        cf = allr.loc[("cross_fit", k)]
        assert abs(cf.floor) < 4 * cf.floor_se
    ins = allr.loc["in_sample"]["floor"]
    assert ins[8] > ins[64] > 5.0
    assert set(df.group) == {-1, 0, 1} and (df.source == "simulated").all()
    assert df[df.group == 1].m.iloc[0] == 900


def test_floor_vs_models_seeding():
    g = S.null_game(100, n_models=16, seed=0)
    run = lambda s: S.floor_vs_models(g.losses, g.membership, n_models=[4, 8], seed=s)  # noqa: E731
    pd.testing.assert_frame_equal(run(5), run(5))
    assert not run(5)["floor"].equals(run(6)["floor"])


@pytest.mark.parametrize("kwargs, message", [
    ({"n_models": [3]}, "Expected n_models=3 to be even"),
    ({"n_models": [2], "estimators": ["cross_fit"]}, "Expected n_models=2 to be >= 4 with estimator 'cross_fit'"),
    ({"n_models": [40]}, "Expected n_models=40 to be an integer in [2, 8]"),
    ({"n_models": []}, "Expected n_models=[] to list at least one size"),
    ({"estimators": ["loo"]}, "Expected estimators='loo' to be one of 'cross_fit', 'in_sample'"),
    ({"n_repeats": 0}, "Expected n_repeats=0 to be an integer in [1, inf]"),
])
def test_floor_vs_models_bad_input(kwargs, message):
    g = S.null_game(20, n_models=8, seed=0)
    kwargs = {"n_models": [4], **kwargs}
    with pytest.raises(ConfigError) as err:
        S.floor_vs_models(g.losses, g.membership, **kwargs)
    assert message in str(err.value)


# ---------------------------------------------------------------------------- (b) agreement
def _leaky_losses(membership, leak, rng):
    """Losses whose drop when in depends on the record: loss = 1 + noise - leak[x] * in."""
    noise = 0.3 * rng.standard_normal(membership.shape)
    return np.abs(1.0 + noise - leak[None, :] * membership)


def test_agreement_improves_with_more_pairs():
    from fairpriv_lab.games import aloo_game, loo_game

    rng = np.random.default_rng(0)
    n = 300
    groups = np.repeat([0, 1], [200, 100])
    leak = np.where(rng.random(n) < 0.5, 0.6, 0.0)
    aloo = aloo_game(groups, n_models=128, m=60, seed=1)
    targets = aloo.audit_idx[:12]
    loo = loo_game(n, targets, n_pairs=64, seed=2)
    df = S.agreement_vs_models(
        _leaky_losses(aloo.membership, leak, rng), aloo.membership,
        _leaky_losses(loo.membership, leak, rng), loo.membership,
        targets=targets, pair_targets=loo.targets, n_pairs=[2, 64], groups=groups, seed=3)
    assert df.n_models.tolist() == [4, 128] and (df.n_targets == 12).all()
    assert df.mean_abs_diff.iloc[1] < df.mean_abs_diff.iloc[0]
    assert df.correlation.iloc[1] > 0.9  # the same records leak in both games


def test_agreement_bad_pair_count_names_the_limit():
    from fairpriv_lab.games import aloo_game, loo_game

    aloo = aloo_game(np.zeros(40, np.int64), n_models=8, m=10, seed=0)
    loo = loo_game(40, aloo.audit_idx[:2], n_pairs=3, seed=0)
    z = np.ones(aloo.membership.shape)
    with pytest.raises(ConfigError, match=r"Expected n_pairs=5 to be an integer in \[1, 3\]"):
        S.agreement_vs_models(z, aloo.membership, np.ones(loo.membership.shape), loo.membership,
                              targets=aloo.audit_idx[:2], pair_targets=loo.targets, n_pairs=[5])


# ---------------------------------------------------------------------------- (c) matched utility
def _sweep():
    return pd.DataFrame({
        "method": ["DP-SGD"] * 4 + ["DP-SGD-S"],
        "epsilon": [1.0, 2.0, 4.0, 10.0, 10.0],
        "accuracy": [0.70, 0.76, 0.80, 0.82, 0.78],
        "gprp": [0.10, 0.20, 0.30, 0.40, 0.20],
        "gprp_ci_low": [0.0, 0.1, 0.2, 0.3, 0.1],
        "gprp_ci_high": [0.2, 0.3, 0.4, 0.5, 0.3],
    })


def test_matched_utility_interpolates_on_log_epsilon():
    out = S.matched_utility(_sweep()).set_index("role")
    ref = out.loc["reference at equal accuracy"]
    # 0.78 lies halfway between 0.76 (eps 2) and 0.80 (eps 4) -> log-midpoint sqrt(8)
    assert ref.epsilon == pytest.approx(math.sqrt(8.0))
    assert ref.gprp == pytest.approx(0.25) and ref.gprp_ci_low == pytest.approx(0.15)
    assert ref.how == "interpolated"
    eq = out.loc["reference at equal eps"]
    assert eq.gprp == pytest.approx(0.40) and eq.how == "measured"
    assert out.loc["candidate"].gprp == 0.20


def test_matched_utility_uses_target_budgets_when_given():
    sweep = _sweep()
    sweep["target_epsilon"] = sweep["epsilon"]
    sweep["epsilon"] = sweep["epsilon"] * np.r_[0.999, 0.998, 0.997, 0.9975, 0.998]  # accounted, below target
    eq = S.matched_utility(sweep).set_index("role").loc["reference at equal eps"]
    assert eq.how == "measured" and eq.gprp == pytest.approx(0.40)


def test_matched_utility_rerun_and_outside_grid():
    calls = []

    def rerun(eps):
        calls.append(eps)
        return {"accuracy": 0.781, "gprp": 0.26, "gprp_ci_low": 0.2, "gprp_ci_high": 0.3}

    out = S.matched_utility(_sweep(), rerun=rerun).set_index("role")
    assert calls == [pytest.approx(math.sqrt(8.0))]
    assert out.loc["reference at equal accuracy", "how"] == "measured"
    low = _sweep()
    low.loc[4, "accuracy"] = 0.5
    out = S.matched_utility(low).set_index("role")
    assert out.loc["reference at equal accuracy", "how"] == "outside grid"
    assert math.isnan(out.loc["reference at equal accuracy", "epsilon"])


def test_matched_utility_bad_input():
    with pytest.raises(ConfigError, match="Expected candidate='DP-SGD-F' to be a method of the sweep"):
        S.matched_utility(_sweep(), candidate="DP-SGD-F")
    with pytest.raises(ConfigError, match="to have columns method, epsilon, accuracy, gprp"):
        S.matched_utility(_sweep().drop(columns="accuracy"))
    with pytest.raises(ConfigError, match="to have at least two runs with finite"):
        S.matched_utility(_sweep().iloc[3:])


# ---------------------------------------------------------------------------- (d) GRC vs GPR
def _fake_result(method="dpsgd", eps=10.0, gpr=(3.0, 1.0, 2.0), grc=(1.5, 0.5, 1.0), lower=(0.5, 0.2, 0.4),
                 kind="loo", reference=None, n=(10, 10, 10)):
    names = ("a", "b", "c")
    cfg = SimpleNamespace(train=SimpleNamespace(method=method, statistic="norm",
                                                epsilon=eps if method != "sgd" else None),
                          game=SimpleNamespace(kind=kind))
    by = pd.DataFrame({"group": names, "n": [10, 10, 10], "gpr": gpr, "ci_low": np.subtract(gpr, 1),
                       "ci_high": np.add(gpr, 1), "floor": [0.1, 0.0, -0.1]})
    risk = SimpleNamespace(by_group=by, difference=lambda: max(gpr) - min(gpr), difference_ci=lambda: (0.5, 3.0))
    tel = pd.DataFrame({"step": np.repeat([0, 1], 3), "group": [0, 1, 2] * 2,
                        "grc": np.r_[grc, grc] + np.r_[[0.1] * 3, [-0.1] * 3]})
    emp = pd.DataFrame({"group": [*names, "overall"], "n": [*n, sum(n)], "epsilon": [*lower, max(lower)]})
    res = SimpleNamespace(config=cfg, group_names=names, telemetry=tel, group_risk={"PA-ALOOA": risk},
                          epsilon=eps if method != "sgd" else math.inf, empirical_epsilon=emp,
                          max_certifiable_epsilon=4.2)
    if reference is not None:
        res.reference_epsilon = reference
    return res


def test_grc_gpr_averages_steps_and_correlates():
    f = S.grc_gpr({"run1": _fake_result()})
    assert f.set_index("group")["grc"].to_dict() == pytest.approx({"a": 1.5, "b": 0.5, "c": 1.0})
    corr = S.grc_gpr_correlation(f).iloc[0]
    assert corr.n_groups == 3 and corr.pearson == pytest.approx(1.0) and corr.spearman == pytest.approx(1.0)


def test_grc_gpr_correlation_against_scipy_and_two_groups():
    from scipy import stats

    rng = np.random.default_rng(0)
    x, y = rng.random(10), rng.random(10)
    f = pd.DataFrame({"run": "r", "group": list("abcdefghij"), "grc": x, "gpr": y})
    c = S.grc_gpr_correlation(f).iloc[0]
    assert c.pearson == pytest.approx(stats.pearsonr(x, y)[0])
    assert c.spearman == pytest.approx(stats.spearmanr(x, y)[0])
    two = S.grc_gpr_correlation(f.iloc[:2]).iloc[0]
    assert two.n_groups == 2 and math.isnan(two.pearson)


# ---------------------------------------------------------------------------- (e) soundness
def test_soundness_flags_a_bound_above_the_budget():
    ok = _fake_result(eps=1.0, lower=(0.5, 0.2, 0.4))
    bad = _fake_result(eps=1.0, lower=(1.5, 0.2, 0.4))
    sgd = _fake_result(method="sgd", lower=(5.0, 1.0, 2.0))
    # Substitution games (half-split, ALOOA) are held to the result's substitution budget at
    # delta (above 2 eps; privacy.substitution_epsilon). (These cases held them to 2 eps, which
    # is not a valid budget at a fixed delta.)
    subst = _fake_result(eps=1.0, lower=(1.5, 0.2, 0.4), kind="half", reference=2.3)
    worse = _fake_result(eps=1.0, lower=(2.5, 0.2, 0.4), kind="aloo", reference=2.3)
    f = S.soundness({"ok": ok, "bad": bad, "sgd": sgd, "subst": subst, "worse": worse})
    assert f[f.run == "ok"].sound.all() and f[f.run == "sgd"].sound.all() and f[f.run == "subst"].sound.all()
    flagged = f[(f.run == "bad") & ~f.sound]
    assert set(flagged.group) == {"a", "overall"}
    assert set(f[(f.run == "worse") & ~f.sound].group) == {"a", "overall"}
    assert f[(f.run == "ok") & (f.group == "a")].ratio.item() == pytest.approx(0.5)
    assert f[(f.run == "subst") & (f.group == "a")].ratio.item() == pytest.approx(1.5 / 2.3)
    assert set(f[f.run == "subst"].epsilon_bound) == {2.3}
    assert set(f.verdict) == {"sound", "unsound"}


def test_soundness_groups_without_audited_records_are_not_applicable():
    empty = _fake_result(eps=1.0, lower=(0.5, float("nan"), 0.4), n=(10, 0, 10))
    unknown = _fake_result(eps=1.0, lower=(0.5, 0.2, 0.4), kind="half")  # no substitution budget
    f = S.soundness({"empty": empty, "unknown": unknown})
    row = f[(f.run == "empty") & (f.group == "b")].iloc[0]
    assert row.verdict == "n/a" and pd.isna(row.sound)
    assert (f[(f.run == "empty") & (f.group != "b")].verdict == "sound").all()
    assert (f[f.run == "unknown"].verdict == "n/a").all()


# ---------------------------------------------------------------------------- tables
def test_compare_with_paper_ratios():
    table = pd.DataFrame({
        "dataset": "adult", "game": "half", "model": "lr", "estimator": "cross_fit", "auditor": "PA-ALOOA",
        "method": ["SGD", "DP-SGD", "DP-SGD-S", "DP-SGD"], "target_epsilon": [math.inf, 10.0, 10.0, 1.0],
        "gprp": [0.8, 0.4, 0.2, 0.1], "gprp_ci_low": 0.0, "gprp_ci_high": 1.0, "floor_mean": 0.0,
        "accuracy": 0.8,
    })
    cmp = S.compare_with_paper(table)
    out = cmp.set_index("method")
    assert out.loc["DP-SGD", "measured"] == 0.4  # the eps = 1 row is not Table 2's
    assert out.loc["DP-SGD-S", "paper"] == 0.16
    assert out.loc["DP-SGD-S", "measured_ratio_to_sgd"] == pytest.approx(0.25)
    assert out.loc["DP-SGD-S", "paper_ratio_to_sgd"] == pytest.approx(0.16 / 0.42)
    pytest.importorskip("altair")
    spec = S.paper_comparison_chart(cmp).to_dict()
    assert "Table 2" in str(spec["title"]) and len(spec["layer"]) == 3


# ---------------------------------------------------------------------------- figures
def test_charts_build_specs():
    pytest.importorskip("altair")
    g = S.null_game(200, n_models=8, seed=0)
    spec = S.floor_chart(S.floor_vs_models(g.losses, g.membership, n_models=[4, 8], seed=0)).to_dict()
    assert "no leakage" in str(spec["title"])
    two = pd.concat([S.floor_vs_models(g.losses, g.membership, n_models=[4, 8], seed=0, source=src)
                     for src in ("simulated", "real")])
    spec2 = S.floor_chart(two).to_dict()
    assert spec2["layer"][0]["encoding"]["strokeDash"]["field"] == "source"
    agree = pd.DataFrame({"n_models": [4, 8], "mean_abs_diff": [5.0, 3.0], "correlation": [0.5, 0.8]})
    assert "ALOOA" in str(S.agreement_chart(agree).to_dict()["title"])
    sweep = _sweep()
    assert "layer" in S.matched_utility_chart(sweep).to_dict()
    f = S.soundness({"ok": _fake_result(eps=1.0)})
    assert "Empirical" in str(S.soundness_chart(f).to_dict()["title"])
    assert "Pearson" in str(S.grc_chart(S.grc_gpr({"r": _fake_result()})).to_dict()["title"])


# ------------------------------------------------- the paper-scale presets (benchmarks/paper_scale.py runs them)
def test_paper_scale_presets_follow_the_paper(capsys):
    p = ps.PRESETS["adult-lr"]
    assert (p.n_models, p.epochs, p.batch_size, p.lr, p.delta, p.tau) == (400, 20, 256, 0.1, 1e-5, 2.0)
    cfgs = ps.build_configs(p, device="cpu")
    assert [c.train.method for _, c in cfgs] == ["sgd", "dpsgd", "dpsgds"]
    assert all(c.game.kind == "half" and c.game.n_models == 400 for _, c in cfgs)
    assert [c.train.clip for _, c in cfgs[1:]] == [10.0, 10.0]
    every = ps.build_configs(ps.PRESETS["adult-lr-all"], device="cpu")
    clips = {(c.train.method, c.train.epsilon): c.train.clip for _, c in every if c.train.method != "sgd"}
    assert clips[("dpsgd", 1.0)] == 5.0 and clips[("dpsgd", 10.0)] == 10.0
    assert sum(c.train.method == "sgd" for _, c in every) == 2 * 5  # once per game and seed
    assert {c.game.m for _, c in every if c.game.kind == "aloo"} == {600}
    assert ps_cli.main(["--list"]) == 0
    assert "adult-lr" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ps_cli.parse_args([])


@pytest.mark.slow
def test_paper_scale_smoke_preset_writes_every_table(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRPRIV_LAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    assert ps_cli.main(["--preset", "smoke", "--out", str(out), "--n-boot", "50", "--threads", "0"]) == 0
    for name in ("gprp", "gpr", "timings", "soundness", "grc", "floor"):
        assert (out / f"smoke_{name}.csv").is_file(), name
    gprp = pd.read_csv(out / "smoke_gprp.csv")
    assert set(gprp.method) == {"SGD", "DP-SGD", "DP-SGD-S"} and set(gprp.estimator) == {"in_sample", "cross_fit"}
    assert set(gprp.auditor) == {"PA-ALOOA", "PA-GA", "PA-GBA"} and len(gprp) == 18
    dp = gprp[np.isfinite(gprp.epsilon)]
    assert (dp.epsilon <= 10.0 * 1.001).all() and (gprp.gprp >= 0).all()
    assert pd.read_csv(out / "smoke_soundness.csv").sound.all()
    text = (out / "smoke.md").read_text()
    assert "Beside the paper's Table 2" in text and "| adult | half | DP-SGD-S |" in text
    machine = json.loads((out / "smoke_machine.json").read_text())
    assert machine["torch_threads"] >= 1 and machine["cpu_count"] >= 1  # --threads 0: torch untouched
    timings = pd.read_csv(out / "smoke_timings.csv")
    assert (timings.chunks_trained.iloc[::2] == 1).all() and (timings.chunks_loaded.iloc[1::2] == 1).all()
    # A second invocation is served from the cache (resumable) and gives the same table.
    assert ps_cli.main(["--preset", "smoke", "--out", str(out), "--n-boot", "50", "--threads", "0"]) == 0
    again = pd.read_csv(out / "smoke_gprp.csv")
    pd.testing.assert_series_equal(again.gprp, gprp.gprp)
    assert pd.read_csv(out / "smoke_timings.csv").chunks_trained.sum() == 0
    # What the preset holds until its tables are written: no losses (the floor study of the SGD
    # run, first estimator, ran as that run ended), no confidences, one game object for all
    # runs (memory, issue 15); the floor table is still there.
    from fairpriv_lab.engine.device import machine_info

    preset = ps.run_preset(ps.PRESETS["smoke"], out=out, device="cpu", machine=machine_info("cpu"),
                           cache=True, overrides={"n_boot": 50})
    results = preset["results"]
    for r in results:
        assert r.losses.shape == (r.n_models, 0) and r.n_models > 0
        assert r.confidences.shape == (r.n_models, 0) and r.game is results[0].game
    floor = preset["floor"]
    assert set(floor.source) == {"simulated null", f"{results[0].config.data.name} "
                                 f"{results[0].config.train.model} {results[0].config.game.kind} SGD"}
    pd.testing.assert_frame_equal(floor.reset_index(drop=True),
                                  pd.read_csv(out / "smoke_floor.csv")[floor.columns], check_dtype=False)
    assert pd.read_csv(out / "smoke_gprp.csv").gprp.equals(gprp.gprp)
