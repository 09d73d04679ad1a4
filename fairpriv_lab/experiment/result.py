"""`AuditResult` and the result tables: the only place tables of results are built.

:class:`AuditResult` (everything one experiment measured, its summary and file export),
:func:`compare` / :func:`format_comparison`, and the tables of many runs that the studies and
``benchmarks/paper_scale.py`` write: :func:`run_info`, :func:`gprp_table`, :func:`gpr_table`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._core import validate as V
from .._core.glossary import EMPIRICAL_BOUND, empirical_epsilon_line
from .._core.io import json_float
from .._core.vocabulary import METHOD_LABELS
from .config import ExperimentConfig

__all__ = [
    "AuditResult", "SummaryFrame", "compare", "format_comparison", "method_label", "run_info",
    "gprp_table", "gpr_table", "empirical_by_group",
]


class SummaryFrame(pd.DataFrame):
    """A DataFrame that prints whole: every row and column, wrapped to the terminal's width.

    ``print(result.summary())`` would otherwise hide GPR and its CIs behind
    ``... [6 rows x 18 columns]``. Everything else is a plain DataFrame (derived frames are
    plain DataFrames again).
    """

    def __repr__(self) -> str:
        import shutil

        width = shutil.get_terminal_size((120, 24)).columns
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", width, "display.expand_frame_repr", True,
                               "display.precision", 3):
            return super().__repr__()


@dataclass(frozen=True, eq=False)
class AuditResult:
    """The outcome of :func:`fairpriv_lab.experiment.run`: risks, privacy, utility, provenance.

    Units: ``record_risk`` arrays are fractions; ``group_risk`` (GPR, GPRP, CIs, floor) and
    :meth:`summary` are in percentage points; accuracies are fractions; ε is ``inf`` for SGD.

    Attributes
    ----------
    config : ExperimentConfig
    group_names : tuple of str
    game : Game
        The membership game (``membership`` bool of shape (n_models, n_train)).
    losses, confidences : ndarray of shape (n_models, n_train), float32
        Per-model per-record loss (lower = member) and logit-scaled true-class confidence.
    record_risk : dict of str to RecordRisk
        Per auditor ("PA-ALOOA", "PA-GA", ...), per-record attack accuracy and IPR.
    group_risk : dict of str to GroupRisk
        Per auditor, GPR by group with bootstrap CIs and GPRP (percentage points).
    empirical_epsilon : DataFrame
        Per group: ``group``, ``n`` and ``epsilon`` (the empirical ε lower bound at ``delta``,
        records of the group pooled), the ``overall`` row last.
    empirical_record : ndarray of shape (m,)
        Per audited record, its empirical ε lower bound.
    max_certifiable_epsilon : float
        The largest ε̂ these many models could certify for one record (its model pairs alone;
        docs/design.md 4.7). A group's records pooled can certify more: see the
        ``max_certifiable`` column of ``empirical_epsilon``.
    outcome : OutcomeFairness
        Outcome fairness of the audited models on the test split (fairlearn metrics; every
        model's predictions pooled, which equals the mean over models of each group's rates).
    test_accuracy : ndarray of shape (n_models,)
    group_accuracy : dict of str to float
        Mean over models of the test accuracy within each group.
    epsilon, delta : float
        Accounted ε (``inf`` for SGD) at δ (add/remove neighbours).
    sample_rate : float
        The largest Poisson rate ``q`` of the models (the one ε is accounted for).
    steps : int
        Steps of training (0 when unknown).
    substitution_epsilon : float
        The substitution budget at δ (:func:`fairpriv_lab.engine.privacy.substitution_epsilon`;
        NaN when not computed).
    noise_multiplier : float or None
    telemetry : DataFrame
        Per step and group: clip bound, GRC, fraction clipped (means over models).
    timings : dict of str to float
        Seconds spent loading data, training (only chunks trained by this call), auditing
        and in total.
    version : str
        fairpriv-lab version that computed the result.
    cache_key : str or None
    chunks_trained, chunks_loaded : int
        Chunks of models trained by this call and served from the cache.
    from_cache : bool
        True when nothing was recomputed (training and audit served from the cache).
    """

    config: ExperimentConfig
    dataset_checksum: str
    group_names: tuple[str, ...]
    n_train: int
    n_test: int
    game: Any
    losses: np.ndarray
    confidences: np.ndarray
    record_risk: dict[str, Any]
    group_risk: dict[str, Any]
    empirical_epsilon: pd.DataFrame
    empirical_record: np.ndarray
    max_certifiable_epsilon: float
    outcome: Any
    test_accuracy: np.ndarray
    group_accuracy: dict[str, float]
    epsilon: float
    delta: float
    noise_multiplier: float | None
    telemetry: pd.DataFrame
    timings: dict[str, float]
    version: str
    device: str
    cache_key: str | None = None
    chunks_trained: int = 0
    chunks_loaded: int = 0
    from_cache: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    sample_rate: float = math.nan
    steps: int = 0
    substitution_epsilon: float = math.nan

    # ------------------------------------------------------------------ scalars
    @property
    def accuracy(self) -> float:
        """Mean test accuracy over the models (fraction)."""
        return float(np.mean(self.test_accuracy)) if self.test_accuracy.size else math.nan

    @property
    def n_models(self) -> int:
        """Number of trained models."""
        return int(self.losses.shape[0])

    @property
    def auditors(self) -> tuple[str, ...]:
        """The auditors run, in the configured order."""
        return tuple(self.group_risk)

    @property
    def reference_epsilon(self) -> float:
        """The ε at δ an empirical lower bound of this game is compared with (``inf`` for SGD).

        Exact LOO is an add/remove game, bounded by ε itself. ALOOA and half-split games swap
        the target for another record (substitution): add/remove ``(ε₁, δ₁)`` gives
        substitution ``(2ε₁, (1 + e^ε₁) δ₁)``, so at the run's δ the budget is
        :func:`fairpriv_lab.engine.privacy.substitution_epsilon` (above ``2ε``; docs/privacy.md).
        NaN when it was not computed (``substitution_epsilon``).
        """
        if not math.isfinite(self.epsilon):
            return math.inf
        if self.game.kind == "loo":
            return self.epsilon
        return self.substitution_epsilon

    @property
    def private(self) -> bool:
        """True when everything this result hands out is covered by the accounted ε.

        False for SGD and for runs with ``train.diagnostics`` on: their telemetry (GRC,
        fraction clipped) reads the private batches without noise (docs/privacy.md).
        """
        return bool(self.config.train.is_release_private)

    @property
    def privacy_note(self) -> str:
        """One line saying what the accounted ε covers."""
        if not self.config.train.is_private:
            return "not private: plain SGD (eps = inf)"
        if not self.private:
            return ("NOT PRIVATE as released: un-noised diagnostics (GRC, fraction clipped) "
                    "are outside eps; turn off train.diagnostics for a private release")
        return "private release: everything returned is covered by eps"

    def gprp(self, auditor: str | None = None) -> float:
        """GPRP (max - min GPR, percentage points) of one auditor (the first by default)."""
        return float(self.group_risk[auditor or self.auditors[0]].difference())

    # ------------------------------------------------------------------ tables
    def summary(self) -> SummaryFrame:
        """Tidy table: one row per auditor x group, GPR with CI, floor, GPRP with CI, ε.

        Columns: ``auditor, group, n, gpr, ci_low, ci_high, floor`` (percentage points),
        ``gprp, gprp_ci_low, gprp_ci_high, gprp_floor`` (the auditor's GPRP and the GPRP of its
        permutation floor, the null reference; repeated on its rows),
        ``minority_minus_majority, mmm_ci_low, mmm_ci_high`` (signed GPR difference with CI;
        two groups only, else NaN),
        ``empirical_epsilon`` (the group's heuristic GDP-shaped lower bound ε̂),
        ``empirical_epsilon_dp`` (its rigorous (ε, δ) lower bound), ``empirical_epsilon_cap``
        (the largest ε̂ these many models could certify for the group), ``test_accuracy`` (the
        group's), and the run's ``method, model, epsilon, delta, private, dataset,
        group_attribute``. Printing it shows every row and column (:class:`SummaryFrame`).
        """
        emp = dict(zip(self.empirical_epsilon["group"], self.empirical_epsilon["epsilon"]))
        emp_dp = dict(zip(self.empirical_epsilon["group"], self.empirical_epsilon["epsilon_dp"])) \
            if "epsilon_dp" in self.empirical_epsilon else {}
        cap = dict(zip(self.empirical_epsilon["group"], self.empirical_epsilon["max_certifiable"])) \
            if "max_certifiable" in self.empirical_epsilon else {}
        rows = []
        for auditor, gr in self.group_risk.items():
            lo, hi = gr.difference_ci()
            diff, dlo, dhi = gr.signed_difference()
            by = gr.by_group
            for rec in by.to_dict("records"):
                g = rec["group"]
                rows.append({
                    "auditor": auditor, "group": g, "n": int(rec["n"]),
                    "gpr": float(rec["gpr"]), "ci_low": float(rec["ci_low"]),
                    "ci_high": float(rec["ci_high"]), "floor": float(rec["floor"]),
                    "gprp": float(gr.difference()), "gprp_ci_low": float(lo), "gprp_ci_high": float(hi),
                    "gprp_floor": float(gr.difference_floor()),
                    "minority_minus_majority": float(diff), "mmm_ci_low": float(dlo),
                    "mmm_ci_high": float(dhi),
                    "empirical_epsilon": float(emp.get(g, math.nan)),
                    "empirical_epsilon_dp": float(emp_dp.get(g, math.nan)),
                    "empirical_epsilon_cap": float(cap.get(g, math.nan)),
                    "test_accuracy": float(self.group_accuracy.get(g, math.nan)),
                })
        df = SummaryFrame(rows)
        t = self.config.train
        df["method"] = t.method
        df["model"] = t.model
        df["epsilon"] = self.epsilon
        df["delta"] = self.delta
        df["private"] = self.private
        df["dataset"] = self.config.data.name
        df["group_attribute"] = self.config.data.resolved_group
        return df

    def records(self) -> pd.DataFrame:
        """Per audited record: index, group, and per auditor its accuracy, IPR and floor."""
        first = next(iter(self.record_risk.values()))
        df = pd.DataFrame({
            "record": first.records,
            "group": np.asarray(self.group_names, dtype=object)[first.groups],
            "empirical_epsilon": self.empirical_record,
        })
        for auditor, rr in self.record_risk.items():
            df[f"{auditor} accuracy"] = rr.accuracy
            df[f"{auditor} ipr"] = rr.ipr
            df[f"{auditor} floor"] = rr.floor
        return df

    def table(self) -> str:
        """The GPR table as text: per auditor, GPR by group with CIs, floor, and GPRP."""
        eps = "inf" if math.isinf(self.epsilon) else f"{self.epsilon:.3g}"
        lines = [
            f"{self.config.label}: {self.n_models} models, {len(self.empirical_record)} audited "
            f"records, test accuracy {self.accuracy:.3f}, eps = {eps} (delta = {self.delta:.2g})",
            f"  {self.privacy_note}",
            f"GPR in percentage points ({self.config.audit.estimator} estimator, "
            f"{int(round(self.config.audit.ci * 100))}% bootstrap CI); floor = zero-leakage level",
        ]
        s = self.summary()
        width = max(8, *(len(str(g)) for g in s["group"]))
        for auditor, part in s.groupby("auditor", sort=False):
            lines.append(f"  {auditor}")
            for r in part.itertuples():
                lines.append(
                    f"    {str(r.group):<{width}} n={r.n:<6d} GPR {r.gpr:6.2f} "
                    f"[{r.ci_low:6.2f}, {r.ci_high:6.2f}]  floor {r.floor:5.2f}"
                )
            r0 = part.iloc[0]
            line = (f"    GPRP {r0.gprp:.2f} [{r0.gprp_ci_low:.2f}, {r0.gprp_ci_high:.2f}]"
                    f"  (floor GPRP {r0.gprp_floor:.2f}: max - min is positive with no leakage)")
            if math.isfinite(r0.minority_minus_majority):
                line += (f"; minority - majority {r0.minority_minus_majority:+.2f} "
                         f"[{r0.mmm_ci_low:.2f}, {r0.mmm_ci_high:.2f}]")
            lines.append(line)
        lines.append(f"{EMPIRICAL_BOUND[0].upper()}{EMPIRICAL_BOUND[1:]} per group, records pooled "
                     f"(Clopper-Pearson, alpha = {self.config.audit.alpha:g})")
        emp = self.empirical_epsilon
        nan = [math.nan] * len(emp)
        caps = emp["max_certifiable"] if "max_certifiable" in emp else nan
        rigorous = emp["epsilon_dp"] if "epsilon_dp" in emp else nan
        for g, e, r, c in zip(emp["group"], emp["epsilon"], rigorous, caps):
            lines.append("    " + empirical_epsilon_line(str(g), float(e), float(c), self.n_models,
                                                         width=width, rigorous=float(r)))
        if math.isfinite(self.epsilon):
            kind = "add/remove game: compare with eps" if self.game.kind == "loo" else \
                "substitution game: compare with the substitution eps at delta, > 2 eps"
            lines.append(f"  ({kind} = {self.reference_epsilon:.3g})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: config, scalars, per-auditor GPRP, summary rows, timings, version."""
        return {
            "config": self.config.to_dict(),
            "version": self.version,
            "dataset_checksum": self.dataset_checksum,
            "cache_key": self.cache_key,
            "device": self.device,
            "n_models": self.n_models,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "group_names": list(self.group_names),
            "accuracy": json_float(self.accuracy),
            "group_accuracy": {k: json_float(v) for k, v in self.group_accuracy.items()},
            "epsilon": json_float(self.epsilon),
            "private": self.private,
            "privacy_note": self.privacy_note,
            "reference_epsilon": json_float(self.reference_epsilon),
            "delta": json_float(self.delta),
            "noise_multiplier": json_float(self.noise_multiplier),
            "max_certifiable_epsilon": json_float(self.max_certifiable_epsilon),
            "gprp": {a: json_float(self.gprp(a)) for a in self.auditors},
            "outcome_fairness": {r["metric"]: json_float(r["value"])
                                 for r in self.outcome.to_frame().to_dict("records")},
            "summary": [
                {k: (json_float(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in self.summary().to_dict("records")
            ],
            "timings": {k: json_float(v) for k, v in self.timings.items()},
            "chunks_trained": self.chunks_trained,
            "chunks_loaded": self.chunks_loaded,
            "from_cache": self.from_cache,
        }

    def to_json(self, **kwargs: Any) -> str:
        """The :meth:`to_dict` content as a JSON string (strict JSON: no NaN or Infinity)."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def save(self, directory: str | Path, *, prefix: str = "") -> dict[str, Path]:
        """Write ``summary.csv``, ``records.csv``, ``telemetry.csv``, ``outcome.csv``,
        ``empirical_epsilon.csv`` and ``result.json`` into directory; return their paths.

        ``prefix`` is prepended to every file name (e.g. ``"dpsgd_"``) so that several
        results can share a folder.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "summary": out / f"{prefix}summary.csv",
            "records": out / f"{prefix}records.csv",
            "telemetry": out / f"{prefix}telemetry.csv",
            "outcome": out / f"{prefix}outcome.csv",
            "empirical_epsilon": out / f"{prefix}empirical_epsilon.csv",
            "json": out / f"{prefix}result.json",
        }
        self.summary().to_csv(paths["summary"], index=False)
        self.records().to_csv(paths["records"], index=False)
        self.telemetry.to_csv(paths["telemetry"], index=False)
        outcome = self.outcome.by_group.copy()
        for k, v in zip(self.outcome.to_frame()["metric"], self.outcome.to_frame()["value"]):
            outcome[k] = v
        outcome.to_csv(paths["outcome"], index=False)
        self.empirical_epsilon.to_csv(paths["empirical_epsilon"], index=False)
        paths["json"].write_text(self.to_json())
        return paths

    def __repr__(self) -> str:
        gprp = ", ".join(f"{a} {self.gprp(a):.2f}" for a in self.auditors)
        return (f"AuditResult({self.config.label}, n_models={self.n_models}, "
                f"accuracy={self.accuracy:.3f}, epsilon={self.epsilon:.3g}, GPRP pp: {gprp})")


def compare(results: Sequence[AuditResult], *, auditor: str | None = None) -> pd.DataFrame:
    """One row per result and auditor: method, accuracy, ε, GPR per group with CI, GPRP, floor.

    Columns: ``method, auditor, accuracy, epsilon, gprp, gprp_ci_low, gprp_ci_high,
    floor_gprp`` (the GPRP of the zero-leakage floors), ``floor_mean``,
    ``minority_minus_majority, mmm_ci_low, mmm_ci_high`` (two groups, else NaN), then per group ``gpr[g]``,
    ``gpr_low[g]``, ``gpr_high[g]`` (percentage points). ``auditor`` keeps one auditor.
    """
    rows = []
    for res in results:
        for name, gr in res.group_risk.items():
            if auditor is not None and name != auditor:
                continue
            by = gr.by_group
            lo, hi = gr.difference_ci()
            row: dict[str, Any] = {
                "method": res.config.train.method, "auditor": name, "accuracy": res.accuracy,
                "epsilon": res.epsilon, "gprp": float(gr.difference()),
                "gprp_ci_low": float(lo), "gprp_ci_high": float(hi),
                "floor_gprp": float(gr.difference_floor()),
                "floor_mean": float(np.nanmean(by["floor"])),
            }
            diff, dlo, dhi = gr.signed_difference()
            row.update({"minority_minus_majority": diff, "mmm_ci_low": dlo, "mmm_ci_high": dhi})
            for rec in by.to_dict("records"):
                g = rec["group"]
                row[f"gpr[{g}]"] = float(rec["gpr"])
                row[f"gpr_low[{g}]"] = float(rec["ci_low"])
                row[f"gpr_high[{g}]"] = float(rec["ci_high"])
            rows.append(row)
    return pd.DataFrame(rows)


def format_comparison(results: Sequence[AuditResult]) -> str:
    """The comparison of :func:`compare` as an aligned text table (percentage points)."""
    df = compare(results)
    if df.empty:
        return "(no results)"
    groups = [c[4:-1] for c in df.columns if c.startswith("gpr[")]
    level = f"{round(results[0].config.audit.ci * 100):g}% CI"
    head = (f"{'method':<7} {'auditor':<9} {'acc':>6} {'eps':>5}  "
            + "  ".join(f"{'GPR ' + g + ' [' + level + ']':<22}" for g in groups)
            + f"  {'GPRP [' + level + ']':<22} {'floor GPRP':>10}  {'min-maj [' + level + ']':<22}")
    lines = [head, "-" * len(head)]
    for r in df.to_dict("records"):
        eps = "inf" if math.isinf(r["epsilon"]) else f"{r['epsilon']:.3g}"
        cells = "  ".join(
            f"{r[f'gpr[{g}]']:6.2f} [{r[f'gpr_low[{g}]']:5.2f},{r[f'gpr_high[{g}]']:6.2f}]".ljust(22)
            for g in groups
        )
        lines.append(
            f"{r['method']:<7} {r['auditor']:<9} {r['accuracy']:6.3f} {eps:>5}  {cells}  "
            f"{r['gprp']:6.2f} [{r['gprp_ci_low']:5.2f},{r['gprp_ci_high']:6.2f}]".ljust(22)
            + f" {r['floor_gprp']:10.2f}  "
            + (f"{r['minority_minus_majority']:+6.2f} [{r['mmm_ci_low']:5.2f},{r['mmm_ci_high']:6.2f}]"
               if math.isfinite(r["minority_minus_majority"]) else "n/a")
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tables of many runs
def method_label(method: str, statistic: str | None = None) -> str:
    """Display name of a method; DP-SGD-S with the paper's statistic is marked "(mean dir.)".

    Examples
    --------
    >>> method_label("dpsgds", "norm"), method_label("dpsgds", "mean_direction")
    ('DP-SGD-S', 'DP-SGD-S (mean dir.)')
    """
    V.choice("method", method, list(METHOD_LABELS))
    label = METHOD_LABELS[method]
    if method == "dpsgds" and statistic == "mean_direction":
        label += " (mean dir.)"
    return label


def empirical_by_group(res: Any) -> pd.DataFrame:
    """Return a run's per-group empirical ε as ``group`` (name), ``n``, ``epsilon``, ``max_certifiable``.

    Accepts group ids or names and ``n`` or ``n_records`` (the empirical module and the
    experiment layer have used both). The studies read it too.
    """
    emp = res.empirical_epsilon
    names = list(res.group_names)
    if emp is None or len(emp) == 0:
        return pd.DataFrame(columns=["group", "n", "epsilon", "max_certifiable"])
    g = emp["group"]
    if pd.api.types.is_numeric_dtype(g.dtype):
        group = [names[int(v)] if 0 <= int(v) < len(names) else str(v) for v in g]
    else:
        group = g.astype(str).tolist()
    ncol = "n" if "n" in emp else ("n_records" if "n_records" in emp else None)
    n = emp[ncol].astype(int).tolist() if ncol else [-1] * len(emp)
    cap = (emp["max_certifiable"].astype(float).tolist() if "max_certifiable" in emp
           else [float(res.max_certifiable_epsilon)] * len(emp))
    return pd.DataFrame({"group": group, "n": n, "epsilon": emp["epsilon"].astype(float).to_numpy(),
                         "max_certifiable": cap})


def run_info(res: Any) -> dict[str, Any]:
    """Return the settings of one run as flat columns: data, model, game, method, budget, accuracy.

    Parameters
    ----------
    res : AuditResult
        A result of :func:`fairpriv_lab.experiment.run`.

    Returns
    -------
    dict
        ``dataset, group_attribute, model, game, n_models, m, method, method_code, statistic,
        seed, epochs, batch_size, lr, clip, target_epsilon, epsilon, delta, noise_multiplier,
        accuracy, accuracy_sd, estimator`` (accuracy a fraction; ε of SGD ``inf``).
    """
    cfg = res.config
    t = cfg.train
    acc = np.asarray(res.test_accuracy, dtype=float)
    private = t.method != "sgd"
    return {
        "dataset": cfg.data.name, "group_attribute": cfg.data.resolved_group, "model": t.model,
        "game": cfg.game.kind, "n_models": int(res.n_models), "m": int(len(res.empirical_record)),
        "method": method_label(t.method, t.statistic), "method_code": t.method,
        "statistic": t.statistic if t.method == "dpsgds" else "",
        "seed": int(cfg.seed), "epochs": int(t.epochs), "batch_size": int(t.batch_size),
        "lr": float(t.lr), "clip": float(t.clip) if private else math.nan,
        "target_epsilon": float(t.epsilon) if t.epsilon is not None else math.inf,
        "epsilon": float(res.epsilon), "delta": float(res.delta),
        "noise_multiplier": math.nan if res.noise_multiplier is None else float(res.noise_multiplier),
        "accuracy": float(np.mean(acc)) if acc.size else math.nan,
        "accuracy_sd": float(np.std(acc, ddof=1)) if acc.size > 1 else math.nan,
        "estimator": cfg.audit.estimator,
    }


def gprp_table(results: Iterable[Any]) -> pd.DataFrame:
    """One row per run and auditor: settings, GPRP with CI, the floor, the largest empirical ε.

    Parameters
    ----------
    results : iterable of AuditResult

    Returns
    -------
    pandas.DataFrame
        The :func:`run_info` columns, then ``auditor, gprp, gprp_ci_low, gprp_ci_high``
        (percentage points), ``floor_mean`` (mean zero-leakage floor over groups, pp),
        ``floor_gprp`` (max - min of the group floors, pp), ``empirical_epsilon_max`` (largest
        per-group empirical ε lower bound), ``train_seconds, audit_seconds, from_cache``.
    """
    rows = []
    for res in results:
        info = run_info(res)
        emp = empirical_by_group(res)
        emp_groups = emp[emp["group"] != "overall"]["epsilon"]
        for auditor, gr in res.group_risk.items():
            by = gr.by_group
            lo, hi = gr.difference_ci()
            rows.append({
                **info, "auditor": auditor, "gprp": float(gr.difference()),
                "gprp_ci_low": float(lo), "gprp_ci_high": float(hi),
                "floor_mean": float(np.nanmean(by["floor"])),
                "floor_gprp": float(np.nanmax(by["floor"]) - np.nanmin(by["floor"])),
                "empirical_epsilon_max": float(emp_groups.max()) if len(emp_groups) else math.nan,
                "train_seconds": float(res.timings.get("train", math.nan)),
                "audit_seconds": float(res.timings.get("audit", math.nan)),
                "from_cache": bool(res.chunks_trained == 0),
            })
    return pd.DataFrame(rows)


def gpr_table(results: Iterable[Any]) -> pd.DataFrame:
    """One row per run, auditor and group: GPR with CI, floor, test accuracy, empirical ε.

    ``results`` as for :func:`gprp_table`. Returns a DataFrame: the :func:`run_info` columns,
    then ``auditor, group, n, gpr, ci_low, ci_high, floor`` (percentage points),
    ``group_accuracy`` (fraction), ``empirical_epsilon``.
    """
    rows = []
    for res in results:
        info = run_info(res)
        e = empirical_by_group(res)
        emp = dict(zip(e["group"], e["epsilon"]))
        for auditor, gr in res.group_risk.items():
            for rec in gr.by_group.to_dict("records"):
                g = str(rec["group"])
                rows.append({
                    **info, "auditor": auditor, "group": g, "n": int(rec["n"]),
                    "gpr": float(rec["gpr"]), "ci_low": float(rec["ci_low"]),
                    "ci_high": float(rec["ci_high"]), "floor": float(rec["floor"]),
                    "group_accuracy": float(res.group_accuracy.get(g, math.nan)),
                    "empirical_epsilon": float(emp.get(g, math.nan)),
                })
    return pd.DataFrame(rows)
