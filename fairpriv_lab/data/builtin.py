"""Offline datasets that need no download: scikit-learn's digits and a synthetic generator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._core import validate as V
from .._core.rng import SeedLike, as_generator
from .dataset import GroupedDataset

__all__ = ["load_digits", "make_synthetic"]


def load_digits() -> GroupedDataset:
    """scikit-learn's 1,797 8x8 handwritten digits; group = digit class (10 groups).

    Pixels are scaled to [0, 1]; ``image_shape`` is (1, 8, 8) for CNNs. The offline
    stand-in for MNIST (the source paper groups MNIST by digit too).

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.n_samples, ds.n_groups, ds.image_shape
    (1797, 10, (1, 8, 8))
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    names = tuple(str(d) for d in range(10))
    return GroupedDataset(
        X, y, y.copy(), group_names=names, class_names=names,
        feature_names=tuple(f"px{i}" for i in range(64)), name="digits",
        group_attribute="digit", image_shape=(1, 8, 8),
        provenance={
            "source": "scikit-learn load_digits (UCI Optical Recognition of Handwritten Digits, test part)",
            "licence": "CC BY 4.0",
            "citation": "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. UCI.",
        },
    )


def make_synthetic(
    n: int = 2000,
    *,
    group_sizes: Sequence[float] = (0.8, 0.2),
    separation: float | Sequence[float] | None = None,
    outlier_rate: float | Sequence[float] | None = None,
    label_noise: float | Sequence[float] = 0.0,
    n_features: int = 10,
    seed: SeedLike = None,
) -> GroupedDataset:
    """Binary classification with controllable groups, for teaching.

    Group k draws ``y`` in {0, 1} evenly and ``x = (2y - 1) * separation[k] / 2 * w_k + z``,
    ``z ~ N(0, I)``, with a unit direction ``w_k`` of its own (so groups need different
    decision boundaries). A fraction ``outlier_rate[k]`` of the group's records is moved far
    out (``z`` scaled by 4) and ``label_noise[k]`` of the labels are flipped: "a small group
    of atypical records" is ``group_sizes=(0.9, 0.1), outlier_rate=(0, 0.2)``.

    Parameters
    ----------
    n : int
        Number of records (``load_dataset("synthetic", n=...)`` and the experiment's
        ``data.n`` set it; this default when they leave it out).
    group_sizes : sequence of float
        Relative sizes (normalised to sum to 1); one entry per group.
    separation, outlier_rate, label_noise : float or sequence of float
        Per-group values (a scalar applies to every group). By default the first group is
        well separated without outliers (separation 2, outlier rate 0) and every other group
        is harder (separation 1, outlier rate 0.1).
    n_features : int
    seed : int, Generator or None

    Examples
    --------
    >>> ds = make_synthetic(1000, group_sizes=(0.9, 0.1), seed=0)
    >>> ds.group_sizes
    {'g0': 900, 'g1': 100}
    """
    n = V.integer("n", n, 2)
    n_features = V.integer("n_features", n_features, 1)
    sizes = np.asarray(group_sizes, dtype=float)
    if sizes.ndim != 1 or sizes.size < 1 or np.any(sizes <= 0) or not np.all(np.isfinite(sizes)):
        raise V.fail("group_sizes", tuple(group_sizes), "to be positive numbers, one per group")
    G = sizes.size
    if separation is None:
        separation = (2.0,) + (1.0,) * (G - 1)
    if outlier_rate is None:
        outlier_rate = (0.0,) + (0.1,) * (G - 1)
    sep = _per_group("separation", separation, G, 0.0, np.inf)
    out = _per_group("outlier_rate", outlier_rate, G, 0.0, 1.0)
    flip = _per_group("label_noise", label_noise, G, 0.0, 0.5)
    rng = as_generator(seed)
    counts = np.floor(sizes / sizes.sum() * n).astype(int)
    counts[np.argsort(-(sizes / sizes.sum() * n - counts))[: n - counts.sum()]] += 1
    if np.any(counts == 0):
        raise V.fail("n", n, f"to be large enough that every one of {G} groups gets a record")
    X, y, g = [], [], []
    for k, m in enumerate(counts):
        w = rng.standard_normal(n_features)
        w /= np.linalg.norm(w)
        yk = rng.integers(0, 2, size=m)
        z = rng.standard_normal((m, n_features))
        far = rng.random(m) < out[k]
        z[far] *= 4.0
        xk = (2 * yk - 1)[:, None] * (sep[k] / 2) * w[None, :] + z
        noisy = rng.random(m) < flip[k]
        yk = np.where(noisy, 1 - yk, yk)
        X.append(xk)
        y.append(yk)
        g.append(np.full(m, k))
    return GroupedDataset(
        np.vstack(X).astype(np.float32), np.concatenate(y), np.concatenate(g),
        group_names=tuple(f"g{k}" for k in range(G)), class_names=("0", "1"),
        name="synthetic", group_attribute="group",
        provenance={"source": "fairpriv_lab.data.make_synthetic", "licence": "generated"},
    )


def _per_group(name: str, value, G: int, low: float, high: float) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (G,)) if np.ndim(value) == 0 else np.asarray(value, float)
    if arr.shape != (G,):
        raise V.fail(name, value, f"to be a number or {G} numbers (one per group)")
    for v in arr:
        V.number(name, float(v), low, high)
    return np.array(arr)
