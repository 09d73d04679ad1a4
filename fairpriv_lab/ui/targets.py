"""The interactive panel's classroom targets (issue 16) and their PASS/FAIL verdicts.

``benchmarks/bench_widgets.py`` measures a panel at each dataset's classroom defaults and
judges the numbers here, so that the verdicts are tested (``tests/unit/ui/test_targets.py``)
and stated once. On 2 CPU cores: a cold run within ``cold`` seconds, the first partial
picture within ``first``, a cached result within ``cached``; every group's GPR interval at
most ``half_width`` pp wide on each side; the SGD -> DP-SGD change of every group's GPR with
a CI excluding 0. On a teaching data set where groups genuinely differ (:data:`GROUPS_DIFFER`)
the lesson is a target too: under SGD the small group's GPR is above the big group's, the
signed minority - majority difference with a CI above 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["GROUPS_DIFFER", "TARGETS", "judge"]

#: Seconds and percentage points of the targets (issue 16).
TARGETS: dict[str, float] = {"cold": 5.0, "first": 1.5, "cached": 0.3, "half_width": 1.0}

#: Datasets offered as "groups genuinely differ": their lesson, a signed gap above 0, is judged.
GROUPS_DIFFER: tuple[str, ...] = ("synthetic",)


def judge(dataset: str, measured: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Return ``(target, measured value as text, passed)`` for every target of one dataset's runs.

    ``measured`` holds ``sgd`` and ``dp`` (dicts of ``wall``, ``cpu`` and ``first`` seconds),
    ``cached`` (seconds), ``hw_sgd`` and ``hw_dp`` (``[(group, half-width pp), ...]``),
    ``change`` (:func:`fairpriv_lab.precision.group_change`'s frame) and ``gap_sgd``
    (``(minority, difference, ci_low, ci_high)`` pp, or None unless two groups).

    Examples
    --------
    >>> import pandas as pd
    >>> run = {"wall": 2.0, "cpu": 1.9, "first": 0.8}
    >>> change = pd.DataFrame({"group": ["a"], "change": [-1.0], "ci_low": [-1.5], "ci_high": [-0.5],
    ...                        "excludes_zero": [True]})
    >>> verdicts = judge("adult", {"sgd": run, "dp": run, "cached": 0.4, "hw_sgd": [("a", 0.5)],
    ...                            "hw_dp": [("a", 0.6)], "change": change, "gap_sgd": None})
    >>> [t for t, _, ok in verdicts if not ok]
    ['cached <= 0.3 s']
    """
    out = []
    for name, label in (("sgd", "SGD"), ("dp", "DP-SGD")):
        t = measured[name]
        out.append((f"cold {label} <= {TARGETS['cold']:g} s", f"{t['wall']:.2f} s (CPU {t['cpu']:.2f} s)",
                    t["wall"] <= TARGETS["cold"]))
        out.append((f"first picture {label} <= {TARGETS['first']:g} s", f"{t['first']:.2f} s",
                    t["first"] <= TARGETS["first"]))
    out.append((f"cached <= {TARGETS['cached']:g} s", f"{measured['cached']:.3f} s",
                measured["cached"] <= TARGETS["cached"]))
    for name, label in (("hw_sgd", "SGD"), ("hw_dp", "DP-SGD")):
        hw = measured[name]
        out.append((f"every GPR CI half-width {label} <= {TARGETS['half_width']:g} pp",
                    ", ".join(f"{g} {h:.2f}" for g, h in hw), all(h <= TARGETS["half_width"] for _, h in hw)))
    ch = measured["change"]
    out.append(("every SGD -> DP-SGD change CI excludes 0", ", ".join(
        f"{row.group} {row.change:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]" for row in ch.itertuples()),
        bool(ch["excludes_zero"].all())))
    if dataset in GROUPS_DIFFER:  # the lesson: without DP the small atypical group is more exposed
        gap = measured["gap_sgd"]
        ok = gap is not None and gap[2] > 0
        shown = "n/a" if gap is None else (f"GPR({gap[0]}) - GPR(majority) {gap[1]:+.2f} "
                                          f"[{gap[2]:+.2f}, {gap[3]:+.2f}] pp")
        out.append(("groups differ under SGD: minority - majority CI above 0", shown, ok))
    return out
