"""The demo (the README's main job): SGD vs DP-SGD vs DP-SGD-S on Adult grouped by sex.

At ε = 10, PA-ALOOA (with PA-GA and PA-GBA for contrast) audits each method; the demo prints
a comparison table (accuracy, ε, GPR per group with CIs, GPRP with CI, zero-leakage floor)
and writes every result to a folder. The settings fit in 3 minutes on 2 CPU cores; with a
GPU (``device="auto"``) they grow to more models and epochs, which narrows the CIs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._core.vocabulary import DEFAULT_AUDITORS
from ..experiment.config import ExperimentConfig
from ..experiment.result import AuditResult, compare, format_comparison

__all__ = ["DemoResult", "conclusion", "demo_configs", "explain", "run_demo"]

DEMO_METHODS = ("sgd", "dpsgd", "dpsgds")
DEMO_EPSILON = 10.0

# CPU settings, chosen by measurement on the 2-core machine: 5,000 Adult records (4,000 to
# train, 1,000 to test), an MLP with 64 tanh units trained 20 epochs (long enough for SGD to
# memorise visibly: PA-ALOOA reads about 2-3 pp), a 32-model ALOOA game (R = 16 pairs)
# auditing 2,000 records (about 650 women), one chunk per method. About 11 s of CPU for SGD
# and 15 s for each DP method (σ calibration included): under a minute on an idle 2-core
# machine, and under 3 minutes with several other jobs competing for the cores. More models
# sharpen per-record IPRs and more audited records narrow the group CIs: the GPU settings
# use all 36,178 training rows, the paper's MLP-256, 128 models and 8,000 audited records.
_AUDIT = {"n_boot": 1000, "min_group_size": 30}
_CPU = {"n": 5000, "hidden": 64, "n_models": 32, "m": 2000, "epochs": 20, "chunk_models": 32,
        "batch_size": 256}
_GPU = {"n": None, "hidden": 256, "n_models": 128, "m": 8000, "epochs": 20, "chunk_models": 128,
        "batch_size": 256}


def demo_configs(*, device: str = "auto") -> list[ExperimentConfig]:
    """Return the demo's three configurations (SGD, DP-SGD, DP-SGD-S), sized for the device.

    Examples
    --------
    >>> [c.train.method for c in demo_configs(device="cpu")]
    ['sgd', 'dpsgd', 'dpsgds']
    """
    from ..engine.device import resolve_device

    size = _GPU if resolve_device(device).type == "cuda" else _CPU
    base = ExperimentConfig(
        data={"name": "adult", "group": "sex", "n": size["n"]},
        train={"model": "mlp", "hidden": size["hidden"], "epochs": size["epochs"],
               "batch_size": size["batch_size"], "lr": 0.1, "clip": 1.0},
        game={"kind": "aloo", "n_models": size["n_models"], "m": size["m"]},
        audit={"auditors": DEFAULT_AUDITORS, **_AUDIT},
        seed=0, device=device, chunk_models=size["chunk_models"],
    )
    out = []
    for method in DEMO_METHODS:
        eps = None if method == "sgd" else DEMO_EPSILON
        out.append(base.replace(method=method, epsilon=eps))
    return out


@dataclass(frozen=True)
class DemoResult:
    """The demo's results (one per method), its comparison table and wall time in seconds."""

    results: tuple[AuditResult, ...]
    table: pd.DataFrame
    seconds: float
    files: tuple[Path, ...]
    report: Path | None = None

    def __repr__(self) -> str:
        methods = ", ".join(r.config.train.method for r in self.results)
        return (f"DemoResult(methods: {methods}, {len(self.files)} files, report={self.report}, "
                f"seconds={self.seconds:.1f})")


def run_demo(
    out: str | os.PathLike | None = "demo_out",
    *,
    device: str = "auto",
    cache: Any = True,
    recompute: bool = False,
    progress: Callable[[str, float, float], None] | None = None,
    echo: Callable[[str], Any] | None = None,
    html: bool = True,
) -> DemoResult:
    """Run the demo: audit SGD, DP-SGD and DP-SGD-S at ε = 10 on Adult (groups by sex).

    Parameters
    ----------
    out : path or None
        Folder for ``comparison.csv``, ``comparison.txt`` and each method's files
        (``sgd_summary.csv``, ``sgd_result.json``, ...); nothing is written when None.
    device : str
        ``"auto"`` uses a GPU when present (with larger settings).
    cache, recompute : see :func:`fairpriv_lab.experiment.run`
    progress : callable, optional
        ``progress(stage, done, total)`` over the whole demo (stage names the method).
    echo : callable, optional
        Called with each line of text to show (``print`` in the command line).
    html : bool
        Also write ``report.html`` (charts and tables, works offline) into ``out``; skipped
        with a pointer to the ``ui`` extra when altair is not installed.
    """
    from ..experiment.runner import run

    say = echo or (lambda line: None)
    t0 = time.perf_counter()
    configs = demo_configs(device=device)
    results = []
    for i, cfg in enumerate(configs):
        say(f"[{i + 1}/{len(configs)}] {cfg.label}: {cfg.game.n_models} models x {cfg.train.epochs} epochs")
        cb = None
        if progress is not None:
            def cb(stage, done, total, _i=i, _cfg=cfg):
                frac = (0.9 * done / total) if stage == "train" else 0.9 + 0.1 * done / total
                progress(f"{_cfg.train.method} {stage}", len(configs[:_i]) + frac, float(len(configs)))
        res = run(cfg, cache=cache, progress=cb, recompute=recompute)
        say(f"      done in {res.timings['total']:.1f} s "
            f"({'from cache' if res.from_cache else f'{res.chunks_trained} chunks trained'})")
        results.append(res)
    table = compare(results)
    seconds = time.perf_counter() - t0
    say("")
    say(explain(results))
    files: list[Path] = []
    report_path: Path | None = None
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "comparison.csv", index=False)
        (folder / "comparison.txt").write_text(format_comparison(results) + "\n")
        files += [folder / "comparison.csv", folder / "comparison.txt"]
        for res in results:
            files += list(res.save(folder, prefix=f"{res.config.train.method}_").values())
        if html:
            report_path = _write_report(results, folder / "report.html")
            files.append(report_path)
        say(f"\nwrote {len(files)} files to {folder} in {seconds:.1f} s")
        say(next_steps(folder, report_path))
    return DemoResult(results=tuple(results), table=table, seconds=seconds, files=tuple(files),
                      report=report_path)


def _write_report(results: Sequence[AuditResult], path: Path) -> Path | None:
    """Write the HTML report when the ``ui`` extra (altair, vl-convert) is installed."""
    try:
        from .report import write_report

        return write_report(list(results), path, title="fairpriv-lab demo: SGD vs DP-SGD vs DP-SGD-S")
    except ImportError:  # charts need the ui extra; the tables are written regardless
        return None


def next_steps(folder: Path, report: Path | None) -> str:
    """Where to look next: the HTML report, the report command and notebook 00."""
    lines = ["Next:"]
    if report is not None:
        lines.append(f"  open {report} (charts and tables of this run, works offline)")
    else:
        lines.append("  pip install 'fairpriv-lab[ui]' to get the HTML report with charts")
    lines.append(f"  fairpriv-lab report {folder}/ -o {folder / 'report.html'}   rebuilds it from the cache")
    lines.append("  jupyter lab notebooks/00_start_here.ipynb   moves the sliders behind these numbers")
    return "\n".join(lines)


def _fmt_ci(x: float, lo: float, hi: float) -> str:
    return f"{x:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def conclusion(results: Sequence[AuditResult], *, auditor: str = "PA-ALOOA") -> str:
    """Plain-language reading of the comparison: what changed and whether the CIs say it is real.

    Reads, for the worst-case auditor, each method's GPRP against its floor (the gap noise
    alone gives) and the signed minority - majority difference with its CI; a gap whose CI
    contains 0 is not called real.
    """
    import textwrap

    runs = [r for r in results if auditor in r.group_risk]
    if not runs:
        return ""
    label = {"sgd": "SGD", "dpsgd": "DP-SGD", "dpsgds": "DP-SGD-S", "dpsgdf": "DP-SGD-F"}
    names = [label.get(r.config.train.method, r.config.train.method) for r in runs]
    risks = [r.group_risk[auditor] for r in runs]
    arrow = " -> "
    text = [
        f"With {auditor}, GPRP went {arrow.join(f'{g.difference():.2f}' for g in risks)} pp "
        f"({arrow.join(names)}) while test accuracy went "
        f"{arrow.join(f'{100 * r.accuracy:.1f}' for r in runs)} %. "
        f"The GPRP floor (the gap that noise alone gives) was "
        f"{arrow.join(f'{g.difference_floor():.2f}' for g in risks)} pp."
    ]
    signed = [g.signed_difference() for g in risks]  # NaNs unless exactly two groups
    if all(math.isfinite(s[0]) for s in signed):
        minority = risks[0].minority
        majority = next(g for g in risks[0].group_names
                        if g != minority and risks[0].n[g] > 0)
        real = [n for n, s in zip(names, signed) if s[1] > 0 or s[2] < 0]
        parts = "; ".join(f"{n} {_fmt_ci(*s)}" for n, s in zip(names, signed))
        text.append(f"The signed difference GPR({minority}) - GPR({majority}) with its "
                    f"{round(100 * risks[0].ci):g}% CI: {parts}.")
        if not real:
            text.append("Every interval contains 0: at this size the audit cannot say that either "
                        "group is more exposed under any method, so neither the gap nor its change "
                        "between methods is shown to be real. More models and audited records "
                        "(the GPU settings, or notebook 07 at paper scale) narrow the intervals.")
        else:
            text.append(f"The interval excludes 0 for {', '.join(real)}: there the groups' risks "
                        "differ beyond the bootstrap noise; elsewhere the audit cannot tell them apart.")
    else:
        text.append("With more than two groups there is no single signed difference: compare "
                    "each GPRP interval with its floor.")
    return "\n".join(textwrap.wrap(" ".join(text), width=96, initial_indent="  ", subsequent_indent="  "))


_DEMO_TERMS = ("IPR", "GPR", "GPRP", "PA-ALOOA", "PA-GA", "PA-GBA", "floor", "negative GPR",
               "signed difference")


def explain(results: Sequence[AuditResult]) -> str:
    """Return the demo's printed explanation: what ran, the terms, the table, the conclusion."""
    from .._core.glossary import glossary

    first = results[0]
    level = f"{round(100 * first.config.audit.ci):g}%"
    head = (f"{first.config.data.name.capitalize()}, groups by {first.config.data.resolved_group}: "
            f"{first.n_train} training records, {first.n_models} models per method, "
            f"{len(first.empirical_record)} audited records; percentage points (pp) with "
            f"bootstrap {level} CIs over records.")
    return "\n".join([
        head, "", "Terms:", glossary(_DEMO_TERMS), "", format_comparison(results), "", "Conclusion:",
        conclusion(results),
    ])
