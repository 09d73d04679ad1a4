"""The README's examples run as written on an offline machine (issue 17).

`benchmarks/readme_commands.py` runs every README command and times it; this test keeps the
cheap half of that promise in the suite: no ```python block of the README loads a data set
that needs a download (CI and classrooms may have no internet), and every data set named in
a block exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import fairpriv_lab as fl

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_blocks_load_only_offline_datasets() -> None:
    offline = {d.name: d.offline for d in fl.list_datasets()}
    named = [name for block in _python_blocks()
             for name in re.findall(r"load_dataset\(\s*[\"']([\w-]+)[\"']", block)]
    assert named, "the README's python blocks should show load_dataset"
    unknown = [n for n in named if n not in offline]
    assert not unknown, f"README loads unknown data sets {unknown}; known: {sorted(offline)}"
    online = [n for n in named if not offline[n]]
    assert not online, (f"README python blocks load {online}, which need a download: "
                        "mention them in prose, keep blocks runnable offline")
