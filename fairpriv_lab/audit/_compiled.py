"""Compiled per-record kernels of the audit (numba), for large loss matrices (docs/design.md 4.3).

:mod:`~fairpriv_lab.audit.kernels` sorts each block of records with numpy (its sorting
networks are many times faster than a compiled comparison sort); the work after the sort --
the in-sample estimator's best cut, the cross-fit's thresholds and the counts they make in
the other fold, empirical epsilon's threshold search and held-out counts -- is one fused loop
per record here instead of about thirty whole-block numpy passes. Every function computes
exactly the numbers of its numpy counterpart (integer counts, the same cut chosen among
equals, the same midpoint threshold bit for bit), which ``tests/unit/audit/test_compiled.py``
checks against the numpy kernels and the slow references.

Imported only when :func:`~fairpriv_lab.audit.kernels.record_pass` meets a matrix of at least
``kernels._COMPILED_MIN_ENTRIES`` (model, record) entries: importing numba and loading the
cached machine code costs a fraction of a second, which small (classroom) audits do not pay.
``cache=True`` keeps the compiled code on disk (next to this file, or in numba's per-user
cache when the package directory is read-only); ``nogil=True`` lets the audit's thread pool
run blocks on both cores; no ``fastmath``: the float arithmetic of the thresholds must be
IEEE's, as numpy's.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"nogil": True, "cache": True}  # njit: nopython mode

_SIGN = np.uint32(0x80000000)
_MAG = np.uint32(0x7FFFFFFF)
_NONE = np.uint32(0xFFFFFFFF)


@nb.njit(**_JIT)
def _mid_key(lo, hi, f, u):
    """Return the midpoint threshold key between sorted keys lo < hi (``kernels._midpoint``, packed).

    ``f`` / ``u``: a one-entry float32 scratch and its uint32 view (bit casts).
    """
    # decode both keys to float32 (kernels._f32), then to float64 (exact)
    x = np.uint32(np.uint32(lo) ^ _SIGN)
    if x & _SIGN:
        x = np.uint32(x ^ _MAG)
    u[0] = x
    lo64 = np.float64(f[0])
    x = np.uint32(np.uint32(hi) ^ _SIGN)
    if x & _SIGN:
        x = np.uint32(x ^ _MAG)
    u[0] = x
    hi64 = np.float64(f[0])
    mid = lo64 / 2 + hi64 / 2  # exact in float64
    f[0] = np.float32(mid)  # round to nearest, as numpy's astype
    if np.float64(f[0]) < mid:  # nextafter(t, +inf)
        b = u[0]
        if (b & _MAG) == 0:  # +-0.0: the smallest positive subnormal
            u[0] = np.uint32(1)
        elif b & _SIGN:
            u[0] = b - np.uint32(1)
        else:
            u[0] = b + np.uint32(1)
    f[0] = f[0] + np.float32(0.0)  # -0.0 -> 0.0 (kernels._u32)
    b = np.uint32(u[0])
    if b & _SIGN:
        b = np.uint32(b ^ _MAG)
    return np.uint32(b ^ _SIGN)


@nb.njit(**_JIT)
def _threshold(v, r, kstar, f, u):
    """Threshold key of cut ``kstar`` of sorted row ``r`` of ``v`` (``SortedRows.thresholds``)."""
    n = v.shape[1]
    if kstar == 0:
        return np.uint32(0)
    if kstar == n:
        return _NONE
    return _mid_key(v[r, kstar - 1], v[r, kstar], f, u)


@nb.njit(**_JIT)
def _cut_of(v, r, tau):
    """Entries of sorted row ``r`` below ``tau`` (``SortedRows.cut_of``): a binary search."""
    lo, hi = 0, v.shape[1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if v[r, mid] < tau:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(**_JIT)
def _bit_scratch():
    """One float32 and its uint32 view: the scratch of :func:`_mid_key` (float <-> bits)."""
    f = np.zeros(1, np.float32)
    return f, f.view(np.uint32)


@nb.njit(**_JIT)
def midpoints(lo, hi):
    """:func:`_mid_key` of each pair of keys (for the tests against ``kernels._midpoint``)."""
    f, u = _bit_scratch()
    out = np.empty(lo.size, np.uint32)
    for i in range(lo.size):
        out[i] = _mid_key(lo[i], hi[i], f, u)
    return out


@nb.njit(**_JIT)
def narrow_clash(v, p):
    """After ``SortedRows._sort_narrow``'s two sorts: the rows where its payload order may be wrong.

    Bool (rows,): the row holds two distinct scores whose keys agree above the ``p`` lowest
    bits (``0 < v[i] ^ v[i + 1] < 2**p``). The payload's key (``t``) is not masked: every
    reader takes only its ``p`` lowest bits (the label and the planes).
    """
    rows, n = v.shape
    mask = np.uint32((1 << p) - 1)
    clash = np.zeros(rows, np.bool_)
    for r in range(rows):
        vr = v[r]
        c = False
        for i in range(n - 1):
            x = np.uint32(vr[i] ^ vr[i + 1])
            c |= (x != 0) & (x <= mask)
        clash[r] = c
    return clash


@nb.njit(**_JIT)
def _key(b, last):
    """Sort key of a float32's bits (``kernels._u32``; ``last`` = _MAG: of its negative)."""
    if b == _SIGN:  # -0.0 -> 0.0
        b = np.uint32(0)
    if b & _SIGN:
        b = np.uint32(b ^ _MAG)
    return np.uint32(b ^ last)


@nb.njit(**_JIT)
def pair_keys(bits, mem, c0, c1, negated):
    """``kernels._pair_chunks`` with ``keys`` and ``flip``, for records ``c0 .. c1 - 1``: one loop.

    ``bits``: the float32 scores' bits (uint32 view), shape (n_models, m); ``mem`` the
    membership as uint8.
    Returns ``(s_even, s_odd, flip)`` of shape (c1 - c0, n_models // 2): the sort keys of each
    pair's first and second model's score (of its negative when ``negated``:
    ``kernels._block_keys``) and whether the second model is the in-model.
    """
    P = bits.shape[0] // 2
    rows = c1 - c0
    s_e = np.empty((rows, P), np.uint32)
    s_o = np.empty((rows, P), np.uint32)
    flip = np.empty((rows, P), np.bool_)
    last = _MAG if negated else _SIGN
    # tiles of 128 records: each model row is read 512 bytes at a time, and the tile's output
    # rows stay in cache (measured fastest of 8-655 records, 400 x 45,222 losses: 1.4x faster
    # than tiles of 16 pairs)
    for j0 in range(0, rows, 128):
        j1 = min(j0 + 128, rows)
        for p in range(P):
            be = bits[2 * p, c0 + j0:c0 + j1]
            bo = bits[2 * p + 1, c0 + j0:c0 + j1]
            me = mem[2 * p, c0 + j0:c0 + j1]
            for j in range(j1 - j0):
                s_e[j0 + j, p] = _key(be[j], last)
                s_o[j0 + j, p] = _key(bo[j], last)
                flip[j0 + j, p] = me[j] == 0
    return s_e, s_o, flip


@nb.njit(**_JIT)
def narrow_keys(s_in, s_out, cols, flip, swap, p):
    """Build the two uint32 keys of ``SortedRows._sort_narrow`` (before its sorts), of columns ``cols``.

    ``v``: the scores' keys, in-side entries first; ``t``: the same with the ``p`` lowest
    bits replaced by the payload (bit 0: the in-model's score; bit 1: the floor's swap,
    when ``swap`` has columns). ``flip`` (rows, K) bool exchanges a pair's labels.
    """
    rows = s_in.shape[0]
    k = cols.size
    v = np.empty((rows, 2 * k), np.uint32)
    t = np.empty((rows, 2 * k), np.uint32)
    keep = np.uint32(0xFFFFFFFF ^ ((1 << p) - 1))
    has_swap = swap.shape[1] > 0
    for r in range(rows):
        si = s_in[r]
        so = s_out[r]
        fr = flip[r]
        vr = v[r]
        tr = t[r]
        if has_swap:
            sr = swap[r]
            for j in range(k):
                c = cols[j]
                base = np.uint32(sr[c]) * np.uint32(2)
                f = np.uint32(fr[c])
                a = si[c]
                b = so[c]
                vr[j] = a
                vr[k + j] = b
                tr[j] = (a & keep) | ((base | np.uint32(1)) ^ f)
                tr[k + j] = (b & keep) | (base | f)
        else:
            for j in range(k):
                c = cols[j]
                f = np.uint32(fr[c])
                a = si[c]
                b = so[c]
                vr[j] = a
                vr[k + j] = b
                tr[j] = (a & keep) | (np.uint32(1) ^ f)
                tr[k + j] = (b & keep) | f
    return v, t


@nb.njit(**_JIT)
def in_sample(v, low, bit):
    """Best ``d(k) = #out - #in below the cut`` over the cuts that split no tie, per row.

    For the labels (payload bit 0) and for the floor's (bit 0 xor bit ``bit``): the numbers
    of ``kernels._best_gain`` of each labelling (int64, shape (2, rows)).
    """
    rows, n = v.shape
    out = np.zeros((2, rows), np.int64)
    for r in range(rows):
        d1 = 0
        d2 = 0
        b1 = 0
        b2 = 0
        vr = v[r]
        lr = low[r]
        for k in range(1, n + 1):
            q = lr[k - 1]
            lab = np.int64(q & 1)
            sw = lab ^ np.int64((q >> bit) & 1)
            d1 += 1 - 2 * lab
            d2 += 1 - 2 * sw
            if k < n and vr[k - 1] == vr[k]:
                continue
            if d1 > b1:
                b1 = d1
            if d2 > b2:
                b2 = d2
        out[0, r] = b1
        out[1, r] = b2
    return out


@nb.njit(**_JIT)
def _gains(v, low, r, bit, d1, d2):
    """``d(k)`` of row ``r`` for the labels and the floor's (bit ``bit``; 0: none) into d1, d2.

    Returns the first best cut of each, over the cuts that split no tie (``np.argmax`` of
    the tie-masked ``d``).
    """
    n = v.shape[1]
    vr = v[r]
    lr = low[r]
    d1[0] = 0
    d2[0] = 0
    k1 = 0
    k2 = 0
    a = 0
    b = 0
    best1 = 0
    best2 = 0
    for k in range(1, n + 1):
        q = lr[k - 1]
        lab = np.int64(q & 1)
        a += 1 - 2 * lab
        d1[k] = a
        b += 1 - 2 * (lab ^ np.int64((q >> bit) & 1))  # bit 0: b = a (unused)
        d2[k] = b
        if k < n and vr[k - 1] == vr[k]:
            continue
        if a > best1:
            best1 = a
            k1 = k
        if b > best2:
            best2 = b
            k2 = k
    return k1, k2


@nb.njit(**_JIT)
def cross_fit(va, la, vb, lb, bit):
    """Cross-fitted correct counts: fold A's threshold scores fold B and vice versa.

    Per row, ``d_a(cut of tau_b in A) + d_b(cut of tau_a in B)`` for the labels and (``bit``
    > 0) for the floor's labels (``kernels._cross_fit_accs``' ``ca + cb``), int64 (2, rows).
    """
    rows, na = va.shape
    nb_ = vb.shape[1]
    da1 = np.zeros(na + 1, np.int64)
    da2 = np.zeros(na + 1, np.int64)
    db1 = np.zeros(nb_ + 1, np.int64)
    db2 = np.zeros(nb_ + 1, np.int64)
    f, u = _bit_scratch()
    out = np.zeros((2, rows), np.int64)
    for r in range(rows):
        ka1, ka2 = _gains(va, la, r, bit, da1, da2)
        kb1, kb2 = _gains(vb, lb, r, bit, db1, db2)
        ta = _threshold(va, r, ka1, f, u)
        tb = _threshold(vb, r, kb1, f, u)
        out[0, r] = da1[_cut_of(va, r, tb)] + db1[_cut_of(vb, r, ta)]
        if bit > 0:
            ta = _threshold(va, r, ka2, f, u)
            tb = _threshold(vb, r, kb2, f, u)
            out[1, r] = da2[_cut_of(va, r, tb)] + db2[_cut_of(vb, r, ta)]
    return out


@nb.njit(**_JIT)
def _select(v, low, r, table, tie, cin):
    """Empirical epsilon's threshold of row ``r`` (``empirical._select_threshold``), cin filled.

    The cut maximising ``table[fp * (k + 1) + fn]`` (fn = in-entries below the cut, fp =
    out-entries at or above it), ties masked to ``tie``, the first among equals.
    """
    n = v.shape[1]
    vr = v[r]
    lr = low[r]
    k = n // 2
    c = 0
    cin[0] = 0
    best = table[k * (k + 1)]  # j = 0: fp = k, fn = 0
    kstar = 0
    for j in range(1, n + 1):
        c += np.int64(lr[j - 1] & 1)
        cin[j] = c
        if j < n and vr[j - 1] == vr[j]:
            val = tie
        else:
            val = table[c * (k + 2) + (k - j) * (k + 1)]
        if val > best:
            best = val
            kstar = j
    return kstar


@nb.njit(**_JIT)
def heldout(va, la, vb, lb, table_a, tie_a, table_b, tie_b):
    """Empirical epsilon's held-out FP and FN per row (``empirical._heldout``), int64 (2, rows).

    ``table_a`` / ``tie_a``: the score table of fold A's size (``empirical._compiled_table``)
    and the value of a cut that splits a tie; likewise for fold B.
    """
    rows, na = va.shape
    nb_ = vb.shape[1]
    ca = np.zeros(na + 1, np.int64)
    cb = np.zeros(nb_ + 1, np.int64)
    f, u = _bit_scratch()
    out = np.zeros((2, rows), np.int64)
    for r in range(rows):
        ta = _threshold(va, r, _select(va, la, r, table_a, tie_a, ca), f, u)
        tb = _threshold(vb, r, _select(vb, lb, r, table_b, tie_b, cb), f, u)
        # fold B scored by A's threshold, then A by B's
        cut = _cut_of(vb, r, ta)
        fn = cb[cut]
        fp = nb_ // 2 - (cut - cb[cut])
        cut = _cut_of(va, r, tb)
        fn += ca[cut]
        fp += na // 2 - (cut - ca[cut])
        out[0, r] = fp
        out[1, r] = fn
    return out


# ----------------------------------------------------------------- PA-GA / PA-GBA histogram kernel
# The numpy histogram kernel (kernels._global_chunk_hist / _global_chunk_hist_shared) with its
# whole-block passes -- the buckets of every key, the bincount index, the gathering of the
# candidate buckets' entries, the scoring of every (model, record) -- each as one loop; its
# planning on the bucket counts and its sort of the candidates stay numpy. The same integers.
@nb.njit(**_JIT)
def hist_buckets(u, nb_, nf):
    """``kernels._hist_buckets(u)`` (equal-count buckets), as uint16 (n_models, m).

    Row by row, so that a row's keys stay in cache through the four passes.
    """
    nm, m = u.shape
    B = np.int64(1) << nb_
    F = np.int64(1) << nf
    out = np.empty((nm, m), np.uint16)
    counts = np.zeros(F, np.int32)
    fine = np.empty(m, np.int32)
    inv_m = 1.0 / m
    for r in range(nm):
        row = u[r]
        lo = row[0]
        hi = row[0]
        for i in range(m):
            lo = min(lo, row[i])
            hi = max(hi, row[i])
        span = np.int64(hi) - np.int64(lo)
        bits = 0
        while span >> bits:
            bits += 1
        shift = np.uint32(max(bits - nf, 0))
        for i in range(m):
            fine[i] = (row[i] - lo) >> shift
        counts[:] = 0
        for i in range(m):
            counts[fine[i]] += 1
        before = np.int64(0)
        for f in range(F):  # counts[f] = before * B // m, by a multiply and one correction
            c = counts[f]
            if c == 0:  # an empty fine bucket: no entry looks it up
                continue
            x = before * B  # < 2**53: the float product is within 1 of the quotient
            q = np.int64(x * inv_m)
            if q * m > x:
                q -= 1
            elif (q + 1) * m <= x:
                q += 1
            counts[f] = q
            before += c
        o = out[r]
        for i in range(m):
            o[i] = counts[fine[i]]
    return out


@nb.njit(**_JIT)
def hist_counts(lab, flo, cell, b, C, B):
    """``np.bincount`` of ``kernels._hist_index`` (label bits outermost), flat, int64.

    Counted a row at a time into a small buffer (the whole table does not fit the cache).
    """
    nm, m = lab.shape
    RB = nm * C * B
    counts = np.zeros(4 * RB, np.int64)
    local = np.zeros(4 * C * B, np.int32)
    CB = C * B
    for r in range(nm):
        local[:] = 0
        for i in range(m):
            bits = 2 * np.int64(lab[r, i]) + np.int64(flo[r, i])
            local[bits * CB + np.int64(cell[i]) * B + np.int64(b[r, i])] += 1
        for bits in range(4):
            for q in range(CB):
                counts[bits * RB + r * CB + q] = local[bits * CB + q]
    return counts


@nb.njit(**_JIT)
def hist_select(lab, flo, cell, b, u, flags, C, B, n):
    """Gather the ``n`` entries of the flagged (model, cell, bucket)s: their ``_hist_index``, keys, flags.

    ``flags`` uint8, flat (n_models * C * B); ``n`` the entries they hold (from the counts);
    entries in row-major order (as ``np.flatnonzero``).
    """
    nm, m = lab.shape
    RB = nm * C * B
    sel = np.empty(n, np.int64)
    u_sel = np.empty(n, np.uint32)
    f_sel = np.empty(n, np.uint8)
    n = 0
    for r in range(nm):
        for i in range(m):
            q = (r * C + np.int64(cell[i])) * B + np.int64(b[r, i])
            f = flags[q]
            if f:
                sel[n] = (2 * np.int64(lab[r, i]) + np.int64(flo[r, i])) * RB + q
                u_sel[n] = u[r, i]
                f_sel[n] = f
                n += 1
    return sel[:n], u_sel[:n], f_sel[:n]


@nb.njit(**_JIT)
def hist_score(u, lab, flo, thr, partner, out):
    """Add, per record, the models whose rule ``u >= thr[j, model, partner]`` gets its label right.

    ``lab``, ``flo``: the labels and the floor's, as uint8 (0/1); ``partner`` uint8 when
    ``thr`` has at most 255 cells (else int64); ``out`` int32 (2, m): ``out[0]`` for the
    labels, ``out[1]`` for the floor's (``kernels._scored(...) == labels`` summed over the
    models). Written so that the loops vectorise: no gathers for one or two cells.
    """
    nm, m = u.shape
    C = thr.shape[2]
    o0 = out[0]
    o1 = out[1]
    for r in range(nm):
        ur = u[r]
        lr = lab[r]
        fr = flo[r]
        if C == 1:
            a0 = thr[0, r, 0]
            a1 = thr[1, r, 0]
            for i in range(m):
                x = ur[i]
                o0[i] += np.int32(np.uint8(x >= a0) == lr[i])
                o1[i] += np.int32(np.uint8(x >= a1) == fr[i])
        elif C == 2:
            a0 = thr[0, r, 0]
            a1 = thr[1, r, 0]
            b0 = thr[0, r, 1]
            b1 = thr[1, r, 1]
            for i in range(m):
                x = ur[i]
                c = partner[i]
                t0 = b0 if c else a0
                t1 = b1 if c else a1
                o0[i] += np.int32(np.uint8(x >= t0) == lr[i])
                o1[i] += np.int32(np.uint8(x >= t1) == fr[i])
        else:
            for c in range(C):
                t0 = thr[0, r, c]
                t1 = thr[1, r, c]
                for i in range(m):
                    if partner[i] == c:
                        x = ur[i]
                        o0[i] += np.int32(np.uint8(x >= t0) == lr[i])
                        o1[i] += np.int32(np.uint8(x >= t1) == fr[i])


@nb.njit(**_JIT)
def _bucket_of(ctot, r, e):
    """Return the bucket holding entry ``e`` of row ``r``: the last boundary b with ``ctot[r, b] <= e``."""
    lo, hi = 0, ctot.shape[1]
    while lo < hi:  # first boundary with ctot > e
        mid = (lo + hi) >> 1
        if ctot[r, mid] <= e:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@nb.njit(**_JIT)
def hist_plan(counts):
    """``kernels._hist_plan(counts, m, balanced=False)`` of bucket counts (4, R, B), int64.

    Returns ``needed`` (R, B) bool, then per label set j (0: bit 1, 1: bit 0) ``cin`` (2, R,
    B + 1), ``n_in`` (2, R), ``value`` (2, R, B + 1), ``best`` (2, R), ``bpos`` (2, R), and
    ``ctot`` (R, B + 1), ``n_all`` (R,): the same arrays, the same first best boundary.
    """
    _four, R, B = counts.shape
    ctot = np.zeros((R, B + 1), np.int64)
    n_all = np.empty(R, np.int64)
    needed = np.zeros((R, B), np.bool_)
    cin = np.zeros((2, R, B + 1), np.int64)
    n_in = np.empty((2, R), np.int64)
    value = np.empty((2, R, B + 1), np.int64)
    best = np.empty((2, R), np.int64)
    bpos = np.empty((2, R), np.int64)
    for r in range(R):
        acc = np.int64(0)
        for b in range(B):
            acc += counts[0, r, b] + counts[1, r, b] + counts[2, r, b] + counts[3, r, b]
            ctot[r, b + 1] = acc
        n_all[r] = acc
        for j in range(2):
            mask = 2 - j
            a = np.int64(0)
            for b in range(B):
                a += counts[mask, r, b] + counts[3, r, b]
                cin[j, r, b + 1] = a
            n_in[j, r] = a
            bv = a  # boundary 0: ctot = cin = 0
            bp = 0
            for b in range(B + 1):
                val = ctot[r, b] - 2 * cin[j, r, b] + a
                value[j, r, b] = val
                if val > bv:
                    bv = val
                    bp = b
            best[j, r] = bv
            bpos[j, r] = bp
            for b in range(B):
                tot = ctot[r, b + 1] - ctot[r, b]
                outb = tot - (cin[j, r, b + 1] - cin[j, r, b])
                if tot >= 2 and value[j, r, b] + outb >= bv:
                    needed[r, b] = True
            e = ctot[r, bp]  # the buckets holding the best boundary's neighbours
            if e < acc:
                needed[r, _bucket_of(ctot, r, e)] = True
            if e > 0:
                needed[r, _bucket_of(ctot, r, e - 1)] = True
    return needed, cin, n_in, value, best, bpos, ctot, n_all


@nb.njit(**_JIT)
def hist_finish(key, B, ctot, n_all, cin, n_in, best, bpos):
    """``kernels._hist_finish(..., balanced=False)`` after its sort: thresholds (2, R) uint32.

    ``key``: the gathered entries' sorted keys ((row, bucket) << 34 | score key << 2 | label
    bits); the rest from :func:`hist_plan`. Per row the first best interior cut of the
    candidate buckets is found in one scan (a cut inside a bucket, between distinct keys),
    and the best bucket boundary wins ties when it lies at or below that cut's bucket.
    """
    n = key.size
    R = ctot.shape[0]
    g = np.empty(n, np.int64)
    us = np.empty(n, np.uint32)
    bits = np.empty(n, np.uint8)
    for i in range(n):
        k = key[i]
        g[i] = np.int64(k >> np.uint64(34))
        us[i] = np.uint32((k >> np.uint64(2)) & np.uint64(0xFFFFFFFF))
        bits[i] = np.uint8(k & np.uint64(3))
    f, u = _bit_scratch()
    thr = np.zeros((2, R), np.uint32)
    rmax = np.empty(R, np.int64)
    p_int = np.empty(R, np.int64)
    for j in range(2):
        mask = np.uint8(2 - j)
        p_int[:] = -1
        i = 0
        while i < n:  # one bucket (segment of equal g) at a time
            gi = g[i]
            r = gi // B
            b = gi % B
            base_t = ctot[r, b]
            base_in = cin[j, r, b]
            cnt = 0
            c_in = 0
            e = i
            while e < n and g[e] == gi:
                cnt += 1
                if bits[e] & mask:
                    c_in += 1
                if e + 1 < n and g[e + 1] == gi and us[e + 1] != us[e]:  # interior cut above e
                    val = base_t + cnt - 2 * (base_in + c_in) + n_in[j, r]
                    if p_int[r] < 0 or val > rmax[r]:
                        rmax[r] = val
                        p_int[r] = e
                e += 1
            i = e
        for r in range(R):
            bp = bpos[j, r]
            top = best[j, r]
            b_int = B + 1
            if p_int[r] >= 0:
                if rmax[r] > top:
                    top = rmax[r]
                if rmax[r] == top:
                    b_int = g[p_int[r]] % B
            use_boundary = best[j, r] == top and bp <= b_int
            at = ctot[r, bp]
            if use_boundary and at == 0:
                thr[j, r] = np.uint32(0)
                continue
            if use_boundary and at == n_all[r]:
                thr[j, r] = _NONE
                continue
            if use_boundary:  # first candidate of bucket bp: np.searchsorted(g, r * B + bp)
                target = r * B + bp
                lo, hi = 0, n
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if g[mid] < target:
                        lo = mid + 1
                    else:
                        hi = mid
                c = lo
            else:
                c = p_int[r] + 1
            c = min(max(c, 1), max(n - 1, 1))
            if n:
                thr[j, r] = _mid_key(us[c - 1], us[c], f, u)
            else:
                thr[j, r] = _mid_key(np.uint32(0), np.uint32(0), f, u)
    return thr
