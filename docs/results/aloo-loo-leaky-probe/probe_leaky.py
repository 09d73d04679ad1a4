"""Leakiness probe that chose the aloo-loo-leaky model: cross-fit PA-ALOOA IPR of candidate models.

Each candidate trains one ALOOA game of 64 SGD models on digits (cache off) and prints the test
accuracy, the mean per-record IPR and its zero-leakage floor (pp), quantiles of the IPR, the share
of audited records above 20 pp, and the call's wall / CPU seconds. Run from the repository root::

    python docs/results/aloo-loo-leaky-probe/probe_leaky.py 0 6   # candidates 0..5
"""

import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from fairpriv_lab.experiment.runner import ExperimentConfig, run  # noqa: E402

CANDIDATES = [
    {"n": 400, "m": 100, "hidden": 128, "epochs": 40, "batch": 32},
    {"n": 400, "m": 100, "hidden": 256, "epochs": 20, "batch": 32},
    {"n": None, "m": 600, "hidden": 256, "epochs": 30, "batch": 256},
    {"n": 400, "m": 100, "hidden": 128, "epochs": 20, "batch": 32},
    {"n": 400, "m": 100, "hidden": 64, "epochs": 40, "batch": 32},
    {"n": 400, "m": 100, "hidden": 128, "epochs": 40, "batch": 64},
]


def main(first: int, last: int) -> None:
    """Train and audit candidates first..last-1; print one line each."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for c in CANDIDATES[first:last]:
        cfg = ExperimentConfig(
            data={"name": "digits", "n": c["n"], "seed": 0},
            train={"model": "mlp", "hidden": c["hidden"], "method": "sgd", "epochs": c["epochs"],
                   "batch_size": c["batch"], "lr": 0.1},
            game={"kind": "aloo", "n_models": 64, "m": c["m"]},
            audit={"estimator": "cross_fit", "auditors": ("PA-ALOOA",), "n_boot": 50},
            seed=0, device="cpu", chunk_models=64)
        t0, c0 = time.perf_counter(), time.process_time()
        r = run(cfg, cache=False)
        rec = r.records()
        ipr, floor = rec["PA-ALOOA ipr"] * 100, rec["PA-ALOOA floor"] * 100
        stages = {k: round(v, 2) for k, v in r.timings.items()}
        print(c, f"acc {r.accuracy:.3f} meanIPR {ipr.mean():.1f} floor {floor.mean():.1f} q50 {ipr.median():.1f} "
              f"q90 {ipr.quantile(0.9):.1f} frac>20 {(ipr > 20).mean():.2f}  wall {time.perf_counter() - t0:.1f} "
              f"cpu {time.process_time() - c0:.1f} timings {stages}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
