"""Tabular data: the bundled UCI Adult rows and bring-your-own DataFrames."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import numpy as np

from .._core import validate as V
from .._core.exceptions import DatasetError
from .dataset import GroupedDataset

__all__ = ["from_pandas", "load_adult", "ADULT_GROUPS"]

ADULT_NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_CATEGORICAL = (
    "workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
    "native-country",
)
#: group attribute -> (column, mapping from raw value to group name, group order)
ADULT_GROUPS: dict[str, tuple[str, dict[str, str] | None, tuple[str, ...]]] = {
    "sex": ("sex", None, ("Male", "Female")),
    "race": ("race", {"White": "White"}, ("White", "non-White")),
    "race5": (
        "race", None, ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"),
    ),
}
ADULT_PROVENANCE = {
    "source": "UCI Machine Learning Repository, dataset 2 'Adult' (Becker & Kohavi, 1996), "
    "adult.data + adult.test, rows with missing values dropped, fnlwgt dropped",
    "licence": "CC BY 4.0",
    "citation": "Becker, B. & Kohavi, R. (1996). Adult. UCI Machine Learning Repository. "
    "https://doi.org/10.24432/C5XW20",
    "sha256": {
        "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
        "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
    },
}


def read_adult_frame():
    import pandas as pd

    with resources.files(__package__).joinpath("_files/adult.csv.gz").open("rb") as fh:
        return pd.read_csv(fh, compression="gzip")


#: Preprocessed arrays built from adult.csv.gz by ``python -m fairpriv_lab.data._build_adult``.
ADULT_PREBUILT = "_files/adult_preprocessed.npz"


def _load_adult_prebuilt(group: str, name: str, standardize: bool = True) -> GroupedDataset | None:
    """Rebuild the bundled Adult dataset from its compact .npz without pandas (fast import path).

    The .npz holds the raw numeric columns, the category code of each categorical
    column, the label and the sex / race codes, plus the sha256 of the csv.gz it was built
    from; a missing or stale file returns None and the caller takes the pandas path, which
    gives identical arrays (a test checks it). The arrays are built once per process
    (:func:`_adult_prebuilt_arrays`); every call returns a new dataset over them (read-only).
    """
    arrays = _adult_prebuilt_arrays(ADULT_PREBUILT, standardize)
    if arrays is None:
        return None
    X, y, groups, feature_names = arrays
    return GroupedDataset(
        X, y, groups[group], group_names=ADULT_GROUPS[group][2],
        feature_names=feature_names, class_names=("not >50K", ">50K"), name=name,
        group_attribute=group, provenance=_adult_provenance(standardize),
    )


@functools.lru_cache(maxsize=4)
def _adult_prebuilt_arrays(path: str, standardize: bool) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray],
                                                                  tuple[str, ...]] | None:
    """``(X, y, {group: ids}, feature_names)`` from the .npz at ``path`` in the package (read-only arrays).

    Memoised per process: the package's files do not change while it runs, and reading,
    checking and expanding them was most of a cached panel open's dataset load (26 ms).
    """
    import hashlib

    root = resources.files(__package__)
    npz, csv = root.joinpath(path), root.joinpath("_files/adult.csv.gz")
    if not npz.is_file():
        return None
    with npz.open("rb") as fh, np.load(fh) as z:
        arrays = {k: z[k] for k in z.files}
    if str(arrays["csv_sha256"]) != hashlib.sha256(csv.read_bytes()).hexdigest():
        return None
    if "numeric_raw" not in arrays:
        return None  # built before the scaler moved out of the file
    num, codes = arrays["numeric_raw"].astype(np.float64), arrays["codes"].astype(np.int64)
    if standardize:  # the same float64 arithmetic as from_pandas
        sd = num.std(axis=0)
        num = (num - num.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    feature_names = tuple(str(f) for f in arrays["feature_names"])
    sizes = arrays["n_categories"].astype(np.int64)
    offsets = len(ADULT_NUMERIC) + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    X = np.zeros((num.shape[0], len(feature_names)), dtype=np.float32)
    X[:, : len(ADULT_NUMERIC)] = num
    rows = np.arange(num.shape[0])
    for j in range(codes.shape[1]):
        X[rows, offsets[j] + codes[:, j]] = 1.0
    race5 = arrays["race5"].astype(np.int64)
    groups = {"sex": arrays["sex"].astype(np.int64), "race": (race5 > 0).astype(np.int64), "race5": race5}
    y = arrays["y"].astype(np.int64)
    for arr in (X, y, *groups.values()):
        arr.setflags(write=False)
    return X, y, groups, feature_names


def _adult_provenance(standardize: bool) -> dict[str, Any]:
    return {**ADULT_PROVENANCE, **_scaler_provenance(range(len(ADULT_NUMERIC)), standardize)}


def _scaler_provenance(columns, standardize: bool) -> dict[str, Any]:
    return {
        "standardized_columns": [int(c) for c in columns],
        "scaler": ("numeric columns z-scored with the mean and sd of all rows (every feature then "
                   "depends on every record: not private); fairpriv_lab.experiment.run loads them "
                   "raw and fits the scaler on the held-out split (GroupedDataset.restandardized)")
        if standardize else "numeric columns raw (to be standardised, e.g. GroupedDataset.restandardized)",
    }


def adult_frame_from_raw(data_path: str, test_path: str):
    """Parse UCI's raw ``adult.data`` / ``adult.test`` into the bundled frame's layout."""
    import pandas as pd

    cols = [
        "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
        "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
        "hours-per-week", "native-country", "income",
    ]
    kw = {"header": None, "names": cols, "skipinitialspace": True, "na_values": "?"}
    a = pd.read_csv(data_path, **kw).dropna()
    b = pd.read_csv(test_path, skiprows=1, **kw).dropna()
    b["income"] = b["income"].str.rstrip(".")
    df = pd.concat([a, b], ignore_index=True).drop(columns=["fnlwgt"])
    df["split"] = ["train"] * len(a) + ["test"] * len(b)
    return df


def load_adult(*, group: str = "sex", frame: Any = None, name: str = "adult",
               standardize: bool = True) -> GroupedDataset:
    """UCI Adult (45,222 rows), label income > 50K, groups by sex or race.

    The rows come bundled with the package (CC BY 4.0, Becker & Kohavi 1996, UCI Machine
    Learning Repository): ``adult.data`` and ``adult.test`` with rows holding missing values
    dropped and ``fnlwgt`` removed. The 5 numeric columns are standardised and the 8
    categorical ones one-hot encoded (sex and race stay features, as in the source paper).

    Parameters
    ----------
    group : {'sex', 'race', 'race5'}
        ``sex``: Male = 0, Female = 1. ``race``: White = 0, non-White = 1.
        ``race5``: the five original categories.
    frame : DataFrame, optional
        Use these raw rows instead of the bundled copy (the full-download loader does).
    standardize : bool
        Z-score the numeric columns with the statistics of all rows (not private: every
        feature then depends on every record). ``fairpriv_lab.experiment.run`` loads them raw
        (``False``) and fits the scaler on the held-out split only.

    Examples
    --------
    >>> load_adult(group="sex").group_sizes
    {'Male': 30527, 'Female': 14695}

    Taught in notebook 00.
    """
    V.choice("group", group, ADULT_GROUPS)
    if frame is None:
        fast = _load_adult_prebuilt(group, name, standardize)
        if fast is not None:
            return fast
    df = read_adult_frame() if frame is None else frame
    column, mapping, order = ADULT_GROUPS[group]
    raw = df[column].astype(str)
    if mapping is not None:
        raw = raw.map(lambda v: mapping.get(v, "non-White"))
    ds = from_pandas(
        df.drop(columns=["split"], errors="ignore"),
        target="income",
        group=raw.rename("__group__"),
        categorical=list(ADULT_CATEGORICAL),
        numeric=list(ADULT_NUMERIC),
        positive_label=">50K",
        group_order=order,
        name=name,
        group_attribute=group,
        standardize=standardize,
    )
    return ds._replace(provenance=_adult_provenance(standardize))


def from_pandas(
    df: Any,
    *,
    target: str,
    group: Any,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
    standardize: bool = True,
    positive_label: Any = None,
    group_order: tuple[str, ...] | None = None,
    name: str = "custom",
    group_attribute: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> GroupedDataset:
    """Build a :class:`GroupedDataset` from a DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
    target : str
        Label column. With ``positive_label`` the label is binary (value == positive_label);
        otherwise its sorted unique values become classes 0..K-1.
    group : str or pandas.Series
        Column (or a Series aligned with df) holding the sensitive attribute. Groups are
        numbered by ``group_order`` if given, else by size, largest first (majority = 0).
    categorical, numeric : list of str, optional
        Feature columns. By default every other column: object/category/bool dtypes are
        categorical, the rest numeric. Categoricals are one-hot encoded; numerics are
        standardised when ``standardize`` -- with the statistics of *all* rows, which makes
        every feature depend on every record (not private). The columns are recorded in
        ``provenance["standardized_columns"]``; :meth:`GroupedDataset.restandardized` refits
        them on rows that no model trains on (``fairpriv_lab.experiment.run`` uses the
        held-out split), or pass ``standardize=False`` and scale with public bounds.

    Raises
    ------
    ConfigError
        Unknown columns, or missing values (NaN) in any used column.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise V.fail("df", type(df).__name__, "to be a pandas DataFrame")
    dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if dup:
        raise V.fail("df", f"a frame with duplicate columns {', '.join(dup)}", "to have unique column names")
    if target not in df.columns:
        raise V.fail("target", target, "to be a column of df: " + ", ".join(map(str, df.columns)))
    if isinstance(group, pd.Series):
        if len(group) != len(df):
            raise V.fail("group", f"Series of length {len(group)}", f"to have length {len(df)}")
        gser = group.reset_index(drop=True)
        gname = group_attribute or str(group.name)
        exclude = {target}
    else:
        if group not in df.columns:
            raise V.fail("group", group, "to be a column of df: " + ", ".join(map(str, df.columns)))
        gser = df[group].reset_index(drop=True)
        gname = group_attribute or str(group)
        exclude = {target}
    df = df.reset_index(drop=True)
    others = [c for c in df.columns if c not in exclude]
    if categorical is None and numeric is None:
        categorical = [c for c in others if df[c].dtype.kind in "OSUb" or str(df[c].dtype) == "category"]
        numeric = [c for c in others if c not in categorical]
    categorical = list(categorical or [])
    numeric = list(numeric or [])
    for param, cols in (("categorical", categorical), ("numeric", numeric)):
        bad = [c for c in cols if c not in df.columns]
        if bad:
            raise V.fail(param, bad, "to be columns of df: " + ", ".join(map(str, df.columns)))
        if target in cols:
            raise V.fail(param, cols, f"not to include the target column {target!r}",
                         "A feature equal to the label makes every model perfect and the audit meaningless")
    both = sorted(set(map(str, categorical)) & set(map(str, numeric)))
    if both:
        raise V.fail("numeric", numeric, f"not to repeat columns of categorical ({both})")
    for c in numeric:
        if not (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])):
            raise V.fail("numeric", c, f"to name numeric columns (column {c!r} has dtype {df[c].dtype})",
                         "Put it in categorical= instead")
    used = [target, *categorical, *numeric]
    nan_cols = [c for c in used if df[c].isna().any()]
    if gser.isna().any():
        nan_cols.append(gname)
    if nan_cols:
        raise V.fail(
            "df", f"a frame with missing values in {nan_cols}", "to have no NaN in used columns",
            "Drop or impute those rows first (e.g. df.dropna(subset=...))",
        )
    # Labels.
    values = pd.unique(df[target])
    if len(values) < 2:
        raise V.fail("target", target, f"to hold at least two classes (column {target!r} holds only "
                     f"{[v.item() if hasattr(v, 'item') else v for v in values]})",
                     "A membership audit needs a classification task")
    if positive_label is not None:
        if not (df[target] == positive_label).any():
            shown = sorted(map(str, values))[:10]
            hint = next((f"Did you mean {v!r}?" for v in values
                         if str(v).strip().lower() == str(positive_label).strip().lower()), "")
            raise V.fail("positive_label", positive_label,
                         f"to be one of the values of column {target!r}: {', '.join(shown)}", hint)
        y = (df[target] == positive_label).to_numpy().astype(np.int64)
        class_names: tuple[str, ...] = (f"not {positive_label}", str(positive_label))
    else:
        cats = pd.Categorical(df[target])
        y = cats.codes.astype(np.int64)
        class_names = tuple(str(c) for c in cats.categories)
    # Groups.
    gstr = gser.astype(str)
    if group_order is None:
        group_order = tuple(gstr.value_counts().index)
    else:
        unknown = sorted(set(gstr.unique()) - set(group_order))
        if unknown:
            raise V.fail("group_order", group_order, f"to list every group value (missing {unknown})")
    lookup = {v: k for k, v in enumerate(group_order)}
    g = gstr.map(lookup).to_numpy().astype(np.int64)
    # Features.
    blocks, names = [], []
    if numeric:
        num = df[numeric].to_numpy(dtype=np.float64)
        if not np.isfinite(num).all():
            bad = [c for c, ok in zip(numeric, np.isfinite(num).all(axis=0)) if not ok]
            raise V.fail("df", f"a frame with infinite values in {bad}", "to have finite numeric columns")
        if standardize:
            # scale-invariant: divide by each column's largest |value| first, so that the
            # squares of values near 1e308 cannot overflow
            scale = np.abs(num).max(axis=0) if num.size else np.ones(num.shape[1])
            num = num / np.where(scale > 0, scale, 1.0)
            sd = num.std(axis=0)
            num = (num - num.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        elif num.size and np.abs(num).max() > np.finfo(np.float32).max:
            raise V.fail("df", "a frame with numeric values beyond float32", "to have |values| < 3.4e38",
                         "Features are float32; rescale those columns or pass standardize=True")
        blocks.append(num)
        names += numeric
    if categorical:
        dummies = pd.get_dummies(df[categorical].astype(str), prefix_sep="=", dtype=np.float32)
        blocks.append(dummies.to_numpy())
        names += list(dummies.columns)
    if not blocks:
        raise DatasetError("No feature columns left: pass categorical= or numeric=.")
    X = np.hstack(blocks).astype(np.float32)
    prov = dict(provenance or {"source": "user DataFrame"})
    if numeric:
        prov.update(_scaler_provenance(range(len(numeric)), standardize))
    return GroupedDataset(
        X, y, g, group_names=tuple(group_order), feature_names=tuple(names),
        class_names=class_names, name=name, group_attribute=gname, provenance=prov,
    )
