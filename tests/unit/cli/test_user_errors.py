"""Every user error of issue 17 is one clear line, before any training, in well under 5 s.

The run functions are replaced by ones that fail the test if called: a check that happens
only after training (the old behaviour: 65-86 s, then a traceback) cannot pass here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fairpriv_lab.cli.commands import main

READ_ONLY = Path("/sys/kernel")  # a folder that even root cannot write into


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    import torch  # noqa: F401 - imported once here, so the timing below is the CLI's own

    import fairpriv_lab.experiment.runner as runner
    import fairpriv_lab.ui.demo as demo
    from fairpriv_lab.sweep import runner as sweep_runner

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(runner, "run", refuse)
    monkeypatch.setattr(demo, "run_demo", refuse)
    monkeypatch.setattr(sweep_runner, "run_sweep", refuse)


def _read_only() -> Path:
    probe = READ_ONLY / ".fairpriv-probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return READ_ONLY
    probe.unlink()
    pytest.skip(f"{READ_ONLY} is writable here")


TINY = ["audit", "--dataset", "synthetic", "--n", "200", "--m", "40", "--batch-size", "32", "--model", "lr", "--epochs", "1",
        "--device", "cpu", "--no-progress"]


def _cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp / "a_file.txt"
    a_file.write_text("x")
    ro = str(_read_only())
    return {
        "--out under /proc": (TINY + ["--out", "/proc/x"],
                              "Expected --out='/proc/x' to be a writable location: No such file or directory"),
        "--out is a file": (TINY + ["--out", str(a_file)],
                            f"Expected --out='{a_file}' to be a writable location: it is a file, not a folder"),
        "--out read-only": (TINY + ["--out", ro + "/out"], f"Expected --out='{ro}/out' to be a writable location:"),
        "--html under /proc": (TINY + ["--html", "/proc/x/r.html"], "Expected --html='/proc/x/r.html'"),
        "--html is a folder": (TINY + ["--html", str(tmp)], "to end in .html or .htm"),
        "--html read-only": (TINY + ["--html", ro + "/r.html"], f"Expected --html='{ro}/r.html' to be a writable"),
        "--cache-dir read-only": (TINY + ["--cache-dir", ro], f"Expected --cache-dir='{ro}' to be a writable"),
        "sweep --out read-only": (["sweep", "examples/grid_small.yaml", "--out", ro],
                                  f"Expected --out='{ro}' to be a writable location"),
        "demo --out is a file": (["demo", "--device", "cpu", "--out", str(a_file)],
                                 "it is a file, not a folder"),
        "--data-option unknown": (TINY + ["--data-option", "foo=1"],
                                  "Expected --data-option foo=1 to name an option of the 'synthetic' loader "
                                  "(group_sizes, separation, outlier_rate, label_noise, n_features)"),
        "--data-option bad JSON": (TINY + ["--data-option", "group_sizes=[0.9,"],
                                   "Expected --data-option group_sizes='[0.9,' to be Sequence[float]"),
    }


CASES = ["--out under /proc", "--out is a file", "--out read-only", "--html under /proc",
         "--html is a folder", "--html read-only", "--cache-dir read-only", "sweep --out read-only",
         "demo --out is a file", "--data-option unknown", "--data-option bad JSON"]


@pytest.mark.parametrize("case", CASES)
def test_user_error_is_one_line_before_training(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[3])  # examples/ for the sweep case
    argv, expected = _cases(tmp_path)[case]
    t0 = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - t0
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert err.startswith(f"fairpriv-lab {argv[0]}: error: ")
    assert seconds < 5.0, f"{case}: {seconds:.1f} s before the error"


def test_cuda_without_a_gpu_is_an_error_at_once_even_with_a_warm_cache(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    for argv in (TINY[:-3] + ["--device", "cuda", "--cache-dir", str(tmp_path)],
                 ["demo", "--device", "cuda", "--out", str(tmp_path / "d")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("Expected --device='cuda' to name a present device. No CUDA GPU is visible; "
                            "use 'cpu' or 'auto'"), err


def test_other_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import fairpriv_lab.cli.commands as commands

    def broken(args):
        raise OSError(30, "Read-only file system", "/data/results.csv")

    monkeypatch.setattr(commands, "_cmd_datasets", broken)
    assert main(["datasets", "list"]) == 1
    assert capsys.readouterr().err.strip() == \
        "fairpriv-lab datasets: error: /data/results.csv: Read-only file system"
    monkeypatch.setattr(commands, "_cmd_datasets", lambda args: 1 / 0)
    assert main(["datasets", "list"]) == 1
    assert capsys.readouterr().err.strip() == ("fairpriv-lab datasets: error: ZeroDivisionError: division by "
                                               "zero (rerun with --debug for the traceback)")
    with pytest.raises(ZeroDivisionError):
        main(["datasets", "list", "--debug"])


def test_probes_leave_nothing_behind(tmp_path):
    from fairpriv_lab.cli.checks import probe_file, probe_folder

    probe_folder("--out", tmp_path / "a" / "b")
    probe_file("--html", tmp_path / "c" / "r.html", suffixes=(".html",))
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == []
