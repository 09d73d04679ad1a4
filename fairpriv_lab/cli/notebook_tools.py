"""``python -m fairpriv_lab.cli.notebook_tools refresh|run|warm``: execute the teaching notebooks.

The command line of :mod:`fairpriv_lab.sweep.notebook_tools` (the Makefile's
``notebooks-refresh`` target): ``refresh DIR [--strip] [--small] [--only NN]`` re-executes
notebooks and stores their outputs; ``run NB [--small] [-p NAME=JSON] [-o OUT]`` executes one;
``warm [--device D]`` computes the interactive panel's default and exercise configurations
into the result cache (:func:`fairpriv_lab.ui.panel.warm`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .._core import validate as V
from .._core.exceptions import FairPrivError
from ..sweep.notebook_tools import execute_notebook, refresh, small_parameters

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``refresh DIR [--strip] [--small] [--only NN]`` and ``run NB [--small]``."""
    parser = argparse.ArgumentParser(prog="python -m fairpriv_lab.cli.notebook_tools")
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("refresh", help="re-execute notebooks and store their outputs in place")
    ref.add_argument("directory", nargs="?", default="notebooks")
    ref.add_argument("--strip", action="store_true", help="store without outputs")
    ref.add_argument("--small", action="store_true", help="use the test-size parameters")
    ref.add_argument("--only", action="append", default=[], help="file-name prefix, e.g. 03")
    run = sub.add_parser("run", help="execute one notebook into an output file")
    run.add_argument("notebook")
    run.add_argument("-o", "--output", default=None)
    run.add_argument("--small", action="store_true", help="use the test-size parameters")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                     help="a parameter, value parsed as JSON when possible")
    warm = sub.add_parser("warm", help="compute the panel's default and exercise configurations into the cache")
    warm.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        if args.command == "warm":
            from ..ui.panel import warm as warm_panel

            for line in warm_panel(args.device):
                print(line)
            return 0
        if args.command == "refresh":
            refresh(args.directory, strip=args.strip, only=args.only, small=args.small)
            return 0
        params = small_parameters(args.notebook) if args.small else {}
        for item in args.param:
            name, sep, raw = item.partition("=")
            if not sep:
                raise V.fail("param", item, "to look like NAME=VALUE")
            try:
                params[name] = json.loads(raw)
            except json.JSONDecodeError:
                params[name] = raw
        out = args.output or str(Path(args.notebook).with_suffix(".out.ipynb"))
        result = execute_notebook(args.notebook, out, parameters=params)
        print(f"{result.notebook} -> {result.output} in {result.seconds:.1f} s")
        return 0
    except FairPrivError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
