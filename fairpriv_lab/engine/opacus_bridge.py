"""Run DP-SGD-S / DP-SGD-F on one ordinary ``nn.Module`` with Opacus.

:class:`GroupDPOptimizer` is an Opacus ``DPOptimizer`` whose clipping stage asks a
:mod:`fairpriv_lab.engine.privacy` policy for per-group bounds ``C_k`` and whose noise stage uses
``sigma * max_k C_k``; the groups of the batch are passed with it (``set_groups``). The model is
wrapped in ``opacus.GradSampleModule`` as usual, so the notebooks can teach the real library
next to the vectorised engine::

    model = GradSampleModule(net)
    opt = GroupDPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), policy=DPSGDS(),
                           n_groups=2, noise_multiplier=1.0, max_grad_norm=1.0,
                           expected_batch_size=256, sample_rate=256 / len(train))
    for x, y, g in batches:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.set_groups(g)
        opt.step()
    opt.get_epsilon(delta=1e-5)   # every released statistic composed

Only one backward pass per ``step`` (no gradient accumulation across micro-batches: the
policy's statistics are per batch). It is the reference the vectorised engine is checked
against: one ensemble step of :class:`~fairpriv_lab.engine.privacy.DPStep` equals one step of
Opacus's optimizer with the same policy (``tests/unit/engine/test_opacus_compat.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _generate_noise, _mark_as_processed

from .._core import validate as V
from .._core.vocabulary import Accountant
from .models import FuncGrads
from .privacy import ClippingPolicy, DPStep, StepContext, as_method, epsilon_of

__all__ = ["GroupDPOptimizer"]


class GroupDPOptimizer(DPOptimizer):
    """Opacus ``DPOptimizer`` with a group clipping policy (DP-SGD, DP-SGD-S or DP-SGD-F).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Wraps the optimizer of a model wrapped in ``opacus.GradSampleModule``.
    policy : ClippingPolicy or str
        ``DPSGDS(...)``, ``DPSGDF(...)``, ``"dpsgd"``...
    n_groups : int
    noise_multiplier : float
        ``sigma`` (``>= 0``; the policy's statistic multipliers are tied to it).
    max_grad_norm : float
        The base bound ``C``.
    expected_batch_size : int
        ``b = q N``; the noisy sum is divided by it (``loss_reduction="mean"``).
    sample_rate : float or None
        ``q``, needed only by :meth:`get_epsilon`.
    generator : torch.Generator or None
        Source of all noise (gradient and statistics).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        policy: ClippingPolicy | str,
        n_groups: int,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        sample_rate: float | None = None,
        loss_reduction: Literal["mean", "sum"] = "mean",
        generator: torch.Generator | None = None,
    ):
        self.policy = as_method(policy)
        self.n_groups = V.integer("n_groups", n_groups, 1)
        V.number("noise_multiplier", noise_multiplier, 0.0)
        V.positive("max_grad_norm", max_grad_norm)
        super().__init__(optimizer, noise_multiplier=float(noise_multiplier),
                         max_grad_norm=float(max_grad_norm),
                         expected_batch_size=expected_batch_size,
                         loss_reduction=loss_reduction, generator=generator)
        self.sample_rate = sample_rate
        self.steps = 0
        self._groups: torch.Tensor | None = None
        self._noise_bound = float(max_grad_norm)
        self._state: torch.Tensor | None = None
        self.last_bounds: torch.Tensor | None = None

    def set_groups(self, groups: torch.Tensor) -> None:
        """Give the group id of every sample of the current batch, shape ``(B,)``."""
        self._groups = torch.as_tensor(groups, dtype=torch.long)

    def clip_and_accumulate(self) -> None:
        """Clip each per-sample gradient to its group's bound ``C_k`` and sum (Opacus stage)."""
        grad_samples = [self._get_flat_grad_sample(p).to(p.dtype) for p in self.params]
        B = grad_samples[0].shape[0]
        if self._groups is None or self._groups.shape != (B,):
            got = None if self._groups is None else tuple(self._groups.shape)
            raise V.fail("groups", got, f"to be set with set_groups() for the batch of {B} samples")
        dev = grad_samples[0].device
        grads = FuncGrads([g.unsqueeze(0) for g in grad_samples], torch.zeros(1, B, device=dev))
        stage = DPStep(self.policy, clip=self.max_grad_norm, noise_multiplier=self.noise_multiplier,
                       batch_size=float(self.expected_batch_size or 1), n_groups=self.n_groups)
        norms = stage.per_sample_norms(grads)
        groups = self._groups.to(dev).unsqueeze(0)
        onehot = torch.nn.functional.one_hot(groups, self.n_groups).to(norms.dtype)
        if self._state is None:
            self._state = self.policy.initial_state(1, self.n_groups, self.max_grad_norm, dev)
        pnoise = self.policy.draw_noise(1, self.n_groups, [tuple(p.shape) for p in self.params],
                                        self.generator, dev) if self.policy.private else {}
        ctx = StepContext(norms, onehot, onehot.sum(1), grads, pnoise, self._state,
                       self.noise_multiplier, self.max_grad_norm)
        decision = self.policy.bounds(ctx)
        factors = stage.clip_factors(norms, decision.sample_bounds, torch.ones_like(norms))
        summed = stage.clipped_sum(grads, factors)
        for p, s in zip(self.params, summed):
            p.summed_grad = s[0].to(p.dtype)
        self._noise_bound = float(decision.noise_bound[0])
        if decision.state is not None:
            self._state = decision.state
        self.last_bounds = decision.group_bounds[0].detach()
        self.steps += 1
        for p in self.params:
            # Opacus marks grad samples processed so that a forgotten zero_grad() is caught.
            _mark_as_processed(p.grad_sample)

    def add_noise(self) -> None:
        """Add ``N(0, sigma^2 max_k C_k^2)`` over all groups (not ``sigma * C``)."""
        for p in self.params:
            noise = _generate_noise(std=self.noise_multiplier * self._noise_bound,
                                    reference=p.summed_grad, generator=self.generator,
                                    secure_mode=self.secure_mode)
            p.grad = (p.summed_grad + noise).view_as(p)

    def get_epsilon(self, delta: float, *, accountant: Accountant = "rdp") -> float:
        """Epsilon after the steps taken, all released statistics composed (needs ``sample_rate``)."""
        if self.sample_rate is None:
            raise V.fail("sample_rate", None, "to be given to the optimizer for accounting")
        if self.noise_multiplier == 0 or not self.policy.private:
            return math.inf
        return epsilon_of(self.noise_multiplier, sample_rate=self.sample_rate, steps=max(self.steps, 1),
                          delta=delta, method=self.policy, accountant=accountant)

    def __repr__(self) -> str:
        return f"GroupDPOptimizer(policy={self.policy!r}, noise_multiplier={self.noise_multiplier})"
