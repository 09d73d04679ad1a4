"""resolve_device: 'auto' resolves once; absent devices and bad strings fail clearly."""

from __future__ import annotations

import pytest
import torch

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.engine.device import dataset_tensors, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
ALLOWED = "to be one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"


def test_cpu_and_torch_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_picks_the_best_present_device():
    dev = resolve_device()
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        assert dev.type == "mps"
    else:
        assert dev == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_gpu_says_what_to_do(device):
    with pytest.raises(ConfigError) as info:
        resolve_device(device)
    assert str(info.value) == (
        f"Expected device={device!r} to name a present device. No CUDA GPU is visible; use 'cpu' or 'auto'"
    )


@pytest.mark.skipif(
    getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    reason="checks the behaviour without MPS",
)
def test_mps_absent():
    with pytest.raises(ConfigError, match="Expected device='mps' to name a present device. MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "", 3, None])
def test_bad_values(bad):
    with pytest.raises(ConfigError) as info:
        resolve_device(bad)
    assert str(info.value) == f"Expected device={bad!r} {ALLOWED}"


@pytest.mark.gpu
def test_cuda_on_gpu_machine():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    assert resolve_device("cuda").type == "cuda"
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"Expected device='cuda:{n}' to be below cuda:{n}"):
        resolve_device(f"cuda:{n}")


def test_dataset_tensors():
    import numpy as np

    import fairpriv_lab as fl

    digits = fl.load_dataset("digits")
    X, y, g = dataset_tensors(digits, "cpu")
    assert X.shape == (1797, 64) and X.dtype == torch.float32 and X.device.type == "cpu"
    assert y.dtype == torch.int64 and g.dtype == torch.int64
    Xi, _, _ = dataset_tensors(digits, "auto", images=True)
    assert Xi.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(Xi.cpu().numpy().reshape(1797, -1), digits.X)
    X.add_(1.0)  # a copy: the dataset stays untouched
    assert digits.X.max() <= 1.0
    with pytest.raises(ConfigError, match="Expected images=True only for image data. 'adult' has no image_shape"):
        dataset_tensors(fl.load_dataset("adult"), images=True)
