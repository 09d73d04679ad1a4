"""The one configuration schema: every face (CLI, panel, notebooks, grids) reads it."""

from __future__ import annotations

import dataclasses

import pytest

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab._core.vocabulary import AUDITORS, METHODS, default_delta
from fairpriv_lab.experiment.config import (
    AuditConfig,
    DataConfig,
    ExperimentConfig,
    GameConfig,
    Param,
    TrainConfig,
    default_of,
    lookup_key,
    schema,
)

KINDS = {"int", "float", "choice", "choices", "ints", "bool", "str", "mapping", "device"}


def test_every_field_is_declared_once_with_help_and_a_valid_default():
    s = schema()
    sections = {"data": DataConfig, "train": TrainConfig, "game": GameConfig, "audit": AuditConfig}
    expected = {f"{name}.{f.name}" for name, cls in sections.items() for f in dataclasses.fields(cls)}
    expected |= {f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in sections}
    assert set(s) == expected
    for key, p in s.items():
        assert isinstance(p, Param) and p.kind in KINDS and p.help.strip(), key
        if p.kind in ("int", "float", "choice", "bool", "device"):
            p.check(key, p.default)  # the default passes its own check
    cfg = ExperimentConfig()
    for key, p in s.items():
        section, _, name = key.rpartition(".")
        value = getattr(getattr(cfg, section), name) if section else getattr(cfg, name)
        assert value == p.default, key
    assert s["train.method"].choices == METHODS and s["audit.auditors"].choices == AUDITORS


def test_one_bound_for_n_everywhere():
    """data.n had three lower bounds (4 in the config, 10 in the panel, 100 in notebooks)."""
    from fairpriv_lab.sweep.notebook_tools import check_parameters
    from fairpriv_lab.ui.panel import PanelSettings

    msg = "to be an integer in [10, inf]"
    with pytest.raises(ConfigError, match=rf"^Expected data.n=9 {msg.replace('[', '.').replace(']', '.')}"):
        ExperimentConfig(data={"n": 9})
    with pytest.raises(ConfigError, match=r"^Expected n=9 to be an integer in \[10, inf\]"):
        PanelSettings(n=9)
    with pytest.raises(ConfigError, match=r"^Expected n=9 to be an integer in \[10, inf\]"):
        check_parameters(n=9)
    assert ExperimentConfig(data={"n": 10}, game={"m": 4}).data.n == 10


def test_panel_and_notebooks_use_the_schema_messages():
    from fairpriv_lab.sweep.notebook_tools import check_parameters
    from fairpriv_lab.ui.panel import PanelSettings

    for call in (lambda: PanelSettings(tau=0.5), lambda: check_parameters(tau=0.5)):
        with pytest.raises(ConfigError, match=r"^Expected tau=0.5 in \[1, inf\)"):
            call()
    with pytest.raises(ConfigError, match=r"^Expected train.tau=0.5 in \[1, inf\)"):
        TrainConfig(tau=0.5)
    assert PanelSettings().clip == default_of("train.clip")
    assert PanelSettings().batch_size == default_of("train.batch_size")


def test_lookup_key_is_the_one_resolver():
    keys = ["data.seed", "train.epsilon", "seed", "data.name"]
    assert lookup_key("epsilon", keys, {}) == ("train.epsilon", ())
    assert lookup_key("seed", keys, {}) == ("seed", ())  # an exact key wins over a last part
    assert lookup_key("dataset", keys, {"dataset": "data.name"}) == ("data.name", ())
    assert lookup_key("nope", keys, {}) == (None, ())
    assert lookup_key("x", ["a.x", "b.x"], {}) == (None, ("a.x", "b.x"))
    assert ExperimentConfig.KEY_ALIASES == {"dataset": "data.name", "data_seed": "data.seed",
                                           "auditor": "audit.auditors"}


def test_sweep_grid_reads_the_config_aliases():
    from fairpriv_lab.sweep.grid import schema_of

    s = schema_of(ExperimentConfig)
    assert s.canonical("dataset", "base") == "data.name"
    assert s.canonical("epsilon", "grid") == "train.epsilon"
    with pytest.raises(ConfigError, match="Unknown key 'nope' in grid"):
        s.canonical("nope", "grid")


def test_default_delta_is_one_rule():
    assert default_delta(1_000) == 1e-5 and default_delta(1_000_000) == pytest.approx(1e-7)
    assert default_of("train.delta") is None


def test_adding_a_field_is_one_line(monkeypatch):
    """A field declared with param() is validated, resolvable, in to_dict and a CLI option."""
    from fairpriv_lab.cli import commands
    from fairpriv_lab.experiment import config as C

    @dataclasses.dataclass(frozen=True)
    class Train2(TrainConfig):
        warm_start: bool = C.param(False, "start every model from the same initial weights", "bool")

    monkeypatch.setitem(C._SECTIONS, "train", Train2)
    monkeypatch.setattr(C, "TrainConfig", Train2)
    assert schema()["train.warm_start"].help.startswith("start")
    with pytest.raises(ConfigError, match=r"^Expected train.warm_start='yes' to be True or False"):
        Train2(warm_start="yes")
    cfg = ExperimentConfig(train=Train2())
    assert cfg.replace(warm_start=True).train.warm_start is True
    assert cfg.to_dict()["train"]["warm_start"] is False
    options = {key: opt for key, opt, *_ in commands._options()}
    assert options["train.warm_start"] == "--warm-start"
    args = commands.build_parser().parse_args(["audit", "--warm-start", "true"])
    assert getattr(args, "train.warm_start") is True


# ---------------------------------------------------------------------------- the policies' knobs
def test_policy_knobs_are_declared_once_on_the_policy():
    """DPSGDS/DPSGDF carry the knobs; the training section shows the same declarations."""
    from fairpriv_lab._core.schema import params_of
    from fairpriv_lab.engine.privacy import DPSGDF, DPSGDS

    s = schema()
    for name, p in params_of(DPSGDS).items():
        assert s[f"train.{name}"] is p, name  # the same Param object, not a copy
        assert getattr(DPSGDS(), name) == default_of(f"train.{name}") == getattr(TrainConfig(), name)
    assert s["train.count_noise"] == params_of(DPSGDF)["count_noise"]  # both from _count_noise()
    assert DPSGDF().count_noise == default_of("train.count_noise")
    assert "train.clip_floor" not in s  # no copy of DPSGDS.floor under another name


def test_a_string_method_builds_the_default_policy_and_a_policy_carries_its_knobs():
    from fairpriv_lab.engine.privacy import DPSGD, DPSGDF, DPSGDS, SGD

    assert TrainConfig().policy == SGD()
    assert TrainConfig(method="dpsgd", epsilon=8.0).policy == DPSGD()
    assert TrainConfig(method="dpsgds", epsilon=8.0).policy == DPSGDS()
    assert TrainConfig(method="dpsgdf", epsilon=8.0).policy == DPSGDF()
    pol = DPSGDS(tau=3.0, floor=0.5, statistic="mean_direction", stat_clip=4.0)
    t = TrainConfig(method=pol, epsilon=8.0)
    assert (t.method, t.tau, t.floor, t.statistic, t.stat_clip) == ("dpsgds", 3.0, 0.5, "mean_direction", 4.0)
    assert t.policy == pol
    assert t == TrainConfig(method="dpsgds", epsilon=8.0, tau=3.0, floor=0.5,
                            statistic="mean_direction", stat_clip=4.0)
    assert TrainConfig(method=DPSGDF(count_noise=2.0), noise_multiplier=1.0).policy == DPSGDF(count_noise=2.0)
    # a knob set beside the policy must agree with it
    assert TrainConfig(method=pol, epsilon=8.0, tau=3.0).tau == 3.0
    with pytest.raises(ConfigError, match=r"^Expected train.tau=4.0 to be left unset or to equal the policy's tau=3.0"):
        TrainConfig(method=pol, epsilon=8.0, tau=4.0)
    # the section still validates the knobs with their one declaration
    with pytest.raises(ConfigError, match=r"^Expected train.floor=3 in \[0, 2\]"):
        TrainConfig(method="dpsgds", epsilon=8.0, floor=3)


def test_policy_objects_through_the_experiment_config():
    from fairpriv_lab.engine.privacy import DPSGDS

    base = ExperimentConfig(train={"method": "dpsgds", "epsilon": 8.0, "tau": 5.0})
    cfg = base.replace(method=DPSGDS(tau=3.0))  # the policy's knobs replace the section's
    assert (cfg.train.method, cfg.train.tau) == ("dpsgds", 3.0) and cfg.train.epsilon == 8.0
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.digest == ExperimentConfig(train={"method": "dpsgds", "epsilon": 8.0, "tau": 3.0}).digest
    assert ExperimentConfig(train={"method": DPSGDS(tau=3.0), "epsilon": 8.0}) == cfg


def test_custom_policies_and_other_objects_are_refused_with_the_reason():
    from fairpriv_lab.engine.privacy import DPSGDS

    class Mine(DPSGDS):
        pass

    with pytest.raises(ConfigError, match=r"^Expected train.method='Mine' to be one of 'sgd'.*"
                                          r"train_ensemble\(method=policy\)"):
        TrainConfig(method=Mine(), epsilon=1.0)
    with pytest.raises(ConfigError, match=r"^Expected train.method=3 to be one of 'sgd', 'dpsgd'"):
        TrainConfig(method=3)


@pytest.mark.parametrize("method, knob, value", [
    ("dpsgds", "tau", 3.0), ("dpsgds", "statistic", "mean_direction"), ("dpsgds", "stat_noise_ratio", 2.0),
    ("dpsgds", "count_noise", 2.0), ("dpsgds", "smoothing", 0.5), ("dpsgds", "floor", 0.5),
    ("dpsgds", "stat_clip", 4.0), ("dpsgdf", "count_noise", 2.0),
])
def test_cache_keys_distinguish_every_knob_value(method, knob, value):
    from fairpriv_lab.engine.privacy import as_method

    base = ExperimentConfig(train={"method": method, "epsilon": 8.0})
    changed = base.replace(**{f"train.{knob}": value})
    assert changed.digest != base.digest
    by_policy = base.replace(method=as_method(method, **{knob: value}))
    assert by_policy.digest == changed.digest  # the same training, the same cache entry
    if method == "dpsgdf":  # DP-SGD-F has no tau: changing it changes nothing
        assert base.replace(tau=3.0).digest == base.digest
