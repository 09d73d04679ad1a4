"""Stacked model ensembles: every parameter carries a leading ``n_models`` axis.

Three engines compute per-sample gradients for many models at once (docs/design.md section 5):

* :class:`LinearStack` (``"lr"``, ``"mlp"``): stacks of linear layers with ``tanh`` between
  them. Back-propagation is written out by hand so that per-sample gradient norms come from
  ``||dW_i||^2 = ||h_i||^2 ||delta_i||^2`` and ``||db_i||^2 = ||delta_i||^2`` (the "ghost
  clipping" identity) and the weighted sum of per-sample gradients is one batched matmul
  ``h^T (f * delta)``; per-sample gradients are never materialised. With two classes and at
  most one hidden layer, :class:`BinaryGrads`: one output error per sample (the logit
  difference), and on sparse (one-hot) records first-layer sums over each record's nonzeros.
* :class:`SeqStack` (``"cnn"`` and user ``nn.Sequential`` stacks of convolutions, poolings,
  linear layers and activations): forward and backward written out for all models of a chunk
  at once (the models as the groups of one oneDNN convolution, channels-last), per
  convolution ghost norms (from the pixel Gram matrix) or per-sample gradients (im2col or
  grouped ``convolution_backward``), ghost norms for its linear layers. No ``vmap``, no
  ``autograd``.
* :class:`FuncStack` (any other ``torch.nn.Module`` factory): the generic path,
  ``torch.func.vmap`` over models of ``vmap(grad)`` over samples, materialising per-sample
  gradients.

All expose the same functional interface over a list of stacked parameter tensors (so the
training loop can slice any chunk of models): ``forward(params, x)`` and
``per_sample(params, x, y) -> PerSampleGrads``. Notebook 03 teaches the ghost-clipping identity.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from .._core import validate as V
from .._core.exceptions import UnsupportedModelError
from .._core.optional import optional_module
from .._core.vocabulary import MODELS
from . import elementary

__all__ = [
    "PerSampleGrads",
    "SparseBatch",
    "Workspace",
    "LinearStack",
    "FuncStack",
    "SeqStack",
    "CNN",
    "build_model",
    "check_supported",
]


class PerSampleGrads(Protocol):
    """Per-sample gradients of a chunk of models on a padded batch, shapes ``(M, B, ...)``."""

    losses: Tensor

    def norms(self) -> Tensor:
        """Per-sample gradient L2 norms over all parameters, shape ``(M, B)``."""

    def weighted_sum(self, factors: Tensor) -> list[Tensor]:
        """Return ``sum_i factors[m, i(, k)] * g_{m,i}`` per parameter.

        ``factors`` of shape ``(M, B)`` gives tensors ``(M, *shape)``; ``(M, B, K)`` gives
        ``(M, K, *shape)`` (one weighted sum per column, e.g. per group).
        """


# ----------------------------------------------------------------------------- fast path
def _xt_y(x: Tensor, y: Tensor) -> Tensor:
    """Batched ``x^T y`` for x (M, B, I), y (M, B, O): (M, I, O).

    With few outputs (LR, a last layer) ``(y^T x)^T`` is about 3x faster on CPU at the
    engine's shapes (measured: 400 x 256 x 103 x 2, 17 ms vs 5.4 ms), with many it is slower.
    """
    if y.shape[-1] < x.shape[-1]:
        return torch.bmm(y.transpose(1, 2), x).transpose(1, 2)
    return torch.bmm(x.transpose(1, 2), y)


def _x_w(h: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """Batched ``h W + b`` for h (M, B, I), W (M, I, O): (M, B, O).

    With few outputs (LR, a last layer) ``(W^T h^T)^T`` is 2-3x faster on CPU (measured at
    400 x 300 x 103 x 2: 22 ms vs 55 ms); the result is then a transposed view.
    """
    if W.shape[-1] < 16 and W.shape[-1] < h.shape[-1]:
        return torch.baddbmm(b.unsqueeze(-1), W.transpose(1, 2), h.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(b.unsqueeze(1), h, W)


@dataclass
class LinearGrads:
    """Activations and back-propagated errors of a :class:`LinearStack` batch.

    ``input_sq[l]`` is ``||h_{l-1, i}||^2`` per sample, ``(M, B)`` (for the first layer it
    comes from per-record norms computed once per run), or ``None`` to compute it here.
    """

    inputs: list[Tensor]  # h_{l-1}: (M, B, in_l)
    deltas: list[Tensor]  # dLoss_i/dz_l: (M, B, out_l)
    losses: Tensor  # (M, B)
    input_sq: list[Tensor | None] | None = None

    def norms(self) -> Tensor:
        sq = None
        given = self.input_sq or [None] * len(self.inputs)
        for h, d, h_sq in zip(self.inputs, self.deltas, given):
            if h_sq is None:
                h_sq = h.square().sum(-1)
            term = (h_sq + 1.0) * d.square().sum(-1)
            sq = term if sq is None else sq + term
        return elementary.sqrt(sq)

    def weighted_sum(self, factors: Tensor) -> list[Tensor]:
        out: list[Tensor] = []
        for h, d in zip(self.inputs, self.deltas):
            if factors.dim() == 2:
                fd = d * factors.unsqueeze(-1)
                out.append(_xt_y(h, fd))
                out.append(fd.sum(1))
            else:
                M, B, n_out = d.shape
                K = factors.shape[-1]
                fd = d.unsqueeze(2) * factors.unsqueeze(-1)  # (M, B, K, O)
                dW = _xt_y(h, fd.reshape(M, B, K * n_out))
                out.append(dW.reshape(M, -1, K, n_out).permute(0, 2, 1, 3))
                out.append(fd.sum(1))
        return out


def _bag_sum(sparse: tuple[Tensor, Tensor], table: Tensor) -> Tensor:
    """``sum_j vals[r, j] * table[cols[r, j]]`` for every row ``r`` of ``sparse`` ``(..., k)``: ``(rows, O)``.

    One ``embedding_bag`` over the flattened rows with explicit offsets (the form whose CPU
    kernel is FBGEMM's: 3-5x faster than the two-dimensional input at the engine's shapes).
    """
    cols, vals = sparse[0], sparse[1]
    k = cols.shape[-1]
    flat = cols.reshape(-1)
    offsets = torch.arange(0, flat.numel(), k, dtype=flat.dtype, device=flat.device)
    return torch.nn.functional.embedding_bag(flat, table, offsets, mode="sum",
                                             per_sample_weights=vals.reshape(-1).to(table.dtype))


def _shared_rows_times(W: Tensor, sparse: tuple[Tensor, Tensor]) -> Tensor:
    """``X W_m`` for every model ``m`` of ``W`` ``(M, d, O)``, ``X`` given by its rows ``(cols, vals)`` ``(B, k)``: ``(M, B, O)``."""
    M, d = W.shape[0], W.shape[1]
    cols, vals = sparse
    if M * d >= 2**31:
        cols = cols.long()
    offset = torch.arange(M, device=cols.device, dtype=cols.dtype).mul_(d).view(-1, 1, 1)
    rows = (cols.unsqueeze(0) + offset, vals.unsqueeze(0).expand(M, -1, -1))
    return _bag_sum(rows, W.reshape(-1, W.shape[-1])).view(M, cols.shape[0], -1)


class SparseBatch(NamedTuple):
    """A batch's inputs as nonzeros, for :meth:`LinearStack.per_sample`.

    ``cols``, ``vals`` ``(M, B, k)``: each row's nonzero columns (offset by ``m * d`` for model
    ``m``) and values (:meth:`LinearStack.sparse_first_layer`). Optionally their transpose for
    the first layer's clipped sum ``[X 1]^T diag(c) E`` (:func:`transpose_rows`): the nonzeros
    grouped by (model, column), column ``d`` standing for the bias (every real sample), as
    batch rows ``m B + b`` (increasing within a group), values, and each group's start.
    """

    cols: Tensor
    vals: Tensor
    t_rows: Tensor | None = None  # (nnz,)
    t_vals: Tensor | None = None  # (nnz,)
    t_offsets: Tensor | None = None  # (M (d + 1),)

    def models(self, lo: int, hi: int, d: int) -> SparseBatch:
        """Return the part of models ``lo..hi-1``, columns and rows relative to model ``lo``."""
        if lo == 0 and hi == self.cols.shape[0]:
            return self
        cols = self.cols[lo:hi] - lo * d
        if self.t_rows is None:
            return SparseBatch(cols, self.vals[lo:hi])
        B, n = self.cols.shape[1], self.t_rows.numel()
        start = int(self.t_offsets[lo * (d + 1)])
        end = int(self.t_offsets[hi * (d + 1)]) if hi < self.cols.shape[0] else n
        return SparseBatch(cols, self.vals[lo:hi], self.t_rows[start:end] - lo * B,
                           self.t_vals[start:end], self.t_offsets[lo * (d + 1):hi * (d + 1)] - start)


def transpose_rows(cols: Tensor, vals: Tensor, mask: Tensor | None, d: int) -> SparseBatch:
    """Add the transpose to a batch's nonzero rows ``(M, B, k)`` (:class:`SparseBatch`).

    Only real samples (``mask``) and nonzero values enter; a stable sort of the keys
    ``m (d + 1) + column`` keeps each group's rows in increasing order. The batch alone
    decides it, so the training loop makes it with the draws (on the draws thread).
    """
    M, B, k = cols.shape
    dev = cols.device
    model = torch.arange(M, device=dev, dtype=cols.dtype).view(-1, 1, 1)
    keys = torch.cat((cols + model, (model * (d + 1) + d).expand(M, B, 1)), -1)  # m d + c + m
    values = torch.cat((vals, torch.ones((M, B, 1), dtype=vals.dtype, device=dev)), -1)
    keep = values != 0
    if mask is not None:
        keep &= mask.view(M, B, 1).bool()
    # the rest sorts last, behind one more key (no boolean indexing: one argsort, one cut)
    keys = keys.masked_fill_(~keep, M * (d + 1)).view(-1)
    order = torch.argsort(keys, stable=True)[: int(keep.sum())]
    counts = torch.bincount(keys, minlength=M * (d + 1) + 1)[: M * (d + 1)]
    offsets = (counts.cumsum(0) - counts).to(cols.dtype)
    rows = torch.div(order, k + 1, rounding_mode="floor").to(cols.dtype)
    return SparseBatch(cols, vals, rows, values.view(-1).index_select(0, order), offsets)


#: A multiple of every CPU elementwise kernel's vector block (2 x 16 floats with AVX-512).
_LANES = 64
#: Values per call of :func:`_lanewise` with more than two threads (twice torch's grain).
_SLICE = 65536
#: Bytes of one (models, batch, hidden) tensor per block of the MLP's per-sample passes.
_BLOCK_BYTES = 1 << 20


def _lanewise(fn: Callable[..., Tensor], t: Tensor, out: Tensor | None = None) -> Tensor:
    """``fn(t, out=out)`` (in place without ``out``) with every element on torch's vector path.

    torch's CPU kernels run a tensor's last ``numel mod 32`` elements (and those of every
    thread's range) through a scalar loop, and for ``sigmoid`` and ``log1p`` the scalar and the
    vector code differ in the last bit: an element's value would then depend on where it lies,
    i.e. on how many models share a chunk. Here the bulk is cut at a multiple of ``_LANES``
    per thread (with more than two threads, into slices of ``_SLICE`` values, which torch
    splits at whole grains) and the rest is computed in a zero-padded ``_LANES``-multiple
    scratch, so every element gets the vector code (results do not depend on the chunking at
    a given thread count). ``t`` and ``out``
    must be contiguous (in place: or the transpose of a contiguous tensor's last two
    dimensions).
    """
    if out is None:
        out = t
        base = t if t.is_contiguous() else t.transpose(-1, -2)
        src = dst = base.view(-1)
    else:
        src, dst = t.view(-1), out.view(-1)
    if src.device.type != "cpu":
        fn(src, out=dst)
        return out
    n = src.numel()
    threads = max(1, torch.get_num_threads())
    if threads <= 2:  # torch splits a range among at most 2 threads at multiples of _LANES
        cut = n - n % (_LANES * threads)
        if cut:
            fn(src[:cut], out=dst[:cut])
    else:  # slices of two grains (32768 values each): at most 2 threads, each a whole grain
        cut = n - n % _SLICE
        for lo in range(0, cut, _SLICE):
            fn(src[lo:lo + _SLICE], out=dst[lo:lo + _SLICE])
    if cut < n:
        tail = src.new_zeros(-(-(n - cut) // _LANES) * _LANES)
        tail[: n - cut] = src[cut:]
        dst[cut:] = fn(tail, out=tail)[: n - cut]
    return out


class Workspace:
    """Flat buffers that every training step reuses (grown, by a quarter more, when a step needs more).

    A fresh tensor of tens of MB costs its page faults on every step (the allocator hands such
    blocks back to the system); results computed into a workspace are valid until the next
    call that uses it. Used by the LR/MLP step and by :class:`SeqStack`'s im2col and layout
    copies; not shared between threads.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: Tensor, zeros: bool = False) -> Tensor:
        """Return a tensor of ``shape`` with the dtype and device of ``like``.

        Its contents are undefined, except that with ``zeros`` a newly allocated buffer is
        zero-filled (a reused one keeps what the last step wrote).
        """
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = (like.new_zeros if zeros else like.new_empty)(n + n // 4)
            self._bufs[name] = buf
        return buf[:n].view(shape)


@functools.lru_cache(maxsize=1)
def _compiled():
    """Return the compiled kernels' module (:mod:`~fairpriv_lab.engine._fused`), or None after one warning."""
    # numba: imported on an MLP's first use, never by ``import fairpriv_lab``
    return optional_module("._fused", __package__, "The engine's compiled tanh kernels",
                           "MLPs train with torch's kernels (the same tanh, slower; row sums in "
                           "torch's order). Install numba (pip install numba).")


def _on_cpu32(*tensors: Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _tanh_(t: Tensor) -> Tensor:
    """Apply the engine's ``tanh`` to ``t`` in place; return ``t``.

    float32 on the CPU: the rational function of :mod:`~fairpriv_lab.engine.elementary` (compiled, or
    torch's kernels without numba: the same bits); elsewhere (a GPU, float64) torch's tanh.
    """
    if not _on_cpu32(t):
        return t.tanh_()
    fused = _compiled()
    return elementary.tanh_torch_(t) if fused is None else fused.tanh_(t)


def _exp_(t: Tensor) -> Tensor:
    """Apply the engine's ``exp`` to ``t`` in place; return ``t``.

    float32 on the CPU: :func:`~fairpriv_lab.engine.elementary.exp_torch_` (torch's CPU ``exp``
    is MKL's vector math, other bits on Intel than on AMD CPUs); elsewhere torch's exp.
    """
    return elementary.exp_torch_(t) if _on_cpu32(t) else t.exp_()


def _binary_logit(z: Tensor, b1: Tensor, w: Tensor) -> Tensor:
    """Return ``tanh(z + b1) . w`` per (model, sample) row ``(M, B)``: :func:`_binary_hidden`'s ``diff`` alone.

    The compiled kernel (:func:`fairpriv_lab.engine._fused.binary_logit`: the same lanes, so the
    same bits as training's pass) where :func:`_binary_hidden` takes it; otherwise torch's
    passes (``z`` is overwritten).
    """
    M, B, _ = z.shape
    diff = z.new_empty((M, B))
    fused = _compiled() if _on_cpu32(z, b1, w) else None
    if fused is not None:
        fused.binary_logit(z, b1, w, diff)
        return diff
    h = _tanh_(z.add_(b1.unsqueeze(1)))
    return torch.sum(h.mul_(w.unsqueeze(1)), -1, out=diff)


def _binary_hidden(z: Tensor, b1: Tensor, w: Tensor, h: Tensor, e: Tensor,
                   diff: Tensor, h_sq: Tensor, e_norm: Tensor) -> None:
    """Compute the two-class MLP's hidden layer for every (model, sample) row, into the given tensors.

    ``z`` ``(M, B, H)``: the first layer's products without the bias ``b1`` ``(M, H)``; ``w``
    ``(M, H)`` the difference of the output weights. Writes ``h = tanh(z + b1)`` and
    ``e = w - h^2 w`` ``(M, B, H)`` (``h`` may be ``z`` itself), and per row ``diff = h . w``,
    ``h_sq = ||h||^2``, ``e_norm = ||e||`` ``(M, B)``. Contiguous tensors. One compiled pass
    (:func:`fairpriv_lab.engine._fused.binary_hidden`) where :func:`_tanh_` takes the compiled
    kernel; otherwise torch's passes (row sums in torch's order).
    """
    fused = _compiled() if _on_cpu32(z, b1, w, h, e) else None
    if fused is not None:
        fused.binary_hidden(z, b1, w, h, e, diff, h_sq, e_norm)
        return
    _tanh_(torch.add(z, b1.unsqueeze(1), out=h))
    wb = w.unsqueeze(1)
    torch.sum(torch.mul(h, wb, out=e), -1, out=diff)
    torch.sum(torch.mul(h, h, out=e), -1, out=h_sq)
    torch.sub(wb, e.mul_(wb), out=e)  # w - h^2 w
    torch.linalg.vector_norm(e, dim=-1, out=e_norm)


def _binary_error(diff: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Output error ``a = p_0 - [y = 0]`` and cross-entropy from the logit difference ``z_0 - z_1``.

    With the margin ``t = z_y - z_other``: loss ``max(-t, 0) + log1p(exp(-|t|))`` and
    ``p_other = sigmoid(-t)``, both without cancellation; ``a = -p_1`` for ``y = 0`` and
    ``p_0`` for ``y = 1``. (The loss: :func:`binary_loss`; ``sigmoid`` goes through
    :func:`_lanewise`, so every element takes torch's vector code.)
    """
    sign = 1.0 - 2.0 * y.to(diff.dtype)  # +1 for class 0, -1 for class 1
    t = (diff * sign).neg_()
    losses = binary_loss(t)
    return _lanewise(torch.sigmoid, t).mul_(sign).neg_(), losses  # (sigmoid in place: after the loss)


def binary_loss(t: Tensor) -> Tensor:
    """Cross-entropy ``max(t, 0) + log1p(exp(-|t|))`` from the negated margin ``t = z_other - z_y``.

    ``exp`` is the engine's (:func:`_exp_`), ``log1p`` torch's vector code for every element
    (:func:`_lanewise`): the same bits on every CPU. Training (:func:`_binary_error`) and
    evaluation (:func:`~fairpriv_lab.engine.training.evaluate`) share it.
    """
    return _lanewise(torch.log1p, _exp_(t.abs().neg_())).add_(t.clamp(min=0.0))


@dataclass
class BinaryGrads:
    """Per-sample gradient factors of a two-class :class:`LinearStack` (LR, or one tanh layer).

    With two classes the output error ``delta_2 = softmax(z) - onehot(y)`` is ``(a, -a)`` with
    ``a = p_0 - [y = 0]``, so every per-sample gradient is ``a`` times a fixed pattern: for LR
    ``dW_i = a_i x_i (1, -1)``; for the MLP ``delta_1 = a_i e_i`` with ``e_i = w (1 - h_i^2)``,
    ``w = W_2[:, 0] - W_2[:, 1]``. Norms and clipped sums need only ``a``, ``h``, ``e``:
    ``||g_i||^2 = a_i^2 (2 (||x_i||^2 + 1))`` (LR) or ``a_i^2 ((||x_i||^2 + 1) ||e_i||^2 +
    2 (||h_i||^2 + 1))`` (MLP), and ``sum_i f_i g_i`` is one matmul ``[X 1]^T diag(f a) E`` for
    the first layer (the bias as a column of ones) and ``(f a)^T h`` for the second.
    """

    a: Tensor  # (M, B)
    losses: Tensor  # (M, B)
    x: Tensor | None  # (M, B, d) dense inputs, or None when ``sparse`` serves
    sparse: SparseBatch | tuple[Tensor, Tensor] | None  # (cols, vals) (M, B, k), cols offset by m * d
    x_sq: Tensor  # (M, B): ||x_i||^2
    d: int
    h: Tensor | None = None  # (M, B, H) hidden activations (MLP)
    e: Tensor | None = None  # (M, B, H) = w (1 - h^2)
    h_sq: Tensor | None = None  # (M, B)
    e_norm: Tensor | None = None  # (M, B): ||e_i||
    workspace: Workspace | None = None  # where the clipped sum of a 2-D ``factors`` goes

    def norms(self) -> Tensor:
        if self.h is None:
            sq = (self.x_sq + 1.0) * 2.0
        else:
            sq = (self.x_sq + 1.0) * self.e_norm.square() + (self.h_sq + 1.0) * 2.0
        return self.a.abs() * elementary.sqrt(sq)

    def head(self, top: int) -> BinaryGrads:
        """Return the factors of the first ``top`` models."""
        cut = None if self.sparse is None else SparseBatch(*self.sparse).models(0, top, self.d)
        part = [None if t is None else t[:top] for t in (self.x, self.h, self.e, self.h_sq, self.e_norm)]
        return BinaryGrads(self.a[:top], self.losses[:top], part[0], cut, self.x_sq[:top], self.d,
                           *part[1:], None)

    def _xt(self, e: Tensor) -> Tensor:
        """``X^T e`` per model for ``e`` ``(M, B, K)``: ``(M, K, d)``."""
        M, _, K = e.shape
        if self.x is not None:
            return torch.bmm(e.transpose(1, 2), self.x)
        cols, vals = self.sparse[0], self.sparse[1]  # scatter-add of each nonzero's share (k per record)
        idx, w = cols.reshape(-1).long(), vals.reshape(M, -1, vals.shape[-1])
        out = e.new_zeros((K, M * self.d))
        for j in range(K):
            out[j].scatter_add_(0, idx, (w * e[..., j:j + 1]).reshape(-1))
        return out.view(K, M, self.d).transpose(0, 1)

    def weighted_sum(self, factors: Tensor) -> list[Tensor]:
        single = factors.dim() == 2
        e = (factors.unsqueeze(-1) if single else factors) * self.a.unsqueeze(-1)  # (M, B, K)
        M, B, K = e.shape
        ends = e.sum(1)  # (M, K): the output bias, +/-
        if self.h is None:
            g = self._xt(e)  # (M, K, d)
            out = [torch.stack((g, g.neg()), -1), torch.stack((ends, ends.neg()), -1)]
        else:
            d, H = self.d, self.h.shape[-1]
            sp = self.sparse
            bags = torch.nn.functional.embedding_bag
            if self.x is None or (sp is not None and len(sp) == 5 and sp[2] is not None):
                # [X 1]^T diag(e_k) E: one embedding_bag over E's rows per (model, column) group
                if sp is None or len(sp) < 5 or sp[2] is None:
                    sp = transpose_rows(sp[0], sp[1], None, d)
                table = self.e.reshape(M * B, H)
                t_vals = sp.t_vals.to(e.dtype)
                parts = [bags(sp.t_rows, table, sp.t_offsets, mode="sum",
                              per_sample_weights=e[..., j].reshape(-1).index_select(0, sp.t_rows).mul_(t_vals))
                         for j in range(K)]
                first = torch.stack([t.view(M, d + 1, H) for t in parts], 1) if K > 1 else parts[0].view(M, 1, d + 1, H)
            else:  # [X 1] scaled by each column of e: (M, B, K, d + 1), then one matmul with E
                # (the clipped sum, 2-D factors, in the workspace; group sums, 3-D, fresh)
                ws = self.workspace if single and self.workspace is not None else Workspace()
                lhs = ws.take("lhs", (M, B, K, d + 1), e)
                torch.mul(self.x.unsqueeze(2), e.unsqueeze(-1), out=lhs[..., :d])
                lhs[..., d] = e
                first = ws.take("sum", (M, K, d + 1, H), e)
                torch.bmm(lhs.view(M, B, K * (d + 1)).transpose(1, 2), self.e,
                          out=first.view(M, K * (d + 1), H))
            # (f a)^T h: one bag of all B rows per model
            kind = torch.int32 if M * B < 2**31 else torch.int64
            rows = torch.arange(M * B, device=e.device, dtype=kind)
            table, starts = self.h.reshape(M * B, H), torch.arange(0, M * B, B, device=e.device, dtype=kind)
            second = torch.stack([bags(rows, table, starts, mode="sum", per_sample_weights=e[..., j].reshape(-1))
                                  for j in range(K)], 1)  # (M, K, H)
            out = [first[:, :, :d], first[:, :, d], torch.stack((second, second.neg()), -1),
                   torch.stack((ends, ends.neg()), -1)]
        return [t.squeeze(1) for t in out] if single else out


class LinearStack:
    """Ensemble of LR / MLP classifiers with stacked weights ``(n_models, in, out)``.

    The network is ``z_1 = x W_1 + b_1, h_1 = tanh(z_1), ..., logits = h_{L-1} W_L + b_L``;
    ``sizes=(d, C)`` is logistic (softmax) regression, ``sizes=(d, 256, C)`` the MLP.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to number of classes.

    Examples
    --------
    >>> import torch
    >>> net = LinearStack((3, 4, 2))
    >>> params = net.init(5, torch.Generator().manual_seed(0))
    >>> [tuple(p.shape) for p in params]
    [(5, 3, 4), (5, 4), (5, 4, 2), (5, 2)]
    >>> net.forward(params, torch.zeros(7, 3)).shape
    torch.Size([5, 7, 2])
    """

    fast = True

    def __init__(self, sizes: Sequence[int]):
        self.sizes = tuple(int(s) for s in sizes)
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise V.fail("sizes", sizes, "to hold at least two positive layer widths")
        self.n_classes = self.sizes[-1]
        self.input_shape = (self.sizes[0],)

    @property
    def n_params(self) -> int:
        """Parameters of one model."""
        return sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    def param_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of one model's parameters (without the model axis)."""
        shapes: list[tuple[int, ...]] = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            shapes += [(i, o), (o,)]
        return shapes

    def init(self, n_models: int, generator: torch.Generator, device: Any = "cpu") -> list[Tensor]:
        """PyTorch's default ``nn.Linear`` init, U(-1/sqrt(in), 1/sqrt(in)), for all models at once."""
        params: list[Tensor] = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1.0 / math.sqrt(i)
            for shape in ((n_models, i, o), (n_models, o)):
                u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
                params.append((2 * u - 1) * bound)
        return params

    def forward(self, params: Sequence[Tensor], x: Tensor,
                sparse: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Logits ``(M, B, C)``; ``x`` is ``(M, B, d)`` per model or ``(B, d)`` shared.

        ``sparse``: the rows of ``x`` (shared ``(B, d)``) as :meth:`sparse_first_layer` gives
        them, ``(B, k)`` each; the first layer then reads only the nonzero columns (one
        ``embedding_bag`` over the stacked ``W_1``, as in :meth:`per_sample`: the same
        products, equal to the dense matmul to float32 rounding).
        """
        h = x
        n_layers = len(params) // 2
        for layer in range(n_layers):
            W, b = params[2 * layer], params[2 * layer + 1]
            h = _shared_rows_times(W, sparse) if layer == 0 and sparse is not None else torch.matmul(h, W)
            h = h.add_(b.unsqueeze(1))  # in place: a fresh product (no second activation tensor)
            if layer < n_layers - 1:
                h = _tanh_(h)
        return h

    def logit_difference(self, params: Sequence[Tensor], x: Tensor,
                         sparse: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``z_0 - z_1`` ``(M, B)`` of a two-class network (:attr:`binary`), computed as training computes it.

        ``x`` and ``sparse`` as in :meth:`forward`. The logit difference is what
        :meth:`per_sample`'s two-class path computes (LR: ``x (W_0 - W_1) + b_0 - b_1``; MLP:
        ``tanh(z + b_1) . (w_0 - w_1)`` in the fused kernel's lanes, :func:`_binary_logit`), so a
        record's loss from evaluation equals training's at the same parameters, bit for bit, and
        no BLAS call decides its last bits (MKL's small matmuls run other kernels on Intel than
        on AMD CPUs). Dense inputs still go through a matmul for the first layer (dense LR: the
        difference of the two logits, as :meth:`forward` computes them).
        """
        W1 = params[0]
        if len(params) == 2 and sparse is None:  # dense LR: the two logits of one matmul (a one-column
            z = torch.matmul(x, W1).add_(params[1].unsqueeze(1))  # matmul takes other kernels per chunk size)
            return z[..., 0] - z[..., 1]
        if len(params) == 2:
            diff = _shared_rows_times((W1[..., 0] - W1[..., 1]).unsqueeze(-1), sparse).squeeze(-1)
        else:
            z = _shared_rows_times(W1, sparse) if sparse is not None else torch.matmul(x, W1)
            diff = _binary_logit(z, params[1], params[2][..., 0] - params[2][..., 1])
        b_out = params[-1]
        return diff.add_((b_out[:, 0] - b_out[:, 1]).unsqueeze(1))

    def eval_rows(self, n_models: int) -> int:
        """Return the records per block of :func:`~fairpriv_lab.engine.training.evaluate`.

        Hidden activations of about 16 MiB (cache-sized; a larger block's fresh pages cost more
        than its products: Adult MLP-256, 32 models, 4,096-record blocks 2.4 s, 512-record 1.8 s).
        """
        width = max(self.sizes[1:])
        return int(min(4096, max(256, (16 << 20) // max(1, 4 * width * n_models))))

    @property
    def binary(self) -> bool:
        """Two classes and at most one hidden layer: the :class:`BinaryGrads` fast path."""
        return self.n_classes == 2 and len(self.sizes) <= 3

    def sparse_first_layer(self, X: Tensor) -> tuple[Tensor, Tensor] | None:
        """Per-record nonzero columns and values of ``X``, for :meth:`per_sample`'s ``sparse``.

        Returns ``(cols, vals)`` of shape ``(n_records, k)`` (``k`` the most nonzeros of a
        record; each row's nonzero columns in increasing order, padded with zero values; the
        columns as int32), or ``None`` when the first layer has few outputs and more than two
        classes (the class-major matmul serves it) or a record has more than a quarter of its
        features nonzero (a dense matmul is cheaper).
        """
        d = self.sizes[0]
        if (self.sizes[1] < 16 and not self.binary) or X.dim() != 2 or X.dtype != torch.float32 \
                or X.device.type != "cpu":
            return None  # (on a GPU the dense matmul is the fast path)
        n = X.shape[0]
        k = max((int((X[r:r + 8192] != 0).sum(1).max()) for r in range(0, n, 8192)), default=d)
        if 4 * max(k, 1) > d:
            return None
        k = max(k, 1)
        cols = torch.empty((n, k), dtype=torch.int64, device=X.device)
        order = torch.arange(d, device=X.device)
        for r in range(0, n, 8192):  # blocks of rows: the sort key is 8 bytes per value
            # nonzero columns first, each group in increasing column order
            key = (X[r:r + 8192] == 0).to(torch.int64) * d + order
            cols[r:r + 8192] = key.argsort(1)[:, :k]
        return cols.to(torch.int32), X.gather(1, cols)

    def dense_input_needed(self, sparse: bool) -> bool:
        """Whether :meth:`per_sample` reads the dense inputs.

        Not for two classes on sparse rows: LR's clipped sum is a scatter-add of the nonzeros,
        the MLP's runs over the transposed rows (:func:`transpose_rows`).
        """
        return not (sparse and self.binary)

    def per_sample(self, params: Sequence[Tensor], x: Tensor | None, y: Tensor,
                   sparse: tuple[Tensor, Tensor] | None = None,
                   x_sq: Tensor | None = None,
                   workspace: Workspace | None = None) -> LinearGrads | BinaryGrads:
        """Forward and hand-written backward pass of the per-sample cross-entropy.

        ``sparse``: the batch's rows of :meth:`sparse_first_layer`, ``(M, B, k)`` each, with the
        columns offset by ``m * d`` for model ``m`` of the chunk; the first layer's forward is
        then ``embedding_bag`` over those rows of the stacked ``W_1`` (``k`` instead of ``d``
        multiply-adds per output; the same products as the dense matmul, summed in FBGEMM's
        order: equal to float32 rounding). ``x_sq``: ``||x_i||^2`` of the batch ``(M, B)``
        (the training loop takes them from per-record norms computed once per run); computed
        here when ``None``. ``x`` may be ``None`` where :meth:`dense_input_needed` says so.
        ``workspace``: buffers reused from step to step (the training loop's); the result then
        lives in them until the next call with the same workspace.

        Two classes and at most one hidden layer (:attr:`binary`) take the factored path of
        :class:`BinaryGrads`; otherwise ``delta_L = softmax(z_L) - onehot(y)``,
        ``delta_l = (delta_{l+1} W_{l+1}^T) * (1 - h_l^2)`` and a :class:`LinearGrads`, whose
        ``input_sq`` holds ``||h_l||^2`` of the hidden layers (the squares that tanh's
        derivative needs anyway). ``tanh`` is the engine's (:mod:`~fairpriv_lab.engine.elementary`).
        ``tests/unit/engine/test_models.py`` holds every path to the per-sample loop.
        """
        if x_sq is None:
            x_sq = x.square().sum(-1)
        if self.binary:
            return self._per_sample_binary(params, x, y, sparse, x_sq, workspace)
        n_layers = len(params) // 2
        inputs: list[Tensor] = []
        h = x
        for layer in range(n_layers):
            W, b = params[2 * layer], params[2 * layer + 1]
            inputs.append(h)
            if layer == 0 and sparse is not None:
                M, B = sparse[0].shape[:2]
                z = _bag_sum(sparse, W.reshape(-1, W.shape[-1])).view(M, B, -1).add_(b.unsqueeze(1))
            else:
                z = _x_w(h, W, b)
            h = _tanh_(z) if layer < n_layers - 1 else z
        # Few classes: _x_w returned the logits as a view of class-major (M, C, B) memory;
        # the softmax and its error run in that layout (contiguous along the batch).
        class_major = h.stride(-1) != 1 and h.transpose(1, 2).is_contiguous()
        zc = h.transpose(1, 2) if class_major else h
        dim = 1 if class_major else -1
        yc = y.unsqueeze(dim)
        logp = torch.log_softmax(zc, dim=dim)
        losses = -logp.gather(dim, yc).squeeze(dim)
        delta = _exp_(logp)
        delta.scatter_add_(dim, yc, torch.full(yc.shape, -1.0, dtype=delta.dtype, device=delta.device))
        if class_major:
            delta = delta.transpose(1, 2)
        deltas = [delta]
        input_sq: list[Tensor | None] = [None] * n_layers
        for layer in range(n_layers - 1, 0, -1):
            W = params[2 * layer]
            # h_l^2 once: its row sums are the ghost norm's ||h_l||^2, then in place 1 - h_l^2
            # is tanh's derivative (the same arithmetic as computing each on its own)
            sq = inputs[layer].square()
            input_sq[layer] = sq.sum(-1)
            delta = torch.bmm(delta, W.transpose(1, 2)).mul_(sq.neg_().add_(1))
            deltas.append(delta)
        deltas.reverse()
        input_sq[0] = x_sq
        return LinearGrads(inputs, deltas, losses, input_sq)

    def _per_sample_binary(self, params: Sequence[Tensor], x: Tensor | None, y: Tensor,
                           sparse: tuple[Tensor, Tensor] | None, x_sq: Tensor,
                           workspace: Workspace | None) -> BinaryGrads:
        """:meth:`per_sample` for two classes: only the logit difference and ``a`` per sample.

        The MLP's per-sample pass over ``(M, B, H)``: the first layer's products ``z``, then
        ``h = tanh(z + b_1)``, ``e = w - h^2 w`` and the row sums ``h . w``, ``||h||^2``,
        ``||e||`` in one fused pass (:func:`_binary_hidden`). Every
        value is computed row by row, the same whatever the chunk of models.
        """
        d = self.sizes[0]
        M, B = y.shape
        W1, b1 = params[0], params[1]
        if len(params) == 2:  # LR: the logit difference z_0 - z_1 = x (W_0 - W_1) + b_0 - b_1
            w = W1[..., 0] - W1[..., 1]  # (M, d)
            if sparse is not None:
                diff = _bag_sum(sparse, w.reshape(-1, 1)).view(M, B)
            else:
                diff = torch.bmm(w.unsqueeze(1), x.transpose(1, 2)).view(M, B)
            diff = diff.add_((b1[:, 0] - b1[:, 1]).unsqueeze(1))
            a, losses = _binary_error(diff, y)
            return BinaryGrads(a, losses, x if sparse is None else None, sparse, x_sq, d)
        W2, b2 = params[2], params[3]
        H = W1.shape[-1]
        ws = Workspace() if workspace is None else workspace
        h, e = ws.take("h", (M, B, H), W1), ws.take("e", (M, B, H), W1)
        diff, h_sq, e_norm = (W1.new_empty((M, B)) for _ in range(3))
        w = W2[..., 0] - W2[..., 1]  # (M, H)
        table = W1.reshape(-1, H)
        # Blocks of models of about _BLOCK_BYTES per (B, H) tensor: z stays in cache for the fused pass.
        step = max(1, _BLOCK_BYTES // max(1, B * H * W1.element_size()))
        for lo in range(0, M, step):
            hi = min(M, lo + step)
            hb = h[lo:hi]
            if sparse is not None:
                z = _bag_sum((sparse[0][lo:hi], sparse[1][lo:hi]), table).view(hi - lo, B, H)
            else:
                z = torch.bmm(x[lo:hi], W1[lo:hi], out=hb)
            # h = tanh(z + b_1), e = w - h^2 w and the row sums h . w, ||h||^2, ||e||: one pass
            _binary_hidden(z, b1[lo:hi], w[lo:hi], hb, e[lo:hi], diff[lo:hi], h_sq[lo:hi], e_norm[lo:hi])
        a, losses = _binary_error(diff.add_((b2[:, 0] - b2[:, 1]).unsqueeze(1)), y)
        return BinaryGrads(a, losses, x, sparse, x_sq, d, h, e, h_sq, e_norm, workspace)

    def bytes_per_sample(self) -> int:
        """Rough bytes of activations per (model, sample) in one training step."""
        return 4 * 4 * sum(self.sizes) + 64

    def to_module(self, params: Sequence[Tensor], m: int) -> nn.Module:
        """Return model ``m`` as an ordinary ``nn.Sequential`` (weights copied).

        Its ``nn.Tanh`` is torch's tanh, within 4e-7 of the engine's float32 one
        (:mod:`~fairpriv_lab.engine.elementary`).
        """
        layers: list[nn.Module] = []
        n_layers = len(params) // 2
        for layer in range(n_layers):
            W, b = params[2 * layer][m], params[2 * layer + 1][m]
            lin = nn.Linear(W.shape[0], W.shape[1], dtype=W.dtype)
            with torch.no_grad():
                lin.weight.copy_(W.T)
                lin.bias.copy_(b)
            layers.append(lin)
            if layer < n_layers - 1:
                layers.append(nn.Tanh())
        return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- generic path
# Layers whose output for one sample depends on other samples of the batch (BatchNorm) or on
# fresh randomness (Dropout) have no well-defined per-sample gradient; recurrent layers are
# not supported by torch.func's vmap over models.
_UNSUPPORTED: tuple[tuple[type, str], ...] = (
    (nn.modules.batchnorm._BatchNorm, "it mixes samples of a batch; use GroupNorm or LayerNorm"),
    (nn.modules.dropout._DropoutNd, "it draws global randomness; remove it (DP noise regularises)"),
    (nn.RNNBase, "recurrent layers are not supported by the vectorised engine"),
)


def check_supported(module: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` naming the first layer the engine cannot handle."""
    for name, sub in module.named_modules():
        for kind, why in _UNSUPPORTED:
            if isinstance(sub, kind):
                label = name or "<root>"
                raise UnsupportedModelError(
                    f"Layer {label!r} ({type(sub).__name__}) is not supported: {why}."
                )


@dataclass
class FuncGrads:
    """Materialised per-sample gradients ``(M, B, *shape)`` from :class:`FuncStack`."""

    grads: list[Tensor]
    losses: Tensor

    def norms(self) -> Tensor:
        sq = sum(g.flatten(2).square().sum(-1) for g in self.grads)
        return elementary.sqrt(sq)

    def weighted_sum(self, factors: Tensor) -> list[Tensor]:
        out = []
        for g in self.grads:
            flat = g.flatten(2)  # (M, B, P)
            if factors.dim() == 2:
                s = torch.bmm(factors.unsqueeze(1), flat).squeeze(1)
                out.append(s.reshape(g.shape[0], *g.shape[2:]))
            else:
                s = torch.bmm(factors.transpose(1, 2), flat)  # (M, K, P)
                out.append(s.reshape(g.shape[0], factors.shape[-1], *g.shape[2:]))
        return out


class FuncStack:
    """Ensemble of any ``nn.Module`` built by ``factory()``, through ``torch.func``.

    Per-sample gradients are ``vmap`` over models of ``vmap(grad(loss))`` over samples.
    Each model is built by calling ``factory()`` under a private torch RNG seeded from the
    model's own seed, so initial weights do not depend on how models are chunked.

    Parameters
    ----------
    factory : callable
        Returns a fresh ``nn.Module`` mapping ``(B, *input_shape)`` to logits ``(B, C)``.
    input_shape : tuple of int
        Shape of one input record, e.g. ``(1, 8, 8)``.
    n_classes : int

    Raises
    ------
    UnsupportedModelError
        If the module holds a layer without per-sample gradients (BatchNorm, Dropout, RNNs).
    """

    fast = False

    def __init__(self, factory: Callable[[], nn.Module], input_shape: Sequence[int], n_classes: int):
        self.factory = factory
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_classes = int(n_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            base = factory()
        if not isinstance(base, nn.Module):
            raise V.fail("model", factory, "to be 'lr', 'mlp', 'cnn' or a callable returning an nn.Module")
        check_supported(base)
        self._names = [n for n, _ in base.named_parameters()]
        self._shapes = [tuple(p.shape) for _, p in base.named_parameters()]
        self._buffers = {n: b.detach().clone() for n, b in base.named_buffers()}
        self._base = base.to("meta")

    @property
    def n_params(self) -> int:
        """Parameters of one model."""
        return int(sum(np.prod(s) for s in self._shapes))

    def param_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of one model's parameters (without the model axis)."""
        return list(self._shapes)

    def init(self, n_models: int, seeds: Sequence[int], device: Any = "cpu") -> list[Tensor]:
        """Build ``n_models`` modules, model ``m`` under ``torch.manual_seed(seeds[m])``."""
        per_model: list[list[Tensor]] = []
        for m in range(n_models):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seeds[m]))
                mod = self.factory()
            per_model.append([p.detach().float() for p in mod.parameters()])
        return [torch.stack([pm[j] for pm in per_model]).to(device) for j in range(len(self._names))]

    def _call(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        pdict = dict(zip(self._names, params))
        bdict = {n: b.to(x.device) for n, b in self._buffers.items()}
        return torch.func.functional_call(self._base, (pdict, bdict), (x,))

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        """Logits ``(M, B, C)``; ``x`` is ``(M, B, *input_shape)`` or shared ``(B, *input_shape)``."""
        in_x = 0 if x.dim() == len(self.input_shape) + 2 else None
        return torch.func.vmap(self._call, in_dims=(0, in_x))(list(params), x)

    def per_sample(self, params: Sequence[Tensor], x: Tensor, y: Tensor) -> FuncGrads:
        """Per-sample gradients of the cross-entropy, materialised as ``(M, B, *shape)``."""

        def loss_one(p: list[Tensor], xi: Tensor, yi: Tensor) -> tuple[Tensor, Tensor]:
            logits = self._call(p, xi.unsqueeze(0))
            loss = torch.nn.functional.cross_entropy(logits, yi.unsqueeze(0))
            return loss, loss.detach()

        per_sample = torch.func.vmap(torch.func.grad(loss_one, has_aux=True), in_dims=(None, 0, 0))
        grads, losses = torch.func.vmap(per_sample, in_dims=(0, 0, 0))(list(params), x, y)
        return FuncGrads(list(grads), losses)

    def bytes_per_sample(self) -> int:
        """Rough bytes per (model, sample) in one step: per-sample gradients dominate."""
        return 4 * 3 * self.n_params + 4 * 64 * int(np.prod(self.input_shape))

    def to_module(self, params: Sequence[Tensor], m: int) -> nn.Module:
        """Return model ``m`` as an ordinary module (weights copied)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            mod = self.factory()
        with torch.no_grad():
            for p, src in zip(mod.parameters(), params):
                p.copy_(src[m])
        return mod


# ----------------------------------------------------------------------------- layered path
_SEQ_ACTIVATIONS = (nn.Tanh, nn.ReLU, nn.Sigmoid)
#: Derivatives of the activations from their outputs ``y``.
_DERIVATIVE: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda y: 1 - y.square(),
    "sigmoid": lambda y: y * (1 - y),
    "relu": lambda y: (y > 0).to(y.dtype),
}


def _sequential_layers(module: nn.Module) -> list[nn.Module] | None:
    """Return the layers of a feed-forward stack the batched path supports, else ``None``.

    Supported: ``Conv2d`` (groups 1, dilation 1, zero padding), ``Linear``, ``MaxPool2d`` and
    ``AvgPool2d`` (no ceil mode), ``Tanh``, ``ReLU``, ``Sigmoid`` and ``Flatten``, in an
    ``nn.Sequential`` (or the :class:`CNN`, whose ``net`` is one) without buffers.
    Convolutions and poolings take images, linear layers vectors (a ``Flatten`` between).
    """
    seq = module.net if isinstance(module, CNN) else module
    if not isinstance(seq, nn.Sequential) or any(True for _ in module.buffers()):
        return None
    layers = list(seq)
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if (layer.groups != 1 or tuple(layer.dilation) != (1, 1) or layer.padding_mode != "zeros"
                    or isinstance(layer.padding, str)):
                return None
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            if layer.ceil_mode or (isinstance(layer, nn.MaxPool2d) and layer.dilation not in (1, (1, 1))):
                return None
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                return None
        elif not isinstance(layer, (nn.Linear, *_SEQ_ACTIVATIONS)):
            return None
    return layers


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class _Op:
    """One layer of a :class:`SeqStack`, with its per-sample shapes in the engine's layout.

    Images are channels-last ``(H, W, C)``, vectors ``(F,)``. ``w``/``b`` index the stacked
    parameters (``-1``: none). For a convolution ``geom = (C, O, kh, kw, sh, sw, ph, pw)``.
    """

    kind: str  # "conv", "linear", "maxpool", "avgpool", "tanh", "relu", "sigmoid", "flatten"
    layer: nn.Module
    w: int
    b: int
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]
    geom: tuple[int, ...] = ()


def _compile(layers: list[nn.Module], input_shape: tuple[int, ...]) -> list[_Op] | None:
    """Per-sample shapes of every layer, or ``None`` when a layer gets the wrong kind of input."""
    ops: list[_Op] = []
    shape: tuple[int, ...] = ((input_shape[1], input_shape[2], input_shape[0])
                              if len(input_shape) == 3 else tuple(input_shape))
    j = 0
    for layer in layers:
        w = b = -1
        geom: tuple[int, ...] = ()
        if isinstance(layer, nn.Conv2d):
            if len(shape) != 3 or shape[2] != layer.in_channels:
                return None
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, _pair(layer.stride), _pair(layer.padding)
            ho, wo = (shape[0] + 2 * ph - kh) // sh + 1, (shape[1] + 2 * pw - kw) // sw + 1
            if ho < 1 or wo < 1:
                return None
            w, j = j, j + 1
            if layer.bias is not None:
                b, j = j, j + 1
            geom = (layer.in_channels, layer.out_channels, kh, kw, sh, sw, ph, pw)
            out: tuple[int, ...] = (ho, wo, layer.out_channels)
            kind = "conv"
        elif isinstance(layer, nn.Linear):
            if len(shape) != 1 or shape[0] != layer.in_features:
                return None
            w, j = j, j + 1
            if layer.bias is not None:
                b, j = j, j + 1
            out, kind = (layer.out_features,), "linear"
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            if len(shape) != 3:
                return None
            probe = layer(torch.zeros((1, shape[2], shape[0], shape[1])))
            out = (probe.shape[2], probe.shape[3], probe.shape[1])
            kind = "maxpool" if isinstance(layer, nn.MaxPool2d) else "avgpool"
        elif isinstance(layer, nn.Flatten):
            out, kind = (int(np.prod(shape)),), "flatten"
        else:
            out, kind = shape, type(layer).__name__.lower()
        ops.append(_Op(kind, layer, w, b, shape, out, geom))
        shape = out
    if len(shape) != 1:
        return None
    return _crop_for_pooling(ops)


def _crop_for_pooling(ops: list[_Op]) -> list[_Op]:
    """Shrink a convolution's output grid to the rows and columns its pooling reads.

    A pooling without padding and without ceil mode reads ``(out - 1) * stride + kernel``
    rows (the CNN's 5x5 map under a 2x2 pooling: 4 rows); the rest are never used, so they
    are not computed (their errors would be zero). Elementwise layers between keep the crop.
    """
    ops = list(ops)
    for i, op in enumerate(ops):
        if op.kind != "conv":
            continue
        j = i + 1
        while j < len(ops) and ops[j].kind in _DERIVATIVE:
            j += 1
        if j == len(ops) or ops[j].kind not in ("maxpool", "avgpool") or _pair(ops[j].layer.padding) != (0, 0):
            continue
        L = ops[j].layer
        (kh, kw), (sh, sw) = _pair(L.kernel_size), _pair(L.stride or L.kernel_size)
        ho, wo = ops[j].shape_out[0], ops[j].shape_out[1]
        shape = ((ho - 1) * sh + kh, (wo - 1) * sw + kw, op.shape_out[2])
        if shape == op.shape_out:
            continue
        ops[i] = replace(op, shape_out=shape)
        for k in range(i + 1, j):
            ops[k] = replace(ops[k], shape_in=shape, shape_out=shape)
        ops[j] = replace(ops[j], shape_in=shape)
    return ops


#: Per-sample convolution gradients by im2col and one matmul per sample up to this many
#: values of ``U`` per sample (positions x kernel rows), else by oneDNN's grouped kernels.
_ROWS_MAX = 4096


def _grouped(x: Tensor, M: int) -> Tensor:
    """``(M B, C, H, W)`` (model-major) -> ``(B, M C, H, W)`` in channels-last memory: models as groups."""
    N, C, H, W = x.shape
    g = x.view(M, N // M, C, H, W).permute(1, 0, 2, 3, 4).reshape(N // M, M * C, H, W)
    return g.contiguous(memory_format=torch.channels_last)


def _cl_weight(W: Tensor) -> Tensor:
    """Stacked weights ``(M, O, C, kh, kw)`` as one grouped weight ``(M O, C, kh, kw)``, channels-last.

    With one input channel a contiguous weight would make oneDNN pick its NCHW kernels (and
    convert the channels-last input and output): 3-7x slower for the first convolution.
    """
    return W.reshape(-1, *W.shape[2:]).contiguous(memory_format=torch.channels_last)


def _ungrouped(g: Tensor, M: int) -> Tensor:
    """Inverse of :func:`_grouped`, flattened per model: ``(B, M C, H, W)`` -> ``(M B, C H W)``."""
    B, MC, H, W = g.shape
    return g.view(B, M, MC // M, H, W).permute(1, 0, 2, 3, 4).reshape(M * B, -1)


def _crop(op: _Op) -> tuple[int, int, int, int]:
    """Return the crop of a convolution's input and output grids that a following pooling reads.

    ``(rows, cols)`` of the input and ``(rows, cols)`` of the output grid that hold every
    output position a following pooling reads (:func:`_crop_for_pooling`). Output positions outside the crop have zero errors, so per-sample gradients and ghost
    norms computed on the crop are exact. With padding the input is not cut (the padding of
    the far side would move); the output grid is then the full one.
    """
    C, n_out, kh, kw, sh, sw, ph, pw = op.geom
    H, W = op.shape_in[0], op.shape_in[1]
    rows = min(H, (op.shape_out[0] - 1) * sh + kh - ph) if ph == 0 else H
    cols = min(W, (op.shape_out[1] - 1) * sw + kw - pw) if pw == 0 else W
    return rows, cols, (rows + 2 * ph - kh) // sh + 1, (cols + 2 * pw - kw) // sw + 1


def _unfold(h: Tensor, op: _Op, M: int, scratch: Workspace | None = None) -> Tensor:
    """im2col of the grouped input ``(B, M C, H, W)`` over the cropped output grid.

    Returns rows ``(B M, P, kh kw C)`` (sample-major, one copy).
    """
    C, _, kh, kw, sh, sw, ph, pw = op.geom
    B, _, H, W = h.shape
    x = h.permute(0, 2, 3, 1).reshape(B, H, W, M, C)
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, pw, pw, ph, ph))
    ho, wo = op.shape_out[0], op.shape_out[1]
    x = x[:, :(ho - 1) * sh + kh, :(wo - 1) * sw + kw]
    patches = x.unfold(1, kh, sh).unfold(2, kw, sw)  # (B, ho, wo, M, C, kh, kw), a strided view
    patches = patches.permute(0, 3, 1, 2, 5, 6, 4)
    if scratch is None:
        return patches.reshape(B * M, ho * wo, kh * kw * C)
    out = scratch.take("unfold", tuple(patches.shape), h)
    return out.copy_(patches).view(B * M, ho * wo, kh * kw * C)


def _rows(d: Tensor, op: _Op, M: int, scratch: Workspace | None = None) -> Tensor:
    """Errors of the grouped output ``(B, M O, Ho, Wo)`` on the cropped grid: ``(B M, P, O)``."""
    B, MO, _, _ = d.shape
    ho, wo = op.shape_out[0], op.shape_out[1]
    x = d[:, :, :ho, :wo].permute(0, 2, 3, 1).reshape(B, ho, wo, M, MO // M).permute(0, 3, 1, 2, 4)
    if scratch is None:
        return x.reshape(B * M, ho * wo, MO // M)
    return scratch.take("rows", tuple(x.shape), d).copy_(x).view(B * M, ho * wo, MO // M)


@dataclass
class _ConvPiece:
    """Per-sample gradient data of one convolution, all models of a chunk.

    ``h`` is the grouped input ``(B, M C, H, W)`` as the convolution computed it (``op``; the
    crop of an unpadded one) and ``d`` the grouped errors at its output ``(B, M O, Ho, Wo)``
    (channels-last). Mode ``"psg"``: per-sample weight gradients ``g`` ``(M, B, O C kh kw)``
    (or ``(kh kw C O)`` when ``rows``) and bias gradients ``gb`` ``(M, B, O)``, views, from
    im2col and one matmul per sample or from one ``convolution_backward`` with every (sample,
    model) pair a group; the clipped sum is one batched matmul over them. Mode ``"ghost"``:
    ghost norms from the Gram matrices of the errors and of the unfolded input (``pixel_map``:
    from the Gram matrix of the pixels of ``pixels``, the layer's own input); the clipped sum
    is one grouped ``convolution_backward`` (models as groups) of the input and the errors
    scaled by the factors, one call per column of the factors.
    """

    mode: str
    op: _Op
    h: Tensor
    d: Tensor
    W: Tensor  # (M, O, C, kh, kw)
    bias: bool
    g: Tensor | None = None
    gb: Tensor | None = None  # per-sample bias gradients (M, B, O) (mode "psg"; "ghost": after sq_norms)
    rows: bool = False  # g from im2col rows: (kh, kw, C, O) order, else (O, C, kh, kw)
    scratch: Workspace | None = None
    pixel_map: Tensor | None = None  # ghost norms: the map from pixel Gram to patch Gram
    pixels: Tensor | None = None  # with pixel_map: the layer's own input (uncropped, unpadded)

    @property
    def M(self) -> int:
        return self.W.shape[0]

    def sq_norms(self) -> Tensor:
        """Squared per-sample gradient norms ``(M, B)``."""
        if self.mode == "psg":
            sq = torch.linalg.vector_norm(self.g, dim=-1).square()
        else:
            M = self.M
            B = self.h.shape[0]
            D = _rows(self.d, self.op, M, self.scratch)  # (B M, P, O)
            if self.bias:
                self.gb = D.sum(1).view(B, M, -1).transpose(0, 1)
            dd = torch.bmm(D, D.transpose(1, 2))
            if self.pixel_map is not None:  # U U^T = A(X X^T): no im2col (see _pixel_gram_map)
                H, W = self.pixels.shape[2:]
                C = self.op.geom[0]
                x = self.pixels.permute(0, 2, 3, 1).reshape(B, H * W, M, C).transpose(1, 2)
                X = self.scratch.take("pixels", tuple(x.shape), x).copy_(x).view(B * M, H * W, C)
                S = torch.bmm(X, X.transpose(1, 2)).view(B * M, -1)
                if B * M < 8:  # MKL takes another kernel for 1-3 rows: pad, so that chunks agree
                    S = torch.nn.functional.pad(S, (0, 0, 0, 8 - B * M))
                uu = torch.mm(S, self.pixel_map)[:B * M]
            else:
                U = _unfold(self.h, self.op, M, self.scratch)  # (B M, P, width)
                uu = torch.bmm(U, U.transpose(1, 2))
            sq = torch.linalg.vecdot(uu.flatten(1), dd.flatten(1)).view(B, M).transpose(0, 1)
        if self.bias:
            sq = sq + self.gb.square().sum(-1)
        return sq

    def weighted_sum(self, f: Tensor, lead: tuple[int, ...]) -> list[Tensor]:
        """``sum_i f_i g_i`` for factors ``f`` ``(M, K', B)``: weight ``(*lead, O, C, kh, kw)``."""
        wshape = tuple(self.W.shape[1:])
        if self.mode == "psg":
            s = torch.bmm(f, self.g)
            if self.rows:  # g's rows are (kh, kw, C) x O
                n_out, C, kh, kw = wshape
                nl = len(lead)
                s = s.reshape(*lead, kh, kw, C, n_out).permute(*range(nl), nl + 3, nl + 2, nl, nl + 1)
            out = [s.reshape(*lead, *wshape)]
            if self.bias:
                out.append(torch.bmm(f, self.gb).reshape(*lead, -1))
            return out
        M, K = f.shape[0], f.shape[1]
        C, n_out, kh, kw, sh, sw, ph, pw = self.op.geom
        B = self.d.shape[0]
        Wg = _cl_weight(self.W)
        ws, bs = [], []
        for k in range(K):  # the weight gradient of sum_i f_i loss_i: errors scaled by f_i
            scale = f[:, k].transpose(0, 1).reshape(B, M, 1, 1, 1)
            dk = (self.d.view(B, M, n_out, *self.d.shape[2:]) * scale).view_as(self.d)
            _, dw, db = _conv_backward(dk, self.h, Wg, (sh, sw), (ph, pw), M, (False, True, self.bias))
            ws.append(dw.view(M, *wshape))
            if self.bias:
                bs.append(db.view(M, n_out))
        out = [torch.stack(ws, 1).reshape(*lead, *wshape)]
        if self.bias:
            out.append(torch.stack(bs, 1).reshape(*lead, n_out))
        return out

    def head(self, top: int) -> _ConvPiece:
        C, n_out = self.op.geom[0], self.op.geom[1]
        return _ConvPiece(self.mode, self.op, self.h[:, :top * C], self.d[:, :top * n_out], self.W[:top],
                          self.bias, None if self.g is None else self.g[:top],
                          None if self.gb is None else self.gb[:top], self.rows, self.scratch, self.pixel_map,
                          None if self.pixels is None else self.pixels[:, :top * C])


def _pixel_gram_map(op: _Op) -> np.ndarray | None:
    """Return the linear map from a sample's pixel Gram matrix to the Gram matrix of its patches.

    With ``x_p`` the ``C`` channels of pixel ``p`` and ``U_t`` the unfolded patch of output
    position ``t``, ``U_t . U_t' = sum_k x_{t+k} . x_{t'+k}`` over the kernel offsets ``k``
    whose two pixels both lie inside the image (padding is zero): a fixed 0/1-sum of entries
    of ``S = X X^T``. Returns ``A`` ``(H W H W, P P)`` with ``vec(U U^T) = vec(S) A``, or ``None``
    when ``A`` would hold more than ``2^18`` entries or the image has more pixels than a patch
    has values (then the im2col Gram costs less).
    """
    C, _, kh, kw, sh, sw, ph, pw = op.geom
    H, W = op.shape_in[0], op.shape_in[1]
    ho, wo = op.shape_out[0], op.shape_out[1]
    P, HW = ho * wo, H * W
    if P * P * HW * HW > 2 ** 18 or HW > kh * kw * C:
        return None
    ti, tj = np.divmod(np.arange(P), wo)
    ka, kb = np.divmod(np.arange(kh * kw), kw)
    r = ti[:, None] * sh + ka[None, :] - ph  # (P, K) pixel rows and columns
    c = tj[:, None] * sw + kb[None, :] - pw
    pix = np.where((r >= 0) & (r < H) & (c >= 0) & (c < W), r * W + c, -1)
    a, b = pix[:, None, :], pix[None, :, :]  # (P, 1, K), (1, P, K)
    ok = (a >= 0) & (b >= 0)
    t = np.broadcast_to((np.arange(P)[:, None] * P + np.arange(P)[None, :])[:, :, None], ok.shape)
    A = np.zeros((HW * HW, P * P))
    np.add.at(A, ((np.broadcast_to(a, ok.shape) * HW + np.broadcast_to(b, ok.shape))[ok], t[ok]), 1.0)
    return A


def _per_sample_rows(h: Tensor, d: Tensor, op: _Op, M: int, scratch: Workspace) -> tuple[Tensor, Tensor]:
    """Return per-sample weight gradients ``(M, B, kh kw C O)`` as ``U^T delta`` and bias gradients.

    One matmul per sample; the bias gradients ``(M, B, O)`` are the errors summed over positions
    (both views).
    """
    B = h.shape[0]
    U, D = _unfold(h, op, M, scratch), _rows(d, op, M, scratch)
    g = torch.bmm(U.transpose(1, 2), D).view(B, M, -1).transpose(0, 1)
    return g, D.sum(1).view(B, M, -1).transpose(0, 1)


def _batch_of_one(t: Tensor, scratch: Workspace, name: str, channels_last: bool) -> Tensor:
    """``(B, G, H, W)`` (channels-last) -> one image ``(1, B G, H, W)``, one copy into ``scratch``.

    Channels-last: memory ``(H, W, B G)``, i.e. blocks of ``G`` values moved whole; else NCHW.
    """
    B, G, H, W = t.shape
    if channels_last:
        buf = scratch.take(name, (H, W, B, G), t).copy_(t.permute(2, 3, 0, 1))
        return buf.view(H, W, B * G).permute(2, 0, 1).unsqueeze(0)
    return scratch.take(name, (1, B * G, H, W), t).copy_(t.unsqueeze(0).flatten(1, 2))


def _per_sample_conv(h: Tensor, d: Tensor, op: _Op, M: int, scratch: Workspace) -> tuple[Tensor, Tensor]:
    """Per-sample weight gradients ``(M, B, O C kh kw)`` and bias gradients ``(M, B, O)`` (views).

    One ``convolution_backward`` over a batch of one image whose groups are the (sample,
    model) pairs: the input ``(1, B M C, H, W)`` and the errors ``(1, B M O, Ho, Wo)``, both on
    the crop (:func:`_crop`). oneDNN's direct kernels instead of an im2col copy and ``B M``
    small matmuls.
    """
    C, n_out, kh, kw, sh, sw, ph, pw = op.geom
    B = h.shape[0]
    rows, cols, ho, wo = _crop(op)
    # oneDNN's channels-last kernels are 2x faster with one input channel (and give the weight
    # gradients in the same order then); NCHW ones otherwise
    x = _batch_of_one(h[:, :, :rows, :cols], scratch, "input", C == 1)
    e = _batch_of_one(d[:, :, :ho, :wo], scratch, "errors", C == 1)
    # the weights only give the kernel's shape and memory format (only their gradient is asked
    # for; zeros, never written)
    shape = scratch.take("weights", (B * M * n_out, kh, kw, C) if C == 1 else (B * M * n_out, C, kh, kw), h,
                        zeros=True)
    shape = shape.permute(0, 3, 1, 2) if C == 1 else shape
    _, g, gb = _conv_backward(e, x, shape, (sh, sw), (ph, pw), B * M, (False, True, True))
    return g.view(B, M, -1).transpose(0, 1), gb.view(B, M, -1).transpose(0, 1)


def _cropped_geometry(op: _Op) -> _Op | None:
    """Return the convolution restricted to the output positions a following pooling reads, or ``None``.

    The crop of :func:`_crop_for_pooling` as a convolution over the input's first
    ``(ho - 1) s + k`` rows and columns (:func:`_pad_crop`): the same outputs,
    without the unread ones (the MNIST-shape CNN's second convolution: 64 of 81 positions,
    forward, input and weight gradients 15-30 % faster). Only for unpadded convolutions:
    with padding oneDNN's input gradient runs over the padded crop's pixels (the digits CNN's
    second convolution: 49 instead of 16, 1.5x slower) and the forward does not gain either.
    """
    C, n_out, kh, kw, sh, sw, ph, pw = op.geom
    H, W = op.shape_in[0], op.shape_in[1]
    full = ((H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)
    ho, wo = op.shape_out[0], op.shape_out[1]
    if (ho, wo) == full or ph or pw:
        return None
    return replace(op, shape_in=((ho - 1) * sh + kh, (wo - 1) * sw + kw, C))


def _pad_crop(h: Tensor, op: _Op, cop: _Op) -> Tensor:
    """Return the input ``h`` ``(B, M C, H, W)`` cut to the crop's rows and columns (a channels-last copy)."""
    return h[:, :, :cop.shape_in[0], :cop.shape_in[1]].contiguous(memory_format=torch.channels_last)


def _uncrop(dx: Tensor, op: _Op, cop: _Op) -> Tensor:
    """Map errors at the crop to errors at the image (zero in the rows and columns no position reads)."""
    H, W = op.shape_in[0], op.shape_in[1]
    return torch.nn.functional.pad(dx, (0, W - dx.shape[3], 0, H - dx.shape[2]))


def _conv2d(x: Tensor, W: Tensor, bias: Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
            groups: int) -> Tensor:
    """Run a grouped ``conv2d``; one group runs as two (a copy of it beside), see :func:`_conv_backward`."""
    if groups > 1:
        return torch.nn.functional.conv2d(x, W, bias, stride, padding, 1, groups)
    two = torch.cat([x, x], 1).contiguous(memory_format=torch.channels_last)
    return torch.nn.functional.conv2d(two, torch.cat([W, W]).contiguous(memory_format=torch.channels_last),
                                      None if bias is None else torch.cat([bias, bias]), stride, padding, 1,
                                      2)[:, :W.shape[0]]


def _conv_backward(d: Tensor, x: Tensor, W: Tensor, stride: tuple[int, int], padding: tuple[int, int],
                   groups: int, mask: tuple[bool, bool, bool]) -> tuple[Tensor | None, ...]:
    """``convolution_backward`` of a grouped convolution (input, weight and bias gradients per ``mask``).

    oneDNN computes each group of a grouped convolution the same way whatever the number of
    groups, but an ungrouped one (one group) with other kernels, so a chunk of one model would
    differ in the last bits from the same model in a larger chunk: one group runs as two (a
    copy of itself beside it) and the copy's half of the result is dropped.
    """
    bias = [W.shape[0] * (2 if groups == 1 else 1)] if mask[2] else None
    if groups > 1:
        return torch.ops.aten.convolution_backward(d, x, W, bias, stride, padding, (1, 1), False, (0, 0), groups, mask)
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.ops.aten.convolution_backward(
        torch.cat([d, d], 1).contiguous(memory_format=fmt), torch.cat([x, x], 1).contiguous(memory_format=fmt),
        torch.cat([W, W]).contiguous(memory_format=fmt), bias, stride, padding, (1, 1), False, (0, 0), 2, mask)
    n_in, n_out = x.shape[1], W.shape[0]
    return (None if out[0] is None else out[0][:, :n_in], None if out[1] is None else out[1][:n_out],
            None if out[2] is None else out[2][:n_out])


@dataclass
class SeqGrads:
    """Per-sample gradient pieces of a :class:`SeqStack` batch, in parameter order.

    A convolution contributes a :class:`_ConvPiece` (per-sample gradients or ghost norms, see
    there); a linear layer its input ``h`` ``(M, B, I)`` and errors ``delta`` ``(M, B, n_out)``,
    as in :class:`LinearStack` (ghost norms ``||h_i||^2 ||delta_i||^2``, clipped sums by one
    ``bmm``).
    """

    pieces: list[Any]  # _ConvPiece, or ("linear", h, delta, weight shape, bias)
    losses: Tensor

    def norms(self) -> Tensor:
        sq = None
        for piece in self.pieces:
            if isinstance(piece, _ConvPiece):
                term = piece.sq_norms()
            else:  # linear: a = h (M, B, I), b = delta (M, B, n_out)
                _, a, b, _, bias = piece
                term = (a.square().sum(-1) + (1.0 if bias else 0.0)) * b.square().sum(-1)
            sq = term if sq is None else sq + term
        return elementary.sqrt(sq)

    def head(self, top: int) -> SeqGrads:
        """Return the pieces of the first ``top`` models."""
        return SeqGrads([p.head(top) if isinstance(p, _ConvPiece) else (p[0], p[1][:top], p[2][:top], *p[3:])
                         for p in self.pieces], self.losses[:top])

    def weighted_sum(self, factors: Tensor) -> list[Tensor]:
        out: list[Tensor] = []
        M = factors.shape[0]
        f = factors.unsqueeze(1) if factors.dim() == 2 else factors.transpose(1, 2)  # (M, K', B)
        lead = (M,) if factors.dim() == 2 else (M, factors.shape[-1])
        for piece in self.pieces:
            if isinstance(piece, _ConvPiece):
                out.extend(piece.weighted_sum(f, lead))
                continue
            _, a, b, _, bias = piece
            if factors.dim() == 2:
                fd = b * factors.unsqueeze(-1)  # (M, B, n_out)
                out.append(torch.bmm(fd.transpose(1, 2), a))  # (M, n_out, I)
                if bias:
                    out.append(fd.sum(1))
            else:
                Bn, n_out = b.shape[1], b.shape[2]
                K = factors.shape[-1]
                fd = b.unsqueeze(2) * factors.unsqueeze(-1)  # (M, B, K, n_out)
                dW = torch.bmm(fd.reshape(M, Bn, K * n_out).transpose(1, 2), a)  # (M, K n_out, I)
                out.append(dW.reshape(M, K, n_out, -1))
                if bias:
                    out.append(fd.sum(1))
        return out


class SeqStack(FuncStack):
    """Batched engine for feed-forward stacks of convolutions, poolings and linear layers.

    The same parameters, initialisation and modules as :class:`FuncStack` (it inherits them),
    but every model of a chunk runs at once, with the backward pass written out (no
    ``autograd``, no ``vmap``). Images are kept as one batch ``(B, M C, H, W)`` in
    channels-last memory with the models as convolution groups, so a convolution over all
    models is one grouped oneDNN convolution (forward) and one grouped
    ``convolution_backward`` (errors at its input); poolings and activations are torch's own
    kernels on that layout. Per convolution the cheaper closed form by Bu et al. (2023)'s rule
    for ``P`` output positions: ghost norms (``2 P^2 < n_out kh kw C``, e.g. the digits CNN's
    second convolution) from the Gram matrices of the unfolded input and of the errors, with
    the clipped sum one grouped ``convolution_backward`` of the errors scaled per sample; else
    per-sample gradients by one ``convolution_backward`` whose groups are the (sample, model)
    pairs, with the clipped sum one batched matmul over them. Linear layers: ghost norms and
    a ``bmm`` clipped sum. Used for ``"cnn"`` and for any user module of the supported layers
    (:func:`_sequential_layers`); others go through :class:`FuncStack`.
    """

    def __init__(self, factory: Callable[[], nn.Module], input_shape: Sequence[int], n_classes: int):
        super().__init__(factory, input_shape, n_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            layers = _sequential_layers(factory())
        ops = None if layers is None else _compile(layers, self.input_shape)
        if ops is None:
            raise V.fail("model", factory, "to be a supported feed-forward stack (see SeqStack)")
        self._ops = ops
        self._scratch = Workspace()
        self._maps: dict[tuple, Tensor | None] = {}
        self._crops = {id(op): _cropped_geometry(op) for op in ops if op.kind == "conv"}
        self._first = min(i for i, op in enumerate(ops) if op.w >= 0) if any(op.w >= 0 for op in ops) else len(ops)

    def _pixel_map(self, pos: int, like: Tensor) -> Tensor | None:
        """:func:`_pixel_gram_map` of layer ``pos`` as a tensor like ``like`` (cached)."""
        key = (pos, like.dtype, like.device)
        if key not in self._maps:
            A = _pixel_gram_map(self._ops[pos])
            self._maps[key] = None if A is None else torch.as_tensor(A, dtype=like.dtype, device=like.device)
        return self._maps[key]

    @staticmethod
    def supports(module: nn.Module, input_shape: Sequence[int]) -> bool:
        """Whether ``module`` is a stack this engine runs (else :class:`FuncStack`)."""
        layers = _sequential_layers(module)
        return layers is not None and _compile(layers, tuple(int(s) for s in input_shape)) is not None

    def _forward(self, params: Sequence[Tensor], x: Tensor, M: int, saved: list | None) -> Tensor:
        """Logits ``(N, classes)`` of ``x`` ``(N, *input_shape)``, ``N = M B``; fills ``saved``."""
        N = x.shape[0]
        h = _grouped(x, M) if x.dim() == 4 else x
        fresh = x.dim() == 4  # whether h may be overwritten in place (never the caller's input)
        for op in self._ops:
            keep: Any = None
            if op.kind == "conv":
                C, n_out, kh, kw, sh, sw, ph, pw = op.geom
                W = params[op.w]
                Wg = _cl_weight(W)
                bias = None if op.b < 0 else params[op.b].reshape(-1)
                cop = self._crops[id(op)]
                xin = h if cop is None else _pad_crop(h, op, cop)
                z = _conv2d(xin, Wg, bias, (sh, sw), (ph, pw), M)
                h, keep = z.contiguous(memory_format=torch.channels_last), (h, W, xin, cop)
            elif op.kind == "linear":
                hm = h.view(M, N // M, -1)
                Wt = params[op.w].transpose(1, 2)
                z = torch.bmm(hm, Wt) if op.b < 0 else torch.baddbmm(params[op.b].unsqueeze(1), hm, Wt)
                h, keep = z.view(N, -1), (hm, params[op.w])
            elif op.kind in ("maxpool", "avgpool"):
                L = op.layer
                k, s, p = _pair(L.kernel_size), _pair(L.stride or L.kernel_size), _pair(L.padding)
                if op.kind == "maxpool":
                    y, idx = torch.ops.aten.max_pool2d_with_indices(h, k, s, p, (1, 1), False)
                    keep = (h, idx, k, s, p)
                else:
                    y = torch.ops.aten.avg_pool2d(h, k, s, p, False, L.count_include_pad, L.divisor_override)
                    keep = (h, None, k, s, p)
                h = y.contiguous(memory_format=torch.channels_last)
            elif op.kind == "flatten":
                h = _ungrouped(h, M) if h.dim() == 4 else h.reshape(N, -1)
                continue
            else:
                fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[op.kind]
                fn_ = {"tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "relu": torch.relu_}[op.kind]
                h = fn_(h) if fresh else fn(h)
                keep = h
            fresh = op.kind not in _DERIVATIVE  # an activation's output is kept for its backward
            if saved is not None:
                saved.append(keep)
        return h

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        """Logits ``(M, B, C)``; ``x`` is ``(M, B, *input_shape)`` or shared ``(B, *input_shape)``."""
        M = params[0].shape[0]
        if x.dim() == len(self.input_shape) + 1:
            x = x.unsqueeze(0).expand(M, *x.shape)
        with torch.no_grad():
            B = x.shape[1]
            return self._forward(params, x.reshape(M * B, *self.input_shape), M, None).view(M, B, -1)

    @torch.no_grad()
    def per_sample(self, params: Sequence[Tensor], x: Tensor, y: Tensor) -> SeqGrads:
        """Per-sample gradient pieces of the cross-entropy of every sample under every model."""
        M, B = x.shape[:2]
        N = M * B
        saved: list[Any] = []
        logits = self._forward(params, x.reshape(N, *self.input_shape), M, saved)
        logp = torch.log_softmax(logits, dim=-1)
        yy = y.reshape(N, 1)
        losses = -logp.gather(1, yy).view(M, B)
        d = _exp_(logp)
        d.scatter_add_(1, yy, torch.full(yy.shape, -1.0, dtype=d.dtype, device=d.device))
        pieces: list[Any] = []
        # Walk back through the layers (saved holds one entry per non-flatten layer).
        i = len(saved)
        for pos in range(len(self._ops) - 1, self._first - 1, -1):
            op = self._ops[pos]
            last = pos == self._first  # nothing upstream needs this layer's input gradient
            if op.kind == "flatten":
                shp = op.shape_in
                if len(shp) == 3:
                    d = _grouped(d.view(N, shp[2], shp[0], shp[1]), M)
                continue
            i -= 1
            keep = saved[i]
            if op.kind == "conv":
                h_orig, W, h_in, cop = keep
                C, n_out, kh, kw, sh, sw, ph, pw = op.geom
                P, width = op.shape_out[0] * op.shape_out[1], kh * kw * C
                xop = op if cop is None else cop  # the convolution as computed: on the crop, unpadded
                if 2 * P * P < n_out * width:  # ghost norms cost less (Bu et al. 2023's rule)
                    pixel_map = self._pixel_map(pos, d)  # of the image itself (fewer pixels than the crop)
                    pieces.append(_ConvPiece("ghost", xop, h_in, d, W, op.b >= 0, scratch=self._scratch,
                                             pixel_map=pixel_map, pixels=None if pixel_map is None else h_orig))
                elif P * width <= _ROWS_MAX:  # a small im2col: U^T delta by one matmul per sample
                    g, gb = _per_sample_rows(h_in, d, xop, M, self._scratch)
                    pieces.append(_ConvPiece("psg", xop, h_in, d, W, op.b >= 0, g, gb, True))
                else:  # oneDNN's kernels, every (sample, model) pair a group
                    g, gb = _per_sample_conv(h_in, d, xop, M, self._scratch)
                    pieces.append(_ConvPiece("psg", xop, h_in, d, W, op.b >= 0, g, gb))
                if not last:
                    Wg = _cl_weight(W)
                    d = _conv_backward(d, h_in, Wg, (sh, sw), (ph, pw), M, (True, False, False))[0]
                    if cop is not None:  # from the crop back to the image
                        d = _uncrop(d, op, cop)
            elif op.kind == "linear":
                hm, W = keep
                dm = d.reshape(M, B, -1)
                pieces.append(("linear", hm, dm, tuple(W.shape[1:]), op.b >= 0))
                if not last:
                    d = torch.bmm(dm, W).view(N, *op.shape_in)
            elif op.kind in ("maxpool", "avgpool"):
                xin, idx, k, s, p = keep
                if idx is not None:
                    d = torch.ops.aten.max_pool2d_with_indices_backward(d, xin, k, s, p, (1, 1), False, idx)
                else:
                    L = op.layer
                    d = torch.ops.aten.avg_pool2d_backward(d, xin, k, s, p, False, L.count_include_pad,
                                                           L.divisor_override)
            else:
                d = d.view(keep.shape) * _DERIVATIVE[op.kind](keep)
        pieces.reverse()
        return SeqGrads(pieces, losses)

    def bytes_per_sample(self) -> int:
        """Bytes per (model, sample) in one step, from the layer shapes.

        Counts two copies of each convolution's unfolded input (an upper bound on its im2col
        rows, layout copies and the padded crop), layer outputs, errors and per-sample
        convolution gradients, with a quarter more for temporaries.
        """
        floats = int(np.prod(self.input_shape))
        for op in self._ops:
            floats += 2 * int(np.prod(op.shape_out))
            if op.kind == "conv":
                C, n_out, kh, kw = op.geom[:4]
                P = op.shape_out[0] * op.shape_out[1]
                floats += 2 * P * kh * kw * C + n_out * (kh * kw * C + 1)
            elif op.kind in ("maxpool", "avgpool"):
                floats += 3 * int(np.prod(op.shape_out))  # int64 indices
        return int(4 * floats * 1.25) + 64


class CNN(nn.Module):
    """conv 16@5x5 -> maxpool 2 -> tanh -> conv 32@4x4 -> maxpool 2 -> tanh -> dense 32 -> tanh -> dense.

    Sized for the input: images smaller than 16 pixels a side (the 8x8 digits) pad both
    convolutions by 2 so that the shapes work (8 -> 8 -> 4 -> 5 -> 2, i.e. 32x2x2 = 128 features
    before the dense layer); larger images (MNIST 28x28) use no padding (28 -> 24 -> 12 -> 9 -> 4).

    Examples
    --------
    >>> import torch
    >>> CNN((1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int):
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        pad = 2 if min(h, w) < 16 else 0

        def out(s: int, k: int) -> int:
            return (s + 2 * pad - k + 1) // 2

        h2, w2 = out(out(h, 5), 4), out(out(w, 5), 4)
        if h2 < 1 or w2 < 1:
            raise V.fail("image_shape", tuple(input_shape), "to be large enough for two convolutions and poolings")
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 5, padding=pad), nn.MaxPool2d(2), nn.Tanh(),
            nn.Conv2d(16, 32, 4, padding=pad), nn.MaxPool2d(2), nn.Tanh(),
            nn.Flatten(), nn.Linear(32 * h2 * w2, 32), nn.Tanh(), nn.Linear(32, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_classes)`` of images ``(B, C, H, W)``."""
        return self.net(x)


def build_model(
    model: Any,
    *,
    n_features: int,
    n_classes: int,
    image_shape: Sequence[int] | None = None,
    hidden: int = 256,
) -> LinearStack | FuncStack:
    """Return the stacked ensemble for ``"lr"``, ``"mlp"``, ``"cnn"`` or an ``nn.Module`` factory.

    Parameters
    ----------
    model : {"lr", "mlp", "cnn"} or callable
        A callable is called with no arguments and must return an ``nn.Module`` that maps
        ``(B, *input_shape)`` to logits; ``input_shape`` is ``image_shape`` when the data has
        one, else ``(n_features,)``.
    n_features, n_classes : int
    image_shape : tuple of int or None
        ``(C, H, W)``; required for ``"cnn"``.
    hidden : int
        Hidden units of the MLP.

    Examples
    --------
    >>> build_model("mlp", n_features=10, n_classes=2).sizes
    (10, 256, 2)
    """
    if isinstance(model, str):
        V.choice("model", model, MODELS)
        if model == "lr":
            return LinearStack((n_features, n_classes))
        if model == "mlp":
            hidden = V.integer("hidden", hidden, 1)
            return LinearStack((n_features, hidden, n_classes))
        if image_shape is None:
            raise V.fail("model", "cnn", "only for image data", "The dataset has no image_shape")
        shape = tuple(image_shape)
        return SeqStack(lambda: CNN(shape, n_classes), shape, n_classes)
    if callable(model):
        shape = tuple(image_shape) if image_shape is not None else (n_features,)
        generic = FuncStack(model, shape, n_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            supported = SeqStack.supports(model(), shape)
        return SeqStack(model, shape, n_classes) if supported else generic
    raise V.fail("model", model, "to be 'lr', 'mlp', 'cnn' or a callable returning an nn.Module")
