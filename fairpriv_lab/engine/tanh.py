"""The engine's tanh: one rational function, the same bits on every CPU (docs/design.md section 5).

The hidden layers of :class:`~fairpriv_lab.engine.models.LinearStack` use :func:`tanh_reference`:
the float32 approximation of Eigen's and XLA's CPU backends (the input clamped to ``[-C, C]``,
beyond which tanh rounds to +-1; an odd polynomial of degree 13 over an even one of degree 6;
``x`` itself below ``TINY``).
It is at most 4e-7 from the exact tanh (7 float32 ulp; torch's CPU tanh: 3e-8, the former
``2 sigmoid(2 z) - 1``: 1.8e-7 absolute but no relative accuracy near 0), and it is made of
IEEE-exact operations only (``min``, ``max``, comparisons, multiplications, additions, one
division), so
every implementation of it gives the same bits: torch's elementwise kernels
(:func:`tanh_torch_`) and the compiled CPU kernels of :mod:`~fairpriv_lab.engine._fused`, which
fuse it with the rest of the per-sample pass. A library tanh would tie a run's numbers to the
CPU (MKL's vector tanh takes other code on AMD than on Intel CPUs, and a slow path).

It serves float32 on the CPU, where runs must reproduce (the notebooks' stored numbers, a
classroom's). Elsewhere torch's tanh serves: on a GPU (one kernel instead of fifteen; a GPU
run differs from a CPU run in the last bits anyway, cuBLAS sums in its own order) and in
float64 (the tests' per-sample references).

:mod:`~fairpriv_lab.engine.models` (``_tanh_``, ``_binary_hidden``) chooses the compiled kernels
for float32 CPU tensors when numba imports (once per process, on first use: LR runs never pay
it); when numba is broken, after one ``RuntimeWarning``, :func:`tanh_torch_` (the same tanh;
the MLP's row sums then in torch's order, so last-bit differences).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_f = np.float32
#: Clamp of the input: beyond it tanh rounds to +-1 in float32.
C = _f(7.90531110763549805)
#: Below it ``tanh(x) = x`` to float32 (the relative error ``x^2 / 3`` is under half an ulp);
#: the rational function would lose subnormal inputs' bits.
TINY = _f(0.0004)
#: Numerator coefficients (odd powers 1, 3, ..., 13), float32.
ALPHA = tuple(_f(v) for v in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                              5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
                              -2.76076847742355e-16))
#: Denominator coefficients (even powers 0, 2, 4, 6), float32.
BETA = tuple(_f(v) for v in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                             1.19825839466702e-06))
#: Lanes of :func:`binary_hidden`'s row sums (hidden unit ``j`` into lane ``j mod LANES``).
LANES = 16


def tanh_reference(x: np.ndarray) -> np.ndarray:
    """Return the engine's tanh of ``x`` in float32, with numpy: the definition every kernel is tested against."""
    x = np.minimum(np.maximum(np.asarray(x, dtype=np.float32), -C), C)
    x2 = x * x
    p = ALPHA[6] * x2 + ALPHA[5]
    for a in ALPHA[4::-1]:
        p = p * x2 + a
    q = BETA[3] * x2 + BETA[2]
    for b in BETA[1::-1]:
        q = q * x2 + b
    return np.where(np.abs(x) < TINY, x, (p * x) / q)


def tanh_torch_(t: Tensor) -> Tensor:
    """:func:`tanh_reference` in place with torch's elementwise kernels (any device); returns ``t``."""
    x = t.clamp_(-float(C), float(C))
    x2 = x * x
    p = (x2 * float(ALPHA[6])).add_(float(ALPHA[5]))
    for a in ALPHA[4::-1]:
        p.mul_(x2).add_(float(a))
    q = (x2 * float(BETA[3])).add_(float(BETA[2]))
    for b in BETA[1::-1]:
        q.mul_(x2).add_(float(b))
    tiny = x.abs() < float(TINY)
    return t.copy_(torch.where(tiny, x, p.mul_(x).div_(q)))
