"""Every chart a viz test converts also goes through the panel's fast data transformer."""

import pytest


@pytest.fixture(autouse=True)
def fast_transformer_gives_altairs_spec(monkeypatch):
    # viz._core.spec_dict (the panel's to_dict) must give altair's own spec, data included,
    # for every chart the tests build: each top-level to_dict is compared with it
    alt = pytest.importorskip("altair")
    from fairpriv_lab.viz import spec_dict

    original = alt.TopLevelMixin.to_dict
    busy: list[int] = []
    checked: list[int] = []

    def to_dict(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        top = not args and kwargs.get("context") is None and kwargs.get("format", "vega-lite") == "vega-lite"
        if top and not busy and alt.data_transformers.active == "default":
            busy.append(1)
            try:
                assert spec_dict(self) == original(self, validate=False)
            finally:
                busy.pop()
            checked.append(1)
        return out

    monkeypatch.setattr(alt.TopLevelMixin, "to_dict", to_dict)
    yield checked
