"""Stacked model ensembles: every parameter carries a leading ``n_models`` axis.

Two engines compute per-sample gradients for many models at once (docs/design.md section 5):

* :class:`LinearStack` (``"lr"``, ``"mlp"``): a fast path for stacks of linear layers with
  ``tanh`` between them. Back-propagation is written out by hand so that per-sample gradient
  norms come from ``||dW_i||^2 = ||h_i||^2 ||delta_i||^2`` and ``||db_i||^2 = ||delta_i||^2``
  (the "ghost clipping" identity) and the weighted sum of per-sample gradients is one batched
  matmul ``h^T (f * delta)``; per-sample gradients are never materialised.
* :class:`FuncStack` (``"cnn"`` and any user ``torch.nn.Module`` factory): the generic path,
  ``torch.func.vmap`` over models of ``vmap(grad)`` over samples. It materialises per-sample
  gradients, so it suits small models (the digits CNN); it is slower than the fast path for
  linear layers on a CPU and is never used for them.

Both expose the same functional interface over a list of stacked parameter tensors (so the
training loop can slice any chunk of models): ``forward(params, x)`` and
``per_sample(params, x, y) -> PerSampleGrads``. Notebook 03 teaches the ghost-clipping identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from .._core import validate as V
from .._core.exceptions import UnsupportedModelError
from .._core.vocabulary import MODELS

__all__ = [
    "PerSampleGrads",
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
        return sq.sqrt()

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

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        """Logits ``(M, B, C)``; ``x`` is ``(M, B, d)`` per model or ``(B, d)`` shared."""
        h = x
        n_layers = len(params) // 2
        for layer in range(n_layers):
            W, b = params[2 * layer], params[2 * layer + 1]
            h = torch.matmul(h, W) + b.unsqueeze(1)
            if layer < n_layers - 1:
                h = torch.tanh(h)
        return h

    def per_sample(self, params: Sequence[Tensor], x: Tensor, y: Tensor) -> LinearGrads:
        """Forward and hand-written backward pass of the per-sample cross-entropy.

        ``delta_L = softmax(z_L) - onehot(y)``, ``delta_l = (delta_{l+1} W_{l+1}^T) * (1 - h_l^2)``.
        The training loop sets ``input_sq[0]`` of the result to per-record ``||x_i||^2``
        computed once per run, instead of once per step.
        """
        n_layers = len(params) // 2
        inputs: list[Tensor] = []
        h = x
        for layer in range(n_layers):
            W, b = params[2 * layer], params[2 * layer + 1]
            inputs.append(h)
            z = _x_w(h, W, b)
            h = torch.tanh_(z) if layer < n_layers - 1 else z
        # Few classes: _x_w returned the logits as a view of class-major (M, C, B) memory;
        # the softmax and its error run in that layout (contiguous along the batch).
        class_major = h.stride(-1) != 1 and h.transpose(1, 2).is_contiguous()
        zc = h.transpose(1, 2) if class_major else h
        dim = 1 if class_major else -1
        yc = y.unsqueeze(dim)
        logp = torch.log_softmax(zc, dim=dim)
        losses = -logp.gather(dim, yc).squeeze(dim)
        delta = logp.exp_()
        delta.scatter_add_(dim, yc, torch.full(yc.shape, -1.0, dtype=delta.dtype, device=delta.device))
        if class_major:
            delta = delta.transpose(1, 2)
        deltas = [delta]
        for layer in range(n_layers - 1, 0, -1):
            W = params[2 * layer]
            a = inputs[layer]
            delta = torch.bmm(delta, W.transpose(1, 2)) * (1 - a.square())
            deltas.append(delta)
        deltas.reverse()
        return LinearGrads(inputs, deltas, losses)

    def bytes_per_sample(self) -> int:
        """Rough bytes of activations per (model, sample) in one training step."""
        return 4 * 4 * sum(self.sizes) + 64

    def to_module(self, params: Sequence[Tensor], m: int) -> nn.Module:
        """Return model ``m`` as an ordinary ``nn.Sequential`` (weights copied)."""
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
        return sq.sqrt()

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


def _sequential_layers(module: nn.Module) -> list[nn.Module] | None:
    """Return the layers of a feed-forward stack the batched path supports, else ``None``.

    Supported: ``Conv2d`` (groups 1, dilation 1, zero padding), ``Linear``, ``MaxPool2d`` and
    ``AvgPool2d`` (no ceil mode), ``Tanh``, ``ReLU``, ``Sigmoid`` and ``Flatten``, in an
    ``nn.Sequential`` (or the :class:`CNN`, whose ``net`` is one) without buffers.
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


@dataclass
class SeqGrads:
    """Per-sample gradient pieces of a :class:`SeqStack` batch, in parameter order.

    A convolution contributes materialised per-sample weight gradients ``(M, B, O, C k k)``
    (one batched matmul ``delta^T (O, P) @ U (P, C k k)`` per sample, ``U`` the unfolded input)
    and bias gradients ``(M, B, O)``; a linear layer contributes its input ``h`` and error
    ``delta`` only, as in :class:`LinearStack` (ghost norms, clipped sums by one ``bmm``).
    """

    pieces: list[tuple[str, Tensor, Tensor, tuple[int, ...], bool]]  # kind, a, b, weight shape, bias
    losses: Tensor

    def norms(self) -> Tensor:
        sq = None
        for kind, a, b, _, bias in self.pieces:
            if kind == "conv":  # a: weight gradients (M, B, O, C k k), b: bias gradients (M, B, O)
                term = a.flatten(2).square().sum(-1) + (b.square().sum(-1) if bias else 0.0)
            else:  # linear: a = h (M, B, I), b = delta (M, B, O)
                term = (a.square().sum(-1) + (1.0 if bias else 0.0)) * b.square().sum(-1)
            sq = term if sq is None else sq + term
        return sq.sqrt()

    def head(self, top: int) -> SeqGrads:
        """Return the pieces of the first ``top`` models."""
        return SeqGrads([(k, a[:top], b[:top], w, bias) for k, a, b, w, bias in self.pieces], self.losses[:top])

    def weighted_sum(self, factors: Tensor) -> list[Tensor]:
        out: list[Tensor] = []
        M = factors.shape[0]
        f = factors.unsqueeze(1) if factors.dim() == 2 else factors.transpose(1, 2)  # (M, K', B)
        lead = (M,) if factors.dim() == 2 else (M, factors.shape[-1])
        for kind, a, b, wshape, bias in self.pieces:
            if kind == "conv":
                out.append(torch.bmm(f, a.flatten(2)).reshape(*lead, *wshape))
                if bias:
                    out.append(torch.bmm(f, b).reshape(*lead, -1))
            else:
                if factors.dim() == 2:
                    fd = b * factors.unsqueeze(-1)  # (M, B, O)
                    out.append(torch.bmm(fd.transpose(1, 2), a))  # (M, O, I)
                    if bias:
                        out.append(fd.sum(1))
                else:
                    Bn, n_out = b.shape[1], b.shape[2]
                    K = factors.shape[-1]
                    fd = b.unsqueeze(2) * factors.unsqueeze(-1)  # (M, B, K, O)
                    dW = torch.bmm(fd.reshape(M, Bn, K * n_out).transpose(1, 2), a)  # (M, K O, I)
                    out.append(dW.reshape(M, K, n_out, -1))
                    if bias:
                        out.append(fd.sum(1))
        return out


class SeqStack(FuncStack):
    """Batched engine for feed-forward stacks of convolutions, poolings and linear layers.

    The same parameters, initialisation and modules as :class:`FuncStack` (it inherits them),
    but the per-sample gradients of every model of a chunk come from one forward pass over
    all models (convolutions as ``unfold`` + batched matmul), one ``autograd`` backward pass
    for the errors ``delta`` at each layer's output, and then closed forms: per-sample
    convolution gradients by one batched matmul of ``delta`` and the unfolded input
    (Opacus's unfold rule, for all models at once), ghost norms and a ``bmm`` clipped sum for
    linear layers. No ``vmap`` of ``grad``. Used for ``"cnn"`` and for any user module made
    of the supported layers (:func:`_sequential_layers`); others go through
    :class:`FuncStack`.
    """

    def __init__(self, factory: Callable[[], nn.Module], input_shape: Sequence[int], n_classes: int):
        super().__init__(factory, input_shape, n_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            layers = _sequential_layers(factory())
        if layers is None:
            raise V.fail("model", factory, "to be a supported feed-forward stack (see SeqStack)")
        self._layers = layers

    def _run(self, params: Sequence[Tensor], x: Tensor, *, track: bool):
        """Forward over ``x`` ``(M, B, *input)``; with ``track``, the layer records for backprop."""
        M, B = x.shape[:2]
        h = x
        j = 0
        records: list[tuple[str, Tensor, Tensor, tuple[int, ...]]] = []
        for layer in self._layers:
            if isinstance(layer, nn.Conv2d):
                W, bias = params[j], (params[j + 1] if layer.bias is not None else None)
                j += 2 if layer.bias is not None else 1
                k, s, p = layer.kernel_size, layer.stride, layer.padding
                x4 = h.reshape(M * B, *h.shape[2:])
                if p[0] or p[1]:
                    x4 = torch.nn.functional.pad(x4, (p[1], p[1], p[0], p[0]))
                # im2col as a strided view (no copy), then one copy into (M, B P, C k k) rows
                patches = x4.unfold(2, k[0], s[0]).unfold(3, k[1], s[1])  # (N, C, Ho, Wo, kh, kw)
                Ho, Wo = patches.shape[2], patches.shape[3]
                U = patches.permute(0, 2, 3, 1, 4, 5).reshape(M, B * Ho * Wo, -1)
                Wt = W.flatten(2).transpose(1, 2)  # (M, C k k, O)
                z = torch.bmm(U, Wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), U, Wt)
                if track:
                    z = self._watch(z, records, ("conv", U, tuple(W.shape[1:]), bias is not None))
                # (M, B, O, Ho, Wo) as a view of channels-last memory
                h = z.view(M, B, Ho, Wo, W.shape[1]).permute(0, 1, 4, 2, 3)
            elif isinstance(layer, nn.Linear):
                W, bias = params[j], (params[j + 1] if layer.bias is not None else None)
                j += 2 if layer.bias is not None else 1
                z = torch.matmul(h, W.transpose(1, 2))
                if bias is not None:
                    z = z + bias.unsqueeze(1)
                if track:
                    z = self._watch(z, records, ("linear", h, tuple(W.shape[1:]), bias is not None))
                h = z
            elif isinstance(layer, nn.Flatten):
                h = h.reshape(M, B, -1)
            elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
                y = layer(h.reshape(M * B, *h.shape[2:]))
                h = y.view(M, B, *y.shape[1:])
            else:
                h = layer(h)
        return h, records

    @staticmethod
    def _watch(z: Tensor, records: list, info: tuple) -> Tensor:
        if not records:  # the first layer's output: a leaf that the backward pass stops at
            z = z.detach().requires_grad_()
        records.append((z, *info))
        return z

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        """Logits ``(M, B, C)``; ``x`` is ``(M, B, *input_shape)`` or shared ``(B, *input_shape)``."""
        M = params[0].shape[0]
        if x.dim() == len(self.input_shape) + 1:
            x = x.unsqueeze(0).expand(M, *x.shape)
        with torch.no_grad():
            return self._run(params, x, track=False)[0]

    def per_sample(self, params: Sequence[Tensor], x: Tensor, y: Tensor) -> SeqGrads:
        """Per-sample gradient pieces of the cross-entropy of every sample under every model."""
        with torch.enable_grad():
            logits, records = self._run([p.detach() for p in params], x, track=True)
            logp = torch.log_softmax(logits, dim=-1)
            losses = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            # Each loss depends on its own sample only, so the gradient of their sum with
            # respect to a layer's output is every sample's own error delta.
            deltas = torch.autograd.grad(losses.sum(), [r[0] for r in records])
        pieces = []
        with torch.no_grad():
            for (_, kind, a, wshape, bias), d in zip(records, deltas):
                if kind == "conv":  # a: unfolded input (M, B P, C k k), d: (M, B P, O)
                    M, B = losses.shape
                    P = d.shape[1] // B
                    g = torch.bmm(d.view(M * B, P, -1).transpose(1, 2), a.view(M * B, P, -1))
                    pieces.append(("conv", g.view(M, B, *g.shape[1:]), d.view(M, B, P, -1).sum(2), wshape, bias))
                else:
                    pieces.append(("linear", a.detach(), d, wshape, bias))
        return SeqGrads(pieces, losses.detach())

    def bytes_per_sample(self) -> int:
        """Bytes per (model, sample) in one step, from a one-sample probe of the layer shapes.

        Counts the unfolded inputs, layer outputs, errors and per-sample convolution
        gradients, twice (autograd keeps what the backward pass needs beside the temporaries).
        """
        if not hasattr(self, "_probe_bytes"):
            params = [torch.zeros((1, *s)) for s in self._shapes]
            grads = self.per_sample(params, torch.zeros((1, 1, *self.input_shape)), torch.zeros((1, 1), dtype=torch.int64))
            floats = sum(a.numel() + b.numel() for _, a, b, _, _ in grads.pieces)
            floats += int(np.prod(self.input_shape))
            self._probe_bytes = 2 * 4 * floats + 64
        return self._probe_bytes


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
            supported = _sequential_layers(model()) is not None
        return SeqStack(model, shape, n_classes) if supported else generic
    raise V.fail("model", model, "to be 'lr', 'mlp', 'cnn' or a callable returning an nn.Module")
