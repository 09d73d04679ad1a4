"""Frozen, validated experiment configurations; re-exported by :mod:`fairpriv_lab.experiment`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from .._core import validate as V
from .._core.exceptions import ConfigError
from .._core.knobs import ScaledClipKnobs, knob_names
from .._core.schema import Param, param, params_of, positive_param, same_param
from .._core.vocabulary import (
    ACCOUNTANTS,
    AUDITORS,
    BOOTSTRAPS,
    DEFAULT_AUDITORS,
    DP_METHODS,
    ESTIMATORS,
    GAMES,
    METHODS,
    MODELS,
    OPTIMIZERS,
    SIGNALS,
    Accountant,
    Bootstrap,
    Estimator,
    GameKind,
    Method,
    Model,
    Optimizer,
    Signal,
    Statistic,
)

if TYPE_CHECKING:
    from ..engine.privacy import ClippingPolicy

__all__ = [
    "DataConfig",
    "TrainConfig",
    "GameConfig",
    "AuditConfig",
    "ExperimentConfig",
    "Param",
    "param",
    "schema",
    "default_of",
    "classroom_default_of",
    "classroom_overrides",
    "lookup_key",
    "MODELS",
    "METHODS",
    "AUDITORS",
]

# ---------------------------------------------------------------------------- the schema
def canonical(value: Any) -> Any:
    """JSON-ready copy: tuples -> lists, numpy scalars -> Python, mapping keys sorted."""
    if isinstance(value, Mapping):
        return {str(k): canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
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
    text = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


class _Section:
    """Shared helpers of the config sections: validation from the schema, dict round trip."""

    SECTION: ClassVar[str] = ""

    def _validate(self) -> None:
        """Check every field against its :class:`Param` (messages name ``section.field``)."""
        for name, p in params_of(type(self)).items():
            p.check(f"{self.SECTION}.{name}", getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (tuples become lists)."""
        return {f.name: canonical(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

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
        Keep n records drawn at random, stratified by group (all when None); a generated
        dataset (``synthetic``) generates n records (its default size when None).
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

    SECTION: ClassVar[str] = "data"
    name: str = param("adult", "dataset name (see `fairpriv-lab datasets list`)", "str",
                      flag="--dataset", aliases=("dataset",))
    group: str | None = param(None, "group attribute (dataset default when omitted)", "str",
                              optional=True)
    n: int | None = param(None, "subsample this many records, stratified by group (synthetic: "
                          "generate this many)", "int", low=10, optional=True, classroom=4000,
                          classroom_for=(("synthetic", 8000),))
    seed: int = param(0, "seed of the subsample and of synthetic data", "int", low=0,
                      flag="--data-seed", aliases=("data_seed",))
    test_size: float = param(0.2, "held-out fraction for test accuracy", "float", low=0.0,
                             high=1.0, low_open=True, high_open=True)
    options: tuple[tuple[str, Any], ...] = param(
        (), "extra keyword arguments of the loader, JSON values", "mapping")

    def __post_init__(self) -> None:
        self._validate()
        check_dataset(self.name, self.group, name_key="data.name", group_key="data.group")
        opts = self.options
        if isinstance(opts, Mapping):
            opts = tuple(sorted(opts.items()))
        try:
            opts = tuple((str(k), _freeze(v)) for k, v in opts)
            json.dumps(canonical(dict(opts)), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as err:
            raise V.fail("data.options", self.options, "to be a mapping of names to JSON values") from err
        from ..data.registry import check_loader_options

        # unknown or mistyped options fail here, not when the loader runs
        check_loader_options(self.name, canonical(dict(opts)), label="data.options")
        object.__setattr__(self, "options", tuple(sorted(opts)))

    @property
    def modality(self) -> str:
        """``"tabular"`` or ``"image"``, from the dataset registry."""
        from ..data import list_datasets

        return {d.name: d.modality for d in list_datasets()}[self.name]

    @property
    def resolved_group(self) -> str:
        """The group attribute, with the dataset's default filled in."""
        from ..data import list_datasets

        return self.group or {d.name: d.groups[0] for d in list_datasets()}[self.name]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (``options`` as a dict)."""
        d = super().to_dict()
        d["options"] = canonical(dict(self.options))
        return d


@dataclass(frozen=True)
class TrainConfig(_Section):
    """How each model of the game is trained (the arguments of ``train_ensemble``).

    Exactly one of ``epsilon`` (a target ε; σ is calibrated by bisection on the accountant)
    and ``noise_multiplier`` is set for the DP methods; neither for ``"sgd"``.
    ``delta=None`` means ``min(1e-5, 1 / (10 n))`` with n the number of training records.
    ``method`` is a method name or a clipping policy of the package, which carries its own
    research knobs (``method=DPSGDS(tau=3.0, floor=0.5)``, docs/design.md 4.6). The knobs are
    declared once, on the policies (:mod:`fairpriv_lab._core.knobs`); this section exposes them
    under the same names (``tau``, ``statistic``, ``stat_noise_ratio``, ``smoothing``, ``floor``,
    ``stat_clip`` of DP-SGD-S; ``count_noise`` of DP-SGD-S and DP-SGD-F) so that the command
    line, the panel and the sweep grids can set them, and :attr:`policy` builds the policy from
    them. A policy passed in is stored as its name and its knobs (a knob also set here must
    agree with it); the methods that ignore a knob have it normalised away from the cache key.
    ``diagnostics`` turns on the un-noised telemetry (GRC, fraction clipped): it reads the
    private batches without noise, so a DP run with it is marked not private (results say
    so); ``None`` means off for the DP methods, on for SGD (docs/privacy.md).
    """

    SECTION: ClassVar[str] = "train"
    model: Model = param("mlp", "model family", "choice", choices=MODELS, classroom="lr")
    hidden: int = param(256, "hidden units of the MLP", "int", low=1)
    method: Method | ClippingPolicy = param("sgd", "training method", "choice", choices=METHODS)
    epochs: int = param(20, "epochs per model", "int", low=1, classroom=10)
    batch_size: int = param(256, "expected (Poisson) batch size", "int", low=1)
    lr: float = positive_param(0.1, "learning rate", classroom=0.3)
    optimizer: Optimizer = param("sgd", "optimizer", "choice", choices=OPTIMIZERS)
    # synthetic (issue 16): at its 6,400 training records a logistic regression's DP noise only
    # matters at a small epsilon and a C above the typical gradient norm (|x| ~ 3.3); at C = 1
    # clipping alone raises the typical group's risk (benchmarks/README.md)
    clip: float = positive_param(1.0, "clipping bound C of the DP methods", classroom_for=(("synthetic", 10.0),))
    epsilon: float | None = positive_param(None, "target epsilon (DP methods)", optional=True, classroom=8.0,
                                           classroom_for=(("synthetic", 0.5),))
    noise_multiplier: float | None = positive_param(
        None, "noise multiplier sigma instead of a target epsilon", optional=True)
    delta: float | None = param(None, "delta (default min(1e-5, 0.1/n))", "float", low=0.0,
                                high=1.0, low_open=True, high_open=True, optional=True)
    accountant: Accountant = param("rdp", "privacy accountant", "choice",
                                              choices=ACCOUNTANTS)
    # The policies' knobs: declared once in _core/knobs.py, exposed here under the same names.
    tau: float = same_param(ScaledClipKnobs, "tau")
    statistic: Statistic = same_param(ScaledClipKnobs, "statistic")
    stat_noise_ratio: float = same_param(ScaledClipKnobs, "stat_noise_ratio")
    count_noise: float = same_param(ScaledClipKnobs, "count_noise")
    smoothing: float = same_param(ScaledClipKnobs, "smoothing")
    floor: float = same_param(ScaledClipKnobs, "floor")
    stat_clip: float | None = same_param(ScaledClipKnobs, "stat_clip")
    diagnostics: bool | None = param(
        None, "un-noised telemetry (GRC, fraction clipped): outside epsilon, marks the result "
        "not private; default off for the DP methods, on for SGD", "bool", optional=True)

    def __post_init__(self) -> None:
        if not isinstance(self.method, str):
            self._take_policy(self.method)
        self._validate()
        V.number("train.floor", self.floor, 0.0, self.tau)
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
        used = knob_names(self.method)
        for k in KNOB_FIELDS:
            if k not in used:
                d[k] = None
        d["diagnostics"] = self.resolved_diagnostics
        return d

    @property
    def policy(self) -> Any:
        """The clipping policy this section trains with, knobs included (imports the engine).

        Examples
        --------
        >>> TrainConfig(method="dpsgds", epsilon=8.0, tau=3.0).policy.tau
        3.0
        """
        from ..engine.privacy import as_method

        return as_method(self.method, **{k: getattr(self, k) for k in knob_names(self.method)})

    def _take_policy(self, policy: Any) -> None:
        """Store a policy object passed as ``method`` as its name and its knobs."""
        import sys

        privacy = sys.modules.get("fairpriv_lab.engine.privacy")  # a policy object means it is loaded
        builtin = {} if privacy is None else {
            privacy.SGD: "sgd", privacy.DPSGD: "dpsgd", privacy.DPSGDS: "dpsgds", privacy.DPSGDF: "dpsgdf"}
        if type(policy) not in builtin:
            raise V.fail(
                "train.method", policy if privacy is None or not isinstance(policy, privacy.ClippingPolicy)
                else type(policy).__name__,
                "to be one of " + ", ".join(repr(m) for m in METHODS) + " or a policy SGD(), DPSGD(), "
                "DPSGDS(...), DPSGDF(...) of fairpriv_lab.engine",
                "An experiment's cache key holds its method's name and knobs, not a policy's code: "
                "train a policy of your own with fairpriv_lab.engine.train_ensemble(method=policy)",
            )
        name = builtin[type(policy)]
        for k in knob_names(name):
            mine, theirs = getattr(self, k), getattr(policy, k)
            if mine != KNOB_DEFAULTS[k] and mine != theirs:
                raise V.fail(
                    f"train.{k}", mine, f"to be left unset or to equal the policy's {k}={theirs!r}",
                    "A policy object carries its own knobs; set them on the policy",
                )
            object.__setattr__(self, k, theirs)
        object.__setattr__(self, "method", name)

    @property
    def resolved_diagnostics(self) -> bool:
        """Whether un-noised telemetry is computed: ``diagnostics``, or by default SGD only."""
        return (not self.is_private) if self.diagnostics is None else bool(self.diagnostics)

    @property
    def is_release_private(self) -> bool:
        """True when everything the run hands out is covered by its accounted ε."""
        return self.is_private and not self.resolved_diagnostics


#: The policies' knobs that TrainConfig exposes, and their declared defaults.
KNOB_FIELDS: tuple[str, ...] = tuple(params_of(ScaledClipKnobs))
KNOB_DEFAULTS: dict[str, Any] = {k: p.default for k, p in params_of(ScaledClipKnobs).items()}


@dataclass(frozen=True)
class GameConfig(_Section):
    """The membership game: which models see which records (docs/design.md 4.1).

    ``kind="aloo"`` audits ``m`` records (stratified by group) with ``n_models`` models in
    complementary pairs; ``"half"`` audits every training record (each model sees a random
    half; leave ``m`` None); ``"loo"`` is the exact leave-one-out game on ``targets``
    (dataset indices into the training records), with ``n_models / (2 len(targets))`` pairs
    per target.
    """

    SECTION: ClassVar[str] = "game"
    kind: GameKind = param("aloo", "membership game", "choice",
                                                 choices=GAMES, flag="--game", classroom="half")
    n_models: int = param(64, "number of models (even)", "int", low=2, even=True, classroom=128)
    m: int | None = param(500, "audited records of the ALOOA game", "int", low=2, optional=True,
                          classroom=200)
    targets: tuple[int, ...] | None = param(
        None, "target records of the LOO game, e.g. 3,17", "ints", optional=True)

    def __post_init__(self) -> None:
        self._validate()
        n_models = self.n_models
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
    """How the trained models are audited (docs/design.md 4.3-4.7).

    ``estimator`` is ``"cross_fit"`` (default; unbiased under the null only: with leakage it
    under-reads, about 80-95 % of a planted risk) or ``"in_sample"`` (the paper's; biased up);
    ``n_boot`` bootstrap resamples give CIs at level ``ci``: ``bootstrap="records"`` resamples
    audited records within groups (models held fixed), ``"pairs"`` also resamples model
    pairs and recomputes the IPRs (:func:`fairpriv_lab.audit.pair_bootstrap`; PA-ALOOA and
    PA-LOOA only, slower, wider and more honest intervals; ``estimator="cross_fit"`` only: the
    in-sample estimator is biased upwards on resampled pairs, whose duplicates it fits).
    ``alpha`` is the Clopper-Pearson
    level of the empirical ε lower bounds.
    """

    SECTION: ClassVar[str] = "audit"
    estimator: Estimator = param(
        "cross_fit", "per-record IPR estimator", "choice", choices=ESTIMATORS)
    signal: Signal = param("loss", "attack signal", "choice", choices=SIGNALS)
    n_boot: int = param(1000, "bootstrap resamples for the CIs", "int", low=0)
    ci: float = param(0.95, "confidence level of the CIs", "float", low=0.0, high=1.0,
                      low_open=True, high_open=True)
    alpha: float = param(0.05, "Clopper-Pearson level of the empirical epsilon", "float", low=0.0,
                         high=1.0, low_open=True, high_open=True)
    auditors: tuple[str, ...] = param(
        DEFAULT_AUDITORS, "comma-separated auditors among " + ", ".join(AUDITORS), "choices",
        choices=AUDITORS, aliases=("auditor",))
    min_group_size: int = param(30, "warn for groups below this size", "int", low=1)
    bootstrap: Bootstrap = param(
        "records", "CIs over records, or over model pairs and records (PA-ALOOA/PA-LOOA)",
        "choice", choices=BOOTSTRAPS)

    def __post_init__(self) -> None:
        self._validate()
        if self.bootstrap == "pairs" and self.estimator == "in_sample" and self.n_boot > 0:
            raise V.fail(
                "audit.bootstrap", "pairs", "to be 'records' with audit.estimator='in_sample'",
                "The in-sample threshold fits the duplicated pairs of a resample, so pair-bootstrap "
                "replicates sit several points above the estimate (biased intervals); use "
                "estimator='cross_fit' with bootstrap='pairs'",
            )
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
    seed: int = param(0, "experiment seed (game, training, audit)", "int", low=0)
    device: str = param("auto", "auto, cpu, cuda, cuda:N or mps", "device")
    chunk_models: int = param(16, "models per cached chunk (even)", "int", low=2, even=True,
                              even_hint="A chunk holds whole model pairs", classroom=32)

    #: Flat names accepted by :meth:`replace` and by sweep grids besides ``section.field`` and
    #: unique field names (declared on the fields' :class:`Param`, gathered here).
    KEY_ALIASES: ClassVar[dict[str, str]]

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise V.fail(name, value, f"to be a {cls.__name__} or a dict")
        for name, p in params_of(ExperimentConfig).items():
            p.check(name, getattr(self, name))
        check_dataset(self.data.name, None, model=self.train.model, name_key="data.name",
                      model_key="train.model")
        if "PA-LOOA" in self.audit.auditors and self.game.kind != "loo":
            raise V.fail(
                "audit.auditors", self.audit.auditors, f"not to include 'PA-LOOA' with game.kind={self.game.kind!r}",
                "PA-LOOA is the exact leave-one-out game; set game.kind='loo' and game.targets",
            )
        if self.audit.bootstrap == "pairs" and self.game.kind == "loo" and self.audit.n_boot > 0:
            raise V.fail(
                "audit.bootstrap", "pairs", "to be 'records' with game.kind='loo'",
                "The pair bootstrap needs the cross_fit estimator, which needs every model pair to "
                "audit every record (aloo, half); each LOO target has its own pairs",
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
        d.update({k: getattr(self, k) for k in params_of(ExperimentConfig)})
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a nested dict (sections as dicts); flat keys are applied as overrides."""
        if not isinstance(d, Mapping):
            raise V.fail("config", d, "to be a mapping")
        nested = {k: v for k, v in d.items() if k in _SECTIONS or k in params_of(ExperimentConfig)}
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
    if "method" in changes and not isinstance(changes["method"], str):
        for k in KNOB_FIELDS:  # a policy object carries its knobs: the current ones give way
            changes.setdefault(k, KNOB_DEFAULTS[k])
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


def schema() -> dict[str, Param]:
    """Return every field of :class:`ExperimentConfig` as ``{"section.field" or "field": Param}``.

    The one declaration of the configuration: the command line's options, the panel's and
    the notebooks' checks and the sweep grids' keys all come from it. To add a field, add
    one ``param(...)`` line to its section (docs/ARCHITECTURE.md, "Adding a field").

    Examples
    --------
    >>> p = schema()["train.epsilon"]
    >>> p.kind, p.low, p.optional
    ('float', 0.0, True)
    """
    out = {f"{section}.{name}": p for section, cls in _SECTIONS.items()
           for name, p in params_of(cls).items()}
    out.update(params_of(ExperimentConfig))
    return out


def default_of(key: str) -> Any:
    """Return the schema's default of a field (``default_of("train.clip") == 1.0``)."""
    return schema()[key].default


def classroom_default_of(key: str, dataset: str | None = None) -> Any:
    """Return a field's interactive default (the panel's starting value), else its default.

    ``dataset`` picks that dataset's own classroom default where the schema declares one
    (``Param.classroom_for``); the general classroom default otherwise.

    Examples
    --------
    >>> classroom_default_of("game.kind"), default_of("game.kind")
    ('half', 'aloo')
    >>> classroom_default_of("train.clip") == default_of("train.clip")
    True
    >>> classroom_default_of("data.n"), classroom_default_of("data.n", "synthetic")
    (4000, 8000)
    """
    p = schema()[key]
    per_dataset = dict(p.classroom_for)
    if dataset is not None and dataset in per_dataset:
        return per_dataset[dataset]
    return p.default if p.classroom == "__same__" else p.classroom


def classroom_overrides(dataset: str) -> dict[str, Any]:
    """Return ``{"section.field": value}`` of the classroom defaults particular to ``dataset``.

    Examples
    --------
    >>> classroom_overrides("synthetic")["data.n"]
    8000
    >>> classroom_overrides("adult")
    {}
    """
    return {key: value for key, p in schema().items() for name, value in p.classroom_for if name == dataset}


def lookup_key(key: str, keys: Sequence[str], aliases: Mapping[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """Resolve a key to one of ``keys``: itself, an alias, or the unique field with that last part.

    The one key resolver of the package (``ExperimentConfig.replace`` and the sweep grids).
    Returns ``(key, ())`` when resolved, ``(None, candidates)`` when the last part is
    ambiguous and ``(None, ())`` when unknown; the caller words the error for its context.
    """
    key = aliases.get(key, key)
    if key in keys:
        return key, ()
    owners = tuple(k for k in keys if "." in k and k.rsplit(".", 1)[1] == key)
    if len(owners) == 1:
        return owners[0], ()
    return None, owners


def _all_keys() -> list[str]:
    return list(schema())


def _resolve_key(key: str) -> tuple[str | None, str]:
    resolved, owners = lookup_key(key, _all_keys(), ExperimentConfig.KEY_ALIASES)
    if resolved is None:
        if owners:
            raise V.fail("override", key, "to be unambiguous; use one of " + ", ".join(owners))
        raise V.fail("override", key, "to be one of " + ", ".join(_all_keys()))
    section, _, name = resolved.rpartition(".")
    return section or None, name


def check_dataset(name: str, group: str | None, *, model: str | None = None,
                  name_key: str = "dataset", group_key: str = "group", model_key: str = "model") -> None:
    """Check a dataset name and group attribute against the registry (and a CNN's modality)."""
    from ..data import list_datasets

    infos = {d.name: d for d in list_datasets()}
    V.choice(name_key, name, list(infos))
    if group is not None:
        V.choice(group_key, group, infos[name].groups)
    if model == "cnn" and infos[name].modality != "image":
        raise V.fail(model_key, "cnn", f"to be 'lr' or 'mlp' for the tabular dataset {name!r}",
                     "The CNN needs image data (digits, mnist, utkface)")


ExperimentConfig.KEY_ALIASES = {
    alias: key for key, p in schema().items() for alias in p.aliases}
