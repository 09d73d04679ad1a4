"""The two-class MLP's per-sample pass: one compiled kernel against the former torch passes.

    python benchmarks/bench_mlp_pass.py [--repeat 5] [--threads 1 2]

The baseline is the engine's pass before 2026-12-01 (``2 sigmoid(2 z) - 1`` for tanh, then
``h . w``, ``h^2``, ``e = w - h^2 w`` and ``||e||`` as eleven torch passes over each 1 MB block
of (models, batch, hidden) values), swapped into ``engine.models`` in this process; the
current path is :func:`fairpriv_lab.engine.models._binary_hidden` (the engine's tanh and the
row sums in one numba pass, docs/design.md section 5). Interleaved A B A B, medians:

* **pass**: the per-sample pass alone over 64 models x 292 samples x 256 hidden units, in the
  engine's 1 MB blocks (the same tensors each time);
* **training**: ``train_ensemble`` of 64 Adult MLP-256 models, DP-SGD, one epoch of a random
  half of 18,089 records (batches of 256), milliseconds per step between the first and last
  progress callbacks. The baseline gets ``z`` without the doubling its bag used to fold in, so
  it pays one more pass over the block (about 3 % of its step).

The load average is printed before and after each thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairpriv_lab.data import load_dataset  # noqa: E402
from fairpriv_lab.engine import models  # noqa: E402
from fairpriv_lab.engine.training import train_ensemble  # noqa: E402


def torch_passes(z, b1, w, h, e, diff, h_sq, e_norm):
    """The engine's per-sample pass before the fused kernel (2 sigmoid(2 z) - 1 and ten torch passes)."""
    wb = w.unsqueeze(1)
    models._lanewise(torch.sigmoid, z.mul_(2.0).add_(b1.unsqueeze(1), alpha=2.0), h)
    h.mul_(2.0).sub_(1.0)
    torch.sum(torch.mul(h, wb, out=e), -1, out=diff)
    torch.sum(torch.mul(h, h, out=e), -1, out=h_sq)
    torch.sub(wb, e.mul_(wb), out=e)
    torch.linalg.vector_norm(e, dim=-1, out=e_norm)


def old_tanh_(t):
    """The former tanh of the forward pass: 2 sigmoid(2 z) - 1."""
    return models._lanewise(torch.sigmoid, t.mul_(2.0)).mul_(2.0).sub_(1.0)


VARIANTS = {"torch passes (before)": (torch_passes, old_tanh_),
            "fused kernel (now)": (models._binary_hidden, models._tanh_)}


def use(name: str) -> None:
    models._binary_hidden, models._tanh_ = VARIANTS[name]


def pass_ms(M=64, B=292, H=256) -> float:
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn((M, B, H), generator=g) * 2
    b1, w = torch.randn((M, H), generator=g) * 0.3, torch.randn((M, H), generator=g) * 0.2
    z, h, e = torch.empty_like(z0), torch.empty_like(z0), torch.empty_like(z0)
    out = [torch.empty((M, B)) for _ in range(3)]
    step = max(1, models._BLOCK_BYTES // (B * H * 4))
    z.copy_(z0)
    t0 = time.perf_counter()
    for lo in range(0, M, step):
        hi = min(M, lo + step)
        models._binary_hidden(z[lo:hi], b1[lo:hi], w[lo:hi], h[lo:hi], e[lo:hi],
                              *(o[lo:hi] for o in out))
    return (time.perf_counter() - t0) * 1e3


def training_ms(ds, member) -> float:
    stamps: list[tuple[int, float]] = []
    train_ensemble(ds, member, model="mlp", method="dpsgd", clip=1.0, epochs=1, batch_size=256,
                   hidden=256, seed=0, noise_multiplier=1.0,
                   progress=lambda done, total: stamps.append((done, time.perf_counter())))
    (s0, t0), (s1, t1) = stamps[0], stamps[-1]
    return (t1 - t0) / (s1 - s0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repetitions (medians)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts")
    args = parser.parse_args()
    adult = load_dataset("adult")
    ds = adult.sample(adult.n_samples // 2, seed=0)
    member = np.random.default_rng(0).random((64, ds.n_samples)) < 0.5
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, medians of {args.repeat}, interleaved")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread(s), load before {os.getloadavg()[0]:.1f}")
        times: dict[str, dict[str, list[float]]] = {n: {"pass": [], "train": []} for n in VARIANTS}
        for name in VARIANTS:  # warm-up: compile / load the kernels, fault the buffers
            use(name)
            pass_ms()
            training_ms(ds, member)
        for _ in range(args.repeat):
            for name in VARIANTS:
                use(name)
                times[name]["pass"].append(min(pass_ms() for _ in range(3)))
                times[name]["train"].append(training_ms(ds, member))
        use("fused kernel (now)")
        med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
        print(f"{'variant':24s} {'pass ms':>8s} {'step ms':>8s}")
        for n, m in med.items():
            print(f"{n:24s} {m['pass']:8.2f} {m['train']:8.2f}")
        before, now = med["torch passes (before)"], med["fused kernel (now)"]
        print(f"speed-up: pass {before['pass'] / now['pass']:.2f}x, training step "
              f"{before['train'] / now['train']:.2f}x; load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
