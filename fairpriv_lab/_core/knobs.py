"""The research knobs of the clipping policies, declared once (docs/design.md 4.6).

:class:`ScaledClipKnobs` (DP-SGD-S) and :class:`CountKnobs` (DP-SGD-F) are the fields of
:class:`fairpriv_lab.engine.privacy.DPSGDS` and :class:`~fairpriv_lab.engine.privacy.DPSGDF`:
the knobs live on the policy object. The training section of an experiment
(:class:`fairpriv_lab.experiment.TrainConfig`) exposes the same fields under the same names,
with these declarations, so that the command line, the panel and the sweep grids can set them
(``train.tau``); ``TrainConfig.policy`` builds the policy from them. Torch-free, so that the
configuration schema reads them without importing the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from . import validate as V
from .schema import param, params_of, positive_param
from .vocabulary import STATISTICS, Statistic

__all__ = ["CountKnobs", "ScaledClipKnobs", "KNOBS_OF", "knob_names", "check_knobs"]


def _count_noise() -> Any:
    return positive_param(5.0, "DP-SGD-S/-F: noise multiplier of the group counts relative to sigma")


@dataclass(frozen=True)
class ScaledClipKnobs:
    """DP-SGD-S: ``C_k = C * clamp(ratio, floor, tau)`` from a noisy group statistic."""

    tau: float = param(2.0, "DP-SGD-S: largest ratio C_k / C", "float", low=1.0,
                       high=math.inf, high_open=True)
    statistic: Statistic = param("norm", "DP-SGD-S group statistic", "choice", choices=STATISTICS)
    stat_noise_ratio: float = positive_param(
        5.0, "DP-SGD-S: noise multiplier of the statistic relative to sigma")
    count_noise: float = _count_noise()
    smoothing: float = param(0.0, "DP-SGD-S: EMA weight of the previous bounds", "float", low=0.0,
                             high=1.0, high_open=True)
    floor: float = param(0.0, "DP-SGD-S: lowest ratio C_k / C (at most tau)", "float", low=0.0)
    stat_clip: float | None = positive_param(
        None, "DP-SGD-S: clip C_s of the norm statistic (default tau * C)", optional=True)

    def __post_init__(self) -> None:
        check_knobs(self)


@dataclass(frozen=True)
class CountKnobs:
    """DP-SGD-F: the noisy above/below counts' multiplier."""

    count_noise: float = _count_noise()

    def __post_init__(self) -> None:
        check_knobs(self)


#: The knobs of each training method (every method is one clipping policy).
KNOBS_OF: dict[str, type | None] = {"sgd": None, "dpsgd": None, "dpsgds": ScaledClipKnobs,
                                    "dpsgdf": CountKnobs}


def knob_names(method: str) -> tuple[str, ...]:
    """Return the names of a method's knobs (``()`` for SGD and DP-SGD).

    Examples
    --------
    >>> knob_names("dpsgdf")
    ('count_noise',)
    """
    cls = KNOBS_OF[method]
    return () if cls is None else tuple(f.name for f in fields(cls))


def check_knobs(knobs: Any, prefix: str = "") -> None:
    """Validate a knob dataclass's fields with their declarations (messages name ``prefix + field``).

    The knob classes (and so the policies) call it on construction.
    """
    for name, p in params_of(type(knobs)).items():
        p.check(prefix + name, getattr(knobs, name))
    if hasattr(knobs, "floor") and hasattr(knobs, "tau"):
        V.number(prefix + "floor", knobs.floor, 0.0, knobs.tau)
