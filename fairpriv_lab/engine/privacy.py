"""The DP step as a pipeline of stages, clipping policies, and accounting through Opacus.

One private step (docs/design.md 4.6), for every model of a chunk at once::

    per-sample norms -> clip bounds (the policy) -> clip factors -> clipped sum -> noise -> scale

:class:`DPStep` implements each stage as an overridable method, like Opacus's optimizer
(AdaClip overrides one stage). The methods are *clipping policies* plugged into that one
pipeline: :class:`SGD` (no clipping, no noise), :class:`DPSGD` (flat bound ``C``),
:class:`DPSGDS` (group-scaled bounds ``C_k``) and :class:`DPSGDF` (Xu, Du & Wu 2021).

Every statistic a policy releases is a Gaussian mechanism with its own noise multiplier, and
all of them read the same Poisson batch: per step they are ONE subsampled Gaussian with
``sigma_eff = (sum_i sigma_i^-2)^(-1/2)`` (:func:`effective_noise_multiplier`).
:func:`epsilon_of` accounts ``[(sigma_eff, q, T)]`` with Opacus's RDP or PRV accountant and
:func:`calibrate_noise` finds ``sigma`` for a target epsilon (docs/privacy.md). Notebook 04
teaches this.
"""

from __future__ import annotations

import abc
import ast
import functools
import importlib
import importlib.util
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._core import validate as V
from .._core.exceptions import PrivacyAccountingError
from .._core.knobs import CountKnobs, ScaledClipKnobs, knob_names
from .._core.vocabulary import ACCOUNTANTS, Accountant
from . import elementary

__all__ = [
    "Mechanism",
    "ClippingPolicy",
    "SGD",
    "DPSGD",
    "DPSGDS",
    "DPSGDF",
    "as_method",
    "ClipDecision",
    "StepOutput",
    "DPStep",
    "group_contribution",
    "effective_noise_multiplier",
    "epsilon_of",
    "calibrate_noise",
    "calibrate_effective_noise",
    "substitution_epsilon",
]

_EPS = 1e-6  # the same guard as Opacus's clip factor C / (||g|| + 1e-6)


@dataclass(frozen=True)
class Mechanism:
    """A Poisson-subsampled Gaussian mechanism released once per step.

    ``noise_multiplier`` is the noise standard deviation divided by the L2 sensitivity.
    """

    name: str
    noise_multiplier: float


@dataclass
class ClipDecision:
    """Bounds chosen by a policy for one step of a chunk of ``M`` models.

    Attributes
    ----------
    sample_bounds : Tensor (M, B)
        Clip bound of each sample (its group's ``C_k``).
    group_bounds : Tensor (M, K)
        ``C_k`` of every group, present in the batch or not.
    noise_bound : Tensor (M,)
        The sensitivity that the gradient noise is scaled to: ``max_k C_k`` over **all** groups.
    state : Tensor or None
        Policy state carried to the next step (smoothed bounds), ``(M, K)``.
    """

    sample_bounds: Tensor
    group_bounds: Tensor
    noise_bound: Tensor
    state: Tensor | None = None


@dataclass
class StepOutput:
    """What one :class:`DPStep` returns for a chunk of models.

    Attributes
    ----------
    update : list of Tensor
        ``(noisy clipped sum) / b`` per parameter, shapes ``(M, *shape)``.
    group_bounds : Tensor (M, K)
    frac_clipped : Tensor (M, K) or None
        Fraction of the group's batch samples whose norm exceeded their bound (NaN if absent);
        an un-noised diagnostic, computed only when the step's ``diagnostics`` is on.
    counts : Tensor (M, K)
        True (private) number of batch samples per group.
    state : Tensor or None
    """

    update: list[Tensor]
    group_bounds: Tensor
    frac_clipped: Tensor | None
    counts: Tensor
    state: Tensor | None


@dataclass
class StepContext:
    norms: Tensor  # (M, B)
    onehot: Tensor  # (M, B, K) float, already multiplied by the mask
    counts: Tensor  # (M, K)
    grads: Any  # PerSampleGrads
    noise: dict[str, Any]
    state: Tensor | None
    sigma: float
    clip: float


class ClippingPolicy(abc.ABC):
    """Base of the clipping policies: how the bound of each sample is chosen in a step."""

    name: ClassVar[str] = "policy"
    private: ClassVar[bool] = True

    def mechanisms(self, noise_multiplier: float) -> tuple[Mechanism, ...]:
        """Mechanisms released per step for gradient noise multiplier ``noise_multiplier``."""
        return (Mechanism("gradient", noise_multiplier),)

    def draw_noise(
        self, n_models: int, n_groups: int, param_shapes: list[tuple[int, ...]],
        generator: torch.Generator, device: Any,
    ) -> dict[str, Any]:
        """Return the standard normal draws the policy needs this step, for all models."""
        return {}

    def initial_state(self, n_models: int, n_groups: int, clip: float, device: Any) -> Tensor | None:
        """State before the first step (``None`` for stateless policies)."""
        return None

    @abc.abstractmethod
    def bounds(self, ctx: StepContext) -> ClipDecision:
        """Return the bounds of this step (the one stage a policy must define)."""

    def _flat(self, ctx: StepContext, value: float) -> ClipDecision:
        M, B = ctx.norms.shape
        K = ctx.counts.shape[1]
        return ClipDecision(
            ctx.norms.new_full((M, B), value),
            ctx.norms.new_full((M, K), value),
            ctx.norms.new_full((M,), value),
        )


@dataclass(frozen=True)
class SGD(ClippingPolicy):
    """Non-private SGD: no clipping, no noise; epsilon is infinite."""

    name: ClassVar[str] = "sgd"
    private: ClassVar[bool] = False

    def mechanisms(self, noise_multiplier: float) -> tuple[Mechanism, ...]:
        """SGD releases raw gradients: no mechanism bounds it."""
        return ()

    def bounds(self, ctx: StepContext) -> ClipDecision:
        """Infinite bounds (nothing is clipped)."""
        return self._flat(ctx, math.inf)


@dataclass(frozen=True)
class DPSGD(ClippingPolicy):
    """DP-SGD (Abadi et al. 2016): clip every ``g_i`` to ``C``, add ``N(0, sigma^2 C^2 I)``, divide by b."""

    name: ClassVar[str] = "dpsgd"

    def bounds(self, ctx: StepContext) -> ClipDecision:
        """Return the flat bound ``C`` for every sample and group."""
        return self._flat(ctx, ctx.clip)


@dataclass(frozen=True)
class DPSGDS(ScaledClipKnobs, ClippingPolicy):
    """DP-SGD-S: group-scaled clip bounds ``C_k = C * clamp(rbar / r_k, floor, tau)``.

    Two statistics of a group's contribution (docs/design.md 4.6), both released with noise:

    * ``"norm"`` (default, our variant): ``r_k = (sum_{i in B, k} min(||g_i||, C_s) +
      N(0, sigma_1^2 C_s^2)) / max(n~_k, 1)`` and ``rbar`` the same over the batch (from the sums
      of the released group statistics), with ``C_s = stat_clip`` (default ``tau * C``).
    * ``"mean_direction"`` (the paper's rule): unit-clip every ``g_i``, release noisy group sums
      ``S_k = sum unit(g_i) + N(0, sigma_1^2 I)``; ``u = sum_k S_k / sum_k n~_k``,
      ``u_k = S_k / max(n~_k, 1)`` and the ratio is ``||u|| / ||u_k||``.

    Noisy counts are ``n~_k = n_k + N(0, sigma_c^2)``. Then ``C_k = C * clamp(ratio, floor, tau)``,
    optionally smoothed across steps (``C_k <- s C_k^prev + (1 - s) C_k``, post-processing), and
    the gradient noise is ``N(0, sigma^2 max_k C_k^2 I)`` over **all** groups: taking the max over
    only the groups present in the batch would reveal which groups are present.

    Parameters
    ----------
    tau : float
        Cap of the ratio (``>= 1``): no group's bound exceeds ``tau * C``.
    statistic : {"norm", "mean_direction"}
    stat_noise_ratio : float
        ``sigma_1 = stat_noise_ratio * sigma`` (tied, also under calibration).
    count_noise : float
        ``sigma_c = count_noise * sigma``.
    smoothing : float
        EMA weight ``s`` in ``[0, 1)`` of the previous bounds.
    floor : float
        Lower cap of the ratio, in ``[0, tau]``.
    stat_clip : float or None
        ``C_s`` of the norm statistic; ``None`` uses ``tau * C``. (With ``C_s = C`` the
        statistic saturates whenever most gradients are clipped, as is usual in DP-SGD, and
        every ratio reads 1.)

    Examples
    --------
    >>> DPSGDS(tau=3.0).mechanisms(1.0)[1]
    Mechanism(name='group_statistic', noise_multiplier=5.0)
    """

    name: ClassVar[str] = "dpsgds"

    def mechanisms(self, noise_multiplier: float) -> tuple[Mechanism, ...]:
        """Gradient, group statistic (sensitivity 1 or ``C_s``) and group counts (sensitivity 1)."""
        return (
            Mechanism("gradient", noise_multiplier),
            Mechanism("group_statistic", self.stat_noise_ratio * noise_multiplier),
            Mechanism("group_counts", self.count_noise * noise_multiplier),
        )

    def draw_noise(self, n_models, n_groups, param_shapes, generator, device):
        """Count noise ``(M, K)`` and statistic noise ``(M, K)`` or ``(M, K, *shape)``."""
        noise: dict[str, Any] = {
            "counts": torch.randn((n_models, n_groups), generator=generator, device=device)
        }
        if self.statistic == "norm":
            noise["stat"] = torch.randn((n_models, n_groups), generator=generator, device=device)
        else:
            noise["stat"] = [
                torch.randn((n_models, n_groups, *s), generator=generator, device=device)
                for s in param_shapes
            ]
        return noise

    def initial_state(self, n_models, n_groups, clip, device):
        """Previous bounds for smoothing: ``C`` for every group."""
        return torch.full((n_models, n_groups), float(clip), device=device)

    def bounds(self, ctx: StepContext) -> ClipDecision:
        """Group bounds from the noisy statistic, capped by ``tau`` and ``floor``."""
        sigma1 = self.stat_noise_ratio * ctx.sigma
        noisy_n = ctx.counts + self.count_noise * ctx.sigma * ctx.noise["counts"]
        if self.statistic == "norm":
            cs = self.tau * ctx.clip if self.stat_clip is None else self.stat_clip
            stat = _per_group_sum(ctx.norms.clamp(max=cs), ctx.onehot)
            stat = stat + sigma1 * cs * ctx.noise["stat"]
            r_k = stat / noisy_n.clamp(min=1.0)
            rbar = stat.sum(1) / noisy_n.sum(1).clamp(min=1.0)
            ratio = torch.where(r_k > 0, rbar.clamp(min=0).unsqueeze(1) / r_k, self.tau)
        else:
            unit = (1.0 / (ctx.norms + _EPS)).clamp(max=1.0)
            sums = ctx.grads.weighted_sum(ctx.onehot * unit.unsqueeze(-1))  # (M, K, *shape)
            sums = [s + sigma1 * z for s, z in zip(sums, ctx.noise["stat"])]
            total_n = noisy_n.sum(1).clamp(min=1.0)
            u_sq = sum(s.sum(1).flatten(1).square().sum(1) for s in sums) / total_n.square()
            uk_sq = sum(s.flatten(2).square().sum(2) for s in sums) / noisy_n.clamp(min=1.0).square()
            ratio = torch.where(uk_sq > 0, elementary.sqrt(u_sq.unsqueeze(1) / uk_sq), self.tau)
        ratio = ratio.clamp(min=self.floor, max=self.tau)
        bounds = ctx.clip * ratio
        if self.smoothing > 0 and ctx.state is not None:
            bounds = self.smoothing * ctx.state + (1 - self.smoothing) * bounds
        sample = (ctx.onehot * bounds.unsqueeze(1)).sum(-1)  # each sample's group bound
        return ClipDecision(sample, bounds, bounds.max(1).values, bounds)


@dataclass(frozen=True)
class DPSGDF(CountKnobs, ClippingPolicy):
    """DP-SGD-F (Xu, Du & Wu 2021): bounds grow for groups with more large gradients.

    Noisy per-group counts of batch samples above and below ``C_0 = C``,
    ``a~_k = a_k + N(0, sigma_c^2)``, ``b~_k = b_k + N(0, sigma_c^2)`` (one mechanism of
    sensitivity 1: a sample changes one count by one); ``r_k = clamp(a~_k / max(a~_k + b~_k, 1),
    0, 1)`` and ``C_k = C_0 (1 + r_k / mean_j r_j)`` (``C_0`` when every ``r_j`` is 0). The
    gradient noise is ``N(0, sigma^2 max_k C_k^2 I)``.

    Parameters
    ----------
    count_noise : float
        ``sigma_c = count_noise * sigma``.

    Examples
    --------
    >>> [m.name for m in DPSGDF().mechanisms(1.0)]
    ['gradient', 'group_counts']
    """

    name: ClassVar[str] = "dpsgdf"

    def mechanisms(self, noise_multiplier: float) -> tuple[Mechanism, ...]:
        """Gradient and the above/below counts."""
        return (
            Mechanism("gradient", noise_multiplier),
            Mechanism("group_counts", self.count_noise * noise_multiplier),
        )

    def draw_noise(self, n_models, n_groups, param_shapes, generator, device):
        """Count noise ``(M, K, 2)``."""
        return {"counts": torch.randn((n_models, n_groups, 2), generator=generator, device=device)}

    def bounds(self, ctx: StepContext) -> ClipDecision:
        """``C_k = C_0 (1 + r_k / mean_j r_j)`` from the noisy above/below counts."""
        above = _per_group_sum((ctx.norms > ctx.clip).to(ctx.norms.dtype), ctx.onehot)
        below = ctx.counts - above
        sc = self.count_noise * ctx.sigma
        a = above + sc * ctx.noise["counts"][..., 0]
        b = below + sc * ctx.noise["counts"][..., 1]
        r = (a / (a + b).clamp(min=1.0)).clamp(0.0, 1.0)
        mean_r = r.mean(1, keepdim=True)
        rel = torch.where(mean_r > 0, r / mean_r.clamp(min=1e-12), torch.zeros_like(r))
        bounds = ctx.clip * (1 + rel)
        sample = (ctx.onehot * bounds.unsqueeze(1)).sum(-1)  # each sample's group bound
        return ClipDecision(sample, bounds, bounds.max(1).values)


def as_method(method: Any, **knobs: Any) -> ClippingPolicy:
    """Return the policy for ``"sgd"``, ``"dpsgd"``, ``"dpsgds"``, ``"dpsgdf"`` or a policy instance.

    ``knobs`` set the named policy's research knobs (``as_method("dpsgds", tau=3.0)``); a
    policy instance carries its own.

    Examples
    --------
    >>> as_method("dpsgd")
    DPSGD()
    >>> as_method("dpsgdf", count_noise=2.0)
    DPSGDF(count_noise=2.0)
    """
    if isinstance(method, ClippingPolicy):
        if knobs:
            raise V.fail("knobs", sorted(knobs), "to be empty with a policy instance",
                         "A policy object carries its own knobs: DPSGDS(tau=3.0)")
        return method
    names = {"sgd": SGD, "dpsgd": DPSGD, "dpsgds": DPSGDS, "dpsgdf": DPSGDF}
    if isinstance(method, str) and method in names:
        allowed = knob_names(method)
        for k in knobs:
            if k not in allowed:
                raise V.fail("knob", k, f"to be one of {', '.join(allowed) or 'none'} with method={method!r}")
        return names[method](**knobs)
    raise V.fail(
        "method", method,
        "to be one of 'sgd', 'dpsgd', 'dpsgds', 'dpsgdf' or a DPSGDS(...) / DPSGDF(...) instance",
    )


# ----------------------------------------------------------------------------- the DP step
@dataclass
class DPStep:
    """One private step of a chunk of models, as overridable stages.

    ``update = (sum_i f_i g_i + sigma * noise_bound * xi) / b`` with
    ``f_i = min(1, C_{k(i)} / (||g_i|| + 1e-6))`` (Opacus's clip factor) and ``xi ~ N(0, I)``.
    ``b`` is the *expected* batch size ``q N`` (Poisson sampling: dividing by the realised size
    would leak it; Opacus does the same).

    Parameters
    ----------
    policy : ClippingPolicy
    clip : float
        The base bound ``C``.
    noise_multiplier : float
        ``sigma`` (0 for SGD or for tests without noise).
    batch_size : float
        The expected batch size ``b``.
    n_groups : int
    diagnostics : bool
        Also return ``frac_clipped`` (raw, un-noised: a non-private diagnostic).
    """

    policy: ClippingPolicy
    clip: float
    noise_multiplier: float
    batch_size: float
    n_groups: int
    eps: float = field(default=_EPS)
    diagnostics: bool = True

    # stage 1
    def per_sample_norms(self, grads: Any) -> Tensor:
        """``||g_i||`` over all parameters, ``(M, B)``."""
        return grads.norms()

    # stage 2 (the policy's bounds -> factors)
    def clip_factors(self, norms: Tensor, bounds: Tensor, mask: Tensor) -> Tensor:
        """``min(1, C_i / (||g_i|| + 1e-6))`` times the batch mask, ``(M, B)``."""
        return (bounds / (norms + self.eps)).clamp(max=1.0) * mask

    # stage 3
    def clipped_sum(self, grads: Any, factors: Tensor) -> list[Tensor]:
        """``sum_i f_i g_i`` per parameter, ``(M, *shape)``."""
        return grads.weighted_sum(factors)

    # stage 4
    def add_noise(self, summed: list[Tensor], noise_bound: Tensor, noise: list[Tensor] | None) -> list[Tensor]:
        """Add ``sigma * noise_bound * xi`` (``xi`` pre-drawn standard normals)."""
        if noise is None or self.noise_multiplier == 0:
            return summed
        out = []
        for s, z in zip(summed, noise):
            std = (self.noise_multiplier * noise_bound).reshape(-1, *([1] * (s.dim() - 1)))
            out.append(s.add_(std * z))  # the clipped sum is this step's own tensor
        return out

    # stage 5
    def scale(self, noised: list[Tensor]) -> list[Tensor]:
        """Divide by the expected batch size (in place: the noised sums are this step's own)."""
        return [t.div_(self.batch_size) for t in noised]

    def __call__(
        self,
        grads: Any,
        *,
        groups: Tensor,
        mask: Tensor,
        noise: list[Tensor] | None = None,
        policy_noise: dict[str, Any] | None = None,
        state: Tensor | None = None,
    ) -> StepOutput:
        """Run the stages for per-sample gradients ``grads`` of a padded batch ``(M, B)``."""
        norms = self.per_sample_norms(grads)
        if groups.numel():  # a label outside 0..n_groups-1 would silently drop its row below
            lo, hi = torch.aminmax(groups)
            if int(lo) < 0 or int(hi) >= self.n_groups:
                from .._core.validate import fail

                raise fail("groups", f"labels {int(lo)}..{int(hi)}",
                           f"to hold group labels 0..{self.n_groups - 1} (n_groups={self.n_groups})")
        # one-hot by comparison: the same 0/1 values as F.one_hot without its scatter (about
        # 1 ms a step at 128 x 256)
        classes = torch.arange(self.n_groups, device=groups.device)
        onehot = (groups.unsqueeze(-1) == classes).to(norms.dtype) * mask.unsqueeze(-1)
        counts = onehot.sum(1)
        ctx = StepContext(norms, onehot, counts, grads, policy_noise or {}, state,
                       self.noise_multiplier, self.clip)
        decision = self.policy.bounds(ctx)
        factors = self.clip_factors(norms, decision.sample_bounds, mask)
        summed = self.clipped_sum(grads, factors)
        noised = self.add_noise(summed, decision.noise_bound, noise)
        frac = None
        if self.diagnostics:
            clipped = (norms > decision.sample_bounds).to(norms.dtype)
            frac = _per_group_sum(clipped, onehot) / counts.where(counts > 0, torch.nan)
        return StepOutput(self.scale(noised), decision.group_bounds, frac, counts, decision.state)


def _per_group_sum(values: Tensor, onehot: Tensor) -> Tensor:
    """``sum_b values[m, b] onehot[m, b, k]`` ``(M, K)``: an elementwise product and a sum over the batch.

    Not ``einsum``: above a few hundred products that is MKL's batched matmul, whose sums run
    in another order on Intel than on AMD CPUs (docs/design.md section 5).
    """
    return (values.unsqueeze(-1) * onehot).sum(1)


def group_contribution(grads: Any, onehot: Tensor, mask: Tensor) -> Tensor:
    """GRC of docs/design.md 4.8: ``||mean_{i in B, k} g_i|| / ||mean_{i in B} g_i||``, ``(M, K)``.

    Raw (unclipped) gradients; NaN for groups absent from the batch. Telemetry, not private.
    """
    counts = onehot.sum(1)
    sums = grads.weighted_sum(onehot)  # (M, K, *shape)
    # Every batch sample is in exactly one group, so the batch sum is the sum of group sums.
    group_sq = sum(s.flatten(2).square().sum(2) for s in sums)
    total_sq = sum(s.sum(1).flatten(1).square().sum(1) for s in sums)
    n = mask.sum(1).clamp(min=1.0)
    mean_norm = elementary.sqrt(total_sq) / n
    group_norm = elementary.sqrt(group_sq) / counts.where(counts > 0, torch.nan)
    return group_norm / mean_norm.unsqueeze(1)


# ----------------------------------------------------------------------------- accounting
def effective_noise_multiplier(method: Any, noise_multiplier: float) -> float:
    """``sigma_eff = (sum_i sigma_i^-2)^(-1/2)`` of the mechanisms ``method`` releases per step.

    Every mechanism of a step (gradient sum, group statistic, counts) reads the **same**
    Poisson batch, so per step they form one subsampled mechanism whose inner part is a
    composition of Gaussians, each with noise ``sigma_i`` relative to its own L2 sensitivity:
    after scaling each output by ``1 / (sigma_i * sensitivity_i)`` the concatenation is one
    Gaussian mechanism of unit noise whose sensitivity is ``sqrt(sum_i sigma_i^-2)``. That
    single Gaussian, subsampled at rate ``q``, is what is accounted (docs/design.md 4.6, docs/privacy.md).
    Accounting the mechanisms as independently subsampled under-reports epsilon.

    Examples
    --------
    >>> round(effective_noise_multiplier(DPSGDS(stat_noise_ratio=2.0, count_noise=2.0), 1.0), 4)
    0.8165
    """
    policy = as_method(method)
    mechs = policy.mechanisms(float(noise_multiplier))
    if not mechs:
        return 0.0
    return float(sum(float(m.noise_multiplier) ** -2 for m in mechs) ** -0.5)


def _noise_ratio(policy: ClippingPolicy) -> float:
    """``sigma_eff / sigma``: a property of the policy alone (the multipliers are tied to sigma)."""
    return effective_noise_multiplier(policy, 1.0)


def _opacus_file(*parts: str) -> Path | None:
    """Return a file of Opacus's installation, found without importing ``opacus`` (``None`` if absent)."""
    spec = importlib.util.find_spec("opacus")  # a top-level name: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


@functools.cache
def _opacus_rdp() -> ModuleType:
    """Opacus's RDP analysis (``opacus.accountants.analysis.rdp``) without importing Opacus.

    Importing any Opacus module first runs ``opacus/__init__``, which loads its whole training
    stack (optimizers, grad samplers, ``torch.distributed.tensor``, sympy): 0.8 s and 56 MB of
    a classroom process, only to reach two functions of this file, which needs just numpy and
    scipy. So the same file of the installed Opacus is loaded as a module of its own; where
    Opacus is already imported, its module serves (``tests/unit/engine/test_privacy.py``
    holds both to the same numbers).
    """
    name = "opacus.accountants.analysis.rdp"
    path = None if name in sys.modules else _opacus_file("accountants", "analysis", "rdp.py")
    if path is None:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location("fairpriv_lab._opacus_rdp", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:  # a future version of the file may import within Opacus: import it then
        return importlib.import_module(name)
    return module


@functools.cache
def _rdp_orders() -> tuple[float, ...]:
    """Opacus's default RDP order grid, ``RDPAccountant.DEFAULT_ALPHAS``.

    Read from its source file (the one expression of that class attribute, evaluated with
    ``range`` and ``list`` only) so that Opacus need not be imported (:func:`_opacus_rdp`);
    from the class itself where Opacus is imported or its file reads otherwise.
    """
    path = None if "opacus.accountants.rdp" in sys.modules else _opacus_file("accountants", "rdp.py")
    try:
        if path is None:
            raise LookupError("ask the class")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RDPAccountant")
        node = next(n.value for n in cls.body if isinstance(n, ast.Assign)
                    and [getattr(t, "id", None) for t in n.targets] == ["DEFAULT_ALPHAS"])
        alphas = eval(compile(ast.Expression(node), str(path), "eval"),  # noqa: S307 (Opacus's own code)
                      {"__builtins__": {"range": range, "list": list}})
    except Exception:  # noqa: BLE001 (any other form: ask the class)
        from opacus.accountants import RDPAccountant

        alphas = RDPAccountant.DEFAULT_ALPHAS
    return tuple(float(a) for a in alphas)


def _compute_rdp(q: float, sigma: float, alpha: float) -> float:
    """Opacus's ``rdp._compute_rdp`` with its series summed by numpy instead of a Python loop.

    RDP of the subsampled Gaussian at order ``alpha`` is ``log A_alpha / (alpha - 1)``
    (Mironov, Talwar & Zhang 2019, section 3.3). Opacus sums ``A_alpha`` term by term in
    Python; for a fractional order and small ``sigma`` the terms decay only polynomially and
    its loop runs thousands of times (about 0.1 s per order at the paper-scale ``sigma``
    near 0.6). Here the same terms, with the same formulas, the same stopping rule (the first
    term whose log is below -30, included) and the same special cases, are computed as arrays
    and summed in one pass. Opacus stays the reference: equal to it within 1e-12 relative
    (``tests/unit/engine/test_privacy.py::test_vectorised_rdp_equals_opacus``), and its own
    function answers whenever the vectorised sum is not a positive finite number.
    """
    rdp = _opacus_rdp()
    if q == 0 or sigma == 0 or q == 1.0 or math.isinf(alpha):
        return rdp._compute_rdp(q, sigma, alpha)
    with np.errstate(all="ignore"):
        if float(alpha).is_integer():
            log_a = _log_a_int(q, sigma, int(alpha))
        else:
            log_a = _log_a_frac(q, sigma, alpha)
    if not math.isfinite(log_a):
        return rdp._compute_rdp(q, sigma, alpha)
    return log_a / (alpha - 1)


def _log_sum(logs: np.ndarray, signs: np.ndarray | None = None) -> float:
    """``log(sum_i sign_i exp(logs_i))`` (nan when the sum is not positive)."""
    top = float(np.max(logs))
    if not math.isfinite(top):
        return math.nan
    terms = np.exp(logs - top)
    total = float(np.sum(terms if signs is None else signs * terms))
    return math.log(total) + top if total > 0 else math.nan


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """``log A_alpha`` for integer alpha (Opacus's ``_compute_log_a_for_int_alpha``, as arrays)."""
    from scipy import special

    i = np.arange(alpha + 1, dtype=np.float64)
    log_coef = np.log(special.binom(alpha, i)) + i * math.log(q) + (alpha - i) * math.log(1 - q)
    return _log_sum(log_coef + (i * i - i) / (2 * (sigma**2)))


def _log_a_frac(q: float, sigma: float, alpha: float, first: int = 256) -> float:
    """``log A_alpha`` for fractional alpha (Opacus's ``_compute_log_a_for_frac_alpha``, as arrays).

    Terms are computed in chunks of growing length until one has ``max(log_s0, log_s1) <
    -30`` (Opacus's stopping rule; that term is included); nan when a binomial coefficient
    underflows before that (the caller then asks Opacus).
    """
    from scipy import special

    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    log_q, log_1q = math.log(q), math.log(1 - q)
    s0_parts, s1_parts, sign_parts = [], [], []
    start, size = 0, first
    while True:
        i = np.arange(start, start + size, dtype=np.float64)
        coef = special.binom(alpha, i)
        log_coef = np.log(np.abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * log_q + j * log_1q
        log_t1 = log_coef + j * log_q + i * log_1q
        log_e0 = math.log(0.5) + (math.log(2) + special.log_ndtr(-((i - z0) / (math.sqrt(2) * sigma)) * 2**0.5))
        log_e1 = math.log(0.5) + (math.log(2) + special.log_ndtr(-((z0 - j) / (math.sqrt(2) * sigma)) * 2**0.5))
        log_s0 = log_t0 + (i * i - i) / (2 * (sigma**2)) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * (sigma**2)) + log_e1
        stop = np.flatnonzero(np.maximum(log_s0, log_s1) < -30)
        end = int(stop[0]) + 1 if stop.size else size
        if not np.all(coef[:end] != 0):
            return math.nan
        s0_parts.append(log_s0[:end])
        s1_parts.append(log_s1[:end])
        sign_parts.append(np.where(coef[:end] > 0, 1.0, -1.0))
        if stop.size:
            break
        start, size = start + size, size * 4
        if start > 50_000_000:
            return math.nan
    signs = np.concatenate(sign_parts)
    a0 = _log_sum(np.concatenate(s0_parts), signs)
    a1 = _log_sum(np.concatenate(s1_parts), signs)
    return _log_sum(np.array([a0, a1]))


class _RDPCurve:
    """Epsilon at each RDP order of Opacus's default grid, evaluated lazily, for one ``(q, sigma, T, delta)``.

    Each value is Opacus's own ``_compute_rdp`` times ``T`` converted by Opacus's
    ``get_privacy_spent`` (Balle et al. 2020), so the minimum over the grid is exactly what
    ``RDPAccountant.get_epsilon`` returns. Only the orders a search visits are computed.
    """

    def __init__(self, q: float, sigma: float, steps: int, delta: float, orders: tuple[float, ...]):
        self.q, self.sigma, self.steps, self.delta, self.orders = q, sigma, steps, delta, orders
        self.values: dict[int, float] = {}

    def __call__(self, i: int) -> float:
        if i not in self.values:
            rdp = _opacus_rdp()
            r = _compute_rdp(self.q, self.sigma, self.orders[i]) * self.steps
            with warnings.catch_warnings():
                # one order is always "at the edge" of a one-order grid
                warnings.simplefilter("ignore", UserWarning)
                eps, _ = rdp.get_privacy_spent(orders=[self.orders[i]], rdp=[r], delta=self.delta)
            self.values[i] = math.inf if math.isnan(float(eps)) else float(eps)
        return self.values[i]

    def minimum(self, hint: int | None = None) -> tuple[float, int]:
        """Minimum over the grid and its index by descent from ``hint``.

        Epsilon is unimodal in the order for the subsampled Gaussian, so descent from any
        start finds the grid minimum; were it not, the value found is still an epsilon of
        some order, i.e. an upper bound (never optimistic).
        """
        n = len(self.orders)
        i = n // 3 if hint is None else min(max(int(hint), 0), n - 1)
        if math.isinf(self(i)):
            # An infinite plateau (overflowing orders) has no slope to follow: scan the grid.
            values = [self(j) for j in range(n)]
            i = min(range(n), key=values.__getitem__)
            return values[i], i
        # Walk downhill with doubling strides, then shrink the stride (discrete golden-free search).
        step = 1
        while True:
            moved = False
            for j in (i - step, i + step):
                if 0 <= j < n and self(j) < self(i):
                    i, moved = j, True
                    break
            if moved:
                step = min(step * 2, n)
            elif step > 1:
                step //= 2
            else:
                return self(i), i


_EPSILON_MEMO: dict[tuple, float] = {}
_MEMO_SIZE = 8192


def _epsilon_cached(sigma_eff: float, q: float, steps: int, delta: float, accountant: str,
                    hint: int | None = None) -> float:
    key = (sigma_eff, q, steps, delta, accountant)
    if key not in _EPSILON_MEMO:
        if len(_EPSILON_MEMO) >= _MEMO_SIZE:
            _EPSILON_MEMO.clear()
        _EPSILON_MEMO[key], _ = _epsilon_and_order(sigma_eff, q, steps, delta, accountant, hint)
    return _EPSILON_MEMO[key]


_ORDER_HINTS: dict[tuple, int] = {}  # last best order per (q, T, delta): a warm start


def _epsilon_and_order(sigma_eff, q, steps, delta, accountant, hint) -> tuple[float, int | None]:
    if accountant == "rdp":
        key = (q, steps, delta)
        value, best = _RDPCurve(q, sigma_eff, steps, delta, _rdp_orders()).minimum(
            _ORDER_HINTS.get(key) if hint is None else hint)
        if len(_ORDER_HINTS) < _MEMO_SIZE:
            _ORDER_HINTS[key] = best
        return value, best
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(sigma_eff), float(q), int(steps))]
    with np.errstate(divide="ignore"):  # Opacus's PRV takes log(1 - q), -inf at q = 1 (harmless)
        return float(acc.get_epsilon(delta=delta)), None


def epsilon_of(
    noise_multiplier: float,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    method: Any = "dpsgd",
    accountant: Accountant = "rdp",
) -> float:
    """Epsilon spent after ``steps`` steps of one Poisson-subsampled Gaussian with ``sigma_eff``.

    ``sigma_eff`` (:func:`effective_noise_multiplier`) joins the gradient ``sigma`` and the
    DP-SGD-S/F statistic multipliers tied to it: all of them read the same Poisson batch, so
    they are one subsampled mechanism per step, accounted as ``[(sigma_eff, q, T)]`` with
    Opacus's RDP (its default order grid) or PRV accountant. SGD returns ``math.inf``.
    Answers are memoised by ``(sigma_eff, q, T, delta, accountant)``.

    Examples
    --------
    >>> round(epsilon_of(1.0, sample_rate=0.01, steps=1000, delta=1e-5), 2)
    2.1
    """
    sigma_eff = _checked_sigma_eff(noise_multiplier, sample_rate, steps, delta, method, accountant)
    if sigma_eff is None:
        return math.inf
    return _epsilon_cached(sigma_eff, float(sample_rate), int(steps), float(delta), accountant)


def _checked_sigma_eff(noise_multiplier, sample_rate, steps, delta, method, accountant) -> float | None:
    """Validate an accounting question; its effective sigma, or None for a non-private method."""
    policy = as_method(method)
    V.choice("accountant", accountant, ACCOUNTANTS)
    if not policy.private:
        return None
    V.positive("noise_multiplier", noise_multiplier)
    V.number("sample_rate", sample_rate, 0.0, 1.0, low_open=True)
    V.integer("steps", steps, 1)
    V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    return float(noise_multiplier) * _noise_ratio(policy)


def substitution_epsilon(
    noise_multiplier: float,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    method: Any = "dpsgd",
    accountant: Accountant = "rdp",
) -> float:
    """Epsilon at ``delta`` for substitution neighbours (one record replaced by another).

    The accountants bound add/remove neighbours. A substitution is a removal then an addition,
    so (group privacy of size 2) an add/remove ``(eps_1, delta_1)`` guarantee gives
    ``(2 eps_1, (1 + e^{eps_1}) delta_1)`` for substitution -- not ``(2 eps, delta)``, which
    is wrong at a fixed delta. This returns the smallest ``2 eps_1`` over a grid of
    ``delta_1`` with ``(1 + e^{eps_1}) delta_1 <= delta``: the budget an empirical lower bound
    of a substitution game (ALOOA, half-split) at ``delta`` must respect. Every grid point is a
    valid bound, so the minimum is one too. SGD returns ``math.inf``.

    Examples
    --------
    >>> kw = dict(sample_rate=0.01, steps=1000, delta=1e-5)
    >>> substitution_epsilon(1.0, **kw) > 2 * epsilon_of(1.0, **kw)
    True
    """
    sigma_eff = _checked_sigma_eff(noise_multiplier, sample_rate, steps, delta, method, accountant)
    if sigma_eff is None:
        return math.inf
    return _substitution(sigma_eff, float(sample_rate), int(steps), float(delta), accountant)


@functools.lru_cache(maxsize=1024)
def _substitution(sigma_eff: float, q: float, steps: int, delta: float, accountant: str) -> float:
    # The best delta_1 solves (1 + e^{eps(delta_1)}) delta_1 = delta. The fixed-point iteration
    # delta_1 <- delta / (1 + e^{eps(delta_1)}) decreases to it from above; every feasible
    # delta_1 gives a valid budget, so a point just below the fixed point is taken.
    def eps(d1: float) -> float:
        return _epsilon_cached(sigma_eff, q, steps, d1, accountant)

    d1 = delta / 2.0
    for _ in range(30):
        nxt = delta / (1.0 + math.exp(min(eps(d1), 700.0)))
        done = abs(nxt - d1) <= 1e-4 * d1
        d1 = nxt
        if done:
            break
    for _ in range(60):
        if (1.0 + math.exp(min(eps(d1), 700.0))) * d1 <= delta:
            return 2.0 * eps(d1)
        d1 *= 0.999 if _ < 10 else 0.5
    return math.inf


def calibrate_noise(
    target_epsilon: float,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    method: Any = "dpsgd",
    accountant: Accountant = "rdp",
    rtol: float = 0.005,
) -> float:
    """Smallest ``sigma`` (to ``rtol``) whose accounted epsilon is at most ``target_epsilon``.

    The statistic multipliers stay tied (``sigma_1 = ratio * sigma``), so
    ``sigma = sigma_eff / (sigma_eff / sigma)`` where ``sigma_eff`` is calibrated once per
    ``(target, q, T, delta, accountant, rtol)`` by :func:`calibrate_effective_noise`; every
    method with those shares one computation. The returned ``sigma`` gives ``epsilon`` in
    ``[(1 - rtol) * target, target]``, or within the accountant's resolution; never above.

    Raises
    ------
    PrivacyAccountingError
        If no ``sigma_eff <= 1e4`` reaches the target.

    Examples
    --------
    >>> s = calibrate_noise(3.0, sample_rate=0.01, steps=1000, delta=1e-5)
    >>> abs(epsilon_of(s, sample_rate=0.01, steps=1000, delta=1e-5) - 3.0) < 0.03
    True
    """
    policy = as_method(method)
    target = V.positive("target_epsilon", target_epsilon)
    if not policy.private:
        raise V.fail("method", method, "to be private when target_epsilon is given")
    V.choice("accountant", accountant, ACCOUNTANTS)
    sigma_eff = _remembered_effective_noise(target, float(sample_rate), int(steps), float(delta),
                                            accountant, float(rtol))
    return _sigma_of(sigma_eff, _noise_ratio(policy), target, float(sample_rate), int(steps),
                     float(delta), str(accountant))


@functools.lru_cache(maxsize=1024)
def _sigma_of(sigma_eff: float, ratio: float, target: float, q: float, steps: int, delta: float,
              accountant: str) -> float:
    sigma = sigma_eff / ratio
    # sigma * ratio may differ from sigma_eff in the last bit; guard the "never above" promise.
    while _epsilon_cached(sigma * ratio, q, steps, delta, accountant) > target:
        sigma = math.nextafter(sigma, math.inf) * (1 + 1e-12)
    return sigma


def _remembered_effective_noise(target: float, sample_rate: float, steps: int, delta: float,
                                accountant: str, rtol: float) -> float:
    """``calibrate_effective_noise``, remembered across sessions by the registered store."""
    store = _CALIBRATION_STORE
    question = {"target_epsilon": target, "sample_rate": sample_rate, "steps": steps, "delta": delta,
                "accountant": accountant, "rtol": rtol, "quantity": "sigma_eff"}
    if store is not None:
        known = store.get(question)
        if known is not None:
            return float(known)
    sigma_eff = calibrate_effective_noise(target, sample_rate=sample_rate, steps=steps, delta=delta,
                                          accountant=accountant, rtol=rtol)
    if store is not None:
        store.put(question, sigma_eff)
    return sigma_eff


#: Where calibrate_noise remembers answers across sessions (``get(question) -> float | None``,
#: ``put(question, sigma_eff)``, question a JSON-ready dict); set by the experiment layer, which
#: owns the on-disk cache (:class:`fairpriv_lab.experiment.cache.CalibrationMemo`).
_CALIBRATION_STORE: Any = None


def set_calibration_store(store: Any) -> Any:
    """Register the cross-session memo of :func:`calibrate_noise` (None: memory only); return the old one.

    The effective noise multiplier depends only on the question (target ε, sampling rate,
    steps, δ, accountant, tolerance; the method enters through its fixed ratio σ_eff / σ),
    so a stored answer is exact.
    """
    global _CALIBRATION_STORE
    old, _CALIBRATION_STORE = _CALIBRATION_STORE, store
    return old


def calibrate_effective_noise(
    target_epsilon: float,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: Accountant = "rdp",
    rtol: float = 0.005,
) -> float:
    """``sigma_eff`` of one subsampled Gaussian whose epsilon is in ``[(1 - rtol) target, target]``.

    A pure function of plain numbers (memoised in memory; its arguments are the whole cache
    key): every policy's ``sigma`` is this divided by its fixed ratio ``sigma_eff / sigma``.

    Examples
    --------
    >>> s = calibrate_effective_noise(3.0, sample_rate=0.01, steps=1000, delta=1e-5)
    >>> 0.985 * 3.0 <= epsilon_of(s, sample_rate=0.01, steps=1000, delta=1e-5) <= 3.0
    True
    """
    target = V.positive("target_epsilon", target_epsilon)
    V.number("sample_rate", sample_rate, 0.0, 1.0, low_open=True)
    V.integer("steps", steps, 1)
    V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    V.choice("accountant", accountant, ACCOUNTANTS)
    V.number("rtol", rtol, 0.0, 0.5, low_open=True)
    return _calibrate(float(target), float(sample_rate), int(steps), float(delta), str(accountant),
                      float(rtol))


@functools.lru_cache(maxsize=1024)
def _calibrate(target: float, q: float, steps: int, delta: float, accountant: str, rtol: float) -> float:
    hint: list[int | None] = [None]
    evaluated: dict[float, float] = {}

    def eps(sigma: float) -> float:
        if sigma not in evaluated:
            if accountant == "rdp":
                # Warm start: the best order moves little between neighbouring sigmas.
                e, hint[0] = _epsilon_and_order(sigma, q, steps, delta, "rdp", hint[0])
                _EPSILON_MEMO[(sigma, q, steps, delta, "rdp")] = e
            else:
                e = _epsilon_cached(sigma, q, steps, delta, accountant)
            evaluated[sigma] = e
        return evaluated[sigma]

    band = (target * (1 - rtol), target)
    aim = target * (1 - rtol / 2)  # the middle of the band; epsilon falls in sigma

    # Start: PRV is (nearly) never looser than RDP, so the RDP answer is a close upper guess.
    # For RDP, the small-q expansion RDP_a ~ a c with c = q^2 (e^{1/sigma^2} - 1) / 2 gives
    # eps ~ T c + 2 sqrt(T c log(1/delta)) at the order a - 1 = sqrt(log(1/delta) / (T c)):
    # a start (sigma and order) within a few percent; Opacus's values decide from there.
    slope = -1.0  # d log eps / d log sigma, refined by the secants
    if accountant != "rdp":
        x = _calibrate(target, q, steps, delta, "rdp", rtol)
    else:
        log_d = math.log(1.0 / delta)

        def approx(sigma: float) -> float:
            cc = (q * q * math.expm1(min(1.0 / sigma**2, 700.0)) / 2.0) if q < 1 else 1.0 / (2 * sigma**2)
            return steps * cc + 2.0 * math.sqrt(steps * cc * log_d)

        u = math.sqrt(log_d + target) - math.sqrt(log_d)
        c = u * u / steps
        x = 1.0 / math.sqrt(math.log1p(2.0 * c / (q * q))) if q < 1 else 1.0 / math.sqrt(2.0 * c)
        orders = _rdp_orders()
        a = 1.0 + math.sqrt(log_d) / u
        hint[0] = min(range(len(orders)), key=lambda i: abs(orders[i] - a))
        # the expansion's local slope is a better first secant than -1 (eps falls faster)
        slope = min((math.log(approx(x * 1.01)) - math.log(approx(x))) / math.log(1.01), -0.05)
    def f(log_sigma: float) -> float:
        e = eps(math.exp(log_sigma))
        if band[0] <= e <= band[1]:
            raise _Found(math.exp(log_sigma))
        return math.log(e) - math.log(aim) if e > 0 else -math.inf

    try:
        # Secant steps in (log sigma, log eps) until the target is bracketed, then Brent.
        lx, fx = math.log(x), f(math.log(x))
        while True:
            nxt = lx - fx / slope
            nxt = min(max(nxt, lx - math.log(16.0)), lx + math.log(16.0))
            if nxt > math.log(1e4):
                if lx >= math.log(1e4):
                    raise PrivacyAccountingError(
                        f"No noise multiplier up to 1e4 reaches target_epsilon={target:g} with "
                        f"sample_rate={q:g}, steps={steps}, delta={delta:g}; raise the target, "
                        "or lower the epochs or batch size"
                        + (" (the RDP accountant's orders stop at 63, so it cannot certify much "
                           "below ln(1/delta)/62 at any noise: try accountant='prv')"
                           if accountant == "rdp" else "") + "."
                    )
                nxt = math.log(1e4)
            if nxt < math.log(1e-3):
                return _confirm(1e-3, q, steps, delta, accountant, target, rtol)
            fn = f(nxt)
            if (fn > 0) != (fx > 0):
                break
            if math.isfinite(fn) and math.isfinite(fx) and fn != fx:
                slope = min((fn - fx) / (nxt - lx), -0.05)
            lx, fx = nxt, fn
        from scipy.optimize import brentq

        lo, hi = sorted((lx, nxt))
        root = brentq(f, lo, hi, xtol=rtol / 16, rtol=1e-12)
        found = min([s for s, e in evaluated.items() if e <= target], default=math.exp(root))
    except _Found as hit:
        found = hit.sigma
    return _confirm(found, q, steps, delta, accountant, target, rtol)


class _Found(Exception):
    def __init__(self, sigma: float):
        super().__init__(sigma)
        self.sigma = sigma


def _confirm(sigma: float, q: float, steps: int, delta: float, accountant: str, target: float,
             rtol: float) -> float:
    # The accountant's own (memoised) answer decides: never above the target.
    while _epsilon_cached(sigma, q, steps, delta, accountant) > target:
        sigma *= 1 + rtol / 8
    return sigma
