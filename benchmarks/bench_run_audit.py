"""Benchmark: the audit's share of a warm ``fl.run`` (256 models x 5,000 Adult records, LR, 15 epochs).

Usage: python benchmarks/bench_run_audit.py [--models 256] [--n 5000] [--epochs 15]
                                            [--method dpsgd] [--repeats 2] [--no-old]

Trains once (into a temporary cache), then re-runs the audit stage alone ``--repeats`` times
per implementation, interleaved (old, new, old, new, ...; the cached models are reused and
the cached audit is deleted before each run), and prints medians: train seconds, audit
seconds and the audit's share of ``train + audit`` (issue-15 target: <= 25 %). "old" is the
audit before issue 15 (fairlearn's MetricFrame for outcome fairness and the previous kernels,
kept in ``tests/reference``), patched in for the measurement only. Load average and thread
settings are printed with the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fairpriv_lab as fl  # noqa: E402
from fairpriv_lab.audit import attacks, kernels, risk  # noqa: E402
from fairpriv_lab.experiment import Cache  # noqa: E402


def _old_whole_audit(losses, membership, *, records=None, groups=None, auditors=(), delta=None,
                     alpha=0.05, group_names=None, signal="loss", confidences=None, seed=None):
    """The audit stage before issue 15: separate calls of the old kernels (``tests/reference``)."""
    from fairpriv_lab.audit.whole import WholeAudit
    from tests.reference import old_audit as oa
    from tests.reference import old_empirical as oe

    kw = dict(records=records, groups=groups, signal=signal, confidences=confidences, seed=seed)
    out = {}
    for auditor, est in auditors:
        if auditor in ("PA-ALOOA", "PA-LOOA"):
            out[auditor, est] = oa.record_risk(losses, membership, estimator=est, **kw)
        else:  # PA-GA / PA-GBA through the row-sorting kernel
            saved = kernels._HIST_MIN_RECORDS
            kernels._HIST_MIN_RECORDS = 1 << 62
            try:
                out[auditor, est] = attacks.global_risk(losses, membership, by_group=auditor == "PA-GBA",
                                                        estimator=est, **kw)
            finally:
                kernels._HIST_MIN_RECORDS = saved
    emp = None
    if delta is not None:
        emp = oe.empirical_epsilon(losses, membership, delta=delta, alpha=alpha, group_names=group_names, **kw)
    return WholeAudit(out, emp)


@contextlib.contextmanager
def old_audit():
    """Patch the pre-issue-15 audit into the modules the runner imports from.

    The runner calls ``audit.whole.whole_audit`` (separate old kernels here) and
    ``audit.risk.outcome_fairness_counts`` (fairlearn's MetricFrame here).
    """
    from fairpriv_lab.audit import whole
    from tests.reference import old_risk as orisk

    def old_outcome(y_true, y_pred, groups, group_names, *, weights=None):
        # the old runner tiled every model's predictions into rows; the runner now passes each
        # distinct (record, predicted class) row once with its count of models: expand them
        if weights is not None:
            rows = np.repeat(np.arange(np.size(y_true)), np.asarray(weights, dtype=np.int64))
            y_true, y_pred, groups = (np.asarray(a)[rows] for a in (y_true, y_pred, groups))
        return orisk.outcome_fairness(y_true, y_pred, groups, list(group_names))

    saved = [(whole, "whole_audit"), (risk, "outcome_fairness"), (risk, "outcome_fairness_counts")]
    values = [getattr(m, n) for m, n in saved]
    new = [_old_whole_audit, old_outcome, old_outcome]
    for (m, n), v in zip(saved, new, strict=True):
        setattr(m, n, v)
    try:
        yield
    finally:
        for (m, n), v in zip(saved, values, strict=True):
            setattr(m, n, v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=256)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--method", default="dpsgd")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-old", action="store_true", help="skip the pre-issue-15 audit")
    args = ap.parse_args()
    train = {"model": "lr", "method": args.method, "epochs": args.epochs}
    if args.method != "sgd":
        train["noise_multiplier"] = 1.0
    cfg = fl.ExperimentConfig.from_dict({
        "data": {"name": "adult", "n": args.n}, "train": train,
        "game": {"kind": "half", "n_models": args.models, "m": None},
    })
    threads = os.environ.get("FAIRPRIV_LAB_THREADS", "default")
    print(f"bench_run_audit: {args.models} LR models x {args.n:,} Adult records (half-split game, every "
          f"record audited), {args.method}, {args.epochs} epochs; audit threads {threads}; "
          f"load average before {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(tmp)
        first = fl.run(cfg, cache=cache)  # trains (and audits) once
        t_train = first.timings["train"]
        audits: dict[str, list[float]] = {"new": [first.timings["audit"]]}
        if not args.no_old:
            audits["old"] = []
        for _ in range(args.repeats):
            for name in audits:
                for p in Path(tmp).rglob("audit-*"):
                    p.unlink()
                ctx = old_audit() if name == "old" else contextlib.nullcontext()
                with ctx:
                    audits[name].append(fl.run(cfg, cache=cache).timings["audit"])
    print(f"  training (first run): {t_train:.1f} s; load average now {os.getloadavg()[0]:.1f}")
    for name, times in audits.items():
        a = statistics.median(times)
        print(f"  audit {name:3s}: median {a:6.2f} s of {len(times)} ({', '.join(f'{x:.2f}' for x in times)}); "
              f"share of train + audit {100 * a / (t_train + a):5.1f} %   (target <= 25 %)")


if __name__ == "__main__":
    main()
