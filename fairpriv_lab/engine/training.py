"""``train_ensemble``: train every model of a game at once with SGD, DP-SGD, DP-SGD-S or DP-SGD-F.

The loop (docs/design.md section 5), per step:

1. Poisson sampling for every model at once: model ``m`` includes each of its ``N_m``
   training records with probability ``q_m = batch_size / N_m`` (the included indices are
   cumulative sums of geometric gaps, exactly that distribution), padded to the step's
   largest batch with a mask so that all models share one shape.
2. All random draws of the step (sampling, noise) are made for **all** models from one
   generator before the models are split into chunks, so results are identical for every
   chunk size (``memory_budget``) and the same seed.
3. Per chunk of models: the batch is gathered into a reused buffer, per-sample gradients
   come from the model's engine (ghost norms for linear stacks, batched unfold for
   convolution stacks, ``torch.func`` otherwise), then the DP step of
   :mod:`fairpriv_lab.engine.privacy`; then the optimizer updates all models.

Afterwards losses and logit-scaled confidences of every (model, record) pair, and test
accuracy, are computed in batched forward passes. Notebook 02 teaches this.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .._core import validate as V
from .._core.exceptions import PrivacyWarning, TrainingDivergedError
from .._core.rng import SeedLike, as_generator, spawn_seed
from .._core.vocabulary import ACCOUNTANTS, OPTIMIZERS, Accountant, Optimizer, default_delta
from ..data import GroupedDataset
from . import elementary
from .device import resolve_device, training_threads
from .models import (
    BinaryGrads,
    FuncGrads,
    FuncStack,
    LinearGrads,
    LinearStack,
    SeqGrads,
    SparseBatch,
    Workspace,
    binary_loss,
    build_model,
    transpose_rows,
)
from .privacy import DPStep, as_method, calibrate_noise, epsilon_of, group_contribution

__all__ = ["EnsembleResult", "train_ensemble", "poisson_batches", "evaluate"]

_MAX_TELEMETRY_STEPS = 100
_GRC_MODELS = 16  # telemetry's GRC is the mean over the first 16 models
# Bytes of per-step working memory per chunk of models on a CPU. Cache-sized chunks (4-16 MiB)
# measured slower in CPU time than one chunk of 400 Adult LR models (73-92 vs 42-55 ms a
# step): the per-chunk pipeline's small operations cost more than the memory traffic saved.
_CPU_BUDGET = 1 << 30
#: Draw the next step's batches and noise on a second thread (CPU, one intra-op thread).
_PREFETCH = True
#: With one chunk, gather the batch's inputs with the draws (on the draws thread).
_GATHER_AHEAD = True

#: Mean training loss (nats) above which a model counts as diverged even when finite.
_DIVERGED_LOSS = 1e4


@dataclass
class EnsembleResult:
    """Everything ``train_ensemble`` produces.

    Attributes
    ----------
    losses : ndarray, float32 (n_models, n_samples)
        Cross-entropy of every record of the dataset under every model (lower = member).
    confidences : ndarray, float32 (n_models, n_samples)
        Logit-scaled true-class confidence ``log p_y - log(1 - p_y)`` (higher = member).
    test_accuracy : ndarray (n_models,) or None
        Fraction of the test set classified correctly.
    test_group_accuracy : ndarray (n_models, n_groups) or None
        The same per group; NaN for groups absent from the test set.
    test_predictions : ndarray, int64 (n_models, n_test) or None
    epsilon : float
        Epsilon spent at ``delta`` by the model with the largest sampling rate (all released
        statistics composed); ``math.inf`` for SGD.
    delta : float
    noise_multiplier : float or None
        The gradient noise multiplier ``sigma`` (``None`` for SGD).
    sample_rate : ndarray (n_models,)
        ``q_m = batch_size / N_m``.
    steps : int
    telemetry : DataFrame
        Tidy, one row per (recorded step, group): ``step, epoch, group, clip_bound, grc,
        frac_clipped`` (means over models, GRC over the first 16 models; at most about 100
        recorded steps). ``clip_bound`` is post-processing of the accounted release (NaN for
        SGD). ``grc`` and ``frac_clipped`` are raw statistics of the private batches, outside
        epsilon: computed only with ``diagnostics=True`` (NaN otherwise).
    diagnostics : bool
        Whether the un-noised telemetry (``grc``, ``frac_clipped``) was computed.
    private : bool
        True when everything returned is covered by ``epsilon``: a DP method without
        diagnostics. False for SGD and for any run with ``diagnostics=True``.
    method, model, device : str
    seconds : float
        Wall-clock time of the call.
    epochs_completed : int
        Epochs trained (less than asked only in a ``TrainingDivergedError.partial``).
    """

    losses: np.ndarray
    confidences: np.ndarray
    test_accuracy: np.ndarray | None
    test_group_accuracy: np.ndarray | None
    test_predictions: np.ndarray | None
    epsilon: float
    delta: float
    noise_multiplier: float | None
    sample_rate: np.ndarray
    steps: int
    telemetry: pd.DataFrame
    method: str
    model: str
    device: str
    seconds: float
    epochs_completed: int = 0
    diagnostics: bool = False
    private: bool = False

    @property
    def n_models(self) -> int:
        """Number of models."""
        return int(self.losses.shape[0])

    def __repr__(self) -> str:
        acc = "" if self.test_accuracy is None else f", test_accuracy={np.mean(self.test_accuracy):.3f}"
        return (
            f"EnsembleResult(method={self.method!r}, model={self.model!r}, n_models={self.n_models}, "
            f"epsilon={self.epsilon:.3g}, delta={self.delta:.2g}{acc}, private={self.private}, "
            f"seconds={self.seconds:.1f})"
        )


# ----------------------------------------------------------------------------- sampling
def poisson_batches(
    n_train: Tensor, sample_rate: Tensor, generator: torch.Generator, *, n_max: int | None = None
) -> tuple[Tensor, Tensor]:
    """Poisson-sample a batch of local indices for every model; shapes ``(n_models, width)``.

    Model ``m`` includes each of its ``N_m`` records independently with probability ``q_m``.
    The included indices are drawn as a Bernoulli process through its gaps: the gaps between
    consecutive included records are i.i.d. ``Geometric(q_m)`` on ``{1, 2, ...}``, so the
    cumulative sums of geometric draws (by inversion, ``1 + floor(log U / log(1 - q))``) are
    exactly the included indices, in increasing order, and their number is
    ``Binomial(N_m, q_m)``. No sort and no rejection; the draws are made in blocks of columns
    until every model has passed its last record. Returns ``(index, mask)``: ``index[m, j]`` in
    ``[0, N_m)`` (0 where padded) and ``mask[m, j]`` true for the real entries; ``width`` is the
    largest batch of the step.

    Examples
    --------
    >>> import torch
    >>> idx, mask = poisson_batches(torch.tensor([10, 20]), torch.tensor([0.5, 0.25]),
    ...                             torch.Generator().manual_seed(0))
    >>> idx.shape == mask.shape
    True
    """
    device = n_train.device
    q = sample_rate.to(torch.float64)
    log1mq = torch.log1p(-q).unsqueeze(1)  # -inf when q = 1: every gap is 1
    n_col = n_train.unsqueeze(1)
    cap = float((int(n_train.max()) if n_max is None else n_max) + 1)  # a gap past N_m ends a row
    mean = float((n_train.to(torch.float64) * q).max())
    block = max(8, int(mean + 6.0 * math.sqrt(mean) + 8))  # enough for all rows almost always
    parts: list[Tensor] = []
    last = torch.full_like(n_col, -1)  # index of the last drawn record per model
    while True:
        u = torch.rand((n_train.shape[0], block), generator=generator, device=device, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-u) / log1mq) + 1.0  # log(1 - u), 1 - u in (0, 1]
        pos = last + gaps.clamp(max=cap).cumsum(1).to(torch.int64)
        parts.append(pos)
        last = pos[:, -1:]
        if bool((last >= n_col).all()):
            break
    pos = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    mask = pos < n_col
    width = max(int(mask.sum(1).max()), 1)
    pos, mask = pos[:, :width], mask[:, :width]
    return torch.where(mask, pos, 0), mask


# ----------------------------------------------------------------------------- evaluation
def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


# Fewest records per forward block of evaluate: with fewer rows, BLAS takes other kernels whose
# sums differ in the last bit (MKL on Intel CPUs with AMX: blocks of 1-15 rows), and a record's
# loss would depend on the block it fell in.
_MIN_EVAL_ROWS = 16


@torch.no_grad()
def evaluate(
    net: LinearStack | FuncStack,
    params: list[Tensor],
    X: Tensor,
    y: Tensor,
    *,
    model_chunk: int,
    record_chunk: int | None = None,
    sparse: tuple[Tensor, Tensor] | None | str = "auto",
    predictions: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Losses, logit-scaled confidences and predictions ``(n_models, n_records)`` on CPU.

    ``confidence = z_y - logsumexp_{j != y} z_j = log p_y - log(1 - p_y)`` (stable form).
    Two-class :class:`LinearStack` networks go through :meth:`LinearStack.logit_difference` and
    :func:`~fairpriv_lab.engine.models.binary_loss`, training's own arithmetic: a record's loss
    here equals training's at the same parameters, and its bits are the same on every CPU
    (sparse inputs; docs/design.md section 5).
    ``record_chunk``: records per forward pass (default: :meth:`LinearStack.eval_rows`, 4,096
    for other networks). ``sparse``: ``X``'s rows as ``LinearStack.sparse_first_layer`` gives
    them, ``None`` for the dense matmul (``"auto"``: computed here for a :class:`LinearStack`);
    every (model, record) value depends on that model and record alone, whatever the chunks
    (blocks have at least 16 records: a short last block reruns the records before it).
    ``predictions=False``: no predictions (``None``; the training records' are never read).
    """
    n_models = params[0].shape[0]
    n = X.shape[0]
    linear = isinstance(net, LinearStack)
    if isinstance(sparse, str):
        V.choice("sparse", sparse, ("auto",))
        sparse = net.sparse_first_layer(X) if linear else None
    losses = torch.empty((n_models, n), dtype=torch.float32)
    conf = torch.empty((n_models, n), dtype=torch.float32)
    pred = torch.empty((n_models, n), dtype=torch.int64) if predictions else None
    for lo, hi in _chunks(n_models, model_chunk):
        p = [t[lo:hi] for t in params]
        rows = max(_MIN_EVAL_ROWS, record_chunk or (net.eval_rows(hi - lo) if linear else 4096))
        for r0, r1 in _chunks(n, rows):
            s0 = min(r0, max(0, r1 - _MIN_EVAL_ROWS))  # a short last block: rerun the rows before it
            part = None if sparse is None else (sparse[0][s0:r1], sparse[1][s0:r1])
            if linear and net.binary:  # the logit difference, as training computes it
                diff = net.logit_difference(p, X[s0:r1], sparse=part)[:, r0 - s0:]
                margin = diff * (1.0 - 2.0 * y[r0:r1].to(diff.dtype))  # z_y - z_other
                losses[lo:hi, r0:r1] = binary_loss(margin.neg()).float().cpu()
                conf[lo:hi, r0:r1] = margin.float().cpu()
                if pred is not None:
                    pred[lo:hi, r0:r1] = (diff < 0).long().cpu()  # argmax: class 0 on ties
                continue
            z = net.forward(p, X[s0:r1], sparse=part) if linear else net.forward(p, X[s0:r1])
            z = z[:, r0 - s0:]
            yy = y[r0:r1].unsqueeze(0).expand(hi - lo, -1).unsqueeze(-1)
            logp = torch.log_softmax(z, dim=-1)
            zy = z.gather(-1, yy).squeeze(-1)
            others = z.scatter(-1, yy, -math.inf)
            losses[lo:hi, r0:r1] = (-logp.gather(-1, yy).squeeze(-1)).float().cpu()
            conf[lo:hi, r0:r1] = (zy - torch.logsumexp(others, dim=-1)).float().cpu()
            if pred is not None:
                pred[lo:hi, r0:r1] = z.argmax(-1).cpu()
    return losses, conf, pred


# ----------------------------------------------------------------------------- optimizers
class _Optimizer:
    """Vectorised SGD or Adam over stacked parameters (elementwise, so chunk-independent)."""

    def __init__(self, kind: str, params: list[Tensor], lr: float):
        self.kind, self.lr, self.t = kind, lr, 0
        if kind == "adam":
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]

    def step(self, params: list[Tensor], grads: list[Tensor]) -> None:
        """Update ``params`` in place; ``grads`` are consumed (SGD scales them in place)."""
        self.t += 1
        if self.kind == "sgd":
            for p, g in zip(params, grads):
                p.sub_(g.mul_(self.lr))  # the same product as p - lr * g, without a temporary
            return
        b1, b2, eps = 0.9, 0.999, 1e-8
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            mhat = m / (1 - b1**self.t)
            vhat = v / (1 - b2**self.t)
            p.sub_(self.lr * mhat / (elementary.sqrt(vhat) + eps))


# ----------------------------------------------------------------------------- main entry
def _with_training_threads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with :func:`~fairpriv_lab.engine.device.training_threads` intra-op threads."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(training_threads())
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


@_with_training_threads
def train_ensemble(
    dataset: GroupedDataset,
    membership: Any,
    *,
    model: Any = "mlp",
    method: Any = "sgd",
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 0.1,
    optimizer: Optimizer = "sgd",
    clip: float = 1.0,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float | None = None,
    accountant: Accountant = "rdp",
    hidden: int = 256,
    device: Any = "auto",
    seed: SeedLike = None,
    progress: Callable[[int, int], None] | None = None,
    memory_budget: int | None = None,
    test: GroupedDataset | None = None,
    diagnostics: bool | None = None,
) -> EnsembleResult:
    """Train ``n_models`` models at once, model ``m`` on the records where ``membership[m]``.

    Every step samples a Poisson batch per model (rate ``q_m = batch_size / N_m``) and applies
    ``theta <- theta - lr * (sum_i f_i g_i + sigma * C_max * xi) / b`` through the optimizer,
    where ``f_i = min(1, C_{k(i)} / ||g_i||)`` comes from the method's clipping policy and
    ``b = batch_size`` is the expected batch size (SGD: ``f_i = 1``, no noise). The run has
    ``steps = round(epochs * mean_m(N_m) / batch_size)`` steps for every model.

    Parameters
    ----------
    dataset : GroupedDataset
        All records; losses are returned for every one of them.
    membership : bool ndarray (n_models, n_samples)
        ``True`` = the record is in that model's training set.
    model : {"lr", "mlp", "cnn"} or callable
        A callable returns a fresh ``torch.nn.Module`` (generic ``torch.func`` path); it gets
        images ``(B, *image_shape)`` when the dataset has an ``image_shape``, else rows.
    method : {"sgd", "dpsgd", "dpsgds", "dpsgdf"} or DPSGDS / DPSGDF instance
    epochs, batch_size : int
    lr : float
    optimizer : {"sgd", "adam"}
    clip : float
        The clip bound ``C`` (``C_0`` of DP-SGD-F).
    noise_multiplier, target_epsilon : float or None
        Exactly one for a private method: ``sigma`` itself, or the epsilon to calibrate it to
        (bisection on the composed accountant, within 1 %).
    delta : float or None
        Default ``min(1e-5, 0.1 / max_m N_m)`` (:func:`~fairpriv_lab._core.vocabulary.default_delta`); a ``PrivacyWarning`` when ``delta >= 1 / max_m N_m``.
    accountant : {"rdp", "prv"}
    hidden : int
        Hidden units of the MLP.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    seed : int, Generator or None
    progress : callable or None
        Called as ``progress(steps_done, total_steps)`` about 100 times.
    memory_budget : int or None
        Bytes of per-step working memory per chunk of models (default: half the free GPU
        memory, or 1 GiB on a CPU). Results do not depend on it.
        The loop runs with :func:`~fairpriv_lab.engine.device.training_threads` intra-op
        threads (default 1, the fastest on a busy 2-core machine; ``set_num_threads``, the
        CLI's ``--threads`` or ``FAIRPRIV_LAB_THREADS`` choose), restored afterwards.
    test : GroupedDataset or None
        Held-out records for test accuracy (same features and groups).
    diagnostics : bool or None
        Compute the un-noised telemetry (GRC, fraction clipped per group and step). These read
        the private batches without noise, so they are **not** covered by epsilon: with
        ``True`` the result is marked ``private=False``. ``None`` (default): off for the DP
        methods, on for SGD (which has no privacy to lose).

    Returns
    -------
    EnsembleResult

    Raises
    ------
    ConfigError
        On bad input (each message names the parameter, value and allowed range).
    TrainingDivergedError
        If a loss becomes NaN or infinite; ``.partial`` holds the result after the last
        finished epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.data import make_synthetic
    >>> ds = make_synthetic(200, seed=0)
    >>> member = np.random.default_rng(0).random((4, 200)) < 0.5
    >>> res = train_ensemble(ds, member, model="lr", method="dpsgd", noise_multiplier=1.0,
    ...                      epochs=2, batch_size=20, device="cpu", seed=0)
    >>> res.losses.shape, bool(np.isfinite(res.epsilon))
    ((4, 200), True)
    """
    t0 = time.perf_counter()
    if not isinstance(dataset, GroupedDataset):
        raise V.fail("dataset", type(dataset).__name__, "to be a GroupedDataset")
    membership = V.bool_matrix("membership", membership, (None, dataset.n_samples))
    n_models, n = membership.shape
    if n_models < 1:
        raise V.fail("membership", f"array of shape {membership.shape}", "to have at least one model")
    n_train = membership.sum(1)
    if np.any(n_train == 0):
        m = int(np.flatnonzero(n_train == 0)[0])
        raise V.fail("membership", f"row {m} with no True entry", "to give every model a training record")
    policy = as_method(method)
    if diagnostics is None:
        diagnostics = not policy.private
    if not isinstance(diagnostics, bool | np.bool_):
        raise V.fail("diagnostics", diagnostics, "to be True, False or None")
    diagnostics = bool(diagnostics)
    epochs = V.integer("epochs", epochs, 1)
    batch_size = V.integer("batch_size", batch_size, 1)
    if batch_size > n_train.min():
        raise V.fail("batch_size", batch_size,
                     f"to be <= the smallest training set ({int(n_train.min())} records)")
    lr = V.positive("lr", lr)
    clip = V.positive("clip", clip)
    V.choice("optimizer", optimizer, OPTIMIZERS)
    V.choice("accountant", accountant, ACCOUNTANTS)
    if test is not None:
        if not isinstance(test, GroupedDataset):
            raise V.fail("test", type(test).__name__, "to be a GroupedDataset or None")
        if test.n_features != dataset.n_features or test.n_groups != dataset.n_groups:
            raise V.fail("test", repr(test), f"to have {dataset.n_features} features and "
                         f"{dataset.n_groups} groups like the dataset")
    net = build_model(model, n_features=dataset.n_features, n_classes=dataset.n_classes,
                      image_shape=dataset.image_shape, hidden=hidden)
    model_name = model if isinstance(model, str) else getattr(model, "__name__", type(model).__name__)

    n_max = int(n_train.max())
    if delta is None:
        delta = default_delta(n_max)
    delta = V.number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    q = batch_size / n_train.astype(np.float64)
    steps = max(1, int(round(epochs * float(n_train.mean()) / batch_size)))
    sigma: float | None
    if policy.private:
        if delta >= 1.0 / n_max:
            warnings.warn(
                f"delta={delta:g} >= 1/n = {1.0 / n_max:g}: such a delta allows releasing a "
                "record outright; use delta well below 1/n.", PrivacyWarning, stacklevel=2)
        if (noise_multiplier is None) == (target_epsilon is None):
            raise V.fail("noise_multiplier", noise_multiplier,
                         f"to be given, or target_epsilon instead (exactly one), for method {policy.name!r}")
        if noise_multiplier is not None:
            sigma = V.positive("noise_multiplier", noise_multiplier)
        else:
            V.positive("target_epsilon", target_epsilon)
            sigma = calibrate_noise(target_epsilon, sample_rate=float(q.max()), steps=steps,
                                    delta=delta, method=policy, accountant=accountant)
        epsilon = epsilon_of(sigma, sample_rate=float(q.max()), steps=steps, delta=delta,
                             method=policy, accountant=accountant)
    else:
        for name, val in (("noise_multiplier", noise_multiplier), ("target_epsilon", target_epsilon)):
            if val is not None:
                raise V.fail(name, val, "to be None for method 'sgd' (no noise)")
        sigma, epsilon = None, math.inf

    dev = resolve_device(device)
    rng = as_generator(seed)
    init_seed, train_seed = spawn_seed(rng), spawn_seed(rng)
    # Batches and noise come from a stream keyed by (seed, digest of the data, membership and
    # training settings); model m uses its own rows of every draw. Two runs that differ only
    # in data (e.g. neighbouring datasets) or settings (e.g. the clip bound) with one seed would
    # otherwise share their noise, and a combination of the two releases would cancel it
    # (common random numbers). Epochs are left out: a shorter run is a prefix of a longer one.
    train_seed = _stream_seed(train_seed, dataset, membership, policy, (
        model_name, batch_size, lr, optimizer, clip, sigma, delta, hidden))
    gen = torch.Generator(device=dev)
    gen.manual_seed(train_seed)

    images = isinstance(net, FuncStack) and dataset.image_shape is not None
    X = torch.from_numpy(np.array(dataset.X)).to(dev)
    if images:
        X = X.reshape(-1, *dataset.image_shape)
    Y = torch.from_numpy(np.array(dataset.y)).to(dev)
    G = torch.from_numpy(np.array(dataset.g)).to(dev)
    K = dataset.n_groups

    if isinstance(net, LinearStack):
        init_gen = torch.Generator(device=dev)
        init_gen.manual_seed(init_seed)
        params = net.init(n_models, init_gen, dev)
    else:
        seeds = [int(np.random.SeedSequence([init_seed, m]).generate_state(1, np.uint64)[0] >> 1)
                 for m in range(n_models)]
        params = net.init(n_models, seeds, dev)
    opt = _Optimizer(optimizer, params, lr)

    train_idx = np.zeros((n_models, n_max), dtype=np.int64)
    for m in range(n_models):
        rows = np.flatnonzero(membership[m])
        train_idx[m, : rows.size] = rows
    train_idx_t = torch.from_numpy(train_idx).to(dev)
    n_train_t = torch.from_numpy(n_train.astype(np.int64)).to(dev)
    q_t = torch.from_numpy(q).to(dev)

    budget = _memory_budget(memory_budget, dev)
    width_guess = int(batch_size + 4 * math.sqrt(batch_size) + 8)
    model_chunk = max(1, budget // max(1, net.bytes_per_sample() * width_guess))
    dp_step = DPStep(policy, clip=clip, noise_multiplier=sigma or 0.0,
                     batch_size=float(batch_size), n_groups=K, diagnostics=diagnostics)
    state = policy.initial_state(n_models, K, clip, dev)
    shapes = net.param_shapes()
    stride = max(1, math.ceil(steps / _MAX_TELEMETRY_STEPS))
    epoch_end = [int(round((e + 1) * steps / epochs)) for e in range(epochs)]
    tele_rows: list[dict[str, Any]] = []
    epoch_loss = torch.zeros(n_models, dtype=torch.float64, device=dev)
    snapshot = [p.clone() for p in params]
    epoch = 0
    report_every = max(1, steps // 100)

    def result(par: list[Tensor], epochs_done: int) -> EnsembleResult:
        eval_chunk = max(1, budget // max(1, net.bytes_per_sample() * 4096))
        losses, conf, _ = evaluate(net, par, X, Y, model_chunk=eval_chunk, sparse=sparse_rows,
                                   predictions=False)
        acc = gacc = preds = None
        if test is not None:
            Xt = torch.from_numpy(np.array(test.X)).to(dev)
            if images:
                Xt = Xt.reshape(-1, *test.image_shape)
            Yt = torch.from_numpy(np.array(test.y)).to(dev)
            _, _, pred = evaluate(net, par, Xt, Yt, model_chunk=eval_chunk)
            preds = pred.numpy()
            correct = preds == test.y[None, :]
            acc = correct.mean(1)
            gacc = np.full((n_models, K), np.nan)
            for k in range(K):
                sel = test.g == k
                if sel.any():
                    gacc[:, k] = correct[:, sel].mean(1)
        tele = pd.DataFrame(tele_rows, columns=["step", "epoch", "group", "clip_bound", "grc", "frac_clipped"])
        return EnsembleResult(
            losses=losses.numpy(), confidences=conf.numpy(), test_accuracy=acc,
            test_group_accuracy=gacc, test_predictions=preds, epsilon=float(epsilon),
            delta=float(delta), noise_multiplier=sigma, sample_rate=q, steps=steps,
            telemetry=tele, method=policy.name, model=str(model_name), device=str(dev),
            seconds=time.perf_counter() - t0, epochs_completed=epochs_done,
            diagnostics=diagnostics, private=bool(policy.private and not diagnostics),
        )

    # Buffers reused by every step (docs/design.md section 5): the batch gather, the noise and the
    # update of all models; per-record squared norms of the first layer's input.
    x_sq = X.flatten(1).square().sum(1) if isinstance(net, LinearStack) else None
    # Sparse rows (one-hot data): the first layer's forward reads only the nonzero columns.
    sparse_rows = net.sparse_first_layer(X) if isinstance(net, LinearStack) else None
    if sparse_rows is not None:  # column indices into the stacked W_1 of all models
        col_dtype = torch.int32 if n_models * (net.sizes[0] + 1) * n_max < 2**31 else torch.int64
        sparse_rows = (sparse_rows[0].to(col_dtype), sparse_rows[1])
        col_offset = (torch.arange(n_models, device=dev, dtype=col_dtype) * net.sizes[0]).view(-1, 1, 1)
        # Two-class MLP: the first layer's clipped sum runs over the batch's transposed rows.
        transpose = net.binary and len(net.sizes) == 3
    # Two-class LR on sparse rows reads only the sparse rows: no dense gather.
    dense_x = not isinstance(net, LinearStack) or net.dense_input_needed(sparse_rows is not None)
    noise_bufs = ([[torch.empty((n_models, *s), device=dev) for s in shapes] for _ in range(2)]
                  if policy.private else None)  # two: step t reads one while t + 1's is drawn
    chunks = _chunks(n_models, model_chunk)
    update: list[Tensor] = [torch.empty_like(p) for p in params] if len(chunks) > 1 else []
    bounds = torch.empty((n_models, K), device=dev)
    # Un-noised telemetry: only with diagnostics (outside epsilon, see the docstring).
    frac = torch.full((n_models, K), torch.nan, device=dev)
    grc = torch.full((n_models, K), torch.nan, device=dev)
    new_state = None if state is None else torch.empty_like(state)
    gather_buf: list[Tensor] = [X.new_empty(0)]
    workspace = Workspace() if isinstance(net, LinearStack) else None
    # One chunk: the batch of every model is gathered with the draws (on the draws thread when
    # it runs), into one of two buffers (step t reads one while t + 1's is gathered).
    ahead_bufs: list[list[Tensor]] | None = ([[X.new_empty(0)], [X.new_empty(0)]]
                                             if len(chunks) == 1 and _GATHER_AHEAD and dense_x else None)

    def draws(step: int) -> tuple[Tensor, Tensor, list[Tensor] | None, dict[str, Any], tuple]:
        """Return the step's random draws from the one generator, in a fixed order.

        With them the step's batch, which depends on nothing else: labels, groups, first-layer
        squared norms and (one chunk) the gathered inputs.
        """
        local, mask = poisson_batches(n_train_t, q_t, gen, n_max=n_max)
        noise = None
        if noise_bufs is not None:
            noise = noise_bufs[step % 2]
            for z in noise:
                z.normal_(generator=gen)
        pnoise = policy.draw_noise(n_models, K, shapes, gen, dev) if policy.private else {}
        rec = train_idx_t.gather(1, local)
        flat = rec.reshape(-1)
        batch = (Y.index_select(0, flat).view_as(rec), G.index_select(0, flat).view_as(rec),
                 None if x_sq is None else x_sq.index_select(0, flat).view_as(rec),
                 None if ahead_bufs is None else _gather(X, rec, ahead_bufs[step % 2]),
                 None if sparse_rows is None else _sparse_batch(sparse_rows, flat, rec.shape, col_offset,
                                                                net.sizes[0], mask if transpose else None))
        return rec, mask.to(torch.float32), noise, pnoise, batch

    # With one intra-op thread on a CPU, the draws of step t + 1 are made on a second thread
    # while step t trains (the same draws in the same order: the same numbers). The Gaussian
    # noise of all models costs about a third of an MLP step (docs/design.md section 5).
    stream = _prefetched(draws, steps, ahead=_PREFETCH and dev.type == "cpu" and torch.get_num_threads() == 1)
    try:
        for step, (rec, maskf, noise, pnoise, (y_b, g_b, xsq_b, x_b, sp_b)) in enumerate(stream):
            record = step % stride == 0
            for lo, hi in chunks:
                idx = rec[lo:hi]
                xb = x_b if x_b is not None or not dense_x else _gather(X, idx, gather_buf)
                p_chunk = [p[lo:hi] for p in params]
                if xsq_b is None:
                    gr = net.per_sample(p_chunk, xb, y_b[lo:hi])
                else:  # ||x_i||^2 of the first layer from the per-record table
                    sp = None if sp_b is None else sp_b.models(lo, hi, net.sizes[0])
                    gr = net.per_sample(p_chunk, xb, y_b[lo:hi], sparse=sp, x_sq=xsq_b[lo:hi],
                                        workspace=workspace)
                out = dp_step(
                    gr, groups=g_b[lo:hi], mask=maskf[lo:hi],
                    noise=None if noise is None else [z[lo:hi] for z in noise],
                    policy_noise=_slice(pnoise, lo, hi),
                    state=None if state is None else state[lo:hi],
                )
                if len(chunks) == 1:  # the step's own tensors: no copy
                    update = out.update
                else:
                    for u, o in zip(update, out.update):
                        u[lo:hi] = o
                bounds[lo:hi] = out.group_bounds
                if out.frac_clipped is not None:
                    frac[lo:hi] = out.frac_clipped
                if new_state is not None:
                    new_state[lo:hi] = out.state
                epoch_loss[lo:hi] += ((gr.losses * maskf[lo:hi]).sum(1) / maskf[lo:hi].sum(1).clamp(min=1)).double()
                if diagnostics and record and lo < _GRC_MODELS:
                    # GRC (raw group-mean gradients) costs K clipped sums: telemetry takes it from
                    # the first _GRC_MODELS models only, whatever the chunking.
                    top = min(hi, _GRC_MODELS) - lo
                    onehot = torch.nn.functional.one_hot(g_b[lo:lo + top], K).to(maskf.dtype) * maskf[lo:lo + top].unsqueeze(-1)
                    grc[lo:lo + top] = group_contribution(_head(gr, top), onehot, maskf[lo:lo + top])
            with torch.no_grad():
                opt.step(params, update)
            if new_state is not None:
                state, new_state = new_state, state
            if record:
                _telemetry(tele_rows, step, epoch, dataset.group_names, bounds, grc, frac, policy.private)
            if step + 1 == epoch_end[epoch]:
                # a mean loss of 1e4 nats (probability e^-10000 for the true class) is no model:
                # lr=1e30 keeps the numbers finite, but the training has diverged
                n_steps = max(epoch_end[epoch] - (epoch_end[epoch - 1] if epoch else 0), 1)
                bad = ~torch.isfinite(epoch_loss) | (epoch_loss / n_steps > _DIVERGED_LOSS)
                for p in params:
                    bad |= ~torch.isfinite(p.flatten(1)).all(1)
                if bool(bad.any()):
                    m = int(bad.nonzero()[0, 0])
                    partial = result(snapshot, epoch)
                    finite = bool(torch.isfinite(epoch_loss[m])) and all(
                        bool(torch.isfinite(p[m]).all()) for p in params)
                    why = f"exploding loss, mean {float(epoch_loss[m]) / n_steps:.3g} nats" if finite else \
                        "NaN or infinite loss"
                    raise TrainingDivergedError(
                        f"Model {m} diverged ({why}) in epoch {epoch}; lower lr "
                        f"(now {lr:g}) or clip. The models after {epoch} finished epochs are in "
                        "the error's .partial.", model=m, epoch=epoch, partial=partial)
                for snap, p in zip(snapshot, params):
                    snap.copy_(p)
                epoch_loss.zero_()
                epoch = min(epoch + 1, epochs - 1)
            if progress is not None and ((step + 1) % report_every == 0 or step + 1 == steps):
                progress(step + 1, steps)
    finally:
        stream.close()
    return result(params, epochs)


def _prefetched(draw: Callable[[int], Any], steps: int, *, ahead: bool) -> Iterator[Any]:
    """Yield ``draw(0), ..., draw(steps - 1)``.

    With ``ahead``, each one is made on a second thread while the caller works on the previous
    one (one worker: the calls keep their order).
    """
    if not ahead:
        for step in range(steps):
            yield draw(step)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="fairpriv-draws") as pool:
        pending = pool.submit(draw, 0)
        try:
            for step in range(steps):
                value = pending.result()
                if step + 1 < steps:
                    pending = pool.submit(draw, step + 1)
                yield value
        finally:
            pending.cancel()


def _stream_seed(seed: int, dataset: GroupedDataset, membership: np.ndarray, policy: Any,
                 settings: tuple) -> int:
    """Return a 63-bit seed from ``seed`` and a sha256 of the data, membership and settings."""
    import hashlib

    h = hashlib.sha256()
    for arr in (dataset.X, dataset.y, dataset.g, membership):
        a = np.ascontiguousarray(arr)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    # Floats enter the key at 10 significant digits: a calibrated sigma that moves in its last
    # bits (a more exact accountant, another platform's libm) must not draw other noise.
    settings = tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in settings)
    h.update(repr((policy, settings)).encode())
    key = int.from_bytes(h.digest()[:8], "little")
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1, np.uint64)[0] >> 1)


def _head(grads: Any, top: int) -> Any:
    """Return the per-sample gradients of the first ``top`` models of a chunk."""
    if isinstance(grads, (SeqGrads, BinaryGrads)):
        return grads.head(top)
    if isinstance(grads, LinearGrads):
        sq = [None if t is None else t[:top] for t in (grads.input_sq or [None] * len(grads.inputs))]
        return LinearGrads([h[:top] for h in grads.inputs], [d[:top] for d in grads.deltas],
                           grads.losses[:top], sq)
    return FuncGrads([g[:top] for g in grads.grads], grads.losses[:top])


def _gather(src: Tensor, idx: Tensor, buf: list[Tensor]) -> Tensor:
    """``src[idx]`` of shape ``(*idx.shape, *src.shape[1:])`` written into a reused buffer.

    ``buf[0]`` is a flat buffer that grows (by a quarter more than asked) when a step's batch
    is wider than any before; the same memory serves every step and chunk.
    """
    row = src[0].numel()
    need = idx.numel() * row
    if buf[0].numel() < need:
        buf[0] = src.new_empty(need + need // 4)
    out = buf[0][:need].view(idx.numel(), *src.shape[1:])
    torch.index_select(src, 0, idx.reshape(-1), out=out)
    return out.view(*idx.shape, *src.shape[1:])


def _sparse_batch(rows: tuple[Tensor, Tensor], flat: Tensor, shape: tuple[int, ...], col_offset: Tensor,
                  d: int, mask: Tensor | None) -> SparseBatch:
    """Return the nonzero rows of the step's records ``flat``; with a ``mask``, also their transpose."""
    cols = rows[0].index_select(0, flat).view(*shape, -1).add_(col_offset)
    vals = rows[1].index_select(0, flat).view(*shape, -1)
    return SparseBatch(cols, vals) if mask is None else transpose_rows(cols, vals, mask, d)


def _slice(noise: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    return {k: ([t[lo:hi] for t in v] if isinstance(v, list) else v[lo:hi]) for k, v in noise.items()}


def _memory_budget(memory_budget: int | None, dev: torch.device) -> int:
    if memory_budget is not None:
        return V.integer("memory_budget", memory_budget, 1)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free // 2)
    return _CPU_BUDGET


def _telemetry(rows, step, epoch, names, bounds, grc, frac, private) -> None:
    b = bounds.float().cpu().numpy()
    g = grc.float().cpu().numpy()
    f = frac.float().cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: group absent everywhere
        gm = np.nanmean(g, 0)
        fm = np.nanmean(f, 0)
        bm = b.mean(0)
    for k, name in enumerate(names):
        rows.append({
            "step": step, "epoch": epoch, "group": name,
            "clip_bound": float(bm[k]) if private else math.nan,
            "grc": float(gm[k]),
            "frac_clipped": float(fm[k]) if private else math.nan,
        })
