"""Sweeps: grids of experiments and parameterised notebook runs, on one machine or a Dask cluster.

A *grid* (:class:`Grid`, usually read from a YAML file) expands to points, each a set of
experiment settings; :func:`run_sweep` runs every point through the experiment cache on Dask's
``distributed`` scheduler (a :class:`~distributed.LocalCluster` on 127.0.0.1 by default, or any
scheduler address) and gathers one tidy table, one row per point and group.
:func:`run_notebooks` executes a notebook once per parameter set with papermill on the same
executor. Reliability (docs/design.md, issue "Sweeps"):

* finished points are written to ``OUT/points/`` as they arrive and are never recomputed, so an
  interrupted sweep resumes (and the experiment cache makes a recomputation cheap anyway);
* a point that fails deterministically (a :class:`~fairpriv_lab._core.exceptions.FairPrivError`,
  e.g. a bad config) is reported with its message and never retried, and does not block others;
* a worker killed mid-point: Dask reschedules the point on another worker; any other error is
  retried ``retries`` times; the final table is ordered by point, so it equals a sequential run;
* GPUs: a worker advertising the Dask resource ``GPU`` runs one training at a time.

The command line faces are :func:`sweep_command` and :func:`notebooks_command`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._core.exceptions import ConfigError
from .._core.io import to_jsonable, write_json
from . import grid as _grid
from .executor import Progress, TaskFailure, TaskOutcome, cluster_has_gpus, open_client, run_tasks
from .grid import Grid, build_config
from .notebook_runs import (
    NotebookRunError,
    NotebookSweepResult,
    NotebookSweepRun,
    load_parameter_sets,
    run_notebooks,
)
from .report import (
    ProgressOption,
    failures_frame,
    point_rows,
    progress_reporter,
    write_summary_html,
    write_table,
)

__all__ = [
    "Grid",
    "NotebookRunError",
    "NotebookSweepResult",
    "NotebookSweepRun",
    "Progress",
    "SweepResult",
    "TaskFailure",
    "load_parameter_sets",
    "run_notebooks",
    "run_point",
    "run_sweep",
]

_TIMING_COLUMNS = ("seconds", "host", "gpu", "worker")


def run_point(
    point: Mapping[str, Any],
    *,
    cache: str | os.PathLike | None = None,
    progress: Callable[[str, float, float], None] | None = None,
) -> pd.DataFrame:
    """Run one experiment point through the experiment cache; return its tidy summary.

    The default point function of :func:`run_sweep`: builds
    ``ExperimentConfig().replace(**point)`` (dotted keys such as ``train.epsilon``), calls
    ``experiment.run(config, cache=cache, progress=progress)`` (a point already cached
    returns at once, a point cut off mid-training resumes from its last cached chunk of
    models; ``cache=None`` means the default cache folder) and returns
    ``AuditResult.summary()`` (one row per auditor and group: GPR with CI, floor, GPRP with
    CI, empirical ε, the group's test accuracy, method, ε, δ) with the run-level columns
    ``accuracy`` (mean test accuracy over the models, a fraction), ``noise_multiplier``,
    ``n_models``, ``device``, ``from_cache``, ``chunks_trained``, ``chunks_loaded``,
    ``time_load``, ``time_train``, ``time_audit``, ``time_total`` (seconds) and ``version``.
    """
    from ..experiment import runner as experiment

    config = build_config(experiment.ExperimentConfig, point)
    result = experiment.run(config, cache=True if cache is None else cache, progress=progress)
    table = result.summary()
    table["accuracy"] = result.accuracy
    table["noise_multiplier"] = result.noise_multiplier
    table["n_models"] = result.n_models
    table["device"] = result.device
    table["from_cache"] = result.from_cache
    table["chunks_trained"] = result.chunks_trained
    table["chunks_loaded"] = result.chunks_loaded
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
    security: Any = "auto",
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
    security : "auto", True, False or distributed.Security
        TLS of the Dask connections. "auto": the local cluster gets temporary credentials
        (mutual TLS; no other process can submit work to its workers) when ``cryptography``
        is installed; a remote scheduler uses Dask's configuration. A ``Security`` object
        holds a remote cluster's certificates (docs/sweeps.md, docs/security.md).

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
        from .._core.io import remove_stale_temporaries

        for folder in (out_dir, out_dir / "points"):  # left by a sweep killed mid-write
            remove_stale_temporaries(folder, ".*.tmp")
        write_json(out_dir / "grid.json", grid.to_dict())
        if resume:
            done = _load_finished(out_dir, keys, points)
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
            records = _json_round_trip(rows.to_dict("records"))
            record = {"key": keys[i], "point": points[i], "point_digest": _grid.point_digest(points[i]),
                      "rows": records, "rows_sha256": _rows_sha256(records),
                      **{c: getattr(outcome, c) for c in _TIMING_COLUMNS}}
            write_json(out_dir / "points" / f"{keys[i]}.json", record)

    reporter, close = progress_reporter(progress, len(points), n_resumed)
    try:
        if scheduler == "sequential" or not todo:  # nothing left to run: no cluster either
            _run(fn, points, keys, todo, None, retries, on_result, reporter, n_resumed)
        else:
            with open_client(scheduler, n_workers, security=security) as client:
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


def _json_round_trip(obj: Any) -> Any:
    """Return obj as it reads back from a file of :func:`write_json` (NaN as null, lists)."""
    return json.loads(json.dumps(to_jsonable(obj), allow_nan=False))


def _rows_sha256(records: Any) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _load_finished(out_dir: Path, keys: Sequence[str], points: Sequence[Mapping[str, Any]]) -> dict[int, TaskOutcome]:
    """Return the finished points of an earlier run, each verified.

    A file that is unreadable, holds another point (edited or swapped) or rows that do not
    match their checksum is reported with a CacheWarning and its point runs again.
    """
    from ..experiment.cache import CacheWarning

    found: dict[int, TaskOutcome] = {}
    for i, key in enumerate(keys):
        path = out_dir / "points" / f"{key}.json"
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
            rows = _numeric_columns(pd.DataFrame.from_records(record["rows"]))
            problem = None
            if record.get("key") != key or record.get("point_digest") != _grid.point_digest(points[i]):
                problem = "it holds another point's settings"
            elif record.get("rows_sha256") != _rows_sha256(record["rows"]):
                problem = "its rows do not match their checksum"
        except (OSError, ValueError, KeyError, TypeError, RecursionError, AttributeError):
            continue  # unreadable (e.g. cut short by a crash): run the point again
        if problem is not None:
            warnings.warn(f"Finished-point file {path} failed verification ({problem}); point {i} "
                          "runs again.", CacheWarning, stacklevel=3)
            continue
        found[i] = TaskOutcome(key, rows, None, record.get("seconds", math.nan), record.get("host", ""),
                               record.get("gpu", ""), record.get("worker", ""))
    return found


def _numeric_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """Numbers read back from strict JSON (NaN as null, ±inf as "inf"/"-inf") as floats again."""
    for col in rows.columns:
        # text comes back as object (pandas 2) or as the "str" dtype (pandas >= 3)
        if pd.api.types.is_object_dtype(rows[col]) or pd.api.types.is_string_dtype(rows[col]):
            as_number = pd.to_numeric(rows[col], errors="coerce")
            if as_number.notna().sum() == rows[col].notna().sum():
                rows[col] = as_number
    return rows


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
