"""Thin adapters: result objects (duck-typed) to the tidy DataFrames the builders take.

Nothing here imports ``audit``, ``risk`` or ``training``: an object qualifies by its
attributes (``.by_group``, ``.ipr``/``.groups``, ``.telemetry``, ``.per_group``), so the charts
also work on DataFrames built by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._core.validate import fail
from ._core import labels, require_frame

GPR_COLUMNS = ("group", "gpr", "ci_low", "ci_high")
GPR_OPTIONAL = ("floor", "n")


def by_group_frame(risk: Any, *, name: str = "risk") -> pd.DataFrame:
    """Return ``risk.by_group`` (a GroupRisk-like object) or risk itself if it is a DataFrame.

    Parameters
    ----------
    risk : GroupRisk-like or pandas.DataFrame
        Anything with a ``by_group`` DataFrame (columns ``group, n, gpr, ci_low, ci_high,
        floor`` in percentage points), or that DataFrame.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    pandas.DataFrame
        A copy with at least the columns ``group, gpr, ci_low, ci_high``.
    """
    frame = risk
    if not isinstance(risk, pd.DataFrame) and hasattr(risk, "by_group"):
        frame = risk.by_group() if callable(risk.by_group) else risk.by_group
    if (
        isinstance(frame, pd.DataFrame)
        and "group" not in frame.columns
        and frame.index.name == "group"
    ):
        frame = frame.reset_index()  # fairlearn's MetricFrame keeps groups in the index
    frame = require_frame(frame, name, GPR_COLUMNS, GPR_OPTIONAL)
    frame["group"] = labels(frame["group"])
    return frame


def gprp_of(risk: Any, frame: pd.DataFrame) -> tuple[float, float, float]:
    """GPRP (pp) and its CI: from ``risk.difference()``/``difference_ci()`` if present, else max-min."""
    if hasattr(risk, "difference") and callable(risk.difference):
        value = float(risk.difference())
        lo = hi = math.nan
        if hasattr(risk, "difference_ci") and callable(risk.difference_ci):
            lo, hi = (float(v) for v in risk.difference_ci())
        return value, lo, hi
    gpr = pd.to_numeric(frame["gpr"], errors="coerce")
    return float(gpr.max() - gpr.min()), math.nan, math.nan


def gpr_series_frame(
    risks: Any, *, series: str, name: str
) -> tuple[pd.DataFrame, dict[str, tuple[float, float, float]]]:
    """Stack one or several GPR tables into one frame with a `series` column, plus GPRP per series."""
    if isinstance(risks, Mapping):
        if not risks:
            raise fail(
                name, "an empty mapping", f"to map {series} names to GroupRisk or DataFrames"
            )
        parts, gprp = [], {}
        for key, risk in risks.items():
            frame = by_group_frame(risk, name=f"{name}[{key!r}]")
            frame[series] = str(key)
            parts.append(frame)
            gprp[str(key)] = gprp_of(risk, frame)
        return pd.concat(parts, ignore_index=True), gprp
    frame = by_group_frame(risks, name=name)
    if series in frame.columns:
        frame[series] = frame[series].astype(str)
        gprp = {
            str(k): gprp_of(None, part)
            for k, part in frame.groupby(series, sort=False, observed=True)
        }
        return frame, gprp
    frame[series] = ""
    return frame, {"": gprp_of(risks, frame)}


def record_frame(record_risk: Any, *, group_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Tidy per-record table of a RecordRisk-like object.

    Parameters
    ----------
    record_risk : RecordRisk-like
        Anything with arrays ``ipr`` (fractions, shape ``(m,)``) and ``groups`` (int ``(m,)``);
        ``records``, ``floor``, ``accuracy`` and ``auditor`` are used when present.
    group_names : sequence of str, optional
        Names of the integer group ids.

    Returns
    -------
    pandas.DataFrame
        Columns ``record, group, ipr`` and, when available, ``floor, accuracy, auditor``
        (IPR and floor as fractions, as in ``RecordRisk``).
    """
    if isinstance(record_risk, pd.DataFrame):
        return record_risk.copy()
    for attr in ("ipr", "groups"):
        if not hasattr(record_risk, attr):
            raise fail(
                "record_risk",
                type(record_risk).__name__,
                "to be a DataFrame or a RecordRisk-like object with arrays ipr and groups",
            )
    ipr = np.asarray(record_risk.ipr, dtype=np.float64)
    records = getattr(record_risk, "records", None)
    out = pd.DataFrame(
        {
            "record": np.arange(ipr.shape[0]) if records is None else np.asarray(records),
            "group": labels(np.asarray(record_risk.groups), group_names).to_numpy(),
            "ipr": ipr,
        }
    )
    for attr in ("floor", "accuracy"):
        if getattr(record_risk, attr, None) is not None:
            out[attr] = np.asarray(getattr(record_risk, attr), dtype=np.float64)
    if getattr(record_risk, "auditor", None) is not None:
        out["auditor"] = str(record_risk.auditor)
    return out


def paired_records(
    loo: Any, aloo: Any, *, group_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Join exact PA-LOOA and PA-ALOOA per-record risks on the record index.

    Parameters
    ----------
    loo, aloo : RecordRisk-like or pandas.DataFrame
        Per-record results (``records, groups, ipr`` as fractions) of the two auditors.
    group_names : sequence of str, optional
        Names of the integer group ids.

    Returns
    -------
    pandas.DataFrame
        Columns ``record, group, ipr_loo, ipr_aloo`` (fractions), one row per record audited by
        both.
    """
    a = record_frame(loo, group_names=group_names)[["record", "group", "ipr"]]
    b = record_frame(aloo, group_names=group_names)[["record", "ipr"]]
    out = a.merge(b, on="record", suffixes=("_loo", "_aloo"))
    if len(out) == 0:
        raise fail("loo", "records disjoint from aloo's", "to share audited records with aloo")
    return out


def sweep_frame(entries: Iterable[Any]) -> pd.DataFrame:
    """Summarise runs across methods and epsilons for :func:`gprp_vs_epsilon` and the frontier.

    Parameters
    ----------
    entries : iterable of mapping or object
        Each with ``method`` (str), ``epsilon`` (float, ``math.inf`` for SGD), ``risk``
        (GroupRisk-like, or a by-group DataFrame) and optionally ``accuracy`` (fraction or
        array of per-model accuracies, averaged).

    Returns
    -------
    pandas.DataFrame
        Columns ``method, epsilon, gprp, gprp_ci_low, gprp_ci_high, accuracy`` (GPRP in
        percentage points, accuracy a fraction; NaN where unknown).
    """
    rows = []
    for i, entry in enumerate(entries):
        get = (
            entry.get if isinstance(entry, Mapping) else lambda k, d=None, e=entry: getattr(e, k, d)
        )
        method, eps, risk = get("method"), get("epsilon"), get("risk")
        if method is None or eps is None or risk is None:
            raise fail(f"entries[{i}]", entry, "to provide method, epsilon and risk")
        frame = by_group_frame(risk, name=f"entries[{i}].risk")
        gprp, lo, hi = gprp_of(risk, frame)
        acc = get("accuracy", None)
        acc = math.nan if acc is None else float(np.nanmean(np.asarray(acc, dtype=np.float64)))
        rows.append(
            {
                "method": str(method),
                "epsilon": float(eps),
                "gprp": gprp,
                "gprp_ci_low": lo,
                "gprp_ci_high": hi,
                "accuracy": acc,
            }
        )
    if not rows:
        raise fail("entries", "an empty iterable", "to hold at least one run")
    return pd.DataFrame(rows)


def telemetry_frame(result: Any, *, group_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Return ``result.telemetry`` (or result, if a DataFrame) with group ids mapped to names."""
    frame = result.telemetry if hasattr(result, "telemetry") else result
    frame = require_frame(
        frame, "telemetry", ("step", "group"), ("clip_bound", "grc", "frac_clipped")
    )
    frame["group"] = labels(frame["group"], group_names)
    method = getattr(result, "method", None)
    if method is not None and "method" not in frame.columns:
        frame["method"] = str(method)
    return frame


def grc_frame(
    telemetry: Any, risk: Any, *, group_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean GRC per group (over steps) joined with the group's GPR and CI.

    Parameters
    ----------
    telemetry : EnsembleResult-like or pandas.DataFrame
        Tidy telemetry with columns ``step, group, grc``.
    risk : GroupRisk-like or pandas.DataFrame
        By-group GPR table (``group, gpr, ci_low, ci_high`` in percentage points).
    group_names : sequence of str, optional
        Names of integer group ids in the telemetry; required when the telemetry holds ids
        and the GPR table holds names.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, grc, gpr, ci_low, ci_high``.
    """
    tel = telemetry.telemetry if hasattr(telemetry, "telemetry") else telemetry
    tel = require_frame(tel, "telemetry", ("step", "group", "grc"))
    gr = by_group_frame(risk, name="risk")
    if (
        group_names is None
        and tel["group"].dtype.kind in "iu"
        and not set(tel["group"].astype(str)) <= set(gr["group"])
    ):
        raise fail(
            "group_names",
            None,
            "to name the telemetry's integer group ids",
            hint="The telemetry holds ids but the GPR table holds names",
        )
    tel["group"] = labels(tel["group"], group_names)
    grc = tel.groupby("group", observed=True)["grc"].mean().rename("grc").reset_index()
    out = grc.merge(gr[["group", "gpr", "ci_low", "ci_high"]], on="group")
    if len(out) == 0:
        raise fail("telemetry", "groups disjoint from risk's", "to share group names with risk")
    return out


def empirical_frame(runs: Mapping[Any, Any] | Iterable[Any]) -> pd.DataFrame:
    """Per-group empirical epsilon lower bounds beside the accounted epsilon of each run.

    Parameters
    ----------
    runs : iterable of mapping or object
        Each with ``epsilon`` (accounted), ``empirical`` (an EmpiricalEpsilon-like object whose
        ``per_group`` is a mapping group -> lower bound or a DataFrame with ``group`` and one of
        ``epsilon_lower, eps_lower, lower, epsilon``) and optionally ``method``.

    Returns
    -------
    pandas.DataFrame
        Columns ``method, group, epsilon, epsilon_lower``.
    """
    rows = []
    for i, run in enumerate(runs):
        get = run.get if isinstance(run, Mapping) else lambda k, d=None, r=run: getattr(r, k, d)
        eps, emp = get("epsilon"), get("empirical")
        if eps is None or emp is None:
            raise fail(f"runs[{i}]", run, "to provide epsilon and empirical")
        per_group = getattr(emp, "per_group", emp)
        if isinstance(per_group, pd.DataFrame):
            col = next(
                (c for c in ("epsilon_lower", "eps_lower", "lower", "epsilon") if c in per_group),
                None,
            )
            if "group" not in per_group or col is None:
                raise fail(
                    f"runs[{i}].empirical.per_group",
                    f"a DataFrame with columns {list(per_group.columns)}",
                    "to have columns group and epsilon_lower",
                )
            items = zip(per_group["group"], per_group[col])
        elif isinstance(per_group, Mapping):
            items = per_group.items()
        else:
            raise fail(f"runs[{i}].empirical", type(emp).__name__, "to have a per_group table")
        for g, lower in items:
            rows.append(
                {
                    "method": str(get("method", "")),
                    "group": str(g),
                    "epsilon": float(eps),
                    "epsilon_lower": float(lower),
                }
            )
    if not rows:
        raise fail("runs", "an empty iterable", "to hold at least one run")
    return pd.DataFrame(rows)
