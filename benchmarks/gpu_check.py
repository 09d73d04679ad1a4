"""GPU check: the ensemble at paper scale on one GPU, and Opacus on the same GPU.

Run on a machine with a GPU::

    python benchmarks/gpu_check.py                 # 400 Adult MLP-256 and 400 digits CNNs x 20 epochs
    python benchmarks/gpu_check.py --small         # seconds, any device (CPU when no GPU): a smoke run

Prints, for the chosen device: the wall time of 400 Adult MLP-256 models x 20 epochs of
DP-SGD (target <= 10 s on one GPU), of 400 digits CNNs x 20 epochs, Opacus's sample-gradients
per second on the same model and device, and the ratios. The same engine code runs on every
device (``device=`` only); nothing here is CUDA-specific beyond synchronising the timers.
Unmeasured on a GPU so far: no device machine was lent to the session that wrote it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_training import _sync, opacus_rate  # noqa: E402

from fairpriv_lab.data import load_dataset  # noqa: E402
from fairpriv_lab.engine.device import resolve_device  # noqa: E402
from fairpriv_lab.engine.training import train_ensemble  # noqa: E402


def timed_run(ds, model, *, n_models, epochs, batch_size, device):
    member = np.random.default_rng(0).random((n_models, ds.n_samples)) < 0.5
    _sync(device)
    t0 = time.perf_counter()
    res = train_ensemble(ds, member, model=model, method="dpsgd", noise_multiplier=1.0, clip=1.0,
                         epochs=epochs, batch_size=batch_size, device=device, seed=0)
    _sync(device)
    seconds = time.perf_counter() - t0
    return seconds, n_models * res.steps * batch_size / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N, cpu")
    parser.add_argument("--small", action="store_true", help="a few models and records (smoke run)")
    args = parser.parse_args(argv)
    device = str(resolve_device(args.device))
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "CPU"
    adult, digits = load_dataset("adult"), load_dataset("digits")
    n_models, epochs = (4, 1) if args.small else (400, 20)
    if args.small:
        adult, digits = adult.sample(600, seed=0), digits.sample(300, seed=0)
    print(f"device {device} ({name}), torch {torch.__version__}, {n_models} models x {epochs} epochs"
          + (" [small]" if args.small else ""), flush=True)
    rows = [("Adult MLP-256", adult, "mlp", 256, 10.0), ("digits CNN", digits, "cnn", 64, None)]
    for label, ds, model, b, target in rows:
        seconds, rate = timed_run(ds, model, n_models=n_models, epochs=epochs, batch_size=b, device=device)
        op = opacus_rate(ds, model, batch_size=min(b, ds.n_samples // 2), steps=5 if args.small else 50,
                         device=device)
        goal = "" if target is None or args.small else f" (target <= {target:g} s: {'met' if seconds <= target else 'NOT met'})"
        print(f"{label:14s} ensemble {seconds:8.1f} s{goal}, {rate:12,.0f} sample-grads/s; "
              f"Opacus {op:10,.0f}/s; ratio {rate / op:6.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
