"""Shared pieces of the chart builders: the lazy altair import, palettes, input checks."""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._core.validate import fail
from .._core.vocabulary import METHOD_LABELS

#: The one message shown when the optional chart dependencies are missing.
MISSING_UI_MESSAGE = (
    "Charts need the optional packages altair and vl-convert-python: pip install fairpriv-lab[ui]"
)

#: Vega-Lite embeds at most this many rows before altair refuses (``MaxRowsError``); every
#: builder aggregates or thins its input below it, so no chart ever carries raw big data.
MAX_ROWS = 5000

#: Colour-blind-safe categorical palette: Okabe & Ito (2008) without the yellow (too light on
#: white), followed by four colours of Paul Tol's "muted" scheme for up to 12 groups.
GROUP_PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#882255",  # wine
    "#44AA99",  # teal
    "#999933",  # olive
    "#AA4499",  # purple
    "#888888",  # grey
)

#: Fixed colours for the training methods and auditors, so that "DP-SGD-S" has the same colour
#: in every chart of every notebook; unknown names take the remaining palette in order.
SERIES_COLORS: dict[str, str] = {
    "SGD": "#555555",
    "DP-SGD": "#0072B2",
    "DP-SGD-S": "#D55E00",
    "DP-SGD-F": "#009E73",
    "PA-GA": "#E69F00",
    "PA-GBA": "#56B4E9",
    "PA-ALOOA": "#CC79A7",
    "PA-LOOA": "#000000",
}

#: Canonical order of the auditors (average case first, then worst case).
AUDITOR_ORDER = ("PA-GA", "PA-GBA", "PA-ALOOA", "PA-LOOA")
#: Canonical order of the training methods.
METHOD_ORDER = tuple(METHOD_LABELS.values())

WIDTH = 380
HEIGHT = 260


#: An optional import of jsonschema's (which altair imports) that costs a classroom 1.9 s.
SLOW_OPTIONAL_IMPORT = "rfc3987_syntax"


def altair() -> Any:
    """Import altair on first use, or raise ImportError with :data:`MISSING_UI_MESSAGE`.

    altair imports jsonschema, whose format checker imports ``rfc3987_syntax`` when it is
    installed (Jupyter's ``jupyter-events`` installs it): that package compiles 39 grammars on
    import, 1.9 s of a panel's first open (``import altair`` 2.5 s instead of 0.4 s), for an
    "iri" format check that altair never makes (it validates without a format checker). So
    while altair is imported, and only if jsonschema is not imported yet, that optional
    import fails as if the package were absent; jsonschema then checks no "iri" format in
    this process (docs/design.md section 5). Importing ``rfc3987_syntax`` itself later works.
    """
    mod = sys.modules.get("altair")
    if mod is not None:
        return mod
    try:
        with _without_slow_optional_import():
            return importlib.import_module("altair")
    except ImportError:  # e.g. a jsonschema that needs the package after all: import as usual
        try:
            return importlib.import_module("altair")
        except ImportError as exc:  # pragma: no cover - the test environment has altair
            raise ImportError(MISSING_UI_MESSAGE) from exc


@contextlib.contextmanager
def _without_slow_optional_import() -> Iterator[None]:
    """Make ``import rfc3987_syntax`` raise ImportError meanwhile, unless jsonschema or it is imported."""
    block = "jsonschema" not in sys.modules and SLOW_OPTIONAL_IMPORT not in sys.modules
    if block:
        sys.modules[SLOW_OPTIONAL_IMPORT] = None  # the import system's "not importable" marker
    try:
        yield
    finally:
        if block and SLOW_OPTIONAL_IMPORT in sys.modules and sys.modules[SLOW_OPTIONAL_IMPORT] is None:
            del sys.modules[SLOW_OPTIONAL_IMPORT]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]] | None:
    """``frame``'s rows as altair's default data transformer gives them, or ``None``.

    For frames of float, integer, bool and string columns (every frame the charts build):
    Python scalars, NaN and infinities as ``None``. Other frames (dates, categoricals, a
    ``MultiIndex``, too many rows) return ``None`` and go through altair's own transformer.
    """
    if (isinstance(frame.index, pd.MultiIndex) or isinstance(frame.columns, pd.MultiIndex)
            or not all(isinstance(c, str) for c in frame.columns) or len(frame) > MAX_ROWS):
        return None
    columns = []
    for name, col in frame.items():
        kind = col.dtype.kind if isinstance(col.dtype, np.dtype) else None
        if kind == "f":
            x = col.to_numpy()
            values = x.astype(object)
            values[~np.isfinite(x)] = None
        elif kind in ("i", "u", "b"):
            values = col.to_numpy().tolist()
        elif kind == "O" or pd.api.types.is_string_dtype(col.dtype):
            values = []
            for v in col.to_numpy(dtype=object):  # strings; None and NaN as None; else altair's way
                if v is None or (isinstance(v, float) and v != v):
                    values.append(None)
                elif isinstance(v, str):
                    values.append(v)
                else:
                    return None
        else:
            return None
        columns.append((name, list(values)))
    names = [n for n, _ in columns]
    return [dict(zip(names, row)) for row in zip(*(v for _, v in columns))] if columns else \
        [{} for _ in range(len(frame))]


def fast_data_transformer(data: Any) -> Any:
    """Return altair's default transformer's ``{"values": [...]}``, without its frame copies.

    Plain frames (:func:`_records`) are converted here; anything else goes to altair's own
    transformer. Tested against altair's spec for every chart the viz tests build.
    """
    from altair.vegalite.data import default_data_transformer

    records = _records(data) if isinstance(data, pd.DataFrame) else None
    return {"values": records} if records is not None else default_data_transformer(data)


@functools.cache
def _register_fast_transformer() -> str:
    """Register :func:`fast_data_transformer` with altair once (``names()`` would read metadata)."""
    altair().data_transformers.register("fairpriv-fast", fast_data_transformer)
    return "fairpriv-fast"


def spec_dict(chart: Any, *, validate: bool = False) -> dict[str, Any]:
    """Return ``chart.to_dict(validate=...)``, the data converted by :func:`fast_data_transformer`.

    The same spec as altair's ``to_dict``. While it runs the transformer is altair's active
    one (a process-wide setting: a chart converted meanwhile on another thread gets it too,
    with the same result).
    """
    with altair().data_transformers.enable(_register_fast_transformer()):
        return chart.to_dict(validate=validate)


def vl_convert() -> Any:
    """Import vl_convert on first use, or raise ImportError with :data:`MISSING_UI_MESSAGE`."""
    try:
        return importlib.import_module("vl_convert")
    except ImportError as exc:  # pragma: no cover
        raise ImportError(MISSING_UI_MESSAGE) from exc


def require_frame(
    frame: Any,
    name: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> pd.DataFrame:
    """Return a copy of frame after checking it is a non-empty DataFrame holding `required`."""
    expected = ", ".join(required)
    if optional:
        expected += " (optional: " + ", ".join(optional) + ")"
    if not isinstance(frame, pd.DataFrame):
        raise fail(name, type(frame).__name__, f"to be a pandas DataFrame with columns {expected}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise fail(
            name,
            "a DataFrame with columns " + ", ".join(map(str, frame.columns)),
            f"to have columns {expected}",
            hint="Missing: " + ", ".join(missing),
        )
    if len(frame) == 0:
        raise fail(name, "an empty DataFrame", f"to have at least one row with columns {expected}")
    return frame.copy()


def numeric(frame: pd.DataFrame, name: str, columns: Iterable[str]) -> pd.DataFrame:
    """Convert the given columns to float64 in place, raising ConfigError naming a bad column."""
    for col in columns:
        if col not in frame.columns:
            continue
        try:
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise fail(f"{name}[{col!r}]", "a non-numeric column", "to hold numbers") from exc
    return frame


def labels(values: Any, group_names: Sequence[str] | None = None) -> pd.Series:
    """Return group labels as strings, mapping integer ids through group_names when given."""
    s = pd.Series(values)
    if group_names is not None and s.dtype.kind in "iu":
        names = list(group_names)
        if len(s) and (s.min() < 0 or s.max() >= len(names)):
            raise fail("group", f"ids up to {s.max()}", f"to be < len(group_names)={len(names)}")
        return pd.Series([str(names[i]) for i in s], index=s.index, dtype=object)
    return s.astype(str).astype(object)


def domain(
    present: Iterable[str], order: Sequence[str] | None, canonical: Sequence[str] = ()
) -> list[str]:
    """Return the colour domain: `order` (then unseen present values), else canonical-then-sorted."""
    seen = list(dict.fromkeys(str(v) for v in present))
    if order is not None:
        first = [str(v) for v in order]
        return first + [v for v in seen if v not in first]
    known = [v for v in canonical if v in seen]
    return known + sorted(v for v in seen if v not in known)


def group_palette(groups: Sequence[str]) -> dict[str, str]:
    """Map each group (in the given order) to a colour of :data:`GROUP_PALETTE`.

    Parameters
    ----------
    groups : sequence of str
        Group names in a fixed order, e.g. ``dataset.group_names``. Passing the same order as
        ``group_order=`` to every builder keeps a group's colour identical in every chart.

    Returns
    -------
    dict
        Group name to hex colour; colours repeat after 12 groups.

    Examples
    --------
    >>> group_palette(["Female", "Male"])
    {'Female': '#0072B2', 'Male': '#E69F00'}
    """
    return {str(g): GROUP_PALETTE[i % len(GROUP_PALETTE)] for i, g in enumerate(groups)}


def series_palette(names: Sequence[str]) -> list[str]:
    """Colours for methods/auditors: fixed ones from SERIES_COLORS, others from the palette."""
    spare = [c for c in GROUP_PALETTE if c not in SERIES_COLORS.values()]
    out = []
    for name in names:
        if name in SERIES_COLORS:
            out.append(SERIES_COLORS[name])
        else:
            out.append(spare[len([n for n in out if n in spare]) % len(spare)])
    return out


def group_color(alt: Any, dom: list[str], *, title: str = "Group", legend: bool = True) -> Any:
    """Colour encoding of the group column with the fixed palette over `dom`."""
    pal = group_palette(dom)
    return alt.Color(
        "group:N",
        title=title,
        scale=alt.Scale(domain=dom, range=[pal[g] for g in dom]),
        legend=alt.Legend() if legend else None,
    )


def series_color(alt: Any, field: str, dom: list[str], title: str) -> Any:
    """Colour encoding of a method/auditor column with its fixed colours."""
    return alt.Color(
        f"{field}:N",
        title=title,
        scale=alt.Scale(domain=dom, range=series_palette(dom)),
        sort=dom,
    )


def title_params(alt: Any, text: str, subtitle: str | Sequence[str] | None = None) -> Any:
    """Title with an optional subtitle line (or lines)."""
    if subtitle is None:
        return alt.TitleParams(text=text, anchor="start")
    return alt.TitleParams(text=text, subtitle=subtitle, anchor="start", subtitleColor="#444444")


def titled(chart: Any, alt: Any, text: str, subtitle: str | Sequence[str], *,
           width: int = WIDTH, height: int = HEIGHT) -> Any:
    """Size a chart and give it its title, subtitle and a text description (title. subtitle).

    ``chart``: a chart, or a list of layers, layered here with these properties in one go
    (``alt.layer(*layers, **properties)``; :func:`layered` says why).
    """
    sub = subtitle if isinstance(subtitle, str) else " ".join(subtitle)
    props = {"width": width, "height": height, "title": title_params(alt, text, subtitle),
             "description": f"{text}. {sub}"}
    return layered(alt, chart, **props) if isinstance(chart, list) else chart.properties(**props)


def layered(alt: Any, layers: Sequence[Any], **properties: Any) -> Any:
    """``alt.layer(*layers).properties(**properties)``, the same spec, built once.

    altair's layer chart deep-copies its layers when it is made, and ``.properties`` makes it
    again: the same chart with its properties given at once takes a third of the time (most of
    a panel's chart building).
    """
    return alt.layer(*layers, **properties)


def fmt_pp(x: float) -> str:
    """Format a percentage-point value with two decimals."""
    return "n/a" if not np.isfinite(x) else f"{x:.2f} pp"


def thin_steps(
    frame: pd.DataFrame, key: str, by: Sequence[str], value_cols: Sequence[str], max_rows: int
) -> pd.DataFrame:
    """Average consecutive `key` values into bins so that the frame has at most max_rows rows."""
    n_series = max(1, frame.groupby(list(by), sort=False, observed=True).ngroups) if by else 1
    n_keys = frame[key].nunique()
    max_keys = max(2, max_rows // n_series)
    if n_keys * n_series <= max_rows or n_keys <= max_keys:
        return frame
    uniq = np.sort(frame[key].unique())
    edges = np.linspace(0, len(uniq), max_keys + 1).astype(int)
    bin_of_key = np.empty(len(uniq), dtype=np.int64)
    for b in range(max_keys):
        bin_of_key[edges[b] : edges[b + 1]] = b
    pos = np.searchsorted(uniq, frame[key].to_numpy())
    frame = frame.assign(_bin=bin_of_key[pos])
    agg = {c: "mean" for c in value_cols}
    agg[key] = "mean"
    out = frame.groupby([*by, "_bin"], sort=True, observed=True).agg(agg).reset_index()
    return out.drop(columns="_bin")
