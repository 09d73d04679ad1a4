"""The training engine: stackable models, the DP step and its accounting, ``train_ensemble``.

The only layer that imports torch (``tests/unit/test_layers.py`` enforces it).
"""

from .device import resolve_device
from .models import build_model
from .privacy import (
    DPSGD,
    DPSGDF,
    DPSGDS,
    SGD,
    ClippingPolicy,
    DPStep,
    as_method,
    calibrate_noise,
    epsilon_of,
)
from .training import EnsembleResult, train_ensemble

__all__ = [
    "DPSGD",
    "DPSGDF",
    "DPSGDS",
    "SGD",
    "ClippingPolicy",
    "DPStep",
    "EnsembleResult",
    "as_method",
    "build_model",
    "calibrate_noise",
    "epsilon_of",
    "resolve_device",
    "train_ensemble",
]
