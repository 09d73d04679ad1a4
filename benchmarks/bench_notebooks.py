"""Run All of the teaching notebooks 00-07 at their default parameters: wall and CPU time each.

What a class sees on first opening: each notebook runs cold (a fresh, empty result cache, so
every model is trained), in a kernel of this interpreter, as papermill runs it. Printed per
notebook: wall seconds, CPU seconds of the kernel (user + system, load-independent: on an idle
machine with T torch threads the wall time is between CPU/T and CPU), and the load average
before and after; then the total and the Run All estimate on an idle machine.

    python benchmarks/bench_notebooks.py                    # all of 00-07, cold cache
    python benchmarks/bench_notebooks.py --only 04 06       # some
    python benchmarks/bench_notebooks.py --keep out/        # keep the executed notebooks
    python benchmarks/bench_notebooks.py --warm             # second pass on the same cache

Record the load: on a shared machine the wall times are upper bounds for an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fairpriv_lab.sweep.notebook_tools import execute_notebook, list_notebooks  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 04 06")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the executed notebooks")
    parser.add_argument("--cache", type=Path, default=None, help="result cache (default: a fresh one)")
    parser.add_argument("--warm", action="store_true", help="run everything twice; report the second pass")
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = parser.parse_args(argv)

    notebooks = [p for p in list_notebooks(ROOT / "notebooks") if re.match(r"0\d_", p.name)]
    if args.only:
        notebooks = [p for p in notebooks if p.name[:2] in args.only]
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    with tempfile.TemporaryDirectory(prefix="fairpriv-bench-nb-") as tmp:
        cache = args.cache or Path(tmp) / "cache"
        out_dir = args.keep or Path(tmp) / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        env = {"FAIRPRIV_LAB_CACHE": str(cache), "FAIRPRIV_CLAIMS": "report"}
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={threads}, "
              f"cache={'given' if args.cache else 'fresh (cold)'}, python {platform.python_version()}")
        passes = 2 if args.warm else 1
        rows = []
        for p in range(passes):
            rows = []
            for path in notebooks:
                load0 = os.getloadavg()[0]
                cpu0 = _children_cpu()
                run = execute_notebook(path, out_dir / path.name, timeout=3600, renderer="both", env=env)
                cpu = _children_cpu() - cpu0
                load1 = os.getloadavg()[0]
                rows.append({"notebook": path.stem, "wall_s": round(run.seconds, 1), "cpu_s": round(cpu, 1),
                             "load_before": round(load0, 2), "load_after": round(load1, 2)})
                if p == passes - 1:
                    r = rows[-1]
                    print(f"{r['notebook']:<30} wall {r['wall_s']:7.1f} s  kernel CPU {r['cpu_s']:7.1f} s  "
                          f"load {r['load_before']:.1f} -> {r['load_after']:.1f}", flush=True)
        wall = sum(r["wall_s"] for r in rows)
        cpu = sum(r["cpu_s"] for r in rows)
        print(f"{'total':<30} wall {wall:7.1f} s ({wall / 60:.1f} min)  kernel CPU {cpu:7.1f} s "
              f"({cpu / 60:.1f} min): on an idle 2-core machine Run All takes between "
              f"{cpu / 2 / 60:.1f} and {cpu / 60:.1f} min")
        if args.json:
            args.json.write_text(json.dumps({"threads": threads, "cpus": os.cpu_count(), "rows": rows,
                                             "warm": args.warm, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                      time.gmtime())}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
