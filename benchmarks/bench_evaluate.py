"""Loss evaluation of two-class models: training's arithmetic (now) against the generic path (before).

    python benchmarks/bench_evaluate.py [--repeat 3] [--threads 1 2]

``engine.training.evaluate`` computes, for every (model, record), the loss, the confidence and
the prediction. Since 2026-12-01 two-class :class:`~fairpriv_lab.engine.models.LinearStack`
networks go through ``LinearStack.logit_difference`` (the MLP's through the compiled
``binary_logit``: tanh and the lanes' row sums in one pass, no matmul) and ``binary_loss`` (the
engine's exp), so that a run's numbers are the same on every CPU (docs/design.md section 5).
The baseline is the generic path that served them before (``forward``: the first layer, the
engine's tanh, MKL's matmul for the logits; then ``log_softmax``, ``logsumexp`` and ``argmax``),
still the path of more than two classes: chosen here in this process by presenting the
network as not two-class. Interleaved A B A B, medians, random parameters (the speed does not
depend on them), every Adult record (45,222, sparse rows):

* Adult LR, 400 models (the paper-scale audit's evaluation of one method);
* Adult MLP-256, 64 models.

The load average is printed before and after each thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairpriv_lab.data import load_dataset  # noqa: E402
from fairpriv_lab.engine.models import LinearStack  # noqa: E402
from fairpriv_lab.engine.training import evaluate  # noqa: E402

TWO_CLASS = LinearStack.binary


def seconds(net, params, X, y, sparse, generic: bool) -> float:
    LinearStack.binary = property(lambda self: False) if generic else TWO_CLASS
    try:
        t0 = time.perf_counter()
        evaluate(net, params, X, y, model_chunk=params[0].shape[0], sparse=sparse)
        return time.perf_counter() - t0
    finally:
        LinearStack.binary = TWO_CLASS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (medians)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts")
    args = parser.parse_args()
    ds = load_dataset("adult")
    X, y = torch.tensor(ds.X, dtype=torch.float32), torch.tensor(ds.y, dtype=torch.int64)  # (copies: writable)
    cases = {"Adult LR, 400 models": (LinearStack((X.shape[1], 2)), 400),
             "Adult MLP-256, 64 models": (LinearStack((X.shape[1], 256, 2)), 64)}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {X.shape[0]:,} records, medians of {args.repeat}, interleaved")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread(s), load before {os.getloadavg()[0]:.1f}")
        print(f"{'case':26s} {'before s':>9s} {'now s':>7s} {'speed-up':>9s}")
        for name, (net, M) in cases.items():
            params = net.init(M, torch.Generator().manual_seed(0))
            sparse = net.sparse_first_layer(X)
            for generic in (True, False):  # warm-up: kernels, pages
                seconds(net, params, X, y, sparse, generic)
            times = {True: [], False: []}
            for _ in range(args.repeat):
                for generic in (True, False):
                    times[generic].append(seconds(net, params, X, y, sparse, generic))
            before, now = statistics.median(times[True]), statistics.median(times[False])
            print(f"{name:26s} {before:9.2f} {now:7.2f} {before / now:8.2f}x")
        print(f"load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
