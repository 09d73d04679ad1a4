"""Datasets whose records carry a sensitive group id (DESIGN.md section 6)."""

from .builtin import load_digits, make_synthetic
from .dataset import GroupedDataset
from .registry import DatasetInfo, list_datasets, load_dataset, register_dataset
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
]
