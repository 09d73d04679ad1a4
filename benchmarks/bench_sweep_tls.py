"""Benchmark: what TLS with temporary credentials costs the local Dask cluster (issue 13, item 5).

Usage: python benchmarks/bench_sweep_tls.py [--repeat 3] [--tasks 50]

Starts a 1-worker local cluster with plain TCP (``security=False``, the baseline) and with
TLS (``security="auto"``, the default), interleaved (A B A B ...), and times the start plus a
first task, then the round trip of ``--tasks`` trivial tasks. Prints medians, the ratios TLS
/ plain, the load average and the thread counts. A benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

from fairpriv_lab.sweep.executor import open_client


def _one(security, tasks: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    with open_client(None, 1, security=security) as client:
        assert client.submit(int, "1").result() == 1
        t1 = time.perf_counter()
        for _ in range(tasks):
            client.submit(int, "2", pure=False).result()
        t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "tls": []}
    for _ in range(args.repeat):
        for name, security in (("plain", False), ("tls", "auto")):
            runs[name].append(_one(security, args.tasks))
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in runs.items()}
    for k, (start, rt) in med.items():
        print(f"{k:5s}: start + first task {start:.2f} s, round trip {1000 * rt:.1f} ms (median of {args.repeat})")
    print(f"ratio tls/plain: start {med['tls'][0] / med['plain'][0]:.2f}, round trip {med['tls'][1] / med['plain'][1]:.2f}")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, 1 worker x 1 thread")


if __name__ == "__main__":
    main()
