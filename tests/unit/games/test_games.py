import re

import numpy as np
import pytest

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.games import Game, aloo_game, half_split_game, loo_game


def _check_pairs(game, audit):
    mem = game.membership
    assert mem.dtype == np.bool_
    even, odd = mem[0::2], mem[1::2]
    # audit records: exactly one model of every pair holds them
    assert np.all(even[:, audit] != odd[:, audit])
    assert np.all(mem[:, audit].sum(axis=0) == game.n_pairs)


def test_aloo_structure_and_stratification():
    groups = np.array([0] * 80 + [1] * 15 + [2] * 5)
    game = aloo_game(groups, n_models=10, m=20, seed=3)
    assert game.kind == "aloo" and game.m == 20 and game.n_models == 10 and game.n_pairs == 5
    assert np.all(np.diff(game.audit_idx) > 0)
    _check_pairs(game, game.audit_idx)
    rest = np.setdiff1d(np.arange(100), game.audit_idx)
    assert game.membership[:, rest].all()
    counts = np.bincount(groups[game.audit_idx], minlength=3)
    assert counts.tolist() == [16, 3, 1]
    # halves: each model holds m/2 audit records
    assert np.all(game.membership[:, game.audit_idx].sum(axis=1) == 10)
    with pytest.raises(ValueError, match="read-only"):
        game.membership[0, 0] = False


def test_aloo_every_group_represented_even_tiny():
    groups = np.array([0] * 1000 + [1])
    game = aloo_game(groups, n_models=2, m=2, seed=0)
    assert set(groups[game.audit_idx].tolist()) == {0, 1}


def test_aloo_odd_m_balanced_over_pairs():
    groups = np.zeros(7, dtype=int)
    game = aloo_game(groups, n_models=400, m=7, seed=0)
    sizes = game.membership[:, game.audit_idx].sum(axis=1)
    assert set(sizes.tolist()) == {3, 4}
    # the larger half goes to the even model about half the time
    assert 0.35 < np.mean(sizes[0::2] == 4) < 0.65
    _check_pairs(game, game.audit_idx)


def test_aloo_seeded():
    groups = np.repeat([0, 1], 50)
    a = aloo_game(groups, n_models=6, m=10, seed=5)
    b = aloo_game(groups, n_models=6, m=10, seed=5)
    c = aloo_game(groups, n_models=6, m=10, seed=6)
    assert np.array_equal(a.membership, b.membership) and np.array_equal(a.audit_idx, b.audit_idx)
    assert not np.array_equal(a.membership, c.membership)


def test_aloo_m_equals_n_and_m_one():
    groups = np.zeros(5, dtype=int)
    full = aloo_game(groups, n_models=4, m=5, seed=0)
    assert full.audit_idx.tolist() == [0, 1, 2, 3, 4]
    one = aloo_game(groups, n_models=4, m=1, seed=0)
    assert one.m == 1
    _check_pairs(one, one.audit_idx)


def test_aloo_errors():
    groups = np.array([0, 0, 1, 1, 2])
    with pytest.raises(ConfigError, match=r"Expected n_models=3 to be even"):
        aloo_game(groups, n_models=3, m=3)
    with pytest.raises(ConfigError, match=r"Expected n_models=0 to be an integer in \[2, inf\]"):
        aloo_game(groups, n_models=0, m=3)
    with pytest.raises(ConfigError, match=r"Expected m=6 to be an integer in \[1, 5\]"):
        aloo_game(groups, n_models=2, m=6)
    with pytest.raises(ConfigError, match=r"Expected m=2 to be >= 3, the number of groups present. Every group"):
        aloo_game(groups, n_models=2, m=2)
    with pytest.raises(ConfigError, match=re.escape("Expected groups='a float array with non-integer entries' to hold integer group ids")):
        aloo_game(np.array([0.5, 1.0]), n_models=2, m=1)


def test_half_split():
    game = half_split_game(9, n_models=6, seed=1)
    assert game.kind == "half" and game.m == 9
    _check_pairs(game, np.arange(9))
    assert set(game.training_sizes.tolist()) <= {4, 5}
    with pytest.raises(ConfigError, match=re.escape("Expected n_models=5 to be even (models come in complementary pairs)")):
        half_split_game(9, n_models=5)
    with pytest.raises(ConfigError, match=re.escape("Expected n_samples=0 to be an integer in [1, inf]")):
        half_split_game(0, n_models=2)


def test_loo_game():
    game = loo_game(6, np.array([4, 1]), n_pairs=3, seed=0)
    assert game.kind == "loo" and game.n_models == 12
    assert game.targets.tolist() == [4, 4, 4, 1, 1, 1]
    assert game.audit_idx.tolist() == [1, 4]
    mem = game.membership
    for p, t in enumerate(game.targets):
        pair = mem[2 * p : 2 * p + 2]
        assert pair[:, t].sum() == 1  # (D, D \ {x})
        others = np.delete(np.arange(6), t)
        assert pair[:, others].all()
    with pytest.raises(ConfigError, match=re.escape("Expected targets='an array with repeated records' to hold distinct records")):
        loo_game(6, [1, 1], n_pairs=2)
    with pytest.raises(ConfigError, match=re.escape("Expected targets='ids in [6, 6]' to lie in [0, 5]")):
        loo_game(6, [6], n_pairs=2)
    with pytest.raises(ConfigError, match=re.escape("Expected n_pairs=0 to be an integer in [1, inf]")):
        loo_game(6, [1], n_pairs=0)


def test_loo_in_position_randomised():
    game = loo_game(3, [0], n_pairs=200, seed=1)
    in_even = game.membership[0::2, 0]
    assert 70 < in_even.sum() < 130


def test_game_validation():
    mem = np.ones((2, 3), dtype=bool)
    with pytest.raises(ConfigError, match=re.escape("Expected kind='nope' to be one of 'aloo', 'half', 'loo'")):
        Game("nope", mem, np.array([0]))
    with pytest.raises(ConfigError, match=re.escape("Expected membership='array of dtype int64' to be a bool array (True = member)")):
        Game("aloo", mem.astype(int), np.array([0]))
    with pytest.raises(ConfigError, match=re.escape("Expected n_models=3 to be even (models come in complementary pairs)")):
        Game("aloo", np.ones((3, 3), dtype=bool), np.array([0]))
    with pytest.raises(ConfigError, match=re.escape("Expected audit_idx='an array' to be sorted, unique, in [0, 2]")):
        Game("aloo", mem, np.array([2, 1]))
    with pytest.raises(ConfigError, match=re.escape("Expected targets=None to give the target of each pair when kind='loo'")):
        Game("loo", mem, np.array([0]))
