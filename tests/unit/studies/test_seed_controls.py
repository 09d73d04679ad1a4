"""Issue 14 numerics of fairpriv_lab.studies against slow, obvious references."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fairpriv_lab import studies
from fairpriv_lab._core.exceptions import ConfigError as ValidationError
from fairpriv_lab.cli import paper_scale as ps_cli
from fairpriv_lab.studies import paper_scale as ps


def _t_reference(xs, level=0.95):
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return mean, sd, lo, hi


@pytest.mark.parametrize("xs", [[0.41, 0.43, 0.29, 0.24, 0.35], [1.0, 1.0, 2.0], [-3.0, 5.5]])
def test_seed_ci_matches_scipy_t_interval(xs):
    r = studies.seed_ci(xs)
    mean, sd, lo, hi = _t_reference(xs)
    assert r["n_seeds"] == len(xs)
    assert r["mean"] == pytest.approx(mean) and r["sd"] == pytest.approx(sd)
    assert r["ci_low"] == pytest.approx(lo) and r["ci_high"] == pytest.approx(hi)


def test_seed_ci_edge_cases():
    assert math.isnan(studies.seed_ci([])["mean"])
    one = studies.seed_ci([0.3, math.nan])
    assert one["n_seeds"] == 1 and one["mean"] == 0.3 and math.isnan(one["ci_low"])
    same = studies.seed_ci([0.2, 0.2, 0.2])
    assert same["ci_low"] == pytest.approx(0.2) and same["ci_high"] == pytest.approx(0.2)
    with pytest.raises(ValidationError, match="level"):
        studies.seed_ci([1.0, 2.0], level=1.5)


def test_seed_ci_covers_at_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        r = studies.seed_ci(rng.normal(1.0, 0.3, size=5))
        hits += r["ci_low"] <= 1.0 <= r["ci_high"]
    assert abs(hits / 2000 - 0.95) < 0.02


def test_seed_table_against_loop():
    rng = np.random.default_rng(1)
    rows = [{"method": m, "auditor": "PA-ALOOA", "seed": s, "gprp": float(rng.normal()),
             "gprp_ci_low": -1.0 + s, "gprp_ci_high": 1.0 + 2 * s}
            for m in ("SGD", "DP-SGD") for s in range(5)]
    f = pd.DataFrame(rows)
    t = studies.seed_table(f, by=["method", "auditor"]).set_index("method")
    for m in ("SGD", "DP-SGD"):
        xs = [r["gprp"] for r in rows if r["method"] == m]
        mean, sd, lo, hi = _t_reference(xs)
        assert t.loc[m, "mean"] == pytest.approx(mean)
        assert t.loc[m, "seed_ci_low"] == pytest.approx(lo) and t.loc[m, "seed_ci_high"] == pytest.approx(hi)
        assert t.loc[m, "record_ci_low_mean"] == pytest.approx(1.0)  # mean of -1..3
        assert t.loc[m, "record_half_width_mean"] == pytest.approx(np.mean([(s + 2) / 2 for s in range(5)]))
        assert t.loc[m, "n_seeds"] == 5
    with pytest.raises(ValidationError, match="sweep"):
        studies.seed_table(f, by=["nope"])


def test_paired_seed_difference_against_loop():
    f = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 4, "seed": [0, 1, 2, 3] * 2,
                      "gprp": [0.3, 0.2, 0.4, 0.25, 0.31, 0.1, 0.5, 0.2]})
    d = studies.paired_seed_difference(f, by="method", first="a", second="b")
    diffs = [0.3 - 0.31, 0.2 - 0.1, 0.4 - 0.5, 0.25 - 0.2]
    mean, _, lo, hi = _t_reference(diffs)
    assert d["mean"] == pytest.approx(mean) and d["ci_low"] == pytest.approx(lo)
    assert d["ci_high"] == pytest.approx(hi) and d["verdict"] == "not separated"
    rev = studies.paired_seed_difference(f.assign(gprp=np.r_[[0.1] * 4, [0.5, 0.6, 0.55, 0.52]]),
                                         by="method", first="a", second="b")
    assert rev["verdict"] == "second larger"
    with pytest.raises(ValidationError, match="second"):
        studies.paired_seed_difference(f, by="method", first="a", second="zzz")


def test_correlation_ci_against_fisher_formula():
    rng = np.random.default_rng(2)
    x = rng.normal(size=12)
    y = 0.5 * x + rng.normal(size=12)
    r = studies.correlation_ci(x, y)
    mx, my = sum(x) / 12, sum(y) / 12
    num = sum((a - mx) * (b - my) for a, b in zip(x, y))
    ref = num / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert r["r"] == pytest.approx(ref)
    z, h = math.atanh(ref), 1.959963984540054 / 3.0
    assert r["ci_low"] == pytest.approx(math.tanh(z - h)) and r["ci_high"] == pytest.approx(math.tanh(z + h))
    assert math.isnan(studies.correlation_ci([1, 2, 3], [1, 2, 4])["r"])  # 3 groups: nothing
    assert math.isnan(studies.correlation_ci([1, 2, 3, 4], [1, 1, 1, 1])["r"])
    with pytest.raises(ValidationError, match="y"):
        studies.correlation_ci([1, 2], [1, 2, 3])


@pytest.mark.parametrize(("p", "n"), [(0.5, 1), (0.5, 7), (0.8, 12), (0.0, 5), (1.0, 3)])
def test_binomial_abs_diff_against_enumeration(p, n):
    total = 0.0
    for k1, k2 in itertools.product(range(n + 1), repeat=2):
        w1 = math.comb(n, k1) * p**k1 * (1 - p) ** (n - k1)
        w2 = math.comb(n, k2) * p**k2 * (1 - p) ** (n - k2)
        total += w1 * w2 * abs(k1 - k2) / n
    assert studies.binomial_abs_diff(p, n) == pytest.approx(total, abs=1e-12)


def test_noise_only_gap_edges_and_scaling():
    far = studies.noise_only_gap(8, n_targets=5, shift=60.0, n_sim=3, seed=0)
    assert far["mean"] == 0.0 and far["accuracy"] == 1.0  # perfectly separated: both audits say 1
    a = studies.noise_only_gap(16, n_targets=30, n_sim=30, seed=1)
    b = studies.noise_only_gap(256, n_targets=30, n_sim=30, seed=1)
    assert b["mean"] < a["mean"] / 2  # noise shrinks about like 1/sqrt(2R): 4x fewer at 16x models
    assert a == studies.noise_only_gap(16, n_targets=30, n_sim=30, seed=1)
    assert a["q025"] <= a["mean"] <= a["q975"]
    with pytest.raises(ValidationError, match="n_models"):
        studies.noise_only_gap(7)
    with pytest.raises(ValidationError, match="estimator"):
        studies.noise_only_gap(8, estimator="bogus")


def test_matched_accuracy_difference_by_hand():
    f = pd.DataFrame({"method": ["r", "r", "r", "c", "c"] * 3, "seed": np.repeat([0, 1, 2], 5),
                      "accuracy": [0.70, 0.80, 0.90, 0.75, 0.95] * 3,
                      "gprp": [1.0, 2.0, 4.0, 1.0, 9.0, 1.0, 2.0, 4.0, 1.4, 9.0, 1.0, 2.0, 4.0, 1.6, 9.0]})
    d = studies.matched_accuracy_difference(f, candidate="c", reference="r")
    # the 0.95 runs lie outside the reference's accuracies; at 0.75 the reference reads 1.5
    per_seed = [1.0 - 1.5, 1.4 - 1.5, 1.6 - 1.5]
    mean, _, lo, hi = _t_reference(per_seed)
    assert d["n_pairs"] == 3 and d["n_seeds"] == 3
    assert d["mean"] == pytest.approx(mean) and d["ci_low"] == pytest.approx(lo) and d["ci_high"] == pytest.approx(hi)
    assert d["verdict"] == "not separated"
    none = studies.matched_accuracy_difference(f[f.accuracy != 0.75], candidate="c", reference="r")
    assert none["verdict"] == "no overlap in accuracy" and none["n_pairs"] == 0


def test_clip_summary_labels_the_diagnostic():
    tele = pd.DataFrame({"step": [0, 0, 1, 1], "epoch": 0, "group": ["M", "F", "M", "F"],
                         "clip_bound": [10.0, 10.0, 10.0, 10.0], "grc": 1.0,
                         "frac_clipped": [0.2, 0.4, 0.0, 0.6]})
    out = studies.clip_summary(SimpleNamespace(telemetry=tele)).set_index("group")
    assert out.loc["M", "frac_clipped"] == pytest.approx(0.1) and out.loc["F", "frac_clipped"] == pytest.approx(0.5)
    assert (out["frac_clipped_is"].str.contains("non-private")).all()


def test_seed_table_floor_beside_value():
    f = pd.DataFrame({"method": ["a"] * 3, "seed": [0, 1, 2], "gprp": [1.0, 2.0, 3.0],
                      "floor_gprp": [0.1, 0.2, 0.3]})
    t = studies.seed_table(f, by=["method"], floor="floor_gprp")
    assert t["floor_mean"].iloc[0] == pytest.approx(0.2) and t["values"].iloc[0] == "1.000 2.000 3.000"


# ---------------------------------------------------------------------------- the presets' wiring
#: The repository's recorded results (the tests run from any working directory).
RESULTS = Path(__file__).resolve().parents[3] / "docs" / "results"
ISSUE14 = ("seeds-adult-lr", "controls-adult-lr", "controls-smallc-adult-lr", "clipsweep-adult-lr",
           "groups-digits-synth", "aloo-loo-leaky", "frontier-adult-lr")


def test_issue14_presets_listed_with_their_stated_time(capsys):
    assert ps_cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ISSUE14:
        assert name in out and ps.PRESETS[name].kind in ps.ISSUE14_RUNNERS
        assert ps.PRESETS[name].small, name
    assert out.count("time on 2 CPU cores:") == len(ISSUE14)
    p = ps.PRESETS["seeds-adult-lr"]
    assert len(p.seeds) >= 5 and {"dpsgds", "dpsgds-md"} <= set(p.methods) and p.n_models == 400
    assert ps.PRESETS["aloo-loo-leaky"].max_pairs == 200 and ps.PRESETS["aloo-loo-leaky"].n_targets >= 50
    assert ps.VARIANT_LABELS["dpsgds"] == "DP-SGD-S (norm)"


def test_issue14_small_dry_run_uses_the_small_sizes(capsys):
    assert ps_cli.main(["--preset", "seeds-adult-lr", "--small", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 * 5  # four methods (both DP-SGD-S statistics) x five seeds
    assert all('"n_models": 8' in ln and '"n": 2000' in ln for ln in lines)


@pytest.mark.slow
def test_issue14_controls_preset_runs_tiny(tmp_path):
    """The controls wiring end to end at a tiny size: matched noise / clip as documented."""
    out = tmp_path / "res"
    assert ps_cli.main(["--preset", "controls-adult-lr", "--small", "--seeds", "0", "1", "--n", "1200",
                    "--n-boot", "20", "--methods", "dpsgds", "--out", str(out),
                    "--cache", str(tmp_path / "cache"), "--threads", "0"]) == 0
    d = pd.read_csv(out / "controls-adult-lr_derived.csv")
    s = d[d.variant == "DP-SGD-S (norm)"].set_index("seed")
    nm = d[d.variant == "DP-SGD noise-matched to DP-SGD-S (norm)"].set_index("seed")
    cm = d[d.variant == "DP-SGD clip-matched to DP-SGD-S (norm)"].set_index("seed")
    assert np.allclose(nm.noise_std, s.noise_std) and (nm.epsilon < s.epsilon).all()
    assert np.allclose(cm["clip"], s.noise_bound.round(4)) and np.allclose(cm.epsilon, s.epsilon, rtol=0.01)
    pairs = pd.read_csv(out / "controls-adult-lr_pairs.csv")
    assert set(pairs.n_seeds) == {2} and pairs.ci_low.notna().all()
    assert "DP-SGD-S (norm)" in (out / "controls-adult-lr.md").read_text()


@pytest.mark.slow
def test_issue14_smallc_controls_preset_runs_tiny(tmp_path):
    """The small-C controls end to end at a tiny size: every row at C = 2, the pairs per C."""
    out = tmp_path / "res"
    assert ps_cli.main(["--preset", "controls-smallc-adult-lr", "--small", "--seeds", "0", "1", "--n", "1200",
                        "--n-boot", "20", "--out", str(out), "--cache", str(tmp_path / "cache"),
                        "--threads", "0"]) == 0
    d = pd.read_csv(out / "controls-smallc-adult-lr_derived.csv")
    assert set(d.C) == {2.0} and len(d) == 2 * 4
    assert set(d.loc[d.variant != "DP-SGD clip-matched to DP-SGD-S (norm)", "clip"]) == {2.0}
    s = d[d.variant == "DP-SGD-S (norm)"].set_index("seed")
    nm = d[d.variant == "DP-SGD noise-matched to DP-SGD-S (norm)"].set_index("seed")
    assert np.allclose(nm.noise_std, s.noise_std) and (s.noise_bound > 2.0).all()  # the bounds grow past C
    pairs = pd.read_csv(out / "controls-smallc-adult-lr_pairs.csv")
    assert set(pairs.C) == {2.0} and len(pairs) == 3 and pairs.ci_low.notna().all()


def test_issue14_smallc_controls_train_every_run_at_the_small_clip_bound():
    """The small-C controls plan DP-SGD, DP-SGD-S (norm) and its two controls per seed, all at C = 2."""
    p = ps.PRESETS["controls-smallc-adult-lr"]
    cfgs = ps.planned_configs(p)
    assert len(cfgs) == 4 * len(p.seeds)
    assert {float(c.train.clip) for c in cfgs} == {2.0}
    assert [c.train.method for c in cfgs[:4]] == ["dpsgd", "dpsgds", "dpsgds", "dpsgds"]
    full = ps.planned_configs(p, overrides=dict(p.cuda))  # the GPU sizes: three bounds, both variants
    assert {float(c.train.clip) for c in full} == {1.0, 2.0, 3.0} and len(full) == 3 * 7 * len(p.seeds)
    # the C = 10 controls keep their configuration's own clip bound
    assert {float(c.train.clip) for c in ps.planned_configs(ps.PRESETS["controls-adult-lr"])} == {10.0}


def test_issue14_stated_times_fit_two_cpu_cores():
    """Each CPU preset states <= 30 min of CPU, the six <= 2 h; the planner and the recorded run agree."""
    total = 0.0
    for name in ISSUE14:
        p = ps.PRESETS[name]
        assert p.minutes is not None and 0 < p.minutes <= 30, name
        assert ps.planned_seconds(p) / 60 <= p.minutes, name  # training alone fits the stated time
        m = ps.recorded_run(p, RESULTS)
        if m is not None:  # the full-size run recorded: its CPU time is within the stated time
            assert m["cpu_seconds"] / 60 <= p.minutes, (name, m["cpu_seconds"])
            assert m["loadavg_1min_during"]["samples"] >= 1 and m["nice"] == 10  # the load it ran under
        total += p.minutes
    assert total <= 120


def test_issue14_cuda_variants_keep_the_full_sizes(capsys):
    assert ps_cli.main(["--preset", "groups-digits-synth", "--device", "cuda", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sum('"model": "cnn"' in ln for ln in lines) == 3 * 5  # the CNN, 3 methods x 5 seeds
    assert all('"n_models": 400' in ln for ln in lines)
    assert ps_cli.main(["--preset", "groups-digits-synth", "--dry-run", "--device", "cpu"]) == 0
    assert '"model": "cnn"' not in capsys.readouterr().out  # the CPU preset leaves the CNN to a GPU
    assert ps_cli.main(["--preset", "aloo-loo-leaky", "--device", "cuda", "--dry-run"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["data"]["n"] is None and first["game"]["m"] == 200
    for name in ISSUE14:
        assert ps.PRESETS[name].cuda, name


# ---------------------------------------------------------------------------- claims from recorded runs
@pytest.mark.parametrize("lo, hi, expected, verdict", [
    (0.1, 0.3, "positive", "confirmed"), (-0.3, -0.1, "positive", "refuted"),
    (-0.1, 0.3, "positive", "not detectable"), (-0.3, -0.1, "negative", "confirmed"),
    (0.1, 0.3, "negative", "refuted"), (0.0, 0.3, "positive", "not detectable"),
    (float("nan"), 0.3, "positive", "not measured"),
])
def test_claim_verdict_follows_the_interval(lo, hi, expected, verdict):
    assert studies.claim_verdict(lo, hi, expected=expected) == verdict


def test_claim_verdict_rejects_bad_input():
    with pytest.raises(ValidationError, match="expected"):
        studies.claim_verdict(0.1, 0.2, expected="up")
    with pytest.raises(ValidationError, match="ci_low"):
        studies.claim_verdict(0.3, 0.2, expected="positive")


def test_claims_evidence_reads_recorded_tables(tmp_path):
    seeds = tmp_path / "seeds-adult-lr"
    seeds.mkdir()
    pd.DataFrame({"estimator": ["cross_fit"] * 3, "auditor": ["PA-ALOOA"] * 3,
                  "first": ["SGD", "DP-SGD", "SGD"], "second": ["DP-SGD", "DP-SGD-S (norm)", "DP-SGD-S (norm)"],
                  "n_seeds": [5] * 3, "mean": [0.2, 0.0, 0.2], "ci_low": [0.1, -0.1, 0.05],
                  "ci_high": [0.3, 0.1, 0.35], "verdict": ["first larger", "not separated", "first larger"]}
                 ).to_csv(seeds / "seeds-adult-lr_pairs.csv", index=False)
    aloo = tmp_path / "aloo-loo-leaky"
    aloo.mkdir()
    pd.DataFrame({"estimator": ["cross_fit"] * 2, "n_models": [64, 400], "n_targets": [50, 50],
                  "mean_abs_diff": [9.0, 6.0], "noise_only_matched_q025": [5.0, 2.0],
                  "noise_only_matched_q975": [8.0, 4.0]}).to_csv(aloo / "aloo-loo-leaky_loo_agreement.csv", index=False)
    ev = studies.claims_evidence(tmp_path)
    assert list(ev["preset"]) == ["seeds-adult-lr", "seeds-adult-lr", "aloo-loo-leaky"]  # SGD - DP-SGD-S is no claim
    assert list(ev["verdict"]) == ["confirmed", "not detectable", "beyond noise"]  # 6.0 > 4.0 at 2R = 400
    assert ev["comparison"].iloc[2].startswith("mean abs. diff. of attack accuracy ALOOA vs LOOA at 2R = 400")
    assert studies.claims_evidence(tmp_path, size="small").empty


def test_issue14_docstring_states_each_preset_time():
    """The module docstring's table says each preset's stated minutes and, once run, its measured CPU time."""
    for name in ISSUE14:
        line = next(ln for ln in ps.__doc__.splitlines() if ln.startswith(name + " "))
        assert f" {ps.PRESETS[name].minutes:g} min " in line, line
        m = ps.recorded_run(ps.PRESETS[name], RESULTS)
        assert (f"{m['cpu_seconds'] / 60:.1f} min CPU" in line) if m else ("not yet run" in line), line


def test_clipsweep_chart_reads_the_recorded_sweep_and_controls(tmp_path):
    pytest.importorskip("altair")
    assert studies.clipsweep_chart(tmp_path) is None  # nothing recorded there
    spec = studies.clipsweep_chart(RESULTS).to_dict()
    variants = {r["variant"] for rows in spec["datasets"].values() for r in rows if "variant" in r}
    assert {"DP-SGD", "DP-SGD-S (norm)", "DP-SGD-S (mean direction)"} <= variants
    assert any("noise-matched" in v for v in variants) and any("clip-matched" in v for v in variants)
    spec = studies.clipsweep_chart(RESULTS, controls=False).to_dict()
    assert not any("matched" in r.get("variant", "") for rows in spec["datasets"].values() for r in rows)
