"""Accounting in milliseconds: sigma calibration and epsilon, new path vs the old one.

Run: ``python benchmarks/bench_accounting.py [--reps 5] [--prv]``. One process, interleaved
(old, new, old, new, ...), medians; every repetition starts with empty memo caches, so the
figures are cold calibrations (a panel asking the same question again costs microseconds).

* old path (the code before the joint-accounting fix, kept here as the named baseline): an
  ``opacus`` accountant object per evaluation (``get_epsilon`` over its full default order grid)
  inside a bracket-then-Brent search on ``log sigma``; DP-SGD-S/F composed their mechanisms as
  independent histories (that composition under-reported epsilon; its cost is what is shown);
* new path: :func:`fairpriv_lab.engine.privacy.calibrate_noise` -- sigma_eff of ONE subsampled
  Gaussian, RDP on the orders a descent visits (Opacus's series, summed by numpy in
  ``privacy._compute_rdp``; Opacus's own ``_compute_rdp`` is its test reference) and Opacus's
  ``get_privacy_spent``,
  a start from the small-q expansion, secant then Brent, memoised by
  ``(target, q, T, delta, accountant, rtol)``; every method shares it.

"ensemble" = calibrate sigma for the target and report epsilon, for every method of a
comparison (DP-SGD, DP-SGD-S, DP-SGD-F) at one (q, T, delta): what a run of the three needs.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairpriv_lab.engine import privacy as P  # noqa: E402


# ------------------------------------------------------------------ the old path (baseline)
def _old_epsilon(sigmas, q, steps, delta, accountant):
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(s), float(q), int(steps)) for s in sigmas]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


def _old_calibrate(target, q, steps, delta, ratios, accountant, rtol=0.005):
    from scipy.optimize import brentq

    def eps(s):
        return _old_epsilon([s * r for r in ratios], q, steps, delta, accountant)

    aim = target * (1 - rtol / 2)
    hi, e_hi = 1.0, eps(1.0)
    while e_hi > aim:
        hi *= 4.0
        e_hi = eps(hi)
    lo = hi / 4.0
    while eps(lo) <= aim:
        hi, lo = lo, lo / 4.0
    cache = {}

    def f(log_s):
        cache[log_s] = eps(math.exp(log_s))
        return cache[log_s] - aim

    root = brentq(f, math.log(lo), math.log(hi), xtol=rtol / 8, rtol=1e-12)
    ok = [(e, ls) for ls, e in cache.items() if e <= target]
    return math.exp(max(ok)[1]) if ok else math.exp(root)


METHODS = {"dpsgd": (P.DPSGD(), (1.0,)), "dpsgds": (P.DPSGDS(), (1.0, 5.0, 5.0)),
           "dpsgdf": (P.DPSGDF(), (1.0, 5.0))}


def old_ensemble(target, q, steps, delta, accountant):
    out = {}
    for name, (_, ratios) in METHODS.items():
        s = _old_calibrate(target, q, steps, delta, ratios, accountant)
        out[name] = (s, _old_epsilon([s * r for r in ratios], q, steps, delta, accountant))
    return out


def new_ensemble(target, q, steps, delta, accountant):
    out = {}
    for name, (policy, _) in METHODS.items():
        s = P.calibrate_noise(target, sample_rate=q, steps=steps, delta=delta, method=policy,
                              accountant=accountant)
        out[name] = (s, P.epsilon_of(s, sample_rate=q, steps=steps, delta=delta, method=policy,
                                     accountant=accountant))
    return out


def loop_ensemble(target, q, steps, delta, accountant):
    """The new path with Opacus's own term-by-term ``_compute_rdp`` (before the numpy series)."""
    from opacus.accountants.analysis import rdp

    saved = P._compute_rdp
    P._compute_rdp = rdp._compute_rdp
    try:
        return new_ensemble(target, q, steps, delta, accountant)
    finally:
        P._compute_rdp = saved


def clear_memos():
    P._calibrate.cache_clear()
    P._EPSILON_MEMO.clear()
    P._substitution.cache_clear()
    P._sigma_of.cache_clear()
    P._ORDER_HINTS.clear()


def timed(fn, *args):
    t = time.perf_counter()
    res = fn(*args)
    return time.perf_counter() - t, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prv", action="store_true", help="also one PRV configuration (slow old path)")
    args = ap.parse_args()
    import torch

    # (label, q, T, delta, target eps): classroom (5k records, batch 256, 20 epochs), paper
    # scale (Adult half split: 18,089 records per model, batch 256, 20 epochs), strict budget
    configs = [
        ("classroom eps=4", 256 / 2000, 156, 1e-5, 4.0),
        ("paper-scale eps=10", 256 / 18089, 1413, 1e-5, 10.0),
        ("paper-scale eps=1", 256 / 18089, 1413, 1e-5, 1.0),
        ("small q eps=0.5", 0.002, 3000, 1e-6, 0.5),
    ]
    accountants = ["rdp"] + (["prv"] if args.prv else [])
    _old_epsilon([1.0], 0.01, 10, 1e-5, "rdp")  # imports out of the timings
    P.epsilon_of(1.0, sample_rate=0.01, steps=10, delta=1e-5)
    print(f"bench_accounting: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, {args.reps} interleaved reps, medians, cold memos")
    print(f"{'config':<22} {'acc':<4} {'old ms':>9} {'loop ms':>8} {'new ms':>8} {'ratio':>7}   "
          "sigma_eff old->new (DP-SGD)  eps check")
    print("  (old: Opacus accountant objects over the full grid; loop: the new search with Opacus's "
          "term-by-term RDP series; new: the series summed by numpy)")
    for acc in accountants:
        for label, q, steps, delta, target in configs:
            reps = 1 if acc == "prv" else args.reps
            old_t, loop_t, new_t = [], [], []
            for _ in range(reps):
                t, old = timed(old_ensemble, target, q, steps, delta, acc)
                old_t.append(t)
                clear_memos()
                t, loop = timed(loop_ensemble, target, q, steps, delta, acc)
                loop_t.append(t)
                clear_memos()
                t, new = timed(new_ensemble, target, q, steps, delta, acc)
                new_t.append(t)
            o, lp, n = statistics.median(old_t), statistics.median(loop_t), statistics.median(new_t)
            never_over = all(e <= target for _, e in new.values())
            within = all(e >= 0.99 * target for _, e in new.values())
            print(f"{label:<22} {acc:<4} {1e3 * o:9.1f} {1e3 * lp:8.1f} {1e3 * n:8.1f} {o / n:6.1f}x   "
                  f"{old['dpsgd'][0]:.4f} -> {new['dpsgd'][0]:.4f}        "
                  f"{'<= target' if never_over else 'OVER TARGET'}"
                  f"{', within 1 %' if within else ', below 1 % band'}")
    # one warm question (a panel asking again): the memo answers
    new_ensemble(4.0, 256 / 2000, 156, 1e-5, "rdp")
    warm = statistics.median(timed(new_ensemble, 4.0, 256 / 2000, 156, 1e-5, "rdp")[0] for _ in range(20))
    print(f"warm repeat of 'classroom eps=4' (memoised, median of 20): {1e6 * warm:.0f} us")


if __name__ == "__main__":
    functools.partial(main)()
