"""whole_audit: every component equals the separate call with the same seed, exactly."""

import numpy as np
import pandas as pd
import pytest

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.audit.attacks import global_risk, record_risk
from fairpriv_lab.audit.empirical import empirical_epsilon
from fairpriv_lab.audit.whole import whole_audit
from fairpriv_lab.games import aloo_game, half_split_game, loo_game

ALL = [("PA-ALOOA", "cross_fit"), ("PA-ALOOA", "in_sample"), ("PA-GA", "in_sample"),
       ("PA-GBA", "in_sample"), ("PA-GA", "cross_fit"), ("PA-GBA", "cross_fit")]


def _same(a, b):
    for f in ("records", "groups", "accuracy", "ipr", "floor", "n_pairs"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert (a.auditor, a.estimator, a.signal) == (b.auditor, b.estimator, b.signal)


@pytest.mark.parametrize("game_name", ["half", "aloo", "half_large"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_audit_equals_separate_calls(game_name, dtype):
    rng = np.random.default_rng(2)
    if game_name == "half":
        game = half_split_game(90, n_models=12, seed=1)
    elif game_name == "aloo":
        game = aloo_game(rng.integers(0, 3, 150), n_models=10, m=40, seed=2)
    else:  # enough records for PA-GA/GBA's histogram kernel
        game = half_split_game(700, n_models=6, seed=3)
    L = (rng.exponential(size=game.membership.shape) - 0.3 * game.membership)
    L = np.abs(np.round(L, 2)).astype(dtype)
    groups = rng.integers(0, 2, game.n_samples)
    kw = dict(records=game.audit_idx, groups=groups, seed=11)
    out = whole_audit(L, game.membership, auditors=ALL, delta=1e-5, group_names=["a", "b"], **kw)
    assert list(out.risk) == ALL
    for auditor, est in ALL:
        if auditor == "PA-ALOOA":
            want = record_risk(L, game.membership, estimator=est, **kw)
        else:
            want = global_risk(L, game.membership, by_group=auditor == "PA-GBA", estimator=est, **kw)
        _same(out.risk[auditor, est], want)
    want = empirical_epsilon(L, game.membership, delta=1e-5, group_names=["a", "b"], **kw)
    for f in ("fp", "fn", "per_record", "per_record_dp", "mu", "fpr_upper", "fnr_upper"):
        np.testing.assert_array_equal(getattr(out.empirical, f), getattr(want, f), err_msg=f)
    pd.testing.assert_frame_equal(out.empirical.per_group, want.per_group)


def test_whole_audit_loo_game_and_confidence_signal():
    rng = np.random.default_rng(4)
    game = loo_game(60, targets=np.arange(0, 60, 5), n_pairs=5, seed=1)
    L = rng.exponential(size=game.membership.shape).astype(np.float32) + 0.01
    kw = dict(records=game.audit_idx, groups=rng.integers(0, 2, 60), seed=3, signal="confidence")
    out = whole_audit(L, game.membership, auditors=[("PA-LOOA", "in_sample"), ("PA-GA", "in_sample")],
                      **kw)
    _same(out.risk["PA-LOOA", "in_sample"], record_risk(L, game.membership, estimator="in_sample", **kw))
    _same(out.risk["PA-GA", "in_sample"], global_risk(L, game.membership, **kw))
    assert out.empirical is None


def test_whole_audit_record_auditor_only_and_global_only():
    game = half_split_game(50, n_models=6, seed=2)
    L = np.random.default_rng(0).exponential(size=game.membership.shape)
    kw = dict(records=game.audit_idx, groups=np.arange(50) % 2, seed=4)
    out = whole_audit(L, game.membership, delta=1e-5, **kw)  # the default: PA-ALOOA cross_fit
    assert list(out.risk) == [("PA-ALOOA", "cross_fit")]
    _same(out.risk["PA-ALOOA", "cross_fit"], record_risk(L, game.membership, **kw))
    out = whole_audit(L, game.membership, auditors=[("PA-GBA", "cross_fit")], **kw)
    _same(out.risk["PA-GBA", "cross_fit"], global_risk(L, game.membership, by_group=True,
                                                       estimator="cross_fit", **kw))


def test_whole_audit_bad_inputs():
    game = half_split_game(20, n_models=4, seed=0)
    L = np.ones(game.membership.shape)
    with pytest.raises(ConfigError, match="auditor"):
        whole_audit(L, game.membership, auditors=[("PA-XYZ", "in_sample")])
    with pytest.raises(ConfigError, match="estimator"):
        whole_audit(L, game.membership, auditors=[("PA-GA", "best")])
    with pytest.raises(ConfigError, match="auditors"):
        whole_audit(L, game.membership, auditors=[("PA-GA", "in_sample")] * 2)
    with pytest.raises(ConfigError, match="groups"):
        whole_audit(L, game.membership, auditors=[("PA-GBA", "in_sample")])
    with pytest.raises(ConfigError, match="seed"):
        whole_audit(L, game.membership, seed=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="PA-LOOA"):
        whole_audit(L, game.membership, auditors=[("PA-LOOA", "in_sample")])
    with pytest.raises(ConfigError, match="group_names"):  # before any work
        whole_audit(L, game.membership, groups=np.arange(20) % 3, delta=1e-5, group_names=["a"])
