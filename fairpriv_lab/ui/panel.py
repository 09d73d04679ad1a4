"""Interactive audit panel: ipywidgets controls over :mod:`~fairpriv_lab.experiment` and :mod:`~fairpriv_lab.viz`.

The panel is a thin face over ``experiment.run(config)``: the controls build a
:class:`PanelSettings`, which converts to an ``ExperimentConfig``; the result's group privacy
risk (GPR, percentage points, with bootstrap CIs and the zero-leakage floor) is shown as an
HTML table and as altair charts in an ``Output`` widget, all updated in place. Taught in
notebooks 00 and 03.

The interactive default is the half-split game auditing every training record (the most
precision per trained model, ``docs/design.md`` 4.1); PA-ALOOA's game stays one control away.
Before a run the panel shows what these sizes can resolve (:func:`fairpriv_lab.precision`);
during a run it redraws after every chunk of models ("64 of 128 models", intervals
narrowing) with a progress bar, the elapsed time and an estimate of the time left; a control
changed during a run cancels it and starts the new one. After a run it shows how each group
changed since the previous result (a signed difference with its CI, and the previous bars as
dashed outlines on fixed axes), and GPRP always beside its zero-leakage reference.

Four rules keep it usable in a classroom:

- **Nothing invalid can run.** Options that make no sense are not offered (a CNN for tabular
  data, DP-SGD-S or DP-SGD-F with a single group) or are disabled (ε and σ with plain SGD;
  τ and the statistic noise unless DP-SGD-S). Anything else the configuration refuses is
  shown as a readable message in the panel, and the last good result stays on screen —
  never a traceback.
- **Seen settings show instantly.** Results are memoised in memory by configuration digest
  and, through ``experiment.run``, cached on disk; changing a control back to settings
  already computed redraws at once, without pressing Run.
- **What is on screen is labelled.** Results of other settings than the controls show are
  greyed and labelled with their settings until replaced; "Done in" stays until the next
  result; a dataset whose size does not fit the current sizes resets them and says so.
- **Testable without a browser.** :meth:`AuditPanel.set` and :meth:`AuditPanel.run` are
  ordinary synchronous methods (the Run button uses :meth:`AuditPanel.start`, the same work
  on a thread); the outputs are widget values (``table.value``, ``charts.outputs``,
  ``message.value``) and :attr:`AuditPanel.last_chart_spec`.

ipywidgets and altair are imported lazily; without them the panel raises ``ImportError`` with
:data:`MISSING_UI_MESSAGE`.
"""

from __future__ import annotations

import html
import importlib
import inspect
import math
import sys
import threading
import time
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from .._core import validate as V
from .._core.exceptions import FairPrivError
from .._core.vocabulary import DEFAULT_AUDITORS, GROUP_METHODS, MODEL_LABELS, GameKind, Model
from ..experiment.config import classroom_default_of, classroom_overrides, default_of, schema

__all__ = [
    "MISSING_UI_MESSAGE",
    "METHOD_CHOICES",
    "PanelSettings",
    "AuditPanel",
    "build_panel",
    "default_settings",
]

#: The one message shown when the optional UI dependencies are missing.
MISSING_UI_MESSAGE = (
    "The interactive panel needs the optional packages ipywidgets and altair: "
    "pip install fairpriv-lab[ui]"
)

#: (label, value) of the method dropdown; a value is ``method`` or ``"dpsgds:statistic"``.
METHOD_CHOICES: tuple[tuple[str, str], ...] = (
    ("SGD (no privacy)", "sgd"),
    ("DP-SGD", "dpsgd"),
    ("DP-SGD-S, norm statistic", "dpsgds:norm"),
    ("DP-SGD-S, mean direction (paper)", "dpsgds:mean_direction"),
    ("DP-SGD-F", "dpsgdf"),
)
_METHOD_VALUES = tuple(v for _, v in METHOD_CHOICES)
_GROUP_METHODS = tuple(v for v in _METHOD_VALUES if v.split(":")[0] in GROUP_METHODS)
_MODEL_CHOICES = tuple((label, name) for name, label in MODEL_LABELS.items())

#: The panel's controls that are experiment fields, checked by the field's schema entry.
PANEL_FIELDS: dict[str, str] = {
    "model": "train.model", "epsilon": "train.epsilon", "sigma": "train.noise_multiplier",
    "clip": "train.clip", "tau": "train.tau", "stat_noise_ratio": "train.stat_noise_ratio",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "n_models": "game.n_models", "n": "data.n", "m": "game.m", "seed": "seed",
    "chunk_models": "chunk_models",
    "game": "game.kind",
}
#: (label, value) of the game control: the half-split game audits every training record.
GAME_CHOICES: tuple[tuple[str, str], ...] = (
    ("half-split: every record audited", "half"),
    ("ALOOA: m records audited", "aloo"),
)
#: Labels of the datasets in the dropdown (others show their name).
DATASET_LABELS = {
    "adult": "adult (census income, by sex or race)",
    "digits": "digits (8x8 images, by digit class)",
    "synthetic": "synthetic (a small atypical group)",
}


def _ipywidgets() -> Any:
    try:
        return importlib.import_module("ipywidgets")
    except ImportError as exc:  # pragma: no cover - the test environment has ipywidgets
        raise ImportError(MISSING_UI_MESSAGE) from exc




# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class PanelSettings:
    """The values of the panel's controls; :meth:`to_config` turns them into an experiment.

    Parameters
    ----------
    dataset, group : str
        A registered dataset and one of its group attributes (None: the dataset's default).
    model : {'lr', 'mlp', 'cnn'}
    method : str
        One of the values of :data:`METHOD_CHOICES`: ``"sgd"``, ``"dpsgd"``,
        ``"dpsgds:norm"``, ``"dpsgds:mean_direction"``, ``"dpsgdf"``.
    privacy : {'epsilon', 'sigma'}
        Whether the DP methods get a target ``epsilon`` (σ calibrated) or a fixed ``sigma``.
    epsilon, sigma, clip : float
        Target ε (> 0), noise multiplier σ (> 0), clipping bound C (> 0).
    tau, stat_noise_ratio : float
        DP-SGD-S's cap τ (>= 1) and the ratio σ₁/σ of its released statistic.
    epochs, batch_size : int
        Training epochs and expected (Poisson) batch size.
    lr : float
        Learning rate of SGD.
    n_models : int
        Models in the game (even, >= 4).
    n, m : int
        Records drawn from the dataset (None: all) and records audited (<= training records).
    seed : int
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    chunk_models : int
        Models trained together per cached chunk (the experiment's ``chunk_models``); the
        panel redraws after each chunk.
    game : {'half', 'aloo'}
        The half-split game audits every training record (``m`` unused); ALOOA audits ``m``.

    Examples
    --------
    >>> s = PanelSettings(method="dpsgds:norm", epsilon=4.0)
    >>> s.to_config().train.method, s.to_config().train.statistic
    ('dpsgds', 'norm')
    >>> s.to_config().game.kind, s.to_config().game.n_models
    ('half', 128)

    Notes
    -----
    These defaults are the interactive defaults of the package (one place): on 2 CPU cores
    a cold DP-SGD run takes seconds, every group's GPR interval is about ±1 pp or tighter
    and the SGD -> DP-SGD change of each group's GPR has an interval excluding 0 (measured by
    ``benchmarks/bench_widgets.py``, recorded in ``benchmarks/README.md``).
    """

    # Defaults are the schema's: its classroom defaults (experiment.config.classroom_default_of)
    # where the panel starts from other values than the library (seconds per run on a CPU).
    dataset: str = default_of("data.name")
    group: str | None = default_of("data.group")
    model: Model = classroom_default_of("train.model")
    method: str = default_of("train.method")
    privacy: Literal["epsilon", "sigma"] = "epsilon"
    epsilon: float = classroom_default_of("train.epsilon")
    sigma: float = 1.0
    clip: float = default_of("train.clip")
    tau: float = default_of("train.tau")
    stat_noise_ratio: float = 1.0
    epochs: int = classroom_default_of("train.epochs")
    batch_size: int = default_of("train.batch_size")
    lr: float = classroom_default_of("train.lr")
    n_models: int = classroom_default_of("game.n_models")
    n: int | None = classroom_default_of("data.n")
    m: int = classroom_default_of("game.m")
    seed: int = default_of("seed")
    device: str = default_of("device")
    chunk_models: int = classroom_default_of("chunk_models")
    game: GameKind = classroom_default_of("game.kind")

    def __post_init__(self) -> None:
        V.choice("method", self.method, _METHOD_VALUES)
        V.choice("privacy", self.privacy, ("epsilon", "sigma"))
        fields = schema()
        for name, key in PANEL_FIELDS.items():
            fields[key].check(name, getattr(self, name))
        if self.game not in ("half", "aloo"):
            raise V.fail("game", self.game, "to be one of 'half', 'aloo' (the panel's games)")
        if self.game == "aloo" and self.m is None:
            raise V.fail("m", None, "to be an integer >= 2 with game='aloo'")

    @property
    def base_method(self) -> str:
        """The experiment's method name (``"dpsgds"`` for both DP-SGD-S statistics)."""
        return self.method.split(":")[0]

    def to_config(self) -> Any:
        """Return the ``ExperimentConfig`` of these settings (validated by the config).

        Only what the method uses is passed on, so two settings that differ in an unused
        control (τ under DP-SGD) map to the same configuration and the same cache entry.
        """
        from ..experiment.runner import ExperimentConfig

        train: dict[str, Any] = {
            "model": self.model, "method": self.base_method, "epochs": self.epochs,
            "batch_size": self.batch_size, "lr": self.lr,
        }
        if self.base_method != "sgd":
            train["clip"] = self.clip
            if self.privacy == "epsilon":
                train["epsilon"] = self.epsilon
            else:
                train["noise_multiplier"] = self.sigma
        if self.base_method == "dpsgds":
            train.update(tau=self.tau, statistic=self.method.split(":")[1],
                         stat_noise_ratio=self.stat_noise_ratio)
        return ExperimentConfig(
            data={"name": self.dataset, "group": self.group, "n": self.n, "seed": self.seed},
            train=train,
            game={"kind": self.game, "n_models": self.n_models, "m": self.m if self.game == "aloo" else None},
            audit={"auditors": DEFAULT_AUDITORS},
            seed=self.seed, device=self.device,
            chunk_models=self.chunk_models,
        )


#: The panel's settings that may have classroom defaults of a dataset's own: on a dataset
#: change, those the student has not set move to the new dataset's (:meth:`AuditPanel._fit_sizes`).
CLASSROOM_FIELDS = ("n", "m", "n_models", "epochs", "lr", "batch_size", "epsilon", "clip")


def default_settings(device: str = "auto", **overrides: Any) -> PanelSettings:
    """Return the interactive defaults (:class:`PanelSettings`) of a dataset, scaled up on a GPU.

    On a CPU the :class:`PanelSettings` defaults: 4,000 Adult records, logistic regression,
    the half-split game with 128 models auditing all 3,200 training records, 10 epochs
    (``benchmarks/bench_widgets.py`` prints the times and widths). A dataset with classroom
    defaults of its own in the schema (:func:`~fairpriv_lab.experiment.config.classroom_overrides`)
    starts from them: ``synthetic`` generates 8,000 records, so that its small atypical group
    (1,280 training records) gets as narrow an interval, and its DP-SGD runs at ε = 0.5 with
    C = 10, where the noise (not only clipping) acts on its logistic regressions. On a CUDA
    GPU: all 45,222 records of a dataset that is loaded (the classroom size of a generated
    one) and 256 models, batches of 512 (still seconds, since every model of the game trains
    at once). ``overrides`` win.
    """
    from ..data import list_datasets
    from ..engine.device import resolve_device

    dataset = overrides.get("dataset", default_of("data.name"))
    by_key = {key: name for name, key in PANEL_FIELDS.items()}
    own = {by_key[key]: value for key, value in classroom_overrides(dataset).items() if key in by_key}
    base = replace(PanelSettings(device=device), dataset=dataset, **own)
    if resolve_device(device).type == "cuda":
        generated = {d.name: d.generated for d in list_datasets()}.get(dataset, False)
        base = replace(base, n=base.n if generated else None, n_models=256, batch_size=512, chunk_models=64)
    return replace(base, **overrides)


def fit_sizes(settings: PanelSettings, records: int, *, test_size: float = 0.2,
              generated: bool = False) -> tuple[PanelSettings, list[str]]:
    """Return settings whose sizes fit a dataset of ``records`` records, and what was reset and why.

    ``n`` above the dataset's size becomes all records (a ``generated`` dataset generates
    any ``n``; ``records`` is then its default size); ``m`` (ALOOA) above the training
    records becomes a quarter of them; a batch larger than the smallest training set of the
    game becomes a power of two near a quarter of it.

    Examples
    --------
    >>> s, notes = fit_sizes(PanelSettings(dataset="digits", n=4000), 1797)
    >>> s.n is None, notes[0]
    (True, "'digits' has 1,797 records: Records reset from 4,000 to all 1,797.")
    >>> fit_sizes(PanelSettings(dataset="synthetic", n=8000), 2000, generated=True)[0].n
    8000
    """
    notes: list[str] = []
    n = settings.n
    if n is not None and n > records and not generated:
        notes.append(f"{settings.dataset!r} has {records:,} records: Records reset from {n:,} to all {records:,}.")
        n = None
    size = n or records
    n_train = size - int(round(test_size * size))
    m = settings.m
    if settings.game == "aloo" and m > n_train:
        m = max(2, n_train // 4)
        notes.append(f"Audited records m reset from {settings.m:,} to {m:,} (at most the {n_train:,} training records).")
    smallest = n_train // 2 if settings.game == "half" else n_train - m
    batch = settings.batch_size
    if batch > max(1, smallest):
        batch = max(1, 2 ** int(math.log2(max(2, smallest // 4))))
        notes.append(f"Batch size reset from {settings.batch_size} to {batch} "
                     f"(each model trains on about {smallest:,} records).")
    return replace(settings, n=n, m=m, batch_size=batch), notes


def warm_configs(datasets: tuple[str, ...] = ("adult", "synthetic"), device: str = "auto") -> list[Any]:
    """Return the experiment configs the panel's defaults and the notebooks' panel exercises reach.

    Per dataset (its classroom defaults, sizes fitted to it): plain SGD, DP-SGD at the default
    ε and C, DP-SGD at ε = 1, DP-SGD with C = 0.1 ("what did moving C from 1 to 0.1 do?") and
    at Adult's ε = 8, C = 1 (synthetic's own are ε = 0.5, C = 10: "what does clipping alone
    do?"). :func:`warm` (``python -m fairpriv_lab.cli.notebook_tools warm``, run by
    ``make notebooks-refresh``)
    computes them into the cache, so that a class opens the panel on cached results (σ
    calibrations included).
    """
    from ..data import list_datasets, load_dataset

    generated = {d.name: d.generated for d in list_datasets()}
    configs = []
    for ds in datasets:
        base, _ = fit_sizes(default_settings(device, dataset=ds), load_dataset(ds).n_samples,
                            generated=generated[ds])
        for change in ({"method": "sgd"}, {"method": "dpsgd"}, {"method": "dpsgd", "epsilon": 1.0},
                       {"method": "dpsgd", "clip": 0.1},
                       {"method": "dpsgd", "epsilon": classroom_default_of("train.epsilon"),
                        "clip": default_of("train.clip")}):
            config = replace(base, **change).to_config()
            if all(config.digest != c.digest for c in configs):
                configs.append(config)
    return configs


def warm(device: str = "auto") -> list[str]:
    """Compute :func:`warm_configs` into the result cache; return one line per configuration.

    ``python -m fairpriv_lab.cli.notebook_tools warm`` (run by ``make notebooks-refresh``).
    """
    from ..experiment.runner import run

    lines = []
    for config in warm_configs(device=device):
        t0 = time.perf_counter()
        result = run(config)
        lines.append(f"{'cached' if result.from_cache else 'computed'} {config.label} "
                     f"({config.game.n_models} models) in {time.perf_counter() - t0:.1f} s")
    return lines


# ---------------------------------------------------------------- the panel
EPSILON_STEPS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 16.0, 20.0, 32.0, 50.0, 100.0)
RATIO_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0)

#: CSS of the panel: results of other settings than the controls show are greyed.
_STYLE = ("<style>.fairpriv-stale { opacity: 0.4; filter: grayscale(100%); transition: opacity .2s; }"
          "</style>")


def _grid(steps: tuple[float, ...], value: float) -> list[tuple[str, float]]:
    """Slider options (label, value) over steps, with value itself included."""
    values = sorted(set(steps) | {float(value)})
    return [(f"{v:g}", v) for v in values]


class RunCancelled(Exception):
    """Raised inside a run whose settings were changed; the panel starts the new run."""


class _Job:
    """One run of the panel: its settings, config, cancel flag and thread."""

    def __init__(self, settings: PanelSettings, config: Any) -> None:
        self.settings = settings
        self.config = config
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None
        self.t0 = time.perf_counter()
        self.done = threading.Event()
        self.ok = False
        self.replaced: str | None = None  # label of the run this one cancelled


class AuditPanel:
    """A widget panel that runs an audit and shows GPR by group as a table and charts.

    Parameters
    ----------
    settings : PanelSettings, optional
        Initial control values (:func:`default_settings` when None).
    datasets : sequence of str, optional
        Datasets offered; the offline ones of :func:`fairpriv_lab.list_datasets` by default.
    auditor : str
        Whose GPR the table and the first chart show (``"PA-ALOOA"``, the per-record
        auditor of the half-split and ALOOA games).
    runner : callable, optional
        ``runner(config, progress=callback, on_chunk=callback) -> AuditResult``;
        ``experiment.run`` by default (which also caches on disk). ``progress`` and
        ``on_chunk`` are passed only when the runner accepts them.
    show_cached : bool
        Show the result of the initial settings at once when the disk cache holds it.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole panel (displaying the panel displays it).
    table, change_table, message, plan, timing, shown_label, progress_text : ipywidgets.HTML
        The GPR table, each group's change since the previous result (signed, with CI), the
        status line, the precision plan, the time of the last finished run, the settings of
        the result on screen and the progress line ("64 of 128 models · 1.2 s elapsed ·
        about 1.3 s left").
    charts : ipywidgets.Output
        The charts of the result on screen.
    results : ipywidgets.VBox
        Table and charts; carries the CSS class ``fairpriv-stale`` while they show other
        settings than the controls.
    progress : ipywidgets.FloatProgress
    result, previous : AuditResult or None
        The last good result and the one shown before it (the comparison's baseline).
    partial : PartialResult or None
        The partial result on screen while a run is in progress (None otherwise).
    change : pandas.DataFrame or None
        :func:`fairpriv_lab.precision.group_change` from ``previous`` to ``result``.
    last_chart_spec : dict or None
        ``to_dict()`` of the last GPR chart shown (for tests and exports).
    last_source : str
        ``"memo"``, ``"computed"``, ``"partial"`` or ``""``: where the picture came from.
    history : list of str
        Events of the runs ("start <label>", "partial 32/128", "cancelled <label>",
        "done <label>"), for tests and for the browser test's log.

    Examples
    --------
    >>> panel = AuditPanel(default_settings("cpu", epochs=2))   # doctest: +SKIP
    >>> panel.set(method="dpsgd", epsilon=2.0); panel.run()      # doctest: +SKIP
    True
    """

    def __init__(
        self,
        settings: PanelSettings | None = None,
        *,
        datasets: tuple[str, ...] | None = None,
        auditor: str = "PA-ALOOA",
        runner: Any = None,
        show_cached: bool = True,
    ) -> None:
        W = _ipywidgets()
        from ..data import list_datasets
        from ..viz import altair as _viz_altair

        _viz_altair()  # fail early, with the extra to install, if the charts cannot be drawn

        self._infos = {d.name: d for d in list_datasets()}
        offered = datasets or tuple(d.name for d in list_datasets() if d.offline)
        for name in offered:
            V.choice("datasets", name, list(self._infos))
        s = settings or default_settings()
        if s.dataset not in offered:
            raise V.fail("settings.dataset", s.dataset, "to be one of the offered datasets " + ", ".join(offered))
        self.auditor = V.choice("auditor", auditor, DEFAULT_AUDITORS)
        self._runner = runner
        self._memo: dict[str, Any] = {}
        self._rendered: dict[tuple[int, int], Any] = {}
        self._group_counts: dict[tuple[str, str], int] = {}
        self._sizes: dict[str, int] = {}
        self._domains: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.RLock()
        self._job: _Job | None = None
        self._syncing = False
        self.result: Any = None
        self.previous: Any = None
        self.partial: Any = None
        self.change: Any = None
        self.plan_result: Any = None
        self.last_chart_spec: dict[str, Any] | None = None
        self.last_chart_specs: dict[str, dict[str, Any]] = {}
        self.last_source = ""
        self.last_seconds = math.nan
        self.last_error: BaseException | None = None
        self.history: list[str] = []
        self._shown_digest: str | None = None
        self._device, self._chunk_models = s.device, s.chunk_models

        style = {"description_width": "150px"}
        lay = W.Layout(width="420px")
        self.dataset = W.Dropdown(options=[(DATASET_LABELS.get(d, d), d) for d in offered], value=s.dataset,
                                  description="Dataset", style=style, layout=lay)
        self.group = W.Dropdown(options=[], description="Group attribute", style=style, layout=lay)
        self.model = W.Dropdown(options=[], description="Model", style=style, layout=lay)
        self.method = W.Dropdown(options=list(METHOD_CHOICES), value=s.method, description="Method", style=style, layout=lay)
        self.privacy = W.ToggleButtons(options=[("target ε", "epsilon"), ("noise σ", "sigma")], value=s.privacy,
                                       description="Privacy by", style=style)
        # Choice sliders, not log sliders: a log slider snaps 8.0 to 7.94, so the first run's
        # settings (and cache key) silently differed from the ones the panel was given.
        # continuous_update=False: a drag is one change (one run), not dozens.
        slider = {"style": style, "layout": lay, "continuous_update": False}
        self.epsilon = W.SelectionSlider(options=_grid(EPSILON_STEPS, s.epsilon), value=s.epsilon,
                                         description="ε (target)", **slider)
        self.sigma = W.FloatSlider(value=s.sigma, min=0.2, max=5.0, step=0.05, description="σ (noise multiplier)",
                                   **slider)
        self.clip = W.FloatLogSlider(value=s.clip, base=10, min=-2, max=1, step=0.05, description="C (clipping bound)",
                                     readout_format=".3f", **slider)
        self.tau = W.FloatSlider(value=s.tau, min=1.0, max=5.0, step=0.1, description="τ (DP-SGD-S cap)", **slider)
        self.stat_noise_ratio = W.SelectionSlider(options=_grid(RATIO_STEPS, s.stat_noise_ratio),
                                                  value=s.stat_noise_ratio, description="statistic noise σ₁/σ",
                                                  **slider)
        self.epochs = W.IntSlider(value=s.epochs, min=1, max=max(200, s.epochs), description="Epochs", **slider)
        self.n_models = W.IntSlider(value=s.n_models, min=4, max=max(512, s.n_models), step=2,
                                    description="Models (pairs × 2)", **slider)
        self.game = W.Dropdown(options=list(GAME_CHOICES), value=s.game, description="Game", style=style, layout=lay)
        self.batch_size = W.BoundedIntText(value=s.batch_size, min=1, max=10**6, description="Batch size",
                                           style=style, layout=lay)
        self.lr = W.BoundedFloatText(value=s.lr, min=1e-5, max=100.0, step=0.05, description="Learning rate",
                                     style=style, layout=lay)
        self.n = W.BoundedIntText(value=s.n or 0, min=0, max=10**7, description="Records (0 = all)", style=style, layout=lay)
        self.m = W.BoundedIntText(value=s.m, min=2, max=10**6, description="Audited records m", style=style, layout=lay)
        self.seed = W.BoundedIntText(value=s.seed, min=0, max=2**31 - 1, description="Seed", style=style, layout=lay)
        self.privacy_note = W.HTML()
        self.run_button = W.Button(description="Run audit", button_style="primary", icon="play")
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="", layout=W.Layout(width="300px"))
        self.progress_text = W.HTML()
        self.plan = W.HTML()
        self.message = W.HTML()
        self.timing = W.HTML()
        self.shown_label = W.HTML()
        self.table = W.HTML()
        self.change_table = W.HTML()
        self.charts = W.Output()

        notes = self._sync_choices(initial=s)
        self._sizes_for(s.dataset)
        self._track_student_settings()
        controls = W.VBox([
            self.dataset, self.group, self.model, self.method, self.privacy, self.epsilon, self.sigma,
            self.privacy_note, self.clip, self.tau, self.stat_noise_ratio, self.epochs, self.n_models,
        ])
        self.sizes = W.Accordion(children=[W.VBox([self.game, self.n, self.m, self.batch_size, self.lr, self.seed])],
                                 titles=("Game, sizes, training and seed",))
        self.sizes.selected_index = None
        # Fixed-width controls, flexible results: without these flex settings Voila gives the
        # controls zero width beside an Output widget (voila-dashboards/voila#1529).
        left = W.VBox([controls, self.sizes, W.HBox([self.run_button, self.progress]), self.progress_text,
                       self.plan, self.message, self.timing], layout=W.Layout(flex="0 0 auto"))
        self.results = W.VBox([self.shown_label, self.table, self.change_table, self.charts],
                              layout=W.Layout(flex="1 1 auto", min_width="0"))
        self.widget = W.HBox([W.HTML(_STYLE), left, self.results])

        self.run_button.on_click(lambda _b: self.start())
        for w in self._controls():
            w.observe(self._on_change, names="value")
        self._refresh_state()
        self._update_plan()
        self._say("warn" if notes else "info",
                  "".join(f"{_esc(n)}<br>" for n in notes) + "Press <b>Run audit</b> to start.")
        if show_cached:
            self._show_if_cached()

    # ------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _controls(self) -> list[Any]:
        return [self.dataset, self.group, self.model, self.method, self.privacy, self.epsilon, self.sigma,
                self.clip, self.tau, self.stat_noise_ratio, self.epochs, self.n_models, self.game, self.batch_size,
                self.lr, self.n, self.m, self.seed]

    # ------------------------------------------------------------ settings <-> widgets
    @property
    def settings(self) -> PanelSettings:
        """The :class:`PanelSettings` the controls show now."""
        return PanelSettings(
            dataset=self.dataset.value, group=self.group.value, model=self.model.value, method=self.method.value,
            privacy=self.privacy.value, epsilon=float(self.epsilon.value), sigma=float(self.sigma.value),
            clip=float(self.clip.value), tau=float(self.tau.value), stat_noise_ratio=float(self.stat_noise_ratio.value),
            epochs=int(self.epochs.value), batch_size=int(self.batch_size.value), lr=float(self.lr.value),
            n_models=int(self.n_models.value), n=int(self.n.value) or None,
            m=int(self.m.value), seed=int(self.seed.value), device=self._device,
            chunk_models=self._chunk_models, game=self.game.value,
        )

    def set(self, **values: Any) -> None:
        """Set controls by :class:`PanelSettings` field name, as a student would, in order given.

        Unknown names raise ConfigError; a value a control does not offer (``model="cnn"``
        for Adult) leaves the control unchanged and explains why in :attr:`message`.
        """
        names = {f.name for f in fields(PanelSettings)} - {"device", "chunk_models"}
        for name, value in values.items():
            if name not in names:
                raise V.fail("setting", name, "to be one of " + ", ".join(sorted(names)))
            w = getattr(self, name)
            if name == "n":
                value = value or 0
            if name in ("epsilon", "stat_noise_ratio"):  # any positive value joins the choices
                value = V.positive(name, value)
                if value not in [o[1] for o in w.options]:
                    w.options = _grid(tuple(o[1] for o in w.options), value)
            if isinstance(w.options if hasattr(w, "options") else None, tuple | list):
                allowed = [o[1] if isinstance(o, tuple) else o for o in w.options]
                if value not in allowed:
                    self._say("warn", _esc(self._why_not_offered(name, value)))
                    continue
            w.value = value

    def _offer(self, name: str, options: list, want: Any, fallback: tuple[str, str], notes: list[str]) -> None:
        """Offer ``options`` in a dropdown; keep ``want`` if offered, else switch to ``fallback`` and say why."""
        widget = getattr(self, name)
        widget.options = options
        if want in [v for _, v in options]:
            widget.value = want
        else:
            widget.value = fallback[0]
            notes.append(self._why_not_offered(name, want) + f" Switched to {fallback[1]}.")

    def _why_not_offered(self, name: str, value: Any) -> str:
        ds = self.dataset.value
        if name == "model" and value == "cnn":
            return f"A CNN needs image data; {ds!r} is tabular. Choose an MLP or logistic regression, or the digits dataset."
        if name == "method" and value in _GROUP_METHODS:
            return (f"{dict((v, k) for k, v in METHOD_CHOICES)[value]} sets one clipping bound per group, but "
                    f"{ds!r} grouped by {self.group.value!r} has a single group; use DP-SGD.")
        return f"{value!r} is not offered for {name} here."

    def _load_info(self, dataset: str, group: str) -> tuple[int, int]:
        """Return (groups present, records) of a dataset, loaded once; (2, 0) when not loadable yet."""
        key = (dataset, group)
        if key not in self._group_counts:
            from .._core.exceptions import DataWarning
            from ..data import load_dataset

            try:
                with warnings.catch_warnings():
                    # A single group is reported in the panel, not as a warning.
                    warnings.simplefilter("ignore", DataWarning)
                    ds = load_dataset(dataset, group=group, seed=0)
                self._group_counts[key] = int((ds.group_counts > 0).sum())
                self._sizes[dataset] = int(ds.n_samples)
            except (FairPrivError, OSError):
                self._group_counts[key] = 2  # cannot tell before download; the run will explain
        return self._group_counts[key], self._sizes.get(dataset, 0)

    def _n_groups(self, dataset: str, group: str) -> int:
        return self._load_info(dataset, group)[0]

    def _sizes_for(self, dataset: str) -> int:
        """Return the records of a dataset (0 when unknown before a download)."""
        info = self._infos[dataset]
        return self._load_info(dataset, info.groups[0])[1]

    def _sync_choices(self, initial: PanelSettings | None = None) -> list[str]:
        """Offer only the groups, models and methods that make sense; return what was switched and why."""
        notes: list[str] = []
        self._syncing = True
        try:
            info = self._infos[self.dataset.value]
            want_group = initial.group if initial is not None else self.group.value
            groups = list(info.groups)
            self.group.options = groups
            self.group.value = want_group if want_group in groups else groups[0]

            models = [c for c in _MODEL_CHOICES if c[1] != "cnn" or info.modality == "image"]
            self._offer("model", models, initial.model if initial is not None else self.model.value,
                        ("mlp", "the MLP"), notes)

            single = self._n_groups(self.dataset.value, self.group.value) < 2
            methods = [c for c in METHOD_CHOICES if not (single and c[1] in _GROUP_METHODS)]
            self._offer("method", methods, initial.method if initial is not None else self.method.value,
                        ("dpsgd", "DP-SGD"), notes)
        finally:
            self._syncing = False
        return notes

    def _classroom_values(self, dataset: str) -> dict[str, Any] | None:
        """Return the values of :data:`CLASSROOM_FIELDS` at a dataset's classroom defaults, fitted to it.

        None when the dataset's size is unknown (not downloaded yet).
        """
        total = self._sizes_for(dataset)
        if not total:
            return None
        s = replace(default_settings(self._device, dataset=dataset), chunk_models=self._chunk_models,
                    game=self.game.value)
        fitted, _ = fit_sizes(s, total, generated=self._infos[dataset].generated)
        return {name: (getattr(fitted, name) or 0) if name == "n" else getattr(fitted, name) for name in CLASSROOM_FIELDS}

    def _fit_sizes(self, old_dataset: str | None) -> list[str]:
        """After a dataset change, move the settings to the new dataset's and reset what no longer fits.

        A control of :data:`CLASSROOM_FIELDS` the student has not set moves to the new
        dataset's classroom default (``synthetic`` generates more records than Adult's
        classroom subsample, with its own ε and C); one the student set stays, unless it does
        not fit. Returns what changed and why.
        """
        dataset = self.dataset.value
        total = self._sizes_for(dataset)
        if not total:
            return []
        notes: list[str] = []
        new = self._classroom_values(dataset) or {}
        moved = []
        self._syncing = True
        try:
            for name in CLASSROOM_FIELDS:
                w = getattr(self, name)
                if name in new and name not in self._touched and w.value != new[name]:
                    moved.append(f"{w.description.split(' (')[0]} {_shown(w.value)} → {_shown(new[name])}")
                    if name == "epsilon" and new[name] not in [o[1] for o in w.options]:
                        w.options = _grid(tuple(o[1] for o in w.options), new[name])
                    w.value = new[name]
            if int(self.n.value) == 0 and old_dataset is not None and "n" in self._touched:
                # the student's "all" of the old dataset, in records
                self.n.value = self._sizes_for(old_dataset) or 0
        finally:
            self._syncing = False
        if moved:
            notes.append(f"Classroom settings of {dataset!r}: " + ", ".join(moved) + ".")
        fitted, fit_notes = fit_sizes(self.settings, total, generated=self._infos[dataset].generated)
        notes += fit_notes
        self._syncing = True
        try:
            for name in ("m", "batch_size"):
                getattr(self, name).value = getattr(fitted, name)
            self.n.value = fitted.n or 0
        finally:
            self._syncing = False
        return notes

    def _track_student_settings(self) -> None:
        """Start tracking which classroom controls the student set: those the panel opened off their defaults."""
        default = self._classroom_values(self.dataset.value) or {}
        self._touched = {name for name in CLASSROOM_FIELDS if getattr(self, name).value != default.get(name)}

    def _refresh_state(self) -> None:
        """Enable exactly the controls the chosen method uses, and say why others are off."""
        method = self.method.value.split(":")[0]
        private = method != "sgd"
        self.privacy.disabled = not private
        self.epsilon.disabled = not private or self.privacy.value != "epsilon"
        self.sigma.disabled = not private or self.privacy.value != "sigma"
        self.clip.disabled = not private
        self.tau.disabled = self.stat_noise_ratio.disabled = method != "dpsgds"
        self.m.disabled = self.game.value != "aloo"
        if not private:
            self.privacy_note.value = ("<i>Plain SGD has no privacy budget (ε = ∞): ε, σ and C are off. "
                                       "Choose a DP method to use them.</i>")
        elif method != "dpsgds":
            self.privacy_note.value = "<i>τ and the statistic noise apply to DP-SGD-S only.</i>"
        else:
            self.privacy_note.value = ""

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self._touched.update(name for name in CLASSROOM_FIELDS if change["owner"] is getattr(self, name))
        notes = self._sync_choices() if change["owner"] in (self.dataset, self.group) else []
        if change["owner"] is self.dataset:
            notes += self._fit_sizes(change.get("old"))
        self._refresh_state()
        prefix = "".join(f"{_esc(n)}<br>" for n in notes)
        try:
            config = self.settings.to_config()
        except FairPrivError as err:
            self._say("error", prefix + f"These settings cannot run: {_esc(str(err))}")
            self._mark_stale()
            return
        self._update_plan()
        hit = self._memo.get(config.digest)
        job = self._job
        if job is not None and not job.done.is_set() and job.thread is not None:
            # A run is in progress on a thread: cancel it and start the new settings.
            self._say("info", prefix + "Settings changed during the run: cancelled it, starting the new one …")
            self.start()
            return
        if hit is not None:
            self._show_final(hit, source="memo")
            self._say("ok", prefix + "Shown from memory (these settings were run before)." + hit[1])
        else:
            self._mark_stale()
            self._say("warn" if notes else "info", prefix + "Settings changed: press <b>Run audit</b> to update.")

    # ------------------------------------------------------------ planning
    def _update_plan(self) -> None:
        """Show what the current sizes can resolve (the precision planner), before any run."""
        from ..experiment.precision import precision

        try:
            config = self.settings.to_config()
            pilot = self._pilot_for(config)
            with warnings.catch_warnings():
                # data warnings (a single group, small groups) are the run's to report
                warnings.simplefilter("ignore", UserWarning)
                plan = precision(config, pilot=pilot, auditor=self.auditor)
        except (FairPrivError, OSError) as err:
            self.plan.value = f'<div style="color:#777; max-width:420px"><i>No precision plan: {_esc(str(err))}</i></div>'
            self.plan_result = None
            return
        self.plan_result = plan
        self.plan.value = f'<div style="color:#333; max-width:420px"><b>Precision:</b> {_esc(plan.text())}</div>'

    def _pilot_for(self, config: Any) -> Any:
        """Return a finished result of the same data and training (any number of models), to plan with."""
        for result, *_ in reversed(list(self._memo.values())):
            c = result.config
            if c.data == config.data and c.train == config.train and c.audit.estimator == config.audit.estimator:
                return result
        return None

    # ------------------------------------------------------------ running
    def run(self) -> bool:
        """Run (or recall) the audit of the current settings in this thread and update the outputs.

        Partial results are drawn after every chunk of models. Returns True when the outputs
        now show a result of these settings, False when the settings were refused or the run
        failed or was cancelled (the message says why; the previous result stays on screen).
        Never raises for bad settings.
        """
        job = self._new_job()
        if job is None:
            return False
        with self._lock:
            if self._job is not None and not self._job.done.is_set():
                return False
            self._job = job
        return self._execute(job)

    def start(self) -> _Job | None:
        """Start the audit of the current settings on a thread (what the Run button does).

        A run already in progress is cancelled first (it stops at its next training step;
        the chunks it finished stay cached). Returns the job (``job.done`` is set when it
        ends) or None when the settings were refused.
        """
        job = self._new_job()
        if job is None:
            return None
        with self._lock:
            old = self._job
            if old is not None and not old.done.is_set():
                old.cancelled.set()
                job.replaced = old.config.label
                self.history.append(f"cancel {old.config.label}")
            self._job = job

        def work() -> None:
            if old is not None and old.thread is not None and old.thread is not threading.current_thread():
                old.thread.join()
            if not job.cancelled.is_set():
                self._execute(job)
            job.done.set()

        job.thread = threading.Thread(target=work, name="fairpriv-panel-run", daemon=True)
        job.thread.start()
        return job

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run started last; True when it finished with a result on screen."""
        job = self._job
        if job is None:
            return self.result is not None
        job.done.wait(timeout)
        return job.done.is_set() and job.ok

    def _new_job(self) -> _Job | None:
        try:
            settings = self.settings
            config = settings.to_config()
        except FairPrivError as err:
            self._say("error", f"These settings cannot run: {_esc(str(err))}")
            return None
        return _Job(settings, config)

    def _execute(self, job: _Job) -> bool:
        config = job.config
        try:
            hit = self._memo.get(config.digest)
            if hit is not None:
                self._show_final(hit, source="memo")
                self._say("ok", "Shown from memory (these settings were run before)." + hit[1])
                job.ok = True
                return True
            self.history.append(f"start {config.label}")
            self.progress.value = 0.0
            self.progress.bar_style = "info"
            self.progress_text.value = ""
            self._say("info", f"Running {html.escape(config.label)}, {config.game.n_models} models …")
            try:
                with warnings.catch_warnings(record=True) as caught:
                    # Data and privacy warnings (small groups, delta >= 1/n) belong in the panel.
                    warnings.simplefilter("always", UserWarning)
                    result = self._call_runner(job)
            except RunCancelled:
                self.history.append(f"cancelled {config.label}")
                self.progress.bar_style = "warning"
                if self._job is job:
                    self._say("warn", "Run cancelled; the previous result is kept.")
                return False
            except Exception as err:  # noqa: BLE001 - shown in the panel, never as a traceback
                self.last_error = err
                self.progress.bar_style = "danger"
                kind = "" if isinstance(err, FairPrivError) else f"{type(err).__name__}: "
                self._say("error", f"The run failed and the previous result is kept. {_esc(kind + str(err))}")
                self._restore_final()
                return False
            seconds = time.perf_counter() - job.t0
            notes = _warning_notes(caught)
            entry = (result, notes, seconds, job.settings)
            self._memo[config.digest] = entry
            self.history.append(f"done {config.label}")
            if job.cancelled.is_set():
                return False  # kept in memory; the newer run draws its own result
            self.progress.value = 1.0
            self.progress.bar_style = "success"
            self.progress_text.value = (f"<span style='color:#555'>{config.game.n_models} of "
                                        f"{config.game.n_models} models · done in {seconds:.1f} s</span>")
            self._show_final(entry, source="computed")
            restarted = (f" (restarted after a change during the run of {_esc(job.replaced)}, "
                         "which was cancelled)") if job.replaced else ""
            self._say("ok", f"Done in {seconds:.1f} s{restarted}." + notes)
            self._update_plan()
            job.ok = True
            return True
        finally:
            if self._job is job:
                job.done.set()

    def _call_runner(self, job: _Job) -> Any:
        runner = self._runner
        if runner is None:
            from ..experiment.runner import run as runner

        def check() -> None:
            if job.cancelled.is_set():
                raise RunCancelled(job.config.label)

        last = [0.0]

        def progress(*args: Any, **kwargs: Any) -> None:
            check()
            frac = _progress_fraction(args, kwargs)
            now = time.perf_counter()
            # the engine reports every step: redraw the bar at most five times a second
            if frac is not None and (now - last[0] >= 0.2 or frac >= 0.9):
                last[0] = now
                self.progress.value = max(0.0, min(1.0, frac))
                self.progress_text.value = _progress_line(args, kwargs, frac, now - job.t0)

        def on_chunk(partial: Any) -> None:
            check()
            self._show_partial(partial, job)

        try:
            params = inspect.signature(runner).parameters
        except (TypeError, ValueError):
            params = {}
        kwargs = {k: v for k, v in (("progress", progress), ("on_chunk", on_chunk)) if k in params}
        return runner(job.config, **kwargs)

    # ------------------------------------------------------------ output
    def _say(self, level: str, text: str) -> None:
        colours = {"ok": "#1b7f3b", "info": "#333333", "warn": "#9a6700", "error": "#b00020"}
        self.message.value = f'<div style="color:{colours[level]}; max-width:420px">{text}</div>'

    def _show_if_cached(self) -> None:
        """Show the initial settings' result at once when the disk cache holds all of it."""
        if self._runner is not None:
            return
        from ..experiment.runner import is_cached

        try:
            config = self.settings.to_config()
            cached = is_cached(config)
        except (FairPrivError, OSError):
            return
        if cached:
            self.run()
            self._say("ok", "Opened on a cached result of these settings; change a control and press "
                            "<b>Run audit</b> to explore.")

    def _mark_stale(self) -> None:
        """Grey the results when the controls no longer show the settings they were computed with."""
        try:
            digest = self.settings.to_config().digest
        except FairPrivError:
            digest = None
        stale = self._shown_digest is not None and digest != self._shown_digest
        if stale:
            self.results.add_class("fairpriv-stale")
        else:
            self.results.remove_class("fairpriv-stale")
        label = self._shown_text()
        if label:
            self.shown_label.value = (f"<div style='color:{'#9a6700' if stale else '#555'}'>"
                                      f"{'⟲ Showing a result of other settings: ' if stale else 'Showing: '}"
                                      f"{label}{' — press <b>Run audit</b> to replace it.' if stale else ''}</div>")

    def _shown_text(self) -> str:
        shown = self.partial if self.partial is not None else self.result
        if shown is None:
            return ""
        cfg = shown.config
        game = "half-split" if cfg.game.kind == "half" else f"{cfg.game.kind}, m={cfg.game.m}"
        n = cfg.data.n or "all"
        return _esc(f"{cfg.label}, n={n}, {cfg.train.epochs} epochs, lr={cfg.train.lr:g}, "
                    f"{cfg.game.n_models} models ({game}), seed {cfg.seed}")

    def _restore_final(self) -> None:
        """After a failed or cancelled run, redraw the last finished result (if a partial replaced it)."""
        if self.partial is not None:
            self.partial = None
            if self.result is not None:
                entry = self._memo.get(self.result.config.digest)
                if entry is not None:
                    self._draw(entry[0], previous=self.previous)
            self._mark_stale()

    def _show_partial(self, partial: Any, job: _Job) -> None:
        with self._lock:
            if job.cancelled.is_set() or self._job is not job:
                return
            self.partial = partial
            self.history.append(f"partial {partial.models_done}/{partial.n_models}")
            self._draw(partial, previous=self.result, partial=True)
            self.last_source = "partial"
            self._shown_digest = partial.config.digest
            self._mark_stale()

    def _show_final(self, entry: tuple[Any, ...], *, source: str) -> None:
        result, _notes, seconds, _settings = entry
        with self._lock:
            if self.result is not None and self.result is not result:
                self.previous = self.result
            self.result = result
            self.partial = None
            self.last_source = source
            self.last_seconds = seconds if source == "computed" else 0.0
            self._draw(result, previous=self.previous)
            self._shown_digest = result.config.digest
            self._mark_stale()
            when = "" if source == "computed" else " (computed earlier; shown from memory)"
            self.timing.value = f"<div style='color:#555'>Done in {seconds:.1f} s{when}: the result on screen.</div>"

    def _draw(self, result: Any, *, previous: Any, partial: bool = False) -> None:
        from ..experiment.precision import group_change

        prev_ok = previous is not None and previous is not result and _same_groups(previous, result)
        change = None
        if prev_ok and _has_risk(previous, self.auditor) and _has_risk(result, self.auditor):
            change = group_change(_risk_of(previous, self.auditor), _risk_of(result, self.auditor),
                                  n_boot=500, seed=0)
        if not partial:
            self.change = change
        key = (id(result), id(previous) if prev_ok else 0)
        if key not in self._rendered:
            self._rendered[key] = self._render(result, previous if prev_ok else None, change, partial)
        table, changes, specs, outputs = self._rendered[key]
        self.table.value = table
        self.change_table.value = changes
        self.last_chart_specs = specs
        self.last_chart_spec = specs["gpr"]
        self.charts.outputs = outputs

    def _y_domain(self, result: Any, previous: Any) -> tuple[float, float]:
        """Return a y range that only grows for a dataset and group attribute: bars compare across runs."""
        cfg = result.config
        key = (cfg.data.name, cfg.data.resolved_group)
        lo, hi = self._domains.get(key, (0.0, 1.0))
        for r in (result, previous):
            if r is None or not _has_risk(r, self.auditor):
                continue
            bg = _risk_of(r, self.auditor).by_group
            vals = np.concatenate([bg[c].to_numpy(float) for c in ("gpr", "ci_low", "ci_high", "floor")])
            vals = vals[np.isfinite(vals)]
            if vals.size:
                lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
        lo, hi = _nice(lo, floor=True), _nice(hi, floor=False)
        self._domains[key] = (lo, hi)
        return lo, hi

    def _render(self, result: Any, previous: Any, change: Any,
                partial: bool) -> tuple[str, str, dict[str, Any], tuple[Any, ...]]:
        """Table and change HTML, chart specs and Output entries of a result (memoised with it)."""
        from .. import viz

        order = list(getattr(result, "group_names", ())) or None
        risk = _risk_of(result, self.auditor)
        dom = self._y_domain(result, previous)
        title = "Group privacy risk (GPR) by group"
        if partial:
            title += f" — {result.models_done} of {result.n_models} models so far"
        gpr = viz.gpr_chart(risk, group_order=order, title=title)
        prev_risk = _risk_of(previous, self.auditor) if previous is not None and _has_risk(previous, self.auditor) else None
        charts = {"gpr": _with_ghost(gpr, prev_risk, order, dom, _label_of(previous))}
        others = {a: _risk_of(result, a) for a in DEFAULT_AUDITORS if _has_risk(result, a)}
        if len(others) > 1:
            charts["auditors"] = viz.auditors_side_by_side(others, group_order=order)
        # One to_dict per chart. Schema validation is most of a redraw's cost, and its outcome
        # depends on a spec's structure, not on its numbers or its data: a final chart is
        # validated the first time its shape (chart_shape) is seen in this process.
        specs = {k: _spec_of(c, validate=not partial) for k, c in charts.items()}
        outputs = tuple(_display_output(spec) for spec in specs.values())
        table = result_table_html(result, auditor=self.auditor)
        changes = change_table_html(change, previous_label=_label_of(previous))
        return table, changes, specs, outputs


#: Shapes of the chart specs validated against the Vega-Lite schema in this process.
_VALIDATED_SHAPES: set[str] = set()


def chart_shape(spec: Any) -> str:
    """Return a spec's structure: its keys, strings and booleans, without numbers or inline data.

    Two specs of one shape validate alike: numbers only meet schema checks of their type,
    and the ``datasets`` (the rows) and the data names made from their hash are left out.
    """
    import json

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: ("data-*" if k == "name" and isinstance(v, str) and v.startswith("data-") else strip(v))
                    for k, v in x.items() if k != "datasets"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return 0
        return x

    return json.dumps(strip(spec), sort_keys=True, default=str)


def _spec_of(chart: Any, *, validate: bool) -> dict[str, Any]:
    """Return ``chart.to_dict()``, schema-validated once per :func:`chart_shape` when ``validate``.

    Converted by :func:`~fairpriv_lab.viz.spec_dict` (altair's spec, fewer copies).
    """
    from ..viz import spec_dict

    spec = spec_dict(chart)
    if validate:
        shape = chart_shape(spec)
        if shape not in _VALIDATED_SHAPES:
            spec = spec_dict(chart, validate=True)  # raises on an invalid spec
            _VALIDATED_SHAPES.add(shape)
    return spec


def build_panel(**defaults: Any) -> AuditPanel:
    """Return an :class:`AuditPanel` whose controls start at :func:`default_settings` plus defaults.

    For backward compatibility, passing ``m`` without ``game`` selects the ALOOA game (``m``
    only means something there) with the library's ``chunk_models``, as notebooks written
    for the earlier default expect (their ``run(config)`` result is then the panel's first).

    Examples
    --------
    >>> panel = build_panel(dataset="adult", group="race", method="dpsgd")   # doctest: +SKIP
    >>> panel                                                               # doctest: +SKIP
    """
    options = {k: defaults.pop(k) for k in ("datasets", "auditor", "runner", "show_cached") if k in defaults}
    device = defaults.pop("device", "auto")
    if defaults.get("m") is not None and "game" not in defaults:
        # an ALOOA-era call (notebooks 00 and 03): the library's game and chunking, so that
        # the panel's first run is the notebook's own run, served from the cache
        defaults["game"] = "aloo"
        defaults.setdefault("chunk_models", default_of("chunk_models"))
    return AuditPanel(default_settings(device, **defaults), **options)


# ---------------------------------------------------------------- helpers
def _progress_fraction(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
    """Fraction done from ``experiment.run``'s ``progress(stage, done, total)``.

    Training ("train") fills the bar to 90 %, the audit ("audit") the rest.
    """
    stage = None
    if args and isinstance(args[0], str):
        stage, args = args[0], args[1:]
    done, total = (args + (None, None))[:2] if len(args) < 2 else args[:2]
    done = kwargs.get("done", done)
    total = kwargs.get("total", total)
    if not isinstance(done, int | float) or not isinstance(total, int | float) or not total:
        return None
    frac = min(1.0, max(0.0, float(done) / float(total)))
    if stage == "audit":
        return 0.9 + 0.1 * frac
    return 0.9 * frac


def _progress_line(args: tuple[Any, ...], kwargs: dict[str, Any], frac: float, elapsed: float) -> str:
    """Return the progress line, e.g. "64 of 128 models · 1.2 s elapsed · about 1.3 s left"."""
    stage = args[0] if args and isinstance(args[0], str) else kwargs.get("stage")
    rest = args[1:] if stage is not None and args else args
    what = ""
    if stage == "train" and len(rest) >= 2:
        what = f"{int(rest[0])} of {int(rest[1])} models · "
    elif stage == "audit":
        what = "auditing · "
    eta = f" · about {elapsed * (1 - frac) / frac:.1f} s left" if frac > 0.02 else ""
    return f"<span style='color:#555'>{what}{elapsed:.1f} s elapsed{eta}</span>"


def _nice(x: float, *, floor: bool) -> float:
    """Round x outward to a step of 0.5 or 1 pp (a stable axis end)."""
    step = 0.5 if abs(x) < 5 else 1.0
    return (math.floor if floor else math.ceil)(x / step) * step


def _same_groups(a: Any, b: Any) -> bool:
    return tuple(getattr(a, "group_names", ())) == tuple(getattr(b, "group_names", ()))


def _label_of(result: Any) -> str:
    return "" if result is None else str(result.config.label)


def _with_ghost(chart: Any, previous: Any, order: list[str] | None, dom: tuple[float, float], label: str) -> Any:
    """Put the GPR chart on a fixed y range, with the previous run's bars as dashed outlines."""
    from ..viz import altair

    alt = altair()
    scale = alt.Scale(domain=list(dom), nice=False)
    for layer in chart.layer:
        y = layer.encoding.y if layer.encoding is not alt.Undefined else alt.Undefined
        if y is not alt.Undefined:
            y.scale = scale
    if previous is not None:
        frame = previous.by_group[["group", "gpr"]].dropna()
        ghost = (alt.Chart(frame).mark_bar(fillOpacity=0.0, stroke="#777777", strokeDash=[4, 3], strokeWidth=1.5)
                 .encode(x=alt.X("group:N", sort=order, title="Group"),
                         y=alt.Y("gpr:Q", scale=scale, title="GPR (percentage points)"),
                         tooltip=[alt.Tooltip("group:N", title="Group"),
                                  alt.Tooltip("gpr:Q", title="previous GPR (pp)", format=".2f")]))
        chart.layer = [*chart.layer, ghost]
        title = chart.title
        sub = list(title.subtitle) if title is not alt.Undefined and title.subtitle is not alt.Undefined else []
        sub.append(f"dashed outlines: previous run ({label})")
        if title is not alt.Undefined:
            title.subtitle = sub
    return chart


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _shown(value: Any) -> str:
    """Return a size control's value as shown in a sentence: 4,000; all (records 0); 0.3."""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}" if value else "all"
    return f"{value:g}"


def _warning_notes(caught: list[Any]) -> str:
    """HTML lines for the distinct user warnings of a run (e.g. SmallGroupWarning)."""
    seen: dict[str, str] = {}
    for w in caught:
        if issubclass(w.category, UserWarning):
            seen.setdefault(f"{w.category.__name__}: {w.message}", "")
    return "".join(f"<br>⚠ {_esc(text)}" for text in seen)


def _has_risk(result: Any, auditor: str) -> bool:
    return auditor in getattr(result, "group_risk", {})


def _risk_of(result: Any, auditor: str) -> Any:
    risks = getattr(result, "group_risk", None)
    if risks is None or auditor not in risks:
        raise V.fail("auditor", auditor, "to be one of the result's auditors " + ", ".join(risks or ()))
    return risks[auditor]


def _display_output(chart: Any) -> dict[str, Any]:
    """Return an Output-widget display entry for a chart (or its spec) that draws with no internet.

    The front end's own Vega draws it (JupyterLab, Voilà); on Colab the JavaScript is inlined.
    Never altair's active renderer, whose default loads Vega from a CDN. No PNG: an Output
    widget's outputs are models, to which the front end's renderer adds one itself
    (``viz.chart_mimebundle``), and each run of the panel is spared a render per chart.
    """
    from ..viz import chart_mimebundle

    data, meta = chart_mimebundle(chart, "interactive", inline_js="google.colab" in sys.modules, png=False)
    return {"output_type": "display_data", "data": data, "metadata": dict(meta)}


def _fmt_ci(lo: float, hi: float) -> str:
    return f"[{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else "n/a"


def result_table_html(result: Any, *, auditor: str = "PA-ALOOA") -> str:
    """Return an HTML table of GPR by group (pp, with CI and floor), GPRP beside its floor, accuracy and ε.

    A partial result (models still training) is labelled as such.
    """
    risk = _risk_of(result, auditor)
    frame = risk.by_group
    rows = []
    for rec in frame.itertuples(index=False):
        rows.append(
            f"<tr><td>{html.escape(str(rec.group))}</td><td>{int(rec.n)}</td>"
            f"<td><b>{rec.gpr:.2f}</b></td><td>{_fmt_ci(rec.ci_low, rec.ci_high)}</td>"
            f"<td>{rec.floor:.2f}</td></tr>"
        )
    lo, hi = risk.difference_ci()
    floor_gprp = risk.difference_floor()
    floor_ci = getattr(risk, "difference_floor_ci", None)
    floor_txt = f"{floor_gprp:.2f} pp"
    if callable(floor_ci):
        flo, fhi = floor_ci()
        floor_txt += f" {_fmt_ci(flo, fhi)}"
    diff, dlo, dhi = risk.signed_difference()
    signed = ("" if not math.isfinite(diff) else
              f" · {html.escape(str(risk.minority))} − other group = <b>{diff:+.2f} pp</b> "
              f"(95% CI [{dlo:.2f}, {dhi:.2f}])")
    eps = getattr(result, "epsilon", math.inf)
    eps_txt = "∞ (no privacy)" if not math.isfinite(eps) else f"{eps:.2f}"
    if math.isfinite(eps) and getattr(result, "private", True) is False:
        eps_txt += " — NOT PRIVATE as released (un-noised diagnostics on)"
    acc = getattr(result, "accuracy", math.nan)
    acc_txt = "n/a" if not math.isfinite(acc) else f"{100 * float(acc):.1f} %"
    head = ("<tr><th>group</th><th>n</th><th>GPR (pp)</th><th>95% CI</th>"
            "<th>floor (pp)</th></tr>")
    game = getattr(getattr(result, "config", None), "game", None)
    who = f"{html.escape(auditor)} group privacy risk"
    if game is not None and game.kind == "half":
        who = "Group privacy risk (per-record audit of the half-split game, every training record)"
    done = getattr(result, "models_done", None)
    status = (f"<div style='color:#9a6700'><b>{done} of {result.n_models} models</b> so far — the intervals "
              "narrow as the run continues.</div>") if done is not None else ""
    return (
        f"<div><b>{who}</b>{status}"
        f"<table style='border-collapse:collapse' border='1' cellpadding='4'>{head}{''.join(rows)}</table>"
        f"<div>GPRP = <b>{risk.difference():.2f} pp</b> (95% CI {_fmt_ci(lo, hi)}) · zero-leakage GPRP "
        f"(the same max − min on the floor) {floor_txt}{signed} · test accuracy {acc_txt} · ε = {eps_txt}</div></div>"
    )


def change_table_html(change: Any, *, previous_label: str = "") -> str:
    """Return an HTML table of each group's signed GPR change (now − before, pp) with its CI and verdict.

    ``change`` is :func:`fairpriv_lab.precision.group_change`'s frame; "lower"/"higher" only
    when the interval excludes 0.
    """
    out = ""
    if change is not None and len(change):
        crow = []
        for rec in change.itertuples(index=False):
            verdict = ("lower" if rec.ci_high < 0 else "higher") if rec.excludes_zero else "no detectable change"
            colour = "#1b7f3b" if verdict == "lower" else ("#b00020" if verdict == "higher" else "#555555")
            crow.append(
                f"<tr><td>{html.escape(str(rec.group))}</td><td>{rec.before:.2f}</td><td>{rec.after:.2f}</td>"
                f"<td><b>{rec.change:+.2f}</b></td><td>{_fmt_ci(rec.ci_low, rec.ci_high)}</td>"
                f"<td style='color:{colour}'>{verdict}</td></tr>"
            )
        paired = "paired over the same records" if bool(change["paired"].all()) else "independent records"
        out += (
            f"<div style='margin-top:6px'><b>Change since the previous result</b> "
            f"({html.escape(previous_label)}; signed difference now − before, 95% CI, {paired})"
            "<table style='border-collapse:collapse' border='1' cellpadding='4'>"
            "<tr><th>group</th><th>before</th><th>now</th><th>change (pp)</th><th>95% CI</th><th></th></tr>"
            f"{''.join(crow)}</table></div>"
        )
    return out
