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


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory):
    """Keep every test (and the subprocesses it starts) out of the user's result/data caches."""
    import os

    saved = {k: os.environ.get(k) for k in ("FAIRPRIV_LAB_CACHE",)}
    os.environ["FAIRPRIV_LAB_CACHE"] = str(tmp_path_factory.mktemp("result-cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
