"""The command line of the paper-scale runs: ``python benchmarks/paper_scale.py``.

Also ``python -m fairpriv_lab.cli.paper_scale``. The presets, their runs and tables are
:mod:`fairpriv_lab.studies.paper_scale`; this module parses the options and hands the machine
description (:func:`fairpriv_lab.engine.device.machine_info`) to the run.

Examples::

    python benchmarks/paper_scale.py --list
    python benchmarks/paper_scale.py --preset adult-lr                 # CPU, about 10 minutes
    python benchmarks/paper_scale.py --preset adult-lr --seeds 0 1 2 3 4
    python benchmarks/paper_scale.py --preset digits-cnn --device cuda  # GPU preset
    python benchmarks/paper_scale.py --preset smoke --out /tmp/smoke    # seconds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..engine.device import machine_info, set_num_threads
from ..studies.paper_scale import (
    ISSUE14_RUNNERS,
    METHODS,
    PRESETS,
    RESULTS_DIR,
    build_configs,
    run_preset,
    stated_time,
)

__all__ = ["main", "parse_args"]

_DESCRIPTION = "Reproduce the source paper's experiments at its own scale and record results and timings."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the options of ``paper_scale.py``; ``--preset NAME`` or ``--list`` is required."""
    ap = argparse.ArgumentParser(description=_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), help="the paper setting to run")
    ap.add_argument("--list", action="store_true", help="list the presets and exit")
    ap.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N or mps")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the tables (default docs/results, docs/results/<preset>-small with --small)")
    ap.add_argument("--small", action="store_true",
                    help="the preset's small size (its `small` overrides: few models, small n); minutes on a CPU")
    ap.add_argument("--cache", default=None,
                    help="cache folder (default: $FAIRPRIV_LAB_CACHE or ~/.cache/fairpriv-lab/results); "
                         "'none' to store nothing")
    ap.add_argument("--recompute", action="store_true", help="ignore cached models and audits")
    ap.add_argument("--seeds", type=int, nargs="+", help="experiment seeds (preset's by default)")
    ap.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="methods to run")
    ap.add_argument("--games", nargs="+", choices=("half", "aloo"), help="games to run")
    ap.add_argument("--epsilons", type=float, nargs="+", help="target budgets of the DP methods")
    ap.add_argument("--n-models", type=int, help="models per game (even; the paper: 400)")
    ap.add_argument("--m", type=int, help="audited records of the ALOOA game (the paper: 600)")
    ap.add_argument("--n", type=int, help="subsample the dataset to n records")
    ap.add_argument("--epochs", type=int, help="training epochs (the paper: 20)")
    ap.add_argument("--chunk-models", type=int, help="models per cached chunk (even)")
    ap.add_argument("--n-boot", type=int, help="bootstrap resamples of the CIs")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: the LR/MLP steps are small, and on a "
                         "shared 2-core machine 2 threads measured 6x slower; 0 keeps torch's default)")
    ap.add_argument("--dry-run", action="store_true", help="print the configurations and exit")
    args = ap.parse_args(argv)
    if not args.list and not args.preset:
        ap.error("give --preset NAME (or --list)")
    return args


def main(argv: list[str] | None = None, *, results: Path | None = None) -> int:
    """Run the command line; return the exit status.

    ``results`` is the default folder of the tables (``--out``) and of the recorded small runs
    that ``--list`` reads its stated times from: ``docs/results`` of the working directory
    unless given (``benchmarks/paper_scale.py`` gives its checkout's).
    """
    results = RESULTS_DIR if results is None else Path(results)
    args = parse_args(argv)
    if args.list:
        for p in PRESETS.values():
            print(f"{p.name:14s} {'[GPU] ' if p.gpu else ''}{p.description}")
            if p.kind in ISSUE14_RUNNERS:
                print(f"{'':14s}   time on 2 idle CPU cores: {stated_time(p, results)}")
                print(f"{'':14s}   run: python benchmarks/paper_scale.py --preset {p.name} [--device cuda] "
                      f"[--seeds ...]; small: --small")
        return 0
    p = PRESETS[args.preset]
    if args.out is None:
        args.out = results / (f"{p.name}-small" if args.small else "")
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in {
        "seeds": args.seeds, "methods": args.methods, "games": args.games, "epsilons": args.epsilons,
        "n_models": args.n_models, "m": args.m, "n": args.n, "epochs": args.epochs,
        "chunk_models": args.chunk_models, "n_boot": args.n_boot,
    }.items() if v is not None}
    if args.small:
        overrides = {**dict(p.small), **overrides}
    if args.dry_run:
        for labels, cfg in build_configs(p, device=args.device, overrides=overrides):
            print(labels, json.dumps(cfg.to_dict()))
        return 0
    if args.threads:
        set_num_threads(args.threads)  # this process's torch and training threads
    cache: Any = True
    if args.cache is not None:
        cache = False if args.cache.lower() == "none" else args.cache
    run_preset(p, out=args.out, device=args.device, machine=machine_info(args.device), cache=cache,
               overrides=overrides, recompute=args.recompute)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
