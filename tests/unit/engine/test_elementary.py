"""The engine's exp and sqrt (engine.elementary): against exact references, and the same bits in numpy and torch."""

import numpy as np
import torch

from fairpriv_lab.engine import elementary, models
from fairpriv_lab.engine.elementary import exp_reference, exp_torch_


def _exp_grid() -> np.ndarray:
    """float32 inputs: dense over the finite range, tiny magnitudes, the ends, infinities, NaN."""
    rng = np.random.default_rng(0)
    dense = np.linspace(-104, 89, 1_000_001, dtype=np.float32)
    tiny = np.float32(10.0) ** rng.uniform(-45, -1, 20_000).astype(np.float32)
    ends = np.array([0.0, -0.0, -103.97, -103.972, -103.28, -87.34, -87.33, 88.72, 88.7228, 88.73,
                     -150.0, 200.0, np.inf, -np.inf], dtype=np.float32)
    return np.concatenate([dense, tiny, -tiny, ends])


def test_exp_reference_is_within_one_ulp_of_the_exact_exp():
    x = _exp_grid()
    got = exp_reference(x)
    exact = np.exp(x.astype(np.float64))  # float64: exact enough to judge float32 rounding
    with np.errstate(over="ignore"):
        rounded = exact.astype(np.float32)  # the correctly rounded float32 (0 and inf at the ends)
    finite = np.isfinite(rounded) & (rounded > 0)
    ulp = np.spacing(rounded[finite]).astype(np.float64)
    assert (np.abs(got[finite] - exact[finite]) / ulp).max() < 1.0
    # 0 where exp rounds to 0, inf where it overflows, and nothing in between misplaced
    assert np.array_equal(got[~finite], rounded[~finite])
    assert np.mean(got == rounded) > 0.85  # mostly the correctly rounded value itself
    assert exp_reference(np.float32([0.0]))[0] == 1.0
    assert np.isnan(exp_reference(np.float32([np.nan]))[0])
    # increasing up to its error
    dense = np.linspace(-20, 20, 200_001, dtype=np.float32)
    e = exp_reference(dense).astype(np.float64)
    assert np.all(np.diff(e) >= -2 * np.spacing(e[1:].astype(np.float32)))


def test_exp_in_torch_gives_the_reference_bits():
    x = _exp_grid()
    got = exp_torch_(torch.from_numpy(np.append(x, np.float32(np.nan))))
    assert np.array_equal(got.numpy(), exp_reference(np.append(x, np.float32(np.nan))), equal_nan=True)
    # in place, any shape; the engine's dispatcher takes it for float32 CPU tensors
    t = torch.from_numpy(x[:1_000_000].copy()).view(1000, 1000)
    assert models._exp_(t) is t and np.array_equal(t.view(-1).numpy(), exp_reference(x[:1_000_000]))
    x64 = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    assert torch.equal(models._exp_(x64.clone()), torch.exp(x64))  # float64 (the references): torch's


def test_sqrt_is_ieee_sqrt():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.uniform(0, 1e3, 2_000_000), np.float32(10.0) ** rng.uniform(-45, 38, 200_000),
        np.arange(0, 5000, dtype=np.float64) ** 2,  # perfect squares: exact results
        [0.0, 1e-45, np.inf, 3.4028235e38]]).astype(np.float32)
    got = elementary.sqrt(torch.from_numpy(x))
    assert got.dtype == torch.float32
    assert np.array_equal(got.numpy(), np.sqrt(x))  # numpy's sqrt is the IEEE (correctly rounded) one
    assert torch.isnan(elementary.sqrt(torch.tensor([-1.0, float("nan")]))).all()
    x64 = torch.rand(1000, dtype=torch.float64)
    assert torch.equal(elementary.sqrt(x64), x64.sqrt())
