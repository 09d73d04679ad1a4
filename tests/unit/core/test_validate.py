"""The one message template of fairpriv_lab._core.validate, tested by exact text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fairpriv_lab._core import validate as V
from fairpriv_lab._core.exceptions import ConfigError, FairPrivError
from fairpriv_lab._core.rng import as_generator, spawn_seed


def _msg(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_fail_builds_and_hint():
    err = V.fail("epsilon", -1, "in (0, inf)")
    assert isinstance(err, ConfigError) and isinstance(err, ValueError) and isinstance(err, FairPrivError)
    assert str(err) == "Expected epsilon=-1 in (0, inf)"
    assert str(V.fail("mode", "x", "to be one of 'a'", "Try 'a'")) == "Expected mode='x' to be one of 'a'. Try 'a'"


def test_choice():
    assert V.choice("x", "a", ["a", "b"]) == "a"
    assert _msg(V.choice, "x", "c", ["a", "b"]) == "Expected x='c' to be one of 'a', 'b'"
    assert _msg(V.choice, "k", 3, (1, 2)) == "Expected k=3 to be one of 1, 2"


def test_number():
    assert V.number("p", 0.5, 0, 1) == 0.5
    assert V.number("p", np.float32(1.0), 0, 1) == 1.0
    assert _msg(V.number, "epsilon", -1, 0, math.inf, low_open=True) == "Expected epsilon=-1 in (0, inf)"
    assert _msg(V.number, "p", 1.5, 0, 1) == "Expected p=1.5 in [0, 1]"
    assert _msg(V.number, "p", 1, 0, 1, high_open=True) == "Expected p=1 in [0, 1)"
    assert _msg(V.number, "p", float("nan"), 0, 1) == "Expected p=nan in [0, 1]"
    assert _msg(V.number, "p", "a", 0, 1) == "Expected p='a' to be a real number in [0, 1]"
    assert _msg(V.number, "p", True, 0, 1) == "Expected p=True to be a real number in [0, 1]"
    assert _msg(V.number, "t", 5, -math.inf, 2) == "Expected t=5 in (-inf, 2]"


def test_positive():
    assert V.positive("lr", 0.1) == 0.1
    assert _msg(V.positive, "lr", 0) == "Expected lr=0 in (0, inf)"
    assert _msg(V.positive, "lr", math.inf) == "Expected lr=inf in (0, inf)"


def test_integer():
    assert V.integer("n", np.int64(3), 1) == 3
    assert _msg(V.integer, "n", 2.5, 1) == "Expected n=2.5 to be an integer in [1, inf]"
    assert _msg(V.integer, "n", 0, 1, 10) == "Expected n=0 to be an integer in [1, 10]"
    assert _msg(V.integer, "n", True) == "Expected n=True to be an integer in [-inf, inf]"
    assert _msg(V.integer, "n", 11, None, 10) == "Expected n=11 to be an integer in [-inf, 10]"


def test_bool_matrix():
    m = np.zeros((2, 3), bool)
    assert V.bool_matrix("m", m, shape=(2, None)) is not None
    assert _msg(V.bool_matrix, "m", np.zeros((2, 2))) == (
        "Expected m='array of dtype float64' to be a bool array (True = member)"
    )
    assert _msg(V.bool_matrix, "m", np.zeros(2, bool)) == (
        "Expected m='array of shape (2,)' to be 2-D (n_models, n_samples)"
    )
    assert _msg(V.bool_matrix, "m", m, shape=(2, 4)) == "Expected m='array of shape (2, 3)' to have size 4 on axis 1"


def test_float_array():
    np.testing.assert_array_equal(V.float_array("x", [1, 2], 1), [1.0, 2.0])
    assert V.float_array("x", [np.inf], 1, finite=False)[0] == np.inf
    assert _msg(V.float_array, "x", [1, np.nan], 1) == "Expected x='an array with NaN or infinite entries' to be finite"
    assert _msg(V.float_array, "x", [1], 2) == "Expected x='array of shape (1,)' to have 2 dimension(s)"


def test_group_ids():
    out = V.group_ids("g", [0.0, 1.0, True])
    assert out.dtype == np.int64 and out.tolist() == [0, 1, 1]
    assert _msg(V.group_ids, "g", [0.5, 1]) == "Expected g='a float array with non-integer entries' to hold integer group ids"
    assert _msg(V.group_ids, "g", [0, np.nan]) == "Expected g='a float array with non-integer entries' to hold integer group ids"
    assert _msg(V.group_ids, "g", ["a"]) == "Expected g='array of dtype <U1' to hold integer group ids"
    assert _msg(V.group_ids, "g", [[0]]) == "Expected g='array of shape (1, 1)' to be 1-D"
    assert _msg(V.group_ids, "g", [0, -1]) == "Expected g='ids down to -1' to be >= 0"
    assert _msg(V.group_ids, "g", [0, 3], n_groups=2) == "Expected g='ids up to 3' to be < n_groups=2"
    assert _msg(V.group_ids, "g", [0, 1], n=3) == "Expected g='array of length 2' to have length 3"
    assert V.group_ids("g", np.array([], dtype=np.int64), n_groups=2).size == 0


def test_rng_helpers():
    g = np.random.default_rng(0)
    assert as_generator(g) is g
    a, b, c = as_generator(1).random(3), as_generator(1).random(3), as_generator(2).random(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert as_generator(np.random.SeedSequence(5)).integers(100) == np.random.default_rng(np.random.SeedSequence(5)).integers(100)
    assert _msg(as_generator, "x") == "Expected seed='x' to be an int, a numpy Generator, a SeedSequence or None"
    assert _msg(as_generator, True) == "Expected seed=True to be an int, a numpy Generator, a SeedSequence or None"
    s1, s2 = spawn_seed(as_generator(0)), spawn_seed(as_generator(0))
    assert s1 == s2 and 0 <= s1 < 2**63 - 1
