"""The teaching notebooks as tests: template checks, papermill runs with small parameters, nbval.

The executions are marked ``notebooks`` (``pytest -m "not notebooks"`` skips them). Each
notebook runs in a kernel of this very interpreter with the small parameters of
parameters each notebook carries in its metadata (``small_parameters``); a failure names the
notebook and the cell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

from fairpriv_lab import ConfigError
from fairpriv_lab.cli.notebook_tools import main
from fairpriv_lab.sweep.notebook_tools import (
    NotebookError,
    check_parameters,
    execute_notebook,
    list_notebooks,
    small_parameters,
)

ROOT = Path(__file__).resolve().parents[2]
# One torch thread per kernel: small models gain little from two, and on a busy machine a
# two-thread barrier stalls (measured: notebook 00 in 41 s with one thread, 110 s with two).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = list_notebooks(NB_DIR)
IDS = [p.stem for p in NOTEBOOKS]
#: The teaching sequence (docs/design.md section 7). Notebook 07's small parameters set
#: use_recorded=False so that CI exercises the live path, not the tables in docs/results.
TEACHING_NOTEBOOKS = ("00_start_here", "01_membership_inference", "02_worst_case_looa_vs_alooa",
                      "03_group_privacy_risk", "04_dp_sgd", "05_why_groups_differ",
                      "06_dpsgd_s_and_f", "07_reproduce_paper")


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
    for stem in TEACHING_NOTEBOOKS:
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
        assert name in names, f"{path.name}'s small_parameters name unknown parameter {name!r}"


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
        (dict(dataset="adult", model="cnn"), r"^Expected model='cnn' to be 'lr' or 'mlp' for the tabular dataset 'adult'"),
        (dict(n_models=6.0), r"^Expected n_models=6.0 to be an integer in \[2, inf\]"),
        (dict(n_models=7), r"^Expected n_models=7 to be even. Models come in complementary pairs"),
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


@pytest.fixture(scope="session")
def executed(nb_cache, tmp_path_factory):
    """Each teaching notebook executed ONCE per test run (papermill, small parameters).

    Both the papermill checks and the nbval-style checks below read the same executed copy;
    executing twice (papermill, then ``pytest --nbval-lax`` on the prepared notebooks) spent
    about half of the suite's time running the same cells again.
    """
    out_dir = tmp_path_factory.mktemp("executed")
    runs: dict[Path, tuple[Path, float]] = {}

    def get(path: Path) -> tuple[Path, float]:
        if path not in runs:
            out = out_dir / path.name
            run = execute_notebook(path, out, parameters=small_parameters(path), timeout=300,
                                   env={**ONE_THREAD, "FAIRPRIV_LAB_CACHE": str(nb_cache)})
            runs[path] = (out, run.seconds)
        return runs[path]

    return get


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_with_small_parameters(path, executed):
    out, seconds = executed(path)
    executed_nb = nbformat.read(out, as_version=4)
    images = [o for c in executed_nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no chart as a static image"
    print(f"{path.name}: {seconds:.1f} s")


def nbval_lax_problems(source: nbformat.NotebookNode, executed_nb: nbformat.NotebookNode) -> list[str]:
    """What ``pytest --nbval-lax`` would report on an executed copy, without executing again.

    nbval-lax runs every cell and fails on an error, except in cells tagged
    ``raises-exception`` (which must raise); it compares outputs only of cells marked
    ``# NBVAL_CHECK_OUTPUT``, and skips cells marked ``# NBVAL_SKIP``.
    """
    problems = []
    code = [c for c in executed_nb.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]
    committed = [c for c in source.cells if c.cell_type == "code"]
    if len(code) != len(committed):
        return [f"{len(code)} code cells executed, {len(committed)} in the notebook"]
    for i, (cell, orig) in enumerate(zip(code, committed)):
        if "NBVAL_SKIP" in cell.source:
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        raises = "raises-exception" in cell.metadata.get("tags", [])
        if cell.get("execution_count") is None:
            problems.append(f"cell {i} was not executed")
        elif errors and not raises:
            problems.append(f"cell {i} raised {errors[0].get('ename')}: {errors[0].get('evalue')}")
        elif raises and not errors:
            problems.append(f"cell {i} is tagged raises-exception but raised nothing")
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            want = [o.get("text", o.get("data", {}).get("text/plain")) for o in orig.get("outputs", [])]
            got = [o.get("text", o.get("data", {}).get("text/plain")) for o in cell.get("outputs", [])]
            if want != got:
                problems.append(f"cell {i} (NBVAL_CHECK_OUTPUT) printed {got!r}, committed {want!r}")
    return problems


def test_nbval_lax_checks_catch_what_nbval_would():
    def cell(src, outputs=(), count=1, tags=()):
        c = nbformat.v4.new_code_cell(src)
        c.outputs = [nbformat.from_dict(o) for o in outputs]
        c.execution_count = count
        c.metadata["tags"] = list(tags)
        return c

    err = {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": []}
    out = {"output_type": "stream", "name": "stdout", "text": "2\n"}
    src, ran = nbformat.v4.new_notebook(), nbformat.v4.new_notebook()
    src.cells = [cell("x = 1"), cell("# NBVAL_CHECK_OUTPUT\nprint(2)", [out]), cell("raise E", tags=["raises-exception"])]
    ran.cells = [cell("x = 1"), cell("# NBVAL_CHECK_OUTPUT\nprint(2)", [out]), cell("raise E", [err], tags=["raises-exception"])]
    assert nbval_lax_problems(src, ran) == []
    ran.cells[0] = cell("x = 1", [err])
    ran.cells[1] = cell("# NBVAL_CHECK_OUTPUT\nprint(2)", [{**out, "text": "3\n"}])
    ran.cells[2] = cell("raise E", tags=["raises-exception"])
    assert nbval_lax_problems(src, ran) == [
        "cell 0 raised ValueError: bad",
        "cell 1 (NBVAL_CHECK_OUTPUT) printed ['3\\n'], committed ['2\\n']",
        "cell 2 is tagged raises-exception but raised nothing",
    ]


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nbval_lax_runs_every_notebook(path, executed):
    """The nbval-lax checks on the one executed copy of each notebook (not a second run)."""
    out, _ = executed(path)
    problems = nbval_lax_problems(nbformat.read(path, as_version=4), nbformat.read(out, as_version=4))
    assert problems == [], f"{path.name}: " + "; ".join(problems)


# ---------------------------------------------------------------- stored outputs (issue 17)
def test_compare_outputs_passes_reruns_and_catches_stale_numbers():
    from fairpriv_lab.sweep.notebook_tools import compare_outputs

    def nb(*outputs):
        book = nbformat.v4.new_notebook()
        c = nbformat.v4.new_code_cell("print(risk)")
        c.outputs = [nbformat.from_dict(o) for o in outputs]
        book.cells = [c]
        return book

    def out(text):
        return {"output_type": "stream", "name": "stdout", "text": text}

    png = {"output_type": "display_data", "data": {"image/png": "AAAA", "text/plain": "<Chart>"}, "metadata": {}}
    stored = nb(out("GPRP = 1.392 pp, done in 3.1 s, key 7479325f2e3e\n"), png)
    rerun = nb(out("GPRP = 1.395 pp, done in 0.4 s, key 0123456789ab\n"), {**png, "data": {"image/png": "BBBB",
                                                                                           "text/plain": "<Chart>"}})
    assert compare_outputs(stored, rerun) == []  # timings, keys and pixels may differ
    stale = nb(out("GPRP = 2.10 pp, done in 3.1 s, key 7479325f2e3e\n"), png)
    assert compare_outputs(stored, stale) == ["cell 0 (stream:stdout) changed: stored 'GPRP = 1.392 pp, "
                                              "done in 3.1 s, key 7479325f2e3e', now 'GPRP = 2.10 pp, "
                                              "done in 3.1 s, key 7479325f2e3e'"]
    assert compare_outputs(stored, nb(out("GPRP = 1.392 pp, done in 3.1 s, key 7479325f2e3e\n")))[0].startswith(
        "cell 0: stored outputs")
    assert compare_outputs(stored, nb(out("GPR = 1.392 pp, done in 3.1 s, key 7479325f2e3e\n"), png))
    # the run plan prints only when run() trains (not from the cache): left out, streams merged
    plan = out("plan: 8 lr models x 10 steps on cpu: ~1 s, peak ~0.6 GB of 21.3 GB free\n")
    assert compare_outputs(stored, nb(plan, out("GPRP = 1.392 pp, done in 3.1 s, key 7479325f2e3e\n"), png)) == []
    assert compare_outputs(nb(png), nb(plan, png)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_fit_the_budget_and_say_their_sizes(path):
    from fairpriv_lab.sweep.notebook_tools import MAX_NOTEBOOK_BYTES, has_outputs

    nb = nbformat.read(path, as_version=4)
    if not has_outputs(nb):
        pytest.skip(f"{path.name} is stored without outputs (make notebooks-refresh stores them)")
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES, f"{path.name}: over the 1 MB budget"
    stored_with = nb.metadata.get("fairpriv_lab", {}).get("outputs_parameters")
    assert stored_with == small_parameters(path), (
        f"{path.name}: outputs stored with {stored_with}, the documented small sizes are "
        f"{small_parameters(path)}; run `make notebooks-refresh`")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: stored outputs without a chart"


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_are_not_stale(path, executed):
    """nbval on the stored outputs: a fresh run at the same sizes prints the same (numbers ± 2 %)."""
    from fairpriv_lab.sweep.notebook_tools import compare_outputs, has_outputs

    stored = nbformat.read(path, as_version=4)
    if not has_outputs(stored):
        pytest.skip(f"{path.name} is stored without outputs")
    out, _ = executed(path)
    problems = compare_outputs(stored, nbformat.read(out, as_version=4))
    assert not problems, (f"{path.name}: stored outputs are stale, run `make notebooks-refresh`:\n"
                          + "\n".join(problems[:10]))
