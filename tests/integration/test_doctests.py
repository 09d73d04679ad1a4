"""Run the doctests of every fairpriv_lab module (pytest's --doctest-modules covers tests/ only)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fairpriv_lab

# Modules that need an optional extra (ui, sweep, voila) are skipped only when it is missing.
OPTIONAL = {"altair", "vl_convert", "ipywidgets", "IPython", "ipykernel", "jupyterlab", "voila",
            "papermill", "dask", "distributed", "nbformat", "nbclient", "playwright"}
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

try:  # pytest's checker adds the NUMBER flag that pyproject's doctest_optionflags use
    from _pytest.doctest import _get_checker, _get_flag_lookup

    CHECKER: doctest.OutputChecker = _get_checker()
    FLAGS |= _get_flag_lookup()["NUMBER"]
except (ImportError, KeyError):  # pragma: no cover - private pytest API moved
    CHECKER = doctest.OutputChecker()


def _module_names() -> list[str]:
    names = [fairpriv_lab.__name__]
    for info in pkgutil.walk_packages(fairpriv_lab.__path__, prefix="fairpriv_lab."):
        names.append(info.name)
    return sorted(names)


MODULES = _module_names()


def test_modules_are_found():
    assert {"fairpriv_lab.data.dataset", "fairpriv_lab.data.download", "fairpriv_lab._core.validate"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional package {exc.name}")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(checker=CHECKER, optionflags=FLAGS)
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
