"""Every folder or file the commands write by default is ignored by git (issue 17, item 8)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _defaults() -> dict[str, Path]:
    """The default output of each command, read from the parsers (not restated here)."""
    from fairpriv_lab.cli.commands import build_parser
    from fairpriv_lab.cli.report import default_output

    parser = build_parser()
    out = {
        "demo --out": Path(parser.parse_args(["demo"]).out),
        "sweep --out": Path(parser.parse_args(["sweep", "g.yaml"]).out),
        "notebooks run --out": Path(parser.parse_args(["notebooks", "run", "n.ipynb", "--params", "p.yaml"]).out),
        "report KEY": default_output("0123456789abcdef"),
    }
    return out


def test_every_default_output_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    defaults = _defaults()
    paths = [str(p / "x.csv") if p.suffix == "" else str(p) for p in defaults.values()]
    paths += ["test-artifacts/browser/x.png", "out/summary.csv"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", "-v", *paths], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    ignored = {line.split("\t", 1)[1] for line in proc.stdout.splitlines() if "\t" in line}
    missing = [p for p in paths if p not in ignored]
    assert not missing, f"default outputs not in .gitignore: {missing} (defaults: {defaults})"
