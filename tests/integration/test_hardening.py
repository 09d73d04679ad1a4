"""Hardening (issue 13): untrusted files, resource limits, and bad input that slipped through.

One test (at least) per item of the issue; each failed on the code before the fix. The
Hypothesis test over the public API is ``test_public_api_raises_only_fairpriv_errors``.
"""

from __future__ import annotations

import base64
import gc
import json
import os
from pathlib import Path

import numpy as np
import pytest

from fairpriv_lab._core.exceptions import ConfigError, FairPrivError

DATA = Path(__file__).parents[1] / "data"


# ---------------------------------------------------------------- 1-3: parameter and grid files
def test_1_parameter_file_cannot_run_code_in_the_kernel(tmp_path):
    """A !!binary value holding '"' used to be written unescaped into papermill's cell."""
    from fairpriv_lab.sweep.notebook_runs import load_parameter_sets, run_notebooks

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
    from fairpriv_lab.sweep.notebook_tools import execute_notebook

    with pytest.raises(ConfigError, match="Expected parameters.x=b'1' to be a JSON value"):
        execute_notebook(DATA / "tiny_params.ipynb", parameters={"x": b"1"})


def test_2_list_parameters_arrive_as_lists():
    from papermill.translators import PythonTranslator

    from fairpriv_lab.sweep.notebook_runs import load_parameter_sets

    sets = load_parameter_sets("base: {epsilons: [1.0, 8.0], opts: {a: [1, [2, 3]]}}\ngrid: {x: [[1, 2], [3]]}\n")
    assert sets == [{"epsilons": [1.0, 8.0], "opts": {"a": [1, [2, 3]]}, "x": [1, 2]},
                    {"epsilons": [1.0, 8.0], "opts": {"a": [1, [2, 3]]}, "x": [3]}]
    assert type(sets[0]["epsilons"]) is list and type(sets[0]["x"]) is list
    code = PythonTranslator.codify(sets[0])
    assert "epsilons = [1.0, 8.0]" in code and "x = [1, 2]" in code



@pytest.mark.timeout(60)
def test_3_yaml_alias_bomb_and_huge_files_are_refused(tmp_path):
    from fairpriv_lab.sweep import grid as _grid
    from fairpriv_lab.sweep.runner import Grid, run_sweep

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
    from fairpriv_lab.experiment.cache import CacheWarning
    from fairpriv_lab.sweep.runner import run_sweep

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
def test_5_local_cluster_uses_tls_with_temporary_credentials(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    from distributed import Client, Security

    from fairpriv_lab.sweep import executor
    from fairpriv_lab.sweep.executor import open_client
    from fairpriv_lab.sweep.runner import run_sweep

    res = run_sweep({"grid": {"x": [1]}}, n_workers=1, point_fn=_worker_address, progress=None)
    assert res.table["worker_address"].str.startswith("tls://127.0.0.1:").all()
    # the GPU machine's cluster (a SpecCluster, one pinned worker per GPU) takes the same TLS
    monkeypatch.setattr(executor, "gpu_count", lambda: 1)
    with open_client(None, 1) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:") and executor.cluster_has_gpus(client)
        assert client.submit(int, "7", resources={"GPU": 1}).result() == 7
    monkeypatch.undo()
    with open_client(None, 1) as client:
        address = client.scheduler.address
        for other in (None, Security(), Security.temporary()):  # no credentials, or others'
            with pytest.raises(Exception):  # noqa: B017 - refused at the TLS layer, any error type
                Client(address, security=other, timeout=3, set_as_default=False)
            # A refused Client sits in a reference cycle; collected later, its __del__ could run
            # inside the next Client's loop start and deadlock distributed's LoopRunner (seen once
            # in CI: Client.__del__ -> LoopRunner.stop within LoopRunner._start_unlocked).
            gc.collect()
    with open_client(None, 1, security=False) as client:  # opting out: plain TCP on loopback
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")


def test_5_tls_options_of_the_sweep_command(tmp_path, capsys):
    from fairpriv_lab.cli.sweep import sweep_command
    from fairpriv_lab.sweep.executor import resolve_security, tls_security

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
from test_integration import TINY  # noqa: E402 - the tiny experiment of the integration tests (same folder)


def _tiny():
    from fairpriv_lab.experiment.runner import ExperimentConfig

    return ExperimentConfig.from_dict(TINY)


def _rewrite_item(folder: Path, item: str, *, arrays=None, meta=None) -> None:
    """Forge a cache item with valid checksums: what an attacker (or a careless tool) can do."""
    import io

    from fairpriv_lab.experiment.config import digest

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
    from fairpriv_lab.experiment.cache import CacheWarning
    from fairpriv_lab.experiment.runner import run

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

    from fairpriv_lab.experiment.cache import CacheWarning
    from fairpriv_lab.experiment.runner import run

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

    from fairpriv_lab._core.exceptions import CacheWriteError
    from fairpriv_lab.experiment.cache import Cache, CacheWarning
    from fairpriv_lab.experiment.runner import run

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # every atomic write goes through os.fsync
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

    from fairpriv_lab.experiment.runner import run
    from fairpriv_lab.sweep.runner import run_sweep

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


# ---------------------------------------------------------------- 9: downloads
@pytest.fixture
def http(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1: routes map a path to (body, declared length, delay per byte)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    routes: dict[str, tuple[bytes, int | None, float]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            body, declared, delay = routes[self.path]
            self.send_response(200)
            if declared is not None:
                self.send_header("Content-Length", str(declared))
            self.end_headers()
            try:
                if delay:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(delay)
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("FAIRPRIV_LAB_DATA", str(tmp_path / "data"))

    def add(path, body, declared=None, delay=0.0):
        routes[path] = (body, declared, delay)
        return f"http://127.0.0.1:{httpd.server_address[1]}{path}"

    yield add
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.timeout(60)
def test_9_download_deadline_cuts_off_a_trickle(http, tmp_path):
    import time

    from fairpriv_lab._core.exceptions import DownloadError
    from fairpriv_lab.data.download import RemoteFile, fetch_file

    url = http("/slow", b"x" * 200, declared=200, delay=0.05)  # 20 bytes/s: every read is quick
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="longer than its deadline of 1 s"):
        fetch_file(RemoteFile("slow.bin", (url,), "0" * 64), dataset="demo", timeout=3, deadline=1)
    assert time.monotonic() - t0 < 5
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == []


def test_9_size_cap_and_truncated_unpinned_archives_are_refused(http, tmp_path):
    from fairpriv_lab._core.exceptions import DownloadError
    from fairpriv_lab.data import download as dl
    from fairpriv_lab.data.download import RemoteFile, fetch_file

    big = http("/big", b"y" * 5000)  # no Content-Length
    with pytest.raises(DownloadError, match="larger than the 1,000 bytes allowed"):
        fetch_file(RemoteFile("big.bin", (big,), None, max_bytes=1000), dataset="demo")
    announced = http("/announced", b"y" * 10, declared=10_000)
    with pytest.raises(DownloadError, match="announces 10,000 bytes, more than the 1,000 allowed"):
        fetch_file(RemoteFile("a.bin", (announced,), None, max_bytes=1000), dataset="demo")
    body = _zip_bytes({"bank-full.csv": b"a;b\n" * 2000})
    cut = http("/cut.zip", body[: len(body) // 2])  # truncated, and no Content-Length to tell
    with pytest.raises(DownloadError, match="not a complete .zip file"):
        fetch_file(RemoteFile("bank.zip", (cut,), None), dataset="demo")
    assert not (tmp_path / "data" / "demo" / "SHA256SUMS").exists()  # nothing trusted
    assert dl.DEFAULT_MAX_BYTES == 256 << 20 and RemoteFile("x", ("http://h/x",), None).max_bytes is None
    with pytest.warns(Warning, match="trust on first use"):  # the whole archive is accepted
        fetch_file(RemoteFile("bank.zip", (http("/ok.zip", body),), None), dataset="demo")


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"UTKFace/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _serve_utk(http, monkeypatch, body):
    import hashlib

    from fairpriv_lab.data import remote
    from fairpriv_lab.data.download import RemoteFile

    url = http("/utk.tgz", body)
    monkeypatch.setitem(remote.REMOTE_FILES, "utkface",
                        (RemoteFile("UTKFace.tar.gz", (url,), hashlib.sha256(body).hexdigest()),))


def test_9_archive_members_and_image_bombs_are_bounded(http, monkeypatch, tmp_path):
    import io

    PIL = pytest.importorskip("PIL.Image")
    import fairpriv_lab as fl
    from fairpriv_lab._core.exceptions import DatasetError

    # a 64 MiB member (compressed to ~64 kB) is refused before it is read into memory
    _serve_utk(http, monkeypatch, _tar_bytes({"26_0_0_1.jpg.chip.jpg": bytes(64 << 20 | 1)}))
    with pytest.raises(DatasetError, match=r"member UTKFace/26_0_0_1\.jpg\.chip\.jpg is 67,108,865 bytes"):
        fl.load_dataset("utkface", size=8)
    # an image over Pillow's pixel limit: a clear DatasetError naming the member, not a raw Pillow error
    buf = io.BytesIO()
    PIL.new("RGB", (64, 64)).save(buf, format="JPEG")
    monkeypatch.setenv("FAIRPRIV_LAB_DATA", str(tmp_path / "other"))
    _serve_utk(http, monkeypatch, _tar_bytes({"30_1_1_2.jpg.chip.jpg": buf.getvalue()}))
    monkeypatch.setattr(PIL, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DatasetError, match=r"30_1_1_2\.jpg\.chip\.jpg: decompression bomb refused by Pillow"):
        fl.load_dataset("utkface", size=8)


def test_9_derived_utkface_cache_is_verified(http, monkeypatch, tmp_path):
    import io

    PIL = pytest.importorskip("PIL.Image")
    import fairpriv_lab as fl
    from fairpriv_lab._core.exceptions import DataWarning

    members = {}
    for i in range(10):  # every ethnicity twice
        name = f"{20 + i}_{i % 2}_{i % 5}_{i}.jpg.chip.jpg"
        buf = io.BytesIO()
        PIL.new("RGB", (20, 20), color=(40 * i, 80, 120)).save(buf, format="JPEG")
        members[name] = buf.getvalue()
    _serve_utk(http, monkeypatch, _tar_bytes(members))
    ds = fl.load_dataset("utkface", size=8)
    npz = tmp_path / "data" / "utkface" / "utkface-8px.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # bit rot in the middle
    npz.write_bytes(bytes(data))
    with pytest.warns(DataWarning, match=r"utkface-8px\.npz failed verification \(sha256 mismatch\); rebuilding"):
        again = fl.load_dataset("utkface", size=8)
    assert again.checksum == ds.checksum
    assert fl.load_dataset("utkface", size=8).checksum == ds.checksum  # rebuilt cache verifies


def test_8_stale_download_parts_are_removed(http, tmp_path):
    import time

    from fairpriv_lab.data.download import RemoteFile, fetch_file

    folder = tmp_path / "data" / "demo"
    folder.mkdir(parents=True)
    stale = folder / ".f.bin.x1y2.part"
    stale.write_bytes(b"half a download")
    long_ago = time.time() - 3 * 3600
    os.utime(stale, (long_ago, long_ago))
    body = b"payload"
    import hashlib

    fetch_file(RemoteFile("f.bin", (http("/f", body),), hashlib.sha256(body).hexdigest()), dataset="demo")
    assert sorted(p.name for p in folder.iterdir()) == ["f.bin"]


# ---------------------------------------------------------------- 10: silently wrong
def _frame(n=40):
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"age": rng.integers(18, 80, n).astype(float), "job": rng.choice(["a", "b"], n),
                         "sex": rng.choice(["F", "M"], n), "y": rng.choice(["yes", "no"], n)})


@pytest.mark.parametrize("change, kwargs, message", [
    (None, {"positive_label": "Yes"}, r"Expected positive_label='Yes' to be one of the values of column 'y': "
                                      r"no, yes\. Did you mean 'yes'\?"),
    ("one_class", {}, r"Expected target='y' to hold at least two classes \(column 'y' holds only \['yes'\]\)"),
    (None, {"numeric": ["age", "y"]}, r"Expected numeric=\['age', 'y'\] not to include the target column 'y'"),
    (None, {"categorical": ["job", "y"]}, r"Expected categorical=\['job', 'y'\] not to include the target"),
])
def test_10_from_pandas_refuses_silently_wrong_labels(change, kwargs, message):
    from fairpriv_lab.data import from_pandas

    df = _frame()
    if change == "one_class":
        df["y"] = "yes"
    with pytest.raises(ConfigError, match=message):
        from_pandas(df, target="y", group="sex", **kwargs)
    ok = from_pandas(_frame(), target="y", group="sex", positive_label="yes")
    assert 0 < ok.y.sum() < ok.n_samples


def test_10_duplicate_records_and_bad_ipr_are_refused():
    from fairpriv_lab.audit.attacks import RecordRisk, record_risk
    from fairpriv_lab.audit.risk import GroupRisk
    from fairpriv_lab.games import half_split_game

    game = half_split_game(6, n_models=8, seed=0)
    losses = np.random.default_rng(0).random((8, 6))
    with pytest.raises(ConfigError, match="Expected records='an array with repeated records' to list each"):
        record_risk(losses, game.membership, records=np.array([0, 1, 1, 2]))

    def rr(ipr, records=(0, 1, 2)):
        ipr = np.asarray(ipr, float)
        return RecordRisk(np.asarray(records), np.zeros(len(records), int), (ipr + 1) / 2, ipr, np.zeros_like(ipr),
                          "PA-ALOOA", "cross_fit")

    with pytest.raises(ConfigError, match=r"NaN, infinite or out-of-range entries' to hold fractions in"):
        GroupRisk(rr([0.1, np.nan, 0.2]), ["a"])
    with pytest.raises(ConfigError, match=r"Expected accuracy=.* to hold fractions in \[-0\.5, 1\.5\]\. RecordRisk "
                                          r"values are fractions .*, not percent"):
        GroupRisk(rr([10.0, 20.0, 30.0]), ["a"])  # percent passed as fractions
    with pytest.raises(ConfigError, match="to hold each audited record once"):
        rr([0.1, 0.2, 0.3], records=(4, 4, 5))


@pytest.mark.usefixtures("torch_one_thread")
def test_10_huge_learning_rate_is_a_divergence_not_garbage():
    from fairpriv_lab._core.exceptions import TrainingDivergedError
    from fairpriv_lab.data import load_dataset
    from fairpriv_lab.engine.training import train_ensemble
    from fairpriv_lab.games import half_split_game

    ds = load_dataset("synthetic", n=200, seed=0)
    game = half_split_game(ds.n_samples, n_models=2, seed=0)
    with pytest.raises(TrainingDivergedError, match=r"Model \d diverged \(exploding loss, mean .* nats\) in epoch 0"):
        train_ensemble(ds, game.membership, model="lr", method="dpsgd", noise_multiplier=1.0, epochs=2,
                       batch_size=20, lr=1e30, device="cpu", seed=0)
    res = train_ensemble(ds, game.membership, model="lr", epochs=2, batch_size=20, lr=5.0, device="cpu", seed=0)
    assert np.isfinite(res.losses).all()  # a large but sane lr trains


# ---------------------------------------------------------------- 11: raw tracebacks
def test_11_bad_inputs_that_raised_raw_tracebacks():
    import pandas as pd

    from fairpriv_lab.data import from_pandas, load_dataset
    from fairpriv_lab.experiment.runner import AuditConfig, DataConfig, ExperimentConfig, run
    from fairpriv_lab.games import aloo_game

    with pytest.raises(ConfigError, match="Expected seed=-1 to be an integer >= 0"):
        load_dataset("synthetic", seed=-1)
    with pytest.raises(ConfigError, match="Expected seed=-3 to be an integer >= 0"):
        aloo_game(np.zeros(10, int), n_models=2, m=2, seed=-3)
    with pytest.raises(ConfigError, match=r"Expected data.options grup_sizes=\[0.5, 0.5\] to name an option of the "
                                          r"'synthetic' loader \(group_sizes, separation"):
        DataConfig(name="synthetic", options={"grup_sizes": [0.5, 0.5]})
    with pytest.raises(ConfigError, match=r"Expected kwargs colour=True to name an option of the 'digits' loader \(none\)"):
        load_dataset("digits", colour=True)
    with pytest.raises(ConfigError, match="Expected audit.auditors=None to name one or more of PA-ALOOA"):
        AuditConfig(auditors=None)
    with pytest.raises(ConfigError, match=r"Expected progress=5 to be None or a callable progress\(stage, done, total\)"):
        run(ExperimentConfig(), progress=5, cache=False)
    df = _frame()
    with pytest.raises(ConfigError, match=r"Expected numeric='job' to name numeric columns \(column 'job' has dtype "
                                          r"(object|str)\)\. Put it in categorical= instead"):
        from_pandas(df, target="y", group="sex", numeric=["age", "job"], positive_label="yes")
    dup = pd.concat([df, df[["age"]]], axis=1)
    with pytest.raises(ConfigError, match="Expected df='a frame with duplicate columns age' to have unique column names"):
        from_pandas(dup, target="y", group="sex", positive_label="yes")


# ---------------------------------------------------------------- 12: hangs
@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides, message", [
    ({"train.epochs": 10**9}, r"This run would take about [\d,]+ days on cpu"),
    ({"game.n_models": 200_000}, r"This run needs about [\d.]+ GB of memory but"),
])
def test_12_absurd_sizes_are_refused_before_training(overrides, message, monkeypatch):
    """The engine's planner (plan(config), run by run() first) refuses them in milliseconds."""
    from fairpriv_lab.experiment import runner
    from fairpriv_lab.experiment.runner import ExperimentConfig, run

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded: the refusal came too late")

    monkeypatch.setattr(runner, "load_experiment_data", no_data)
    with pytest.raises(ConfigError, match=message):
        run(ExperimentConfig(device="cpu").replace(**overrides), cache=False)


# ---------------------------------------------------------------- 11: property test over the public API
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# 500 examples in CI within a minute: validation-level calls on tiny inputs, no deadline
# (a loaded machine must not fail the test), derandomized so a failure reproduces.
settings.register_profile("fairpriv-fuzz", max_examples=int(os.environ.get("FAIRPRIV_FUZZ_EXAMPLES", "500")),
                          deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([0, 1, 2, -1, 3, 4]),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                     st.sampled_from(["adult", "synthetic", "digits", "mlp", "lr", "cnn", "dpsgd", "sgd", "aloo",
                                      "half", "loo", "PA-ALOOA", "PA-GA", "cpu", "auto", "sex", "race"]))


def _nested(kids):
    return st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids, max_size=3))


_VALUES = st.recursive(_SCALARS, _nested, max_leaves=6)


def _config_keys():
    from fairpriv_lab.experiment.runner import ExperimentConfig

    cfg = ExperimentConfig.from_dict(TINY)
    return sorted(k for section, d in cfg.to_dict().items() if isinstance(d, dict) for k in
                  (f"{section}.{f}" for f in d)) + ["seed", "device", "chunk_models", "epsilon", "dataset", "nope"]


_KEYS = st.sampled_from(_config_keys())


def _call_config(overrides):
    from fairpriv_lab.experiment.runner import ExperimentConfig

    cfg = ExperimentConfig.from_dict(TINY).replace(**overrides)
    return ExperimentConfig.from_dict(cfg.to_dict()) == cfg and cfg.digest


def _call_from_dict(d):
    from fairpriv_lab.experiment.runner import ExperimentConfig

    return ExperimentConfig.from_dict(d)


def _call_grid(text):
    from fairpriv_lab.sweep.runner import Grid

    return Grid.from_yaml(text, config_class="experiment").points()


def _call_parameter_sets(text):
    from fairpriv_lab.sweep.notebook_runs import load_parameter_sets

    return load_parameter_sets(text)


def _call_game(kind, n, n_models, m, seed):
    from fairpriv_lab import games

    g = np.arange(n) % 2 if isinstance(n, int) and 0 <= n < 50 else n
    if kind == "aloo":
        return games.aloo_game(g, n_models=n_models, m=m, seed=seed)
    if kind == "half":
        return games.half_split_game(n, n_models=n_models, seed=seed)
    return games.loo_game(n, m, n_pairs=n_models, seed=seed)


def _call_audit(n_models, n, records, groups, estimator, seed, scale):
    from fairpriv_lab.audit.attacks import global_risk, record_risk
    from fairpriv_lab.audit.risk import GroupRisk

    rng = np.random.default_rng(0)
    mem = np.zeros((n_models, n), bool)
    for p in range(n_models // 2):
        half = rng.permutation(n)[: n // 2]
        mem[2 * p, half] = True
        mem[2 * p + 1] = ~mem[2 * p]
    losses = rng.random((n_models, n)) * scale
    rr = record_risk(losses, mem, records=records, groups=groups, estimator=estimator, seed=seed)
    global_risk(losses, mem, records=rr.records, groups=groups, seed=seed)
    return GroupRisk(rr, ["a", "b", "c"], n_boot=5, seed=seed, min_group_size=1).by_group


def _call_from_pandas(columns, target, group, numeric, positive_label):
    import pandas as pd

    from fairpriv_lab.data import from_pandas

    df = pd.DataFrame({name: values for name, values in columns})
    return from_pandas(df, target=target, group=group, numeric=numeric, positive_label=positive_label)


_COLUMN = st.tuples(st.sampled_from(["a", "b", "y", "g"]),
                    st.one_of(st.lists(st.sampled_from(["x", "yes", "Yes", "no"]), min_size=6, max_size=6),
                              st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=6, max_size=6),
                              st.lists(st.integers(-3, 3), min_size=6, max_size=6),
                              st.lists(st.booleans(), min_size=6, max_size=6)))

_CALLS = st.one_of(
    st.builds(_call_config, st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=3)),
    st.builds(_call_from_dict, st.dictionaries(st.sampled_from(["data", "train", "game", "audit", "seed", "x"]),
                                               _VALUES, max_size=3)),
    st.builds(_call_grid, st.one_of(
        st.text(max_size=40),
        st.builds(lambda k, v: f"grid: {{{k}: {json.dumps(v)}}}\n", _KEYS,
                  st.lists(_SCALARS.filter(lambda x: not isinstance(x, float)), max_size=2)),
        st.builds(lambda k, v: f"base: {{{k}: {json.dumps(v)}}}\npoints: [{{}}]\n", _KEYS,
                  _VALUES.filter(lambda x: not isinstance(x, float))))),
    st.builds(_call_parameter_sets, st.one_of(st.text(max_size=40), st.sampled_from(
        ["- {x: !!binary AAAA}", "- {x: 2020-01-01}", "- {x: !!set {a: null}}", "- [1, 2]", "base: {x: [1, [2]]}"]))),
    st.builds(_call_game, st.sampled_from(["aloo", "half", "loo"]), _SCALARS, _SCALARS, _SCALARS, _SCALARS),
    st.builds(_call_audit, st.sampled_from([2, 4, 6]), st.sampled_from([6, 8]),
              st.one_of(st.none(), st.lists(st.integers(-2, 9), max_size=5).map(np.array), _SCALARS),
              st.one_of(st.none(), st.lists(st.integers(-1, 3), min_size=6, max_size=8).map(np.array)),
              st.sampled_from(["cross_fit", "in_sample", "bogus"]), st.one_of(st.none(), st.integers(-2, 3)),
              st.sampled_from([1.0, 0.0, np.nan, np.inf, -1.0])),
    st.builds(_call_from_pandas, st.lists(_COLUMN, min_size=1, max_size=4, unique_by=lambda c: c[0]),
              st.sampled_from(["y", "a", "zz"]), st.sampled_from(["g", "a", "y"]),
              st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "y", "g"]), max_size=2)),
              st.one_of(st.none(), st.sampled_from(["yes", "Yes", 1, True]))),
)


@settings.get_profile("fairpriv-fuzz")
@given(call=st.data())
def test_public_api_raises_only_fairpriv_errors(call):
    """A ConfigError/FairPrivError or a valid result, never anything else (issue 13, item 11)."""
    import warnings

    from fairpriv_lab._core.exceptions import DataWarning, PrivacyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # legitimate warnings about the input
        warnings.simplefilter("ignore", PrivacyWarning)
        try:
            call.draw(_CALLS)
        except FairPrivError:
            pass
