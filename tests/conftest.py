"""Shared fixtures."""

import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP barrier stalls on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
