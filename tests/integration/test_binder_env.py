"""The Binder environment (binder/environment.yml + binder/postBuild) can run the notebooks.

Three checks, from cheap to expensive:

1. *Widget pins* (fast): the ipywidgets / jupyterlab_widgets / widgetsnbextension pins of
   binder/environment.yml agree with what ipywidgets itself requires, and in this environment
   the JupyterLab extension that renders the widgets is the one jupyterlab_widgets shipped —
   the mismatch that makes JupyterLab say "Error displaying widget: model not found".
2. *Resolution + imports* (slow, 1-2.5 minutes here): pip resolves Binder's requirements from
   scratch (``pip install --dry-run --ignore-installed --report``: the conda part, which uses
   the same names and version specifiers as PyPI for these packages, plus the pip part and
   postBuild's ``-e ".[ui]"``), with CPU-only torch and no CUDA libraries; then every module
   the notebooks import, and every module of the package, is imported in this environment,
   whose versions must be on the same major release lines as the resolved ones.
3. *Fresh virtual environment* (opt-in: ``FAIRPRIV_BINDER_VENV=1``; about 5 minutes on 2
   busy cores with a warm pip cache, too slow for every CI run): really installs the same
   requirements into a new venv, runs ``pip check``, imports the same modules with the venv's
   Python, and checks that ``jupyter labextension list`` there shows the widget manager enabled.

What this cannot check here: conda-forge's own solver and repo2docker's base image (Binder
builds with mamba from conda-forge; we resolve the same specifiers with pip), and PyTorch's CPU
index when download.pytorch.org is unreachable (the same +cpu wheel then comes from pip's
find-links, /opt/wheels on the project machines).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
NOTEBOOKS = ROOT / "notebooks"
WIDGET_TRIO = ("ipywidgets", "jupyterlab-widgets", "widgetsnbextension")
# Modules a notebook imports only on Colab, inside the install guard of its first cell.
COLAB_ONLY = ("google.colab",)


# ---------------------------------------------------------------- reading the configuration
def _binder_spec() -> tuple[list[str], list[str]]:
    """Return (requirements, pip options) that Binder installs, for pip.

    binder/environment.yml's conda packages (python and pip excepted), its pip section, and
    binder/postBuild's ``pip install ... -e ".[ui]"`` (as ``fairpriv-lab[ui]``).
    """
    data = yaml.safe_load((BINDER / "environment.yml").read_text())
    requirements: list[str] = []
    options: list[str] = []
    for dep in data["dependencies"]:
        if isinstance(dep, dict):
            for item in dep["pip"]:
                (options if item.startswith("-") else requirements).extend(
                    item.split() if item.startswith("-") else [item])
        elif canonicalize_name(re.split(r"[=<>!~ ]", dep, maxsplit=1)[0]) not in ("python", "pip"):
            Requirement(dep)  # a conda spec that pip cannot read would need translating here
            requirements.append(dep)
    post = (BINDER / "postBuild").read_text()
    match = re.search(r'pip install .*-e "\.\[([\w,]+)\]"', post)
    assert match, "binder/postBuild no longer installs the package with -e \".[extras]\""
    requirements.append(f"fairpriv-lab[{match.group(1)}]")
    return requirements, options


def _pins() -> dict[str, SpecifierSet]:
    requirements, _ = _binder_spec()
    return {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in requirements}


def notebook_imports() -> list[str]:
    """Every module imported by a code cell of notebooks/*.ipynb (Colab-only ones excepted)."""
    modules: set[str] = set()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            for line in "".join(cell["source"]).splitlines():
                if m := re.match(r"\s*from\s+([A-Za-z_][\w.]*)\s+import\s", line):
                    modules.add(m.group(1))
                elif m := re.match(r"\s*import\s+(.+)", line):
                    for part in m.group(1).split("#")[0].split(","):
                        modules.add(part.split(" as ")[0].strip())
    return sorted(m for m in modules if m and not m.startswith(COLAB_ONLY))


def _package_modules(python: str, env: dict[str, str]) -> list[str]:
    code = ("import json, pkgutil, fairpriv_lab as p; print(json.dumps(sorted("
            "[m.name for m in pkgutil.walk_packages(p.__path__, 'fairpriv_lab.')])))")
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    return ["fairpriv_lab", *json.loads(out.stdout)]


_IMPORT_ALL = """
import importlib, json, sys, traceback
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=3)
print(json.dumps(failed))
"""


def _import_all(python: str, modules: list[str], env: dict[str, str]) -> dict[str, str]:
    """Import the modules in a fresh interpreter; return {module: traceback} of failures."""
    out = subprocess.run([python, "-c", _IMPORT_ALL, *modules], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env_with_checkout() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    return env


# ---------------------------------------------------------------- 1. widget pins (fast)
def test_binder_pins_the_widget_stack_to_one_release_line():
    pins = _pins()
    for name in (*WIDGET_TRIO, "jupyterlab"):
        assert name in pins, f"binder/environment.yml does not pin {name}"
        spec = pins[name]
        assert any(s.operator == ">=" for s in spec) and any(s.operator == "<" for s in spec), (
            f"binder pins {name}{spec}: give it a floor and a cap on one release line")
    # ipywidgets declares which front-end releases it works with; Binder's pins must allow
    # exactly those lines: take the ipywidgets of this environment as the witness.
    widgets = Version(md.version("ipywidgets"))
    assert widgets in pins["ipywidgets"], f"this environment's ipywidgets {widgets} is outside Binder's pin"
    needs = {canonicalize_name(r.name): r.specifier
             for r in map(Requirement, md.requires("ipywidgets") or []) if r.marker is None}
    for front_end in WIDGET_TRIO[1:]:
        assert front_end in needs, f"ipywidgets {widgets} no longer requires {front_end}"
        wanted = [s.version for s in needs[front_end] if s.operator in ("~=", "==", ">=")]
        assert wanted, needs[front_end]
        floor = Version(wanted[0])
        assert floor in pins[front_end], (
            f"ipywidgets {widgets} needs {front_end}{needs[front_end]} but Binder pins {pins[front_end]}")
        installed = Version(md.version(front_end))
        assert installed in needs[front_end] and installed in pins[front_end], (front_end, installed)


@pytest.mark.slow
def test_jupyterlab_widget_manager_matches_its_python_package():
    """JupyterLab loads the widget manager that this jupyterlab_widgets installed, enabled.

    (Not a stale copy from another folder of the Jupyter path, the other way to "model not
    found".) The npm package has its own version line: jupyterlab_widgets 3.0.x ships
    @jupyter-widgets/jupyterlab-manager 5.0.x.
    """
    dist = md.distribution("jupyterlab_widgets")
    package_json = [f for f in dist.files or [] if str(f).endswith("jupyterlab-manager/package.json")]
    assert package_json, "jupyterlab_widgets ships no @jupyter-widgets/jupyterlab-manager extension"
    meta = json.loads(Path(dist.locate_file(package_json[0])).read_text())
    assert meta["name"] == "@jupyter-widgets/jupyterlab-manager"
    out = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                         text=True, timeout=120, check=True)
    listing = out.stdout + out.stderr
    lines = [ln for ln in listing.splitlines() if "@jupyter-widgets/jupyterlab-manager" in ln]
    assert len(lines) == 1, listing
    assert f"v{meta['version']}" in lines[0] and "jupyterlab_widgets" in lines[0], listing
    assert "enabled" in lines[0] and "OK" in lines[0], listing


# ---------------------------------------------------------------- 2. resolution + imports (slow)
def _index_reachable(url: str) -> bool:
    try:
        socket.getaddrinfo(urlsplit(url).hostname, 443)
    except OSError:
        return False
    return True


def _local_cpu_torch() -> str | None:
    """Version of a +cpu torch wheel in pip's find-links folders (the project machines' /opt/wheels)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    folders = re.findall(r"find-links='([^']+)'", out.stdout) + [os.environ.get("PIP_FIND_LINKS", "")]
    versions = []
    for folder in {f for entry in folders for f in entry.split()}:
        for wheel in Path(folder).glob("torch-*+cpu-*.whl") if Path(folder).is_dir() else []:
            versions.append(Version(wheel.name.split("-")[1]))
    return str(max(versions)) if versions else None


def _pip_args(tmp: Path) -> tuple[list[str], list[str]]:
    """(pip options, requirements) for installing Binder's environment from this checkout."""
    requirements, options = _binder_spec()
    source = tmp / "fairpriv-lab"
    shutil.copytree(ROOT / "fairpriv_lab", source / "fairpriv_lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    requirements = [f"{source}{r[len('fairpriv-lab'):]}" if r.startswith("fairpriv-lab[") else r
                    for r in requirements]
    if "--extra-index-url" in options:
        index = options[options.index("--extra-index-url") + 1]
        if not _index_reachable(index):
            cpu = _local_cpu_torch()
            if cpu is None:
                pytest.skip(f"{index} is unreachable and pip's find-links hold no +cpu torch wheel: "
                            "resolving here would pick PyPI's CUDA build, which Binder never installs")
            i = options.index("--extra-index-url")
            del options[i:i + 2]
            (tmp / "constraints.txt").write_text(f"torch=={cpu}\n")
            options += ["-c", str(tmp / "constraints.txt")]
    return options, requirements


def _resolve(tmp: Path) -> dict[str, dict]:
    options, requirements = _pip_args(tmp)
    report = tmp / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), *options, *requirements],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, f"pip cannot resolve Binder's environment:\n{out.stderr[-3000:]}"
    items = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in items}


@pytest.mark.slow
def test_binder_environment_resolves_and_the_notebooks_import(tmp_path):
    resolved = _resolve(tmp_path)
    # CPU-only torch, and none of the CUDA wheels PyPI's default torch drags in.
    assert resolved["torch"]["version"].endswith("+cpu"), resolved["torch"]["version"]
    cuda = sorted(n for n in resolved if n.startswith("nvidia-") or n == "triton")
    assert not cuda, f"Binder would install CUDA libraries: {cuda}"
    # The widget front ends resolved on ipywidgets' own release lines.
    needs = [Requirement(r) for r in resolved["ipywidgets"].get("requires_dist", [])]
    for req in needs:
        name = canonicalize_name(req.name)
        if name in WIDGET_TRIO and req.marker is None:
            assert Version(resolved[name]["version"]) in req.specifier, (name, resolved[name]["version"], req)
    for name in ("fairpriv-lab", "jupyterlab", "ipykernel", "altair", "voila", *WIDGET_TRIO):
        assert name in resolved, f"Binder's environment lacks {name}"

    env = _env_with_checkout()
    modules = sorted(set(notebook_imports()) | set(_package_modules(sys.executable, env)))
    failed = _import_all(sys.executable, modules, env)
    assert not failed, "\n".join(f"{m}:\n{tb}" for m, tb in failed.items())
    # The imports above vouch for Binder only if this environment runs the same major releases.
    drift = {}
    for name, meta in resolved.items():
        try:
            here = Version(md.version(name))
        except md.PackageNotFoundError:
            continue
        there = Version(meta["version"])
        if name != "fairpriv-lab" and here.major != there.major:
            drift[name] = f"here {here}, Binder {there}"
    assert not drift, f"Binder would install other major releases than this test ran with: {drift}"


# ---------------------------------------------------------------- 3. a real fresh venv (opt-in)
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FAIRPRIV_BINDER_VENV") != "1",
                    reason="installs Binder's environment into a new venv (~5 min); set FAIRPRIV_BINDER_VENV=1")
def test_binder_environment_installs_into_a_fresh_venv(tmp_path):
    options, requirements = _pip_args(tmp_path)
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    out = subprocess.run([python, "-m", "pip", "install", "--quiet", *options, *requirements],
                         capture_output=True, text=True, timeout=1500, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)  # the venv's own copy of the package, not this checkout
    modules = sorted(set(notebook_imports()) | set(_package_modules(python, env)))
    failed = _import_all(python, modules, env)
    assert not failed, "\n".join(f"{m}:\n{tb}" for m, tb in failed.items())
    listing = subprocess.run([python, "-m", "jupyter", "labextension", "list"], capture_output=True,
                             text=True, timeout=120, env=env, check=True)
    text = listing.stdout + listing.stderr
    lines = [ln for ln in text.splitlines() if "@jupyter-widgets/jupyterlab-manager" in ln]
    assert len(lines) == 1 and "enabled" in lines[0] and "OK" in lines[0], text
