"""`GroupedDataset`: features, labels and a sensitive group id per record."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .._core import validate as V
from .._core.exceptions import DatasetError, DataWarning
from .._core.rng import SeedLike, as_generator

__all__ = ["GroupedDataset"]


@dataclass(frozen=True, eq=False, repr=False)
class GroupedDataset:
    """A classification dataset whose records carry a sensitive group id.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Features, stored as float32. Image data keeps ``image_shape`` so that a CNN can
        reshape rows to ``(n_samples, *image_shape)``.
    y : ndarray of shape (n_samples,)
        Class labels 0..n_classes-1 (int64).
    g : ndarray of shape (n_samples,)
        Group ids 0..n_groups-1 (int64); ``group_names[k]`` names group k.
    group_names, feature_names, class_names : tuple of str
    name : str
        Dataset name, e.g. ``"adult"``.
    group_attribute : str
        Which attribute defines the groups, e.g. ``"sex"``.
    provenance : dict
        ``source``, ``licence``, ``sha256`` of the raw file and a ``citation`` where known.
    image_shape : tuple of int or None
        ``(channels, height, width)`` for image data.

    Examples
    --------
    >>> import numpy as np
    >>> ds = GroupedDataset(np.zeros((3, 2)), np.array([0, 1, 0]), np.array([0, 0, 1]),
    ...                     group_names=("a", "b"))
    >>> ds.group_sizes
    {'a': 2, 'b': 1}
    """

    X: np.ndarray
    y: np.ndarray
    g: np.ndarray
    group_names: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    name: str = "custom"
    group_attribute: str = "group"
    provenance: dict[str, Any] = field(default_factory=dict)
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        X = np.ascontiguousarray(np.asarray(self.X, dtype=np.float32))
        if X.ndim != 2:
            raise V.fail("X", f"array of shape {X.shape}", "to be 2-D (n_samples, n_features)")
        n = X.shape[0]
        if n == 0:
            raise DatasetError("The dataset has no records.")
        if not np.all(np.isfinite(X)):
            raise V.fail("X", "an array with NaN or infinite entries", "to be finite")
        y = np.asarray(self.y)
        if y.ndim != 1 or y.shape[0] != n:
            raise V.fail("y", f"array of shape {y.shape}", f"to have shape ({n},)")
        if y.dtype.kind not in "iub" or (y.size and y.min() < 0):
            raise V.fail("y", f"array of dtype {y.dtype}", "to hold class ids 0..n_classes-1")
        group_names = tuple(str(s) for s in self.group_names)
        if not group_names:
            raise V.fail("group_names", self.group_names, "to name at least one group")
        g = V.group_ids("g", self.g, n=n, n_groups=len(group_names))
        n_classes = int(y.max()) + 1
        class_names = tuple(str(c) for c in self.class_names) or tuple(str(c) for c in range(n_classes))
        if len(class_names) < n_classes:
            raise V.fail("class_names", class_names, f"to name all {n_classes} classes")
        feature_names = tuple(str(f) for f in self.feature_names) or tuple(
            f"x{j}" for j in range(X.shape[1])
        )
        if len(feature_names) != X.shape[1]:
            raise V.fail("feature_names", f"{len(feature_names)} names", f"to name {X.shape[1]} features")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != X.shape[1]:
            raise V.fail("image_shape", self.image_shape, f"to multiply to n_features={X.shape[1]}")
        for attr, val in [
            ("X", X),
            ("y", y.astype(np.int64)),
            ("g", g),
            ("group_names", group_names),
            ("class_names", class_names),
            ("feature_names", feature_names),
            ("provenance", dict(self.provenance)),
        ]:
            object.__setattr__(self, attr, val)
        for arr in (self.X, self.y, self.g):
            arr.setflags(write=False)
        counts = np.bincount(g, minlength=len(group_names))
        if len(group_names) == 1:
            warnings.warn(
                f"Dataset {self.name!r} has a single group; group privacy risk parity (GPRP) "
                "needs at least two groups.",
                DataWarning,
                stacklevel=3,
            )
        elif np.any(counts == 0):
            empty = [group_names[k] for k in np.flatnonzero(counts == 0)]
            warnings.warn(
                f"Dataset {self.name!r} has empty groups {empty}; they get no risk estimate.",
                DataWarning,
                stacklevel=3,
            )

    # ---------------------------------------------------------------- properties
    @property
    def n_samples(self) -> int:
        """Number of records."""
        return int(self.X.shape[0])

    def __len__(self) -> int:
        return self.n_samples

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.X.shape[1])

    @property
    def n_groups(self) -> int:
        """Number of groups (including empty ones)."""
        return len(self.group_names)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def group_counts(self) -> np.ndarray:
        """Records per group, shape (n_groups,)."""
        return np.bincount(self.g, minlength=self.n_groups)

    @property
    def group_sizes(self) -> dict[str, int]:
        """Records per group, keyed by group name."""
        return {name: int(c) for name, c in zip(self.group_names, self.group_counts)}

    @cached_property
    def checksum(self) -> str:
        """sha256 of the arrays and names: identifies the data in cache keys."""
        h = hashlib.sha256()
        for arr in (self.X, self.y, self.g):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("|".join(self.group_names).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.group_sizes.items())
        shape = f", image_shape={self.image_shape}" if self.image_shape else ""
        return (
            f"GroupedDataset(name={self.name!r}, n_samples={self.n_samples:,}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}{shape}, "
            f"groups by {self.group_attribute!r}: {sizes})"
        )

    # ---------------------------------------------------------------- derived datasets
    def subset(self, idx: Any) -> GroupedDataset:
        """Return the records selected by idx (integer indices or a bool mask)."""
        idx = np.asarray(idx)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n_samples,):
                raise V.fail("idx", f"bool mask of shape {idx.shape}", f"to have shape ({self.n_samples},)")
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu":
            raise V.fail("idx", f"array of dtype {idx.dtype}", "to be integer indices or a bool mask")
        if idx.size and (idx.min() < -self.n_samples or idx.max() >= self.n_samples):
            raise V.fail("idx", "indices out of range", f"to lie in [0, {self.n_samples})")
        return self._replace(X=self.X[idx], y=self.y[idx], g=self.g[idx])

    def sample(self, n: int, *, seed: SeedLike = None, stratify: bool = True) -> GroupedDataset:
        """Return n records drawn without replacement (stratified by group by default)."""
        n = V.integer("n", n, 1, self.n_samples)
        rng = as_generator(seed)
        if n == self.n_samples:
            return self.subset(np.arange(n))
        if not stratify:
            return self.subset(np.sort(rng.choice(self.n_samples, size=n, replace=False)))
        idx = _stratified_indices(self.g, n, rng)
        return self.subset(idx)

    def train_test_split(
        self, *, test_size: float = 0.2, seed: SeedLike = None, stratify: bool = True
    ) -> tuple[GroupedDataset, GroupedDataset]:
        """Split into (train, test), stratified by group and label by default."""
        test_size = V.number("test_size", test_size, 0.0, 1.0, low_open=True, high_open=True)
        rng = as_generator(seed)
        n_test = int(round(test_size * self.n_samples))
        if n_test < 1 or n_test >= self.n_samples:
            raise V.fail("test_size", test_size, f"to leave at least one record on each side of {self.n_samples}")
        strata = self.g * self.n_classes + self.y if stratify else np.zeros(self.n_samples, np.int64)
        test_idx = _stratified_indices(strata, n_test, rng)
        mask = np.zeros(self.n_samples, dtype=bool)
        mask[test_idx] = True
        return self.subset(~mask), self.subset(mask)

    def restandardized(self, reference: GroupedDataset) -> GroupedDataset:
        """Re-standardise the z-scored columns with the mean and sd of ``reference``'s rows.

        The columns are those listed in ``provenance["standardized_columns"]`` (tabular
        loaders z-score their numeric columns over every row, which makes every feature depend
        on every record, audited ones included). Z-scoring is invariant to a prior affine map,
        so the result equals standardising the raw values with ``reference``'s statistics.
        :func:`fairpriv_lab.experiment.run` passes the held-out split (in no model's training
        set, never audited): the preprocessing then reads no training record (docs/privacy.md).
        """
        cols = list(self.provenance.get("standardized_columns") or [])
        if not cols:
            return self
        ref = np.asarray(reference.X, dtype=np.float64)[:, cols]
        mean = ref.mean(axis=0)
        sd = ref.std(axis=0)
        X = np.array(self.X, dtype=np.float32)
        X[:, cols] = ((X[:, cols].astype(np.float64) - mean) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        prov = {**self.provenance, "scaler": f"z-scored with the mean and sd of {reference.n_samples} "
                "held-out rows (in no model's training set, never audited)"}
        return self._replace(X=X, provenance=prov)

    def to_pandas(self):
        """Return a DataFrame of the features with ``label`` and ``group`` columns."""
        import pandas as pd

        df = pd.DataFrame(self.X, columns=list(self.feature_names))
        df["label"] = np.asarray(self.class_names, dtype=object)[self.y]
        df["group"] = np.asarray(self.group_names, dtype=object)[self.g]
        return df

    def _replace(self, **changes: Any) -> GroupedDataset:
        fields = {
            "X": self.X, "y": self.y, "g": self.g, "group_names": self.group_names,
            "feature_names": self.feature_names, "class_names": self.class_names,
            "name": self.name, "group_attribute": self.group_attribute,
            "provenance": self.provenance, "image_shape": self.image_shape,
        }
        fields.update(changes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            return GroupedDataset(**fields)


def _stratified_indices(strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of n records, allocated to strata proportionally (at least one each)."""
    labels, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    total = counts.sum()
    alloc = np.floor(counts * n / total).astype(int)
    if n >= len(labels):
        alloc = np.maximum(alloc, 1)
    alloc = np.minimum(alloc, counts)
    # Fix the total with largest remainders, never exceeding a stratum's size.
    while alloc.sum() != n:
        rem = counts * n / total - alloc
        if alloc.sum() < n:
            rem[alloc >= counts] = -np.inf
            alloc[int(np.argmax(rem))] += 1
        else:
            rem[alloc <= (1 if n >= len(labels) else 0)] = np.inf
            alloc[int(np.argmin(rem))] -= 1
    chosen = [
        rng.choice(np.flatnonzero(inverse == k), size=a, replace=False) for k, a in enumerate(alloc) if a
    ]
    return np.sort(np.concatenate(chosen))
