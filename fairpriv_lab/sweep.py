"""Sweeps: grids of experiments and parameterised notebook runs, on one machine or a Dask cluster.

A *grid* (:class:`Grid`, usually read from a YAML file) expands to points, each a set of
experiment settings; :func:`run_sweep` runs every point through the experiment cache on Dask's
``distributed`` scheduler (a :class:`~distributed.LocalCluster` on 127.0.0.1 by default, or any
scheduler address) and gathers one tidy table, one row per point and group.
:func:`run_notebooks` executes a notebook once per parameter set with papermill on the same
executor. Reliability (DESIGN.md, issue "Sweeps"):

* finished points are written to ``OUT/points/`` as they arrive and are never recomputed, so an
  interrupted sweep resumes (and the experiment cache makes a recomputation cheap anyway);
* a point that fails deterministically (a :class:`~fairpriv_lab.exceptions.FairPrivError`,
  e.g. a bad config) is reported with its message and never retried, and does not block others;
* a worker killed mid-point: Dask reschedules the point on another worker; any other error is
  retried ``retries`` times; the final table is ordered by point, so it equals a sequential run;
* GPUs: a worker advertising the Dask resource ``GPU`` runs one training at a time.

The command line faces are :func:`sweep_command` and :func:`notebooks_command`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from . import _grid
from ._executor import Progress, TaskFailure, TaskOutcome, cluster_has_gpus, open_client, run_tasks
from ._sweep_report import (
    failures_frame,
    notebook_failure_line,
    point_rows,
    tqdm_progress,
    write_json_atomic,
    write_runs_index,
    write_summary_html,
    write_table,
)
from .exceptions import ConfigError, FairPrivError

__all__ = [
    "Grid",
    "NotebookRun",
    "NotebookRunError",
    "NotebookSweepResult",
    "Progress",
    "SweepResult",
    "TaskFailure",
    "notebooks_command",
    "run_notebooks",
    "run_point",
    "run_sweep",
    "sweep_command",
]

ProgressOption = Literal["auto", "none"] | Callable[[Progress], None] | None
_TIMING_COLUMNS = ("seconds", "host", "gpu", "worker")


@dataclass(frozen=True)
class Grid:
    """A validated grid of points: ``base`` settings, the product of ``axes``, plus ``extra``.

    Points are ``base | combination`` for every combination of the axes' values (the first
    axis varies slowest), then ``base | e`` for every explicit extra point; a point equal to
    an earlier one is dropped. Keys are the config's fields, nested ones dotted
    (``training.epochs``).

    Build it with :meth:`from_yaml` (file path, YAML text or a mapping), which validates every
    key and value before anything runs.

    Examples
    --------
    >>> g = Grid.from_yaml({"base": {"n": 2}, "grid": {"a": [1, 2], "b": ["x"]},
    ...                     "points": [{"a": 9}]}, config_class=None)
    >>> g.points()
    [{'n': 2, 'a': 1, 'b': 'x'}, {'n': 2, 'a': 2, 'b': 'x'}, {'n': 2, 'a': 9}]
    """

    base: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, tuple] = field(default_factory=dict)
    extra: tuple[Mapping[str, Any], ...] = ()

    def points(self) -> list[dict[str, Any]]:
        """Every point in order: the product of the axes, then the extra points, deduplicated."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        names = list(self.axes)
        combos = itertools.product(*(self.axes[k] for k in names)) if names else iter(())
        candidates = [dict(self.base, **dict(zip(names, c))) for c in combos]
        candidates += [dict(self.base, **e) for e in self.extra]
        for point in candidates:
            key = _grid.point_key(point)
            if key not in seen:
                seen.add(key)
                out.append(point)
        return out

    def __len__(self) -> int:
        return len(self.points())

    @classmethod
    def from_yaml(
        cls,
        source: str | os.PathLike | Mapping[str, Any],
        *,
        config_class: type | None | Literal["experiment"] = "experiment",
    ) -> Grid:
        """Read and validate a grid from a YAML file, YAML text or a mapping.

        Parameters
        ----------
        source : str, path or mapping
            A ``.yaml``/``.yml`` file, YAML text, or the parsed mapping, with sections
            ``base`` (fixed settings), ``grid`` (lists whose product is taken) and ``points``
            (a list of explicit extra points).
        config_class : dataclass type, None or "experiment"
            The config whose fields are the valid keys and whose annotations give the types;
            ``"experiment"`` is :class:`fairpriv_lab.experiment.ExperimentConfig`. Each point
            is also built with ``config_class.from_dict`` when it has one, so that values the
            config rejects fail here, naming the point. None accepts any key.

        Raises
        ------
        ConfigError
            Unknown sections or keys (the valid ones listed), empty or non-list grid axes,
            values of the wrong type (naming the key), or a point the config rejects.
        """
        data, where = _grid.load_yaml(source)
        klass = _config_class(config_class)
        schema = _grid.schema_of(klass) if klass is not None else None
        unknown = set(data) - set(_grid.SECTIONS)
        if unknown:
            raise ConfigError(
                f"Unknown section(s) {', '.join(sorted(map(str, unknown)))} in {where}; "
                f"valid sections are: {', '.join(_grid.SECTIONS)}"
            )
        base = _section_mapping(data.get("base"), "base", where)
        base = _checked(_grid.flatten(base, schema, f"{where}: base"), schema, f"{where}: base")
        axes_in = _section_mapping(data.get("grid"), "grid", where)
        axes: dict[str, tuple] = {}
        for name, values in _grid.flatten(axes_in, schema, f"{where}: grid").items():
            key = _grid.canonical_key(name, schema, f"{where}: grid")
            if key in axes:
                raise ConfigError(f"Key {key!r} is given twice in the grid of {where}")
            if not isinstance(values, list):
                raise ConfigError(
                    f"Expected grid.{key}={values!r} in {where} to be a list of values "
                    f"(write [{values!r}] for one value, or move it to base)"
                )
            if not values:
                raise ConfigError(f"Expected grid.{key} in {where} to be a non-empty list")
            if key in base:
                raise ConfigError(f"Key {key!r} is in both base and grid of {where}; keep one")
            ann = schema[key] if schema is not None else _grid._ANY
            axes[key] = tuple(_grid.coerce(key, v, ann, f"{where}: grid") for v in values)
        raw_points = data.get("points") or []
        if not isinstance(raw_points, list):
            raise ConfigError(f"Expected points in {where} to be a list of mappings")
        extra = []
        for i, p in enumerate(raw_points):
            if not isinstance(p, Mapping):
                raise ConfigError(f"Expected points[{i}]={p!r} in {where} to be a mapping")
            w = f"{where}: points[{i}]"
            extra.append(_checked(_grid.flatten(p, schema, w), schema, w))
        if not axes and not extra:
            raise ConfigError(f"{where} defines no points: give a 'grid' section, 'points', or both")
        grid = cls(base=base, axes=axes, extra=tuple(extra))
        if klass is not None:
            for i, point in enumerate(grid.points()):
                try:
                    _build_config(klass, point)
                except (FairPrivError, TypeError) as err:
                    raise ConfigError(f"Point {i} {point} of {where} is not a valid config: {err}") from err
        return grid

    def to_dict(self) -> dict[str, Any]:
        """Return the grid as a mapping of the YAML sections (lists, not tuples)."""
        return {
            "base": dict(self.base),
            "grid": {k: list(v) for k, v in self.axes.items()},
            "points": [dict(p) for p in self.extra],
        }


def _build_config(klass: type, point: Mapping[str, Any]) -> Any:
    """Build the config of a point: ``klass().replace(**point)``, else ``from_dict``."""
    if hasattr(klass, "replace"):
        return klass().replace(**point)
    if hasattr(klass, "from_dict"):
        return klass.from_dict(_grid.unflatten(point))
    return klass(**_grid.unflatten(point))


def _config_class(config_class: Any) -> type | None:
    if config_class != "experiment":
        return config_class
    try:
        from .experiment import ExperimentConfig
    except ImportError as err:  # pragma: no cover - only before the experiment module exists
        raise ConfigError(
            "The experiment module is not available; pass config_class=None to accept any key"
        ) from err
    return ExperimentConfig


def _section_mapping(value: Any, name: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"Expected section {name} in {where} to be a mapping of key: value")
    return dict(value)


def _checked(mapping: dict[str, Any], schema: _grid.Schema | None, where: str) -> dict:
    out: dict[str, Any] = {}
    for name, value in mapping.items():
        key = _grid.canonical_key(name, schema, where)
        if key in out:
            raise ConfigError(f"Key {key!r} is given twice in {where}")
        out[key] = _grid.coerce(key, value, schema[key] if schema is not None else _grid._ANY, where)
    return out


def run_point(point: Mapping[str, Any], *, cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """Run one experiment point through the experiment cache; return its tidy summary.

    The default point function of :func:`run_sweep`: builds
    ``ExperimentConfig().replace(**point)`` (dotted keys such as ``train.epsilon``), calls
    ``experiment.run(config, cache=cache)`` (a point already cached returns at once; ``None``
    means the default cache folder) and returns ``AuditResult.summary()`` (one row per
    auditor and group: GPR with CI, floor, GPRP with CI, empirical ε, the group's test
    accuracy, method, ε, δ) with the run-level columns ``accuracy`` (mean test accuracy over
    the models, a fraction), ``noise_multiplier``, ``n_models``, ``device``, ``from_cache``,
    ``chunks_trained``, ``time_load``, ``time_train``, ``time_audit``, ``time_total``
    (seconds) and ``version``.
    """
    from . import experiment

    config = _build_config(experiment.ExperimentConfig, point)
    result = experiment.run(config, cache=True if cache is None else cache)
    table = result.summary()
    table["accuracy"] = result.accuracy
    table["noise_multiplier"] = result.noise_multiplier
    table["n_models"] = result.n_models
    table["device"] = result.device
    table["from_cache"] = result.from_cache
    table["chunks_trained"] = result.chunks_trained
    for name, seconds in result.timings.items():
        table[f"time_{name}"] = seconds
    table["version"] = result.version
    return table


@dataclass(frozen=True)
class SweepResult:
    """What a sweep produced.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per point and row of the point function's result (for experiments: per
        auditor and group), in point order; columns ``point``, ``point_key``, the grid keys,
        the result's columns, then ``seconds`` (wall time of the point on its worker, ~0 for
        a point the experiment cache already held), ``host``, ``gpu`` (CUDA device name or
        "none") and ``worker`` (Dask address).
    failures : pandas.DataFrame
        One row per failed point: ``point``, ``point_key``, the grid keys, ``error_type``,
        ``message``, ``traceback``.
    n_points, n_resumed : int
        Points in the grid; points taken from an earlier run's ``OUT/points`` folder.
    files : dict
        Paths written (``csv``, ``parquet``, ``failures``, ``html``), empty without ``out``.
    """

    table: pd.DataFrame
    failures: pd.DataFrame
    n_points: int
    n_resumed: int
    files: Mapping[str, Path]

    @property
    def ok(self) -> bool:
        """True when no point failed."""
        return self.failures.empty

    def __str__(self) -> str:
        lines = [
            f"{self.n_points} points: {self.n_points - len(self.failures)} done "
            f"({self.n_resumed} resumed), {len(self.failures)} failed"
        ]
        for _, row in self.failures.iterrows():
            lines.append(f"  point {row['point']} failed: {row['error_type']}: {row['message']}")
        lines += [f"  wrote {kind}: {path}" for kind, path in self.files.items()]
        return "\n".join(lines)


def run_sweep(
    grid: Grid | str | os.PathLike | Mapping[str, Any],
    *,
    scheduler: Any = None,
    n_workers: int = 2,
    out: str | os.PathLike | None = None,
    progress: ProgressOption = "auto",
    point_fn: Callable[[dict[str, Any]], Any] | None = None,
    cache: str | os.PathLike | None = None,
    retries: int = 2,
    resume: bool = True,
    title: str = "fairpriv-lab sweep",
) -> SweepResult:
    """Run every point of a grid on Dask and gather one tidy table.

    Parameters
    ----------
    grid : Grid, path, YAML text or mapping
        The points; a non-Grid is read with :meth:`Grid.from_yaml`.
    scheduler : None, "sequential", str or distributed.Client
        None starts a local cluster on 127.0.0.1 with ``n_workers`` processes of one thread
        (one worker per GPU, pinned, when the machine has GPUs); an address
        (``tcp://host:8786``) or a Client uses that cluster; ``"sequential"`` runs the points
        one by one in this process (no Dask).
    n_workers : int
        Workers of the local cluster.
    out : path, optional
        Folder for ``points/`` (one JSON file per finished point; what resume reads),
        ``results.csv`` (and ``results.parquet`` when pyarrow is installed), ``failures.csv``
        and ``summary.html``. Without it nothing is written and nothing resumes.
    progress : "auto", "none", None or callable
        "auto" shows a tqdm bar (a widget in notebooks) with done / running / failed and ETA;
        a callable receives a :class:`Progress` at every change.
    point_fn : callable, optional
        ``point_fn(point) -> DataFrame | mapping | list of mappings`` run per point; it must
        be importable on the workers. Default: :func:`run_point` with ``cache``.
    cache : path, optional
        The experiment cache folder of the default point function (the experiment module's
        default when None); on a real cluster, a folder every worker can reach.
    retries : int
        Retries of a point that raised something other than a FairPrivError (a point whose
        worker died is rescheduled by Dask in any case).
    resume : bool
        Take points already in ``out/points`` instead of running them again.
    title : str
        Title of the HTML summary.

    Returns
    -------
    SweepResult
        The table (rows of all finished points in point order) and the failures.
    """
    if not isinstance(grid, Grid):
        grid = Grid.from_yaml(grid, config_class="experiment" if point_fn is None else None)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"Expected n_workers={n_workers!r} to be an integer >= 1")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"Expected retries={retries!r} to be an integer >= 0")
    fn = point_fn if point_fn is not None else functools.partial(run_point, cache=cache)
    points = grid.points()
    keys = [f"point-{_grid.point_key(p)}" for p in points]
    out_dir = Path(out) if out is not None else None
    done: dict[int, TaskOutcome] = {}
    if out_dir is not None:
        (out_dir / "points").mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "grid.json", grid.to_dict())
        if resume:
            done = _load_finished(out_dir, keys)
    n_resumed = len(done)
    todo = [i for i in range(len(points)) if i not in done]
    failed: dict[int, TaskFailure] = {}

    def on_result(j: int, outcome: TaskOutcome) -> None:
        i = todo[j]
        if outcome.failure is not None:
            failed[i] = outcome.failure
            return
        rows = point_rows(outcome.value)
        outcome = dataclasses.replace(outcome, value=rows)
        done[i] = outcome
        if out_dir is not None:
            record = {"key": keys[i], "point": points[i], "rows": rows.to_dict("records"),
                      **{c: getattr(outcome, c) for c in _TIMING_COLUMNS}}
            write_json_atomic(out_dir / "points" / f"{keys[i]}.json", record)

    reporter, close = _progress_reporter(progress, len(points), n_resumed)
    try:
        if scheduler == "sequential":
            _run(fn, points, keys, todo, None, retries, on_result, reporter, n_resumed)
        else:
            with open_client(scheduler, n_workers) as client:
                _run(fn, points, keys, todo, client, retries, on_result, reporter, n_resumed)
    finally:
        close()
    table = _table(points, keys, done)
    failures = failures_frame(points, keys, failed)
    files: dict[str, Path] = {}
    if out_dir is not None:
        files.update(write_table(table, out_dir / "results"))
        failures.to_csv(out_dir / "failures.csv", index=False)
        files["failures"] = out_dir / "failures.csv"
        settings = list(dict.fromkeys(k for p in points for k in p))
        files["html"] = write_summary_html(table, failures, out_dir / "summary.html", title=title,
                                           settings=settings)
    return SweepResult(table, failures, len(points), n_resumed, files)


def _run(fn, points, keys, todo, client, retries, on_result, reporter, n_resumed) -> None:
    resources = None
    if client is not None and cluster_has_gpus(client):
        # One training at a time per GPU; points pinned to the CPU need no GPU slot.
        resources = [None if _device_of(points[i]) == "cpu" else {"GPU": 1} for i in todo]
    run_tasks(
        fn,
        [points[i] for i in todo],
        [keys[i] for i in todo],
        client=client,
        retries=retries,
        resources=resources,
        on_result=on_result,
        progress=reporter,
        resumed=n_resumed,
    )


def _device_of(point: Mapping[str, Any]) -> str:
    """Return the point's device setting (key ``device`` or ``*.device``), "auto" when unset."""
    for key, value in point.items():
        if key == "device" or key.endswith(".device"):
            return str(value)
    return "auto"


def _load_finished(out_dir: Path, keys: Sequence[str]) -> dict[int, TaskOutcome]:
    found: dict[int, TaskOutcome] = {}
    for i, key in enumerate(keys):
        path = out_dir / "points" / f"{key}.json"
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
            rows = pd.DataFrame.from_records(record["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable (e.g. cut short by a crash): run the point again
        found[i] = TaskOutcome(key, rows, None, record.get("seconds", math.nan), record.get("host", ""),
                               record.get("gpu", ""), record.get("worker", ""))
    return found


def _table(points: Sequence[Mapping], keys: Sequence[str], done: Mapping[int, TaskOutcome]) -> pd.DataFrame:
    frames = []
    for i in sorted(done):
        outcome = done[i]
        rows = outcome.value.copy()
        front = {"point": i, "point_key": keys[i]}
        front.update({k: _cell(v) for k, v in points[i].items() if k not in rows.columns})
        for pos, (name, value) in enumerate(front.items()):
            rows.insert(pos, name, [value] * len(rows))
        for name in _TIMING_COLUMNS:
            rows[name] = getattr(outcome, name)
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=["point", "point_key", *_TIMING_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _cell(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _progress_reporter(progress: ProgressOption, total: int, resumed: int):
    if progress is None or progress == "none":
        return None, lambda: None
    if progress == "auto":
        return tqdm_progress(total, resumed)
    if callable(progress):
        return progress, lambda: None
    raise ConfigError(f"Expected progress={progress!r} to be one of 'auto', 'none', None or a callable")


# ---------------------------------------------------------------------------------------------
# Notebooks


class NotebookRunError(FairPrivError):
    """A notebook cell raised; ``details`` holds cell_index, exec_count, ename, evalue."""

    def __init__(self, message: str, *, details: Mapping[str, Any]):
        super().__init__(message)
        self.details = dict(details)


@dataclass(frozen=True)
class NotebookRun:
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

    runs: tuple[NotebookRun, ...]

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
    """Read parameter sets: a YAML list of mappings, or grid sections (base / grid / points)."""
    if isinstance(source, Mapping):
        return Grid.from_yaml(source, config_class=None).points()
    if isinstance(source, Sequence) and not isinstance(source, str):
        data: Any = list(source)
        where = "parameter sets"
    else:
        data, where = _grid.load_yaml(source, allow_list=True)
    if isinstance(data, Mapping):
        return Grid.from_yaml(data, config_class=None).points()
    sets = []
    for i, p in enumerate(data):
        if not isinstance(p, Mapping):
            raise ConfigError(f"Expected parameter set {i}={p!r} in {where} to be a mapping")
        sets.append(dict(p))
    if not sets:
        raise ConfigError(f"{where} holds no parameter sets")
    return sets


def _execute_notebook(job: Mapping[str, Any]) -> dict[str, Any]:
    """Papermill one notebook (on a worker); export HTML; raise NotebookRunError on a cell error."""
    import papermill as pm

    error = None
    restore = _kernel_sees_this_package()
    try:
        pm.execute_notebook(
            job["input"], job["output"], parameters=dict(job["parameters"]), progress_bar=False,
            kernel_name=job["kernel_name"], cwd=job["cwd"], execution_timeout=job["timeout"],
            log_output=False,
        )
    except pm.PapermillExecutionError as err:
        error = err
    finally:
        restore()
    html = _export_html(job["output"]) if job["html"] else None
    if error is not None:
        details = {"cell_index": error.cell_index, "exec_count": error.exec_count,
                   "ename": error.ename, "evalue": error.evalue, "html": html}
        raise NotebookRunError(
            f"cell {error.cell_index} (execution count {error.exec_count}) raised "
            f"{error.ename}: {error.evalue}", details=details)
    return {"html": html}


def _kernel_sees_this_package() -> Callable[[], None]:
    """Put this fairpriv_lab's parent folder on the kernel's PYTHONPATH; return the undo.

    The kernel is a new process: without this, a notebook run from a source checkout would
    import another installed copy of the package, or none. One thread per worker, so the
    environment change is not shared with another task.
    """
    root = str(Path(__file__).resolve().parents[1])
    old = os.environ.get("PYTHONPATH")
    parts = [p for p in (old or "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])

    def restore() -> None:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old

    return restore


def _export_html(notebook: str) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
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
    kernel_name: str | None = None,
    timeout: float | None = None,
    retries: int = 1,
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
    scheduler, n_workers, progress, retries
        As in :func:`run_sweep`.
    out : path
        Folder for the executed notebooks ``NAME-NN.ipynb`` and their ``NAME-NN.html``, plus
        ``runs.csv`` and ``index.html`` (one row per run: status, parameters, failing cell,
        error, links); on a real cluster it must be reachable from the workers.
    html : bool
        Export every executed notebook (failed ones too) to HTML with nbconvert.
    kernel_name : str, optional
        Kernel to run; the notebook's own kernelspec when None.
    timeout : float, optional
        Seconds allowed per cell.

    Returns
    -------
    NotebookSweepResult
        One :class:`NotebookRun` per set; failed runs carry the failing cell and message.
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
                     "kernel_name": kernel_name, "cwd": str(nb_path.absolute().parent),
                     "timeout": timeout, "html": html})
    keys = [f"notebook-{nb_path.stem}-{i:02d}-{_grid.point_key(s)}" for i, s in enumerate(sets)]
    outcomes: dict[int, TaskOutcome] = {}
    reporter, close = _progress_reporter(progress, len(sets), 0)
    try:
        def on_result(i: int, outcome: TaskOutcome) -> None:
            outcomes[i] = outcome

        if scheduler == "sequential":
            run_tasks(_execute_notebook, jobs, keys, client=None, retries=retries,
                      on_result=on_result, progress=reporter)
        else:
            with open_client(scheduler, n_workers) as client:
                run_tasks(_execute_notebook, jobs, keys, client=client, retries=retries,
                          on_result=on_result, progress=reporter)
    finally:
        close()
    runs = []
    for i, job in enumerate(jobs):
        o = outcomes[i]
        html_path = (o.value or {}).get("html") if o.ok else (o.failure.details.get("html") if o.failure else None)
        runs.append(NotebookRun(i, sets[i], Path(job["output"]), Path(html_path) if html_path else None,
                                o.failure, o.seconds))
    result = NotebookSweepResult(tuple(runs))
    result.table.to_csv(out_dir / "runs.csv", index=False)
    write_runs_index(result.table, out_dir / "index.html", title=f"{nb_path.name}: {len(runs)} runs")
    return result


# ---------------------------------------------------------------------------------------------
# Command line


def _common_options(parser: argparse.ArgumentParser, out_default: str) -> None:
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler address (tcp://host:8786); default: a local "
                             "cluster on 127.0.0.1; 'sequential' runs in this process")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster (default 2)")
    parser.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    parser.add_argument("--retries", type=int, default=2, help="retries of a crashed task (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def sweep_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``sweep`` options to parser (a new one when None) and return it."""
    parser = parser or argparse.ArgumentParser(prog="fairpriv-lab sweep", description=(
        "Run a grid of experiments (YAML: base / grid / points) through the experiment cache "
        "on a local or remote Dask cluster; write results.csv, failures.csv and summary.html."))
    parser.add_argument("grid", help="grid file (YAML)")
    _common_options(parser, "sweep_out")
    parser.add_argument("--cache", default=None, help="experiment cache folder")
    parser.add_argument("--no-resume", action="store_true", help="rerun points already in OUT/points")
    return parser


def sweep_command(argv: Sequence[str] | None = None) -> int:
    """Entry of ``fairpriv-lab sweep``: 0 when every point ran, 1 when some failed, 2 bad input."""
    args = sweep_parser().parse_args(argv)
    try:
        result = run_sweep(args.grid, scheduler=args.scheduler, n_workers=args.workers, out=args.out,
                           progress="none" if args.no_progress else "auto", cache=args.cache,
                           retries=args.retries, resume=not args.no_resume)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result)
    return 0 if result.ok else 1


def notebooks_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``notebooks run`` options to parser (a new one when None) and return it."""
    parser = parser or argparse.ArgumentParser(prog="fairpriv-lab notebooks", description=(
        "Execute a notebook once per parameter set with papermill, in parallel on Dask."))
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run NOTEBOOK once per parameter set")
    run.add_argument("notebook")
    run.add_argument("--params", required=True, help="YAML: a list of parameter sets, or base / grid / points")
    _common_options(run, "notebook_runs")
    run.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    run.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell")
    run.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    return parser


def notebooks_command(argv: Sequence[str] | None = None) -> int:
    """Entry of ``fairpriv-lab notebooks run``: 0 all ran, 1 some failed, 2 bad input."""
    args = notebooks_parser().parse_args(argv)
    try:
        result = run_notebooks(args.notebook, args.params, scheduler=args.scheduler,
                               n_workers=args.workers, out=args.out,
                               progress="none" if args.no_progress else "auto",
                               html=not args.no_html, kernel_name=args.kernel,
                               timeout=args.timeout, retries=args.retries)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fairpriv_lab.sweep sweep ...`` or ``... notebooks run ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sweep":
        return sweep_command(argv[1:])
    if argv and argv[0] == "notebooks":
        return notebooks_command(argv[1:])
    print("usage: python -m fairpriv_lab.sweep {sweep,notebooks} ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # Re-import under the package name: functions sent to the workers must be importable
    # there as fairpriv_lab.sweep.*, not pickled by value from __main__.
    from fairpriv_lab.sweep import main as _main

    sys.exit(_main())
