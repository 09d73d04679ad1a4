"""Hardening (issue 13): untrusted files, resource limits, and bad input that slipped through.

One test (at least) per item of the issue; each failed on the code before the fix. The
Hypothesis test over the public API is ``test_public_api_raises_only_fairpriv_errors``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

from fairpriv_lab.exceptions import ConfigError

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------- 1-3: parameter and grid files
def test_1_parameter_file_cannot_run_code_in_the_kernel(tmp_path):
    """A !!binary value holding '"' used to be written unescaped into papermill's cell."""
    from fairpriv_lab.sweep import load_parameter_sets, run_notebooks

    target = tmp_path / "pwned"
    payload = f'"+str(open(r"{target}","w").write("pwned"))+"'.encode()
    params = tmp_path / "params.yaml"
    params.write_text(f"base: {{fail: false}}\npoints:\n  - {{x: !!binary {base64.b64encode(payload).decode()}}}\n")
    with pytest.raises(ConfigError, match=r"Expected parameter set 0\.x=.* to be a JSON value .*not bytes"):
        run_notebooks(DATA / "tiny_params.ipynb", params, scheduler="sequential", out=tmp_path / "o",
                      progress=None, html=False)
    assert not target.exists()
    # the same value nested in a list, in the list form, and passed directly
    with pytest.raises(ConfigError, match=r"parameter set 0\.x\[1\]"):
        load_parameter_sets(f"- {{x: [1, !!binary {base64.b64encode(payload).decode()}]}}\n")
    with pytest.raises(ConfigError, match="not set"):
        load_parameter_sets([{"x": {1, 2}}])
    with pytest.raises(ConfigError, match="not date"):
        load_parameter_sets("- {x: 2020-01-01}\n")
    from fairpriv_lab.notebook_tools import execute_notebook

    with pytest.raises(ConfigError, match="Expected parameters.x=b'1' to be a JSON value"):
        execute_notebook(DATA / "tiny_params.ipynb", parameters={"x": b"1"})


def test_2_list_parameters_arrive_as_lists():
    from papermill.translators import PythonTranslator

    from fairpriv_lab.sweep import load_parameter_sets

    sets = load_parameter_sets("base: {epsilons: [1.0, 8.0], opts: {a: [1, [2, 3]]}}\ngrid: {x: [[1, 2], [3]]}\n")
    assert sets == [{"epsilons": [1.0, 8.0], "opts": {"a": [1, [2, 3]]}, "x": [1, 2]},
                    {"epsilons": [1.0, 8.0], "opts": {"a": [1, [2, 3]]}, "x": [3]}]
    assert type(sets[0]["epsilons"]) is list and type(sets[0]["x"]) is list
    code = PythonTranslator.codify(sets[0])
    assert "epsilons = [1.0, 8.0]" in code and "x = [1, 2]" in code



@pytest.mark.timeout(60)
def test_3_yaml_alias_bomb_and_huge_files_are_refused(tmp_path):
    from fairpriv_lab import _grid
    from fairpriv_lab.sweep import Grid, run_sweep

    text = "\n".join(['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
                     + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
                     + ["grid: {x: *a9}"])
    assert len(text) < 3000
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    with pytest.raises(ConfigError, match="expands to more than 100000 values once its aliases"):
        run_sweep(bomb, scheduler="sequential", point_fn=len, progress=None)
    with pytest.raises(ConfigError, match="expands to more than"):
        _grid.safe_load_bounded("a: &a [1, *a]")  # recursive alias
    big = tmp_path / "big.yaml"
    big.write_text("grid: {x: [1]}\n" + "#" * (_grid.MAX_YAML_BYTES + 1))
    with pytest.raises(ConfigError, match="to be at most 1048576 bytes"):
        Grid.from_yaml(big, config_class=None)
    # ordinary anchors and merge keys still work
    g = Grid.from_yaml("base: &b {x: 1}\npoints: [{<<: *b, y: 2}]\n", config_class=None)
    assert g.points() == [{"x": 1, "y": 2}]


# ---------------------------------------------------------------- 4: sweep resume
def _eps_point(point):
    return {"epsilon_seen": float(point["epsilon"]) * 10}


def test_4_sweep_resume_verifies_point_files(tmp_path):
    from fairpriv_lab.cache import CacheWarning
    from fairpriv_lab.sweep import run_sweep

    grid = {"grid": {"epsilon": [1.0, 2.0, 3.0]}}
    first = run_sweep(grid, scheduler="sequential", point_fn=_eps_point, out=tmp_path, progress=None)
    files = {json.loads(p.read_text())["point"]["epsilon"]: p for p in (tmp_path / "points").iterdir()}
    # swap the files of points 1.0 and 2.0; edit the rows of point 3.0
    a, b = files[1.0].read_text(), files[2.0].read_text()
    files[1.0].write_text(b)
    files[2.0].write_text(a)
    rec = json.loads(files[3.0].read_text())
    rec["rows"][0]["epsilon_seen"] = 99.0
    files[3.0].write_text(json.dumps(rec))
    with pytest.warns(CacheWarning, match="failed verification") as caught:
        again = run_sweep(grid, scheduler="sequential", point_fn=_eps_point, out=tmp_path, progress=None)
    assert len(caught) == 3
    assert {"another point's settings", "checksum"} <= {
        "checksum" if "checksum" in str(w.message) else "another point's settings" for w in caught}
    assert again.n_resumed == 0
    assert again.table["epsilon_seen"].tolist() == [10.0, 20.0, 30.0] == first.table["epsilon_seen"].tolist()
    # verified files resume silently
    third = run_sweep(grid, scheduler="sequential", point_fn=_eps_point, out=tmp_path, progress=None)
    assert third.n_resumed == 3 and third.table["epsilon_seen"].tolist() == [10.0, 20.0, 30.0]


# ---------------------------------------------------------------- 5: Dask security
def _worker_address(point):
    from distributed import get_worker

    return {"worker_address": get_worker().address}


@pytest.mark.timeout(180)
def test_5_local_cluster_uses_tls_with_temporary_credentials(tmp_path):
    pytest.importorskip("cryptography")
    from distributed import Client, Security

    from fairpriv_lab._executor import open_client
    from fairpriv_lab.sweep import run_sweep

    res = run_sweep({"grid": {"x": [1]}}, n_workers=1, point_fn=_worker_address, progress=None)
    assert res.table["worker_address"].str.startswith("tls://127.0.0.1:").all()
    with open_client(None, 1) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(int, "7").result() == 7
        for other in (None, Security(), Security.temporary()):  # no credentials, or others'
            with pytest.raises(Exception):  # noqa: B017 - refused at the TLS layer, any error type
                Client(address, security=other, timeout=3, set_as_default=False)
    with open_client(None, 1, security=False) as client:  # opting out: plain TCP on loopback
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")


def test_5_tls_options_of_the_sweep_command(tmp_path, capsys):
    from fairpriv_lab._executor import resolve_security, tls_security
    from fairpriv_lab.sweep import sweep_command

    assert tls_security(None, None, None) is None
    with pytest.raises(ConfigError, match="Expected --tls-ca-file='nope.pem' to be an existing file"):
        tls_security("nope.pem", "nope.pem", None)
    with pytest.raises(ConfigError, match="Expected --tls-cert with the other --tls-\\* options"):
        tls_security(str(tmp_path), None, None)
    with pytest.raises(ConfigError, match="security=True with a remote scheduler"):
        resolve_security(True, local=False)
    with pytest.raises(ConfigError, match="Expected security='yes' to be"):
        resolve_security("yes", local=True)
    grid = tmp_path / "g.yaml"
    grid.write_text("grid: {train.epochs: [1]}\n")
    assert sweep_command([str(grid), "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", "ca.pem",
                          "--tls-cert", "c.pem", "--no-progress"]) == 2
    assert "Expected --tls-ca-file='ca.pem' to be an existing file" in capsys.readouterr().err


# ---------------------------------------------------------------- 6-8: the result cache
TINY = {
    "data": {"name": "synthetic", "n": 200, "options": {"group_sizes": [0.75, 0.25], "outlier_rate": [0.0, 0.2]}},
    "train": {"model": "lr", "epochs": 2, "batch_size": 40, "lr": 0.2},
    "game": {"kind": "aloo", "n_models": 4, "m": 40},
    "audit": {"n_boot": 50, "min_group_size": 5},
    "chunk_models": 2,
    "device": "cpu",
}


def _tiny():
    from fairpriv_lab.experiment import ExperimentConfig

    return ExperimentConfig.from_dict(TINY)


def _rewrite_item(folder: Path, item: str, *, arrays=None, meta=None) -> None:
    """Forge a cache item with valid checksums: what an attacker (or a careless tool) can do."""
    import io

    from fairpriv_lab._config import digest

    rec = json.loads((folder / f"{item}.json").read_text())
    rec.pop("checksum")
    if arrays is not None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        (folder / f"{item}.npz").write_bytes(data)
        import hashlib

        rec["npz"] = {"file": f"{item}.npz", "sha256": hashlib.sha256(data).hexdigest(),
                      "bytes": len(data), "arrays": sorted(arrays)}
    if meta is not None:
        rec["meta"] = meta
    rec["checksum"] = digest(rec)
    (folder / f"{item}.json").write_text(json.dumps(rec))


def _arrays(folder: Path, item: str) -> dict:
    with np.load(folder / f"{item}.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.usefixtures("torch_one_thread")
def test_6_swapped_chunk_invalidates_the_cached_audit(tmp_path):
    from fairpriv_lab.cache import CacheWarning
    from fairpriv_lab.experiment import run

    cfg = _tiny()
    first = run(cfg, cache=tmp_path)
    folder = tmp_path / first.cache_key
    forged = _arrays(folder, "chunk-00000")
    forged["losses"] = forged["losses"][:, ::-1].copy()  # other records' losses
    _rewrite_item(folder, "chunk-00000", arrays=forged)
    # 1. the entry's manifest does not know this chunk: it is retrained, the audit recomputed
    with pytest.warns(CacheWarning, match="not the chunk its cache entry recorded"):
        again = run(cfg, cache=tmp_path)
    assert (again.chunks_trained, again.chunks_loaded, again.from_cache) == (1, 1, False)
    np.testing.assert_array_equal(again.losses, first.losses)
    assert again.summary().equals(first.summary())
    entry = json.loads((folder / "entry.json").read_text())["meta"]
    assert sorted(entry["chunks"]) == ["chunk-00000", "chunk-00001"]
    # 2. forged chunk and manifest together: the audit records other chunks, so it is recomputed
    _rewrite_item(folder, "chunk-00000", arrays=forged)
    entry = json.loads((folder / "entry.json").read_text())["meta"]
    entry["chunks"]["chunk-00000"] = json.loads((folder / "chunk-00000.json").read_text())["checksum"]
    _rewrite_item(folder, "entry", meta=entry)
    with pytest.warns(CacheWarning, match="computed from other chunks"):
        third = run(cfg, cache=tmp_path)
    assert third.chunks_trained == 0 and not third.from_cache
    np.testing.assert_array_equal(third.losses[:2], forged["losses"])
    assert not third.summary().equals(first.summary())  # the audit of the forged losses, not the stale one


def _corrupt_nested_json(folder: Path) -> None:
    (folder / "chunk-00001.json").write_text("[" * 100_000 + "]" * 100_000)


def _corrupt_missing_array(folder: Path) -> None:
    arrays = _arrays(folder, "chunk-00001")
    del arrays["losses"]
    _rewrite_item(folder, "chunk-00001", arrays=arrays)


def _corrupt_npz_is_a_folder(folder: Path) -> None:
    (folder / "chunk-00001.npz").unlink()
    (folder / "chunk-00001.npz").mkdir()
    (folder / "chunk-00001.npz" / "x").write_text("x")


def _corrupt_entry_is_a_file(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder)
    folder.write_text("not a folder")


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("corrupt", [_corrupt_nested_json, _corrupt_missing_array, _corrupt_npz_is_a_folder,
                                     _corrupt_entry_is_a_file])
def test_7_corruptions_are_reported_once_and_recomputed(tmp_path, corrupt):
    import warnings

    from fairpriv_lab.cache import CacheWarning
    from fairpriv_lab.experiment import run

    cfg = _tiny()
    first = run(cfg, cache=tmp_path)
    corrupt(tmp_path / first.cache_key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run(cfg, cache=tmp_path)
    assert [type(w.message) for w in caught] == [CacheWarning], [str(w.message) for w in caught]
    assert again.chunks_trained >= 1
    np.testing.assert_array_equal(again.losses, first.losses)
    assert again.summary().equals(first.summary())
    third = run(cfg, cache=tmp_path)  # and it is healthy again
    assert third.from_cache


@pytest.mark.usefixtures("torch_one_thread")
def test_8_disk_full_names_the_path_and_keeps_the_run(tmp_path, monkeypatch):
    import errno

    from fairpriv_lab import cache as cache_mod
    from fairpriv_lab.cache import Cache, CacheWarning
    from fairpriv_lab.exceptions import CacheWriteError
    from fairpriv_lab.experiment import run

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.os, "fsync", full)
    with pytest.raises(CacheWriteError, match=r"The disk holding .* is full: writing x\.npz needs \d[\d,]* bytes "
                                              r"and [\d,]+ are free") as err:
        Cache(tmp_path / "c").save("a" * 64, "x", {"v": np.arange(10)}, {})
    assert err.value.needed > 0 and err.value.path.name == "x.npz" and isinstance(err.value, OSError)
    assert list((tmp_path / "c" / ("a" * 64)).iterdir()) == []  # no temporary left
    cfg = _tiny()
    with pytest.warns(CacheWarning, match=r"is full: writing entry\.json needs .* goes on with the entry and "
                                          r"everything after it in memory; nothing more is cached"):
        res = run(cfg, cache=tmp_path / "r")
    monkeypatch.undo()
    ref = run(cfg, cache=False)
    np.testing.assert_array_equal(res.losses, ref.losses)
    assert res.summary().equals(ref.summary())


@pytest.mark.usefixtures("torch_one_thread")
def test_8_stale_temporaries_are_removed_on_the_next_run(tmp_path):
    import time

    from fairpriv_lab.experiment import run
    from fairpriv_lab.sweep import run_sweep

    cfg = _tiny()
    first = run(cfg, cache=tmp_path)
    folder = tmp_path / first.cache_key
    old, young = folder / ".chunk-00000.npz.k9x.tmp", folder / ".audit.npz.abc.tmp"
    for p in (old, young):
        p.write_bytes(b"half")
    hours_ago = time.time() - 3 * 3600
    os.utime(old, (hours_ago, hours_ago))
    run(cfg, cache=tmp_path)
    assert not old.exists() and young.exists()  # a young one may be a write in progress
    out = tmp_path / "sweep"
    (out / "points").mkdir(parents=True)
    stale = out / "points" / ".point-x.json.123.tmp"
    stale.write_text("{")
    os.utime(stale, (hours_ago, hours_ago))
    run_sweep({"grid": {"epsilon": [1.0]}}, scheduler="sequential", point_fn=_eps_point, out=out, progress=None)
    assert not stale.exists()
