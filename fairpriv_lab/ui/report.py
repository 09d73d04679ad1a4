"""Self-contained HTML reports of audit results: tables and charts in one offline page.

:func:`write_report` turns one ``AuditResult`` (or several, e.g. a method comparison) into a
single HTML file with no external resources: charts are rendered to inline SVG by vl-convert
(through :func:`fairpriv_lab.viz.to_svg`), tables are plain HTML, styles are inline. The page
opens offline, in a mail attachment, or on a course website. Used by
``fairpriv-lab audit ... --html`` and ``fairpriv-lab report CACHE_KEY_OR_DIR``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .._core import validate as V
from .._core.io import atomic_write
from .._core.vocabulary import GROUP_METHODS, METHOD_LABELS

__all__ = ["report_html", "write_report", "load_results"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #ccc}
h3{font-size:1.05em;margin-top:1.4em}
table.fp{border-collapse:collapse;margin:.6em 0;font-size:.9em;display:block;overflow-x:auto;max-width:100%}
table.fp th{white-space:normal;overflow-wrap:anywhere;min-width:3.5em}
table.fp th,table.fp td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
table.fp th{background:#f3f3f3}table.fp td:first-child,table.fp th:first-child{text-align:left}
.meta{color:#555;font-size:.9em}.charts{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.chart{max-width:100%}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.4em 0}
dt{font-weight:600}dd{margin:0}.note{background:#f7f7f2;border-left:4px solid #c9b458;padding:.4em .8em;font-size:.9em}
"""

def _note() -> str:
    """Return the page's terms, each defined once (fairpriv_lab._core.glossary, shared with the demo)."""
    from .._core.glossary import TERMS

    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in TERMS.items())
    return ('<details class="note" open><summary>What the numbers mean (GPR, GPRP and floors in '
            f"percentage points)</summary><dl>{items}</dl></details>")


def _as_results(results: Any) -> list[tuple[str, Any]]:
    """Normalise one result, a sequence, or a mapping label -> result into (label, result) pairs."""
    if isinstance(results, Mapping):
        items = [(str(k), v) for k, v in results.items()]
    elif isinstance(results, Sequence) and not isinstance(results, str | bytes):
        items = [(_label(r), r) for r in results]
    else:
        items = [(_label(results), results)]
    if not items:
        raise V.fail("results", results, "to hold at least one AuditResult")
    for label, r in items:
        if not hasattr(r, "group_risk") or not hasattr(r, "config"):
            raise V.fail(f"results[{label!r}]", type(r).__name__, "to be an AuditResult (from fairpriv_lab.experiment.run)")
    return items


def _label(result: Any) -> str:
    cfg = getattr(result, "config", None)
    return str(getattr(cfg, "label", type(result).__name__))


def _eps(x: float) -> str:
    return "∞" if not math.isfinite(x) else f"{x:.3g}"


def _chart_html(chart: Any, images: str) -> str:
    from .. import viz

    desc = html.escape(str(chart.to_dict().get("description", "chart")))
    if images == "png":
        data = base64.b64encode(viz.to_png_bytes(chart, scale=1.5)).decode("ascii")
        return f'<div class="chart"><img alt="{desc}" src="data:image/png;base64,{data}"></div>'
    svg = viz.to_svg(chart)
    if svg.startswith("<?xml"):
        svg = svg.split("?>", 1)[1]
    return f'<div class="chart" role="img" aria-label="{desc}">{svg}</div>'


def _table(frame: Any, *, digits: int = 2) -> str:
    return frame.to_html(index=False, classes="fp", border=0, float_format=lambda v: f"{v:.{digits}f}",
                         na_rep="–", escape=True)


def _result_section(label: str, result: Any, *, auditor: str | None, images: str) -> str:
    from .. import viz

    auditors = list(result.group_risk)
    main = auditor if auditor is not None else auditors[0]
    V.choice("auditor", main, auditors)
    order = list(result.group_names)
    cfg = result.config
    t = result.timings if isinstance(getattr(result, "timings", None), Mapping) else {}
    meta = (
        f"{result.n_models} models · {len(result.empirical_record)} audited records · "
        f"test accuracy {100 * result.accuracy:.1f} % · ε = {_eps(result.epsilon)} "
        f"(δ = {result.delta:.2g}) · {html.escape(_privacy_note(result))} · "
        f"{cfg.audit.estimator} estimator · "
        f"{t.get('total', math.nan):.1f} s · fairpriv-lab {html.escape(str(result.version))}"
        + (f" · cache key <code>{html.escape(result.cache_key[:12])}</code>" if result.cache_key else "")
    )
    summary = result.summary()
    cols = ["auditor", "group", "n", "gpr", "ci_low", "ci_high", "floor", "gprp", "gprp_ci_low",
            "gprp_ci_high", "gprp_floor", "minority_minus_majority", "mmm_ci_low", "mmm_ci_high",
            "empirical_epsilon", "empirical_epsilon_dp", "empirical_epsilon_cap", "test_accuracy"]
    from .._core.glossary import EMPIRICAL_CAP

    summary = summary[[c for c in cols if c in summary.columns]].rename(columns={
        "empirical_epsilon": "ε̂ (lower bound, heuristic)", "empirical_epsilon_dp": "ε̂ rigorous (ε, δ)",
        "empirical_epsilon_cap": EMPIRICAL_CAP.format(n_models=result.n_models)})
    charts = [viz.gpr_chart(result.group_risk[main], group_order=order, title=f"{main}: GPR by group")]
    if len(auditors) > 1:
        charts.append(viz.auditors_side_by_side(result.group_risk, group_order=order))
    if main in result.record_risk:
        charts.append(viz.ipr_distribution(result.record_risk[main], group_names=order, group_order=order))
    tel = getattr(result, "telemetry", None)
    if tel is not None and len(tel) and "clip_bound" in tel and tel["clip_bound"].notna().any() \
            and cfg.train.method in GROUP_METHODS:
        charts.append(viz.clip_bounds_over_training(tel, clip=cfg.train.clip, group_names=order, group_order=order))
    parts = [
        f"<h2>{html.escape(label)}</h2>",
        f'<p class="meta">{meta}</p>',
        '<div class="charts">' + "".join(_chart_html(c, images) for c in charts) + "</div>",
        "<h3>Group privacy risk (percentage points)</h3>",
        _table(summary),
    ]
    emp = getattr(result, "empirical_epsilon", None)
    if emp is not None and len(emp):
        from .._core.glossary import EMPIRICAL_BOUND, EMPIRICAL_CAP

        cap = EMPIRICAL_CAP.format(n_models=result.n_models)
        shown = emp.rename(columns={"epsilon": "ε̂ (lower bound)", "max_certifiable": cap})
        parts += [f"<h3>{html.escape(EMPIRICAL_BOUND[0].upper() + EMPIRICAL_BOUND[1:])} per group, "
                  "records pooled</h3>", _table(shown)]
    parts += _outcome_html(getattr(result, "outcome", None))
    parts.append("<details><summary>Configuration</summary><pre>"
                 + html.escape(_pretty(cfg.to_dict())) + "</pre></details>")
    return "\n".join(parts)


def _privacy_note(result: Any) -> str:
    note = getattr(result, "privacy_note", None)
    return str(note) if note else "privacy of the release not recorded"


def _outcome_html(outcome: Any) -> list[str]:
    """Outcome fairness tables: an OutcomeFairness (by group + differences) or a DataFrame."""
    import pandas as pd

    if outcome is None:
        return []
    tables = []
    if isinstance(getattr(outcome, "by_group", None), pd.DataFrame):
        tables.append(outcome.by_group)
        if hasattr(outcome, "to_frame"):
            tables.append(outcome.to_frame())
    elif isinstance(outcome, pd.DataFrame) and len(outcome):
        tables.append(outcome.reset_index() if outcome.index.name else outcome)
    if not tables:
        return []
    return ["<h3>Outcome fairness on the test split (fractions)</h3>"] + [_table(t, digits=3) for t in tables]


def _pretty(d: Any) -> str:
    import json

    return json.dumps(d, indent=2, sort_keys=True, default=str)


def _comparison_section(items: list[tuple[str, Any]], *, auditor: str | None, images: str) -> str:
    """For several results: the comparison table and, when ε varies, GPRP-vs-ε and the frontier."""
    import pandas as pd

    from .. import viz

    rows = []
    entries = []
    for label, r in items:
        main = auditor if auditor is not None else next(iter(r.group_risk))
        gr = r.group_risk[main]
        lo, hi = gr.difference_ci()
        diff, dlo, dhi = gr.signed_difference()  # NaNs unless two groups
        rows.append({"run": label, "method": r.config.train.method, "auditor": main,
                     "epsilon": r.epsilon, "accuracy (%)": 100 * r.accuracy,
                     "GPRP (pp)": float(gr.difference()), "CI low": float(lo), "CI high": float(hi),
                     "GPRP floor (pp)": float(gr.difference_floor()),
                     "minority - majority (pp)": diff, "its CI low": dlo, "its CI high": dhi})
        entries.append({"method": METHOD_LABELS.get(r.config.train.method, r.config.train.method),
                        "epsilon": r.epsilon, "risk": gr, "accuracy": r.accuracy})
    frame = pd.DataFrame(rows)
    parts = ["<h2>Comparison</h2>", _table(frame)]
    charts = []
    if any(math.isfinite(e["epsilon"]) for e in entries):
        charts.append(viz.gprp_vs_epsilon(entries))
    if len(entries) >= 2:
        charts.append(viz.accuracy_gprp_frontier(entries))
    if charts:
        parts.append('<div class="charts">' + "".join(_chart_html(c, images) for c in charts) + "</div>")
    return "\n".join(parts)




def report_html(
    results: Any,
    *,
    title: str | None = None,
    auditor: str | None = None,
    images: Literal["svg", "png"] = "svg",
) -> str:
    """Return the report page of one or several audit results as an HTML string.

    Parameters
    ----------
    results : AuditResult, sequence of AuditResult, or mapping of str to AuditResult
        What to report; a mapping gives each run its own heading.
    title : str, optional
        Page title (default "fairpriv-lab audit report"); each run has its own heading.
    auditor : str, optional
        Whose GPR leads each section (default: each result's first auditor).
    images : {'svg', 'png'}
        Inline SVG (sharp, small, default) or base64 PNG for the charts.

    Returns
    -------
    str
        A complete ``<!DOCTYPE html>`` page with no external resources.
    """
    V.choice("images", images, ("svg", "png"))
    items = _as_results(results)
    title = title or "fairpriv-lab audit report"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">Generated {stamp} by fairpriv-lab.</p>',
            _note()]
    if len(items) > 1:
        body.append(_comparison_section(items, auditor=auditor, images=images))
    body += [_result_section(label, r, auditor=auditor, images=images) for label, r in items]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    results: Any,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    auditor: str | None = None,
    images: Literal["svg", "png"] = "svg",
) -> Path:
    """Write a self-contained HTML report of one or several audit results.

    The page holds, per result: GPR by group with CIs and the zero-leakage floor, the three
    auditors side by side, the IPR distribution, per-group clip bounds for DP-SGD-S/F, the
    GPR table, empirical ε per group, outcome fairness and the configuration; for several
    results also a comparison table, GPRP against ε and the accuracy–GPRP frontier. Charts
    are inline SVG (or PNG), so the file works offline.

    Parameters
    ----------
    results : AuditResult, sequence or mapping of them
    path : path
        The ``.html`` file to write (parent folders are created).
    title, auditor, images
        See :func:`report_html`.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> from fairpriv_lab.experiment import ExperimentConfig, run     # doctest: +SKIP
    >>> write_report(run(ExperimentConfig()), "report.html")           # doctest: +SKIP
    PosixPath('report.html')
    """
    out = Path(path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise V.fail("path", str(path), "to end in .html")
    page = report_html(results, title=title, auditor=auditor, images=images)
    return atomic_write(out, page)


# ---------------------------------------------------------------- from the cache or a folder
def load_results(source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> list[Any]:
    """Return the audit results named by a cache key (or a unique prefix of one) or a folder.

    A folder is either one written by ``fairpriv-lab audit --out`` (its ``*result.json``
    files hold the configurations) or a cache entry folder ``<cache>/<key>``. Each
    configuration is re-run through :func:`fairpriv_lab.experiment.run` with the cache, so
    cached results return at once (anything missing is recomputed, never guessed).

    Parameters
    ----------
    source : str or path
        Cache key, key prefix (at least 6 characters), or folder.
    cache_dir : path, optional
        The cache folder (default ``$FAIRPRIV_LAB_CACHE`` or ``~/.cache/fairpriv-lab/results``).
    """
    from ..experiment.cache import Cache
    from ..experiment.runner import ExperimentConfig, run

    path = Path(source)
    configs: list[dict[str, Any]] = []
    store = Cache(cache_dir) if cache_dir is not None else Cache()
    if path.is_dir():
        found = sorted(path.glob("*result.json"))
        if found:
            configs = [json.loads(f.read_text(encoding="utf-8"))["config"] for f in found]
        else:
            store = Cache(path.parent)
            item = store.load(path.name, "entry") if _looks_like_key(path.name) else None
            if item is None:
                raise V.fail("source", str(source), "to be a cache key, an `audit --out` folder with "
                             "result.json, or a cache entry folder")
            configs = [item.meta["config"]]
    else:
        text = str(source)
        if len(text) < 6 or not all(c in "0123456789abcdef" for c in text):
            raise V.fail("source", text, "to be an existing folder or a cache key (>= 6 hex characters)")
        keys = [e.key for e in store.list() if e.key.startswith(text)]
        if len(keys) != 1:
            hint = "no entry has it" if not keys else f"{len(keys)} entries share it"
            raise V.fail("source", text, f"to name exactly one entry of the cache {store.root}", hint)
        item = store.load(keys[0], "entry")
        if item is None:
            raise V.fail("source", text, "to name a cache entry with its configuration",
                         "The entry has no metadata; run the audit again")
        configs = [item.meta["config"]]
    return [run(ExperimentConfig.from_dict(c), cache=store) for c in configs]


def _looks_like_key(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)
