"""benchmarks/gpu_check.py runs end to end on the CPU with --small (the same code as on a GPU)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_gpu_check_small_runs_on_cpu():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--device", "cpu"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "device cpu" in out.stdout and "[small]" in out.stdout
    for label in ("Adult MLP-256", "digits CNN"):
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(label))
        assert "sample-grads/s" in line and "Opacus" in line and "ratio" in line
