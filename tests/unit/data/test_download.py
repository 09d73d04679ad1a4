"""Downloaders against a local HTTP server on 127.0.0.1; no real host is ever contacted."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

import fairpriv_lab as fl
from fairpriv_lab._core.exceptions import ConfigError, DatasetError, DataWarning, DownloadError
from fairpriv_lab.data import download as dl
from fairpriv_lab.data import remote
from fairpriv_lab.data.download import RemoteFile, fetch_file, get_data_home


# --------------------------------------------------------------------------- fixtures
class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, int | None]] = {}
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 (http.server API)
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, body, declared = self.routes.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 whose routes each test sets."""

    class Handler(_Handler):
        routes = {}
        hits = {}

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    class Server:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"

        @staticmethod
        def add(path, body, *, status=200, declared=None):
            Handler.routes[path] = (status, body, declared)
            return f"{Server.base}{path}"

        hits = Handler.hits

    yield Server
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def local_only(monkeypatch, tmp_path):
    """Refuse any URL that is not on 127.0.0.1, and point the cache at a temporary folder."""
    real = dl._open_url

    def guarded(url, timeout):
        host = urlparse(url).hostname
        assert host == "127.0.0.1", f"test tried to contact {url}"
        return real(url, min(timeout, 5.0))

    monkeypatch.setattr(dl, "_open_url", guarded)
    monkeypatch.setenv(dl.ENV_VAR, str(tmp_path / "cache"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_files(server, monkeypatch):
    """A tiny MNIST: 30 training images (3 per digit), 20 test images, served locally."""
    rng = np.random.default_rng(0)
    data = {}
    for prefix, per in (("train", 3), ("t10k", 2)):
        y = np.repeat(np.arange(10), per)
        rng.shuffle(y)
        X = rng.integers(0, 256, size=(len(y), 28, 28))
        data[prefix] = (X, y)
    files = []
    for prefix, (X, y) in data.items():
        for kind, arr in (("images-idx3", X), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte.gz"
            body = _idx(arr)
            files.append(RemoteFile(name, (server.add(f"/mnist/{name}", body),), _sha(body)))
    monkeypatch.setitem(remote.REMOTE_FILES, "mnist", tuple(files))
    return data


# --------------------------------------------------------------------------- good files
def test_mnist_end_to_end_cached_and_verified(server, mnist_files, tmp_path):
    ds = fl.load_dataset("mnist")
    X, y = mnist_files["train"]
    assert ds.n_samples == 30 and ds.n_groups == 10 and ds.image_shape == (1, 28, 28)
    np.testing.assert_allclose(ds.X, X.reshape(30, -1) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y, y)
    np.testing.assert_array_equal(ds.g, y)
    assert ds.group_sizes == {str(d): 3 for d in range(10)}
    cache = tmp_path / "cache" / "mnist"
    assert _files_in(cache) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    hits = dict(server.hits)
    # Second load: from the (re-verified) cache, no request.
    again = fl.load_dataset("mnist")
    assert server.hits == hits
    assert again.checksum == ds.checksum


def test_mnist_splits_and_paper_subsample(mnist_files):
    assert fl.load_dataset("mnist", split="test").n_samples == 20
    assert fl.load_dataset("mnist", split="all").n_samples == 50
    a = fl.load_dataset("mnist", per_class=2, seed=1)
    b = fl.load_dataset("mnist", per_class=2, seed=1)
    c = fl.load_dataset("mnist", per_class=2, seed=2)
    assert a.group_sizes == {str(d): 2 for d in range(10)}
    assert a.checksum == b.checksum != c.checksum
    with pytest.raises(ConfigError, match=r"Expected per_class=4 to be an integer in \[1, 3\]"):
        fl.load_dataset("mnist", per_class=4)
    with pytest.raises(ConfigError, match="Expected split='val' to be one of 'train', 'test', 'all'"):
        fl.load_dataset("mnist", split="val")


def _law_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    race = rng.choice(["white", "black", "hisp", "asian", "other"], size=n, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    df = pd.DataFrame({
        "ID": np.arange(n), "lsat": rng.normal(36, 5, n), "ugpa": rng.normal(3.2, 0.4, n),
        "zfygpa": rng.normal(size=n), "zgpa": rng.normal(size=n),
        "fam_inc": rng.integers(1, 6, n).astype(float), "tier": rng.integers(1, 7, n).astype(float),
        "gender": rng.choice(["male", "female"], n), "fulltime": rng.integers(1, 3, n).astype(float),
        "race1": race, "pass_bar": rng.integers(0, 2, n).astype(float), "bar": "x",
    })
    df.loc[3, "lsat"] = np.nan  # dropped by the loader
    return df


def test_law_csv_end_to_end(server, monkeypatch):
    df = _law_frame()
    body = df.to_csv(index=False).encode()
    url = server.add("/law.csv", body)
    monkeypatch.setitem(remote.REMOTE_FILES, "law", (RemoteFile("bar_pass_prediction.csv", (url,), _sha(body)),))
    ds = fl.load_dataset("law")
    kept = df.drop(index=3)
    white = int((kept["race1"] == "white").sum())
    assert ds.group_sizes == {"White": white, "non-White": len(kept) - white}
    assert ds.class_names == ("failed", "passed")
    np.testing.assert_array_equal(ds.y, kept["pass_bar"].astype(int).to_numpy())
    assert ds.provenance["sha256"] == {"bar_pass_prediction.csv": _sha(body)}
    assert fl.load_dataset("law", group="gender").group_names == ("male", "female")
    with pytest.raises(ConfigError, match="Expected group='sex' to be one of 'race', 'gender'"):
        fl.load_dataset("law", group="sex")


def test_mirror_used_when_first_url_fails(server, monkeypatch, tmp_path):
    body = b"hello"
    bad = server.add("/missing", b"", status=404)
    good = server.add("/ok", body)
    path = fetch_file(RemoteFile("f.txt", (bad, good), _sha(body)), dataset="demo")
    assert path.read_bytes() == body and path == tmp_path / "cache" / "demo" / "f.txt"


def test_file_placed_by_hand_is_used_without_network(server, tmp_path):
    body = b"placed by hand"
    target = tmp_path / "cache" / "demo" / "f.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(body)
    url = f"{server.base}/never"
    assert fetch_file(RemoteFile("f.txt", (url,), _sha(body)), dataset="demo") == target
    assert server.hits == {}


def test_download_dataset_fetches_every_file(mnist_files, tmp_path):
    paths = fl.data.download_dataset("mnist")
    assert [p.name for p in paths] == [f.filename for f in remote.REMOTE_FILES["mnist"]]
    assert all(p.parent == tmp_path / "cache" / "mnist" for p in paths)
    with pytest.raises(ConfigError, match="Expected name='cifar' to be one of 'mnist', 'law'"):
        fl.data.download_dataset("cifar")


# --------------------------------------------------------------------------- failures
def test_bad_checksum_caches_nothing(server, tmp_path):
    url = server.add("/f", b"tampered bytes")
    expected = _sha(b"original bytes")
    with pytest.raises(DownloadError) as info:
        fetch_file(RemoteFile("f.bin", (url,), expected), dataset="demo")
    msg = str(info.value)
    assert f"Downloaded {url} but its sha256 is {_sha(b'tampered bytes')}, expected {expected}" in msg
    assert "nothing was cached" in msg
    assert f"Place the file by hand at {tmp_path / 'cache' / 'demo' / 'f.bin'} with sha256 {expected}" in msg
    assert _files_in(tmp_path / "cache") == []


def test_http_404_names_url_and_manual_path(server, tmp_path):
    url = server.add("/gone", b"", status=404)
    sha = _sha(b"x")
    with pytest.raises(DownloadError) as info:
        fetch_file(RemoteFile("g.csv", (url,), sha), dataset="demo")
    msg = str(info.value)
    assert f"tried {url}: HTTP 404" in msg
    assert f"Place the file by hand at {tmp_path / 'cache' / 'demo' / 'g.csv'} with sha256 {sha}" in msg
    assert _files_in(tmp_path / "cache") == []
    assert isinstance(info.value, OSError) and isinstance(info.value, DatasetError)


def test_truncated_download_caches_nothing(server, tmp_path):
    body = b"0123456789" * 50
    url = server.add("/short", body, declared=1000)
    with pytest.raises(DownloadError, match=r"truncated download") as info:
        fetch_file(RemoteFile("t.bin", (url,), _sha(body + body)), dataset="demo")
    assert url in str(info.value)
    assert _files_in(tmp_path / "cache") == []


def test_offline_names_url_and_where_to_put_the_file(tmp_path):
    url = f"http://127.0.0.1:{_unused_port()}/mnist/train-images-idx3-ubyte.gz"
    sha = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch_file(RemoteFile("train-images-idx3-ubyte.gz", (url,), sha), dataset="mnist")
    msg = str(info.value)
    assert f"tried {url}: " in msg and "refused" in msg.lower()
    target = tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz"
    assert f"If this machine is offline: Place the file by hand at {target} with sha256 {sha}" in msg
    assert _files_in(tmp_path / "cache") == []


def test_offline_through_load_dataset(monkeypatch, tmp_path):
    port = _unused_port()
    files = tuple(
        RemoteFile(f.filename, (f"http://127.0.0.1:{port}/{f.filename}",), f.sha256)
        for f in remote.REMOTE_FILES["law"]
    )
    monkeypatch.setitem(remote.REMOTE_FILES, "law", files)
    with pytest.raises(DownloadError, match="bar_pass_prediction.csv for dataset 'law'"):
        fl.load_dataset("law", data_home=tmp_path / "elsewhere")


def test_corrupted_cache_is_replaced(server, tmp_path):
    body = b"good content"
    url = server.add("/c", body)
    remote_file = RemoteFile("c.txt", (url,), _sha(body))
    path = fetch_file(remote_file, dataset="demo")
    path.write_bytes(b"bit rot")
    with pytest.warns(DataWarning, match="has sha256 .* removed and will be downloaded again"):
        again = fetch_file(remote_file, dataset="demo")
    assert again.read_bytes() == body and server.hits["/c"] == 2


def test_unpinned_file_is_trusted_on_first_use_then_checked(server, tmp_path):
    url = server.add("/u", b"version 1")
    remote_file = RemoteFile("u.txt", (url,), None)
    with pytest.warns(DataWarning, match="No sha256 is pinned for u.txt .*trust on first use"):
        path = fetch_file(remote_file, dataset="demo")
    sums = (tmp_path / "cache" / "demo" / "SHA256SUMS").read_text()
    assert sums == f"{_sha(b'version 1')}  u.txt\n"
    assert fetch_file(remote_file, dataset="demo") == path  # no warning: matches the record
    path.write_bytes(b"version 2")
    with pytest.warns(DataWarning, match="removed and will be downloaded again"):
        assert fetch_file(remote_file, dataset="demo").read_bytes() == b"version 1"
    server.add("/u", b"changed upstream")
    path.unlink()
    with pytest.raises(DownloadError, match="but its sha256 is"):
        fetch_file(remote_file, dataset="demo")
    assert _files_in(tmp_path / "cache" / "demo") == ["SHA256SUMS"]


# --------------------------------------------------------------------------- cache folder
def test_data_home_precedence(monkeypatch, tmp_path):
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home() == tmp_path / "cache"  # from FAIRPRIV_LAB_DATA (fixture)
    monkeypatch.delenv(dl.ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == tmp_path / "home" / ".cache" / "fairpriv-lab"
    with pytest.raises(ConfigError, match="Expected data_home=3 to be a path"):
        get_data_home(3)


def test_remote_file_validation():
    with pytest.raises(ConfigError, match="Expected filename='a/b' to be a plain file name"):
        RemoteFile("a/b", ("http://127.0.0.1/x",), None)
    with pytest.raises(ConfigError, match="Expected urls=.* to be one or more absolute URLs"):
        RemoteFile("a", (), None)
    with pytest.raises(ConfigError, match="Expected sha256='abc' to be 64 hex digits or None"):
        RemoteFile("a", ("http://127.0.0.1/x",), "abc")
    assert RemoteFile("a", "http://127.0.0.1/x", "A" * 64).sha256 == "a" * 64


def test_pinned_checksums_are_well_formed():
    for name, files in remote.REMOTE_FILES.items():
        for f in files:
            assert f.urls[0].startswith("https://"), (name, f.urls[0])
    assert remote.REMOTE_FILES["adult-full"][0].sha256 == fl.data.tabular.ADULT_PROVENANCE["sha256"]["adult.data"]


# --------------------------------------------------------------------------- parsers
def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x01\x02\x08\x01" + b"\x00" * 8))
    with pytest.raises(DatasetError, match="is not an IDX file"):
        remote.read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x01\x02"))
    with pytest.raises(DatasetError, match="holds 2 data bytes, expected 5"):
        remote.read_idx(short)
    notgz = tmp_path / "plain.gz"
    notgz.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="Cannot read IDX file"):
        remote.read_idx(notgz)


def _bank_zip(n=90, seed=0) -> tuple[bytes, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.integers(18, 90, n), "job": rng.choice(["admin.", "technician"], n),
        "marital": rng.choice(["married", "single", "divorced"], n, p=[0.6, 0.3, 0.1]),
        "education": rng.choice(["primary", "tertiary"], n), "default": rng.choice(["no", "yes"], n),
        "balance": rng.integers(-100, 5000, n), "housing": rng.choice(["no", "yes"], n),
        "loan": rng.choice(["no", "yes"], n), "contact": rng.choice(["cellular", "unknown"], n),
        "day": rng.integers(1, 31, n), "month": rng.choice(["may", "jun"], n),
        "duration": rng.integers(0, 900, n), "campaign": rng.integers(1, 5, n),
        "pdays": rng.integers(-1, 300, n), "previous": rng.integers(0, 3, n),
        "poutcome": rng.choice(["unknown", "success"], n), "y": rng.choice(["no", "yes"], n),
    })
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bank-full.csv", df.to_csv(index=False, sep=";"))
        zf.writestr("bank-names.txt", "names")
    return buf.getvalue(), df


def test_bank_zip_end_to_end_unpinned(server, monkeypatch):
    body, df = _bank_zip()
    monkeypatch.setitem(remote.REMOTE_FILES, "bank", (RemoteFile("bank.zip", (server.add("/bank.zip", body),), None),))
    with pytest.warns(DataWarning, match="No sha256 is pinned for bank.zip"):
        ds = fl.load_dataset("bank")
    counts = df["marital"].value_counts()
    assert ds.group_sizes == {k: int(v) for k, v in counts.items()}
    assert ds.group_names[0] == "married"
    assert not any(f.startswith("duration") for f in ds.feature_names)
    np.testing.assert_array_equal(ds.y, (df["y"] == "yes").to_numpy().astype(int))


def _credit_frame(n=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {"ID": np.arange(1, n + 1), "LIMIT_BAL": rng.integers(1, 50, n) * 10000,
            "SEX": rng.choice([1, 2], n, p=[0.4, 0.6]), "EDUCATION": rng.integers(1, 5, n),
            "MARRIAGE": rng.integers(1, 4, n), "AGE": rng.integers(21, 70, n)}
    for k in (0, 2, 3, 4, 5, 6):
        cols[f"PAY_{k}"] = rng.integers(-2, 3, n)
    for k in range(1, 7):
        cols[f"BILL_AMT{k}"] = rng.integers(0, 9000, n)
        cols[f"PAY_AMT{k}"] = rng.integers(0, 900, n)
    cols["default.payment.next.month"] = rng.integers(0, 2, n)
    return pd.DataFrame(cols)


def test_credit_from_csv_placed_by_hand(server, tmp_path):
    df = _credit_frame()
    folder = tmp_path / "cache" / "credit"
    folder.mkdir(parents=True)
    df.to_csv(folder / remote.CREDIT_CSV, index=False)
    ds = fl.load_dataset("credit")
    assert ds.group_sizes == {"Male": int((df.SEX == 1).sum()), "Female": int((df.SEX == 2).sum())}
    assert ds.class_names == ("no default", "default")
    np.testing.assert_array_equal(ds.y, df["default.payment.next.month"].to_numpy())
    assert server.hits == {}


def test_credit_xls_without_xlrd_says_what_to_do(server, monkeypatch, tmp_path):
    body = b"\xd0\xcf\x11\xe0 pretend xls"
    url = server.add("/credit.xls", body)
    monkeypatch.setitem(
        remote.REMOTE_FILES, "credit", (RemoteFile("default_of_credit_card_clients.xls", (url,), _sha(body)),)
    )
    monkeypatch.setitem(sys.modules, "xlrd", None)
    csv = tmp_path / "cache" / "credit" / remote.CREDIT_CSV
    with pytest.raises(DatasetError, match=rf"needs the optional package xlrd \(pip install xlrd\). Or save the sheet as CSV at {csv}"):
        fl.load_dataset("credit")


def _utk_tar(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i, name in enumerate(names):
            data = bytes([i]) * 10
            info = tarfile.TarInfo(f"UTKFace/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_utkface_tarball_end_to_end(server, monkeypatch, tmp_path):
    names = [
        "26_0_0_20170116174525125.jpg.chip.jpg", "30_1_1_20170116174525126.jpg.chip.jpg",
        "41_1_2_20170116174525127.jpg.chip.jpg", "5_0_3_20170116174525128.jpg.chip.jpg",
        "77_1_4_20170116174525129.jpg.chip.jpg", "39_1_20170116174525130.jpg.chip.jpg",
        "61_0_0_20170116174525131.jpg.chip.jpg",
    ]
    body = _utk_tar(names)
    monkeypatch.setitem(remote.REMOTE_FILES, "utkface", (RemoteFile("UTKFace.tar.gz", (server.add("/utk.tgz", body),), _sha(body)),))
    calls = []

    def fake_decoder(size):
        # Stands in for Pillow (not a dependency): pixel value = first byte of the file.
        def decode(data):
            calls.append(data[0])
            return np.full((3, size, size), data[0] * 10, dtype=np.uint8)

        return decode

    monkeypatch.setattr(remote, "_image_decoder", fake_decoder)
    with pytest.warns(DataWarning, match="Skipped 1 UTKFace files"):
        ds = fl.load_dataset("utkface", size=8)
    assert ds.n_samples == 6 and ds.image_shape == (3, 8, 8)
    assert ds.group_sizes == {"White": 2, "Black": 1, "Asian": 1, "Indian": 1, "Others": 1}
    np.testing.assert_array_equal(ds.y, [0, 1, 1, 0, 1, 0])
    np.testing.assert_allclose(ds.X[:, 0], np.array([0, 1, 2, 3, 4, 6]) * 10 / 255.0, rtol=1e-6)
    assert (tmp_path / "cache" / "utkface" / "utkface-8px.npz").is_file()
    calls.clear()
    again = fl.load_dataset("utkface", size=8)  # from the npz cache: nothing decoded
    assert calls == [] and again.checksum == ds.checksum


def test_utkface_without_pillow_fails_before_downloading(server, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DatasetError, match=r"needs the optional package Pillow \(pip install pillow\)"):
        fl.load_dataset("utkface")
    assert server.hits == {}


def test_parse_utkface_name():
    assert remote.parse_utkface_name("UTKFace/1_0_4_2017.jpg.chip.jpg") == (1, 0, 4)
    assert remote.parse_utkface_name("1_2_0_2017.jpg") is None  # gender must be 0 or 1
    assert remote.parse_utkface_name("1_0_5_2017.jpg") is None  # race must be 0..4


def _adult_raw(n_train=12, n_test=8):
    rows = []
    sexes = ["Male", "Female"]
    for i in range(n_train + n_test):
        rows.append(
            f"{20 + i}, Private, {100000 + i}, Bachelors, 13, Never-married, Sales, Not-in-family, "
            f"{'White' if i % 3 else 'Black'}, {sexes[i % 2]}, 0, 0, 40, United-States, "
            f"{'>50K' if i % 4 == 0 else '<=50K'}"
        )
    rows[1] = rows[1].replace("Private", "?")  # a missing value: dropped
    train = "\n".join(rows[:n_train]) + "\n"
    test = "|1x3 Cross validator\n" + "\n".join(r + "." for r in rows[n_train:]) + "\n"
    return train.encode(), test.encode()


def test_adult_full_from_raw_files(server, monkeypatch):
    train, test = _adult_raw()
    monkeypatch.setitem(remote.REMOTE_FILES, "adult-full", (
        RemoteFile("adult.data", (server.add("/adult.data", train),), _sha(train)),
        RemoteFile("adult.test", (server.add("/adult.test", test),), _sha(test)),
    ))
    ds = fl.load_dataset("adult-full", group="race")
    assert ds.n_samples == 19 and ds.name == "adult-full"
    assert ds.group_names == ("White", "non-White")
    assert int(ds.y.sum()) == 5  # rows 0, 4, 8, 12, 16 earn >50K (row 1 dropped)


def _shared_adult() -> Path | None:
    root = Path(__file__).resolve().parents[3]
    for cand in (root.parent / "shared" / "data", root.parent.parent / "shared" / "data"):
        if (cand / "adult.data").is_file() and (cand / "adult.test").is_file():
            return cand
    return None


def test_adult_full_real_files_match_pinned_sha_and_bundled_copy(server, monkeypatch):
    shared = _shared_adult()
    if shared is None:
        pytest.skip("the project's shared/data copy of UCI Adult is not beside the repository")
    files = []
    for f in remote.REMOTE_FILES["adult-full"]:
        body = (shared / f.filename).read_bytes()
        # URLs only are redirected: the real pinned sha256 must match the real files.
        files.append(RemoteFile(f.filename, (server.add(f"/{f.filename}", body),), f.sha256))
    monkeypatch.setitem(remote.REMOTE_FILES, "adult-full", tuple(files))
    full = fl.load_dataset("adult-full", group="sex")
    bundled = fl.load_dataset("adult", group="sex")
    assert full.group_sizes == bundled.group_sizes == {"Male": 30527, "Female": 14695}
    np.testing.assert_array_equal(full.y, bundled.y)
    np.testing.assert_array_equal(full.g, bundled.g)
    np.testing.assert_allclose(full.X, bundled.X, atol=1e-5)
