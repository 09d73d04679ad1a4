"""Time from a widget change to updated outputs in the audit panel (cold, disk-cached, memo).

Usage::

    python benchmarks/bench_widgets.py            # default settings of this machine
    python benchmarks/bench_widgets.py --device cpu --repeat 3

"cold": an empty cache, a change of method, Run -> table and charts updated (training + audit +
charts). "disk cache": a fresh panel (empty memory) with the same settings, Run -> served from
the on-disk experiment cache. "memo": switching a control back to settings already shown
(no Run needed). The target is <= 10 s cold with the default settings on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=1, help="cold runs with fresh caches (seeds differ)")
    args = parser.parse_args()

    import torch

    from fairpriv_lab.ui.panel import AuditPanel, default_settings

    cold, disk, memo, cpu, parts = [], [], [], [], []
    load0 = os.getloadavg()[0]
    for rep in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["FAIRPRIV_LAB_CACHE"] = tmp
            settings = default_settings(args.device, seed=rep)
            panel = AuditPanel(settings)
            # Cold: the student switches to DP-SGD and presses Run.
            t0, c0 = time.perf_counter(), time.process_time()
            panel.set(method="dpsgd")
            ok = panel.run()
            cold.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            parts.append(dict(panel.result.timings))
            assert ok and panel.last_source == "computed", panel.message.value
            table = panel.table.value
            # Disk cache: a new panel (e.g. after a kernel restart), same settings.
            fresh = AuditPanel(settings)
            fresh.set(method="dpsgd")
            t0 = time.perf_counter()
            assert fresh.run()
            disk.append(time.perf_counter() - t0)
            assert fresh.result.from_cache and fresh.table.value == table
            # Memo: back to SGD (computed once), then to DP-SGD again: instant.
            panel.set(method="sgd")
            panel.run()
            t0 = time.perf_counter()
            panel.set(method="dpsgd")
            memo.append(time.perf_counter() - t0)
            assert panel.last_source == "memo" and panel.table.value == table

    s = default_settings(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {panel.result.device}")
    print(f"settings: {s.dataset}/{s.group or 'default'} {s.model}, n={s.n}, n_models={s.n_models}, "
          f"m={s.m}, epochs={s.epochs}, method DP-SGD eps={s.epsilon}")
    for name, xs in (("cold (train + audit + charts)", cold), ("disk cache (new panel)", disk),
                     ("memo (control changed back)", memo)):
        med = statistics.median(xs)
        print(f"{name:32s} median {med:7.3f} s  (runs: {', '.join(f'{x:.3f}' for x in xs)})")
    print("cold breakdown (s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts[0].items())
          + f"; process CPU time {statistics.median(cpu):.1f} s")
    print(f"load average before/after: {load0:.1f} / {os.getloadavg()[0]:.1f} "
          "(other processes on the machine slow every number above)")
    target = 10.0
    print(f"cold target <= {target:.0f} s on 2 CPU cores: {'met' if statistics.median(cold) <= target else 'NOT met'}")


if __name__ == "__main__":
    main()
