"""The package's vocabulary: every allowed choice, its display label, and shared defaults.

Each list of allowed values is written once, here, as a ``Literal`` type; the tuple of values
is read from it (``typing.get_args``), so a signature's annotation and the validation of the
same option cannot drift apart. Every layer imports from here; this module imports nothing
of the package.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "Model", "MODELS", "MODEL_LABELS",
    "Method", "METHODS", "DP_METHODS", "GROUP_METHODS", "METHOD_LABELS",
    "Optimizer", "OPTIMIZERS",
    "Accountant", "ACCOUNTANTS",
    "Statistic", "STATISTICS",
    "GameKind", "GAMES",
    "Estimator", "ESTIMATORS",
    "Signal", "SIGNALS",
    "Auditor", "AUDITORS", "DEFAULT_AUDITORS", "RECORD_AUDITORS",
    "Bootstrap", "BOOTSTRAPS",
    "DEVICE_PATTERN", "DEVICE_HINT",
    "default_delta",
]

Model = Literal["lr", "mlp", "cnn"]
MODELS: tuple[str, ...] = get_args(Model)
#: Display names of the model families (the panel's dropdown).
MODEL_LABELS: dict[str, str] = {"lr": "Logistic regression", "mlp": "MLP (256 tanh units)", "cnn": "CNN"}

Method = Literal["sgd", "dpsgd", "dpsgds", "dpsgdf"]
METHODS: tuple[str, ...] = get_args(Method)
#: The differentially private methods (every method but plain SGD).
DP_METHODS: tuple[str, ...] = METHODS[1:]
#: Methods with group-specific clipping bounds: they need at least two groups.
GROUP_METHODS: tuple[str, ...] = ("dpsgds", "dpsgdf")
#: Display names of the training methods (as in the paper).
METHOD_LABELS: dict[str, str] = {"sgd": "SGD", "dpsgd": "DP-SGD", "dpsgds": "DP-SGD-S", "dpsgdf": "DP-SGD-F"}

Optimizer = Literal["sgd", "adam"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)

Accountant = Literal["rdp", "prv"]
ACCOUNTANTS: tuple[str, ...] = get_args(Accountant)

#: DP-SGD-S's group statistic: our scalar norm statistic, or the paper's mean direction.
Statistic = Literal["norm", "mean_direction"]
STATISTICS: tuple[str, ...] = get_args(Statistic)

GameKind = Literal["aloo", "half", "loo"]
GAMES: tuple[str, ...] = get_args(GameKind)

Estimator = Literal["cross_fit", "in_sample"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)

Signal = Literal["loss", "confidence"]
SIGNALS: tuple[str, ...] = get_args(Signal)

Auditor = Literal["PA-ALOOA", "PA-LOOA", "PA-GA", "PA-GBA"]
AUDITORS: tuple[str, ...] = get_args(Auditor)
#: The auditors of the ALOOA and half-split games (PA-LOOA needs the exact LOO game).
DEFAULT_AUDITORS: tuple[str, ...] = ("PA-ALOOA", "PA-GA", "PA-GBA")
#: The per-record (worst-case) auditors; the others fit one threshold per model (or group).
RECORD_AUDITORS: tuple[str, ...] = ("PA-ALOOA", "PA-LOOA")

Bootstrap = Literal["records", "pairs"]
BOOTSTRAPS: tuple[str, ...] = get_args(Bootstrap)

#: Device strings accepted everywhere ("auto" resolves once, in ``engine.device``).
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
DEVICE_HINT = "to be one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"


def default_delta(n_records: int) -> float:
    """Return the default δ for ``n_records`` training records: ``min(1e-5, 0.1 / n)``.

    Well below ``1 / n`` (a δ of ``1 / n`` allows releasing one record outright), and
    never above the customary ``1e-5``. The one rule for ``train_ensemble`` and ``run``.

    Examples
    --------
    >>> default_delta(1000), default_delta(100_000)
    (1e-05, 1e-06)
    """
    return min(1e-5, 0.1 / max(int(n_records), 1))
