"""Optional compiled speed-ups: imported, or None after one warning that says what happens instead."""

import warnings

import pytest

from fairpriv_lab._core.optional import optional_module


def test_an_importable_module_is_returned():
    mod = optional_module(".vocabulary", "fairpriv_lab._core", "Words", "none")
    assert mod.__name__ == "fairpriv_lab._core.vocabulary"


def _caller():
    return optional_module("._no_such_kernels", "fairpriv_lab._core", "The compiled things",
                           "going on without them.")


def test_a_broken_import_warns_at_the_callers_caller_and_returns_none():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _caller() is None
    (w,) = caught
    assert w.category is RuntimeWarning
    assert str(w.message).startswith("The compiled things are unavailable (ModuleNotFoundError: ")
    assert str(w.message).endswith("; going on without them.")
    assert w.filename == __file__  # this test, which called _caller


def test_errors_other_than_import_errors_are_caught_too(monkeypatch):
    import importlib

    def broken(name, package=None):
        raise OSError("llvmlite could not load its shared library")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.warns(RuntimeWarning, match="OSError: llvmlite could not load"):
        assert _caller() is None
