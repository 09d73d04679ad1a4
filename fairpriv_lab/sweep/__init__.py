"""Grids of experiments and notebook parameter sweeps on Dask (the ``sweep`` extra).

``grid`` expands a grid, ``executor`` runs tasks on a Dask client, ``notebook_runs`` executes
notebooks with papermill, ``report`` writes the sweep's tables and charts, ``notebook_tools``
executes and refreshes the teaching notebooks. The command line (``fairpriv-lab sweep``,
``python -m fairpriv_lab.sweep``) lives in :mod:`fairpriv_lab.cli.sweep`.
"""

from .runner import (
    Grid,
    NotebookRunError,
    NotebookSweepResult,
    NotebookSweepRun,
    Progress,
    SweepResult,
    TaskFailure,
    load_parameter_sets,
    run_notebooks,
    run_point,
    run_sweep,
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
