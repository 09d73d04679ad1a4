"""Time a fresh process's first classroom run and first panel, against importing what it skips.

    python benchmarks/bench_cold_start.py [--repeat 3]

Each measurement is a new Python process (as a student's kernel start or a CLI call):

* ``fl.run``: ``import fairpriv_lab``, then the first ``fl.run`` of a small DP-SGD audit
  (2,000 Adult records, 16 LR models, 2 epochs; no result cache);
* ``panel``: ``AuditPanel(default_settings("cpu"))`` (the panel's first open), then its first
  Run at the classroom defaults (a fresh result cache).

The baseline is the same process after importing, first, the modules it no longer loads
(docs/design.md section 5): ``opacus`` (its ``__init__`` loads the training stack and sympy)
and ``scipy.stats``; for the panel also ``jsonschema`` with its optional ``rfc3987_syntax``
(what ``import altair`` did). Baseline and current runs alternate (A B A B); the table prints medians, the
ratio, each process's peak RSS and which of those modules the current run loaded (none
expected). Python writes and reuses compiled bytecode here unless ``PYTHONDONTWRITEBYTECODE``
is set (then every import compiles its source, as on a fresh machine's first start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("opacus", "sympy", "scipy.stats", "rfc3987_syntax", "sklearn", "fairlearn", "numba")
BASELINE_IMPORTS = {"fl.run": "import opacus, scipy.stats\n",
                    "panel": "import opacus, scipy.stats, jsonschema\n"}

RUN = """
import json, resource, sys, time
t0 = time.perf_counter()
{pre}import fairpriv_lab as fl
cfg = fl.ExperimentConfig().replace(**{{"data.n": 2000, "train.model": "lr", "game.n_models": 16,
      "train.epochs": 2, "train.method": "dpsgd", "train.epsilon": 10.0}})
t1 = time.perf_counter()
fl.run(cfg, cache=None)
t2 = time.perf_counter()
print(json.dumps({{"open": t1 - t0, "run": t2 - t1, "total": t2 - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loaded": [m for m in {heavy} if m in sys.modules]}}))
"""

PANEL = """
import json, resource, sys, time
t0 = time.perf_counter()
{pre}from fairpriv_lab.ui.panel import AuditPanel, default_settings
panel = AuditPanel(default_settings("cpu"))
t1 = time.perf_counter()
assert panel.run(), panel.message.value
t2 = time.perf_counter()
print(json.dumps({{"open": t1 - t0, "run": t2 - t1, "total": t2 - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loaded": [m for m in {heavy} if m in sys.modules]}}))
"""


def measure(name: str, template: str, baseline: bool) -> dict:
    code = template.format(pre=BASELINE_IMPORTS[name] if baseline else "", heavy=HEAVY)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FAIRPRIV_LAB_CACHE": cache}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env=env, timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="processes per case and variant (medians)")
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; PYTHONDONTWRITEBYTECODE="
          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '-')}; medians of {args.repeat} processes each")
    print(f"{'case':8s} {'variant':9s} {'open s':>7s} {'run s':>6s} {'total s':>8s} {'RSS MB':>7s}  loaded")
    for name, template in (("fl.run", RUN), ("panel", PANEL)):
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.repeat):
            for baseline in (True, False):
                runs[baseline].append(measure(name, template, baseline))
        med = {b: {k: statistics.median(r[k] for r in rs) for k in ("open", "run", "total", "rss_mb")}
               for b, rs in runs.items()}
        for b in (True, False):
            m = med[b]
            print(f"{name:8s} {'baseline' if b else 'current':9s} {m['open']:7.2f} {m['run']:6.2f} "
                  f"{m['total']:8.2f} {m['rss_mb']:7.0f}  {runs[b][-1]['loaded']}")
        print(f"{name:8s} baseline / current total: {med[True]['total'] / med[False]['total']:.2f}x, "
              f"RSS {med[True]['rss_mb'] - med[False]['rss_mb']:+.0f} MB")
    print(f"load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
