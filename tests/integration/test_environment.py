"""environment.yml, binder/ and pyproject.toml agree on the dependency set (by name)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
# Binder alone also pins the widget front-end extensions (to ipywidgets' release line) and
# serves the Voila explorer; tests/integration/test_binder_env.py checks those pins.
BINDER_EXTRAS = {"jupyterlab-widgets", "widgetsnbextension", "voila"}


def _name(requirement: str) -> str:
    """Distribution name of a requirement, normalised as PEP 503 does (extras, versions dropped)."""
    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _expected(pyproject) -> set[str]:
    project = pyproject["project"]
    return {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["ui"]}


def _env(path: Path) -> tuple[list[str], list[str]]:
    data = yaml.safe_load(path.read_text())
    assert data["channels"] == ["conda-forge"]
    conda = [d for d in data["dependencies"] if isinstance(d, str)]
    pips = [d for d in data["dependencies"] if isinstance(d, dict)]
    assert len(pips) == 1 and list(pips[0]) == ["pip"]
    return conda, pips[0]["pip"]


def _names(conda: list[str], pip: list[str]) -> set[str]:
    names = {_name(d) for d in conda} - {"python", "pip"}
    names |= {_name(d) for d in pip if not d.startswith("-")}
    return names


@pytest.mark.parametrize("path", ["environment.yml", "binder/environment.yml"])
def test_environment_matches_pyproject(pyproject, path):
    conda, pip = _env(ROOT / path)
    assert "python=3.11" in conda
    extras = BINDER_EXTRAS if path.startswith("binder/") else set()
    assert _names(conda, pip) == _expected(pyproject) | extras
    # CPU-only torch: from PyTorch's CPU index, installed by pip.
    assert CPU_INDEX in pip
    assert any(_name(d) == "torch" for d in pip) and not any(_name(d) in {"torch", "pytorch"} for d in conda)


def _spec(requirement: str) -> str:
    """Version specifier of a requirement, spaces removed ('torch >= 2.2' -> '>=2.2')."""
    match = re.match(r"^\s*[A-Za-z0-9_.-]+(\[[^\]]*\])?\s*([^;]*)", requirement)
    return re.sub(r"\s+", "", match.group(2)) if match else ""


def test_version_floors_agree(pyproject):
    project = pyproject["project"]
    optional = project["optional-dependencies"]
    wanted = {_name(r): _spec(r) for r in project["dependencies"] + optional["ui"] + optional["voila"]}
    for path in ("environment.yml", "binder/environment.yml"):
        conda, pip = _env(ROOT / path)
        for dep in conda + [d for d in pip if not d.startswith("-")]:
            if _name(dep) in wanted:
                if path.startswith("binder/"):
                    # Binder may cap a release line ("ipywidgets>=8.0,<9"), never move the floor.
                    assert re.fullmatch(re.escape(wanted[_name(dep)]) + r"(,<[0-9.]+)?", _spec(dep)), (path, dep)
                else:
                    assert _spec(dep) == wanted[_name(dep)], (path, dep)


def test_root_environment_installs_the_package():
    _, pip = _env(ROOT / "environment.yml")
    assert "-e .[ui]" in pip


def test_binder_postbuild_installs_the_package():
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert re.search(r"pip install .*-e \"\.\[ui\]\"", text)
    assert CPU_INDEX in text
    # A relative install inside binder/environment.yml would resolve against binder/.
    _, pip = _env(ROOT / "binder" / "environment.yml")
    assert not any(d.startswith("-e") or d.startswith(".") for d in pip)


def test_python_version_allowed(pyproject):
    assert pyproject["project"]["requires-python"] == ">=3.10"
