"""`load_dataset` and `list_datasets`: one entry point for every dataset by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core import validate as V
from .._core.rng import SeedLike
from .builtin import load_digits, make_synthetic
from .dataset import GroupedDataset
from .remote import load_adult_full, load_bank, load_credit, load_law, load_mnist, load_utkface
from .tabular import ADULT_GROUPS, load_adult

__all__ = ["DatasetInfo", "load_dataset", "list_datasets", "register_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset offers: its group attributes (default first) and whether it is offline.

    Attributes
    ----------
    name : str
        Name for :func:`load_dataset`.
    groups : tuple of str
        Group attributes the loader accepts as ``group=``; the first is the default.
    offline : bool
        True when no download is needed (bundled, scikit-learn or generated).
    description : str
        One line shown by :func:`list_datasets` users.
    loader : callable
        ``loader(group=..., **kwargs) -> GroupedDataset``.
    modality : {'tabular', 'image'}
        Image datasets set ``image_shape`` on the result.
    takes_seed : bool
        The loader accepts ``seed=`` (generation or subsampling); :func:`load_dataset`
        passes its own ``seed`` unless one is given in ``kwargs``.
    """

    name: str
    groups: tuple[str, ...]
    offline: bool
    description: str
    loader: Callable[..., GroupedDataset]
    modality: str = "tabular"  # "tabular" or "image"
    #: The loader takes ``seed`` (generation or subsampling); load_dataset passes its own.
    takes_seed: bool = False
    #: Keyword options the loader accepts besides ``group``; None: read from its signature.
    options: tuple[str, ...] | None = None

    def accepted_options(self) -> tuple[str, ...] | None:
        """Names of the loader's keyword options (None when it takes any ``**kwargs``)."""
        if self.options is not None:
            return self.options
        import inspect

        try:
            params = inspect.signature(self.loader).parameters.values()
        except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
            return None
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return tuple(p.name for p in params if p.name != "group" and p.kind is not p.VAR_POSITIONAL)


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> None:
    """Add (or replace) a dataset in the registry."""
    _REGISTRY[info.name] = info


def list_datasets() -> list[DatasetInfo]:
    """Return every registered dataset, offline ones first.

    Examples
    --------
    >>> [d.name for d in list_datasets()][:3]
    ['adult', 'digits', 'synthetic']
    """
    return sorted(_REGISTRY.values(), key=lambda d: (not d.offline, list(_REGISTRY).index(d.name)))


def load_dataset(
    name: str, *, group: str | None = None, n: int | None = None, seed: SeedLike = None, **kwargs: Any
) -> GroupedDataset:
    """Load a dataset by name with its records grouped by a sensitive attribute.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`: ``adult``, ``digits``, ``synthetic`` (offline) or
        ``mnist``, ``law``, ``utkface``, ``bank``, ``credit``, ``adult-full`` (downloaded
        into the cache, see :mod:`fairpriv_lab.data.download`; pass ``data_home=``).
    group : str, optional
        The group attribute; the dataset's default when None.
    n : int, optional
        Keep n records drawn at random, stratified by group (seeded by ``seed``).
    seed : int, Generator or None
        Used for the subsample (and by ``synthetic`` for generation).
    **kwargs
        Passed to the dataset's loader (e.g. ``group_sizes`` for ``synthetic``).

    Examples
    --------
    >>> load_dataset("adult", group="sex").n_samples
    45222
    """
    V.choice("name", name, list(_REGISTRY))
    info = _REGISTRY[name]
    group = info.groups[0] if group is None else group
    V.choice("group", group, info.groups)
    check_options(name, kwargs, "kwargs")
    if info.takes_seed:
        kwargs.setdefault("seed", seed)
    ds = info.loader(group=group, **kwargs)
    if n is not None:
        V.integer("n", n, 1, ds.n_samples)
        ds = ds.sample(n, seed=seed)
    return ds


def check_options(name: str, options: Any, where: str = "data.options") -> None:
    """Raise naming the accepted options when a loader option of dataset ``name`` is unknown."""
    accepted = _REGISTRY[name].accepted_options()
    if accepted is None:
        return
    unknown = [k for k in options if k not in accepted]
    if unknown:
        allowed = ", ".join(accepted) if accepted else "none"
        raise V.fail(f"{where} key", unknown[0], f"to be an option of the {name!r} loader: {allowed}")


register_dataset(DatasetInfo(
    "adult", tuple(ADULT_GROUPS), True,
    "UCI Adult census income, 45,222 rows, bundled (CC BY 4.0)", load_adult,
))
register_dataset(DatasetInfo(
    "digits", ("digit",), True,
    "scikit-learn 8x8 handwritten digits, 1,797 rows, 10 digit groups", lambda group: load_digits(),
    modality="image",
))
register_dataset(DatasetInfo(
    "synthetic", ("group",), True,
    "generated binary task with controllable group sizes, separability and outliers",
    lambda group, **kw: make_synthetic(**kw), takes_seed=True,
    options=("n", "group_sizes", "separation", "outlier_rate", "label_noise", "n_features", "seed"),
))
# The downloadable datasets (listed after the offline ones).
for _info in (
    DatasetInfo("mnist", ("digit",), False,
                "MNIST 28x28 digits, 60,000 train / 10,000 test, 10 digit groups (download)",
                load_mnist, modality="image", takes_seed=True),
    DatasetInfo("law", ("race", "gender"), False,
                "LSAC bar passage, race White / non-White, label passed the bar (download)",
                load_law),
    DatasetInfo("utkface", ("ethnicity",), False,
                "UTKFace faces, 5 ethnicity groups, label gender (download, needs Pillow)",
                load_utkface, modality="image"),
    DatasetInfo("bank", ("marital",), False,
                "UCI Bank Marketing, marital-status groups, label subscribed (download)",
                load_bank),
    DatasetInfo("credit", ("sex",), False,
                "UCI default of credit card clients, sex groups, label default (download)",
                load_credit),
    DatasetInfo("adult-full", tuple(ADULT_GROUPS), False,
                "UCI Adult fetched from UCI, same rows as the bundled 'adult' (download)",
                load_adult_full),
):
    register_dataset(_info)
