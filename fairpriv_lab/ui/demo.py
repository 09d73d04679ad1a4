"""The demo (the README's main job): SGD vs DP-SGD vs DP-SGD-S on Adult grouped by sex.

At ε = 10, PA-ALOOA (with PA-GA and PA-GBA for contrast) audits each method; the demo prints
a comparison table (accuracy, ε, GPR per group with CIs, GPRP with CI, zero-leakage floor)
and writes every result to a folder. The settings fit in 3 minutes on 2 CPU cores; with a
GPU (``device="auto"``) they grow to more models and epochs, which narrows the CIs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._core.vocabulary import DEFAULT_AUDITORS
from ..experiment.config import ExperimentConfig
from ..experiment.result import AuditResult, compare, format_comparison

__all__ = ["DemoResult", "demo_configs", "run_demo"]

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


def run_demo(
    out: str | os.PathLike | None = "demo_out",
    *,
    device: str = "auto",
    cache: Any = True,
    recompute: bool = False,
    progress: Callable[[str, float, float], None] | None = None,
    echo: Callable[[str], Any] | None = None,
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
    text = format_comparison(results)
    seconds = time.perf_counter() - t0
    say("")
    say("Adult, groups by sex; GPR and GPRP in percentage points (bootstrap 95% CIs over records);")
    say("floor = the same estimator on membership labels permuted within each record (zero leakage).")
    say(text)
    files: list[Path] = []
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "comparison.csv", index=False)
        (folder / "comparison.txt").write_text(text + "\n")
        files += [folder / "comparison.csv", folder / "comparison.txt"]
        for res in results:
            files += list(res.save(folder, prefix=f"{res.config.train.method}_").values())
        say(f"\nwrote {len(files)} files to {folder} in {seconds:.1f} s")
    return DemoResult(results=tuple(results), table=table, seconds=seconds, files=tuple(files))
