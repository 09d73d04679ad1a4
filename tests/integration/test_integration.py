"""End-to-end tests of run(): real training, caching, resume, corruption, soundness, agreement."""

import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fairpriv_lab._core.exceptions import ConfigError, DataWarning
from fairpriv_lab.experiment.cache import Cache, CacheWarning
from fairpriv_lab.experiment.runner import ExperimentConfig, compare, format_comparison, run

ROOT = Path(__file__).resolve().parents[2]
# tiny tensors: one intra-op thread avoids OpenMP stalls on the shared 2-core machine
pytestmark = pytest.mark.usefixtures("torch_one_thread")

# A tiny, fast setup for the plumbing: 200 synthetic records (160 train), LR, 2 epochs.
TINY = {
    "data": {"name": "synthetic", "n": 200, "options": {"group_sizes": [0.75, 0.25], "outlier_rate": [0.0, 0.2]}},
    "train": {"model": "lr", "epochs": 2, "batch_size": 40, "lr": 0.2},
    "game": {"kind": "aloo", "n_models": 4, "m": 40},
    "audit": {"n_boot": 100, "min_group_size": 5},
    "chunk_models": 2,
    "device": "cpu",
}


def tiny(**overrides):
    return ExperimentConfig.from_dict(TINY).replace(**overrides)


def test_run_end_to_end_and_cached_rerun(tmp_path):
    cfg = tiny()
    res = run(cfg, cache=tmp_path)
    n_train = 160
    assert res.losses.shape == (4, n_train) and res.losses.dtype == np.float32
    assert res.game.membership.shape == (4, n_train)
    assert res.chunks_trained == 2 and res.chunks_loaded == 0 and not res.from_cache
    assert math.isinf(res.epsilon)
    assert 0.4 < res.accuracy <= 1.0
    s = res.summary()
    assert list(s["auditor"].unique()) == ["PA-ALOOA", "PA-GA", "PA-GBA"]
    assert set(s["group"]) == {"g0", "g1"}
    assert s.groupby("auditor")["n"].sum().tolist() == [40, 40, 40]
    for col in ("gpr", "ci_low", "ci_high", "floor", "gprp", "gprp_ci_low", "gprp_ci_high", "empirical_epsilon"):
        assert np.all(np.isfinite(s[col])), col
    assert np.all(s["ci_low"] <= s["gpr"]) and np.all(s["gpr"] <= s["ci_high"])
    # second run: served from the cache and identical (its speed is measured by
    # benchmarks/bench_cache.py, not timed here: the machine running the tests is shared)
    again = run(cfg, cache=tmp_path)
    assert again.from_cache and again.chunks_loaded == 2 and again.chunks_trained == 0
    np.testing.assert_array_equal(again.losses, res.losses)
    assert again.summary().equals(res.summary())
    # changing only the audit reuses the trained models
    other = run(cfg.replace(n_boot=50, estimator="in_sample"), cache=tmp_path)
    assert other.chunks_loaded == 2 and other.chunks_trained == 0 and not other.from_cache
    np.testing.assert_array_equal(other.losses, res.losses)
    # two-way bootstrap (model pairs + records) for PA-ALOOA, cached with its replicates
    pairs = run(cfg.replace(bootstrap="pairs"), cache=tmp_path)
    assert pairs.group_risk["PA-ALOOA"].bootstrap == "supplied"
    assert pairs.group_risk["PA-GA"].bootstrap == "records"
    assert pairs.summary()["gpr"].equals(res.summary()["gpr"])
    assert not pairs.summary()["ci_low"].equals(res.summary()["ci_low"])
    assert run(cfg.replace(bootstrap="pairs"), cache=tmp_path).summary().equals(pairs.summary())
    # files
    paths = res.save(tmp_path / "out")
    assert {p.name for p in paths.values()} >= {"summary.csv", "records.csv", "result.json"}
    import json

    d = json.loads(paths["json"].read_text())
    assert d["epsilon"] == "inf" and d["config"] == cfg.to_dict()
    assert "PA-ALOOA" in res.table() and "GPRP" in res.table()


def test_confidence_signal_end_to_end(tmp_path):
    """audit.signal='confidence' reaches every auditor, the pair bootstrap and empirical ε.

    Each stage must score the engine's logit-scaled confidences (not losses, and not
    confidences re-derived from float32 losses): the run equals the audit functions called
    directly on ``res.confidences`` with the run's audit seed, and a cached re-run equals it.
    """
    from fairpriv_lab.audit.attacks import global_risk, record_risk
    from fairpriv_lab.audit.empirical import empirical_epsilon
    from fairpriv_lab.audit.risk import pair_bootstrap
    from fairpriv_lab.experiment.runner import _AUDIT_STREAM, _seed, load_experiment_data

    cfg = tiny(signal="confidence", bootstrap="pairs", n_boot=20)
    res = run(cfg, cache=tmp_path)
    seed = _seed(cfg, _AUDIT_STREAM)
    game = res.game
    _, train, _ = load_experiment_data(cfg.data)
    groups = train.g
    kw = dict(records=game.audit_idx, groups=groups, signal="confidence", confidences=res.confidences)
    # a scrambled confidence array gives different results, so the comparison has power
    wrong = np.ascontiguousarray(res.confidences[:, ::-1])
    want = record_risk(res.losses, game.membership, seed=seed, **kw)
    got = res.record_risk["PA-ALOOA"]
    assert got.signal == "confidence"
    np.testing.assert_array_equal(got.accuracy, want.accuracy)
    np.testing.assert_array_equal(got.floor, want.floor)
    other = record_risk(res.losses, game.membership, seed=seed, **{**kw, "confidences": wrong})
    assert not np.array_equal(other.accuracy, want.accuracy)
    for auditor in ("PA-GA", "PA-GBA"):
        want = global_risk(res.losses, game.membership, by_group=auditor == "PA-GBA",
                           estimator=cfg.audit.estimator, seed=seed, **kw)
        np.testing.assert_array_equal(res.record_risk[auditor].accuracy, want.accuracy)
    reps = pair_bootstrap(res.losses, game.membership, n_groups=2, n_boot=20, seed=seed, **kw)
    np.testing.assert_array_equal(res.group_risk["PA-ALOOA"].boot, reps)
    emp = empirical_epsilon(res.losses, game.membership, delta=res.delta, seed=seed,
                            group_names=("g0", "g1"), **kw)
    np.testing.assert_array_equal(res.empirical_record, emp.per_record)
    again = run(cfg, cache=tmp_path)
    assert again.from_cache and again.summary().equals(res.summary())
    assert again.record_risk["PA-ALOOA"].signal == "confidence"


@pytest.mark.slow
def test_resume_equals_uninterrupted_in_process(tmp_path):
    cfg = tiny(n_models=6)
    full = run(cfg, cache=tmp_path / "a")
    cache_b = Cache(tmp_path / "b")
    run(cfg, cache=cache_b)
    key = full.cache_key
    for item in ("chunk-00001", "chunk-00002"):
        cache_b.delete(key, item)
    resumed = run(cfg, cache=cache_b)
    assert (resumed.chunks_loaded, resumed.chunks_trained) == (1, 2)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    np.testing.assert_array_equal(resumed.test_accuracy, full.test_accuracy)


@pytest.mark.slow
def test_chunk_seeds_differ_and_seed_matters():
    a = run(tiny(), cache=False)
    b = run(tiny(seed=1), cache=False)
    assert not np.array_equal(a.losses, b.losses)
    c = run(tiny(), cache=False)
    np.testing.assert_array_equal(a.losses, c.losses)
    # the two chunks are different streams: models 0 and 2 share a training set in no way
    assert not np.array_equal(a.losses[:2], a.losses[2:])


def test_corrupted_chunk_is_detected_reported_and_recomputed(tmp_path):
    cfg = tiny()
    first = run(cfg, cache=tmp_path)
    npz = tmp_path / first.cache_key / "chunk-00001.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.warns(CacheWarning, match=r"chunk-00001\.npz failed verification \(truncated"):
        again = run(cfg, cache=tmp_path)
    assert (again.chunks_loaded, again.chunks_trained) == (1, 1)
    np.testing.assert_array_equal(again.losses, first.losses)
    # the audit file too
    audit = next((tmp_path / first.cache_key).glob("audit-*.npz"))
    data = bytearray(audit.read_bytes())
    data[100] ^= 0xFF
    audit.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match=r"audit-.*\.npz failed verification \(sha256 mismatch\)"):
        third = run(cfg, cache=tmp_path)
    assert not third.from_cache and third.summary().equals(first.summary())


def test_run_time_config_errors(tmp_path):
    one_group = {"group_sizes": [1.0], "separation": 2.0, "outlier_rate": 0.0}
    with pytest.raises(ConfigError, match=r"train.method='dpsgds' on data with at least two groups"), \
            pytest.warns(DataWarning, match="single group"):
        run(tiny(method="dpsgds", epsilon=5.0, **{"data.options": one_group}), cache=False)
    with pytest.raises(ConfigError, match=r"game.targets=\(500,\) to index the 160 training"):
        run(tiny(kind="loo", targets=(500,), n_models=2, auditors=("PA-LOOA",)), cache=False)
    # 160 training records, 40 audited: each model trains on 120 + 20 = 140; nothing is cached
    with pytest.raises(ConfigError, match=re.escape(
            "Expected train.batch_size=141 to be <= the smallest training set of the 'aloo' game (140 records)")):
        run(tiny(batch_size=141), cache=tmp_path)
    assert Cache(tmp_path).list() == []
    # one model pair per audited record: refused before any training, for every game kind
    for kw, need in ((dict(n_models=2), 4), (dict(n_models=2, estimator="in_sample"), 4),
                     (dict(kind="loo", targets=(1, 5), n_models=4, auditors=("PA-LOOA",)), 8)):
        with pytest.raises(ConfigError, match=re.escape(
                f"Expected game.n_models={kw['n_models']} to give every audited record at least 2 "
                f"model pairs (game.n_models >= {need} for kind='{kw.get('kind', 'aloo')}')")):
            run(tiny(**kw), cache=tmp_path)
    assert Cache(tmp_path).list() == []


def test_divergence_names_the_model_of_the_game_and_keeps_finished_chunks(tmp_path, monkeypatch):
    """A chunk that diverges is reported with the game's model index; earlier chunks stay cached."""
    import fairpriv_lab.engine.training as training
    from fairpriv_lab._core.exceptions import TrainingDivergedError

    real = training.train_ensemble
    calls = []

    def second_chunk_diverges(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise TrainingDivergedError("Model 1 diverged (NaN or infinite loss) in epoch 1", model=1, epoch=1,
                                        partial="partial of chunk 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_ensemble", second_chunk_diverges)
    cache = Cache(tmp_path)
    with pytest.raises(TrainingDivergedError, match=re.escape(
            "Model 3 of the game (chunk 1) diverged (NaN or infinite loss) in epoch 1; lower train.lr "
            "(now 0.2)")) as err:
        run(tiny(), cache=cache)  # chunk_models=2: models 2 and 3 form chunk 1
    assert (err.value.model, err.value.epoch, err.value.partial) == (3, 1, "partial of chunk 1")
    assert [e.items for e in cache.list()] == [("chunk-00000",)]
    monkeypatch.undo()
    resumed = run(tiny(), cache=cache)
    assert (resumed.chunks_loaded, resumed.chunks_trained) == (1, 1)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fairpriv_lab.experiment.runner import ExperimentConfig, run
    cfg = ExperimentConfig.from_dict({cfg!r})
    marker = Path({marker!r})

    def progress(stage, done, total):
        # after the first chunk is cached, signal the test and stall like a long run would
        cached = list(Path({cache!r}).glob("*/chunk-00000.json"))
        if stage == "train" and cached and not marker.exists():
            marker.write_text("chunk 0 cached")
            time.sleep(120)

    run(cfg, cache={cache!r}, progress=progress)
    """
)


@pytest.mark.slow
def test_kill_and_resume_in_subprocess(tmp_path):
    cfg = tiny()
    marker = tmp_path / "marker"
    script = _KILL_SCRIPT.format(cfg=cfg.to_dict(), marker=str(marker), cache=str(tmp_path / "c"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the first chunk was never cached"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    cache = Cache(tmp_path / "c")
    entry = [e for e in cache.list()]
    assert len(entry) == 1 and entry[0].items == ("chunk-00000",)
    resumed = run(cfg, cache=cache)
    assert (resumed.chunks_loaded, resumed.chunks_trained) == (1, 1)
    uninterrupted = run(cfg, cache=False)
    np.testing.assert_array_equal(resumed.losses, uninterrupted.losses)
    np.testing.assert_array_equal(resumed.confidences, uninterrupted.confidences)


@pytest.mark.slow
def test_compare_and_format(tmp_path):
    a = run(tiny(), cache=tmp_path)
    b = run(tiny(method="dpsgd", noise_multiplier=1.0), cache=tmp_path)
    df = compare([a, b])
    assert list(df["method"]) == ["sgd"] * 3 + ["dpsgd"] * 3
    assert {"gpr[g0]", "gpr_low[g1]", "gprp", "floor_mean"} <= set(df.columns)
    text = format_comparison([a, b])
    assert "dpsgd" in text and "GPRP" in text
    assert 0 < b.epsilon < math.inf and b.noise_multiplier == 1.0
    # GPRP is shown with its null references; the release's privacy is stated
    assert {"floor_gprp", "minority_minus_majority", "mmm_ci_low", "mmm_ci_high"} <= set(df.columns)
    assert "floor GPRP" in text and "min-maj" in text
    s = b.summary()
    assert {"gprp_floor", "minority_minus_majority", "mmm_ci_low", "mmm_ci_high", "private",
            "empirical_epsilon_dp"} <= set(s.columns)
    assert s["private"].all() and not a.summary()["private"].any()
    assert np.all(s["mmm_ci_low"] <= s["minority_minus_majority"])
    assert "private release" in b.table() and "floor GPRP" in b.table()
    assert b.reference_epsilon > 2 * b.epsilon and b.to_dict()["private"] is True
    assert b.telemetry["grc"].isna().all()  # no un-noised telemetry by default for DP


# A leaky setup for the science checks: 160 synthetic records (128 train) with 100 features,
# so that logistic regression nearly interpolates its training set and memorises records.
LEAKY = {
    "data": {"name": "synthetic", "n": 160, "options": {
        "group_sizes": [0.6, 0.4], "outlier_rate": [0.0, 0.3], "separation": [3.0, 1.0], "n_features": 100}},
    "train": {"model": "lr", "epochs": 20, "batch_size": 64, "lr": 1.0},
    "game": {"kind": "aloo", "n_models": 32, "m": 32},
    "audit": {"n_boot": 200, "min_group_size": 2, "auditors": ["PA-ALOOA"]},
    "chunk_models": 256,
    "device": "cpu",
}


@pytest.mark.slow
def test_aloo_agrees_with_exact_loo():
    """PA-ALOOA (one population of models) vs PA-LOOA (two models per target), 2R = 32.

    Measured on this setup: mean |acc_ALOOA - acc_LOOA| = 0.105 over 8 targets with a
    correlation of 0.93 (the source paper reports 0.024 at 2R = 400; at 2R = 32 the binomial
    noise alone gives about 0.1). LOOA reads somewhat higher: it is the exact worst case.
    """
    from fairpriv_lab.audit.attacks import agreement

    base = ExperimentConfig.from_dict(LEAKY)
    aloo = run(base, cache=False)
    targets = tuple(int(x) for x in aloo.game.audit_idx[::4][:8])
    loo = run(base.replace(kind="loo", targets=targets, n_models=32 * len(targets),
                           auditors=("PA-LOOA",)), cache=False)
    ag = agreement(aloo.record_risk["PA-ALOOA"], loo.record_risk["PA-LOOA"])
    assert ag.records.tolist() == sorted(targets)
    assert ag.mean_abs_diff < 0.15, ag.mean_abs_diff
    assert ag.correlation > 0.7, ag.correlation
    assert np.all(np.abs(ag.group_means["difference"]) < 0.3), ag.group_means


@pytest.mark.slow
def test_empirical_epsilon_never_exceeds_accounted_epsilon():
    """Soundness on real DP-SGD runs at several ε, with a leaky SGD run showing the bound has power.

    ALOOA is a substitution game, so its empirical ε is bounded by the substitution budget at δ
    (group privacy of size 2: above 2ε); the check also holds at ε itself on this setup, which
    we assert for the DP runs' per-group bounds as well as the matching budget.
    """
    base = ExperimentConfig.from_dict(LEAKY)
    sgd = run(base, cache=False)
    leak = sgd.empirical_epsilon["epsilon"].max()
    assert leak > 1.0, sgd.empirical_epsilon  # the audit detects leakage when there is some
    for eps in (0.5, 1.0, 4.0):
        res = run(base.replace(method="dpsgd", epsilon=eps, clip=1.0), cache=False)
        assert res.epsilon <= eps * 1.01
        # substitution game: the budget at delta is (2 eps_1, (1 + e^eps_1) delta_1), above 2 eps
        # (this asserted == 2 eps, which is not a valid budget at a fixed delta)
        assert res.reference_epsilon > 2 * res.epsilon
        per_group = res.empirical_epsilon["epsilon"].to_numpy()
        assert np.all(per_group <= res.reference_epsilon), (eps, res.empirical_epsilon)
        assert np.all(res.empirical_record <= res.reference_epsilon)
        assert np.all(per_group <= res.epsilon), (eps, res.empirical_epsilon)
        print(f"eps={res.epsilon:.3f}: per-group empirical eps {np.round(per_group, 3).tolist()}")
    print(f"SGD per-group empirical eps {np.round(sgd.empirical_epsilon['epsilon'].to_numpy(), 3).tolist()}")
