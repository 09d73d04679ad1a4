"""Benchmark: how long re-running a cached configuration takes (issue 4, item 6).

Usage: python benchmarks/bench_cache.py [--preset demo|tiny] [--repeat 5] [--cache DIR]

Runs the configuration once to fill a (temporary, unless --cache) result cache, then times
``run(config)`` again:

* in the same process (the data split is memoised), median of --repeat runs;
* in fresh interpreters, timing ``run(config)`` alone (the data load from the bundled files
  included, the interpreter start and ``import fairpriv_lab`` excluded and printed apart).

Each cached re-run verifies every file it reads (sha256 of the npz, the JSON checksum) and
rebuilds the GroupRisk objects (records bootstrap, n_boot replicates) from the stored
per-record risks. ``demo`` is the demo's SGD configuration on a CPU (Adult n=5,000, 32
models, 2,000 audited records, n_boot=1,000); ``tiny`` a 200-record synthetic one. Target:
"well under a second". A benchmark, not a timed test: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fairpriv_lab.experiment.runner import ExperimentConfig, run  # noqa: E402

TINY = {
    "data": {"name": "synthetic", "n": 200},
    "train": {"model": "lr", "epochs": 2, "batch_size": 40, "lr": 0.2},
    "game": {"kind": "aloo", "n_models": 4, "m": 40},
    "audit": {"n_boot": 1000, "min_group_size": 5},
    "chunk_models": 2,
    "device": "cpu",
}

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from fairpriv_lab.experiment.runner import ExperimentConfig, run
t1 = time.perf_counter()
cfg = ExperimentConfig.from_dict(json.loads(sys.argv[1]))
t2 = time.perf_counter()
res = run(cfg, cache=sys.argv[2])
t3 = time.perf_counter()
assert res.from_cache, "not served from the cache"
print(json.dumps({"import": t1 - t0, "run": t3 - t2}))
"""


def config(preset: str) -> ExperimentConfig:
    """The benchmarked configuration."""
    if preset == "tiny":
        return ExperimentConfig.from_dict(TINY)
    from fairpriv_lab.ui.demo import demo_configs

    return demo_configs(device="cpu")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("demo", "tiny"), default="demo")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args()
    cfg = config(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(args.cache or tmp)
        t0 = time.perf_counter()
        first = run(cfg, cache=cache)
        cold = time.perf_counter() - t0
        print(f"{cfg.label}: {first.game.n_models} models, {first.game.m} audited records, "
              f"n_boot={cfg.audit.n_boot}")
        print(f"first run (train + audit, or whatever was not cached yet): {cold:.2f} s "
              f"(chunks trained {first.chunks_trained}, loaded {first.chunks_loaded})")
        warm = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            again = run(cfg, cache=cache)
            warm.append(time.perf_counter() - t0)
            assert again.from_cache and again.summary().equals(first.summary())
        print("cached re-run, same process: " + ", ".join(f"{w:.3f}" for w in warm)
              + f" s | median {statistics.median(warm):.3f} s")
        fresh = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg.to_dict()), cache],
                                 cwd=ROOT, capture_output=True, text=True, check=True)
            fresh.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print("cached re-run, fresh process (run() only): "
              + ", ".join(f"{f['run']:.3f}" for f in fresh)
              + f" s | median {statistics.median(f['run'] for f in fresh):.3f} s "
              f"(import fairpriv_lab.experiment.runner apart: median {statistics.median(f['import'] for f in fresh):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
