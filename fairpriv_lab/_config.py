"""Frozen, validated experiment configurations; re-exported by :mod:`fairpriv_lab.experiment`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from . import _validate as V
from .exceptions import ConfigError

__all__ = [
    "DataConfig",
    "TrainConfig",
    "GameConfig",
    "AuditConfig",
    "ExperimentConfig",
    "MODELS",
    "METHODS",
    "AUDITORS",
]

MODELS = ("lr", "mlp", "cnn")
METHODS = ("sgd", "dpsgd", "dpsgds", "dpsgdf")
DP_METHODS = ("dpsgd", "dpsgds", "dpsgdf")
OPTIMIZERS = ("sgd", "adam")
ACCOUNTANTS = ("rdp", "prv")
STATISTICS = ("norm", "mean_direction")
GAMES = ("aloo", "half", "loo")
ESTIMATORS = ("cross_fit", "in_sample")
SIGNALS = ("loss", "confidence")
AUDITORS = ("PA-ALOOA", "PA-LOOA", "PA-GA", "PA-GBA")
BOOTSTRAPS = ("records", "pairs")
#: Early bounds against runs that would never finish (epochs=10**9, 200,000 models); the
#: engine's planner refines them with the estimated time and memory of a configuration.
MAX_EPOCHS = 10_000
MAX_MODELS = 20_000
_DEVICE_HINT = "to be one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"


def _canonical(value: Any) -> Any:
    """JSON-ready copy: tuples -> lists, numpy scalars -> Python, mapping keys sorted."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


def _freeze(value: Any) -> Any:
    """Hashable copy of a JSON-like value: lists -> tuples (recursively)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


def digest(payload: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of payload (sorted keys, no spaces)."""
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


class _Section:
    """Shared helpers of the config sections: to_dict, from_dict with a clear unknown-key error."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (tuples become lists)."""
        return {f.name: _canonical(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Build from a dict as written by :meth:`to_dict`; unknown keys raise ConfigError."""
        if not isinstance(d, Mapping):
            raise V.fail(cls.__name__, d, "to be a mapping of field names to values")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise V.fail(f"{cls.__name__} key", unknown[0], "to be one of " + ", ".join(names))
        return cls(**d)


def _opt_int(name: str, value: Any, low: int) -> int | None:
    return None if value is None else V.integer(name, value, low)


def _opt_pos(name: str, value: Any) -> float | None:
    return None if value is None else V.positive(name, value)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Which records: a dataset by name, its group attribute, a subsample and a test split.

    Parameters
    ----------
    name : str
        A dataset of :func:`fairpriv_lab.list_datasets` (``adult``, ``digits``, ``synthetic``, ...).
    group : str or None
        The sensitive attribute; the dataset's default (first) when None.
    n : int or None
        Keep n records drawn at random, stratified by group (all when None).
    seed : int
        Seeds the subsample (and the generator of ``synthetic``) independently of the
        experiment's seed, so that several experiment seeds share the same records.
    test_size : float
        Fraction of the records held out for test accuracy and outcome fairness; they are in
        no model's training set and are never audited.
    options : mapping
        Extra keyword arguments of the loader (e.g. ``{"group_sizes": [0.9, 0.1]}`` for
        ``synthetic``); JSON values only.
    """

    name: str = "adult"
    group: str | None = None
    n: int | None = None
    seed: int = 0
    test_size: float = 0.2
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        from .data import list_datasets

        infos = {d.name: d for d in list_datasets()}
        V.choice("data.name", self.name, list(infos))
        if self.group is not None:
            V.choice("data.group", self.group, infos[self.name].groups)
        _opt_int("data.n", self.n, 4)
        V.integer("data.seed", self.seed, 0)
        V.number("data.test_size", self.test_size, 0.0, 1.0, low_open=True, high_open=True)
        opts = self.options
        if isinstance(opts, Mapping):
            opts = tuple(sorted(opts.items()))
        try:
            opts = tuple((str(k), _freeze(v)) for k, v in opts)
            json.dumps(_canonical(dict(opts)), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as err:
            raise V.fail("data.options", self.options, "to be a mapping of names to JSON values") from err
        from .data.registry import check_options

        check_options(self.name, dict(opts))  # unknown options fail here, not when the loader runs
        object.__setattr__(self, "options", tuple(sorted(opts)))

    @property
    def modality(self) -> str:
        """``"tabular"`` or ``"image"``, from the dataset registry."""
        from .data import list_datasets

        return {d.name: d.modality for d in list_datasets()}[self.name]

    @property
    def resolved_group(self) -> str:
        """The group attribute, with the dataset's default filled in."""
        from .data import list_datasets

        return self.group or {d.name: d.groups[0] for d in list_datasets()}[self.name]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (``options`` as a dict)."""
        d = super().to_dict()
        d["options"] = _canonical(dict(self.options))
        return d


@dataclass(frozen=True)
class TrainConfig(_Section):
    """How each model of the game is trained (the arguments of ``train_ensemble``).

    Exactly one of ``epsilon`` (a target ε; σ is calibrated by bisection on the accountant)
    and ``noise_multiplier`` is set for the DP methods; neither for ``"sgd"``.
    ``delta=None`` means ``min(1e-5, 1 / (10 n))`` with n the number of training records.
    ``tau``, ``statistic``, ``stat_noise_ratio``, ``smoothing``, ``clip_floor`` and
    ``stat_clip`` tune DP-SGD-S (:class:`fairpriv_lab.privacy.DPSGDS`, DESIGN.md 4.6) and
    ``count_noise`` (the noisy group counts' multiplier relative to σ) DP-SGD-S and DP-SGD-F;
    the methods that ignore a field have it normalised away from the cache key.
    """

    model: Literal["lr", "mlp", "cnn"] = "mlp"
    hidden: int = 256
    method: Literal["sgd", "dpsgd", "dpsgds", "dpsgdf"] = "sgd"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    clip: float = 1.0
    epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    accountant: Literal["rdp", "prv"] = "rdp"
    tau: float = 2.0
    statistic: Literal["norm", "mean_direction"] = "norm"
    stat_noise_ratio: float = 5.0
    count_noise: float = 5.0
    smoothing: float = 0.0
    clip_floor: float = 0.0
    stat_clip: float | None = None

    def __post_init__(self) -> None:
        V.choice("train.model", self.model, MODELS)
        V.integer("train.hidden", self.hidden, 1)
        V.choice("train.method", self.method, METHODS)
        if V.integer("train.epochs", self.epochs, 1) > MAX_EPOCHS:
            raise V.fail("train.epochs", self.epochs, f"to be at most {MAX_EPOCHS}",
                         "Such a run would not finish; the paper's models train for 20-100 epochs")
        V.integer("train.batch_size", self.batch_size, 1)
        V.positive("train.lr", self.lr)
        V.choice("train.optimizer", self.optimizer, OPTIMIZERS)
        V.positive("train.clip", self.clip)
        _opt_pos("train.epsilon", self.epsilon)
        _opt_pos("train.noise_multiplier", self.noise_multiplier)
        if self.delta is not None:
            V.number("train.delta", self.delta, 0.0, 1.0, low_open=True, high_open=True)
        V.choice("train.accountant", self.accountant, ACCOUNTANTS)
        V.number("train.tau", self.tau, 1.0, math.inf, high_open=True)
        V.choice("train.statistic", self.statistic, STATISTICS)
        V.positive("train.stat_noise_ratio", self.stat_noise_ratio)
        V.positive("train.count_noise", self.count_noise)
        V.number("train.smoothing", self.smoothing, 0.0, 1.0, high_open=True)
        V.number("train.clip_floor", self.clip_floor, 0.0, self.tau)
        _opt_pos("train.stat_clip", self.stat_clip)
        if self.method == "sgd":
            for name in ("epsilon", "noise_multiplier"):
                if getattr(self, name) is not None:
                    raise V.fail(
                        f"train.{name}", getattr(self, name), "to be None with method='sgd'",
                        "Plain SGD has no privacy budget (ε = inf); choose method='dpsgd', "
                        "'dpsgds' or 'dpsgdf' to train with differential privacy",
                    )
        else:
            if (self.epsilon is None) == (self.noise_multiplier is None):
                raise ConfigError(
                    f"Expected exactly one of train.epsilon (a target ε) and "
                    f"train.noise_multiplier with method={self.method!r}, got "
                    f"epsilon={self.epsilon!r} and noise_multiplier={self.noise_multiplier!r}."
                )

    @property
    def is_private(self) -> bool:
        """True for the DP methods."""
        return self.method in DP_METHODS

    def normalized(self) -> dict[str, Any]:
        """The fields that change training, with the ones a method ignores set to None."""
        d = self.to_dict()
        if self.model != "mlp":
            d["hidden"] = None
        if not self.is_private:
            for k in ("clip", "accountant"):
                d[k] = None
        if self.method != "dpsgds":
            for k in ("tau", "statistic", "stat_noise_ratio", "smoothing", "clip_floor", "stat_clip"):
                d[k] = None
        if self.method not in ("dpsgds", "dpsgdf"):
            d["count_noise"] = None
        return d


@dataclass(frozen=True)
class GameConfig(_Section):
    """The membership game: which models see which records (DESIGN.md 4.1).

    ``kind="aloo"`` audits ``m`` records (stratified by group) with ``n_models`` models in
    complementary pairs; ``"half"`` audits every training record (each model sees a random
    half; leave ``m`` None); ``"loo"`` is the exact leave-one-out game on ``targets``
    (dataset indices into the training records), with ``n_models / (2 len(targets))`` pairs
    per target.
    """

    kind: Literal["aloo", "half", "loo"] = "aloo"
    n_models: int = 64
    m: int | None = 500
    targets: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        V.choice("game.kind", self.kind, GAMES)
        n_models = V.integer("game.n_models", self.n_models, 2)
        if n_models > MAX_MODELS:
            raise V.fail("game.n_models", n_models, f"to be at most {MAX_MODELS}",
                         "Such a game would not finish; a few hundred to a few thousand models suffice")
        if n_models % 2:
            raise V.fail(
                "game.n_models", n_models, "to be even",
                "Models come in complementary pairs (2p, 2p+1)",
            )
        if self.kind == "aloo":
            if self.m is None:
                raise V.fail("game.m", None, "to be an integer >= 2 with kind='aloo'")
            V.integer("game.m", self.m, 2)
        elif self.m is not None:
            raise V.fail(
                "game.m", self.m, f"to be None with kind={self.kind!r}",
                "'half' audits every training record and 'loo' audits its targets",
            )
        if self.kind == "loo":
            if not self.targets:
                raise V.fail("game.targets", self.targets, "to list target records with kind='loo'")
            targets = tuple(V.integer("game.targets", t, 0) for t in self.targets)
            if len(set(targets)) != len(targets):
                raise V.fail("game.targets", targets, "to hold distinct records")
            if n_models % (2 * len(targets)):
                raise V.fail(
                    "game.n_models", n_models, f"to be a multiple of 2 * len(targets) = {2 * len(targets)}",
                    "Every target gets the same number of model pairs",
                )
            object.__setattr__(self, "targets", targets)
        elif self.targets is not None:
            raise V.fail("game.targets", self.targets, "to be None unless kind='loo'")


@dataclass(frozen=True)
class AuditConfig(_Section):
    """How the trained models are audited (DESIGN.md 4.3-4.7).

    ``estimator`` is ``"cross_fit"`` (unbiased, default) or ``"in_sample"`` (the paper's);
    ``n_boot`` bootstrap resamples give CIs at level ``ci``: ``bootstrap="records"`` resamples
    audited records within groups (models held fixed), ``"pairs"`` also resamples model
    pairs and recomputes the IPRs (:func:`fairpriv_lab.risk.pair_bootstrap`; PA-ALOOA and
    PA-LOOA only, slower, wider and more honest intervals). ``alpha`` is the Clopper-Pearson
    level of the empirical ε lower bounds.
    """

    estimator: Literal["cross_fit", "in_sample"] = "cross_fit"
    signal: Literal["loss", "confidence"] = "loss"
    n_boot: int = 1000
    ci: float = 0.95
    alpha: float = 0.05
    auditors: tuple[str, ...] = ("PA-ALOOA", "PA-GA", "PA-GBA")
    min_group_size: int = 30
    bootstrap: Literal["records", "pairs"] = "records"

    def __post_init__(self) -> None:
        V.choice("audit.estimator", self.estimator, ESTIMATORS)
        V.choice("audit.signal", self.signal, SIGNALS)
        V.integer("audit.n_boot", self.n_boot, 0)
        V.number("audit.ci", self.ci, 0.0, 1.0, low_open=True, high_open=True)
        V.number("audit.alpha", self.alpha, 0.0, 1.0, low_open=True, high_open=True)
        V.integer("audit.min_group_size", self.min_group_size, 1)
        V.choice("audit.bootstrap", self.bootstrap, BOOTSTRAPS)
        if not isinstance(self.auditors, str | list | tuple):
            raise V.fail("audit.auditors", self.auditors, "to name one or more of " + ", ".join(AUDITORS))
        auditors = (self.auditors,) if isinstance(self.auditors, str) else tuple(self.auditors)
        if not auditors:
            raise V.fail("audit.auditors", auditors, "to name at least one of " + ", ".join(AUDITORS))
        for a in auditors:
            V.choice("audit.auditors", a, AUDITORS)
        if len(set(auditors)) != len(auditors):
            raise V.fail("audit.auditors", auditors, "to name each auditor once")
        object.__setattr__(self, "auditors", auditors)


_SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig, "train": TrainConfig, "game": GameConfig, "audit": AuditConfig,
}
_TOP = ("seed", "device", "chunk_models")
# Flat aliases accepted by replace() besides "section.field" and unique field names.
_ALIASES = {"dataset": "data.name", "data_seed": "data.seed", "auditor": "audit.auditors"}


@dataclass(frozen=True)
class ExperimentConfig:
    """One audit experiment: data, training, game, audit, seed, device and chunking.

    Validation of each section happens in its ``__post_init__``; combinations that need
    two sections (a CNN on tabular data, PA-LOOA outside the LOO game, more audited records
    than the data holds, chunks that split model pairs) are checked here. Checks that need
    the loaded data (groups present, m against the training-set size) run in
    :func:`fairpriv_lab.experiment.run`.

    Parameters
    ----------
    data, train, game, audit : the four sections (dicts are accepted and converted)
    seed : int
        Seeds the game, the training chunks (one stream per chunk, derived from
        ``(seed, chunk index)``) and the audit.
    device : str
        ``"auto"`` (GPU when present), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``. Not part of
        the cache key: a result computed on one device is served to another.
    chunk_models : int
        Models trained per chunk (even). Each finished chunk is cached at once, so an
        interrupted run resumes at its first missing chunk. It seeds the chunks, so it is
        part of the cache key.

    Examples
    --------
    >>> cfg = ExperimentConfig(train={"method": "dpsgd", "epsilon": 10.0})
    >>> cfg.replace(**{"train.epsilon": 1.0, "n_models": 8}).game.n_models
    8
    >>> cfg.replace(epsilon=1.0).train.epsilon
    1.0
    """

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    game: GameConfig = field(default_factory=GameConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    seed: int = 0
    device: str = "auto"
    chunk_models: int = 16

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise V.fail(name, value, f"to be a {cls.__name__} or a dict")
        V.integer("seed", self.seed, 0)
        if not isinstance(self.device, str):
            raise V.fail("device", self.device, _DEVICE_HINT)
        import re

        if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", self.device):
            raise V.fail("device", self.device, _DEVICE_HINT)
        chunk = V.integer("chunk_models", self.chunk_models, 2)
        if chunk % 2:
            raise V.fail("chunk_models", chunk, "to be even", "A chunk holds whole model pairs")
        if self.train.model == "cnn" and self.data.modality != "image":
            raise V.fail(
                "train.model", "cnn", f"to be 'lr' or 'mlp' for the tabular dataset {self.data.name!r}",
                "The CNN needs image data (digits, mnist, utkface)",
            )
        if "PA-LOOA" in self.audit.auditors and self.game.kind != "loo":
            raise V.fail(
                "audit.auditors", self.audit.auditors, f"not to include 'PA-LOOA' with game.kind={self.game.kind!r}",
                "PA-LOOA is the exact leave-one-out game; set game.kind='loo' and game.targets",
            )
        if self.game.kind == "loo" and "PA-ALOOA" in self.audit.auditors:
            raise V.fail(
                "audit.auditors", self.audit.auditors, "not to include 'PA-ALOOA' with game.kind='loo'",
                "Use auditors=('PA-LOOA',) for the exact leave-one-out game",
            )
        if self.data.n is not None:
            n_train = self.data.n - int(round(self.data.test_size * self.data.n))
            if self.game.kind == "aloo" and self.game.m is not None and self.game.m > n_train:
                raise V.fail(
                    "game.m", self.game.m, f"to be at most the {n_train} training records "
                    f"(data.n={self.data.n} minus the test split)",
                )
            if self.game.targets is not None and max(self.game.targets) >= n_train:
                raise V.fail("game.targets", self.game.targets, f"to index the {n_train} training records")

    # ------------------------------------------------------------------ dict round trip
    def to_dict(self) -> dict[str, Any]:
        """Return a nested JSON-ready dict; ``from_dict(to_dict())`` gives an equal config."""
        d: dict[str, Any] = {name: getattr(self, name).to_dict() for name in _SECTIONS}
        d.update({k: getattr(self, k) for k in _TOP})
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a nested dict (sections as dicts); flat keys are applied as overrides."""
        if not isinstance(d, Mapping):
            raise V.fail("config", d, "to be a mapping")
        nested = {k: v for k, v in d.items() if k in _SECTIONS or k in _TOP}
        flat = {k: v for k, v in d.items() if k not in nested}
        cfg = cls(**nested)
        return cfg.replace(**flat) if flat else cfg

    def replace(self, **overrides: Any) -> ExperimentConfig:
        """Return a copy with fields changed; keys are ``"section.field"`` or a unique field.

        ``replace(**{"train.epsilon": 1.0})``, ``replace(epsilon=1.0)`` and
        ``replace(dataset="digits")`` all work; an unknown or ambiguous key raises
        ConfigError naming the accepted keys. Changes are applied together, so mutually
        dependent fields (``method`` and ``epsilon``) can change in one call.
        """
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        top: dict[str, Any] = {}
        for key, value in overrides.items():
            section, name = _resolve_key(key)
            if section is None:
                top[name] = value
            else:
                sections[section][name] = value
        kwargs: dict[str, Any] = dict(top)
        for section, changes in sections.items():
            if changes:
                current = getattr(self, section)
                if section == "data" and "options" in changes and isinstance(changes["options"], Mapping):
                    changes["options"] = tuple(sorted(changes["options"].items()))
                if section == "train":
                    changes = _train_changes(current, changes)
                if section == "game":
                    changes = _game_changes(current, changes)
                kwargs[section] = dataclasses.replace(current, **changes)
        return dataclasses.replace(self, **kwargs)

    # ------------------------------------------------------------------ normalisation
    def training_key_payload(self) -> dict[str, Any]:
        """What determines the trained models: data, training, game, seed and chunking."""
        data = self.data.to_dict()
        data["group"] = self.data.resolved_group
        return {
            "data": data, "train": self.train.normalized(), "game": self.game.to_dict(),
            "seed": self.seed, "chunk_models": self.chunk_models,
        }

    def normalized(self) -> dict[str, Any]:
        """The canonical dict hashed for the cache (no device; defaults filled in)."""
        return {**self.training_key_payload(), "audit": self.audit.to_dict()}

    @property
    def digest(self) -> str:
        """sha256 of :meth:`normalized` (the dataset checksum is added by the cache)."""
        return digest(self.normalized())

    @property
    def label(self) -> str:
        """A short human label, e.g. ``"adult/sex mlp dpsgd eps=10"``."""
        t = self.train
        priv = f" eps={t.epsilon:g}" if t.epsilon is not None else (
            f" sigma={t.noise_multiplier:g}" if t.noise_multiplier is not None else "")
        return f"{self.data.name}/{self.data.resolved_group} {t.model} {t.method}{priv}"


def _train_changes(current: TrainConfig, changes: dict[str, Any]) -> dict[str, Any]:
    """Switching method to/from SGD drops a stale budget instead of failing on it."""
    changes = dict(changes)
    if changes.get("method") == "sgd":
        changes.setdefault("epsilon", None)
        changes.setdefault("noise_multiplier", None)
    if "epsilon" in changes and changes["epsilon"] is not None:
        changes.setdefault("noise_multiplier", None)
    if "noise_multiplier" in changes and changes["noise_multiplier"] is not None:
        changes.setdefault("epsilon", None)
    return changes


def _game_changes(current: GameConfig, changes: dict[str, Any]) -> dict[str, Any]:
    """Switching the game kind fills in or drops m and targets unless they are given."""
    changes = dict(changes)
    kind = changes.get("kind", current.kind)
    if kind in ("half", "loo"):
        changes.setdefault("m", None)
    elif "m" not in changes and current.m is None:
        changes["m"] = GameConfig.m
    if kind != "loo":
        changes.setdefault("targets", None)
    return changes


def _all_keys() -> list[str]:
    keys = [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in fields(cls)]
    return keys + list(_TOP)


def _resolve_key(key: str) -> tuple[str | None, str]:
    key = _ALIASES.get(key, key)
    if key in _TOP:
        return None, key
    if "." in key:
        section, name = key.split(".", 1)
        if section in _SECTIONS and name in {f.name for f in fields(_SECTIONS[section])}:
            return section, name
    else:
        owners = [s for s, cls in _SECTIONS.items() if key in {f.name for f in fields(cls)}]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise V.fail("override", key, "to be unambiguous; use one of " + ", ".join(f"{s}.{key}" for s in owners))
    raise V.fail("override", key, "to be one of " + ", ".join(_all_keys()))
