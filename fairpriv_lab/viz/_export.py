"""Static export through vl-convert and the choice of a notebook renderer."""

from __future__ import annotations

import base64
import io
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Literal

from .._core.validate import choice, fail, positive
from ._core import altair, vl_convert

#: Environment variable that overrides ``enable_notebook_rendering("auto")``.
RENDER_ENV = "FAIRPRIV_CHART_RENDERER"


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
    return compact_png(vl_convert().vegalite_to_png(_spec(chart), scale=scale, **_kwargs()))


def compact_png(png: bytes) -> bytes:
    """Return a chart's PNG as a 256-colour palette image: the same picture, 5-8x fewer bytes.

    vl-convert writes 32-bit RGBA; a chart has a few flat colours plus their anti-aliased
    edges, which a 256-colour palette (Pillow's fast octree, alpha kept) reproduces to the eye
    (tests/unit/viz: mean channel difference < 2 of 255). This keeps the committed notebooks,
    whose charts are stored as PNGs, under their size budget.
    """
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        pal = im.convert("RGBA").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    pal.save(out, format="PNG", optimize=True)
    return out.getvalue()


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


def save_chart(chart: Any, path: str | os.PathLike, *, scale: float = 2.0) -> Path:
    """Save a chart as .png, .svg or .html via vl-convert.

    An .html file carries the Vega JavaScript inline (about 1 MB; the first call in a process
    takes a few seconds), so that it opens without internet: no chart loads from a CDN.

    Parameters
    ----------
    chart : altair chart or dict
        Chart to save.
    path : str or path-like
        Target file; the suffix picks the format. Parent folders are created.
    scale : float
        Pixel density of PNG output.

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
        html = vl_convert().vegalite_to_html(spec, bundle=True, **_kwargs())
        path.write_text(html, encoding="utf-8")
    return path


def _vega5_version() -> str:
    """Return the newest Vega-Lite 5.x that vl-convert compiles with (a Vega 5 spec comes out)."""
    fives = [v for v in vl_convert().get_vegalite_versions() if v.startswith("5.")]
    if not fives:  # pragma: no cover - every vl-convert 1.x ships 5.x compilers
        raise ImportError(f"vl-convert-python {getattr(vl_convert(), '__version__', '')} compiles no "
                          "Vega-Lite 5; the notebook charts need vl-convert-python>=1.0")
    return max(fives, key=lambda v: tuple(int(x) for x in v.split(".")))


def to_vega(chart: Any) -> dict:
    """Compile a chart to a Vega 5 spec, the language JupyterLab's and Voilà's own renderer draw.

    JupyterLab 4 and Voilà 0.5 ship Vega 5 (and an older Vega-Lite 5) and draw
    :data:`VEGA_MIMETYPE` outputs with it, with no internet; altair writes Vega-Lite 6, which
    they do not know. vl-convert compiles here, with its newest Vega-Lite 5 compiler.

    Parameters
    ----------
    chart : altair chart or dict
        A chart from any builder (or its ``to_dict()``).

    Returns
    -------
    dict
        A Vega spec whose ``$schema`` is Vega v5, data inlined.
    """
    return vl_convert().vegalite_to_vega(_spec(chart), vl_version=_vega5_version())


#: The output type of a Vega 5 spec; JupyterLab, Voilà, VS Code and nteract draw it themselves.
VEGA_MIMETYPE = "application/vnd.vega.v5+json"

_BUNDLE: list[str] = []


def _inline_vega_js() -> str:
    """Return vega, vega-lite and vega-embed from vl-convert (no CDN), defining ``vegaEmbed`` once."""
    if not _BUNDLE:
        # A function scope, so that a second output with the bundle redeclares nothing.
        _BUNDLE.append("(() => {\nif (window.vegaEmbed) return;\n"
                       + vl_convert().javascript_bundle(**_kwargs()) + "\n})();\n")
    return _BUNDLE[0]


def _inline_html(spec: dict) -> str:
    """Return an output fragment drawing the chart, JavaScript inlined (Colab: a frame per output)."""
    import json

    div = f"fairpriv-chart-{uuid.uuid4().hex}"
    # "</" inside a JSON string would end the <script> element early.
    spec_js = json.dumps(spec).replace("</", "<\\/")
    return (f'<div id="{div}"></div>\n<script type="text/javascript">\n{_inline_vega_js()}</script>\n'
            f'<script type="text/javascript">\nvegaEmbed("#{div}", {spec_js}, {{"mode": "vega-lite"}})'
            ".catch(err => { document.getElementById(" + json.dumps(div) + ").textContent = "
            '"Chart error: " + err; });\n</script>')


def chart_mimebundle(
    chart: Any, mode: Literal["interactive", "both"] = "both", *, inline_js: bool = False,
    png: bool = True,
) -> tuple[dict, dict]:
    """Return a chart's Jupyter output (data, metadata) that draws with no internet.

    - ``"interactive"``: the Vega 5 spec (:data:`VEGA_MIMETYPE`), drawn by the front end's own
      Vega (JupyterLab, Voilà, VS Code), with tooltips, and its PNG (see ``png``).
    - ``"both"``: the same plus an SVG of the chart from vl-convert. Front ends that know Vega
      draw it interactively (it ranks above SVG and PNG); nbconvert HTML, GitHub and nbviewer
      show the SVG.

    Why a PNG rides along with the spec: the Vega renderer of JupyterLab and Voilà
    (``@jupyterlab/vega5-extension``), once it has drawn a spec, adds the chart's PNG to the
    output with ``model.setData`` unless the output already has one. Voilà hands its notebook
    outputs (not those of Output widgets) to that renderer as plain JSON, which has no
    ``setData``: the drawn chart then gets "Javascript Error: e.setData is not a function"
    below it (issue 18; JupyterLab, whose outputs are models, draws it cleanly). With the PNG
    in the output the renderer stops after drawing, in every front end.

    Parameters
    ----------
    chart : altair chart or dict
        A chart from any builder (or its ``to_dict()``).
    mode : {"interactive", "both"}
        Whether to add the SVG fallback.
    inline_js : bool
        Replace the Vega spec by an HTML fragment with vega, vega-lite and vega-embed inlined
        from vl-convert's bundle (about 0.9 MB): Colab runs each output in a frame of its own
        and has no Vega renderer.
    png : bool
        Add the PNG (scale 1, as the front end's renderer would make it) beside the Vega spec.
        Only outputs of an ``ipywidgets.Output`` (output models, which have ``setData``) may
        leave it out, saving a render per chart; ignored with ``inline_js`` (no Vega spec).

    Returns
    -------
    (dict, dict)
        The mimebundle and its metadata, as ``_repr_mimebundle_`` returns them.
    """
    choice("mode", mode, ("interactive", "both"))
    spec = _spec(chart)
    data: dict[str, Any] = {"text/plain": f"<{spec.get('description') or 'fairpriv-lab chart'}>"}
    if inline_js:
        data["text/html"] = _inline_html(spec)
    else:
        data[VEGA_MIMETYPE] = to_vega(spec)
    svg = to_svg(spec) if mode == "both" or (png and not inline_js) else None
    if mode == "both":
        data["image/svg+xml"] = svg
    if png and not inline_js:
        # From the SVG just drawn (a few ms), base64 as nbformat stores it.
        data["image/png"] = base64.b64encode(compact_png(vl_convert().svg_to_png(svg, scale=1.0))).decode("ascii")
    return data, {}


def _static_png(spec: dict, **_: Any) -> tuple[dict, dict]:
    """Altair's ``"png"`` renderer at scale 1, with the PNG compacted (:func:`compact_png`)."""
    png = compact_png(vl_convert().vegalite_to_png(spec, scale=1.0, **_kwargs()))
    # the size from the IHDR chunk (bytes 16-24), not a second decode of the image
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return {"image/png": png}, {"image/png": {"width": float(width), "height": float(height)}}


def _renderer(mode: str, inline_js: bool) -> Any:
    def render(spec: dict, **_: Any) -> tuple[dict, dict]:
        return chart_mimebundle(spec, mode, inline_js=inline_js)  # type: ignore[arg-type]
    return render


def enable_notebook_rendering(
    mode: Literal["auto", "interactive", "static", "both"] = "auto",
) -> str:
    """Pick an altair renderer that draws charts with no internet in every front end.

    No mode loads anything from a CDN (classrooms behind firewalls, exam rooms and trains have
    none): JupyterLab and Voilà draw the Vega 5 spec with the Vega they ship, Colab gets the
    JavaScript inlined, and stored outputs carry an SVG for GitHub, nbviewer and nbconvert HTML.

    - ``"interactive"``: the Vega 5 spec and its PNG (:func:`chart_mimebundle` ``"interactive"``);
      JupyterLab, Notebook 7, Voilà and VS Code draw it with tooltips. On Colab: HTML with
      vl-convert's JavaScript bundle inlined (about 0.9 MB per chart).
    - ``"static"``: a PNG through vl-convert (as altair's ``"png"`` renderer, stored as a
      256-colour palette, :func:`compact_png`); no JavaScript, shows everywhere, smallest files,
      no tooltips (the notebook test runner uses it).
    - ``"both"``: the Vega 5 spec and its PNG plus an SVG fallback; front ends with Vega draw it
      interactively, the others show the SVG (on Colab: the inlined HTML plus the SVG).
    - ``"auto"``: the value of the environment variable ``FAIRPRIV_CHART_RENDERER`` if set
      (one of the modes above); otherwise ``"both"``.

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
        mode = choice(RENDER_ENV, env, ("interactive", "static", "both")) if env else "both"
    if mode == "static":  # stored outputs: palette PNGs at scale 1 keep each notebook <= 1 MB
        if "fairpriv-static" not in alt.renderers.names():
            alt.renderers.register("fairpriv-static", _static_png)
        alt.renderers.enable("fairpriv-static")
        return mode
    on_colab = "google.colab" in sys.modules
    name = f"fairpriv-{mode}" + ("-colab" if on_colab else "")
    if name not in alt.renderers.names():
        alt.renderers.register(name, _renderer(mode, on_colab))
    alt.renderers.enable(name)
    return mode
