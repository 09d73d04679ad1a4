"""Scatter charts: PA-LOOA vs PA-ALOOA per record, GRC vs GPR per group."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._core.validate import integer
from ._adapters import grc_frame
from ._core import (
    HEIGHT,
    MAX_ROWS,
    WIDTH,
    altair,
    domain,
    group_color,
    labels,
    layered,
    numeric,
    require_frame,
    title_params,
    titled,
)

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when fewer than 3 points or a constant input."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import pearsonr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pearsonr(x, y).statistic)


def _identity_line(alt: Any, lo: float, hi: float, x: str, y: str) -> Any:
    line = pd.DataFrame({x: [lo, hi], y: [lo, hi]})
    return (
        alt.Chart(line).mark_line(color="#777777", strokeDash=[4, 3]).encode(x=f"{x}:Q", y=f"{y}:Q")
    )


def loo_vs_aloo(
    pairs: Any,
    *,
    max_points: int = MAX_ROWS,
    bins: int = 50,
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Per-record IPR of exact PA-LOOA against approximate PA-ALOOA, with the line y = x.

    Agreement is summarised as the mean absolute difference
    MAD = mean_x |IPR_LOOA(x) - IPR_ALOOA(x)| (percentage points) and Pearson r, in the title.
    Taught in notebook 2.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One row per record with columns ``ipr_loo, ipr_aloo`` as **fractions** in [-1, 1]
        (optional ``group``, ``record``); see :func:`paired_records` to build it from two
        RecordRisk-like results.
    max_points : int
        Above this many records the points are replaced by a 2-D histogram (``bins`` x ``bins``
        cells coloured by count) computed in pandas; the statistics still use every record.
    bins : int
        Cells per axis of the 2-D histogram.
    group_order : sequence of str, optional
        Group order for colours (see :func:`gpr_chart`).
    title : str, optional
        Chart title (default states MAD and r).

    Returns
    -------
    altair.LayerChart
        x = PA-ALOOA IPR (pp), y = PA-LOOA IPR (pp), dashed y = x.
    """
    alt = altair()
    max_points = integer("max_points", max_points, 1)
    bins = integer("bins", bins, 2, 500)
    frame = require_frame(pairs, "pairs", ("ipr_loo", "ipr_aloo"), ("group", "record"))
    frame = numeric(frame, "pairs", ("ipr_loo", "ipr_aloo"))
    frame = frame[np.isfinite(frame["ipr_loo"]) & np.isfinite(frame["ipr_aloo"])]
    frame["loo_pp"] = 100.0 * frame["ipr_loo"]
    frame["aloo_pp"] = 100.0 * frame["ipr_aloo"]
    n = len(frame)
    mad = float(np.mean(np.abs(frame["loo_pp"] - frame["aloo_pp"]))) if n else float("nan")
    r = pearson(frame["aloo_pp"].to_numpy(), frame["loo_pp"].to_numpy())
    r_text = "r undefined" if np.isnan(r) else f"Pearson r = {r:.2f}"
    lo = float(min(frame["loo_pp"].min(), frame["aloo_pp"].min())) if n else -1.0
    hi = float(max(frame["loo_pp"].max(), frame["aloo_pp"].max())) if n else 1.0
    x_title, y_title = "PA-ALOOA IPR (percentage points)", "PA-LOOA IPR (percentage points)"
    if n > max_points:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        counts, _, _ = np.histogram2d(frame["aloo_pp"], frame["loo_pp"], bins=[edges, edges])
        ix, iy = np.nonzero(counts)
        cells = pd.DataFrame(
            {
                "x0": edges[ix],
                "x1": edges[ix + 1],
                "y0": edges[iy],
                "y1": edges[iy + 1],
                "count": counts[ix, iy].astype(np.int64),
            }
        )
        points = (
            alt.Chart(cells)
            .mark_rect()
            .encode(
                x=alt.X("x0:Q", title=x_title),
                x2=alt.X2("x1:Q"),
                y=alt.Y("y0:Q", title=y_title),
                y2=alt.Y2("y1:Q"),
                color=alt.Color("count:Q", title="Records", scale=alt.Scale(scheme="viridis")),
                tooltip=[alt.Tooltip("count:Q", title="Records")],
            )
        )
        line = _identity_line(alt, lo, hi, "x0", "y0")
    else:
        has_group = "group" in frame
        if has_group:
            frame["group"] = labels(frame["group"])
        enc: dict[str, Any] = {}
        tip = [
            alt.Tooltip("aloo_pp:Q", title="PA-ALOOA IPR (pp)", format=".2f"),
            alt.Tooltip("loo_pp:Q", title="PA-LOOA IPR (pp)", format=".2f"),
        ]
        if has_group:
            enc["color"] = group_color(alt, domain(frame["group"], group_order))
            tip.insert(0, alt.Tooltip("group:N", title="Group"))
        if "record" in frame:
            tip.insert(0, alt.Tooltip("record:Q", title="Record"))
        cols = [c for c in ("record", "group", "aloo_pp", "loo_pp") if c in frame]
        points = (
            alt.Chart(frame[cols])
            .mark_circle(size=40, opacity=0.7)
            .encode(
                x=alt.X("aloo_pp:Q", title=x_title),
                y=alt.Y("loo_pp:Q", title=y_title),
                tooltip=tip,
                **enc,
            )
        )
        line = _identity_line(alt, lo, hi, "aloo_pp", "loo_pp")
    text = title or "Exact PA-LOOA vs approximate PA-ALOOA, per record"
    sub = f"mean |difference| = {mad:.2f} pp over {n:,} records; {r_text}; dashed: y = x"
    return titled([points, line], alt, text, sub, width=HEIGHT + 60, height=HEIGHT + 60)


def grc_vs_gpr(
    data: Any,
    risk: Any = None,
    *,
    group_names: Sequence[str] | None = None,
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """GPR against the group relative contribution (GRC) per group, Pearson r in the title.

    GRC(k) = mean over steps of ||mean gradient of group k in B|| / ||mean gradient of B||
    (docs/design.md 4.8). Taught in notebook 5: groups that pull the update harder tend to leak
    less, or more?

    Parameters
    ----------
    data : pandas.DataFrame or EnsembleResult-like
        With ``risk=None``: one row per group with columns ``group, grc, gpr`` (GPR in
        percentage points; optional ``ci_low, ci_high``). With ``risk``: tidy telemetry
        (``step, group, grc``) or an object with ``.telemetry``; GRC is averaged over steps.
    risk : GroupRisk-like or pandas.DataFrame, optional
        By-group GPR table joined to the telemetry.
    group_names : sequence of str, optional
        Names of integer group ids in the telemetry.
    group_order : sequence of str, optional
        Group order for colours (see :func:`gpr_chart`).
    title : str, optional
        Chart title (default states r).

    Returns
    -------
    altair.LayerChart
        Points coloured by group with labels, GPR CI error bars when given.
    """
    alt = altair()
    frame = data if risk is None else grc_frame(data, risk, group_names=group_names)
    frame = require_frame(frame, "data", ("group", "grc", "gpr"), ("ci_low", "ci_high"))
    frame = numeric(frame, "data", ("grc", "gpr", "ci_low", "ci_high"))
    frame["group"] = labels(frame["group"], group_names)
    r = pearson(frame["grc"].to_numpy(), frame["gpr"].to_numpy())
    r_text = (
        f"Pearson r = {r:.2f}" if np.isfinite(r) else "Pearson r undefined (fewer than 3 groups)"
    )
    color = group_color(alt, domain(frame["group"], group_order))
    tip = [
        alt.Tooltip("group:N", title="Group"),
        alt.Tooltip("grc:Q", title="GRC (ratio)", format=".3f"),
        alt.Tooltip("gpr:Q", title="GPR (pp)", format=".2f"),
    ]
    has_ci = "ci_low" in frame and "ci_high" in frame
    if has_ci:
        tip += [
            alt.Tooltip("ci_low:Q", title="CI low (pp)", format=".2f"),
            alt.Tooltip("ci_high:Q", title="CI high (pp)", format=".2f"),
        ]
    x = alt.X(
        "grc:Q",
        title="Group relative contribution GRC (gradient-norm ratio)",
        scale=alt.Scale(zero=False, padding=30),
    )
    y_title = "GPR (percentage points)"
    base = alt.Chart(frame).encode(x=x, tooltip=tip)
    layers = [
        base.mark_point(filled=True, size=90).encode(y=alt.Y("gpr:Q", title=y_title), color=color)
    ]
    if has_ci:
        layers.append(
            base.mark_errorbar(ticks=True).encode(
                y=alt.Y("ci_low:Q", title=y_title), y2=alt.Y2("ci_high:Q"), color=color
            )
        )
    layers.append(base.mark_text(align="left", dx=8, dy=-8).encode(y=alt.Y("gpr:Q"), text=alt.Text("group:N")))
    text = title or f"GPR against gradient contribution ({r_text})"
    return layered(
        alt, layers,
        width=WIDTH,
        height=HEIGHT,
        title=title_params(alt, text, f"{len(frame)} groups; {r_text}; GRC = 1: average pull"),
        description=f"{text}.",
    )
