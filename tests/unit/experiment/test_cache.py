import json
from pathlib import Path

import numpy as np
import pytest

from fairpriv_lab._core.exceptions import CacheCorruptedError, ConfigError
from fairpriv_lab.experiment.cache import CACHE_FORMAT, Cache, CacheWarning, default_cache_dir


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "c")


def _key(cache, n=1):
    return cache.key({"n": n}, dataset_checksum="d" * 64)


def test_round_trip_and_read_only(cache):
    key = _key(cache)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    names = np.array(["a", "bb"])
    cache.save(key, "chunk-00000", {"x": x, "names": names}, {"rows": (0, 2), "eps": 1.5})
    item = cache.load(key, "chunk-00000")
    np.testing.assert_array_equal(item.arrays["x"], x)
    assert item.arrays["x"].dtype == np.float32
    assert item.arrays["names"].tolist() == ["a", "bb"]
    assert item.meta == {"rows": [0, 2], "eps": 1.5}
    assert not item.arrays["x"].flags.writeable
    assert cache.items(key) == ["chunk-00000"]
    assert cache.has(key, "chunk-00000") and not cache.has(key, "chunk-00001")
    assert cache.load(key, "chunk-00001") is None


def test_key_depends_on_config_dataset_and_format(cache):
    a = cache.key({"n": 1, "m": 2}, dataset_checksum="x")
    assert a == cache.key({"m": 2, "n": 1}, dataset_checksum="x")  # key order irrelevant
    assert a != cache.key({"n": 1, "m": 3}, dataset_checksum="x")
    assert a != cache.key({"n": 1, "m": 2}, dataset_checksum="y")
    assert len(a) == 64 and CACHE_FORMAT >= 1


def test_json_only_item(cache):
    key = _key(cache)
    cache.save(key, "entry", None, {"label": "hello"})
    assert cache.load(key, "entry").arrays == {}
    assert cache.list()[0].label == "hello"


def test_no_pickle_on_save(cache):
    with pytest.raises(ConfigError, match="no pickle"):
        cache.save(_key(cache), "bad", {"o": np.array([{}, 1], dtype=object)}, {})


@pytest.mark.parametrize("how", ["truncate", "flip", "delete_npz", "json_edit", "json_garbage"])
def test_corruption_detected_reported_and_removed(cache, how):
    key = _key(cache)
    cache.save(key, "chunk-00000", {"x": np.arange(1000.0)}, {"rows": [0, 2]})
    npz = cache.root / key / "chunk-00000.npz"
    js = cache.root / key / "chunk-00000.json"
    if how == "truncate":
        npz.write_bytes(npz.read_bytes()[:-100])
        bad = npz
    elif how == "flip":
        data = bytearray(npz.read_bytes())
        data[len(data) // 2] ^= 0xFF
        npz.write_bytes(bytes(data))
        bad = npz
    elif how == "delete_npz":
        npz.unlink()
        bad = npz
    elif how == "json_edit":
        rec = json.loads(js.read_text())
        rec["meta"]["rows"] = [0, 4]
        js.write_text(json.dumps(rec))
        bad = js
    else:
        js.write_text("{not json")
        bad = js
    with pytest.warns(CacheWarning, match=str(bad.name)):
        assert cache.load(key, "chunk-00000") is None
    assert not js.exists() and not npz.exists()  # removed so the caller recomputes
    assert cache.load(key, "chunk-00000") is None  # now simply missing, no second warning


def test_on_corrupt_raise(cache):
    key = _key(cache)
    cache.save(key, "a", {"x": np.arange(10)}, {})
    p = cache.root / key / "a.npz"
    p.write_bytes(p.read_bytes()[:20])
    strict = Cache(cache.root, on_corrupt="raise")
    with pytest.raises(CacheCorruptedError, match="a.npz.*truncated"):
        strict.load(key, "a")


def test_json_from_other_key_is_rejected(cache):
    k1, k2 = _key(cache, 1), _key(cache, 2)
    cache.save(k1, "a", None, {"v": 1})
    (cache.root / k2).mkdir(parents=True)
    (cache.root / k2 / "a.json").write_bytes((cache.root / k1 / "a.json").read_bytes())
    with pytest.warns(CacheWarning, match="another key"):
        assert cache.load(k2, "a") is None


def test_atomic_write_leaves_no_temp_files(cache):
    key = _key(cache)
    for i in range(3):
        cache.save(key, "a", {"x": np.full(5, i)}, {"i": i})
    files = sorted(p.name for p in (cache.root / key).iterdir())
    assert files == ["a.json", "a.npz"]
    assert cache.load(key, "a").meta == {"i": 2}


def test_list_size_and_clear(cache, tmp_path):
    k1, k2 = _key(cache, 1), _key(cache, 2)
    cache.save(k1, "entry", None, {"label": "one"})
    cache.save(k1, "chunk-00000", {"x": np.zeros(100)}, {})
    cache.save(k2, "entry", None, {"label": "two"})
    (cache.root / "keep.txt").write_text("not a cache entry")
    entries = {e.key: e for e in cache.list()}
    assert set(entries) == {k1, k2}
    assert entries[k1].items == ("chunk-00000",) and entries[k1].label == "one"
    assert cache.size_bytes() == sum(e.size_bytes for e in entries.values()) > 800
    freed = cache.clear(k1[:10])
    assert freed == entries[k1].size_bytes
    assert [e.key for e in cache.list()] == [k2]
    with pytest.raises(ConfigError, match="match exactly one"):
        cache.clear("ffff")
    cache.clear()
    assert cache.list() == [] and (cache.root / "keep.txt").exists()


def test_bad_names(cache):
    with pytest.raises(ConfigError, match="Expected key='nope'"):
        cache.load("nope", "a")
    with pytest.raises(ConfigError, match="Expected item='../x'"):
        cache.load(_key(cache), "../x")


def test_default_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRPRIV_LAB_CACHE", str(tmp_path / "z"))
    assert default_cache_dir() == tmp_path / "z"
    assert Cache().root == tmp_path / "z"
    monkeypatch.delenv("FAIRPRIV_LAB_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "fairpriv-lab" / "results"


def test_calibration_memo_serves_sigma_across_sessions(tmp_path, monkeypatch):
    """issue 16: sigma calibration is remembered on disk; a new session does not recompute it."""
    from fairpriv_lab.engine import privacy
    from fairpriv_lab.experiment.cache import CalibrationMemo

    memo = CalibrationMemo(tmp_path)
    old = privacy.set_calibration_store(memo)
    try:
        sigma = privacy.calibrate_noise(4.0, sample_rate=0.05, steps=200, delta=1e-5)
        files = list((tmp_path / "calibration").glob("*.json"))
        assert len(files) == 1
        # a new session: the accountant must not be asked again

        def boom(*args, **kwargs):
            raise AssertionError("calibrated again instead of reading the disk memo")

        monkeypatch.setattr(privacy, "calibrate_effective_noise", boom)
        assert privacy.calibrate_noise(4.0, sample_rate=0.05, steps=200, delta=1e-5) == sigma
        # another question is not served from the memo
        with pytest.raises(AssertionError, match="calibrated again"):
            privacy.calibrate_noise(4.0, sample_rate=0.05, steps=201, delta=1e-5)
        # a tampered file (another question) is ignored
        q = {"target_epsilon": 1.0}
        memo.put(q, 2.0)
        path = next(p for p in (tmp_path / "calibration").glob("*.json") if p != files[0])
        path.write_text(path.read_text().replace('"target_epsilon":1.0', '"target_epsilon":9.0')
                        .replace('"target_epsilon": 1.0', '"target_epsilon": 9.0'))
        assert memo.get(q) is None
    finally:
        privacy.set_calibration_store(old)


def test_cached_audits_are_named_with_the_audit_version():
    """An audit cached before the audit's draws changed (version 1) is not served after it."""
    from fairpriv_lab.experiment.config import ExperimentConfig, digest
    from fairpriv_lab.experiment.runner import AUDIT_VERSION, _audit_item

    cfg = ExperimentConfig()
    v1 = "audit-" + digest({"audit": cfg.audit.to_dict(), "delta": 1e-5})[:20]
    assert AUDIT_VERSION >= 2 and _audit_item(cfg, 1e-5) != v1
    assert _audit_item(cfg, 1e-5) == _audit_item(ExperimentConfig(), 1e-5)
    assert _audit_item(cfg, 1e-5) != _audit_item(cfg.replace(estimator="in_sample"), 1e-5)
