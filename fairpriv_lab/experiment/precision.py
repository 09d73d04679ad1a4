"""How precise will an audit be, and what did a change do: the planner and signed changes.

:func:`precision` answers *before* training: with this many model pairs and this many audited
records per group, how wide will each group's GPR interval be, and how large a difference
between two groups can the audit detect? :func:`group_change` answers *after* two runs: by
how much did each group's GPR move, with a confidence interval on the signed difference
(never a max - min). Both are used by the interactive panel (notebook 00) and taught in
notebook 03 (see ``docs/design.md``, section 4.5).

Variance model
--------------
GPR(g) is the mean of the n_g per-record IPRs of group g, and the panel's interval is the
percentile bootstrap over records, so its half-width is ``z * sd_g / sqrt(n_g)`` with
``sd_g`` the spread of the IPRs within the group. That spread has two parts:

``Var(IPR) = v_noise(K) + s_g^2``

- ``v_noise(K)``: the estimator's own noise with K model pairs per record, the variance of
  the IPR when nothing leaks. It depends only on K and the estimator (the estimator uses
  ranks), so it is computed once by simulation of the exact estimator on exchangeable
  scores and memoised (about ``1 / (2K)`` for ``cross_fit``).
- ``s_g^2``: how much the records' true risks differ within the group. It is unknown before
  any run: without a pilot the planner assumes 0 and its half-widths are lower bounds
  (``Precision.lower_bound``). A ``pilot`` result (a smaller run of the same data and
  training) measures it as the covariance of the records' IPRs on two disjoint halves of its
  model pairs (independent noises cancel); the rest of the pilot's variance is the group's
  estimation noise, scaled from the pilot's K to the planned K like ``v_noise``. (The null
  noise alone overstates the noise of records that do leak, whose accuracy is nearer 1.)

The minimum detectable difference between two groups a, b at level ``1 - ci`` (two-sided)
with power ``power`` is ``(z_{1-(1-ci)/2} + z_power) * sqrt(se_a^2 + se_b^2)``; the planner
reports it for the least precise pair of groups.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core import validate as V

__all__ = ["Precision", "precision", "noise_variance", "group_change"]


@functools.lru_cache(maxsize=64)
def noise_variance(n_pairs: int, estimator: str = "cross_fit") -> float:
    """Variance of one record's IPR (fraction²) when nothing leaks, with ``n_pairs`` pairs.

    Simulated with the audit's own estimator (:func:`fairpriv_lab.audit.record_risk`) on
    4,000 records whose scores are exchangeable across the models; seeded, memoised.

    Examples
    --------
    >>> v = noise_variance(64)
    >>> 0.5 < v * 2 * 64 < 2.0       # about 1 / (2K) for cross_fit
    True
    """
    from ..audit.attacks import record_risk
    from ..games import half_split_game

    k = V.integer("n_pairs", n_pairs, 1)
    V.choice("estimator", estimator, ("cross_fit", "in_sample"))
    n_sim = 4000
    game = half_split_game(n_sim, n_models=2 * k, seed=12345)
    losses = np.random.default_rng(54321).standard_normal(game.membership.shape).astype(np.float32)
    rr = record_risk(losses, game.membership, estimator=estimator, seed=0)
    # IPR and its floor are both draws of the null here: pool them for a steadier variance.
    return float(np.var(np.concatenate([rr.ipr, rr.floor]), ddof=1))


@dataclass(frozen=True)
class Precision:
    """What an audit of a configuration can resolve (percentage points).

    Attributes
    ----------
    by_group : pandas.DataFrame
        One row per group: ``group``, ``n`` (audited records), ``sd`` (predicted spread of
        the IPRs, pp), ``se`` (standard error of GPR, pp), ``half_width`` (predicted half-width
        of the GPR interval, pp) and ``heterogeneity`` (``s_g``, pp; 0 without a pilot).
    n_pairs : int
        Model pairs per audited record (K).
    min_detectable_difference : float
        Smallest GPR difference between two groups detected with probability ``power``
        (the least precise pair of groups; NaN with one group).
    min_detectable_change : float
        Smallest change of one group's GPR between two independent runs of these sizes
        detected with probability ``power`` (the least precise group); a paired comparison
        on the same records (:func:`group_change`) does at least as well.
    lower_bound : bool
        True when no pilot informed the heterogeneity: the widths are then lower bounds.
    ci, power : float
    """

    by_group: pd.DataFrame
    n_pairs: int
    min_detectable_difference: float
    min_detectable_change: float
    lower_bound: bool
    ci: float
    power: float

    @property
    def max_half_width(self) -> float:
        """The widest predicted GPR half-width over the groups (pp)."""
        return float(self.by_group["half_width"].max())

    def text(self) -> str:
        """One plain sentence for the panel, e.g. "... you can detect differences ≥ 0.8 pp"."""
        ge = "at least " if self.lower_bound else ""
        parts = [f"At these sizes ({self.n_pairs} model pairs, "
                 f"{int(self.by_group['n'].min()):,}–{int(self.by_group['n'].max()):,} audited records per group) "
                 f"each group's GPR has a {100 * self.ci:g}% CI of {ge}±{self.max_half_width:.2f} pp"]
        if math.isfinite(self.min_detectable_difference):
            parts.append(f"you can detect differences between groups ≥ {self.min_detectable_difference:.2f} pp")
        text = "; ".join(parts) + "."
        if self.lower_bound:
            text += " (Noise of the estimator only; after a first run the planner also counts how much records differ.)"
        return text


def _z(p: float) -> float:
    """Return the standard normal quantile (``scipy.stats.norm.ppf`` is ``ndtri``; scipy.stats is not imported)."""
    from scipy import special

    return float(special.ndtri(p))


def _audited_counts(config: Any, train: Any) -> tuple[np.ndarray, int]:
    """Audited records per group id and model pairs per record, from the game of config."""
    g = config.game
    sizes = np.bincount(train.g, minlength=train.n_groups)
    if g.kind == "half":
        return sizes, g.n_models // 2
    if g.kind == "aloo":
        from ..games import aloo_game

        # the game's own stratified draw (two models suffice to know who is audited)
        audit = aloo_game(train.g, n_models=2, m=int(g.m), seed=0).audit_idx
        return np.bincount(train.g[audit], minlength=train.n_groups), g.n_models // 2
    targets = np.asarray(g.targets, dtype=np.int64)
    counts = np.bincount(train.g[targets], minlength=train.n_groups)
    return counts, g.n_models // (2 * len(targets))


def precision(
    config: Any,
    *,
    pilot: Any = None,
    auditor: str = "PA-ALOOA",
    power: float = 0.8,
) -> Precision:
    """Predict the GPR interval half-width of every group, and the smallest detectable differences.

    ``half_width_g = z * sqrt(Var_g(IPR) / n_g)`` in percentage points, ``Var_g = v_noise(K) + s_g^2``, with
    K the model pairs per audited record, n_g the group's audited records and ``s_g^2``
    the heterogeneity of true risks (0 without a pilot, see the module notes). Loads the
    data (memoised) to count records per group; trains nothing.

    Parameters
    ----------
    config : ExperimentConfig or dict
        The experiment to plan (its game, data and ``audit.ci`` and ``audit.estimator``).
    pilot : AuditResult, optional
        A finished run of the same data (any number of models): its IPR spread per group
        estimates the heterogeneity. Groups are matched by name.
    auditor : str
        The pilot's per-record auditor whose IPRs inform the heterogeneity.
    power : float
        Probability of detecting a difference of the reported size, in (0, 1).

    Returns
    -------
    Precision

    Examples
    --------
    >>> from fairpriv_lab.experiment import ExperimentConfig
    >>> cfg = ExperimentConfig(data={"name": "synthetic"}, game={"kind": "half", "n_models": 256, "m": None})
    >>> p = precision(cfg)
    >>> p.n_pairs, p.lower_bound, round(p.max_half_width, 1)
    (128, True, 0.6)
    """
    from .config import ExperimentConfig
    from .runner import load_experiment_data

    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
    V.number("power", power, 0.0, 1.0, low_open=True, high_open=True)
    _, train, _ = load_experiment_data(cfg.data)
    counts, k = _audited_counts(cfg, train)
    estimator = cfg.audit.estimator
    names = list(train.group_names)
    var = np.full(len(names), noise_variance(int(k), estimator))
    het = np.zeros(len(names))
    if pilot is not None:
        var, het = _pilot_variances(pilot, names, auditor, estimator, int(k))
    z_ci = _z(1 - (1 - cfg.audit.ci) / 2)
    z_pow = _z(power)
    present = counts > 0
    sd = np.sqrt(var)
    se = np.where(present, sd / np.sqrt(np.maximum(counts, 1)), np.nan)
    frame = pd.DataFrame({
        "group": names, "n": counts.astype(np.int64), "sd": 100 * sd, "se": 100 * se,
        "half_width": 100 * z_ci * se, "heterogeneity": 100 * np.sqrt(het),
    })[present].reset_index(drop=True)
    ses = np.sort(frame["se"].to_numpy())[::-1]
    mdd = (z_ci + z_pow) * math.hypot(ses[0], ses[1]) if ses.size >= 2 else math.nan
    mdc = (z_ci + z_pow) * math.sqrt(2) * ses[0] if ses.size else math.nan
    return Precision(frame, int(k), float(mdd), float(mdc), pilot is None, float(cfg.audit.ci), float(power))


def _pilot_variances(pilot: Any, names: Sequence[str], auditor: str, estimator: str,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ``Var(IPR)`` at ``k`` pairs and ``s_g^2`` per group name (fraction²), from a pilot.

    ``s_g^2`` is the covariance, over the group's records, of the IPRs measured on two
    disjoint halves of the pilot's model pairs: their estimation noises are independent, so
    only the spread of the records' true risks survives. The rest of the pilot's variance is
    the group's own estimation noise, scaled to ``k`` pairs like the null noise.
    """
    from ..audit.attacks import record_risk
    from ..audit.kernels import CHUNK_ELEMENTS, map_threads

    rrs = getattr(pilot, "record_risk", {})
    if auditor not in rrs:
        raise V.fail("auditor", auditor, "to be one of the pilot's per-record auditors " + ", ".join(rrs))
    rr = rrs[auditor]
    k0 = pilot.n_models // 2
    pilot_names = list(pilot.group_names)
    halves = None
    if k0 >= 4:
        first = np.repeat(np.arange(k0) < k0 // 2, 2)

        def half(job: tuple[int, np.ndarray]) -> np.ndarray:
            seed, rows = job
            return record_risk(pilot.losses[rows], pilot.game.membership[rows], records=rr.records,
                               estimator=estimator, signal=rr.signal, seed=seed).ipr

        jobs = list(enumerate((first, ~first)))
        # A classroom pilot's half is one block of the audit kernels (kernels.CHUNK_ELEMENTS), so
        # its audit runs on one thread: the two halves run on two (the same numbers; 1.6-1.9x
        # faster, most of a cached panel open's planning). A larger one's blocks use the threads.
        one_block = pilot.losses.size <= 2 * CHUNK_ELEMENTS
        halves = list(map_threads(half, jobs) if one_block else map(half, jobs))
    scale = noise_variance(k, estimator) / noise_variance(k0, estimator)
    var = np.full(len(names), noise_variance(k, estimator))
    s2 = np.zeros(len(names))
    for i, name in enumerate(names):
        sel = rr.groups == pilot_names.index(name) if name in pilot_names else np.zeros(0, bool)
        if sel.sum() < 3:
            continue
        v0 = float(np.var(rr.ipr[sel], ddof=1))
        if halves is not None:
            s2[i] = min(v0, max(0.0, float(np.cov(halves[0][sel], halves[1][sel])[0, 1])))
        var[i] = s2[i] + (v0 - s2[i]) * scale
    return var, s2


def group_change(
    before: Any,
    after: Any,
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: Any = 0,
) -> pd.DataFrame:
    """Signed change of each group's GPR from ``before`` to ``after``, with a bootstrap CI (pp).

    ``change_g = GPR_after(g) - GPR_before(g)``. When both audits scored the same records of a
    group (same data and game, e.g. a change of C or of the method), the interval resamples
    those records once and differences their IPRs (a paired bootstrap: what the two runs
    share cancels out); otherwise the two runs' records are resampled independently.

    Parameters
    ----------
    before, after : GroupRisk
        The two audits (``result.group_risk[auditor]``); groups are matched by name.
    n_boot : int
        Bootstrap resamples (>= 1).
    ci : float
        Confidence level in (0, 1).
    seed : int, numpy Generator or None

    Returns
    -------
    pandas.DataFrame
        One row per group present in both: ``group``, ``before``, ``after``, ``change``,
        ``ci_low``, ``ci_high``, ``paired`` (bool) and ``excludes_zero`` (bool).

    Examples
    --------
    >>> import numpy as np
    >>> from fairpriv_lab.audit.attacks import RecordRisk
    >>> from fairpriv_lab.audit.risk import GroupRisk
    >>> def risk(ipr):
    ...     return GroupRisk(RecordRisk(np.arange(200), np.repeat([0, 1], 100), (ipr + 1) / 2, ipr,
    ...                                 np.zeros(200), "PA-ALOOA", "cross_fit"), ["a", "b"], n_boot=0)
    >>> base = np.random.default_rng(0).normal(0.05, 0.05, 200)
    >>> df = group_change(risk(base), risk(base - np.r_[np.zeros(100), np.full(100, 0.02)]), seed=0)
    >>> df[["group", "change", "excludes_zero"]].round(2).values.tolist()
    [['a', 0.0, False], ['b', -2.0, True]]
    """
    V.integer("n_boot", n_boot, 1)
    V.number("ci", ci, 0.0, 1.0, low_open=True, high_open=True)
    from .._core.rng import as_generator

    rng = as_generator(seed)
    a_q = (1 - ci) / 2
    rows = []
    rb, ra = before.record_risk, after.record_risk
    for name in after.group_names:
        if name not in before.group_names:
            continue
        gb, ga = list(before.group_names).index(name), list(after.group_names).index(name)
        sb, sa = rb.groups == gb, ra.groups == ga
        if not sb.any() or not sa.any():
            continue
        rec_b, ipr_b = rb.records[sb], 100.0 * rb.ipr[sb]
        rec_a, ipr_a = ra.records[sa], 100.0 * ra.ipr[sa]
        ob, oa = np.argsort(rec_b), np.argsort(rec_a)
        paired = rec_b.size == rec_a.size and np.array_equal(rec_b[ob], rec_a[oa])
        if paired:
            d = ipr_a[oa] - ipr_b[ob]
            idx = rng.integers(0, d.size, size=(n_boot, d.size))
            reps = d[idx].mean(axis=1)
            change = float(d.mean())
        else:
            reps = (ipr_a[rng.integers(0, ipr_a.size, size=(n_boot, ipr_a.size))].mean(axis=1)
                    - ipr_b[rng.integers(0, ipr_b.size, size=(n_boot, ipr_b.size))].mean(axis=1))
            change = float(ipr_a.mean() - ipr_b.mean())
        lo, hi = (float(x) for x in np.quantile(reps, [a_q, 1 - a_q]))
        rows.append({"group": name, "before": float(ipr_b.mean()), "after": float(ipr_a.mean()),
                     "change": change, "ci_low": lo, "ci_high": hi, "paired": bool(paired),
                     "excludes_zero": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows, columns=["group", "before", "after", "change", "ci_low", "ci_high",
                                       "paired", "excludes_zero"])
