"""Membership games: which record trains which model (docs/design.md 4.1).

A game is a boolean membership matrix of shape ``(n_models, n_samples)`` with ``True`` meaning
"the record is in that model's training set". Models come in complementary pairs
``(2p, 2p + 1)``: for every audited record exactly one model of the pair holds it in the
pairs that audit it. Three games are offered:

* :func:`aloo_game` -- PA-ALOOA: m audit records (stratified by group), every other record
  always in, each pair splits the audit records into two random halves;
* :func:`half_split_game` -- the paper's main setting: every record audited, each pair splits
  the whole dataset into two random halves;
* :func:`loo_game` -- PA-LOOA: for each target record x, ``n_pairs`` pairs ``(D, D minus {x})``.

Taught in notebooks 1 and 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._core import validate as V
from ._core.rng import SeedLike, as_generator
from ._core.vocabulary import GAMES, GameKind

__all__ = ["Game", "aloo_game", "half_split_game", "loo_game"]



@dataclass(frozen=True, eq=False)
class Game:
    """A membership game: the membership matrix and the records it audits.

    Parameters
    ----------
    kind : {"aloo", "half", "loo"}
        Which game built the matrix.
    membership : ndarray of bool, shape (n_models, n_samples)
        ``membership[k, i]`` is True when record i is in model k's training set.
    audit_idx : ndarray of int64, shape (m,)
        The audited records, sorted and unique.
    targets : ndarray of int64, shape (n_models // 2,), or None
        For ``kind="loo"`` the target record of each model pair, else None.

    Notes
    -----
    Models come in pairs ``(2p, 2p + 1)``. In every pair that audits record x, x is in exactly
    one of the two models; pass ``game.membership`` and ``records=game.audit_idx`` to
    :func:`fairpriv_lab.audit.record_risk`.

    Examples
    --------
    >>> g = half_split_game(6, n_models=4, seed=0)
    >>> g.n_models, g.n_pairs, g.n_samples, g.m
    (4, 2, 6, 6)
    >>> bool((g.membership[0::2] != g.membership[1::2]).all())
    True
    """

    kind: GameKind
    membership: np.ndarray
    audit_idx: np.ndarray
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        V.choice("kind", self.kind, GAMES)
        mem = V.bool_matrix("membership", self.membership)
        n_models, n = mem.shape
        _check_n_models(n_models)
        audit = np.asarray(self.audit_idx)
        if audit.ndim != 1 or audit.dtype.kind not in "iu":
            raise V.fail("audit_idx", f"array of shape {audit.shape}", "to be a 1-D integer array")
        audit = audit.astype(np.int64)
        if audit.size == 0:
            raise V.fail("audit_idx", "an empty array", "to hold at least one record")
        if audit.min() < 0 or audit.max() >= n or np.any(np.diff(audit) <= 0):
            raise V.fail("audit_idx", "an array", f"to be sorted, unique, in [0, {n - 1}]")
        targets = self.targets
        if self.kind == "loo":
            if targets is None:
                raise V.fail("targets", None, "to give the target of each pair when kind='loo'")
            targets = np.asarray(targets).astype(np.int64)
            if targets.shape != (n_models // 2,):
                raise V.fail("targets", f"array of shape {targets.shape}", f"to have shape ({n_models // 2},)")
        elif targets is not None:
            raise V.fail("targets", "an array", f"to be None when kind={self.kind!r}")
        for attr, val in (("membership", mem), ("audit_idx", audit), ("targets", targets)):
            if val is not None:
                val = val.copy()
                val.setflags(write=False)
            object.__setattr__(self, attr, val)

    @property
    def n_models(self) -> int:
        """Number of models (even)."""
        return int(self.membership.shape[0])

    @property
    def n_pairs(self) -> int:
        """Number of complementary model pairs, ``n_models // 2``."""
        return self.n_models // 2

    @property
    def n_samples(self) -> int:
        """Number of records in the dataset."""
        return int(self.membership.shape[1])

    @property
    def m(self) -> int:
        """Number of audited records."""
        return int(self.audit_idx.shape[0])

    @property
    def training_sizes(self) -> np.ndarray:
        """Training-set size of each model, shape (n_models,)."""
        return self.membership.sum(axis=1)

    def __repr__(self) -> str:
        return (f"Game(kind={self.kind!r}, n_models={self.n_models}, n_samples={self.n_samples}, "
                f"m={self.m} audited records)")


def _check_n_models(n_models: object) -> int:
    n = V.integer("n_models", n_models, low=2)
    if n % 2:
        raise V.fail("n_models", n, "to be even (models come in complementary pairs)")
    return n


def _split_pairs(n_pairs: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Bool (n_pairs, m): for each pair, which audit records go to the even model."""
    base = np.zeros(m, dtype=bool)
    base[: m // 2] = True
    halves = rng.permuted(np.broadcast_to(base, (n_pairs, m)), axis=1)
    if m % 2:
        # With m odd the halves differ by one record; flip a fair coin for which model
        # gets the larger half so that neither model index is systematically bigger.
        flip = rng.random(n_pairs) < 0.5
        halves[flip] = ~halves[flip]
    return halves


def _pair_membership(n_samples: int, audit: np.ndarray, n_models: int, rng: np.random.Generator) -> np.ndarray:
    n_pairs = n_models // 2
    halves = _split_pairs(n_pairs, audit.size, rng)
    mem = np.ones((n_models, n_samples), dtype=bool)
    even = np.arange(0, n_models, 2)[:, None]
    mem[even, audit[None, :]] = halves
    mem[even + 1, audit[None, :]] = ~halves
    return mem


def _stratified_counts(sizes: np.ndarray, m: int) -> np.ndarray:
    """Audit records per group: proportional to size (largest remainder), at least one each.

    Groups whose proportional share is below one get exactly one record and the others share
    the rest in proportion (repeated until no share is below one).
    """
    sizes = sizes.astype(np.int64)
    counts = np.zeros_like(sizes)
    active = sizes > 0
    while True:
        budget = m - counts.sum()
        share = np.zeros(sizes.shape)
        share[active] = budget * sizes[active] / sizes[active].sum()
        small = active & (share < 1)
        if not small.any():
            break
        counts[small] = 1
        active &= ~small
    if active.any():
        base = np.minimum(np.floor(share).astype(np.int64), sizes)
        counts[active] = base[active]
        left = m - counts.sum()
        frac = np.where(active & (counts < sizes), share - np.floor(share), -np.inf)
        while left > 0:  # at most a few passes over the groups
            order = np.argsort(-frac, kind="stable")
            for gi in order:
                if left == 0:
                    break
                if counts[gi] < sizes[gi]:
                    counts[gi] += 1
                    left -= 1
    return counts


def aloo_game(groups: np.ndarray, *, n_models: int, m: int, seed: SeedLike = None) -> Game:
    """Build the PA-ALOOA game: m stratified audit records, the rest always in.

    Audit records are drawn without replacement within each group, in proportion to the group
    sizes (largest remainder), with at least one record for every group present in ``groups``. For
    each pair p the audit records are split into two random halves A_p and B_p; model 2p trains
    on (rest + A_p), model 2p + 1 on (rest + B_p). Every audit record is therefore in for
    exactly ``R = n_models / 2`` models and out for R.

    Parameters
    ----------
    groups : ndarray of int, shape (n_samples,)
        Group id of every record.
    n_models : int
        Number of models, even and >= 2.
    m : int
        Number of audit records, ``n_groups_present <= m <= n_samples``.
    seed : int, numpy Generator or None
        Randomness of the audit draw and the splits.

    Returns
    -------
    Game
        ``kind="aloo"``, membership of shape (n_models, n_samples).

    Examples
    --------
    >>> import numpy as np
    >>> g = aloo_game(np.array([0, 0, 0, 0, 1, 1]), n_models=4, m=3, seed=1)
    >>> g.m, int(g.membership[:, g.audit_idx].sum(axis=0)[0])
    (3, 2)
    """
    grp = V.group_ids("groups", groups)
    n = grp.shape[0]
    if n == 0:
        raise V.fail("groups", "an empty array", "to hold the group of at least one record")
    _check_n_models(n_models)
    sizes = np.bincount(grp)
    n_present = int((sizes > 0).sum())
    V.integer("m", m, low=1, high=n)
    if m < n_present:
        raise V.fail(
            "m", m, f"to be >= {n_present}, the number of groups present",
            "Every group needs at least one audit record; raise m or merge small groups",
        )
    rng = as_generator(seed)
    counts = _stratified_counts(sizes, int(m))
    chosen = []
    for gid in np.flatnonzero(counts):
        members = np.flatnonzero(grp == gid)
        chosen.append(rng.choice(members, size=int(counts[gid]), replace=False))
    audit = np.sort(np.concatenate(chosen)).astype(np.int64)
    mem = _pair_membership(n, audit, int(n_models), rng)
    return Game("aloo", mem, audit, None)


def half_split_game(n_samples: int, *, n_models: int, seed: SeedLike = None) -> Game:
    """Build the half-split game: every record audited, each pair splits the data in halves.

    For each pair p the records are split at random into halves A_p and B_p (sizes
    ``floor(n/2)`` and ``ceil(n/2)``, the larger going to a random model of the pair);
    model 2p trains on A_p and model 2p + 1 on B_p. This is the paper's main setting (m = n).

    Parameters
    ----------
    n_samples : int
        Number of records, >= 1.
    n_models : int
        Number of models, even and >= 2.
    seed : int, numpy Generator or None
        Randomness of the splits.

    Returns
    -------
    Game
        ``kind="half"`` with ``audit_idx = arange(n_samples)``.

    Examples
    --------
    >>> g = half_split_game(4, n_models=2, seed=0)
    >>> g.training_sizes.tolist()
    [2, 2]
    """
    n = V.integer("n_samples", n_samples, low=1)
    _check_n_models(n_models)
    rng = as_generator(seed)
    audit = np.arange(n, dtype=np.int64)
    mem = _pair_membership(n, audit, int(n_models), rng)
    return Game("half", mem, audit, None)


def loo_game(n_samples: int, targets: np.ndarray, *, n_pairs: int, seed: SeedLike = None) -> Game:
    """Build the exact leave-one-out game (PA-LOOA) for chosen target records.

    For each target x, ``n_pairs`` model pairs train on ``D`` and ``D minus {x}``; all other
    records are always in. Pairs are laid out target by target: pair ``t * n_pairs + r`` is the
    r-th pair of ``targets[t]``. Which model of a pair holds x (2p or 2p + 1) is drawn at
    random so that a training seed tied to the model index cannot be confounded with
    membership.

    Cost: ``2 * n_pairs`` models per target, ``n_models = 2 * n_pairs * len(targets)``. (The
    "in" models all train on D and could be shared across targets, costing
    ``n_pairs * (len(targets) + 1)`` models, but that breaks the complementary-pair layout the
    estimators rely on; it is not offered.)

    Parameters
    ----------
    n_samples : int
        Number of records in D.
    targets : array of int, shape (t,)
        Distinct target records.
    n_pairs : int
        Pairs per target (R), >= 1.
    seed : int, numpy Generator or None
        Randomness of the in/out position within each pair.

    Returns
    -------
    Game
        ``kind="loo"``; ``audit_idx`` is the sorted targets and ``targets`` the target of
        each pair, shape (n_pairs * t,).

    Examples
    --------
    >>> g = loo_game(5, [3, 1], n_pairs=2, seed=0)
    >>> g.n_models, g.targets.tolist(), g.audit_idx.tolist()
    (8, [3, 3, 1, 1], [1, 3])
    >>> int((~g.membership).sum())
    4
    """
    n = V.integer("n_samples", n_samples, low=1)
    R = V.integer("n_pairs", n_pairs, low=1)
    t = np.asarray(targets)
    if t.ndim != 1 or t.size == 0 or t.dtype.kind not in "iu":
        raise V.fail("targets", f"array of shape {t.shape}", "to be a non-empty 1-D integer array")
    t = t.astype(np.int64)
    if t.min() < 0 or t.max() >= n:
        raise V.fail("targets", f"ids in [{t.min()}, {t.max()}]", f"to lie in [0, {n - 1}]")
    if np.unique(t).size != t.size:
        raise V.fail("targets", "an array with repeated records", "to hold distinct records")
    rng = as_generator(seed)
    pair_target = np.repeat(t, R)
    P = pair_target.size
    out_is_odd = rng.random(P) < 0.5
    mem = np.ones((2 * P, n), dtype=bool)
    out_model = 2 * np.arange(P) + out_is_odd
    mem[out_model, pair_target] = False
    return Game("loo", mem, np.sort(t), pair_target)
