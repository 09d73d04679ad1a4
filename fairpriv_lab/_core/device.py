"""Resolve a device string once; no module hard-codes 'cuda'."""

from __future__ import annotations

import re

from .validate import fail

_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(device: object = "auto"):
    """Return a ``torch.device`` for 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.

    'auto' picks CUDA when a GPU is present, else Apple's MPS, else the CPU. Asking for a
    device that is not present raises a :class:`~fairpriv_lab._core.exceptions.ConfigError`.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not _PATTERN.match(device):
        raise fail("device", device, "to be one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise fail("device", device, "to name a present device", "No CUDA GPU is visible; use 'cpu' or 'auto'")
        idx = int(device.split(":")[1]) if ":" in device else 0
        if idx >= torch.cuda.device_count():
            raise fail("device", device, f"to be below cuda:{torch.cuda.device_count()}")
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise fail("device", device, "to name a present device", "MPS is not available; use 'cpu' or 'auto'")
    return torch.device(device)
