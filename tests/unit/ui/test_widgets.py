"""The audit panel's logic, driven without a browser: set controls, run, inspect widget values."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fairpriv_lab import ConfigError
from fairpriv_lab.data import registry
from fairpriv_lab.data.builtin import make_synthetic
from fairpriv_lab.ui.panel import (
    MISSING_UI_MESSAGE,
    AuditPanel,
    PanelSettings,
    _progress_fraction,
    build_panel,
    default_settings,
)

pytest.importorskip("ipywidgets")
pytestmark = pytest.mark.usefixtures("torch_one_thread")

# Tiny but real: 400 Adult records, 4 models, 40 audited records, 2 epochs (about a second).
TINY = {"n": 400, "n_models": 4, "m": 40, "epochs": 2, "device": "cpu"}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRPRIV_LAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def panel():
    return AuditPanel(PanelSettings(**TINY))


def test_missing_ui_names_the_extra(monkeypatch):
    assert "pip install fairpriv-lab[ui]" in MISSING_UI_MESSAGE
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r"pip install fairpriv-lab\[ui\]"):
        AuditPanel(PanelSettings(**TINY))


def test_settings_validate_with_the_package_template():
    with pytest.raises(ConfigError, match=r"^Expected n_models=7 to be even"):
        PanelSettings(n_models=7)
    with pytest.raises(ConfigError, match=r"^Expected method='dp' to be one of 'sgd'"):
        PanelSettings(method="dp")
    with pytest.raises(ConfigError, match=r"^Expected tau=0.5 in \[1, inf\)"):
        PanelSettings(tau=0.5)


def test_settings_to_config_passes_only_what_the_method_uses():
    sgd = PanelSettings(method="sgd", epsilon=3.0, tau=4.0).to_config()
    assert sgd.train.method == "sgd" and sgd.train.epsilon is None
    # tau and epsilon are unused by SGD: the same experiment, the same cache entry.
    assert sgd.digest == PanelSettings(method="sgd").to_config().digest
    s = PanelSettings(method="dpsgds:mean_direction", privacy="sigma", sigma=1.5, tau=3.0).to_config()
    assert (s.train.method, s.train.statistic, s.train.noise_multiplier, s.train.tau) == (
        "dpsgds", "mean_direction", 1.5, 3.0)
    assert s.train.epsilon is None


def test_default_settings_on_cpu_are_small():
    s = default_settings("cpu")
    assert (s.n, s.n_models, s.m) == (2000, 16, 200)
    assert default_settings("cpu", epochs=3).epochs == 3


def test_progress_fraction_reads_the_experiment_callback():
    assert _progress_fraction(("train", 8.0, 16.0), {}) == pytest.approx(0.45)
    assert _progress_fraction(("audit", 1.0, 1.0), {}) == pytest.approx(1.0)
    assert _progress_fraction(("train", 1.0, 0.0), {}) is None


def test_run_updates_table_chart_and_progress(panel):
    assert panel.table.value == "" and panel.charts.outputs == () and panel.last_chart_spec is None
    assert panel.run() is True
    assert "PA-ALOOA group privacy risk" in panel.table.value
    assert "Male" in panel.table.value and "Female" in panel.table.value
    assert panel.progress.value == pytest.approx(1.0)
    assert panel.last_source == "computed"
    # 27 and 13 audited records: the audit's small-group warning is shown in the panel.
    assert "SmallGroupWarning" in panel.message.value
    assert len(panel.charts.outputs) >= 1
    assert all(o["output_type"] == "display_data" for o in panel.charts.outputs)
    spec = panel.last_chart_spec
    assert spec is not None and "layer" in spec
    groups = {row["group"] for rows in spec["datasets"].values() for row in rows if "group" in row}
    assert {"Male", "Female"} <= groups


def test_change_then_run_updates_in_place_and_memo_is_instant(panel):
    panel.run()
    first_table, first_spec = panel.table.value, panel.last_chart_spec
    charts_widget = panel.charts
    panel.set(method="dpsgd", epsilon=1.0)
    assert "press <b>Run audit</b>" in panel.message.value
    assert panel.table.value == first_table  # nothing changes before Run
    assert panel.run() is True
    assert panel.table.value != first_table
    assert panel.last_chart_spec != first_spec
    assert panel.charts is charts_widget  # the same Output widget, updated in place
    assert "ε = 1.00" in panel.table.value or "ε = 0.99" in panel.table.value
    # Going back to settings already run redraws at once, without Run.
    panel.set(method="sgd")
    assert panel.last_source == "memo"
    assert panel.table.value == first_table
    assert "from memory" in panel.message.value


def test_disk_cache_serves_a_new_panel(panel):
    panel.run()
    again = AuditPanel(PanelSettings(**TINY))
    assert again.run() is True
    assert again.result.from_cache
    assert again.table.value == panel.table.value


def test_sgd_disables_privacy_controls(panel):
    panel.set(method="sgd")
    assert panel.epsilon.disabled and panel.sigma.disabled and panel.clip.disabled
    assert "no privacy budget" in panel.privacy_note.value
    panel.set(method="dpsgd")
    assert not panel.epsilon.disabled and panel.sigma.disabled and not panel.clip.disabled
    assert panel.tau.disabled and panel.stat_noise_ratio.disabled
    panel.set(privacy="sigma")
    assert panel.epsilon.disabled and not panel.sigma.disabled
    panel.set(method="dpsgds:norm")
    assert not panel.tau.disabled and not panel.stat_noise_ratio.disabled


def test_cnn_is_offered_only_for_images(panel):
    assert "cnn" not in [v for _, v in panel.model.options]
    panel.set(model="cnn")
    assert panel.model.value == "mlp"
    assert "CNN needs image data" in panel.message.value
    panel.set(dataset="digits")
    assert "cnn" in [v for _, v in panel.model.options]
    panel.set(model="cnn")
    panel.set(dataset="adult")
    assert panel.model.value == "mlp"
    assert "Switched to the MLP" in panel.message.value


def test_group_methods_need_two_groups(monkeypatch):
    info = registry.DatasetInfo(
        "one-group", ("group",), True, "a single group",
        lambda group, **kw: make_synthetic(300, group_sizes=(1.0,), separation=2.0, outlier_rate=0.0, seed=0),
    )
    monkeypatch.setitem(registry._REGISTRY, "one-group", info)
    p = AuditPanel(PanelSettings(**TINY), datasets=("adult", "one-group"))
    assert "dpsgds:norm" in [v for _, v in p.method.options]
    p.set(method="dpsgds:norm")
    p.set(dataset="one-group")
    offered = [v for _, v in p.method.options]
    assert "dpsgds:norm" not in offered and "dpsgdf" not in offered and "dpsgd" in offered
    assert p.method.value == "dpsgd"
    assert "single group" in p.message.value
    p.set(method="dpsgdf")
    assert "single group" in p.message.value and p.method.value == "dpsgd"


def test_refused_settings_keep_the_last_result(panel):
    panel.run()
    table, result = panel.table.value, panel.result
    panel.set(m=5000)  # more audited records than the 320 training records
    assert "cannot run" in panel.message.value and "Expected game.m=5000" in panel.message.value
    assert panel.run() is False
    assert panel.table.value == table and panel.result is result


def test_a_failing_run_is_a_message_not_a_traceback():
    def broken(config, progress=None):
        raise RuntimeError("the GPU caught fire")

    p = AuditPanel(PanelSettings(**TINY), runner=broken)
    assert p.run() is False
    assert "RuntimeError: the GPU caught fire" in p.message.value
    assert p.progress.bar_style == "danger" and not p.run_button.disabled
    assert isinstance(p.last_error, RuntimeError)


def test_set_rejects_unknown_controls(panel):
    with pytest.raises(ConfigError, match=r"^Expected setting='colour' to be one of"):
        panel.set(colour="red")


def test_build_panel_applies_defaults():
    p = build_panel(device="cpu", dataset="adult", group="race", method="dpsgd", epsilon=2.0, **{
        k: v for k, v in TINY.items() if k != "device"})
    assert p.group.value == "race" and p.method.value == "dpsgd"
    assert np.isclose(p.epsilon.value, 2.0)
    assert p.settings.n == 400


def test_epsilon_slider_keeps_exact_values():
    """A log slider snapped 8.0 to 7.94; the choice slider keeps what it is given."""
    panel = AuditPanel(PanelSettings(**TINY))
    assert panel.settings.epsilon == PanelSettings(**TINY).epsilon
    panel.set(method="dpsgd", epsilon=7.0)
    assert panel.settings.epsilon == 7.0
    panel.set(epsilon=8.0)
    assert panel.settings.epsilon == 8.0
    with pytest.raises(ConfigError, match="epsilon"):
        panel.set(epsilon=-1.0)
