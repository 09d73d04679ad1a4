"""Sample-gradients per second: the stacked ensemble vs Opacus and vs a plain loop of models.

Run: ``python benchmarks/bench_training.py [--quick] [--threads 1 2] [--repeat 3]``.

For each case (Adult LR, Adult MLP-256, digits CNN, MNIST-shape 28x28 CNN), in one process,
interleaved A B C D A B C D ``--repeat`` times, medians reported:

* **ensemble DP**: ``train_ensemble(..., method="dpsgd")``, every model on a random half of
  the data (Poisson sampling, per-sample norms, clipping, noise, update), timed between the
  first and last progress callbacks (set-up and the final loss evaluation excluded);
* **ensemble SGD**: the same with ``method="sgd"`` (DP / SGD throughput ratio, target >= 0.8);
* **Opacus**: one model, ``GradSampleModule`` + ``DPOptimizer`` (hooks) on fixed batches drawn
  in advance (its cheapest setting: no DataLoader, no Poisson sampler); target ratios
  ensemble / Opacus >= 20x (LR), 30x (MLP), 5x (CNNs);
* **plain loop**: ordinary non-private torch models trained one after another with
  ``torch.optim.SGD`` on fixed batches, the no-privacy ceiling of not batching (target
  ensemble DP >= 2x).

Rate = sample-gradients per second = models x steps x batch size / seconds. The load average
(``os.getloadavg``) is printed before and after each thread count: on a shared machine the
ratios, measured interleaved in one process, are the meaningful part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairpriv_lab.data import GroupedDataset, load_dataset  # noqa: E402
from fairpriv_lab.engine.device import set_num_threads  # noqa: E402
from fairpriv_lab.engine.models import build_model  # noqa: E402
from fairpriv_lab.engine.training import train_ensemble  # noqa: E402


def _module(ds, model, hidden, device):
    net = build_model(model, n_features=ds.n_features, n_classes=ds.n_classes,
                      image_shape=ds.image_shape, hidden=hidden)
    if hasattr(net, "sizes"):
        return net.to_module(net.init(1, torch.Generator().manual_seed(0)), 0).to(device)
    return net.to_module(net.init(1, [0]), 0).to(device)


def _tensors(ds, model, device):
    X = torch.from_numpy(np.array(ds.X))
    if ds.image_shape is not None and model == "cnn":
        X = X.reshape(-1, *ds.image_shape)
    return X.to(device), torch.from_numpy(np.array(ds.y)).to(device)


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def opacus_rate(ds, model, *, batch_size, steps, clip=1.0, sigma=1.0, hidden=256, device="cpu"):
    """Sample-gradients per second of one Opacus model (hooks) on fixed batches."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    gsm = GradSampleModule(_module(ds, model, hidden, device))
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=sigma,
                      max_grad_norm=clip, expected_batch_size=batch_size)
    X, y = _tensors(ds, model, device)
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.choice(len(y), batch_size, replace=False)).to(device)
               for _ in range(steps + 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, idx in enumerate(batches):
            if i == 2:
                _sync(device)
                t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(gsm(X[idx]), y[idx]).backward()
            opt.step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - t0)


def loop_rate(ds, model, *, n_models, batch_size, steps, hidden=256, device="cpu"):
    """Sample-gradients per second of ordinary non-private models trained one after another."""
    X, y = _tensors(ds, model, device)
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.choice(len(y), batch_size, replace=False)).to(device)
               for _ in range(steps)]
    modules = [_module(ds, model, hidden, device) for _ in range(n_models)]
    _sync(device)
    t0 = time.perf_counter()
    for mod in modules:
        opt = torch.optim.SGD(mod.parameters(), lr=0.1)
        for idx in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(mod(X[idx]), y[idx]).backward()
            opt.step()
    _sync(device)
    return n_models * steps * batch_size / (time.perf_counter() - t0)


def ensemble_rate(ds, model, *, n_models, batch_size, epochs, method="dpsgd", clip=1.0, sigma=1.0,
                  hidden=256, device="cpu"):
    """Sample-gradients per second of the stacked ensemble's training loop, and the result."""
    member = np.random.default_rng(0).random((n_models, ds.n_samples)) < 0.5
    stamps: list[tuple[int, float]] = []
    kw = {"noise_multiplier": sigma} if method != "sgd" else {}

    def tick(done, total):
        _sync(device)
        stamps.append((done, time.perf_counter()))

    res = train_ensemble(ds, member, model=model, method=method, clip=clip, epochs=epochs,
                         batch_size=batch_size, hidden=hidden, device=device, seed=0, progress=tick, **kw)
    (s0, t0), (s1, t1) = stamps[0], stamps[-1]
    return n_models * (s1 - s0) * batch_size / (t1 - t0), res


def mnist_shape(n: int, seed: int = 0) -> GroupedDataset:
    """Random 28x28 images with 10 classes (the MNIST shape; the timing does not need MNIST)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    X = rng.random((n, 784), dtype=np.float32)
    return GroupedDataset(X, y, y % 2, group_names=["even", "odd"], image_shape=(1, 28, 28))


def cases(quick: bool):
    adult = load_dataset("adult")
    small_adult = adult.sample(adult.n_samples // (8 if quick else 2), seed=0)
    digits = load_dataset("digits")
    mnist = mnist_shape(1000 if quick else 4000)
    # name, data, model, ensemble models, batch, Opacus steps, ensemble epochs, loop models
    return [
        ("Adult LR", small_adult, "lr", 16 if quick else 128, 256, 20 if quick else 100, 1, 4 if quick else 16),
        ("Adult MLP-256", small_adult, "mlp", 8 if quick else 64, 256, 10 if quick else 40, 1, 2 if quick else 8),
        ("digits CNN", digits, "cnn", 4 if quick else 16, 64, 10 if quick else 20, 1 if quick else 2, 2 if quick else 4),
        ("MNIST-shape CNN", mnist, "cnn", 2 if quick else 8, 64, 4 if quick else 10, 1, 1 if quick else 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer models and steps (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (medians)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure")
    parser.add_argument("--only", nargs="*", default=None, help="case names to run (substring match)")
    args = parser.parse_args()
    todo = [c for c in cases(args.quick) if not args.only or any(o.lower() in c[0].lower() for o in args.only)]
    for threads in args.threads:
        set_num_threads(threads)
        print(f"\ntorch {torch.__version__}, {threads} thread(s), {'quick' if args.quick else 'full'}, "
              f"median of {args.repeat}, load before {os.getloadavg()[0]:.1f}", flush=True)
        print(f"{'case':18s} {'models':>6s} {'Opacus/s':>9s} {'loop/s':>9s} {'ens DP/s':>9s} {'ens SGD/s':>9s} "
              f"{'DP/Opacus':>9s} {'DP/loop':>8s} {'DP/SGD':>7s}")
        for name, ds, model, n_models, b, steps, epochs, n_loop in todo:
            runs: dict[str, list[float]] = {"op": [], "loop": [], "dp": [], "sgd": []}
            for _ in range(args.repeat):
                runs["op"].append(opacus_rate(ds, model, batch_size=b, steps=steps))
                runs["dp"].append(ensemble_rate(ds, model, n_models=n_models, batch_size=b, epochs=epochs)[0])
                runs["loop"].append(loop_rate(ds, model, n_models=n_loop, batch_size=b, steps=steps))
                runs["sgd"].append(ensemble_rate(ds, model, n_models=n_models, batch_size=b, epochs=epochs,
                                                 method="sgd")[0])
            med = {k: statistics.median(v) for k, v in runs.items()}
            print(f"{name:18s} {n_models:6d} {med['op']:9,.0f} {med['loop']:9,.0f} {med['dp']:9,.0f} "
                  f"{med['sgd']:9,.0f} {med['dp'] / med['op']:8.1f}x {med['dp'] / med['loop']:7.1f}x "
                  f"{med['dp'] / med['sgd']:7.2f}", flush=True)
        print(f"load after {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
