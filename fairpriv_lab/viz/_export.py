"""Static export through vl-convert and the choice of a notebook renderer."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Literal

from .._core.validate import choice, fail, positive
from ._core import altair, vl_convert

#: Environment variable that overrides ``enable_notebook_rendering("auto")``.
RENDER_ENV = "FAIRPRIV_CHART_RENDERER"
_BOTH = "fairpriv-both"


def _spec(chart: Any) -> dict:
    if isinstance(chart, dict):
        return chart
    if not hasattr(chart, "to_dict"):
        raise fail("chart", type(chart).__name__, "to be an altair chart or a Vega-Lite dict")
    return chart.to_dict()


def _vl_version() -> str | None:
    """Return the Vega-Lite version of altair if vl-convert knows it, else None (its default)."""
    alt = altair()
    vlc = vl_convert()
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    known = vlc.get_vegalite_versions() if hasattr(vlc, "get_vegalite_versions") else []
    return major_minor if major_minor in known else None


def _kwargs() -> dict:
    version = _vl_version()
    return {} if version is None else {"vl_version": version}


def to_png_bytes(chart: Any, *, scale: float = 2.0) -> bytes:
    """Render a chart to PNG bytes with vl-convert (no browser, no internet).

    Parameters
    ----------
    chart : altair chart or dict
        A chart from any builder (or its ``to_dict()``).
    scale : float
        Pixel density; 2 gives sharp images on high-resolution screens.

    Returns
    -------
    bytes
        A PNG file, starting with the 8-byte PNG signature.
    """
    scale = positive("scale", scale)
    return vl_convert().vegalite_to_png(_spec(chart), scale=scale, **_kwargs())


def to_svg(chart: Any) -> str:
    """Render a chart to an SVG document (str) with vl-convert."""
    return vl_convert().vegalite_to_svg(_spec(chart), **_kwargs())


def static_image(chart: Any, *, scale: float = 2.0) -> Any:
    """Return an ``IPython.display.Image`` of the chart, for outputs that must survive anywhere.

    A PNG is stored in the notebook itself, so papermill-executed notebooks show the chart on
    GitHub and in nbviewer, where the interactive JavaScript output stays blank.

    Parameters
    ----------
    chart : altair chart or dict
        Chart to render.
    scale : float
        Pixel density.

    Returns
    -------
    IPython.display.Image
        Display it (last expression of a cell, or ``display(...)``).
    """
    from IPython.display import Image

    return Image(data=to_png_bytes(chart, scale=scale), format="png")


def save_chart(
    chart: Any, path: str | os.PathLike, *, scale: float = 2.0, offline: bool = True
) -> Path:
    """Save a chart as .png, .svg or .html via vl-convert.

    Parameters
    ----------
    chart : altair chart or dict
        Chart to save.
    path : str or path-like
        Target file; the suffix picks the format. Parent folders are created.
    scale : float
        Pixel density of PNG output.
    offline : bool
        For .html: inline the Vega JavaScript so the page works without internet (about
        1 MB; the first call in a process takes a few seconds), or load it from a CDN.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    suffix = choice("path suffix", path.suffix.lower(), (".png", ".svg", ".html"))
    spec = _spec(chart)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        path.write_bytes(to_png_bytes(spec, scale=scale))
    elif suffix == ".svg":
        path.write_text(to_svg(spec), encoding="utf-8")
    else:
        html = vl_convert().vegalite_to_html(spec, bundle=bool(offline), **_kwargs())
        path.write_text(html, encoding="utf-8")
    return path


def _both_renderer(spec: dict, **metadata: Any) -> tuple[dict, dict]:
    """Return interactive HTML plus a PNG fallback (and its size metadata) in one bundle."""
    from altair.utils.mimebundle import spec_to_mimebundle

    alt = altair()
    versions = {
        "mode": "vega-lite",
        "vega_version": alt.VEGA_VERSION,
        "vegaembed_version": alt.VEGAEMBED_VERSION,
        "vegalite_version": alt.VEGALITE_VERSION,
    }
    # altair's own notebook HTML renderer: a fragment (not a full page, whose inline script
    # would run before its <script src> tags load in JupyterLab and Voila) that loads vega on
    # demand, in a div of its own (two charts in one output must not share id "vis").
    html = spec_to_mimebundle(spec, format="html", template="universal",
                              output_div=f"altair-viz-{uuid.uuid4().hex}", **versions, **metadata)
    png, png_meta = spec_to_mimebundle(spec, format="png", **versions)
    return {**html, **png}, dict(png_meta)


def enable_notebook_rendering(
    mode: Literal["auto", "interactive", "static", "both"] = "auto",
) -> str:
    """Pick an altair renderer that shows charts in JupyterLab, Colab and papermill outputs.

    - ``"interactive"``: altair's ``"default"`` HTML renderer (vega-embed from a CDN); works in
      JupyterLab, Notebook 7, VS Code and Colab, but stored outputs are blank on GitHub.
    - ``"static"``: altair's ``"png"`` renderer through vl-convert; no JavaScript, shows
      everywhere (GitHub, nbviewer, papermill-executed notebooks), no tooltips.
    - ``"both"``: a bundle with the HTML and a PNG; frontends that run JavaScript show the
      interactive chart, others fall back to the image (larger notebook files).
    - ``"auto"``: the value of the environment variable ``FAIRPRIV_CHART_RENDERER`` if set
      (one of the modes above, e.g. set to ``static`` by the notebook test runner);
      otherwise ``"interactive"`` on Colab and ``"both"`` elsewhere.

    Parameters
    ----------
    mode : {"auto", "interactive", "static", "both"}
        Rendering mode.

    Returns
    -------
    str
        The mode enabled (never ``"auto"``).
    """
    choice("mode", mode, ("auto", "interactive", "static", "both"))
    alt = altair()
    if mode == "auto":
        env = os.environ.get(RENDER_ENV, "").strip().lower()
        if env:
            mode = choice(RENDER_ENV, env, ("interactive", "static", "both"))
        else:
            mode = "interactive" if "google.colab" in sys.modules else "both"
    if mode == "interactive":
        alt.renderers.enable("default")
    elif mode == "static":
        alt.renderers.enable("png", scale_factor=1.5)
    else:
        if _BOTH not in alt.renderers.names():
            alt.renderers.register(_BOTH, _both_renderer)
        alt.renderers.enable(_BOTH)
    return mode
