"""Grids of experiments and notebook parameter sweeps on Dask (the ``sweep`` extra).

``grid`` expands a grid, ``executor`` runs tasks on a Dask client, ``notebook_runs`` executes
notebooks with papermill, ``report`` writes the sweep's tables and charts, ``notebook_tools``
executes and refreshes the teaching notebooks. ``python -m fairpriv_lab.sweep`` is the command.
"""

from .runner import (
    Grid,
    NotebookRunError,
    NotebookSweepResult,
    NotebookSweepRun,
    Progress,
    SweepResult,
    TaskFailure,
    add_sweep_commands,
    load_parameter_sets,
    main,
    notebooks_command,
    run_notebooks,
    run_point,
    run_sweep,
    sweep_command,
)

__all__ = [
    "Grid",
    "NotebookRunError",
    "NotebookSweepResult",
    "NotebookSweepRun",
    "Progress",
    "SweepResult",
    "TaskFailure",
    "add_sweep_commands",
    "load_parameter_sets",
    "main",
    "notebooks_command",
    "run_notebooks",
    "run_point",
    "run_sweep",
    "sweep_command",
]
