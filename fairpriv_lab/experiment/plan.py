"""``plan(config)``: estimated peak memory and time of a run before anything is trained.

A cost model, not a measurement (docs/design.md section 5): the run's size follows from the
configuration alone (records per model, Poisson steps, sample-gradients, per-model arrays),
and the seconds per sample-gradient of each model kind are constants measured on the
reference machine (a 2-core AMD EPYC VM, torch 2.13 CPU, one intra-op thread; see
``_SECONDS_PER_SAMPLE_GRAD``), scaled by the model's parameter count. Planning reads no
records for the bundled datasets and takes milliseconds, so a configuration far beyond the
machine (400 CNNs on MNIST on a CPU, a million models) is refused at once with the estimate
and what to change, instead of dying hours later or in the OOM killer.

Examples
--------
>>> from fairpriv_lab.experiment import ExperimentConfig
>>> p = plan(ExperimentConfig.from_dict({"data": {"name": "adult"}, "train": {"model": "lr"},
...                                      "game": {"n_models": 16}, "device": "cpu"}))
>>> p.n_models, p.peak_bytes < p.free_bytes
(16, True)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from .._core.exceptions import ConfigError
from .config import ExperimentConfig

__all__ = ["Plan", "PlanWarning", "plan"]

#: Records, features, classes and image shape of datasets whose size is known without loading.
_KNOWN: dict[str, tuple[int, int, int, tuple[int, ...] | None]] = {
    "adult": (45_222, 103, 2, None),
    "digits": (1_797, 64, 10, (1, 8, 8)),
    "mnist": (70_000, 784, 10, (1, 28, 28)),
}

#: CPU seconds per sample-gradient (one model, one record, one step: forward, per-sample
#: norm, clipped sum and its share of the noise) per unit of work, measured on the reference
#: machine with the engine of this version (process CPU time, one thread, load 9-17 from
#: other jobs on the 2 cores). Work units: parameters for LR and the MLP, multiply-adds of
#: the forward pass for the CNN. Adult LR, 400 models: 45 ms a step of 400 x 256 samples,
#: 208 parameters. Adult MLP-256, 64 models: 110 ms a step of 64 x 256 samples, 27,650
#: parameters. CNN: the MNIST-shape (28x28) CNN, 910k multiply-adds, measured 1.66x faster
#: than the 8.3e-10 of the previous engine (interleaved, load 7; the digits CNN gained 3.3x,
#: so its estimate is about twice its time). The next step's draws run on a second thread
#: (training.py), so an idle second core hides part of the CPU time counted here.
#: Rechecked 2026-11-30 22:25 UTC after the two-class LR/MLP path and the grouped-convolution
#: CNN (issue 15), fresh cache, one thread, load 1.2, whole ``run`` (training and audit):
#: Adult LR 200 models x 6 epochs 7.9 s CPU (estimate 10.8: kept), Adult MLP-256 32 x 2
#: 6.6 s (was estimated at 17.6), digits CNN 32 x 8 6.9 s (21.5): the MLP and CNN constants
#: were cut (from 2.4e-10 and 5.0e-10); the estimates are now 14.2 s (MLP, 2.2x: the final loss
#: evaluation term below dominates at this size) and 15.2 s (digits CNN, 2.2x; the MNIST-shape
#: CNN gained 1.75x in the step against digits' 1.27x, so its estimate sits closer): still on
#: the safe side for a busy machine, and chunks suggested for 30 s then take 10-20 s.
_SECONDS_PER_UNIT = {"lr": 2.1e-9, "mlp": 1.3e-10, "cnn": 3.5e-10}
#: CPU seconds of the final loss evaluation (``engine.training.evaluate``) per (model, record):
#: a fixed part (log-softmax, gathers, logsumexp and argmax over the classes) plus one per work
#: unit of the forward pass. Measured 2026-11-30 23:38 UTC (one thread, load 0.6, process CPU
#: time of ``evaluate`` inside a whole ``run``, after its sparse first layer and cache-sized
#: record blocks): Adult LR 200 models 1.12 s (124 ns a pair, the fixed part dominates), Adult
#: MLP-256 32 models 1.24 s and 64 models 2.80 s (0.86-0.97 us a pair), digits CNN 32 models
#: 0.66 s (11.5 us a pair, 4.8e-11 s a multiply-add). Set about 1.2x above these (the safe side
#: for a busy machine). The previous single term, 2.5e-10 s per (model, record, parameter), put
#: the MLP's evaluation at 8x its time now.
_EVAL_SECONDS_PER_PAIR = 1.5e-7
_EVAL_SECONDS_PER_UNIT = {"lr": 3.3e-11, "mlp": 3.3e-11, "cnn": 6e-11}
_FIXED_SECONDS_PER_STEP = 2e-3  # Python overhead of one step (all models), CPU
_GPU_SPEEDUP = 20.0  # uncalibrated: no GPU was measured; shown as such
_BASE_BYTES = 600 << 20  # interpreter, torch, pandas, altair and the audit's imports
_STEP_BUDGET = 1 << 30  # the engine's per-chunk working memory on a CPU (training.py)
#: Seconds above which ``plan`` and ``run`` refuse a run unless given ``time_limit=None``: half a
#: day. With the issue-15 engine 400 CNNs on full MNIST are estimated at about 20 h on a 2-core
#: CPU (a GPU's job), and no CPU preset needs more than 30 minutes.
DEFAULT_TIME_LIMIT = 12 * 3600.0


class PlanWarning(UserWarning):
    """A run is estimated to take longer than the time budget."""


@dataclass(frozen=True)
class Plan:
    """What a run will cost, estimated before training.

    Attributes
    ----------
    device : str
    model : str
    n_models, records_per_model, steps : int
    sample_grads : float
        ``n_models * steps * batch_size``.
    peak_bytes : int
        Estimated peak resident memory of the whole run (training and audit).
    free_bytes : int
        Memory available now on the device (RAM on a CPU).
    seconds : float
        Estimated wall time of training and the final loss evaluation.
    chunk_models : int
        Models per cached chunk so that one chunk takes 10 to 60 seconds (about 30).
    calibrated : bool
        False when the device has no measured constants (GPUs): the time is a rough guess.
    """

    device: str
    model: str
    n_models: int
    records_per_model: int
    steps: int
    sample_grads: float
    peak_bytes: int
    free_bytes: int
    seconds: float
    chunk_models: int
    calibrated: bool = True

    @property
    def seconds_per_chunk(self) -> float:
        """Estimated seconds of one chunk of ``chunk_models`` models."""
        return self.seconds * self.chunk_models / self.n_models

    def __str__(self) -> str:
        guess = "" if self.calibrated else " (uncalibrated on this device)"
        return (
            f"plan: {self.n_models} {self.model} models x {self.steps:,} steps "
            f"({self.sample_grads:,.0f} sample-gradients) on {self.device}: "
            f"~{_duration(self.seconds)}{guess}, peak ~{_gb(self.peak_bytes)} of "
            f"{_gb(self.free_bytes)} free; suggested chunk_models={self.chunk_models} "
            f"(~{_duration(self.seconds_per_chunk)} a chunk)"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n < 1e12 else f"{n / 1e12:,.1f} TB"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 86400 * 3:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.0f} days"


def _data_shape(cfg: ExperimentConfig) -> tuple[int, int, int, tuple[int, ...] | None]:
    from ..data import list_datasets

    d = cfg.data
    if d.name == "synthetic":  # generated: data.n records (the generator's default size when None)
        info = {i.name: i for i in list_datasets()}[d.name]
        n_features = dict(d.options).get("n_features", _parameter_default(info, "n_features"))
        return (int(d.n or info.default_size), int(n_features), 2, None)
    if d.name in _KNOWN:
        shape = _KNOWN[d.name]
    else:  # unknown size: load it (cached datasets load in about a second)
        from .loading import load_experiment_data

        _, train, test = load_experiment_data(d)
        n = train.n_samples + test.n_samples
        shape = (n, train.n_features, train.n_classes, train.image_shape)
    n = shape[0] if d.n is None else min(int(d.n), shape[0])
    return (n, *shape[1:])


def _parameter_default(info: Any, name: str) -> Any:
    import inspect

    return inspect.signature(info.options_of or info.loader).parameters[name].default


def _size(model: str, d: int, classes: int, hidden: int, image: tuple[int, ...] | None) -> tuple[int, int]:
    """Parameters of one model and work units of one sample-gradient (see _SECONDS_PER_UNIT)."""
    if model == "lr":
        p = (d + 1) * classes
        return p, p
    if model == "mlp":
        p = (d + 1) * hidden + (hidden + 1) * classes
        return p, p
    c, h, w = image if image is not None else (1, int(math.isqrt(d)), int(math.isqrt(d)))
    pad = 2 if min(h, w) < 16 else 0
    h1, w1 = h + 2 * pad - 4, w + 2 * pad - 4  # conv 5x5 outputs
    hp, wp = h1 // 2, w1 // 2
    h2, w2 = hp + 2 * pad - 3, wp + 2 * pad - 3  # conv 4x4 outputs
    flat = 32 * max(h2 // 2, 1) * max(w2 // 2, 1)
    p = (c * 25 + 1) * 16 + (16 * 16 + 1) * 32 + (flat + 1) * 32 + 33 * classes
    macs = h1 * w1 * c * 25 * 16 + h2 * w2 * 256 * 32 + flat * 32 + 32 * classes
    return p, max(macs, 1)


def plan(config: ExperimentConfig | dict[str, Any], *, time_budget: float | None = 3600.0,
         time_limit: float | None = DEFAULT_TIME_LIMIT, check: bool = True) -> Plan:
    """Estimate peak memory and time of ``run(config)``; refuse what cannot fit.

    Parameters
    ----------
    config : ExperimentConfig or dict
    time_budget : float or None
        Seconds; a :class:`PlanWarning` when the estimate exceeds it (``None``: no warning).
    time_limit : float or None
        Seconds; refuse a run estimated to take longer (default :data:`DEFAULT_TIME_LIMIT`,
        12 hours; ``None``: never).
    check : bool
        Raise when the estimate exceeds the free memory or ``time_limit``.

    Returns
    -------
    Plan
        ``str(plan)`` is a one-line summary that ``run``, the CLI and the panel print.

    Raises
    ------
    ConfigError
        If the run would need more memory than is free, or more than ``time_limit``,
        naming the estimate and what to change (models, records, epochs, hidden units, device).
    """
    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
    from ..engine.device import free_memory, resolve_device

    device = str(resolve_device(cfg.device))
    n, d, classes, image = _data_shape(cfg)
    t, g = cfg.train, cfg.game
    n_train = max(1, int(round(n * (1 - cfg.data.test_size))))
    if g.kind == "half":
        per_model = max(1, n_train // 2)
    elif g.kind == "aloo":
        per_model = max(1, n_train - (g.m or 0) // 2)
    else:
        per_model = max(1, n_train - 1)
    M = int(g.n_models)
    steps = max(1, int(round(t.epochs * per_model / t.batch_size)))
    sample_grads = float(M) * steps * t.batch_size
    P, units = _size(t.model, d, classes, t.hidden, image)

    # memory: per-model arrays (membership, train indices, losses and confidences, merged and
    # audited copies), parameters with optimizer state and noise, per-step working memory.
    per_model_bytes = per_model * 8 + n_train * (1 + 4 * 2 * 3) + P * 4 * (6 if t.optimizer == "adam" else 4)
    width = t.batch_size + 4 * math.sqrt(t.batch_size) + 8
    act = 4 * 4 * (d + (t.hidden if t.model == "mlp" else 0) + classes) + 64
    if t.model == "cnn":
        act = 2 * 4 * (3 * P + 64 * d)
    step_bytes = min(float(M) * width * act, _STEP_BUDGET) if not device.startswith("cuda") else float(M) * width * act
    data_bytes = n * d * 4 * 3
    peak = int(_BASE_BYTES + data_bytes + M * per_model_bytes + step_bytes)

    cpu_seconds = (sample_grads * units * _SECONDS_PER_UNIT[t.model]
                   + steps * _FIXED_SECONDS_PER_STEP * math.ceil(M / max(1, int(_STEP_BUDGET // max(1, width * act))))
                   + float(M) * n * (_EVAL_SECONDS_PER_PAIR + units * _EVAL_SECONDS_PER_UNIT[t.model]))
    calibrated = not device.startswith(("cuda", "mps"))
    seconds = cpu_seconds if calibrated else cpu_seconds / _GPU_SPEEDUP
    per_model_s = seconds / M
    chunk = int(max(2, min(M, round(30.0 / max(per_model_s, 1e-9)))))
    chunk -= chunk % 2
    chunk = max(2, chunk)
    free, _ = free_memory(device)
    result = Plan(device, t.model, M, per_model, steps, sample_grads, peak, free, seconds, chunk, calibrated)
    if check and peak > free:
        big = max((("game.n_models", M * per_model_bytes), ("data.n", data_bytes + M * n_train * 25),
                   ("train.hidden", step_bytes + M * P * 16)), key=lambda kv: kv[1])[0]
        raise ConfigError(
            f"This run needs about {_gb(peak)} of memory but {_gb(free)} is free on {device} "
            f"({M} {t.model} models x {per_model:,} records, {P:,} parameters each; "
            f"~{_duration(seconds)}). Lower {big} (the largest share), or the models, records "
            f"or hidden units, or run on a device with more memory."
        )
    if check and time_limit is not None and seconds > time_limit:
        raise ConfigError(
            f"This run would take about {_duration(seconds)} on {device} ({M} {t.model} models x "
            f"{steps:,} steps x batch {t.batch_size} = {sample_grads:,.0f} sample-gradients; "
            f"peak ~{_gb(peak)}), above the limit of {_duration(time_limit)}. Lower game.n_models, "
            "train.epochs or data.n, use a smaller model, or run on a GPU (device='cuda'); "
            "time_limit=None (in run or plan) lifts the limit."
        )
    if time_budget is not None and seconds > time_budget:
        warnings.warn(
            f"{result}: above the time budget of {_duration(time_budget)}; lower game.n_models, "
            "train.epochs or data.n, or use a GPU (device='cuda').", PlanWarning, stacklevel=2)
    return result
