"""The engine's elementary functions: the same bits on every CPU (docs/design.md section 5).

A float32 run on the CPU must give the same numbers on every machine (the notebooks' stored
outputs, a classroom's): the audit compares losses of many models, and a last-bit difference in
one loss can move a record's risk, and so a printed GPR. Library transcendental functions do not
give that. torch's CPU ``tanh`` and ``exp`` of a float32 tensor are MKL's vector math
(``vmsTanh``, ``vmsExp``), which runs other code on Intel than on AMD CPUs (on an AMD EPYC about
1 % of its float32 ``exp`` values are not the correctly rounded ones; Intel's AVX-512 code has
its own). So the engine computes tanh and exp itself, from IEEE-exact operations only
(``min``, ``max``, comparisons, ``floor``, multiplications, additions, divisions and exponent
bits), which every implementation computes alike: numpy (the ``*_reference``
definitions the tests hold everything to), torch's elementwise kernels (``*_torch_``) and the
compiled kernels of :mod:`~fairpriv_lab.engine._fused`.

**tanh** (:func:`tanh_reference`): the float32 approximation of Eigen's and XLA's CPU backends
(the input clamped to ``[-C, C]``, beyond which tanh rounds to +-1; an odd polynomial of degree
13 over an even one of degree 6; ``x`` itself below ``TINY``). At most 4e-7 from the exact tanh
(7 float32 ulp; torch's CPU tanh: 3e-8, the former ``2 sigmoid(2 z) - 1``: 1.8e-7 absolute but
no relative accuracy near 0).

**exp** (:func:`exp_reference`): Cephes' ``expf`` (Moshier): ``x = n ln 2 + r`` with
``n = floor(x log2 e + 1/2)`` and ``ln 2`` in two parts (the first with 9 significant bits, so
``n`` times it is exact), a degree-7 polynomial in ``r``, then times ``2^n`` built from exponent
bits in two factors (so that results down to the subnormals are one rounding). Less than 1 ulp
from the exact exp wherever that is a finite nonzero float32 (tested: at most 1 ulp; about 9 %
of the values are not the correctly rounded ones), 0 below -103.97 and inf above 88.73, as the
exact exp rounded to float32.

**sqrt** (:func:`sqrt`): torch's float32 ``sqrt`` on the CPU is MKL's too, and not IEEE's on AMD
CPUs; the engine takes it in float64 and rounds, which gives IEEE's correctly rounded result.

They serve float32 on the CPU, where runs must reproduce. Elsewhere torch's functions serve:
on a GPU (one kernel instead of fifteen; a GPU run differs from a CPU run in the last bits
anyway, cuBLAS sums in its own order) and in float64 (the tests' per-sample references).
:mod:`~fairpriv_lab.engine.models` (``_tanh_``, ``_exp_``, ``_binary_hidden``,
``_binary_logit``) chooses the compiled tanh kernels for float32 CPU tensors when numba imports
(once per process, on first use: LR runs never pay it); when numba is broken, after one
``RuntimeWarning``, :func:`tanh_torch_` (the same tanh; the MLP's row sums then in torch's
order, so last-bit differences). ``exp`` is always torch's elementwise kernels
(:func:`exp_torch_`): it runs on one value per (model, record), not per hidden unit.
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


#: ``log2(e)`` and ``ln 2`` in two parts (the first: 9 significant bits), float32.
LOG2E = _f(1.44269504088896341)
LN2_HI, LN2_LO = _f(0.693359375), _f(-2.12194440e-4)
#: Cephes' ``expf`` polynomial: ``exp(r) = 1 + r + r^2 P(r)`` on ``|r| <= ln 2 / 2``.
EXP_P = tuple(_f(v) for v in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                               1.6666665459e-1, 5.0000001201e-1))
#: Inputs are clamped to ``[EXP_LO, EXP_HI]``: exp rounds to 0 below -103.97 and overflows to inf
#: above 88.73 in float32, and so does :func:`exp_reference` beyond them.
EXP_LO, EXP_HI = _f(-104.0), _f(89.0)


def exp_reference(x: np.ndarray) -> np.ndarray:
    """Return the engine's exp of ``x`` in float32, with numpy: the definition every kernel is tested against."""
    x = np.minimum(np.maximum(np.asarray(x, dtype=np.float32), EXP_LO), EXP_HI)
    n = np.floor(x * LOG2E + _f(0.5))
    r = (x - n * LN2_HI) - n * LN2_LO
    p = EXP_P[0] * r + EXP_P[1]
    for c in EXP_P[2:]:
        p = p * r + c
    p = (p * (r * r) + r) + _f(1.0)
    k = np.nan_to_num(n).astype(np.int32)
    a = k >> 1  # 2^n = 2^a 2^(n - a), both factors normal for n in [-150, 128]
    with np.errstate(over="ignore"):  # inf above 88.73, as exp
        return (p * ((a + 127) << 23).view(np.float32)) * ((k - a + 127) << 23).view(np.float32)


def exp_torch_(t: Tensor) -> Tensor:
    """:func:`exp_reference` in place with torch's elementwise kernels (a float32 tensor, any device); returns ``t``."""
    x = t.clamp_(float(EXP_LO), float(EXP_HI))
    n = torch.floor(x * float(LOG2E) + 0.5)
    r = (x - n * float(LN2_HI)).sub_(n * float(LN2_LO))
    p = (r * float(EXP_P[0])).add_(float(EXP_P[1]))
    for c in EXP_P[2:]:
        p.mul_(r).add_(float(c))
    p.mul_(r * r).add_(r).add_(1.0)
    k = torch.nan_to_num_(n).to(torch.int32)
    a = k >> 1
    s1 = ((a + 127) << 23).view(torch.float32)
    s2 = ((k.sub_(a).add_(127)) << 23).view(torch.float32)
    return t.copy_(p.mul_(s1).mul_(s2))


def sqrt(t: Tensor) -> Tensor:
    """Return the correctly rounded square root of ``t`` (a new tensor), the same on every CPU.

    torch's CPU ``sqrt`` of a float32 tensor is MKL's ``vmsSqrt``, which is not correctly rounded
    on AMD CPUs (seen on an EPYC: not IEEE's ``sqrt`` for some values), so a norm, and through
    it a clip factor, would differ between CPUs. For float32 on the CPU this takes the square
    root in float64 (``vmdSqrt``: within one float64 ulp) and rounds it to float32: a float32's
    square root lies at least about ``2^-51`` (relative) from a float32 rounding midpoint, more
    than that error, so the result is the correctly rounded one (tested against numpy's
    ``sqrt``, which is IEEE's). Elsewhere (a GPU, float64) torch's ``sqrt``.
    """
    if t.device.type == "cpu" and t.dtype == torch.float32:
        return t.double().sqrt_().float()
    return t.sqrt()
