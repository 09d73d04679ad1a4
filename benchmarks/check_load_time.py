"""Time the acceptance command in fresh interpreters (a check to run by hand, not a test).

    python benchmarks/check_load_time.py [--repeat 5]

Runs ``import fairpriv_lab as fl; print(fl.load_dataset('adult', group='sex'))`` in new
Python processes, prints each wall time and the median, splits the median into "import
fairpriv_lab" and "load_dataset" with -X importtime-free in-process timers, and checks that
the import pulls in none of the heavy modules (torch, sklearn, scipy, opacus, altair, numba).
Exits 1 if the median exceeds --limit seconds (default 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCEPTANCE = "import fairpriv_lab as fl; print(fl.load_dataset('adult', group='sex'))"
SPLIT = """
import json, sys, time
t0 = time.perf_counter()
import fairpriv_lab as fl
t1 = time.perf_counter()
heavy = [m for m in ("torch", "sklearn", "scipy", "opacus", "altair", "ipywidgets", "numba") if m in sys.modules]
ds = fl.load_dataset("adult", group="sex")
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "heavy": heavy, "repr": repr(ds)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=float, default=2.0)
    args = parser.parse_args()
    walls = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", ACCEPTANCE], cwd=ROOT, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
    print(out.stdout.strip())
    print("wall seconds:", ", ".join(f"{w:.2f}" for w in walls), f"| median {statistics.median(walls):.2f}")
    parts = [
        json.loads(subprocess.run([sys.executable, "-c", SPLIT], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        for _ in range(args.repeat)
    ]
    print(
        f"median in-process: import fairpriv_lab {statistics.median(p['import'] for p in parts):.2f} s, "
        f"load_dataset('adult') {statistics.median(p['load'] for p in parts):.2f} s"
    )
    heavy = parts[0]["heavy"]
    print("heavy modules imported by 'import fairpriv_lab':", heavy or "none")
    ok = statistics.median(walls) <= args.limit and not heavy
    print("OK" if ok else "TOO SLOW or heavy imports")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
