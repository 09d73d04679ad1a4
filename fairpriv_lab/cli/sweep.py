"""The ``sweep`` and ``notebooks`` commands of ``fairpriv-lab`` (and ``python -m fairpriv_lab.sweep``).

Thin argparse faces over :func:`fairpriv_lab.sweep.run_sweep` and
:func:`fairpriv_lab.sweep.run_notebooks`. Each parser's defaults carry ``run``; the caller
dispatches with ``args.run(args)``, as every ``fairpriv-lab`` command does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._core.exceptions import ConfigError
from ..sweep.runner import run_notebooks, run_sweep

__all__ = ["add_sweep_commands", "main", "notebooks_command", "notebooks_parser", "sweep_command",
           "sweep_parser"]


def _common_options(parser: argparse.ArgumentParser, out_default: str) -> None:
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler address (tcp://host:8786); default: a local "
                             "cluster on 127.0.0.1; 'sequential' runs in this process")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster (default 2)")
    parser.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    parser.add_argument("--retries", type=int, default=2, help="retries of a crashed task (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    tls = parser.add_argument_group("TLS of a remote scheduler (docs/sweeps.md); a local cluster "
                                    "uses temporary credentials")
    tls.add_argument("--tls-ca-file", default=None, help="CA certificate of the cluster (PEM)")
    tls.add_argument("--tls-cert", default=None, help="this client's certificate (PEM)")
    tls.add_argument("--tls-key", default=None, help="this client's private key (PEM), if not in --tls-cert")


_SWEEP_HELP = "run a grid of experiments on a local or remote Dask cluster (docs/sweeps.md)"
_SWEEP_DESCRIPTION = (
    "Run a grid of experiments (YAML sections base / grid / points) through the experiment "
    "cache on a local or remote Dask cluster; write results.csv, failures.csv and summary.html. "
    "Exit status 0 when every point ran, 1 when some failed, 2 for a bad grid or option.")
_NOTEBOOKS_HELP = "run a notebook once per parameter set with papermill, in parallel on Dask"


def sweep_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``sweep`` arguments to parser (a new one when None) and return it.

    The parser's defaults carry ``run``: ``args.run(args)`` executes the command.
    """
    parser = parser or argparse.ArgumentParser(prog="fairpriv-lab sweep", description=_SWEEP_DESCRIPTION)
    parser.add_argument("grid", help="grid file (YAML)")
    _common_options(parser, "sweep_out")
    parser.add_argument("--cache", default=None, help="experiment cache folder (default: "
                        "$FAIRPRIV_LAB_CACHE or ~/.cache/fairpriv-lab/results)")
    parser.add_argument("--no-resume", action="store_true", help="rerun points already in OUT/points")
    parser.set_defaults(run=_sweep_from_args)
    return parser


def notebooks_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``notebooks run`` arguments to parser (a new one when None) and return it.

    The parser's defaults carry ``run``: ``args.run(args)`` executes the command.
    """
    parser = parser or argparse.ArgumentParser(prog="fairpriv-lab notebooks", description=_NOTEBOOKS_HELP)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run NOTEBOOK once per parameter set", description=(
        _NOTEBOOKS_HELP + "; write NAME-NN.ipynb, NAME-NN.html, runs.csv and index.html. Exit "
        "status 0 when every run succeeded, 1 when some failed, 2 for bad parameters."))
    run.add_argument("notebook")
    run.add_argument("--params", required=True, help="YAML: a list of parameter sets, or base / grid / points")
    _common_options(run, "notebook_runs")
    run.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per cell (default 600)")
    run.set_defaults(run=_notebooks_from_args)
    return parser


def add_sweep_commands(subparsers: Any) -> None:
    """Add ``sweep`` and ``notebooks`` to an argparse subparsers object (``fairpriv-lab``'s).

    Each sets ``args.run``; the caller dispatches with ``return args.run(args)``.
    """
    sweep_parser(subparsers.add_parser("sweep", help=_SWEEP_HELP, description=_SWEEP_DESCRIPTION))
    notebooks_parser(subparsers.add_parser("notebooks", help=_NOTEBOOKS_HELP, description=_NOTEBOOKS_HELP))


def _security_of(args: argparse.Namespace) -> Any:
    from ..sweep.executor import tls_security

    sec = tls_security(args.tls_ca_file, args.tls_cert, args.tls_key)
    return "auto" if sec is None else sec


def _reported(command: str, call: Callable[[], Any]) -> int:
    """Run a sweep; print its result (exit 0 when every task succeeded, else 1) or the error (2)."""
    try:
        result = call()
    except ConfigError as err:
        print(f"fairpriv-lab {command}: error: {err}", file=sys.stderr)
        return 2
    print(result)
    return 0 if result.ok else 1


def _sweep_from_args(args: argparse.Namespace) -> int:
    return _reported("sweep", lambda: run_sweep(
        args.grid, scheduler=args.scheduler, n_workers=args.workers, out=args.out,
        progress="none" if args.no_progress else "auto", cache=args.cache, retries=args.retries,
        resume=not args.no_resume, security=_security_of(args)))


def _notebooks_from_args(args: argparse.Namespace) -> int:
    return _reported("notebooks", lambda: run_notebooks(
        args.notebook, args.params, scheduler=args.scheduler, n_workers=args.workers, out=args.out,
        progress="none" if args.no_progress else "auto", html=not args.no_html,
        timeout=args.timeout, retries=args.retries, security=_security_of(args)))


def sweep_command(argv: Sequence[str] | None = None) -> int:
    """Entry of ``fairpriv-lab sweep``: 0 when every point ran, 1 when some failed, 2 bad input."""
    return _parse_and_run(sweep_parser(), argv)


def notebooks_command(argv: Sequence[str] | None = None) -> int:
    """Entry of ``fairpriv-lab notebooks run``: 0 all ran, 1 some failed, 2 bad input."""
    return _parse_and_run(notebooks_parser(), argv)


def _parse_and_run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad options, 0 on --help
        return int(exc.code or 0)
    return args.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m fairpriv_lab.sweep {sweep,notebooks} ...``; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fairpriv_lab.sweep")
    add_sweep_commands(parser.add_subparsers(dest="command", required=True))
    return _parse_and_run(parser, argv)
