"""The engine's elementary functions (engine.elementary) and its compiled kernels (engine._fused) against slow references."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from fairpriv_lab.engine import _fused, elementary, models
from fairpriv_lab.engine.elementary import LANES, tanh_reference


def _grid() -> np.ndarray:
    """float32 inputs: a dense grid over [-12, 12], tiny and huge magnitudes, infinities, signed zeros."""
    rng = np.random.default_rng(0)
    dense = np.linspace(-12, 12, 400_001, dtype=np.float32)
    tiny = np.float32(10.0) ** rng.uniform(-40, -1, 20_000).astype(np.float32)
    huge = np.float32(10.0) ** rng.uniform(1, 38, 2_000).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, elementary.C, -elementary.C, 1e-45], dtype=np.float32)
    return np.concatenate([dense, tiny, -tiny, huge, -huge, special])


def test_reference_is_within_4e_7_of_the_exact_tanh():
    x = _grid()
    got = tanh_reference(x).astype(np.float64)
    exact = np.tanh(x.astype(np.float64))
    err = np.abs(got - exact)
    assert err.max() <= 4e-7
    # a relative accuracy near 0 too (the former 2 sigmoid(2 z) - 1 had none): within 7 ulp
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (err / ulp).max() <= 7
    assert got.dtype == np.float64 and np.all(np.abs(got) <= 1.0)
    assert tanh_reference(np.float32([np.inf]))[0] == 1.0 and tanh_reference(np.float32([-np.inf]))[0] == -1.0
    # odd; increasing up to its error (a few ulp, as any float32 approximation)
    dense = np.linspace(-12, 12, 400_001, dtype=np.float32)
    assert np.array_equal(tanh_reference(-dense), -tanh_reference(dense))
    assert np.diff(tanh_reference(dense)).min() >= -8e-7  # twice the largest error
    small = np.linspace(-3e-4, 3e-4, 1001, dtype=np.float32)  # x itself below TINY
    assert np.array_equal(tanh_reference(small), small)


def test_torch_kernels_and_compiled_kernel_give_the_reference_bits():
    x = _grid()
    want = tanh_reference(x)
    by_torch = elementary.tanh_torch_(torch.from_numpy(x.copy()))
    assert np.array_equal(by_torch.numpy(), want)
    by_numba = _fused.tanh_(torch.from_numpy(x.copy()))
    assert np.array_equal(by_numba.numpy(), want)
    # a transposed (column-major) tensor is done in place through its contiguous base
    t = torch.from_numpy(x[: 1000 * 400].copy()).view(400, 1000).t()
    assert not t.is_contiguous()
    assert np.array_equal(models._tanh_(t).t().contiguous().view(-1).numpy(), want[: 400_000])
    # a strided view that no layout makes dense: torch's kernels, the same bits
    base = torch.from_numpy(x[:200_000].copy()).view(400, 500)
    view = base[:, ::2]
    models._tanh_(view)
    assert np.array_equal(view.numpy(), tanh_reference(x[:200_000].reshape(400, 500)[:, ::2]))
    assert np.array_equal(base[:, 1::2].numpy(), x[:200_000].reshape(400, 500)[:, 1::2])
    flat = torch.from_numpy(x[:1001].copy())
    models._tanh_(flat[::2])  # a strided vector
    assert np.array_equal(flat[::2].numpy(), want[:1001:2]) and np.array_equal(flat[1::2].numpy(), x[1:1001:2])


def test_gpu_and_float64_take_torchs_tanh():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    assert torch.equal(models._tanh_(x.clone()), torch.tanh(x))


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_tanh_does_not_depend_on_threads(threads, monkeypatch):
    monkeypatch.setattr(_fused, "_MIN_THREADED", 1)  # split even this small tensor
    x = torch.randn(300_001, generator=torch.Generator().manual_seed(1)) * 4
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = _fused.tanh_(x.clone())
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(got.numpy(), tanh_reference(x.numpy()))


def _hidden_reference(z, b1, w):
    """h, e bit for bit (float32 numpy, the kernel's operations), row sums in the lanes' order."""
    h = tanh_reference(z + b1[:, None, :])
    wb = w[:, None, :]
    e = wb - (h * h) * wb
    M, B, H = z.shape
    sums = []
    for terms in (h * wb, h * h, e * e):
        acc = np.zeros((M, B, LANES), np.float32)
        for j in range(H):  # unit j into lane j mod LANES, in order
            acc[..., j % LANES] += terms[..., j]
        total = acc[..., 0].copy()
        for k in range(1, LANES):
            total += acc[..., k]
        sums.append(total)
    return h, e, sums[0], sums[1], np.sqrt(sums[2])


def _hidden_inputs(M, B, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((M, B, H), generator=g) * 2, torch.randn((M, H), generator=g) * 0.3,
            torch.randn((M, H), generator=g) * 0.2)


def _run_hidden(z, b1, w, alias=False, kernel=models._binary_hidden):
    M, B, H = z.shape
    z = z.clone()
    h = z if alias else torch.empty((M, B, H))
    e = torch.empty((M, B, H))
    out = [torch.empty((M, B)) for _ in range(3)]
    kernel(z, b1, w, h, e, *out)
    return h, e, *out


@pytest.mark.parametrize("H", [1, 5, 16, 37, 256])
def test_binary_hidden_matches_the_reference(H):
    z, b1, w = _hidden_inputs(3, 7, H)
    want = _hidden_reference(z.numpy(), b1.numpy(), w.numpy())
    for alias in (False, True):
        got = _run_hidden(z, b1, w, alias)
        for g, r in zip(got, want):
            assert np.array_equal(g.numpy(), r)
    # and the row sums to float64 arithmetic
    h64 = torch.from_numpy(want[0]).double()
    e64 = w.double().unsqueeze(1) * (1 - h64.square())
    got = _run_hidden(z, b1, w)
    torch.testing.assert_close(got[2].double(), (h64 * w.double().unsqueeze(1)).sum(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[3].double(), h64.square().sum(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[4].double(), e64.norm(dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1].double(), e64, rtol=1e-5, atol=1e-7)


def test_binary_hidden_rows_do_not_depend_on_chunk_or_threads(monkeypatch):
    z, b1, w = _hidden_inputs(9, 64, 256, seed=2)
    whole = _run_hidden(z, b1, w)
    part = _run_hidden(z[2:5], b1[2:5], w[2:5])
    for a, b in zip(whole, part):
        assert torch.equal(a[2:5], b)
    monkeypatch.setattr(_fused, "_MIN_THREADED", 1)  # rows split between two threads
    calls = []
    kernel = _fused._binary_hidden
    monkeypatch.setattr(_fused, "_binary_hidden", lambda *a: (calls.append(a[-2:]), kernel(*a)))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = _run_hidden(z, b1, w)
    finally:
        torch.set_num_threads(before)
    assert sorted(calls) == [(0, 288), (288, 576)]
    for a, b in zip(whole, two):
        assert torch.equal(a, b)


def test_binary_hidden_without_numba_uses_torch_and_agrees(monkeypatch):
    z, b1, w = _hidden_inputs(4, 33, 256, seed=3)
    compiled = _run_hidden(z, b1, w)
    monkeypatch.setattr(models, "_compiled", lambda: None)
    fallback = _run_hidden(z, b1, w)
    assert torch.equal(fallback[0], compiled[0]) and torch.equal(fallback[1], compiled[1])  # elementwise: same bits
    for a, b in zip(fallback[2:], compiled[2:]):  # row sums in torch's order
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-6)
    # float64 (the references): torch's tanh
    z64, b64, w64 = z.double(), b1.double(), w.double()
    h = torch.empty_like(z64)
    e = torch.empty_like(z64)
    out = [torch.empty(z64.shape[:2], dtype=torch.float64) for _ in range(3)]
    models._binary_hidden(z64, b64, w64, h, e, *out)
    assert torch.equal(h, torch.tanh(z64 + b64.unsqueeze(1)))


@pytest.mark.parametrize("H", [1, 5, 16, 37, 256])
def test_binary_logit_is_the_training_pass_logit_bit_for_bit(H, monkeypatch):
    # evaluation's forward pass: binary_hidden's diff, without writing h or e
    z, b1, w = _hidden_inputs(3, 41, H, seed=4)
    want = _run_hidden(z, b1, w)[2]
    assert torch.equal(models._binary_logit(z.clone(), b1, w), want)
    assert torch.equal(models._binary_logit(z[1:].clone(), b1[1:], w[1:]), want[1:])  # any chunk of models
    monkeypatch.setattr(_fused, "_MIN_THREADED", 1)  # rows split between two threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(models._binary_logit(z.clone(), b1, w), want)
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(models, "_compiled", lambda: None)  # torch's passes: row sums in torch's order
    torch.testing.assert_close(models._binary_logit(z.clone(), b1, w), want, rtol=2e-6, atol=1e-6)


def test_a_broken_numba_warns_once_and_training_goes_on():
    code = """
import sys, warnings
sys.modules["numba"] = None  # import numba raises ImportError
import numpy as np, torch
from fairpriv_lab.engine import elementary, models
x = torch.linspace(-9, 9, 10001)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = models._tanh_(x.clone())
    b = models._tanh_(x.clone())
msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
assert len(msgs) == 1 and "numba" in msgs[0] and "pip install numba" in msgs[0], msgs
assert np.array_equal(a.numpy(), elementary.tanh_reference(x.numpy())) and torch.equal(a, b)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_kernels_compiled_with_other_constants_are_recompiled(monkeypatch):
    # numba's cache is keyed on _fused.py alone: an edit of engine/elementary.py must not leave stale
    # machine code. The probe agrees with today's function; against another one it recompiles,
    # and says so when even fresh code disagrees.
    assert _fused._fresh()
    calls = []
    for kernel in (_fused._tanh_flat, _fused._binary_hidden):
        monkeypatch.setattr(kernel, "recompile", lambda k=kernel: calls.append(k))
    _fused._ensure_fresh()
    assert calls == []
    monkeypatch.setattr(_fused, "tanh_reference", lambda x: tanh_reference(x) * np.float32(0.5))
    with pytest.raises(RuntimeError, match="disagree with engine.elementary.tanh_reference"):
        _fused._ensure_fresh()
    assert calls == [_fused._tanh_flat, _fused._binary_hidden]


@pytest.mark.slow
def test_kernels_cache_in_the_users_cache_from_a_read_only_install(read_only_install):
    """A read-only package directory: numba caches in the user's cache; the second process loads it."""
    code = ("import numpy as np, torch\n"
            "from fairpriv_lab.engine import _fused, elementary\n"
            f"assert _fused.__file__.startswith({str(read_only_install.pkg)!r})\n"
            "x = torch.linspace(-9, 9, 1001)\n"
            "print(np.array_equal(_fused.tanh_(x.clone()).numpy(), elementary.tanh_reference(x.numpy())))\n")
    assert read_only_install.run_twice(code, "engine", cached="_fused._binary_hidden") == [["True"], ["True"]]


def test_a_forked_child_gets_fresh_threads():
    # the kernels keep a thread pool for the process; a child forked after its first use (a
    # multiprocessing worker) must not wait on the parent's threads, which it does not have
    code = """
import os, signal, numpy as np, torch
from fairpriv_lab.engine import _fused
torch.set_num_threads(2)
_fused._MIN_THREADED = 1
x = torch.linspace(-9, 9, 100_001)
want = _fused.tanh_(x.clone()).numpy().copy()  # the parent's pool now has a thread
y = x.clone()
pid = os.fork()
if pid == 0:  # no torch kernels here: torch's own OpenMP threads do not survive a fork either
    signal.alarm(60)  # a hang ends the child with SIGALRM
    _fused.tanh_(y)
    os._exit(0 if np.array_equal(y.numpy(), want) else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
