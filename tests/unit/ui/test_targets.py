"""The classroom targets of issue 16 (benchmarks/bench_widgets.py prints them): each judged PASS/FAIL per dataset."""

import pandas as pd

from fairpriv_lab.ui.targets import judge


def _result(cold=2.0, first=0.8, cached=0.2, hw=0.6, change_hi=-0.3, gap_lo=0.5):
    change = pd.DataFrame({"group": ["g0", "g1"], "change": [-0.8, -1.7], "ci_low": [-1.1, -2.3],
                           "ci_high": [change_hi, -1.1]})
    change["excludes_zero"] = (change.ci_low > 0) | (change.ci_high < 0)
    run = {"wall": cold, "cpu": cold / 2, "first": first}
    return {"sgd": run, "dp": dict(run), "cached": cached, "hw_sgd": [("g0", 0.2), ("g1", hw)],
            "hw_dp": [("g0", 0.2), ("g1", 0.4)], "change": change,
            "gap_sgd": ("g1", 1.2, gap_lo, 1.7), "gap_dp": ("g1", 0.3, -0.2, 0.7)}


def test_every_target_passes_or_fails_on_its_own_number():
    ok = judge("synthetic", _result())
    assert len(ok) == 9 and all(passed for _, _, passed in ok)
    assert [t for t, _, _ in ok][-1] == "groups differ under SGD: minority - majority CI above 0"
    assert len(judge("adult", _result())) == 8  # the gap is synthetic's lesson, not Adult's
    cases = {"cold SGD <= 5 s": {"cold": 5.2}, "first picture DP-SGD <= 1.5 s": {"first": 1.6},
             "cached <= 0.3 s": {"cached": 0.31}, "every GPR CI half-width SGD <= 1 pp": {"hw": 1.05},
             "every SGD -> DP-SGD change CI excludes 0": {"change_hi": 0.02},
             "groups differ under SGD: minority - majority CI above 0": {"gap_lo": -0.1}}
    for target, bad in cases.items():
        failed = [t for t, _, passed in judge("synthetic", _result(**bad)) if not passed]
        assert target in failed, (target, failed)
