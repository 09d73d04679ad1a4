"""The audit kernels as they were before the one-sort rewrite (issue 15), kept as references.

Verbatim copies of ``record_risk`` and its kernels from ``fairpriv_lab/audit.py`` at commit
daecb77 (the input checks, chunking and bit helpers, which issue 15 did not change, are
imported from the library); the tests check that the new implementation gives the same
numbers for the same seed. Not part of the library.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fairpriv_lab.audit.attacks import RecordRisk  # unchanged by issue 15: shared with the library
from fairpriv_lab.audit.attacks import audit_inputs as _inputs
from fairpriv_lab.audit.kernels import _f32, _ties, _u32
from fairpriv_lab.audit.kernels import as_f32 as _as_f32
from fairpriv_lab.audit.kernels import coins as _coins
from fairpriv_lab.audit.kernels import informative_pairs as _informative
from fairpriv_lab.audit.kernels import map_threads as _map_threads
from fairpriv_lab.audit.kernels import pair_blocks as _pair_blocks

from ._compat import SeedLike, V, as_generator

Estimator = Literal["cross_fit", "in_sample"]
Signal = Literal["loss", "confidence"]
_ESTIMATORS = ("cross_fit", "in_sample")
_SIGNALS = ("loss", "confidence")
_AUDITORS = ("PA-ALOOA", "PA-LOOA", "PA-GA", "PA-GBA")


# --------------------------------------------------------------------------- signals
# --------------------------------------------------------------------------- core kernels
def _cut_correct(xs: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Correct predictions at every cut k of sorted rows (k lowest -> "out"); -1 where invalid.

    correct(k) = #out below k + #in at or above k = k - 2 cum_in(k) + n_in. A cut inside a run
    of equal scores is invalid (ties fall on one side).
    """
    mb, n = xs.shape
    cum_in = np.zeros((mb, n + 1), dtype=np.int32)
    np.cumsum(lab, axis=1, dtype=np.int32, out=cum_in[:, 1:])
    correct = np.arange(n + 1, dtype=np.int32)[None, :] - 2 * cum_in + cum_in[:, -1:]
    if n > 1:
        correct[:, 1:-1][xs[:, :-1] >= xs[:, 1:]] = -1
    return correct


def _taus(xs: np.ndarray, kstar: np.ndarray) -> np.ndarray:
    """Threshold of cut kstar in sorted rows: midpoint of the neighbours, -inf/+inf at the ends."""
    mb, n = xs.shape
    tau = np.full(mb, -np.inf)
    if n == 0:
        return tau
    lo = np.take_along_axis(xs, np.clip(kstar - 1, 0, n - 1)[:, None], axis=1)[:, 0].astype(np.float64)
    hi = np.take_along_axis(xs, np.clip(kstar, 0, n - 1)[:, None], axis=1)[:, 0].astype(np.float64)
    mid = lo / 2 + hi / 2
    mid = np.where(mid <= lo, hi, mid)  # adjacent floats: keep lo < tau <= hi
    tau = np.where(kstar == 0, -np.inf, np.where(kstar == n, np.inf, mid))
    return tau


def _fit_taus(xs: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Lowest accuracy-maximising threshold of each sorted row (member iff score >= tau)."""
    return _taus(xs, np.argmax(_cut_correct(xs, lab), axis=1))


def _score(xs: np.ndarray, lab: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Count the correct predictions of the rule score >= tau in each row."""
    return ((xs >= tau[:, None]) == lab).sum(axis=1)


def _record_block(
    s_in: np.ndarray, s_out: np.ndarray, fold: np.ndarray | None, swap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and floor accuracy of records whose K pairs give scores s_in, s_out (mb, K).

    ``fold`` (K,) bool marks the pairs of fold A of the cross-fit (None: in-sample); ``swap``
    (mb, K) bool marks the pairs whose in/out labels the floor exchanges. float32 scores take
    the packed-key path, others the generic argsort path; both give identical results.
    """
    if s_in.dtype == np.float32 and s_out.dtype == np.float32:
        return _record_block_packed(s_in, s_out, fold, swap)
    return _record_block_sorted(s_in, s_out, fold, swap)


def _sorted_fold(x_in, x_out, swap):
    """Sort the 2k scores of each row; return sorted scores, labels and floor labels."""
    k = x_in.shape[1]
    X = np.concatenate([x_in, x_out], axis=1)
    order = np.argsort(X, axis=1)
    lab = order < k  # the first k columns hold the in-model scores
    lab_floor = lab ^ np.take_along_axis(swap, order % k, axis=1)
    return np.take_along_axis(X, order, axis=1), lab, lab_floor


def _record_block_sorted(
    s_in: np.ndarray, s_out: np.ndarray, fold: np.ndarray | None, swap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run the generic kernel of :func:`_record_block` (argsort + gathers; any float dtype)."""
    K = s_in.shape[1]
    if fold is None:
        xs, lab, lab_floor = _sorted_fold(s_in, s_out, swap)
        return tuple(_cut_correct(xs, lb).max(axis=1) / (2 * K) for lb in (lab, lab_floor))
    xa, la, fa = _sorted_fold(s_in[:, fold], s_out[:, fold], swap[:, fold])
    xb, lb, fb = _sorted_fold(s_in[:, ~fold], s_out[:, ~fold], swap[:, ~fold])
    out = []
    for a, b in ((la, lb), (fa, fb)):
        correct = _score(xb, b, _fit_taus(xa, a)) + _score(xa, a, _fit_taus(xb, b))
        out.append(correct / (2 * K))
    return out[0], out[1]


# --------------------------------------------------------------------------- packed kernels
# For float32 scores the sort is done on uint64 keys that pack the order-preserving uint32 image
# of the score with the few bits each entry needs (fold or cell above it, labels below it):
# np.sort on integers is several times faster than argsort followed by gathers, and the
# sorted keys carry everything the cumulative counts need.
_SHIFT = 8  # score bits start here; bits 0-7 hold labels
_TOP = 40  # fold / cell bits start here
_CHUNK_ELEMENTS = 1 << 19  # rows per block so that a block's keys take about 4 MB


_NONE = np.uint32(0xFFFFFFFF)  # above the key of every finite float32: nobody is "member"


def _packed_threshold(us: np.ndarray, kstar: np.ndarray) -> np.ndarray:
    """uint32-key threshold of cut kstar: member iff key >= it; midpoint rule."""
    mb, n = us.shape
    if n == 0:
        return np.zeros(mb, np.uint32)
    lo = _f32(np.take_along_axis(us, np.clip(kstar - 1, 0, n - 1)[:, None], axis=1)[:, 0]).astype(np.float64)
    hi = _f32(np.take_along_axis(us, np.clip(kstar, 0, n - 1)[:, None], axis=1)[:, 0]).astype(np.float64)
    mid = lo / 2 + hi / 2  # exact in float64 and strictly between two float32 values
    t = mid.astype(np.float32)
    t = np.where(t.astype(np.float64) < mid, np.nextafter(t, np.float32(np.inf)), t)
    ut = _u32(t.astype(np.float32))
    return np.where(kstar == 0, np.uint32(0), np.where(kstar == n, _NONE, ut)).astype(np.uint32)


def _packed_fold(x_in, x_out, swap):
    """Packed-key sort of the 2k scores of each row: uint32 keys, labels, floor labels."""
    k = x_in.shape[1]
    key = _u32(np.concatenate([x_in, x_out], axis=1)).astype(np.uint64) << np.uint64(_SHIFT)
    sw = swap.astype(np.uint64)  # bit 0: the floor swaps this pair's labels
    key[:, :k] |= sw | np.uint64(2)  # bit 1: in-model score
    key[:, k:] |= sw
    key.sort(axis=1)
    lab = (key & np.uint64(2)).astype(bool)
    lab_floor = lab ^ (key & np.uint64(1)).astype(bool)
    return (key >> np.uint64(_SHIFT)).astype(np.uint32), lab, lab_floor


def _record_block_packed(
    s_in: np.ndarray, s_out: np.ndarray, fold: np.ndarray | None, swap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Packed-key kernel of :func:`_record_block` for float32 scores."""
    K = s_in.shape[1]
    if fold is None:
        us, lab, lab_floor = _packed_fold(s_in, s_out, swap)
        ties = _ties(us)
        return tuple(_packed_correct(lb, ties).max(axis=1) / (2 * K) for lb in (lab, lab_floor))
    ua, la, fa = _packed_fold(s_in[:, fold], s_out[:, fold], swap[:, fold])
    ub, lb, fb = _packed_fold(s_in[:, ~fold], s_out[:, ~fold], swap[:, ~fold])
    ties_a, ties_b = _ties(ua), _ties(ub)
    out = []
    for a, b in ((la, lb), (fa, fb)):
        ta = _packed_threshold(ua, np.argmax(_packed_correct(a, ties_a), axis=1))
        tb = _packed_threshold(ub, np.argmax(_packed_correct(b, ties_b), axis=1))
        correct = ((ub >= ta[:, None]) == b).sum(axis=1) + ((ua >= tb[:, None]) == a).sum(axis=1)
        out.append(correct / (2 * K))
    return out[0], out[1]


def _packed_correct(lab: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Correct predictions at every cut of sorted rows (as :func:`_cut_correct`), in place."""
    mb, n = lab.shape
    dt = np.int16 if n < 16000 else np.int32
    cum = np.zeros((mb, n + 1), dtype=dt)
    np.cumsum(lab, axis=1, dtype=dt, out=cum[:, 1:])
    n_in = cum[:, -1:].copy()
    cum *= -2  # correct(k) = k - 2 cum_in(k) + n_in
    cum += np.arange(n + 1, dtype=dt)
    cum += n_in
    np.putmask(cum, ties, -1)
    return cum


def record_risk(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    records: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    estimator: Estimator = "cross_fit",
    signal: Signal = "loss",
    confidences: np.ndarray | None = None,
    seed: SeedLike = None,
) -> RecordRisk:
    """Per-record attack accuracy and IPR of PA-ALOOA / PA-LOOA, with the zero-leakage floor.

    For each record x, its trials are the model pairs in which x is in one model and out of the
    other (all pairs in ALOOA and half-split games, x's own pairs in a LOO game): K pairs,
    2K scores with in/out labels. The attack predicts "member" when ``score >= tau``;
    ``acc(x)`` is its accuracy and ``IPR(x) = 2 acc(x) - 1``.

    * ``"in_sample"``: ``acc = max_tau (1/2K) sum_j 1[(s_j >= tau) == in_j]`` (the paper's).
    * ``"cross_fit"``: the K pairs are split at random into folds A (``K // 2`` pairs) and B;
      ``acc = (correct_B(tau_A) + correct_A(tau_B)) / 2K`` where tau_F maximises the accuracy
      on fold F. Needs K >= 2. The pairs are exchangeable (independent trainings), so one
      seeded split of the pair positions is shared by all records of a call.

    Each record's 2K scores are sorted once; the accuracy at every cut comes from cumulative
    counts (no loop over records or thresholds). The floor re-draws which model of each pair
    is "in" (seeded) and applies the same estimator.

    Parameters
    ----------
    losses : ndarray of float, shape (n_models, n_samples)
        Per-model per-record losses (lower = member).
    membership : ndarray of bool, shape (n_models, n_samples)
        The game's membership matrix (complementary pairs ``(2p, 2p + 1)``).
    records : array of int, shape (m,), optional
        Records to audit (``game.audit_idx``); by default every record that some pair audits.
    groups : array of int, shape (n_samples,), optional
        Group id of every record of the dataset; zeros by default.
    estimator : {"cross_fit", "in_sample"}
    signal : {"loss", "confidence"}
        See :func:`attack_scores`.
    confidences : ndarray of float, shape (n_models, n_samples), optional
        Logit-scaled confidences for ``signal="confidence"`` (computed from losses if absent).
    seed : int, numpy Generator or None
        Randomness of the folds and of the floor's permutation.

    Returns
    -------
    RecordRisk
        ``auditor`` is "PA-ALOOA" when every record is audited by every pair, else "PA-LOOA".

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.games import half_split_game
    >>> game = half_split_game(3, n_models=8, seed=0)
    >>> losses = np.where(game.membership, 0.1, 1.0)  # a perfectly leaking signal
    >>> rr = record_risk(losses, game.membership, seed=0)
    >>> rr.ipr.tolist(), rr.auditor
    ([1.0, 1.0, 1.0], 'PA-ALOOA')
    """
    V.choice("estimator", estimator, _ESTIMATORS)
    scores, mem, rec, grp = _inputs(losses, membership, records, groups, signal, confidences)
    inf = _informative(mem, rec)
    K = inf.sum(axis=0).astype(np.int64)
    if estimator == "cross_fit" and np.any(K < 2):
        raise V.fail(
            "estimator", estimator,
            f"to be 'in_sample' when a record has fewer than 2 model pairs (found {int(K.min())})",
            "cross_fit needs one pair to choose the threshold and another to score it",
        )
    rng = as_generator(seed)
    acc = np.empty(rec.size)
    acc_floor = np.empty(rec.size)
    for cols, k, chunks in _pair_blocks(_as_f32(scores), mem, inf):
        # The pairs are exchangeable (independent trainings), so one seeded split of the pair
        # positions serves every record of the block.
        fold = None
        if estimator == "cross_fit":
            fold = np.zeros(k, dtype=bool)
            fold[rng.permutation(k)[: k // 2]] = True
        swap = _coins(rng, (cols.size, k))

        def work(chunk, fold=fold, swap=swap):
            r, s_in, s_out = chunk
            return r, _record_block(s_in, s_out, fold, swap[r])

        # Blocks of records keep the temporaries in cache; numpy's sorts and reductions release
        # the GIL, so blocks run on threads. All randomness is drawn above: results do not
        # depend on the number of threads.
        for r, (a, f) in _map_threads(work, chunks):
            acc[cols[r]], acc_floor[cols[r]] = a, f
    auditor = "PA-ALOOA" if np.all(inf) else "PA-LOOA"
    return RecordRisk(rec, grp, acc, 2 * acc - 1, 2 * acc_floor - 1, auditor, estimator, K, signal)
