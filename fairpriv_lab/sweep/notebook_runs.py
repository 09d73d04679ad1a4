"""Run one notebook once per parameter set with papermill, in parallel on Dask.

The engine of :func:`fairpriv_lab.sweep.run_notebooks` and ``fairpriv-lab notebooks run``.
A cell that raises is a deterministic failure (:class:`NotebookRunError`, never retried)
reported with the failing cell; the other runs still complete.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._core import validate as V
from .._core.exceptions import ConfigError, FairPrivError
from . import grid as _grid
from .executor import TaskFailure, TaskOutcome, open_client, run_tasks
from .grid import Grid
from .report import (
    ProgressOption,
    notebook_failure_line,
    progress_reporter,
    write_runs_index,
)

__all__ = ["NotebookSweepRun", "NotebookRunError", "NotebookSweepResult", "load_parameter_sets", "run_notebooks"]


class NotebookRunError(FairPrivError):
    """A notebook cell raised; ``details`` holds cell_index, exec_count, ename, evalue."""

    def __init__(self, message: str, *, details: Mapping[str, Any]):
        super().__init__(message)
        self.details = dict(details)


@dataclass(frozen=True)
class NotebookSweepRun:
    """One executed notebook: its parameters, output paths, and failure (None when it ran)."""

    index: int
    parameters: Mapping[str, Any]
    notebook: Path
    html: Path | None
    failure: TaskFailure | None
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every cell ran."""
        return self.failure is None


@dataclass(frozen=True)
class NotebookSweepResult:
    """All runs of a notebook sweep, in parameter-set order, and a tidy table of them."""

    runs: tuple[NotebookSweepRun, ...]

    @property
    def ok(self) -> bool:
        """True when every run succeeded."""
        return all(r.ok for r in self.runs)

    @property
    def table(self) -> pd.DataFrame:
        """One row per run: index, status, the parameters, failing cell, message, paths, seconds."""
        rows = []
        for r in self.runs:
            d = r.failure.details if r.failure is not None else {}
            rows.append({"run": r.index, "status": "ok" if r.ok else "failed", **dict(r.parameters),
                         "failed_cell": d.get("cell_index"), "error": None if r.ok else r.failure.message,
                         "notebook": str(r.notebook), "html": str(r.html) if r.html else None,
                         "seconds": r.seconds})
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        n_bad = sum(not r.ok for r in self.runs)
        lines = [f"{len(self.runs)} runs: {len(self.runs) - n_bad} ok, {n_bad} failed"]
        for r in self.runs:
            lines.append(f"  run {r.index} {dict(r.parameters)}: " + (
                f"ok -> {r.notebook}" if r.ok else notebook_failure_line(r.failure, r.notebook)))
        return "\n".join(lines)


def load_parameter_sets(source: str | os.PathLike | Sequence[Mapping] | Mapping) -> list[dict]:
    """Read parameter sets: a YAML list of mappings, or grid sections (base / grid / points).

    Every value must be JSON-typed (null, bool, number, string, lists and mappings of them):
    lists stay lists in every form, and anything else (``!!binary`` bytes, dates, sets) is
    refused naming the parameter, because papermill writes such values into the notebook's
    injected cell as unescaped text (docs/security.md).
    """
    if isinstance(source, Mapping):
        return _json_sets(Grid.from_yaml(source, config_class=None).points(), "grid")
    if isinstance(source, Sequence) and not isinstance(source, str):
        data: Any = list(source)
        where = "parameter sets"
    else:
        data, where = _grid.load_yaml(source, allow_list=True)
    if isinstance(data, Mapping):
        return _json_sets(Grid.from_yaml(data, config_class=None).points(), where)
    sets = []
    for i, p in enumerate(data):
        if not isinstance(p, Mapping):
            raise ConfigError(f"Expected parameter set {i}={p!r} in {where} to be a mapping")
        sets.append(dict(p))
    if not sets:
        raise ConfigError(f"{where} holds no parameter sets")
    return _json_sets(sets, where)


def _json_sets(sets: Sequence[Mapping[str, Any]], where: str) -> list[dict]:
    """Every set as plain JSON values (tuples back to lists); anything else is a ConfigError."""
    out = []
    for i, s in enumerate(sets):
        try:
            out.append(V.json_value(f"parameter set {i}", dict(s)))
        except ConfigError as err:
            raise ConfigError(f"{err} (in {where})") from None
    return out


def _execute_notebook(job: Mapping[str, Any]) -> dict[str, Any]:
    """Execute one notebook on a worker; export HTML; raise NotebookRunError on a cell error.

    Execution goes through :func:`fairpriv_lab.sweep.notebook_tools.execute_notebook`: the kernel
    runs this interpreter with this copy of the package, and charts are stored as static
    images, so the HTML exports show them.
    """
    from .notebook_tools import NotebookError, execute_notebook

    error = None
    try:
        execute_notebook(job["input"], job["output"], parameters=dict(job["parameters"]),
                         cwd=job["cwd"], timeout=job["timeout"])
    except NotebookError as err:
        error = err
    html = _export_html(job["output"]) if job["html"] and Path(job["output"]).is_file() else None
    if error is not None:
        details = {"cell_index": error.cell_index, "ename": error.ename, "evalue": error.evalue,
                   "source": error.source, "html": html}
        where = "the kernel died" if error.cell_index is None else f"cell {error.cell_index}"
        raise NotebookRunError(f"{where} raised {error.ename}: {error.evalue}", details=details)
    return {"html": html}


_BADGE = re.compile(r'<img(?P<attrs>[^>]*?)src="(?P<src>https://(?:colab\.research\.google\.com|mybinder\.org)/[^"]*)"')


def offline_badges(page: str) -> str:
    """Let the Colab/Binder badge images of an exported page show only online.

    Offline, a badge is a broken image; with this, the browser replaces a badge that fails
    to load by its alt text, so the link stays and reads "Open In Colab" or "Binder".
    """
    fallback = "this.replaceWith(document.createTextNode(this.alt || 'link'))"
    return _BADGE.sub(lambda m: f'<img{m["attrs"]}onerror="{fallback}" src="{m["src"]}"', page)


def _export_html(notebook: str) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    body = offline_badges(body)
    path = str(Path(notebook).with_suffix(".html"))
    Path(path).write_text(body, encoding="utf-8")
    return path


def run_notebooks(
    notebook: str | os.PathLike,
    parameters: str | os.PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    scheduler: Any = None,
    n_workers: int = 2,
    out: str | os.PathLike = "notebook_runs",
    progress: ProgressOption = "auto",
    html: bool = True,
    timeout: float = 600.0,
    retries: int = 1,
    security: Any = "auto",
) -> NotebookSweepResult:
    """Execute a notebook once per parameter set with papermill, in parallel on Dask.

    Parameters
    ----------
    notebook : path
        The notebook; its ``parameters``-tagged cell names the parameters it accepts.
    parameters : path, YAML text, list of mappings or grid mapping
        A YAML list of parameter sets, or grid sections (base / grid / points) whose points
        are the sets. Names the notebook's parameters cell does not define are an error
        before anything runs.
    scheduler, n_workers, progress, retries, security
        As in :func:`run_sweep`.
    out : path
        Folder for the executed notebooks ``NAME-NN.ipynb`` and their ``NAME-NN.html``, plus
        ``runs.csv`` and ``index.html`` (one row per run: status, parameters, failing cell,
        error, links); on a real cluster it must be reachable from the workers.
    html : bool
        Export every executed notebook (failed ones too) to HTML with nbconvert.
    timeout : float
        Seconds allowed per cell.

    Returns
    -------
    NotebookSweepResult
        One :class:`NotebookSweepRun` per set; failed runs carry the failing cell and message.
    """
    import papermill as pm

    nb_path = Path(notebook)
    if not nb_path.is_file():
        raise ConfigError(f"Expected notebook {str(notebook)!r} to exist")
    sets = load_parameter_sets(parameters)
    declared = pm.inspect_notebook(str(nb_path))
    if not declared:
        raise ConfigError(f"Notebook {str(nb_path)!r} has no cell tagged 'parameters'")
    for i, s in enumerate(sets):
        unknown = sorted(set(s) - set(declared))
        if unknown:
            raise ConfigError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))} in parameter set {i}; "
                f"{nb_path.name} defines: {', '.join(sorted(declared))}")
    out_dir = Path(out).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, s in enumerate(sets):
        output = out_dir / f"{nb_path.stem}-{i:02d}.ipynb"
        jobs.append({"input": str(nb_path.absolute()), "output": str(output), "parameters": s,
                     "cwd": str(nb_path.absolute().parent),
                     "timeout": timeout, "html": html})
    keys = [f"notebook-{nb_path.stem}-{i:02d}-{_grid.point_key(s)}" for i, s in enumerate(sets)]
    outcomes: dict[int, TaskOutcome] = {}
    reporter, close = progress_reporter(progress, len(sets), 0, label="notebooks", unit="run")
    try:
        def on_result(i: int, outcome: TaskOutcome) -> None:
            outcomes[i] = outcome

        if scheduler == "sequential":
            run_tasks(_execute_notebook, jobs, keys, client=None, retries=retries,
                      on_result=on_result, progress=reporter)
        else:
            with open_client(scheduler, n_workers, security=security) as client:
                run_tasks(_execute_notebook, jobs, keys, client=client, retries=retries,
                          on_result=on_result, progress=reporter)
    finally:
        close()
    runs = []
    for i, job in enumerate(jobs):
        o = outcomes[i]
        html_path = (o.value or {}).get("html") if o.ok else (o.failure.details.get("html") if o.failure else None)
        runs.append(NotebookSweepRun(i, sets[i], Path(job["output"]), Path(html_path) if html_path else None,
                                o.failure, o.seconds))
    result = NotebookSweepResult(tuple(runs))
    result.table.to_csv(out_dir / "runs.csv", index=False)
    write_runs_index(result.table, out_dir / "index.html", title=f"{nb_path.name}: {len(runs)} runs")
    return result
