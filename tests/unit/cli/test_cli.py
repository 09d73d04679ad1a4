import json
import subprocess
import sys

import numpy as np
import pytest

from fairpriv_lab.cli.commands import build_parser, config_from_args, main
from fairpriv_lab.experiment.cache import Cache


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("audit", "demo", "datasets", "cache"):
        assert word in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "--method", "dp"], "argument --method: invalid choice: 'dp' (choose from 'sgd', 'dpsgd', 'dpsgds', 'dpsgdf')"),
        (["audit", "--model", "rnn"], "argument --model: invalid choice: 'rnn'"),
        (["audit", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
        (["audit", "--auditors", "PA-ALOOA,PA-X"], "argument --auditors: invalid auditor 'PA-X' (choose from PA-ALOOA, PA-LOOA, PA-GA, PA-GBA"),
        (["audit", "--epsilon", "1"], "error: Expected --epsilon=1.0 to be None with method='sgd'"),
        (["audit", "--method", "dpsgd"], "Expected exactly one of --epsilon (a target ε) and --noise-multiplier"),
        (["audit", "--n-models", "7"], "Expected --n-models=7 to be even"),
        (["audit", "--group", "age"], "Expected --group='age' to be one of 'sex', 'race', 'race5'"),
        (["audit", "--dataset", "nope"], "Expected --dataset='nope' to be one of 'adult'"),
        (["audit", "--model", "cnn"], "Expected --model='cnn' to be 'lr' or 'mlp' for the tabular dataset 'adult'"),
        (["audit", "--n", "100", "--m", "90"], "Expected --m=90 to be at most the 80 training records (--n=100"),
        (["audit", "--device", "gpu"], "Expected --device='gpu' to be one of 'auto', 'cpu'"),
        (["audit", "--data-option", "novalue"], "expected KEY=VALUE"),
        (["audit", "--dataset", "synthetic", "--n", "200", "--m", "40", "--n-models", "2"],
         "Expected --n-models=2 to give every audited record at least 2 model pairs (--n-models >= 4"),
        (["audit", "--dataset", "synthetic", "--n", "200", "--m", "40", "--batch-size", "141"],
         "Expected --batch-size=141 to be <= the smallest training set of the 'aloo' game (140 records)"),
        (["datasets", "download", "nope"], "argument name: invalid choice: 'nope'"),
        (["cache", "clear", "--key", "xyz!"], "Expected key='xyz!' to be a hex key"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["demo", "--device", "tpu"], "Expected --device='tpu' to be one of"),
        (["demo", "--threads", "0"], "Expected --threads=0 to be an integer in [1, inf]"),
    ],
)
def test_bad_options_exit_2_with_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRPRIV_LAB_CACHE", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err


def test_html_without_report_module_is_a_clear_error(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fairpriv_lab.ui.report" else real(name, *a))
    assert main(["audit", "--html", "r.html", "--no-cache"]) == 2
    assert "--html only where fairpriv_lab.ui.report is available" in capsys.readouterr().err


def test_config_from_args_overrides_file(tmp_path):
    base = {"train": {"method": "dpsgd", "epsilon": 4.0}, "game": {"n_models": 8, "m": 20}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(base))
    args = build_parser().parse_args(
        ["audit", "--config", str(path), "--epsilon", "2", "--auditors", "PA-GA,PA-ALOOA",
         "--dataset", "synthetic", "--data-option", "group_sizes=[0.7,0.3]", "--game", "half"])
    cfg = config_from_args(args)
    assert (cfg.train.method, cfg.train.epsilon, cfg.game.n_models) == ("dpsgd", 2.0, 8)
    assert cfg.audit.auditors == ("PA-GA", "PA-ALOOA")
    assert cfg.data.options == (("group_sizes", (0.7, 0.3)),)
    assert cfg.game.kind == "half" and cfg.game.m is None  # switching to 'half' clears m
    # 'none' clears an optional field and switching to sgd needs it
    args = build_parser().parse_args(["audit", "--config", str(path), "--method", "sgd", "--epsilon", "none"])
    assert config_from_args(args).train.epsilon is None


def test_every_config_field_has_an_option():
    from fairpriv_lab.cli.commands import _OPTIONS
    from fairpriv_lab.experiment.config import _all_keys

    keys = {k for k, *_ in _OPTIONS} | {"data.options"}
    assert keys == set(_all_keys())


def test_datasets_list(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "adult" in out and "offline" in out and "sex, race" in out


def test_datasets_download_offline(capsys):
    assert main(["datasets", "download", "adult"]) == 0
    assert "available offline" in capsys.readouterr().out


def test_datasets_download_remote_uses_the_verified_downloader(capsys, monkeypatch, tmp_path):
    import fairpriv_lab.data as data

    calls = []

    def fake_download(name, **kw):
        calls.append(name)
        return [tmp_path / f"{name}.csv"]

    monkeypatch.setattr(data, "download_dataset", fake_download)
    assert main(["datasets", "download", "law"]) == 0
    assert calls == ["law"]
    assert f"law: {tmp_path / 'law.csv'} (sha256 verified)" in capsys.readouterr().out


def test_datasets_download_failure_exits_1(capsys, monkeypatch):
    import fairpriv_lab.data as data
    from fairpriv_lab._core.exceptions import DownloadError

    def failing(name, **kw):
        raise DownloadError("Could not download law.csv (offline)")

    monkeypatch.setattr(data, "download_dataset", failing)
    assert main(["datasets", "download", "law"]) == 1
    assert "fairpriv-lab datasets: error: Could not download law.csv" in capsys.readouterr().err


def test_cache_list_and_clear(tmp_path, capsys):
    cache = Cache(tmp_path / "c")
    key = cache.key({"x": 1}, dataset_checksum="0")
    cache.save(key, "entry", None, {"label": "adult/sex mlp sgd"})
    cache.save(key, "chunk-00000", {"a": np.zeros(1000)}, {})
    assert main(["cache", "list", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert key[:12] in out and "1 chunks" in out and "adult/sex mlp sgd" in out
    assert main(["cache", "clear", "--cache-dir", str(cache.root), "--key", key[:8]]) == 0
    assert "freed" in capsys.readouterr().out
    assert cache.list() == []
    assert main(["cache", "list", "--cache-dir", str(cache.root)]) == 0
    assert "no cached results" in capsys.readouterr().out
    # a prefix that matches nothing exits 2 naming the count; `cache clear` alone clears all
    for i in range(2):
        cache.save(cache.key({"x": i}, dataset_checksum="0"), "entry", None, {"label": f"run {i}"})
    assert main(["cache", "clear", "--cache-dir", str(cache.root), "--key", "0000000000"]) == 2
    assert "Expected key='0000000000' to match exactly one cache entry (it matches 0)" in capsys.readouterr().err
    assert main(["cache", "clear", "--cache-dir", str(cache.root)]) == 0
    assert "freed" in capsys.readouterr().out and cache.list() == []


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "fairpriv_lab", "audit", "--optimizer", "rmsprop"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "argument --optimizer: invalid choice: 'rmsprop' (choose from 'sgd', 'adam')" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "fairpriv_lab", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("fairpriv-lab ")


@pytest.mark.slow
def test_audit_end_to_end_writes_outputs(tmp_path, capsys, torch_one_thread):
    argv = ["audit", "--dataset", "synthetic", "--n", "200", "--model", "lr", "--epochs", "2",
            "--batch-size", "40", "--n-models", "4", "--m", "40", "--n-boot", "50",
            "--min-group-size", "5", "--device", "cpu", "--chunk-models", "2", "--no-progress",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "synthetic/group lr sgd: 4 models, 40 audited records" in out
    # one GPRP line per auditor (each also names its floor GPRP since the soundness merge)
    assert out.count("\n    GPRP ") == 3 and "chunks trained 2, from cache 0" in out
    assert (tmp_path / "out" / "summary.csv").exists() and (tmp_path / "out" / "result.json").exists()
    assert main(argv) == 0  # second time from the cache
    assert "chunks trained 0, from cache 2" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_plumbing_with_tiny_settings(tmp_path, capsys, monkeypatch, torch_one_thread):
    from fairpriv_lab.ui import demo

    monkeypatch.setitem(demo._CPU, "n", 300)
    monkeypatch.setitem(demo._CPU, "hidden", 8)
    monkeypatch.setitem(demo._CPU, "n_models", 4)
    monkeypatch.setitem(demo._CPU, "m", 60)
    monkeypatch.setitem(demo._CPU, "epochs", 1)
    monkeypatch.setitem(demo._CPU, "chunk_models", 4)
    monkeypatch.setitem(demo._CPU, "batch_size", 32)
    monkeypatch.setattr(demo, "_AUDIT", {"n_boot": 50, "min_group_size": 5})
    assert main(["demo", "--out", str(tmp_path / "d"), "--device", "cpu", "--no-cache", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for method in ("sgd", "dpsgd", "dpsgds"):
        assert f"\n{method} " in out
        assert (tmp_path / "d" / f"{method}_summary.csv").exists()
    assert "GPR Male" in out and "GPRP" in out
    # item 3 of issue 17: terms defined once, a conclusion with the signed difference and its CI,
    # the GPRP floor, and pointers to the HTML report written by default and to notebook 00
    for term in ("IPR ", "GPR ", "GPRP ", "PA-ALOOA ", "PA-GA ", "PA-GBA ", "floor ", "negative GPR "):
        assert out.count(f"\n  {term}") == 1, term
    conclusion = out.split("Conclusion:", 1)[1]
    assert "GPRP floor" in conclusion and "The signed difference GPR(Female) - GPR(Male)" in conclusion
    assert (tmp_path / "d" / "report.html").exists()
    assert f"open {tmp_path / 'd' / 'report.html'}" in out and "notebooks/00_start_here.ipynb" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "d" / "comparison.csv")
    assert list(table["method"]) == ["sgd"] * 3 + ["dpsgd"] * 3 + ["dpsgds"] * 3
    assert (table.loc[table.method != "sgd", "epsilon"] <= 10.0 + 1e-6).all()


@pytest.mark.parametrize(
    "error, code, message",
    [
        ("diverged", 1, "fairpriv-lab audit: error: Model 3 diverged (NaN or infinite loss) in epoch 1"),
        ("config", 2, "fairpriv-lab audit: error: Expected --batch-size=512 to be <= the smallest"),
        # issue 17: "finished chunks are cached" was said even when none had finished
        ("interrupt", 130, "interrupted; chunks of models that finished before are cached (unless --no-cache)"),
    ],
)
def test_audit_run_time_errors_exit_codes(error, code, message, capsys, monkeypatch, tmp_path):
    """Errors raised while running (not parsing) map to exit 1 (run failed), 2 (bad setting), 130."""
    import fairpriv_lab.experiment.runner as experiment
    from fairpriv_lab._core.exceptions import ConfigError, TrainingDivergedError

    def failing(cfg, **kw):
        if error == "diverged":
            raise TrainingDivergedError("Model 3 diverged (NaN or infinite loss) in epoch 1", model=3, epoch=1)
        if error == "config":
            raise ConfigError("Expected train.batch_size=512 to be <= the smallest training set (400 records)")
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run", failing)
    argv = ["audit", "--no-progress", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(argv) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
