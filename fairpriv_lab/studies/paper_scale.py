"""The source paper's experiments at its own scale: presets, their runs, tables and timings.

The paper (Yang, Huang, Tang & Yao, arXiv 2510.09114) audits 400 models (200 complementary
pairs) per setting: the half-split game (m = n) for its main table and ALOOA (m = 600),
20 epochs, batch 256, SGD with learning rate 0.1, clipping bound C = 10 at eps = 10 (C = 5 at
eps = 1), delta = 1e-5, tau = 2; LR on tabular data, MLP/CNN on images; SGD vs DP-SGD vs
DP-SGD-S (and DP-SGD-F). Every run goes through ``fairpriv_lab.experiment.runner.run``, so results
are cached chunk by chunk: an interrupted invocation resumes where it stopped, and the second
estimator re-audits the cached models without retraining.

:data:`PRESETS` names each setting (:class:`Preset`), :func:`build_configs` /
:func:`planned_configs` list its experiment configurations and :func:`run_preset` runs it.
The command line is ``python benchmarks/paper_scale.py`` (:mod:`fairpriv_lab.cli.paper_scale`).

Outputs (in ``out``, by default ``docs/results``), for preset P:

- ``P_gprp.csv``: one row per run x estimator x auditor (accuracy, eps, GPRP with CI, floor);
- ``P_gpr.csv``: one row per run x estimator x auditor x group (GPR with CI, floor, group
  accuracy, empirical eps);
- ``P_timings.csv``: wall time per run (training, audit), chunks trained / loaded from cache,
  load average before and after;
- ``P_machine.json``: CPU model, cores, torch version, device, load averages;
- ``P.md``: the tables in markdown, beside the paper's published values.

Issue-14 presets (docs/results.md, "The claims at a glance"): each runs on 2 CPU cores in the
time it states (``Preset.minutes``: CPU minutes of the whole preset in one process with one torch
thread, i.e. its wall time on idle cores; each <= 30, the seven <= 2 h), writes
``docs/results/<preset>/`` and takes ``--small`` (a wiring check, ``docs/results/<preset>-small/``)
and ``--device cuda`` (the full sizes the CPU preset trims, ``docs/results/<preset>-cuda/``).
Measured on the shared 2-core machine (wall > CPU by the share of the cores other jobs took;
``--list`` reads the same figures from each run's ``<preset>_machine.json``):

========================  ===========  =========  ==================================================
preset                    stated CPU   planner    measured at full size (wall / CPU, 1-min load)
========================  ===========  =========  ==================================================
seeds-adult-lr            28 min       22.3 min   49.8 min wall / 26.5 min CPU, load 5.3 (0.5-9.3)
controls-adult-lr         23 min       20.4 min   17.7 min wall / 17.9 min CPU, load 2.55 (resumed)
controls-smallc-adult-lr  6 min        4.4 min    5.1 min wall / 3.7 min CPU, load 2.86 (1.29-3.29)
clipsweep-adult-lr        20 min       16.4 min   14.9 min wall / 14.6 min CPU, load 2.71 (resumed)
groups-digits-synth       16 min       7.6 min    16.3 min wall / 15.5 min CPU, load 2.1 (1.1-2.9)
aloo-loo-leaky            11 min       5.2 min    10.5 min wall / 10.3 min CPU, load 1.99 (1.3-2.56)
frontier-adult-lr         14 min       13.1 min   14.5 min wall / 12.8 min CPU, load 2.65 (0.57-3.35)
========================  ===========  =========  ==================================================

(resumed): a first attempt trained part of the preset and was stopped; the recorded run resumed
from its cache, so about 4.5 (controls) and 5 (clipsweep) minutes of CPU are not in its figure.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Where the command line writes results by default (a source checkout's ``docs/results``).
RESULTS_DIR = Path("docs") / "results"

#: Method codes of the command line -> TrainConfig overrides.
METHODS: dict[str, dict[str, Any]] = {
    "sgd": {"method": "sgd"},
    "dpsgd": {"method": "dpsgd"},
    "dpsgds": {"method": "dpsgds", "statistic": "norm"},
    "dpsgds-md": {"method": "dpsgds", "statistic": "mean_direction"},
    "dpsgdf": {"method": "dpsgdf"},
}

#: The paper's clipping bound per budget (C = 10 at eps = 10, C = 5 at eps = 1).
PAPER_CLIP = {10.0: 10.0, 1.0: 5.0}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One paper setting: data, model, games, methods, budgets and sizes."""

    name: str
    description: str
    dataset: str
    group: str | None
    model: str
    games: tuple[str, ...] = ("half",)
    methods: tuple[str, ...] = ("sgd", "dpsgd", "dpsgds")
    epsilons: tuple[float, ...] = (10.0,)
    seeds: tuple[int, ...] = (0,)
    n_models: int = 400
    m: int = 600
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.1
    delta: float = 1e-5
    tau: float = 2.0
    n: int | None = None
    hidden: int = 256
    chunk_models: int = 100
    estimators: tuple[str, ...] = ("in_sample", "cross_fit")
    auditors: tuple[str, ...] = ("PA-ALOOA", "PA-GA", "PA-GBA")
    n_boot: int = 1000
    gpu: bool = False
    kind: str = "audit"  # "audit" (the paper's table), "loo" (study b) or "utility" (study c)
    n_targets: int = 10
    utility_epsilons: tuple[float, ...] = (1.0, 2.0, 4.0, 10.0)
    # issue 14 (kinds "seeds", "controls", "clipsweep", "groups", "aloo-loo", "frontier")
    clips: tuple[float, ...] = ()
    settings: tuple[tuple[str, str | None, str, tuple[tuple[str, Any], ...]], ...] = ()
    max_pairs: int = 200
    small: tuple[tuple[str, Any], ...] = ()
    #: Overrides of the ``--device cuda`` variant (a lent GPU): the full sizes the CPU preset trims.
    cuda: tuple[tuple[str, Any], ...] = ()
    #: Stated time (minutes of CPU on 2 idle cores, one process with one torch thread, so wall =
    #: CPU when idle) of the CPU preset at its full size; checked against the planner and against
    #: the recorded run (tests/unit/studies/test_seed_controls.py).
    minutes: float | None = None


_SEEDS5 = (0, 1, 2, 3, 4)
_SMALL_ADULT = (("n", 2000), ("n_models", 8), ("epochs", 2), ("chunk_models", 8), ("n_boot", 100))
#: A small atypical group among ten (GRC vs GPR across >= 10 groups): nine typical groups and one
#: of 2 % of the records with 20 % outliers and 10 % flipped labels.
_SYNTH10 = (("group_sizes", (1.0,) * 9 + (0.2,)),
            ("outlier_rate", (0.0,) * 9 + (0.2,)), ("label_noise", (0.0,) * 9 + (0.1,)),
            ("separation", (2.0,) * 9 + (1.0,)))
#: Issue 14: where the paper's mechanism shows, with controls and retraining variance. Each preset
#: has three sizes: the CPU preset itself (``minutes`` of CPU on 2 idle cores, each <= 30, the seven
#: <= 2 h), ``--small`` (its ``small`` overrides: a wiring check in seconds) and ``--device cuda``
#: (its ``cuda`` overrides: the sizes the CPU preset trims, for a lent GPU).
ISSUE14 = [
    Preset("seeds-adult-lr", "(a) retraining variance: Adult (sex), LR, half-split, SGD / DP-SGD / "
           "DP-SGD-S (norm) / DP-SGD-S (mean direction) at eps=10, 5 seeds x 400 models; mean, "
           "seed-level t CI and record-bootstrap CI per row, paired seed differences",
           "adult", "sex", "lr", kind="seeds", methods=("sgd", "dpsgd", "dpsgds", "dpsgds-md"),
           seeds=_SEEDS5, auditors=("PA-ALOOA",), small=_SMALL_ADULT, minutes=28.0,
           cuda=(("seeds", tuple(range(10))),)),
    Preset("controls-adult-lr", "(b) DP-SGD-S controls: Adult, LR, eps=10, 5 seeds x 200 models: "
           "DP-SGD, each DP-SGD-S variant (norm, mean direction), and for each a noise-matched DP-SGD "
           "(clip C, sigma raised to the S run's per-coordinate noise std) and a clip-matched DP-SGD "
           "(flat clip = the S run's max_k C_k, calibrated to eps); --device cuda: 400 models",
           "adult", "sex", "lr", kind="controls", methods=("dpsgds", "dpsgds-md"), seeds=_SEEDS5,
           n_models=200, chunk_models=100, minutes=23.0,
           estimators=("cross_fit",), auditors=("PA-ALOOA",), small=_SMALL_ADULT,
           cuda=(("n_models", 400), ("chunk_models", 400))),
    Preset("controls-smallc-adult-lr", "(b') DP-SGD-S (norm) controls where clipping binds: Adult, LR, "
           "eps=10, C = 2 (about 26 % of Male and 11 % of Female per-sample gradients clip), 5 seeds x "
           "64 models: DP-SGD, DP-SGD-S (norm), its noise-matched and its clip-matched DP-SGD; does the "
           "norm variant's smaller gap at small C come from group clipping or from its larger noise?; "
           "--device cuda: C in {1, 2, 3}, both variants, 400 models",
           "adult", "sex", "lr", kind="controls", methods=("dpsgds",), seeds=_SEEDS5, clips=(2.0,),
           n_models=64, chunk_models=64, minutes=6.0, estimators=("cross_fit",), auditors=("PA-ALOOA",),
           small=_SMALL_ADULT,
           cuda=(("clips", (1.0, 2.0, 3.0)), ("methods", ("dpsgds", "dpsgds-md")), ("n_models", 400),
                 ("chunk_models", 400))),
    Preset("clipsweep-adult-lr", "(c) clipping sweep: Adult, LR, eps=10, C in {1, 2, 3, 5, 10} (from "
           "where almost every per-sample gradient clips to where almost none does), DP-SGD / DP-SGD-S "
           "(norm) / DP-SGD-S (mean direction), 5 seeds x 64 models; GPR per group, GPRP, fraction "
           "clipped per group (non-private diagnostic, train.diagnostics=True); --device cuda: "
           "C = 1..20 (8 values) x 400 models",
           "adult", "sex", "lr", kind="clipsweep", methods=("dpsgd", "dpsgds", "dpsgds-md"),
           seeds=_SEEDS5, n_models=64, chunk_models=64, estimators=("cross_fit",),
           auditors=("PA-ALOOA",), clips=(1.0, 2.0, 3.0, 5.0, 10.0), minutes=20.0,
           small=(*_SMALL_ADULT, ("clips", (1.0, 3.0, 5.0, 10.0)), ("seeds", (0, 1))),
           cuda=(("clips", (1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 20.0)), ("n_models", 400),
                 ("chunk_models", 400))),
    Preset("groups-digits-synth", "(d) per-group GPR where groups differ: digits by class (MLP-256) "
           "and synthetic with a small atypical group (10 groups, LR), SGD / DP-SGD / DP-SGD-S (norm) at "
           "eps=10, 5 seeds x 400 models; GRC (non-private diagnostic) vs GPR correlation across "
           "groups with a Fisher-z CI; --device cuda adds the digits CNN (400 models, 5 seeds; "
           "about 4.7 h of CPU, so not on the CPU preset)",
           "digits", None, "mlp", kind="groups", methods=("sgd", "dpsgd", "dpsgds"), seeds=_SEEDS5,
           estimators=("cross_fit",), auditors=("PA-ALOOA",), chunk_models=200, minutes=16.0,
           settings=(("digits", None, "mlp", ()), ("synthetic", None, "lr", _SYNTH10)),
           small=(("n_models", 8), ("epochs", 2), ("chunk_models", 8), ("n_boot", 100),
                  ("seeds", (0, 1)), ("hidden", 32),
                  ("settings", (("digits", None, "mlp", ()), ("digits", None, "cnn", ()),
                                ("synthetic", None, "lr", _SYNTH10)))),
           cuda=(("settings", (("digits", None, "mlp", ()), ("digits", None, "cnn", ()),
                               ("synthetic", None, "lr", _SYNTH10))),)),
    Preset("aloo-loo-leaky", "(e) PA-ALOOA vs exact PA-LOOA on a leaky model: MLP-64 overfitting "
           "400 digits (320 training records; m = 100 audited, so an ALOOA model trains on 270 records "
           "where a LOO model trains on 319-320), SGD, 40 epochs of batch 32, 2R up to 400, 50 targets; "
           "measured gap beside the noise-only expectation at the same 2R (simulated two independent "
           "audits of the same risk); --device cuda: all 1,797 digits (m = 200: 1,337 against 1,437 "
           "records), MLP-256, 100 targets",
           "digits", None, "mlp", kind="aloo-loo", games=("aloo",), methods=("sgd",), n=400, m=100,
           epochs=40, batch_size=32, hidden=64, n_targets=50, max_pairs=200, chunk_models=200,
           minutes=11.0, estimators=("in_sample", "cross_fit"), auditors=("PA-ALOOA",),
           small=(("max_pairs", 4), ("epochs", 3), ("hidden", 32), ("chunk_models", 8),
                  ("n_sim", 20)),
           cuda=(("n", None), ("m", 200), ("n_targets", 100), ("hidden", 256))),
    Preset("frontier-adult-lr", "(f) accuracy-GPRP frontier: Adult, LR, eps in {1, 10} x C in "
           "{5, 10} per method (DP-SGD, DP-SGD-S norm / mean direction), 5 seeds x 64 models; "
           "'does DP-SGD-S buy a smaller gap than DP-SGD at the same accuracy?' as a seed-level "
           "interval; --device cuda: eps in {1, 2, 4, 10} x 400 models",
           "adult", "sex", "lr", kind="frontier", methods=("dpsgd", "dpsgds", "dpsgds-md"),
           seeds=_SEEDS5, n_models=64, chunk_models=64, estimators=("cross_fit",),
           auditors=("PA-ALOOA",), epsilons=(1.0, 10.0), clips=(5.0, 10.0), minutes=14.0,
           small=(*_SMALL_ADULT, ("epsilons", (1.0, 10.0)), ("clips", (1.0, 10.0)), ("seeds", (0, 1, 2))),
           cuda=(("epsilons", (1.0, 2.0, 4.0, 10.0)), ("n_models", 400), ("chunk_models", 400))),
]

_PAPER = {"n_models": 400, "m": 600, "epochs": 20, "batch_size": 256, "lr": 0.1, "delta": 1e-5, "tau": 2.0}

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("adult-lr", "Adult (groups: sex), LR, half-split game, SGD / DP-SGD / DP-SGD-S at eps=10, "
           "400 models x 20 epochs (the paper's Table 2 setting); fits a 2-core CPU",
           "adult", "sex", "lr"),
    Preset("adult-lr-aloo", "Adult (sex), LR, ALOOA game (m = 600), SGD / DP-SGD / DP-SGD-S at eps=10",
           "adult", "sex", "lr", games=("aloo",)),
    Preset("adult-lr-all", "Adult (sex), LR, both games, every method (both DP-SGD-S statistics, "
           "DP-SGD-F), eps 1 and 10, 5 seeds (hours on a CPU)",
           "adult", "sex", "lr", games=("half", "aloo"),
           methods=("sgd", "dpsgd", "dpsgds", "dpsgds-md", "dpsgdf"), epsilons=(1.0, 10.0),
           seeds=(0, 1, 2, 3, 4)),
    Preset("tabular-lr", "LR on the other tabular datasets whose files are present "
           "(law: race, bank: marital, credit: sex), half-split game, eps=10",
           "law", None, "lr"),
    Preset("digits-mlp", "digits (groups: digit), MLP-256, half-split game, SGD / DP-SGD / "
           "DP-SGD-S at eps=10 (GPU preset; the offline stand-in for MNIST)",
           "digits", None, "mlp", gpu=True, chunk_models=200),
    Preset("digits-cnn", "digits, CNN, half-split game, SGD / DP-SGD / DP-SGD-S at eps=10 (GPU preset)",
           "digits", None, "cnn", gpu=True, chunk_models=200),
    Preset("mnist-mlp", "MNIST (1,000 per class, groups: digit), MLP-256, half-split, eps=10 (GPU; "
           "needs the MNIST files)", "mnist", None, "mlp", n=10000, gpu=True, chunk_models=200),
    Preset("mnist-cnn", "MNIST (1,000 per class), CNN, half-split, eps=10 (GPU; needs the MNIST files)",
           "mnist", None, "cnn", n=10000, gpu=True, chunk_models=200),
    Preset("digits-loo", "Study (b): PA-ALOOA vs exact PA-LOOA per record on digits (LR), "
           "R = 2..32 pairs, 10 targets (CPU, minutes)",
           "digits", None, "lr", games=("aloo",), methods=("sgd",), n_models=64, m=300, epochs=10,
           chunk_models=64, kind="loo", estimators=("in_sample", "cross_fit"), auditors=("PA-ALOOA",)),
    Preset("adult-utility", "Study (c): matched utility on Adult (LR, half-split game, 64 models): "
           "DP-SGD at eps 0.5..10 and DP-SGD-S at eps=10",
           "adult", "sex", "lr", methods=("dpsgd", "dpsgds"), n_models=64, chunk_models=64,
           kind="utility", estimators=("cross_fit",), utility_epsilons=(0.5, 1.0, 2.0, 4.0, 10.0)),
    *ISSUE14,
    Preset("smoke", "Adult subsample, LR, 8 models x 2 epochs: checks the whole pipeline in seconds",
           "adult", "sex", "lr", n=2000, n_models=8, m=200, epochs=2, chunk_models=8, n_boot=100),
]}

#: Extra datasets of the ``tabular-lr`` preset (dataset, group) beside its own.
TABULAR_EXTRA = (("bank", None), ("credit", None))


# ---------------------------------------------------------------------------- machine
def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------- configs
def build_configs(p: Preset, *, device: str, datasets: list[tuple[str, str | None]] | None = None,
                  overrides: dict[str, Any] | None = None) -> list[tuple[dict[str, Any], Any]]:
    """Return [(labels, ExperimentConfig)] for every (dataset, game, method, eps, seed) of a preset."""
    from ..experiment.runner import ExperimentConfig

    o = overrides or {}
    out = []
    for dataset, group in datasets or [(p.dataset, p.group)]:
        for seed in o.get("seeds", p.seeds):
            for game in o.get("games", p.games):
                for eps in o.get("epsilons", p.epsilons):
                    for code in o.get("methods", p.methods):
                        spec = dict(METHODS[code])
                        private = spec["method"] != "sgd"
                        train = {
                            "model": p.model, "hidden": o.get("hidden", p.hidden),
                            "epochs": o.get("epochs", p.epochs), "batch_size": o.get("batch_size", p.batch_size),
                            "lr": o.get("lr", p.lr), "delta": p.delta, "tau": p.tau,
                            "clip": PAPER_CLIP.get(float(eps), 10.0) if private else 1.0,
                            "epsilon": float(eps) if private else None, **spec,
                        }
                        if not private and eps != o.get("epsilons", p.epsilons)[0]:
                            continue  # SGD does not depend on eps: train it once
                        n_models = o.get("n_models", p.n_models)
                        cfg = ExperimentConfig(
                            data={"name": dataset, "group": group, "n": o.get("n", p.n), "seed": 0},
                            train=train,
                            game={"kind": game, "n_models": n_models,
                                  "m": o.get("m", p.m) if game == "aloo" else None},
                            audit={"estimator": p.estimators[0], "auditors": p.auditors,
                                   "n_boot": o.get("n_boot", p.n_boot)},
                            seed=int(seed), device=device,
                            chunk_models=min(o.get("chunk_models", p.chunk_models), n_models),
                        )
                        out.append(({"method_code": code, "game": game, "seed": seed}, cfg))
    return out


def _available(dataset: str) -> bool:
    """Return True when the dataset is offline or all its files are already in the data cache.

    Never downloads: on a machine without internet a download would only fail (slowly).
    """
    from ..data import list_datasets

    infos = {d.name: d for d in list_datasets()}
    if dataset not in infos:
        print(f"  skipping {dataset}: not a registered dataset", flush=True)
        return False
    if infos[dataset].offline:
        return True
    from ..data.download import dataset_dir
    from ..data.remote import REMOTE_FILES

    folder = dataset_dir(dataset)
    missing = [f.filename for f in REMOTE_FILES.get(dataset, ()) if not (folder / f.filename).is_file()]
    if missing:
        print(f"  skipping {dataset}: {', '.join(missing)} not in {folder} (fetch them with "
              f"fairpriv_lab.data.download_dataset({dataset!r}) where there is internet)", flush=True)
        return False
    return True


# ---------------------------------------------------------------------------- progress
class LoadSampler:
    """Sample the 1-minute load average every ``every`` seconds in a daemon thread until stop()."""

    def __init__(self, every: float = 15.0):
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            load = _loadavg()
            if load:
                self.samples.append(load[0])
            if self._stop.wait(self._every):
                return

    def stop(self) -> list[float]:
        """Stop sampling; return the samples."""
        self._stop.set()
        self._thread.join()
        return self.samples


class Progress:
    """Print one line per 10 % of training and per audit stage, with elapsed time and load."""

    def __init__(self, label: str):
        self.label = label
        self.t0 = time.perf_counter()
        self.last = -1

    def __call__(self, stage: str, done: float, total: float) -> None:
        """Print the stage's progress when it crossed another 10 % (every audit stage)."""
        pct = int(100 * done / total) if total else 100
        step = pct // 10
        if stage == "train" and step == self.last:
            return
        self.last = step if stage == "train" else self.last
        load = _loadavg()
        print(f"    {self.label}: {stage} {pct:3d}%  {time.perf_counter() - self.t0:7.1f} s"
              f"  load {load[0] if load else '?'}", flush=True)


# ---------------------------------------------------------------------------- run
def _header(p: Preset, machine: dict[str, Any]) -> dict[str, Any]:
    machine = dict(machine)
    print(f"machine: {machine['cpu_model']} x {machine['cpu_count']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), device {machine['device']}"
          f"{' ' + machine['gpu'] if machine['gpu'] else ''}; load {machine['loadavg_start']}", flush=True)
    if p.gpu and machine["device"] == "cpu":
        print(f"note: {p.name} is a GPU preset; on this CPU it will be slow", flush=True)
    return machine


def _finish(machine: dict[str, Any], t_all: float) -> None:
    machine["loadavg_end"] = _loadavg()
    machine["total_seconds"] = round(time.perf_counter() - t_all, 1)
    machine["command"] = " ".join(["paper_scale.py", *sys.argv[1:]]) if sys.argv else ""


def run_preset(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any],
               recompute: bool = False) -> dict[str, Any]:
    """Run a preset (its kind decides what) and write its tables into out."""
    if p.kind == "loo":
        return run_loo(p, out=out, device=device, machine=machine, cache=cache, overrides=overrides)
    if p.kind == "utility":
        return run_utility(p, out=out, device=device, machine=machine, cache=cache, overrides=overrides)
    if p.kind in ISSUE14_RUNNERS:
        return ISSUE14_RUNNERS[p.kind](p, out=out, device=device, machine=machine, cache=cache, overrides=overrides)
    return run_audit(p, out=out, device=device, machine=machine, cache=cache, overrides=overrides, recompute=recompute)


def run_audit(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any],
              recompute: bool = False) -> dict[str, Any]:
    """Run every configuration of a preset (both estimators), the side studies, write the tables."""
    from ..experiment.result import gpr_table, gprp_table
    from ..experiment.runner import run

    datasets = [(p.dataset, p.group)]
    if p.name == "tabular-lr":
        datasets += list(TABULAR_EXTRA)
    datasets = [(d, g) for d, g in datasets if _available(d)]
    if not datasets:
        print(f"preset {p.name}: no dataset available here; nothing to do", flush=True)
        return {}
    machine = _header(p, machine)
    configs = build_configs(p, device=device, datasets=datasets, overrides=overrides)
    results, timings, floors = [], [], []
    t_all = time.perf_counter()
    for i, (labels, cfg) in enumerate(configs):
        tag = (f"[{i + 1}/{len(configs)}] {cfg.data.name} {cfg.train.model} {cfg.game.kind} "
               f"{labels['method_code']} eps={cfg.train.epsilon or 'inf'} seed={cfg.seed}")
        print(f"{tag}: {cfg.game.n_models} models x {cfg.train.epochs} epochs", flush=True)
        for est in p.estimators:
            c = cfg.replace(estimator=est)
            load0 = _loadavg()
            t0, c0 = time.perf_counter(), time.process_time()
            res = run(c, cache=cache, progress=Progress(f"{labels['method_code']} {est}"),
                      recompute=recompute and est == p.estimators[0])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            # only the side study (a) reads losses (the SGD runs of the first estimator): it runs
            # now, and every result drops its losses and confidences (116 MB each for 400 models
            # on full Adult), which would otherwise stay through the later runs' training
            if est == p.estimators[0] and cfg.train.method == "sgd":
                floors += floor_study(res)
            res = _share_game(_slim(res), results)
            results.append(res)
            timings.append({
                "preset": p.name, "dataset": cfg.data.name, "model": cfg.train.model,
                "game": cfg.game.kind, "method": labels["method_code"], "epsilon": cfg.train.epsilon,
                "seed": cfg.seed, "estimator": est, "n_models": cfg.game.n_models,
                "epochs": cfg.train.epochs, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                "train_seconds": round(res.timings.get("train", math.nan), 2),
                "audit_seconds": round(res.timings.get("audit", math.nan), 2),
                "chunks_trained": res.chunks_trained, "chunks_loaded": res.chunks_loaded,
                "device": res.device, "loadavg_before": load0[0] if load0 else None,
                "loadavg_after": (_loadavg() or [None])[0],
            })
            print(f"    done {est}: accuracy {res.accuracy:.4f}, eps {res.epsilon:.3g}, "
                  f"GPRP(PA-ALOOA) {res.gprp('PA-ALOOA'):.3f} pp, {wall:.1f} s "
                  f"({res.chunks_trained} chunks trained, {res.chunks_loaded} from cache)", flush=True)
    _finish(machine, t_all)
    tables = {
        "gprp": gprp_table(results).assign(preset=p.name),
        "gpr": gpr_table(results).assign(preset=p.name),
        "timings": pd.DataFrame(timings),
    }
    tables.update(side_studies(p, results, floors))
    write(p, out, tables, machine)
    return {**tables, "machine": machine, "results": results}


def floor_study(r: Any) -> list[pd.DataFrame]:
    """Side study (a) of one SGD run: the floor against the number of models, and a simulated null."""
    from .. import studies

    total = r.n_models
    sizes = sorted({k for k in (4, 8, 16, 32, 64, 128, 256, total) if 4 <= k <= total and k % 2 == 0})
    _, train, _ = _data(r.config)
    print(f"  study (a): floor vs models on {r.config.data.name} {r.config.game.kind} SGD losses, "
          f"sizes {sizes}", flush=True)
    null = studies.null_game(min(r.game.m, 5000), n_models=total, seed=r.config.seed)
    return [
        studies.floor_vs_models(
            r.losses, r.game.membership, records=r.game.audit_idx, groups=train.g, n_models=sizes,
            source=f"{r.config.data.name} {r.config.train.model} {r.config.game.kind} SGD",
            seed=r.config.seed).assign(seed=r.config.seed, game=r.config.game.kind),
        studies.floor_vs_models(
            null.losses, null.membership, groups=null.groups, n_models=sizes, source="simulated null",
            seed=r.config.seed).assign(seed=r.config.seed, game="half"),
    ]


def side_studies(p: Preset, results: list[Any], floors: list[pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Studies computed from the runs: GRC vs GPR (d), soundness (e), with the floors (a).

    ``floors``: the tables of :func:`floor_study`, made as each SGD run ended.
    """
    from .. import studies

    first = [r for r in results if r.config.audit.estimator == p.estimators[0]]
    def names(runs):
        return {f"{r.config.game.kind} {studies.method_label(r.config.train.method, r.config.train.statistic)} "
                f"eps={r.epsilon:.3g} seed={r.config.seed}": r for r in runs}

    # GRC against the cross-fit GPR when available: the in-sample GPR is mostly its own floor.
    cross = [r for r in results if r.config.audit.estimator == "cross_fit"] or first
    out = {"soundness": studies.soundness(names(first)),
           "grc": studies.grc_gpr(names(cross)).assign(estimator=cross[0].config.audit.estimator)}
    if floors:
        out["floor"] = pd.concat(floors, ignore_index=True)
    return out


def _data(cfg: Any):
    from ..experiment.runner import load_experiment_data

    return load_experiment_data(cfg.data)


def run_loo(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Study (b): ALOOA vs exact LOO agreement against the number of pairs."""
    from .. import studies

    machine = _header(p, machine)
    t_all, c_all = time.perf_counter(), time.process_time()
    (_, base), *_ = build_configs(p, device=device, overrides=overrides)
    R = overrides.get("n_models", p.n_models) // 2
    pairs = sorted({r for r in (2, 4, 8, 16, 32, 64, 128, 200) if r <= R} | {R})
    print(f"study (b): ALOOA ({2 * R} models) and LOO ({2 * R} models x {p.n_targets} targets) on "
          f"{base.data.name} {base.train.model}; R in {pairs}", flush=True)
    df = pd.concat([studies.loo_agreement_study(base, n_targets=p.n_targets, n_pairs=pairs,
                                                estimator=est, cache=cache,
                                                progress=Progress(f"loo {est}"), seed=base.seed)
                    for est in p.estimators], ignore_index=True)
    _finish(machine, t_all)
    print(df.round(3).to_string(index=False), flush=True)
    tables = {"loo_agreement": df, "timings": pd.DataFrame([{
        "preset": p.name, "wall_seconds": machine["total_seconds"],
        "cpu_seconds": round(time.process_time() - c_all, 1), "n_models": 2 * R * (1 + p.n_targets)}])}
    write(p, out, tables, machine)
    return {**tables, "machine": machine}


def run_utility(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Study (c): DP-SGD across eps against DP-SGD-S at eps = 10, compared at equal accuracy."""
    from .. import studies

    machine = _header(p, machine)
    t_all, c_all = time.perf_counter(), time.process_time()
    (_, base), *_ = build_configs(p, device=device, overrides={**overrides, "methods": ("dpsgd",)})
    eps_grid = overrides.get("epsilons", p.utility_epsilons)
    sweeps = []
    for code in overrides.get("methods", p.methods):
        grid = eps_grid if code == "dpsgd" else (10.0,)
        for eps in grid:
            print(f"  {code} eps={eps:g}", flush=True)
            cfg = base.replace(**METHODS[code], epsilon=float(eps),
                               clip=PAPER_CLIP.get(float(eps), 10.0))
            sweeps.append(studies.utility_sweep(cfg, methods=({**METHODS[code]},), epsilons=(float(eps),),
                                                cache=cache, progress=Progress(f"{code} eps={eps:g}")))
    sweep = pd.concat(sweeps, ignore_index=True)
    matched = studies.matched_utility(sweep, candidate="DP-SGD-S", reference="DP-SGD", candidate_epsilon=10.0)
    _finish(machine, t_all)
    print(sweep.round(4).to_string(index=False), "\n", matched.round(4).to_string(index=False), flush=True)
    tables = {"sweep": sweep, "matched": matched, "timings": pd.DataFrame([{
        "preset": p.name, "wall_seconds": machine["total_seconds"],
        "cpu_seconds": round(time.process_time() - c_all, 1), "runs": len(sweep)}])}
    write(p, out, tables, machine)
    return {**tables, "machine": machine}


# ---------------------------------------------------------------------------- issue 14
#: Labels of the DP-SGD-S variants, used in every issue-14 table (the statistic is never implicit).
VARIANT_LABELS = {"sgd": "SGD", "dpsgd": "DP-SGD", "dpsgds": "DP-SGD-S (norm)",
                  "dpsgds-md": "DP-SGD-S (mean direction)", "dpsgdf": "DP-SGD-F"}


def _timed(p: Preset, cfg: Any, *, label: str, cache: Any, timings: list[dict[str, Any]],
           extra: dict[str, Any] | None = None) -> Any:
    """One fl.run with its wall / CPU time, load before and after, appended to timings."""
    from ..experiment.runner import run

    load0 = _loadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    res = run(cfg, cache=cache, progress=Progress(label))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    timings.append({
        "preset": p.name, "label": label, "dataset": cfg.data.name, "model": cfg.train.model,
        "game": cfg.game.kind, "method": cfg.train.method, "statistic": cfg.train.statistic,
        "clip": cfg.train.clip, "epsilon": cfg.train.epsilon, "seed": cfg.seed,
        "estimator": cfg.audit.estimator, "n_models": cfg.game.n_models, "epochs": cfg.train.epochs,
        "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "train_seconds": round(res.timings.get("train", math.nan), 2),
        "audit_seconds": round(res.timings.get("audit", math.nan), 2),
        "chunks_trained": res.chunks_trained, "chunks_loaded": res.chunks_loaded, "device": res.device,
        "loadavg_before": load0[0] if load0 else None, "loadavg_after": (_loadavg() or [None])[0],
        **(extra or {}),
    })
    print(f"    {label}: accuracy {res.accuracy:.4f}, eps {res.epsilon:.3g}, GPRP {res.gprp(cfg.audit.auditors[0]):.3f} pp, "
          f"{wall:.1f} s ({res.chunks_trained} chunks trained, {res.chunks_loaded} cached)", flush=True)
    return _slim(res)


def _slim(res: Any) -> Any:
    """Drop a result's (n_models, n_train) losses and confidences, which no issue-14 table reads.

    Nor does any table of :func:`run_audit` but the floor study of its SGD runs
    (:func:`floor_study`), which runs before its run is slimmed. A 400-model run on full Adult
    holds 116 MB of them; a preset
    keeps 6-40 results until its tables are written. ``n_models`` still reads from the
    (n_models, 0) arrays left in their place.
    """
    empty = np.empty((res.losses.shape[0], 0), dtype=np.float32)
    return dataclasses.replace(res, losses=empty, confidences=empty)


def _share_game(res: Any, results: list[Any]) -> Any:
    """Return ``res`` holding an earlier result's game when it is the same game.

    Every method and estimator of a preset plays one game: 14 MB each at 400 models on Adult.
    """
    for other in results:
        g, h = res.game, other.game
        if g is h:
            return res
        if (type(g) is type(h) and g.kind == h.kind and g.membership.shape == h.membership.shape
                and (g.targets is None) == (h.targets is None)
                and (g.targets is None or np.array_equal(g.targets, h.targets))
                and np.array_equal(g.audit_idx, h.audit_idx) and np.array_equal(g.membership, h.membership)):
            return dataclasses.replace(res, game=h)
    return res


def _opt(p: Preset, overrides: dict[str, Any], key: str) -> Any:
    return overrides.get(key, getattr(p, key))


def _base(p: Preset, *, device: str, overrides: dict[str, Any], code: str, seed: int, eps: float = 10.0,
          dataset: str | None = None, group: str | None = None, model: str | None = None,
          options: tuple[tuple[str, Any], ...] = ()) -> Any:
    """Return the configuration of one (method code, seed, eps) of an issue-14 preset, first estimator."""
    q = dataclasses.replace(p, dataset=dataset or p.dataset, group=group if dataset else p.group,
                            model=model or p.model, hidden=_opt(p, overrides, "hidden"))
    o = {k: v for k, v in overrides.items() if k not in ("seeds", "methods", "epsilons")}
    (_, cfg), = build_configs(q, device=device, overrides={**o, "seeds": (seed,), "methods": (code,),
                                                           "epsilons": (eps,)})
    if options:
        cfg = cfg.replace(**{"data.options": dict(options)})
    return cfg


def _tables(results: list[Any], labels: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """gprp_table and gpr_table of the runs, each row tagged with its labels (variant, ...)."""
    from ..experiment.result import gpr_table, gprp_table

    gprp, gpr = [], []
    for res, lab in zip(results, labels):
        gprp.append(gprp_table([res]).assign(**lab))
        gpr.append(gpr_table([res]).assign(**lab))
    return pd.concat(gprp, ignore_index=True), pd.concat(gpr, ignore_index=True)


def _pairs(frame: pd.DataFrame, pairs: list[tuple[str, str]], *, by: str = "variant",
           keys: tuple[str, ...] = ("estimator", "auditor")) -> pd.DataFrame:
    """Paired seed differences (first - second) with seed-level t CIs, per estimator and auditor."""
    from .. import studies

    rows = []
    for key, part in frame.groupby(list(keys), sort=False):
        have = set(part[by])
        for a, b in pairs:
            if a in have and b in have:
                rows.append({**dict(zip(keys, key)), **studies.paired_seed_difference(
                    part, by=by, first=a, second=b)})
    return pd.DataFrame(rows)


def planned_configs(p: Preset, *, device: str = "cpu", overrides: dict[str, Any] | None = None) -> list[Any]:
    """Every configuration an issue-14 preset trains (first estimator; re-audits train nothing).

    Controls are planned at the flat clip (their clip or sigma is set from the S run, which does
    not change the cost); the ALOOA-vs-LOOA preset trains one ALOOA game of 2R models and one
    LOO game of 2R models per target.
    """
    o = overrides or {}
    seeds, methods = _opt(p, o, "seeds"), _opt(p, o, "methods")
    out: list[Any] = []
    if p.kind == "aloo-loo":
        R, t = int(_opt(p, o, "max_pairs")), int(_opt(p, o, "n_targets"))
        base = _base(p, device=device, overrides={**o, "n_models": 2 * R}, code="sgd", seed=seeds[0])
        return [base, base.replace(**{"game.kind": "loo", "game.targets": tuple(range(t)),
                                      "game.n_models": 2 * R * t, "chunk_models": 2 * R,
                                      "audit.auditors": ("PA-LOOA",)})]
    settings = _opt(p, o, "settings") or ((p.dataset, p.group, p.model, ()),)
    for dataset, group, model, options in settings:
        oo = {**o, "n": None} if dataset == "synthetic" else o
        for seed in seeds:
            for eps in (_opt(p, o, "epsilons") if p.kind == "frontier" else (10.0,)):
                for C in (_opt(p, o, "clips") or (None,) if p.kind in ("clipsweep", "frontier", "controls")
                          else (None,)):
                    codes = (["dpsgd"] + [c for c in methods for _ in range(3)]) if p.kind == "controls" else methods
                    for code in codes:
                        cfg = _base(p, device=device, overrides=oo, code=code, seed=seed, eps=float(eps),
                                    dataset=dataset if p.kind == "groups" else None, group=group, model=model,
                                    options=options)
                        out.append(cfg if C is None else cfg.replace(clip=float(C)))
    return out


def planned_seconds(p: Preset, *, device: str = "cpu", overrides: dict[str, Any] | None = None) -> float | None:
    """Return the planner's CPU seconds (reference machine, one thread) summed over the preset's runs."""
    try:
        from ..experiment.plan import plan
    except ImportError:
        return None
    return float(sum(plan(c, check=False, time_budget=None).seconds
                     for c in planned_configs(p, device=device, overrides=overrides)))


def _start(p: Preset, machine: dict[str, Any], device: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], float]:
    machine = _header(p, machine)
    machine["planned_cpu_seconds"] = planned_seconds(p, device=device, overrides=overrides)
    machine["stated_cpu_minutes"] = p.minutes
    machine["_load_sampler"] = LoadSampler()
    machine["cpu_start"] = time.process_time()
    machine["seeds"] = list(_opt(p, overrides, "seeds"))
    machine["ci_types"] = ("seed level: Student t over seeds (95 %); record level: bootstrap over "
                           "audited records with the models fixed (95 %), averaged over seeds")
    return machine, time.perf_counter()


def _done(p: Preset, out: Path, tables: dict[str, pd.DataFrame], machine: dict[str, Any], t_all: float,
          timings: list[dict[str, Any]]) -> dict[str, Any]:
    _finish(machine, t_all)
    machine["cpu_seconds"] = round(time.process_time() - machine.pop("cpu_start"), 1)
    sampler = machine.pop("_load_sampler", None)
    loads = sampler.stop() if sampler is not None else []
    # the 1-minute load average every 15 s during the run: what the shared cores carried
    machine["loadavg_1min_during"] = {"mean": round(float(np.mean(loads)), 2), "min": min(loads),
                                      "max": max(loads), "samples": len(loads)} if loads else None
    machine["wall_over_cpu"] = round(machine["total_seconds"] / machine["cpu_seconds"], 2) \
        if machine["cpu_seconds"] else None
    machine["nice"] = os.nice(0) if hasattr(os, "nice") else None
    tables["timings"] = pd.DataFrame(timings)
    write(p, out, tables, machine)
    return {**tables, "machine": machine}


def run_seeds(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Run (a): every method at every seed, both estimators; rows over seeds and paired differences."""
    from .. import studies

    machine, t_all = _start(p, machine, device, overrides)
    results, labels, timings = [], [], []
    for seed in _opt(p, overrides, "seeds"):
        for code in _opt(p, overrides, "methods"):
            cfg = _base(p, device=device, overrides=overrides, code=code, seed=seed)
            for est in p.estimators:
                lab = f"{VARIANT_LABELS[code]} seed={seed} {est}"
                results.append(_timed(p, cfg.replace(estimator=est), label=lab, cache=cache, timings=timings))
                labels.append({"variant": VARIANT_LABELS[code], "seed": seed})
    gprp, gpr = _tables(results, labels)
    v = VARIANT_LABELS
    tables = {
        "gprp": gprp, "gpr": gpr,
        "seed_gprp": studies.seed_table(gprp, by=["variant", "estimator", "auditor"], floor="floor_gprp"),
        "seed_gpr": studies.seed_table(gpr, by=["variant", "estimator", "auditor", "group"], value="gpr",
                                       record_ci=("ci_low", "ci_high"), floor="floor"),
        "seed_accuracy": studies.seed_table(gprp[gprp.auditor == p.auditors[0]], by=["variant", "estimator"],
                                            value="accuracy", record_ci=("", "")),
        "pairs": _pairs(gprp, [(v["sgd"], v["dpsgd"]), (v["dpsgd"], v["dpsgds"]), (v["dpsgd"], v["dpsgds-md"]),
                               (v["dpsgds"], v["dpsgds-md"]), (v["sgd"], v["dpsgds"])]),
    }
    return _done(p, out, tables, machine, t_all, timings)


def noise_bound(res: Any) -> float:
    """Mean over recorded steps of max_k C_k (the sensitivity the S/F gradient noise is scaled to).

    From the telemetry's ``clip_bound`` (per step and group, a mean over models: post-processing
    of the accounted release); the max of means is a slight under-read of the mean of maxima.
    """
    tele = res.telemetry
    per_step = tele.groupby("step")["clip_bound"].max()
    return float(per_step.mean())


def run_controls(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """(b) DP-SGD, each DP-SGD-S variant, and its noise-matched and clip-matched DP-SGD, per seed."""
    from .. import studies

    machine, t_all = _start(p, machine, device, overrides)
    results, labels, timings, derived = [], [], [], []
    clips = _opt(p, overrides, "clips") or (None,)  # () = the configuration's own clip bound
    for seed, C_set in ((s, c) for s in _opt(p, overrides, "seeds") for c in clips):
        plain = _base(p, device=device, overrides=overrides, code="dpsgd", seed=seed)
        if C_set is not None:
            plain = plain.replace(clip=float(C_set))
        C = float(plain.train.clip)
        at = "" if C_set is None else f" C={C:g}"
        tag = {} if C_set is None else {"C": C}
        dp = _timed(p, plain, label=f"DP-SGD{at} seed={seed}", cache=cache, timings=timings)
        results.append(dp)
        labels.append({"variant": "DP-SGD", "seed": seed, "control_of": "", **tag})
        derived.append({"seed": seed, **tag, "variant": "DP-SGD", "clip": C, "sigma": dp.config.train.noise_multiplier
                        or _sigma(dp), "noise_bound": C, "noise_std": _sigma(dp) * C, "epsilon": dp.epsilon})
        for code in _opt(p, overrides, "methods"):
            name = VARIANT_LABELS[code]
            s_res = _timed(p, _base(p, device=device, overrides=overrides, code=code, seed=seed).replace(clip=C),
                           label=f"{name}{at} seed={seed}", cache=cache, timings=timings)
            bound, sig = noise_bound(s_res), _sigma(s_res)
            results.append(s_res)
            labels.append({"variant": name, "seed": seed, "control_of": "", **tag})
            derived.append({"seed": seed, **tag, "variant": name, "clip": C, "sigma": sig, "noise_bound": bound,
                            "noise_std": sig * bound, "epsilon": s_res.epsilon})
            controls = {
                # same clip C, gradient noise std sigma_S * max_k C_k: more noise, smaller eps
                f"DP-SGD noise-matched to {name}": plain.replace(noise_multiplier=sig * bound / C),
                # flat clip at max_k C_k, calibrated to the same eps (noise std about the same)
                f"DP-SGD clip-matched to {name}": plain.replace(clip=round(bound, 4)),
            }
            for label, cfg in controls.items():
                r = _timed(p, cfg, label=f"{label}{at} seed={seed}", cache=cache, timings=timings)
                results.append(r)
                labels.append({"variant": label, "seed": seed, "control_of": name, **tag})
                derived.append({"seed": seed, **tag, "variant": label, "clip": float(cfg.train.clip), "sigma": _sigma(r),
                                "noise_bound": float(cfg.train.clip),
                                "noise_std": _sigma(r) * float(cfg.train.clip), "epsilon": r.epsilon})
    gprp, gpr = _tables(results, labels)
    names = [VARIANT_LABELS[c] for c in _opt(p, overrides, "methods")]
    pairs = [(n, "DP-SGD") for n in names]
    pairs += [(n, f"DP-SGD {k}-matched to {n}") for n in names for k in ("noise", "clip")]
    by_c = ["C"] if "C" in gprp else []  # a preset with its own clip bounds: one table block per C
    pair_parts = ([_pairs(gprp[gprp.C == c], pairs).assign(C=c) for c in sorted(gprp.C.unique())]
                  if by_c else [_pairs(gprp, pairs)])
    tables = {
        "gprp": gprp, "gpr": gpr, "derived": pd.DataFrame(derived),
        "seed_gprp": studies.seed_table(gprp, by=[*by_c, "variant", "estimator", "auditor"], floor="floor_gprp"),
        "seed_gpr": studies.seed_table(gpr, by=[*by_c, "variant", "estimator", "auditor", "group"], value="gpr",
                                       record_ci=("ci_low", "ci_high"), floor="floor"),
        "seed_accuracy": studies.seed_table(gprp, by=[*by_c, "variant", "estimator"], value="accuracy",
                                            record_ci=("", "")),
        "pairs": pd.concat(pair_parts, ignore_index=True),
    }
    return _done(p, out, tables, machine, t_all, timings)


def _sigma(res: Any) -> float:
    """Return the gradient noise multiplier a run used (from its training result)."""
    s = getattr(res, "noise_multiplier", None)
    return float(s) if s is not None else float("nan")


def run_clipsweep(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """(c) Each method at each C (eps fixed), with the fraction clipped per group (diagnostic)."""
    from .. import studies

    machine, t_all = _start(p, machine, device, overrides)
    machine["diagnostics"] = ("train.diagnostics=True in every run: the fraction clipped per group reads "
                              "the private batches without noise (a non-private diagnostic); these runs "
                              "are NOT private as released")
    results, labels, timings, clip_rows = [], [], [], []
    for seed in _opt(p, overrides, "seeds"):
        for C in _opt(p, overrides, "clips"):
            for code in _opt(p, overrides, "methods"):
                cfg = _base(p, device=device, overrides=overrides, code=code, seed=seed).replace(
                    clip=float(C), diagnostics=True)
                name = VARIANT_LABELS[code]
                r = _timed(p, cfg, label=f"{name} C={C:g} seed={seed}", cache=cache, timings=timings)
                results.append(r)
                labels.append({"variant": name, "seed": seed, "C": float(C)})
                clip_rows.append(studies.clip_summary(r).assign(variant=name, seed=seed, C=float(C),
                                                               accuracy=float(r.accuracy)))
    gprp, gpr = _tables(results, labels)
    clipped = pd.concat(clip_rows, ignore_index=True)
    gpr = gpr.merge(clipped[["variant", "seed", "C", "group", "clip_bound", "frac_clipped", "frac_clipped_is"]],
                    on=["variant", "seed", "C", "group"], how="left")
    names = [VARIANT_LABELS[c] for c in _opt(p, overrides, "methods")]
    matched = [{"at": "matched accuracy (over the C sweep, per seed)",
                **studies.matched_accuracy_difference(gprp.assign(method=gprp.variant), candidate=n,
                                                      reference="DP-SGD")}
               for n in names if n != "DP-SGD"]
    tables = {
        "gprp": gprp, "gpr": gpr,
        "seed_gprp": studies.seed_table(gprp, by=["C", "variant", "estimator", "auditor"], floor="floor_gprp"),
        "seed_gpr": studies.seed_table(gpr, by=["C", "variant", "group"], value="gpr", record_ci=("ci_low", "ci_high"),
                                      floor="floor"),
        "seed_frac_clipped": studies.seed_table(gpr, by=["C", "variant", "group"], value="frac_clipped",
                                                record_ci=("", "")),
        "pairs_equal_eps": pd.concat([_pairs(gprp[gprp.C == C], [(n, "DP-SGD") for n in names if n != "DP-SGD"])
                                      .assign(C=C) for C in sorted(gprp.C.unique())], ignore_index=True),
        "matched_accuracy": pd.DataFrame(matched),
    }
    return _done(p, out, tables, machine, t_all, timings)


def run_groups(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """(d) Per-group GPR on data with many, unequal groups; GRC vs GPR correlation with a CI."""
    from .. import studies

    machine, t_all = _start(p, machine, device, overrides)
    machine["diagnostics"] = ("train.diagnostics=True for the GRC telemetry (un-noised: a non-private "
                              "diagnostic; the DP runs are NOT private as released)")
    results, labels, timings, corr, grc = [], [], [], [], []
    for dataset, group, model, options in _opt(p, overrides, "settings"):
        if not _available(dataset):
            continue
        opts = dict(options)
        o = {**overrides, "n": None} if dataset == "synthetic" else dict(overrides)  # 2,000 generated
        for seed in _opt(p, overrides, "seeds"):
            for code in _opt(p, overrides, "methods"):
                cfg = _base(p, device=device, overrides=o, code=code, seed=seed, dataset=dataset, group=group,
                            model=model, options=tuple(opts.items())).replace(diagnostics=True)
                name = VARIANT_LABELS[code]
                lab = f"{dataset} {model} {name} seed={seed}"
                r = _timed(p, cfg, label=lab, cache=cache, timings=timings)
                results.append(r)
                labels.append({"variant": name, "seed": seed, "setting": f"{dataset} {model}"})
                g = studies.grc_gpr({lab: r}).assign(variant=name, seed=seed, setting=f"{dataset} {model}")
                grc.append(g)
                corr.append({"setting": f"{dataset} {model}", "variant": name, "seed": seed,
                             **studies.correlation_ci(g["grc"], g["gpr"])})
    gprp, gpr = _tables(results, labels)
    corr_df = pd.DataFrame(corr)
    tables = {
        "gprp": gprp, "gpr": gpr, "grc": pd.concat(grc, ignore_index=True), "grc_correlation": corr_df,
        "seed_gpr": studies.seed_table(gpr, by=["setting", "variant", "group"], value="gpr",
                                       record_ci=("ci_low", "ci_high"), floor="floor"),
        "seed_gprp": studies.seed_table(gprp, by=["setting", "variant", "estimator", "auditor"], floor="floor_gprp"),
        "seed_grc_correlation": studies.seed_table(corr_df.rename(columns={"r": "pearson_r"}),
                                                   by=["setting", "variant"], value="pearson_r",
                                                   record_ci=("ci_low", "ci_high")),
    }
    return _done(p, out, tables, machine, t_all, timings)


def run_aloo_loo(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """(e) ALOOA vs exact LOOA up to 2R = 2 max_pairs on a leaky model, beside the noise-only gap.

    The noise-only expectation (``studies.noise_only_gap``) simulates two independent audits of
    the same per-record risk at the same 2R and number of targets, with a homogeneous leakage
    (member losses shifted down) whose shift is chosen on a grid so that the simulated mean
    per-record accuracy matches the measured LOOA one at the largest 2R.
    """
    from .. import studies

    machine, t_all = _start(p, machine, device, overrides)
    R = int(_opt(p, overrides, "max_pairs"))
    n_targets = int(_opt(p, overrides, "n_targets"))
    n_sim = int(overrides.get("n_sim", 200))
    pairs = sorted({r for r in (2, 4, 8, 16, 32, 64, 128, 200) if r <= R} | {R})
    timings, frames = [], []
    (_, base), *_ = build_configs(dataclasses.replace(p, hidden=_opt(p, overrides, "hidden")), device=device,
                                  overrides={**overrides, "n_models": 2 * R, "seeds": (_opt(p, overrides, "seeds")[0],)})
    for est in p.estimators:
        t0, c0 = time.perf_counter(), time.process_time()
        df = studies.loo_agreement_study(base, n_targets=n_targets, n_pairs=pairs, estimator=est, cache=cache,
                                         progress=Progress(f"loo {est}"), seed=base.seed)
        timings.append({"preset": p.name, "estimator": est, "wall_seconds": round(time.perf_counter() - t0, 1),
                        "cpu_seconds": round(time.process_time() - c0, 1),
                        "n_models": 2 * R * (1 + n_targets), "loadavg_after": (_loadavg() or [None])[0]})
        acc = 0.5 + float(df["ipr_loo"].iloc[-1]) / 200.0  # IPR = 2 acc - 1, in pp
        shifts = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
        fit = [studies.noise_only_gap(2 * R, n_targets=n_targets, shift=s, estimator=est,
                                      n_sim=max(4, n_sim // 10), seed=1) for s in shifts]
        shift = shifts[int(np.argmin([abs(f["accuracy"] - acc) for f in fit]))]
        for i, r in enumerate(df.itertuples()):
            null = studies.noise_only_gap(int(r.n_models), n_targets=n_targets, shift=0.0, estimator=est,
                                          n_sim=n_sim, seed=100 + i)
            same = studies.noise_only_gap(int(r.n_models), n_targets=n_targets, shift=shift, estimator=est,
                                          n_sim=n_sim, seed=200 + i)
            frames.append({**r._asdict(), "noise_only_no_leak": null["mean"],
                           "noise_only_matched": same["mean"], "noise_only_matched_q025": same["q025"],
                           "noise_only_matched_q975": same["q975"], "matched_shift": shift,
                           "matched_accuracy_sim": same["accuracy"], "measured_loo_accuracy": acc,
                           "excess_over_noise": r.mean_abs_diff - same["mean"]})
    table = pd.DataFrame(frames).drop(columns=["Index"])
    return _done(p, out, {"loo_agreement": table}, machine, t_all, timings)


def run_frontier(p: Preset, *, out: Path, device: str, machine: dict[str, Any], cache: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """(f) Accuracy and GPRP over eps x C per method and seed; matched-accuracy interval per S variant."""
    from .. import studies

    machine, t_all = _start(p, machine, device, overrides)
    results, labels, timings = [], [], []
    for seed in _opt(p, overrides, "seeds"):
        for eps in _opt(p, overrides, "epsilons"):
            for C in _opt(p, overrides, "clips"):
                for code in _opt(p, overrides, "methods"):
                    cfg = _base(p, device=device, overrides=overrides, code=code, seed=seed, eps=float(eps)).replace(
                        clip=float(C))
                    name = VARIANT_LABELS[code]
                    r = _timed(p, cfg, label=f"{name} eps={eps:g} C={C:g} seed={seed}", cache=cache, timings=timings)
                    results.append(r)
                    labels.append({"variant": name, "seed": seed, "C": float(C)})
    gprp, _ = _tables(results, labels)
    names = [VARIANT_LABELS[c] for c in _opt(p, overrides, "methods")]
    matched = [studies.matched_accuracy_difference(gprp.assign(method=gprp.variant), candidate=n, reference="DP-SGD")
               for n in names if n != "DP-SGD"]
    tables = {
        "frontier": gprp,
        "seed_frontier": studies.seed_table(gprp, by=["variant", "target_epsilon", "C"], floor="floor_gprp"),
        "seed_frontier_accuracy": studies.seed_table(gprp, by=["variant", "target_epsilon", "C"], value="accuracy",
                                                     record_ci=("", "")),
        "matched_accuracy": pd.DataFrame(matched),
    }
    return _done(p, out, tables, machine, t_all, timings)


ISSUE14_RUNNERS = {"seeds": run_seeds, "controls": run_controls, "clipsweep": run_clipsweep,
                   "groups": run_groups, "aloo-loo": run_aloo_loo, "frontier": run_frontier}


def recorded_run(p: Preset, results: Path = RESULTS_DIR, size: str = "") -> dict[str, Any] | None:
    """Return the machine record (``<preset>_machine.json``) of the preset's recorded run, or None.

    ``size`` is "" (the CPU preset, ``<results>/<preset>/``), "small" or "cuda".
    """
    path = Path(results) / (p.name + (f"-{size}" if size else "")) / f"{p.name}_machine.json"
    return json.loads(path.read_text()) if path.is_file() else None


def stated_time(p: Preset, results: Path = RESULTS_DIR) -> str:
    """Return the preset's time on 2 CPU cores: the stated CPU minutes, the planner, the measured run.

    ``p.minutes`` is the stated time: CPU minutes of the whole preset in one process with one
    torch thread, which on 2 idle cores is its wall time. Beside it, the planner's estimate
    (``fairpriv_lab.experiment.plan``, training only, calibrated on the 2-core reference
    machine) and, once the preset has run at its full size, the recorded CPU and wall time with
    the load average it ran under (``<results>/<preset>/<preset>_machine.json``, ``results`` by
    default ``docs/results``): on the shared machine wall > CPU by the share of the cores the
    other jobs took.
    """
    full = planned_seconds(p)
    parts = [f"stated {p.minutes:g} min CPU (= wall on idle cores)" if p.minutes else "no stated time"]
    if full is not None:
        parts.append(f"planner {_minutes(full)}")
    m = recorded_run(p, results)
    if m and m.get("cpu_seconds"):
        parts.append(f"measured {_minutes(m['cpu_seconds'])} CPU, {_minutes(m['total_seconds'])} wall at load "
                     f"{(m.get('loadavg_start') or ['?'])[0]} -> {(m.get('loadavg_end') or ['?'])[0]} "
                     f"({m.get('date_utc', '?')})")
    else:
        parts.append("not yet run at this size")
    return "; ".join(parts)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def write(p: Preset, out: Path, tables: dict[str, pd.DataFrame], machine: dict[str, Any]) -> None:
    """Write every table as out/P_<name>.csv, the machine as JSON and the markdown summary."""
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(out / f"{p.name}_{name}.csv", index=False)
    (out / f"{p.name}_machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    (out / f"{p.name}.md").write_text(markdown(p, tables, machine))
    print(f"wrote {', '.join(f'{p.name}_{n}.csv' for n in tables)}, {p.name}_machine.json and "
          f"{p.name}.md to {out} ({machine['total_seconds']} s)", flush=True)


# ---------------------------------------------------------------------------- markdown
def _ci(v: float, lo: float, hi: float, digits: int = 2) -> str:
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _eps(e: float) -> str:
    return "inf" if not math.isfinite(e) else f"{e:.3g}"


def _md_table(df: pd.DataFrame, digits: int = 3) -> list[str]:
    """Return a DataFrame as a markdown table (floats rounded)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for rec in df.to_dict("records"):
        cells = []
        for c in cols:
            v = rec[c]
            if isinstance(v, float):
                cells.append("inf" if v == math.inf else ("" if v != v else f"{v:.{digits}f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(p: Preset, tables: dict[str, pd.DataFrame], machine: dict[str, Any]) -> str:
    """Return the preset's tables in markdown: GPR per group and GPRP with CIs, paper values, studies, timings."""
    from .. import studies

    if p.kind in ISSUE14_RUNNERS:
        return markdown14(p, tables, machine)
    lines = [f"# Paper-scale run: `{p.name}`", "", p.description, "",
             f"Command: `python benchmarks/{machine.get('command', '')}`", "",
             f"Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']} "
             f"({machine['torch_threads']} threads), device `{machine['device']}`"
             f"{' (' + machine['gpu'] + ')' if machine.get('gpu') else ''}; load average at start "
             f"{machine['loadavg_start']}, at end {machine.get('loadavg_end')}; total "
             f"{machine.get('total_seconds')} s; {machine['date_utc']}.", ""]
    gprp, gpr = tables.get("gprp"), tables.get("gpr")
    if gprp is not None and len(gprp):
        lines += ["GPR, GPRP, CIs and floors in percentage points (95% bootstrap CIs over records); "
                  "floor = the same estimator on membership labels permuted within each record "
                  "(what it reads with zero leakage); accuracy = mean test accuracy over the models.", ""]
        keys = ["dataset", "model", "game", "seed", "estimator"]
        for (dataset, model, game, seed, est), part in gprp.groupby(keys, sort=False):
            lines += [f"## {dataset} / {model} / {game} game / seed {seed} / {est} estimator", ""]
            g = gpr[(gpr.dataset == dataset) & (gpr.model == model) & (gpr.game == game)
                    & (gpr.seed == seed) & (gpr.estimator == est)]
            groups = list(dict.fromkeys(g["group"]))
            head = ["method", "eps", "accuracy", "auditor", *[f"GPR {x}" for x in groups], "GPRP",
                    "floor (mean)", "max emp. eps"]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in part.itertuples():
                cells = [r.method, _eps(r.epsilon), f"{r.accuracy:.4f}", r.auditor]
                for x in groups:
                    row = g[(g.method == r.method) & (g.auditor == r.auditor) & (g.group == x)
                            & (g.target_epsilon == r.target_epsilon)]
                    cells.append(_ci(*row[["gpr", "ci_low", "ci_high"]].iloc[0]) if len(row) else "")
                cells += [_ci(r.gprp, r.gprp_ci_low, r.gprp_ci_high), f"{r.floor_mean:.2f}",
                          f"{r.empirical_epsilon_max:.2f}"]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        cmp = studies.compare_with_paper(gprp)
        if len(cmp):
            lines += ["## Beside the paper's Table 2 (PA-ALOOA, eps = 10)", "",
                      "| dataset | game | method | estimator | paper GPRP | measured GPRP [95% CI] | floor | "
                      "measured / SGD | paper / SGD |", "|---|---|---|---|---|---|---|---|---|"]
            for r in cmp.itertuples():
                lines.append(f"| {r.dataset} | {r.game} | {r.method} | {r.estimator} | {r.paper:.2f} | "
                             f"{_ci(r.measured, r.ci_low, r.ci_high)} | {r.floor_mean:.2f} | "
                             f"{r.measured_ratio_to_sgd:.2f} | {r.paper_ratio_to_sgd:.2f} |")
            lines.append("")
    if "floor" in tables:
        f = tables["floor"]
        f = f[f.group == -1].groupby(["source", "n_models", "estimator"], as_index=False)[
            ["ipr", "floor", "floor_se"]].mean()
        lines += ["## Study (a): mean IPR and zero-leakage floor (pp) against the number of models", ""]
        lines += _md_table(f, 2)
    if "soundness" in tables:
        snd = tables["soundness"]
        dp = snd[np.isfinite(snd["epsilon"])]
        lines += ["## Study (e): empirical eps lower bounds against the budget they must respect", "",
                  "In the half-split and ALOOA games the out world substitutes the target for another "
                  "record, so the bound is held to 2 eps (group privacy of size 2); exact LOO to eps.", "",
                  f"{int(dp['sound'].sum())} of {len(dp)} (DP run, group) bounds lie at or below their "
                  f"budget; largest lower/budget ratio {dp['ratio'].max() if len(dp) else float('nan'):.3f}.", ""]
        cols = [c for c in ("run", "group", "n", "epsilon", "epsilon_bound", "epsilon_lower",
                            "max_certifiable", "sound") if c in snd]
        lines += _md_table(snd[cols], 3)
    if "grc" in tables:
        lines += ["## Study (d): gradient contribution (GRC) and GPR per group", ""]
        lines += _md_table(tables["grc"][["run", "group", "grc", "gpr", "ci_low", "ci_high"]], 3)
    for name in ("loo_agreement", "sweep", "matched"):
        if name in tables:
            lines += [f"## {name.replace('_', ' ')}", ""] + _md_table(tables[name], 4)
    tim = tables.get("timings")
    if tim is not None and "train_seconds" in tim:
        lines += ["## Timings", "", "Seconds of wall time (train and audit as measured by `run`), and the CPU "
                  "seconds of this process over the whole call: on a shared machine wall >> CPU means "
                  "the cores were busy with other work.", "",
                  "| dataset | game | method | eps | estimator | models | epochs | train s | "
                  "audit s | wall s | CPU s | chunks trained / cached | load before / after |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in tim.itertuples():
            eps = r.epsilon if r.epsilon is not None and r.epsilon == r.epsilon else math.inf
            lines.append(f"| {r.dataset} | {r.game} | {r.method} | {_eps(eps)} | "
                         f"{r.estimator} | {r.n_models} | {r.epochs} | {r.train_seconds:.1f} | {r.audit_seconds:.1f} | "
                         f"{r.wall_seconds:.1f} | {getattr(r, 'cpu_seconds', float('nan')):.1f} | "
                         f"{r.chunks_trained} / {r.chunks_loaded} | "
                         f"{r.loadavg_before} / {r.loadavg_after} |")
        lines.append("")
    return "\n".join(lines)


#: What each issue-14 table holds, in the order the markdown shows them.
TABLE_NOTES14 = {
    "seed_gprp": "GPRP (pp) over seeds: mean, seed-level 95 % Student-t CI (retraining variance), and the "
                 "record-bootstrap 95 % CI (models fixed) averaged over seeds, side by side",
    "seed_gpr": "GPR per group (pp) over seeds, same columns",
    "seed_accuracy": "test accuracy over seeds (seed-level t CI)",
    "pairs": "paired seed differences first - second (pp) with seed-level 95 % t CIs; an ordering is "
             "claimed only when the interval excludes 0",
    "derived": "controls as trained: clip, sigma, noise_bound (max_k C_k, mean over steps; telemetry of the "
               "accounted bounds), per-coordinate noise std = sigma x noise_bound, eps spent",
    "seed_frac_clipped": "fraction of per-sample gradients clipped per group (NON-PRIVATE DIAGNOSTIC, "
                         "train.diagnostics=True), over seeds",
    "pairs_equal_eps": "at equal eps and equal C: DP-SGD-S variant - DP-SGD (pp), seed-level t CI",
    "matched_accuracy": "at matched accuracy: mean over seeds of GPRP(candidate) - GPRP(DP-SGD interpolated at "
                        "the candidate's accuracy), seed-level t CI (negative: the candidate has the smaller gap)",
    "grc_correlation": "Pearson r of GRC (NON-PRIVATE DIAGNOSTIC) with GPR across groups per run, Fisher-z 95 % CI",
    "seed_grc_correlation": "the same r over seeds (record_* columns: mean of the per-run Fisher-z bounds)",
    "seed_gprp_groups": "",
    "loo_agreement": "mean abs. difference of per-record attack accuracy ALOOA vs LOOA (pp) beside the noise-only "
                     "expectation at the same 2R and targets (simulated: two independent audits of the same risk; "
                     "'matched': homogeneous leakage matched to the measured LOOA accuracy at the largest 2R)",
    "seed_frontier": "GPRP (pp) per method, eps and C over seeds",
    "seed_frontier_accuracy": "test accuracy per method, eps and C over seeds",
}


def markdown14(p: Preset, tables: dict[str, pd.DataFrame], machine: dict[str, Any]) -> str:
    """Markdown of an issue-14 preset: provenance, then each summary table with what it holds."""
    lines = [f"# `{p.name}`", "", p.description, "",
             f"Command: `python benchmarks/{machine.get('command', '')}`", "",
             f"Seeds: {machine.get('seeds')}. CIs: {machine.get('ci_types')}.", "",
             f"Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']} "
             f"({machine['torch_threads']} threads), device `{machine['device']}`"
             f"{' (' + machine['gpu'] + ')' if machine.get('gpu') else ''}; load average at start "
             f"{machine['loadavg_start']}, at end {machine.get('loadavg_end')}; total "
             f"{machine.get('total_seconds')} s wall; {machine['date_utc']}.", ""]
    during = machine.get("loadavg_1min_during")
    if machine.get("cpu_seconds"):
        lines += [f"Time: {machine['total_seconds']:.0f} s wall, {machine['cpu_seconds']:.0f} s CPU of this "
                  f"process (one torch thread; nice {machine.get('nice')})"
                  + (f", 1-minute load average during the run {during['mean']} (min {during['min']}, max "
                     f"{during['max']}, {during['samples']} samples)" if during else "")
                  + (f"; planner {machine['planned_cpu_seconds']:.0f} s" if machine.get("planned_cpu_seconds")
                     else "")
                  + (f"; stated {machine['stated_cpu_minutes']:g} min CPU" if machine.get("stated_cpu_minutes")
                     else "") + ".", ""]
    if machine.get("diagnostics"):
        lines += [f"**Privacy:** {machine['diagnostics']}.", ""]
    for name, note in TABLE_NOTES14.items():
        if name in tables and len(tables[name]):
            lines += [f"## {name.replace('_', ' ')}", "", note + ".", ""] + _md_table(tables[name], 3)
    tim = tables.get("timings")
    if tim is not None and len(tim):
        lines += ["## Timings", "", f"{len(tim)} calls; wall {tim['wall_seconds'].sum():.1f} s, CPU "
                  f"{tim['cpu_seconds'].sum():.1f} s in total (per call in `{p.name}_timings.csv`).", ""]
    return "\n".join(lines)
# ---------------------------------------------------------------------------- docs/results.md sections
#: Per issue-14 kind, the evidence tables of its docs/results.md section: (table, row filter
#: column=value or "", the value's name). Every seed table shows mean, seed-level t CI and, where the
#: value has one, the record-bootstrap CI (mean of the per-seed bounds) side by side.
DOC_TABLES14 = {
    "seeds": (("seed_gprp", "GPRP (pp), PA-ALOOA"), ("seed_gpr", "GPR per group (pp), PA-ALOOA"),
              ("seed_accuracy", "test accuracy")),
    "controls": (("derived", "as trained, per seed (noise_bound: mean over steps)"), ("seed_gprp", "GPRP (pp), cross-fit, PA-ALOOA"),
                 ("seed_accuracy", "test accuracy")),
    "clipsweep": (("seed_gprp", "GPRP (pp), cross-fit, PA-ALOOA"),
                  ("seed_frac_clipped", "fraction clipped per group (NON-PRIVATE DIAGNOSTIC)"),
                  ("seed_gpr", "GPR per group (pp)")),
    "groups": (("seed_gprp", "GPRP (pp), cross-fit, PA-ALOOA"),
               ("seed_grc_correlation", "Pearson r of GRC (NON-PRIVATE DIAGNOSTIC) with GPR across groups"),
               ("seed_gpr", "GPR per group (pp), cross-fit, PA-ALOOA")),
    "aloo-loo": (("loo_agreement", "ALOOA vs LOOA against 2R"),),
    "frontier": (("seed_frontier", "GPRP (pp), cross-fit, PA-ALOOA"), ("seed_frontier_accuracy", "test accuracy")),
}


def _cell(v: Any, digits: int) -> str:
    if isinstance(v, float | np.floating):
        return "inf" if v == math.inf else ("" if v != v else f"{v:.{digits}f}")
    return str(v)


def _evidence_table(df: pd.DataFrame, digits: int) -> list[str]:
    """Render a seed table with 'mean [seed CI]' and '[record CI]' cells side by side, other columns as they are."""
    df = df.copy()
    if {"mean", "seed_ci_low", "seed_ci_high"} <= set(df):
        df["mean [seed-level t CI]"] = [f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" for m, lo, hi in
                                        zip(df["mean"], df["seed_ci_low"], df["seed_ci_high"])]
        drop = ["mean", "sd", "seed_ci_low", "seed_ci_high", "record_half_width_mean"]
        if "record_ci_low_mean" in df and df["record_ci_low_mean"].notna().any():
            df["record-bootstrap CI (mean of seeds)"] = [
                f"[{lo:.{digits}f}, {hi:.{digits}f}]" for lo, hi in zip(df["record_ci_low_mean"], df["record_ci_high_mean"])]
        drop += ["record_ci_low_mean", "record_ci_high_mean", "auditor"]
        df = df.drop(columns=[c for c in drop if c in df])
        if "values" in df:
            df = df[[c for c in df if c != "values"] + ["values"]].rename(columns={"values": "per seed"})
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v, digits) for v in rec.values()) + " |" for rec in df.to_dict("records")]
    return lines + [""]


def docs_section(p: Preset, folder: Path) -> str:
    """Return the docs/results.md section of a recorded issue-14 run: command, seeds, CIs, machine, time, evidence, verdicts."""
    from .. import studies

    m = json.loads((folder / f"{p.name}_machine.json").read_text())
    during = m.get("loadavg_1min_during") or {}
    rel = f"docs/results/{folder.name}"
    lines = [f"`python benchmarks/{m.get('command', '')}` → `{rel}/`.", "",
             f"- Seeds: {m.get('seeds')}. CIs: {m.get('ci_types')}.",
             f"- Machine: {m['cpu_model']}, {m['cpu_count']} cores, {m.get('memory_gib')} GiB, torch {m['torch']} "
             f"({m['torch_threads']} thread), device `{m['device']}`{' (' + m['gpu'] + ')' if m.get('gpu') else ''}, "
             f"nice {m.get('nice')}; started {m['date_utc']}.",
             f"- Time: **{m['total_seconds'] / 60:.1f} min wall, {m['cpu_seconds'] / 60:.1f} min CPU** "
             f"(wall / CPU = {m.get('wall_over_cpu')}); 1-minute load average during the run {during.get('mean')} "
             f"(min {during.get('min')}, max {during.get('max')}) on the 2 shared cores; stated "
             f"{m.get('stated_cpu_minutes')} min CPU on idle cores, planner {(m.get('planned_cpu_seconds') or 0) / 60:.1f} min.",
             ""]
    if m.get("diagnostics"):
        lines += [f"- Privacy: {m['diagnostics']}.", ""]
    for table, title in DOC_TABLES14.get(p.kind, ()):
        path = folder / f"{p.name}_{table}.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path)
        if table == "loo_agreement":
            df = df[["estimator", "n_models", "n_targets", "mean_abs_diff", "noise_only_matched",
                     "noise_only_matched_q025", "noise_only_matched_q975", "noise_only_no_leak", "correlation",
                     "ipr_aloo", "ipr_loo"]]
        lines += [f"{title}:", ""] + _evidence_table(df, 4 if "accuracy" in table else 3)
    ev = studies.claims_evidence(folder.parent, size=folder.name[len(p.name) + 1:])
    ev = ev[ev.preset == p.name]
    if len(ev):
        lines += ["Verdicts (`studies.claims_evidence`; the interval is the seed-level 95 % t CI of the signed "
                  "statistic, for ALOOA vs LOOA the noise-only 2.5-97.5 % range):", ""]
        lines += _evidence_table(ev.drop(columns=["preset", "file"]), 3)
    return "\n".join(lines)


