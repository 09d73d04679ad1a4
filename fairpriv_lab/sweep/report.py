"""Sweep outputs: tidy rows per point, failure tables, files (CSV, Parquet, HTML), progress bar."""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .._core.exceptions import ConfigError
from .executor import Progress, TaskFailure


def point_rows(value: Any) -> pd.DataFrame:
    """Normalise a point function's result (DataFrame, mapping, list of mappings) to a frame."""
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    if isinstance(value, Mapping):
        return pd.DataFrame([dict(value)])
    if isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(v, Mapping) for v in value):
        return pd.DataFrame([dict(v) for v in value])
    summary = getattr(value, "summary", None)
    if callable(summary):
        return point_rows(summary())
    raise ConfigError(
        f"Expected the point function to return a DataFrame, a mapping or a list of mappings, "
        f"got {type(value).__name__}"
    )


def failures_frame(
    points: Sequence[Mapping[str, Any]], keys: Sequence[str], failed: Mapping[int, TaskFailure]
) -> pd.DataFrame:
    """One row per failed point: point, point_key, its settings, error_type, message, traceback."""
    rows = []
    for i in sorted(failed):
        f = failed[i]
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in points[i].items()}
        rows.append({"point": i, "point_key": keys[i], **settings, "error_type": f.error_type,
                     "message": f.message, "traceback": f.traceback})
    if not rows:
        return pd.DataFrame(columns=["point", "point_key", "error_type", "message", "traceback"])
    return pd.DataFrame(rows)


def notebook_failure_line(failure: TaskFailure, notebook: Path) -> str:
    """One line naming the failing cell of a notebook run and where its output is."""
    return f"FAILED: {failure.error_type}: {failure.message} (see {notebook})"


def write_table(table: pd.DataFrame, stem: Path) -> dict[str, Path]:
    """Write stem.csv, and stem.parquet when pyarrow (or fastparquet) is installed."""
    files = {"csv": stem.with_suffix(".csv")}
    table.to_csv(files["csv"], index=False)
    try:
        table.to_parquet(stem.with_suffix(".parquet"), index=False)
        files["parquet"] = stem.with_suffix(".parquet")
    except ImportError:
        pass
    return files


ProgressOption = Literal["auto", "none"] | Callable[[Progress], None] | None


def progress_reporter(progress: ProgressOption, total: int, resumed: int, *, label: str = "sweep",
                      unit: str = "point"):
    """Return (callback, closer) for a progress option: a bar or log lines, a callable, or nothing.

    "auto" draws a tqdm bar in a notebook or on a terminal; when stderr is not a terminal (a
    log file, CI) it prints one plain line each time a point finishes instead of a bar
    redrawn with carriage returns. ``label`` names the work ("sweep", "notebooks") and
    ``unit`` what is counted ("point", "run").
    """
    if progress is None or progress == "none":
        return None, lambda: None
    if progress == "auto":
        if _in_notebook() or sys.stderr.isatty():
            return tqdm_progress(total, resumed, label=label, unit=unit)
        return line_progress(label), lambda: None
    if callable(progress):
        return progress, lambda: None
    raise ConfigError(f"Expected progress={progress!r} to be one of 'auto', 'none', None or a callable")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def line_progress(label: str = "sweep"):
    """Return a progress callback printing one line ``label: ...`` to stderr per finished task."""
    state = {"finished": None}

    def update(p: Progress) -> None:
        finished = p.done + p.failed
        if finished != state["finished"]:
            state["finished"] = finished
            print(f"{label}: {p}", file=sys.stderr, flush=True)

    return update


def tqdm_progress(total: int, resumed: int, *, label: str = "sweep", unit: str = "point"):
    """Return a progress callback drawing a tqdm bar (a widget in notebooks) and its closer.

    The bar counts finished points (done or failed; resumed ones from the start) and shows
    tqdm's rate and ETA; the postfix says done / running / failed and is redrawn only when a
    count changes, so a log file gets one line per change, not one per poll.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=resumed, unit=unit, desc=label, dynamic_ncols=True)
    state: dict[str, Any] = {"n": resumed, "text": None}

    def update(p: Progress) -> None:
        finished = p.done + p.failed
        text = f"done {p.done}, running {p.running}, failed {p.failed}"
        if text != state["text"]:
            state["text"] = text
            bar.set_postfix_str(text, refresh=finished == state["n"])
        if finished > state["n"]:
            bar.update(finished - state["n"])
            state["n"] = finished

    return update, bar.close


MAX_HTML_ROWS = 2000

# Run-level columns shown per point (and auditor) in the summary page, when present.
_RUN_COLUMNS = ("gprp", "gprp_ci_low", "gprp_ci_high", "floor_gap", "accuracy", "epsilon", "from_cache",
                "device", "seconds")


def runs_frame(table: pd.DataFrame, settings: Sequence[str] = ()) -> pd.DataFrame:
    """One row per point (and auditor): point, the grid settings, GPRP with CI, accuracy, ε, ...

    ``method`` and ``epsilon`` (the accounted ε, inf for SGD) come from the result when the
    point function reports them, so the charts work whatever the grid's keys are called.
    """
    if table.empty:
        return table
    keys = ["point", *[c for c in settings if c in table.columns and c != "point"]]
    for extra in ("method", "auditor"):
        if extra in table.columns and extra not in keys:
            keys.append(extra)
    wanted = [c for c in _RUN_COLUMNS if c in table.columns and c not in keys]
    return table[keys + wanted].drop_duplicates(subset=keys).reset_index(drop=True)


def write_summary_html(
    table: pd.DataFrame, failures: pd.DataFrame, path: Path, *, title: str, settings: Sequence[str] = ()
) -> Path:
    """Write a self-contained page: charts (when fairpriv_lab.viz has them), points, failures."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{table['point'].nunique() if not table.empty else 0} points finished, "
             f"{len(failures)} failed.</p>"]
    parts += _charts_html(table, settings)
    present = [c for c in settings if c in table.columns]
    fixed = [c for c in present if table[c].astype(str).nunique() == 1]
    varying = [c for c in present if c not in fixed]
    parts.append("<h2>Points</h2>")
    if fixed:
        parts.append("<p>Same for every point: " + ", ".join(
            f"<code>{html.escape(c)}={html.escape(str(table[c].iloc[0]))}</code>" for c in fixed) + "</p>")
    parts.append(runs_frame(table, varying).to_html(index=False, na_rep="", float_format=_fmt))
    if not failures.empty:
        parts.append("<h2>Failures</h2>")
        parts.append(failures.drop(columns=["traceback"]).to_html(index=False))
    parts.append("<h2>Full table</h2>")
    if len(table) > MAX_HTML_ROWS:  # keep the page light; the CSV has everything
        parts.append(f"<p>First {MAX_HTML_ROWS} of {len(table)} rows; all are in results.csv.</p>")
    parts.append(table.head(MAX_HTML_ROWS).to_html(index=False, na_rep="", float_format=_fmt))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    path.write_text(page, encoding="utf-8")
    return path


def chart_frames(table: pd.DataFrame, settings: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """Per combination of the other varying settings: (label, rows for the sweep charts).

    ``settings`` are the grid's keys; those that vary and are not fixed by (method, ε) and
    are not seeds make one pair of charts per combination of their values.

    Rows are one per (method, ε) of the first auditor (PA-ALOOA when present): GPRP with
    its CI and the mean test accuracy. Points differing only by seed are averaged (their CIs
    dropped, since a mean of CIs is not a CI).
    """
    runs = runs_frame(table, settings)
    needed = {"method", "epsilon", "gprp"}
    if runs.empty or not needed <= set(runs.columns):
        return []
    if "auditor" in runs.columns:
        first = "PA-ALOOA" if "PA-ALOOA" in set(runs["auditor"]) else runs["auditor"].iloc[0]
        runs = runs[runs["auditor"] == first]
    cells = runs.groupby(["method", "epsilon"], dropna=False)
    facets = [
        c for c in settings if c in runs.columns and not c.rsplit(".", 1)[-1].endswith("seed")
        and runs[c].astype(str).nunique() > 1  # varies ...
        and cells[c].nunique(dropna=False).max() > 1  # ... and is not fixed by (method, epsilon)
    ]
    out = []
    groups = runs.groupby([runs[c].astype(str) for c in facets], sort=False) if facets else [((), runs)]
    for values, part in list(groups)[:8]:
        values = values if isinstance(values, tuple) else (values,)
        label = ", ".join(f"{c}={v}" for c, v in zip(facets, values))
        cols = [c for c in ("gprp", "gprp_ci_low", "gprp_ci_high", "accuracy") if c in part.columns]
        # Accounted ε lands just under the target (0.9975 for 1): 3 significant digits label
        # the points readably and let seeds of one setting meet in one cell.
        part = part.assign(epsilon=[float(f"{e:.3g}") for e in part["epsilon"]])
        agg = part.groupby(["method", "epsilon"], sort=False)[cols]
        frame = agg.mean().reset_index()
        if (agg.size() > 1).any():
            frame = frame.drop(columns=[c for c in ("gprp_ci_low", "gprp_ci_high") if c in frame.columns])
        out.append((label, frame))
    return out


def _charts_html(table: pd.DataFrame, settings: Sequence[str]) -> list[str]:
    """Inline SVG charts from fairpriv_lab.viz: GPRP against ε per method, accuracy-GPRP frontier."""
    try:
        from .. import viz
    except ImportError:
        return []
    out = []
    for label, frame in chart_frames(table, settings):
        for builder, heading in ((viz.gprp_vs_epsilon, "GPRP against ε per method"),
                                 (viz.accuracy_gprp_frontier, "Accuracy–GPRP frontier")):
            try:
                svg = viz.to_svg(builder(frame))
            except (ValueError, KeyError):
                continue  # e.g. no finite ε (SGD only) or no accuracy column: no such chart
            sub = f" ({html.escape(label)})" if label else ""
            out.append(f"<h2>{heading}{sub}</h2><div class='chart'>{svg}</div>")
    return out


def write_runs_index(runs: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Write an HTML index of notebook runs: status, parameters, failing cell, error, links."""
    table = runs.copy()
    for col in ("notebook", "html"):
        table[col] = [
            f"<a href='{html.escape(Path(p).name)}'>{html.escape(Path(p).name)}</a>" if isinstance(p, str) else ""
            for p in table[col]
        ]
    body = table.to_html(index=False, escape=False, na_rep="", float_format=_fmt,
                         formatters={"error": lambda e: html.escape(str(e)) if isinstance(e, str) else ""})
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else f"{x:.4g}"


# Wide tables scroll inside the page instead of pushing it sideways; headers wrap.
_CSS = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:90%;"
        "display:block;overflow-x:auto;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:2px 6px}th{background:#eee;white-space:normal;"
        "overflow-wrap:anywhere;min-width:4em}")
