import json

import pytest

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.experiment.config import (
    AuditConfig,
    DataConfig,
    ExperimentConfig,
    GameConfig,
    TrainConfig,
)


def test_defaults_round_trip_through_json():
    cfg = ExperimentConfig(
        data={"name": "synthetic", "n": 400, "options": {"group_sizes": [0.9, 0.1]}},
        train={"method": "dpsgds", "epsilon": 3.0, "model": "lr"},
        game={"n_models": 8, "m": 40},
    )
    d = json.loads(json.dumps(cfg.to_dict()))
    back = ExperimentConfig.from_dict(d)
    assert back == cfg
    assert back.data.options == (("group_sizes", (0.9, 0.1)),)
    assert back.digest == cfg.digest
    assert isinstance(back.audit.auditors, tuple)


def test_replace_flat_and_dotted_keys():
    cfg = ExperimentConfig()
    c2 = cfg.replace(**{"train.method": "dpsgd", "train.epsilon": 1.0, "n_models": 8, "dataset": "digits"})
    assert (c2.train.method, c2.train.epsilon, c2.game.n_models, c2.data.name) == ("dpsgd", 1.0, 8, "digits")
    assert c2.replace(seed=3).seed == 3 and c2.replace(seed=3).data.seed == 0  # flat seed = top level
    assert c2.replace(data_seed=3).data.seed == 3
    # switching to SGD drops the stale budget; switching epsilon -> sigma drops epsilon
    assert c2.replace(method="sgd").train.epsilon is None
    c3 = c2.replace(noise_multiplier=1.2)
    assert (c3.train.epsilon, c3.train.noise_multiplier) == (None, 1.2)
    assert cfg == ExperimentConfig()  # frozen: replace returns copies


def test_replace_unknown_key_lists_keys():
    with pytest.raises(ConfigError, match=r"Expected override='epsilonn' to be one of .*train\.epsilon"):
        ExperimentConfig().replace(epsilonn=1.0)


def test_from_dict_unknown_section_key():
    with pytest.raises(ConfigError, match=r"Expected TrainConfig key='eps' to be one of model, hidden"):
        ExperimentConfig.from_dict({"train": {"eps": 1.0}})


def test_hash_normalises_irrelevant_fields():
    base = ExperimentConfig(train={"method": "sgd", "model": "lr"})
    # hidden is irrelevant for LR, tau for SGD, device never part of the key
    same = base.replace(hidden=17, tau=5.0, device="cpu", clip=3.0)
    assert same.digest == base.digest
    assert base.replace(lr=0.5).digest != base.digest
    assert base.replace(n_boot=10).digest != base.digest
    # the training part excludes the audit settings: changing them reuses the trained models
    assert base.replace(n_boot=10).training_key_payload() == base.training_key_payload()
    # data.group=None and the explicit default name the same data
    assert ExperimentConfig(data={"group": "sex"}).digest == ExperimentConfig().digest
    dp = ExperimentConfig(train={"method": "dpsgd", "epsilon": 2.0})
    assert dp.replace(tau=5.0).digest == dp.digest
    assert dp.replace(method="dpsgds").digest != dp.digest


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"train": {"epsilon": 1.0}}, r"Expected train.epsilon=1.0 to be None with method='sgd'\. Plain SGD"),
        ({"train": {"noise_multiplier": 1.0}}, r"train.noise_multiplier=1.0 to be None"),
        ({"train": {"method": "dpsgd"}}, r"exactly one of train.epsilon .* and train.noise_multiplier"),
        ({"train": {"method": "dpsgd", "epsilon": 1.0, "noise_multiplier": 1.0}}, "exactly one of"),
        ({"train": {"method": "dp"}}, r"Expected train.method='dp' to be one of 'sgd', 'dpsgd', 'dpsgds', 'dpsgdf'"),
        ({"train": {"model": "cnn"}}, r"Expected train.model='cnn' to be 'lr' or 'mlp' for the tabular dataset 'adult'"),
        ({"train": {"epsilon": -1.0, "method": "dpsgd"}}, r"Expected train.epsilon=-1.0 in \(0, inf\)"),
        ({"train": {"delta": 1.0, "method": "dpsgd", "epsilon": 1.0}}, r"train.delta=1.0 in \(0, 1\)"),
        ({"train": {"epochs": 0}}, r"train.epochs=0 to be an integer in \[1, inf\]"),
        ({"train": {"tau": 0.5}}, r"train.tau=0.5 in \[1, inf\)"),
        ({"game": {"n_models": 7}}, r"Expected game.n_models=7 to be even\. Models come in complementary pairs"),
        ({"game": {"kind": "half"}}, r"Expected game.m=500 to be None with kind='half'"),
        ({"game": {"kind": "loo", "m": None}}, r"game.targets=None to list target records"),
        ({"game": {"kind": "loo", "m": None, "targets": (1, 2), "n_models": 6}},
         r"game.n_models=6 to be a multiple of 2 \* len\(targets\) = 4"),
        ({"game": {"targets": (1,)}}, r"game.targets=\(1,\) to be None unless kind='loo'"),
        ({"data": {"name": "adult", "n": 100}, "game": {"m": 90}},
         r"Expected game.m=90 to be at most the 80 training records"),
        ({"data": {"name": "nope"}}, r"Expected data.name='nope' to be one of 'adult'"),
        ({"data": {"group": "age"}}, r"Expected data.group='age' to be one of 'sex', 'race'"),
        ({"data": {"test_size": 1.0}}, r"data.test_size=1.0 in \(0, 1\)"),
        ({"audit": {"auditors": ("PA-X",)}}, r"Expected audit.auditors='PA-X' to be one of 'PA-ALOOA'"),
        ({"audit": {"auditors": ("PA-LOOA",)}}, r"not to include 'PA-LOOA' with game.kind='aloo'"),
        ({"game": {"kind": "loo", "m": None, "targets": (1,), "n_models": 4}},
         r"not to include 'PA-ALOOA' with game.kind='loo'"),
        ({"audit": {"ci": 95}}, r"audit.ci=95 in \(0, 1\)"),
        ({"audit": {"bootstrap": "models"}}, r"Expected audit.bootstrap=.models. to be one of .records., .pairs."),
        ({"chunk_models": 3}, r"Expected chunk_models=3 to be even"),
        ({"device": "gpu"}, r"Expected device='gpu' to be one of 'auto', 'cpu'"),
        ({"seed": -1}, r"Expected seed=-1 to be an integer in \[0, inf\]"),
    ],
)
def test_invalid_configs(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ExperimentConfig(**kwargs)


def test_sections_validate_alone():
    with pytest.raises(ConfigError, match="data.options"):
        DataConfig(options={"f": object()})
    with pytest.raises(ConfigError, match="audit.auditors=()"):
        AuditConfig(auditors=())
    assert AuditConfig(auditors="PA-GA").auditors == ("PA-GA",)
    assert GameConfig(kind="loo", m=None, targets=[3, 1], n_models=8).targets == (3, 1)
    assert TrainConfig(method="dpsgdf", noise_multiplier=1.0).is_private
    assert ExperimentConfig(data={"name": "digits"}, train={"model": "cnn"}).train.model == "cnn"


def test_label():
    cfg = ExperimentConfig(train={"method": "dpsgd", "epsilon": 10.0})
    assert cfg.label == "adult/sex mlp dpsgd eps=10"


def test_diagnostics_flag_marks_release_not_private_and_keys_the_cache():
    from fairpriv_lab.experiment import TrainConfig

    dp = ExperimentConfig(train={"method": "dpsgd", "epsilon": 1.0})
    assert dp.train.is_release_private and not dp.train.resolved_diagnostics
    diag = dp.replace(diagnostics=True)
    assert not diag.train.is_release_private and diag.digest != dp.digest
    assert TrainConfig().resolved_diagnostics and not TrainConfig().is_release_private  # SGD
    with pytest.raises(ConfigError, match="train.diagnostics"):
        TrainConfig(diagnostics="on")


def test_scaler_reads_no_training_record():
    # from_pandas z-scores with every row's statistics, so one extreme audited record moves
    # every other record's features. The experiment pipeline refits the scaler on the held-out
    # split (in no model's training set, never audited): the extreme row moves nothing else.
    import numpy as np
    import pandas as pd

    from fairpriv_lab.data import from_pandas
    from fairpriv_lab.experiment.runner import load_experiment_data

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200),
                       "c": rng.choice(["x", "y"], 200), "g": rng.choice(["m", "f"], 200),
                       "y": rng.integers(0, 2, 200)})

    def split(frame, refit):  # refit: what the pipeline does (raw columns, held-out scaler)
        ds = from_pandas(frame, target="y", group="g", standardize=not refit)
        train, test = ds.train_test_split(test_size=0.25, seed=0)
        return (train.restandardized(test), test.restandardized(test)) if refit else (train, test)

    # a record of the training split (the split depends on groups and labels, not features)
    old_train, _ = split(df, False)
    b = df["b"].to_numpy()
    z = ((b - b.mean()) / b.std()).astype(np.float32)
    in_train = np.isin(z, old_train.X[:, 1])
    target = int(np.flatnonzero(in_train)[0])
    wild = df.copy()
    wild.loc[target, "a"] = 1e6

    train, test = split(df, True)
    wtrain, wtest = split(wild, True)
    assert np.array_equal(wtest.X, test.X)  # held-out rows do not move
    moved = ~np.all(wtrain.X == train.X, axis=1)
    assert moved.sum() == 1  # only the changed record itself
    old_wild, _ = split(wild, False)
    assert (~np.all(old_wild.X == old_train.X, axis=1)).all()  # before: every row moved
    assert "held-out" in train.provenance["scaler"]
    assert train.provenance["standardized_columns"] == [0, 1]
    # the pipeline applies it (bundled Adult: its numeric columns)
    _, real_train, real_test = load_experiment_data(ExperimentConfig(data={"name": "adult", "n": 1000}).data)
    assert "held-out" in real_train.provenance["scaler"] and "held-out" in real_test.provenance["scaler"]
    cols = real_train.provenance["standardized_columns"]
    np.testing.assert_allclose(real_test.X[:, cols].mean(0), 0, atol=1e-5)


def _weighted_telemetry_loop(df):
    """The obvious reference: a Python loop over (step, group) rows and columns."""
    import math

    import numpy as np
    import pandas as pd

    keys = [c for c in ("step", "group") if c in df.columns]
    values = [c for c in df.columns if c not in keys and c != "_w" and pd.api.types.is_numeric_dtype(df[c])]
    out = []
    for k, part in df.groupby(keys, sort=True):
        row = dict(zip(keys, k if isinstance(k, tuple) else (k,)))
        for v in values:
            x, w = part[v].to_numpy(float), part["_w"].to_numpy(float)
            ok = np.isfinite(x)
            row[v] = float(np.sum(x[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else math.nan
        out.append(row)
    return pd.DataFrame(out, columns=keys + values)


@pytest.mark.parametrize("keys", [("step", "group"), ("step",)])
def test_weighted_telemetry_matches_the_loop(keys):
    # chunk telemetry merged by weights: NaN values skipped, all-NaN cells NaN, sorted keys,
    # a non-numeric column dropped; equal to the loop over rows to float64 rounding
    import numpy as np
    import pandas as pd

    from fairpriv_lab.experiment.runner import _weighted_telemetry

    rng = np.random.default_rng(0)
    parts = []
    for chunk, w in enumerate((16, 16, 5)):
        n = 12
        df = pd.DataFrame({"step": np.repeat(np.arange(6)[::-1], 2)})
        if "group" in keys:
            df["group"] = np.tile(["Male", "Female"], 6)
        df["grc"] = rng.normal(size=n)
        df.loc[rng.random(n) < 0.3, "grc"] = np.nan
        df["frac"] = np.nan if chunk else rng.random(n)  # only the first chunk has it
        df["allnan"] = np.nan
        df["note"] = "x"
        df["_w"] = float(w)
        parts.append(df if "group" in keys else df.drop_duplicates("step"))
    df = pd.concat(parts, ignore_index=True)
    got, want = _weighted_telemetry(df), _weighted_telemetry_loop(df)
    assert list(got.columns) == list(want.columns) == [*keys, "grc", "frac", "allnan"]
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)
    assert got["allnan"].isna().all() and list(got["step"]) == sorted(got["step"])
