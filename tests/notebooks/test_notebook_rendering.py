"""viz's "both" renderer gives HTML that JupyterLab, Voila and Colab can draw.

JupyterLab and Voila insert an HTML output into the page and re-run its <script> elements: a
script that loads from a URL runs later, an inline one at once. A full-page template (vega
loaded by <script src> tags in <head>, then an inline call of ``vegaEmbed``) therefore fails
with "vegaEmbed is not defined", and two charts in one output that both draw into
``id="vis"`` overwrite each other. tests/browser/test_browser.py sees this end to end; this is the fast
check of the bundle itself.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow  # vl-convert renders the PNG half of each bundle (seconds)

alt = pytest.importorskip("altair")
viz = pytest.importorskip("fairpriv_lab.viz")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def both(monkeypatch):
    before = alt.renderers.active
    monkeypatch.delenv("FAIRPRIV_CHART_RENDERER", raising=False)
    assert viz.enable_notebook_rendering("both") == "both"
    yield alt.renderers.get()
    alt.renderers.enable(before)


def _chart(value: float):
    return alt.Chart(alt.Data(values=[{"g": "a", "gpr": value}])).mark_bar().encode(x="gpr:Q", y="g:N")


def test_both_renderer_html_is_a_fragment_that_loads_vega_itself(both):
    bundle, meta = both(_chart(1.0).to_dict())
    html = bundle["text/html"]
    assert bundle["image/png"][:8] == PNG and meta["image/png"]["width"] > 0
    assert not re.search(r"<html|<head|<body", html, re.IGNORECASE), "a full page, not an output fragment"
    # vega is loaded by the output's own script before vegaEmbed is called (altair's loader)
    assert "maybeLoadScript" in html and "})(vegaEmbed)" not in html
    assert re.search(r'<div id="altair-viz-[0-9a-f]{32}"></div>', html)


def test_both_renderer_gives_each_chart_its_own_div(both):
    ids = [re.search(r'<div id="(altair-viz-[0-9a-f]{32})"', both(_chart(v).to_dict())[0]["text/html"]).group(1)
           for v in (1.0, 2.0)]
    assert ids[0] != ids[1]
