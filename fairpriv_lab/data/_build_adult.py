"""Build ``_files/adult_preprocessed.npz`` from ``_files/adult.csv.gz`` (run after changing either).

    python -m fairpriv_lab.data._build_adult

The arrays are those of the pandas path of :func:`fairpriv_lab.data.load_adult` with
``standardize=False`` (raw numeric columns: the loader z-scores them at load time, and the
experiment pipeline fits that scaler on the held-out split only), stored compactly (numeric columns, one category code per categorical column) so that loading the
bundled Adult data needs neither pandas nor the one-hot encoding at run time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from .tabular import ADULT_CATEGORICAL, ADULT_NUMERIC, ADULT_PREBUILT, load_adult, read_adult_frame


def build(path: Path | None = None) -> Path:
    root = resources.files("fairpriv_lab.data")
    target = Path(str(root.joinpath(ADULT_PREBUILT))) if path is None else Path(path)
    frame = read_adult_frame()
    ds = {g: load_adult(group=g, frame=frame, standardize=False) for g in ("sex", "race5")}
    X = ds["sex"].X
    names = ds["sex"].feature_names
    k = len(ADULT_NUMERIC)
    assert names[:k] == ADULT_NUMERIC
    columns = [n.split("=", 1)[0] for n in names[k:]]
    assert list(dict.fromkeys(columns)) == list(ADULT_CATEGORICAL)
    sizes = [columns.count(c) for c in ADULT_CATEGORICAL]
    codes, start = [], k
    for size in sizes:
        block = X[:, start:start + size]
        assert np.all(block.sum(1) == 1)
        codes.append(block.argmax(1))
        start += size
    csv_sha = hashlib.sha256(root.joinpath("_files/adult.csv.gz").read_bytes()).hexdigest()
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz")
    os.close(fd)
    np.savez_compressed(
        tmp, numeric_raw=X[:, :k], codes=np.stack(codes, 1).astype(np.uint8),
        n_categories=np.asarray(sizes, np.int16), feature_names=np.asarray(names),
        y=ds["sex"].y.astype(np.int8), sex=ds["sex"].g.astype(np.int8),
        race5=ds["race5"].g.astype(np.int8), csv_sha256=np.asarray(csv_sha),
    )
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    print(build())
