"""Library helpers the reference copies need."""

from fairpriv_lab._core import validate as V
from fairpriv_lab._core.rng import SeedLike, as_generator

__all__ = ["V", "SeedLike", "as_generator"]
