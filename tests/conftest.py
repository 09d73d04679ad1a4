"""Shared fixtures."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


class ReadOnlyInstall:
    """A read-only copy of the package (``pkg``) and an empty home, for numba's cache tests."""

    def __init__(self, tmp_path: Path):
        self.tmp, self.pkg, self.home = tmp_path, tmp_path / "site", tmp_path / "home"
        shutil.copytree(ROOT / "fairpriv_lab", self.pkg / "fairpriv_lab",
                        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        self.home.mkdir()

    def run_twice(self, code: str, subpackage: str, cached: str) -> list[list[str]]:
        """Run ``code`` in two fresh processes (``-W error``) against the read-only copy.

        ``subpackage``'s ``__pycache__`` is made a file first: as root (who writes into
        read-only directories anyway) that makes the in-tree cache just as unusable. Asserts
        that numba's cache files landed in the user's cache, none in the package, among them
        one whose name starts with ``cached``, and that the second process loaded them (no file
        written again). Returns each run's stdout words.
        """
        (self.pkg / "fairpriv_lab" / subpackage / "__pycache__").write_text("")
        paths = [self.pkg, *self.pkg.rglob("*")]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        env = {**os.environ, "HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / ".cache"),
               "PYTHONPATH": str(self.pkg)}
        env.pop("NUMBA_CACHE_DIR", None)
        outputs, stamps = [], []
        try:
            for _ in range(2):  # compile and cache, then load from the cache
                out = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=self.tmp, env=env,
                                     capture_output=True, text=True, timeout=600)
                assert out.returncode == 0, out.stderr
                outputs.append(out.stdout.split())
                stamps.append({p: p.stat().st_mtime_ns for p in self.home.rglob("*.nb[ic]")})
            assert not list(self.pkg.rglob("*.nb[ic]"))
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)
        assert any(p.name.startswith(cached) for p in stamps[0]), "no cache in the user's cache"
        assert stamps[1] == stamps[0]  # the second process loaded, did not compile again
        return outputs


@pytest.fixture
def read_only_install(tmp_path):
    """A :class:`ReadOnlyInstall` in the test's temporary directory."""
    return ReadOnlyInstall(tmp_path)
