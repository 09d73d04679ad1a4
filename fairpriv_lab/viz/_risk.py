"""Risk charts: GPR by group, auditors side by side, IPR distributions, LOO vs ALOO, GRC vs GPR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._core.validate import choice, fail, integer
from ._adapters import gpr_series_frame, record_frame
from ._core import (
    AUDITOR_ORDER,
    HEIGHT,
    METHOD_ORDER,
    WIDTH,
    altair,
    domain,
    fmt_pp,
    group_color,
    labels,
    layered,
    numeric,
    require_frame,
    series_color,
    title_params,
    titled,
)

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt

FLOOR_NOTE = "black diamonds: zero-leakage floor (same estimator, membership labels permuted)"
FLOOR_LABEL = "zero-leakage floor"
CI_LABEL = "CI (bootstrap)"
ENDS_LABEL = "max / min GPR (GPRP = gap)"
ZERO_LABEL = "0 pp (no leakage)"
#: Thin whiskers with small caps, so that an interval never looks like a marker.
WHISKER = {"ticks": {"size": 7}, "thickness": 1.2}


def line_legend(alt: Any, entries: Sequence[str], dashes: Sequence[Sequence[int]]) -> Any:
    """Return a strokeDash encoding whose legend names every line of a chart (field ``line``)."""
    return alt.StrokeDash(
        "line:N",
        scale=alt.Scale(domain=list(entries), range=[list(d) for d in dashes]),
        legend=alt.Legend(title=None, symbolType="stroke", symbolStrokeColor="#333333",
                          symbolStrokeWidth=1.5, orient="right", labelLimit=0),
    )


def marker_legend(alt: Any, label: str, shape: str = "diamond") -> Any:
    """Return a shape encoding (field ``marker``) putting one labelled marker in the legend."""
    return alt.Shape("marker:N", scale=alt.Scale(domain=[label], range=[shape]),
                     legend=alt.Legend(title=None, orient="right", labelLimit=0))


def _gprp_text(name: str, value: tuple[float, float, float]) -> str:
    gprp, lo, hi = value
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    prefix = f"{name}: " if name else ""
    return f"{prefix}GPRP = {fmt_pp(gprp)}{ci}"


def _grouped_gpr(
    risks: Any,
    *,
    series: str,
    series_title: str,
    canonical: Sequence[str],
    name: str,
    group_order: Sequence[str] | None,
    show_floor: bool,
    title: str,
    require_series: bool,
) -> alt.LayerChart:
    alt = altair()
    frame, gprp = gpr_series_frame(risks, series=series, name=name)
    if require_series and (frame[series] == "").all():
        raise fail(
            name,
            "a single table without an auditor column",
            f"to be a mapping {series} -> GroupRisk/DataFrame or a DataFrame with a {series!r} column",
        )
    frame = numeric(frame, name, ("gpr", "ci_low", "ci_high", "floor", "n"))
    gdom = domain(frame["group"], group_order)
    sdom = domain(frame[series], None, canonical)
    multi = len(sdom) > 1

    tooltip = [alt.Tooltip("group:N", title="Group")]
    if multi or series == "auditor":
        tooltip.append(alt.Tooltip(f"{series}:N", title=series_title))
    if "n" in frame:
        tooltip.append(alt.Tooltip("n:Q", title="Audited records", format=",.0f"))
    tooltip += [
        alt.Tooltip("gpr:Q", title="GPR (pp)", format=".2f"),
        alt.Tooltip("ci_low:Q", title="CI low (pp)", format=".2f"),
        alt.Tooltip("ci_high:Q", title="CI high (pp)", format=".2f"),
    ]
    if "floor" in frame:
        tooltip.append(alt.Tooltip("floor:Q", title="Zero-leakage floor (pp)", format=".2f"))

    x = alt.X("group:N", title="Group", sort=gdom, axis=alt.Axis(labelAngle=0))
    color = (
        series_color(alt, series, sdom, series_title)
        if multi
        else group_color(alt, gdom, legend=False)
    )
    offset = {"xOffset": alt.XOffset(f"{series}:N", sort=sdom)} if multi else {}
    base = alt.Chart(frame).encode(x=x, tooltip=tooltip, **offset)
    y_title = "GPR (percentage points)"
    # Every line is named in one legend: the CI whiskers (drawn by errorbar, solid), the zero
    # rule (dotted) and, for one series, the dashed rules at the max and min GPR.
    entries, dashes = [CI_LABEL, ZERO_LABEL], [[1, 0], [1, 2]]
    if not multi:
        entries.append(ENDS_LABEL)
        dashes.append([4, 3])
    lines = line_legend(alt, entries, dashes)
    layers = [
        base.mark_bar(opacity=0.85).encode(y=alt.Y("gpr:Q", title=y_title), color=color),
        base.mark_errorbar(color="#333333", **WHISKER).encode(
            y=alt.Y("ci_low:Q", title=y_title), y2=alt.Y2("ci_high:Q")
        ),
    ]
    if show_floor and "floor" in frame:
        layers.append(
            base.transform_calculate(marker=f"'{FLOOR_LABEL}'")
            .mark_point(filled=True, color="black", size=45 if multi else 60, opacity=1)
            .encode(y=alt.Y("floor:Q", title=y_title), shape=marker_legend(alt, FLOOR_LABEL))
        )
    zero = pd.DataFrame({"gpr": [0.0], "line": [ZERO_LABEL]})
    layers.append(alt.Chart(zero).mark_rule(color="#777777").encode(y=alt.Y("gpr:Q"), strokeDash=lines))
    subtitle = ["; ".join(_gprp_text(s, gprp[s]) for s in sdom if s in gprp) + " (max - min GPR)"]
    if not multi:
        hi, lo = float(frame["gpr"].max()), float(frame["gpr"].min())
        marks = pd.DataFrame({"gpr": [hi, lo], "label": [f"max {hi:.2f} pp", f"min {lo:.2f} pp"],
                              "line": ENDS_LABEL})
        layers.append(
            alt.Chart(marks)
            .mark_rule(color="#555555")
            .encode(y=alt.Y("gpr:Q"), strokeDash=lines, tooltip=[alt.Tooltip("label:N", title="GPRP end")])
        )
    notes = "bars: GPR, whiskers: bootstrap CI"
    if show_floor and "floor" in frame:
        notes += "; " + FLOOR_NOTE
    subtitle.append(notes)
    return titled(list(layers), alt, title, subtitle)


def gpr_chart(
    risk: Any,
    *,
    group_order: Sequence[str] | None = None,
    show_floor: bool = True,
    title: str | None = None,
) -> alt.LayerChart:
    """Bar chart of GPR by group with CI error bars, the zero-leakage floor and GPRP.

    GPR(g) = mean IPR over the audited records of group g; GPRP = max_g GPR - min_g GPR
    (docs/design.md 4.5). Taught in notebooks 3 and 6.

    Parameters
    ----------
    risk : GroupRisk-like, pandas.DataFrame, or mapping of str to either
        One table with columns ``group, gpr, ci_low, ci_high`` (optional ``floor, n``), all in
        percentage points, like ``GroupRisk.by_group``; or an object with such a ``by_group``
        (then ``difference()``/``difference_ci()`` give GPRP and its CI); or a mapping
        method/auditor name -> either (colour-coded bars side by side); or one DataFrame with an
        extra ``method`` column.
    group_order : sequence of str, optional
        Group order on the axis and for colours; pass the same one to every builder to keep a
        group's colour fixed across charts (default: sorted names).
    show_floor : bool
        Draw the zero-leakage floor as a black diamond (named in the legend) when the table has a ``floor`` column.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Bars (``gpr``), error bars (``ci_low``..``ci_high``), floor ticks, a zero rule and, for
        one method, dashed rules at the max and min GPR; GPRP (with CI) in the subtitle.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"group": ["F", "M"], "gpr": [3.0, 1.0], "ci_low": [2.0, 0.5],
    ...                   "ci_high": [4.0, 1.5], "floor": [0.1, 0.0]})
    >>> gpr_chart(t).to_dict()["title"]["subtitle"][0]
    'GPRP = 2.00 pp (max - min GPR)'
    """
    return _grouped_gpr(
        risk,
        series="method",
        series_title="Method",
        canonical=(*METHOD_ORDER, *AUDITOR_ORDER),
        name="risk",
        group_order=group_order,
        show_floor=show_floor,
        title=title or "Group privacy risk (GPR) by group",
        require_series=False,
    )


def auditors_side_by_side(
    risks: Any,
    *,
    group_order: Sequence[str] | None = None,
    show_floor: bool = True,
    title: str | None = None,
) -> alt.LayerChart:
    """GPR per group under PA-GA, PA-GBA and PA-ALOOA (and PA-LOOA), bars side by side.

    The average-case auditors (one threshold per model, or per model and group) against the
    worst-case per-record auditor; notebook 3 teaches when PA-GBA shows a larger gap.

    Parameters
    ----------
    risks : mapping of str to GroupRisk-like or DataFrame, or pandas.DataFrame
        Auditor name -> by-group table (``group, gpr, ci_low, ci_high``, optional ``floor, n``,
        percentage points), or one DataFrame with those columns plus ``auditor``.
    group_order : sequence of str, optional
        Group order on the axis (see :func:`gpr_chart`).
    show_floor : bool
        Draw floor ticks where a ``floor`` column exists.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Grouped bars: x = group, x offset and colour = auditor, error bars = CI; GPRP of each
        auditor in the subtitle.
    """
    return _grouped_gpr(
        risks,
        series="auditor",
        series_title="Auditor",
        canonical=AUDITOR_ORDER,
        name="risks",
        group_order=group_order,
        show_floor=show_floor,
        title=title or "GPR by group: average-case vs worst-case auditors",
        require_series=True,
    )


def _histograms(frame: pd.DataFrame, gdom: list[str], bins: int) -> pd.DataFrame:
    """Per-group histogram (share of the group's records, %) on common edges, as step points."""
    values = frame["ipr_pp"].to_numpy()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    parts = []
    for g in gdom:
        v = frame.loc[frame["group"] == g, "ipr_pp"].to_numpy()
        if v.size == 0:
            continue
        counts, _ = np.histogram(v, bins=edges)
        share = 100.0 * counts / v.size
        # 'step-after' needs the right edge of the last bin as a final point.
        parts.append(
            pd.DataFrame(
                {
                    "group": g,
                    "bin_start": edges,
                    "bin_end": np.append(edges[1:], edges[-1]),
                    "count": np.append(counts, counts[-1]),
                    "share": np.append(share, share[-1]),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _box_stats(frame: pd.DataFrame, gdom: list[str]) -> pd.DataFrame:
    rows = []
    for g in gdom:
        v = np.sort(frame.loc[frame["group"] == g, "ipr_pp"].to_numpy())
        if v.size == 0:
            continue
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        iqr = q3 - q1
        lo_w = v[v >= q1 - 1.5 * iqr].min()
        hi_w = v[v <= q3 + 1.5 * iqr].max()
        rows.append(
            {
                "group": g,
                "n": v.size,
                "q1": q1,
                "median": med,
                "q3": q3,
                "whisker_low": lo_w,
                "whisker_high": hi_w,
                "mean": v.mean(),
            }
        )
    return pd.DataFrame(rows)


def ipr_distribution(
    records: Any,
    *,
    kind: Literal["histogram", "box"] = "histogram",
    bins: int = 40,
    group_names: Sequence[str] | None = None,
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Distribution of per-record IPR by group (histograms or box plots), computed in pandas.

    IPR(x) = 2 acc(x) - 1 (docs/design.md 4.3). The chart only carries bin counts or quartiles,
    never the records, so any number of records is fine. Taught in notebook 3.

    Parameters
    ----------
    records : pandas.DataFrame or RecordRisk-like
        Columns ``group, ipr`` with IPR as a **fraction** in [-1, 1] (as in ``RecordRisk``),
        one row per audited record; or an object with arrays ``ipr`` and ``groups``.
    kind : {"histogram", "box"}
        Overlaid step histograms (share of each group's records, so groups of different
        sizes compare) with the group mean (= GPR) as a dashed rule, or box plots
        (quartiles, whiskers at 1.5 IQR, mean as a dot; outliers not drawn).
    bins : int
        Number of common bins of the histogram.
    group_names : sequence of str, optional
        Names of integer group ids.
    group_order : sequence of str, optional
        Group order for colours (see :func:`gpr_chart`).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Displayed in percentage points (IPR x 100).
    """
    alt = altair()
    choice("kind", kind, ("histogram", "box"))
    bins = integer("bins", bins, 2, 1000)
    frame = require_frame(
        record_frame(records, group_names=group_names), "records", ("group", "ipr")
    )
    frame = numeric(frame, "records", ("ipr",))
    frame = frame[np.isfinite(frame["ipr"])]
    if len(frame) == 0:
        raise fail("records", "no finite ipr values", "to hold at least one finite IPR")
    frame["group"] = labels(frame["group"], group_names)
    frame["ipr_pp"] = 100.0 * frame["ipr"]
    gdom = domain(frame["group"], group_order)
    color = group_color(alt, gdom)
    means = frame.groupby("group", observed=True)["ipr_pp"].agg(["mean", "size"]).reset_index()
    means.columns = ["group", "gpr", "n"]
    x_title = "IPR (percentage points)"
    title = title or "Individual privacy risk (IPR) by group"
    if kind == "histogram":
        hist = _histograms(frame, gdom, bins)
        area = (
            alt.Chart(hist)
            .mark_area(interpolate="step-after", opacity=0.3, line=True)
            .encode(
                x=alt.X("bin_start:Q", title=x_title),
                y=alt.Y("share:Q", title="Share of the group's records (%)", stack=None),
                color=color,
                tooltip=[
                    alt.Tooltip("group:N", title="Group"),
                    alt.Tooltip("bin_start:Q", title="IPR from (pp)", format=".1f"),
                    alt.Tooltip("bin_end:Q", title="IPR to (pp)", format=".1f"),
                    alt.Tooltip("count:Q", title="Records"),
                    alt.Tooltip("share:Q", title="Share (%)", format=".1f"),
                ],
            )
        )
        rule = (
            alt.Chart(means)
            .mark_rule(strokeDash=[5, 3], size=2)
            .encode(
                x=alt.X("gpr:Q"),
                color=color,
                tooltip=[
                    alt.Tooltip("group:N", title="Group"),
                    alt.Tooltip("gpr:Q", title="Mean IPR = GPR (pp)", format=".2f"),
                    alt.Tooltip("n:Q", title="Records"),
                ],
            )
        )
        layers = [area, rule]
        sub = "step lines: share of each group's records per bin; dashed: group mean (GPR)"
    else:
        stats = _box_stats(frame, gdom)
        tip = [alt.Tooltip("group:N", title="Group"), alt.Tooltip("n:Q", title="Records")] + [
            alt.Tooltip(f"{c}:Q", title=f"{c.replace('_', ' ')} (pp)", format=".2f")
            for c in ("whisker_low", "q1", "median", "q3", "whisker_high", "mean")
        ]
        base = alt.Chart(stats).encode(
            x=alt.X("group:N", title="Group", sort=gdom, axis=alt.Axis(labelAngle=0)), tooltip=tip
        )
        layers = [
            base.mark_rule(color="#333333").encode(
                y=alt.Y("whisker_low:Q", title=x_title), y2=alt.Y2("whisker_high:Q")
            ),
            base.mark_bar(size=28, opacity=0.8).encode(y=alt.Y("q1:Q"), y2=alt.Y2("q3:Q"), color=color),
            base.mark_tick(color="white", size=28, thickness=2).encode(y=alt.Y("median:Q")),
            base.mark_point(filled=True, color="black", size=30).encode(y=alt.Y("mean:Q")),
        ]
        sub = "boxes: quartiles; whiskers: 1.5 IQR (outliers not drawn); dot: mean (GPR)"
    return layered(
        alt, layers,
        width=WIDTH,
        height=HEIGHT,
        title=title_params(alt, title, [f"{len(frame):,} records; " + sub]),
        description=f"{title}. {sub}",
    )
