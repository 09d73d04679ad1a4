"""What the commands print besides results: warnings once, progress labels (issue 17, item 4)."""

from __future__ import annotations

import warnings

import pytest

from fairpriv_lab.cli.commands import main


@pytest.mark.usefixtures("torch_one_thread")
def test_small_group_warning_prints_once_without_a_source_line(tmp_path, capsys):
    argv = ["audit", "--dataset", "synthetic", "--n", "300", "--model", "lr", "--epochs", "1",
            "--batch-size", "32", "--n-models", "4", "--m", "60", "--n-boot", "20",
            "--min-group-size", "50", "--device", "cpu", "--no-progress", "--cache-dir",
            str(tmp_path / "cache"), "--data-option", "group_sizes=[0.9,0.1]"]
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as on a terminal (the suite turns warnings into errors)
        assert main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "min_group_size=50" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("fairpriv-lab audit: warning: Groups ['g1 (n=6)'] have fewer than")
    assert ".py:" not in err and "GroupRisk(" not in err  # no file:line, no source line


def test_notebook_runs_are_labelled_notebooks_not_sweep(capsys):
    from fairpriv_lab.sweep.executor import Progress
    from fairpriv_lab.sweep.report import progress_reporter

    update, close = progress_reporter("auto", 3, 0, label="notebooks", unit="run")
    update(Progress(3, 1, 0, 2, 0, 5.0, 10.0))
    close()
    err = capsys.readouterr().err
    assert "notebooks: 1/3 finished" in err and "sweep:" not in err


def test_notebook_kernel_does_not_print_its_tcp_warning():
    import json
    import os
    from pathlib import Path

    from fairpriv_lab.sweep.notebook_tools import current_env_kernel

    with current_env_kernel() as name:
        spec = json.loads((Path(os.environ["JUPYTER_PATH"].split(os.pathsep)[0]) / "kernels" / name
                           / "kernel.json").read_text())
    assert "--IPKernelApp.log_level=ERROR" in spec["argv"]
