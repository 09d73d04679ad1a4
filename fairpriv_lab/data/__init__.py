"""Datasets whose records carry a sensitive group id (docs/design.md section 6)."""

from .builtin import load_digits, make_synthetic
from .dataset import GroupedDataset
from .download import RemoteFile, get_data_home
from .registry import DatasetInfo, list_datasets, load_dataset, register_dataset
from .remote import (
    download_dataset,
    load_adult_full,
    load_bank,
    load_credit,
    load_law,
    load_mnist,
    load_utkface,
)
from .tabular import from_pandas, load_adult

__all__ = [
    "GroupedDataset",
    "DatasetInfo",
    "load_dataset",
    "list_datasets",
    "register_dataset",
    "load_adult",
    "load_digits",
    "make_synthetic",
    "from_pandas",
    "load_mnist",
    "load_law",
    "load_utkface",
    "load_bank",
    "load_credit",
    "load_adult_full",
    "download_dataset",
    "get_data_home",
    "RemoteFile",
]
