"""GroupedDataset, the offline loaders, from_pandas and the registry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fairpriv_lab as fl
from fairpriv_lab._core.exceptions import ConfigError, DatasetError, DataWarning
from fairpriv_lab.data import DatasetInfo, GroupedDataset, make_synthetic, register_dataset
from fairpriv_lab.data import registry as reg


@pytest.fixture(scope="module")
def adult():
    return fl.load_dataset("adult", group="sex")


@pytest.fixture(scope="module")
def digits():
    return fl.load_dataset("digits")


# --------------------------------------------------------------------------- adult
def test_adult_sizes_groups_and_features(adult):
    assert adult.n_samples == 45222
    assert adult.group_names == ("Male", "Female")
    assert adult.group_sizes == {"Male": 30527, "Female": 14695}
    assert adult.n_features == 103 and adult.X.dtype == np.float32
    assert adult.class_names == ("not >50K", ">50K") and int(adult.y.sum()) == 11208
    # The five numeric columns come first, standardised.
    assert adult.feature_names[:5] == ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
    np.testing.assert_allclose(adult.X[:, :5].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(adult.X[:, :5].std(0), 1, atol=1e-3)
    assert "fnlwgt" not in adult.feature_names
    assert adult.provenance["licence"] == "CC BY 4.0" and "Becker" in adult.provenance["citation"]


def test_adult_race_groups():
    race = fl.load_dataset("adult", group="race")
    assert race.group_sizes == {"White": 38903, "non-White": 6319}
    race5 = fl.load_dataset("adult", group="race5")
    assert race5.group_sizes == {
        "White": 38903, "Black": 4228, "Asian-Pac-Islander": 1303, "Amer-Indian-Eskimo": 435, "Other": 353,
    }
    np.testing.assert_array_equal(race.g, (race5.g > 0).astype(int))


def test_adult_repr(adult):
    assert repr(adult) == (
        "GroupedDataset(name='adult', n_samples=45,222, n_features=103, n_classes=2, "
        "groups by 'sex': Male 30,527, Female 14,695)"
    )


def test_adult_prebuilt_arrays_match_the_pandas_path():
    from fairpriv_lab.data import tabular

    frame = tabular.read_adult_frame()
    for group in ("sex", "race", "race5"):
        fast = tabular._load_adult_prebuilt(group, "adult")
        assert fast is not None, "adult_preprocessed.npz is missing or stale: run python -m fairpriv_lab.data._build_adult"
        slow = tabular.load_adult(group=group, frame=frame)
        np.testing.assert_array_equal(fast.X, slow.X)
        np.testing.assert_array_equal(fast.y, slow.y)
        np.testing.assert_array_equal(fast.g, slow.g)
        assert (fast.feature_names, fast.group_names, fast.class_names, fast.provenance) == (
            slow.feature_names, slow.group_names, slow.class_names, slow.provenance)


def test_adult_arrays_are_built_once_per_process_and_read_only():
    a, b = fl.load_dataset("adult", group="sex"), fl.load_dataset("adult", group="race")
    assert np.shares_memory(a.X, b.X) and not a.X.flags.writeable and not a.y.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a.X[0, 0] = 1.0
    assert a.group_names == ("Male", "Female") and b.group_names == ("White", "non-White")
    assert fl.load_dataset("adult", group="sex").group_sizes == a.group_sizes
    assert a.provenance is not fl.load_dataset("adult", group="sex").provenance  # each its own dict


def test_stale_prebuilt_file_falls_back_to_pandas(monkeypatch, tmp_path):
    from fairpriv_lab.data import _build_adult, tabular

    stale = tmp_path / "adult_preprocessed.npz"
    _build_adult.build(stale)
    with np.load(stale) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["csv_sha256"] = np.asarray("0" * 64)
    np.savez(stale, **arrays)
    monkeypatch.setattr(tabular, "ADULT_PREBUILT", str(stale))  # absolute path: joinpath keeps it
    assert tabular._load_adult_prebuilt("sex", "adult") is None
    assert fl.load_dataset("adult").group_sizes == {"Male": 30527, "Female": 14695}


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, fairpriv_lab as fl; fl.load_dataset('adult');"
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'pandas', 'opacus', 'altair') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def test_acceptance_command_prints_rows_and_group_sizes():
    """Issue 2's acceptance command, verbatim, in a fresh interpreter (its speed: benchmarks/check_load_time.py)."""
    import subprocess
    import sys

    code = "import fairpriv_lab as fl; print(fl.load_dataset('adult', group='sex'))"
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert "n_samples=45,222" in out.stdout and "groups by 'sex': Male 30,527, Female 14,695" in out.stdout
    assert out.stderr == ""


# --------------------------------------------------------------------------- digits
def test_digits(digits):
    assert digits.n_samples == 1797 and digits.n_groups == 10 and digits.n_classes == 10
    assert digits.image_shape == (1, 8, 8)
    np.testing.assert_array_equal(digits.g, digits.y)
    assert 0.0 <= digits.X.min() and digits.X.max() <= 1.0
    assert repr(digits).startswith(
        "GroupedDataset(name='digits', n_samples=1,797, n_features=64, n_classes=10, "
        "image_shape=(1, 8, 8), groups by 'digit': 0 178, 1 182"
    )


# --------------------------------------------------------------------------- synthetic
def _group_accuracy(ds: GroupedDataset, k: int) -> float:
    from sklearn.linear_model import LogisticRegression

    sub = ds.subset(ds.g == k)
    train, test = sub.train_test_split(test_size=0.5, seed=0)
    clf = LogisticRegression().fit(train.X, train.y)
    return float(clf.score(test.X, test.y))


def test_synthetic_sizes_and_seeds():
    ds = make_synthetic(1000, group_sizes=(0.7, 0.2, 0.1), seed=0)
    assert ds.group_sizes == {"g0": 700, "g1": 200, "g2": 100}
    assert ds.n_features == 10 and ds.class_names == ("0", "1")
    odd = make_synthetic(7, group_sizes=(1, 1, 1), seed=0)
    assert sorted(odd.group_counts.tolist()) == [2, 2, 3]
    same = make_synthetic(1000, group_sizes=(0.7, 0.2, 0.1), seed=0)
    other = make_synthetic(1000, group_sizes=(0.7, 0.2, 0.1), seed=1)
    assert same.checksum == ds.checksum != other.checksum
    via_registry = fl.load_dataset("synthetic", seed=0, n_features=3, group_sizes=(0.5, 0.5))
    assert via_registry.checksum == make_synthetic(n_features=3, group_sizes=(0.5, 0.5), seed=0).checksum


def test_synthetic_size_is_a_parameter_of_the_loader_and_the_config():
    # issue 16: a generated dataset generates data.n records (no fixed 2,000-record pool)
    from fairpriv_lab.data.registry import list_datasets
    from fairpriv_lab.experiment import ExperimentConfig
    from fairpriv_lab.experiment.loading import load_experiment_data

    info = {d.name: d for d in list_datasets()}
    assert info["synthetic"].generated and info["synthetic"].default_size == 2000
    assert not info["adult"].generated and info["adult"].default_size is None
    big = fl.load_dataset("synthetic", n=8000, seed=0)
    assert big.group_sizes == {"g0": 6400, "g1": 1600}
    assert big.checksum == make_synthetic(8000, seed=0).checksum  # generated, not a subsample
    assert fl.load_dataset("synthetic", seed=0).n_samples == 2000  # the generator's default
    assert fl.load_dataset("synthetic", n=300, seed=0, group_sizes=(0.9, 0.1)).group_sizes == {"g0": 270, "g1": 30}
    checksum, train, test = load_experiment_data(ExperimentConfig(data={"name": "synthetic", "n": 6000}).data)
    assert train.n_samples + test.n_samples == 6000 and test.n_samples == 1200
    with pytest.raises(ConfigError, match=re.escape("Expected n=1 to be an integer in [2, inf]")):
        fl.load_dataset("synthetic", n=1)
    with pytest.raises(ConfigError, match=re.escape("Expected data.n=5 to be an integer in [10, inf]")):
        ExperimentConfig(data={"name": "synthetic", "n": 5})
    with pytest.raises(ConfigError, match=r"Expected n=2000 to be an integer in \[1, 1797\]"):
        fl.load_dataset("digits", n=2000)  # a loaded dataset is subsampled, never grown


def test_synthetic_separation_is_measurable():
    # Accuracy of the Bayes rule is Phi(separation / 2): Phi(2) = 0.977, Phi(0.25) = 0.599.
    ds = make_synthetic(4000, group_sizes=(0.5, 0.5), separation=(4.0, 0.5), outlier_rate=0.0, seed=0)
    assert _group_accuracy(ds, 0) > 0.93
    assert 0.5 < _group_accuracy(ds, 1) < 0.68


def test_synthetic_label_noise_and_outliers():
    ds = make_synthetic(
        4000, group_sizes=(0.5, 0.5), separation=(8.0, 8.0), label_noise=(0.0, 0.2),
        outlier_rate=(0.0, 0.5), n_features=5, seed=0,
    )
    assert _group_accuracy(ds, 0) > 0.99
    assert 0.72 < _group_accuracy(ds, 1) < 0.88  # 20 % of labels flipped
    # |x|^2 = 16 + |z|^2 + cross term; outliers have z scaled by 4, so |z|^2 ~ 16 chi2(5)
    # and |x| > 7 for P(chi2(5) > ~2) ~ 0.84 of them, almost never otherwise.
    far = np.linalg.norm(ds.X, axis=1) > 7.0
    assert far[ds.g == 0].mean() < 0.01
    assert 0.35 < far[ds.g == 1].mean() < 0.5


def test_synthetic_bad_input():
    with pytest.raises(ConfigError, match=re.escape("Expected separation=(1, 2, 3) to be a number or 2 numbers (one per group)")):
        make_synthetic(100, separation=(1, 2, 3))
    with pytest.raises(ConfigError, match=re.escape("Expected outlier_rate=1.5 in [0, 1]")):
        make_synthetic(100, outlier_rate=1.5)
    with pytest.raises(ConfigError, match=re.escape("Expected label_noise=0.6 in [0, 0.5]")):
        make_synthetic(100, label_noise=0.6)
    with pytest.raises(ConfigError, match=re.escape("Expected group_sizes=(0.5, -1) to be positive numbers")):
        make_synthetic(100, group_sizes=(0.5, -1))
    with pytest.raises(ConfigError, match="Expected n=10 to be large enough that every one of 2 groups"):
        make_synthetic(10, group_sizes=(0.99, 0.01))


# --------------------------------------------------------------------------- from_pandas
def _frame():
    return pd.DataFrame({
        "age": [20.0, 30, 40, 50, 60, 70],
        "job": ["a", "b", "a", "c", "b", "a"],
        "sex": ["F", "M", "M", "M", "F", "M"],
        "label": ["no", "yes", "no", "yes", "yes", "no"],
    })


def test_from_pandas_categorical_numeric_and_groups():
    ds = fl.data.from_pandas(_frame(), target="label", group="sex")
    # Groups numbered largest first by default; the group column stays a feature.
    assert ds.group_names == ("M", "F") and ds.group_sizes == {"M": 4, "F": 2}
    assert ds.feature_names == ("age", "job=a", "job=b", "job=c", "sex=F", "sex=M")
    assert ds.class_names == ("no", "yes")
    np.testing.assert_array_equal(ds.y, [0, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(ds.X[:, 0], (np.arange(20, 80, 10) - 45) / np.std(np.arange(20, 80, 10)), rtol=1e-6)
    np.testing.assert_array_equal(ds.X[:, 1:4].argmax(1), [0, 1, 0, 2, 1, 0])
    ordered = fl.data.from_pandas(_frame(), target="label", group="sex", group_order=("F", "M"), numeric=["age"],
                             categorical=[], standardize=False, positive_label="yes")
    assert ordered.group_names == ("F", "M") and ordered.feature_names == ("age",)
    np.testing.assert_array_equal(ordered.g, [0, 1, 1, 1, 0, 1])
    assert ordered.class_names == ("not yes", "yes")
    np.testing.assert_array_equal(ordered.X[:, 0], _frame()["age"])
    series = fl.data.from_pandas(_frame(), target="label", group=_frame()["job"].rename("job type"))
    assert series.group_attribute == "job type" and series.group_sizes == {"a": 3, "b": 2, "c": 1}


def test_from_pandas_errors_name_columns():
    df = _frame()
    df.loc[1, "age"] = np.nan
    df.loc[2, "job"] = None
    with pytest.raises(ConfigError, match=re.escape("Expected df=\"a frame with missing values in ['job', 'age']\" to have no NaN in used columns. Drop or impute")):
        fl.data.from_pandas(df, target="label", group="sex", categorical=["job"], numeric=["age"])
    cols = "age, job, sex, label"
    with pytest.raises(ConfigError, match=re.escape(f"Expected target='y' to be a column of df: {cols}")):
        fl.data.from_pandas(_frame(), target="y", group="sex")
    with pytest.raises(ConfigError, match=re.escape(f"Expected group='gender' to be a column of df: {cols}")):
        fl.data.from_pandas(_frame(), target="label", group="gender")
    with pytest.raises(ConfigError, match=re.escape(f"Expected numeric=['height'] to be columns of df: {cols}")):
        fl.data.from_pandas(_frame(), target="label", group="sex", numeric=["height"])
    with pytest.raises(ConfigError, match=re.escape("Expected group_order=('F',) to list every group value (missing ['M'])")):
        fl.data.from_pandas(_frame(), target="label", group="sex", group_order=("F",))
    with pytest.raises(ConfigError, match="Expected df='list' to be a pandas DataFrame"):
        fl.data.from_pandas([1, 2], target="label", group="sex")
    with pytest.raises(DatasetError, match="No feature columns left"):
        fl.data.from_pandas(_frame(), target="label", group="sex", categorical=[], numeric=[])
    nan_group = _frame()
    nan_group.loc[0, "sex"] = None
    with pytest.raises(ConfigError, match=re.escape("missing values in ['sex']")):
        fl.data.from_pandas(nan_group, target="label", group="sex", numeric=["age"], categorical=[])


# --------------------------------------------------------------------------- GroupedDataset
def test_bad_arrays_give_clear_errors():
    X = np.zeros((4, 2))
    with pytest.raises(ConfigError, match="Expected g='a float array with non-integer entries' to hold integer group ids"):
        GroupedDataset(X, [0, 1, 0, 1], [0, 0.5, 1, 1], group_names=("a", "b"))
    with pytest.raises(ConfigError, match="Expected g='ids up to 2' to be < n_groups=2"):
        GroupedDataset(X, [0, 1, 0, 1], [0, 1, 2, 1], group_names=("a", "b"))
    with pytest.raises(ConfigError, match="Expected g='ids down to -1' to be >= 0"):
        GroupedDataset(X, [0, 1, 0, 1], [0, 1, -1, 1], group_names=("a", "b"))
    Xn = X.copy()
    Xn[1, 1] = np.nan
    with pytest.raises(ConfigError, match="Expected X='an array with NaN or infinite entries' to be finite"):
        GroupedDataset(Xn, [0, 1, 0, 1], [0, 1, 0, 1], group_names=("a", "b"))
    with pytest.raises(DatasetError, match="The dataset has no records"):
        GroupedDataset(np.zeros((0, 2)), [], [], group_names=("a",))
    with pytest.raises(ConfigError, match=re.escape("Expected y='array of shape (3,)' to have shape (4,)")):
        GroupedDataset(X, [0, 1, 0], [0, 1, 0, 1], group_names=("a", "b"))
    with pytest.raises(ConfigError, match=re.escape("Expected image_shape=(1, 3, 3) to multiply to n_features=2")):
        GroupedDataset(X, [0, 1, 0, 1], [0, 1, 0, 1], group_names=("a", "b"), image_shape=(1, 3, 3))
    # Integer-valued floats are accepted as group ids.
    assert GroupedDataset(X, [0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0], group_names=("a", "b")).g.dtype == np.int64


def test_empty_and_single_groups_warn():
    X = np.zeros((3, 1))
    with pytest.warns(DataWarning, match=re.escape("Dataset 'custom' has empty groups ['b']; they get no risk estimate")):
        ds = GroupedDataset(X, [0, 1, 0], [0, 0, 2], group_names=("a", "b", "c"))
    assert ds.group_sizes == {"a": 2, "b": 0, "c": 1}
    with pytest.warns(DataWarning, match=re.escape("has a single group; group privacy risk parity (GPRP) needs at least two groups")):
        GroupedDataset(X, [0, 1, 0], [0, 0, 0], group_names=("a",))


def test_arrays_are_read_only(digits):
    with pytest.raises(ValueError, match="read-only"):
        digits.X[0, 0] = 1.0


def test_subset_by_indices_and_mask(digits):
    sub = digits.subset([0, 5, 10])
    np.testing.assert_array_equal(sub.X, digits.X[[0, 5, 10]])
    np.testing.assert_array_equal(sub.g, digits.g[[0, 5, 10]])
    assert sub.image_shape == (1, 8, 8) and sub.group_names == digits.group_names
    mask = digits.g == 3
    assert digits.subset(mask).group_sizes["3"] == 183
    assert digits.subset(mask).n_samples == 183  # empty groups in a subset do not warn
    with pytest.raises(ConfigError, match=re.escape("Expected idx='indices out of range' to lie in [0, 1797)")):
        digits.subset([1797])
    with pytest.raises(ConfigError, match="Expected idx='array of dtype float64' to be integer indices or a bool mask"):
        digits.subset(np.array([0.5]))
    with pytest.raises(ConfigError, match=re.escape("Expected idx='bool mask of shape (3,)' to have shape (1797,)")):
        digits.subset(np.array([True, False, True]))


def test_sample_is_stratified_and_seeded(adult):
    s = adult.sample(1000, seed=0)
    assert s.n_samples == 1000
    share = adult.group_counts / adult.n_samples * 1000
    assert np.all(np.abs(s.group_counts - share) <= 1)
    assert s.checksum == adult.sample(1000, seed=0).checksum
    assert s.checksum != adult.sample(1000, seed=1).checksum
    plain = adult.sample(1000, seed=0, stratify=False)
    assert plain.n_samples == 1000 and plain.checksum != s.checksum
    assert adult.sample(adult.n_samples).checksum == adult.checksum
    with pytest.raises(ConfigError, match=re.escape("Expected n=45223 to be an integer in [1, 45222]")):
        adult.sample(45223)


def test_sample_keeps_small_groups():
    ds = make_synthetic(1000, group_sizes=(0.995, 0.005), seed=0)
    assert ds.sample(20, seed=0).group_sizes == {"g0": 19, "g1": 1}


def test_train_test_split_stratifies_groups_and_labels(adult):
    train, test = adult.train_test_split(test_size=0.25, seed=3)
    assert train.n_samples + test.n_samples == adult.n_samples
    assert test.n_samples == round(0.25 * adult.n_samples)
    strata = lambda d: np.bincount(d.g * 2 + d.y, minlength=4)  # noqa: E731
    assert np.all(np.abs(strata(test) - strata(adult) * 0.25) <= 1)
    # Disjoint and complete.
    both = np.vstack([train.X, test.X])
    assert both.shape == adult.X.shape
    t2, _ = adult.train_test_split(test_size=0.25, seed=3)
    t3, _ = adult.train_test_split(test_size=0.25, seed=4)
    assert t2.checksum == train.checksum != t3.checksum
    with pytest.raises(ConfigError, match=re.escape("Expected test_size=1.0 in (0, 1)")):
        adult.train_test_split(test_size=1.0)
    tiny = make_synthetic(4, group_sizes=(1, 1), seed=0)
    with pytest.raises(ConfigError, match="to leave at least one record on each side of 4"):
        tiny.train_test_split(test_size=0.01)


def test_to_pandas_and_checksum(digits):
    df = digits.subset(np.arange(5)).to_pandas()
    assert list(df.columns[-2:]) == ["label", "group"] and len(df) == 5
    assert re.fullmatch(r"[0-9a-f]{64}", digits.checksum)
    assert digits.subset(np.arange(1797)).checksum == digits.checksum
    assert digits.subset(np.arange(1796)).checksum != digits.checksum


# --------------------------------------------------------------------------- registry
def test_list_datasets_and_load_dataset_errors():
    names = [d.name for d in fl.list_datasets()]
    assert names == ["adult", "digits", "synthetic", "mnist", "law", "utkface", "bank", "credit", "adult-full"]
    assert [d.offline for d in fl.list_datasets()][:4] == [True, True, True, False]
    with pytest.raises(ConfigError, match=re.escape(
        "Expected name='adultt' to be one of 'adult', 'digits', 'synthetic', 'mnist', 'law', "
        "'utkface', 'bank', 'credit', 'adult-full'"
    )):
        fl.load_dataset("adultt")
    with pytest.raises(ConfigError, match=re.escape("Expected group='gender' to be one of 'sex', 'race', 'race5'")):
        fl.load_dataset("adult", group="gender")
    with pytest.raises(ConfigError, match=re.escape("Expected n=1798 to be an integer in [1, 1797]")):
        fl.load_dataset("digits", n=1798)


def test_load_dataset_subsample(adult):
    a = fl.load_dataset("adult", n=500, seed=0)
    assert a.n_samples == 500 and a.checksum == fl.load_dataset("adult", n=500, seed=0).checksum
    assert a.checksum != fl.load_dataset("adult", n=500, seed=1).checksum


def test_register_dataset(monkeypatch):
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    calls = []

    def loader(*, group, seed=None):
        calls.append((group, seed))
        return make_synthetic(50, seed=seed)

    register_dataset(DatasetInfo("toy", ("kind", "other"), True, "a toy", loader, takes_seed=True))
    assert fl.load_dataset("toy", seed=5).checksum == make_synthetic(50, seed=5).checksum
    assert calls == [("kind", 5)]
    assert "toy" in [d.name for d in fl.list_datasets()]
