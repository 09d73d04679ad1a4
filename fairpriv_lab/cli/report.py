"""The ``report`` command of ``fairpriv-lab``: an HTML report of cached results."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..ui.report import load_results, write_report

__all__ = ["add_report_parser", "cmd_report", "default_output"]


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``fairpriv-lab report SOURCE [-o FILE] [--cache-dir DIR]`` to a CLI's subparsers."""
    p = subparsers.add_parser("report", help="write a self-contained HTML report of cached results")
    p.add_argument("source", help="a cache key (or unique prefix), an `audit --out` folder, or a cache entry folder")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="HTML file (default: SOURCE/report.html for a folder, ./report.html for a cache key)")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default $FAIRPRIV_LAB_CACHE or ~/.cache)")
    p.add_argument("--title", default=None)
    p.add_argument("--images", choices=("svg", "png"), default="svg")
    p.set_defaults(run=cmd_report)
    return p


def default_output(source: str | os.PathLike) -> Path:
    """Where ``report SOURCE`` writes by default: into the folder it reports on, else ./report.html."""
    folder = Path(source)
    return folder / "report.html" if folder.is_dir() else Path("report.html")


def cmd_report(args: argparse.Namespace) -> int:
    """Run the ``report`` subcommand parsed by :func:`add_report_parser`; return the exit status."""
    output = args.output if args.output is not None else default_output(args.source)
    results = load_results(args.source, cache_dir=args.cache_dir)
    path = write_report(results, output, title=args.title, images=args.images)
    print(f"wrote {path} ({len(results)} result{'s' if len(results) != 1 else ''})")
    return 0
