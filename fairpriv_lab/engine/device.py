"""Resolve a device string once (no module hard-codes 'cuda'); threads; the machine a run ran on."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .._core.validate import fail

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


def cuda_device_count() -> int:
    """Return the number of CUDA devices torch sees (imports torch)."""
    import torch

    return int(torch.cuda.device_count())


def free_memory(device: str) -> tuple[int, bool]:
    """Return ``(bytes free now, whether that is host memory)`` for a resolved device string.

    CUDA asks the driver; a CPU reads ``MemAvailable`` (psutil when installed, else
    ``/proc/meminfo``, else total physical pages: an over-estimate, never a refusal by error).
    """
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), False
    host = device == "cpu"
    try:
        import psutil

        return int(psutil.virtual_memory().available), host
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, host
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), host


#: Intra-op threads of the training loop on a CPU, when nobody chose (the one knob: set it
#: with ``set_num_threads``, the CLI's ``--threads`` or ``FAIRPRIV_LAB_THREADS``). One thread
#: is the default because it was fastest on the busy 2-core reference machine: a 400-model
#: Adult LR step took 0.16-0.2 s of wall time with 1 thread and 3.4 s with 2 (load 7-10; the
#: step's small kernels each wait at an OpenMP barrier for a time-sliced second thread).
#: The audit's own thread pool (record and model blocks) is separate and unaffected.
DEFAULT_TRAIN_THREADS = 1
_chosen_threads: int | None = None


def set_num_threads(threads: int) -> None:
    """Set torch's intra-op thread count and the training loop's (an explicit choice)."""
    import torch

    global _chosen_threads
    _chosen_threads = int(threads)
    torch.set_num_threads(int(threads))


def training_threads() -> int:
    """Intra-op threads for the training loop on a CPU: the explicit choice, else the default.

    The choice is ``set_num_threads(n)`` (the CLI's ``--threads``), else the environment
    variable ``FAIRPRIV_LAB_THREADS``, else :data:`DEFAULT_TRAIN_THREADS`.
    """
    import os

    if _chosen_threads is not None:
        return _chosen_threads
    env = os.environ.get("FAIRPRIV_LAB_THREADS")
    if env:
        value = int(env) if env.strip().isdigit() else 0
        if value < 1:
            raise fail("FAIRPRIV_LAB_THREADS", env, "to be a positive integer")
        return value
    return DEFAULT_TRAIN_THREADS


def dataset_tensors(dataset: Any, device: object = "cpu", *, images: bool = False):
    """Return a dataset's ``(X, y, g)`` as torch tensors on ``device``.

    ``images=True`` reshapes ``X`` to ``(n_samples, *dataset.image_shape)``.
    """
    import torch

    dev = resolve_device(device)
    X = torch.from_numpy(np.array(dataset.X))
    if images:
        if dataset.image_shape is None:
            raise fail("images", True, "only for image data", f"{dataset.name!r} has no image_shape")
        X = X.reshape(-1, *dataset.image_shape)
    return (X.to(dev), torch.from_numpy(np.array(dataset.y)).to(dev),
            torch.from_numpy(np.array(dataset.g)).to(dev))


def machine_info(device: str) -> dict[str, Any]:
    """Return the CPU model, cores, memory, torch version and threads, resolved device, load average.

    Written beside every benchmark's and study's figures (``benchmarks/paper_scale.py``), so
    that a time is read with the machine and the load it was measured under.
    """
    import os
    import platform
    import time
    from pathlib import Path

    import torch

    from .._core.version import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    dev = resolve_device(device)
    info = {
        "cpu_model": cpu, "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "platform": platform.platform(),
        "device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "fairpriv_lab": __version__, "loadavg_start": load,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    return info
