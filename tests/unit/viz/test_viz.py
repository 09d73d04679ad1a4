"""Chart builders: spec content (marks, encodings, data, titles), PNG rendering, big inputs."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

alt = pytest.importorskip("altair")
pytest.importorskip("vl_convert")

from fairpriv_lab import viz  # noqa: E402
from fairpriv_lab._core.exceptions import ConfigError  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- helpers
def marks(spec: dict) -> list[tuple[str, dict]]:
    """Every (mark type, encoding) in a (layered / faceted) spec."""
    out: list[tuple[str, dict]] = []

    def walk(s):
        if not isinstance(s, dict):
            return
        if "mark" in s:
            m = s["mark"]
            out.append((m["type"] if isinstance(m, dict) else m, s.get("encoding", {})))
        for key in ("layer", "hconcat", "vconcat", "concat"):
            for sub in s.get(key, []):
                walk(sub)
        if "spec" in s:
            walk(s["spec"])

    walk(spec)
    return out


def mark_types(spec: dict) -> list[str]:
    return [m for m, _ in marks(spec)]


def encodings_of(spec: dict, mark: str) -> list[dict]:
    return [enc for m, enc in marks(spec) if m == mark]


def columns(spec: dict) -> set[str]:
    cols: set[str] = set()
    for rows in spec.get("datasets", {}).values():
        for row in rows:
            cols |= set(row)
    return cols


def n_rows(spec: dict) -> list[int]:
    return [len(rows) for rows in spec.get("datasets", {}).values()]


def rows_with(spec: dict, *cols: str) -> pd.DataFrame:
    """The (first) embedded dataset holding all of cols."""
    for rows in spec.get("datasets", {}).values():
        if rows and all(c in rows[0] for c in cols):
            return pd.DataFrame(rows)
    raise AssertionError(f"no dataset with {cols}")


def title_of(spec: dict) -> tuple[str, list[str]]:
    t = spec["title"]
    sub = t.get("subtitle", [])
    return t["text"], [sub] if isinstance(sub, str) else list(sub)


def color_scale(spec: dict) -> dict:
    """The explicit colour scale (domain -> range) used in the spec."""
    for _, enc in marks(spec):
        scale = enc.get("color", {}).get("scale", {})
        if "domain" in scale and "range" in scale:
            return dict(zip(scale["domain"], scale["range"]))
    raise AssertionError("no explicit colour scale")


def assert_png(chart) -> None:
    data = viz.to_png_bytes(chart, scale=1.0)
    assert data[:8] == PNG
    assert len(data) > 1000
    assert_same_in_vega5(chart)


def _svg_texts(svg: str) -> list[str]:
    return sorted(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def assert_same_in_vega5(chart) -> None:
    """JupyterLab and Voila draw the Vega 5 compile (offline): same texts and marks as Vega-Lite 6."""
    import vl_convert

    vega = viz.to_vega(chart)
    assert vega["$schema"].endswith("/vega/v5.json")
    mine, reference = vl_convert.vega_to_svg(vega), viz.to_svg(chart)
    assert _svg_texts(mine) == _svg_texts(reference)
    for tag in ("<path", "<rect", "<line"):
        assert mine.count(tag) == reference.count(tag), tag


def by_group(gpr=(3.0, 1.0), groups=("Female", "Male")) -> pd.DataFrame:
    gpr = np.asarray(gpr, dtype=float)
    return pd.DataFrame(
        {
            "group": list(groups),
            "n": [100 * (i + 1) for i in range(len(groups))],
            "gpr": gpr,
            "ci_low": gpr - 1.0,
            "ci_high": gpr + 0.5,
            "floor": np.linspace(0.1, 0.0, len(groups)),
        }
    )


class FakeGroupRisk:
    """Duck-typed GroupRisk: by_group, difference(), difference_ci()."""

    def __init__(self, table: pd.DataFrame, ci=(1.0, 3.0)):
        self.by_group = table
        self._ci = ci

    def difference(self) -> float:
        return float(self.by_group["gpr"].max() - self.by_group["gpr"].min())

    def difference_ci(self):
        return self._ci


@pytest.fixture
def restore_renderer():
    active = alt.renderers.active
    yield
    alt.renderers.enable(active)


# --------------------------------------------------------------------------- gpr_chart
def test_gpr_chart_single_spec_and_png():
    chart = viz.gpr_chart(by_group())
    spec = chart.to_dict()
    types = mark_types(spec)
    assert {"bar", "errorbar", "point", "rule"} <= set(types)
    bar = encodings_of(spec, "bar")[0]
    assert bar["x"]["field"] == "group" and bar["y"]["field"] == "gpr"
    assert bar["y"]["title"] == "GPR (percentage points)"
    assert {t["field"] for t in bar["tooltip"]} >= {
        "group",
        "n",
        "gpr",
        "ci_low",
        "ci_high",
        "floor",
    }
    err = encodings_of(spec, "errorbar")[0]
    assert err["y"]["field"] == "ci_low" and err["y2"]["field"] == "ci_high"
    # issue 17: the floor is a labelled marker (a diamond named in the legend), not a tick
    # that looks like a CI cap; whiskers are thin with small caps; every line is in a legend
    floor = encodings_of(spec, "point")[0]
    assert floor["y"]["field"] == "floor" and floor["shape"]["scale"]["range"] == ["diamond"]
    assert floor["shape"]["scale"]["domain"] == ["zero-leakage floor"]
    assert spec["layer"][1]["mark"]["ticks"] == {"size": 7} and spec["layer"][1]["mark"]["thickness"] < 2
    dash = [e["strokeDash"] for e in encodings_of(spec, "rule") if "strokeDash" in e]
    assert dash and all(d["scale"]["domain"] == dash[0]["scale"]["domain"] for d in dash)
    assert dash[0]["scale"]["domain"] == ["CI (bootstrap)", "0 pp (no leakage)", "max / min GPR (GPRP = gap)"]
    assert {"group", "gpr", "ci_low", "ci_high", "floor", "n"} <= columns(spec)
    text, sub = title_of(spec)
    assert text == "Group privacy risk (GPR) by group"
    assert sub[0] == "GPRP = 2.00 pp (max - min GPR)"
    assert "zero-leakage floor" in sub[1]
    # The dashed GPRP rules sit at the max and min GPR.
    ends = rows_with(spec, "label")
    assert sorted(ends["gpr"]) == [1.0, 3.0]
    assert color_scale(spec) == {"Female": viz.GROUP_PALETTE[0], "Male": viz.GROUP_PALETTE[1]}
    assert "description" in spec
    assert_png(chart)


def test_gpr_chart_uses_group_risk_difference_and_ci():
    spec = viz.gpr_chart(FakeGroupRisk(by_group((5.0, 2.0, 4.0), ("a", "b", "c")))).to_dict()
    assert title_of(spec)[1][0] == "GPRP = 3.00 pp [1.00, 3.00] (max - min GPR)"


def test_gpr_chart_several_methods_colour_coded():
    risks = {"DP-SGD": by_group((2.0, 1.5)), "SGD": FakeGroupRisk(by_group((4.0, 1.0)))}
    chart = viz.gpr_chart(risks, title="Before and after")
    spec = chart.to_dict()
    bar = encodings_of(spec, "bar")[0]
    assert bar["xOffset"]["field"] == "method"
    assert bar["color"]["field"] == "method"
    # Canonical method order and fixed method colours, whatever the mapping's order.
    assert color_scale(spec) == {
        "SGD": viz.SERIES_COLORS["SGD"],
        "DP-SGD": viz.SERIES_COLORS["DP-SGD"],
    }
    assert "method" in columns(spec)
    text, sub = title_of(spec)
    assert text == "Before and after"
    assert sub[0] == "SGD: GPRP = 3.00 pp [1.00, 3.00]; DP-SGD: GPRP = 0.50 pp (max - min GPR)"
    assert_png(chart)


def test_gpr_chart_dataframe_with_method_column_and_no_floor():
    table = pd.concat([by_group().assign(method="A"), by_group((2, 2)).assign(method="B")])
    spec = viz.gpr_chart(table.drop(columns="floor")).to_dict()
    assert not [e for e in encodings_of(spec, "point") if e.get("y", {}).get("field") == "floor"]
    assert title_of(spec)[1][0] == "A: GPRP = 2.00 pp; B: GPRP = 0.00 pp (max - min GPR)"
    spec = viz.gpr_chart(by_group(), show_floor=False).to_dict()
    assert not [e for e in encodings_of(spec, "point") if e.get("y", {}).get("field") == "floor"]


def test_gpr_chart_accepts_group_index_and_checks_group_ids():
    spec = viz.gpr_chart(by_group().set_index("group")).to_dict()
    assert list(color_scale(spec)) == ["Female", "Male"]
    with pytest.raises(
        ConfigError, match=r"Expected group='ids up to 2' to be < len\(group_names\)=2"
    ):
        viz.ipr_distribution(
            SimpleNamespace(groups=np.array([0, 2]), ipr=[0.1, 0.2]), group_names=["a", "b"]
        )


def test_gpr_chart_nan_ci_small_group_renders():
    table = by_group((2.0, 1.0, 0.5), ("a", "b", "tiny"))
    table.loc[2, ["ci_low", "ci_high"]] = np.nan
    chart = viz.gpr_chart(table)
    data = rows_with(chart.to_dict(), "group", "ci_low").set_index("group")
    assert data.loc["tiny", "ci_low"] is None or np.isnan(data.loc["tiny", "ci_low"])
    assert_png(chart)


def test_gpr_chart_missing_columns_message():
    bad = by_group().drop(columns=["ci_low", "ci_high"])
    with pytest.raises(ConfigError) as err:
        viz.gpr_chart(bad)
    msg = str(err.value)
    assert msg.startswith("Expected risk='a DataFrame with columns group, n, gpr, floor' ")
    assert "to have columns group, gpr, ci_low, ci_high (optional: floor, n)" in msg
    assert msg.endswith("Missing: ci_low, ci_high")
    with pytest.raises(ConfigError, match="to be a pandas DataFrame with columns group, gpr"):
        viz.gpr_chart([1, 2, 3])
    with pytest.raises(ConfigError, match="to have at least one row"):
        viz.gpr_chart(by_group().iloc[:0])
    with pytest.raises(ConfigError, match=r"Expected risk\['gpr'\]='a non-numeric column'"):
        viz.gpr_chart(by_group().assign(gpr=["x", "y"]))


def test_group_order_keeps_colours_across_charts():
    order = ["Male", "Female"]
    gpr = viz.gpr_chart(by_group(), group_order=order).to_dict()
    records = pd.DataFrame({"group": ["Female", "Male"] * 5, "ipr": np.linspace(-0.1, 0.1, 10)})
    ipr = viz.ipr_distribution(records, group_order=order).to_dict()
    curves = {"Female": ([0, 0.5, 1], [0, 0.7, 1])}  # subset of groups: same colour still
    roc = viz.roc_by_group(curves, group_order=order).to_dict()
    expected = {"Male": viz.GROUP_PALETTE[0], "Female": viz.GROUP_PALETTE[1]}
    assert color_scale(gpr) == color_scale(ipr) == color_scale(roc) == expected
    assert viz.group_palette(order) == expected


# --------------------------------------------------------------------------- auditors
def test_auditors_side_by_side():
    risks = {
        "PA-ALOOA": FakeGroupRisk(by_group((4.0, 1.0))),
        "PA-GBA": by_group((1.0, 0.2)),
        "PA-GA": by_group((0.5, 0.4)),
    }
    chart = viz.auditors_side_by_side(risks)
    spec = chart.to_dict()
    bar = encodings_of(spec, "bar")[0]
    assert bar["xOffset"]["field"] == "auditor" and bar["color"]["field"] == "auditor"
    assert list(color_scale(spec)) == ["PA-GA", "PA-GBA", "PA-ALOOA"]
    assert "auditor" in {t["field"] for t in bar["tooltip"]}
    text, sub = title_of(spec)
    assert "average-case vs worst-case" in text
    assert sub[0].startswith(
        "PA-GA: GPRP = 0.10 pp; PA-GBA: GPRP = 0.80 pp; PA-ALOOA: GPRP = 3.00 pp"
    )
    assert_png(chart)


def test_auditors_side_by_side_needs_auditor_names():
    with pytest.raises(ConfigError, match="with a 'auditor' column"):
        viz.auditors_side_by_side(by_group())
    with pytest.raises(ConfigError, match="Expected risks='an empty mapping' to map auditor names"):
        viz.auditors_side_by_side({})
    spec = viz.auditors_side_by_side(
        pd.concat([by_group().assign(auditor="PA-GA"), by_group().assign(auditor="PA-ALOOA")])
    ).to_dict()
    assert list(color_scale(spec)) == ["PA-GA", "PA-ALOOA"]


# --------------------------------------------------------------------------- ipr_distribution
def test_ipr_histogram_aggregates_50k_records():
    rng = np.random.default_rng(0)
    n = 50_000
    records = pd.DataFrame(
        {
            "group": rng.choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1]),
            "ipr": rng.normal(0.02, 0.05, n),
        }
    )
    chart = viz.ipr_distribution(records, bins=30)
    spec = chart.to_dict()
    assert max(n_rows(spec)) <= viz.MAX_ROWS
    assert {"area", "rule"} <= set(mark_types(spec))
    area = encodings_of(spec, "area")[0]
    assert area["x"]["field"] == "bin_start" and area["y"]["field"] == "share"
    assert area["x"]["title"] == "IPR (percentage points)"
    hist = rows_with(spec, "bin_start", "share")
    for g, part in hist.groupby("group"):
        # the last row repeats the last bin for the step line; the rest are the bins
        assert part["share"].iloc[:-1].sum() == pytest.approx(100.0)
        assert part["count"].iloc[:-1].sum() == (records["group"] == g).sum()
    means = rows_with(spec, "gpr", "n").set_index("group")
    ref = records.groupby("group")["ipr"].mean() * 100
    np.testing.assert_allclose(means.loc[ref.index, "gpr"], ref.to_numpy())
    assert title_of(spec)[1][0].startswith("50,000 records")
    assert_png(chart)


def test_ipr_box_quartiles_and_record_risk_input():
    rng = np.random.default_rng(1)
    ipr = rng.normal(0, 0.1, 400)
    ipr[0] = 5.0  # an outlier beyond 1.5 IQR must not set the whisker
    rr = SimpleNamespace(
        records=np.arange(400), groups=np.repeat([0, 1], 200), ipr=ipr, auditor="PA-ALOOA"
    )
    chart = viz.ipr_distribution(rr, kind="box", group_names=["young", "old"])
    spec = chart.to_dict()
    assert {"rule", "bar", "tick", "point"} <= set(mark_types(spec))
    stats = rows_with(spec, "q1", "median", "q3").set_index("group")
    for gid, name in enumerate(["young", "old"]):
        v = 100 * ipr[rr.groups == gid]
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        assert stats.loc[name, "median"] == pytest.approx(med)
        assert stats.loc[name, "q1"] == pytest.approx(q1)
        inside = v[v <= q3 + 1.5 * (q3 - q1)]
        assert stats.loc[name, "whisker_high"] == pytest.approx(inside.max())
        assert stats.loc[name, "mean"] == pytest.approx(v.mean())
    assert stats.loc["young", "whisker_high"] < 500
    assert_png(chart)


def test_ipr_distribution_bad_input():
    with pytest.raises(
        ConfigError, match=r"Expected kind='violin' to be one of 'histogram', 'box'"
    ):
        viz.ipr_distribution(pd.DataFrame({"group": ["a"], "ipr": [0.1]}), kind="violin")
    with pytest.raises(ConfigError, match="Missing: ipr"):
        viz.ipr_distribution(pd.DataFrame({"group": ["a"], "gpr": [0.1]}))
    with pytest.raises(ConfigError, match="RecordRisk-like object with arrays ipr and groups"):
        viz.ipr_distribution(SimpleNamespace(ipr=[0.1]))
    with pytest.raises(ConfigError, match=r"Expected bins=1 to be an integer in \[2, 1000\]"):
        viz.ipr_distribution(pd.DataFrame({"group": ["a"], "ipr": [0.1]}), bins=1)


# --------------------------------------------------------------------------- roc_by_group
def _scores(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    groups = rng.integers(0, 2, n)
    scores = rng.normal(size=n) + labels * (0.2 + 0.3 * groups)
    return scores, labels, groups


def test_roc_by_group_from_scores_log_axes_and_auc():
    from sklearn.metrics import roc_auc_score, roc_curve

    scores, labels, groups = _scores()
    chart = viz.roc_by_group(scores, labels, groups, group_names=["F", "M"], max_points=150)
    spec = chart.to_dict()
    line = encodings_of(spec, "line")[0]
    assert line["x"]["field"] == "fpr" and line["y"]["field"] == "tpr"
    assert line["x"]["scale"]["type"] == "log" and line["y"]["scale"]["type"] == "log"
    assert line["x"]["title"] == "False positive rate (log scale)"
    assert max(n_rows(spec)) <= 2 * 150
    # Default axis start: the power of ten below the smallest positive rate (~1/5,000 here).
    assert line["x"]["scale"]["domain"] == [1e-4, 1.0]
    text, sub = title_of(spec)
    auc = [roc_auc_score(labels[groups == g], scores[groups == g]) for g in (0, 1)]
    assert sub[0] == f"AUC: F {auc[0]:.3f}, M {auc[1]:.3f}"
    # Every kept point is the best TPR of the full curve at its FPR.
    curves = viz.roc_curves(scores, labels, groups, group_names=["F", "M"], max_points=150)
    for gid, name in enumerate(["F", "M"]):
        fpr, tpr, _ = roc_curve(labels[groups == gid], scores[groups == gid])
        kept = curves[curves["group"] == name]
        assert kept["fpr"].iloc[0] == 0 and kept["fpr"].iloc[-1] == 1 and kept["tpr"].iloc[-1] == 1
        for f, t in zip(kept["fpr"].iloc[1:], kept["tpr"].iloc[1:]):  # after the origin
            assert t == tpr[fpr <= f].max()
    assert_png(chart)


def test_roc_by_group_from_curves_mapping_and_frame():
    fpr = np.linspace(0, 1, 1001)
    curves = {"a": (fpr, np.sqrt(fpr)), "b": (fpr, fpr)}
    spec = viz.roc_by_group(curves, max_points=50).to_dict()
    assert max(n_rows(spec)) <= 2 * 50
    assert title_of(spec)[1][0] == "AUC: a 0.667, b 0.500"
    frame = pd.DataFrame({"group": ["a"] * 3, "fpr": [0.0, 0.01, 1.0], "tpr": [0.0, 0.2, 1.0]})
    spec = viz.roc_by_group(frame, fpr_min=1e-3).to_dict()
    shown = rows_with(spec, "fpr", "tpr", "group")
    assert (shown["fpr"] >= 1e-3).all()  # FPR = 0 cannot sit on a log axis


def test_roc_by_group_bad_input():
    s, y, g = np.zeros(4), np.array([True, True, False, False]), np.array([0, 0, 1, 1])
    with pytest.raises(ConfigError, match="one class only in group '0'"):
        viz.roc_by_group(s, y, g)
    with pytest.raises(ConfigError, match="to be bool"):
        viz.roc_by_group(s, y.astype(int), g)
    with pytest.raises(ConfigError, match="Missing: tpr"):
        viz.roc_by_group(pd.DataFrame({"group": ["a"], "fpr": [0.1]}))
    with pytest.raises(ConfigError, match="together with labels_"):
        viz.roc_by_group(s, y)


# --------------------------------------------------------------------------- sweeps
def sweep() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["SGD", "DP-SGD", "DP-SGD", "DP-SGD-S", "DP-SGD-S"],
            "epsilon": [math.inf, 1.0, 10.0, 1.0, 10.0],
            "gprp": [4.92, 2.0, 3.54, 1.5, 2.92],
            "gprp_ci_low": [4.0, 1.0, 3.0, 1.0, 2.0],
            "gprp_ci_high": [6.0, 3.0, 4.0, 2.0, 3.5],
            "accuracy": [0.85, 0.78, 0.83, 0.77, 0.82],
        }
    )


def test_gprp_vs_epsilon():
    chart = viz.gprp_vs_epsilon(sweep())
    spec = chart.to_dict()
    types = mark_types(spec)
    assert {"line", "errorbar", "rule", "rect", "text"} <= set(types)
    line = encodings_of(spec, "line")[0]
    assert line["x"]["field"] == "epsilon" and line["x"]["scale"]["type"] == "log"
    assert line["y"]["field"] == "gprp" and line["y"]["title"] == "GPRP (percentage points)"
    assert line["color"]["field"] == "method"
    assert list(color_scale(spec)) == ["SGD", "DP-SGD", "DP-SGD-S"]
    finite = rows_with(spec, "epsilon", "gprp")
    finite = finite[finite["method"] != "SGD"]
    assert len(finite) == 4
    labelled = rows_with(spec, "label")
    assert labelled["label"].tolist() == ["SGD (ε = ∞)"] and labelled["gprp"].tolist() == [4.92]
    assert "against ε" in title_of(spec)[0]
    assert_png(chart)


def test_gprp_vs_epsilon_from_entries_and_bad_input():
    entries = [
        {"method": "SGD", "epsilon": math.inf, "risk": FakeGroupRisk(by_group((5.0, 1.0)))},
        {"method": "DP-SGD", "epsilon": 2.0, "risk": by_group((3.0, 1.0)), "accuracy": [0.8, 0.82]},
        SimpleNamespace(method="DP-SGD", epsilon=8.0, risk=by_group((3.5, 1.0)), accuracy=0.84),
    ]
    table = viz.sweep_frame(entries)
    assert table["gprp"].tolist() == [4.0, 2.0, 2.5]
    assert table["gprp_ci_low"].iloc[0] == 1.0 and np.isnan(table["gprp_ci_low"].iloc[1])
    assert table["accuracy"].iloc[1] == pytest.approx(0.81)
    spec = viz.gprp_vs_epsilon(entries).to_dict()
    assert "errorbar" in mark_types(spec)
    with pytest.raises(ConfigError, match="to hold at least one finite epsilon"):
        viz.gprp_vs_epsilon(sweep().iloc[:1])
    with pytest.raises(ConfigError, match=r"to be in \(0, inf\] \(inf for SGD\)"):
        viz.gprp_vs_epsilon(sweep().assign(epsilon=0.0))
    with pytest.raises(ConfigError, match="Missing: gprp"):
        viz.gprp_vs_epsilon(sweep().drop(columns="gprp"))
    with pytest.raises(ConfigError, match=r"Expected entries\[0\]="):
        viz.sweep_frame([{"method": "SGD"}])


def test_accuracy_gprp_frontier():
    chart = viz.accuracy_gprp_frontier(sweep())
    spec = chart.to_dict()
    assert {"line", "text", "errorbar"} <= set(mark_types(spec))
    line = encodings_of(spec, "line")[0]
    assert line["x"]["field"] == "accuracy_pct" and line["x"]["title"] == "Test accuracy (%)"
    assert line["y"]["field"] == "gprp" and line["order"]["field"] == "eps_rank"
    assert encodings_of(spec, "text")[0]["text"]["field"] == "eps_label"
    data = rows_with(spec, "accuracy_pct", "eps_label")
    np.testing.assert_allclose(data["accuracy_pct"], 100 * sweep()["accuracy"])
    assert set(data["eps_label"]) == {"ε = ∞", "ε = 1", "ε = 10"}
    dp = data[data["method"] == "DP-SGD"].sort_values("eps_rank")
    assert dp["epsilon"].tolist() == [1.0, 10.0]
    assert "matched-utility" in title_of(spec)[0]
    assert_png(chart)
    with pytest.raises(ConfigError, match="Missing: accuracy"):
        viz.accuracy_gprp_frontier(sweep().drop(columns="accuracy"))


def test_gprp_vs_epsilon_axis_spans_the_runs_and_labels_have_two_decimals():
    """Issue 17: runs at ε ≈ 10 were squeezed against the right edge of a 1..10 log axis."""
    runs = pd.DataFrame({"method": ["SGD", "DP-SGD", "DP-SGD-S"], "epsilon": [math.inf, 9.97571, 9.9752],
                         "gprp": [1.39, 0.55, 0.47], "gprp_ci_low": [0.1, 0.05, 0.03],
                         "gprp_ci_high": [2.98, 1.98, 2.02], "accuracy": [0.823, 0.805, 0.804]})
    spec = viz.gprp_vs_epsilon(runs).to_dict()
    x = encodings_of(spec, "line")[0]["x"]
    lo, hi = x["scale"]["domain"]
    assert lo < 9.9752 / 1.5 and hi > 9.97571 * 1.5 and hi / lo < 3  # room on both sides, not 1..10
    labels = {r["eps_label"] for rows in spec["datasets"].values() for r in rows if "eps_label" in r}
    assert labels == {"ε = ∞", "ε = 9.98"}
    legend = [e["strokeDash"]["scale"]["domain"] for e in encodings_of(spec, "rule") if "strokeDash" in e]
    assert legend and "ε = ∞ (no DP): GPRP; shaded: its CI" in legend[0] and "CI (bootstrap)" in legend[0]
    # frontier: the two "ε = 9.98" labels at nearly the same place are drawn once
    spec = viz.accuracy_gprp_frontier(runs).to_dict()
    data = rows_with(spec, "eps_label", "show_label")
    assert data["show_label"].tolist().count(True) == 2
    assert data.loc[data["show_label"], "eps_label"].tolist().count("ε = 9.98") == 1


def test_label_positions_stack_distinct_labels_and_drop_duplicates():
    from fairpriv_lab.viz._sweep import _label_positions

    y, keep = _label_positions(np.array([80.0, 80.0, 90.0]), np.array([1.0, 1.0, 1.0]),
                               ["ε = 1", "ε = 2", "ε = 1"], y_span=4.0, x_span=20.0)
    assert keep.tolist() == [True, True, True]        # the third label is far to the right
    assert y[1] > y[0] and y[2] == pytest.approx(y[0])  # the second moved up a line
    _, keep = _label_positions(np.array([80.0, 80.01]), np.array([1.0, 1.01]), ["ε = 9.98"] * 2,
                               y_span=4.0, x_span=20.0)
    assert keep.tolist().count(True) == 1


# --------------------------------------------------------------------------- telemetry
def telemetry(steps=50, groups=2) -> pd.DataFrame:
    s, g = np.meshgrid(np.arange(steps), np.arange(groups), indexing="ij")
    s, g = s.ravel(), g.ravel()
    return pd.DataFrame(
        {
            "step": s,
            "group": g,
            "clip_bound": 1.0 + 0.5 * g,
            "grc": 0.8 + 0.4 * g,
            "frac_clipped": 0.5,
        }
    )


def test_clip_bounds_over_training_thins_50k_rows():
    tel = telemetry(steps=25_000)  # 50,000 rows
    tel["clip_bound"] = tel["step"].astype(float) + tel["group"]  # linear: bin means stay on it
    chart = viz.clip_bounds_over_training(tel, clip=1.0, group_names=["F", "M"])
    spec = chart.to_dict()
    assert max(n_rows(spec)) <= 2000
    line = encodings_of(spec, "line")[0]
    assert line["x"]["field"] == "step" and line["y"]["field"] == "clip_bound"
    assert line["y"]["title"] == "Clipping bound C_k (gradient norm)"
    assert "rule" in mark_types(spec)
    data = rows_with(spec, "step", "clip_bound")
    offset = data["group"].map({"F": 0, "M": 1})
    np.testing.assert_allclose(data["clip_bound"], data["step"] + offset)
    assert data["step"].min() < 25 and data["step"].max() > 24_975  # bins of 12.5 steps
    assert_png(chart)


def test_clip_bounds_facets_methods_and_reads_result_objects():
    res = SimpleNamespace(telemetry=telemetry(), method="DP-SGD-S")
    spec = viz.clip_bounds_over_training(res, group_names=["F", "M"]).to_dict()
    assert "facet" not in spec
    both = pd.concat([telemetry().assign(method="DP-SGD-F"), telemetry().assign(method="DP-SGD-S")])
    chart = viz.clip_bounds_over_training(both)
    spec = chart.to_dict()
    assert spec["facet"]["column"]["field"] == "method"
    assert spec["facet"]["column"]["sort"] == ["DP-SGD-S", "DP-SGD-F"]
    assert_png(chart)
    with pytest.raises(ConfigError, match="to hold clip bounds"):
        viz.clip_bounds_over_training(telemetry().assign(clip_bound=np.nan))
    with pytest.raises(ConfigError, match="Missing: clip_bound"):
        viz.clip_bounds_over_training(telemetry().drop(columns="clip_bound"))


# --------------------------------------------------------------------------- scatters
def test_grc_vs_gpr_pearson_in_title():
    from scipy.stats import pearsonr

    data = pd.DataFrame(
        {
            "group": list("abcd"),
            "grc": [0.8, 1.0, 1.2, 1.5],
            "gpr": [1.0, 2.5, 2.0, 4.0],
            "ci_low": [0, 1, 1, 3],
            "ci_high": [2, 3, 3, 5],
        }
    )
    chart = viz.grc_vs_gpr(data)
    spec = chart.to_dict()
    r = pearsonr(data["grc"], data["gpr"]).statistic
    assert title_of(spec)[0] == f"GPR against gradient contribution (Pearson r = {r:.2f})"
    point = encodings_of(spec, "point")[0]
    assert point["x"]["field"] == "grc" and point["y"]["field"] == "gpr"
    assert {"point", "errorbar", "text"} <= set(mark_types(spec))
    assert_png(chart)


def test_grc_vs_gpr_from_telemetry_and_risk():
    tel = telemetry()
    spec = viz.grc_vs_gpr(tel, FakeGroupRisk(by_group()), group_names=["Female", "Male"]).to_dict()
    data = rows_with(spec, "grc", "gpr").set_index("group")
    assert data.loc["Female", "grc"] == pytest.approx(0.8) and data.loc[
        "Male", "grc"
    ] == pytest.approx(1.2)
    assert "undefined" in title_of(spec)[0]  # two groups: r is always +-1, not shown
    with pytest.raises(ConfigError, match="to name the telemetry's integer group ids"):
        viz.grc_vs_gpr(tel, by_group())
    with pytest.raises(ConfigError, match="Missing: grc"):
        viz.grc_vs_gpr(by_group())


def test_loo_vs_aloo_points_and_mad():
    rng = np.random.default_rng(2)
    loo = SimpleNamespace(
        records=np.arange(10, 60), groups=np.repeat([0, 1], 25), ipr=rng.normal(0, 0.1, 50)
    )
    aloo = SimpleNamespace(
        records=np.arange(0, 60), groups=np.repeat([0, 1, 1], 20), ipr=rng.normal(0, 0.1, 60)
    )
    pairs = viz.paired_records(loo, aloo, group_names=["F", "M"])
    assert len(pairs) == 50 and pairs["record"].tolist() == list(range(10, 60))
    chart = viz.loo_vs_aloo(pairs)
    spec = chart.to_dict()
    mad = sum(abs(a - b) for a, b in zip(loo.ipr, aloo.ipr[10:])) / 50 * 100
    assert title_of(spec)[1][0].startswith(f"mean |difference| = {mad:.2f} pp over 50 records")
    circle = encodings_of(spec, "circle")[0]
    assert circle["x"]["field"] == "aloo_pp" and circle["y"]["field"] == "loo_pp"
    assert circle["color"]["field"] == "group"
    diag = rows_with(spec, "aloo_pp", "loo_pp")
    assert {"record", "group", "aloo_pp", "loo_pp"} <= columns(spec)
    assert len(diag) == 50
    assert_png(chart)
    with pytest.raises(ConfigError, match="to share audited records with aloo"):
        viz.paired_records(SimpleNamespace(records=np.array([99]), groups=[0], ipr=[0.1]), aloo)


def test_loo_vs_aloo_bins_50k_records():
    rng = np.random.default_rng(3)
    big = pd.DataFrame({"ipr_loo": rng.normal(0, 0.1, 50_000)})
    big["ipr_aloo"] = big["ipr_loo"] + rng.normal(0, 0.02, 50_000)
    chart = viz.loo_vs_aloo(big, bins=40)
    spec = chart.to_dict()
    assert "rect" in mark_types(spec) and "circle" not in mark_types(spec)
    cells = rows_with(spec, "x0", "count")
    assert cells["count"].sum() == 50_000 and len(cells) <= 40 * 40
    mad = np.mean(np.abs(big["ipr_loo"] - big["ipr_aloo"])) * 100
    assert f"mean |difference| = {mad:.2f} pp over 50,000 records" in title_of(spec)[1][0]
    assert_png(chart)
    with pytest.raises(ConfigError, match="Missing: ipr_aloo"):
        viz.loo_vs_aloo(big.drop(columns="ipr_aloo"))


# --------------------------------------------------------------------------- empirical epsilon
def test_empirical_vs_accounted_epsilon():
    runs = [
        {
            "method": "DP-SGD",
            "epsilon": 1.0,
            "empirical": SimpleNamespace(per_group={"F": 0.1, "M": 0.3}),
        },
        SimpleNamespace(
            method="DP-SGD",
            epsilon=8.0,
            empirical=SimpleNamespace(
                per_group=pd.DataFrame({"group": ["F", "M"], "epsilon_lower": [1.0, 2.0]})
            ),
        ),
        {"method": "SGD", "epsilon": math.inf, "empirical": {"F": 3.0, "M": 4.0}},
    ]
    table = viz.empirical_frame(runs)
    assert table.shape == (6, 4)
    chart = viz.empirical_vs_accounted_epsilon(table)
    spec = chart.to_dict()
    point = encodings_of(spec, "point")[0]
    assert point["x"]["field"] == "epsilon" and point["y"]["field"] == "epsilon_lower"
    assert point["y"]["title"] == "Empirical ε (lower bound)"
    pts = rows_with(spec, "epsilon", "epsilon_lower", "group")
    assert len(pts) == 4 and np.isfinite(pts["epsilon"]).all()
    text, sub = title_of(spec)
    assert sub == [
        "dashed: y = x (a valid bound stays below); largest ratio lower/accounted = 0.30",
        "2 row(s) with ε = ∞ (SGD) not shown",
    ]
    assert_png(chart)
    with pytest.raises(ConfigError, match="Missing: epsilon_lower"):
        viz.empirical_vs_accounted_epsilon(table.drop(columns="epsilon_lower"))


# --------------------------------------------------------------------------- export and display
def test_save_chart_formats(tmp_path):
    chart = viz.gpr_chart(by_group())
    png = viz.save_chart(chart, tmp_path / "sub" / "c.png", scale=1.0)
    assert png.read_bytes()[:8] == PNG
    svg = viz.save_chart(chart, tmp_path / "c.svg")
    assert "<svg" in svg.read_text()[:200]
    # (.html used to offer a CDN version; issue 18 removes it: test_save_chart_offline_html_inlines_vega)
    with pytest.raises(TypeError, match="offline"):
        viz.save_chart(chart, tmp_path / "c.html", offline=False)
    with pytest.raises(
        ConfigError, match=r"Expected path suffix='\.pdf' to be one of '\.png', '\.svg', '\.html'"
    ):
        viz.save_chart(chart, tmp_path / "c.pdf")
    with pytest.raises(ConfigError, match="to be an altair chart or a Vega-Lite dict"):
        viz.to_png_bytes("not a chart")


@pytest.mark.slow
def test_save_chart_offline_html_inlines_vega(tmp_path):
    html = viz.save_chart(viz.gpr_chart(by_group()), tmp_path / "c.html").read_text()
    assert "cdn.jsdelivr" not in html and len(html) > 200_000


def test_static_image_is_ipython_png():
    image = viz.static_image(viz.gpr_chart(by_group()), scale=1.0)
    assert type(image).__name__ == "Image" and image.data[:8] == PNG


def test_enable_notebook_rendering(restore_renderer, monkeypatch):
    monkeypatch.delenv(viz._export.RENDER_ENV, raising=False)
    assert viz.enable_notebook_rendering("static") == "static"
    assert alt.renderers.active == "fairpriv-static"
    png, meta = alt.renderers.get()(viz.gpr_chart(by_group()).to_dict())
    assert png["image/png"][:8] == PNG and meta["image/png"]["width"] > 100  # a palette PNG at scale 1
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png["image/png"])) as im:  # the metadata states the image's own size
        assert (meta["image/png"]["width"], meta["image/png"]["height"]) == im.size and im.mode == "P"
    # (interactive used to be altair's CDN "default" renderer and both HTML + PNG; issue 18:
    # no chart loads Vega from a CDN. Now a Vega 5 spec for the front end's own Vega + an SVG.)
    assert viz.enable_notebook_rendering("interactive") == "interactive"
    assert alt.renderers.active == "fairpriv-interactive"
    assert viz.enable_notebook_rendering("both") == "both"
    bundle, _ = alt.renderers.get()(viz.gpr_chart(by_group()).to_dict())
    assert viz.VEGA_MIMETYPE in bundle and "<svg" in bundle["image/svg+xml"][:200]
    assert "text/html" not in bundle
    assert viz.enable_notebook_rendering() == "both"
    monkeypatch.setenv(viz._export.RENDER_ENV, "static")
    assert viz.enable_notebook_rendering() == "static"
    monkeypatch.setenv(viz._export.RENDER_ENV, "fancy")
    with pytest.raises(ConfigError, match="Expected FAIRPRIV_CHART_RENDERER='fancy'"):
        viz.enable_notebook_rendering()
    with pytest.raises(ConfigError, match="Expected mode='web'"):
        viz.enable_notebook_rendering("web")


def test_missing_altair_gives_one_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "altair", None)  # makes `import altair` raise ImportError
    with pytest.raises(ImportError) as err:
        viz.gpr_chart(by_group())
    assert str(err.value) == viz.MISSING_UI_MESSAGE
    assert "pip install fairpriv-lab[ui]" in viz.MISSING_UI_MESSAGE


def test_import_viz_does_not_import_altair():
    code = "import sys, fairpriv_lab.viz; print('altair' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def clip_sweep_tables():
    """Seed tables of a two-method, two-group sweep over C = 1, 3, 10 (as studies.seed_table writes them)."""
    rows, grows, crows = [], [], []
    for v, gap in (("DP-SGD", 0.4), ("DP-SGD-S (norm)", 0.2)):
        for C, frac in ((1.0, 0.4), (3.0, 0.15), (10.0, 0.0)):
            rows.append({"C": C, "variant": v, "mean": gap, "seed_ci_low": gap - 0.1, "seed_ci_high": gap + 0.1,
                         "floor_mean": 0.05})
            for g, level in (("Male", 1.0), ("Female", 1.0 - gap)):
                grows.append({"C": C, "variant": v, "group": g, "mean": level, "seed_ci_low": level - 0.1,
                              "seed_ci_high": level + 0.1, "floor_mean": 0.0})
                crows.append({"C": C, "variant": v, "group": g, "mean": frac, "seed_ci_low": frac,
                              "seed_ci_high": frac})
    return pd.DataFrame(rows), pd.DataFrame(grows), pd.DataFrame(crows)


def test_clipping_sweep_rows_share_the_log_c_axis_and_label_the_diagnostic():
    gprp, gpr, clipped = clip_sweep_tables()
    controls = gprp[gprp.C == 3.0].head(1).assign(variant="DP-SGD noise-matched to DP-SGD-S (norm)", mean=0.45)
    chart = viz.clipping_sweep(gprp, gpr, clipped, controls=controls)
    spec = chart.to_dict()
    assert len(spec["vconcat"]) == 3 and all(len(r["hconcat"]) == 2 for r in spec["vconcat"][1:])
    xs = [e["x"] for e in encodings_of(spec, "line")]
    assert all(x["field"] == "C" and x["scale"]["type"] == "log" for x in xs)
    assert xs[0]["axis"]["values"] == [1.0, 3.0, 10.0]
    ys = {e["y"]["title"] for e in encodings_of(spec, "line")}
    assert ys == {"GPRP (pp)", "GPR (pp)", "Fraction clipped (NON-PRIVATE diagnostic)"}
    assert {"line", "errorbar", "tick", "point"} <= set(mark_types(spec))
    # methods keep their fixed colours; the control is grey, in the same legend
    scale = color_scale(spec)
    assert scale["DP-SGD"] == viz.SERIES_COLORS["DP-SGD"]
    assert re.fullmatch(r"#([0-9a-f]{2})\1\1", scale["DP-SGD noise-matched to DP-SGD-S (norm)"])
    # the per-group rows carry each (C, variant, group) once, with its interval
    data = rows_with(spec, "group", "seed_ci_high")
    assert len(data) in (6, 12) and set(data["variant"]) <= {"DP-SGD", "DP-SGD-S (norm)"}
    assert "seed-level 95 % t CI" in title_of(spec["vconcat"][0])[1][0]
    assert_png(chart)


def test_clipping_sweep_rejects_bad_tables():
    gprp, gpr, clipped = clip_sweep_tables()
    with pytest.raises(ConfigError, match="Missing: seed_ci_low"):
        viz.clipping_sweep(gprp.drop(columns="seed_ci_low"), gpr, clipped)
    with pytest.raises(ConfigError, match="Missing: group"):
        viz.clipping_sweep(gprp, gpr, clipped.drop(columns="group"))
    with pytest.raises(ConfigError, match=r"C.*to be > 0"):
        viz.clipping_sweep(gprp.assign(C=0.0), gpr, clipped)
    with pytest.raises(ConfigError, match="controls"):
        viz.clipping_sweep(gprp, gpr, clipped, controls=pd.DataFrame())


def test_compact_png_keeps_the_picture_in_fewer_bytes():
    """Charts are stored as 256-colour palette PNGs: same size in pixels, same look, far fewer bytes."""
    import base64
    import io

    from PIL import Image

    from fairpriv_lab.viz._core import vl_convert
    from fairpriv_lab.viz._export import compact_png

    gprp, gpr, clipped = clip_sweep_tables()
    spec = viz.clipping_sweep(gprp, gpr, clipped).to_dict()
    raw = vl_convert().vegalite_to_png(spec, scale=1.0)
    small = compact_png(raw)
    assert small[:8] == PNG and len(small) < len(raw) / 3
    a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGBA"), dtype=float) for x in (raw, small))
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 2.0 and np.percentile(np.abs(a - b).max(axis=2), 99) < 40
    assert Image.open(io.BytesIO(small)).mode == "P"
    assert Image.open(io.BytesIO(viz.to_png_bytes(spec, scale=1.0))).mode == "P"  # what every export stores
    bundle, _ = viz.chart_mimebundle(spec)
    assert Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).mode == "P"


def test_altair_import_skips_jsonschemas_slow_optional_import():
    # jsonschema (imported by altair) imports rfc3987_syntax when installed: 1.9 s of grammar
    # compilation for a format check altair never makes. viz's altair() imports altair without
    # it unless jsonschema is already imported; a later import of the package still works.
    import importlib.util

    if importlib.util.find_spec("rfc3987_syntax") is None:
        pytest.skip("rfc3987_syntax is not installed here: nothing to skip")
    probe = ("import sys; from fairpriv_lab.viz._core import altair; {pre}alt = altair(); "
             "print('rfc3987_syntax' in sys.modules, alt.Chart is not None); {post}")
    runs = {
        "fresh": probe.format(pre="", post="import rfc3987_syntax; print(rfc3987_syntax.__name__)"),
        "jsonschema first": probe.format(pre="import jsonschema; ", post=""),
    }
    out = {k: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
           for k, code in runs.items()}
    for k, res in out.items():
        assert res.returncode == 0, (k, res.stderr)
    assert out["fresh"].stdout.split() == ["False", "True", "rfc3987_syntax"]
    assert out["jsonschema first"].stdout.split() == ["True", "True"]


def test_altair_import_retries_as_usual_when_the_guarded_import_fails(monkeypatch):
    # were the optional package needed after all, the guarded import fails and a plain one serves
    import importlib

    from fairpriv_lab.viz import _core

    real = importlib.import_module
    calls = []

    def flaky(name, *args):
        calls.append(sys.modules.get(_core.SLOW_OPTIONAL_IMPORT, "absent"))
        if len(calls) == 1:
            raise ImportError("needs rfc3987_syntax")
        return real(name, *args)

    monkeypatch.delitem(sys.modules, "altair")
    monkeypatch.setattr(_core.importlib, "import_module", flaky)
    assert _core.altair() is real("altair")
    assert len(calls) == 2 and calls[1] is not None  # the retry ran without the guard
