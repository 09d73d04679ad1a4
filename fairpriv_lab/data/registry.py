"""`load_dataset` and `list_datasets`: one entry point for every dataset by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._core import validate as V
from .._core.rng import SeedLike
from .builtin import load_digits, make_synthetic
from .dataset import GroupedDataset
from .remote import load_adult_full, load_bank, load_credit, load_law, load_mnist, load_utkface
from .tabular import ADULT_GROUPS, load_adult

__all__ = ["DatasetInfo", "check_loader_options", "load_dataset", "list_datasets", "loader_options",
           "register_dataset"]


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
    #: The function whose keyword parameters are the loader's options, when ``loader`` is a
    #: thin wrapper taking ``**kwargs`` (see :func:`loader_options`).
    options_of: Callable[..., Any] | None = None
    #: The loader generates its records and takes ``n`` (how many to generate; its own
    #: default size when None): :func:`load_dataset` passes ``n`` on instead of subsampling,
    #: so a generated dataset has no upper size.
    generated: bool = False

    @property
    def default_size(self) -> int | None:
        """Records generated when ``n`` is not given (the loader's own default); None unless generated."""
        if not self.generated:
            return None
        default = inspect.signature(self.options_of or self.loader).parameters["n"].default
        return int(default)


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


#: Set by load_dataset itself, never a loader option.
_RESERVED = ("group", "n", "seed")


def loader_options(name: str) -> dict[str, inspect.Parameter]:
    """Return the options (keyword parameters) the loader of dataset ``name`` accepts.

    Examples
    --------
    >>> sorted(loader_options("synthetic"))[:3]
    ['group_sizes', 'label_noise', 'n_features']
    """
    V.choice("name", name, list(_REGISTRY))
    info = _REGISTRY[name]
    sig = inspect.signature(info.options_of or info.loader)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p for k, p in sig.parameters.items() if p.kind in kinds and k not in _RESERVED}


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a JSON value can be what an annotation (a string under PEP 563) describes."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if annotation is inspect.Parameter.empty or "Any" in text:
        return True
    if value is None:
        return "None" in text or "Optional" in text
    if isinstance(value, bool):
        return "bool" in text
    if isinstance(value, int | float):
        return any(t in text for t in ("float", "int", "Real", "SeedLike"))
    if isinstance(value, list | tuple):  # the frozen config stores lists as tuples
        return any(t in text for t in ("Sequence", "list", "tuple", "ArrayLike", "ndarray"))
    if isinstance(value, Mapping):
        return any(t in text for t in ("Mapping", "dict"))
    return any(t in text for t in ("str", "Path", "Literal", "PathLike"))


def check_loader_options(name: str, options: Mapping[str, Any], *, label: str = "data.options") -> None:
    """Raise a ConfigError unless every option is a parameter of the loader, of a fitting type.

    Checked before any work (a wrong option otherwise fails as a TypeError deep in a run).
    """
    allowed = loader_options(name)
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise V.fail(f"{label} {key}", value, f"to name an option of the {name!r} loader ({known})")
        ann = allowed[key].annotation
        if not _fits(value, ann):
            shown = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
            raise V.fail(f"{label} {key}", value, f"to be {shown} (a JSON value, e.g. [0.9, 0.1] for a list)")


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
        Keep n records drawn at random, stratified by group (seeded by ``seed``). A
        generated dataset (``synthetic``, :attr:`DatasetInfo.generated`) generates n
        records instead (its default size when None), so n may exceed that size.
    seed : int, Generator or None
        Used for the subsample (and by ``synthetic`` for generation).
    **kwargs
        Passed to the dataset's loader (e.g. ``group_sizes`` for ``synthetic``).

    Examples
    --------
    >>> load_dataset("adult", group="sex").n_samples
    45222
    >>> load_dataset("synthetic", n=5000, seed=0).group_sizes    # generated: any size
    {'g0': 4000, 'g1': 1000}
    """
    V.choice("name", name, list(_REGISTRY))
    info = _REGISTRY[name]
    group = info.groups[0] if group is None else group
    V.choice("group", group, info.groups)
    check_loader_options(name, kwargs, label="kwargs")
    if info.takes_seed:
        kwargs.setdefault("seed", seed)
    if info.generated and n is not None:
        return info.loader(group=group, n=n, **kwargs)  # the generator checks n
    ds = info.loader(group=group, **kwargs)
    if n is not None:
        V.integer("n", n, 1, ds.n_samples)
        ds = ds.sample(n, seed=seed)
    return ds


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
    "generated binary task with controllable size, group sizes, separability and outliers",
    lambda group, **kw: make_synthetic(**kw), takes_seed=True, options_of=make_synthetic, generated=True,
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
