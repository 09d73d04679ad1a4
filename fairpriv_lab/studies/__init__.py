"""Studies the source paper lacks, each a function returning a tidy DataFrame (and a figure).

The paper (Yang, Huang, Tang & Yao, arXiv 2510.09114) reports GPRP without uncertainty, with a
biased estimator, at equal ε only and without a soundness check (docs/design.md section 2). Each
study here measures one of those gaps:

(a) :func:`floor_vs_models` -- the zero-leakage floor of the IPR estimators against the number
    of models (in-sample vs cross-fit), on simulated null scores (:func:`null_game`) or on
    real losses (the floor permutes membership labels within each record);
(b) :func:`agreement_vs_models` / :func:`loo_agreement_study` -- approximate PA-ALOOA against
    exact PA-LOOA per record, as the number of model pairs grows;
(c) :func:`matched_utility` / :func:`utility_sweep` -- DP-SGD-S at ε against DP-SGD at the ε
    that gives the same accuracy (interpolated on an ε grid, optionally re-run there);
(d) :func:`grc_gpr` / :func:`grc_gpr_correlation` -- the paper's motivation: do groups with a
    larger gradient contribution (GRC) carry a larger GPR?
(e) :func:`soundness` -- per-group empirical ε lower bounds against the accounted ε of every
    DP run (a bound above the accounted ε would prove an accounting or implementation bug).

:func:`paper_table2` holds the paper's published GPRP values for side-by-side comparison.
Units: IPR, GPR, GPRP and floors in these frames are **percentage points**; accuracies are
fractions; ε of SGD is ``inf``. Figures go through :mod:`fairpriv_lab.viz` (altair, optional).
Taught in notebook 7 (reproduce the paper).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._core import validate as V
from .._core.exceptions import SmallGroupWarning
from .._core.rng import SeedLike, as_generator, spawn_seed
from .._core.vocabulary import ESTIMATORS as _ESTIMATORS
from .._core.vocabulary import METHOD_LABELS, Estimator
from ..experiment.result import empirical_by_group, method_label

__all__ = [
    "METHOD_LABELS",
    "NullGame",
    "paper_table2",
    "method_label",
    "compare_with_paper",
    "null_game",
    "floor_vs_models",
    "agreement_vs_models",
    "loo_agreement_study",
    "utility_sweep",
    "matched_utility",
    "grc_gpr",
    "grc_gpr_correlation",
    "soundness",
    "paper_comparison_chart",
    "floor_chart",
    "agreement_chart",
    "matched_utility_chart",
    "grc_chart",
    "soundness_chart",
    "clip_summary",
    "matched_accuracy_difference",
    "noise_only_gap",
    "binomial_abs_diff",
    "correlation_ci",
    "paired_seed_difference",
    "seed_table",
    "seed_ci",
    "CLAIMS",
    "claim_verdict",
    "claims_evidence",
    "clipsweep_chart",
]



# ---------------------------------------------------------------------------- the paper
def paper_table2() -> pd.DataFrame:
    """Return the paper's published GPRP at ε = 10 (Table 2), in percentage points.

    Values as printed in Yang et al. (2025), Table 2: GPRP under SGD, DP-SGD and DP-SGD-S
    (MNIST 4.92 -> 3.54 -> 2.92, Adult 0.42 -> 0.27 -> 0.16, Law 0.90 -> 0.59 -> 0.43,
    UTKFace 1.75 -> 1.19 -> 0.74). The paper gives no confidence intervals and uses the
    in-sample estimator (docs/design.md section 2).

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, method, epsilon, gprp`` (12 rows; SGD has ``epsilon = inf``).

    Examples
    --------
    >>> t = paper_table2()
    >>> t[(t.dataset == "adult") & (t.method == "DP-SGD-S")].gprp.item()
    0.16
    """
    values = {
        "mnist": (4.92, 3.54, 2.92),
        "adult": (0.42, 0.27, 0.16),
        "law": (0.90, 0.59, 0.43),
        "utkface": (1.75, 1.19, 0.74),
    }
    rows = []
    for dataset, gprps in values.items():
        for method, eps, gprp in zip(("SGD", "DP-SGD", "DP-SGD-S"), (math.inf, 10.0, 10.0), gprps):
            rows.append({"dataset": dataset, "method": method, "epsilon": eps, "gprp": gprp})
    return pd.DataFrame(rows)


def compare_with_paper(table: pd.DataFrame, *, auditor: str = "PA-ALOOA", epsilon: float = 10.0) -> pd.DataFrame:
    """Measured GPRP beside the paper's Table 2 (SGD, DP-SGD, DP-SGD-S at ε = 10).

    Parameters
    ----------
    table : pandas.DataFrame
        As :func:`fairpriv_lab.experiment.gprp_table` returns (several seeds are averaged; their spread is reported).
    auditor : str
        The auditor compared (the paper's Table 2 uses PA-ALOOA).
    epsilon : float
        The target ε of the DP rows.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, game, model, method, estimator) present in both: ``paper`` (pp),
        ``measured`` (mean over seeds, pp), ``ci_low, ci_high`` (of the first seed's
        bootstrap), ``seed_sd``, ``n_seeds``, ``floor_mean``, ``accuracy`` and
        ``ratio_to_sgd`` for the measured and the paper's values.
    """
    t = _frame(table, ("dataset", "method", "target_epsilon", "estimator", "auditor", "gprp"))
    t = t[(t["auditor"] == auditor) & (np.isinf(t["target_epsilon"]) | np.isclose(t["target_epsilon"], epsilon))]
    paper = paper_table2().rename(columns={"gprp": "paper"})
    keys = ["dataset", "game", "model", "method", "estimator"]
    keys = [k for k in keys if k in t.columns]
    agg = t.groupby(keys, sort=False).agg(
        measured=("gprp", "mean"), ci_low=("gprp_ci_low", "first"), ci_high=("gprp_ci_high", "first"),
        seed_sd=("gprp", "std"), n_seeds=("gprp", "size"), floor_mean=("floor_mean", "mean"),
        accuracy=("accuracy", "mean"),
    ).reset_index()
    out = agg.merge(paper[["dataset", "method", "paper"]], on=["dataset", "method"], how="inner")
    group_keys = [k for k in keys if k != "method"]
    for col in ("measured", "paper"):
        sgd = out[out["method"] == "SGD"].set_index(group_keys)[col]
        idx = pd.MultiIndex.from_frame(out[group_keys]) if len(group_keys) > 1 else out[group_keys[0]]
        base = sgd.reindex(idx).to_numpy(dtype=float)
        out[f"{col}_ratio_to_sgd"] = out[col].to_numpy(dtype=float) / base
    return out


# ---------------------------------------------------------------------------- (a) floor
@dataclass(frozen=True, eq=False)
class NullGame:
    """Simulated scores with no leakage at all: losses independent of membership.

    Attributes
    ----------
    losses : ndarray of float64, shape (n_models, n_samples)
        i.i.d. draws (exponential, like cross-entropy losses), independent of ``membership``.
    membership : ndarray of bool, shape (n_models, n_samples)
        A half-split game (complementary pairs ``(2p, 2p + 1)``, every record audited).
    groups : ndarray of int64, shape (n_samples,)
        Group ids (two groups of the given sizes).
    """

    losses: np.ndarray
    membership: np.ndarray
    groups: np.ndarray


def null_game(
    n_samples: int = 2000, *, n_models: int = 400, group_share: float = 0.3, seed: SeedLike = None
) -> NullGame:
    """Simulate a half-split game with losses independent of membership (true IPR = 0 for every record).

    Parameters
    ----------
    n_samples : int
        Records (all audited).
    n_models : int
        Models (even): ``R = n_models / 2`` pairs audit each record.
    group_share : float in (0, 1)
        Share of records in group 1 (the rest are group 0).
    seed : int, Generator or None

    Returns
    -------
    NullGame

    Examples
    --------
    >>> g = null_game(10, n_models=4, seed=0)
    >>> g.losses.shape, g.membership.shape, int(g.groups.sum())
    ((4, 10), (4, 10), 3)
    """
    from ..games import half_split_game

    n_samples = V.integer("n_samples", n_samples, 2)
    n_models = V.integer("n_models", n_models, 2)
    share = V.number("group_share", group_share, 0.0, 1.0, low_open=True, high_open=True)
    rng = as_generator(seed)
    game = half_split_game(n_samples, n_models=n_models, seed=spawn_seed(rng))
    losses = rng.exponential(1.0, size=(n_models, n_samples))
    groups = (np.arange(n_samples) < round(share * n_samples)).astype(np.int64)
    return NullGame(losses=losses, membership=np.array(game.membership), groups=groups)


def _pair_subset(n_pairs_total: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Model rows of k pairs drawn without replacement (both models of each pair), sorted."""
    pairs = np.sort(rng.choice(n_pairs_total, size=k, replace=False))
    return np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)


def floor_vs_models(
    losses: np.ndarray,
    membership: np.ndarray,
    *,
    n_models: Sequence[int] = (4, 8, 16, 32, 64, 128),
    records: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    estimators: Sequence[Estimator] = ("in_sample", "cross_fit"),
    n_repeats: int = 1,
    source: str = "losses",
    seed: SeedLike = None,
) -> pd.DataFrame:
    """IPR and its zero-leakage floor against the number of models, for each estimator (study a).

    For each size k in ``n_models`` (even, at most the game's), ``k / 2`` model pairs are drawn
    at random from the game and :func:`fairpriv_lab.audit.record_risk` audits the records with
    them. The **floor** is the same estimator on membership labels permuted within each record
    (which model of each pair is "in" re-drawn), so it reads what the estimator reports when
    there is no leakage: about ``+6`` pp at 2R = 400 for the in-sample estimator, 0 on average
    for the cross-fit one. On simulated null losses (:func:`null_game`) the IPR itself is a
    draw of the floor.

    Parameters
    ----------
    losses : ndarray of float, shape (n_models_total, n_samples)
        Per-model per-record losses (lower = member).
    membership : ndarray of bool, shape (n_models_total, n_samples)
        The game's membership matrix (complementary pairs).
    n_models : sequence of int
        Sizes to audit with (each even, >= 2; ``cross_fit`` needs >= 4).
    records, groups : ndarray of int, optional
        As in :func:`~fairpriv_lab.audit.record_risk` (audited records; groups of all records).
    estimators : sequence of {"in_sample", "cross_fit"}
    n_repeats : int
        Independent draws of the pairs (and of the floor's permutation) per size.
    source : str
        A label copied to the ``source`` column (e.g. ``"simulated"``, ``"adult SGD"``).
    seed : int, Generator or None

    Returns
    -------
    pandas.DataFrame
        One row per (size, estimator, repeat, group), ``group = -1`` meaning all records:
        ``source, n_models, estimator, repeat, group, m, ipr, floor, floor_sd, floor_se``
        (percentage points; ``floor_sd`` is the spread over records, ``floor_se`` the
        standard error of the mean floor).

    Examples
    --------
    >>> g = null_game(200, n_models=8, seed=0)
    >>> df = floor_vs_models(g.losses, g.membership, n_models=[2], estimators=["in_sample"], seed=0)
    >>> df.loc[df.group == -1, ["n_models", "estimator", "m"]].values.tolist()
    [[2, 'in_sample', 200]]
    """
    from ..audit.attacks import record_risk

    mem = V.bool_matrix("membership", membership)
    total = mem.shape[0]
    if total % 2:
        raise V.fail("membership", f"array of shape {mem.shape}", "to have an even number of models (pairs)")
    sizes = [V.integer("n_models", k, 2, total) for k in n_models]
    if not sizes:
        raise V.fail("n_models", list(n_models), "to list at least one size")
    for k in sizes:
        if k % 2:
            raise V.fail("n_models", k, "to be even", "Models come in complementary pairs")
    ests = [V.choice("estimators", e, _ESTIMATORS) for e in estimators]
    if not ests:
        raise V.fail("estimators", list(estimators), "to name at least one of 'in_sample', 'cross_fit'")
    n_repeats = V.integer("n_repeats", n_repeats, 1)
    rng = as_generator(seed)
    rows = []
    for k in sizes:
        for rep in range(n_repeats):
            rows_k = _pair_subset(total // 2, k // 2, rng)
            for est in ests:
                if est == "cross_fit" and k < 4:
                    raise V.fail("n_models", k, "to be >= 4 with estimator 'cross_fit'",
                                 "cross-fitting needs one pair to fit the threshold and another to score it")
                rr = record_risk(losses[rows_k], mem[rows_k], records=records, groups=groups,
                                 estimator=est, seed=spawn_seed(rng))
                ipr, floor = 100.0 * rr.ipr, 100.0 * rr.floor
                for gid in [-1, *np.unique(rr.groups).tolist()]:
                    sel = np.ones(rr.m, bool) if gid == -1 else rr.groups == gid
                    n = int(sel.sum())
                    sd = float(np.std(floor[sel], ddof=1)) if n > 1 else math.nan
                    rows.append({
                        "source": source, "n_models": k, "estimator": est, "repeat": rep,
                        "group": int(gid), "m": n, "ipr": float(np.mean(ipr[sel])),
                        "floor": float(np.mean(floor[sel])), "floor_sd": sd,
                        "floor_se": sd / math.sqrt(n) if n > 1 else math.nan,
                    })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- (b) ALOOA vs LOO
def agreement_vs_models(
    aloo_losses: np.ndarray,
    aloo_membership: np.ndarray,
    loo_losses: np.ndarray,
    loo_membership: np.ndarray,
    *,
    targets: np.ndarray,
    pair_targets: np.ndarray,
    n_pairs: Sequence[int],
    groups: np.ndarray | None = None,
    estimator: Estimator = "in_sample",
    seed: SeedLike = None,
) -> pd.DataFrame:
    """Per-record agreement of PA-ALOOA with exact PA-LOOA as the number of pairs R grows (study b).

    For each R in ``n_pairs``: R pairs drawn from the ALOOA game audit the ``targets``, and R of
    each target's own LOO pairs audit it exactly; :func:`fairpriv_lab.audit.agreement` compares
    the two per-record attack accuracies. The paper reports a mean absolute difference of
    about 0.024 at 2R = 400 (fraction of accuracy).

    Parameters
    ----------
    aloo_losses, aloo_membership : ndarray, shape (n_models_aloo, n_samples)
        An ALOOA (or half-split) game in which every target is audited by every pair.
    loo_losses, loo_membership : ndarray, shape (n_models_loo, n_samples)
        An exact LOO game (``fairpriv_lab.games.loo_game``) on the same records.
    targets : ndarray of int, shape (t,)
        Records to compare (LOO targets, audited by the ALOOA game too).
    pair_targets : ndarray of int, shape (n_models_loo // 2,)
        The target of each LOO pair (``game.targets``).
    n_pairs : sequence of int
        Values of R (each at most the pairs available in both games).
    groups : ndarray of int, shape (n_samples,), optional
    estimator : {"in_sample", "cross_fit"}
        The paper's comparison uses ``"in_sample"``.
    seed : int, Generator or None

    Returns
    -------
    pandas.DataFrame
        One row per R: ``n_pairs, n_models (= 2R), n_targets, mean_abs_diff`` (percentage
        points of attack accuracy), ``correlation`` (Pearson r of the accuracies),
        ``ipr_aloo, ipr_loo`` (mean IPR over targets, pp), ``estimator``.
    """
    from ..audit.attacks import agreement, record_risk

    a_mem = V.bool_matrix("aloo_membership", aloo_membership)
    l_mem = V.bool_matrix("loo_membership", loo_membership, shape=(None, a_mem.shape[1]))
    tg = np.unique(np.asarray(targets, dtype=np.int64))
    pt = np.asarray(pair_targets, dtype=np.int64)
    if pt.shape != (l_mem.shape[0] // 2,):
        raise V.fail("pair_targets", f"array of shape {pt.shape}", f"to have shape ({l_mem.shape[0] // 2},)")
    V.choice("estimator", estimator, _ESTIMATORS)
    per_target = {int(t): np.flatnonzero(pt == t) for t in tg}
    avail = min(a_mem.shape[0] // 2, min(len(v) for v in per_target.values()))
    rng = as_generator(seed)
    rows = []
    for R in n_pairs:
        R = V.integer("n_pairs", R, 2 if estimator == "cross_fit" else 1, avail)
        a_rows = _pair_subset(a_mem.shape[0] // 2, R, rng)
        l_pairs = np.sort(np.concatenate([rng.choice(v, size=R, replace=False) for v in per_target.values()]))
        l_rows = np.stack([2 * l_pairs, 2 * l_pairs + 1], axis=1).reshape(-1)
        ra = record_risk(aloo_losses[a_rows], a_mem[a_rows], records=tg, groups=groups,
                         estimator=estimator, seed=spawn_seed(rng))
        rl = record_risk(loo_losses[l_rows], l_mem[l_rows], records=tg, groups=groups,
                         estimator=estimator, seed=spawn_seed(rng))
        ag = agreement(ra, rl)
        rows.append({
            "n_pairs": R, "n_models": 2 * R, "n_targets": int(tg.size),
            "mean_abs_diff": 100.0 * ag.mean_abs_diff, "correlation": ag.correlation,
            "ipr_aloo": 100.0 * float(np.mean(ra.ipr)), "ipr_loo": 100.0 * float(np.mean(rl.ipr)),
            "estimator": estimator,
        })
    return pd.DataFrame(rows)


def loo_agreement_study(
    base: Any,
    *,
    n_targets: int = 10,
    n_pairs: Sequence[int] = (4, 8, 16, 32),
    estimator: Estimator = "in_sample",
    cache: Any = True,
    progress: Callable[[str, float, float], None] | None = None,
    seed: SeedLike = 0,
) -> pd.DataFrame:
    """Train an ALOOA game and an exact LOO game on the same data, then :func:`agreement_vs_models`.

    ``base`` is an :class:`~fairpriv_lab.experiment.ExperimentConfig` whose game is ALOOA with
    ``n_models = 2 max(n_pairs)``; the LOO game trains ``2 max(n_pairs)`` models per target on
    ``n_targets`` of the ALOOA audit records (stratified draw). Cost: ``2 R (1 + n_targets)``
    models. Both runs go through :func:`fairpriv_lab.experiment.run` (cached).

    Returns
    -------
    pandas.DataFrame
        As :func:`agreement_vs_models`, plus ``dataset, model, method``.
    """
    from ..experiment.runner import ExperimentConfig, run

    if not isinstance(base, ExperimentConfig):
        base = ExperimentConfig.from_dict(base)
    n_targets = V.integer("n_targets", n_targets, 1)
    R = max(V.integer("n_pairs", r, 1) for r in n_pairs)
    chunk = min(base.chunk_models, 2 * R)
    aloo_cfg = base.replace(**{"game.kind": "aloo", "game.n_models": 2 * R, "chunk_models": chunk,
                               "audit.auditors": ("PA-ALOOA",)})
    with warnings.catch_warnings():  # only record-level results are used: group sizes do not matter
        warnings.simplefilter("ignore", SmallGroupWarning)
        aloo = run(aloo_cfg, cache=cache, progress=progress)
    rng = as_generator(seed)
    audit_idx = np.asarray(aloo.game.audit_idx)
    n_targets = min(n_targets, audit_idx.size)
    targets = np.sort(rng.choice(audit_idx, size=n_targets, replace=False))
    loo_cfg = base.replace(**{"game.kind": "loo", "game.targets": tuple(int(t) for t in targets),
                              "game.n_models": 2 * R * n_targets, "chunk_models": 2 * R,
                              "audit.auditors": ("PA-LOOA",)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallGroupWarning)
        loo = run(loo_cfg, cache=cache, progress=progress)
    _, train, _ = _experiment_data(base)
    df = agreement_vs_models(
        aloo.losses, aloo.game.membership, loo.losses, loo.game.membership,
        targets=targets, pair_targets=loo.game.targets, n_pairs=sorted(set(n_pairs)),
        groups=train.g, estimator=estimator, seed=rng,
    )
    t = base.train
    return df.assign(dataset=base.data.name, model=t.model, method=method_label(t.method, t.statistic))


def _experiment_data(cfg: Any):
    from ..experiment.runner import load_experiment_data

    return load_experiment_data(cfg.data)


# ---------------------------------------------------------------------------- (c) matched utility
def _result_row(res: Any, *, auditor: str) -> dict[str, Any]:
    """One tidy row of a run: method label, ε, accuracy and the auditor's GPRP with CI (pp)."""
    t = res.config.train
    gr = res.group_risk[auditor]
    lo, hi = gr.difference_ci()
    return {
        "method": method_label(t.method, t.statistic), "epsilon": float(res.epsilon),
        "target_epsilon": math.inf if t.epsilon is None else float(t.epsilon),
        "accuracy": float(res.accuracy), "gprp": float(gr.difference()),
        "gprp_ci_low": float(lo), "gprp_ci_high": float(hi),
    }


def utility_sweep(
    base: Any,
    *,
    methods: Sequence[Mapping[str, Any]] = ({"method": "dpsgd"}, {"method": "dpsgds", "statistic": "norm"}),
    epsilons: Sequence[float] = (1.0, 2.0, 4.0, 10.0),
    auditor: str = "PA-ALOOA",
    cache: Any = True,
    progress: Callable[[str, float, float], None] | None = None,
) -> pd.DataFrame:
    """Run each method at each ε and return accuracy and GPRP per run (the input of study c).

    Parameters
    ----------
    base : ExperimentConfig
        The shared settings (data, model, game, audit).
    methods : sequence of mapping
        Overrides of each method (e.g. ``{"method": "dpsgds", "statistic": "norm"}``).
    epsilons : sequence of float
        Target budgets.
    auditor : str
        Which auditor's GPRP to report.
    cache, progress : see :func:`fairpriv_lab.experiment.run`

    Returns
    -------
    pandas.DataFrame
        One row per run: ``method, epsilon`` (accounted), ``target_epsilon, accuracy, gprp,
        gprp_ci_low, gprp_ci_high`` (pp).
    """
    from ..experiment.runner import ExperimentConfig, run

    if not isinstance(base, ExperimentConfig):
        base = ExperimentConfig.from_dict(base)
    rows = []
    for overrides in methods:
        for eps in epsilons:
            V.positive("epsilons", eps)
            res = run(base.replace(**dict(overrides), epsilon=float(eps)), cache=cache, progress=progress)
            rows.append(_result_row(res, auditor=auditor))
    return pd.DataFrame(rows)


def _crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """First x (linear interpolation) where the piecewise-linear y(x) reaches target; NaN if none."""
    for i in range(len(x) - 1):
        y0, y1 = y[i], y[i + 1]
        if min(y0, y1) <= target <= max(y0, y1):
            if y1 == y0:
                return float(x[i])
            return float(x[i] + (target - y0) * (x[i + 1] - x[i]) / (y1 - y0))
    return math.nan


def matched_utility(
    sweep: pd.DataFrame,
    *,
    candidate: str = "DP-SGD-S",
    reference: str = "DP-SGD",
    candidate_epsilon: float = 10.0,
    rerun: Callable[[float], Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """Compare a method with the reference at **equal accuracy**, not only at equal ε (study c).

    The candidate's accuracy ``a*`` at ``candidate_epsilon`` is located on the reference's
    accuracy curve: with the reference's runs sorted by ε, ``log ε`` is interpolated linearly
    between the first two neighbouring runs whose accuracies bracket ``a*``, giving the matched
    budget ``ε_m``; the reference's GPRP (and CI bounds) at ``ε_m`` are interpolated the same way
    on ``log ε``. If ``rerun`` is given, it is called with ``ε_m`` and its returned
    ``accuracy, gprp, gprp_ci_low, gprp_ci_high`` replace the interpolation (measured, not
    interpolated). When ``a*`` lies outside the reference's accuracies the matched values are
    NaN: widen the ε grid.

    Parameters
    ----------
    sweep : pandas.DataFrame
        Columns ``method, epsilon, accuracy, gprp`` (optional ``gprp_ci_low, gprp_ci_high``),
        as :func:`utility_sweep` returns (GPRP in pp, accuracy a fraction). When a
        ``target_epsilon`` column is present it is used instead of the accounted ``epsilon``
        (the accountant lands a hair below the target, which would break "equal ε").
    candidate, reference : str
        Values of the ``method`` column.
    candidate_epsilon : float
        The candidate's run to match (the run whose ε is closest on a log scale).
    rerun : callable, optional
        ``rerun(eps) -> mapping`` training the reference at ``eps``.

    Returns
    -------
    pandas.DataFrame
        Two rows (``candidate`` at its ε, ``reference`` at the matched ε) with columns
        ``role, method, epsilon, accuracy, gprp, gprp_ci_low, gprp_ci_high, how``
        (``"measured"``, ``"interpolated"`` or ``"outside grid"``), plus a third row with the
        reference at the candidate's ε (``role = "reference at equal eps"``).

    Examples
    --------
    >>> sweep = pd.DataFrame({"method": ["DP-SGD"] * 3 + ["DP-SGD-S"],
    ...                       "epsilon": [1.0, 4.0, 16.0, 16.0],
    ...                       "accuracy": [0.70, 0.80, 0.84, 0.80],
    ...                       "gprp": [0.1, 0.3, 0.5, 0.2]})
    >>> out = matched_utility(sweep, candidate_epsilon=16.0)
    >>> out.set_index("role").loc["reference at equal accuracy", ["epsilon", "gprp"]].tolist()
    [4.0, 0.3]
    """
    frame = _frame(sweep, ("method", "epsilon", "accuracy", "gprp"))
    V.positive("candidate_epsilon", candidate_epsilon)
    if "target_epsilon" in frame.columns:  # match on the requested budgets, not the accounted ones
        frame["epsilon"] = frame["target_epsilon"].astype(float)
    cand = frame[frame["method"] == candidate]
    ref = frame[(frame["method"] == reference) & np.isfinite(frame["epsilon"])].sort_values("epsilon")
    if cand.empty:
        raise V.fail("candidate", candidate, "to be a method of the sweep: " + ", ".join(map(str, frame["method"].unique())))
    if len(ref) < 2:
        raise V.fail("reference", reference, "to have at least two runs with finite ε in the sweep")
    has_ci = {"gprp_ci_low", "gprp_ci_high"} <= set(frame.columns)
    pick = cand.iloc[int(np.argmin(np.abs(np.log(cand["epsilon"].to_numpy(float)) - math.log(candidate_epsilon))))]
    a_star = float(pick["accuracy"])
    loge = np.log(ref["epsilon"].to_numpy(float))
    x = _crossing(loge, ref["accuracy"].to_numpy(float), a_star)
    cols = ["gprp", "gprp_ci_low", "gprp_ci_high"] if has_ci else ["gprp"]

    def row(role, method, eps, values, how):
        out = {"role": role, "method": method, "epsilon": eps}
        out.update({c: values.get(c, math.nan) for c in ("accuracy", "gprp", "gprp_ci_low", "gprp_ci_high")})
        out["how"] = how
        return out

    rows = [row("candidate", candidate, float(pick["epsilon"]), dict(pick), "measured")]
    if math.isnan(x):
        rows.append(row("reference at equal accuracy", reference, math.nan, {"accuracy": a_star}, "outside grid"))
    else:
        eps_m = math.exp(x)
        if rerun is not None:
            rows.append(row("reference at equal accuracy", reference, eps_m, dict(rerun(eps_m)), "measured"))
        else:
            vals = {c: float(np.interp(x, loge, ref[c].to_numpy(float))) for c in cols}
            vals["accuracy"] = a_star
            rows.append(row("reference at equal accuracy", reference, eps_m, vals, "interpolated"))
    x_eq = math.log(float(pick["epsilon"]))
    if loge[0] <= x_eq <= loge[-1]:
        vals = {c: float(np.interp(x_eq, loge, ref[c].to_numpy(float))) for c in [*cols, "accuracy"]}
        exact = np.isclose(loge, x_eq, rtol=0, atol=1e-9)
        rows.append(row("reference at equal eps", reference, float(pick["epsilon"]), vals,
                        "measured" if exact.any() else "interpolated"))
    else:
        rows.append(row("reference at equal eps", reference, float(pick["epsilon"]), {}, "outside grid"))
    return pd.DataFrame(rows)


def _frame(frame: Any, required: Sequence[str]) -> pd.DataFrame:
    """Check that frame is a DataFrame with the required columns; return a copy."""
    if not isinstance(frame, pd.DataFrame):
        raise V.fail("sweep", type(frame).__name__, "to be a pandas DataFrame")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise V.fail("sweep", f"a frame without columns {missing}", "to have columns " + ", ".join(required))
    return frame.copy()


# ---------------------------------------------------------------------------- (d) GRC vs GPR
def grc_gpr(results: Mapping[str, Any] | Iterable[Any], *, auditor: str = "PA-ALOOA") -> pd.DataFrame:
    """Per run and group: the mean group relative contribution (GRC) and the GPR (study d).

    GRC(k) = mean over steps of ``||mean gradient of group k in B|| / ||mean gradient of B||``
    (docs/design.md 4.8; raw gradients, telemetry for teaching). The paper's motivation for DP-SGD-S
    is that groups pulling the update harder are exposed more.

    Parameters
    ----------
    results : mapping of str to AuditResult, or iterable of AuditResult
        Runs with telemetry (columns ``step, group, grc``); a mapping names the runs.
    auditor : str
        Which auditor's GPR to use.

    Returns
    -------
    pandas.DataFrame
        One row per (run, group): ``run, method, group, grc, gpr, ci_low, ci_high, n``
        (GPR in pp; GRC a ratio; NaN where a group never appeared in a batch).
    """
    items = results.items() if isinstance(results, Mapping) else ((None, r) for r in results)
    rows = []
    for name, res in items:
        t = res.config.train
        label = name if name is not None else f"{method_label(t.method, t.statistic)} eps={res.epsilon:.3g}"
        names = list(res.group_names)
        tel = res.telemetry
        grc: dict[str, float] = {}
        if tel is not None and len(tel) and {"group", "grc"} <= set(tel.columns):
            g = tel["group"]
            if pd.api.types.is_numeric_dtype(g.dtype):
                ok = g.to_numpy() >= 0
                tel = tel[ok]
                keys = [names[int(v)] for v in tel["group"].to_numpy()]
            else:
                keys = tel["group"].astype(str).tolist()
            grc = pd.Series(tel["grc"].to_numpy(float), index=keys).groupby(level=0).mean().to_dict()
        by = res.group_risk[auditor].by_group
        for rec in by.to_dict("records"):
            rows.append({
                "run": label, "method": method_label(t.method, t.statistic), "group": str(rec["group"]),
                "grc": float(grc.get(str(rec["group"]), math.nan)), "gpr": float(rec["gpr"]),
                "ci_low": float(rec["ci_low"]), "ci_high": float(rec["ci_high"]), "n": int(rec["n"]),
            })
    return pd.DataFrame(rows)


def grc_gpr_correlation(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run, the Pearson and Spearman correlation of GRC with GPR across groups.

    With two groups (Adult by sex) a correlation is +-1 or undefined and says nothing; the
    ``n_groups`` column is there to be read first.

    Parameters
    ----------
    frame : pandas.DataFrame
        As :func:`grc_gpr` returns (``run, group, grc, gpr``).

    Returns
    -------
    pandas.DataFrame
        One row per run: ``run, n_groups, pearson, spearman`` (NaN below 3 groups or without
        spread).

    Examples
    --------
    >>> f = pd.DataFrame({"run": ["a"] * 3, "group": list("xyz"),
    ...                   "grc": [1.0, 2.0, 3.0], "gpr": [0.1, 0.3, 0.2]})
    >>> grc_gpr_correlation(f)[["n_groups", "pearson", "spearman"]].round(2).values.tolist()
    [[3.0, 0.5, 0.5]]
    """
    frame = _frame(frame, ("run", "group", "grc", "gpr"))
    rows = []
    for run_name, part in frame.groupby("run", sort=False):
        part = part[np.isfinite(part["grc"]) & np.isfinite(part["gpr"])]
        n = len(part)
        pear = spear = math.nan
        if n >= 3 and part["grc"].std() > 0 and part["gpr"].std() > 0:
            pear = float(np.corrcoef(part["grc"], part["gpr"])[0, 1])
            ranks = part[["grc", "gpr"]].rank()
            spear = float(np.corrcoef(ranks["grc"], ranks["gpr"])[0, 1])
        rows.append({"run": run_name, "n_groups": n, "pearson": pear, "spearman": spear})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- (e) soundness
def soundness(results: Mapping[str, Any] | Iterable[Any]) -> pd.DataFrame:
    """Empirical per-group ε lower bounds against the accounted ε, for every DP run (study e).

    A lower bound (Clopper-Pearson on held-out thresholds, converted through μ-GDP; docs/design.md
    4.7) above the budget it must respect would prove the implementation or the accounting
    wrong. Which budget: in the ALOOA and half-split games the "out" world *substitutes* the
    target for another record; add/remove ``(ε₁, δ₁)`` gives substitution
    ``(2ε₁, (1 + e^ε₁) δ₁)``, so at the run's δ the budget is the result's
    ``reference_epsilon`` (:func:`fairpriv_lab.engine.privacy.substitution_epsilon`, above ``2 ε``);
    the exact leave-one-out game is add/remove and is held to ``ε`` (docs/privacy.md). Runs with
    ``ε = inf`` (SGD) are kept with ``sound = True`` (nothing to violate). Groups with no
    audited records (or no bound) have nothing to check: ``sound`` is NA, ``verdict`` "n/a".

    Parameters
    ----------
    results : mapping of str to AuditResult, or iterable of AuditResult

    Returns
    -------
    pandas.DataFrame
        One row per (run, group, and "overall" where the run reports it): ``run, method,
        game, group, n, epsilon`` (accounted), ``epsilon_bound`` (``2 ε`` or ``ε``),
        ``epsilon_lower, ratio`` (lower / bound), ``max_certifiable`` (the largest ε the
        trial count could certify), ``sound`` (lower <= bound; nullable boolean, NA where
        there is nothing to check) and ``verdict`` ("sound", "unsound" or "n/a").
    """
    items = results.items() if isinstance(results, Mapping) else ((None, r) for r in results)
    rows = []
    for name, res in items:
        t = res.config.train
        label = name if name is not None else f"{method_label(t.method, t.statistic)} eps={res.epsilon:.3g}"
        kind = getattr(getattr(res, "game", None), "kind", None) or res.config.game.kind
        acc = float(res.epsilon)
        if not math.isfinite(acc):
            bound = math.inf
        elif kind == "loo":
            bound = acc
        else:
            bound = float(getattr(res, "reference_epsilon", math.nan))
        for rec in empirical_by_group(res).to_dict("records"):
            lower = float(rec["epsilon"])
            n = int(rec["n"])
            checkable = n > 0 and math.isfinite(lower) and not math.isnan(bound)
            sound = bool(lower <= bound) if checkable else pd.NA
            rows.append({
                "run": label, "method": method_label(t.method, t.statistic), "game": kind,
                "group": rec["group"], "n": n, "epsilon": acc, "epsilon_bound": bound,
                "epsilon_lower": lower,
                "ratio": (lower / bound if math.isfinite(bound) else 0.0) if checkable else math.nan,
                "max_certifiable": float(rec["max_certifiable"]), "sound": sound,
                "verdict": "n/a" if sound is pd.NA else ("sound" if sound else "unsound"),
            })
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["sound"] = frame["sound"].astype("boolean")
    return frame


# ---------------------------------------------------------------------------- figures
def paper_comparison_chart(comparison: pd.DataFrame, *, title: str | None = None):
    """Measured GPRP with 95% CI beside the paper's value, per method and estimator.

    Parameters
    ----------
    comparison : pandas.DataFrame
        As :func:`compare_with_paper` returns (one dataset and game).

    Returns
    -------
    altair.LayerChart
        x = method; filled points with error bars = measured (colour = estimator); black
        diamonds = the paper's published value (no CI was published).
    """
    from ..viz import HEIGHT, WIDTH, altair, title_params

    alt = altair()
    f = _frame(comparison, ("method", "estimator", "measured", "ci_low", "ci_high", "paper"))
    order = [m for m in ("SGD", "DP-SGD", "DP-SGD-S") if m in set(f["method"])]
    x = alt.X("method:N", title=None, sort=order)
    y_title = "GPRP (percentage points)"
    offset = alt.XOffset("estimator:N")
    color = alt.Color("estimator:N", title="Our estimator",
                      scale=alt.Scale(domain=["in_sample", "cross_fit"], range=["#E69F00", "#0072B2"]))
    base = alt.Chart(f).encode(x=x, xOffset=offset, color=color,
                               tooltip=["method", "estimator", "measured", "ci_low", "ci_high", "paper"])
    pts = base.mark_point(filled=True, size=70).encode(y=alt.Y("measured:Q", title=y_title))
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q")
    paper = f.drop_duplicates("method")[["method", "paper"]]
    ppts = alt.Chart(paper).mark_point(shape="diamond", size=110, filled=True, color="black").encode(
        x=x, y=alt.Y("paper:Q", title=y_title), tooltip=["method", "paper"])
    return alt.layer(bars, pts, ppts).properties(width=WIDTH, height=HEIGHT, title=title_params(
        alt, title or "GPRP: our measurement vs the paper's Table 2",
        "points + bars: measured with 95% bootstrap CI; black diamonds: published (no CI)"))


def floor_chart(frame: pd.DataFrame, *, title: str | None = None):
    """Line chart of the mean floor (pp) against the number of models, one line per estimator.

    Parameters
    ----------
    frame : pandas.DataFrame
        As :func:`floor_vs_models` returns; rows with ``group = -1`` (all records) are drawn,
        averaged over repeats, with +-2 standard errors as error bars.

    Returns
    -------
    altair.LayerChart
    """
    from ..viz import HEIGHT, WIDTH, altair, series_color, title_params

    alt = altair()
    f = _frame(frame, ("n_models", "estimator", "floor", "floor_se", "group"))
    f = f[f["group"] == -1]
    cols = ["source", "n_models", "estimator"] if "source" in f else ["n_models", "estimator"]
    agg = f.groupby(cols, as_index=False).agg(floor=("floor", "mean"), se=("floor_se", "mean"))
    agg["low"] = agg["floor"] - 2 * agg["se"]
    agg["high"] = agg["floor"] + 2 * agg["se"]
    dom = sorted(agg["estimator"].unique())
    enc: dict[str, Any] = {}
    several = "source" in agg and agg["source"].nunique() > 1
    if several:  # one line style per source (simulated null, real losses), colour per estimator
        enc["strokeDash"] = alt.StrokeDash("source:N", title="Losses")
        enc["shape"] = alt.Shape("source:N", title="Losses")
    base = alt.Chart(agg).encode(
        x=alt.X("n_models:Q", title="Number of models (2R, log scale)", scale=alt.Scale(type="log")),
        color=series_color(alt, "estimator", dom, "Estimator"),
        tooltip=[alt.Tooltip(c) for c in [*cols, "floor"]],
        **enc,
    )
    y = alt.Y("floor:Q", title="Zero-leakage floor of mean IPR (pp)")
    layers = [base.mark_line(point=True).encode(y=y),
              base.mark_errorbar().encode(y=alt.Y("low:Q", title="Zero-leakage floor of mean IPR (pp)"), y2="high:Q"),
              alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 3], color="#777777").encode(y="y:Q")]
    sub = "in-sample (paper) is biased upwards, most with few models; cross-fit stays at 0"
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT, title=title_params(
        alt, title or "What the IPR estimators read with no leakage", sub))


def agreement_chart(frame: pd.DataFrame, *, title: str | None = None):
    """Mean |accuracy difference| (pp) of PA-ALOOA vs PA-LOOA against the number of models.

    Parameters
    ----------
    frame : pandas.DataFrame
        As :func:`agreement_vs_models` returns.

    Returns
    -------
    altair.LayerChart
    """
    from ..viz import HEIGHT, WIDTH, altair, title_params

    alt = altair()
    f = _frame(frame, ("n_models", "mean_abs_diff", "correlation"))
    base = alt.Chart(f).encode(x=alt.X("n_models:Q", title="Models per record (2R, log scale)",
                                       scale=alt.Scale(type="log")),
                               tooltip=["n_models", "mean_abs_diff", "correlation"])
    line = base.mark_line(point=True, color="#CC79A7").encode(
        y=alt.Y("mean_abs_diff:Q", title="Mean |acc ALOOA - acc LOOA| (pp)"))
    paper = alt.Chart(pd.DataFrame({"y": [2.4]})).mark_rule(strokeDash=[4, 3], color="#777777").encode(y="y:Q")
    return alt.layer(line, paper).properties(width=WIDTH, height=HEIGHT, title=title_params(
        alt, title or "Approximate (ALOOA) vs exact (LOOA) leave-one-out, per record",
        "dashed: the paper's 2.4 pp at 2R = 400"))


def matched_utility_chart(sweep: pd.DataFrame, *, title: str | None = None):
    """Draw the accuracy-GPRP frontier of a sweep (:func:`fairpriv_lab.viz.accuracy_gprp_frontier`)."""
    from .. import viz

    f = _frame(sweep, ("method", "epsilon", "accuracy", "gprp"))
    f["eps_label"] = [("ε=∞" if not math.isfinite(e) else f"ε={e:.3g}") for e in f["epsilon"]]
    return viz.accuracy_gprp_frontier(f, title=title)


def grc_chart(frame: pd.DataFrame, *, run: str | None = None, title: str | None = None):
    """GPR against GRC for one run of :func:`grc_gpr` (:func:`fairpriv_lab.viz.grc_vs_gpr`)."""
    from .. import viz

    f = _frame(frame, ("run", "group", "grc", "gpr"))
    run = run if run is not None else f["run"].iloc[0]
    part = f[f["run"] == run][["group", "grc", "gpr", "ci_low", "ci_high"]]
    return viz.grc_vs_gpr(part, title=title)


def soundness_chart(frame: pd.DataFrame, *, title: str | None = None):
    """Empirical ε by group against its bound (:func:`fairpriv_lab.viz.empirical_vs_accounted_epsilon`)."""
    from .. import viz

    f = _frame(frame, ("group", "epsilon_bound", "epsilon_lower", "method"))
    f = f[f["group"] != "overall"]
    # The chart's y = x line is the budget the bound must respect (substitution games: the
    # substitution epsilon at delta, above 2 eps).
    f = f.assign(epsilon=f["epsilon_bound"])[["group", "epsilon", "epsilon_lower", "method"]]
    return viz.empirical_vs_accounted_epsilon(
        f, title=title or "Empirical ε lower bound vs the budget it must respect")


# ---------------------------------------------------------------------------- issue 14: seeds, controls
def seed_ci(values: Sequence[float], *, level: float = 0.95) -> dict[str, float]:
    """Mean over seeds with a Student-t confidence interval (retraining variance).

    Each value is one retrained experiment (a seed); the interval is
    ``mean +- t_{n-1, (1+level)/2} * sd / sqrt(n)``, the uncertainty of the mean over
    retraining (models, splits, batches, noise), which a record bootstrap with the models held
    fixed leaves out. NaN bounds below two seeds.

    Parameters
    ----------
    values : sequence of float
        One value per seed (NaNs are dropped).
    level : float in (0, 1)

    Returns
    -------
    dict
        ``n_seeds, mean, sd, ci_low, ci_high``.

    Examples
    --------
    >>> r = seed_ci([1.0, 2.0, 3.0])
    >>> r["mean"], round(r["ci_low"], 3), round(r["ci_high"], 3)
    (2.0, -0.484, 4.484)
    """
    from scipy import stats

    level = V.number("level", level, 0.0, 1.0, low_open=True, high_open=True)
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"n_seeds": 0, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(x.mean())
    if n < 2:
        return {"n_seeds": 1, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n_seeds": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def seed_table(
    frame: pd.DataFrame,
    *,
    by: Sequence[str],
    value: str = "gprp",
    record_ci: tuple[str, str] = ("gprp_ci_low", "gprp_ci_high"),
    seed: str = "seed",
    floor: str | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Table-2-style rows over seeds: mean, seed-level t CI and the record-bootstrap CI side by side.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per (run, seed), e.g. :func:`fairpriv_lab.experiment.gprp_table` of runs at several seeds.
    by : sequence of str
        Columns that identify a row of the table (method, auditor, estimator, ...).
    value : str
        The measured column (``gprp`` or ``gpr``).
    record_ci : (str, str)
        Columns of the per-run record-bootstrap interval; their means over seeds are reported
        (``record_ci_low_mean, record_ci_high_mean``) and their mean half-width.
    seed : str
        The seed column.
    floor : str, optional
        A zero-leakage floor column (``floor_gprp``, ``floor``) whose mean over seeds is shown
        beside the value (``floor_mean``).
    level : float

    Returns
    -------
    pandas.DataFrame
        One row per ``by`` key: ``n_seeds, mean, sd, seed_ci_low, seed_ci_high`` (Student t
        over seeds), ``record_ci_low_mean, record_ci_high_mean, record_half_width_mean``,
        ``floor_mean`` (with ``floor``), ``values`` (the per-seed values, in seed order, as a string).
    """
    frame = _frame(frame, (*by, value, seed))
    rows = []
    for key, part in frame.groupby(list(by), sort=False):
        part = part.sort_values(seed)
        s = seed_ci(part[value].to_numpy(float), level=level)
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update({"n_seeds": s["n_seeds"], "mean": s["mean"], "sd": s["sd"],
                    "seed_ci_low": s["ci_low"], "seed_ci_high": s["ci_high"]})
        if set(record_ci) <= set(part.columns):
            lo, hi = part[record_ci[0]].to_numpy(float), part[record_ci[1]].to_numpy(float)
            row.update({"record_ci_low_mean": float(np.mean(lo)), "record_ci_high_mean": float(np.mean(hi)),
                        "record_half_width_mean": float(np.mean((hi - lo) / 2))})
        if floor is not None:
            row["floor_mean"] = float(part[floor].astype(float).mean())
        row["values"] = " ".join(f"{v:.3f}" for v in part[value].to_numpy(float))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_seed_difference(
    frame: pd.DataFrame,
    *,
    by: str,
    first: str,
    second: str,
    value: str = "gprp",
    seed: str = "seed",
    level: float = 0.95,
) -> dict[str, Any]:
    """Signed difference ``first - second`` paired by seed, with its seed-level t CI.

    An ordering claim ("first > second") is supported only when the whole interval lies
    above zero; ``verdict`` says which (``"first larger"``, ``"second larger"`` or
    ``"not separated"``). Seeds present for only one of the two are dropped.

    Examples
    --------
    >>> f = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
    ...                   "gprp": [1.0, 1.2, 1.1, 0.5, 0.6, 0.4]})
    >>> d = paired_seed_difference(f, by="method", first="a", second="b")
    >>> round(d["mean"], 3), d["verdict"]
    (0.6, 'first larger')
    """
    frame = _frame(frame, (by, value, seed))
    a = frame[frame[by] == first].groupby(seed)[value].mean()
    b = frame[frame[by] == second].groupby(seed)[value].mean()
    for name, part in (("first", a), ("second", b)):
        if part.empty:
            raise V.fail(name, first if name == "first" else second,
                         f"to be a value of column {by!r}: " + ", ".join(map(str, frame[by].unique())))
    common = a.index.intersection(b.index)
    s = seed_ci((a[common] - b[common]).to_numpy(float), level=level)
    verdict = "not separated"
    if s["ci_low"] > 0:
        verdict = "first larger"
    elif s["ci_high"] < 0:
        verdict = "second larger"
    return {"first": first, "second": second, "n_seeds": s["n_seeds"], "mean": s["mean"],
            "ci_low": s["ci_low"], "ci_high": s["ci_high"], "verdict": verdict}


def correlation_ci(x: Sequence[float], y: Sequence[float], *, level: float = 0.95) -> dict[str, float]:
    """Pearson r with a Fisher-z confidence interval (GRC vs GPR across groups, issue 14).

    ``z = atanh(r)``, ``z +- z_{(1+level)/2} / sqrt(n - 3)``, back-transformed. Needs at least
    4 pairs with spread (NaN otherwise); with two groups (Adult by sex) nothing is estimated.

    Examples
    --------
    >>> r = correlation_ci([1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6])
    >>> round(r["r"], 3), r["n"]
    (0.886, 6)
    """
    from scipy import stats

    level = V.number("level", level, 0.0, 1.0, low_open=True, high_open=True)
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise V.fail("y", f"{b.size} values", f"as many values as x ({a.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    out = {"n": n, "r": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if n < 4 or a.std() == 0 or b.std() == 0:
        return out
    r = float(np.corrcoef(a, b)[0, 1])
    z, half = math.atanh(min(max(r, -0.999999), 0.999999)), float(stats.norm.ppf(0.5 + level / 2)) / math.sqrt(n - 3)
    return {"n": n, "r": r, "ci_low": math.tanh(z - half), "ci_high": math.tanh(z + half)}


def binomial_abs_diff(p: float, n: int) -> float:
    """``E|A1 - A2|`` for two independent proportions ``A_i ~ Binomial(n, p) / n`` (exact).

    The noise-only reference of an agreement between two estimates of the same per-record
    accuracy from ``n`` Bernoulli trials each: what two audits would disagree by if nothing
    but sampling separated them. Computed from the binomial pmf (O(n^2)).

    Examples
    --------
    >>> round(binomial_abs_diff(0.5, 1), 3)
    0.5
    """
    from scipy import stats

    p = V.number("p", p, 0.0, 1.0)
    n = V.integer("n", n, 1)
    k = np.arange(n + 1)
    pmf = stats.binom.pmf(k, n, p)
    return float(pmf @ np.abs(k[:, None] - k[None, :]) @ pmf) / n


def noise_only_gap(
    n_models: int,
    *,
    n_targets: int = 50,
    shift: float = 0.0,
    estimator: Estimator = "in_sample",
    n_sim: int = 200,
    seed: SeedLike = None,
) -> dict[str, float]:
    """Simulate the ALOOA-vs-LOOA disagreement of two independent audits of the SAME risk.

    Two independent half-split games of ``n_models`` models audit the same ``n_targets``
    records, whose member losses are ``Exp(1)`` shifted down by ``shift`` (0: no leakage;
    larger: a leakier model) and non-member losses ``Exp(1)``; each game's per-record attack
    accuracies come from :func:`fairpriv_lab.audit.record_risk` with ``estimator``. The mean
    absolute difference over targets (percentage points of accuracy, as
    :func:`agreement_vs_models` reports it) is repeated ``n_sim`` times.

    Returns
    -------
    dict
        ``n_models, n_targets, shift, estimator, mean`` (expected mean abs. difference, pp),
        ``q025, q975`` (its 2.5 / 97.5 % quantiles over simulations), ``se`` (Monte Carlo
        standard error of ``mean``), ``accuracy`` (mean per-record accuracy, fraction).

    Examples
    --------
    >>> r = noise_only_gap(400, n_targets=50, n_sim=20, seed=0)
    >>> 1.0 < r["mean"] < 5.0
    True
    """
    from ..audit.attacks import record_risk
    from ..games import half_split_game

    n_models = V.integer("n_models", n_models, 2)
    if n_models % 2:
        raise V.fail("n_models", n_models, "to be even (complementary pairs)")
    n_targets = V.integer("n_targets", n_targets, 1)
    shift = V.number("shift", shift, 0.0, math.inf)
    V.choice("estimator", estimator, _ESTIMATORS)
    n_sim = V.integer("n_sim", n_sim, 2)
    rng = as_generator(seed)

    def accuracies() -> np.ndarray:
        mem = np.asarray(half_split_game(n_targets, n_models=n_models, seed=spawn_seed(rng)).membership)
        losses = rng.exponential(1.0, size=mem.shape) - shift * mem
        rr = record_risk(losses, mem, estimator=estimator, seed=spawn_seed(rng))
        return np.asarray(rr.accuracy, dtype=float)

    diffs, accs = np.empty(n_sim), np.empty(n_sim)
    for i in range(n_sim):
        a, b = accuracies(), accuracies()
        diffs[i] = 100.0 * float(np.mean(np.abs(a - b)))
        accs[i] = float(np.mean((a + b) / 2))
    return {"n_models": n_models, "n_targets": n_targets, "shift": float(shift), "estimator": estimator,
            "mean": float(diffs.mean()), "q025": float(np.quantile(diffs, 0.025)),
            "q975": float(np.quantile(diffs, 0.975)), "se": float(diffs.std(ddof=1) / math.sqrt(n_sim)),
            "accuracy": float(accs.mean())}


def matched_accuracy_difference(
    frame: pd.DataFrame,
    *,
    candidate: str,
    reference: str,
    x: str = "accuracy",
    y: str = "gprp",
    method: str = "method",
    seed: str = "seed",
    level: float = 0.95,
) -> dict[str, Any]:
    """Answer "a smaller gap than the reference at the same accuracy?" with a seed-level interval.

    Within each seed, every candidate run (accuracy ``a``, gap ``g``) is compared with the
    reference's gap at accuracy ``a``, linearly interpolated on the reference's runs of that
    seed sorted by accuracy (candidate runs outside the reference's accuracy range are
    skipped). The seed's value is the mean of ``g - g_ref(a)``; the answer is the seed-level t
    interval of those values (negative: the candidate has the smaller gap at equal accuracy).

    Returns
    -------
    dict
        ``candidate, reference, n_seeds, n_pairs`` (matched candidate runs), ``mean, ci_low,
        ci_high`` (pp) and ``verdict`` (``"candidate smaller"``, ``"candidate larger"``,
        ``"not separated"`` or ``"no overlap in accuracy"``).

    Examples
    --------
    >>> f = pd.DataFrame({"method": ["r", "r", "c"] * 2, "seed": [0] * 3 + [1] * 3,
    ...                   "accuracy": [0.7, 0.9, 0.8] * 2, "gprp": [1.0, 3.0, 1.5, 1.0, 3.0, 1.7]})
    >>> d = matched_accuracy_difference(f, candidate="c", reference="r")
    >>> round(d["mean"], 2), d["n_pairs"]
    (-0.4, 2)
    """
    frame = _frame(frame, (method, x, y, seed))
    per_seed, n_pairs = [], 0
    for _, part in frame.groupby(seed, sort=True):
        ref = part[part[method] == reference].sort_values(x)
        cand = part[part[method] == candidate]
        if len(ref) < 2 or cand.empty:
            continue
        rx, ry = ref[x].to_numpy(float), ref[y].to_numpy(float)
        d = [float(g - np.interp(a, rx, ry)) for a, g in zip(cand[x].to_numpy(float), cand[y].to_numpy(float))
             if rx[0] <= a <= rx[-1]]
        if d:
            per_seed.append(float(np.mean(d)))
            n_pairs += len(d)
    s = seed_ci(per_seed, level=level)
    if not per_seed:
        verdict = "no overlap in accuracy"
    elif s["ci_high"] < 0:
        verdict = "candidate smaller"
    elif s["ci_low"] > 0:
        verdict = "candidate larger"
    else:
        verdict = "not separated"
    return {"candidate": candidate, "reference": reference, "n_seeds": s["n_seeds"], "n_pairs": n_pairs,
            "mean": s["mean"], "ci_low": s["ci_low"], "ci_high": s["ci_high"], "verdict": verdict}


def clip_summary(res: Any) -> pd.DataFrame:
    """Per group of one run: mean clip bound and mean fraction clipped over the recorded steps.

    ``clip_bound`` is post-processing of the accounted release (DP-SGD-S / -F; the flat ``C``
    for DP-SGD). ``frac_clipped`` reads the private batches without noise: a **non-private
    diagnostic**, present only when the run had ``train.diagnostics=True`` (NaN otherwise);
    the ``frac_clipped_is`` column says so on every row.
    """
    tele = res.telemetry
    if tele is None or len(tele) == 0:
        return pd.DataFrame(columns=["group", "clip_bound", "frac_clipped", "frac_clipped_is"])
    g = tele.groupby("group", sort=False)[["clip_bound", "frac_clipped"]].mean().reset_index()
    g["group"] = g["group"].astype(str)
    g["frac_clipped_is"] = "non-private diagnostic (train.diagnostics=True)"
    return g


# ---------------------------------------------------------------------------- claims (issue 14)
#: The paper's claims the issue-14 presets test: (claim, preset, table, comparison rows, expected
#: sign of the value when the claim holds). ``comparison`` selects rows of the recorded table.
CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    ("2: DP-SGD lowers the gap (GPRP SGD - DP-SGD > 0)", "seeds-adult-lr", "pairs", "positive"),
    ("3: DP-SGD-S lowers it further (GPRP DP-SGD - DP-SGD-S > 0)", "seeds-adult-lr", "pairs", "positive"),
    ("3: DP-SGD-S's gain is its group clipping (GPRP S - noise- / clip-matched DP-SGD < 0)",
     "controls-adult-lr", "pairs", "negative"),
    ("3: the same where clipping binds (C = 2)", "controls-smallc-adult-lr", "pairs", "negative"),
    ("4: larger GRC, larger GPR (Pearson r across groups > 0)", "groups-digits-synth",
     "seed_grc_correlation", "positive"),
    ("5: DP-SGD-S has the smaller gap at equal accuracy (GPRP S - DP-SGD at DP-SGD's accuracy < 0)",
     "frontier-adult-lr", "matched_accuracy", "negative"),
    ("5: the same over the clipping sweep", "clipsweep-adult-lr", "matched_accuracy", "negative"),
    ("6: PA-ALOOA agrees with exact PA-LOOA (gap within the noise-only expectation at 2R = 400)",
     "aloo-loo-leaky", "loo_agreement", "within noise"),
)


def claim_verdict(ci_low: float, ci_high: float, *, expected: str) -> str:
    """Verdict on a claim from the interval of its signed statistic.

    ``expected`` is the sign the statistic has when the claim holds ("positive" or
    "negative"). "confirmed" when the whole interval has that sign, "refuted" when the whole
    interval has the other one, "not detectable" when it contains 0 (at this scale: more seeds
    or models could still separate it), "not measured" when an end is NaN.

    Examples
    --------
    >>> claim_verdict(0.1, 0.4, expected="positive"), claim_verdict(-0.2, 0.3, expected="positive")
    ('confirmed', 'not detectable')
    >>> claim_verdict(0.1, 0.4, expected="negative")
    'refuted'
    """
    V.choice("expected", expected, ("positive", "negative"))
    lo, hi = float(ci_low), float(ci_high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measured"
    if lo > hi:
        raise V.fail("ci_low", lo, f"to be at most ci_high ({hi})")
    if lo > 0:
        return "confirmed" if expected == "positive" else "refuted"
    if hi < 0:
        return "confirmed" if expected == "negative" else "refuted"
    return "not detectable"


def claims_evidence(results_dir: str | Path, *, size: str = "") -> pd.DataFrame:
    """Judge each of the paper's claims from the recorded issue-14 runs.

    Reads ``<results_dir>/<preset>[-<size>]/<preset>_<table>.csv`` as written by
    ``benchmarks/paper_scale.py`` (``size`` "" for the CPU presets, "small", "cuda", or a
    folder suffix such as "64models"); presets not recorded there are left out. One row per
    comparison: the signed statistic's mean over seeds with its seed-level 95 % t interval
    (retraining variance; ALOOA vs LOOA: the measured gap at the largest 2R and the noise-only
    expectation's 2.5-97.5 % range), the verdict of :func:`claim_verdict` ("within noise" /
    "beyond noise" for ALOOA vs LOOA), and the file it comes from.

    Returns
    -------
    pandas.DataFrame
        ``claim, preset, comparison, estimator, n_seeds, mean, ci_low, ci_high, verdict, file``.
    """
    root = Path(results_dir)
    rows: list[dict[str, Any]] = []
    for claim, preset, table, expected in CLAIMS:
        folder = root / (preset + (f"-{size}" if size else ""))
        path = folder / f"{preset}_{table}.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path)
        rel = f"{folder.name}/{path.name}"
        if table == "pairs":
            if claim.startswith("2"):
                part = df[(df["first"] == "SGD") & (df["second"] == "DP-SGD")]
            elif preset == "seeds-adult-lr":
                part = df[(df["first"] == "DP-SGD") & df["second"].str.startswith("DP-SGD-S")]
            else:
                part = df[df["second"].str.contains("matched")]
            for r in part.itertuples():
                rows.append({"claim": claim, "preset": preset, "comparison": f"{r.first} - {r.second}",
                             "estimator": getattr(r, "estimator", "cross_fit"), "n_seeds": int(r.n_seeds),
                             "mean": r.mean, "ci_low": r.ci_low, "ci_high": r.ci_high,
                             "verdict": claim_verdict(r.ci_low, r.ci_high, expected=expected), "file": rel})
        elif table == "seed_grc_correlation":
            for r in df.itertuples():
                rows.append({"claim": claim, "preset": preset, "comparison": f"r(GRC, GPR): {r.setting}, {r.variant}",
                             "estimator": "cross_fit", "n_seeds": int(r.n_seeds), "mean": r.mean,
                             "ci_low": r.seed_ci_low, "ci_high": r.seed_ci_high,
                             "verdict": claim_verdict(r.seed_ci_low, r.seed_ci_high, expected=expected),
                             "file": rel})
        elif table == "matched_accuracy":
            for r in df.itertuples():
                rows.append({"claim": claim, "preset": preset, "comparison": f"{r.candidate} - {r.reference}",
                             "estimator": "cross_fit", "n_seeds": int(r.n_seeds), "mean": r.mean,
                             "ci_low": r.ci_low, "ci_high": r.ci_high,
                             "verdict": claim_verdict(r.ci_low, r.ci_high, expected=expected), "file": rel})
        else:  # loo_agreement: the measured gap at the largest 2R against the noise-only range
            for est, part in df.groupby("estimator", sort=False):
                r = part.sort_values("n_models").iloc[-1]
                within = r["mean_abs_diff"] <= r["noise_only_matched_q975"]
                rows.append({"claim": claim, "preset": preset,
                             "comparison": f"mean abs. diff. of attack accuracy ALOOA vs LOOA at 2R = {int(r['n_models'])} "
                                           f"({int(r['n_targets'])} targets) vs noise only",
                             "estimator": est, "n_seeds": 1, "mean": r["mean_abs_diff"],
                             "ci_low": r["noise_only_matched_q025"], "ci_high": r["noise_only_matched_q975"],
                             "verdict": "within noise" if within else "beyond noise", "file": rel})
    cols = ["claim", "preset", "comparison", "estimator", "n_seeds", "mean", "ci_low", "ci_high", "verdict", "file"]
    return pd.DataFrame(rows, columns=cols)


def clipsweep_chart(results_dir: str | Path, *, size: str = "", controls: bool = True):
    """Chart the recorded clipping sweep (:func:`fairpriv_lab.viz.clipping_sweep`).

    Reads ``clipsweep-adult-lr[-<size>]/`` (GPRP, GPR per group and the fraction clipped per
    group over C, seed means with seed-level t CIs, cross-fit PA-ALOOA) and, with ``controls``,
    the noise- and clip-matched DP-SGD of ``controls-smallc-adult-lr[-<size>]/`` where it was
    recorded. Returns None when the sweep has not been recorded at that size.
    """
    from .. import viz

    root, suffix = Path(results_dir), (f"-{size}" if size else "")
    folder = root / f"clipsweep-adult-lr{suffix}"
    files = [folder / f"clipsweep-adult-lr_{t}.csv" for t in ("seed_gprp", "seed_gpr", "seed_frac_clipped")]
    if not all(f.is_file() for f in files):
        return None
    gprp, gpr, clipped = (pd.read_csv(f) for f in files)
    if "estimator" in gprp:
        gprp = gprp[gprp["estimator"] == "cross_fit"]
    ctrl = None
    cfile = root / f"controls-smallc-adult-lr{suffix}" / "controls-smallc-adult-lr_seed_gprp.csv"
    if controls and cfile.is_file():
        c = pd.read_csv(cfile)
        ctrl = c[c["variant"].str.contains("matched")]
        ctrl = ctrl if len(ctrl) else None
    return viz.clipping_sweep(gprp, gpr, clipped, controls=ctrl)
