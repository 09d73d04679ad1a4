"""Sample-gradients per second: Opacus (one model at a time, hooks) vs the stacked ensemble.

Run: ``python benchmarks/bench_training.py [--quick]``. Same data, same architecture, same
batch size and clip bound, DP-SGD with noise, in one process; prints the ratio per model.
Opacus runs GradSampleModule + DPOptimizer on fixed batches (its cheapest setting: no
DataLoader, no Poisson sampling); the ensemble's time covers its whole training loop
(Poisson sampling, per-sample norms, clipping, noise, update), measured between the first and
last progress callbacks so that set-up and the final loss evaluation are excluded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairpriv_lab.data import load_dataset  # noqa: E402
from fairpriv_lab.engine.models import build_model  # noqa: E402
from fairpriv_lab.engine.training import train_ensemble  # noqa: E402


def opacus_rate(ds, model, *, batch_size, steps, clip=1.0, sigma=1.0, hidden=256):
    import warnings

    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    net = build_model(model, n_features=ds.n_features, n_classes=ds.n_classes,
                      image_shape=ds.image_shape, hidden=hidden)
    if hasattr(net, "sizes"):
        module = net.to_module(net.init(1, torch.Generator().manual_seed(0)), 0)
    else:
        module = net.to_module(net.init(1, [0]), 0)
    gsm = GradSampleModule(module)
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=sigma,
                      max_grad_norm=clip, expected_batch_size=batch_size)
    X = torch.from_numpy(np.array(ds.X))
    if ds.image_shape is not None and model != "lr" and model != "mlp":
        X = X.reshape(-1, *ds.image_shape)
    y = torch.from_numpy(np.array(ds.y))
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.choice(len(y), batch_size, replace=False)) for _ in range(steps + 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, idx in enumerate(batches):
            if i == 2:
                t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(gsm(X[idx]), y[idx]).backward()
            opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def ensemble_rate(ds, model, *, n_models, batch_size, epochs, clip=1.0, sigma=1.0, hidden=256):
    member = np.random.default_rng(0).random((n_models, ds.n_samples)) < 0.5
    stamps: list[tuple[int, float]] = []
    res = train_ensemble(ds, member, model=model, method="dpsgd", noise_multiplier=sigma, clip=clip,
                         epochs=epochs, batch_size=batch_size, hidden=hidden, device="cpu", seed=0,
                         progress=lambda done, total: stamps.append((done, time.perf_counter())))
    (s0, t0), (s1, t1) = stamps[0], stamps[-1]
    return n_models * (s1 - s0) * batch_size / (t1 - t0), res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer models and steps (smoke test)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternate Opacus and ensemble runs this often, report the best of each")
    args = parser.parse_args()
    adult = load_dataset("adult")
    digits = load_dataset("digits")
    # Half of Adult (22.6k records; each model trains on ~11.3k): ~44 steps per epoch.
    small_adult = adult.sample(adult.n_samples // (4 if args.quick else 2), seed=0)
    cases = [
        # name, dataset (each model trains on a random half), model, n_models, batch,
        # Opacus steps; the ensemble runs whole epochs (about n / 2 / batch steps each).
        ("Adult MLP-256 DP-SGD", small_adult, "mlp", 16 if args.quick else 64, 256, 40, 1),
        ("Adult LR DP-SGD", small_adult, "lr", 32 if args.quick else 128, 256, 100, 1),
        ("Digits CNN DP-SGD", digits, "cnn", 4 if args.quick else 16, 64, 20, 2),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'quick' if args.quick else 'full'} run, best of {args.repeat}")
    print(f"{'case':24s} {'models':>6s} {'opacus/s':>10s} {'ensemble/s':>11s} {'ratio':>7s}")
    for name, ds, model, n_models, b, steps, epochs in cases:
        op = ens = 0.0
        for _ in range(args.repeat):
            op = max(op, opacus_rate(ds, model, batch_size=b, steps=steps // 2 if args.quick else steps))
            ens = max(ens, ensemble_rate(ds, model, n_models=n_models, batch_size=b, epochs=epochs)[0])
        print(f"{name:24s} {n_models:6d} {op:10,.0f} {ens:11,.0f} {ens / op:6.1f}x", flush=True)


if __name__ == "__main__":
    main()
