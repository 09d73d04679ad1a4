"""The demo's plain-language conclusion and the shared glossary (issue 17, item 3)."""

from types import SimpleNamespace

import numpy as np
import pytest

from fairpriv_lab._core.glossary import TERMS, glossary
from fairpriv_lab.audit import GroupRisk, RecordRisk
from fairpriv_lab.ui.demo import conclusion


def _run(method, ipr_small, ipr_large, *, seed=0, n=(200, 400)):
    rng = np.random.default_rng(seed)
    ipr = np.r_[ipr_small + 0.02 * rng.standard_normal(n[0]), ipr_large + 0.02 * rng.standard_normal(n[1])]
    groups = np.repeat([0, 1], n)
    rr = RecordRisk(np.arange(ipr.size), groups, (ipr + 1) / 2, ipr, np.zeros(ipr.size), "PA-ALOOA", "cross_fit")
    gr = GroupRisk(rr, ["Female", "Male"], n_boot=300, seed=seed)
    cfg = SimpleNamespace(train=SimpleNamespace(method=method))
    return SimpleNamespace(group_risk={"PA-ALOOA": gr}, config=cfg, accuracy=0.8)


def test_conclusion_calls_a_gap_real_only_when_its_interval_excludes_zero():
    text = " ".join(conclusion([_run("sgd", 0.05, 0.01), _run("dpsgds", 0.01, 0.01, seed=1)]).split())
    assert "GPRP went 4." in text and "(SGD -> DP-SGD-S)" in text
    assert "GPR(Female) - GPR(Male)" in text
    assert "The interval excludes 0 for SGD:" in text  # +4 pp, CI far from 0
    assert "excludes 0 for SGD, DP-SGD-S" not in text


def test_conclusion_says_nothing_is_shown_when_every_interval_contains_zero():
    text = " ".join(conclusion([_run("sgd", 0.01, 0.01), _run("dpsgd", 0.01, 0.01, seed=2)]).split())
    assert "Every interval contains 0" in text and "shown to be real" in text


def test_glossary_defines_each_term_once():
    text = glossary()
    for term in TERMS:
        assert sum(line.startswith(f"  {term} ") for line in text.splitlines()) == 1
    with pytest.raises(KeyError):
        glossary(("not a term",))


def test_summary_prints_whole_and_reprs_are_one_line(tmp_path, monkeypatch):
    """`print(result.summary())` shows every column (no '... [6 rows x 18 columns]')."""
    from fairpriv_lab.experiment import ExperimentConfig, run

    cfg = ExperimentConfig.from_dict({
        "data": {"name": "synthetic", "n": 200}, "train": {"model": "lr", "epochs": 1, "batch_size": 40},
        "game": {"kind": "aloo", "n_models": 4, "m": 40}, "audit": {"n_boot": 20, "min_group_size": 5},
        "chunk_models": 4, "device": "cpu"})
    res = run(cfg, cache=tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    s = res.summary()
    text = str(s)
    assert "..." not in text and "rows x" not in text
    for col in s.columns:
        assert col in text, col
    assert all(len(line) <= 80 for line in text.splitlines())
    assert type(s[["gpr"]]).__name__ == "DataFrame"  # derived frames are plain again
    # empirical ε: one wording, the observed bound then the cap of these many models
    table = res.table()
    assert "Empirical ε̂ (lower bound read from the attacks) per group" in table
    assert table.count("largest ε̂ these 4 models could certify:") == 2
    assert "certifiable with" not in table
    # outcome fairness: n counts the group's test records, not test records x models
    assert res.outcome.by_group["n"].sum() == res.n_test
    caps = res.empirical_epsilon["max_certifiable"].tolist()
    assert s["empirical_epsilon_cap"].tolist()[:2] == caps
    for obj in (res, res.game, res.record_risk["PA-ALOOA"], res.group_risk["PA-ALOOA"], res.outcome):
        r = repr(obj)
        assert "\n" not in r and len(r) < 200 and "array(" not in r, r


def test_exported_notebook_badges_fall_back_to_text_offline():
    from fairpriv_lab.sweep.notebook_runs import offline_badges

    page = ('<a href="https://colab.research.google.com/x"><img alt="Open In Colab" '
            'src="https://colab.research.google.com/assets/colab-badge.svg"/></a>'
            '<img alt="chart" src="data:image/png;base64,AAAA"/>')
    out = offline_badges(page)
    assert out.count("onerror=") == 1 and "this.alt" in out
    assert '<img alt="chart" src="data:image/png;base64,AAAA"/>' in out


def test_report_and_sweep_tables_scroll_instead_of_overflowing():
    from fairpriv_lab.sweep import report as sweep_report
    from fairpriv_lab.ui import report

    assert "overflow-x:auto" in report._CSS and "overflow-x:auto" in sweep_report._CSS
