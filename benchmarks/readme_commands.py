"""Run every command of the README as written and print each one's wall time (issue 17).

The README promises that each of its commands finishes within 3 minutes on 2 CPU cores.
This script reads the ``bash`` blocks of README.md (one command per line; ``make test``, the
whole test suite, is not an example and is listed as skipped) and the ``python`` block (run
as one script), runs them from the repository root with this interpreter's environment,
and prints a table: command, seconds, exit status, within budget. The machine's load and the
thread settings are printed first, since a shared machine slows everything down.

    .venv/bin/python benchmarks/readme_commands.py            # everything
    .venv/bin/python benchmarks/readme_commands.py --list     # what would run
    .venv/bin/python benchmarks/readme_commands.py --only audit --only report

Outputs land where the README says (out/, demo_out/, sweep_out/, notebook_runs/), all
ignored by git. The first run fills the result cache; a second run measures cached reruns,
so pass ``--fresh-cache`` (a temporary FAIRPRIV_LAB_CACHE) to time first runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 180.0
#: Not examples of use: the whole test suite.
SKIP = ("make test",)


def readme_commands(readme: Path = ROOT / "README.md") -> list[tuple[str, str]]:
    """Return ``(kind, text)`` for every README command: ``("bash", line)`` or ``("python", block)``."""
    text = readme.read_text(encoding="utf-8")
    out: list[tuple[str, str]] = []
    for lang, body in re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S):
        if lang == "python":
            out.append(("python", body))
            continue
        for line in body.splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                out.append(("bash", command))
    return out


def _argv(kind: str, text: str, bindir: Path) -> list[str]:
    if kind == "python":
        return [sys.executable, "-c", text]
    words = shlex.split(text)
    if words[0] in ("fairpriv-lab", "voila", "jupyter") and (bindir / words[0]).exists():
        words[0] = str(bindir / words[0])
    return words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the commands, run nothing")
    parser.add_argument("--only", action="append", default=[], help="run commands containing this text")
    parser.add_argument("--fresh-cache", action="store_true", help="time first runs (empty result cache)")
    args = parser.parse_args(argv)
    commands = readme_commands()
    if args.only:
        commands = [(k, t) for k, t in commands if any(o in t for o in args.only)]
    if args.list:
        for kind, text in commands:
            print(f"[{kind}] {text.strip().splitlines()[0]}{' ...' if kind == 'python' else ''}")
        return 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    threads = {k: os.environ.get(k, "-") for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs; {threads}; "
          f"budget {BUDGET_S:.0f} s per command")
    env = dict(os.environ)
    tmp = tempfile.TemporaryDirectory(prefix="fairpriv-readme-") if args.fresh_cache else None
    if tmp is not None:
        env["FAIRPRIV_LAB_CACHE"] = tmp.name
    bindir = Path(sys.executable).parent
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")
    rows = []
    for kind, text in commands:
        first = text.strip().splitlines()[0] + (" ..." if kind == "python" else "")
        if any(text.startswith(s) for s in SKIP):
            rows.append((first, None, "skipped (the whole test suite)"))
            continue
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(_argv(kind, text, bindir), cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=3 * BUDGET_S, check=False)
            seconds, status = time.perf_counter() - t0, proc.returncode
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if status else []
        except subprocess.TimeoutExpired:
            seconds, status, tail = time.perf_counter() - t0, "timeout", []
        verdict = "ok" if status == 0 and seconds <= BUDGET_S else "OVER BUDGET" if status == 0 else f"FAILED {status}"
        rows.append((first, seconds, verdict + (f": {tail[0][:80]}" if tail else "")))
        print(f"{seconds:7.1f} s  {verdict:<12} {first}", flush=True)
    if tmp is not None:
        tmp.cleanup()
    print("\nsummary")
    for first, seconds, verdict in rows:
        shown = "      -" if seconds is None else f"{seconds:7.1f} s"
        print(f"{shown}  {verdict:<12} {first}")
    bad = [r for r in rows if r[1] is not None and not r[2].startswith("ok")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
