"""Attack charts: per-group ROC on log-log axes, empirical vs accounted epsilon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._core.validate import fail, float_array, integer, number
from ._core import (
    HEIGHT,
    altair,
    domain,
    group_color,
    labels,
    numeric,
    require_frame,
    titled,
)

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt


def _thin_roc(fpr: np.ndarray, tpr: np.ndarray, max_points: int, fpr_min: float) -> np.ndarray:
    """Return indices of at most ~max_points ROC points spread evenly in log10(FPR), keeping both ends."""
    if fpr.size <= max_points:
        return np.arange(fpr.size)
    grid = np.geomspace(fpr_min, 1.0, max_points - 2)
    # The ROC is a staircase sorted by FPR: the last point with fpr <= g has the best TPR there.
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = idx[idx >= 0]
    return np.unique(np.concatenate([[0, fpr.size - 1], idx]))


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Return the trapezoid-rule area (np.trapezoid exists only from numpy 2)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _positive_min(values: np.ndarray) -> float:
    """Return the smallest positive value (1e-6 if none)."""
    pos = values[values > 0]
    return float(pos.min()) if pos.size else 1e-6


def roc_curves(
    scores: Any,
    labels_: Any,
    groups: Any,
    *,
    group_names: Sequence[str] | None = None,
    max_points: int = 200,
) -> pd.DataFrame:
    """Per-group ROC curves of a membership attack, thinned for plotting.

    **Higher score means member** (pass ``-loss``, or the logit-scaled confidence). For each
    group g, ``sklearn.metrics.roc_curve(labels[g], scores[g])``; then at most ``max_points``
    points spread evenly in log FPR (the staircase's best TPR at each FPR is kept).

    Parameters
    ----------
    scores : array_like, shape (n,)
        Attack scores, e.g. ``-losses[:, records].ravel()``.
    labels_ : array_like of bool, shape (n,)
        True = member (e.g. ``membership[:, records].ravel()``).
    groups : array_like, shape (n,)
        Group id or name of each score.
    group_names : sequence of str, optional
        Names of integer group ids.
    max_points : int
        Points kept per group.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, fpr, tpr, auc`` (fractions).
    """
    from sklearn.metrics import roc_curve

    max_points = integer("max_points", max_points, 3)
    s = float_array("scores", np.ravel(scores), 1)
    y = np.ravel(np.asarray(labels_))
    if y.dtype != np.bool_:
        raise fail("labels", f"array of dtype {y.dtype}", "to be bool (True = member)")
    g = labels(np.ravel(np.asarray(groups)), group_names)
    if not (s.size == y.size == len(g)):
        raise fail(
            "labels",
            f"arrays of lengths {s.size}, {y.size}, {len(g)}",
            "scores, labels and groups to have equal lengths",
        )
    parts = []
    gv = g.to_numpy()
    for name in domain(gv, None):
        mask = gv == name
        yk, sk = y[mask], s[mask]
        if yk.all() or not yk.any():
            raise fail(
                "labels",
                f"one class only in group {name!r}",
                "to hold members and non-members in every group",
            )
        fpr, tpr, _ = roc_curve(yk, sk)
        auc = float(_trapezoid(tpr, fpr))
        keep = _thin_roc(fpr, tpr, max_points, _positive_min(fpr))
        parts.append(pd.DataFrame({"group": name, "fpr": fpr[keep], "tpr": tpr[keep], "auc": auc}))
    return pd.concat(parts, ignore_index=True)


def roc_by_group(
    curves: Any,
    labels_: Any = None,
    groups: Any = None,
    *,
    group_names: Sequence[str] | None = None,
    max_points: int = 200,
    fpr_min: float | None = None,
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Per-group ROC of the membership attack on log-log axes, with the chance line.

    Low-FPR behaviour decides membership-inference risk (Carlini et al. 2022), hence log axes.
    Taught in notebook 1.

    Parameters
    ----------
    curves : pandas.DataFrame, mapping, or array_like
        A DataFrame with columns ``group, fpr, tpr`` (optional ``auc``); or a mapping group ->
        ``(fpr, tpr)`` arrays; or, when ``labels_`` and ``groups`` are given, attack **scores
        where higher means member** (then :func:`roc_curves` computes the curves).
    labels_, groups : array_like, optional
        Membership labels (bool) and groups of the scores.
    group_names : sequence of str, optional
        Names of integer group ids.
    max_points : int
        Points kept per group (log-spaced in FPR).
    fpr_min : float, optional
        Left (and bottom) end of the log axes; points with FPR or TPR below it (e.g. 0) are
        not drawn. Default: the power of ten at or below the smallest positive FPR or TPR
        (at least 1e-6), i.e. the resolution the number of scores allows.
    group_order : sequence of str, optional
        Group order for colours (see :func:`gpr_chart`).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Lines x = FPR, y = TPR (log scales) coloured by group; AUC per group in the subtitle.
    """
    alt = altair()
    if fpr_min is not None:
        fpr_min = number("fpr_min", fpr_min, 0.0, 1.0, low_open=True, high_open=True)
    if labels_ is not None or groups is not None:
        if labels_ is None or groups is None:
            raise fail("groups", groups, "to be given together with labels_ (scores mode)")
        frame = roc_curves(curves, labels_, groups, group_names=group_names, max_points=max_points)
    elif isinstance(curves, Mapping):
        parts = []
        for name, pair in curves.items():
            fpr, tpr = (np.asarray(a, dtype=np.float64) for a in pair)
            if fpr.shape != tpr.shape or fpr.ndim != 1:
                raise fail(
                    f"curves[{name!r}]",
                    f"arrays of shapes {fpr.shape}, {tpr.shape}",
                    "to be (fpr, tpr) 1-D arrays of equal length",
                )
            order = np.argsort(fpr, kind="stable")
            auc = float(_trapezoid(tpr[order], fpr[order]))
            keep = _thin_roc(fpr[order], tpr[order], max_points, _positive_min(fpr))
            parts.append(
                pd.DataFrame(
                    {
                        "group": str(name),
                        "fpr": fpr[order][keep],
                        "tpr": tpr[order][keep],
                        "auc": auc,
                    }
                )
            )
        if not parts:
            raise fail("curves", "an empty mapping", "to map groups to (fpr, tpr)")
        frame = pd.concat(parts, ignore_index=True)
    else:
        frame = require_frame(curves, "curves", ("group", "fpr", "tpr"), ("auc",))
        frame = numeric(frame, "curves", ("fpr", "tpr", "auc"))
        frame["group"] = labels(frame["group"], group_names)
        thinned = []
        for _, part in frame.groupby("group", sort=False, observed=True):
            part = part.sort_values(["fpr", "tpr"], kind="stable")
            fpr = part["fpr"].to_numpy()
            keep = _thin_roc(fpr, part["tpr"].to_numpy(), max_points, _positive_min(fpr))
            thinned.append(part.iloc[keep])
        frame = pd.concat(thinned, ignore_index=True)
    if fpr_min is None:
        low = min(_positive_min(frame["fpr"].to_numpy()), _positive_min(frame["tpr"].to_numpy()))
        fpr_min = max(1e-6, 10.0 ** np.floor(np.log10(low)))
    gdom = domain(frame["group"], group_order)
    auc_text = None
    if "auc" in frame:
        aucs = frame.groupby("group", observed=True)["auc"].first()
        auc_text = "AUC: " + ", ".join(f"{g} {aucs[g]:.3f}" for g in gdom if g in aucs)
    shown = frame[(frame["fpr"] >= fpr_min) & (frame["tpr"] >= fpr_min)]
    scale = alt.Scale(type="log", domain=[fpr_min, 1.0], clamp=True)
    tip = [
        alt.Tooltip("group:N", title="Group"),
        alt.Tooltip("fpr:Q", title="FPR", format=".2e"),
        alt.Tooltip("tpr:Q", title="TPR", format=".3f"),
    ]
    lines = (
        alt.Chart(shown)
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            x=alt.X("fpr:Q", title="False positive rate (log scale)", scale=scale),
            y=alt.Y("tpr:Q", title="True positive rate (log scale)", scale=scale),
            color=group_color(alt, gdom),
            order=alt.Order("fpr:Q"),
            tooltip=tip,
        )
    )
    chance = pd.DataFrame({"fpr": [fpr_min, 1.0], "tpr": [fpr_min, 1.0]})
    diag = (
        alt.Chart(chance).mark_line(color="#777777", strokeDash=[4, 3]).encode(x=alt.X("fpr:Q"), y=alt.Y("tpr:Q"))
    )
    text = title or "Membership attack ROC by group (log-log)"
    sub = [s for s in (auc_text, "dashed: chance (TPR = FPR)") if s]
    return titled([lines, diag], alt, text, sub, width=HEIGHT + 60, height=HEIGHT + 60)


def empirical_vs_accounted_epsilon(
    data: Any,
    *,
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Per-group empirical epsilon lower bounds against the accounted epsilon, with y = x.

    A valid lower bound must lie below the line y = x for every DP run (docs/design.md 4.7);
    runs with accounted epsilon = inf (SGD) have no line to respect and are left out (counted
    in the subtitle). Taught in notebook 4.

    Parameters
    ----------
    data : pandas.DataFrame
        Columns ``group, epsilon, epsilon_lower`` (accounted epsilon and the group's empirical
        lower bound), optional ``method``; see :func:`empirical_frame`.
    group_order : sequence of str, optional
        Group order for colours (see :func:`gpr_chart`).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Points x = accounted epsilon, y = empirical lower bound, coloured by group, shaped by
        method; dashed y = x.
    """
    alt = altair()
    frame = require_frame(data, "data", ("group", "epsilon", "epsilon_lower"), ("method",))
    frame = numeric(frame, "data", ("epsilon", "epsilon_lower"))
    frame["group"] = labels(frame["group"])
    n_inf = int(np.isinf(frame["epsilon"]).sum())
    frame = frame[np.isfinite(frame["epsilon"])]
    if len(frame) == 0:
        raise fail(
            "data", "only runs with epsilon=inf", "to hold at least one DP run (finite epsilon)"
        )
    hi = float(max(frame["epsilon"].max(), frame["epsilon_lower"].max())) * 1.05
    enc: dict[str, Any] = {}
    tip = [
        alt.Tooltip("group:N", title="Group"),
        alt.Tooltip("epsilon:Q", title="Accounted ε", format=".2f"),
        alt.Tooltip("epsilon_lower:Q", title="Empirical ε lower bound", format=".3f"),
    ]
    if "method" in frame and frame["method"].nunique() > 1:
        enc["shape"] = alt.Shape("method:N", title="Method")
        tip.insert(1, alt.Tooltip("method:N", title="Method"))
    points = (
        alt.Chart(frame)
        .mark_point(filled=True, size=80, opacity=0.85)
        .encode(
            x=alt.X(
                "epsilon:Q", title="Accounted ε (upper bound)", scale=alt.Scale(domain=[0, hi])
            ),
            y=alt.Y(
                "epsilon_lower:Q",
                title="Empirical ε (lower bound)",
                scale=alt.Scale(domain=[0, hi]),
            ),
            color=group_color(alt, domain(frame["group"], group_order)),
            tooltip=tip,
            **enc,
        )
    )
    line = pd.DataFrame({"epsilon": [0.0, hi], "epsilon_lower": [0.0, hi]})
    diag = (
        alt.Chart(line)
        .mark_line(color="#777777", strokeDash=[4, 3])
        .encode(x=alt.X("epsilon:Q"), y=alt.Y("epsilon_lower:Q"))
    )
    worst = float((frame["epsilon_lower"] / frame["epsilon"]).max())
    sub = [
        f"dashed: y = x (a valid bound stays below); largest ratio lower/accounted = {worst:.2f}"
    ]
    if n_inf:
        sub.append(f"{n_inf} row(s) with ε = ∞ (SGD) not shown")
    text = title or "Empirical vs accounted ε by group"
    return titled([points, diag], alt, text, sub)
