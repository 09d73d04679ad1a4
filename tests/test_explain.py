"""The demo's plain-language conclusion and the shared glossary (issue 17, item 3)."""

from types import SimpleNamespace

import numpy as np
import pytest

from fairpriv_lab._glossary import TERMS, glossary
from fairpriv_lab.audit import RecordRisk
from fairpriv_lab.demo import conclusion
from fairpriv_lab.risk import GroupRisk


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
