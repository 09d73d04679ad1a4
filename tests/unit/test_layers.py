"""The package's layers import one way, down the data flow; torch lives in ``engine`` only.

Every ``import`` statement of every module (function-level ones included: a lazy import runs
backwards just the same when it runs) is read with ``ast``, resolved to a module of the
package, and checked against ``ALLOWED``. The checker itself is tested on small synthetic
graphs, so a test that passes on the package cannot pass because the checker sees nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fairpriv_lab"

#: The layers in data-flow order (docs/ARCHITECTURE.md). "" is the package's own facade
#: (``fairpriv_lab/__init__.py``), which may serve any layer. All argparse lives in ``cli``.
ORDER = ("_core", "data", "games", "engine", "audit", "experiment", "viz", "studies", "ui",
         "sweep", "cli", "")

#: Which layers each layer may import (besides itself). Each entry lies earlier in ORDER, and
#: the graph is a DAG on purpose: ``audit`` works on arrays and may not import ``engine``.
ALLOWED: dict[str, frozenset[str]] = {
    "_core": frozenset(),
    "data": frozenset({"_core"}),
    "games": frozenset({"_core"}),
    "engine": frozenset({"_core", "data"}),
    "audit": frozenset({"_core"}),
    "experiment": frozenset({"_core", "data", "games", "engine", "audit"}),
    "viz": frozenset({"_core"}),
    "studies": frozenset({"_core", "data", "games", "audit", "experiment", "viz"}),
    "ui": frozenset({"_core", "data", "engine", "experiment", "viz"}),
    "sweep": frozenset({"_core", "data", "engine", "experiment", "viz"}),
    "cli": frozenset({"_core", "data", "engine", "experiment", "studies", "ui", "sweep"}),
    "": frozenset(ORDER[:-1]),
}

#: Third-party packages that only ``engine`` may import (each pulls in torch).
TORCH = frozenset({"torch", "opacus", "functorch"})


def layer_of(module: str) -> str:
    """``fairpriv_lab.audit.risk`` -> ``audit``; ``__main__`` modules (command entries) ->
    ``cli``; the package's ``__init__`` -> ``""``."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "cli"
    if len(parts) == 1:
        return ""
    return parts[1]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool, known: Iterable[str]) -> set[str]:
    """Every module (absolute name) that ``source`` imports, at any depth of the code."""
    known = set(known)
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import viz`` imports the module viz; the package's own namespace is
            # read only when some name is not a module.
            modules = {f"{target}.{alias.name}" for alias in node.names} & known
            found |= modules
            if len(modules) < len(node.names):
                found.add(target)
    return found


def package_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules it imports (package modules and top-level third-party names)."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = imports_of(path.read_text(encoding="utf-8"), name,
                          is_package=path.name == "__init__.py", known=files)
        graph[name] = {d if d.split(".")[0] == package.name else d.split(".")[0] for d in deps}
    return graph


def violations(graph: Mapping[str, Iterable[str]], *, package: str = "fairpriv_lab",
               allowed: Mapping[str, frozenset[str]] = ALLOWED) -> list[str]:
    """Imports that run against the layer order, and torch imported outside ``engine``."""
    out = []
    for module, deps in sorted(graph.items()):
        src = layer_of(module)
        if src not in allowed:
            out.append(f"{module}: unknown layer {src!r}")
            continue
        for dep in sorted(deps):
            if dep.split(".")[0] == package:
                dst = layer_of(dep)
                if dst != src and dst not in allowed[src]:
                    out.append(f"{module} ({src or 'facade'}) imports {dep} ({dst or 'facade'})")
            elif dep in TORCH and src != "engine":
                out.append(f"{module} ({src}) imports {dep}: torch belongs to engine")
    return out


def cycles(graph: Mapping[str, Iterable[str]], *, package: str = "fairpriv_lab") -> list[list[str]]:
    """The strongly connected components (size > 1) of the package's module graph (Tarjan)."""
    nodes = [n for n in graph]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w.split(".")[0] != package or w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for n in nodes:
        if n not in index:
            visit(n)
    return sorted(out)


def private_crossings(package: Path = PACKAGE) -> list[str]:
    """Private names (``_x``) or private modules imported from another module of the package.

    A helper another module needs is public within its layer; ``pkg._x`` modules are read
    only by their own package (its ``__init__`` and siblings).
    """
    out = []
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    for name, path in sorted(files.items()):
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            target = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            mods = [target] + [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
            for mod in mods:
                parts = mod.split(".")
                for i, part in enumerate(parts):
                    owner = ".".join(parts[:i])
                    if part.startswith("_") and not part.startswith("__") and not (
                            name == owner or name.startswith(owner + ".")):
                        out.append(f"{name} imports the private module {mod}")
                        break
            if target != name:
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__") and f"{target}.{a.name}" not in files:
                        out.append(f"{name} imports {target}.{a.name}")
    return out


# ------------------------------------------------------------------ the checker itself
def test_allowed_runs_down_the_order():
    for layer, deps in ALLOWED.items():
        assert all(ORDER.index(d) < ORDER.index(layer) for d in deps), layer


def test_checker_flags_a_backward_import():
    graph = {
        "fairpriv_lab.audit.attacks": {"fairpriv_lab._core.validate", "numpy"},
        "fairpriv_lab.audit.risk": {"fairpriv_lab.audit.attacks", "fairpriv_lab.viz"},  # upward
        "fairpriv_lab.games": {"fairpriv_lab.engine.training"},  # upward
        "fairpriv_lab.viz": {"fairpriv_lab._core.validate"},
    }
    assert violations(graph) == [
        "fairpriv_lab.audit.risk (audit) imports fairpriv_lab.viz (viz)",
        "fairpriv_lab.games (games) imports fairpriv_lab.engine.training (engine)",
    ]


def test_checker_flags_a_sideways_import_and_torch_outside_engine():
    graph = {
        "fairpriv_lab.audit.risk": {"fairpriv_lab.engine.training"},  # engine is not below audit
        "fairpriv_lab.data.dataset": {"torch", "numpy"},
        "fairpriv_lab.engine.models": {"torch", "fairpriv_lab.data"},
        "fairpriv_lab._core.rng": {"opacus"},
    }
    assert violations(graph) == [
        "fairpriv_lab._core.rng (_core) imports opacus: torch belongs to engine",
        "fairpriv_lab.audit.risk (audit) imports fairpriv_lab.engine.training (engine)",
        "fairpriv_lab.data.dataset (data) imports torch: torch belongs to engine",
    ]


def test_checker_finds_cycles():
    graph = {
        "fairpriv_lab.data.registry": {"fairpriv_lab.data.remote"},
        "fairpriv_lab.data.remote": {"fairpriv_lab.data.download"},
        "fairpriv_lab.data.download": {"fairpriv_lab.data.registry", "numpy"},
        "fairpriv_lab.games": {"fairpriv_lab._core.validate"},
        "fairpriv_lab._core.validate": set(),
    }
    assert cycles(graph) == [["fairpriv_lab.data.download", "fairpriv_lab.data.registry",
                              "fairpriv_lab.data.remote"]]
    assert cycles({"fairpriv_lab.a": {"fairpriv_lab.b"}, "fairpriv_lab.b": set()}) == []


def test_import_reader_resolves_relative_and_lazy_imports():
    src = (
        "from .. import viz\n"
        "from .._core import validate as V\n"
        "from .attacks import record_risk\n"
        "def f():\n"
        "    import torch\n"
        "    from ..experiment.runner import run\n"
    )
    known = {"fairpriv_lab.viz", "fairpriv_lab._core.validate", "fairpriv_lab.audit.attacks",
             "fairpriv_lab.experiment.runner"}
    got = imports_of(src, "fairpriv_lab.audit.risk", is_package=False, known=known)
    assert {"fairpriv_lab.viz", "fairpriv_lab._core.validate", "fairpriv_lab.audit.attacks",
            "torch", "fairpriv_lab.experiment.runner"} <= got


def test_checker_reads_a_bad_package_from_disk(tmp_path):
    pkg = tmp_path / "fairpriv_lab"
    for rel, text in {
        "__init__.py": "from .data import load\n",
        "data/__init__.py": "def load():\n    from ..experiment import run  # lazy, still backwards\n",
        "engine/__init__.py": "import torch\nfrom .. import data\n",
        "audit/__init__.py": "import numpy\n",
        "experiment/__init__.py": "from ..engine import torch\nfrom ..audit import numpy\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = package_graph(pkg)
    assert violations(graph) == [
        "fairpriv_lab.data (data) imports fairpriv_lab.experiment (experiment)"]
    # data -> experiment -> engine -> data
    assert cycles(graph) == [["fairpriv_lab.data", "fairpriv_lab.engine", "fairpriv_lab.experiment"]]


# ------------------------------------------------------------------ the package
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return package_graph()


def test_argparse_lives_in_cli_only(graph):
    users = sorted(m for m, deps in graph.items() if "argparse" in deps and layer_of(m) != "cli")
    assert users == [], "argparse belongs to fairpriv_lab/cli/"


def test_every_module_belongs_to_a_layer(graph):
    assert len(graph) > 40
    assert {layer_of(m) for m in graph} <= set(ORDER)


def test_imports_follow_the_layer_order(graph):
    assert violations(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_no_private_name_crosses_a_module_boundary():
    assert private_crossings() == []


def test_private_crossings_are_found(tmp_path):
    pkg = tmp_path / "fairpriv_lab"
    for rel, text in {
        "__init__.py": "",
        "viz/__init__.py": "from ._core import altair\n",
        "viz/_core.py": "def altair():\n    pass\n",
        "audit/__init__.py": "",
        "audit/attacks.py": "def _kernel():\n    pass\n",
        "audit/risk.py": "from .attacks import _kernel\n",
        "studies.py": "from .viz._core import altair\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    assert private_crossings(pkg) == [
        "fairpriv_lab.audit.risk imports fairpriv_lab.audit.attacks._kernel",
        "fairpriv_lab.studies imports the private module fairpriv_lab.viz._core",
    ]


def test_importing_the_array_layers_does_not_load_torch():
    code = ("import sys, fairpriv_lab as fl, fairpriv_lab.games, fairpriv_lab.audit, "
            "fairpriv_lab.experiment, fairpriv_lab.viz, fairpriv_lab.studies; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_run_loads_no_module_it_does_not_use():
    # A classroom run (train, account, audit) needs neither Opacus's training stack (its
    # __init__ loads torch.distributed.tensor and sympy) nor scipy.stats: together about 1.5 s
    # and 100 MB of a fresh process (docs/design.md section 5); an LR run not numba either (the
    # MLP's compiled tanh kernels and the paper-scale audit kernels load it)
    code = ("import sys, fairpriv_lab as fl; "
            "cfg = fl.ExperimentConfig().replace(**{'data.n': 1000, 'train.model': 'lr', 'game.n_models': 4, "
            "'train.epochs': 1, 'train.method': 'dpsgd', 'train.epsilon': 10.0, 'audit.n_boot': 20}); "
            "r = fl.run(cfg, cache=None); assert r.epsilon <= 10.0; "
            "print(sorted(m for m in ('opacus', 'sympy', 'scipy.stats', 'sklearn', 'fairlearn', 'altair', 'numba') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_public_api_is_small():
    code = "import fairpriv_lab as fl; print(len([n for n in dir(fl) if not n.startswith('_')]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) <= 25
