"""Every interpretive sentence of notebooks 00-07 is backed by a check on the numbers at its defaults.

A sentence that reads a result ("DP-SGD lowers every group's risk") carries a marker
``<!-- claim: <id> -->`` in its markdown cell; exactly one code cell holds, next to a comment
``# claim: <id>``, the call ``check_claim("<id>", <condition>, "<sentence>")`` of
``fairpriv_lab.notebook_tools``. The fast tests check that pairing. The slow ones run each
notebook at its stored default parameters (the values of its ``parameters`` cell) and list
one test per claim, failing the claim whose condition no longer holds.

``FAIRPRIV_EXECUTED_NOTEBOOKS=DIR`` reads notebooks already executed at their defaults from DIR
(e.g. written by ``benchmarks/bench_notebooks.py --keep DIR``) instead of running them again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from fairpriv_lab.sweep.notebook_tools import execute_notebook, list_notebooks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = [p for p in list_notebooks(ROOT / "notebooks") if re.match(r"0\d_", p.name)]
MARK = re.compile(r"<!--\s*claim:\s*([\w.-]+)\s*-->")
CALL = re.compile(r"""check_claim\(\s*["']([\w.-]+)["']""")
COMMENT = re.compile(r"#\s*claim:\s*([\w.-]+)")
VERDICT = re.compile(r"([✓✗]) claim ([\w.-]+) ")


def _claims(path: Path) -> tuple[list[str], list[str], list[str]]:
    nb = nbformat.read(path, as_version=4)
    marks = [m for c in nb.cells if c.cell_type == "markdown" for m in MARK.findall(c.source)]
    calls = [m for c in nb.cells if c.cell_type == "code" for m in CALL.findall(c.source)]
    comments = [m for c in nb.cells if c.cell_type == "code" for m in COMMENT.findall(c.source)]
    return marks, calls, comments


ALL = [(p, cid) for p in NOTEBOOKS for cid in dict.fromkeys(_claims(p)[1])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_marked_sentence_has_exactly_one_check(path):
    marks, calls, comments = _claims(path)
    assert calls, f"{path.name}: no check_claim at all; every notebook's readings are checked"
    dup = sorted({c for c in calls if calls.count(c) > 1})
    assert not dup, f"{path.name}: claims checked twice: {dup}"
    assert set(marks) == set(calls), (
        f"{path.name}: sentences without a check {sorted(set(marks) - set(calls))}; "
        f"checks without a sentence {sorted(set(calls) - set(marks))}")
    assert sorted(comments) == sorted(calls), f"{path.name}: each check_claim needs a '# claim: <id>' comment"
    prefix = path.name[:2]
    assert all(c.startswith(prefix + "-") for c in calls), f"{path.name}: claim ids start with {prefix}-"


def test_claim_ids_are_unique_across_notebooks():
    ids = [cid for _, cid in ALL]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- at the defaults (slow)
@pytest.fixture(scope="session")
def verdicts(tmp_path_factory) -> dict[str, str]:
    """Claim id -> "✓" or "✗", from every notebook executed at its default parameters."""
    given = os.environ.get("FAIRPRIV_EXECUTED_NOTEBOOKS")
    out_dir = Path(given) if given else tmp_path_factory.mktemp("defaults")
    cache = tmp_path_factory.mktemp("defaults-cache")
    found: dict[str, str] = {}
    for path in NOTEBOOKS:
        executed = out_dir / path.name
        if not given:
            # no parameters: the notebook's own defaults; claims print, a failed one does not stop the run
            execute_notebook(path, executed, timeout=1800,
                             env={"FAIRPRIV_CLAIMS": "report", "FAIRPRIV_LAB_CACHE": str(cache)})
        nb = nbformat.read(executed, as_version=4)
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.get("outputs", []) if o.get("output_type") == "stream")
        for mark, cid in VERDICT.findall(text):
            found[cid] = mark
    return found


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path,claim", ALL, ids=[cid for _, cid in ALL])
def test_claim_holds_at_the_notebooks_defaults(path, claim, verdicts):
    assert claim in verdicts, f"{path.name}: check_claim({claim!r}) did not run at the defaults"
    assert verdicts[claim] == "✓", (
        f"{path.name}: claim {claim!r} no longer holds at the default parameters; fix the numbers' "
        "defaults or rephrase the sentence as a question")
