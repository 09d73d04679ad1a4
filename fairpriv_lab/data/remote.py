"""Downloadable datasets: MNIST, Law School, UTKFace, Bank Marketing, Credit default, full Adult.

Each loader fetches its files through :func:`fairpriv_lab.data.download.fetch_file` (cache,
sha256, atomic writes, a clear error offline) and returns a :class:`GroupedDataset`. The
file table :data:`REMOTE_FILES` lists the official URL of every file and its sha256 where it
could be pinned; files without a pinned sha256 are trusted on first use (see
:mod:`fairpriv_lab.data.download`).

Where the checksums come from:

- ``adult.data`` / ``adult.test``: the project's verified copies (shared/data/README.md).
- MNIST: sha256 of the four gzip files as published by several independent loaders (the
  same bytes as LeCun's originals and the PyTorch/Google mirrors used here).
- Law School ``bar_pass_prediction.csv`` and the credit ``.xls``: sha256 published by an
  open-source dataset loader for the same URL / file; not re-verified here (no network).
- Bank Marketing ``bank.zip`` and UTKFace ``UTKFace.tar.gz``: no sha256 known; recorded on
  first download.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._core import validate as V
from .._core.exceptions import DatasetError, DataWarning
from .._core.rng import SeedLike, as_generator
from .dataset import GroupedDataset
from .download import DEFAULT_DEADLINE, RemoteFile, dataset_dir, fetch_file, sha256_of
from .tabular import ADULT_GROUPS, adult_frame_from_raw, from_pandas, load_adult

__all__ = [
    "REMOTE_FILES",
    "download_dataset",
    "read_idx",
    "load_mnist",
    "load_law",
    "load_utkface",
    "load_bank",
    "load_credit",
    "load_adult_full",
]

_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist",
    "http://yann.lecun.com/exdb/mnist",
)


def _mnist_file(name: str, sha: str) -> RemoteFile:
    return RemoteFile(name, tuple(f"{base}/{name}" for base in _MNIST_MIRRORS), sha, "sha256 widely published",
                      max_bytes=_MiB(64))


def _MiB(n: int) -> int:  # noqa: N802 - a unit
    return n << 20


#: dataset name -> the files it needs (official URL first, then mirrors) and their sha256.
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        _mnist_file("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        _mnist_file("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        _mnist_file("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        _mnist_file("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
    "law": (
        RemoteFile(
            "bar_pass_prediction.csv",
            ("https://storage.googleapis.com/lawschool_dataset/bar_pass_prediction.csv",),
            "c9a1d27b932bd697641c1c848d7e965232910285307e2edeb01c71edaeef11a2",
            "the copy used by TensorFlow's Fairness Indicators case study; sha256 from a third-party loader",
            max_bytes=_MiB(64),
        ),
    ),
    "utkface": (
        RemoteFile(
            "UTKFace.tar.gz",
            ("https://huggingface.co/datasets/py97/UTKFace-Cropped/resolve/main/UTKFace.tar.gz",),
            None,
            "official copy is on Google Drive (https://susanqq.github.io/UTKFace/), which urllib "
            "cannot fetch; this is a public mirror of the 'Aligned&Cropped Faces' tarball",
            max_bytes=_MiB(512),
        ),
    ),
    "bank": (RemoteFile("bank.zip", (f"{_UCI}/00222/bank.zip",), None, "no published sha256",
                        max_bytes=_MiB(16)),),
    "credit": (
        RemoteFile(
            "default_of_credit_card_clients.xls",
            (f"{_UCI}/00350/default%20of%20credit%20card%20clients.xls",),
            "30c6be3abd8dcfd3e6096c828bad8c2f011238620f5369220bd60cfc82700933",
            "sha256 of the .xls inside UCI's zip, from a third-party loader",
            max_bytes=_MiB(64),
        ),
    ),
    "adult-full": (
        RemoteFile(
            "adult.data", (f"{_UCI}/adult/adult.data",),
            "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d", "verified copy",
            max_bytes=_MiB(64),
        ),
        RemoteFile(
            "adult.test", (f"{_UCI}/adult/adult.test",),
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05", "verified copy",
            max_bytes=_MiB(64),
        ),
    ),
}

#: Optional, user-supplied CSV export of the credit data (used instead of the .xls if present).
CREDIT_CSV = "default_of_credit_card_clients.csv"


def _fetch(dataset: str, filename: str, data_home: Any, timeout: float) -> Path:
    for remote in REMOTE_FILES[dataset]:
        if remote.filename == filename:
            return fetch_file(remote, dataset=dataset, data_home=data_home, timeout=timeout)
    raise DatasetError(f"{filename!r} is not a file of dataset {dataset!r}")


def _provenance(dataset: str, **extra: Any) -> dict[str, Any]:
    files = REMOTE_FILES[dataset]
    return {
        "source": ", ".join(f.urls[0] for f in files),
        "sha256": {f.filename: f.sha256 for f in files},
        **extra,
    }


# --------------------------------------------------------------------------- MNIST
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not), the format of the MNIST distribution.

    Layout: two zero bytes, a dtype code (0x08 = uint8, ...), the number of dimensions d,
    d big-endian uint32 sizes, then the data in C order.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> raw = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([7, 8, 9])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "x-idx1-ubyte.gz")
    ...     with gzip.open(path, "wb") as fh:
    ...         _ = fh.write(raw)
    ...     read_idx(path).tolist()
    [7, 8, 9]
    """
    opener: Callable[..., Any] = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"Cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated (header of {ndim} dimensions incomplete)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(
            f"{path} holds {len(data) - header} data bytes, expected {expected} for shape {dims}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(
    *,
    group: Literal["digit"] = "digit",
    split: Literal["train", "test", "all"] = "train",
    per_class: int | None = None,
    seed: SeedLike = None,
    data_home: Any = None,
    timeout: float = 60.0,
) -> GroupedDataset:
    """MNIST handwritten digits (LeCun, Cortes & Burges); group = digit class (10 groups).

    Pixels are scaled to [0, 1]; rows are flattened 28x28 images, ``image_shape = (1, 28, 28)``.

    Parameters
    ----------
    split : {'train', 'test', 'all'}
        60,000 training, 10,000 test images, or both (70,000).
    per_class : int, optional
        Keep this many images of each digit, drawn without replacement with ``seed``. The
        source paper uses ``per_class=1000`` (10,000 records).
    seed : int, Generator or None
        Seeds the per-class subsample.
    data_home : path, optional
        Cache folder (default ``$FAIRPRIV_LAB_DATA`` or ``~/.cache/fairpriv-lab``).

    Raises
    ------
    DownloadError
        The files are not cached and cannot be fetched (the message says where to put them).
    """
    V.choice("group", group, ("digit",))
    V.choice("split", split, ("train", "test", "all"))
    parts = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}[split]
    images, labels = [], []
    for prefix in parts:
        images.append(read_idx(_fetch("mnist", f"{prefix}-images-idx3-ubyte.gz", data_home, timeout)))
        labels.append(read_idx(_fetch("mnist", f"{prefix}-labels-idx1-ubyte.gz", data_home, timeout)))
    X8 = np.concatenate(images)
    y = np.concatenate(labels).astype(np.int64)
    if X8.ndim != 3 or X8.shape[0] != y.shape[0]:
        raise DatasetError(f"MNIST images {X8.shape} and labels {y.shape} do not match")
    if per_class is not None:
        counts = np.bincount(y, minlength=10)
        per_class = V.integer("per_class", per_class, 1, int(counts.min()))
        rng = as_generator(seed)
        idx = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(y == d), size=per_class, replace=False) for d in range(10)
        ]))
        X8, y = X8[idx], y[idx]
    h, w = X8.shape[1:]
    X = X8.reshape(len(X8), h * w).astype(np.float32) / 255.0
    names = tuple(str(d) for d in range(10))
    return GroupedDataset(
        X, y, y.copy(), group_names=names, class_names=names,
        feature_names=tuple(f"px{i}" for i in range(h * w)), name="mnist",
        group_attribute="digit", image_shape=(1, int(h), int(w)),
        provenance=_provenance(
            "mnist", licence="CC BY-SA 3.0", split=split, per_class=per_class,
            citation="LeCun, Y., Cortes, C. & Burges, C. J. C. The MNIST database of handwritten digits.",
        ),
    )


# --------------------------------------------------------------------------- Law School
LAW_NUMERIC = ("lsat", "ugpa", "zfygpa", "zgpa", "fam_inc", "tier")
LAW_CATEGORICAL = ("gender", "fulltime", "race1")


def load_law(
    *, group: Literal["race", "gender"] = "race", data_home: Any = None, timeout: float = 60.0
) -> GroupedDataset:
    """LSAC National Longitudinal Bar Passage Study (Wightman 1998); label: passed the bar.

    Features: LSAT, undergraduate GPA, standardised first-year and overall law-school GPA,
    family income, school tier (standardised numerics) and gender, full-time status, race
    (one-hot). Rows with a missing value in these columns are dropped.

    Parameters
    ----------
    group : {'race', 'gender'}
        ``race``: White = 0, non-White = 1 (the source paper's grouping).
        ``gender``: male = 0, female = 1.
    """
    V.choice("group", group, ("race", "gender"))
    import pandas as pd

    path = _fetch("law", "bar_pass_prediction.csv", data_home, timeout)
    df = pd.read_csv(path, low_memory=False)
    missing = [c for c in (*LAW_NUMERIC, *LAW_CATEGORICAL, "pass_bar") if c not in df.columns]
    if missing:
        raise DatasetError(f"{path} lacks the columns {missing}; is it the LSAC bar passage file?")
    df = df[[*LAW_NUMERIC, *LAW_CATEGORICAL, "pass_bar"]].dropna().reset_index(drop=True)
    df["pass_bar"] = df["pass_bar"].astype(int)
    for c in ("gender", "fulltime", "race1"):
        df[c] = df[c].astype(str)
    if group == "race":
        gser = (df["race1"].str.lower() == "white").map({True: "White", False: "non-White"})
        order: tuple[str, ...] = ("White", "non-White")
    else:
        gser = df["gender"].str.lower()
        order = tuple(v for v in ("male", "female") if v in set(gser)) + tuple(
            sorted(set(gser) - {"male", "female"})
        )
    return from_pandas(
        df, target="pass_bar", group=gser.rename(group), categorical=list(LAW_CATEGORICAL),
        numeric=list(LAW_NUMERIC), positive_label=1, group_order=order, name="law",
        group_attribute=group,
        provenance=_provenance(
            "law", licence="no licence stated by the distributor; research use",
            citation="Wightman, L. F. (1998). LSAC National Longitudinal Bar Passage Study. LSAC.",
        ),
    )._replace(class_names=("failed", "passed"))


# --------------------------------------------------------------------------- Bank
BANK_NUMERIC = ("age", "balance", "day", "campaign", "pdays", "previous")
BANK_CATEGORICAL = ("job", "marital", "education", "default", "housing", "loan", "contact", "month", "poutcome")


def load_bank(
    *, group: Literal["marital"] = "marital", data_home: Any = None, timeout: float = 60.0
) -> GroupedDataset:
    """UCI Bank Marketing, ``bank-full.csv`` (45,211 rows); label: subscribed a term deposit.

    Groups by marital status (married, single, divorced; largest first). ``duration`` is
    dropped: it is only known after the call, so UCI advises against it for prediction.
    CC BY 4.0, Moro, Rita & Cortez (2014).
    """
    V.choice("group", group, ("marital",))
    import zipfile

    import pandas as pd

    path = _fetch("bank", "bank.zip", data_home, timeout)
    try:
        with zipfile.ZipFile(path) as zf:
            size = zf.getinfo("bank-full.csv").file_size
            if size > _MAX_MEMBER_BYTES:
                raise DatasetError(f"{path}: bank-full.csv unpacks to {size:,} bytes, more than the "
                                   f"{_MAX_MEMBER_BYTES:,} allowed (the real file has about 4.6 MB)")
            with zf.open("bank-full.csv") as fh:  # streamed into pandas
                df = pd.read_csv(fh, sep=";")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(f"{path} is not UCI's bank.zip with bank-full.csv inside ({exc})") from None
    return from_pandas(
        df, target="y", group="marital", categorical=list(BANK_CATEGORICAL),
        numeric=list(BANK_NUMERIC), positive_label="yes", name="bank", group_attribute="marital",
        provenance=_provenance(
            "bank", licence="CC BY 4.0",
            citation="Moro, S., Rita, P. & Cortez, P. (2014). Bank Marketing. UCI. "
            "https://doi.org/10.24432/C5K306",
        ),
    )


# --------------------------------------------------------------------------- Credit
CREDIT_TARGET = "default payment next month"


def load_credit(
    *, group: Literal["sex"] = "sex", data_home: Any = None, timeout: float = 60.0
) -> GroupedDataset:
    """UCI Default of Credit Card Clients, Taiwan 2005 (30,000 rows); label: default next month.

    Groups by sex (Male = 0, Female = 1). Features: credit limit, age, six months of bill and
    payment amounts and repayment status (standardised numerics), education and marriage
    (one-hot); sex stays a feature. CC BY 4.0, Yeh (2009).

    UCI distributes an Excel ``.xls`` file, which pandas reads only with the optional
    ``xlrd`` package. Without it, save the sheet as CSV (same columns, header row with
    ``LIMIT_BAL``, ``SEX``, ...; Kaggle's ``UCI_Credit_Card.csv`` has this form) at
    ``<data home>/credit/default_of_credit_card_clients.csv``: that file is used instead of
    the ``.xls`` (it is yours, so no checksum is applied).
    """
    V.choice("group", group, ("sex",))
    import pandas as pd

    csv = dataset_dir("credit", data_home) / CREDIT_CSV
    if csv.is_file():
        df = pd.read_csv(csv)
        source = {"source": str(csv), "sha256": {CREDIT_CSV: sha256_of(csv)}}
    else:
        path = _fetch("credit", "default_of_credit_card_clients.xls", data_home, timeout)
        try:
            import xlrd  # noqa: F401
        except ImportError:
            raise DatasetError(
                f"Reading {path} needs the optional package xlrd (pip install xlrd). Or save "
                f"the sheet as CSV at {csv} and load again."
            ) from None
        df = pd.read_excel(path, header=1)
        source = _provenance("credit")
    df.columns = [str(c).strip().replace(".", " ") for c in df.columns]
    if CREDIT_TARGET not in df.columns or "SEX" not in df.columns:
        raise DatasetError(
            f"The credit data needs the columns 'SEX' and {CREDIT_TARGET!r}; it has {list(df.columns)}"
        )
    df = df.drop(columns=["ID"], errors="ignore")
    df["SEX"] = df["SEX"].map({1: "Male", 2: "Female"})
    numeric = [c for c in df.columns if c not in ("SEX", "EDUCATION", "MARRIAGE", CREDIT_TARGET)]
    return from_pandas(
        df, target=CREDIT_TARGET, group="SEX", categorical=["SEX", "EDUCATION", "MARRIAGE"],
        numeric=numeric, positive_label=1, group_order=("Male", "Female"), name="credit",
        group_attribute="sex",
        provenance={
            **source, "licence": "CC BY 4.0",
            "citation": "Yeh, I.-C. (2009). Default of Credit Card Clients. UCI. "
            "https://doi.org/10.24432/C55S3H",
        },
    )._replace(class_names=("no default", "default"))


# --------------------------------------------------------------------------- UTKFace
UTK_ETHNICITY = ("White", "Black", "Asian", "Indian", "Others")
UTK_GENDER = ("Male", "Female")


def parse_utkface_name(filename: str) -> tuple[int, int, int] | None:
    """Return (age, gender, race) from ``[age]_[gender]_[race]_[date&time].jpg...``, or None.

    Examples
    --------
    >>> parse_utkface_name("UTKFace/26_1_2_20170116174525125.jpg.chip.jpg")
    (26, 1, 2)
    >>> parse_utkface_name("UTKFace/39_1_20170116174525125.jpg.chip.jpg") is None
    True
    """
    parts = os.path.basename(filename).split("_")
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    age, gender, race = (int(p) for p in parts[:3])
    if gender not in (0, 1) or race not in range(5):
        return None
    return age, gender, race


def _image_decoder(size: int) -> Callable[[bytes], np.ndarray]:
    """Return bytes -> uint8 array (3, size, size), decoding JPEG with Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(
            "Decoding the UTKFace JPEG images needs the optional package Pillow "
            "(pip install pillow)."
        ) from None

    def decode(data: bytes) -> np.ndarray:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    if im.width * im.height > _MAX_IMAGE_PIXELS:
                        raise DatasetError(f"the image declares {im.width}x{im.height} pixels, more than "
                                           f"{_MAX_IMAGE_PIXELS:,} (a UTKFace image is 200x200)")
                    small = im.convert("RGB").resize((size, size), Image.Resampling.BOX)
                    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DatasetError(f"decompression bomb refused by Pillow: {exc}") from None
        except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
            raise DatasetError(f"not a readable image: {exc}") from None

    return decode


def load_utkface(
    *,
    group: Literal["ethnicity"] = "ethnicity",
    size: int = 32,
    data_home: Any = None,
    timeout: float = 600.0,
) -> GroupedDataset:
    """UTKFace aligned & cropped faces (Zhang, Song & Qi 2017); groups: ethnicity, label: gender.

    Five ethnicity groups (White, Black, Asian, Indian, Others, as labelled by the dataset's
    authors), binary gender label, both read from the file names; files whose names lack a
    field (a handful in the tarball) are skipped. Each 200x200 image is reduced to
    ``size x size`` RGB with Pillow's box filter and scaled to [0, 1];
    ``image_shape = (3, size, size)``. The reduced arrays are cached as
    ``utkface-<size>px.npz`` beside the tarball (rebuilt if the tarball changes).
    Licence: non-commercial research only.

    Parameters
    ----------
    size : int
        Side of the reduced images, 8..200.
    """
    V.choice("group", group, ("ethnicity",))
    size = V.integer("size", size, 8, 200)
    decode = _image_decoder(size)
    tar_path = _fetch("utkface", "UTKFace.tar.gz", data_home, timeout)
    tar_sha = sha256_of(tar_path)
    cache = tar_path.parent / f"utkface-{size}px.npz"
    images, gender, race = _load_derived(cache, tar_sha)
    if images is None:
        images, gender, race, skipped = _read_utkface_tar(tar_path, decode)
        if skipped:
            warnings.warn(
                f"Skipped {skipped} UTKFace files whose names lack age, gender or race.",
                DataWarning, stacklevel=2,
            )
        _save_derived(cache, images=images, gender=gender, race=race, source_sha256=tar_sha)
    n = images.shape[0]
    X = images.reshape(n, -1).astype(np.float32) / 255.0
    return GroupedDataset(
        X, gender.astype(np.int64), race.astype(np.int64), group_names=UTK_ETHNICITY,
        class_names=UTK_GENDER, name="utkface", group_attribute="ethnicity",
        feature_names=tuple(f"px{i}" for i in range(X.shape[1])), image_shape=(3, size, size),
        provenance=_provenance(
            "utkface", licence="non-commercial research purposes only", size=size,
            citation="Zhang, Z., Song, Y. & Qi, H. (2017). Age Progression/Regression by "
            "Conditional Adversarial Autoencoder. CVPR.",
        ),
    )


#: Largest archive member read into memory (a UTKFace JPEG is ~10 kB, bank-full.csv 4.6 MB).
_MAX_MEMBER_BYTES = 64 << 20
#: Largest image decoded (pixels); Pillow's own bomb limit is ~89 M.
_MAX_IMAGE_PIXELS = 4096 * 4096


def _save_derived(path: Path, **arrays: np.ndarray) -> None:
    """Write a derived cache (npz) atomically with its sha256 in ``<name>.sha256`` beside it."""
    tmp = path.with_name(f".{path.stem}.part.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        digest = sha256_of(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    side = path.with_name(path.name + ".sha256")
    side_tmp = path.with_name(f".{side.name}.part")
    side_tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(side_tmp, side)


def _load_derived(path: Path, source_sha: str) -> tuple[Any, Any, Any]:
    """Return (images, gender, race) of a verified derived cache, or Nones to rebuild it.

    The npz must match the sha256 recorded beside it and name the tarball it came from; one
    that does not (bit flips, truncation, a missing record) is reported and rebuilt.
    """
    side = path.with_name(path.name + ".sha256")
    if not path.is_file():
        return None, None, None
    problem = None
    try:
        recorded = side.read_text().split()[0] if side.is_file() else None
        if recorded is None:
            problem = "no checksum recorded beside it"
        elif sha256_of(path) != recorded:
            problem = "sha256 mismatch"
        else:
            with np.load(path, allow_pickle=False) as z:
                if str(z["source_sha256"]) != source_sha:
                    return None, None, None  # made from another tarball: rebuild quietly
                return z["images"], z["gender"], z["race"]
    except (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"unreadable: {exc}"
    warnings.warn(f"Derived cache {path} failed verification ({problem}); rebuilding it from the tarball.",
                  DataWarning, stacklevel=3)
    return None, None, None


def _read_utkface_tar(path: Path, decode: Callable[[bytes], np.ndarray]):
    import tarfile

    images, gender, race, skipped = [], [], [], 0
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if not member.isfile() or not member.name.lower().endswith(".jpg"):
                    continue
                label = parse_utkface_name(member.name)
                if label is None:
                    skipped += 1
                    continue
                if member.size > _MAX_MEMBER_BYTES:
                    raise DatasetError(f"{path}: member {member.name} is {member.size:,} bytes, more than "
                                       f"the {_MAX_MEMBER_BYTES:,} read into memory (a UTKFace image is ~10 kB)")
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                try:
                    images.append(decode(fh.read(_MAX_MEMBER_BYTES)))
                except DatasetError as exc:
                    raise DatasetError(f"{path}: member {member.name}: {exc}") from None
                gender.append(label[1])
                race.append(label[2])
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"Cannot read the UTKFace tarball {path}: {exc}") from None
    if not images:
        raise DatasetError(f"{path} holds no UTKFace images named [age]_[gender]_[race]_*.jpg")
    return (np.stack(images), np.asarray(gender, np.int8), np.asarray(race, np.int8), skipped)


# --------------------------------------------------------------------------- full Adult
def load_adult_full(
    *, group: Literal["sex", "race", "race5"] = "sex", data_home: Any = None, timeout: float = 60.0
) -> GroupedDataset:
    """UCI Adult fetched from UCI (``adult.data`` + ``adult.test``), processed as the bundled copy.

    The same 45,222 rows as :func:`fairpriv_lab.data.load_adult` (which needs no network);
    this loader exists to reproduce the preprocessing from the original files.
    """
    V.choice("group", group, ADULT_GROUPS)
    data = _fetch("adult-full", "adult.data", data_home, timeout)
    test = _fetch("adult-full", "adult.test", data_home, timeout)
    ds = load_adult(group=group, frame=adult_frame_from_raw(str(data), str(test)), name="adult-full")
    return ds._replace(provenance={**ds.provenance, "source": _provenance("adult-full")["source"]})


def download_dataset(
    name: str, *, data_home: str | os.PathLike[str] | None = None, timeout: float = 60.0,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Path]:
    """Fetch (or verify in the cache) every file of a downloadable dataset.

    Parameters
    ----------
    name : str
        A dataset with remote files: ``mnist``, ``law``, ``utkface``, ``bank``, ``credit``,
        ``adult-full``.

    Returns
    -------
    list of Path
        The verified local files, in the order of the dataset's file table.
    """
    V.choice("name", name, list(REMOTE_FILES))
    return [fetch_file(f, dataset=name, data_home=data_home, timeout=timeout, deadline=deadline)
            for f in REMOTE_FILES[name]]
