"""The self-contained HTML report of audit results."""

from __future__ import annotations

import re

import pytest

from fairpriv_lab import ConfigError
from fairpriv_lab.ui.report import report_html, write_report

pytest.importorskip("vl_convert")
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from fairpriv_lab.experiment.runner import ExperimentConfig, run

    cache = tmp_path_factory.mktemp("cache")
    base = ExperimentConfig(
        data={"name": "adult", "group": "sex", "n": 400},
        train={"epochs": 2, "batch_size": 64},
        game={"n_models": 4, "m": 40},
        audit={"n_boot": 100, "min_group_size": 10},
        device="cpu",
    )
    sgd = run(base, cache=cache)
    dps = run(base.replace(method="dpsgds", epsilon=4.0), cache=cache)
    return sgd, dps


def test_single_result_page_is_self_contained(results, tmp_path):
    sgd, _ = results
    path = write_report(sgd, tmp_path / "out" / "report.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Offline: no scripts, no external resources.
    assert "<script" not in page
    assert not re.search(r'(src|href)="https?://', page)
    assert page.count("<svg") >= 3  # GPR, auditors side by side, IPR distribution
    for text in ("Male", "Female", "PA-ALOOA", "PA-GBA", "gprp", "Empirical ε", sgd.config.label):
        assert text in page
    assert "∞" in page  # SGD's epsilon
    assert not (tmp_path / "out" / ".report.html.tmp").exists()


def test_several_results_get_a_comparison_and_clip_bounds(results):
    sgd, dps = results
    page = report_html({"SGD": sgd, "DP-SGD-S eps=4": dps}, title="Two runs")
    assert "<h1>Two runs</h1>" in page and "<h2>Comparison</h2>" in page
    assert "<h2>SGD</h2>" in page and "<h2>DP-SGD-S eps=4</h2>" in page
    # GPRP vs eps, frontier, and per-group clip bounds of the DP-SGD-S run.
    assert "against ε" in page and "matched-utility" in page
    assert "clip" in page.lower()


def test_png_images_inline(results):
    page = report_html(results[0], images="png")
    assert page.count("data:image/png;base64,") >= 3 and "<svg" not in page


def test_bad_inputs_have_clear_messages(results, tmp_path):
    with pytest.raises(ConfigError, match=r"^Expected path='.*report.txt' to end in .html"):
        write_report(results[0], tmp_path / "report.txt")
    with pytest.raises(ConfigError, match=r"^Expected results\['dict'\]='dict' to be an AuditResult"):
        report_html({"dict": {}})
    with pytest.raises(ConfigError, match=r"^Expected results=\[\] to hold at least one AuditResult"):
        report_html([])
    with pytest.raises(ConfigError, match=r"^Expected images='jpg' to be one of 'svg', 'png'"):
        report_html(results[0], images="jpg")
    with pytest.raises(ConfigError, match=r"^Expected auditor='PA-LOOA' to be one of"):
        report_html(results[0], auditor="PA-LOOA")


def test_report_command_from_cache_key_and_out_folder(tmp_path, capsys):
    import argparse

    from fairpriv_lab.cli.report import add_report_parser, cmd_report
    from fairpriv_lab.experiment.runner import ExperimentConfig, run
    from fairpriv_lab.ui.report import load_results

    cache = tmp_path / "cache"
    cfg = ExperimentConfig(data={"name": "adult", "group": "sex", "n": 400}, train={"epochs": 1, "batch_size": 64},
                           game={"n_models": 4, "m": 40}, audit={"n_boot": 100, "min_group_size": 10}, device="cpu")
    result = run(cfg, cache=cache)
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", result.cache_key[:10], "--cache-dir", str(cache),
                              "-o", str(tmp_path / "r.html")])
    assert cmd_report(args) == 0
    assert "wrote" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert cfg.label in page and "<svg" in page
    # The same from the cache entry folder and from an `audit --out` folder.
    again = load_results(cache / result.cache_key)
    assert again[0].from_cache and again[0].config.digest == cfg.digest
    result.save(tmp_path / "out")
    from_out = load_results(tmp_path / "out", cache_dir=cache)
    assert from_out[0].from_cache
    # `report DIR` writes into DIR, not into the current folder (issue 17)
    args = parser.parse_args(["report", str(tmp_path / "out"), "--cache-dir", str(cache)])
    assert cmd_report(args) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    with pytest.raises(ConfigError, match=r"^Expected source='abcdef' to name exactly one entry"):
        load_results("abcdef", cache_dir=cache)
    with pytest.raises(ConfigError, match=r"^Expected source='nope' to be an existing folder or a cache key"):
        load_results("nope", cache_dir=cache)


def test_cli_audit_html_and_report(tmp_path, monkeypatch, capsys):
    from fairpriv_lab.cli.commands import main

    monkeypatch.setenv("FAIRPRIV_LAB_CACHE", str(tmp_path / "cache"))
    page = tmp_path / "audit.html"
    rc = main(["audit", "--dataset", "adult", "--n", "400", "--n-models", "4", "--m", "40", "--epochs", "1",
               "--batch-size", "64", "--min-group-size", "10", "--n-boot", "100", "--device", "cpu",
               "--no-progress", "--html", str(page)])
    assert rc == 0 and "<svg" in page.read_text(encoding="utf-8")
    from fairpriv_lab.experiment.cache import Cache

    key = Cache().list()[0].key
    out = tmp_path / "again.html"
    assert main(["report", key[:8], "-o", str(out)]) == 0
    assert "adult/sex mlp sgd" in out.read_text(encoding="utf-8")
    assert main(["report", "0123456789"]) == 2
    assert "to name exactly one entry of the cache" in capsys.readouterr().err
