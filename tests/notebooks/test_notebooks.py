"""The teaching notebooks as tests: template checks, papermill runs with small parameters, nbval.

The executions are marked ``notebooks`` (``pytest -m "not notebooks"`` skips them). Each
notebook runs in a kernel of this very interpreter with the small parameters of
``fairpriv_lab.sweep.notebook_tools.SMALL_PARAMETERS``; a failure names the notebook and the cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fairpriv_lab import ConfigError
from fairpriv_lab.sweep.notebook_tools import (
    SMALL_PARAMETERS,
    NotebookError,
    check_parameters,
    execute_notebook,
    list_notebooks,
    main,
    small_parameters,
)

ROOT = Path(__file__).resolve().parents[2]
# One torch thread per kernel: small models gain little from two, and on a busy machine a
# two-thread barrier stalls (measured: notebook 00 in 41 s with one thread, 110 s with two).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = list_notebooks(NB_DIR)
IDS = [p.stem for p in NOTEBOOKS]


def _tiny_notebook(path: Path, body: str, *, small: dict | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if small is not None:
        nb.metadata["fairpriv_lab"] = {"small_parameters": small}
    nbformat.write(nb, path)
    return path


# ---------------------------------------------------------------- fast checks (no kernel)
def test_the_teaching_notebooks_are_there():
    stems = [p.stem for p in NOTEBOOKS]
    for stem in SMALL_PARAMETERS:
        assert stem in stems, f"notebooks/{stem}.ipynb is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = nb.cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert f"colab.research.google.com/github/fairpriv-lab/fairpriv-lab/blob/main/notebooks/{path.name}" in first.source
    assert "mybinder.org/v2/gh/fairpriv-lab/fairpriv-lab" in first.source
    assert "What you will learn" in first.source and "What it needs" in first.source
    code = [c for c in cells if c.cell_type == "code"]
    assert '"google.colab" in sys.modules' in code[0].source
    assert 'find_spec("fairpriv_lab") is None' in code[0].source
    assert "git+https://github.com/fairpriv-lab/fairpriv-lab" in code[0].source
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    after = cells[tagged[0] + 1]
    assert after.cell_type == "code" and "check_parameters(" in after.source
    assert "assert " in "\n".join(c.source for c in code), "a notebook asserts its key numbers"
    tail = "\n".join(c.source for c in cells[-3:] if c.cell_type == "markdown")
    assert "## Summary" in tail and "## Exercises" in tail
    # Every parameter is passed to the validation cell.
    names = [line.split("=")[0].strip() for line in cells[tagged[0]].source.splitlines()
             if "=" in line and not line.lstrip().startswith("#")]
    for name in names:
        assert f"{name}={name}" in after.source, f"parameter {name} is not validated"
    # Small parameters only name real parameters.
    for name in small_parameters(path):
        assert name in names, f"SMALL_PARAMETERS[{path.stem!r}] names unknown parameter {name!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_small_and_clean(path):
    assert path.stat().st_size < 1_500_000, "keep committed outputs small (PNG charts, no data dumps)"
    nb = nbformat.read(path, as_version=4)
    assert "papermill" not in nb.metadata, "run `make notebooks-refresh`, which drops timing metadata"
    for cell in nb.cells:
        assert "injected-parameters" not in cell.metadata.get("tags", [])
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"stored error output in {path.name}"


def test_check_parameters_messages():
    check_parameters(dataset="adult", group="race", model="mlp", method="dpsgds", epsilons=[1.0, float("inf")])
    cases = [
        (dict(dataset="mnist2"), r"^Expected dataset='mnist2' to be one of 'adult'"),
        (dict(dataset="adult", group="age"), r"^Expected group='age' to be one of 'sex'"),
        (dict(dataset="adult", model="cnn"), r"^Expected model='cnn' only with image datasets; 'adult' is tabular"),
        (dict(n_models=6.0), r"^Expected n_models=6.0 to be an even integer >= 4"),
        (dict(n=1000, m=2000), r"^Expected m=2000 to be an integer in \[2, 1000\]"),
        (dict(epsilons=[]), r"^Expected epsilons=\[\] to be a non-empty list"),
        (dict(epsilons=[1.0, -2.0]), r"^Expected epsilons=-2.0 to be a real number in \(0, inf\)|^Expected epsilons=-2.0 in \(0, inf\)"),
        (dict(tau=0.5), r"^Expected tau=0.5 in \[1, inf\)"),
        (dict(n_models=8, model_index=8), r"^Expected model_index=8 to be an integer in \[0, 7\]"),
        (dict(methods=["sgd", "adam"]), r"^Expected methods='adam' to be one of 'sgd'"),
    ]
    for params, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            check_parameters(**params)


def test_small_parameters_lookup(tmp_path):
    assert small_parameters(NB_DIR / "00_start_here.ipynb")["n_models"] % 2 == 0
    own = _tiny_notebook(tmp_path / "99_own.ipynb", "pass", small={"x": 3})
    assert small_parameters(own) == {"x": 3}
    bare = _tiny_notebook(tmp_path / "98_bare.ipynb", "pass")
    with pytest.raises(ConfigError, match="to have small test parameters"):
        small_parameters(bare)


# ---------------------------------------------------------------- executions
@pytest.fixture(scope="session")
def nb_cache(tmp_path_factory):
    """One result cache for the papermill runs and the nbval run: the second run reuses models."""
    return tmp_path_factory.mktemp("notebook-cache")


@pytest.mark.notebooks
def test_execute_reports_the_failing_cell(tmp_path):
    nb = _tiny_notebook(tmp_path / "01_fail.ipynb", "y = x + 1\nassert y == 2, 'y is not two'")
    run = execute_notebook(nb, tmp_path / "ok.ipynb")
    assert run.seconds > 0 and (tmp_path / "ok.ipynb").exists()
    with pytest.raises(NotebookError, match=r"01_fail.ipynb: cell \d+ .*raised AssertionError: y is not two") as info:
        execute_notebook(nb, tmp_path / "bad.ipynb", parameters={"x": 5})
    assert "y = x + 1" in str(info.value) and info.value.ename == "AssertionError"


@pytest.mark.notebooks
def test_kernel_runs_this_interpreter_and_this_package(tmp_path):
    body = ("import sys, fairpriv_lab, os\n"
            "print(sys.executable)\nprint(fairpriv_lab.__file__)\nprint(os.environ['FAIRPRIV_CHART_RENDERER'])")
    nb = _tiny_notebook(tmp_path / "02_where.ipynb", body)
    execute_notebook(nb, tmp_path / "out.ipynb")
    text = "".join(o.get("text", "") for o in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs)
    lines = text.split()
    assert os.path.realpath(lines[0]) == os.path.realpath(sys.executable)
    assert Path(lines[1]).resolve().parent.parent == ROOT
    assert lines[2] == "static"


@pytest.mark.notebooks
def test_refresh_cli_stores_outputs_without_timing_metadata(tmp_path, capsys):
    nb = _tiny_notebook(tmp_path / "00_tiny.ipynb", "print('hello', x)", small={"x": 7})
    assert main(["refresh", str(tmp_path), "--small"]) == 0
    out = nbformat.read(nb, as_version=4)
    assert "papermill" not in out.metadata
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in out.cells)
    assert "hello" in "".join(o.get("text", "") for o in out.cells[-1].outputs)
    assert main(["refresh", str(tmp_path), "--strip"]) == 0
    assert nbformat.read(nb, as_version=4).cells[-1].outputs == []
    assert main(["refresh", str(tmp_path / "nowhere")]) == 2
    assert "Expected directory=" in capsys.readouterr().err


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_with_small_parameters(path, tmp_path, monkeypatch, nb_cache):
    monkeypatch.setenv("FAIRPRIV_LAB_CACHE", str(nb_cache))
    out = tmp_path / path.name
    run = execute_notebook(path, out, parameters=small_parameters(path), timeout=300, env=ONE_THREAD)
    executed = nbformat.read(out, as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no chart as a static image"
    print(f"{path.name}: {run.seconds:.1f} s")


@pytest.mark.notebooks
@pytest.mark.slow
def test_nbval_lax_runs_every_notebook(tmp_path, nb_cache):
    """``pytest --nbval-lax`` on the notebooks, prepared with the small parameters by papermill.

    It shares the result cache of the papermill runs above, so it re-executes every cell but
    trains (almost) nothing again.
    """
    pytest.importorskip("nbval")
    import papermill as pm

    prepared = tmp_path / "nb"
    prepared.mkdir()
    for path in NOTEBOOKS:
        pm.execute_notebook(str(path), str(prepared / path.name), parameters=small_parameters(path),
                            prepare_only=True, language="python", progress_bar=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               FAIRPRIV_CHART_RENDERER="static", FAIRPRIV_LAB_CACHE=str(nb_cache), **ONE_THREAD)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(prepared), "-o", "addopts=", "-W", "ignore::DeprecationWarning",
         "--nbval-cell-timeout", "300", str(prepared)],
        cwd=prepared, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = json.dumps(proc.stdout.strip().splitlines()[-1:])
    assert "passed" in summary
