"""plan(config): size, memory and time estimates before training; refusal of the impossible."""

import time

import pytest

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.experiment import ExperimentConfig
from fairpriv_lab.experiment.plan import Plan, PlanWarning, plan


def _cfg(**over):
    base = {"data": {"name": "adult"}, "train": {"model": "lr", "method": "sgd"},
            "game": {"kind": "half", "m": None, "n_models": 16}, "device": "cpu"}
    for section, values in over.items():
        base[section] = {**base.get(section, {}), **values} if isinstance(values, dict) else values
    return ExperimentConfig.from_dict(base)


def test_plan_counts_follow_the_config():
    p = plan(_cfg())
    assert isinstance(p, Plan) and p.device == "cpu" and p.model == "lr" and p.n_models == 16
    # Adult: 45,222 records, 80 % train, half each: 18,089 per model; 20 epochs of batch 256.
    assert p.records_per_model == round(45_222 * 0.8) // 2
    assert p.steps == round(20 * p.records_per_model / 256)
    assert p.sample_grads == 16 * p.steps * 256
    assert 0 < p.peak_bytes < p.free_bytes and p.seconds > 0
    assert p.chunk_models % 2 == 0 and 2 <= p.chunk_models <= 16
    line = str(p)
    assert line.startswith("plan: 16 lr models") and "GB" in line and "chunk_models=" in line


def test_more_models_cost_proportionally_more():
    a, b = plan(_cfg()), plan(_cfg(game={"n_models": 64}))
    assert b.sample_grads == 4 * a.sample_grads
    assert 1.0 < b.seconds / a.seconds <= 4.0 + 1e-9  # a fixed per-step overhead is shared
    assert b.peak_bytes > a.peak_bytes


def test_chunk_targets_about_thirty_seconds():
    p = plan(_cfg(game={"n_models": 400}, train={"model": "mlp"}))
    assert p.chunk_models < 400
    assert 10 <= p.seconds_per_chunk <= 60


@pytest.mark.parametrize("over, names", [
    ({"game": {"n_models": 10**6}}, ["memory", "game.n_models"]),
    ({"train": {"model": "mlp", "hidden": 10**6}, "game": {"n_models": 400}}, ["memory"]),
    ({"train": {"epochs": 10**9}}, ["would take", "train.epochs"]),
    ({"data": {"name": "mnist"}, "train": {"model": "cnn"}, "game": {"n_models": 400}},
     ["would take", "cnn", "GPU"]),
])
def test_far_beyond_the_machine_is_refused_within_a_second(over, names):
    cfg = _cfg(**over)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        plan(cfg)
    assert time.perf_counter() - t0 < 1.0
    for name in names:
        assert name in str(err.value)
    assert "about" in str(err.value)  # the estimate


def test_time_budget_warns_and_limits_can_be_lifted():
    cfg = _cfg(game={"n_models": 400})
    with pytest.warns(PlanWarning, match="time budget"):
        plan(cfg, time_budget=1.0)
    huge = _cfg(train={"epochs": 10**9})
    p = plan(huge, time_limit=None, time_budget=None)
    assert p.seconds > 86400


def test_run_refuses_before_loading_anything(monkeypatch):
    import fairpriv_lab.experiment.runner as runner

    def boom(*args, **kwargs):
        raise AssertionError("data loaded before the plan refused the run")

    monkeypatch.setattr(runner, "load_experiment_data", boom)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="memory"):
        runner.run(_cfg(game={"n_models": 10**6}), cache=False)
    assert time.perf_counter() - t0 < 1.0


def test_run_time_limit_refuses_early_lifts_and_names_bad_values(monkeypatch):
    import fairpriv_lab.experiment.runner as runner
    from fairpriv_lab.experiment.plan import DEFAULT_TIME_LIMIT

    def boom(*args, **kwargs):
        raise AssertionError("data loaded before the plan refused the run")

    monkeypatch.setattr(runner, "load_experiment_data", boom)
    cfg = _cfg(game={"n_models": 400})  # about a minute of CPU: under the default, over 1 s
    assert plan(cfg).seconds < DEFAULT_TIME_LIMIT
    with pytest.raises(ConfigError, match=r"above the limit of .*time_limit=None"):
        runner.run(cfg, cache=False, time_limit=1.0)
    for bad in (0, -5.0, "1h", True):
        with pytest.raises(ConfigError, match="time_limit"):
            runner.run(cfg, cache=False, time_limit=bad)
    far = _cfg(data={"name": "mnist"}, train={"model": "cnn"}, game={"n_models": 400})
    with pytest.raises(ConfigError, match="would take"):
        runner.run(far, cache=False)  # the default limit refuses it
    with pytest.raises(AssertionError, match="data loaded"):  # lifted: the plan passes, loading starts
        runner.run(far, cache=False, time_limit=None)
