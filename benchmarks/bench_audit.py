"""Benchmark: the whole audit of 45,222 records x 400 models, as a multiple of one np.sort.

Usage: python benchmarks/bench_audit.py [--records N] [--models M] [--repeats R]
                                        [--threads 1,2] [--old] [--pairs B] [--naive K]
                                        [--baseline CHECKOUT] [--paper-cache DIR]

The whole audit is what ``fl.run`` computes per experiment, at paper scale: PA-ALOOA with
both estimators and their zero-leakage floors, PA-GA and PA-GBA (with floors), empirical
epsilon per record and per group, and GroupRisk with 1,000 bootstrap replicates for each
of the four auditors. Its time is printed as a ratio to ONE ``np.sort(losses, axis=0)`` of
the same loss matrix (the issue-15 target: <= 15x), measured in one process, interleaved
(sort, audit, sort, audit, ...), medians of ``--repeats``, for each audit thread count in
``--threads`` (``FAIRPRIV_LAB_THREADS``), with the load average before and after.

"new" is ``fairpriv_lab.audit.whole.whole_audit`` (one pass, what ``fl.run`` calls) followed by
GroupRisk; "new, separate calls" the public functions one by one (the per-stage breakdown).
``--baseline CHECKOUT`` also times ``whole_audit`` + GroupRisk of the library in another
checkout (e.g. ``/work/main``: the code before a change), in the same interleaved loop.
``--old`` also times the implementation before issue 15 (kept in ``tests/reference``; PA-GA/GBA
through the row-sorting kernel) in the same interleaved loop, and checks that all give
identical numbers. ``--paper-cache DIR`` audits the losses of ``make paper``'s SGD run (400 LR
models on Adult) read from that result cache instead of the synthetic ones (a trained model's
losses crowd into a small part of their range, which the synthetic ones do not). (Since empirical epsilon draws one split of the pair positions per block,
the reference draws its folds the same way, without the per-record ``permuted`` draw it used
to time: its column is that much faster than the code it replaced.) ``--pairs B`` times
``pair_bootstrap`` with B replicates (new vs old with ``--old``). ``--naive K`` times a naive
per-record, per-threshold Python loop on K records and extrapolates it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fairpriv_lab.audit import attacks, empirical, kernels, risk  # noqa: E402
from fairpriv_lab.games import half_split_game  # noqa: E402

STAGES = ("PA-ALOOA cross_fit", "PA-ALOOA in_sample", "PA-GA", "PA-GBA", "empirical eps", "GroupRisk x4")


def sorting_global_risk(*args, **kwargs):
    """PA-GA / PA-GBA through the row-sorting kernel (before the histogram kernel of issue 15)."""
    saved = kernels._HIST_MIN_RECORDS
    kernels._HIST_MIN_RECORDS = 1 << 62
    try:
        return attacks.global_risk(*args, **kwargs)
    finally:
        kernels._HIST_MIN_RECORDS = saved


def realistic_losses(n: int, n_models: int, membership: np.ndarray, seed: int) -> np.ndarray:
    """Cross-entropy-like losses: per-record difficulty, per-record leakage, model noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(-1.5, 1.2, n)  # log-loss level of each record
    leak = rng.gamma(1.0, 0.25, n)  # how much lower the loss is when the record is in
    noise = rng.normal(0.0, 0.6, (n_models, n))
    log_loss = difficulty[None, :] - leak[None, :] * membership + noise
    return np.exp(log_loss).astype(np.float32)


def paper_losses(cache: str):
    """Losses, membership, audited records and groups of ``make paper``'s SGD run (from its cache)."""
    from fairpriv_lab.experiment.runner import run
    from fairpriv_lab.studies.paper_scale import PRESETS, build_configs

    p = PRESETS["adult-lr"]
    _labels, cfg = build_configs(p, device="cpu", datasets=[(p.dataset, p.group)], overrides={})[0]
    res = run(cfg, cache=cache)
    if res.chunks_trained:
        print(f"  (trained {res.chunks_trained} chunks: {cache} did not hold the run)")
    groups = np.zeros(res.n_train, np.int64)
    groups[res.record_risk["PA-ALOOA"].records] = res.record_risk["PA-ALOOA"].groups
    return np.asarray(res.losses, np.float32), res.game.membership, res.game.audit_idx, groups


def naive_in_sample(losses: np.ndarray, membership: np.ndarray, records: np.ndarray) -> np.ndarray:
    """The obvious implementation: loop over records and thresholds."""
    out = []
    for r in records:
        s, lab = -losses[:, r].astype(np.float64), membership[:, r]
        best = 0.0
        for t in np.unique(s):
            best = max(best, float(np.mean((s >= t) == lab)))
        out.append(best)
    return np.array(out)


def whole_audit(impl, L, mem, rec, groups, stage_times: dict) -> dict:
    """Run every stage of the audit with ``impl`` (record_risk, global_risk, empirical_epsilon)."""
    record_risk, global_risk, empirical_epsilon = impl
    kw = dict(records=rec, groups=groups, seed=0)
    calls = {
        "PA-ALOOA cross_fit": lambda: record_risk(L, mem, **kw),
        "PA-ALOOA in_sample": lambda: record_risk(L, mem, estimator="in_sample", **kw),
        "PA-GA": lambda: global_risk(L, mem, **kw),
        "PA-GBA": lambda: global_risk(L, mem, by_group=True, **kw),
        "empirical eps": lambda: empirical_epsilon(L, mem, delta=1e-5, **kw),
    }
    out = {}
    for name, call in calls.items():
        t = time.perf_counter()
        out[name] = call()
        stage_times.setdefault(name, []).append(time.perf_counter() - t)
    return group_risks(out, stage_times)


def group_risks(out: dict, stage_times: dict, risk_module=risk) -> dict:
    """GroupRisk with 1,000 record-bootstrap replicates for each of the four auditors (timed)."""
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["GroupRisk x4"] = [risk_module.GroupRisk(out[k], ["g0", "g1"], n_boot=1000, seed=0)
                               for k in STAGES[:4]]
    stage_times.setdefault("GroupRisk x4", []).append(time.perf_counter() - t)
    return out


def joint_audit(L, mem, rec, groups, stage_times: dict, package=None) -> dict:
    """The whole audit through ``fairpriv_lab.audit.whole.whole_audit`` (what ``fl.run`` calls).

    ``package``: (whole_audit, risk module) of another copy of the library (``--baseline``).
    """
    from fairpriv_lab.audit.whole import whole_audit as whole

    risk_module = risk
    if package is not None:
        whole, risk_module = package
    t = time.perf_counter()
    res = whole(L, mem, records=rec, groups=groups, auditors=list(AUDITS.values()), delta=1e-5, seed=0)
    stage_times.setdefault("whole_audit (one pass)", []).append(time.perf_counter() - t)
    out = {name: res.risk[key] for name, key in AUDITS.items()}
    out["empirical eps"] = res.empirical
    return group_risks(out, stage_times, risk_module)


def baseline_package(checkout: str):
    """``(whole_audit, risk)`` of the library in another checkout, imported as its own package."""
    import importlib
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bench_audit_baseline_"))
    shutil.copytree(Path(checkout) / "fairpriv_lab", tmp / "fairpriv_baseline")
    sys.path.insert(0, str(tmp))
    return (importlib.import_module("fairpriv_baseline.audit.whole").whole_audit,
            importlib.import_module("fairpriv_baseline.audit.risk"))


AUDITS = {"PA-ALOOA cross_fit": ("PA-ALOOA", "cross_fit"), "PA-ALOOA in_sample": ("PA-ALOOA", "in_sample"),
          "PA-GA": ("PA-GA", "in_sample"), "PA-GBA": ("PA-GBA", "in_sample")}


def same_results(a: dict, b: dict, empirical: bool = True) -> bool:
    ok = all(np.array_equal(a[k].accuracy, b[k].accuracy) and np.array_equal(a[k].floor, b[k].floor)
             for k in STAGES[:4])
    if not empirical:
        return bool(ok and all(np.array_equal(x.boot, y.boot, equal_nan=True)
                               for x, y in zip(a["GroupRisk x4"], b["GroupRisk x4"], strict=True)))
    ea, eb = a["empirical eps"], b["empirical eps"]
    ok &= np.array_equal(ea.per_record, eb.per_record) and ea.per_group[eb.per_group.columns].equals(eb.per_group)
    ok &= all(np.array_equal(x.boot, y.boot, equal_nan=True) for x, y in zip(a["GroupRisk x4"], b["GroupRisk x4"], strict=True))
    return bool(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=45_222)
    ap.add_argument("--models", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="audit thread counts (FAIRPRIV_LAB_THREADS)")
    ap.add_argument("--old", action="store_true", help="also time the pre-issue-15 implementation")
    ap.add_argument("--pairs", type=int, default=0, help="pair_bootstrap replicates to time (0: skip)")
    ap.add_argument("--naive", type=int, default=0, help="records in the naive-loop subset (0: skip)")
    ap.add_argument("--baseline", default=None, metavar="CHECKOUT",
                    help="also time whole_audit + GroupRisk of the library in another checkout "
                         "(e.g. /work/main), imported as its own package, in the same interleaved loop")
    ap.add_argument("--paper-cache", default=None, metavar="DIR",
                    help="audit the losses of make paper's SGD run (adult-lr preset, 400 LR models on "
                         "Adult) from this result cache instead of synthetic losses")
    args = ap.parse_args()
    if args.paper_cache:
        L, mem, rec, groups = paper_losses(args.paper_cache)
        n, M = L.shape[1], L.shape[0]
        print(f"losses of the adult-lr preset's SGD run from {args.paper_cache}")
    else:
        n, M = args.records, args.models
        game = half_split_game(n, n_models=M, seed=0)
        groups = (np.random.default_rng(1).random(n) < 0.33).astype(np.int64)  # 2 groups, 1:2
        L = realistic_losses(n, M, game.membership, seed=2)
        mem, rec = game.membership, game.audit_idx
    separate = (attacks.record_risk, attacks.global_risk, empirical.empirical_epsilon)
    impls = {"new": joint_audit,
             "new, separate calls": lambda *a: whole_audit(separate, *a)}
    if args.baseline:
        package = baseline_package(args.baseline)
        impls["baseline"] = lambda *a: joint_audit(*a, package=package)
    if args.old:
        from tests.reference import old_audit, old_empirical, old_risk

        old = (old_audit.record_risk, sorting_global_risk, old_empirical.empirical_epsilon)
        impls["old"] = lambda *a: whole_audit(old, *a)
    print(f"bench_audit: {n:,} records x {M} models, float32 losses; {os.cpu_count()} CPUs; "
          f"load average before {os.getloadavg()[0]:.1f}; numpy {np.__version__}")
    for threads in [int(t) for t in args.threads.split(",")]:
        os.environ["FAIRPRIV_LAB_THREADS"] = str(threads)
        sorts, totals, stages = [], {k: [] for k in impls}, {k: {} for k in impls}
        cpu_sorts, cpu_totals = [], {k: [] for k in impls}
        results = {}
        for _ in range(args.repeats):
            for name, impl in impls.items():  # interleaved: sort, new, sort, old, ...
                t, c = time.perf_counter(), time.process_time()
                np.sort(L, axis=0)
                sorts.append(time.perf_counter() - t)
                cpu_sorts.append(time.process_time() - c)
                t, c = time.perf_counter(), time.process_time()
                results[name] = impl(L, mem, rec, groups, stages[name])
                totals[name].append(time.perf_counter() - t)
                cpu_totals[name].append(time.process_time() - c)
        s = statistics.median(sorts)
        print(f"\n  audit threads {threads}: one np.sort(axis=0) {s * 1e3:.0f} ms (median of {len(sorts)}); "
              f"load average now {os.getloadavg()[0]:.1f}")
        print(f"  {'stage (x one sort)':26s}" + "".join(f"{k:>22s}" for k in impls))
        for stage in ("whole_audit (one pass)", *STAGES):
            print(f"  {stage:26s}" + "".join(
                f"{statistics.median(stages[k][stage]) / s:22.1f}" if stage in stages[k] else f"{'':22s}"
                for k in impls))
        print(f"  {'WHOLE AUDIT':26s}" + "".join(f"{statistics.median(totals[k]) / s:22.1f}" for k in impls)
              + "   (target <= 15x)")
        print(f"  {'whole audit seconds':26s}" + "".join(f"{statistics.median(totals[k]):22.2f}" for k in impls))
        cs = statistics.median(cpu_sorts)
        print(f"  {'WHOLE AUDIT, CPU time':26s}" + "".join(f"{statistics.median(cpu_totals[k]) / cs:22.1f}" for k in impls)
              + f"   (process CPU seconds / the sort's {cs * 1e3:.0f} ms: less sensitive to other jobs' load;"
              " with 2 threads it adds both threads)")
        print(f"  {'  best of the repeats':26s}" + "".join(f"{min(cpu_totals[k]) / min(cpu_sorts):22.1f}" for k in impls)
              + "   (fastest audit / fastest sort, CPU time: the least disturbed by other jobs)")
        same = same_results(results["new"], results["new, separate calls"])
        print(f"  whole_audit == separate calls (every RecordRisk, empirical eps, bootstrap replicate): {same}")
        if args.old:
            print(f"  new == old (every RecordRisk, empirical eps, bootstrap replicate): {same_results(results['new'], results['old'])}")
        if args.baseline:
            print("  new == baseline (every RecordRisk and bootstrap replicate): "
                  f"{same_results(results['new'], results['baseline'], empirical=False)}; empirical eps too "
                  "(False against a checkout before empirical eps shared the cross-fit's folds): "
                  f"{same_results(results['new'], results['baseline'])}")

    if args.pairs:
        print(f"\n  pair_bootstrap, {args.pairs} replicates (cross_fit), audit threads {threads}:")
        fns = {"new": risk.pair_bootstrap}
        if args.old:
            fns["old"] = old_risk.pair_bootstrap
        reps = {}
        for name, fn in fns.items():
            t = time.perf_counter()
            reps[name] = fn(L, mem, records=rec, groups=groups, n_groups=2, n_boot=args.pairs, seed=0)
            print(f"    {name}: {time.perf_counter() - t:.1f} s")
        if args.old:
            print(f"    identical replicates: {np.array_equal(reps['new'], reps['old'])}")

    if args.naive:
        sub = rec[: args.naive]
        t = time.perf_counter()
        slow = naive_in_sample(L, mem, sub)
        naive_s = time.perf_counter() - t
        fast = results["new"]["PA-ALOOA in_sample"].accuracy[: args.naive]
        assert np.allclose(slow, fast), "naive loop and vectorised in_sample disagree"
        print(f"\n  naive loop over thresholds: {1e3 * naive_s / len(sub):.1f} ms/record -> "
              f"{naive_s / len(sub) * n:,.0f} s for {n:,} records (same accuracies on the subset)")


if __name__ == "__main__":
    main()
