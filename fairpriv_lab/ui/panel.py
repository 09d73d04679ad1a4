"""Interactive audit panel: ipywidgets controls over :mod:`~fairpriv_lab.experiment` and :mod:`~fairpriv_lab.viz`.

The panel is a thin face over ``experiment.run(config)``: the controls build a
:class:`PanelSettings`, which converts to an ``ExperimentConfig``; the result's group privacy
risk (GPR, percentage points, with bootstrap CIs and the zero-leakage floor) is shown as an
HTML table and as altair charts in an ``Output`` widget, all updated in place. Taught in
notebooks 00 and 03.

Three rules keep it usable in a classroom:

- **Nothing invalid can run.** Options that make no sense are not offered (a CNN for tabular
  data, DP-SGD-S or DP-SGD-F with a single group) or are disabled (ε and σ with plain SGD;
  τ and the statistic noise unless DP-SGD-S). Anything else the configuration refuses is
  shown as a readable message in the panel, and the last good result stays on screen —
  never a traceback.
- **Seen settings show instantly.** Results are memoised in memory by configuration digest
  and, through ``experiment.run``, cached on disk; changing a control back to settings
  already computed redraws at once, without pressing Run.
- **Testable without a browser.** :meth:`AuditPanel.set` and :meth:`AuditPanel.run` are
  ordinary synchronous methods; the outputs are widget values (``table.value``,
  ``charts.outputs``, ``message.value``) and :attr:`AuditPanel.last_chart_spec`.

ipywidgets and altair are imported lazily; without them the panel raises ``ImportError`` with
:data:`MISSING_UI_MESSAGE`.
"""

from __future__ import annotations

import html
import importlib
import inspect
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from .._core import validate as V
from .._core.exceptions import FairPrivError
from .._core.vocabulary import DEFAULT_AUDITORS, GROUP_METHODS, MODEL_LABELS, Model
from ..experiment.config import default_of, schema

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
        Models trained together per cached chunk (the experiment's ``chunk_models``).

    Examples
    --------
    >>> s = PanelSettings(method="dpsgds:norm", epsilon=4.0)
    >>> s.to_config().train.method, s.to_config().train.statistic
    ('dpsgds', 'norm')
    """

    # Defaults are the schema's, except the classroom preset below (seconds per run on a CPU).
    dataset: str = default_of("data.name")
    group: str | None = default_of("data.group")
    model: Model = default_of("train.model")
    method: str = default_of("train.method")
    privacy: Literal["epsilon", "sigma"] = "epsilon"
    epsilon: float = 8.0
    sigma: float = 1.0
    clip: float = default_of("train.clip")
    tau: float = default_of("train.tau")
    stat_noise_ratio: float = 1.0
    epochs: int = 15
    batch_size: int = default_of("train.batch_size")
    lr: float = 0.3
    n_models: int = 16
    n: int | None = 2000
    m: int = 200
    seed: int = default_of("seed")
    device: str = default_of("device")
    chunk_models: int = default_of("chunk_models")

    def __post_init__(self) -> None:
        V.choice("method", self.method, _METHOD_VALUES)
        V.choice("privacy", self.privacy, ("epsilon", "sigma"))
        fields = schema()
        for name, key in PANEL_FIELDS.items():
            fields[key].check(name, getattr(self, name))
        if self.m is None:
            raise V.fail("m", None, "to be an integer >= 2 (the panel plays the ALOOA game)")

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
            game={"kind": "aloo", "n_models": self.n_models, "m": self.m},
            audit={"auditors": DEFAULT_AUDITORS},
            seed=self.seed, device=self.device,
            chunk_models=self.chunk_models,
        )


def default_settings(device: str = "auto", **overrides: Any) -> PanelSettings:
    """Return settings that give an updated chart in seconds, scaled up on a GPU.

    On a CPU: 2,000 Adult records, 16 models, 200 audited records, 15 epochs of batches of
    256 (about 6 s of single-core CPU time for DP-SGD; ``benchmarks/bench_widgets.py``). On a
    CUDA GPU: all 45,222 records, 128 models, 1,000 audited records, batches of 512 (still
    seconds, since every model of the game trains at once).
    """
    from ..engine.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        base = PanelSettings(n=None, n_models=128, m=1000, batch_size=512, device=device, chunk_models=128)
    else:
        base = PanelSettings(device=device)
    return replace(base, **overrides)


# ---------------------------------------------------------------- the panel
EPSILON_STEPS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 16.0, 20.0, 32.0, 50.0, 100.0)
RATIO_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0)


def _grid(steps: tuple[float, ...], value: float) -> list[tuple[str, float]]:
    """Slider options (label, value) over steps, with value itself included."""
    values = sorted(set(steps) | {float(value)})
    return [(f"{v:g}", v) for v in values]


class AuditPanel:
    """A widget panel that runs an audit and shows GPR by group as a table and charts.

    Parameters
    ----------
    settings : PanelSettings, optional
        Initial control values (:func:`default_settings` when None).
    datasets : sequence of str, optional
        Datasets offered; the offline ones of :func:`fairpriv_lab.list_datasets` by default.
    auditor : str
        Whose GPR the table and the first chart show (``"PA-ALOOA"``).
    runner : callable, optional
        ``runner(config, progress=callback) -> AuditResult``; ``experiment.run`` by default
        (which also caches on disk).

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole panel (displaying the panel displays it).
    table, message : ipywidgets.HTML
        The GPR table and the status line.
    charts : ipywidgets.Output
        The charts of the last good result.
    progress : ipywidgets.FloatProgress
    result : AuditResult or None
        The last good result.
    last_chart_spec : dict or None
        ``to_dict()`` of the last GPR chart shown (for tests and exports).
    last_source : str
        ``"memo"``, ``"computed"`` or ``""``: where the result on screen came from.

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
        self._rendered: dict[int, Any] = {}
        self._group_counts: dict[tuple[str, str], int] = {}
        self._busy = False
        self._syncing = False
        self.result: Any = None
        self.last_chart_spec: dict[str, Any] | None = None
        self.last_chart_specs: dict[str, dict[str, Any]] = {}
        self.last_source = ""
        self.last_seconds = math.nan
        self.last_error: BaseException | None = None
        self._device, self._chunk_models = s.device, s.chunk_models

        style = {"description_width": "150px"}
        lay = W.Layout(width="420px")
        self.dataset = W.Dropdown(options=list(offered), value=s.dataset, description="Dataset", style=style, layout=lay)
        self.group = W.Dropdown(options=[], description="Group attribute", style=style, layout=lay)
        self.model = W.Dropdown(options=[], description="Model", style=style, layout=lay)
        self.method = W.Dropdown(options=list(METHOD_CHOICES), value=s.method, description="Method", style=style, layout=lay)
        self.privacy = W.ToggleButtons(options=[("target ε", "epsilon"), ("noise σ", "sigma")], value=s.privacy,
                                       description="Privacy by", style=style)
        # Choice sliders, not log sliders: a log slider snaps 8.0 to 7.94, so the first run's
        # settings (and cache key) silently differed from the ones the panel was given.
        self.epsilon = W.SelectionSlider(options=_grid(EPSILON_STEPS, s.epsilon), value=s.epsilon,
                                         description="ε (target)", style=style, layout=lay)
        self.sigma = W.FloatSlider(value=s.sigma, min=0.2, max=5.0, step=0.05, description="σ (noise multiplier)",
                                   style=style, layout=lay)
        self.clip = W.FloatLogSlider(value=s.clip, base=10, min=-2, max=1, step=0.05, description="C (clipping bound)",
                                     style=style, layout=lay, readout_format=".3f")
        self.tau = W.FloatSlider(value=s.tau, min=1.0, max=5.0, step=0.1, description="τ (DP-SGD-S cap)",
                                 style=style, layout=lay)
        self.stat_noise_ratio = W.SelectionSlider(options=_grid(RATIO_STEPS, s.stat_noise_ratio),
                                                  value=s.stat_noise_ratio, description="statistic noise σ₁/σ",
                                                  style=style, layout=lay)
        self.epochs = W.IntSlider(value=s.epochs, min=1, max=max(200, s.epochs), description="Epochs", style=style, layout=lay)
        self.n_models = W.IntSlider(value=s.n_models, min=4, max=max(256, s.n_models), step=2,
                                    description="Models (pairs × 2)", style=style, layout=lay)
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
        self.message = W.HTML()
        self.table = W.HTML()
        self.charts = W.Output()

        notes = self._sync_choices(initial=s)
        controls = W.VBox([
            self.dataset, self.group, self.model, self.method, self.privacy, self.epsilon, self.sigma,
            self.privacy_note, self.clip, self.tau, self.stat_noise_ratio, self.epochs, self.n_models,
        ])
        sizes = W.Accordion(children=[W.VBox([self.batch_size, self.lr, self.n, self.m, self.seed])],
                            titles=("Training, sizes and seed",))
        sizes.selected_index = None
        # Fixed-width controls, flexible results: without these flex settings Voila gives the
        # controls zero width beside an Output widget (voila-dashboards/voila#1529).
        left = W.VBox([controls, sizes, W.HBox([self.run_button, self.progress]), self.message],
                      layout=W.Layout(flex="0 0 auto"))
        right = W.VBox([self.table, self.charts], layout=W.Layout(flex="1 1 auto", min_width="0"))
        self.widget = W.HBox([left, right])

        self.run_button.on_click(lambda _b: self.run())
        for w in self._controls():
            w.observe(self._on_change, names="value")
        self._refresh_state()
        self._say("warn" if notes else "info",
                  "".join(f"{_esc(n)}<br>" for n in notes) + "Press <b>Run audit</b> to start.")

    # ------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _controls(self) -> list[Any]:
        return [self.dataset, self.group, self.model, self.method, self.privacy, self.epsilon, self.sigma,
                self.clip, self.tau, self.stat_noise_ratio, self.epochs, self.n_models, self.batch_size, self.lr,
                self.n, self.m, self.seed]

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
            chunk_models=self._chunk_models,
        )

    def set(self, **values: Any) -> None:
        """Set controls by :class:`PanelSettings` field name, as a student would, in order given.

        Unknown names raise ConfigError; a value a control does not offer (``model="cnn"``
        for Adult) leaves the control unchanged and explains why in :attr:`message`.
        """
        fields = set(asdict(PanelSettings()))
        for name, value in values.items():
            if name not in fields or name in ("device", "chunk_models"):
                raise V.fail("setting", name, "to be one of " + ", ".join(sorted(fields - {"device", "chunk_models"})))
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

    def _why_not_offered(self, name: str, value: Any) -> str:
        ds = self.dataset.value
        if name == "model" and value == "cnn":
            return f"A CNN needs image data; {ds!r} is tabular. Choose an MLP or logistic regression, or the digits dataset."
        if name == "method" and value in _GROUP_METHODS:
            return (f"{dict((v, k) for k, v in METHOD_CHOICES)[value]} sets one clipping bound per group, but "
                    f"{ds!r} grouped by {self.group.value!r} has a single group; use DP-SGD.")
        return f"{value!r} is not offered for {name} here."

    def _n_groups(self, dataset: str, group: str) -> int:
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
            except (FairPrivError, OSError):
                self._group_counts[key] = 2  # cannot tell before download; the run will explain
        return self._group_counts[key]

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
            want_model = initial.model if initial is not None else self.model.value
            self.model.options = models
            if want_model in [v for _, v in models]:
                self.model.value = want_model
            else:
                self.model.value = "mlp"
                notes.append(self._why_not_offered("model", want_model) + " Switched to the MLP.")

            single = self._n_groups(self.dataset.value, self.group.value) < 2
            methods = [c for c in METHOD_CHOICES if not (single and c[1] in _GROUP_METHODS)]
            want_method = initial.method if initial is not None else self.method.value
            self.method.options = methods
            if want_method in [v for _, v in methods]:
                self.method.value = want_method
            else:
                self.method.value = "dpsgd"
                notes.append(self._why_not_offered("method", want_method) + " Switched to DP-SGD.")
        finally:
            self._syncing = False
        return notes

    def _refresh_state(self) -> None:
        """Enable exactly the controls the chosen method uses, and say why others are off."""
        method = self.method.value.split(":")[0]
        private = method != "sgd"
        self.privacy.disabled = not private
        self.epsilon.disabled = not private or self.privacy.value != "epsilon"
        self.sigma.disabled = not private or self.privacy.value != "sigma"
        self.clip.disabled = not private
        self.tau.disabled = self.stat_noise_ratio.disabled = method != "dpsgds"
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
        notes = self._sync_choices() if change["owner"] in (self.dataset, self.group) else []
        self._refresh_state()
        prefix = "".join(f"{_esc(n)}<br>" for n in notes)
        try:
            config = self.settings.to_config()
        except FairPrivError as err:
            self._say("error", prefix + f"These settings cannot run: {_esc(str(err))}")
            return
        hit = self._memo.get(config.digest)
        if hit is not None:
            self._show(hit[0], source="memo", seconds=0.0)
            self._say("ok", prefix + "Shown from memory (these settings were run before)." + hit[1])
        elif not self._busy:
            self._say("warn" if notes else "info", prefix + "Settings changed: press <b>Run audit</b> to update.")

    # ------------------------------------------------------------ running
    def run(self) -> bool:
        """Run (or recall) the audit of the current settings and update the outputs.

        Returns True when the outputs now show a result of these settings, False when the
        settings were refused or the run failed (the message says why; the previous result
        stays on screen). Never raises for bad settings.
        """
        if self._busy:
            return False
        t0 = time.perf_counter()
        try:
            config = self.settings.to_config()
        except FairPrivError as err:
            self._say("error", f"These settings cannot run: {_esc(str(err))}")
            return False
        hit = self._memo.get(config.digest)
        if hit is not None:
            self._show(hit[0], source="memo", seconds=time.perf_counter() - t0)
            self._say("ok", "Shown from memory (these settings were run before)." + hit[1])
            return True
        self._busy = True
        self.run_button.disabled = True
        self.progress.value = 0.0
        self.progress.bar_style = "info"
        self._say("info", f"Running {html.escape(config.label)} …")
        try:
            with warnings.catch_warnings(record=True) as caught:
                # Data and privacy warnings (small groups, delta >= 1/n) belong in the panel.
                warnings.simplefilter("always", UserWarning)
                result = self._call_runner(config)
        except Exception as err:  # noqa: BLE001 - shown in the panel, never as a traceback
            self.last_error = err
            self.progress.bar_style = "danger"
            kind = "" if isinstance(err, FairPrivError) else f"{type(err).__name__}: "
            self._say("error", f"The run failed and the previous result is kept. {_esc(kind + str(err))}")
            return False
        finally:
            self._busy = False
            self.run_button.disabled = False
        notes = _warning_notes(caught)
        self._memo[config.digest] = (result, notes)
        self.progress.value = 1.0
        self.progress.bar_style = "success"
        seconds = time.perf_counter() - t0
        self._show(result, source="computed", seconds=seconds)
        self._say("ok", f"Done in {seconds:.1f} s." + notes)
        return True

    def _call_runner(self, config: Any) -> Any:
        runner = self._runner
        if runner is None:
            from ..experiment.runner import run as runner

        def progress(*args: Any, **kwargs: Any) -> None:
            frac = _progress_fraction(args, kwargs)
            if frac is not None:
                self.progress.value = max(0.0, min(1.0, frac))

        try:
            accepts = "progress" in inspect.signature(runner).parameters
        except (TypeError, ValueError):
            accepts = False
        return runner(config, progress=progress) if accepts else runner(config)

    # ------------------------------------------------------------ output
    def _say(self, level: str, text: str) -> None:
        colours = {"ok": "#1b7f3b", "info": "#333333", "warn": "#9a6700", "error": "#b00020"}
        self.message.value = f'<div style="color:{colours[level]}; max-width:420px">{text}</div>'

    def _show(self, result: Any, *, source: str, seconds: float) -> None:
        self.result = result
        self.last_source = source
        self.last_seconds = seconds
        key = id(result)
        if key not in self._rendered:
            self._rendered[key] = self._render(result)
        table, specs, outputs = self._rendered[key]
        self.table.value = table
        self.last_chart_specs = specs
        self.last_chart_spec = specs["gpr"]
        self.charts.outputs = outputs

    def _render(self, result: Any) -> tuple[str, dict[str, dict[str, Any]], tuple[dict[str, Any], ...]]:
        """Table HTML, chart specs and Output entries of a result (memoised with it)."""
        from .. import viz

        order = list(getattr(result, "group_names", ())) or None
        risk = _risk_of(result, self.auditor)
        charts = {"gpr": viz.gpr_chart(risk, group_order=order)}
        others = {a: _risk_of(result, a) for a in DEFAULT_AUDITORS if _has_risk(result, a)}
        if len(others) > 1:
            charts["auditors"] = viz.auditors_side_by_side(others, group_order=order)
        specs = {k: c.to_dict() for k, c in charts.items()}
        outputs = tuple(_display_output(c) for c in charts.values())
        return result_table_html(result, auditor=self.auditor), specs, outputs


def build_panel(**defaults: Any) -> AuditPanel:
    """Return an :class:`AuditPanel` whose controls start at :func:`default_settings` plus defaults.

    Examples
    --------
    >>> panel = build_panel(dataset="adult", group="race", method="dpsgd")   # doctest: +SKIP
    >>> panel                                                               # doctest: +SKIP
    """
    options = {k: defaults.pop(k) for k in ("datasets", "auditor", "runner") if k in defaults}
    device = defaults.pop("device", "auto")
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


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


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
    """Return an Output-widget display entry for a chart that draws with no internet.

    The front end's own Vega draws it (JupyterLab, Voilà); on Colab the JavaScript is inlined.
    Never altair's active renderer, whose default loads Vega from a CDN.
    """
    from ..viz import chart_mimebundle

    data, meta = chart_mimebundle(chart, "interactive", inline_js="google.colab" in sys.modules)
    return {"output_type": "display_data", "data": data, "metadata": dict(meta)}


def result_table_html(result: Any, *, auditor: str = "PA-ALOOA") -> str:
    """Return an HTML table of GPR by group (pp, with CI and floor) plus GPRP, accuracy and ε."""
    risk = _risk_of(result, auditor)
    frame = risk.by_group
    rows = []
    for rec in frame.itertuples(index=False):
        rows.append(
            f"<tr><td>{html.escape(str(rec.group))}</td><td>{int(rec.n)}</td>"
            f"<td><b>{rec.gpr:.2f}</b></td><td>[{rec.ci_low:.2f}, {rec.ci_high:.2f}]</td>"
            f"<td>{rec.floor:.2f}</td></tr>"
        )
    lo, hi = risk.difference_ci()
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
    return (
        f"<div><b>{html.escape(auditor)} group privacy risk</b>"
        f"<table style='border-collapse:collapse' border='1' cellpadding='4'>{head}{''.join(rows)}</table>"
        f"<div>GPRP = <b>{risk.difference():.2f} pp</b> (95% CI [{lo:.2f}, {hi:.2f}]; "
        f"zero-leakage floor GPRP {risk.difference_floor():.2f} pp){signed} · "
        f"test accuracy {acc_txt} · ε = {eps_txt}</div></div>"
    )
