"""Compiled CPU kernels of the engine's tanh (numba), fused with the MLP's per-sample pass (docs/design.md section 5).

:mod:`~fairpriv_lab.engine.elementary` defines the function; :mod:`~fairpriv_lab.engine.models`
chooses these kernels for float32 CPU tensors. They compute its bits
(``tests/unit/engine/test_fused.py`` holds them to ``tanh_reference`` and torch's kernels bit
for bit, and the row sums to float64 references).

* :func:`tanh_` -- in place, any dense tensor (the forward pass, the multi-class backward).
* :func:`binary_hidden` -- the two-class MLP's per-sample pass (``BinaryGrads``): from the first
  layer's ``z`` (without its bias) to ``h = tanh(z + b_1)``, ``e = w - h^2 w`` and the row sums
  ``h . w``, ``||h||^2``, ``||e||``, in one pass over the (models, batch, hidden) values
  instead of eleven torch passes (benchmarks/README.md). Row sums add hidden unit ``j`` into
  lane ``j mod 16``, then the lanes in order: a fixed order, vectorised by LLVM.
* :func:`binary_logit` -- the same logit difference ``h . w`` alone, writing neither ``h`` nor
  ``e`` (evaluation's forward pass of a two-class MLP: the same bits as training's).

Every kernel works row by row (a row: one model's one sample), so a result depends neither on
how many models share a chunk nor on how rows are split between threads (a call of more than
``_MIN_THREADED`` values with more than one torch thread: :func:`_rows_in_threads` gives each
thread a range of rows; ``nogil``). No ``fastmath`` (no reassociation, no fused multiply-add):
the arithmetic is IEEE's, as torch's. ``cache=True`` keeps the compiled code on disk (next to
this file, or in numba's per-user cache when the package directory is read-only);
:func:`_ensure_fresh` recompiles it at import when it computes another function than
``tanh_reference`` (after an edit of the constants).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch
from torch import Tensor

from .elementary import ALPHA, BETA, LANES, TINY, C, tanh_reference, tanh_torch_

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}  # numpy: no zero-division checks

_A1, _A3, _A5, _A7, _A9, _A11, _A13 = ALPHA  # float32 constants in the compiled code
_B0, _B2, _B4, _B6 = BETA
#: Values below which a kernel call stays on one thread: the training pass's 1 MB blocks (2**18
#: values) do (handing half a block to a second thread cost more than it saved: 9.1 ms a step's
#: pass on one thread, 10.7 ms split on two, benchmarks/bench_mlp_pass.py), evaluation's larger
#: tanh calls split.
_MIN_THREADED = 1 << 19


@nb.njit(inline="always")
def _tanh(x):
    x = min(max(x, -C), C)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return x if abs(x) < TINY else p / q


_F1, _F2, _F3 = nb.float32[::1], nb.float32[:, ::1], nb.float32[:, :, ::1]


@nb.njit(nb.void(_F1, nb.int64, nb.int64), **_JIT)
def _tanh_flat(v, lo, hi):
    part = v[lo:hi]  # indices from 0: no negative-index check in the loop, so LLVM vectorises it
    for i in range(part.size):
        part[i] = _tanh(part[i])


@nb.njit(nb.void(_F3, _F2, _F2, _F3, _F3, _F2, _F2, _F2, nb.int64, nb.int64), **_JIT)
def _binary_hidden(z, b1, w, h, e, diff, h_sq, e_norm, lo, hi):
    """Rows ``lo..hi-1`` of the flattened (models, batch): see :func:`binary_hidden`."""
    B, H = z.shape[1], z.shape[2]
    full = H - H % LANES
    acc_d = np.empty(LANES, np.float32)
    acc_h = np.empty(LANES, np.float32)
    acc_e = np.empty(LANES, np.float32)
    for r in range(lo, hi):
        m = r // B
        i = r - m * B
        zr, hr, er, bm, wm = z[m, i], h[m, i], e[m, i], b1[m], w[m]
        for j in range(H):
            t = _tanh(zr[j] + bm[j])
            hr[j] = t
            er[j] = wm[j] - (t * t) * wm[j]
        for k in range(LANES):
            acc_d[k] = 0.0
            acc_h[k] = 0.0
            acc_e[k] = 0.0
        for j0 in range(0, full, LANES):
            for k in range(LANES):
                t = hr[j0 + k]
                u = er[j0 + k]
                acc_d[k] += t * wm[j0 + k]
                acc_h[k] += t * t
                acc_e[k] += u * u
        for j in range(full, H):
            t = hr[j]
            u = er[j]
            acc_d[j - full] += t * wm[j]
            acc_h[j - full] += t * t
            acc_e[j - full] += u * u
        sd = acc_d[0]
        sh = acc_h[0]
        se = acc_e[0]
        for k in range(1, LANES):
            sd += acc_d[k]
            sh += acc_h[k]
            se += acc_e[k]
        diff[m, i] = sd
        h_sq[m, i] = sh
        e_norm[m, i] = np.sqrt(se)


@nb.njit(nb.void(_F3, _F2, _F2, _F2, nb.int64, nb.int64), **_JIT)
def _binary_logit(z, b1, w, diff, lo, hi):
    """Rows ``lo..hi-1`` of the flattened (models, batch): see :func:`binary_logit`."""
    B, H = z.shape[1], z.shape[2]
    full = H - H % LANES
    acc = np.empty(LANES, np.float32)
    for r in range(lo, hi):
        m = r // B
        i = r - m * B
        zr, bm, wm = z[m, i], b1[m], w[m]
        for k in range(LANES):
            acc[k] = 0.0
        for j0 in range(0, full, LANES):
            for k in range(LANES):
                acc[k] += _tanh(zr[j0 + k] + bm[j0 + k]) * wm[j0 + k]
        for j in range(full, H):
            acc[j - full] += _tanh(zr[j] + bm[j]) * wm[j]
        s = acc[0]
        for k in range(1, LANES):
            s += acc[k]
        diff[m, i] = s


def _fresh() -> bool:
    """Whether the kernels compute today's ``tanh_reference`` (a probe of every kernel)."""
    # a grid over the whole range, and geometric grids around both switches (|x| < TINY, the
    # clamp at C), so that a change of any constant changes some probed value
    near = np.concatenate([np.geomspace(TINY / 4, TINY * 4, 64), np.geomspace(C / 1.1, C * 1.1, 64)])
    x = np.concatenate([np.linspace(-9.0, 9.0, 2 * LANES + 3), near, -near]).astype(np.float32)
    v = x.copy()
    _tanh_flat(v, 0, v.size)
    z, zero = x.reshape(1, 1, -1), np.zeros((1, x.size), np.float32)
    h, e, out = np.empty_like(z), np.empty_like(z), [np.empty((1, 1), np.float32) for _ in range(3)]
    _binary_hidden(z, zero, zero, h, e, *out, 0, 1)
    want = tanh_reference(x)
    one = np.zeros((1, x.size), np.float32)
    logit = np.empty((1, 1), np.float32)
    ok = np.array_equal(v, want) and np.array_equal(h.ravel(), want)
    for j in (0, x.size // 2, x.size - 1):  # one tanh at a time through the logit kernel
        one[0, j] = 1.0
        _binary_logit(z, zero, one, logit, 0, 1)
        one[0, j] = 0.0
        ok = ok and logit[0, 0] == want[j]
    return ok


def _ensure_fresh() -> None:
    """Recompile the kernels when their cached machine code computes another tanh.

    The constants are frozen into the compiled code, and numba's on-disk cache is keyed on this
    file alone: after an edit of ``engine/elementary.py`` a cached kernel would compute the old
    function. The probe (microseconds) catches that and compiles afresh (overwriting the cache).
    """
    if _fresh():
        return
    _tanh_flat.recompile()
    _binary_hidden.recompile()
    _binary_logit.recompile()
    if not _fresh():
        raise RuntimeError("engine._fused: the compiled tanh kernels disagree with "
                           "engine.elementary.tanh_reference, even compiled afresh")


_ensure_fresh()


def _rows_in_threads(kernel, n_rows: int, values_per_row: int, *args) -> None:
    """``kernel(*args, lo, hi)`` over rows ``0..n_rows-1``: split among torch's threads when large."""
    threads = max(1, torch.get_num_threads())
    if threads == 1 or n_rows < 2 or n_rows * values_per_row < _MIN_THREADED:
        kernel(*args, 0, n_rows)
        return
    parts = min(threads, n_rows)
    cuts = [n_rows * p // parts for p in range(parts + 1)]
    pool = _POOLS.get(parts - 1)
    if pool is None:
        pool = _POOLS[parts - 1] = ThreadPoolExecutor(parts - 1, thread_name_prefix="fairpriv-fused")
    futures = [pool.submit(kernel, *args, cuts[p], cuts[p + 1]) for p in range(1, parts)]
    kernel(*args, cuts[0], cuts[1])
    for f in futures:
        f.result()


#: One pool per number of helper threads, kept for the process (a step calls the kernels often).
#: A forked child has none of its threads: it starts with no pools.
_POOLS: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_POOLS.clear)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def tanh_(t: Tensor) -> Tensor:
    """Apply the engine's tanh to a float32 CPU tensor in place; return ``t``.

    Contiguous tensors and transposes of contiguous ones are done through their memory; any
    other layout by torch's kernels (:func:`~fairpriv_lab.engine.elementary.tanh_torch_`, the same bits).
    """
    base = t if t.is_contiguous() or t.dim() < 2 else t.transpose(-1, -2)
    if not base.is_contiguous():
        return tanh_torch_(t)
    flat = _np(base.reshape(-1))
    _rows_in_threads(_tanh_flat, flat.size, 1, flat)
    return t


def binary_hidden(z: Tensor, b1: Tensor, w: Tensor, h: Tensor, e: Tensor,
                  diff: Tensor, h_sq: Tensor, e_norm: Tensor) -> None:
    """Compute the two-class MLP's hidden layer for every (model, sample) row, into the given tensors.

    ``z`` ``(M, B, H)`` the first layer's products without the bias ``b1`` ``(M, H)``; ``w``
    ``(M, H)``. Writes ``h = tanh(z + b1)`` and ``e = w - h^2 w`` ``(M, B, H)`` (``h`` may be
    ``z`` itself), and per row ``diff = h . w``, ``h_sq = ||h||^2``, ``e_norm = ||e||``
    ``(M, B)``. All float32 contiguous CPU tensors.
    """
    M, B, H = z.shape
    z, b1, w = z.contiguous(), b1.contiguous(), w.contiguous()  # (views when they are)
    _rows_in_threads(_binary_hidden, M * B, H, _np(z), _np(b1), _np(w), _np(h), _np(e),
                     _np(diff), _np(h_sq), _np(e_norm))


def binary_logit(z: Tensor, b1: Tensor, w: Tensor, diff: Tensor) -> None:
    """Write the two-class MLP's logit difference without its output bias, ``diff = tanh(z + b1) . w``.

    ``z`` ``(M, B, H)`` the first layer's products without the bias ``b1`` ``(M, H)``, ``w``
    ``(M, H)``, ``diff`` ``(M, B)``: float32 contiguous CPU tensors. The row sums are
    :func:`binary_hidden`'s (the same lanes, the same bits), without writing ``h`` or ``e``:
    evaluation's forward pass.
    """
    M, B, H = z.shape
    z, b1, w = z.contiguous(), b1.contiguous(), w.contiguous()
    _rows_in_threads(_binary_logit, M * B, H, _np(z), _np(b1), _np(w), _np(diff))
