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
