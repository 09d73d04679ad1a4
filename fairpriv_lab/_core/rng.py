"""Randomness helpers: seeds are always passed in, global state is never touched."""

from __future__ import annotations

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a NumPy Generator for an int, a SeedSequence, a Generator (as is) or None."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not (
        seed is None or isinstance(seed, int | np.integer | np.random.SeedSequence)
    ):
        from .validate import fail

        raise fail("seed", seed, "to be an int, a numpy Generator, a SeedSequence or None")
    if isinstance(seed, int | np.integer) and seed < 0:
        from .validate import fail

        raise fail("seed", seed, "to be an integer >= 0 (or a numpy Generator, a SeedSequence or None)")
    return np.random.default_rng(seed)


def spawn_seed(rng: np.random.Generator) -> int:
    """Draw a 63-bit integer seed from rng (for torch generators and sub-streams)."""
    return int(rng.integers(0, 2**63 - 1))
