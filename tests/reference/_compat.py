"""Library helpers the reference copies need, wherever the package layout puts them."""

try:  # layered layout (issue 11)
    from fairpriv_lab._core import validate as V
    from fairpriv_lab._core.rng import SeedLike, as_generator
except ImportError:  # flat layout
    from fairpriv_lab import _validate as V
    from fairpriv_lab._rng import SeedLike, as_generator

__all__ = ["V", "SeedLike", "as_generator"]
