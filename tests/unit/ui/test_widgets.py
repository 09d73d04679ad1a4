"""The audit panel's logic, driven without a browser: set controls, run, inspect widget values."""

from __future__ import annotations

import sys
import threading

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

# Tiny but real: 400 Adult records, an MLP, 4 models of the ALOOA game, 40 audited records,
# 2 epochs (about a second). The interactive default game (half-split) is tested below.
TINY = {"n": 400, "n_models": 4, "m": 40, "epochs": 2, "device": "cpu", "model": "mlp", "game": "aloo",
        "chunk_models": 4}


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


def test_default_settings_on_cpu_audit_every_record_of_a_half_split_game():
    # issue 16: the half-split game auditing every training record is the interactive default
    s = default_settings("cpu")
    cfg = s.to_config()
    assert (cfg.game.kind, cfg.game.m, cfg.game.n_models) == ("half", None, 128)
    assert (s.dataset, s.model, s.n, s.epochs) == ("adult", "lr", 4000, 10)
    assert default_settings("cpu", epochs=3).epochs == 3
    # ALOOA stays available, with its m
    aloo = default_settings("cpu", game="aloo", m=300).to_config()
    assert (aloo.game.kind, aloo.game.m) == ("aloo", 300)


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


# ---------------------------------------------------------------- issue 16 / 18: the panel's behaviour
HALF = {"dataset": "synthetic", "model": "lr", "n_models": 16, "chunk_models": 4, "epochs": 2, "device": "cpu",
        "game": "half", "n": None}


def test_half_split_run_draws_partials_then_the_result():
    p = AuditPanel(PanelSettings(**HALF))
    seen = []
    p.table.observe(lambda ch: seen.append(ch["new"]), names="value")
    assert p.run() is True
    partials = [h for h in p.history if h.startswith("partial")]
    assert partials == ["partial 4/16", "partial 8/16", "partial 12/16"]
    assert any("4 of 16 models" in t for t in seen)  # a partial picture before the end
    assert "of 16 models" not in p.table.value and "half-split" in p.table.value
    assert p.result.game.kind == "half" and p.result.game.m == p.result.n_train
    assert p.partial is None and p.last_source == "computed"


def test_plan_is_shown_before_running_and_uses_a_pilot_after():
    p = AuditPanel(PanelSettings(**HALF))
    assert "you can detect differences between groups ≥" in p.plan.value and "at least" in p.plan.value
    p.run()
    p.set(n_models=32)
    assert p.plan_result is not None and not p.plan_result.lower_bound
    assert "at least" not in p.plan.value


def test_change_is_a_signed_difference_with_ci_and_ghost_bars_on_fixed_axes():
    p = AuditPanel(PanelSettings(**HALF))
    p.run()
    first_domain = p.last_chart_spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    p.set(method="dpsgd", epsilon=1.0)
    p.run()
    df = p.change
    assert list(df["group"]) == ["g0", "g1"] and df["paired"].all()
    g1 = p.result.group_risk["PA-ALOOA"].by_group.gpr[1] - p.previous.group_risk["PA-ALOOA"].by_group.gpr[1]
    assert df["change"].iloc[1] == pytest.approx(g1)
    assert (df["ci_low"] <= df["change"]).all() and (df["change"] <= df["ci_high"]).all()
    assert "Change since the previous result" in p.change_table.value and "synthetic" in p.change_table.value
    spec = p.last_chart_spec
    ghost = [lay for lay in spec["layer"] if lay.get("mark", {}).get("type") == "bar" and lay["mark"].get("strokeDash")]
    assert len(ghost) == 1 and "previous run" in " ".join(spec["title"]["subtitle"])
    domain = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert domain[0] <= first_domain[0] and domain[1] >= first_domain[1]  # the axis never shrinks
    assert all(lay["encoding"]["y"]["scale"]["domain"] == domain for lay in spec["layer"] if "y" in lay.get("encoding", {}))
    # GPRP always comes with its zero-leakage reference
    assert "zero-leakage GPRP" in p.table.value


def test_stale_results_are_greyed_and_labelled_and_done_in_is_kept():
    p = AuditPanel(PanelSettings(**HALF))
    p.run()
    done = p.timing.value
    assert "Done in" in done and "fairpriv-stale" not in p.results._dom_classes
    p.set(clip=0.5, method="dpsgd")
    assert "fairpriv-stale" in p.results._dom_classes
    assert "other settings" in p.shown_label.value and "synthetic/group lr sgd" in p.shown_label.value
    assert done.split(" s")[0] in p.timing.value  # the time of the result on screen stays
    p.set(method="sgd")  # back to the settings on screen
    assert "fairpriv-stale" not in p.results._dom_classes


def test_dataset_change_resets_sizes_that_do_not_fit():
    p = AuditPanel(PanelSettings(n=2000, n_models=4, m=1500, game="aloo", device="cpu"))
    p.set(dataset="digits")
    assert p.n.value == 0  # all 1,797 records
    assert "1,797 records" in p.message.value and "Records reset from 2,000" in p.message.value
    assert "Audited records m reset from 1,500" in p.message.value
    assert p.settings.to_config().game.m <= 1438
    p.set(dataset="adult")  # "all" of digits is 1,797 records of adult: small and fits
    assert p.n.value == 1797


def test_a_change_during_a_threaded_run_cancels_it_and_starts_the_new_one():
    p = AuditPanel(PanelSettings(**{**HALF, "n_models": 64, "epochs": 3}))
    started = threading.Event()
    p.table.observe(lambda ch: started.set(), names="value")
    job = p.start()
    assert started.wait(60), p.history  # a partial picture appeared
    p.set(clip=0.5, method="dpsgd")
    assert p.wait(120), p.message.value
    assert job.cancelled.is_set() and not job.ok
    assert any(h.startswith("cancelled synthetic/group lr sgd") for h in p.history), p.history
    assert p.result.config.train.method == "dpsgd" and p.result.config.train.clip == 0.5
    assert "fairpriv-stale" not in p.results._dom_classes and "Done in" in p.timing.value


def test_the_panel_opens_on_a_cached_result():
    s = PanelSettings(**HALF)
    first = AuditPanel(s)
    assert first.result is None and first.run()
    again = AuditPanel(s)
    assert again.result is not None and again.result.from_cache
    assert "Opened on a cached result" in again.message.value


def test_panel_defaults_are_the_schemas_classroom_defaults():
    """One source of truth: every panel default that is an experiment field comes from the schema."""
    from fairpriv_lab.experiment.config import classroom_default_of
    from fairpriv_lab.ui.panel import PANEL_FIELDS

    s = PanelSettings()
    own = {"sigma", "stat_noise_ratio"}  # panel-only starting values of fields the schema leaves unset
    for name, key in PANEL_FIELDS.items():
        if name not in own:
            assert getattr(s, name) == classroom_default_of(key), name
    # a dataset's own classroom defaults (synthetic: more generated records) come from the schema too
    syn = default_settings("cpu", dataset="synthetic")
    for name, key in PANEL_FIELDS.items():
        if name not in own:
            assert getattr(syn, name) == classroom_default_of(key, "synthetic"), name
    assert syn.n > s.n and default_settings("cpu", dataset="synthetic", n=500).n == 500


def test_switching_dataset_moves_the_sizes_the_student_did_not_set():
    from fairpriv_lab.experiment.config import classroom_default_of

    p = AuditPanel(default_settings("cpu"), show_cached=False)
    p.set(dataset="synthetic")
    syn = classroom_default_of("data.n", "synthetic")
    assert p.n.value == syn and "Classroom settings of 'synthetic': Records 4,000 → 8,000" in p.message.value
    assert p.settings.to_config().data.n == syn  # generated at that size: no reset to 2,000
    assert (p.settings.epsilon, p.settings.clip) == (classroom_default_of("train.epsilon", "synthetic"),
                                                     classroom_default_of("train.clip", "synthetic"))
    assert "ε 8 → 0.5, C 1 → 10" in p.message.value
    p.set(dataset="adult")
    assert p.n.value == 4000
    p.set(n=3000, epochs=4)  # the student's own sizes stay
    p.set(dataset="synthetic")
    assert (p.n.value, p.epochs.value) == (3000, 4) and "Classroom sizes" not in p.message.value
    q = AuditPanel(default_settings("cpu", dataset="synthetic", n=1000), show_cached=False)
    q.set(dataset="adult")  # opened off the classroom size: the student's, kept
    assert q.n.value == 1000


def test_build_panel_with_m_is_the_notebooks_aloo_run():
    """Notebooks 00 and 03 pass m: their own run(config) must be the panel's first (same cache entry)."""
    from fairpriv_lab.experiment import ExperimentConfig

    kw = {"dataset": "adult", "group": "sex", "model": "mlp", "n": 400, "n_models": 4, "m": 40,
          "epochs": 2, "batch_size": 64, "lr": 0.3, "seed": 0}
    p = build_panel(device="cpu", **kw)
    notebook = ExperimentConfig(
        data={"name": "adult", "group": "sex", "n": 400, "seed": 0},
        train={"model": "mlp", "method": "sgd", "epochs": 2, "batch_size": 64, "lr": 0.3},
        game={"kind": "aloo", "n_models": 4, "m": 40}, seed=0, device="cpu")
    assert p.settings.to_config().digest == notebook.digest


def test_progress_line_says_models_elapsed_and_time_left():
    from fairpriv_lab.ui.panel import _progress_line

    line = _progress_line(("train", 64.0, 128.0), {}, 0.45, 2.0)
    assert "64 of 128 models" in line and "2.0 s elapsed" in line
    assert "about 2.4 s left" in line  # 2.0 s * (1 - 0.45) / 0.45
    assert "left" not in _progress_line(("train", 0.0, 128.0), {}, 0.0, 0.1)


def test_warm_configs_cover_the_defaults_and_exercises_sized_to_each_dataset(monkeypatch, capsys):
    from fairpriv_lab.cli import notebook_tools
    from fairpriv_lab.experiment.config import classroom_default_of
    from fairpriv_lab.ui import panel as panel_mod
    from fairpriv_lab.ui.panel import fit_sizes, warm_configs

    configs = warm_configs(device="cpu")
    labels = [c.label for c in configs]
    assert "adult/sex lr sgd" in labels and "adult/sex lr dpsgd eps=1" in labels
    assert {c.train.clip for c in configs if c.train.method == "dpsgd" and c.data.name == "adult"} == {1.0, 0.1}
    assert len({c.digest for c in configs}) == len(configs)
    synthetic = [c for c in configs if c.data.name == "synthetic"]
    # synthetic is generated at its own classroom size (issue 16), not cut to 2,000 records
    assert synthetic and all(c.data.n == classroom_default_of("data.n", "synthetic") for c in synthetic)
    assert all(c.data.n == classroom_default_of("data.n") for c in configs if c.data.name == "adult")
    assert all(c.game.kind == "half" for c in configs)
    s, notes = fit_sizes(PanelSettings(game="aloo", m=5000, n=1000, batch_size=512), 45222)
    assert (s.n, s.m, s.batch_size) == (1000, 200, 512) and len(notes) == 1  # 600 records per model fit
    monkeypatch.setattr(panel_mod, "warm", lambda device: [f"computed x on {device}"])
    assert notebook_tools.main(["warm", "--device", "cpu"]) == 0
    assert "computed x on cpu" in capsys.readouterr().out


def test_every_epsilon_the_slider_offers_is_reachable_at_the_classroom_sizes():
    # A value on the slider that the accountant refuses would waste the student's click. The
    # classroom runs: adult 3,200 and synthetic 6,400 training records, batch 256, 10 epochs.
    import pytest

    from fairpriv_lab._core.exceptions import PrivacyAccountingError
    from fairpriv_lab.engine.privacy import calibrate_noise
    from fairpriv_lab.ui.panel import EPSILON_STEPS

    for n_train in (3200, 6400):
        q, steps = 256 / n_train, 10 * n_train // 256
        for eps in EPSILON_STEPS:
            assert calibrate_noise(eps, sample_rate=q, steps=steps, delta=1e-5) > 0
        # below what RDP's orders can certify, the error says why and what to do
        with pytest.raises(PrivacyAccountingError, match="accountant='prv'"):
            calibrate_noise(0.05, sample_rate=q, steps=steps, delta=1e-5)


def test_final_charts_are_schema_validated_once_per_shape(monkeypatch):
    import altair as alt
    import pandas as pd
    from altair.utils.schemapi import SchemaValidationError

    import fairpriv_lab.ui.panel as P

    def chart(values, scale_type="linear", title="GPR"):
        df = pd.DataFrame({"group": ["a", "b"], "gpr": values})
        return alt.Chart(df, title=title).mark_bar().encode(
            x="group:N", y=alt.Y("gpr:Q", scale=alt.Scale(type=scale_type, domain=[0, max(values)])))

    one, two = chart([1.0, 2.5]), chart([0.3, 7.0])
    assert P.chart_shape(one.to_dict()) == P.chart_shape(two.to_dict())  # numbers and rows only
    assert P.chart_shape(one.to_dict()) != P.chart_shape(chart([1.0, 2.5], title="other").to_dict())
    monkeypatch.setattr(P, "_VALIDATED_SHAPES", set())
    calls = []
    real = alt.Chart.to_dict

    def counted(self, *args, validate=True, **kwargs):
        calls.append(validate)
        return real(self, *args, validate=validate, **kwargs)

    monkeypatch.setattr(alt.Chart, "to_dict", counted)
    assert P._spec_of(one, validate=True) == one.to_dict(validate=False)
    P._spec_of(two, validate=True)
    P._spec_of(two, validate=False)
    assert calls.count(True) == 1  # validated the first time its shape was seen
    with pytest.raises(SchemaValidationError):  # a new shape is validated: a bad spec raises
        P._spec_of(chart([1.0, 2.0], scale_type="not-a-scale"), validate=True)
    assert len(P._VALIDATED_SHAPES) == 1
