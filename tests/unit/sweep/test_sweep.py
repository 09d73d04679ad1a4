"""Sweeps: grid parsing and validation, Dask runs with a killed worker, failures, resume, notebooks."""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest

from fairpriv_lab._core.exceptions import ConfigError
from fairpriv_lab.cli.sweep import main, notebooks_command, sweep_command
from fairpriv_lab.sweep.executor import local_cluster
from fairpriv_lab.sweep.runner import Grid, run_notebooks, run_sweep

DATA = Path(__file__).parents[2] / "data"
VOLATILE = ["seconds", "host", "gpu", "worker", "pid"]


# -- a small config schema standing in for ExperimentConfig in the parsing tests ------------


@dataclass(frozen=True)
class ToyTraining:
    epochs: int = 2
    lr: float = 0.1
    n: int = 4


@dataclass(frozen=True)
class ToyData:
    n: int | None = None
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class ToyConfig:
    dataset: Literal["adult", "digits"] = "adult"
    method: Literal["sgd", "dpsgd"] = "sgd"
    target_epsilon: float | None = None
    seed: int = 0
    layers: tuple[int, ...] = (256,)
    training: ToyTraining = field(default_factory=ToyTraining)
    data: ToyData = field(default_factory=ToyData)
    KEY_ALIASES = {"data_size": "data.n"}

    @classmethod
    def from_dict(cls, d):
        training = ToyTraining(**d.pop("training", {}))
        data = ToyData(**d.pop("data", {}))
        cfg = cls(**d, training=training, data=data)
        if cfg.method == "sgd" and cfg.target_epsilon is not None:
            raise ConfigError(f"Expected target_epsilon={cfg.target_epsilon!r} to be None for method='sgd'")
        return cfg


def parse(text: str) -> Grid:
    return Grid.from_yaml(text, config_class=ToyConfig)


def test_grid_product_extra_points_and_nested_keys():
    g = parse(
        """
base:
  dataset: digits
  training: {epochs: 3}
grid:
  method: [dpsgd]
  target_epsilon: [1, 1e-1]
  seed: [0, 1]
points:
  - {method: sgd, training.lr: 0.5}
  - {method: dpsgd, target_epsilon: 1.0, seed: 0}   # a duplicate of the first grid point
"""
    )
    pts = g.points()
    assert len(pts) == len(g) == 5
    assert pts[0] == {"dataset": "digits", "training.epochs": 3, "method": "dpsgd",
                      "target_epsilon": 1.0, "seed": 0}
    assert [p["seed"] for p in pts[:4]] == [0, 1, 0, 1]  # first axis varies slowest
    assert [p["target_epsilon"] for p in pts[:4]] == [1.0, 1.0, 0.1, 0.1]  # "1e-1" read as float
    assert isinstance(pts[0]["target_epsilon"], float)
    assert pts[4] == {"dataset": "digits", "training.epochs": 3, "method": "sgd", "training.lr": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grid: {methd: [sgd]}", "Unknown key 'methd' in YAML text: grid; valid keys are: dataset, "
                                 "method, target_epsilon, seed, layers, training.epochs, training.lr, "
                                 "training.n, data.n, data.options (or a unique last part such as 'epochs' for "
                                 "'training.epochs', 'data_size' for 'data.n')"),
        ("grid: {method: []}", "Expected grid.method in YAML text to be a non-empty list"),
        ("grid: {method: sgd}", "Expected grid.method='sgd' in YAML text to be a list of values"),
        ("grid: {seed: [0, 1.5]}", "Expected seed=1.5 in YAML text: grid to be an integer, got float"),
        ("grid: {seed: [true]}", "Expected seed=True in YAML text: grid to be an integer, got bool"),
        ("grid: {method: [sgd, adam]}", "Expected method='adam' in YAML text: grid to be one of 'sgd', 'dpsgd'"),
        ("base: {training: {epochs: two}}\ngrid: {seed: [0]}",
         "Expected training.epochs='two' in YAML text: base to be an integer, got str"),
        ("grid: {target_epsilon: [abc]}",
         "Expected target_epsilon='abc' in YAML text: grid to be a number or null, got str"),
        ("grid: {layers: [[64, x]]}",
         "Expected layers=[64, 'x'] in YAML text: grid to be a list whose items are each an integer"),
        ("grid: {seed: [0]}\nsweep: {}", "Unknown section(s) sweep in YAML text; valid sections are: base, grid, points"),
        ("base: {seed: 1}\ngrid: {seed: [0]}", "Key 'seed' is in both base and grid of YAML text"),
        ("base: {seed: 1}", "YAML text defines no points"),
        ("points: [3]", "Expected points[0]=3 in YAML text to be a mapping"),
        ("grid: {method: [sgd]}\nbase: {target_epsilon: 1.0}",
         "Point 0 {'target_epsilon': 1.0, 'method': 'sgd'} of YAML text is not a valid config: "
         "Expected target_epsilon=1.0 to be None for method='sgd'"),
        ("grid: [1, 2", "Cannot parse YAML text as YAML"),
    ],
)
def test_bad_grids_fail_before_running_with_the_key_named(text, message):
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in str(info.value)


def test_short_names_aliases_and_conversions():
    g = parse("base: {lr: 0.5, data_size: 100, data.options: {k: [1, 2]}}\ngrid: {layers: [64]}")
    assert g.points() == [{"training.lr": 0.5, "data.n": 100, "data.options": (("k", (1, 2)),),
                           "layers": (64,)}]  # a single value for a list field is a 1-tuple
    with pytest.raises(ConfigError, match="Key 'n' in YAML text: grid is ambiguous; "
                                          "write one of training.n, data.n"):
        parse("grid: {n: [1]}")
    with pytest.raises(ConfigError, match="Key 'training.lr' is given twice in YAML text: base"):
        parse("base: {lr: 0.5, training.lr: 0.1}\ngrid: {seed: [0]}")


def test_grid_file_and_missing_file(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("grid:\n  seed: [3, 4]\n  layers: [[32, 16]]\n")
    g = Grid.from_yaml(path, config_class=ToyConfig)
    assert g.points() == [{"seed": 3, "layers": (32, 16)}, {"seed": 4, "layers": (32, 16)}]
    with pytest.raises(ConfigError, match="Expected file '.*nope.yaml' to exist"):
        Grid.from_yaml(tmp_path / "nope.yaml", config_class=ToyConfig)


def test_example_grid_file_is_valid():
    import fairpriv_lab.experiment.runner  # noqa: F401  (a broken import must fail, not skip)
    g = Grid.from_yaml(Path(__file__).parents[3] / "examples" / "grid_small.yaml")
    assert 2 <= len(g) <= 12


def test_example_parameter_sets_fit_notebook_00():
    import papermill as pm

    from fairpriv_lab.sweep.runner import load_parameter_sets

    root = Path(__file__).parents[3]
    sets = load_parameter_sets(root / "examples" / "params_small.yaml")
    declared = pm.inspect_notebook(str(root / "notebooks" / "00_start_here.ipynb"))
    assert len(sets) == 3 and all(set(s) <= set(declared) for s in sets)


def test_cli_reports_bad_grid_with_exit_code_2(tmp_path, capsys):
    import fairpriv_lab.experiment.runner  # noqa: F401  (a broken import must fail, not skip)
    path = tmp_path / "bad.yaml"
    path.write_text("grid: {seed: []}\n")
    assert sweep_command([str(path), "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "fairpriv-lab sweep: error: Expected grid.seed in" in capsys.readouterr().err
    assert sweep_command([str(path), "--workers", "x"]) == 2  # argparse's own exit status


# -- point functions run on the workers (module level: importable there) --------------------


def cheap_point(point, *, marker=None, kill_at=None):
    """Rows a deterministic function of the point; optionally kill our own worker once."""
    time.sleep(0.15)
    a = point["a"]
    if a == kill_at and marker is not None and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-point
    if point.get("b") == "bad":
        raise ConfigError(f"Expected b='bad' for a={a} allowed never")
    return pd.DataFrame({"group": ["g0", "g1"], "gpr": [a * 1.5, a * 0.5 + len(point.get("b", ""))],
                         "gprp": [a * 1.0, a * 1.0], "pid": [os.getpid()] * 2})


def env_point(point):
    return {"visible": os.environ.get("CUDA_VISIBLE_DEVICES", "unset")}


def flaky_point(point, *, marker_dir):
    """Raise RuntimeError on the first call of point a=1; always for a=2; else fine."""
    marker = Path(marker_dir, f"tried-{point['a']}")
    tries = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(tries))
    if (point["a"] == 1 and tries == 1) or point["a"] == 2:
        raise RuntimeError(f"transient failure {tries} of a={point['a']}")
    return {"a_squared": point["a"] ** 2}


def counting_point(point, *, calls):
    Path(calls, f"{point['a']}-{point['b']}-{time.time_ns()}").touch()
    return cheap_point(point)


GRID = {"grid": {"a": [1, 2, 3, 4], "b": ["x", "yy"]}}


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    cluster = local_cluster(2)
    with Client(cluster, set_as_default=False) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def sequential():
    return run_sweep(GRID, scheduler="sequential", point_fn=cheap_point, progress=None)


def test_sequential_table_is_tidy_and_in_point_order(sequential):
    t = sequential.table
    assert list(t.columns) == ["point", "point_key", "a", "b", "group", "gpr", "gprp", "pid", *VOLATILE[:4]]
    assert len(t) == 16 and t["point"].tolist() == [i // 2 for i in range(16)]
    assert t.loc[t["point"] == 5, "gpr"].tolist() == [4.5, 3.5]  # a=3, b="yy"
    assert sequential.ok and sequential.n_resumed == 0


@pytest.mark.slow
def test_killed_worker_is_retried_and_table_equals_sequential(tmp_path, sequential):
    """A LocalCluster on 127.0.0.1, 2 workers; one is SIGKILLed mid-point during the sweep."""
    marker = tmp_path / "killed"
    fn = functools.partial(cheap_point, marker=str(marker), kill_at=3)
    seen = []
    res = run_sweep(GRID, scheduler=None, n_workers=2, point_fn=fn, out=tmp_path / "o", progress=seen.append)
    assert marker.exists(), "the point function did not kill its worker"
    killed_pid = int(marker.read_text())
    redone = res.table.loc[res.table["a"] == 3, "pid"]
    assert killed_pid not in set(redone)  # both a=3 points finished on a live process
    assert res.ok, res.failures
    pd.testing.assert_frame_equal(res.table.drop(columns=VOLATILE), sequential.table.drop(columns=VOLATILE))
    # loopback only, and (issue 13 item 5) TLS with temporary credentials by default
    assert res.table["worker"].str.startswith("tls://127.0.0.1:").all()
    last = seen[-1]
    assert (last.total, last.done, last.failed, last.running) == (8, 8, 0, 0)
    assert any(p.running > 0 for p in seen)
    csv = pd.read_csv(tmp_path / "o" / "results.csv")
    assert len(csv) == 16 and set(csv.columns) >= {"point", "a", "b", "gpr", "seconds", "host"}
    page = (tmp_path / "o" / "summary.html").read_text()
    assert "<h2>Points</h2>" in page and "8 points finished, 0 failed" in page
    assert len(list((tmp_path / "o" / "points").glob("*.json"))) == 8


def test_failing_points_are_reported_and_do_not_block(client, tmp_path):
    grid = {"grid": {"a": [1, 2, 3], "b": ["x", "bad"]}}
    address = client.scheduler.address  # the path a real cluster takes: a scheduler address
    res = run_sweep(grid, scheduler=address, point_fn=cheap_point, out=tmp_path, progress=None)
    assert not res.ok
    assert res.failures["point"].tolist() == [1, 3, 5]
    assert res.failures["error_type"].unique().tolist() == ["ConfigError"]
    assert res.failures["message"].iloc[0] == "Expected b='bad' for a=1 allowed never"
    assert "raise ConfigError" in res.failures["traceback"].iloc[0]
    assert sorted(res.table["point"].unique()) == [0, 2, 4]
    assert len(pd.read_csv(tmp_path / "failures.csv")) == 3
    assert "point 1 failed: ConfigError: Expected b='bad'" in str(res)


def test_other_errors_are_retried_then_reported(client, tmp_path):
    fn = functools.partial(flaky_point, marker_dir=str(tmp_path))
    res = run_sweep({"grid": {"a": [1, 2, 3]}}, scheduler=client, point_fn=fn, retries=2, progress=None)
    assert res.table["a_squared"].tolist() == [1, 9]  # a=1 succeeded on its second try
    assert (tmp_path / "tried-1").read_text() == "2"
    assert (tmp_path / "tried-2").read_text() == "3"  # first try + 2 retries
    assert res.failures["point"].tolist() == [1]
    assert res.failures["message"].item() == "transient failure 3 of a=2"


def test_interrupted_sweep_resumes_without_recomputing(client, tmp_path, sequential):
    calls = tmp_path / "calls"
    calls.mkdir()
    fn = functools.partial(counting_point, calls=str(calls))

    def interrupt(p):
        if p.done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(GRID, scheduler="sequential", point_fn=fn, out=tmp_path / "o", progress=interrupt)
    first = len(list(calls.iterdir()))
    assert first == 3
    res = run_sweep(GRID, scheduler=client, point_fn=fn, out=tmp_path / "o", progress=None)
    assert res.n_resumed == 3
    assert len(list(calls.iterdir())) == 8  # the 5 missing points only
    pd.testing.assert_frame_equal(res.table.drop(columns=VOLATILE), sequential.table.drop(columns=VOLATILE))
    again = run_sweep(GRID, scheduler="sequential", point_fn=fn, out=tmp_path / "o", progress=None)
    assert again.n_resumed == 8 and len(list(calls.iterdir())) == 8


def test_corrupt_point_file_is_recomputed(tmp_path):
    grid = {"grid": {"a": [1, 2], "b": ["x"]}}
    first = run_sweep(grid, scheduler="sequential", point_fn=cheap_point, out=tmp_path, progress=None)
    victim = sorted((tmp_path / "points").glob("*.json"))[0]
    victim.write_text(victim.read_text()[:20])  # cut short, as by a crash mid-write
    res = run_sweep(grid, scheduler="sequential", point_fn=cheap_point, out=tmp_path, progress=None)
    assert res.n_resumed == 1
    pd.testing.assert_frame_equal(res.table.drop(columns=VOLATILE), first.table.drop(columns=VOLATILE))


def test_progress_bar_on_a_terminal_and_lines_in_a_log(capsys, monkeypatch):
    grid = {"grid": {"a": [1, 2, 3], "b": ["x", "bad"]}}
    run_sweep(grid, scheduler="sequential", point_fn=cheap_point, progress="auto")
    log = capsys.readouterr().err.splitlines()  # captured: not a terminal
    assert log[0].startswith("sweep: 0/6 finished (done 0, failed 0, running 0, resumed 0)")
    assert len(log) == 7 and log[-1].startswith("sweep: 6/6 finished (done 3, failed 3, running 0")
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    run_sweep(grid, scheduler="sequential", point_fn=cheap_point, progress="auto")
    err = capsys.readouterr().err
    assert "6/6" in err and "done 3, running 0, failed 3" in err and "point/s" in err


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="Expected n_workers=0 to be an integer >= 1"):
        run_sweep(GRID, point_fn=cheap_point, n_workers=0)
    with pytest.raises(ConfigError, match="Expected progress='bar'"):
        run_sweep(GRID, scheduler="sequential", point_fn=cheap_point, progress="bar")


@pytest.mark.slow
def test_gpu_workers_pinned_and_one_training_per_gpu(monkeypatch):
    """With (pretended) 1 GPU and 2 workers: worker 0 sees GPU 0 and holds the GPU resource."""
    import fairpriv_lab.sweep.executor as ex

    monkeypatch.setattr(ex, "gpu_count", lambda: 1)
    grid = {"grid": {"a": [1, 2, 3, 4, 5, 6]}, "points": [{"a": 7, "device": "cpu"}]}
    res = run_sweep(grid, n_workers=2, point_fn=env_point, progress=None)
    auto = res.table[res.table["a"] <= 6]
    assert auto["visible"].tolist() == ["0"] * 6  # GPU points only on the GPU worker
    assert auto["worker"].nunique() == 1
    assert res.table["visible"].iloc[-1] in ("0", "")  # a CPU point may run anywhere


def summary_point(point):
    """Rows shaped like AuditResult.summary(): per auditor and group, GPRP repeated."""
    eps, method, seed = point["eps"], point["method"], point["seed"]
    rows = []
    for auditor in ("PA-ALOOA", "PA-GA"):
        gprp = (10.0 if method == "sgd" else 2.0 + eps) + seed + (auditor == "PA-GA")
        for g in ("a", "b"):
            rows.append({"auditor": auditor, "group": g, "gpr": gprp * (g == "a"), "gprp": gprp,
                         "gprp_ci_low": gprp - 1, "gprp_ci_high": gprp + 1, "method": method,
                         "epsilon": float("inf") if method == "sgd" else float(eps),
                         "accuracy": 0.8 - 0.01 * eps + 0.001 * seed})
    return rows


def test_chart_frames_average_seeds_per_method_and_epsilon(tmp_path):
    from fairpriv_lab.sweep.report import chart_frames

    grid = {"grid": {"method": ["dpsgd", "dpsgds"], "eps": [1, 4], "seed": [0, 1], "data": ["u", "v"]},
            "points": [{"method": "sgd", "eps": 0, "seed": 0, "data": "u"}]}
    res = run_sweep(grid, scheduler="sequential", point_fn=summary_point, out=tmp_path, progress=None)
    frames = chart_frames(res.table, ["method", "eps", "seed", "data"])
    assert [label for label, _ in frames] == ["data=u", "data=v"]
    u = frames[0][1]
    assert list(u.columns) == ["method", "epsilon", "gprp", "accuracy"]  # CIs dropped: 2 seeds
    row = u[(u["method"] == "dpsgd") & (u["epsilon"] == 4)]
    assert row["gprp"].item() == pytest.approx(6.5)  # PA-ALOOA, mean of seeds 0 and 1
    assert u[u["method"] == "sgd"]["gprp"].item() == 10.0
    page = (tmp_path / "summary.html").read_text()
    if importlib.util.find_spec("fairpriv_lab.viz") is not None:
        assert page.count("<svg") >= 4 and "GPRP against ε per method (data=u)" in page


TINY_GRID = """
base: {dataset: adult, data.n: 400, model: lr, epochs: 2, n_models: 8, m: 40, n_boot: 50,
       chunk_models: 4}
points: [{method: sgd}, {method: dpsgd, epsilon: 4.0}]
"""


def kill_in_second_chunk(point, *, cache, marker):
    """The real point function, but the worker dies once, in its second chunk (the first is cached)."""
    from fairpriv_lab.sweep.runner import run_point

    def progress(stage, done, total):
        # done == 4 is reported when chunk 0 is trained (before it is saved) and again once
        # it is saved; done > 4 only happens inside chunk 1.
        if stage == "train" and done > 4 and point["train.method"] == "dpsgd" and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    return run_point(point, cache=cache, progress=progress)


@pytest.mark.slow
def test_real_experiments_survive_a_killed_worker_and_the_cli_serves_them_from_cache(
    client, tmp_path, capsys
):
    import fairpriv_lab.experiment.runner  # noqa: F401  (a broken import must fail, not skip)
    grid, out, cache, marker = tmp_path / "g.yaml", tmp_path / "out", tmp_path / "cache", tmp_path / "killed"
    grid.write_text(TINY_GRID)
    # 1. A worker is killed mid-training: Dask reruns the point; its first chunk comes from the cache.
    fn = functools.partial(kill_in_second_chunk, cache=str(cache), marker=str(marker))
    first = run_sweep(Grid.from_yaml(grid), scheduler=client.scheduler.address, point_fn=fn,
                      out=out, progress=None).table
    assert marker.exists()
    chunks = first.groupby("point")[["chunks_trained", "chunks_loaded"]].first()
    assert chunks.values.tolist() == [[2, 0], [1, 1]]
    assert set(first.columns) >= {"point", "train.method", "train.epsilon", "auditor", "group", "gpr",
                                  "ci_low", "ci_high", "gprp", "gprp_ci_low", "gprp_ci_high", "accuracy",
                                  "epsilon", "time_train", "seconds", "host", "gpu", "worker"}
    assert first.groupby("point")["group"].nunique().tolist() == [2, 2]  # adult, by sex
    eps = first.groupby("point")["epsilon"].first()
    assert eps[0] == float("inf") and 3.9 < eps[1] <= 4.0 + 1e-9
    # 2. The CLI, with the sweep's own record of finished points gone: the experiment cache serves all.
    for f in (out / "points").iterdir():
        f.unlink()
    argv = [str(grid), "--scheduler", client.scheduler.address, "--out", str(out), "--cache", str(cache),
            "--no-progress"]
    assert sweep_command(argv) == 0, capsys.readouterr()
    second = pd.read_csv(out / "results.csv")
    assert second["from_cache"].all() and (second["chunks_trained"] == 0).all()
    facts = VOLATILE + ["from_cache", "chunks_trained", "chunks_loaded"]
    same = [c for c in second.columns if c not in facts and not c.startswith("time_")]
    expected = pd.read_csv(io.StringIO(first.to_csv(index=False)))  # same dtypes as a CSV round trip
    pd.testing.assert_frame_equal(second[same], expected[same])
    assert "<svg" in (out / "summary.html").read_text()


# -- notebooks ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.notebooks
def test_teaching_notebook_with_three_parameter_sets(client, tmp_path):
    """notebooks/00 with small parameters; the third set is invalid and stops at its check cell."""
    params = tmp_path / "params.yaml"
    params.write_text("base: {n: 400, m: 40, epochs: 2}\n"
                      "points: [{n_models: 4}, {n_models: 4, group: race}, {n_models: 7}]\n")
    notebook = Path(__file__).parents[3] / "notebooks" / "00_start_here.ipynb"
    res = run_notebooks(notebook, params, scheduler=client, out=tmp_path / "runs", html=False, progress=None)
    assert [r.ok for r in res.runs] == [True, True, False]
    bad = res.runs[2].failure
    assert bad.details["ename"] == "ConfigError" and "check_parameters" in bad.details["source"]
    assert bad.message.endswith("raised ConfigError: Expected n_models=7 to be even. "
                                "Models come in complementary pairs (2p, 2p+1)")
    assert "'race'" in res.runs[1].notebook.read_text()  # the injected parameters cell
    assert res.table["status"].tolist() == ["ok", "ok", "failed"]


@pytest.mark.slow
def test_notebooks_command_reports_failing_cell_and_exports_html(client, tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("grid: {x: [5]}\npoints: [{x: 6, fail: true}]\n")  # grid sections work too
    out = tmp_path / "o"
    code = notebooks_command(["run", str(DATA / "tiny_params.ipynb"), "--params", str(params),
                              "--scheduler", client.scheduler.address, "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 1
    assert "2 runs: 1 ok, 1 failed" in text
    assert "run 1 {'x': 6, 'fail': True}: FAILED: NotebookRunError: cell 4 raised " \
           "ValueError: asked to fail with x=6" in text  # cell 4: papermill injects one cell
    assert sorted(p.name for p in out.iterdir()) == [
        "index.html", "runs.csv", "tiny_params-00.html", "tiny_params-00.ipynb",
        "tiny_params-01.html", "tiny_params-01.ipynb"]
    assert "asked to fail with x=6" in (out / "tiny_params-01.html").read_text()  # the traceback
    index = (out / "index.html").read_text()
    assert "<a href='tiny_params-01.html'>" in index and "asked to fail with x=6" in index
    runs = pd.read_csv(out / "runs.csv")
    assert runs["status"].tolist() == ["ok", "failed"]
    assert pd.isna(runs["failed_cell"].iloc[0]) and runs["failed_cell"].iloc[1] == 4
    # the kernel imported this checkout's package (not pip-installed here)
    nb = (out / "tiny_params-00.ipynb").read_text()
    assert "y = 10" in nb and str(Path(__file__).resolve().parents[3] / "fairpriv_lab" / "__init__.py") in nb
    assert main(["notebooks", "run", "nope.ipynb", "--params", str(params)]) == 2
    assert "Expected notebook 'nope.ipynb' to exist" in capsys.readouterr().err


def test_parameter_sets_from_lists_and_grids():
    from fairpriv_lab.sweep.runner import load_parameter_sets

    assert load_parameter_sets("- {x: 1}\n- {x: 2, fail: true}\n") == [{"x": 1}, {"x": 2, "fail": True}]
    assert load_parameter_sets({"base": {"n": 5}, "grid": {"x": [1, 2]}}) == [{"n": 5, "x": 1}, {"n": 5, "x": 2}]
    with pytest.raises(ConfigError, match="Expected parameter set 1=3 in YAML text to be a mapping"):
        load_parameter_sets("- {x: 1}\n- 3\n")
    with pytest.raises(ConfigError, match="YAML text holds no parameter sets"):
        load_parameter_sets("[]")


def test_notebook_unknown_parameter_fails_before_running(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown parameter\(s\) 'z' in parameter set 1; "
                                          r"tiny_params.ipynb defines: fail, x"):
        run_notebooks(DATA / "tiny_params.ipynb", [{"x": 1}, {"z": 2}], out=tmp_path, progress=None)


def sgd_dp_point(point):
    """A point like run_point's rows: SGD's epsilon is inf (written to strict JSON as "inf")."""
    eps = math.inf if point["method"] == "sgd" else 0.9975
    return pd.DataFrame({"method": [point["method"]] * 2, "epsilon": [eps] * 2, "auditor": ["PA-ALOOA"] * 2,
                         "group": ["g0", "g1"], "gpr": [1.0, 0.5], "gprp": [0.5, 0.5], "accuracy": [0.8, 0.8]})


def test_resumed_points_read_back_numbers_and_draw_the_summary(tmp_path):
    """A resumed sweep's inf / NaN cells are floats again (pandas >= 3 reads text as "str", not object)."""
    grid = {"grid": {"method": ["sgd", "dpsgd"]}}
    first = run_sweep(grid, scheduler="sequential", point_fn=sgd_dp_point, out=tmp_path, progress=None)
    again = run_sweep(grid, scheduler="sequential", point_fn=sgd_dp_point, out=tmp_path, progress=None)
    assert again.n_resumed == 2
    assert again.table["epsilon"].dtype == float and math.isinf(again.table["epsilon"].max())
    assert again.table["method"].tolist() == first.table["method"].tolist()  # text stays text
    assert "<svg" in (tmp_path / "summary.html").read_text() or "vega" in (tmp_path / "summary.html").read_text()
    rows = pd.DataFrame.from_records([{"x": "inf", "y": None, "z": "a"}, {"x": "-inf", "y": "1.5", "z": "b"}])
    from fairpriv_lab.sweep.runner import _numeric_columns

    out = _numeric_columns(rows)
    assert out["x"].tolist() == [math.inf, -math.inf] and out["y"].iloc[1] == 1.5 and out["z"].tolist() == ["a", "b"]
