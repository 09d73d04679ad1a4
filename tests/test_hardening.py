"""Hardening (issue 13): untrusted files, resource limits, and bad input that slipped through.

One test (at least) per item of the issue; each failed on the code before the fix. The
Hypothesis test over the public API is ``test_public_api_raises_only_fairpriv_errors``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

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
