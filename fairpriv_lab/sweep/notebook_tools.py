"""Run the teaching notebooks as programs: papermill execution, parameter checks, refresh.

Every notebook in ``notebooks/`` follows one template (docs/design.md section 7): a ``parameters``
cell (papermill), then a cell that calls :func:`check_parameters` so that a bad parameter
stops the notebook at the top with the package's message ``Expected name=value allowed``.
Each notebook carries its test sizes in ``metadata["fairpriv_lab"]["small_parameters"]``
(read by :func:`small_parameters`), with the notebook, not in the library.

The kernel always runs in the interpreter that calls these functions: :func:`execute_notebook`
writes a temporary kernelspec whose ``argv`` starts with ``sys.executable``, so a notebook
never silently runs in another environment's Python.

Command line (:mod:`fairpriv_lab.cli.notebook_tools`, the Makefile's ``notebooks-refresh``)::

    python -m fairpriv_lab.cli.notebook_tools refresh notebooks          # re-execute, store outputs
    python -m fairpriv_lab.cli.notebook_tools refresh notebooks --strip  # store without outputs
    python -m fairpriv_lab.cli.notebook_tools run notebooks/00_start_here.ipynb --small -o out.ipynb
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core import validate as V
from .._core.exceptions import FairPrivError

__all__ = [
    "NotebookError",
    "NotebookRun",
    "check_parameters",
    "check_claim",
    "CLAIMS_ENV",
    "current_env_kernel",
    "execute_notebook",
    "list_notebooks",
    "refresh",
    "small_parameters",
    "strip_outputs",
]

KERNEL_NAME = "fairpriv-lab-current-env"

class NotebookError(FairPrivError, RuntimeError):
    """A notebook failed while executing; the message names the cell and the error.

    Attributes
    ----------
    notebook : str
        Path of the notebook that failed.
    cell_index : int or None
        Index of the failing cell in the executed notebook (None when the kernel died).
    source : str
        Source code of the failing cell.
    ename, evalue : str
        Exception name and value raised in the kernel.
    """

    def __init__(self, message: str, *, notebook: str, cell_index: int | None, source: str,
                 ename: str, evalue: str):
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index
        self.source = source
        self.ename = ename
        self.evalue = evalue


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of one executed notebook."""

    notebook: Path
    output: Path
    parameters: dict[str, Any]
    seconds: float


# ---------------------------------------------------------------- discovery and parameters
def list_notebooks(directory: str | os.PathLike = "notebooks") -> list[Path]:
    """Return the teaching notebooks ``NN_*.ipynb`` of directory, sorted by number."""
    d = Path(directory)
    if not d.is_dir():
        raise V.fail("directory", str(directory), "to be an existing folder of notebooks")
    return sorted(p for p in d.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def small_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Return the test-size parameters of a notebook, from its metadata.

    ``metadata["fairpriv_lab"]["small_parameters"]``: sizes that make the notebook run in
    about a minute on 2 CPU cores (the test suite and ``--small`` use them).
    """
    path = Path(notebook)
    if path.is_file():
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        small = meta.get("fairpriv_lab", {}).get("small_parameters")
        if isinstance(small, dict):
            return dict(small)
    raise V.fail(
        "notebook", path.name, "to have small test parameters",
        "Add them to the notebook metadata: 'fairpriv_lab': {'small_parameters': {...}}",
    )


#: The notebooks' parameter names that are experiment fields: checked by the field's schema
#: entry (:func:`fairpriv_lab.experiment.config.schema`), so bounds cannot drift apart.
NOTEBOOK_FIELDS: dict[str, str] = {
    "model": "train.model", "method": "train.method", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "train.lr", "clip": "train.clip", "tau": "train.tau",
    "stat_noise_ratio": "train.stat_noise_ratio", "n_models": "game.n_models", "n": "data.n",
    "n_boot": "audit.n_boot", "seed": "seed", "device": "device",
}


def check_parameters(**params: Any) -> dict[str, Any]:
    """Validate the papermill parameters of a notebook and return them unchanged.

    Each known name is checked against the experiment schema, so a bad value stops the
    notebook in its second code cell with the message the configuration would give, e.g.
    ``Expected n_models=7 to be even. Models come in complementary pairs (2p, 2p+1)``.

    Known names: ``dataset``, ``group`` (checked against the dataset), ``model``
    (``"cnn"`` needs an image dataset), ``method``/``methods``, ``epsilon``/``epsilons``
    (positive; ``inf`` means no privacy), ``m`` (audited records, at most ``n``),
    ``n_targets``, ``model_index`` (< ``n_models``) and the experiment fields of
    :data:`NOTEBOOK_FIELDS`. Other names pass through unchecked.

    Raises
    ------
    fairpriv_lab._core.exceptions.ConfigError
        With the ``Expected name=value allowed`` message of the first bad parameter.

    Examples
    --------
    >>> check_parameters(dataset="adult", group="sex", n_models=8)["n_models"]
    8
    >>> check_parameters(n_models=7)
    Traceback (most recent call last):
    ...
    fairpriv_lab._core.exceptions.ConfigError: Expected n_models=7 to be even...
    """
    from ..experiment.config import check_dataset, schema

    fields = schema()
    p = dict(params)
    if "dataset" in p:
        check_dataset(p["dataset"], p.get("group"), model=p.get("model"))
    for name, key in NOTEBOOK_FIELDS.items():
        if name in p:
            fields[key].check(name, p[name])
    if "methods" in p:
        _nonempty_list("methods", p["methods"])
        for meth in p["methods"]:
            fields["train.method"].check("methods", meth)
    if "epsilon" in p:
        _epsilon("epsilon", p["epsilon"])
    if "epsilons" in p:
        _nonempty_list("epsilons", p["epsilons"])
        for e in p["epsilons"]:
            _epsilon("epsilons", e)
    if "m" in p:
        fields["game.m"].check("m", p["m"], high=p.get("n"))
    if "n_targets" in p:
        V.integer("n_targets", p["n_targets"], 1)
    if "model_index" in p:
        nm = p.get("n_models")
        V.integer("model_index", p["model_index"], 0, nm - 1 if isinstance(nm, int) else None)
    if "device" in p:
        from ..engine.device import resolve_device

        resolve_device(p["device"])
    return params


#: Environment variable: ``strict`` makes :func:`check_claim` raise when a claim does not hold
#: (the test that runs every notebook at its defaults sets it).
CLAIMS_ENV = "FAIRPRIV_CLAIMS"


def check_claim(claim_id: str, holds: Any, sentence: str, *, evidence: str = "") -> bool:
    """Say whether an interpretive sentence of a notebook holds for the numbers just computed.

    Every sentence of a notebook that interprets a result carries a marker
    ``<!-- claim: <id> -->`` in its markdown cell and is backed by exactly one call
    ``check_claim("<id>", <condition on the computed numbers>, "<the sentence>")`` in a code
    cell (``tests/test_notebook_claims.py`` checks the pairing and runs every notebook at its
    default parameters with ``FAIRPRIV_CLAIMS=strict``). "Lower" in a claim means the signed
    difference's CI lies below 0, never a smaller point estimate.

    At other parameters (an exercise) a claim may not hold: the call then prints so, instead of
    stopping the notebook, unless ``FAIRPRIV_CLAIMS=strict``.

    Parameters
    ----------
    claim_id : str
        ``NN-short-name`` (the notebook's number first).
    holds : bool
        The condition, computed from the notebook's numbers.
    sentence : str
        The sentence as the notebook's text says it.
    evidence : str
        The numbers behind it (estimates and CIs), printed beside the verdict.

    Returns
    -------
    bool
        Whether the claim holds.

    Raises
    ------
    AssertionError
        When it does not hold and ``FAIRPRIV_CLAIMS=strict``.

    Examples
    --------
    >>> check_claim("00-demo", 2 > 1, "two exceeds one", evidence="2 vs 1")
    ✓ claim 00-demo holds: two exceeds one (2 vs 1)
    True
    """
    if not isinstance(claim_id, str) or not claim_id.strip():
        raise V.fail("claim_id", claim_id, "to be a non-empty string such as '04-dp-lowers-risk'")
    ok = bool(holds)
    tail = f" ({evidence})" if evidence else ""
    if ok:
        print(f"✓ claim {claim_id} holds: {sentence}{tail}")
        return True
    message = (f"✗ claim {claim_id} does NOT hold at these parameters: {sentence}{tail}. "
               "The text was checked at the notebook's default parameters; here the numbers say otherwise.")
    if os.environ.get(CLAIMS_ENV, "").strip().lower() == "strict":
        raise AssertionError(message)
    print(message)
    return False


def _nonempty_list(name: str, value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        raise V.fail(name, value, "to be a non-empty list")


def _epsilon(name: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == math.inf:
        return  # a notebook's "no privacy"
    from ..experiment.config import schema

    schema()["train.epsilon"].check(name, value)


# ---------------------------------------------------------------- kernel
@contextlib.contextmanager
def current_env_kernel(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Yield the name of a temporary kernelspec that runs ``sys.executable``.

    The spec lives in a temporary ``kernels/`` folder prepended to ``JUPYTER_PATH`` for the
    duration of the block, so a user's own ``python3`` kernel (perhaps another
    environment) cannot be picked up by mistake. The kernel imports this very copy of
    fairpriv-lab (its folder is put first on ``PYTHONPATH``), installed or not.

    Parameters
    ----------
    env : mapping, optional
        Extra environment variables of the kernel.
    """
    root = str(Path(__file__).resolve().parent.parent)
    kernel_env = {"PYTHONPATH": root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    kernel_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="fairpriv-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            # The kernel listens on 127.0.0.1 only; its "running over TCP without encryption"
            # warning would print once per notebook run and say nothing actionable here.
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],
            "display_name": f"Python (fairpriv-lab, {sys.executable})",
            "language": "python",
            "metadata": {"debugger": False},
            "env": kernel_env,
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


# ---------------------------------------------------------------- execution
def execute_notebook(
    notebook: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 600.0,
    progress_bar: bool = False,
    renderer: str = "static",
    env: Mapping[str, str] | None = None,
) -> NotebookRun:
    """Execute a notebook with papermill in the current interpreter and save the result.

    Parameters
    ----------
    notebook : path
        The ``.ipynb`` to run; it must have a cell tagged ``parameters`` when parameters
        are given.
    output : path, optional
        Where to write the executed notebook; a temporary file beside nothing when None
        (it is deleted and only timing is returned).
    parameters : mapping, optional
        Values injected after the ``parameters`` cell (papermill's injected cell).
    cwd : path, optional
        Working directory of the kernel; the notebook's folder when None, so relative paths
        behave as they do in Jupyter.
    timeout : float
        Seconds allowed per cell.
    renderer : {'static', 'both', 'interactive'}
        Chart rendering in the kernel (``FAIRPRIV_CHART_RENDERER``, read by
        ``viz.enable_notebook_rendering``): ``static`` stores PNGs, which show anywhere and
        keep files small.
    env : mapping, optional
        Extra environment variables of the kernel (e.g. ``{"OMP_NUM_THREADS": "1"}``, which
        the test suite uses so that a busy machine does not stall torch's thread barrier).

    Returns
    -------
    NotebookRun

    Raises
    ------
    NotebookError
        When a cell raises: the message gives the cell index, its first lines and the error.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src = Path(notebook)
    if not src.is_file():
        raise V.fail("notebook", str(notebook), "to be an existing .ipynb file")
    # JSON values only: papermill writes other types into the injected cell unescaped
    params = V.json_value("parameters", dict(parameters or {}))
    V.choice("renderer", renderer, ("static", "both", "interactive"))
    run_cwd = Path(cwd) if cwd is not None else src.resolve().parent
    with contextlib.ExitStack() as stack:
        if output is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fairpriv-nb-"))
            out = Path(tmp) / src.name
        else:
            out = Path(output)
            out.parent.mkdir(parents=True, exist_ok=True)
        kernel = stack.enter_context(current_env_kernel({"FAIRPRIV_CHART_RENDERER": renderer, **(env or {})}))
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(src), str(out), parameters=params, kernel_name=kernel, language="python",
                cwd=str(run_cwd),
                progress_bar=progress_bar, execution_timeout=timeout, log_output=False,
            )
        except PapermillExecutionError as err:
            first = "\n".join(err.source.splitlines()[:8])
            raise NotebookError(
                f"{src.name}: cell {err.cell_index} (execution count {err.exec_count}) raised "
                f"{err.ename}: {err.evalue}\n--- cell source ---\n{first}",
                notebook=str(src), cell_index=err.cell_index, source=err.source,
                ename=err.ename, evalue=err.evalue,
            ) from None
        seconds = time.perf_counter() - t0
    return NotebookRun(src, out, params, seconds)


# ---------------------------------------------------------------- committed outputs
_VOLATILE_CELL_META = ("papermill", "execution")


def _clean(nb: Any, *, strip: bool) -> Any:
    """Drop papermill's timing metadata (and outputs when strip) so diffs show content only."""
    nb.metadata.pop("papermill", None)
    kept = []
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            continue
        for key in _VOLATILE_CELL_META:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            if strip:
                cell.outputs = []
                cell.execution_count = None
        kept.append(cell)
    nb.cells = kept
    return nb


#: Largest committed notebook (outputs included): charts are PNGs, never data dumps.
MAX_NOTEBOOK_BYTES = 1_000_000
#: Text that legitimately changes between two runs of the same code: timings, cache keys,
#: object addresses, temporary paths, dates. Replaced before outputs are compared.
_VOLATILE = [
    (re.compile(r"\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|min)\b"), "<time>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<address>"),
    (re.compile(r"\b[0-9a-f]{8,64}\b"), "<key>"),
    (re.compile(r"(?:/tmp|/var/folders)/[^\s'\"]+"), "<path>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\s?UTC)?"), "<date>"),
]
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_COMPARED = ("text/plain",)  # compared as text; other mime types only have to be present


def _output_text(out: Any) -> tuple[str, str | None]:
    """(kind, text) of one output: the stream name or the sorted mime types, and its text."""
    kind = out.get("output_type", "")
    if kind == "stream":
        return f"stream:{out.get('name')}", "".join(out.get("text", ""))
    if kind == "error":
        return "error", f"{out.get('ename')}: {out.get('evalue')}"
    data = out.get("data", {})
    mimes = ",".join(sorted(k for k in data if not k.startswith("application/vnd.jupyter.widget")))
    text = next(("".join(data[m]) for m in _COMPARED if m in data and len(data) == 1), None)
    return f"{kind}:{mimes}", text


def _cell_outputs(cell: Any) -> list[tuple[str, str | None]]:
    """(kind, text) of a cell's outputs with streams merged and the run plan's lines dropped.

    ``run`` prints its plan only when it trains (not when the cache serves the run), and the
    plan names the machine's free memory: whether it shows depends on the cache, not on the
    code, so it is left out of the comparison like timings are masked.
    """
    merged: list[tuple[str, str | None]] = []
    for kind, text in (_output_text(o) for o in cell.get("outputs", [])):
        if kind.startswith("stream:"):
            text = "".join(line for line in (text or "").splitlines(keepends=True)
                           if not line.startswith("plan: "))
            if not text:
                continue
            if merged and merged[-1][0] == kind:
                merged[-1] = (kind, (merged[-1][1] or "") + text)
                continue
        merged.append((kind, text))
    return merged


def _same_text(stored: str, fresh: str, rtol: float, atol: float) -> bool:
    for pattern, token in _VOLATILE:
        stored, fresh = pattern.sub(token, stored), pattern.sub(token, fresh)
    if _NUMBER.sub("#", " ".join(stored.split())) != _NUMBER.sub("#", " ".join(fresh.split())):
        return False
    a = [float(x) for x in _NUMBER.findall(stored)]
    b = [float(x) for x in _NUMBER.findall(fresh)]
    return len(a) == len(b) and all(abs(x - y) <= atol + rtol * abs(x) for x, y in zip(a, b))


def compare_outputs(stored: Any, fresh: Any, *, rtol: float = 0.02, atol: float = 0.02) -> list[str]:
    """Return what differs between stored outputs and a fresh execution (nbval-style).

    Cells are paired in order (papermill's injected cell skipped). Per cell the outputs must
    have the same kinds (stream, mime types) in the same order; text (stdout, ``text/plain``)
    must be equal after volatile parts (timings, keys, paths, dates) are masked, numbers within
    ``atol + rtol * |stored|``. Images and HTML only have to be there: a chart drawn from the
    same numbers is the same chart. Returns one line per stale cell (empty when up to date).
    """
    def code(nb: Any) -> list[Any]:
        return [c for c in nb.cells if c.cell_type == "code"
                and "injected-parameters" not in c.metadata.get("tags", [])]

    old, new = code(stored), code(fresh)
    if len(old) != len(new):
        return [f"{len(old)} code cells stored, {len(new)} executed"]
    problems = []
    for i, (a, b) in enumerate(zip(old, new)):
        if "NBVAL_SKIP" in a.source:
            continue
        ka, kb = _cell_outputs(a), _cell_outputs(b)
        if [k for k, _ in ka] != [k for k, _ in kb]:
            problems.append(f"cell {i}: stored outputs {[k for k, _ in ka]}, now {[k for k, _ in kb]}")
            continue
        for (kind, ta), (_, tb) in zip(ka, kb):
            if ta is not None and tb is not None and not _same_text(ta, tb, rtol, atol):
                first, now = next(((x, y) for x, y in zip(ta.splitlines(), tb.splitlines())
                                   if x != y), (ta[:80], tb[:80]))
                problems.append(f"cell {i} ({kind}) changed: stored {first.strip()[:100]!r}, "
                                f"now {now.strip()[:100]!r}")
                break
    return problems


def has_outputs(notebook: Any) -> bool:
    """Return whether a notebook (node) stores any output."""
    return any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")


def strip_outputs(notebook: str | os.PathLike) -> None:
    """Remove every output and execution count from a notebook, in place."""
    import nbformat

    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    nbformat.write(_clean(nb, strip=True), path)


def refresh(
    directory: str | os.PathLike = "notebooks",
    *,
    strip: bool = False,
    only: Sequence[str] = (),
    small: bool = False,
    timeout: float = 1800.0,
) -> list[NotebookRun]:
    """Re-execute every teaching notebook and store its fresh outputs in place.

    This is the one command that regenerates what is committed (``make notebooks-refresh``),
    so stored outputs always match the code. Each notebook runs with its own default
    parameters (``small=True`` uses :func:`small_parameters`, for a quick check); papermill's
    timing metadata is dropped to keep diffs readable. A notebook that fails is left
    untouched and the error is raised after the others have run.

    Parameters
    ----------
    directory : path
        Folder holding ``NN_*.ipynb``.
    strip : bool
        Execute (so that every notebook is still checked) but store without outputs.
    only : sequence of str
        Restrict to notebooks whose file name starts with one of these prefixes (``"03"``).
    """
    import nbformat

    runs: list[NotebookRun] = []
    errors: list[NotebookError] = []
    for path in list_notebooks(directory):
        if only and not any(path.name.startswith(o) for o in only):
            continue
        params = small_parameters(path) if small else {}
        with tempfile.TemporaryDirectory(prefix="fairpriv-refresh-") as tmp:
            out = Path(tmp) / path.name
            try:
                run = execute_notebook(path, out, parameters=params, timeout=timeout)
            except NotebookError as err:
                errors.append(err)
                print(f"FAILED {path.name}: {err}", file=sys.stderr)
                continue
            nb = _clean(nbformat.read(out, as_version=4), strip=strip)
            if not strip:  # which sizes the stored outputs come from (the staleness test reruns them)
                nb.metadata.setdefault("fairpriv_lab", {})["outputs_parameters"] = dict(params)
            size = len(nbformat.writes(nb).encode("utf-8"))
            if size > MAX_NOTEBOOK_BYTES:
                errors.append(NotebookError(
                    f"{path.name}: {size / 1e6:.2f} MB with outputs, above the "
                    f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB budget; left unchanged (smaller charts or "
                    "fewer printed rows)", notebook=str(path), cell_index=None, source="",
                    ename="SizeBudget", evalue=f"{size} bytes"))
                print(f"FAILED {path.name}: {size / 1e6:.2f} MB > budget", file=sys.stderr)
                continue
            nbformat.write(nb, path)
        runs.append(NotebookRun(path, path, params, run.seconds))
        print(f"refreshed {path.name} in {run.seconds:.1f} s")
    if errors:
        raise errors[0]
    return runs
