"""Charts across runs and over training: GPRP vs epsilon, accuracy-GPRP frontier, C_k over steps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._core.validate import fail, integer, positive
from ._adapters import sweep_frame, telemetry_frame
from ._core import (
    HEIGHT,
    METHOD_ORDER,
    WIDTH,
    altair,
    domain,
    group_color,
    layered,
    numeric,
    require_frame,
    series_color,
    series_palette,
    thin_steps,
    title_params,
    titled,
)
from ._risk import CI_LABEL, WHISKER, line_legend
from ._teach import bound_layers

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt

SWEEP_COLUMNS = ("method", "epsilon", "gprp")
INF_LABEL = "ε = ∞ (no DP): GPRP; shaded: its CI"
SWEEP_OPTIONAL = ("gprp_ci_low", "gprp_ci_high", "accuracy")


def _sweep_input(results: Any, required: Sequence[str]) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame | str) and isinstance(results, Iterable):
        results = sweep_frame(results)
    optional = [c for c in (*SWEEP_COLUMNS, *SWEEP_OPTIONAL) if c not in required]
    frame = require_frame(results, "results", required, optional)
    frame = numeric(
        frame, "results", ("epsilon", "gprp", "gprp_ci_low", "gprp_ci_high", "accuracy")
    )
    frame["method"] = frame["method"].astype(str)
    if (frame["epsilon"] <= 0).any() or frame["epsilon"].isna().any():
        raise fail("results['epsilon']", "values <= 0 or NaN", "to be in (0, inf] (inf for SGD)")
    frame["eps_label"] = np.where(
        np.isinf(frame["epsilon"]), "ε = ∞", frame["epsilon"].map(lambda e: f"ε = {_eps2(e)}")
    )
    return frame


def _eps2(e: float) -> str:
    """ε with at most 2 decimals (9.97571 -> 9.98, 10.0 -> 10)."""
    return f"{e:.2f}".rstrip("0").rstrip(".")


def _label_positions(x: np.ndarray, y: np.ndarray, text: Sequence[str], *, y_span: float,
                     x_span: float, line_px: float = 12.0, width_px: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Place point labels without overlap: return (label y in data units, keep mask).

    Labels sit above their point; one that would overlap an earlier label (closer than a text
    line vertically and a label's width horizontally, in pixels of a WIDTH x HEIGHT chart)
    moves up a line, and an identical text at the same place is drawn once.
    """
    px_y = HEIGHT / y_span if y_span > 0 else 0.0
    px_x = WIDTH / x_span if x_span > 0 else 0.0
    placed: list[tuple[float, float, str]] = []
    label_y = np.asarray(y, dtype=float).copy()
    keep = np.ones(len(label_y), dtype=bool)
    for i in np.argsort(y, kind="stable"):
        lx, ly = float(x[i]) * px_x, float(y[i]) * px_y + line_px
        for _ in range(len(placed) + 1):
            clash = [p for p in placed if abs(p[0] - lx) < width_px and abs(p[1] - ly) < line_px]
            if not clash:
                break
            if any(p[2] == text[i] for p in clash):
                keep[i] = False
                break
            ly = max(p[1] for p in clash) + line_px
        if keep[i]:
            placed.append((lx, ly, text[i]))
            label_y[i] = ly / px_y if px_y else float(y[i])
    return label_y, keep


def _ci_tooltips(alt: Any, frame: pd.DataFrame) -> list[Any]:
    tip = [
        alt.Tooltip("method:N", title="Method"),
        alt.Tooltip("eps_label:N", title="ε"),
        alt.Tooltip("gprp:Q", title="GPRP (pp)", format=".2f"),
    ]
    if "gprp_ci_low" in frame and "gprp_ci_high" in frame:
        tip += [
            alt.Tooltip("gprp_ci_low:Q", title="CI low (pp)", format=".2f"),
            alt.Tooltip("gprp_ci_high:Q", title="CI high (pp)", format=".2f"),
        ]
    if "accuracy_pct" in frame:
        tip.append(alt.Tooltip("accuracy_pct:Q", title="Test accuracy (%)", format=".2f"))
    return tip


def gprp_vs_epsilon(
    results: Any,
    *,
    delta: float = 1e-5,
    neighbours: Literal["add_remove", "substitute"] = "substitute",
    title: str | None = None,
) -> alt.LayerChart:
    """GPRP (with CI) against the privacy budget epsilon for several methods, log x axis.

    GPRP = max_g GPR(g) - min_g GPR(g) in percentage points. Runs with epsilon = inf (SGD)
    cannot sit on a log axis: each is a horizontal dashed rule (its CI a light band) labelled
    "<method> (ε = ∞)". DP's ceiling on any group's GPR (hence on GPRP),
    ``100 * advantage_bound(eps, delta, neighbours=...)``, is the grey dotted curve; the y axis
    is symmetric-log so that the ceiling and the measured gaps fit one chart. Taught in
    notebooks 4 and 6.

    Parameters
    ----------
    results : pandas.DataFrame or list
        One row per run with columns ``method, epsilon, gprp`` (optional ``gprp_ci_low,
        gprp_ci_high``; GPRP in percentage points, epsilon in (0, inf]); or a list of entries
        accepted by :func:`sweep_frame`.
    delta : float
        The accounted delta of the DP runs (``result.delta``), for the ceiling.
    neighbours : {"substitute", "add_remove"}
        The audit game's neighbouring relation (ALOOA and half-split games: substitute).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Lines and points per method (colour), error bars for the CI, rules for epsilon = inf,
        DP's ceiling.
    """
    alt = altair()
    frame = _sweep_input(results, SWEEP_COLUMNS)
    finite = frame[np.isfinite(frame["epsilon"])].sort_values(["method", "epsilon"])
    infinite = frame[np.isinf(frame["epsilon"])]
    if len(finite) == 0:
        raise fail("results", "only runs with epsilon=inf", "to hold at least one finite epsilon")
    mdom = domain(frame["method"], None, METHOD_ORDER)
    color = series_color(alt, "method", mdom, "Method")
    y_title = "GPRP (percentage points)"
    yscale = alt.Scale(type="symlog", constant=1)
    tip = _ci_tooltips(alt, frame)
    # The axis spans the finite ε of the runs with some room on both sides (a log axis
    # starting at 1 squeezes runs at ε = 8-10 against its right edge).
    lo_eps, hi_eps = float(finite["epsilon"].min()), float(finite["epsilon"].max())
    x_domain = [lo_eps / 1.6, hi_eps * 1.6]
    base = alt.Chart(finite).encode(
        x=alt.X("epsilon:Q", title="Privacy budget ε (log scale)",
                scale=alt.Scale(type="log", domain=x_domain, nice=False),
                axis=alt.Axis(format=".2~f")),
        color=color,
        tooltip=tip,
    )
    layers = [
        base.mark_line(point=alt.OverlayMarkDef(filled=True, size=60)).encode(
            y=alt.Y("gprp:Q", title=y_title, scale=yscale)
        )
    ]
    has_ci = "gprp_ci_low" in frame and "gprp_ci_high" in frame
    if has_ci:
        layers.append(
            base.mark_errorbar(**WHISKER).encode(
                y=alt.Y("gprp_ci_low:Q", title=y_title, scale=yscale), y2=alt.Y2("gprp_ci_high:Q")
            )
        )
    entries, dashes = [CI_LABEL, "GPRP at each ε"], [[1, 0], [1, 0]]
    if len(infinite):
        entries.append(INF_LABEL)
        dashes.append([6, 4])
    lines = line_legend(alt, entries, dashes)
    if len(infinite):
        inf = infinite.assign(label=infinite["method"] + " (ε = ∞)", line=INF_LABEL)
        ib = alt.Chart(inf).encode(color=color, tooltip=tip)
        layers.append(ib.mark_rule(size=2).encode(y=alt.Y("gprp:Q", scale=yscale), strokeDash=lines))
        if has_ci:
            layers.append(ib.mark_rect(opacity=0.12).encode(y=alt.Y("gprp_ci_low:Q"), y2=alt.Y2("gprp_ci_high:Q")))
        layers.append(
            ib.mark_text(align="right", baseline="bottom", dy=-3, x="width").encode(
                y=alt.Y("gprp:Q"), text=alt.Text("label:N")
            )
        )
    else:  # the legend still names the whiskers
        layers.append(alt.Chart(pd.DataFrame({"line": [CI_LABEL]})).mark_rule(opacity=0).encode(strokeDash=lines))
    eps_range = (float(finite["epsilon"].min()), float(finite["epsilon"].max()))
    bound, bound_sub = bound_layers(alt, eps_range, delta=delta, neighbours=neighbours, y_title=y_title)
    layers.extend(bound)
    text = title or "Group privacy risk parity (GPRP) against ε"
    sub = ["lower is fairer; whiskers: bootstrap CI; dashed: ε = ∞ (no DP), its CI shaded; "
           "y: symmetric log scale", bound_sub]
    return titled(list(layers), alt, text, sub)


def accuracy_gprp_frontier(
    results: Any,
    *,
    title: str | None = None,
) -> alt.LayerChart:
    """Test accuracy against GPRP across epsilon, one connected line per method.

    The matched-utility comparison of docs/design.md section 2, item 4: a method is better only if
    its line lies below another's at the same accuracy (lower GPRP for equal utility), not
    merely at the same epsilon. Taught in notebook 6.

    Parameters
    ----------
    results : pandas.DataFrame or list
        One row per run with columns ``method, epsilon, accuracy, gprp`` (accuracy a fraction,
        GPRP in percentage points; optional ``gprp_ci_low, gprp_ci_high``); or a list of
        entries accepted by :func:`sweep_frame`.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        x = test accuracy (%), y = GPRP (pp); points labelled with epsilon, lines in epsilon order.
    """
    alt = altair()
    frame = _sweep_input(results, ("method", "epsilon", "accuracy", "gprp"))
    frame = frame[frame["accuracy"].notna()]
    if len(frame) == 0:
        raise fail("results['accuracy']", "all NaN", "to hold the test accuracy of each run")
    frame["accuracy_pct"] = 100.0 * frame["accuracy"]
    # inf sorts last, so SGD ends each method's line at the no-privacy end.
    frame["eps_rank"] = frame.groupby("method")["epsilon"].rank(method="first")
    mdom = domain(frame["method"], None, METHOD_ORDER)
    color = series_color(alt, "method", mdom, "Method")
    y_title = "GPRP (percentage points)"
    has_ci = "gprp_ci_low" in frame and "gprp_ci_high" in frame
    tops = frame["gprp_ci_high"].fillna(frame["gprp"]) if has_ci else frame["gprp"]
    bottoms = frame["gprp_ci_low"].fillna(frame["gprp"]) if has_ci else frame["gprp"]
    y_span = float(max(tops.max(), 0.0) - min(bottoms.min(), 0.0))
    x_span = float(frame["accuracy_pct"].max() - frame["accuracy_pct"].min()) + 60 * 0.01
    label_y, keep = _label_positions(frame["accuracy_pct"].to_numpy(), frame["gprp"].to_numpy(),
                                     frame["eps_label"].tolist(), y_span=y_span, x_span=x_span)
    frame["label_y"] = label_y
    frame["show_label"] = keep
    base = alt.Chart(frame).encode(
        x=alt.X(
            "accuracy_pct:Q", title="Test accuracy (%)", scale=alt.Scale(zero=False, padding=30)
        ),
        color=color,
        tooltip=_ci_tooltips(alt, frame),
    )
    layers = [
        base.mark_line(point=alt.OverlayMarkDef(filled=True, size=60)).encode(
            y=alt.Y("gprp:Q", title=y_title), order=alt.Order("eps_rank:Q")
        ),
        base.transform_filter("datum.show_label").mark_text(
            align="left", baseline="bottom", dx=7, fontSize=10).encode(
            y=alt.Y("label_y:Q"), text=alt.Text("eps_label:N"), color=alt.value("#444444")
        ),
    ]
    if has_ci:
        layers.append(
            base.mark_errorbar(**WHISKER).encode(
                y=alt.Y("gprp_ci_low:Q", title=y_title), y2=alt.Y2("gprp_ci_high:Q")
            )
        )
    lines = line_legend(alt, [CI_LABEL], [[1, 0]])
    layers.append(alt.Chart(pd.DataFrame({"line": [CI_LABEL]})).mark_rule(opacity=0).encode(strokeDash=lines))
    text = title or "Accuracy against GPRP (matched-utility comparison)"
    sub = ("better: bottom right (more accurate, fairer); compare methods at equal accuracy; "
           "labels: ε of each run; whiskers: bootstrap CI")
    return titled(list(layers), alt, text, sub)


def clip_bounds_over_training(
    telemetry: Any,
    *,
    clip: float | None = None,
    group_names: Sequence[str] | None = None,
    group_order: Sequence[str] | None = None,
    max_rows: int = 2000,
    title: str | None = None,
) -> alt.LayerChart | alt.FacetChart:
    """Per-group clipping bounds C_k over training steps (DP-SGD-S, DP-SGD-F).

    DP-SGD-S sets C_k = C min(tau, r_bar / r_k) each step (docs/design.md 4.6): groups that pull
    the update harder get a stricter bound. Taught in notebook 6.

    Parameters
    ----------
    telemetry : pandas.DataFrame or EnsembleResult-like
        Tidy telemetry with columns ``step, group, clip_bound`` (optional ``method``; several
        methods give one panel each), or an object with ``.telemetry`` (and ``.method``).
        Rows with a missing clip bound (e.g. SGD) are dropped.
    clip : float, optional
        The base bound C, drawn as a dashed rule.
    group_names : sequence of str, optional
        Names of integer group ids.
    group_order : sequence of str, optional
        Group order for colours (see :func:`gpr_chart`).
    max_rows : int
        Above this many rows consecutive steps are averaged into bins (in pandas).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart or altair.FacetChart
        Lines x = step, y = C_k, colour = group.
    """
    alt = altair()
    max_rows = integer("max_rows", max_rows, 10)
    if clip is not None:
        clip = positive("clip", clip)
    frame = telemetry_frame(telemetry, group_names=group_names)
    frame = require_frame(frame, "telemetry", ("step", "group", "clip_bound"), ("method",))
    frame = numeric(frame, "telemetry", ("step", "clip_bound"))
    frame = frame[frame["clip_bound"].notna()]
    if len(frame) == 0:
        raise fail(
            "telemetry['clip_bound']", "all missing", "to hold clip bounds (a DP run, not SGD)"
        )
    by = ["method", "group"] if "method" in frame else ["group"]
    frame = thin_steps(frame[[*by, "step", "clip_bound"]], "step", by, ["clip_bound"], max_rows)
    gdom = domain(frame["group"], group_order)
    tip = [
        alt.Tooltip("group:N", title="Group"),
        alt.Tooltip("step:Q", title="Step", format=",.0f"),
        alt.Tooltip("clip_bound:Q", title="C_k", format=".3f"),
    ]
    lines = (
        alt.Chart()
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("step:Q", title="Training step"),
            y=alt.Y("clip_bound:Q", title="Clipping bound C_k (gradient norm)"),
            color=group_color(alt, gdom),
            tooltip=tip,
        )
    )
    layers = [lines]
    if clip is not None:
        layers.append(
            alt.Chart().mark_rule(strokeDash=[4, 3], color="#555555").encode(y=alt.datum(clip))
        )
    text = title or "Per-group clipping bounds over training"
    sub = "dashed: base bound C" if clip is not None else "one line per group"
    multi = "method" in frame and frame["method"].nunique() > 1
    chart = layered(alt, layers, data=frame, width=WIDTH if not multi else 260, height=HEIGHT)
    if multi:
        mdom = domain(frame["method"], None, METHOD_ORDER)
        chart = chart.facet(column=alt.Column("method:N", title="Method", sort=mdom))
    return chart.properties(title=title_params(alt, text, sub), description=f"{text}. {sub}")


CLIP_SWEEP_COLUMNS = ("C", "variant", "mean", "seed_ci_low", "seed_ci_high")


def clipping_sweep(
    gprp: pd.DataFrame,
    gpr: pd.DataFrame,
    clipped: pd.DataFrame,
    *,
    controls: pd.DataFrame | None = None,
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> alt.VConcatChart:
    """GPRP, GPR per group and the fraction clipped per group against the clip bound C.

    The clipping sweep of docs/design.md section 2, item 4: three rows that share the
    x axis (C, log scale), so that where the gap between methods opens can be read against how
    much clipping binds for each group. Every value is a mean over retrained seeds with its
    seed-level 95 % t interval as whiskers (the tables of ``studies.seed_table``).

    Parameters
    ----------
    gprp : pandas.DataFrame
        One row per (C, variant): ``C, variant, mean, seed_ci_low, seed_ci_high`` (GPRP, pp;
        optional ``floor_mean``, the zero-leakage GPRP, drawn as a grey tick).
    gpr : pandas.DataFrame
        One row per (C, variant, group), same columns plus ``group`` (GPR, pp; optional
        ``floor_mean``).
    clipped : pandas.DataFrame
        One row per (C, variant, group), same columns plus ``group``: the fraction of per-sample
        gradients clipped (0-1). It reads the private batches without noise: a **non-private
        diagnostic**, and the chart says so.
    controls : pandas.DataFrame, optional
        GPRP of control runs (for example a noise-matched DP-SGD) with the columns of ``gprp``;
        drawn as open squares in the GPRP row, in greys, in the methods' legend.
    group_order : sequence of str, optional
        Group order (and colours), as in every chart of this package.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.VConcatChart
        Row 1: GPRP per variant (and controls); row 2: GPR per group, one column per variant;
        row 3: fraction clipped per group, one column per variant.
    """
    alt = altair()
    g = numeric(require_frame(gprp, "gprp", CLIP_SWEEP_COLUMNS, ("floor_mean",)), "gprp",
                ("C", "mean", "seed_ci_low", "seed_ci_high"))
    per_group = [numeric(require_frame(f, name, (*CLIP_SWEEP_COLUMNS, "group"), ("floor_mean",)), name,
                         ("C", "mean", "seed_ci_low", "seed_ci_high"))
                 for f, name in ((gpr, "gpr"), (clipped, "clipped"))]
    if (g["C"] <= 0).any() or any((f["C"] <= 0).any() for f in per_group):
        raise fail("C", "a bound <= 0", "to be > 0 in every row (the x axis is logarithmic)")
    variants = domain(g["variant"], list(dict.fromkeys(g["variant"])))  # in the table's order
    x = alt.X("C:Q", title="Clip bound C (log scale)", scale=alt.Scale(type="log", nice=False),
              axis=alt.Axis(values=sorted({float(c) for c in g["C"]})))
    c = None
    if controls is not None:
        c = numeric(require_frame(controls, "controls", CLIP_SWEEP_COLUMNS), "controls",
                    ("C", "mean", "seed_ci_low", "seed_ci_high"))
    cdom = [] if c is None else [v for v in dict.fromkeys(c["variant"]) if v not in variants]
    greys = [f"#{v:02x}{v:02x}{v:02x}" for v in np.linspace(0x33, 0x99, len(cdom)).astype(int)]
    # one colour scale for the methods and the controls (controls in greys, drawn as open squares)
    color = alt.Color("variant:N", title="Method (squares: controls)", sort=[*variants, *cdom],
                      legend=alt.Legend(labelLimit=360),
                      scale=alt.Scale(domain=[*variants, *cdom], range=[*series_palette(variants), *greys]))

    def rows(frame: pd.DataFrame, y_title: str, colour: Any, *, floor: bool, mark: str = "line") -> list[Any]:
        base = alt.Chart(frame).encode(x=x, color=colour, tooltip=[
            "variant:N", "C:Q", *(["group:N"] if "group" in frame else []),
            alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("seed_ci_low:Q", format=".3f"),
            alt.Tooltip("seed_ci_high:Q", format=".3f")])
        y = alt.Y("mean:Q", title=y_title)
        points = (base.mark_line(point=alt.OverlayMarkDef(filled=True, size=40)) if mark == "line" else
                  base.mark_point(shape="square", size=80, filled=False, strokeWidth=2))
        out = [points.encode(y=y),
               base.mark_errorbar(**WHISKER).encode(y=alt.Y("seed_ci_low:Q", title=y_title), y2=alt.Y2("seed_ci_high:Q"))]
        if floor and "floor_mean" in frame:
            out.append(base.mark_tick(color="#777777", thickness=2, size=12, orient="horizontal").encode(
                y=alt.Y("floor_mean:Q", title=y_title), color=alt.value("#777777")))
        return out

    top = rows(g, "GPRP (pp)", color, floor=True)
    if c is not None:
        top += rows(c, "GPRP (pp)", color, floor=False, mark="square")
    gdom = domain(per_group[0]["group"], group_order, ())
    gcolor = group_color(alt, gdom)
    sub = ("means over retrained seeds; whiskers: seed-level 95 % t CI; grey ticks: zero-leakage floor"
           + ("; open squares: controls" if c is not None else ""))
    first = titled(list(top), alt, title or "The clipping sweep: where the gap between methods opens", sub)
    panels = []
    for frame, y_title, floor in ((per_group[0], "GPR (pp)", True),
                                  (per_group[1], "Fraction clipped (NON-PRIVATE diagnostic)", False)):
        cols = [layered(alt, rows(frame[frame["variant"] == v], y_title, gcolor, floor=floor),
                        width=max(140, WIDTH // len(variants)), height=HEIGHT * 2 // 3, title=v)
                for v in variants]
        panels.append(alt.hconcat(*cols).resolve_scale(y="shared"))
    return alt.vconcat(first, *panels).resolve_scale(color="independent")
