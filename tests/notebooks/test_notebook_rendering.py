"""viz's notebook renderers draw with no internet: no output loads Vega from a CDN.

JupyterLab 4 and Voilà 0.5 ship Vega 5 and draw ``application/vnd.vega.v5+json`` outputs
themselves; altair writes Vega-Lite 6, so viz compiles each chart to Vega 5 with vl-convert.
Stored outputs carry an SVG for nbconvert HTML, GitHub and nbviewer; Colab, which has no Vega
renderer, gets the JavaScript inlined. (The earlier "both" renderer loaded vega from
cdn.jsdelivr.net and its tests pinned that; issue 18 makes it a bug, so these replace them.)
tests/browser/test_browser.py sees the charts drawn in a browser with all outside requests refused.
"""

from __future__ import annotations

import re
import sys
import types

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # vl-convert compiles and renders each chart (a second or so)

alt = pytest.importorskip("altair")
from fairpriv_lab import viz  # noqa: E402  (a broken import must fail, not skip)

URL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|cdn\.jsdelivr|unpkg\.com|esm\.sh""", re.I)


@pytest.fixture
def renderer(monkeypatch):
    before = alt.renderers.active
    monkeypatch.delenv("FAIRPRIV_CHART_RENDERER", raising=False)
    yield
    alt.renderers.enable(before)


def _chart(value: float = 1.0):
    frame = pd.DataFrame({"g": ["a", "b"], "gpr": [value, 2 * value]})
    return alt.Chart(frame).mark_bar().encode(x="gpr:Q", y="g:N", tooltip=["g", "gpr"])


def _bundle(chart):
    out = chart._repr_mimebundle_(None, None)
    return out[0] if isinstance(out, tuple) else out


def test_auto_gives_a_vega5_spec_and_an_svg_and_no_html(renderer):
    assert viz.enable_notebook_rendering() == "both"
    data = _bundle(_chart())
    assert set(data) == {viz.VEGA_MIMETYPE, "image/svg+xml", "image/png", "text/plain"}
    # no text/html: JupyterLab ranks HTML above Vega and would pick it
    spec = data[viz.VEGA_MIMETYPE]
    assert spec["$schema"] == "https://vega.github.io/schema/vega/v5.json"
    assert data["image/svg+xml"].lstrip().startswith("<svg") and "<rect" in data["image/svg+xml"]
    _assert_png_of_the_chart(data)
    assert not URL.search(str(data))


def _assert_png_of_the_chart(data):
    """The PNG beside a Vega spec is the chart itself, base64 as nbformat stores it, at scale 1."""
    import base64
    import zlib

    png = base64.b64decode(data["image/png"], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    # the SVG of the same chart has the same size in pixels (vl-convert draws both)
    svg = viz.to_svg(_chart())
    size = re.search(r'<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"', svg)
    assert (width, height) == (round(float(size.group(1))), round(float(size.group(2))))
    # the pixels (IDAT chunks, inflated): a drawing has many colours, a blank image one or two
    idat, at = b"", 8
    while at < len(png):
        length, kind = int.from_bytes(png[at:at + 4], "big"), png[at + 4:at + 8]
        idat += png[at + 8:at + 8 + length] if kind == b"IDAT" else b""
        at += 12 + length
    assert len(set(zlib.decompress(idat))) > 16, "a blank image, not the chart"


def test_interactive_gives_the_vega_spec_and_its_png(renderer):
    """Issue 18: the PNG keeps Voilà's Vega renderer from calling setData on a plain JSON output."""
    assert viz.enable_notebook_rendering("interactive") == "interactive"
    data = _bundle(_chart())
    assert set(data) == {viz.VEGA_MIMETYPE, "image/png", "text/plain"}
    _assert_png_of_the_chart(data)


def test_output_widget_bundles_may_leave_the_png_out():
    """The panel's Output widgets hold output models (setData works): no PNG render per run."""
    data, _ = viz.chart_mimebundle(_chart(), "interactive", png=False)
    assert set(data) == {viz.VEGA_MIMETYPE, "text/plain"}


def test_static_stays_png(renderer):
    assert viz.enable_notebook_rendering("static") == "static"
    assert _bundle(_chart())["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_env_variable_picks_the_mode(renderer, monkeypatch):
    monkeypatch.setenv("FAIRPRIV_CHART_RENDERER", "interactive")
    assert viz.enable_notebook_rendering() == "interactive"
    monkeypatch.setenv("FAIRPRIV_CHART_RENDERER", "cdn")
    with pytest.raises(ValueError, match="FAIRPRIV_CHART_RENDERER"):
        viz.enable_notebook_rendering()


def test_vega_spec_carries_the_data_and_the_tooltip():
    spec = viz.to_vega(_chart(3.0))
    values = [row for d in spec["data"] for row in d.get("values", [])]
    assert {row["gpr"] for row in values if "gpr" in row} == {3.0, 6.0}
    assert "tooltip" in str(spec)


def test_colab_gets_the_javascript_inline(renderer, monkeypatch):
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert viz.enable_notebook_rendering() == "both"
    data = _bundle(_chart())
    html = data["text/html"]
    assert viz.VEGA_MIMETYPE not in data and "image/png" not in data and "image/svg+xml" in data
    assert "window.vegaEmbed=" in html and "vegaEmbed(\"#fairpriv-chart-" in html
    assert not URL.search(html), "Colab's chart must not load anything from the network"
    assert html.startswith("<div id=") and html.count("</script>") == 2, "a fragment, not a full page"


def test_two_inline_charts_draw_into_two_divs():
    ids = [re.search(r'<div id="(fairpriv-chart-[0-9a-f]{32})"',
                     viz.chart_mimebundle(_chart(v), "interactive", inline_js=True)[0]["text/html"]).group(1)
           for v in (1.0, 2.0)]
    assert ids[0] != ids[1]


def test_saved_html_is_offline(tmp_path):
    path = viz.save_chart(_chart(), tmp_path / "c.html")
    text = path.read_text()
    assert "vegaEmbed" in text and not re.search(r"<script[^>]+src=", text)


def test_bad_mode_names_the_parameter():
    with pytest.raises(ValueError, match="mode"):
        viz.chart_mimebundle(_chart(), "cdn")
