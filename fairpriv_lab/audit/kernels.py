"""The numeric kernels of the membership audits: one sort per record, cumulative counts.

:mod:`fairpriv_lab.audit.attacks` is the API (signals, validation, ``record_risk``,
``global_risk``); this module is the machinery under it, shared with
:mod:`~fairpriv_lab.audit.empirical` and :mod:`~fairpriv_lab.audit.risk`:

* :class:`SortedRows` sorts each audited record's 2K scores once (argsort, or packed
  ``uint64`` keys for float32 scores) and carries per-pair bit planes (labels, folds, the
  floor's coins) through the sort; the accuracy at every cut comes from cumulative counts,
  with no loop over records or thresholds;
* :func:`record_block` (PA-ALOOA / PA-LOOA, in-sample and cross-fit) and
  :func:`global_block` (PA-GA / PA-GBA: one threshold per model, or per model and group;
  when every (model, record) is a trial, thresholds come from bucket counts and a sort of
  the candidate buckets only, :func:`_global_chunk_hist`, exactly the row sort's);
* :func:`pair_blocks` / :func:`record_pass` walk the records in cache-sized blocks of equal
  K on threads (:func:`map_threads`); all randomness is drawn first (:func:`coins`), so
  results do not depend on the number of threads.

Thresholds are taken between distinct observed scores (the midpoint), so equal scores always
fall on the same side of a cut; among equally good cuts the lowest threshold is used. Each
kernel is tested against a slow, obvious loop in ``tests/unit/audit/test_kernels.py``.
"""

from __future__ import annotations

import os

import numpy as np

from .._core.exceptions import ConfigError
from .._core.optional import optional_module

__all__ = [
    "SortedRows",
    "CHUNK_ELEMENTS",
    "cross_fit_acc",
    "record_block",
    "global_block",
    "global_runs",
    "map_threads",
    "coins",
    "as_f32",
    "as_keys",
    "informative_pairs",
    "pair_blocks",
    "EstimatorTask",
    "SharedSorts",
    "column_counts",
    "fold_rows",
    "pair_split",
    "record_pass",
    "mask_ties",
]


# --------------------------------------------------------------------------- one sort per record
def _taus(xs: np.ndarray, kstar: np.ndarray) -> np.ndarray:
    """Threshold of cut kstar in sorted rows: midpoint of the neighbours, -inf/+inf at the ends."""
    mb, n = xs.shape
    if n == 0:
        return np.full(mb, -np.inf)
    lo = np.take_along_axis(xs, np.clip(kstar - 1, 0, n - 1)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(xs, np.clip(kstar, 0, n - 1)[:, None], axis=1)[:, 0]
    return _midpoint(lo, hi, kstar == 0, kstar == n, packed=False)


class SortedRows:
    """Sorted scores of each record of a block, with the bits each analysis needs riding along.

    Every per-record analysis (in-sample and cross-fitted estimators, their zero-leakage
    floors, the empirical-epsilon folds, the pair-bootstrap replicates) needs only the sorted
    values (to find ties and thresholds) and a few bits per entry: the in/out label and
    per-pair flags such as "the floor swaps this pair" (``planes``). The bits ride in the sort
    key, so nothing is gathered after the sort and each floor shares its estimator's sort.
    ``top`` (per pair) sorts above the score: the rows come out as [entries of pairs with top
    False | entries with top True], each part sorted, so one sort yields both folds of a
    per-record random split (empirical epsilon) without a compaction.

    float32 scores are sorted as uint64 keys (top bit 63, the order-preserving uint32 image of
    the score in bits 31-62, the payload in bits 0-30; an integer sort is several times faster
    than argsort + gathers); other dtypes go through one argsort. Both give identical results.
    Rows of 128 entries or more with at most two planes and no ``top`` are sorted as two
    uint32 keys instead (:meth:`_sort_narrow`, the same values and payload; ``key`` is None).

    Why not one sort of all 2K scores for every analysis: numpy sorts short rows with
    vectorised networks, and two sorts of K entries (a cross-fit's folds) cost less than one
    of 2K plus a compaction of each fold out of it (measured: the compacting version was
    about twice as slow, see benchmarks/README.md).

    ``flip`` (rows, K) bool, if given, exchanges the labels of a pair: ``s_in`` and ``s_out``
    may then be the scores of each pair's first and second model, with ``flip`` True where
    the second is the in-model (no gathering of in/out scores before the sort).

    Attributes: ``v`` sorted values (uint32 keys or float64), ``low`` uint32 payload of every
    entry (bit 0: in-model score; bit 1 + i: plane i), ``packed`` (True for uint32 keys),
    ``K`` (pairs per row).
    """

    __slots__ = ("key", "_v", "_low", "packed", "K", "n_planes", "_lab", "_ties", "_byte", "_tie_rows", "_cum")

    def __init__(self, s_in: np.ndarray, s_out: np.ndarray, planes: tuple = (),
                 packed: bool | None = None, top: np.ndarray | None = None,
                 flip: np.ndarray | None = None, narrow: bool = True):
        rows, K = s_in.shape
        self.K, self.n_planes = K, len(planes)
        if packed is None:
            packed = s_in.dtype in _PACKABLE and s_out.dtype in _PACKABLE
        self.packed = packed
        if len(planes) > 30:
            raise ValueError("too many payload bits")  # internal: never with the callers here
        self._lab = self._ties = self._byte = self._tie_rows = self._cum = None
        # payload bits as bytes when they fit the packed key's low byte (bool -> uint32 casts
        # and uint32 passes cost several times more; the keys are the same)
        dt = np.uint8 if packed and len(planes) < 8 else np.uint32
        base = np.zeros((rows, K), dt)
        for i, plane in enumerate(planes):
            base |= np.asarray(plane).astype(dt) * dt(2 << i)  # (a multiply: numpy's uint8 shifts are not vectorised)
        lab_in, lab_out = base | dt(1), base
        if flip is not None:  # (rows, K): the pair's "in" score is s_out's, not s_in's
            f = np.asarray(flip).astype(dt)
            lab_in, lab_out = lab_in ^ f, base | f
        self.key = self._v = self._low = None
        if packed and narrow and top is None and 2 * K >= _NARROW_MIN_ENTRIES and len(planes) <= _NARROW_PLANES:
            self._sort_narrow(s_in, s_out, planes, flip, lab_in, lab_out)
        elif packed:
            key = np.empty((rows, 2 * K), np.uint64)
            key[:, :K] = _keys(s_in)
            key[:, K:] = _keys(s_out)
            key <<= np.uint64(_PAYLOAD)
            key[:, :K] |= lab_in
            key[:, K:] |= lab_out
            if top is not None:  # above the score: the rows sort as [top False | top True]
                t = np.asarray(top).astype(np.uint64) << np.uint64(63)
                key[:, :K] |= t
                key[:, K:] |= t
            key.sort(axis=1)
            self.key = key
        else:
            X = np.concatenate([s_in, s_out], axis=1)
            if top is None:
                order = np.argsort(X, axis=1)
            else:
                t = np.broadcast_to(np.asarray(top, bool), (rows, K))
                order = np.lexsort((X, np.concatenate([t, t], axis=1)), axis=1)
            self._v = np.take_along_axis(X, order, axis=1).astype(np.float64)
            self._low = np.take_along_axis(np.concatenate([lab_in, lab_out], axis=1), order, axis=1)

    @classmethod
    def _from_sorted(cls, v: np.ndarray, low: np.ndarray, K: int, n_planes: int) -> SortedRows:
        """Rows already sorted as :meth:`_sort_narrow` sorts them (``v`` keys, ``low`` payload)."""
        out = object.__new__(cls)
        out.key = out._lab = out._ties = out._byte = out._tie_rows = out._cum = None
        out._v, out._low, out.packed, out.K, out.n_planes = v, low, True, K, n_planes
        return out

    def _sort_narrow(self, s_in, s_out, planes, flip, lab_in, lab_out) -> None:
        """Sort packed rows of 128 entries or more as two uint32 keys (the uint64 sort's result).

        numpy sorts rows of up to 256 uint64 keys with sorting networks and longer ones about
        4x slower per key, while uint32 rows stay on the networks up to 512 keys (measured for
        400 keys: 3.9 ms per 1,310 rows as uint64, 0.53 ms as uint32); at 200 keys the two
        uint32 sorts still cost less (``_NARROW_MIN_ENTRIES``). So the scores' uint32
        keys are sorted alone (the sorted values ``v``: exact, ties exact), and a second
        uint32 key, the score key with its ``p = 1 + len(planes)`` lowest bits replaced by
        the payload, gives the payload in sorted order. Where no two distinct scores of a row
        share a truncated key, both orders agree run of equal scores by run, and within a run
        both the uint64 key and the truncated one order by the payload: the payload comes out
        exactly as the uint64 sort's. Rows where two distinct scores do share one (rare: keys
        within 2^p of each other) are sorted again as uint64 keys.
        """
        rows, K = s_in.shape
        p = 1 + len(planes)
        v = np.empty((rows, 2 * K), np.uint32)
        v[:, :K] = _keys(s_in)
        v[:, K:] = _keys(s_out)
        t = v & np.uint32(0xFFFFFFFF ^ ((1 << p) - 1))
        t[:, :K] |= lab_in
        t[:, K:] |= lab_out
        v.sort(axis=1)
        t.sort(axis=1)
        t &= np.uint32((1 << p) - 1)
        x = v[:, 1:] ^ v[:, :-1]  # 0 < x < 2^p: distinct scores with one truncated key
        self._ties = np.zeros((rows, 2 * K + 1), bool)  # x == 0: equal neighbours (what ties() finds)
        np.equal(x, np.uint32(0), out=self._ties[:, 1:-1])
        x -= np.uint32(1)  # 0 < x < 2^p as one unsigned compare (x = 0 wraps to the top)
        clash = np.flatnonzero((x < np.uint32((1 << p) - 1)).any(axis=1))
        if clash.size:
            wide = SortedRows(s_in[clash], s_out[clash], tuple(np.asarray(q)[clash] for q in planes),
                              packed=True, flip=None if flip is None else np.asarray(flip)[clash], narrow=False)
            t[clash] = wide.low
        self._v, self._low = v, t

    @property
    def v(self) -> np.ndarray:
        """Sorted values: uint32 keys (packed) or float64."""
        if self._v is None:
            self._v = (self.key >> np.uint64(_PAYLOAD)).astype(np.uint32)
        return self._v

    @property
    def low(self) -> np.ndarray:
        """uint32 payload of every sorted entry.

        Read it through masks: rows of the compiled sort keep the truncated score key above the
        payload bits.
        """
        if self._low is None:
            self._low = self.key.astype(np.uint32) & np.uint32(0x7FFFFFFF)
        return self._low

    def low_byte(self) -> np.ndarray:
        """Return the payload's lowest 8 bits as uint8 (label and planes 0-6), computed once."""
        if self._byte is None:
            src = self.key if self.key is not None else self.low
            self._byte = src.astype(np.uint8)  # truncating cast: bits 0-7
        return self._byte

    @property
    def lab(self) -> np.ndarray:
        """Bool: the entry is the in-model's score (computed once, shared by every reader)."""
        if self._lab is None:
            if self.n_planes < 7:  # from the low byte: 8-bit passes instead of 32-bit ones
                self._lab = (self.low_byte() & np.uint8(1)).view(bool)
            else:
                self._lab = (self.low & np.uint32(1)).astype(bool)
        return self._lab

    def plane(self, i: int) -> np.ndarray:
        """Bool: plane i's flag of the entry's pair."""
        if i < 7:
            return ((self.low_byte() >> np.uint8(1 + i)) & np.uint8(1)).view(bool)
        return (self.low & np.uint32(2 << i)).astype(bool)

    def split(self, n_low: int) -> tuple[SortedRows, SortedRows]:
        """Split each row after its first ``n_low`` sorted entries (rows built with ``top``)."""
        parts = []
        for sl in (slice(0, n_low), slice(n_low, None)):
            out = object.__new__(SortedRows)
            out.key = out._v = out._low = out._lab = out._ties = out._byte = out._tie_rows = out._cum = None
            if self.packed and self.key is not None:
                out.key = self.key[:, sl]
            else:
                out._v, out._low = self.v[:, sl], self.low[:, sl]
            out.packed, out.n_planes = self.packed, self.n_planes
            out.K = (out.key if out.key is not None else out._v).shape[1] // 2
            parts.append(out)
        return parts[0], parts[1]

    def ties(self) -> np.ndarray:
        """Bool (rows, 2K + 1): cuts that would split a run of equal scores (computed once)."""
        if self._ties is None:
            self._ties = _ties(self.v)
        return self._ties

    def cum_in(self) -> np.ndarray:
        """In-entries among the j lowest of each row, j = 0..2K (computed once, shared by readers).

        int32 while ``(K + 1)**2`` fits it (empirical epsilon's index tables), else int64.
        """
        if self._cum is None:
            lab = self.lab
            it = np.int32 if (self.K + 1) ** 2 < 2**31 else np.int64
            self._cum = np.zeros((lab.shape[0], lab.shape[1] + 1), dtype=it)
            np.cumsum(lab.view(np.int8), axis=1, dtype=it, out=self._cum[:, 1:])  # bytes: no bool cast
        return self._cum

    def tie_rows(self, ties: np.ndarray | None = None) -> np.ndarray | None:
        """Rows holding a tie (computed once); None if ``ties`` is given and is not :meth:`ties`."""
        if ties is not None and ties is not self._ties:
            return None
        if self._tie_rows is None:
            self._tie_rows = np.flatnonzero(self.ties().any(axis=1))
        return self._tie_rows

    def thresholds(self, kstar: np.ndarray) -> np.ndarray:
        """Threshold of cut kstar of each row (midpoint rule; member iff value >= it)."""
        return _packed_threshold(self.v, kstar) if self.packed else _taus(self.v, kstar)

    def above(self, tau: np.ndarray) -> np.ndarray:
        """Bool (rows, n): the entries the rule ``score >= tau`` calls members."""
        return self.v >= tau[:, None]

    def cut_of(self, tau: np.ndarray) -> np.ndarray:
        """Per row, the number of entries below ``tau`` (the cut the rule ``score >= tau`` makes).

        Such a cut never splits a run of equal scores, so the cumulative counts of any
        labelling at it are unmasked.
        """
        ge = self.above(tau)
        n = ge.shape[1]
        if n == 0:
            return np.zeros(ge.shape[0], np.intp)
        cut = np.argmax(ge, axis=1)  # first entry at or above tau (rows are sorted)
        cut[~ge[:, -1]] = n  # none at or above
        return cut


# Cumulative sums along rows in int32: numpy accumulates int32 (and int64) rows about 4x faster
# than int16 ones (measured 0.56 vs 2.2 ns per entry for rows of 400, with ``out=``; without
# ``out=`` both cost several times more)
_CUM = np.int32


def mask_ties(d: np.ndarray, ties: np.ndarray, value, rows: np.ndarray | None = None) -> None:
    """``np.putmask(d, ties, value)``, on the rows that hold a tie only (most rows hold none).

    Where many rows hold ties (a trained model's losses: exact zeros, duplicate records),
    ``np.copyto(where=)``: the same result, 4x faster than ``putmask`` (measured 0.3 vs 1.2 ns
    per int32 entry). ``rows``: the rows holding a tie, if known (:meth:`SortedRows.tie_rows`).
    """
    if rows is None:
        rows = np.flatnonzero(ties.any(axis=1))
    if rows.size * 4 > d.shape[0]:
        np.copyto(d, d.dtype.type(value), where=ties)
    elif rows.size:
        d[rows] = np.where(ties[rows], d.dtype.type(value), d[rows])


def _cut_gain(lab: np.ndarray, ties: np.ndarray, tie_rows: np.ndarray | None = None) -> np.ndarray:
    """``d(k) = #out - #in among the k lowest`` at every cut of sorted rows; the minimum at ties.

    ``correct(k) = d(k) + n_in``: with n_in fixed per row, d has the same best cut (one
    cumulative sum of +-1 steps instead of counts and arithmetic afterwards).
    """
    mb, n = lab.shape
    d = np.zeros((mb, n + 1), dtype=_CUM)
    step = np.subtract(np.int8(1), np.add(lab.view(np.int8), lab.view(np.int8)), dtype=np.int8)  # (no int8 shift: slow)
    np.cumsum(step, axis=1, dtype=_CUM, out=d[:, 1:])
    mask_ties(d, ties, np.iinfo(_CUM).min, tie_rows)
    return d


def _steps(lab: np.ndarray) -> np.ndarray:
    """Step of :func:`_cut_gain` (+1 out, -1 in) of 0/1 uint8 labels, as int8.

    Elementwise adds: several times cheaper than a table lookup (numpy first converts the
    index to intp) and than a shift (numpy's 8-bit shifts are not vectorised: 15x slower).
    """
    lab += lab
    return np.subtract(np.int8(1), lab.view(np.int8), dtype=np.int8)


def _best_gain(step: np.ndarray, ties: np.ndarray, tie_rows: np.ndarray | None = None) -> np.ndarray:
    """``max_k d(k)`` over the cuts that split no tie, from the +-1 steps of sorted rows."""
    mb, n = step.shape
    d = np.zeros((mb, n + 1), dtype=_CUM)
    np.cumsum(step, axis=1, dtype=_CUM, out=d[:, 1:])
    mask_ties(d, ties, np.iinfo(_CUM).min, tie_rows)
    return d.max(axis=1)


def _in_sample_acc(rows: SortedRows, lab: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """In-sample accuracy: the best cut's correct count over the 2K trials of each row.

    Every pair puts exactly one entry "in" (also after the floor's swap), so n_in = K.
    """
    return (_cut_gain(lab, ties).max(axis=1) + rows.K) / (2 * rows.K)


def _fold_gain(rows: SortedRows, lab: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """:func:`_cut_gain` of sorted rows; from their cached in-counts when ``lab`` is their own labels.

    ``d(k) = k - 2 * in(k)``: two elementwise passes over the counts empirical epsilon's
    threshold search reads too, instead of a cumulative sum of its own.
    """
    tie_rows = rows.tie_rows(ties)
    if lab is not rows._lab:
        return _cut_gain(lab, ties, tie_rows)
    cin = rows.cum_in()
    d = np.multiply(cin, -2)
    d += np.arange(cin.shape[1], dtype=d.dtype)
    mask_ties(d, ties, np.iinfo(d.dtype).min, tie_rows)
    return d


def _cross_fit_accs(a: SortedRows, b: SortedRows, labelings: list, ties_a, ties_b, K: int) -> list:
    """:func:`cross_fit_acc` for several labellings ``[(la, lb), ...]`` of the same folds.

    The thresholds of all labellings and both folds are computed together
    (:func:`_thresholds`: one midpoint computation instead of one per fold and labelling).
    """
    gains = [(_fold_gain(a, la, ties_a), _fold_gain(b, lb, ties_b)) for la, lb in labelings]
    n = len(gains)
    taus = _thresholds([(a, np.argmax(da, axis=1)) for da, _ in gains]
                       + [(b, np.argmax(db, axis=1)) for _, db in gains])
    out = []
    for i, (da, db) in enumerate(gains):
        tau_a, tau_b = taus[i], taus[n + i]
        ca = np.take_along_axis(da, a.cut_of(tau_b)[:, None], axis=1)[:, 0].astype(np.int64)
        cb = np.take_along_axis(db, b.cut_of(tau_a)[:, None], axis=1)[:, 0].astype(np.int64)
        out.append((ca + cb + (a.K + b.K)) / (2 * K))
    return out


def cross_fit_acc(a: SortedRows, b: SortedRows, la, lb, ties_a, ties_b, K: int) -> np.ndarray:
    """Cross-fitted accuracy: fold A's threshold scores fold B and vice versa.

    Each fold's ``d(k)`` (:func:`_cut_gain`) gives both its best cut and, at the cut the other
    fold's threshold makes in it, its correct count ``d + K_fold`` (every pair puts one entry
    "in"): no pass comparing labels after the threshold is known.
    """
    return _cross_fit_accs(a, b, [(la, lb)], ties_a, ties_b, K)[0]


def _record_estimates(rows: SortedRows, swap_plane: int, b: SortedRows | None = None):
    """Accuracy and floor accuracy of one estimator on sorted rows.

    In-sample: ``rows`` holds all 2K scores of each record. Cross-fit: ``rows`` and ``b`` hold
    the sorted scores of the pairs of fold A and of fold B. Plane ``swap_plane`` marks the
    pairs whose in/out labels the floor exchanges.
    """
    if b is None:
        ties = rows.ties()
        if rows.packed and swap_plane < 7:  # label and swap in the key's low byte: steps by bit ops
            low = rows.low_byte()
            lab = low & np.uint8(1)
            swapped = (low >> np.uint8(1 + swap_plane)) & np.uint8(1)
            swapped ^= lab
            tie_rows = rows.tie_rows()
            return tuple((_best_gain(_steps(x), ties, tie_rows) + rows.K) / (2 * rows.K) for x in (lab, swapped))
        lab = rows.lab
        return _in_sample_acc(rows, lab, ties), _in_sample_acc(rows, lab ^ rows.plane(swap_plane), ties)
    a = rows
    K = a.K + b.K
    la, lb = a.lab, b.lab
    fa, fb = la ^ a.plane(swap_plane), lb ^ b.plane(swap_plane)
    acc, acc_floor = _cross_fit_accs(a, b, [(la, lb), (fa, fb)], a.ties(), b.ties(), K)
    return acc, acc_floor


def fold_rows(s_in, s_out, fold, planes: tuple = (), packed=None, flip=None) -> tuple[SortedRows, SortedRows]:
    """Sort the scores of fold A's pairs (``fold`` True, shape (K,)) and of fold B's, apart.

    Two sorts of K entries cost less than one of 2K (numpy's vectorised sort networks) plus
    the compaction of each fold out of it. ``planes`` and ``flip`` (rows, K) as in
    :class:`SortedRows`.
    """
    def part(sel):
        return SortedRows(s_in[:, sel], s_out[:, sel], tuple(p[:, sel] for p in planes), packed=packed,
                          flip=None if flip is None else flip[:, sel])

    return part(fold), part(~fold)


def _block_estimates(s_in, s_out, fold, swap, packed=None):
    """:func:`_record_estimates` of a block of records from their in/out scores (mb, K)."""
    if fold is None:
        return _record_estimates(SortedRows(s_in, s_out, (swap,), packed=packed), 0)
    a, b = fold_rows(s_in, s_out, fold, (swap,), packed=packed)
    return _record_estimates(a, 0, b)


def record_block(
    s_in: np.ndarray, s_out: np.ndarray, fold: np.ndarray | None, swap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and floor accuracy of records whose K pairs give scores s_in, s_out (mb, K).

    ``fold`` (K,) bool marks the pairs of fold A of the cross-fit (None: in-sample); ``swap``
    (mb, K) bool marks the pairs whose in/out labels the floor exchanges. float32 scores take
    the packed-key path, others the argsort path; both give identical results.
    """
    return _block_estimates(s_in, s_out, fold, swap)


def _record_block_sorted(s_in, s_out, fold, swap):
    """:func:`record_block` through the argsort path (any float dtype)."""
    return _block_estimates(s_in, s_out, fold, swap, packed=False)


def _record_block_packed(s_in, s_out, fold, swap):
    """:func:`record_block` through the packed-key path (float32 scores)."""
    return _block_estimates(s_in, s_out, fold, swap, packed=True)

def _global_acc(
    scores: np.ndarray,
    labels: np.ndarray,
    trial: np.ndarray,
    cell: np.ndarray,
    partner: np.ndarray,
    order: np.ndarray | None = None,
    balanced: bool = False,
) -> np.ndarray:
    """Per-record accuracy of per-(model, cell) thresholds; records scored by their partner's.

    scores, labels, trial: (n_models, m); cell, partner: int (m,). Thresholds of cell c are
    fitted on the trials of the records of cell c; record x is scored with the thresholds of
    cell ``partner[x]``. ``order`` is the row-wise argsort of scores if already known.
    """
    if order is None:
        order = np.argsort(scores, axis=1)
    xs = np.take_along_axis(scores, order, axis=1)
    tr = np.take_along_axis(trial, order, axis=1)
    ls = np.take_along_axis(labels, order, axis=1)
    cell_sorted = cell[order]
    n_cells = int(max(cell.max(), partner.max())) + 1
    tau = np.full((scores.shape[0], n_cells), -np.inf)
    for c in np.unique(cell):  # loop over cells (groups x folds), never over records
        sel = cell_sorted == c
        mc = int(sel[0].sum())
        xc = xs[sel].reshape(-1, mc)
        lc, tc = ls[sel].reshape(-1, mc), tr[sel].reshape(-1, mc)
        tau[:, c] = _weighted_taus(xc, lc, tc, balanced)
    pred = scores >= tau[:, partner]
    return ((pred == labels) & trial).sum(axis=0) / trial.sum(axis=0)


# --------------------------------------------------------------------------- packed kernels
# For float32 scores the sort is done on uint64 keys that pack the order-preserving uint32 image
# of the score with the few bits each entry needs (fold or cell above it, labels below it):
# np.sort on integers is several times faster than argsort followed by gathers, and the
# sorted keys carry everything the cumulative counts need.
_SHIFT = 8  # score bits start here; bits 0-7 hold labels
_TOP = 40  # fold / cell bits start here
CHUNK_ELEMENTS = 1 << 19  # rows per block so that a block's keys take about 4 MB
# (model, record) entries per block of the PA-GA/GBA histogram kernel (measured 2**18-2**20 on
# Adult LR and synthetic losses: 2**19 fastest by 5-10 %, and half 2**20's temporaries)
HIST_CHUNK_ELEMENTS = 1 << 19


def _u32(x: np.ndarray, negate: bool = False) -> np.ndarray:
    """Order-preserving map float32 -> uint32 (-0.0 and 0.0 map to the same key).

    ``negate``: the key's complement ``~key(x)`` (which orders and ties as ``key(-x)``), in
    the same passes (the last xor takes 0x7FFFFFFF instead of the sign bit).
    """
    i = np.asarray(np.add(x, np.float32(0))).view(np.int32)  # a new array; + 0 turns -0.0 into 0.0
    # negative floats: flip the magnitude bits (two's-complement order); then sign -> offset
    t = i >> 31
    t &= np.int32(0x7FFFFFFF)
    i ^= t
    i ^= np.int32(0x7FFFFFFF if negate else -(2**31))
    return i.view(np.uint32)


def _keys(x: np.ndarray) -> np.ndarray:
    """uint32 sort keys of float32 scores (:func:`_u32`); uint32 input is taken as keys already."""
    return x if x.dtype == np.uint32 else _u32(x.astype(np.float32, copy=False))


_PACKABLE = (np.dtype(np.float32), np.dtype(np.uint32))  # scores the packed kernels take (keys or float32)


def _f32(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_u32`."""
    i = np.ascontiguousarray(u, dtype=np.uint32).view(np.int32) ^ np.int32(-(2**31))
    i = i ^ ((i >> 31) & np.int32(0x7FFFFFFF))
    return i.view(np.float32)


_NONE = np.uint32(0xFFFFFFFF)  # above the key of every finite float32: nobody is "member"
_U64_NETWORK_MAX = 256  # numpy sorts rows of up to this many uint64 keys with sorting networks
# SortedRows sorts rows of at least this many entries as two uint32 keys: above 256 entries
# 7x faster per row (uint64 rows leave the networks); at 200 (the cross-fit's folds of a
# 400-model audit) still about 6 % less CPU for the per-record pass (uint32 networks sort
# twice the keys per vector, and the passes around the sort move half the bytes)
_NARROW_MIN_ENTRIES = 128
_NARROW_PLANES = 2  # SortedRows sorts longer rows as uint32 keys with at most this many planes
_PAYLOAD = 31  # SortedRows keys: [top bit 63][uint32 score, bits 31-62][payload, bits 0-30]


def _packed_threshold(us: np.ndarray, kstar: np.ndarray) -> np.ndarray:
    """uint32-key threshold of cut kstar: member iff key >= it; midpoint rule."""
    return _midpoint(*_packed_neighbours(us, kstar), packed=True)


def _packed_neighbours(us: np.ndarray, kstar: np.ndarray) -> tuple:
    """Return the keys below and above cut kstar of each sorted row, and whether it is the first or last cut."""
    mb, n = us.shape
    if n == 0:
        z = np.zeros(mb, np.uint32)
        return z, z, kstar == 0, kstar == n
    at = np.clip(kstar, 1, n - 1) if n > 1 else np.zeros_like(kstar)  # hi = us[at], lo = us[at - 1]
    at += np.arange(0, mb * n, n)  # flat takes (take_along_axis builds index grids: slower)
    flat = us.reshape(-1) if us.flags.c_contiguous else np.ascontiguousarray(us).reshape(-1)
    return flat[np.maximum(at - 1, 0)], flat[at], kstar == 0, kstar == n


def _thresholds(items: list) -> list:
    """:meth:`SortedRows.thresholds` of each ``(rows, kstar)``; packed rows in one batch.

    :func:`_midpoint` is elementwise, so one call on the concatenated neighbours gives the
    numbers of one call per item, with a fraction of the small-array calls.
    """
    if not all(rows.packed for rows, _ in items):
        return [rows.thresholds(k) for rows, k in items]
    parts = [_packed_neighbours(rows.v, k) for rows, k in items]
    t = _midpoint(*(np.concatenate(x) for x in zip(*parts, strict=True)), packed=True)
    return np.split(t, np.cumsum([k.size for _, k in items])[:-1])


def _midpoint(lo, hi, first, last, packed: bool) -> np.ndarray:
    """Threshold strictly between sorted neighbours lo < hi (the midpoint rule).

    ``first``: the cut is below every entry (threshold -inf: all "member"); ``last``: above
    every entry (+inf: none). ``packed``: lo, hi and the result are uint32 keys of float32
    scores (the result is the smallest float32 >= the exact float64 midpoint, so that
    ``key >= threshold`` decides exactly as ``score >= midpoint``); else float64 values.
    """
    if packed:
        lo64, hi64 = _f32(lo).astype(np.float64), _f32(hi).astype(np.float64)
        mid = lo64 / 2 + hi64 / 2  # exact in float64 and strictly between two float32 values
        t = mid.astype(np.float32)
        t = np.where(t.astype(np.float64) < mid, np.nextafter(t, np.float32(np.inf)), t)
        ut = _u32(t.astype(np.float32))
        return np.where(first, np.uint32(0), np.where(last, _NONE, ut)).astype(np.uint32)
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    mid = lo / 2 + hi / 2
    mid = np.where(mid <= lo, hi, mid)  # adjacent floats: keep lo < tau <= hi
    return np.where(first, -np.inf, np.where(last, np.inf, mid))


def _ties(us: np.ndarray) -> np.ndarray:
    """Bool (rows, n + 1): cuts that would split a run of equal sorted keys."""
    mb, n = us.shape
    ties = np.zeros((mb, n + 1), dtype=bool)
    if n > 1:
        np.equal(us[:, :-1], us[:, 1:], out=ties[:, 1:-1])
    return ties


def global_block(
    scores: np.ndarray,
    labels: np.ndarray,
    swap: np.ndarray,
    trial: np.ndarray,
    cell: np.ndarray,
    partner: np.ndarray,
    balanced: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and floor accuracy of PA-GA/PA-GBA (floor labels = labels ^ swap)."""
    return global_runs(scores, labels, trial, [(swap, cell, partner, balanced)])[0]


def global_runs(scores: np.ndarray, labels: np.ndarray, trial: np.ndarray, runs: list,
                per_pair: bool = False, negated: bool = False) -> list:
    """:func:`global_block` of several runs ``(swap, cell, partner, balanced)`` on the same scores.

    The runs share each block of models' uint32 keys and histogram buckets. ``per_pair``:
    ``trial`` and every run's ``swap`` are given per model pair, shape (n_models // 2, m), the
    same for both models of a pair, and expanded a block of models at a time (no
    matrix-sized copies of them, nor of the floor's labels). ``negated``: the scores are
    ``-scores`` (losses for the loss signal), negated a block at a time (:func:`_block_keys`).
    """
    if not runs:
        return []
    if negated and scores.dtype not in _PACKABLE:
        scores, negated = -scores, False  # the argsort path takes whole matrices
    if per_pair:
        if scores.dtype not in _PACKABLE:  # the argsort path takes whole matrices
            trial = np.repeat(trial, 2, axis=0)
            runs = [(np.repeat(swap, 2, axis=0), *rest) for swap, *rest in runs]
        else:
            return _global_runs_packed(scores, labels, trial, runs, True, negated)
    if scores.dtype not in _PACKABLE:
        order = np.argsort(scores, axis=1)
        return [(_global_acc(scores, labels, trial, cell, partner, order, balanced),
                 _global_acc(scores, labels ^ swap, trial, cell, partner, order, balanced))
                for swap, cell, partner, balanced in runs]
    return _global_runs_packed(scores, labels, trial, runs, False, negated)


def _block_keys(x: np.ndarray, negated: bool) -> np.ndarray:
    """uint32 sort keys of a block of float32 scores, or of their negatives when ``negated``.

    ``~key(x)`` orders and ties exactly as ``key(-x)`` (-0.0 and 0.0 share one key either
    way) and decodes to ``-x`` (:func:`_f32`), so thresholds and counts are those of the
    negated scores, without a matrix-sized ``-losses``.
    """
    if not negated:
        return _keys(x)
    if x.dtype == np.uint32:
        return ~x
    return _u32(x.astype(np.float32, copy=False), negate=True)


def _global_runs_packed(scores, labels, trial, runs, per_pair: bool, negated: bool = False) -> list:
    n_models, m = scores.shape
    n_trials = column_counts(trial) * (2 if per_pair else 1)
    hist = m >= _HIST_MIN_RECORDS and bool(trial.all())
    step = max(1, (HIST_CHUNK_ELEMENTS if hist else CHUNK_ELEMENTS) // max(m, 1))
    step += step % 2  # blocks of whole pairs

    def rows_of(x, lo):
        return np.repeat(x[lo // 2:(lo + step) // 2], 2, axis=0) if per_pair else x[lo:lo + step]

    pairs = _shared_runs(runs) if hist else {}
    compiled = _compiled_kernels(scores.size) if hist else None

    def work(lo: int) -> list:  # blocks of models keep the temporaries in cache
        rows = slice(lo, lo + step)
        lab = labels[rows]
        floors = [None if i in pairs.values() else lab ^ rows_of(swap, lo) for i, (swap, *_) in enumerate(runs)]
        u = _block_keys(scores[rows], negated)
        if hist:  # every (model, record) a trial (ALOOA, half-split): no row sort
            buckets = _hist_buckets(u, compiled=compiled)
            out: list = [None] * len(runs)
            for i, j in pairs.items():  # PA-GA and PA-GBA in-sample with one floor: one count
                cell = runs[j][1]
                out[i], out[j] = _global_chunk_hist_shared(u, lab, floors[i], cell, int(cell.max()) + 1, buckets,
                                                           compiled)
            for i, (fl, (_swap, cell, partner, balanced)) in enumerate(zip(floors, runs, strict=True)):
                if out[i] is None:
                    out[i] = _global_chunk_hist(u, lab, fl, cell, partner, balanced, buckets, compiled)
            return out
        tr = rows_of(trial, lo)
        return [_global_chunk(u, lab, fl, tr, cell, partner, balanced)
                for fl, (_swap, cell, partner, balanced) in zip(floors, runs, strict=True)]

    ok = np.zeros((len(runs), 2, m), np.int64)
    for parts in map_threads(work, range(0, n_models, step)):
        ok += np.stack(parts)  # integer counts: the sum does not depend on the order
    return [(o[0] / n_trials, o[1] / n_trials) for o in ok]


def _shared_runs(runs: list) -> dict:
    """Pairs {i: j} of runs whose histogram counts one ``bincount`` serves (:func:`_global_chunk_hist_shared`).

    Run i: one cell (PA-GA in-sample); run j: cells scored by their own thresholds (PA-GBA
    in-sample), several of them; both plain accuracy and the same floor swaps (one seed
    draws the same swaps for both).
    """
    pairs: dict = {}
    for i, (swap_i, cell_i, partner_i, bal_i) in enumerate(runs):
        if bal_i or cell_i.any() or partner_i.any():
            continue
        for j, (swap_j, cell_j, partner_j, bal_j) in enumerate(runs):
            if (j != i and j not in pairs.values() and j not in pairs and not bal_j and cell_j.size
                    and cell_j.max() > 0 and np.array_equal(cell_j, partner_j) and np.array_equal(swap_i, swap_j)):
                pairs[i] = j
                break
    return pairs


def all_distinct(ids: np.ndarray) -> bool:
    """Whether a 1-D integer array holds each value once (strictly increasing ids: no sort)."""
    return ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])) or np.unique(ids).size == ids.size


def column_counts(flags: np.ndarray) -> np.ndarray:
    """Count the True entries of each column of a bool (rows, m) block (int64).

    Summed as bytes in the narrowest integer that cannot overflow: ``bool.sum(axis=0)`` casts
    every entry to int64 on the way (measured 13x slower for 23 x 45,222).
    """
    if flags.dtype != bool:
        return flags.sum(axis=0).astype(np.int64)
    rows = flags.shape[0]
    dt = np.uint8 if rows < 256 else np.uint16 if rows < 65536 else np.int64
    return flags.view(np.uint8).sum(axis=0, dtype=dt).astype(np.int64)


def _n_threads() -> int:
    """Threads for the audit kernels: FAIRPRIV_LAB_THREADS, else the CPUs this process may use."""
    env = os.environ.get("FAIRPRIV_LAB_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, min(8, os.cpu_count() or 1))


def map_threads(fn, items):
    """Yield fn(item) for each item in order, computed on a small thread pool.

    At most two items per thread are in flight: ``Executor.map`` would take every item at
    once, and the items (blocks of gathered scores) and their results would then all be in
    memory together (for 400 x 36,178 losses about the size of the loss matrix).
    """
    n = _n_threads()
    if n == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _balanced(ctrial: np.ndarray, cin: np.ndarray) -> np.ndarray:
    """Balanced accuracy at every cut: (out below)/n_out + (in at or above)/n_in (times 1/2 dropped).

    Cross-fitted global thresholds must not learn the base rate: in a model's fitting half the
    share of members is anti-correlated with the scoring half's (a model holds a fixed number
    of audited members), so an accuracy-maximising threshold with no signal would score below
    chance on the other half. Balanced accuracy has no base rate to learn.
    """
    n_in = cin[:, -1:].astype(np.float64)
    n_out = ctrial[:, -1:] - n_in
    return (ctrial - cin) / np.maximum(n_out, 1.0) + (n_in - cin) / np.maximum(n_in, 1.0)


def _global_chunk(scores, labels, floor_labels, trial, cell, partner, balanced=False) -> np.ndarray:
    """Correct-prediction counts per record, shape (2, m), for a block of models (packed)."""
    n_models, m = scores.shape
    u = _keys(scores)
    bits = (labels.view(np.uint8) * np.uint8(4)) | (floor_labels.view(np.uint8) * np.uint8(2))
    bits |= trial.view(np.uint8)
    key = u.astype(np.uint64) << np.uint64(_SHIFT)
    key |= bits
    if cell.any():
        key |= (cell.astype(np.uint64) << np.uint64(_TOP))[None, :]
    key.sort(axis=1)
    us = (key >> np.uint64(_SHIFT)).astype(np.uint32)
    all_trials = bool(trial.all())
    sizes = np.bincount(cell)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n_cells = int(max(cell.max(), partner.max())) + 1
    thr = np.zeros((2, n_models, n_cells), np.uint32)
    dt = np.int32
    for c in np.flatnonzero(sizes):  # loop over cells (groups x halves), never over records
        blk = slice(starts[c], starts[c + 1])
        kb, ub = key[:, blk], us[:, blk]
        n = ub.shape[1]
        ties = _ties(ub)
        ctrial = np.zeros((n_models, n + 1), dt)
        if all_trials:
            ctrial[:] = np.arange(n + 1, dtype=dt)
        else:
            np.cumsum((kb & np.uint64(1)).astype(bool), axis=1, dtype=dt, out=ctrial[:, 1:])
        for j, bit in enumerate((4, 2)):
            lab = (kb & np.uint64(bit | 1)) == np.uint64(bit | 1)
            cin = np.zeros((n_models, n + 1), dt)
            np.cumsum(lab, axis=1, dtype=dt, out=cin[:, 1:])
            correct = ctrial - 2 * cin + cin[:, -1:]  # out below the cut + in at or above it
            if balanced:
                correct = _balanced(ctrial, cin)
            np.copyto(correct, correct.dtype.type(-1), where=ties)  # putmask's result, faster
            thr[j, :, c] = _packed_threshold(ub, np.argmax(correct, axis=1))
    del key, us
    out = np.empty((2, m), np.int64)
    single = n_cells == 1
    for j, lb in enumerate((labels, floor_labels)):
        pred = u >= (thr[j][:, :1] if single else thr[j][:, partner])
        hit = pred == lb
        if not all_trials:
            hit &= trial
        out[j] = column_counts(hit)
    return out


# --------------------------------------------------------------------------- pairs
def coins(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fair coin flips as a bool array (8 per random byte)."""
    n = int(np.prod(shape))
    bits = np.unpackbits(rng.integers(0, 256, size=(n + 7) // 8, dtype=np.uint8))[:n]
    return bits.view(bool).reshape(shape)


def as_f32(scores: np.ndarray) -> np.ndarray:
    """Scores as float32 when that loses nothing (the packed kernels), else unchanged."""
    if scores.dtype == np.float32:
        return scores
    f = scores.astype(np.float32)
    return f if np.array_equal(f, scores) else scores


def as_keys(scores: np.ndarray) -> np.ndarray:
    """Scores as the packed kernels' uint32 sort keys when float32 loses nothing, else unchanged.

    Converting once, before the scores are gathered, saves every later sort its conversion.
    """
    if scores.dtype == np.uint32:
        return scores  # keys already
    f = as_f32(scores)
    return _u32(f) if f.dtype == np.float32 else f


def informative_pairs(mem: np.ndarray, rec: np.ndarray) -> np.ndarray:
    """Bool (n_pairs, m): pairs where the record is in exactly one model; errors if none."""
    inf = mem[0::2] != mem[1::2]
    K = column_counts(inf)
    if np.any(K == 0):
        bad = rec[K == 0]
        shown = ", ".join(str(b) for b in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ConfigError(
            f"Records [{shown}] ({bad.size} in all) have no model pair in which they are in one "
            "model and out of the other, so they have no in models or no out models to compare. "
            "Audit only the game's audit records (records=game.audit_idx)."
        )
    return inf


def pair_blocks(scores: np.ndarray, mem: np.ndarray, inf: np.ndarray, keys: bool = False, flip: bool = False,
                negated: bool = False, compiled=None):
    """Yield (columns, K, chunks) for the records sharing the same number K of pairs.

    ``chunks`` iterates over (row slice, s_in, s_out) with s_in/s_out of shape (rows, K): the
    scores of each record's in-model and out-model in its K auditing pairs, built a block of
    records at a time so that the transposition stays in cache. ``keys``: float32 scores come
    as their uint32 sort keys, converted block by block (converting the whole matrix first
    allocates and faults in several matrix-sized temporaries: measured slower). ``flip``: the
    chunks are (row slice, s_even, s_odd, flip) instead, the scores of each pair's first and
    second model and ``flip`` True where the second is the in-model (:class:`SortedRows`
    takes them as they are: no selection of in/out scores). ``negated``: the scores are
    ``-scores``, negated a block at a time.
    """
    K = column_counts(inf)
    if np.all(inf):
        ks = [int(inf.shape[0])]
    else:
        ks = [int(k) for k in np.unique(K)]  # distinct pair counts (1 for every game here)
    for k in ks:
        cols = np.flatnonzero(K == k)
        yield cols, k, _pair_chunks(scores, mem, inf, cols, k, keys and scores.dtype == np.float32, flip, negated,
                                    compiled)


def _pair_chunks(scores, mem, inf, cols, k, keys=False, flip=False, negated=False, compiled=None):
    step = max(1, CHUNK_ELEMENTS // (2 * k))
    full = cols.size == scores.shape[1]
    if (compiled is not None and full and keys and flip and k == inf.shape[0] and scores.shape[0] == 2 * k
            and scores.flags.c_contiguous and mem.flags.c_contiguous):  # the same blocks, one compiled loop each
        bits = scores.view(np.uint32)
        for lo in range(0, cols.size, step):
            hi = min(lo + step, cols.size)
            yield (slice(lo, lo + step), *compiled.pair_keys(bits, mem.view(np.uint8), lo, hi, negated))
        return
    for lo in range(0, cols.size, step):
        r = slice(lo, lo + step)
        c = slice(lo, min(lo + step, cols.size)) if full else cols[r]
        in_even = mem[0::2, c]
        even, odd = scores[0::2, c], scores[1::2, c]
        if flip:
            s_in, s_out, second_in = even, odd, ~in_even
        else:
            s_in = np.where(in_even, even, odd)
            s_out = np.where(in_even, odd, even)
        if k < inf.shape[0]:
            pick = np.argsort(~inf[:, c], axis=0, kind="stable")[:k]
            s_in = np.take_along_axis(s_in, pick, axis=0)
            s_out = np.take_along_axis(s_out, pick, axis=0)
            if flip:
                second_in = np.take_along_axis(second_in, pick, axis=0)
        s_in, s_out = np.ascontiguousarray(s_in.T), np.ascontiguousarray(s_out.T)
        if keys:
            s_in, s_out = _block_keys(s_in, negated), _block_keys(s_out, negated)
        elif negated:
            s_in, s_out = -s_in, -s_out
        if flip:
            yield r, s_in, s_out, np.ascontiguousarray(second_in.T)
        else:
            yield r, s_in, s_out



def _weighted_taus(xs: np.ndarray, lab: np.ndarray, w: np.ndarray, balanced: bool = False) -> np.ndarray:
    """Lowest accuracy-maximising threshold per sorted row, counting only entries with w."""
    mb, n = xs.shape
    cin = np.zeros((mb, n + 1), dtype=np.int64)
    cout = np.zeros((mb, n + 1), dtype=np.int64)
    np.cumsum(lab & w, axis=1, out=cin[:, 1:])
    np.cumsum(~lab & w, axis=1, out=cout[:, 1:])
    correct = cout + cin[:, -1:] - cin
    if balanced:
        correct = _balanced(cout + cin, cin)
    if n > 1:
        correct[:, 1:-1][xs[:, :-1] >= xs[:, 1:]] = -1
    return _taus(xs, np.argmax(correct, axis=1))


class EstimatorTask:
    """PA-ALOOA / PA-LOOA accuracy and floor of one estimator, fed by :func:`record_pass`.

    After the pass, ``acc`` and ``acc_floor`` hold each audited record's attack accuracy and
    its zero-leakage floor (fractions); :func:`fairpriv_lab.audit.attacks.record_risk` wraps
    them in a ``RecordRisk``.
    """

    def __init__(self, estimator: str, rng: np.random.Generator, m: int):
        self.estimator, self.rng = estimator, rng
        self.acc, self.acc_floor = np.empty(m), np.empty(m)

    def prepare(self, blocks) -> None:
        """Draw all randomness up front, block by block (results independent of threads)."""
        self.draws = []
        for cols, k, _ in blocks:
            fold = pair_split(self.rng, k) if self.estimator == "cross_fit" else None
            self.draws.append((fold, coins(self.rng, (cols.size, k))))

    def planes(self, bi: int, r: slice) -> tuple:
        """Bits this task needs carried through the shared sort of all 2K scores."""
        fold, swap = self.draws[bi]
        return (swap[r],) if fold is None else ()

    def compute(self, bi: int, r: slice, shared: SharedSorts, first: int):
        """Accuracy and floor of the block's rows ``r`` (from the shared sorts)."""
        fold, swap = self.draws[bi]
        if fold is None:
            rows = shared.all()
            if shared.compiled is not None and rows.packed:
                g = shared.compiled.in_sample(rows.v, rows.low, 1 + first)
                return (g[0] + rows.K) / (2 * rows.K), (g[1] + rows.K) / (2 * rows.K)
            return _record_estimates(rows, first)
        a, b = shared.folds(fold, swap[r])
        if shared.compiled is not None and a.packed and b.packed:
            g = shared.compiled.cross_fit(a.v, a.low, b.v, b.low, 1)  # plane 0: the swap (bit 1)
            return (g[0] + (a.K + b.K)) / (2 * (a.K + b.K)), (g[1] + (a.K + b.K)) / (2 * (a.K + b.K))
        return _record_estimates(a, 0, b)

    def store(self, idx: np.ndarray, out) -> None:
        """Keep a block's output at the audited records' positions ``idx``."""
        self.acc[idx], self.acc_floor[idx] = out


def pair_split(rng: np.random.Generator, k: int) -> np.ndarray:
    """Fold A of a random split of k pair positions (``k // 2`` of them True), shape (k,).

    The pairs are exchangeable (independent trainings), so one seeded split of the pair
    positions serves every record of a block. The cross-fitted estimator and empirical
    epsilon draw it alike, first from their generators, so with the same seed they share the
    split and the sorts of its folds (:class:`SharedSorts`).
    """
    fold = np.zeros(k, dtype=bool)
    fold[rng.permutation(k)[: k // 2]] = True
    return fold


class SharedSorts:
    """The sorts of one block of records that several analyses of :func:`record_pass` read.

    ``all()``: every record's 2K scores sorted once, with every task's planes riding along;
    ``folds(fold, swap)``: the two folds of a pair split, each sorted (:func:`fold_rows`),
    with the floor's ``swap`` plane when the caller needs it. Each is built on first use.
    """

    def __init__(self, s_in, s_out, planes: list, flip=None, compiled=None):
        self.s_in, self.s_out, self.planes, self.flip = s_in, s_out, planes, flip
        self.compiled = compiled  # the compiled kernels' module (large audits), or None
        self._all = None
        self._folds: dict = {}

    def _sorted(self, cols: np.ndarray | None, planes: tuple) -> SortedRows:
        """:class:`SortedRows` of the pairs ``cols`` (None: all), with ``planes``."""
        C = self.compiled
        K = self.s_in.shape[1] if cols is None else cols.size
        if (C is not None and self.s_in.dtype == np.uint32 and self.s_out.dtype == np.uint32
                and self.flip is not None and len(planes) <= 1 and 2 * K >= _NARROW_MIN_ENTRIES):
            return _compiled_narrow(C, self.s_in, self.s_out, cols, planes, self.flip)
        if cols is None:
            return SortedRows(self.s_in, self.s_out, planes, flip=self.flip)
        return SortedRows(self.s_in[:, cols], self.s_out[:, cols], tuple(p[:, cols] for p in planes),
                          flip=None if self.flip is None else self.flip[:, cols])

    def all(self) -> SortedRows:
        """Every record's 2K scores, sorted once, with every task's planes."""
        if self._all is None:
            self._all = self._sorted(None, tuple(self.planes))
        return self._all

    def folds(self, fold: np.ndarray, swap: np.ndarray | None = None) -> tuple[SortedRows, SortedRows]:
        """Folds A and B of the split ``fold`` (K,), each sorted; with the floor's ``swap`` if given."""
        key = fold.tobytes()
        got = self._folds.get(key)
        if got is None or (swap is not None and got[2] is None):
            planes = () if swap is None else (swap,)
            got = (*self._fold_rows(fold, planes), swap)
            self._folds[key] = got
        elif swap is not None and got[2] is not swap and not np.array_equal(got[2], swap):
            got = (*self._fold_rows(fold, (swap,)), swap)  # another floor
        return got[0], got[1]

    def _fold_rows(self, fold: np.ndarray, planes: tuple) -> tuple[SortedRows, SortedRows]:
        if self.compiled is None:
            return fold_rows(self.s_in, self.s_out, fold, planes, flip=self.flip)
        return self._sorted(np.flatnonzero(fold), planes), self._sorted(np.flatnonzero(~fold), planes)


def _compiled_narrow(C, s_in, s_out, cols, planes: tuple, flip) -> SortedRows:
    """:class:`SortedRows` (narrow: two uint32 sorts) of the pairs ``cols``, keys built compiled.

    The keys before the sorts and the clash search after them are one compiled loop each
    (``C``: :mod:`~fairpriv_lab.audit._compiled`); the sorts are numpy's. The same values and
    payload bits as ``SortedRows(..., planes, flip=flip)``; ``low`` keeps the truncated score
    key above the payload's ``1 + len(planes)`` bits (every reader masks: ``lab``, ``plane``,
    the compiled kernels).
    """
    rows = s_in.shape[0]
    if cols is None:
        cols = np.arange(s_in.shape[1])
    swap = np.ascontiguousarray(planes[0], dtype=bool) if planes else np.zeros((rows, 0), bool)
    p = 1 + len(planes)
    v, t = C.narrow_keys(s_in, s_out, cols, flip.view(np.uint8), swap.view(np.uint8), p)
    v.sort(axis=1)
    t.sort(axis=1)
    clash = np.flatnonzero(C.narrow_clash(v, p))
    if clash.size:  # two distinct scores share a truncated key: those rows as uint64 keys
        wide = SortedRows(s_in[clash][:, cols], s_out[clash][:, cols],
                          tuple(np.asarray(q)[clash][:, cols] for q in planes), packed=True,
                          flip=flip[clash][:, cols], narrow=False)
        t[clash] = wide.low
    return SortedRows._from_sorted(v, t, cols.size, len(planes))


# The audit runs its compiled kernels (fairpriv_lab.audit._compiled: the per-record pass after
# numpy's sorts, PA-GA/GBA's histogram passes) on loss matrices of at least this many (model,
# record) entries, the numpy kernels below it; both give identical numbers
# (tests/unit/audit/test_compiled.py). Importing numba and loading the cached machine code costs
# about 0.4 s once per process (the first compile, once per installation, 6-7 s), and the
# compiled kernels save about 15-20 ns per entry and audit (measured on 400 x 10,500 and
# 400 x 45,222 float32 losses, benchmarks/README.md): a classroom audit (<= 256 models x
# 5,000 records) never pays the import, a paper-scale one (400 x 36,178 Adult records,
# 14.5M entries, six audits per `make paper` process) gains several times that.
_COMPILED_MIN_ENTRIES = 1 << 23


def _compiled_kernels(n_entries: int):
    """Return the compiled kernels' module for a matrix of ``n_entries``, or None (numpy kernels).

    When numba cannot be imported (a broken or partial installation) the audit goes on with the
    numpy kernels -- the same numbers, slower -- after one ``RuntimeWarning`` saying so: an
    audit at the end of a long training run must not die on an optional speed-up.
    """
    if n_entries < _COMPILED_MIN_ENTRIES:
        return None
    # numba: imported on first use, never by ``import fairpriv_lab``
    return optional_module("._compiled", __package__, "The compiled audit kernels",
                           "auditing with the numpy kernels (the same numbers, slower). Install "
                           "numba (pip install numba) for paper-scale audits.")


def record_pass(scores: np.ndarray, mem: np.ndarray, inf: np.ndarray, tasks: list, negated: bool = False) -> None:
    """Sort each audited record's scores once per layout and hand the sorted rows to every task.

    Each task has ``prepare(blocks)`` (draws its randomness for every block of records with
    equal K, in order, before any work), ``planes(block_index, rows_slice)`` (the per-pair bits
    it needs carried through the shared sort of all 2K scores), ``compute(block_index,
    rows_slice, shared, first_plane)`` (``shared`` is the block's :class:`SharedSorts`) and
    ``store(record_positions, output)``. Blocks of records keep the temporaries in cache;
    numpy's sorts and reductions release the GIL, so blocks run on threads, and since all
    randomness is drawn first the results do not depend on the number of threads.
    ``negated``: the scores are ``-scores`` (:func:`pair_blocks`).
    """
    scores = as_f32(scores)
    compiled = _compiled_kernels(scores.size) if scores.dtype == np.float32 else None
    blocks = list(pair_blocks(scores, mem, inf, keys=True, flip=True, negated=negated,  # keys once per block
                              compiled=compiled))
    for task in tasks:
        task.prepare(blocks)
    for bi, (cols, _k, chunks) in enumerate(blocks):

        def work(chunk, bi=bi):
            r, s_even, s_odd, flip = chunk
            planes, first = [], []
            for task in tasks:
                first.append(len(planes))
                planes.extend(p if np.shape(p) == s_even.shape else np.broadcast_to(p, s_even.shape)
                              for p in task.planes(bi, r))
            shared = SharedSorts(s_even, s_odd, planes, flip, compiled)
            return r, [task.compute(bi, r, shared, f) for task, f in zip(tasks, first, strict=True)]

        for r, outs in map_threads(work, chunks):
            for task, out in zip(tasks, outs, strict=True):
                task.store(cols[r], out)


# --------------------------------------------------------------------------- PA-GA/GBA without a row sort
_HIST_MIN_RECORDS = 256  # below this a model's row is sorted (the histogram gains nothing)
_HIST_ENTRIES_PER_BUCKET = 16  # buckets per row about m / 16 (measured: 8 to 32 cost about the same)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bits of non-negative integers below 2**53 (0 for 0), elementwise."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64)


def _global_chunk_hist(u, labels, floor_labels, cell, partner, balanced=False, buckets=None,
                       compiled=None) -> np.ndarray:
    """:func:`_global_chunk` for a block of models where every (model, record) is a trial, without sorting rows.

    The best cut of a model's scores (in a cell) maximises ``correct(k) = out below + in at or
    above`` (or the balanced version) over the cuts that split no run of equal scores; the
    lowest such cut wins. Instead of sorting each row of m scores (the old kernel, kept as the
    reference and the fallback), the scores' uint32 keys are counted in ``B`` buckets (one
    ``bincount`` of bucket x label bits per model and cell); the count at every bucket
    boundary is exact, and a bucket's interior cuts can beat the best boundary by at most
    its number of "out" entries. Only the candidate buckets (that bound reaches the best
    boundary) and the two buckets around the best boundary (its threshold's neighbours) are
    gathered and sorted, a few per cent of the entries. The chosen cut, its threshold
    (midpoint rule) and therefore every count are exactly those of the sorting kernel
    (``tests/unit/audit/test_audit_kernels.py::test_global_histogram_kernel_equals_sort``).
    """
    u = _keys(u)
    nm, m = u.shape
    C = int(max(cell.max(), partner.max())) + 1
    if buckets is None:
        buckets = _hist_buckets(u, compiled=compiled)
    if compiled is not None:  # the same steps, the whole-block passes as compiled loops
        b, B = buckets
        counts = compiled.hist_counts(*_u8(labels, floor_labels, cell, C), b, C, B).reshape(4, nm * C, B)
        plan = _hist_plan(counts, m, balanced, compiled)
        flags = _flat_u8(plan[0])
        sel, u_sel, _f = compiled.hist_select(*_u8(labels, floor_labels, cell, C), b, u, flags, C, B,
                                              _flagged(counts, flags))
        thr = _hist_finish(sel, u_sel, B, plan, balanced, compiled).reshape(2, nm, C)
        return _compiled_score(compiled, u, labels, floor_labels, thr, partner)
    bits = (labels.view(np.uint8) * np.uint8(2)) | floor_labels.view(np.uint8)  # bit 1: label, bit 0: floor
    thr = _hist_thresholds(u, bits, cell, C, balanced, buckets)
    out = np.empty((2, m), np.int64)
    present = _cells_present(partner, C)
    for j, lb in enumerate((labels, floor_labels)):
        out[j] = column_counts(_scored(u, thr[j], partner, present) == lb)
    return out


_GATHER_CELLS = 8  # above this many cells, gather each record's threshold instead of a mask per cell


def _scored(u: np.ndarray, thr: np.ndarray, partner: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Bool (n_models, m): ``u >= thr[:, partner]``, the members by each record's partner cell's threshold.

    With few cells, one broadcast compare per cell masked to its records (measured 6x faster
    than gathering every entry's threshold for two cells). ``present``: the cells present in
    ``partner`` (:func:`_cells_present`), if known.
    """
    C = thr.shape[1]
    if C == 1:
        return u >= thr[:, :1]
    if C > _GATHER_CELLS:
        return u >= thr[:, partner]
    pred = np.zeros(u.shape, bool)
    tmp = np.empty(u.shape, bool)
    for c in _cells_present(partner, C) if present is None else present:
        np.greater_equal(u, thr[:, c:c + 1], out=tmp)
        tmp &= (partner == c)[None, :]
        pred |= tmp
    return pred


def _cells_present(partner: np.ndarray, C: int) -> np.ndarray:
    """Return the cells that occur in ``partner`` (a ``bincount``: ``np.unique`` would sort)."""
    return np.flatnonzero(np.bincount(partner, minlength=C))


_HIST_FINE_BITS = 3  # fine buckets per (coarse) bucket: 2**3, for the equal-count buckets


def _compiled_score(compiled, u, labels, floor_labels, thr, partner) -> np.ndarray:
    """Correct predictions per record, (2, m) int32: ``column_counts(_scored(u, thr[j], partner) == lb)``."""
    out = np.zeros((2, u.shape[1]), np.int32)
    part = partner.astype(np.uint8) if thr.shape[2] <= 255 else partner
    compiled.hist_score(u, labels.view(np.uint8), floor_labels.view(np.uint8), thr, part, out)
    return out


def _u8(labels, floor_labels, cell, C: int) -> tuple:
    """Labels, floor labels and cells for the compiled loops: uint8 (cells int64 above 255)."""
    return (labels.view(np.uint8), floor_labels.view(np.uint8),
            cell.astype(np.uint8) if C <= 255 else cell)


def _flagged(counts: np.ndarray, flags: np.ndarray) -> int:
    """Entries in the flagged buckets: ``counts`` (4, ...) summed over the label bits where ``flags``."""
    return int(counts.reshape(4, -1).sum(axis=0)[flags != 0].sum())


def _flat_u8(flags: np.ndarray) -> np.ndarray:
    """Return flags (bool or uint8) as a flat contiguous uint8 array (for the compiled kernels)."""
    return np.ascontiguousarray(flags).view(np.uint8).ravel()


def _hist_buckets(u: np.ndarray, equal_count: bool = True, compiled=None) -> tuple[np.ndarray, int]:
    """Bucket of every key, in [0, B): monotone in the key (equal keys share one); and B.

    The key range of each row is cut into ``8 B`` equal spans ("fine" buckets), counted with
    one ``bincount``; consecutive fine buckets are then merged into buckets of about ``m / B``
    entries each (equal counts, as far as the fine buckets allow). Equal spans alone put most
    of a row in a few buckets when the scores crowd into a small part of their range (a
    trained model's losses do: on Adult LR the candidate buckets of
    :func:`_hist_thresholds` then held most entries, and PA-GA cost 45 sorts instead of 7).
    ``equal_count=False``: the equal spans (coarse) alone.
    """
    nm, m = u.shape
    nb = int(min(16, max(4, (m // _HIST_ENTRIES_PER_BUCKET).bit_length())))
    B = 1 << nb
    nf = nb + _HIST_FINE_BITS if equal_count else nb
    if compiled is not None and equal_count:
        return compiled.hist_buckets(u, nb, nf), B
    umin = u.min(axis=1)
    span = (u.max(axis=1) - umin).astype(np.int64)
    shift = np.maximum(_bit_length(span) - nf, 0).astype(np.uint32)
    b = np.subtract(u, umin[:, None], dtype=np.uint32)
    b >>= shift[:, None]
    if not equal_count:
        return b, B
    F = 1 << nf
    b += (np.arange(nm, dtype=np.uint32) * np.uint32(F))[:, None]  # fine bucket, offset by row
    b = b.astype(np.intp)  # once: bincount and take would each convert a uint32 index
    counts = np.bincount(b.ravel(), minlength=nm * F).reshape(nm, F)
    before = np.cumsum(counts, axis=1)
    before -= counts  # entries of the row below each fine bucket
    before *= B
    before //= m  # equal-count bucket of each fine bucket, monotone
    # int64 buckets: _hist_thresholds adds them to int64 bincount indices (a uint32 operand
    # costs a cast per entry there)
    return np.take(before.ravel(), b), B


def _hist_index(bits: np.ndarray, b: np.ndarray, cell: np.ndarray, C: int, B: int) -> np.ndarray:
    """Return the ``bincount`` index of every entry: (label bits, model, cell, bucket), label bits outermost.

    With the label bits outermost each count plane is contiguous; ``b`` from :func:`_hist_buckets`.
    """
    nm, m = bits.shape
    idx = bits.astype(np.int64)
    idx *= nm * C * B
    idx += b
    if C > 1:
        idx += (cell.astype(np.int64) * B)[None, :]
    idx += (np.arange(nm, dtype=np.int64) * (C * B))[:, None]
    return idx


def _hist_thresholds(u: np.ndarray, bits: np.ndarray, cell: np.ndarray, C: int, balanced: bool,
                     buckets: tuple[np.ndarray, int]) -> np.ndarray:
    """Thresholds (uint32 keys), shape (2, n_models, C): label sets bit 1 (j=0) and bit 0 (j=1)."""
    nm, m = u.shape
    b, B = buckets
    R = nm * C  # one "row" per (model, cell)
    flat = _hist_index(bits, b, cell, C, B).ravel()
    counts = np.bincount(flat, minlength=4 * R * B).reshape(4, R, B)
    plan = _hist_plan(counts, m, balanced)
    # gather the needed buckets' entries (a few per cent) and sort them
    pos = np.flatnonzero(np.take(np.tile(plan[0].ravel(), 4), flat))
    return _hist_finish(flat[pos], u.ravel()[pos], B, plan, balanced).reshape(2, nm, C)


class _PerLabelSet:
    """The per-label-set part of a compiled :func:`_hist_plan`.

    ``[j]`` gives label set j's ``(cin, n_in, value, best, bpos)``; ``arrays`` the five arrays
    stacked over j (what the compiled :func:`_hist_finish` reads, without copies).
    """

    def __init__(self, arrays: list):
        self.arrays = arrays

    def __getitem__(self, j: int) -> tuple:
        return tuple(a[j] for a in self.arrays)


def _hist_plan(counts: np.ndarray, m: int, balanced: bool, compiled=None) -> tuple:
    """Plan the gathering from the bucket counts (4, R, B) of rows of B buckets.

    Returns the buckets whose entries must be sorted and, per label set, the cumulative
    counts and the best bucket boundary (what :func:`_hist_finish` reads).
    """
    if compiled is not None and not balanced:  # the same arrays, one compiled loop per row
        needed, *per_j, ctot, n_all = compiled.hist_plan(np.ascontiguousarray(counts, np.int64))
        return needed, _PerLabelSet(per_j), ctot, n_all
    _four, R, B = counts.shape
    tot = counts[0] + counts[1]
    tot += counts[2]
    tot += counts[3]
    ctot = np.zeros((R, B + 1), np.int64)
    np.cumsum(tot, axis=1, out=ctot[:, 1:])
    n_all = ctot[:, -1]
    # bucket holding entry e of a row: the last boundary b with ctot[b] <= e (one search over
    # all rows, each row's counts offset above the previous row's)
    rows = np.arange(R)
    offset = rows * (m + 1)
    flat_ctot = (ctot + offset[:, None]).ravel()

    def bucket_of(e):
        return np.searchsorted(flat_ctot, e + offset, side="right") - 1 - rows * (B + 1)

    several = tot >= 2  # buckets with interior cuts
    needed = np.zeros((R, B), bool)
    per_j = []
    for mask in (2, 1):
        inb = counts[mask] + counts[3]
        cin = np.zeros((R, B + 1), np.int64)
        np.cumsum(inb, axis=1, out=cin[:, 1:])
        n_in = cin[:, -1]
        value = _cut_value(ctot, cin, n_all[:, None], n_in[:, None], balanced)
        best = value.max(axis=1)
        bpos = np.argmax(value == best[:, None], axis=1)
        outb = tot - inb
        if balanced:
            reach = value[:, :-1] + outb / np.maximum(n_all - n_in, 1.0)[:, None]
            cand = reach >= (best - 1e-9 * np.maximum(1.0, np.abs(best)))[:, None]
        else:
            cand = value[:, :-1] + outb >= best[:, None]
        cand &= several
        needed |= cand
        # the buckets holding the neighbours of the best boundary (its threshold)
        e = ctot[rows, bpos]
        above, below = e < n_all, e > 0
        needed[rows[above], bucket_of(e)[above]] = True
        needed[rows[below], bucket_of(e - 1)[below]] = True
        per_j.append((cin, n_in, value, best, bpos))
    return needed, per_j, ctot, n_all


def _hist_finish(sel: np.ndarray, u_sel: np.ndarray, B: int, plan: tuple, balanced: bool,
                 compiled=None) -> np.ndarray:
    """Thresholds (2, R) from the gathered entries of the needed buckets.

    ``sel``: the entries' :func:`_hist_index` (label bits outermost, rows of B buckets), in
    any order; ``u_sel`` their keys; ``plan``: :func:`_hist_plan`. The gathered entries are
    sorted by key = (row, bucket) | score | bits.
    """
    _needed, per_j, ctot, n_all = plan
    R = ctot.shape[0]
    RB = R * B
    key = (sel % RB).astype(np.uint64) << np.uint64(34)
    key |= (sel // RB).astype(np.uint64)
    key |= u_sel.astype(np.uint64) << np.uint64(2)
    key.sort(kind="stable")  # runs of ascending rows: the merge sort is far faster here
    if compiled is not None and not balanced:  # the scan below as one compiled loop per label set
        cin, n_in, _value, best, bpos = (per_j.arrays if isinstance(per_j, _PerLabelSet)
                                         else [np.stack(x) for x in zip(*per_j, strict=True)])
        return compiled.hist_finish(key, B, ctot, n_all, cin, n_in, best, bpos)
    g = (key >> np.uint64(34)).astype(np.int64)  # (row * B + bucket)
    us = ((key >> np.uint64(2)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    lab_bits = (key & np.uint64(3)).astype(np.uint8)
    n = g.size
    r_of, b_of = g // B, g % B
    new_seg = np.ones(n, bool)
    new_seg[1:] = g[1:] != g[:-1]
    seg_start = np.maximum.accumulate(np.where(new_seg, np.arange(n), 0))
    t1 = np.arange(n) - seg_start + 1  # entries of the bucket up to and including this one
    at_g = g + r_of  # flat position of (row, bucket) in the (R, B + 1) cumulative counts
    interior = np.zeros(n, bool)  # the cut just above entry p lies inside its bucket, between distinct keys
    if n > 1:
        interior[:-1] = (g[1:] == g[:-1]) & (us[1:] != us[:-1])
    thr = np.zeros((2, R), np.uint32)
    for j, mask in enumerate((2, 1)):
        cin, n_in, value, best, bpos = per_j[j]
        lab = (lab_bits & np.uint8(mask)) != 0
        cl = np.cumsum(lab, dtype=np.int64)
        in1 = cl - (cl - lab)[seg_start]  # "in" entries of the bucket up to this one
        ctrial = np.take(ctot, at_g) + t1  # flat takes: far cheaper than 2-D fancy indexing
        cin_p = np.take(cin, at_g) + in1
        val = _cut_value(ctrial, cin_p, n_all[r_of], n_in[r_of], balanced)
        val = np.where(interior, val, -np.inf)
        top = best.astype(np.float64)
        if n:
            starts = np.flatnonzero(np.r_[True, r_of[1:] != r_of[:-1]])
            rmax = np.maximum.reduceat(val, starts)
            rr = r_of[starts]
            top[rr] = np.maximum(top[rr], rmax)
        hit = np.flatnonzero(interior & (val == top[r_of]))
        first_rows, first_at = np.unique(r_of[hit], return_index=True)
        p_int = np.full(R, -1, np.int64)
        p_int[first_rows] = hit[first_at]
        b_int = np.full(R, B + 1, np.int64)  # bucket of the first best interior cut (none: B + 1)
        b_int[first_rows] = b_of[hit[first_at]]
        use_boundary = (best == top) & (bpos <= b_int)
        # cut index c in the sorted candidates: lo = us[c - 1], hi = us[c]
        at = ctot[np.arange(R), bpos]
        first = use_boundary & (at == 0)
        last = use_boundary & (at == n_all)
        c = np.where(use_boundary, np.searchsorted(g, np.arange(R) * B + bpos), p_int + 1)
        ok = ~(first | last)
        cc = np.clip(c, 1, max(n - 1, 1))
        lo = np.where(ok, us[cc - 1] if n else 0, 0).astype(np.uint32)
        hi = np.where(ok, us[cc] if n else 0, 0).astype(np.uint32)
        thr[j] = _midpoint(lo, hi, first, last, packed=True)
    return thr


def _global_chunk_hist_shared(u, labels, floor_labels, cell, C: int, buckets,
                              compiled=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_global_chunk_hist` of PA-GA and PA-GBA in-sample with the same floor labels, sharing the counts.

    PA-GA's counts per (model, bucket) are PA-GBA's summed over the cells ``cell`` (C of
    them), so one ``bincount`` and one gathering of the needed buckets' entries serve both;
    each run then sorts its own candidates. Returns the (2, m) counts of PA-GA (one cell) and
    of PA-GBA (cells ``cell``, each record scored by its own cell's threshold), exactly those
    of two :func:`_global_chunk_hist` calls.
    """
    u = _keys(u)
    nm, m = u.shape
    b, B = buckets
    RB = nm * C * B
    if compiled is not None:  # the same counts and gathering, as compiled loops
        counts = compiled.hist_counts(*_u8(labels, floor_labels, cell, C), b, C, B).reshape(4, nm, C, B)
    else:
        bits = (labels.view(np.uint8) * np.uint8(2)) | floor_labels.view(np.uint8)  # (8-bit shifts are slow)
        flat = _hist_index(bits, b, cell, C, B).ravel()
        counts = np.bincount(flat, minlength=4 * RB).reshape(4, nm, C, B)
    fine = _hist_plan(counts.reshape(4, nm * C, B), m, False, compiled)
    coarse = _hist_plan(counts.sum(axis=2), m, False, compiled)
    flags = fine[0].reshape(nm, C, B).view(np.uint8) | (coarse[0].view(np.uint8) * np.uint8(2))[:, None, :]
    flags = flags.ravel()
    if compiled is not None:
        sel, u_sel, f = compiled.hist_select(*_u8(labels, floor_labels, cell, C), b, u, flags, C, B,
                                             _flagged(counts, flags))
    else:
        pos = np.flatnonzero(np.take(np.tile(flags, 4), flat))
        sel = flat[pos]
        f = np.take(flags, sel % RB)
        u_sel = u.ravel()[pos]
    pf, pc = (f & np.uint8(1)) != 0, (f & np.uint8(2)) != 0
    thr_f = _hist_finish(sel[pf], u_sel[pf], B, fine, False, compiled).reshape(2, nm, C)
    sc = sel[pc]  # as an index of the coarse counts (4, nm, B): drop the cell
    lab_bits, q = np.divmod(sc, RB)
    row, bucket = q // (C * B), q % B
    thr_c = _hist_finish((lab_bits * nm + row) * B + bucket, u_sel[pc], B, coarse, False,
                         compiled).reshape(2, nm, 1)
    if compiled is not None:
        return (_compiled_score(compiled, u, labels, floor_labels, thr_c, np.zeros(m, np.uint8)),
                _compiled_score(compiled, u, labels, floor_labels, thr_f, cell))
    zero = np.zeros(m, np.int64)
    outs = []
    for thr, part in ((thr_c, zero), (thr_f, cell)):
        out = np.empty((2, m), np.int64)
        present = _cells_present(part, thr.shape[2])
        for j, lb in enumerate((labels, floor_labels)):
            out[j] = column_counts(_scored(u, thr[j], part, present) == lb)
        outs.append(out)
    return outs[0], outs[1]


def _cut_value(ctrial, cin, n_all, n_in, balanced: bool):
    """Correct count at a cut (out below + in at or above), or the sorting kernel's balanced value."""
    if not balanced:
        return ctrial - 2 * cin + n_in
    n_in = n_in.astype(np.float64)
    n_out = n_all - n_in
    return (ctrial - cin) / np.maximum(n_out, 1.0) + (n_in - cin) / np.maximum(n_in, 1.0)
