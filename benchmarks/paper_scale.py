"""Reproduce the source paper's experiments at its own scale and record results and timings.

The presets, their runs and their tables are ``fairpriv_lab.studies.paper_scale``; the options
are ``fairpriv_lab.cli.paper_scale`` (``--list`` names every preset with its stated time).
Tables go to this checkout's ``docs/results`` unless ``--out`` says otherwise. Start with
``python benchmarks/paper_scale.py --list``; more examples in that module's docstring.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere without installing the package
    sys.path.insert(0, str(ROOT))

from fairpriv_lab.cli.paper_scale import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(results=ROOT / "docs" / "results"))
